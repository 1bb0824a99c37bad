# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""Typed, GIL-free kernels of mcscore.

One call of the estimator is a set of *streams* (each with its own bit
generator) that each walk their *blocks* of draws in order.  For every block
the kernel draws (numpy's C distributions), evaluates f (a fused integrand, a
C callback, or values the Python layer computed), and accumulates the
sufficient statistics of the stream.  Threads take whole streams, so the
result does not depend on the number of threads.  The streams and rounds run
on the core's driver (_core.pxd: mc_drive with the per-block callbacks
_cb_fused, _cb_draw and _cb_accumulate below), which also checks for Ctrl-C;
the block functions poll it after every chunk.

See _kernels.pxd for the C-level API and the memory layouts.

The module is one extension (one C file) written in six files by concern,
joined with Cython's ``include`` as numpy.random does:

* ``_kernels.pyx`` (this file): imports, chunk sizes, workspaces, the
  Python-facing objects (KernelDist, KernelFunc), the driver callbacks and
  rounds, the C views for other extensions;
* ``_kernels_vmath.pxi``: NumPy's vector log/exp loops and the C hot loops;
* ``_kernels_families.pxi``: the family table, one fill function per family;
* ``_kernels_integrands.pxi``: fused integrands and C callbacks (f);
* ``_kernels_scores.pxi``: the one score evaluator and block accumulation;
* ``_kernels_normal.pxi``: the inline PCG64 standard normal fill (NumPy's
  values bit for bit) that the Normal family's fill uses, and the row
  layout of drawn blocks for a Python f (draw_round_rows).
"""
import numpy as np
cimport numpy as cnp
from libc.math cimport log, log1p, exp, sin, cos, isfinite, fabs, INFINITY, sqrt, pow
from libc.stdlib cimport malloc, free, calloc
from libc.string cimport memset
from libc.stdint cimport int64_t, intptr_t, uint32_t, uint64_t
from mcscore._core cimport (
    MC_HAVE_OPENMP, mc_omp_max_threads, mc_omp_num_procs, mc_round, mc_round_init,
    mc_round_free, mc_round_threads, mc_drive, mc_poll, mc_fail, mc_alloc_doubles,
    ERR_F_NONFINITE, ERR_CALLBACK,
)
from numpy.random cimport bitgen_t
from numpy.random.c_distributions cimport (
    random_standard_normal_fill, random_standard_exponential_fill,
    random_standard_gamma, random_beta, random_poisson, random_binomial,
    random_geometric, random_negative_binomial, random_multinomial,
    random_standard_uniform, random_standard_uniform_fill, random_laplace,
    random_standard_cauchy, random_standard_t, random_vonmises,
)

cnp.import_array()

include "_kernels_vmath.pxi"

# Chunks: a block is processed (drawn, evaluated, accumulated) in chunks of
# mc_chunk_len(draw_size) draws, about MC_CHUNK_VALUES doubles.
cdef enum:
    MC_CHUNK_VALUES = 4096
    MC_CHUNK_MAX = 1024

HAVE_OPENMP = bool(MC_HAVE_OPENMP)


def omp_max_threads():
    """Threads an OpenMP region would use now (honours OMP_NUM_THREADS and
    threadpoolctl limits); 1 in a serial build."""
    return mc_omp_max_threads()


def omp_num_procs():
    return mc_omp_num_procs()


# ---------------------------------------------------------------------------
# C-level building blocks (declared in _kernels.pxd)
# ---------------------------------------------------------------------------

cdef Py_ssize_t mc_stats_len(const mc_dist *dist) noexcept nogil:
    if dist.per_category:
        return 3 + 3 * dist.n_units * dist.n_cat
    return 3 + 5 * dist.n_coords


cdef int mc_workspace_init(mc_workspace *ws, const mc_dist *dist,
                           Py_ssize_t block_size) noexcept nogil:
    """Allocate the buffers of one worker. Returns 0, or -1 when out of memory."""
    ws.xt = <double *> malloc(sizeof(double) * dist.draw_size * block_size)
    ws.fx = <double *> malloc(sizeof(double) * block_size)
    ws.tmp = <double *> malloc(sizeof(double) * block_size)
    ws.row = <double *> malloc(sizeof(double) * dist.draw_size)
    ws.ibuf = <int64_t *> malloc(sizeof(int64_t) * (dist.n_cat + 1))
    ws.lt = <double *> malloc(sizeof(double) * dist.draw_size * block_size)
    ws.lazy_thr = NULL
    memset(&ws.binom, 0, sizeof(binomial_t))
    if (ws.xt == NULL or ws.fx == NULL or ws.tmp == NULL or ws.row == NULL or ws.ibuf == NULL
            or ws.lt == NULL):
        mc_workspace_free(ws)
        return -1
    return 0


cdef void mc_workspace_free(mc_workspace *ws) noexcept nogil:
    free(ws.xt)
    free(ws.fx)
    free(ws.tmp)
    free(ws.row)
    free(ws.ibuf)
    free(ws.lt)
    ws.lt = NULL
    ws.xt = NULL
    ws.fx = NULL
    ws.tmp = NULL
    ws.row = NULL
    ws.ibuf = NULL


cdef inline Py_ssize_t mc_chunk_len(Py_ssize_t draw_size) noexcept nogil:
    """Draws per chunk: blocks are processed in chunks of this many draws
    (about MC_CHUNK_VALUES doubles, a multiple of 8), a pure function of the
    draw size, so that a chunk's columns stay in the L1/L2 cache."""
    cdef Py_ssize_t c = MC_CHUNK_VALUES // (draw_size if draw_size > 0 else 1)
    c = c - c % 8
    if c < 8:
        c = 8
    if c > MC_CHUNK_MAX:
        c = MC_CHUNK_MAX
    return c


include "_kernels_inline.pxi"
include "_kernels_families.pxi"

include "_kernels_multivariate.pxi"

include "_kernels_integrands.pxi"

include "_kernels_scores.pxi"

include "_kernels_normal.pxi"

# ---------------------------------------------------------------------------
# Python-facing objects
# ---------------------------------------------------------------------------

cdef class KernelDist:
    """A distribution prepared for the kernels (arrays owned here)."""
    cdef mc_dist d
    cdef object _keep
    cdef readonly Py_ssize_t draw_size, n_coords, n_units, n_cat, stats_len
    cdef readonly bint per_category, has_log_column

    def __init__(self, int family, bint per_category, Py_ssize_t n_units, Py_ssize_t n_cat,
                 Py_ssize_t draw_size, p0, p1, alias_q, alias_i, t_start, t_kind, t_col,
                 t_a, t_b, t_c):
        memset(&self.d, 0, sizeof(mc_dist))
        keep = mc_set_draw(&self.d, family, per_category, n_units, n_cat, draw_size, p0, p1,
                           alias_q, alias_i)
        self._keep = keep + mc_set_terms(
            &self.d, t_start, t_kind, t_col, t_a, t_b, t_c,
            mc_family_of(family).name.decode() + "'s score table")
        self._set_views()

    cdef void _set_views(self):
        """The Python-visible sizes, read from the C description."""
        cdef mc_dist *d = &self.d
        self.draw_size, self.n_coords, self.n_units, self.n_cat = (
            d.draw_size, d.n_coords, d.n_units, d.n_cat)
        self.per_category, self.stats_len = d.per_category, mc_stats_len(d)
        self.has_log_column = mc_has_log_column(d)

    def renewed(self, p0, p1, t_a, t_b, t_c):
        """A KernelDist of the same family, shapes and score-term structure
        (t_start, kinds, columns shared with this one, which never writes
        them) with new unit parameters p0, p1 and term coefficients a, b, c
        (the lengths of this one's): what the constructor builds from the
        same arguments, without re-validating the structure.  Not for
        per-category (Categorical) kernels, whose alias tables it keeps."""
        cdef KernelDist out = KernelDist.__new__(KernelDist)
        cdef Py_ssize_t U = self.d.n_units, L = self.d.prm_len, T = self.d.t_start[self.d.n_coords]
        cdef double[:, ::1] blocks = np.zeros((0, 0))
        cdef double[::1] va, vb, vc
        if self.per_category:
            raise ValueError("renewed: a per-category kernel keeps its alias tables")
        if U > 0:
            blocks = np.concatenate([np.asarray(p, dtype=np.float64).reshape(U, -1)
                                     for p in (p0, p1)], axis=1)
            if blocks.shape[1] != L:
                raise ValueError(f"renewed: {blocks.shape[1]} parameters per unit, expected {L}")
        va = np.array(t_a, dtype=np.float64, order='C', copy=True).ravel()
        vb = np.array(t_b, dtype=np.float64, order='C', copy=True).ravel()
        vc = np.array(t_c, dtype=np.float64, order='C', copy=True).ravel()
        if va.shape[0] != T or vb.shape[0] != T or vc.shape[0] != T:
            raise ValueError(f"renewed: the score table has {T} terms")
        out.d = self.d
        out.d.prm = &blocks[0, 0] if blocks.shape[0] and blocks.shape[1] else NULL
        out.d.t_a = &va[0] if T else NULL
        out.d.t_b = &vb[0] if T else NULL
        out.d.t_c = &vc[0] if T else NULL
        out._keep = (self._keep, blocks, va, vb, vc)
        out._set_views()
        return out


