# Included by _kernels.pyx: the Gaussian vector families
# (MultivariateNormal, LowRankMultivariateNormal): their fills and their own
# score kernels (SK_FAMILY terms), entered in the family table.
#
# A unit (one element of the flattened batch of loc) is one d-vector draw in
# columns j*d .. j*d+d-1 of a chunk.  Its parameter block (written by the
# family's _draw_params in distributions/_multivariate.py) is
#
#   MultivariateNormal:  [d, loc (d), L (d*d), P (d*d), Linv (d*d), Sigma (d*d)]
#   LowRank:             [d, r, loc (d), W (d*r), sqrt(D) (d), P (d*d), M = P W (d*r),
#                         T = Lc^-1 W^T D^-1 (r*d)]
#
# row-major matrices; L the lower Cholesky factor of the covariance Sigma,
# P = Sigma^-1 and Linv = L^-1, computed once per distribution in Python
# (never per draw).  With r = x - loc, z = Linv r (the standard normal noise
# of the draw) and w = P r = Linv^T z, the score terms are
#
#   a = MV_LOC   (i):     w_i                                 (loc)
#   a = MV_TRIL  (i, j):  w_i z_j - [i == j] / L_ii           (scale_tril)
#   a = MV_COV   (i, j):  (w_i w_j - P_ij) / 2                (covariance_matrix)
#   a = MV_PREC  (i, j):  (Sigma_ij - r_i r_j) / 2            (precision_matrix)
#   a = MV_FACTOR(i, k):  w_i (M^T r)_k - M_ik                (cov_factor)
#   a = MV_DIAG  (i):     (w_i^2 - P_ii) / 2                  (cov_diag)
#
# with (b, c) = (i, j) and the term's column the unit's coordinate i.  Each
# term is O(d) per draw, computed in sub-chunks of MV_SUB draws with unit
# stride over the draws.

from numpy.random.c_distributions cimport random_standard_normal
from libc.string cimport memcpy
from scipy.linalg.cython_blas cimport dgemm, dtrsm

cdef extern from *:
    """
    #include <stdlib.h>
    /* A per-thread scratch buffer of at least n doubles for the BLAS
       accumulation of a chunk (grown as needed, kept for the thread's
       life: one allocation per thread, not one per chunk); NULL when out
       of memory (the caller then falls back to the per-coordinate path). */
    static double *mc_mv_scratch(size_t n) {
    #if defined(_MSC_VER)
        static __declspec(thread) double *buf = NULL;
        static __declspec(thread) size_t cap = 0;
    #else
        static __thread double *buf = NULL;
        static __thread size_t cap = 0;
    #endif
        if (n > cap) {
            free(buf);
            buf = (double *)malloc(n * sizeof(double));
            cap = buf ? n : 0;
        }
        return buf;
    }
    """
    double *mc_mv_scratch(size_t n) noexcept nogil

cdef enum:
    MV_LOC = 0
    MV_TRIL = 1
    MV_COV = 2
    MV_PREC = 3
    MV_FACTOR = 4
    MV_DIAG = 5
    MV_SUB = 64


cdef void _fill_mvn(const mc_dist *dist, Py_ssize_t j, bitgen_t *bg, Py_ssize_t m,
                    double *xt, Py_ssize_t ld, double *lt,
                    mc_workspace *ws) noexcept nogil:
    # x = loc + L z: z drawn draw by draw (d normals each, so the stream is
    # consumed the same way however a block is cut into chunks), then the
    # triangular product in place, column by column from the last (x_c
    # needs z_k for k <= c only), unit stride over the draws.
    cdef const double *p = mc_unit_params(dist, j)
    cdef Py_ssize_t d = <Py_ssize_t> p[0], i, c, k
    cdef const double *loc = p + 1
    cdef const double *L = p + 1 + d
    cdef double *x = xt + j * d * ld
    cdef double *xc
    cdef const double *xk
    cdef double lck, lcc, mu
    for i in range(m):
        for c in range(d):
            x[c * ld + i] = random_standard_normal(bg)
    for c in range(d - 1, -1, -1):
        xc = x + c * ld
        lcc = L[c * d + c]
        mu = loc[c]
        for i in range(m):
            xc[i] = mu + lcc * xc[i]
        for k in range(c):
            lck = L[c * d + k]
            if lck == 0.0:
                continue
            xk = x + k * ld
            for i in range(m):
                xc[i] += lck * xk[i]


