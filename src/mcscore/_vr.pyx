# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""Typed, GIL-free kernels of the variance-reduction estimators.

The estimators in :mod:`mcscore.estimators` (and the control-variate and
antithetic options of ``score_grad``) share the stream/block plan of the
core: block b belongs to stream b % S, each stream has its own bit
generator and walks its blocks in order, and a *round* handles at most one
block per stream.  A round is two kernel calls around the Python calls of
f / grad_f:

* ``prepare_round`` draws each block of the round from its stream (with the
  core's ``mc_draw_block``, or uniforms / gamma variates of our own) and
  turns the noise into the points f and grad_f are evaluated at (relaxed
  samples, conditional relaxations, antithetic pairs, ...);
* an ``acc_*`` function turns f / grad_f values into per-draw *features*
  (per gradient coordinate q, L numbers z[q, 0..L-1]: the estimator's term
  and its control variates) and adds them to the stream's *Gram statistics*:

      [count, sum v, sum v^2,  then per q: sum z_l (L), sum z_l z_k (l <= k)]

  with v the f value (for E[f]) and every quantity shifted by its value at
  the stream's first draw (the shifts are stored separately).  An offset of
  f itself is taken out before the values reach these kernels (f - c per
  stream, with c * s added back by the estimator algebra), so the terms
  f * s do not carry it.

The estimator algebra (fixed or cross-fitted coefficients, estimate,
standard error) is done in Python on these statistics.

Layouts: a block of m draws of W doubles is column-major, buf[c * m + i].
Values computed in Python for a round are indexed by r * B + i (block r of
the round, draw i).
"""
import numpy as np
cimport numpy as cnp
from libc.math cimport log, log1p, exp, fabs, isfinite, sqrt, INFINITY
from libc.stdlib cimport malloc, free
from libc.string cimport memset
from libc.stdint cimport int64_t
from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_IsValid
from cython.parallel cimport prange, parallel
from numpy.random cimport bitgen_t
from numpy.random.c_distributions cimport random_standard_uniform_fill, random_standard_gamma
from scipy.special.cython_special cimport gammainc, gammaincc, gammaln

from mcscore._kernels cimport (
    mc_dist, mc_workspace, mc_workspace_init, mc_workspace_free, mc_draw_block,
    SK_AFFINE, SK_LOG_AFFINE, SK_LOG1M_AFFINE, SK_QUAD, SK_LOG_QUAD, SK_CATEGORY,
)

cnp.import_array()

# Prepare modes.
cpdef enum:
    PREP_DRAW = 0          # the family's own draws (mc_draw_block): out = x
    PREP_GAMMAS = 1        # Beta / Dirichlet via gamma variates: out = x | aux0 | aux1
    PREP_RELAXED_BERN = 2  # out = z | b          prm = [tau, logits (W)]
    PREP_RELAXED_CAT = 3   # out = z | onehot     prm = [tau, log-probs (U*K)]
    PREP_REBAR_BERN = 4    # out = b | s(z) | s(zt) | dzt/dtheta     prm = [lam, logits]
    PREP_REBAR_CAT = 5     # out = onehot | s(z) | s(zt) | w         prm = [lam, log-probs]
    PREP_DISARM = 6        # out = b | b~          prm = [logits (W)]

# Tangent kinds of the pathwise estimator: dx_c / d theta_q.
cpdef enum:
    TK_ONE = 0             # 1                          (Normal loc)
    TK_NSCALE = 1          # (x - a) / b                (Normal scale; a = loc, b = scale)
    TK_LNLOC = 2           # x                          (LogNormal loc)
    TK_LNSCALE = 3         # x (log x - a) / b          (LogNormal scale)
    TK_NEG_X_OVER = 4      # -x / a                     (Exponential / Gamma rate)
    TK_GAMMA_CONC = 5      # dz/dalpha(z = x b, a) / b  (Gamma concentration; b = rate)
    TK_AUX0 = 6            # aux0[c]                    (Beta concentration1)
    TK_AUX1 = 7            # aux1[c]                    (Beta concentration0)
    TK_DIRICHLET = 8       # aux0[c] (g_c - sum_k g_k x_k over the unit); a = unit, b = K

cdef enum:
    MAXL = 16


cdef bitgen_t *_bitgen(object bit_generator) except NULL:
    capsule = bit_generator.capsule
    if not PyCapsule_IsValid(capsule, "BitGenerator"):
        raise TypeError("not a numpy BitGenerator")
    return <bitgen_t *> PyCapsule_GetPointer(capsule, "BitGenerator")


cdef class VrDist:
    """A distribution's draw parameters in the core's ``mc_dist`` layout
    (only the fields ``mc_draw_block`` reads; no score table)."""
    cdef mc_dist d
    cdef object _keep
    cdef int64_t zero[2]
    cdef readonly Py_ssize_t draw_size, n_units, n_cat
    cdef readonly int family

    def __init__(self, int family, Py_ssize_t n_units, Py_ssize_t n_cat, Py_ssize_t draw_size,
                 p0, p1, alias_q, alias_i):
        cdef double[::1] vp0 = np.array(p0, dtype=np.float64, order='C', copy=True).ravel()
        cdef double[::1] vp1 = np.array(p1, dtype=np.float64, order='C', copy=True).ravel()
        cdef double[::1] vq = np.array(alias_q, dtype=np.float64, order='C', copy=True).ravel()
        cdef int64_t[::1] vi = np.array(alias_i, dtype=np.int64, order='C', copy=True).ravel()
        self._keep = (vp0, vp1, vq, vi)
        memset(&self.d, 0, sizeof(mc_dist))
        self.zero[0] = 0
        self.zero[1] = 0
        self.d.family = family
        self.d.per_category = 0
        self.d.n_units = n_units
        self.d.n_cat = n_cat
        self.d.draw_size = draw_size
        self.d.p0 = &vp0[0] if vp0.shape[0] else NULL
        self.d.p1 = &vp1[0] if vp1.shape[0] else NULL
        self.d.alias_q = &vq[0] if vq.shape[0] else NULL
        self.d.alias_i = &vi[0] if vi.shape[0] else NULL
        self.d.n_coords = 0
        self.d.t_start = &self.zero[0]
        self.draw_size = draw_size
        self.n_units = n_units
        self.n_cat = n_cat
        self.family = family


# ---------------------------------------------------------------------------
# small numerical helpers
# ---------------------------------------------------------------------------

cdef inline double _sigmoid(double t) noexcept nogil:
    cdef double e
    if t >= 0:
        return 1.0 / (1.0 + exp(-t))
    e = exp(t)
    return e / (1.0 + e)


cdef inline double _logit(double u) noexcept nogil:
    return log(u) - log1p(-u)


cdef double dgamma_dalpha(double z, double a) noexcept nogil:
    """d z / d alpha of a standard Gamma(alpha) variate z at fixed quantile
    (implicit reparameterisation): -(dP(alpha, z)/dalpha) / p(z; alpha), with
    the alpha-derivative of the regularised incomplete gamma function taken
    by central differences of the tail (P or Q) that is accurate at z."""
    cdef double h = 1e-5 * (a if a < 1.0 else 1.0)
    cdef double dP, logpdf
    if z <= 0.0:
        return 0.0
    if z < a:
        dP = (gammainc(a + h, z) - gammainc(a - h, z)) / (2.0 * h)
    else:
        dP = -(gammaincc(a + h, z) - gammaincc(a - h, z)) / (2.0 * h)
    logpdf = (a - 1.0) * log(z) - z - gammaln(a)
    return -dP / exp(logpdf)


def dgamma_dalpha_array(z, a):
    """Vectorised :func:`dgamma_dalpha` (for tests)."""
    zz, aa = np.broadcast_arrays(np.asarray(z, dtype=np.float64), np.asarray(a, dtype=np.float64))
    cdef double[::1] vz = np.ascontiguousarray(zz.ravel())
    cdef double[::1] va = np.ascontiguousarray(aa.ravel())
    out = np.empty(vz.shape[0])
    cdef double[::1] vo = out
    cdef Py_ssize_t i
    with nogil:
        for i in range(vz.shape[0]):
            vo[i] = dgamma_dalpha(vz[i], va[i])
    return out.reshape(zz.shape)


# ---------------------------------------------------------------------------
# Gram statistics
# ---------------------------------------------------------------------------

def gram_width(Py_ssize_t P, Py_ssize_t L):
    """Length of one stream's statistics row."""
    return 3 + P * (L + L * (L + 1) // 2)


cdef void gram_add(const double *Z, Py_ssize_t P, Py_ssize_t L, Py_ssize_t m,
                   const double *v, double *stats, double *shifts, bint first) noexcept nogil:
    """Add m draws' features Z[(q * L + l) * m + i] and values v[i] to a
    stream's row.  `first`: the block is the stream's first; its first draw
    sets the shifts (shifts[0] for v, shifts[1 + q * L + l] for z)."""
    cdef Py_ssize_t q, l, k, i, w, W = L + L * (L + 1) // 2
    cdef double d[16]
    cdef double acc[152]
    cdef double g, sv, sv2
    cdef double *row
    cdef const double *zq
    if m <= 0:
        return
    if first:
        shifts[0] = v[0]
        for q in range(P):
            for l in range(L):
                shifts[1 + q * L + l] = Z[(q * L + l) * m]
    sv = 0.0
    sv2 = 0.0
    for i in range(m):
        g = v[i] - shifts[0]
        sv += g
        sv2 += g * g
    stats[0] += m
    stats[1] += sv
    stats[2] += sv2
    for q in range(P):
        for w in range(W):
            acc[w] = 0.0
        zq = Z + q * L * m
        for i in range(m):
            for l in range(L):
                d[l] = zq[l * m + i] - shifts[1 + q * L + l]
                acc[l] += d[l]
            w = L
            for l in range(L):
                for k in range(l, L):
                    acc[w] += d[l] * d[k]
                    w = w + 1
        row = stats + 3 + q * W
        for w in range(W):
            row[w] += acc[w]


# ---------------------------------------------------------------------------
# prepare: draw a round of blocks and build the points f is evaluated at
# ---------------------------------------------------------------------------

cdef void _prepare_block(int mode, const mc_dist *dist, bitgen_t *bg, Py_ssize_t m,
                         Py_ssize_t W, const double *prm, double *out, double *scratch,
                         mc_workspace *ws) noexcept nogil:
    cdef Py_ssize_t i, c, j, k, K, U, best
    cdef double tau, t, u, v, p, e, eb, mx, tot, z, vp, a, b, g1, g2, s
    cdef double *u1
    cdef double *u2
    if mode == PREP_DRAW:
        mc_draw_block(dist, bg, m, out, ws)
    elif mode == PREP_GAMMAS:
        K = dist.n_cat
        # Beta (K == 1): draw_size = units, params p0 (c1), p1 (c0).
        # Dirichlet: draw_size = units * K, params p0 (units * K).
        for j in range(dist.n_units):
            if K == 1:
                a = dist.p0[j]
                b = dist.p1[j]
                for i in range(m):
                    g1 = random_standard_gamma(bg, a)
                    g2 = random_standard_gamma(bg, b)
                    s = g1 + g2
                    z = g1 / s
                    out[j * m + i] = z
                    out[W * m + j * m + i] = (1.0 - z) / s * dgamma_dalpha(g1, a)
                    out[2 * W * m + j * m + i] = -z / s * dgamma_dalpha(g2, b)
            else:
                for i in range(m):
                    s = 0.0
                    for k in range(K):
                        g1 = random_standard_gamma(bg, dist.p0[j * K + k])
                        out[(j * K + k) * m + i] = g1
                        s = s + g1
                    for k in range(K):
                        g1 = out[(j * K + k) * m + i]
                        out[(j * K + k) * m + i] = g1 / s
                        out[W * m + (j * K + k) * m + i] = (
                            dgamma_dalpha(g1, dist.p0[j * K + k]) / s)
                        out[2 * W * m + (j * K + k) * m + i] = 0.0
    elif mode == PREP_RELAXED_BERN:
        tau = prm[0]
        random_standard_uniform_fill(bg, W * m, scratch)
        for c in range(W):
            for i in range(m):
                t = (prm[1 + c] + _logit(scratch[c * m + i])) / tau
                out[c * m + i] = _sigmoid(t)
                out[W * m + c * m + i] = 1.0 if t > 0 else 0.0
    elif mode == PREP_RELAXED_CAT:
        tau = prm[0]
        K = dist.n_cat
        U = W // K
        random_standard_uniform_fill(bg, W * m, scratch)
        for j in range(U):
            for i in range(m):
                mx = -INFINITY
                best = 0
                for k in range(K):
                    t = (prm[1 + j * K + k] - log(-log(scratch[(j * K + k) * m + i]))) / tau
                    out[(j * K + k) * m + i] = t
                    if t > mx:
                        mx = t
                        best = k
                tot = 0.0
                for k in range(K):
                    e = exp(out[(j * K + k) * m + i] - mx)
                    out[(j * K + k) * m + i] = e
                    tot = tot + e
                for k in range(K):
                    out[(j * K + k) * m + i] = out[(j * K + k) * m + i] / tot
                    out[W * m + (j * K + k) * m + i] = 1.0 if k == best else 0.0
    elif mode == PREP_REBAR_BERN:
        tau = prm[0]
        random_standard_uniform_fill(bg, 2 * W * m, scratch)
        u1 = scratch
        u2 = scratch + W * m
        for c in range(W):
            p = _sigmoid(prm[1 + c])
            for i in range(m):
                u = u1[c * m + i]
                v = u2[c * m + i]
                t = prm[1 + c] + _logit(u)
                b = 1.0 if t > 0 else 0.0
                # z~ ~ p(z | b): u' uniform on the part of (0, 1) that gives b
                if b > 0:
                    vp = (1.0 - p) + v * p
                    a = 1.0 - (1.0 - v) * p * (1.0 - p) / (vp * (1.0 - vp))
                else:
                    vp = v * (1.0 - p)
                    a = 1.0 - v * p * (1.0 - p) / (vp * (1.0 - vp))
                z = prm[1 + c] + _logit(vp)
                out[c * m + i] = b
                out[W * m + c * m + i] = _sigmoid(t / tau)
                out[2 * W * m + c * m + i] = _sigmoid(z / tau)
                out[3 * W * m + c * m + i] = a if isfinite(a) else 0.0
    elif mode == PREP_REBAR_CAT:
        tau = prm[0]
        K = dist.n_cat
        U = W // K
        random_standard_uniform_fill(bg, 2 * W * m, scratch)
        u1 = scratch
        u2 = scratch + W * m
        for j in range(U):
            for i in range(m):
                # z = log pi + Gumbel, b = argmax z
                mx = -INFINITY
                best = 0
                for k in range(K):
                    t = prm[1 + j * K + k] - log(-log(u1[(j * K + k) * m + i]))
                    out[W * m + (j * K + k) * m + i] = t
                    if t > mx:
                        mx = t
                        best = k
                _softmax_col(out + W * m + j * K * m, K, m, i, tau)
                # z~ ~ p(z | b): the max is Gumbel(0), the others truncated below it
                eb = -log(u2[(j * K + best) * m + i])
                mx = -INFINITY
                for k in range(K):
                    out[(j * K + k) * m + i] = 1.0 if k == best else 0.0
                    if k == best:
                        t = -log(eb)
                        out[3 * W * m + (j * K + k) * m + i] = 0.0
                    else:
                        p = exp(prm[1 + j * K + k])
                        e = -log(u2[(j * K + k) * m + i]) / p
                        t = -log(e + eb)
                        # a probability that underflowed to 0 (logits +-700):
                        # e = inf, z~_k = -inf, and e / (e + eb) -> 1
                        out[3 * W * m + (j * K + k) * m + i] = (e / (e + eb) if isfinite(e)
                                                                else 1.0)
                    out[2 * W * m + (j * K + k) * m + i] = t
                _softmax_col(out + 2 * W * m + j * K * m, K, m, i, tau)
    elif mode == PREP_DISARM:
        random_standard_uniform_fill(bg, W * m, scratch)
        for c in range(W):
            p = _sigmoid(prm[c])
            for i in range(m):
                u = scratch[c * m + i]
                out[c * m + i] = 1.0 if u < p else 0.0
                out[W * m + c * m + i] = 1.0 if (1.0 - u) < p else 0.0


cdef inline void _softmax_col(double *col, Py_ssize_t K, Py_ssize_t m, Py_ssize_t i,
                              double tau) noexcept nogil:
    """col[k * m + i] <- softmax_k(col[. * m + i] / tau)."""
    cdef Py_ssize_t k
    cdef double mx = -INFINITY, tot = 0.0, e
    for k in range(K):
        if col[k * m + i] > mx:
            mx = col[k * m + i]
    for k in range(K):
        e = exp((col[k * m + i] - mx) / tau)
        col[k * m + i] = e
        tot = tot + e
    for k in range(K):
        col[k * m + i] = col[k * m + i] / tot


def prepare_round(VrDist dist, list bitgens, int64_t[::1] blocks, int64_t[::1] slots,
                  int64_t n, int64_t block_size, int n_threads, int mode, Py_ssize_t W,
                  const double[::1] prm, double[:, ::1] out):
    """Draw block blocks[r] of stream slot slots[r] (bitgens[slots[r]]) and
    write what `mode` makes of it into row r of out (IN: dist, prm; OUT: out)."""
    cdef Py_ssize_t R = blocks.shape[0], r, m
    cdef bitgen_t **bgs = <bitgen_t **> malloc(sizeof(bitgen_t *) * max(R, 1))
    cdef const double *pp = &prm[0] if prm.shape[0] else NULL
    cdef double *scratch
    cdef mc_workspace *ws
    cdef int[::1] fail = np.zeros(1, dtype=np.intc)
    if bgs == NULL:
        raise MemoryError()
    n_threads = max(1, min(n_threads, max(R, 1)))
    try:
        for r in range(R):
            bgs[r] = _bitgen(bitgens[slots[r]])
        with nogil, parallel(num_threads=n_threads):
            scratch = <double *> malloc(sizeof(double) * (2 * W * block_size + 1))
            ws = <mc_workspace *> malloc(sizeof(mc_workspace))
            if scratch == NULL or ws == NULL:
                fail[0] = 1
            elif mc_workspace_init(ws, &dist.d, 1) != 0:
                fail[0] = 1
            else:
                for r in prange(R, schedule='dynamic'):
                    m = <Py_ssize_t> (block_size if (blocks[r] + 1) * block_size <= n
                                      else n - blocks[r] * block_size)
                    _prepare_block(mode, &dist.d, bgs[r], m, W, pp, &out[r, 0], scratch, ws)
                mc_workspace_free(ws)
            free(scratch)
            free(ws)
        if fail[0]:
            raise MemoryError("could not allocate the kernels' block buffers")
    finally:
        free(bgs)


# ---------------------------------------------------------------------------
# features + accumulation, one function per estimator
# ---------------------------------------------------------------------------

cdef inline Py_ssize_t _rows(int64_t b, int64_t block_size, int64_t n) noexcept nogil:
    return <Py_ssize_t> (block_size if (b + 1) * block_size <= n else n - b * block_size)


cdef void _scores(Py_ssize_t P, const int64_t *ts, const int *tk, const int64_t *tc,
                  const double *ta, const double *tb, const double *tcc,
                  const double *xt, Py_ssize_t m, double *out) noexcept nogil:
    """out[q * m + i] = score coordinate q at draw i (table terms, as the core)."""
    cdef Py_ssize_t q, t, i
    cdef const double *x
    cdef double a, b, c, d
    cdef int kind
    cdef double *o
    for q in range(P):
        o = out + q * m
        for i in range(m):
            o[i] = 0.0
        for t in range(ts[q], ts[q + 1]):
            kind = tk[t]
            x = xt + tc[t] * m
            a = ta[t]
            b = tb[t]
            c = tcc[t]
            if kind == SK_AFFINE:
                for i in range(m):
                    o[i] += a * x[i] + b
            elif kind == SK_LOG_AFFINE:
                for i in range(m):
                    o[i] += a * log(x[i]) + b
            elif kind == SK_LOG1M_AFFINE:
                for i in range(m):
                    o[i] += a * log1p(-x[i]) + b
            elif kind == SK_QUAD:
                for i in range(m):
                    d = x[i] - c
                    o[i] += a * d * d + b
            elif kind == SK_LOG_QUAD:
                for i in range(m):
                    d = log(x[i]) - c
                    o[i] += a * d * d + b
            elif kind == SK_CATEGORY:
                for i in range(m):
                    o[i] += (a if x[i] == c else 0.0) + b


cdef void _pair_means(double *a, const double *b, Py_ssize_t m) noexcept nogil:
    """a[i] <- (a[i] + b[i]) / 2 for an antithetic pair's terms, snapped to 0
    where they cancel to rounding level relative to the block's typical
    magnitude: a term that is odd under the mirror then gives a feature
    that is exactly 0, not rounding noise that a fitted coefficient could
    amplify.  The values of f arrive with their offset taken out (see the
    module docstring), so the block's magnitude is that of f's spread, and a
    genuine pair mean is never this small relative to it."""
    cdef Py_ssize_t i
    cdef double scale = 0.0, t
    for i in range(m):
        scale += fabs(a[i]) + fabs(b[i])
    scale = 1e-11 * scale / m if m > 0 else 0.0
    for i in range(m):
        t = a[i] + b[i]
        a[i] = 0.0 if fabs(t) <= scale else 0.5 * t


def acc_score(int64_t[::1] ts, int[::1] tk, int64_t[::1] tc, double[::1] ta, double[::1] tb,
              double[::1] tcc, int64_t[::1] blocks, int64_t[::1] slots, int64_t n,
              int64_t block_size, int64_t n_streams, int n_threads, Py_ssize_t ds,
              double[:, ::1] xt, double[:, ::1] xt2, double[:, ::1] F, double[:, ::1] F2,
              bint antithetic, bint add_score, Py_ssize_t group,
              double[:, ::1] stats, double[:, ::1] shifts):
    """Score-function features: per coordinate q, z_l = F_l * s_q (l < J) and,
    with add_score, z_J = s_q (the baseline's control variate).

    antithetic: each draw i is paired with the draw xt2 (values F2); the
    features are the pair's averages.  group > 1: leave-one-out groups of
    `group` consecutive draws, z_0 = 1/(k-1) sum_i (F_0i - mean F_0) s_qi
    (only J = 1, no antithetic).
    """
    cdef Py_ssize_t P = ts.shape[0] - 1, J = F.shape[0], R = blocks.shape[0]
    cdef Py_ssize_t L = J + (1 if add_score else 0)
    cdef Py_ssize_t r, m, mg, i, q, l, g, k, base
    cdef double *S1
    cdef double *S2
    cdef double *Z
    cdef double *v
    cdef double *v2
    cdef double fbar
    cdef int[::1] fail = np.zeros(1, dtype=np.intc)
    if L > MAXL:
        raise ValueError(f"at most {MAXL} features per coordinate")
    with nogil, parallel(num_threads=max(1, min(n_threads, R))):
        S1 = <double *> malloc(sizeof(double) * (P * block_size + 1))
        S2 = <double *> malloc(sizeof(double) * (P * block_size + 1))
        Z = <double *> malloc(sizeof(double) * (P * L * block_size + 1))
        v = <double *> malloc(sizeof(double) * (block_size + 1))
        v2 = <double *> malloc(sizeof(double) * (block_size + 1))
        if S1 == NULL or S2 == NULL or Z == NULL or v == NULL or v2 == NULL:
            fail[0] = 1
        else:
            for r in prange(R, schedule='dynamic'):
                m = _rows(blocks[r], block_size, n)
                base = r * block_size
                _scores(P, &ts[0], &tk[0] if tk.shape[0] else NULL, &tc[0] if tc.shape[0] else NULL,
                        &ta[0] if ta.shape[0] else NULL, &tb[0] if tb.shape[0] else NULL,
                        &tcc[0] if tcc.shape[0] else NULL, &xt[r, 0], m, S1)
                if antithetic:
                    _scores(P, &ts[0], &tk[0] if tk.shape[0] else NULL,
                            &tc[0] if tc.shape[0] else NULL, &ta[0] if ta.shape[0] else NULL,
                            &tb[0] if tb.shape[0] else NULL, &tcc[0] if tcc.shape[0] else NULL,
                            &xt2[r, 0], m, S2)
                if group > 1:
                    mg = m // group
                    for g in range(mg):
                        fbar = 0.0
                        for k in range(group):
                            fbar = fbar + F[0, base + g * group + k]
                        fbar = fbar / group
                        v[g] = fbar
                        for q in range(P):
                            Z[q * mg + g] = 0.0
                            for k in range(group):
                                Z[q * mg + g] += ((F[0, base + g * group + k] - fbar)
                                                  * S1[q * m + g * group + k])
                            Z[q * mg + g] = Z[q * mg + g] / (group - 1)
                    gram_add(Z, P, 1, mg, v, &stats[slots[r], 0], &shifts[slots[r], 0],
                             blocks[r] < n_streams)
                else:
                    for i in range(m):
                        v[i] = F[0, base + i] if not antithetic else 0.5 * (
                            F[0, base + i] + F2[0, base + i])
                    for q in range(P):
                        for l in range(J):
                            if antithetic:
                                for i in range(m):
                                    Z[(q * L + l) * m + i] = F[l, base + i] * S1[q * m + i]
                                    v2[i] = F2[l, base + i] * S2[q * m + i]
                                _pair_means(&Z[(q * L + l) * m], v2, m)
                            else:
                                for i in range(m):
                                    Z[(q * L + l) * m + i] = F[l, base + i] * S1[q * m + i]
                        if add_score:
                            if antithetic:
                                for i in range(m):
                                    Z[(q * L + J) * m + i] = S1[q * m + i]
                                    v2[i] = S2[q * m + i]
                                _pair_means(&Z[(q * L + J) * m], v2, m)
                            else:
                                for i in range(m):
                                    Z[(q * L + J) * m + i] = S1[q * m + i]
                    gram_add(Z, P, L, m, v, &stats[slots[r], 0], &shifts[slots[r], 0],
                             blocks[r] < n_streams)
        free(S1)
        free(S2)
        free(Z)
        free(v)
        free(v2)
    if fail[0]:
        raise MemoryError()


cdef inline double _tangent(int kind, double x, double aux0, double aux1, double a,
                            double b) noexcept nogil:
    if kind == TK_ONE:
        return 1.0
    if kind == TK_NSCALE:
        return (x - a) / b
    if kind == TK_LNLOC:
        return x
    if kind == TK_LNSCALE:
        return x * (log(x) - a) / b
    if kind == TK_NEG_X_OVER:
        return -x / a
    if kind == TK_GAMMA_CONC:
        return dgamma_dalpha(x * b, a) / b
    if kind == TK_AUX0:
        return aux0
    if kind == TK_AUX1:
        return aux1
    return 0.0


def acc_pathwise(int64_t[::1] ts, int[::1] tk, int64_t[::1] tc, double[::1] ta,
                 double[::1] tb, int64_t[::1] blocks, int64_t[::1] slots, int64_t n,
                 int64_t block_size, int64_t n_streams, int n_threads, Py_ssize_t ds,
                 bint has_aux, double[:, ::1] xb, double[:, ::1] G, double[::1] fv,
                 double[:, ::1] stats, double[:, ::1] shifts):
    """Pathwise features z_q = sum over the terms t of q of
    grad_f[col_t] * dx_col / dtheta_q (tangent kind tk[t]).

    xb rows hold x (ds * m) and, with has_aux, aux0 and aux1 (ds * m each);
    G[r * B + i, c] is grad_f at draw i of block r, fv[r * B + i] is f.
    """
    cdef Py_ssize_t P = ts.shape[0] - 1, R = blocks.shape[0]
    cdef Py_ssize_t r, m, i, q, t, c, j, k, K, base
    cdef double *Z
    cdef double *gx
    cdef double acc, a0, a1
    cdef const double *x
    cdef int[::1] fail = np.zeros(1, dtype=np.intc)
    with nogil, parallel(num_threads=max(1, min(n_threads, R))):
        Z = <double *> malloc(sizeof(double) * (P * block_size + 1))
        gx = <double *> malloc(sizeof(double) * (ds + 1))
        if Z == NULL or gx == NULL:
            fail[0] = 1
        else:
            for r in prange(R, schedule='dynamic'):
                m = _rows(blocks[r], block_size, n)
                base = r * block_size
                x = &xb[r, 0]
                for i in range(m):
                    for q in range(P):
                        acc = 0.0
                        for t in range(ts[q], ts[q + 1]):
                            c = tc[t]
                            if tk[t] == TK_DIRICHLET:
                                # a = first column of the unit, b = K
                                j = <Py_ssize_t> ta[t]
                                K = <Py_ssize_t> tb[t]
                                a0 = 0.0
                                for k in range(K):
                                    a0 = a0 + G[base + i, j + k] * x[(j + k) * m + i]
                                acc = acc + x[ds * m + c * m + i] * (G[base + i, c] - a0)
                            else:
                                a0 = x[ds * m + c * m + i] if has_aux else 0.0
                                a1 = x[2 * ds * m + c * m + i] if has_aux else 0.0
                                acc = acc + G[base + i, c] * _tangent(
                                    tk[t], x[c * m + i], a0, a1, ta[t], tb[t])
                        Z[q * m + i] = acc
                gram_add(Z, P, 1, m, &fv[base], &stats[slots[r], 0], &shifts[slots[r], 0],
                         blocks[r] < n_streams)
        free(Z)
        free(gx)
    if fail[0]:
        raise MemoryError()


cdef inline void _to_params(double *y, Py_ssize_t m, Py_ssize_t i, Py_ssize_t W,
                            Py_ssize_t K, int conv, const double *cv,
                            const double *cvs) noexcept nogil:
    """Convert a logit-space gradient y[c * m + i] (c < W) to the user's
    parameters: conv 0 = logits (nothing), 1 = Bernoulli probs (times cv[c]
    = 1 / (p (1 - p))), 2 = Categorical probs (y_k / p_k - sum_j y_j / sum p,
    cv = 1 / p, cvs = 1 / sum p per unit)."""
    cdef Py_ssize_t c, j, k
    cdef double s
    if conv == 1:
        for c in range(W):
            y[c * m + i] = y[c * m + i] * cv[c]
    elif conv == 2:
        for j in range(W // K):
            s = 0.0
            for k in range(K):
                s = s + y[(j * K + k) * m + i]
            for k in range(K):
                y[(j * K + k) * m + i] = y[(j * K + k) * m + i] * cv[j * K + k] - s * cvs[j]


def acc_relaxed(int64_t[::1] blocks, int64_t[::1] slots, int64_t n, int64_t block_size,
                int64_t n_streams, int n_threads, Py_ssize_t W, Py_ssize_t K, double tau,
                int conv, const double[::1] cv, const double[::1] cvs,
                double[:, ::1] zb, double[:, ::1] G, double[::1] fv,
                double[:, ::1] stats, double[:, ::1] shifts):
    """Relaxed (Gumbel-softmax / Concrete) pathwise features.  K == 1:
    Bernoulli, dz/dlogit = z (1 - z) / tau; K > 1: Categorical,
    d z_k / d logit_j = z_k (delta_kj - z_j) / tau.  zb rows hold the relaxed
    z (W * m); G the gradient of f (at z, or at the hard sample for the
    straight-through variant)."""
    cdef Py_ssize_t R = blocks.shape[0], r, m, i, c, j, k, base
    cdef double *Z
    cdef double z, dot
    cdef const double *x
    cdef int[::1] fail = np.zeros(1, dtype=np.intc)
    with nogil, parallel(num_threads=max(1, min(n_threads, R))):
        Z = <double *> malloc(sizeof(double) * (W * block_size + 1))
        if Z == NULL:
            fail[0] = 1
        else:
            for r in prange(R, schedule='dynamic'):
                m = _rows(blocks[r], block_size, n)
                base = r * block_size
                x = &zb[r, 0]
                for i in range(m):
                    if K == 1:
                        for c in range(W):
                            z = x[c * m + i]
                            Z[c * m + i] = G[base + i, c] * z * (1.0 - z) / tau
                    else:
                        for j in range(W // K):
                            dot = 0.0
                            for k in range(K):
                                dot = dot + G[base + i, j * K + k] * x[(j * K + k) * m + i]
                            for k in range(K):
                                Z[(j * K + k) * m + i] = (x[(j * K + k) * m + i]
                                                          * (G[base + i, j * K + k] - dot) / tau)
                    _to_params(Z, m, i, W, K, conv, &cv[0], &cvs[0])
                gram_add(Z, W, 1, m, &fv[base], &stats[slots[r], 0], &shifts[slots[r], 0],
                         blocks[r] < n_streams)
        free(Z)
    if fail[0]:
        raise MemoryError()


def acc_rebar(int64_t[::1] blocks, int64_t[::1] slots, int64_t n, int64_t block_size,
              int64_t n_streams, int n_threads, Py_ssize_t W, Py_ssize_t K, double lam,
              const double[::1] probs, int conv, const double[::1] cv, const double[::1] cvs,
              bint add_score, double[:, ::1] buf, double[:, ::1] F, double[:, ::1] Gz,
              double[:, ::1] Gzt, double[:, ::1] stats, double[:, ::1] shifts):
    """REBAR features per coordinate: z_0 = f(b) s (REINFORCE),
    z_1 = -f(s(z~)) s + d/dtheta f(s(z)) - d/dtheta f(s(z~)) (the relaxed
    control variate, mean 0; the estimator is z_0 + eta z_1) and, with
    add_score, z_2 = s.  buf rows: b | s(z) | s(z~) | tangent factor (W * m
    each); F rows: f(b), f(s(z)), f(s(z~)); Gz, Gzt: grad_f at s(z), s(z~).
    probs: the normalised probabilities (W)."""
    cdef Py_ssize_t R = blocks.shape[0], r, m, i, c, j, k, base, L
    cdef double *Z
    cdef double *T
    cdef double sc, sz, szt, a, dot, dott, wsum
    cdef const double *x
    cdef int[::1] fail = np.zeros(1, dtype=np.intc)
    L = 3 if add_score else 2
    with nogil, parallel(num_threads=max(1, min(n_threads, R))):
        Z = <double *> malloc(sizeof(double) * (W * L * block_size + 1))
        T = <double *> malloc(sizeof(double) * (3 * W * block_size + 1))
        if Z == NULL or T == NULL:
            fail[0] = 1
        else:
            for r in prange(R, schedule='dynamic'):
                m = _rows(blocks[r], block_size, n)
                base = r * block_size
                x = &buf[r, 0]
                # T: score (0), d f(s(z)) (1), d f(s(z~)) (2), in logit space
                for i in range(m):
                    if K == 1:
                        for c in range(W):
                            sz = x[W * m + c * m + i]
                            szt = x[2 * W * m + c * m + i]
                            T[c * m + i] = x[c * m + i] - probs[c]
                            T[W * m + c * m + i] = Gz[base + i, c] * sz * (1.0 - sz) / lam
                            T[2 * W * m + c * m + i] = (Gzt[base + i, c] * szt * (1.0 - szt) / lam
                                                        * x[3 * W * m + c * m + i])
                    else:
                        for j in range(W // K):
                            dot = 0.0
                            dott = 0.0
                            for k in range(K):
                                c = j * K + k
                                dot = dot + Gz[base + i, c] * x[W * m + c * m + i]
                                dott = dott + Gzt[base + i, c] * x[2 * W * m + c * m + i]
                            wsum = 0.0
                            for k in range(K):
                                c = j * K + k
                                T[c * m + i] = x[c * m + i] - probs[c]
                                T[W * m + c * m + i] = (x[W * m + c * m + i]
                                                        * (Gz[base + i, c] - dot) / lam)
                                a = (x[2 * W * m + c * m + i] * (Gzt[base + i, c] - dott) / lam
                                     * x[3 * W * m + c * m + i])
                                T[2 * W * m + c * m + i] = a
                                wsum = wsum + a
                            for k in range(K):
                                c = j * K + k
                                T[2 * W * m + c * m + i] -= probs[c] * wsum
                    _to_params(T, m, i, W, K, conv, &cv[0], &cvs[0])
                    _to_params(T + W * m, m, i, W, K, conv, &cv[0], &cvs[0])
                    _to_params(T + 2 * W * m, m, i, W, K, conv, &cv[0], &cvs[0])
                    for c in range(W):
                        sc = T[c * m + i]
                        Z[(c * L) * m + i] = F[0, base + i] * sc
                        Z[(c * L + 1) * m + i] = (-F[2, base + i] * sc + T[W * m + c * m + i]
                                                  - T[2 * W * m + c * m + i])
                        if add_score:
                            Z[(c * L + 2) * m + i] = sc
                gram_add(Z, W, L, m, &F[0, base], &stats[slots[r], 0], &shifts[slots[r], 0],
                         blocks[r] < n_streams)
        free(Z)
        free(T)
    if fail[0]:
        raise MemoryError()


def acc_disarm(int64_t[::1] blocks, int64_t[::1] slots, int64_t n, int64_t block_size,
               int64_t n_streams, int n_threads, Py_ssize_t W, const double[::1] logits,
               int conv, const double[::1] cv, double[:, ::1] buf, double[:, ::1] F,
               double[:, ::1] stats, double[:, ::1] shifts):
    """DisARM features: z_c = 1/2 (f(b) - f(b~)) (-1)^b~_c [b_c != b~_c]
    sigma(|logit_c|); value 1/2 (f(b) + f(b~)).  buf rows: b | b~."""
    cdef Py_ssize_t R = blocks.shape[0], r, m, i, c, base
    cdef double *Z
    cdef double *v
    cdef double d, bt
    cdef const double *x
    cdef int[::1] fail = np.zeros(1, dtype=np.intc)
    with nogil, parallel(num_threads=max(1, min(n_threads, R))):
        Z = <double *> malloc(sizeof(double) * (W * block_size + 1))
        v = <double *> malloc(sizeof(double) * (block_size + 1))
        if Z == NULL or v == NULL:
            fail[0] = 1
        else:
            for r in prange(R, schedule='dynamic'):
                m = _rows(blocks[r], block_size, n)
                base = r * block_size
                x = &buf[r, 0]
                for i in range(m):
                    d = 0.5 * (F[0, base + i] - F[1, base + i])
                    v[i] = 0.5 * (F[0, base + i] + F[1, base + i])
                    for c in range(W):
                        bt = x[W * m + c * m + i]
                        if x[c * m + i] == bt:
                            Z[c * m + i] = 0.0
                        else:
                            Z[c * m + i] = ((-d if bt > 0 else d) * _sigmoid(fabs(logits[c]))
                                            * (cv[c] if conv == 1 else 1.0))
                gram_add(Z, W, 1, m, v, &stats[slots[r], 0], &shifts[slots[r], 0],
                         blocks[r] < n_streams)
        free(Z)
        free(v)
    if fail[0]:
        raise MemoryError()