cdef double *_lazy_thresholds(const mc_dist *dist, const mc_func *func) noexcept nogil:
    """For LogNormal draws and a fused integrand that reads x only through
    call / digital-call terms with positive strikes: per unit, the log-draw
    y below which x = exp(y) is never needed (its terms are 0 for any
    x <= strike), with a margin far above the rounding of exp and log; -inf
    where x is needed.  NULL when the shortcut does not apply.  f is the
    same bit for bit: the terms only compare x with the strike there."""
    cdef const mc_integrand *F
    cdef Py_ssize_t t, c, U = dist.n_units
    cdef int kind
    cdef double K, lk
    cdef double *thr
    if dist.family != MC_LOGNORMAL or func.kind != FK_INTEGRAND or func.integ == NULL:
        return NULL
    F = func.integ
    for t in range(F.n_terms):
        kind = <int> F.kind[t]
        if kind != IK_CALL and kind != IK_DIGITAL_CALL:
            return NULL
        if not (F.params[F.off[t]] > 0.0) or not isfinite(F.params[F.off[t]]):
            return NULL
    thr = <double *> malloc(sizeof(double) * max(U, 1))
    if thr == NULL:
        return NULL
    for c in range(U):
        thr[c] = INFINITY          # no term reads this unit
    for t in range(F.n_terms):
        c = F.col[t]
        K = F.params[F.off[t]]
        lk = log(K)
        lk = lk - 1e-9 * (1.0 + fabs(lk))
        if lk < thr[c]:
            thr[c] = lk
    return thr


cdef class KernelFunc:
    """f as the kernels see it: values, a fused integrand, or a C callback."""
    cdef mc_func f
    cdef mc_integrand integ
    cdef object _keep
    cdef readonly int kind

    def __init__(self, int kind, integrand=None, keep=None, intptr_t fptr=0, int sig=0,
                 intptr_t user_data=0):
        cdef int64_t[::1] ik, ic, io
        cdef double[::1] coef, params
        self.f.kind = kind
        self.f.integ = NULL
        self.f.fptr = NULL
        self.f.user_data = NULL
        self.f.sig = sig
        self.kind = kind
        if kind == FK_INTEGRAND:
            kinds, cols, offs, coefs, prm, const = integrand
            ik = np.array(kinds, dtype=np.int64, order='C', copy=True)
            ic = np.array(cols, dtype=np.int64, order='C', copy=True)
            io = np.array(offs, dtype=np.int64, order='C', copy=True)
            coef = np.array(coefs, dtype=np.float64, order='C', copy=True)
            params = np.array(np.append(prm, 0.0), dtype=np.float64, order='C', copy=True)
            self._keep = (ik, ic, io, coef, params)
            self.integ.n_terms = ik.shape[0]
            self.integ.kind = &ik[0] if ik.shape[0] else NULL
            self.integ.col = &ic[0] if ic.shape[0] else NULL
            self.integ.off = &io[0] if io.shape[0] else NULL
            self.integ.coef = &coef[0] if coef.shape[0] else NULL
            self.integ.params = &params[0]
            self.integ.constant = const
            self.f.integ = &self.integ
        elif kind == FK_CALLBACK:
            if fptr == 0:
                raise ValueError("f: the C callback is a NULL function pointer")
            # `keep` holds the objects that own the function and its data.
            self._keep = keep
            self.f.fptr = <void *> fptr
            self.f.user_data = <void *> user_data


# ---------------------------------------------------------------------------
# Per-block callbacks of the core's driver (mc_drive) and their contexts
# ---------------------------------------------------------------------------

ctypedef struct _ctx_t:
    const mc_dist *dist
    const mc_func *func
    mc_workspace *wss        # one per thread (index: tid)
    double *xt               # draw rounds: row r at xt + r * ld (OUT)
    double *lt               # ... log columns (LogNormal), or NULL
    const double *fx         # accumulate rounds: f values, row r at fx + r * fld
    Py_ssize_t ld, fld
    double *stats            # row of item (or slot) i at stats + i * sld (IN/OUT)
    Py_ssize_t sld
    double *shifts           # one per item (or slot) (IN/OUT)
    double *tmp              # accumulate rounds: tmp_len doubles per thread
    Py_ssize_t tmp_len
    double *out              # eval_integrand: the f values (OUT)
    const int64_t *fcol      # batched accumulate rounds: f column of each coordinate
    Py_ssize_t nf            # ... (per unit for per-category families), nf columns
    double *rows             # draw rounds to rows: the round's draws, (total, draw_size)
    const int64_t *row_off   # ... first row of item r (OUT)


cdef int _cb_fused(void *ctx, mc_round *rd, Py_ssize_t i, int64_t b, Py_ssize_t m,
                   int tid) noexcept nogil:
    """Whole streams: draw, evaluate and accumulate block b of stream item i."""
    cdef _ctx_t *c = <_ctx_t *> ctx
    cdef mc_workspace *ws = &c.wss[tid]
    cdef const mc_func *f = c.func
    cdef Py_ssize_t bad = _run_block(c.dist, f, rd.bitgens[i], m, c.stats + i * c.sld,
                                     &c.shifts[i], b < rd.n_streams, ws, rd, tid)
    if bad == MC_STOPPED:
        return 1
    if bad >= 0:
        mc_fail(rd, ERR_CALLBACK if (f.kind == FK_CALLBACK and (f.sig == CB_I_P_N_P_V or
                                                               f.sig == CB_I_P_I_P_V)
                                     and isfinite(ws.fx[0])) else ERR_F_NONFINITE,
                b * rd.block_size + bad)
        return 1
    return 0


cdef int _cb_draw(void *ctx, mc_round *rd, Py_ssize_t r, int64_t b, Py_ssize_t m,
                  int tid) noexcept nogil:
    """A round: draw block b (item r) into row r."""
    cdef _ctx_t *c = <_ctx_t *> ctx
    return mc_draw_block_polled(c.dist, rd.bitgens[r], m, c.xt + r * c.ld,
                       (c.lt + r * c.ld) if c.lt != NULL else NULL, &c.wss[tid], rd, tid)