cdef void _fill_lowrank_mvn(const mc_dist *dist, Py_ssize_t j, bitgen_t *bg, Py_ssize_t m,
                            double *xt, Py_ssize_t ld, double *lt,
                            mc_workspace *ws) noexcept nogil:
    # x = loc + sqrt(D) e + W u: per draw d normals e, then r normals u
    # (O(d r) per draw, no d x d matrix)
    cdef const double *p = mc_unit_params(dist, j)
    cdef Py_ssize_t d = <Py_ssize_t> p[0], r = <Py_ssize_t> p[1], i, a, k
    cdef const double *loc = p + 2
    cdef const double *W = loc + d
    cdef const double *sd = W + d * r
    cdef double *x = xt + j * d * ld
    cdef double u
    for i in range(m):
        for a in range(d):
            x[a * ld + i] = loc[a] + sd[a] * random_standard_normal(bg)
        for k in range(r):
            u = random_standard_normal(bg)
            for a in range(d):
                x[a * ld + i] += W[a * r + k] * u


cdef inline void _mv_form(const double *row, Py_ssize_t stride, Py_ssize_t d, const double *loc,
                          const double *x, Py_ssize_t ld, Py_ssize_t i0, Py_ssize_t mm,
                          double *out) noexcept nogil:
    """out[i] = sum_{k < d} row[k * stride] (x_k[i0 + i] - loc_k) for i < mm
    (a row or column of a matrix times r = x - loc, on a sub-chunk)."""
    cdef Py_ssize_t i, k
    cdef double a, mu
    cdef const double *xk
    for i in range(mm):
        out[i] = 0.0
    for k in range(d):
        a = row[k * stride]
        if a == 0.0:
            continue
        mu = loc[k]
        xk = x + k * ld + i0
        for i in range(mm):
            out[i] += a * (xk[i] - mu)


cdef void _score_mvn(const mc_dist *dist, Py_ssize_t t, const double *xt, Py_ssize_t ld,
                     Py_ssize_t m, double *out) noexcept nogil:
    cdef const double *p0 = mc_unit_params(dist, 0)
    cdef Py_ssize_t d = <Py_ssize_t> p0[0]
    cdef Py_ssize_t unit = dist.t_col[t] // d
    cdef const double *p = mc_unit_params(dist, unit)
    cdef int typ = <int> dist.t_a[t]
    cdef Py_ssize_t ii = <Py_ssize_t> dist.t_b[t], jj = <Py_ssize_t> dist.t_c[t]
    cdef const double *loc = p + 1
    cdef const double *L = loc + d
    cdef const double *P = L + d * d
    cdef const double *Li = P + d * d
    cdef const double *Sg = Li + d * d
    cdef const double *x = xt + unit * d * ld
    cdef double u[MV_SUB]
    cdef double v[MV_SUB]
    cdef double cst
    cdef Py_ssize_t i0, mm, i
    cdef Py_ssize_t nsub = (m + MV_SUB - 1) // MV_SUB, sb
    for sb in range(nsub):
        i0 = sb * MV_SUB
        mm = m - i0 if m - i0 < MV_SUB else MV_SUB
        if typ == MV_LOC:
            _mv_form(P + ii * d, 1, d, loc, x, ld, i0, mm, u)
            for i in range(mm):
                out[i0 + i] += u[i]
        elif typ == MV_TRIL:
            _mv_form(P + ii * d, 1, d, loc, x, ld, i0, mm, u)
            _mv_form(Li + jj * d, 1, jj + 1, loc, x, ld, i0, mm, v)
            cst = 1.0 / L[ii * d + ii] if ii == jj else 0.0
            for i in range(mm):
                out[i0 + i] += u[i] * v[i] - cst
        elif typ == MV_COV:
            _mv_form(P + ii * d, 1, d, loc, x, ld, i0, mm, u)
            _mv_form(P + jj * d, 1, d, loc, x, ld, i0, mm, v)
            cst = P[ii * d + jj]
            for i in range(mm):
                out[i0 + i] += 0.5 * (u[i] * v[i] - cst)
        elif typ == MV_PREC:
            cst = Sg[ii * d + jj]
            for i in range(mm):
                out[i0 + i] += 0.5 * (cst - (x[ii * ld + i0 + i] - loc[ii])
                                      * (x[jj * ld + i0 + i] - loc[jj]))


