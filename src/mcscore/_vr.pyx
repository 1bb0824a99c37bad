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

One extension written in four files by concern, joined with Cython's
``include``: this file (modes and kinds, helpers, Gram statistics, the
rounds on the core's driver, ``prepare_round``), ``_vr_prepare.pxi`` (the
per-block PREP_* work), ``_vr_acc_score.pxi`` (acc_score, acc_pathwise) and
``_vr_acc_relaxed.pxi`` (acc_relaxed, acc_rebar, acc_disarm).
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
    mc_score_coord, mc_set_terms, mc_set_draw, mc_unit_params, mc_kernel_dist_ptr,
    mc_family, mc_family_of,
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
    TK_MVN_NOISE = 9       # eps_j = (L^-1 (x - loc))_j of the unit; a = j, b = the unit's
                           # first column; prm = [d, L^-1 (d*d), loc of every unit] (MVN scale_tril)

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


include "_vr_prepare.pxi"


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
    const int64_t *frow          # acc_score groups: F row of coordinate q (NULL: row 0)
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


include "_vr_acc_score.pxi"

include "_vr_acc_relaxed.pxi"