cdef int _cb_accumulate(void *ctx, mc_round *rd, Py_ssize_t r, int64_t b, Py_ssize_t m,
                        int tid) noexcept nogil:
    """A round: accumulate drawn block b (row r) with its f values into its
    stream's row (slot)."""
    cdef _ctx_t *c = <_ctx_t *> ctx
    cdef Py_ssize_t s = rd.slots[r], bad
    if b < rd.n_streams:
        c.shifts[s] = c.fx[r * c.fld]
    bad = _accumulate_block(c.dist, m, c.xt + r * c.ld,
                            (c.lt + r * c.ld) if c.lt != NULL else NULL, c.fx + r * c.fld,
                            c.shifts[s], c.stats + s * c.sld, c.tmp + tid * c.tmp_len, rd, tid)
    if bad == MC_STOPPED:
        return 1
    if bad >= 0:
        mc_fail(rd, ERR_F_NONFINITE, b * rd.block_size + bad)
        return 1
    return 0


cdef _ctx_t _context(KernelDist dist, double[:, ::1] xt=None,
                     double[:, ::1] lt=None) noexcept:
    """A context for dist; xt, lt: the round's draws and log columns."""
    cdef _ctx_t c
    memset(&c, 0, sizeof(_ctx_t))
    c.dist = &dist.d
    if xt is not None:
        c.xt = _rows_ptr(xt)
        c.ld = xt.shape[1]
        c.lt = _rows_ptr(lt) if mc_has_log_column(&dist.d) else NULL
    return c


cdef double *_rows_ptr(double[:, ::1] a) noexcept:
    """The data of a (possibly empty) C-contiguous matrix, or NULL."""
    if a is None or a.shape[0] == 0 or a.shape[1] == 0:
        return NULL
    return &a[0, 0]


def draw(KernelDist dist, bit_generator, Py_ssize_t m):
    """m draws from one bit generator, as an (m, draw_size) C-contiguous array."""
    cdef cnp.ndarray[double, ndim=2] xt = np.empty((dist.draw_size, max(m, 1)), dtype=np.float64)
    cdef int64_t first = 0
    cdef mc_round rd
    cdef _ctx_t c = _context(dist)
    c.xt = <double *> cnp.PyArray_DATA(xt)
    c.wss = mc_workspaces(&dist.d, 1, 1)
    try:
        mc_round_init(&rd, m, 1, max(m, 1), 1, 1, &first, NULL, [bit_generator])
        try:
            with bit_generator.lock:
                mc_drive(&rd, _cb_draw, &c)
        finally:
            mc_round_free(&rd)
    finally:
        mc_workspaces_free(c.wss, 1)
    return np.ascontiguousarray(xt[:, :m].T)


cdef int _cb_eval(void *ctx, mc_round *rd, Py_ssize_t r, int64_t b, Py_ssize_t m,
                  int tid) noexcept nogil:
    """f on block b of the caller's row-major draws c.xt (rows of draw_size):
    gathered column-major into c.tmp, evaluated into c.out."""
    cdef _ctx_t *c = <_ctx_t *> ctx
    cdef Py_ssize_t ds = c.dist.draw_size, i, k, i0 = b * rd.block_size
    cdef const double *x = c.xt + i0 * ds
    cdef double *col = c.tmp + tid * c.tmp_len
    for k in range(ds):
        for i in range(m):
            col[k * m + i] = x[i * ds + k]
    mc_eval_block(c.func, c.dist, m, col, c.out + i0, &c.wss[tid])
    return 0