cdef void _score_lowrank_mvn(const mc_dist *dist, Py_ssize_t t, const double *xt,
                             Py_ssize_t ld, Py_ssize_t m, double *out) noexcept nogil:
    cdef const double *p0 = mc_unit_params(dist, 0)
    cdef Py_ssize_t d = <Py_ssize_t> p0[0], r = <Py_ssize_t> p0[1]
    cdef Py_ssize_t unit = dist.t_col[t] // d
    cdef const double *p = mc_unit_params(dist, unit)
    cdef int typ = <int> dist.t_a[t]
    cdef Py_ssize_t ii = <Py_ssize_t> dist.t_b[t], kk = <Py_ssize_t> dist.t_c[t]
    cdef const double *loc = p + 2
    cdef const double *P = loc + d + d * r + d
    cdef const double *M = P + d * d
    cdef const double *x = xt + unit * d * ld
    cdef double u[MV_SUB]
    cdef double v[MV_SUB]
    cdef double cst
    cdef Py_ssize_t i0, mm, i
    cdef Py_ssize_t nsub = (m + MV_SUB - 1) // MV_SUB, sb
    for sb in range(nsub):
        i0 = sb * MV_SUB
        mm = m - i0 if m - i0 < MV_SUB else MV_SUB
        _mv_form(P + ii * d, 1, d, loc, x, ld, i0, mm, u)
        if typ == MV_LOC:
            for i in range(mm):
                out[i0 + i] += u[i]
        elif typ == MV_DIAG:
            cst = P[ii * d + ii]
            for i in range(mm):
                out[i0 + i] += 0.5 * (u[i] * u[i] - cst)
        elif typ == MV_FACTOR:
            _mv_form(M + kk, r, d, loc, x, ld, i0, mm, v)  # (M^T r)_k
            cst = M[ii * r + kk]
            for i in range(mm):
                out[i0 + i] += u[i] * v[i] - cst


cdef void _column_stats(const double *s, const double *g, Py_ssize_t m,
                        double *st) noexcept nogil:
    """Add the five sums of one coordinate's scores s (m draws) to st."""
    cdef Py_ssize_t n
    cdef double v, a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0, a4 = 0.0
    for n in range(m):
        v = s[n]
        a0 += v
        a1 += v * v
        a2 += g[n] * v
        a3 += g[n] * v * v
        a4 += g[n] * g[n] * v * v
    st[0] += a0
    st[1] += a1
    st[2] += a2
    st[3] += a3
    st[4] += a4


