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
from numpy.random cimport bitgen_t
from numpy.random.c_distributions cimport random_standard_uniform_fill, random_standard_gamma
from scipy.special.cython_special cimport gammainc, gammaincc, gammaln

from mcscore._core cimport (
    mc_round, mc_block_fn, mc_round_init, mc_round_free, mc_round_threads, mc_drive, mc_poll,
    mc_alloc_doubles,
)
from mcscore._kernels cimport (
    mc_dist, mc_workspace, mc_workspaces, mc_workspaces_free, mc_draw_block_polled,
    mc_score_coord, mc_set_terms, mc_set_draw, mc_unit_params,
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
    POLL_ROWS = 1024       # rows (draws) between two polls of the driver


cdef inline bint _stop(mc_round *rd, int tid, Py_ssize_t i) noexcept nogil:
    """At every POLL_ROWS-th row i: poll the driver (Ctrl-C, or an error
    elsewhere); True when the run must stop (its results are discarded)."""
    return (i & (POLL_ROWS - 1)) == POLL_ROWS - 1 and mc_poll(rd, tid)


cdef bint _fill_uniform(bitgen_t *bg, Py_ssize_t cnt, double *out, mc_round *rd,
                        int tid) noexcept nogil:
    """random_standard_uniform_fill in pieces of POLL_ROWS * 64 values with a
    poll in between (the same numbers in the same order); True: stopped."""
    cdef Py_ssize_t i0 = 0, k
    while i0 < cnt:
        k = cnt - i0 if cnt - i0 < POLL_ROWS * 64 else POLL_ROWS * 64
        random_standard_uniform_fill(bg, k, out + i0)
        i0 += k
        if i0 < cnt and mc_poll(rd, tid):
            return True
    return False


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
        memset(&self.d, 0, sizeof(mc_dist))
        self._keep = mc_set_draw(&self.d, family, False, n_units, n_cat, draw_size, p0, p1,
                                 alias_q, alias_i)
        self.zero[0] = 0
        self.zero[1] = 0
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


cdef bint gram_add(const double *Z, Py_ssize_t P, Py_ssize_t L, Py_ssize_t m,
                   const double *v, double *stats, double *shifts, bint first,
                   mc_round *rd, int tid) noexcept nogil:
    """Add m draws' features Z[(q * L + l) * m + i] and values v[i] to a
    stream's row.  `first`: the block is the stream's first; its first draw
    sets the shifts (shifts[0] for v, shifts[1 + q * L + l] for z).  Polls
    the driver (rd, thread tid) as it goes: True when it stopped early."""
    cdef Py_ssize_t q, l, k, i, w, W = L + L * (L + 1) // 2
    cdef double d[16]
    cdef double acc[152]
    cdef double g, sv, sv2
    cdef double *row
    cdef const double *zq
    if m <= 0:
        return False
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
            if _stop(rd, tid, i):
                return True
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
    return False


# ---------------------------------------------------------------------------
# prepare: draw a round of blocks and build the points f is evaluated at
# ---------------------------------------------------------------------------

cdef bint _prepare_block(int mode, const mc_dist *dist, bitgen_t *bg, Py_ssize_t m,
                         Py_ssize_t W, const double *prm, double *out, double *scratch,
                         mc_workspace *ws, mc_round *rd, int tid) noexcept nogil:
    """Fill `out` for one block (see the PREP_* modes); polls the driver (rd,
    thread tid) as it goes: True when it stopped early."""
    cdef Py_ssize_t i, c, j, k, K, U, best
    cdef double tau, t, u, v, p, e, eb, mx, tot, z, vp, a, b, g1, g2, s
    cdef double *u1
    cdef double *u2
    cdef const double *pj
    if mode == PREP_DRAW:
        return mc_draw_block_polled(dist, bg, m, out, NULL, ws, rd, tid)
    elif mode == PREP_GAMMAS:
        K = dist.n_cat
        # Beta (K == 1): draw_size = units, unit block [c1, c0].
        # Dirichlet: draw_size = units * K, unit block [concentration (K), 0].
        for j in range(dist.n_units):
            pj = mc_unit_params(dist, j)
            if K == 1:
                a = pj[0]
                b = pj[1]
                for i in range(m):
                    if _stop(rd, tid, i):
                        return True
                    g1 = random_standard_gamma(bg, a)
                    g2 = random_standard_gamma(bg, b)
                    s = g1 + g2
                    z = g1 / s
                    out[j * m + i] = z
                    out[W * m + j * m + i] = (1.0 - z) / s * dgamma_dalpha(g1, a)
                    out[2 * W * m + j * m + i] = -z / s * dgamma_dalpha(g2, b)
            else:
                for i in range(m):
                    if _stop(rd, tid, i):
                        return True
                    s = 0.0
                    for k in range(K):
                        g1 = random_standard_gamma(bg, pj[k])
                        out[(j * K + k) * m + i] = g1
                        s = s + g1
                    for k in range(K):
                        g1 = out[(j * K + k) * m + i]
                        out[(j * K + k) * m + i] = g1 / s
                        out[W * m + (j * K + k) * m + i] = (
                            dgamma_dalpha(g1, pj[k]) / s)
                        out[2 * W * m + (j * K + k) * m + i] = 0.0
    elif mode == PREP_RELAXED_BERN:
        tau = prm[0]
        if _fill_uniform(bg, W * m, scratch, rd, tid):
            return True
        for c in range(W):
            for i in range(m):
                if _stop(rd, tid, i):
                    return True
                t = (prm[1 + c] + _logit(scratch[c * m + i])) / tau
                out[c * m + i] = _sigmoid(t)
                out[W * m + c * m + i] = 1.0 if t > 0 else 0.0
    elif mode == PREP_RELAXED_CAT:
        tau = prm[0]
        K = dist.n_cat
        U = W // K
        if _fill_uniform(bg, W * m, scratch, rd, tid):
            return True
        for j in range(U):
            for i in range(m):
                if _stop(rd, tid, i):
                    return True
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
        if _fill_uniform(bg, 2 * W * m, scratch, rd, tid):
            return True
        u1 = scratch
        u2 = scratch + W * m
        for c in range(W):
            p = _sigmoid(prm[1 + c])
            for i in range(m):
                if _stop(rd, tid, i):
                    return True
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
        if _fill_uniform(bg, 2 * W * m, scratch, rd, tid):
            return True
        u1 = scratch
        u2 = scratch + W * m
        for j in range(U):
            for i in range(m):
                if _stop(rd, tid, i):
                    return True
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
        if _fill_uniform(bg, W * m, scratch, rd, tid):
            return True
        for c in range(W):
            p = _sigmoid(prm[c])
            for i in range(m):
                if _stop(rd, tid, i):
                    return True
                u = scratch[c * m + i]
                out[c * m + i] = 1.0 if u < p else 0.0
                out[W * m + c * m + i] = 1.0 if (1.0 - u) < p else 0.0
    return False


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


# ---------------------------------------------------------------------------
# rounds on the core's driver (mc_drive): one context, one callback per kernel
# ---------------------------------------------------------------------------

ctypedef struct _vr_t:
    # round arrays: row r of X at X + r * X_ld (blocks, column-major)
    const double *x              # xt / xb / zb / buf (prepare: out, written)
    Py_ssize_t x_ld
    const double *x2             # xt2 (antithetic pairs)
    Py_ssize_t x2_ld
    # values computed in Python, indexed r * B + i: F row l at F + l * F_ld,
    # grad_f at G + (r * B + i) * G_ld + c
    const double *F
    Py_ssize_t F_ld
    const double *F2
    Py_ssize_t F2_ld
    const double *G
    Py_ssize_t G_ld
    const double *G2
    Py_ssize_t G2_ld
    const double *fv
    # per-stream rows (slot s) of the Gram statistics and their shifts
    double *stats
    Py_ssize_t stats_ld
    double *shifts
    Py_ssize_t shifts_ld
    # the score table (acc_score; family -1: no SK_FAMILY terms)
    mc_dist tab
    # the tangent table of coordinate q: terms ts[q] .. ts[q + 1]
    Py_ssize_t P
    const int64_t *ts
    const int *tk
    const int64_t *tc
    const double *ta
    const double *tb
    const double *tcc
    # the estimator's parameters
    Py_ssize_t J, L, W, K, ds, group
    bint antithetic, add_score, has_aux
    int conv, mode
    double tau
    const double *prm
    const double *probs
    const double *cv
    const double *cvs
    const mc_dist *dist
    mc_workspace *wss            # prepare: one workspace per thread
    # per-thread scratch: buf + tid * buf_len doubles
    double *buf
    Py_ssize_t buf_len


cdef const double *_vec(const double[::1] a) noexcept:
    return &a[0] if a is not None and a.shape[0] else NULL


cdef const double *_mat(const double[:, ::1] a, Py_ssize_t *ld) noexcept:
    """Data of a C-contiguous matrix (NULL when empty); ld: its row length."""
    if a is None:
        ld[0] = 0
        return NULL
    ld[0] = a.shape[1]
    return &a[0, 0] if a.shape[0] and a.shape[1] else NULL


cdef void _table(_vr_t *c, int64_t[::1] ts, int[::1] tk, int64_t[::1] tc, double[::1] ta,
                 double[::1] tb, double[::1] tcc) noexcept:
    c.P = ts.shape[0] - 1
    c.ts = &ts[0]
    c.tk = &tk[0] if tk.shape[0] else NULL
    c.tc = &tc[0] if tc.shape[0] else NULL
    c.ta = _vec(ta)
    c.tb = _vec(tb)
    c.tcc = _vec(tcc)


cdef void _arrays(_vr_t *c, double[:, ::1] x, double[:, ::1] F, double[:, ::1] G,
                  double[:, ::1] stats, double[:, ::1] shifts, double[:, ::1] x2=None,
                  double[:, ::1] F2=None, double[:, ::1] G2=None) noexcept:
    """The round's arrays (None: not used by the kernel)."""
    c.x = _mat(x, &c.x_ld)
    c.x2 = _mat(x2, &c.x2_ld)
    c.F = _mat(F, &c.F_ld)
    c.F2 = _mat(F2, &c.F2_ld)
    c.G = _mat(G, &c.G_ld)
    c.G2 = _mat(G2, &c.G2_ld)
    c.stats = <double *> _mat(stats, &c.stats_ld)
    c.shifts = <double *> _mat(shifts, &c.shifts_ld)


cdef int _round(_vr_t *c, mc_block_fn fn, list bitgens, int64_t[::1] blocks,
                int64_t[::1] slots, int64_t n, int64_t block_size, int64_t n_streams,
                int n_threads, Py_ssize_t per_thread) except -1:
    """Run fn on every block of the round (mc_drive) with per_thread scratch
    doubles per thread (c.buf) and, for prepare (c.dist set), a workspace
    per thread."""
    cdef mc_round rd
    cdef Py_ssize_t R = blocks.shape[0]
    cdef int nt
    mc_round_init(&rd, n, n_streams, block_size, n_threads, R, &blocks[0] if R else NULL,
                  &slots[0] if R else NULL, bitgens)
    nt = mc_round_threads(&rd)
    c.buf = NULL
    c.wss = NULL
    c.buf_len = per_thread
    try:
        c.buf = mc_alloc_doubles(nt * per_thread, "the estimator's block buffers")
        if c.dist != NULL:
            c.wss = mc_workspaces(c.dist, nt, 1)
        return mc_drive(&rd, fn, c)
    finally:
        free(c.buf)
        if c.wss != NULL:
            mc_workspaces_free(c.wss, nt)
        mc_round_free(&rd)


cdef _vr_t _context() noexcept:
    cdef _vr_t c
    memset(&c, 0, sizeof(_vr_t))
    return c


cdef int _cb_prepare(void *ctx, mc_round *rd, Py_ssize_t r, int64_t b, Py_ssize_t m,
                     int tid) noexcept nogil:
    cdef _vr_t *c = <_vr_t *> ctx
    cdef double *out = <double *> c.x + r * c.x_ld
    return _prepare_block(c.mode, c.dist, rd.bitgens[r], m, c.W, c.prm, out,
                          c.buf + tid * c.buf_len, &c.wss[tid], rd, tid)


def prepare_round(VrDist dist, list bitgens, int64_t[::1] blocks, int64_t[::1] slots,
                  int64_t n, int64_t block_size, int n_threads, int mode, Py_ssize_t W,
                  const double[::1] prm, double[:, ::1] out):
    """Draw block blocks[r] of stream slot slots[r] (bitgens[slots[r]]) and
    write what `mode` makes of it into row r of out (IN: dist, prm; OUT: out)."""
    cdef _vr_t c = _context()
    c.mode = mode
    c.dist = &dist.d
    c.W = W
    c.prm = _vec(prm)
    _arrays(&c, out, None, None, None, None)
    _round(&c, _cb_prepare, bitgens, blocks, slots, n, block_size, 0, n_threads,
           2 * W * block_size + 1)


# ---------------------------------------------------------------------------
# features + accumulation, one function per estimator
# ---------------------------------------------------------------------------

cdef bint _scores(const mc_dist *tab, const double *xt, Py_ssize_t m, double *out,
                  mc_round *rd, int tid) noexcept nogil:
    """out[q * m + i] = score coordinate q at draw i, by the core's one score
    evaluator (mc_score_coord).  Polls the driver (rd, thread tid) per
    coordinate: True when it stopped."""
    cdef Py_ssize_t q
    for q in range(tab.n_coords):
        if mc_poll(rd, tid):
            return True
        mc_score_coord(tab, q, xt, m, NULL, m, out + q * m)
    return False


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


cdef int _cb_score(void *ctx, mc_round *rd, Py_ssize_t r, int64_t blk, Py_ssize_t m,
                   int tid) noexcept nogil:
    cdef _vr_t *c = <_vr_t *> ctx
    cdef Py_ssize_t P = c.P, J = c.J, L = c.L, B = rd.block_size, group = c.group
    cdef Py_ssize_t mg, i, q, l, g, k, base = r * B
    cdef bint antithetic = c.antithetic, add_score = c.add_score
    cdef double *S1 = c.buf + tid * c.buf_len
    cdef double *S2 = S1 + (P * B + 1)
    cdef double *Z = S2 + (P * B + 1)
    cdef double *v = Z + (P * L * B + 1)
    cdef double *v2 = v + (B + 1)
    cdef const double *F = c.F            # F[l, j] is F[l * fl + j]
    cdef const double *F2 = c.F2
    cdef Py_ssize_t fl = c.F_ld, fl2 = c.F2_ld
    cdef double *stats = c.stats + rd.slots[r] * c.stats_ld
    cdef double *shifts = c.shifts + rd.slots[r] * c.shifts_ld
    cdef bint first = blk < rd.n_streams
    cdef double fbar
    if _scores(&c.tab, c.x + r * c.x_ld, m, S1, rd, tid):
        return 1
    if antithetic and _scores(&c.tab, c.x2 + r * c.x2_ld, m, S2, rd, tid):
        return 1
    if group > 1:
        mg = m // group
        for g in range(mg):
            if _stop(rd, tid, g):
                return 1
            fbar = 0.0
            for k in range(group):
                fbar = fbar + F[base + g * group + k]
            fbar = fbar / group
            v[g] = fbar
            for q in range(P):
                Z[q * mg + g] = 0.0
                for k in range(group):
                    Z[q * mg + g] += ((F[base + g * group + k] - fbar)
                                      * S1[q * m + g * group + k])
                Z[q * mg + g] = Z[q * mg + g] / (group - 1)
        return gram_add(Z, P, 1, mg, v, stats, shifts, first, rd, tid)
    else:
        for i in range(m):
            v[i] = F[base + i] if not antithetic else 0.5 * (
                F[base + i] + F2[base + i])
        for q in range(P):
            for l in range(J):
                if mc_poll(rd, tid):
                    return 1
                if antithetic:
                    for i in range(m):
                        Z[(q * L + l) * m + i] = F[l * fl + base + i] * S1[q * m + i]
                        v2[i] = F2[l * fl2 + base + i] * S2[q * m + i]
                    _pair_means(&Z[(q * L + l) * m], v2, m)
                else:
                    for i in range(m):
                        Z[(q * L + l) * m + i] = F[l * fl + base + i] * S1[q * m + i]
            if add_score:
                if antithetic:
                    for i in range(m):
                        Z[(q * L + J) * m + i] = S1[q * m + i]
                        v2[i] = S2[q * m + i]
                    _pair_means(&Z[(q * L + J) * m], v2, m)
                else:
                    for i in range(m):
                        Z[(q * L + J) * m + i] = S1[q * m + i]
        return gram_add(Z, P, L, m, v, stats, shifts, first, rd, tid)


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
    cdef _vr_t c = _context()
    cdef Py_ssize_t P = ts.shape[0] - 1, B = block_size
    c.tab.family = -1
    keep = mc_set_terms(&c.tab, ts, tk, tc, ta, tb, tcc, "acc_score's score table")
    c.P = P
    c.J = F.shape[0]
    c.L = c.J + (1 if add_score else 0)
    if c.L > MAXL:
        raise ValueError(f"at most {MAXL} features per coordinate")
    c.ds = ds
    c.antithetic = antithetic
    c.add_score = add_score
    c.group = group
    _arrays(&c, xt, F, None, stats, shifts, xt2, F2)
    _round(&c, _cb_score, None, blocks, slots, n, block_size, n_streams, n_threads,
           2 * (P * B + 1) + (P * c.L * B + 1) + 2 * (B + 1))


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


cdef int _cb_pathwise(void *ctx, mc_round *rd, Py_ssize_t r, int64_t blk, Py_ssize_t m,
                      int tid) noexcept nogil:
    cdef _vr_t *c = <_vr_t *> ctx
    cdef Py_ssize_t P = c.P, ds = c.ds, gl = c.G_ld
    cdef Py_ssize_t i, q, t, col, j, k, K, base = r * rd.block_size
    cdef bint has_aux = c.has_aux
    cdef double *Z = c.buf + tid * c.buf_len
    cdef const double *G = c.G            # G[j, col] is G[j * gl + col]
    cdef const double *x = c.x + r * c.x_ld
    cdef const int64_t *ts = c.ts
    cdef const int *tk = c.tk
    cdef const int64_t *tc = c.tc
    cdef const double *ta = c.ta
    cdef const double *tb = c.tb
    cdef double acc, a0, a1
    for i in range(m):
        if _stop(rd, tid, i):
            return 1
        for q in range(P):
            acc = 0.0
            for t in range(ts[q], ts[q + 1]):
                col = tc[t]
                if tk[t] == TK_DIRICHLET:
                    # a = first column of the unit, b = K
                    j = <Py_ssize_t> ta[t]
                    K = <Py_ssize_t> tb[t]
                    a0 = 0.0
                    for k in range(K):
                        a0 = a0 + G[(base + i) * gl + j + k] * x[(j + k) * m + i]
                    acc = acc + x[ds * m + col * m + i] * (G[(base + i) * gl + col] - a0)
                else:
                    a0 = x[ds * m + col * m + i] if has_aux else 0.0
                    a1 = x[2 * ds * m + col * m + i] if has_aux else 0.0
                    acc = acc + G[(base + i) * gl + col] * _tangent(
                        tk[t], x[col * m + i], a0, a1, ta[t], tb[t])
            Z[q * m + i] = acc
    return gram_add(Z, P, 1, m, &c.fv[base], c.stats + rd.slots[r] * c.stats_ld,
                    c.shifts + rd.slots[r] * c.shifts_ld, blk < rd.n_streams, rd, tid)


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
    cdef _vr_t c = _context()
    _table(&c, ts, tk, tc, ta, tb, None)
    c.ds = ds
    c.has_aux = has_aux
    c.fv = _vec(fv)
    _arrays(&c, xb, None, G, stats, shifts)
    _round(&c, _cb_pathwise, None, blocks, slots, n, block_size, n_streams, n_threads,
           c.P * block_size + 1)


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


cdef int _cb_relaxed(void *ctx, mc_round *rd, Py_ssize_t r, int64_t blk, Py_ssize_t m,
                     int tid) noexcept nogil:
    cdef _vr_t *c = <_vr_t *> ctx
    cdef Py_ssize_t W = c.W, K = c.K, gl = c.G_ld
    cdef Py_ssize_t i, col, j, k, base = r * rd.block_size
    cdef double tau = c.tau
    cdef double *Z = c.buf + tid * c.buf_len
    cdef const double *G = c.G            # G[j, col] is G[j * gl + col]
    cdef const double *x = c.x + r * c.x_ld
    cdef double z, dot
    for i in range(m):
        if _stop(rd, tid, i):
            return 1
        if K == 1:
            for col in range(W):
                z = x[col * m + i]
                Z[col * m + i] = G[(base + i) * gl + col] * z * (1.0 - z) / tau
        else:
            for j in range(W // K):
                dot = 0.0
                for k in range(K):
                    dot = dot + G[(base + i) * gl + j * K + k] * x[(j * K + k) * m + i]
                for k in range(K):
                    Z[(j * K + k) * m + i] = (x[(j * K + k) * m + i]
                                              * (G[(base + i) * gl + j * K + k] - dot) / tau)
        _to_params(Z, m, i, W, K, c.conv, c.cv, c.cvs)
    return gram_add(Z, W, 1, m, &c.fv[base], c.stats + rd.slots[r] * c.stats_ld,
                    c.shifts + rd.slots[r] * c.shifts_ld, blk < rd.n_streams, rd, tid)


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
    cdef _vr_t c = _context()
    c.W = W
    c.K = K
    c.tau = tau
    c.conv = conv
    c.cv = _vec(cv)
    c.cvs = _vec(cvs)
    c.fv = _vec(fv)
    _arrays(&c, zb, None, G, stats, shifts)
    _round(&c, _cb_relaxed, None, blocks, slots, n, block_size, n_streams, n_threads,
           W * block_size + 1)


cdef int _cb_rebar(void *ctx, mc_round *rd, Py_ssize_t r, int64_t blk, Py_ssize_t m,
                   int tid) noexcept nogil:
    cdef _vr_t *c = <_vr_t *> ctx
    cdef Py_ssize_t W = c.W, K = c.K, L = c.L, gl = c.G_ld, gl2 = c.G2_ld, fl = c.F_ld
    cdef Py_ssize_t i, col, j, k, base = r * rd.block_size
    cdef double lam = c.tau
    cdef bint add_score = c.add_score
    cdef double *Z = c.buf + tid * c.buf_len
    cdef double *T = Z + (W * L * rd.block_size + 1)
    cdef const double *Gz = c.G           # Gz[j, col] is Gz[j * gl + col]
    cdef const double *Gzt = c.G2
    cdef const double *F = c.F            # F[l, j] is F[l * fl + j]
    cdef const double *probs = c.probs
    cdef const double *x = c.x + r * c.x_ld
    cdef double sc, sz, szt, a, dot, dott, wsum
    # T: score (0), d f(s(z)) (1), d f(s(z~)) (2), in logit space
    for i in range(m):
        if _stop(rd, tid, i):
            return 1
        if K == 1:
            for col in range(W):
                sz = x[W * m + col * m + i]
                szt = x[2 * W * m + col * m + i]
                T[col * m + i] = x[col * m + i] - probs[col]
                T[W * m + col * m + i] = Gz[(base + i) * gl + col] * sz * (1.0 - sz) / lam
                T[2 * W * m + col * m + i] = (Gzt[(base + i) * gl2 + col] * szt * (1.0 - szt)
                                              / lam * x[3 * W * m + col * m + i])
        else:
            for j in range(W // K):
                dot = 0.0
                dott = 0.0
                for k in range(K):
                    col = j * K + k
                    dot = dot + Gz[(base + i) * gl + col] * x[W * m + col * m + i]
                    dott = dott + Gzt[(base + i) * gl2 + col] * x[2 * W * m + col * m + i]
                wsum = 0.0
                for k in range(K):
                    col = j * K + k
                    T[col * m + i] = x[col * m + i] - probs[col]
                    T[W * m + col * m + i] = (x[W * m + col * m + i]
                                              * (Gz[(base + i) * gl + col] - dot) / lam)
                    a = (x[2 * W * m + col * m + i] * (Gzt[(base + i) * gl2 + col] - dott) / lam
                         * x[3 * W * m + col * m + i])
                    T[2 * W * m + col * m + i] = a
                    wsum = wsum + a
                for k in range(K):
                    col = j * K + k
                    T[2 * W * m + col * m + i] -= probs[col] * wsum
        _to_params(T, m, i, W, K, c.conv, c.cv, c.cvs)
        _to_params(T + W * m, m, i, W, K, c.conv, c.cv, c.cvs)
        _to_params(T + 2 * W * m, m, i, W, K, c.conv, c.cv, c.cvs)
        for col in range(W):
            sc = T[col * m + i]
            Z[(col * L) * m + i] = F[base + i] * sc
            Z[(col * L + 1) * m + i] = (-F[2 * fl + base + i] * sc + T[W * m + col * m + i]
                                        - T[2 * W * m + col * m + i])
            if add_score:
                Z[(col * L + 2) * m + i] = sc
    return gram_add(Z, W, L, m, &F[base], c.stats + rd.slots[r] * c.stats_ld,
                    c.shifts + rd.slots[r] * c.shifts_ld, blk < rd.n_streams, rd, tid)


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
    cdef _vr_t c = _context()
    c.W = W
    c.K = K
    c.L = 3 if add_score else 2
    c.tau = lam
    c.probs = _vec(probs)
    c.conv = conv
    c.cv = _vec(cv)
    c.cvs = _vec(cvs)
    c.add_score = add_score
    _arrays(&c, buf, F, Gz, stats, shifts, None, None, Gzt)
    _round(&c, _cb_rebar, None, blocks, slots, n, block_size, n_streams, n_threads,
           (W * c.L * block_size + 1) + (3 * W * block_size + 1))


cdef int _cb_disarm(void *ctx, mc_round *rd, Py_ssize_t r, int64_t blk, Py_ssize_t m,
                    int tid) noexcept nogil:
    cdef _vr_t *c = <_vr_t *> ctx
    cdef Py_ssize_t W = c.W, fl = c.F_ld
    cdef Py_ssize_t i, col, base = r * rd.block_size
    cdef double *Z = c.buf + tid * c.buf_len
    cdef double *v = Z + (W * rd.block_size + 1)
    cdef const double *F = c.F            # F[l, j] is F[l * fl + j]
    cdef const double *logits = c.probs
    cdef const double *x = c.x + r * c.x_ld
    cdef double d, bt
    for i in range(m):
        if _stop(rd, tid, i):
            return 1
        d = 0.5 * (F[base + i] - F[fl + base + i])
        v[i] = 0.5 * (F[base + i] + F[fl + base + i])
        for col in range(W):
            bt = x[W * m + col * m + i]
            if x[col * m + i] == bt:
                Z[col * m + i] = 0.0
            else:
                Z[col * m + i] = ((-d if bt > 0 else d) * _sigmoid(fabs(logits[col]))
                                  * (c.cv[col] if c.conv == 1 else 1.0))
    return gram_add(Z, W, 1, m, v, c.stats + rd.slots[r] * c.stats_ld,
                    c.shifts + rd.slots[r] * c.shifts_ld, blk < rd.n_streams, rd, tid)


def acc_disarm(int64_t[::1] blocks, int64_t[::1] slots, int64_t n, int64_t block_size,
               int64_t n_streams, int n_threads, Py_ssize_t W, const double[::1] logits,
               int conv, const double[::1] cv, double[:, ::1] buf, double[:, ::1] F,
               double[:, ::1] stats, double[:, ::1] shifts):
    """DisARM features: z_c = 1/2 (f(b) - f(b~)) (-1)^b~_c [b_c != b~_c]
    sigma(|logit_c|); value 1/2 (f(b) + f(b~)).  buf rows: b | b~."""
    cdef _vr_t c = _context()
    c.W = W
    c.probs = _vec(logits)     # the logits (DisARM has no probabilities)
    c.conv = conv
    c.cv = _vec(cv)
    _arrays(&c, buf, F, None, stats, shifts)
    _round(&c, _cb_disarm, None, blocks, slots, n, block_size, n_streams, n_threads,
           (W * block_size + 1) + (block_size + 1))