def eval_integrand(KernelFunc func, KernelDist dist, x):
    """f values of a fused integrand on an (m, draw_size) array of draws
    (evaluated block by block on the core's driver: Ctrl-C is noticed
    within a fraction of a second whatever m)."""
    cdef cnp.ndarray[double, ndim=2] xr = np.ascontiguousarray(
        np.asarray(x, dtype=np.float64).reshape(-1, dist.draw_size))
    cdef Py_ssize_t m = xr.shape[0]
    cdef cnp.ndarray[double, ndim=1] fx = np.empty(m, dtype=np.float64)
    cdef mc_round rd
    cdef _ctx_t c = _context(dist)
    cdef int64_t bs = max(1, (1 << 16) // max(1, dist.draw_size))
    cdef int64_t[::1] first = np.arange((m + bs - 1) // bs, dtype=np.int64)
    if m == 0:
        return fx
    c.func = &func.f
    c.xt = <double *> cnp.PyArray_DATA(xr)
    c.out = <double *> cnp.PyArray_DATA(fx)
    c.tmp_len = bs * max(1, dist.draw_size)
    mc_round_init(&rd, m, 1, bs, 1, first.shape[0], &first[0], NULL, None)
    try:
        c.tmp = mc_alloc_doubles(c.tmp_len, "the integrand's block buffer")
        c.wss = mc_workspaces(&dist.d, 1, 1)
        mc_drive(&rd, _cb_eval, &c)
    finally:
        free(c.tmp)
        mc_workspaces_free(c.wss, 1)
        mc_round_free(&rd)
    return fx
    if mc_workspace_init(&ws, &dist.d, 1) != 0:
        raise MemoryError()
    try:
        with nogil:
            mc_eval_block(&func.f, &dist.d, m, <double *> cnp.PyArray_DATA(xt),
                          <double *> cnp.PyArray_DATA(fx), &ws)
    finally:
        mc_workspace_free(&ws)
    return fx


cdef mc_workspace *mc_workspaces(const mc_dist *dist, int n,
                                 Py_ssize_t block_size) except NULL:
    """One workspace per thread (index = omp thread number)."""
    cdef int t
    cdef mc_workspace *wss = <mc_workspace *> calloc(max(n, 1), sizeof(mc_workspace))
    if wss == NULL:
        raise MemoryError()
    for t in range(n):
        if mc_workspace_init(&wss[t], dist, block_size) != 0:
            mc_workspaces_free(wss, t)
            raise MemoryError("could not allocate the kernels' block buffers")
    return wss


cdef void mc_workspaces_free(mc_workspace *wss, int n) noexcept:
    cdef int t
    if wss == NULL:
        return
    for t in range(n):
        mc_workspace_free(&wss[t])
    free(wss)


def run_streams(KernelDist dist, KernelFunc func, list bitgens, int64_t[::1] streams,
                int64_t n, int64_t n_streams, int64_t block_size, int n_threads,
                double[:, ::1] stats, double[::1] shifts, int64_t[::1] next_block=None,
                int64_t max_blocks=0):
    """Run whole streams (fused integrand or C callback) in parallel.

    streams[i] is the index of the i-th stream to run, bitgens[i] its bit
    generator; its statistics go to stats[i] and its shift to shifts[i].
    With next_block (in/out) and max_blocks > 0, stream i resumes at block
    next_block[i], runs at most max_blocks blocks and records where it
    stopped, so a long run can be cut into epochs (the result does not
    depend on the cut).  Ctrl-C is noticed within a fraction of a second
    (KeyboardInterrupt is raised).
    Returns (error code, global index of the failing draw or -1).
    """
    cdef Py_ssize_t ns = streams.shape[0]
    cdef mc_round rd
    cdef _ctx_t c = _context(dist)
    cdef int nt, t, code
    cdef double *lazy = NULL
    c.func = &func.f
    c.stats = _rows_ptr(stats)
    c.sld = stats.shape[1]
    c.shifts = &shifts[0] if shifts.shape[0] else NULL
    mc_round_init(&rd, n, n_streams, block_size, n_threads, ns,
                  &streams[0] if ns else NULL, NULL, bitgens)
    rd.walk = 1
    rd.max_blocks = max_blocks
    rd.next_block = &next_block[0] if next_block is not None and ns else NULL
    nt = mc_round_threads(&rd)
    try:
        c.wss = mc_workspaces(&dist.d, nt, min(block_size, mc_chunk_len(dist.d.draw_size)))
        lazy = _lazy_thresholds(&dist.d, &func.f)
        for t in range(nt):
            c.wss[t].lazy_thr = lazy
        code = mc_drive(&rd, _cb_fused, &c)
        return code, int(rd.ctl.err[1])
    finally:
        free(lazy)
        mc_workspaces_free(c.wss, nt)
        mc_round_free(&rd)


cdef int _draw_blocks(KernelDist dist, list bitgens, int64_t[::1] blocks, int64_t[::1] slots,
                      int64_t n, int64_t block_size, int n_threads, double[:, ::1] xt,
                      double[:, ::1] lt, long long *claim) except -1:
    """draw_round; claim: NULL, or an outside counter to claim the blocks from."""
    cdef Py_ssize_t R = blocks.shape[0]
    cdef mc_round rd
    cdef _ctx_t c = _context(dist, xt, lt)
    cdef int nt
    mc_round_init(&rd, n, 0, block_size, n_threads, R, &blocks[0] if R else NULL,
                  &slots[0] if R else NULL, bitgens)
    rd.ctl.claim = claim
    nt = mc_round_threads(&rd)
    try:
        c.wss = mc_workspaces(&dist.d, nt, 1)
        return mc_drive(&rd, _cb_draw, &c)
    finally:
        mc_workspaces_free(c.wss, nt)
        mc_round_free(&rd)


def draw_round(KernelDist dist, list bitgens, int64_t[::1] blocks, int64_t[::1] slots,
               int64_t n, int64_t block_size, int n_threads, double[:, ::1] xt,
               double[:, ::1] lt=None):
    """Draw the given blocks in parallel: block blocks[r] of stream slot
    slots[r] (bitgens[slots[r]]) into row r of xt (column-major block).
    lt (same shape, optional) receives the log columns of LogNormal draws
    (see KernelDist.has_log_column); pass it on to accumulate_round."""
    _draw_blocks(dist, bitgens, blocks, slots, n, block_size, n_threads, xt, lt, NULL)


cdef int _cb_draw_rows(void *ctx, mc_round *rd, Py_ssize_t r, int64_t b, Py_ssize_t m,
                       int tid) noexcept nogil:
    """A round: draw block b (item r) into row r, and lay it out row-major
    (one draw per row) at row row_off[r] of c.rows while it is in cache."""
    cdef _ctx_t *c = <_ctx_t *> ctx
    cdef double *xt = c.xt + r * c.ld
    if mc_draw_block_polled(c.dist, rd.bitgens[r], m, xt,
                            (c.lt + r * c.ld) if c.lt != NULL else NULL, &c.wss[tid], rd, tid):
        return 1
    mc_c_to_rows(xt, m, c.dist.draw_size, c.rows + c.row_off[r] * c.dist.draw_size)
    return 0


def draw_round_rows(KernelDist dist, list bitgens, int64_t[::1] blocks, int64_t[::1] slots,
                    int64_t n, int64_t block_size, int n_threads, double[:, ::1] xt,
                    double[:, ::1] lt, double[:, ::1] rows, int64_t[::1] row_off,
                    long long[::1] counter=None, bint rows_only=False):
    """draw_round (or, with counter, draw_round_shared: one thread claiming
    blocks from counter[0]) that also writes each drawn block, row-major,
    into rows[row_off[r]: row_off[r] + m] (rows: (total, draw_size)): the
    round's draws as a Python f receives them, laid out by the threads that
    draw, from the block just drawn, instead of a transposing copy of the
    whole round afterwards.  xt and lt receive the block as draw_round
    writes it (the accumulation reads them).  rows_only (a family that
    rows_direct serves): the draws go to rows only, straight from the fill
    (xt and lt are not written; accumulate_round_rows reads the rows)."""
    cdef Py_ssize_t R = blocks.shape[0]
    cdef mc_round rd
    cdef _ctx_t c = _context(dist, xt, lt)
    cdef int nt
    cdef Py_ssize_t ch = mc_chunk_len(dist.draw_size)
    if rows_only and not _rows_direct(&dist.d):
        raise ValueError("draw_round_rows: rows_only for a family drawn column by column only")
    _check_row_offsets(dist, blocks, n, block_size, rows, row_off)
    c.rows = _rows_ptr(rows)
    c.row_off = &row_off[0] if R else NULL
    mc_round_init(&rd, n, 0, block_size, 1 if counter is not None else n_threads, R,
                  &blocks[0] if R else NULL, &slots[0] if R else NULL, bitgens)
    rd.ctl.claim = &counter[0] if counter is not None else NULL
    nt = mc_round_threads(&rd)
    try:
        if rows_only:
            c.tmp_len = ch
            c.tmp = mc_alloc_doubles(nt * ch, "the draw buffers")
            mc_drive(&rd, _cb_draw_rows_only, &c)
        else:
            c.wss = mc_workspaces(&dist.d, nt, 1)
            mc_drive(&rd, _cb_draw_rows, &c)
    finally:
        free(c.tmp)
        if c.wss != NULL:
            mc_workspaces_free(c.wss, nt)
        mc_round_free(&rd)


cdef bint _rows_direct(const mc_dist *dist) noexcept nogil:
    """True when dist's draws can be made straight into f's row layout
    (draw_round_rows(rows_only=True)): a family drawn column by column, one
    column per unit (mc_family.fill_column), without a log column."""
    cdef const mc_family *fam = mc_family_of(dist.family)
    return (fam != NULL and fam.fill == NULL and fam.fill_column != NULL
            and not fam.log_column and not dist.per_category
            and dist.n_units == dist.draw_size)


def rows_direct(KernelDist dist):
    """Whether draw_round_rows(..., rows_only=True) and accumulate_round_rows
    serve dist (see _rows_direct)."""
    return bool(_rows_direct(&dist.d))


cdef int _cb_draw_rows_only(void *ctx, mc_round *rd, Py_ssize_t r, int64_t b, Py_ssize_t m,
                            int tid) noexcept nogil:
    """A round: draw block b (item r) straight into its rows of c.rows (one
    draw per row), chunk by chunk and unit by unit as mc_draw_block_polled
    draws it (the same stream, the same values): each unit's column of a
    chunk is filled in the thread's buffer (cache-resident) and written to
    its column of the rows.  A Normal's column is the standard normal fill
    and loc + scale z written in one pass (the expression of the family's
    fill, mc_c_affine)."""
    cdef _ctx_t *c = <_ctx_t *> ctx
    cdef const mc_dist *dist = c.dist
    cdef const mc_family *fam = mc_family_of(dist.family)
    cdef Py_ssize_t ds = dist.draw_size, ch = mc_chunk_len(ds), i0, cs, j, k
    cdef double *col = c.tmp + tid * c.tmp_len
    cdef double *out
    cdef const double *p
    cdef bint normal = dist.family == MC_NORMAL
    i0 = 0
    while i0 < m:
        cs = ch if m - i0 > ch else m - i0
        for j in range(dist.n_units):
            p = mc_unit_params(dist, j)
            out = c.rows + (c.row_off[r] + i0) * ds + j
            if normal:
                mc_std_normal_fill(rd.bitgens[r], cs, col)
                for k in range(cs):
                    out[k * ds] = p[0] + p[1] * col[k]
            else:
                fam.fill_column(p, rd.bitgens[r], cs, col)
                for k in range(cs):
                    out[k * ds] = col[k]
        i0 += cs
        if i0 < m and mc_poll(rd, tid):
            return 1
    return 0


cdef int _cb_accumulate_row_layout(void *ctx, mc_round *rd, Py_ssize_t r, int64_t b, Py_ssize_t m,
                             int tid) noexcept nogil:
    """_cb_accumulate on a block held in f's row layout (c.rows from row
    c.row_off[r]): each chunk of rows is laid out column-major in the
    thread's buffer (in cache) and accumulated by mc_accum_chunk, as
    _accumulate_block accumulates the same chunk of a column-major block
    (the same values, the same sums)."""
    cdef _ctx_t *c = <_ctx_t *> ctx
    cdef const mc_dist *dist = c.dist
    cdef Py_ssize_t s = rd.slots[r], ds = dist.draw_size, ch = mc_chunk_len(ds), i0, cs, bad
    cdef const double *fx = c.fx + r * c.fld
    cdef const double *x = c.rows + c.row_off[r] * ds
    cdef double *tmp = c.tmp + tid * c.tmp_len
    cdef double *xt = tmp + ch
    if b < rd.n_streams:
        c.shifts[s] = fx[0]
    bad = mc_c_first_nonfinite(fx, m)
    if bad >= 0:
        mc_fail(rd, ERR_F_NONFINITE, b * rd.block_size + bad)
        return 1
    i0 = 0
    while i0 < m:
        cs = ch if m - i0 > ch else m - i0
        mc_c_to_rows(x + i0 * ds, ds, cs, xt)  # xt[k * cs + i] = x[(i0 + i) * ds + k]
        mc_accum_chunk(dist, cs, xt, cs, NULL, fx + i0, c.shifts[s], c.stats + s * c.sld, tmp)
        i0 += cs
        if i0 < m and mc_poll(rd, tid):
            return 1
    return 0


def accumulate_round_rows(KernelDist dist, int64_t[::1] blocks, int64_t[::1] slots, int64_t n,
                          int64_t block_size, int64_t n_streams, int n_threads,
                          double[:, ::1] rows, int64_t[::1] row_off, double[:, ::1] fx,
                          double[:, ::1] stats, double[::1] shifts):
    """accumulate_round for a round drawn by draw_round_rows(rows_only=True):
    block r's draws are rows[row_off[r]: row_off[r] + m] (one draw per
    row).  The same sums as accumulate_round on the column-major blocks.
    Returns the global index of a non-finite f value, or -1."""
    cdef Py_ssize_t R = blocks.shape[0], r, ch = mc_chunk_len(dist.draw_size)
    cdef mc_round rd
    cdef _ctx_t c = _context(dist)
    cdef int code
    if not _rows_direct(&dist.d):
        raise ValueError("accumulate_round_rows: a family drawn column by column only")
    _check_row_offsets(dist, blocks, n, block_size, rows, row_off)
    c.rows = _rows_ptr(rows)
    c.row_off = &row_off[0] if R else NULL
    _accumulate_setup(&c, &rd, blocks, slots, n, block_size, n_streams, n_threads, fx, stats,
                      shifts)
    c.tmp_len = ch + ch * dist.draw_size  # the score buffer and a chunk, column-major
    try:
        c.tmp = mc_alloc_doubles(mc_round_threads(&rd) * c.tmp_len,
                                 "the accumulation buffers")
        code = mc_drive(&rd, _cb_accumulate_row_layout, &c)
        return int(rd.ctl.err[1]) if code == ERR_F_NONFINITE else -1
    finally:
        free(c.tmp)


cdef int _check_row_offsets(KernelDist dist, int64_t[::1] blocks, int64_t n, int64_t block_size,
                            double[:, ::1] rows, int64_t[::1] row_off) except -1:
    """row_off: one non-negative first row per block, the blocks within rows
    (rows: (total, draw_size))."""
    cdef Py_ssize_t R = blocks.shape[0], r, total = 0
    if row_off.shape[0] != R or rows.shape[1] != dist.draw_size:
        raise ValueError("draw_round_rows: one row offset per block and rows of draw_size")
    for r in range(R):
        total = max(total, row_off[r] + min(block_size, n - blocks[r] * block_size))
        if row_off[r] < 0:
            raise ValueError("draw_round_rows: negative row offset")
    if total > rows.shape[0]:
        raise ValueError(f"draw_round_rows: rows holds {rows.shape[0]} draws, the round {total}")
    return 0


def draw_round_shared(KernelDist dist, list bitgens, int64_t[::1] blocks, int64_t[::1] slots,
                      int64_t n, int64_t block_size, double[:, ::1] xt, double[:, ::1] lt,
                      long long[::1] counter):
    """Draw the blocks of a round like draw_round, one thread, claiming block
    after block from counter[0] (start it at 0): several Python threads may
    run this on the same round at once and share its blocks.  Each block is
    drawn whole by one thread from its own stream, so the draws do not
    depend on who drew what.  The blocks of a round must belong to distinct
    streams."""
    _draw_blocks(dist, bitgens, blocks, slots, n, block_size, 1, xt, lt, &counter[0])


cdef void _accumulate_setup(_ctx_t *c, mc_round *rd, int64_t[::1] blocks, int64_t[::1] slots,
                            int64_t n, int64_t block_size, int64_t n_streams, int n_threads,
                            double[:, ::1] fx, double[:, ::1] stats, double[::1] shifts):
    """An accumulation round's context (f values, stream rows, shifts) and round."""
    cdef Py_ssize_t R = blocks.shape[0]
    c.fx = _rows_ptr(fx)
    c.fld = fx.shape[1]
    c.stats = _rows_ptr(stats)
    c.sld = stats.shape[1]
    c.shifts = &shifts[0] if shifts.shape[0] else NULL
    mc_round_init(rd, n, n_streams, block_size, n_threads, R, &blocks[0] if R else NULL,
                  &slots[0] if R else NULL, None)


def accumulate_round(KernelDist dist, int64_t[::1] blocks, int64_t[::1] slots, int64_t n,
                     int64_t block_size, int64_t n_streams, int n_threads,
                     double[:, ::1] xt, double[:, ::1] fx, double[:, ::1] stats,
                     double[::1] shifts, double[:, ::1] lt=None):
    """Accumulate drawn blocks with their f values into their streams' rows.
    Returns the global index of a non-finite f value, or -1."""
    cdef Py_ssize_t R = blocks.shape[0]
    cdef mc_round rd
    cdef _ctx_t c = _context(dist, xt, lt)
    cdef int code
    _accumulate_setup(&c, &rd, blocks, slots, n, block_size, n_streams, n_threads, fx, stats,
                      shifts)
    c.tmp_len = min(block_size, mc_chunk_len(dist.d.draw_size))
    try:
        c.tmp = mc_alloc_doubles(mc_round_threads(&rd) * c.tmp_len,
                                 "the accumulation buffers")
        code = mc_drive(&rd, _cb_accumulate, &c)
        return int(rd.ctl.err[1]) if code == ERR_F_NONFINITE else -1
    finally:
        free(c.tmp)


cdef int _cb_accumulate_batched(void *ctx, mc_round *rd, Py_ssize_t r, int64_t b,
                                Py_ssize_t m, int tid) noexcept nogil:
    """A batched round: accumulate drawn block b (row r) with its nf columns
    of f values (column k of the block at fx + r * fld + k * block_size) into
    its stream's row; polls the driver after every chunk."""
    cdef _ctx_t *c = <_ctx_t *> ctx
    cdef Py_ssize_t s = rd.slots[r], k, i0, cs, B = rd.block_size
    cdef Py_ssize_t ch = mc_chunk_len(c.dist.draw_size)
    cdef const double *fx = c.fx + r * c.fld
    cdef const double *xt = c.xt + r * c.ld
    cdef const double *lt = (c.lt + r * c.ld) if c.lt != NULL else NULL
    cdef double *sh = c.shifts + s * c.nf
    if b < rd.n_streams:
        for k in range(c.nf):
            sh[k] = fx[k * B]
    i0 = 0
    while i0 < m:
        cs = ch if m - i0 > ch else m - i0
        mc_accum_chunk_batched(c.dist, cs, xt + i0, m, (lt + i0) if lt != NULL else NULL,
                               fx + i0, B, c.nf, c.fcol, sh, c.stats + s * c.sld,
                               c.tmp + tid * c.tmp_len)
        i0 += cs
        if i0 < m and mc_poll(rd, tid):
            return 1
    return 0


def accumulate_round_batched(KernelDist dist, int64_t[::1] blocks, int64_t[::1] slots,
                             int64_t n, int64_t block_size, int64_t n_streams, int n_threads,
                             double[:, ::1] xt, double[:, ::1] fx, int64_t[::1] fcol,
                             double[:, ::1] stats, double[:, ::1] shifts,
                             double[:, ::1] lt=None):
    """accumulate_round for batched expectations: f has nf = shifts.shape[1]
    columns (one per batch element), row r of fx holding column k of block r
    at [k * block_size, k * block_size + m); score coordinate q (unit q of a
    per-category family) is accumulated with column fcol[q].  The stream rows
    are [count, (sum g_k, sum g_k^2) for each column k, then the per
    coordinate (or per category) sums with g = f_fcol[q] - its shift], the
    shifts (nf per stream) f's first values on the stream.  f must be finite
    (checked by the caller)."""
    cdef Py_ssize_t R = blocks.shape[0], nf = shifts.shape[1]
    cdef Py_ssize_t want = dist.d.n_units if dist.d.per_category else dist.d.n_coords
    cdef mc_round rd
    cdef _ctx_t c = _context(dist, xt, lt)
    if fcol.shape[0] != want or (want and (np.min(fcol) < 0 or np.max(fcol) >= nf)):
        raise ValueError(f"fcol must hold {want} column indices in [0, {nf})")
    if stats.shape[1] != dist.stats_len - 2 + 2 * nf or fx.shape[1] < nf * block_size:
        raise ValueError("stats rows or f values of the wrong length for a batched round")
    if R == 0:
        return
    c.fx = _rows_ptr(fx)
    c.fld = fx.shape[1]
    c.stats = _rows_ptr(stats)
    c.sld = stats.shape[1]
    c.shifts = _rows_ptr(shifts)
    c.fcol = &fcol[0] if fcol.shape[0] else NULL
    c.nf = nf
    mc_round_init(&rd, n, n_streams, block_size, n_threads, R, &blocks[0], &slots[0], None)
    c.tmp_len = min(block_size, mc_chunk_len(dist.d.draw_size))
    try:
        c.tmp = mc_alloc_doubles(mc_round_threads(&rd) * c.tmp_len,
                                 "the accumulation buffers")
        mc_drive(&rd, _cb_accumulate_batched, &c)
    finally:
        free(c.tmp)


include "_kernels_batched.pxi"


def alias_table(double[:, ::1] probs):
    """Walker/Vose alias tables for each row of normalised probabilities.

    Returns (q, alias): draw u ~ U[0, K), k = floor(u); keep k when
    u - k < q[k], else take alias[k].
    """
    cdef Py_ssize_t U = probs.shape[0], K = probs.shape[1], j, k, ns, nl, s, l
    q_arr = np.empty((U, K), dtype=np.float64)
    a_arr = np.empty((U, K), dtype=np.int64)
    cdef double[:, ::1] q = q_arr
    cdef int64_t[:, ::1] al = a_arr
    cdef int64_t[::1] small = np.empty(K, dtype=np.int64)
    cdef int64_t[::1] large = np.empty(K, dtype=np.int64)
    with nogil:
        for j in range(U):
            ns = 0
            nl = 0
            for k in range(K):
                q[j, k] = probs[j, k] * K
                al[j, k] = k
                if q[j, k] < 1.0:
                    small[ns] = k
                    ns = ns + 1
                else:
                    large[nl] = k
                    nl = nl + 1
            while ns > 0 and nl > 0:
                ns = ns - 1
                s = small[ns]
                l = large[nl - 1]
                al[j, s] = l
                q[j, l] = (q[j, l] + q[j, s]) - 1.0
                if q[j, l] < 1.0:
                    nl = nl - 1
                    small[ns] = l
                    ns = ns + 1
            # Leftovers are 1 up to rounding: always keep them.
            while nl > 0:
                nl = nl - 1
                q[j, large[nl]] = 2.0
            while ns > 0:
                ns = ns - 1
                q[j, small[ns]] = 2.0
    return q_arr, a_arr


# ---------------------------------------------------------------------------
# C views for other extensions (declared at the end of _kernels.pxd)
# ---------------------------------------------------------------------------

cdef const mc_dist *mc_kernel_dist_ptr(object kernel_dist) except NULL:
    """The mc_dist of a KernelDist (valid while the KernelDist lives)."""
    if not isinstance(kernel_dist, KernelDist):
        raise TypeError(f"expected a KernelDist (mcscore.embed.kernel_dist(dist)), got "
                        f"{type(kernel_dist).__name__}")
    return &(<KernelDist> kernel_dist).d


cdef const mc_func *mc_kernel_func_ptr(object kernel_func) except NULL:
    """The mc_func of a KernelFunc (valid while the KernelFunc lives)."""
    if not isinstance(kernel_func, KernelFunc):
        raise TypeError(f"expected a KernelFunc, got {type(kernel_func).__name__}")
    return &(<KernelFunc> kernel_func).f

cdef void _stream_totals(double[:, ::1] stats, double[::1] shifts, Py_ssize_t n_coords,
                         double *M, double *tot) noexcept:
    """stream_totals into M (5 * n_coords, row-major, zeroed by the caller)
    and tot = (c0, n, G, H)."""
    cdef Py_ssize_t S = stats.shape[0], s, q, k, P = n_coords
    cdef double c0 = 0.0, d, d2, n = 0.0, G = 0.0, H = 0.0
    cdef double *row
    for s in range(S):
        if stats[s, 0] > 0:
            c0 = shifts[s]
            break
    for s in range(S):
        row = &stats[s, 0]
        if not row[0] > 0:
            continue
        d = shifts[s] - c0
        d2 = d * d
        n += row[0]
        G += row[1] + d * row[0]
        H += row[2] + 2.0 * d * row[1] + d2 * row[0]
        for q in range(n_coords):
            k = 3 + 5 * q
            M[q] += row[k]
            M[P + q] += row[k + 1]
            M[2 * P + q] += row[k + 2] + d * row[k]
            M[3 * P + q] += row[k + 3] + d * row[k + 1]
            M[4 * P + q] += row[k + 4] + 2.0 * d * row[k + 3] + d2 * row[k + 1]
    tot[0], tot[1], tot[2], tot[3] = c0, n, G, H


def stream_totals(double[:, ::1] stats, double[::1] shifts, Py_ssize_t n_coords):
    """Sum per-stream statistics (non-categorical layout) over the streams,
    re-centred on one common shift c0 (the first non-empty stream's).

    Returns (c0, n, G, H, M) with G = sum (f - c0), H = sum (f - c0)^2 and
    M of shape (5, n_coords): sums of s, s^2, g s, g s^2, g^2 s^2 with
    g = f - c0.  One pass in C instead of a dozen small array operations.
    """
    out = np.zeros((5, n_coords))
    cdef double[:, ::1] M = out
    cdef double tot[4]
    _stream_totals(stats, shifts, n_coords, &M[0, 0] if n_coords else NULL, tot)
    return tot[0], tot[1], tot[2], tot[3], out


cdef extern from *:
    """
    /* pow through the C library, as Python's float ** and NumPy's scalar
       ** call it: the exponent is read at run time, so the compiler cannot
       turn pow(x, 2.0) into x * x (which differs from the library's pow in
       the last bit for some x). */
    static volatile double mc_pow_two = 2.0;
    static double mc_square_libm(double x) { return pow(x, mc_pow_two); }
    """
    double mc_square_libm(double x) noexcept nogil


cdef double _totals_algebra(const double *M, Py_ssize_t P, double c0, double n, double G,
                           double H, int mode, double b, double *grad, double *se,
                           double *var, double *q, double *value) noexcept:
    """totals_algebra's arithmetic into grad, se, var, q (P each), value;
    returns vvar."""
    cdef Py_ssize_t k
    cdef double e, factor = 1.0, f2, mean, v
    if mode == 0:
        e = c0
    elif mode == 1:
        e = -G / n
        factor = n / (n - 1)
    else:
        e = c0 - b
    f2 = mc_square_libm(factor)  # factor**2 of a Python float
    for k in range(P):
        mean = (M[2 * P + k] + e * M[k]) / n
        v = ((M[4 * P + k] + (2 * e) * M[3 * P + k]) + (e * e) * M[P + k]) - (n * mean) * mean
        if not (v > 0.0 or v != v):  # np.maximum(v, 0.0): NaN stays NaN
            v = 0.0
        v = v / (n - 1)
        if factor == 1.0:
            grad[k] = mean
            se[k] = sqrt(v / n)
            var[k] = v
        else:
            grad[k] = factor * mean
            se[k] = factor * sqrt(v / n)
            var[k] = v * f2
        q[k] = var[k] + grad[k] * grad[k]
    v = H - mc_square_libm(G) / n  # G ** 2 of a NumPy float64
    if 0.0 > v:  # max(v, 0.0) keeps v unless 0.0 is larger (NaN stays NaN)
        v = 0.0
    value[0] = c0 + G / n
    return v / (n - 1)


def totals_algebra(double[:, ::1] M, double c0, double n, double G, double H, int mode,
                   double b=0.0):
    """The score estimate from stream_totals' sums (M of shape (5, P): sums
    of s, s^2, g s, g s^2, g^2 s^2 with g = f - c0; n draws, G = sum g,
    H = sum g^2) with the baseline `mode`: 0 none, 1 leave-one-out, 2 the
    constant b.  Returns (grad, se, var, value, vvar, var + grad**2): the
    arithmetic of mcscore._algebra.baseline_algebra on one row of totals,
    operation for operation in IEEE double (the same bits), in one pass
    instead of a dozen small array operations."""
    cdef Py_ssize_t P = M.shape[1]
    if M.shape[0] != 5:
        raise ValueError("totals_algebra: M must have 5 rows")
    out = np.empty((4, P))
    cdef double[:, ::1] o = out
    cdef double value, vvar
    if P:
        vvar = _totals_algebra(&M[0, 0], P, c0, n, G, H, mode, b, &o[0, 0], &o[1, 0],
                               &o[2, 0], &o[3, 0], &value)
    else:
        vvar = _totals_algebra(NULL, 0, c0, n, G, H, mode, b, NULL, NULL, NULL, NULL, &value)
    return out[0], out[1], out[2], value, vvar, out[3]


cdef bint _extremes(const double *x, Py_ssize_t m, bint absolute, double *lo,
                    double *hi) noexcept:
    """lo, hi = min and max of the m values x (of |x| when absolute; +inf,
    -inf for no values); False (lo, hi NaN) when one is NaN: np.minimum.reduce's
    and np.maximum.reduce's values."""
    cdef double a
    cdef Py_ssize_t i
    lo[0], hi[0] = INFINITY, -INFINITY
    for i in range(m):
        a = fabs(x[i]) if absolute else x[i]
        if a != a:
            lo[0], hi[0] = a, a
            return False
        if a < lo[0]:
            lo[0] = a
        if a > hi[0]:
            hi[0] = a
    return True


def score_totals(double[:, ::1] stats, double[::1] shifts, Py_ssize_t n_coords, int mode,
                 double b=0.0):
    """stream_totals then totals_algebra, with the reductions the range
    tests of the finish take, in one call: (c0, n, G, H, big, grad, se, var,
    value, vvar, qmin, qmax) with big = max |M| (0 without coordinates) and
    qmin, qmax the least and largest of var + grad**2 (+inf, -inf without
    coordinates; NaN when one is NaN): the same values, bit for bit, as the
    separate calls and NumPy's reductions."""
    cdef Py_ssize_t P = n_coords
    out = np.empty((3, P))
    cdef double[:, ::1] o = out
    cdef double *M = <double *> calloc(5 * P + P + 1, sizeof(double))
    cdef double tot[4]
    cdef double lo, big = 0.0, qmin, qmax, value, vvar
    if M == NULL:
        raise MemoryError()
    try:
        _stream_totals(stats, shifts, P, M, tot)
        if P:
            vvar = _totals_algebra(M, P, tot[0], tot[1], tot[2], tot[3], mode, b, &o[0, 0],
                                   &o[1, 0], &o[2, 0], M + 5 * P, &value)
            _extremes(M, 5 * P, True, &lo, &big)
        else:
            vvar = _totals_algebra(M, 0, tot[0], tot[1], tot[2], tot[3], mode, b, NULL, NULL,
                                   NULL, NULL, &value)
        _extremes(M + 5 * P, P, False, &qmin, &qmax)
    finally:
        free(M)
    return (tot[0], tot[1], tot[2], tot[3], big, out[0], out[1], out[2], value, vvar,
            qmin, qmax)


cdef extern from *:
    """
    /* NumPy's SeedSequence (pool of 4 32-bit words) and its generate_state,
       the seeding of a PCG64 from it, in C: the same words as
       numpy.random.SeedSequence(entropy).generate_state(4, np.uint64). */
    #define MC_SS_INIT_A 0x43b0d7e5U
    #define MC_SS_MULT_A 0x931e8875U
    #define MC_SS_INIT_B 0x8b51f9ddU
    #define MC_SS_MULT_B 0x58f38dedU
    #define MC_SS_MIX_L 0xca01f9ddU
    #define MC_SS_MIX_R 0x4973f715U

    static inline uint32_t mc_ss_hashmix(uint32_t v, uint32_t *h) {
        v ^= *h;
        *h *= MC_SS_MULT_A;
        v *= *h;
        v ^= v >> 16;
        return v;
    }

    static inline uint32_t mc_ss_mix(uint32_t x, uint32_t y) {
        uint32_t r = MC_SS_MIX_L * x - MC_SS_MIX_R * y;
        r ^= r >> 16;
        return r;
    }

    /* ent: the assembled entropy (n 32-bit words); out: 8 words */
    static void mc_ss_state(const uint32_t *ent, Py_ssize_t n, uint32_t *out) {
        uint32_t pool[4], h = MC_SS_INIT_A, d;
        Py_ssize_t i, j;
        for (i = 0; i < 4; i++) pool[i] = mc_ss_hashmix(i < n ? ent[i] : 0U, &h);
        for (i = 0; i < 4; i++)
            for (j = 0; j < 4; j++)
                if (i != j) pool[j] = mc_ss_mix(pool[j], mc_ss_hashmix(pool[i], &h));
        for (i = 4; i < n; i++)
            for (j = 0; j < 4; j++) pool[j] = mc_ss_mix(pool[j], mc_ss_hashmix(ent[i], &h));
        h = MC_SS_INIT_B;
        for (i = 0; i < 8; i++) {
            d = pool[i % 4];
            d ^= h;
            h *= MC_SS_MULT_B;
            d *= h;
            d ^= d >> 16;
            out[i] = d;
        }
    }
    """
    void mc_ss_state(const uint32_t *ent, Py_ssize_t n, uint32_t *out) noexcept nogil


_PCG_MULT = 0x2360ED051FC65DA44385DF649FCCF645
_M128 = (1 << 128) - 1


def pcg64_seed_state(entropy):
    """The state dict of numpy.random.PCG64(numpy.random.SeedSequence(entropy))
    (entropy: a non-negative int or a sequence of them, no spawn key), in a
    few microseconds instead of the SeedSequence's tens."""
    cdef uint32_t[::1] ent
    cdef uint32_t out[8]
    words = []
    for v in ([entropy] if isinstance(entropy, int) else entropy):
        v = int(v)
        if v < 0:
            raise ValueError("entropy must be non-negative")
        if v == 0:
            words.append(0)
        while v > 0:
            words.append(v & 0xFFFFFFFF)
            v >>= 32
    ent = np.array(words, dtype=np.uint32) if words else np.zeros(1, dtype=np.uint32)
    mc_ss_state(&ent[0], len(words), out)
    s0 = out[0] | (<uint64_t> out[1] << 32)
    s1 = out[2] | (<uint64_t> out[3] << 32)
    i0 = out[4] | (<uint64_t> out[5] << 32)
    i1 = out[6] | (<uint64_t> out[7] << 32)
    initstate = (int(s0) << 64) | int(s1)
    inc = (((int(i0) << 64) | int(i1)) << 1 | 1) & _M128
    state = (inc + initstate) & _M128                # state 0, one step: inc
    state = (state * _PCG_MULT + inc) & _M128        # and a second step
    return {"bit_generator": "PCG64", "state": {"state": state, "inc": inc},
            "has_uint32": 0, "uinteger": 0}

include "_kernels_small.pxi"


# ---------------------------------------------------------------------------
# Stream states set from C: PCG64(root).jumped(s) for each stream s, written
# into pooled PCG64 objects' state structs through their bitgen capsules
# (instead of a state dict per stream through PCG64.state, about 1 us each).
# NumPy's PCG64 keeps, behind bitgen_t.state, a struct {pointer to the
# {state, inc} words, has_uint32, uinteger}; the layout is checked at import
# against PCG64.state (PCG64_STATES_IN_C).
# ---------------------------------------------------------------------------

cdef extern from *:
    """
    #if MC_HAVE_U128
    typedef struct { mc_u128 *words; int has_uint32; uint32_t uinteger; } mc_pcg64_struct;
    #define MC_U128(hi, lo) (((mc_u128)(hi) << 64) | (mc_u128)(lo))
    /* (A, G) of advancing PCG64's LCG by delta steps: s -> A s + G inc */
    static void mc_lcg_advance(mc_u128 delta, mc_u128 *A, mc_u128 *G) {
        mc_u128 am = 1, ap = 0, cm = MC_PCG_MULT, cp = 1;
        while (delta) {
            if (delta & 1) { am *= cm; ap = ap * cm + cp; }
            cp = (cm + 1) * cp;
            cm *= cm;
            delta >>= 1;
        }
        *A = am; *G = ap;
    }
    static void mc_pcg_write(bitgen_t *bg, mc_u128 s, mc_u128 inc, int has32, uint32_t u32) {
        mc_pcg64_struct *p = (mc_pcg64_struct *)bg->state;
        p->words[0] = s;
        p->words[1] = inc;
        p->has_uint32 = has32;
        p->uinteger = u32;
    }
    /* bgs[k] <- stream streams[k] of the root state (s0, inc): the root
       jumped streams[k] times by the jump J (stream s + 1 = stream s
       advanced by (A, G) when dense, one advance by s J each when sparse);
       stream 0 keeps the root's cached 32-bit word. */
    static int mc_pcg_set_streams(bitgen_t **bgs, const int64_t *streams, Py_ssize_t k,
                                  const uint64_t *w, int has32, uint32_t u32, int dense) {
        Py_ssize_t i;
        int64_t top = 0, s;
        mc_u128 A, G, x, *tab;
        mc_u128 s0 = MC_U128(w[0], w[1]), inc = MC_U128(w[2], w[3]), J = MC_U128(w[4], w[5]);
        for (i = 0; i < k; i++) if (streams[i] > top) top = streams[i];
        if (dense) {
            tab = (mc_u128 *)malloc(sizeof(mc_u128) * (size_t)(top + 1));
            if (tab == NULL) return -1;
            mc_lcg_advance(J, &A, &G);
            x = s0;
            for (s = 0; s <= top; s++) { tab[s] = x; x = A * x + G * inc; }
            for (i = 0; i < k; i++)
                mc_pcg_write(bgs[i], tab[streams[i]], inc, streams[i] ? 0 : has32,
                             streams[i] ? 0U : u32);
            free(tab);
            return 0;
        }
        for (i = 0; i < k; i++) {
            s = streams[i];
            mc_lcg_advance((mc_u128)(uint64_t)s * J, &A, &G);
            mc_pcg_write(bgs[i], A * s0 + G * inc, inc, s ? 0 : has32, s ? 0U : u32);
        }
        return 0;
    }
    #else
    static int mc_pcg_set_streams(bitgen_t **bgs, const int64_t *streams, Py_ssize_t k,
                                  const uint64_t *w, int has32, uint32_t u32, int dense) {
        return -1;
    }
    #endif
    """
    int mc_pcg_set_streams(bitgen_t **bgs, const int64_t *streams, Py_ssize_t k,
                           const uint64_t *w, int has32, uint32_t u32, int dense) noexcept nogil


_M64 = (1 << 64) - 1


def pcg64_set_streams(list bitgens, int64_t[::1] streams, dict root_state, jump, bint dense):
    """Set PCG64 object bitgens[k] (numpy.random.PCG64, held by nobody else)
    to stream streams[k] of root_state (a PCG64 state dict): the root LCG
    state advanced by streams[k] * jump steps, no cached 32-bit word but for
    stream 0 (the root state itself), as PCG64.state = {...} would set it.
    Returns False (nothing set) when the states cannot be set from C (no
    128-bit integers, or NumPy's state layout failed the import check)."""
    cdef Py_ssize_t k = len(bitgens), i
    cdef bitgen_t **bgs
    cdef int rc
    cdef uint64_t w[6]
    if not PCG64_STATES_IN_C or streams.shape[0] != k:
        return False
    if k == 0:
        return True
    st = root_state["state"]
    for i, v in enumerate((int(st["state"]), int(st["inc"]), int(jump))):
        w[2 * i] = (v >> 64) & _M64
        w[2 * i + 1] = v & _M64
    bgs = <bitgen_t **> malloc(sizeof(bitgen_t *) * k)
    if bgs == NULL:
        raise MemoryError("pcg64_set_streams")
    try:
        for i in range(k):
            bgs[i] = <bitgen_t *> PyCapsule_GetPointer(bitgens[i].capsule, "BitGenerator")
        rc = mc_pcg_set_streams(bgs, &streams[0], k, w, int(root_state["has_uint32"]),
                                int(root_state["uinteger"]), dense)
    finally:
        free(bgs)
    return rc == 0


PCG64_STATES_IN_C = bool(MC_HAVE_U128)


def _check_pcg64_states():
    """PCG64_STATES_IN_C: pcg64_set_streams gives PCG64.state's states
    (both paths, with and without a cached 32-bit word)."""
    ref = np.random.PCG64(2024)
    ref.random_raw(3)
    g = np.random.Generator(ref)
    g.integers(0, 2**31, dtype=np.uint32)  # leaves a cached 32-bit word
    root = ref.state
    jump = 0x9E3779B97F4A7C15F39CC0605CEDC835
    for dense in (True, False):
        mine = [np.random.PCG64(1) for _ in range(3)]
        if not pcg64_set_streams(mine, np.array([0, 2, 5], np.int64), root, jump, dense):
            return False
        for s, bg in zip((0, 2, 5), mine):
            want = np.random.PCG64(1)
            want.state = root
            if s:
                want = want.jumped(s)
                want.state = dict(want.state, has_uint32=0, uinteger=0)
            if bg.state != want.state or \
                    not np.array_equal(bg.random_raw(4), want.random_raw(4)):
                return False
    return True


if PCG64_STATES_IN_C:
    PCG64_STATES_IN_C = _check_pcg64_states()