cdef void _bilinear_stats(const double *U, const double *V, Py_ssize_t m, Py_ssize_t p,
                          Py_ssize_t q, const double *g, double G1, double G2,
                          const double *C, bint lower, double *A, double *V2, double *T,
                          double *Q, double *st) noexcept nogil:
    """Add the five sums of the scores s_ij = u_i v_j - C_ij (i < p, j < q;
    with `lower`, j <= i only) of m draws to st (coordinate (i, j) at
    st + 5 (i q + j)).  U (m x p), V (m x q) column-major; C row-major;
    scratch A (3 m p), V2 (m q), T and Q (3 p q).  Two dgemm calls:
    T = [U, g U, g^2 U]^T V and Q = [U o U, g U o U, g^2 U o U]^T (V o V), then
    sum s = T0 - m c, sum s^2 = Q0 - 2 c T0 + m c^2, sum g s = T1 - c sum g,
    sum g s^2 = Q1 - 2 c T1 + c^2 sum g, sum g^2 s^2 = Q2 - 2 c T2 + c^2 sum g^2."""
    cdef Py_ssize_t i, j, k, n, mp = m * p
    cdef int im = <int> m, iq = <int> q, i3 = <int> (3 * p)
    cdef char nt = b'N', tr = b'T'
    cdef double one = 1.0, zero = 0.0, c, t0, t1, t2
    cdef double *st_ij
    for k in range(p):
        for n in range(m):
            A[k * m + n] = U[k * m + n]
            A[(p + k) * m + n] = g[n] * U[k * m + n]
            A[(2 * p + k) * m + n] = g[n] * g[n] * U[k * m + n]
    dgemm(&tr, &nt, &i3, &iq, &im, &one, A, &im, <double *> V, &im, &zero, T, &i3)
    for n in range(mp):
        A[n] = A[n] * U[n]
        A[mp + n] = A[mp + n] * U[n]
        A[2 * mp + n] = A[2 * mp + n] * U[n]
    for n in range(m * q):
        V2[n] = V[n] * V[n]
    dgemm(&tr, &nt, &i3, &iq, &im, &one, A, &im, V2, &im, &zero, Q, &i3)
    for i in range(p):
        for j in range(q):
            if lower and j > i:
                continue
            c = C[i * q + j]
            t0 = T[i + j * 3 * p]
            t1 = T[p + i + j * 3 * p]
            t2 = T[2 * p + i + j * 3 * p]
            st_ij = st + 5 * (i * q + j)
            st_ij[0] += t0 - m * c
            st_ij[1] += Q[i + j * 3 * p] - 2.0 * c * t0 + m * c * c
            st_ij[2] += t1 - c * G1
            st_ij[3] += Q[p + i + j * 3 * p] - 2.0 * c * t1 + c * c * G1
            st_ij[4] += Q[2 * p + i + j * 3 * p] - 2.0 * c * t2 + c * c * G2


cdef struct _mv_parts:
    # the bilinear form of a chunk's scores (see _mvn_parts, _lowrank_parts):
    # loc's scores are the columns of W (m x d); the matrix coordinate (i, j)
    # (i < p, j < q; with `lower` only j <= i) scores u_i v_j - C_ij; g holds
    # f - shift (when f was given), G its sum and sum of squares; `free`
    # points at the scratch left for the caller
    Py_ssize_t d, p, q
    bint lower
    const double *W
    const double *U
    const double *V
    const double *C
    double *g
    double G[2]
    double *free


cdef double *_residuals(const double *loc, Py_ssize_t d, Py_ssize_t m, const double *xt,
                        Py_ssize_t ld, const double *fx, double shift, size_t extra,
                        _mv_parts *pt) noexcept nogil:
    """The scratch of a chunk: [R (m x d) = x - loc, g (m) = f - shift (fx
    may be NULL), then `extra` doubles]; NULL when out of memory."""
    cdef double *R = mc_mv_scratch(<size_t> (m * d + m) + extra)
    cdef Py_ssize_t k, n
    if R == NULL:
        return NULL
    pt.g = R + m * d
    pt.G[0] = 0.0
    pt.G[1] = 0.0
    if fx != NULL:
        for n in range(m):
            pt.g[n] = fx[n] - shift
            pt.G[0] += pt.g[n]
            pt.G[1] += pt.g[n] * pt.g[n]
    for k in range(d):
        for n in range(m):
            R[k * m + n] = xt[k * ld + n] - loc[k]
    return R


cdef bint _mvn_parts(const mc_dist *dist, Py_ssize_t m, const double *xt, Py_ssize_t ld,
                     const double *fx, double shift, size_t extra,
                     _mv_parts *pt) noexcept nogil:
    """MultivariateNormal's bilinear form of a chunk (one unit; False
    otherwise, or when out of memory).  Every matrix coordinate's score is
    s_ij = u_i v_j - c_ij with (u, v, c) = (w, z, [i == j] / L_ii) for
    scale_tril, (w, w / 2, P_ij / 2) for a covariance and (r, -r / 2,
    -Sigma_ij / 2) for a precision matrix: r = x - loc, z = L^-1 r by one
    triangular solve (dtrsm) and w = L^-T z by another, O(d^2) per draw."""
    cdef const double *p = mc_unit_params(dist, 0)
    cdef Py_ssize_t d = <Py_ssize_t> p[0], i, j, n
    if dist.n_units != 1 or dist.n_coords != d + d * d or m < 1:
        return False
    cdef int typ = <int> dist.t_a[dist.t_start[d]]
    cdef const double *loc = p + 1
    cdef const double *L = loc + d
    cdef const double *P = L + d * d
    cdef const double *Sg = P + 2 * d * d
    cdef Py_ssize_t md = m * d
    cdef double *R = _residuals(loc, d, m, xt, ld, fx, shift, <size_t> (2 * md + d * d) + extra,
                                pt)
    if R == NULL:
        return False
    cdef double *Z = pt.g + m      # z = L^-1 r (rows), then V
    cdef double *Wm = Z + md       # w = L^-T z
    cdef double *C = Wm + md       # d x d
    cdef double one = 1.0, vs
    cdef int im = <int> m, idd = <int> d
    cdef char side = b'R', up = b'U', nt = b'N', tr = b'T', nd = b'N'
    # the unit block holds L row-major, i.e. L^T column-major (upper)
    memcpy(Z, R, md * sizeof(double))
    dtrsm(&side, &up, &nt, &nd, &im, &idd, &one, <double *> L, &idd, Z, &im)   # Z L^T = R
    memcpy(Wm, Z, md * sizeof(double))
    dtrsm(&side, &up, &tr, &nd, &im, &idd, &one, <double *> L, &idd, Wm, &im)  # W L = Z
    for i in range(d):
        for j in range(d):
            if typ == MV_TRIL:
                C[i * d + j] = 1.0 / L[i * d + i] if i == j else 0.0
            elif typ == MV_COV:
                C[i * d + j] = 0.5 * P[i * d + j]
            else:
                C[i * d + j] = -0.5 * Sg[i * d + j]
    pt.d, pt.p, pt.q, pt.lower = d, d, d, typ == MV_TRIL
    pt.W, pt.C, pt.free = Wm, C, C + d * d
    if typ == MV_TRIL:
        pt.U, pt.V = Wm, Z
        return True
    pt.U = Wm if typ == MV_COV else R
    vs = 0.5 if typ == MV_COV else -0.5
    for n in range(md):  # V scaled into Z's buffer (free now)
        Z[n] = vs * pt.U[n]
    pt.V = Z
    return True


cdef bint _lowrank_parts(const mc_dist *dist, Py_ssize_t m, const double *xt, Py_ssize_t ld,
                         const double *fx, double shift, size_t extra,
                         _mv_parts *pt) noexcept nogil:
    """LowRankMultivariateNormal's bilinear form of a chunk in O(d r) per
    draw (one unit): w = Sigma^-1 r by Woodbury, w = r / D - T^T (T r) with
    T = Lc^-1 W^T D^-1 (Lc the Cholesky factor of the capacitance I + W^T
    D^-1 W); cov_factor's scores s_ak = w_a (M^T r)_k - M_ak (M = Sigma^-1 W).
    (cov_diag's, (w_a^2 - P_aa) / 2, are the caller's.)"""
    cdef const double *p = mc_unit_params(dist, 0)
    cdef Py_ssize_t d = <Py_ssize_t> p[0], r = <Py_ssize_t> p[1], a, n
    if dist.n_units != 1 or dist.n_coords != 2 * d + d * r or m < 1:
        return False
    cdef const double *loc = p + 2
    cdef const double *sd = loc + d + d * r
    cdef const double *M = sd + d + d * d
    cdef const double *Tm = M + d * r
    cdef Py_ssize_t md = m * d, mr = m * r
    cdef double *R = _residuals(loc, d, m, xt, ld, fx, shift, <size_t> (md + 2 * mr) + extra, pt)
    if R == NULL:
        return False
    cdef double *Wm = pt.g + m     # m d
    cdef double *RT = Wm + md      # m r
    cdef double *V = RT + mr       # m r
    cdef double one = 1.0, zero = 0.0, mone = -1.0, pa
    cdef int im = <int> m, idd = <int> d, ir = <int> r
    cdef char nt = b'N', tr = b'T'
    for a in range(d):
        pa = 1.0 / (sd[a] * sd[a])
        for n in range(m):
            Wm[a * m + n] = R[a * m + n] * pa
    # Tm is T (r x d) row-major = T^T column-major (d x r, ld d); M likewise (r x d, ld r)
    dgemm(&nt, &nt, &im, &ir, &idd, &one, R, &im, <double *> Tm, &idd, &zero, RT, &im)
    dgemm(&nt, &tr, &im, &idd, &ir, &mone, RT, &im, <double *> Tm, &idd, &one, Wm, &im)
    dgemm(&nt, &tr, &im, &ir, &idd, &one, R, &im, <double *> M, &ir, &zero, V, &im)
    pt.d, pt.p, pt.q, pt.lower = d, d, r, False
    pt.W, pt.U, pt.V, pt.C, pt.free = Wm, Wm, V, M, V + mr
    return True


cdef inline double _diag_score(const double *w, double pa) noexcept nogil:
    return 0.5 * (w[0] * w[0] - pa)


cdef bint _accum_mvn(const mc_dist *dist, Py_ssize_t m, const double *xt, Py_ssize_t ld,
                     const double *fx, double shift, double *stats) noexcept nogil:
    """The five sums of every coordinate of a chunk at once, by BLAS
    (mc_family.accum): loc's columns, then the matrix's bilinear sums
    (_bilinear_stats): O(d^2) per draw instead of O(d) per draw and
    coordinate.  False when _mvn_parts does not apply."""
    cdef _mv_parts pt
    cdef Py_ssize_t i, d, md
    if not _mvn_parts(dist, m, xt, ld, fx, shift,
                      <size_t> (4 * m * dist.draw_size + 6 * dist.draw_size * dist.draw_size),
                      &pt):
        return False
    d = pt.d
    md = m * d
    for i in range(d):  # loc: s = w_i
        _column_stats(pt.W + i * m, pt.g, m, stats + 5 * i)
    _bilinear_stats(pt.U, pt.V, m, d, d, pt.g, pt.G[0], pt.G[1], pt.C, pt.lower, pt.free,
                    pt.free + 3 * md, pt.free + 4 * md, pt.free + 4 * md + 3 * d * d,
                    stats + 5 * d)
    return True


cdef bint _accum_lowrank_mvn(const mc_dist *dist, Py_ssize_t m, const double *xt,
                             Py_ssize_t ld, const double *fx, double shift,
                             double *stats) noexcept nogil:
    """LowRank's statistics of a chunk by BLAS in O(d r) per draw
    (mc_family.accum; see _lowrank_parts)."""
    cdef _mv_parts pt
    cdef const double *p = mc_unit_params(dist, 0)
    cdef Py_ssize_t d = <Py_ssize_t> p[0], r = <Py_ssize_t> p[1], a, n
    cdef const double *P = p + 2 + 2 * d + d * r
    if not _lowrank_parts(dist, m, xt, ld, fx, shift,
                          <size_t> (3 * m * d + m + m * r + 6 * d * r), &pt):
        return False
    cdef double *A = pt.free        # 3 m d
    cdef double *S = A + 3 * m * d  # m: cov_diag's scores, one column at a time
    cdef double *V2 = S + m         # m r
    cdef double *T = V2 + m * r     # 3 d r
    for a in range(d):  # loc: s = w_a; cov_diag: s = (w_a^2 - P_aa) / 2
        _column_stats(pt.W + a * m, pt.g, m, stats + 5 * a)
        for n in range(m):
            S[n] = _diag_score(pt.W + a * m + n, P[a * d + a])
        _column_stats(S, pt.g, m, stats + 5 * (d + d * r + a))
    _bilinear_stats(pt.U, pt.V, m, d, r, pt.g, pt.G[0], pt.G[1], pt.C, False, A, V2, T,
                    T + 3 * d * r, stats + 5 * d)
    return True


cdef void _bilinear_scores(const _mv_parts *pt, Py_ssize_t m, double *out) noexcept nogil:
    """out[(i q + j) m + n] = u_i v_j - C_ij at draw n (0 above the diagonal
    of a `lower` form)."""
    cdef Py_ssize_t i, j, n
    cdef double c
    cdef const double *ui
    cdef const double *vj
    cdef double *o
    for i in range(pt.p):
        ui = pt.U + i * m
        for j in range(pt.q):
            o = out + (i * pt.q + j) * m
            if pt.lower and j > i:
                memset(o, 0, m * sizeof(double))
                continue
            c = pt.C[i * pt.q + j]
            vj = pt.V + j * m
            for n in range(m):
                o[n] = ui[n] * vj[n] - c


cdef bint _scores_mvn(const mc_dist *dist, Py_ssize_t m, const double *xt, Py_ssize_t ld,
                      double *out) noexcept nogil:
    """Every coordinate's scores of a chunk (mc_family.scores): out[q m + n]."""
    cdef _mv_parts pt
    if not _mvn_parts(dist, m, xt, ld, NULL, 0.0, 0, &pt):
        return False
    memcpy(out, pt.W, m * pt.d * sizeof(double))
    _bilinear_scores(&pt, m, out + m * pt.d)
    return True


cdef bint _scores_lowrank_mvn(const mc_dist *dist, Py_ssize_t m, const double *xt,
                              Py_ssize_t ld, double *out) noexcept nogil:
    cdef _mv_parts pt
    cdef const double *p = mc_unit_params(dist, 0)
    cdef Py_ssize_t d = <Py_ssize_t> p[0], r = <Py_ssize_t> p[1], a, n
    cdef const double *P = p + 2 + 2 * d + d * r
    if not _lowrank_parts(dist, m, xt, ld, NULL, 0.0, 0, &pt):
        return False
    memcpy(out, pt.W, m * d * sizeof(double))
    _bilinear_scores(&pt, m, out + m * d)
    for a in range(d):
        for n in range(m):
            out[(d + d * r + a) * m + n] = _diag_score(pt.W + a * m + n, P[a * d + a])
    return True


_register(MC_MULTIVARIATE_NORMAL, b"MultivariateNormal", _fill_mvn, False, _score_mvn)
_FAMILY_TABLE[MC_MULTIVARIATE_NORMAL].accum = _accum_mvn
_FAMILY_TABLE[MC_MULTIVARIATE_NORMAL].scores = _scores_mvn
_register(MC_LOWRANK_MULTIVARIATE_NORMAL, b"LowRankMultivariateNormal", _fill_lowrank_mvn,
          False, _score_lowrank_mvn)
_FAMILY_TABLE[MC_LOWRANK_MULTIVARIATE_NORMAL].accum = _accum_lowrank_mvn
_FAMILY_TABLE[MC_LOWRANK_MULTIVARIATE_NORMAL].scores = _scores_lowrank_mvn
