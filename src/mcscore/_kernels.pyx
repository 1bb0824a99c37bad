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
"""
import numpy as np
cimport numpy as cnp
from libc.math cimport log, log1p, exp, sin, cos, isfinite, fabs, INFINITY
from libc.stdlib cimport malloc, free, calloc
from libc.string cimport memset
from libc.stdint cimport int64_t, intptr_t
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
)

cnp.import_array()

# NumPy's own float64 loops for log and log1p (vectorised, e.g. AVX-512, with
# the same result for an element wherever it sits in a buffer), called from
# the kernels without the GIL on contiguous columns.  Falls back to libm.
ctypedef void (*mc_ufunc_loop)(char **args, const cnp.npy_intp *dims,
                               const cnp.npy_intp *steps, void *data) noexcept nogil
cdef mc_ufunc_loop _np_log_loop = NULL
cdef mc_ufunc_loop _np_log1p_loop = NULL
cdef mc_ufunc_loop _np_exp_loop = NULL
cdef void *_np_log_data = NULL
cdef void *_np_log1p_data = NULL
cdef void *_np_exp_data = NULL


cdef int _find_dd_loop(cnp.ufunc u, mc_ufunc_loop *fn, void **data) except -1:
    cdef int i
    for i in range(u.ntypes):
        if u.nin == 1 and u.nout == 1 and u.types[2 * i] == cnp.NPY_DOUBLE \
                and u.types[2 * i + 1] == cnp.NPY_DOUBLE and u.functions[i] != NULL:
            fn[0] = <mc_ufunc_loop> u.functions[i]
            data[0] = u.data[i]
            return 0
    return 0


def _use_numpy_math(bint on=True):
    """Use NumPy's float64 exp/log/log1p loops in the kernels (True, the
    default) or libm's scalar functions (False)."""
    global _np_log_loop, _np_log1p_loop, _np_exp_loop
    global _np_log_data, _np_log1p_data, _np_exp_data
    _np_log_loop = NULL
    _np_log1p_loop = NULL
    _np_exp_loop = NULL
    if on:
        _find_dd_loop(np.log, &_np_log_loop, &_np_log_data)
        _find_dd_loop(np.log1p, &_np_log1p_loop, &_np_log1p_data)
        _find_dd_loop(np.exp, &_np_exp_loop, &_np_exp_data)


_use_numpy_math(True)


cdef inline bint _run_dd_loop(mc_ufunc_loop loop, void *data, const double *x, double *out,
                              Py_ssize_t m) noexcept nogil:
    """Apply a NumPy float64 -> float64 inner loop to m contiguous values;
    False when there is no loop (the caller falls back to libm)."""
    cdef char *args[2]
    cdef cnp.npy_intp dims[1]
    cdef cnp.npy_intp steps[2]
    if loop == NULL or m <= 0:
        return False
    args[0] = <char *> x
    args[1] = <char *> out
    dims[0] = m
    steps[0] = sizeof(double)
    steps[1] = sizeof(double)
    loop(args, dims, steps, data)
    return True


cdef void mc_vlog(const double *x, double *out, Py_ssize_t m) noexcept nogil:
    """out[i] = log(x[i]) for i < m (out may be x)."""
    cdef Py_ssize_t i
    if not _run_dd_loop(_np_log_loop, _np_log_data, x, out, m):
        for i in range(m):
            out[i] = log(x[i])


cdef void mc_vexp(const double *x, double *out, Py_ssize_t m) noexcept nogil:
    """out[i] = exp(x[i]) for i < m (out may be x)."""
    cdef Py_ssize_t i
    if not _run_dd_loop(_np_exp_loop, _np_exp_data, x, out, m):
        for i in range(m):
            out[i] = exp(x[i])


cdef void mc_vlog1p(const double *x, double *out, Py_ssize_t m) noexcept nogil:
    """out[i] = log1p(x[i]) for i < m (out may be x)."""
    cdef Py_ssize_t i
    if not _run_dd_loop(_np_log1p_loop, _np_log1p_data, x, out, m):
        for i in range(m):
            out[i] = log1p(x[i])

cdef extern from *:
    """
    typedef double (*mc_cb_d_p_n)(double *, intptr_t);
    typedef double (*mc_cb_d_p_n_v)(double *, intptr_t, void *);
    typedef int (*mc_cb_i_p_n_p_v)(double *, intptr_t, double *, void *);
    typedef double (*mc_cb_d_p_i)(double *, int);
    typedef double (*mc_cb_d_p_i_v)(double *, int, void *);
    typedef int (*mc_cb_i_p_i_p_v)(double *, int, double *, void *);

    /* ---- hot loops: sums over one chunk of draws, in 8 fixed lanes ----
       Draw i of a chunk always goes to lane i % 8 and the lanes are added
       in one fixed order, so a chunk's sums depend on its values only (not
       on threads, buffer addresses or the instruction set).  The vector
       code does lane-wise IEEE operations exactly as the scalar tail does
       (no FMA contraction: setup.py passes -ffp-contract=off), so every
       clone below gives the same bits. */
    #include <string.h>
    #include <math.h>
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) \
        && defined(__linux__) && defined(__GLIBC__) && !defined(MC_NO_CLONES)
    #define MC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
    #else
    #define MC_CLONES
    #endif
    #if defined(__GNUC__) || defined(__clang__)
    #define MC_VEC 1
    typedef double mc_v8 __attribute__((vector_size(64)));
    #define MC_LD(v, p) memcpy(&(v), (p), sizeof(mc_v8))
    #endif
    #define MC_SKIND_AFFINE 0
    #define MC_SKIND_QUAD 3
    #define MC_SKIND_IDENT (-1)

    static inline double mc_red8(const double *r) {
        return ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    }

    /* out[0] += sum g, out[1] += sum g^2 with g = fx - shift. */
    MC_CLONES
    static void mc_c_gsum(const double *fx, Py_ssize_t cs, double shift, double *out) {
        double r0[8] = {0}, r1[8] = {0};
        Py_ssize_t i = 0, l;
    #ifdef MC_VEC
        mc_v8 G = {0}, H = {0}, f, g;
        Py_ssize_t nf = cs & ~(Py_ssize_t)7;
        for (; i < nf; i += 8) {
            MC_LD(f, fx + i);
            g = f - shift;
            G += g;
            H += g * g;
        }
        memcpy(r0, &G, sizeof G);
        memcpy(r1, &H, sizeof H);
    #endif
        for (; i + 8 <= cs; i += 8)
            for (l = 0; l < 8; l++) {
                double g = fx[i + l] - shift;
                r0[l] += g; r1[l] += g * g;
            }
        for (l = 0; i + l < cs; l++) {
            double g = fx[i + l] - shift;
            r0[l] += g; r1[l] += g * g;
        }
        out[0] += mc_red8(r0);
        out[1] += mc_red8(r1);
    }

    /* One score coordinate s(x) = a x + b (kind AFFINE), a (x - c)^2 + b
       (QUAD) or x (IDENT): acc[0..4] += sums of s, s^2, g s, g s^2, g^2 s^2. */
    #define MC_S_AFFINE(X) ((X) * a + b)
    #define MC_S_QUAD(X) (((X) - c) * ((X) - c) * a + b)
    #define MC_S_IDENT(X) (X)
    #define MC_ACC5_LOOP(SEXPR)                                               \
        for (; i + 8 <= cs; i += 8) {                                         \
            mc_v8 xv, fv, s, g, ss, gss;                                      \
            MC_LD(xv, x + i); MC_LD(fv, fx + i);                              \
            s = SEXPR(xv); g = fv - shift; ss = s * s; gss = g * ss;          \
            A0 += s; A1 += ss; A2 += g * s; A3 += gss; A4 += g * gss;         \
        }
    #define MC_ACC5_TAIL(SEXPR)                                               \
        for (; i < cs; i++) {                                                 \
            double s = SEXPR(x[i]), g = fx[i] - shift, ss = s * s, gss = g * ss; \
            l = i & 7;                                                        \
            r[0][l] += s; r[1][l] += ss; r[2][l] += g * s; r[3][l] += gss;    \
            r[4][l] += g * gss;                                               \
        }
    MC_CLONES
    static void mc_c_acc5(int kind, const double *x, const double *fx, Py_ssize_t cs,
                          double shift, double a, double b, double c, double *acc) {
        double r[5][8];
        Py_ssize_t i = 0, l, k;
        memset(r, 0, sizeof r);
    #ifdef MC_VEC
        {
            mc_v8 A0 = {0}, A1 = {0}, A2 = {0}, A3 = {0}, A4 = {0};
            if (kind == MC_SKIND_AFFINE) { MC_ACC5_LOOP(MC_S_AFFINE) }
            else if (kind == MC_SKIND_QUAD) { MC_ACC5_LOOP(MC_S_QUAD) }
            else { MC_ACC5_LOOP(MC_S_IDENT) }
            memcpy(r[0], &A0, sizeof A0); memcpy(r[1], &A1, sizeof A1);
            memcpy(r[2], &A2, sizeof A2); memcpy(r[3], &A3, sizeof A3);
            memcpy(r[4], &A4, sizeof A4);
        }
    #endif
        if (kind == MC_SKIND_AFFINE) { MC_ACC5_TAIL(MC_S_AFFINE) }
        else if (kind == MC_SKIND_QUAD) { MC_ACC5_TAIL(MC_S_QUAD) }
        else { MC_ACC5_TAIL(MC_S_IDENT) }
        for (k = 0; k < 5; k++) acc[k] += mc_red8(r[k]);
    }

    /* out[i] = the score in reduced form (see mc_score_col): p[i] * a + b
       (AFFINE), (p[i] - c)^2 * a + b (QUAD) or p[i] (IDENT), by the same
       expressions as mc_c_acc5 (out may be p). */
    static void mc_c_apply(int kind, const double *p, Py_ssize_t m, double a, double b,
                           double c, double *out) {
        Py_ssize_t i;
        if (kind == MC_SKIND_AFFINE) { for (i = 0; i < m; i++) out[i] = MC_S_AFFINE(p[i]); }
        else if (kind == MC_SKIND_QUAD) { for (i = 0; i < m; i++) out[i] = MC_S_QUAD(p[i]); }
        else if (out != p) memcpy(out, p, sizeof(double) * m);
    }

    /* Index of the first non-finite value of fx[0..cs), or -1. */
    MC_CLONES
    static Py_ssize_t mc_c_first_nonfinite(const double *fx, Py_ssize_t cs) {
        Py_ssize_t i;
        int bad = 0;
        for (i = 0; i < cs; i++) bad |= !(fx[i] - fx[i] == 0.0);
        if (!bad) return -1;
        for (i = 0; i < cs; i++) if (!isfinite(fx[i])) return i;
        return -1;
    }

    /* fx[i] += coef * (p[0] + p[1] x + ... + p[deg] x^deg) by Horner's rule,
       element by element (the same operations for every element). */
    MC_CLONES
    static void mc_c_poly(const double *x, Py_ssize_t cs, const double *p, Py_ssize_t deg,
                          double coef, double *fx) {
        double acc[64];
        Py_ssize_t i0, i, k, n;
        for (i0 = 0; i0 < cs; i0 += 64) {
            n = cs - i0 < 64 ? cs - i0 : 64;
            for (i = 0; i < n; i++) acc[i] = p[deg];
            for (k = deg - 1; k >= 0; k--)
                for (i = 0; i < n; i++) acc[i] = acc[i] * x[i0 + i] + p[k];
            for (i = 0; i < n; i++) fx[i0 + i] += coef * acc[i];
        }
    }
    /* Alias-table sampling without branches: col holds m uniforms on
       input and the drawn categories (as doubles) on output.  Keep k =
       floor(u K) when u K - k < q[k], else take alias[k]. */
    MC_CLONES
    static void mc_c_alias(double *col, Py_ssize_t m, Py_ssize_t K, const double *q,
                           const int64_t *al) {
        Py_ssize_t i;
        double dK = (double)K;
        for (i = 0; i < m; i++) {
            double u = col[i] * dK;
            int64_t k = (int64_t)u;
            k = k < K ? k : K - 1;
            int64_t alt = al[k];
            int64_t keep = -(int64_t)(u - (double)k < q[k]);  /* all ones or 0 */
            col[i] = (double)((k & keep) | (alt & ~keep));
        }
    }

    /* x[i] = exp(y[i]) where y[i] > thr, else 0.0, without branches: the
       indices above thr are gathered first (idx: m slots), then exp runs
       on those only. */
    static Py_ssize_t mc_c_gather_above(const double *y, double *x, Py_ssize_t m,
                                        double thr, Py_ssize_t *idx, double *yg) {
        Py_ssize_t i, c = 0;
        for (i = 0; i < m; i++) {
            x[i] = 0.0;
            idx[c] = i;
            c += (y[i] > thr);
        }
        for (i = 0; i < c; i++) yg[i] = y[idx[i]];
        return c;
    }
    static void mc_c_scatter(const double *v, Py_ssize_t c, const Py_ssize_t *idx,
                             double *x) {
        Py_ssize_t i;
        for (i = 0; i < c; i++) x[idx[i]] = v[i];
    }

    /* Column fills (mc_column_fill_fn, see _kernels.pxd) of the families
       whose draw is one call of a NumPy sampler: m draws of one unit into
       col from the unit's parameter block p. */
    #define MC_COLUMN_FILL(NAME, EXPR)                                        \
        static void NAME(const double *p, bitgen_t *bg, Py_ssize_t m, double *col) { \
            Py_ssize_t i;                                                     \
            for (i = 0; i < m; i++) col[i] = (EXPR);                          \
        }
    /* Beta: p = [concentration1, concentration0] */
    MC_COLUMN_FILL(mc_fill_beta, random_beta(bg, p[0], p[1]))
    /* Poisson: p = [rate] */
    MC_COLUMN_FILL(mc_fill_poisson, (double)random_poisson(bg, p[0]))
    /* Bernoulli: p = [probs] */
    MC_COLUMN_FILL(mc_fill_bernoulli, random_standard_uniform(bg) < p[0] ? 1.0 : 0.0)
    /* Geometric: p = [probs]; numpy counts the trials up to and including
       the first success, torch the failures before it */
    MC_COLUMN_FILL(mc_fill_geometric, (double)(random_geometric(bg, p[0]) - 1))
    /* NegativeBinomial: p = [probs, total_count]; successes (prob p[0])
       before total_count failures == numpy's failures before total_count
       successes with success probability 1 - p[0] */
    MC_COLUMN_FILL(mc_fill_negative_binomial,
                   (double)random_negative_binomial(bg, p[1], 1.0 - p[0]))
    /* Laplace: p = [loc, scale]; NumPy inverts one uniform per draw */
    MC_COLUMN_FILL(mc_fill_laplace, random_laplace(bg, p[0], p[1]))

    /* col[i] = a + b * col[i] (elementwise, the same in every clone). */
    MC_CLONES
    static void mc_c_affine(double *col, Py_ssize_t m, double a, double b) {
        Py_ssize_t i;
        for (i = 0; i < m; i++) col[i] = a + b * col[i];
    }
    """
    ctypedef double (*mc_cb_d_p_n)(double *, intptr_t) noexcept nogil
    ctypedef double (*mc_cb_d_p_n_v)(double *, intptr_t, void *) noexcept nogil
    ctypedef int (*mc_cb_i_p_n_p_v)(double *, intptr_t, double *, void *) noexcept nogil
    ctypedef double (*mc_cb_d_p_i)(double *, int) noexcept nogil
    ctypedef double (*mc_cb_d_p_i_v)(double *, int, void *) noexcept nogil
    ctypedef int (*mc_cb_i_p_i_p_v)(double *, int, double *, void *) noexcept nogil
    void mc_c_gsum(const double *fx, Py_ssize_t cs, double shift, double *out) noexcept nogil
    void mc_c_acc5(int kind, const double *x, const double *fx, Py_ssize_t cs, double shift,
                   double a, double b, double c, double *acc) noexcept nogil
    void mc_c_apply(int kind, const double *p, Py_ssize_t m, double a, double b, double c,
                    double *out) noexcept nogil
    Py_ssize_t mc_c_first_nonfinite(const double *fx, Py_ssize_t cs) noexcept nogil
    void mc_c_poly(const double *x, Py_ssize_t cs, const double *p, Py_ssize_t deg,
                   double coef, double *fx) noexcept nogil
    int MC_SKIND_AFFINE, MC_SKIND_QUAD, MC_SKIND_IDENT
    void mc_c_affine(double *col, Py_ssize_t m, double a, double b) noexcept nogil
    void mc_fill_beta(const double *p, bitgen_t *bg, Py_ssize_t m, double *col) noexcept nogil
    void mc_fill_poisson(const double *p, bitgen_t *bg, Py_ssize_t m, double *col) noexcept nogil
    void mc_fill_bernoulli(const double *p, bitgen_t *bg, Py_ssize_t m,
                           double *col) noexcept nogil
    void mc_fill_geometric(const double *p, bitgen_t *bg, Py_ssize_t m,
                           double *col) noexcept nogil
    void mc_fill_negative_binomial(const double *p, bitgen_t *bg, Py_ssize_t m,
                                   double *col) noexcept nogil
    void mc_fill_laplace(const double *p, bitgen_t *bg, Py_ssize_t m, double *col) noexcept nogil
    void mc_c_alias(double *col, Py_ssize_t m, Py_ssize_t K, const double *q,
                    const int64_t *al) noexcept nogil
    Py_ssize_t mc_c_gather_above(const double *y, double *x, Py_ssize_t m, double thr,
                                 Py_ssize_t *idx, double *yg) noexcept nogil
    void mc_c_scatter(const double *v, Py_ssize_t c, const Py_ssize_t *idx,
                      double *x) noexcept nogil

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


# ---------------------------------------------------------------------------
# The family table: one fill function (and optionally a score kernel) per
# family code.  A fill draws m samples of unit j into its columns of a chunk
# (see mc_fill_fn in _kernels.pxd); its parameters are the unit's block
# p = mc_unit_params(dist, j) (dist.prm_len doubles, laid out by the
# family's _draw_params in distributions.py).
# ---------------------------------------------------------------------------

cdef mc_family _FAMILY_TABLE[MC_N_FAMILIES]


cdef inline const double *mc_unit_params(const mc_dist *dist, Py_ssize_t j) noexcept nogil:
    return dist.prm + j * dist.prm_len


cdef const mc_family *mc_family_of(int family) noexcept nogil:
    """The family's kernel functions, or NULL for an unknown code."""
    if family < 0 or family >= MC_N_FAMILIES or (_FAMILY_TABLE[family].fill == NULL and
                                                 _FAMILY_TABLE[family].fill_column == NULL):
        return NULL
    return &_FAMILY_TABLE[family]


cdef void _register(int code, const char *name, mc_fill_fn fill, bint log_column=False,
                    mc_score_fn score=NULL) noexcept:
    """Enter a family in the table: its general fill, whether the fill
    writes log columns, and its own score kernel (or NULL)."""
    _FAMILY_TABLE[code].name = name
    _FAMILY_TABLE[code].fill = fill
    _FAMILY_TABLE[code].score = score
    _FAMILY_TABLE[code].log_column = log_column


cdef void _register_column(int code, const char *name, mc_column_fill_fn fill_column,
                           mc_score_fn score=NULL) noexcept:
    """Enter a univariate family drawn by a column fill."""
    _register(code, name, NULL, False, score)
    _FAMILY_TABLE[code].fill_column = fill_column


memset(_FAMILY_TABLE, 0, sizeof(_FAMILY_TABLE))


cdef void _fill_normal(const double *p, bitgen_t *bg, Py_ssize_t m, double *col) noexcept nogil:
    # p = [loc, scale]
    random_standard_normal_fill(bg, m, col)
    mc_c_affine(col, m, p[0], p[1])



cdef void _fill_lognormal(const mc_dist *dist, Py_ssize_t j, bitgen_t *bg, Py_ssize_t m,
                          double *xt, Py_ssize_t ld, double *lt,
                          mc_workspace *ws) noexcept nogil:
    # p = [loc, scale] of log x; lt (or NULL) receives log x exactly as drawn
    cdef const double *p = mc_unit_params(dist, j)
    cdef double *col = xt + j * ld
    cdef double *lcol
    cdef double a = p[0], b = p[1]
    cdef Py_ssize_t i, k
    random_standard_normal_fill(bg, m, col)
    if lt == NULL:
        mc_c_affine(col, m, a, b)
        mc_vexp(col, col, m)
        return
    lcol = lt + j * ld
    for i in range(m):
        lcol[i] = a + b * col[i]
    if ws.lazy_thr != NULL and ws.lazy_thr[j] > -INFINITY:
        # fused kernels whose f reads x only through calls and digital
        # calls: below the strike x is never looked at (ws.tmp and ws.fx
        # are free while drawing)
        k = mc_c_gather_above(lcol, col, m, ws.lazy_thr[j], <Py_ssize_t *> ws.tmp, ws.fx)
        mc_vexp(ws.fx, ws.fx, k)
        mc_c_scatter(ws.fx, k, <Py_ssize_t *> ws.tmp, col)
    else:
        mc_vexp(lcol, col, m)



cdef void _fill_exponential(const double *p, bitgen_t *bg, Py_ssize_t m,
                            double *col) noexcept nogil:
    # p = [rate]
    cdef double scale = 1.0 / p[0]
    cdef Py_ssize_t i
    random_standard_exponential_fill(bg, m, col)
    for i in range(m):
        col[i] = col[i] * scale



cdef void _fill_gamma(const double *p, bitgen_t *bg, Py_ssize_t m, double *col) noexcept nogil:
    # p = [concentration, rate]
    cdef double a = p[0], scale = 1.0 / p[1]
    cdef Py_ssize_t i
    for i in range(m):
        col[i] = random_standard_gamma(bg, a) * scale



cdef void _fill_binomial(const mc_dist *dist, Py_ssize_t j, bitgen_t *bg, Py_ssize_t m,
                         double *xt, Py_ssize_t ld, double *lt,
                         mc_workspace *ws) noexcept nogil:
    # p = [probs, total_count]; ws.binom caches NumPy's per-parameter setup
    cdef const double *p = mc_unit_params(dist, j)
    cdef int64_t n = <int64_t> p[1]
    cdef Py_ssize_t i
    for i in range(m):
        xt[j * ld + i] = <double> random_binomial(bg, p[0], n, &ws.binom)



cdef void _fill_categorical(const mc_dist *dist, Py_ssize_t j, bitgen_t *bg, Py_ssize_t m,
                            double *xt, Py_ssize_t ld, double *lt,
                            mc_workspace *ws) noexcept nogil:
    # the unit's alias table (dist.alias_q / alias_i); one uniform per draw
    cdef Py_ssize_t K = dist.n_cat
    cdef double *col = xt + j * ld
    random_standard_uniform_fill(bg, m, col)
    mc_c_alias(col, m, K, dist.alias_q + j * K, dist.alias_i + j * K)



cdef void _fill_multinomial(const mc_dist *dist, Py_ssize_t j, bitgen_t *bg, Py_ssize_t m,
                            double *xt, Py_ssize_t ld, double *lt,
                            mc_workspace *ws) noexcept nogil:
    # p = [probs (K), total_count]; columns j*K .. j*K+K-1
    cdef const double *p = mc_unit_params(dist, j)
    cdef Py_ssize_t i, k, K = dist.n_cat
    for i in range(m):
        # numpy stops early once all trials are placed: zero first.
        memset(ws.ibuf, 0, sizeof(int64_t) * K)
        random_multinomial(bg, <int64_t> p[K], ws.ibuf, <double *> p, K, &ws.binom)
        for k in range(K):
            xt[(j * K + k) * ld + i] = <double> ws.ibuf[k]



cdef void _fill_dirichlet(const mc_dist *dist, Py_ssize_t j, bitgen_t *bg, Py_ssize_t m,
                          double *xt, Py_ssize_t ld, double *lt,
                          mc_workspace *ws) noexcept nogil:
    # p = [concentration (K), unused]; columns j*K .. j*K+K-1
    cdef const double *p = mc_unit_params(dist, j)
    cdef Py_ssize_t i, k, K = dist.n_cat
    cdef double a, b, u = 0.0, scale, v
    cdef double *x = xt + j * K * ld
    for k in range(K):
        u = u + p[k]
    for i in range(m):
        a = 0.0
        for k in range(K):
            scale = random_standard_gamma(bg, p[k])
            x[k * ld + i] = scale
            a = a + scale
        if a > 0.0:
            for k in range(K):
                x[k * ld + i] = x[k * ld + i] / a
            continue
        # Every gamma variate underflowed (tiny concentrations): break the
        # stick with beta draws instead, as NumPy does for small
        # concentrations, so the draw is a point of the simplex.
        b = u           # concentration left after category k
        scale = 1.0     # length of stick left
        for k in range(K - 1):
            b = b - p[k]
            if b < p[K - 1]:
                b = p[K - 1]
            v = random_beta(bg, p[k], b)
            x[k * ld + i] = scale * v
            scale = scale * (1.0 - v)
        x[(K - 1) * ld + i] = scale



# The family table.  Column fills (the simple form, mc_column_fill_fn):
_register_column(MC_NORMAL, b"Normal", _fill_normal)
_register_column(MC_EXPONENTIAL, b"Exponential", _fill_exponential)
_register_column(MC_GAMMA, b"Gamma", _fill_gamma)
_register_column(MC_BETA, b"Beta", mc_fill_beta)
_register_column(MC_POISSON, b"Poisson", mc_fill_poisson)
_register_column(MC_BERNOULLI, b"Bernoulli", mc_fill_bernoulli)
_register_column(MC_GEOMETRIC, b"Geometric", mc_fill_geometric)
_register_column(MC_NEGATIVE_BINOMIAL, b"NegativeBinomial", mc_fill_negative_binomial)
_register_column(MC_LAPLACE, b"Laplace", mc_fill_laplace)
# ... and fills of the general form (mc_fill_fn: several columns per unit,
# log columns, workspace state):
_register(MC_LOGNORMAL, b"LogNormal", _fill_lognormal, True)
_register(MC_BINOMIAL, b"Binomial", _fill_binomial)
_register(MC_CATEGORICAL, b"Categorical", _fill_categorical)
_register(MC_MULTINOMIAL, b"Multinomial", _fill_multinomial)
_register(MC_DIRICHLET, b"Dirichlet", _fill_dirichlet)


cdef bint mc_has_log_column(const mc_dist *dist) noexcept nogil:
    """True when the draws come with log x for free (LogNormal): the score
    then reads it from the log column instead of recomputing log(exp(y))."""
    cdef const mc_family *fam = mc_family_of(dist.family)
    return fam != NULL and fam.log_column


cdef void mc_draw_chunk(const mc_dist *dist, bitgen_t *bg, Py_ssize_t m, double *xt,
                        Py_ssize_t ld, double *lt, mc_workspace *ws) noexcept nogil:
    """Draw m samples into xt, column-major with leading dimension ld:
    xt[c * ld + i].  Draws are made unit by unit (all m draws of unit 0, then
    unit 1, ...) by the family's fill function, so that fills write
    contiguous columns.  lt (same layout; may be NULL) receives log x for
    families with a log column (LogNormal)."""
    cdef const mc_family *fam = &_FAMILY_TABLE[dist.family]
    cdef Py_ssize_t j
    for j in range(dist.n_units):
        if fam.fill != NULL:
            fam.fill(dist, j, bg, m, xt, ld, lt, ws)
        else:
            fam.fill_column(mc_unit_params(dist, j), bg, m, xt + j * ld)


cdef bint mc_draw_block_polled(const mc_dist *dist, bitgen_t *bg, Py_ssize_t m, double *xt,
                               double *lt, mc_workspace *ws, mc_round *rd,
                               int tid) noexcept nogil:
    """mc_draw_block_lt that polls the driver (rd, or NULL) after every chunk;
    True when it stopped early (an interrupt: the draws are then discarded)."""
    cdef Py_ssize_t i0, cs, c = mc_chunk_len(dist.draw_size)
    i0 = 0
    while i0 < m:
        cs = c if m - i0 > c else m - i0
        mc_draw_chunk(dist, bg, cs, xt + i0, m, (lt + i0) if lt != NULL else NULL, ws)
        i0 += cs
        if rd != NULL and i0 < m and mc_poll(rd, tid):
            return True
    return False


cdef void mc_draw_block_lt(const mc_dist *dist, bitgen_t *bg, Py_ssize_t m, double *xt,
                           double *lt, mc_workspace *ws) noexcept nogil:
    """Draw a block of m samples (column-major, leading dimension m) chunk by
    chunk, exactly as the fused kernels do; lt (or NULL) as in mc_draw_chunk."""
    mc_draw_block_polled(dist, bg, m, xt, lt, ws, NULL, 0)


cdef void mc_draw_block(const mc_dist *dist, bitgen_t *bg, Py_ssize_t m, double *xt,
                        mc_workspace *ws) noexcept nogil:
    """Draw m samples into xt (column-major, see the .pxd), in the order the
    kernels use (chunk by chunk, unit by unit within a chunk)."""
    mc_draw_block_lt(dist, bg, m, xt, NULL, ws)


cdef inline double _integrand_term_scalar(int kind, double x, const double *p) noexcept nogil:
    if kind == IK_INDICATOR:
        return 1.0 if (x >= p[0] and x <= p[1]) else 0.0
    if kind == IK_CALL:
        return x - p[0] if x > p[0] else 0.0
    if kind == IK_PUT:
        return p[0] - x if x < p[0] else 0.0
    if kind == IK_DIGITAL_CALL:
        return 1.0 if x > p[0] else 0.0
    if kind == IK_DIGITAL_PUT:
        return 1.0 if x < p[0] else 0.0
    return 0.0


cdef void mc_eval_integrand(const mc_integrand *F, Py_ssize_t ds, Py_ssize_t m,
                            const double *xt, double *fx) noexcept nogil:
    """fx[i] = F(draw i) for a column-major block."""
    cdef Py_ssize_t t, i, c, r, k, deg
    cdef int kind
    cdef double coef, w, v, acc
    cdef double lbuf[256]
    cdef const double *p
    cdef const double *x
    cdef const double *xr
    for i in range(m):
        fx[i] = F.constant
    for t in range(F.n_terms):
        kind = <int> F.kind[t]
        coef = F.coef[t]
        p = F.params + F.off[t]
        if kind == IK_POLY:
            deg = <Py_ssize_t> p[0]
            mc_c_poly(xt + F.col[t] * m, m, p + 1, deg, coef, fx)
        elif kind == IK_LINEAR:
            for c in range(ds):
                w = coef * p[c]
                if w != 0.0:
                    x = xt + c * m
                    for i in range(m):
                        fx[i] += w * x[i]
        elif kind == IK_QUAD_DIAG:
            for c in range(ds):
                w = coef * p[ds + c]
                if w != 0.0:
                    x = xt + c * m
                    v = p[c]
                    for i in range(m):
                        fx[i] += w * (x[i] - v) * (x[i] - v)
        elif kind == IK_QUAD_FULL:
            for i in range(m):
                acc = 0.0
                for r in range(ds):
                    v = 0.0
                    for c in range(ds):
                        v += p[ds + r * ds + c] * (xt[c * m + i] - p[c])
                    acc += (xt[r * m + i] - p[r]) * v
                fx[i] += coef * acc
        elif kind == IK_SIN or kind == IK_COS or kind == IK_EXP or kind == IK_LOG1P:
            for c in range(ds):
                w = coef * p[c]
                if w == 0.0:
                    continue
                x = xt + c * m
                if kind == IK_SIN:
                    for i in range(m):
                        fx[i] += w * sin(x[i])
                elif kind == IK_COS:
                    for i in range(m):
                        fx[i] += w * cos(x[i])
                elif kind == IK_EXP:
                    for i in range(m):
                        fx[i] += w * exp(x[i])
                else:
                    i = 0
                    while i < m:
                        k = m - i if m - i < 256 else 256
                        mc_vlog1p(x + i, lbuf, k)
                        for r in range(k):
                            fx[i + r] += w * lbuf[r]
                        i += k
        elif kind == IK_CALL:
            # max(x - K, 0) written so that the loop vectorises: x - K > 0
            # exactly when x > K (gradual underflow), the same value.
            x = xt + F.col[t] * m
            v = p[0]
            for i in range(m):
                acc = x[i] - v
                fx[i] += coef * (acc if acc > 0.0 else 0.0)
        elif kind == IK_PUT:
            x = xt + F.col[t] * m
            v = p[0]
            for i in range(m):
                acc = v - x[i]
                fx[i] += coef * (acc if acc > 0.0 else 0.0)
        else:
            x = xt + F.col[t] * m
            for i in range(m):
                fx[i] += coef * _integrand_term_scalar(kind, x[i], p)


cdef Py_ssize_t mc_eval_callback(const mc_func *F, Py_ssize_t ds, Py_ssize_t m,
                                 const double *xt, double *row, double *fx) noexcept nogil:
    """Call a C function on each draw.  Returns -1, or the index of the first
    draw for which the callback signalled an error (non-zero return)."""
    cdef Py_ssize_t i, c
    cdef int rc
    cdef int sig = F.sig
    for i in range(m):
        for c in range(ds):
            row[c] = xt[c * m + i]
        if sig == CB_D_P_N:
            fx[i] = (<mc_cb_d_p_n> F.fptr)(row, <intptr_t> ds)
        elif sig == CB_D_P_N_V:
            fx[i] = (<mc_cb_d_p_n_v> F.fptr)(row, <intptr_t> ds, F.user_data)
        elif sig == CB_D_P_I:
            fx[i] = (<mc_cb_d_p_i> F.fptr)(row, <int> ds)
        elif sig == CB_D_P_I_V:
            fx[i] = (<mc_cb_d_p_i_v> F.fptr)(row, <int> ds, F.user_data)
        elif sig == CB_I_P_N_P_V:
            rc = (<mc_cb_i_p_n_p_v> F.fptr)(row, <intptr_t> ds, &fx[i], F.user_data)
            if rc != 0:
                return i
        else:
            rc = (<mc_cb_i_p_i_p_v> F.fptr)(row, <int> ds, &fx[i], F.user_data)
            if rc != 0:
                return i
    return -1


cdef Py_ssize_t mc_eval_block(const mc_func *func, const mc_dist *dist, Py_ssize_t m,
                              const double *xt, double *fx, mc_workspace *ws) noexcept nogil:
    """Evaluate f on a block.  Returns -1 or the index of a failing draw."""
    if func.kind == FK_INTEGRAND:
        mc_eval_integrand(func.integ, dist.draw_size, m, xt, fx)
        return -1
    if func.kind == FK_CALLBACK:
        return mc_eval_callback(func, dist.draw_size, m, xt, ws.row, fx)
    return -1


# ---------------------------------------------------------------------------
# The one score evaluator: every consumer of a score table (the fused
# accumulators below, _vr's feature kernels, Distribution.score through
# eval_scores) computes scores here.
# ---------------------------------------------------------------------------

cdef inline void _score_term(int kind, const double *x, const double *lx, Py_ssize_t m,
                             double a, double b, double c, double *out) noexcept nogil:
    """out[i] += term of a table kind (not SK_FAMILY) at x[i] (lx: log x, or NULL)."""
    cdef Py_ssize_t i
    cdef double d
    if lx != NULL and (kind == SK_LOG_AFFINE or kind == SK_LOG_QUAD):
        x = lx
        kind = SK_AFFINE if kind == SK_LOG_AFFINE else SK_QUAD
    if kind == SK_AFFINE:
        for i in range(m):
            out[i] += x[i] * a + b
    elif kind == SK_LOG_AFFINE:
        for i in range(m):
            out[i] += log(x[i]) * a + b
    elif kind == SK_LOG1M_AFFINE:
        for i in range(m):
            out[i] += log1p(-x[i]) * a + b
    elif kind == SK_QUAD:
        for i in range(m):
            d = x[i] - c
            out[i] += d * d * a + b
    elif kind == SK_LOG_QUAD:
        for i in range(m):
            d = log(x[i]) - c
            out[i] += d * d * a + b
    elif kind == SK_CATEGORY:
        for i in range(m):
            out[i] += (a if x[i] == c else 0.0) + b
    elif kind == SK_SIGN:
        for i in range(m):
            d = x[i] - c
            out[i] += ((d > 0.0) - (d < 0.0) + (d - d)) * a + b
    elif kind == SK_ABS:
        for i in range(m):
            out[i] += fabs(x[i] - c) * a + b


cdef const double *mc_score_col(const mc_dist *dist, Py_ssize_t q, const double *xt,
                                Py_ssize_t ld, const double *lt, Py_ssize_t m, double *tmp,
                                int *kind, double *abc) noexcept nogil:
    """The score of coordinate q on a chunk, in reduced form (see _kernels.pxd):
    a single affine or quadratic term (in x, or in log x: from the log
    column lt when there is one, else NumPy's log loop into tmp) is returned
    as its column and (a, b, c); anything else is summed term by term into
    tmp (kind MC_SKIND_IDENT)."""
    cdef Py_ssize_t t, t0 = dist.t_start[q], t1 = dist.t_start[q + 1]
    cdef int k
    cdef const double *xc
    cdef const mc_family *fam
    if t1 == t0 + 1:
        k = dist.t_kind[t0]
        abc[0] = dist.t_a[t0]
        abc[1] = dist.t_b[t0]
        abc[2] = dist.t_c[t0]
        xc = xt + dist.t_col[t0] * ld
        if k == SK_AFFINE or k == SK_QUAD:
            kind[0] = MC_SKIND_AFFINE if k == SK_AFFINE else MC_SKIND_QUAD
            return xc
        if k == SK_LOG_AFFINE or k == SK_LOG_QUAD:
            kind[0] = MC_SKIND_AFFINE if k == SK_LOG_AFFINE else MC_SKIND_QUAD
            if lt != NULL:
                return lt + dist.t_col[t0] * ld
            mc_vlog(xc, tmp, m)
            return tmp
    # several terms (a broadcast parameter), or another kind: s in tmp
    kind[0] = MC_SKIND_IDENT
    abc[0] = 0.0
    abc[1] = 0.0
    abc[2] = 0.0
    memset(tmp, 0, sizeof(double) * m)
    for t in range(t0, t1):
        k = dist.t_kind[t]
        if k == SK_FAMILY:
            fam = mc_family_of(dist.family)
            fam.score(dist, t, xt, ld, m, tmp)
        else:
            _score_term(k, xt + dist.t_col[t] * ld,
                        (lt + dist.t_col[t] * ld) if lt != NULL else NULL, m,
                        dist.t_a[t], dist.t_b[t], dist.t_c[t], tmp)
    return tmp


cdef void mc_score_coord(const mc_dist *dist, Py_ssize_t q, const double *xt, Py_ssize_t ld,
                         const double *lt, Py_ssize_t m, double *out) noexcept nogil:
    """out[i] = score of coordinate q at draw i of the chunk (m doubles)."""
    cdef int kind
    cdef double abc[3]
    cdef const double *p = mc_score_col(dist, q, xt, ld, lt, m, out, &kind, abc)
    mc_c_apply(kind, p, m, abc[0], abc[1], abc[2], out)


_SK_NAMES = {SK_AFFINE: "SK_AFFINE", SK_LOG_AFFINE: "SK_LOG_AFFINE",
             SK_LOG1M_AFFINE: "SK_LOG1M_AFFINE", SK_QUAD: "SK_QUAD",
             SK_LOG_QUAD: "SK_LOG_QUAD", SK_CATEGORY: "SK_CATEGORY", SK_SIGN: "SK_SIGN",
             SK_ABS: "SK_ABS", SK_FAMILY: "SK_FAMILY"}


def check_term_kinds(kinds, str owner, family=None):
    """Raise ValueError naming `owner` and the first kind of the score table
    `kinds` that the evaluator does not know (an SK_FAMILY term needs a
    family, given by its code, with its own score kernel)."""
    cdef const mc_family *fam
    k = np.asarray(kinds)
    bad = k[(k < 0) | (k >= SK_N_KINDS)]
    if bad.size:
        raise ValueError(
            f"{owner}: unknown score term kind {int(bad.flat[0])} (the evaluator knows "
            f"{', '.join(f'{n} = {v}' for v, n in sorted(_SK_NAMES.items()))}); "
            "add the kind to the one evaluator (_kernels.pyx) before using it")
    if (k == SK_FAMILY).any():
        fam = mc_family_of(-1 if family is None else family)
        if fam == NULL or fam.score == NULL:
            raise ValueError(
                f"{owner}: an SK_FAMILY score term needs the family's own score kernel "
                "(mc_family.score), and " + ("this table has no family" if fam == NULL
                                             else "the family registers none"))


cdef object mc_set_terms(mc_dist *dist, t_start, t_kind, t_col, t_a, t_b, t_c, str owner):
    cdef int64_t[::1] vts = np.array(t_start, dtype=np.int64, order='C', copy=True).ravel()
    cdef int[::1] vtk = np.array(t_kind, dtype=np.intc, order='C', copy=True).ravel()
    cdef int64_t[::1] vtc = np.array(t_col, dtype=np.int64, order='C', copy=True).ravel()
    cdef double[::1] vta = np.array(t_a, dtype=np.float64, order='C', copy=True).ravel()
    cdef double[::1] vtb = np.array(t_b, dtype=np.float64, order='C', copy=True).ravel()
    cdef double[::1] vtcc = np.array(t_c, dtype=np.float64, order='C', copy=True).ravel()
    check_term_kinds(vtk, owner, dist.family)
    if vts.shape[0] < 1:
        raise ValueError(f"{owner}: the score table's t_start needs n_coords + 1 entries")
    dist.n_coords = vts.shape[0] - 1
    dist.t_start = &vts[0]
    dist.t_kind = &vtk[0] if vtk.shape[0] else NULL
    dist.t_col = &vtc[0] if vtc.shape[0] else NULL
    dist.t_a = &vta[0] if vta.shape[0] else NULL
    dist.t_b = &vtb[0] if vtb.shape[0] else NULL
    dist.t_c = &vtcc[0] if vtcc.shape[0] else NULL
    return (vts, vtk, vtc, vta, vtb, vtcc)


cdef object mc_set_draw(mc_dist *dist, int family, bint per_category, Py_ssize_t n_units,
                        Py_ssize_t n_cat, Py_ssize_t draw_size, p0, p1, alias_q, alias_i):
    if mc_family_of(family) == NULL:
        raise ValueError(f"unknown family code {family} (known: 0..{MC_N_FAMILIES - 1}, see "
                         "mcscore.distributions.FAMILIES)")
    cdef double[:, ::1] blocks = np.zeros((0, 0))
    if n_units > 0:
        blocks = np.ascontiguousarray(np.concatenate(
            [np.asarray(p, dtype=np.float64).reshape(n_units, -1) for p in (p0, p1)], axis=1))
    cdef double[::1] vq = np.array(alias_q, dtype=np.float64, order='C', copy=True).ravel()
    cdef int64_t[::1] vi = np.array(alias_i, dtype=np.int64, order='C', copy=True).ravel()
    dist.family = family
    dist.per_category = per_category
    dist.n_units = n_units
    dist.n_cat = n_cat
    dist.draw_size = draw_size
    dist.prm_len = blocks.shape[1]
    dist.prm = &blocks[0, 0] if blocks.shape[0] and blocks.shape[1] else NULL
    dist.alias_q = &vq[0] if vq.shape[0] else NULL
    dist.alias_i = &vi[0] if vi.shape[0] else NULL
    return (blocks, vq, vi)


def eval_scores(KernelDist dist, x):
    """Per-draw scores of every coordinate on an (m, draw_size) array of
    draws, shape (m, n_coords), computed by the kernels' own evaluator
    (column by column on blocks of draws gathered column-major)."""
    cdef cnp.ndarray[double, ndim=2] xr = np.ascontiguousarray(
        np.asarray(x, dtype=np.float64).reshape(-1, dist.draw_size))
    cdef Py_ssize_t m = xr.shape[0], ds = dist.draw_size, nq = dist.d.n_coords
    cdef Py_ssize_t bs = max(1, mc_chunk_len(ds)), i0, cs, i, k, q
    out_arr = np.empty((nq, m), dtype=np.float64)
    cdef double[:, ::1] out = out_arr
    cdef double[::1] col = np.empty(max(1, bs * ds), dtype=np.float64)
    cdef double[::1] tmp = np.empty(max(1, bs), dtype=np.float64)
    cdef const double *xp = <const double *> cnp.PyArray_DATA(xr)
    if m == 0 or nq == 0:
        return out_arr.T.copy()
    with nogil:
        i0 = 0
        while i0 < m:
            cs = bs if m - i0 > bs else m - i0
            for k in range(ds):
                for i in range(cs):
                    col[k * cs + i] = xp[(i0 + i) * ds + k]
            for q in range(nq):
                mc_score_coord(&dist.d, q, &col[0], cs, NULL, cs, &tmp[0])
                for i in range(cs):
                    out[q, i0 + i] = tmp[i]
            i0 += cs
    return np.ascontiguousarray(out_arr.T)


cdef void mc_accum_chunk(const mc_dist *dist, Py_ssize_t m, const double *xt, Py_ssize_t ld,
                         const double *lt, const double *fx, double shift, double *stats,
                         double *tmp) noexcept nogil:
    """Add the sufficient statistics of one chunk of m draws to a stream's row.

    xt: column-major draws, xt[c * ld + i]; lt: the log column of LogNormal
    draws (same layout) or NULL; fx: m finite f values; tmp: m doubles.
    The sums run in 8 fixed lanes (see mc_c_acc5): the result depends on the
    chunk's values only.
    """
    cdef Py_ssize_t i, q, j, K = dist.n_cat
    cdef int kind
    cdef double g
    cdef double abc[3]
    cdef double *acc
    cdef const double *xc
    stats[0] += m
    mc_c_gsum(fx, m, shift, stats + 1)
    if dist.per_category:
        for j in range(dist.n_units):
            xc = xt + j * ld
            acc = stats + 3 + 3 * K * j
            for i in range(m):
                q = <Py_ssize_t> xc[i]
                g = fx[i] - shift
                acc[3 * q] += 1.0
                acc[3 * q + 1] += g
                acc[3 * q + 2] += g * g
        return
    for q in range(dist.n_coords):
        xc = mc_score_col(dist, q, xt, ld, lt, m, tmp, &kind, abc)
        mc_c_acc5(kind, xc, fx, m, shift, abc[0], abc[1], abc[2], stats + 3 + 5 * q)


# returned by the block functions below when the driver said stop
cdef enum:
    MC_STOPPED = -2


cdef Py_ssize_t _accumulate_block(const mc_dist *dist, Py_ssize_t m, const double *xt,
                                  const double *lt, const double *fx, double shift,
                                  double *stats, double *tmp, mc_round *rd,
                                  int tid) noexcept nogil:
    """mc_accumulate_block_lt that polls the driver (rd, or NULL) after every
    chunk: -1, the index of a non-finite f value, or MC_STOPPED."""
    cdef Py_ssize_t i0, cs, bad, c = mc_chunk_len(dist.draw_size)
    bad = mc_c_first_nonfinite(fx, m)
    if bad >= 0:
        return bad
    i0 = 0
    while i0 < m:
        cs = c if m - i0 > c else m - i0
        mc_accum_chunk(dist, cs, xt + i0, m, (lt + i0) if lt != NULL else NULL, fx + i0,
                       shift, stats, tmp)
        i0 += cs
        if rd != NULL and i0 < m and mc_poll(rd, tid):
            return MC_STOPPED
    return -1


cdef Py_ssize_t mc_accumulate_block_lt(const mc_dist *dist, Py_ssize_t m, const double *xt,
                                       const double *lt, const double *fx, double shift,
                                       double *stats, double *tmp) noexcept nogil:
    """mc_accumulate_block with the LogNormal log column lt (or NULL): the
    block is accumulated chunk by chunk, exactly as the fused kernels do."""
    return _accumulate_block(dist, m, xt, lt, fx, shift, stats, tmp, NULL, 0)


cdef Py_ssize_t mc_accumulate_block(const mc_dist *dist, Py_ssize_t m, const double *xt,
                                    const double *fx, double shift, double *stats,
                                    double *tmp) noexcept nogil:
    """Add a block's sufficient statistics to one stream's row `stats`.

    tmp must hold m doubles.  Returns -1, or the index of the first draw
    whose f value is not finite (nothing is accumulated then).  (LogNormal
    scores are computed from log x here; the kernels use the exact log column
    of their draws, see mc_accumulate_block_lt.)
    """
    return mc_accumulate_block_lt(dist, m, xt, NULL, fx, shift, stats, tmp)


cdef Py_ssize_t _run_block(const mc_dist *dist, const mc_func *func, bitgen_t *bg,
                           Py_ssize_t m, double *stats, double *shift, bint first,
                           mc_workspace *ws, mc_round *rd, int tid) noexcept nogil:
    """mc_run_block that polls the driver (rd, or NULL) after every chunk:
    -1, the index of the failing draw, or MC_STOPPED."""
    cdef Py_ssize_t i0, cs, bad, c = mc_chunk_len(dist.draw_size)
    cdef double *lt = ws.lt if mc_has_log_column(dist) else NULL
    i0 = 0
    while i0 < m:
        cs = c if m - i0 > c else m - i0
        mc_draw_chunk(dist, bg, cs, ws.xt, cs, lt, ws)
        bad = mc_eval_block(func, dist, cs, ws.xt, ws.fx, ws)
        if bad < 0:
            bad = mc_c_first_nonfinite(ws.fx, cs)
        if bad >= 0:
            ws.fx[0] = ws.fx[bad]
            return i0 + bad
        if first and i0 == 0:
            shift[0] = ws.fx[0]
        mc_accum_chunk(dist, cs, ws.xt, cs, lt, ws.fx, shift[0], stats, ws.tmp)
        i0 += cs
        if rd != NULL and i0 < m and mc_poll(rd, tid):
            return MC_STOPPED
    return -1


cdef Py_ssize_t mc_run_block(const mc_dist *dist, const mc_func *func, bitgen_t *bg,
                             Py_ssize_t m, double *stats, double *shift, bint first,
                             mc_workspace *ws) noexcept nogil:
    """Draw, evaluate and accumulate one block of a stream, chunk by chunk
    (each chunk's draws stay in cache).

    `first` marks the stream's first block: its first f value becomes the
    stream's shift.  Returns -1, or the index of the failing draw; then
    ws.fx[0] holds the failing f value.
    """
    return _run_block(dist, func, bg, m, stats, shift, first, ws, NULL, 0)


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
        self.draw_size = draw_size
        self.n_coords = self.d.n_coords
        self.n_units = n_units
        self.n_cat = n_cat
        self.per_category = per_category
        self.stats_len = mc_stats_len(&self.d)
        self.has_log_column = mc_has_log_column(&self.d)


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
    c.fx = _rows_ptr(fx)
    c.fld = fx.shape[1]
    c.stats = _rows_ptr(stats)
    c.sld = stats.shape[1]
    c.shifts = &shifts[0] if shifts.shape[0] else NULL
    mc_round_init(&rd, n, n_streams, block_size, n_threads, R, &blocks[0] if R else NULL,
                  &slots[0] if R else NULL, None)
    c.tmp_len = min(block_size, mc_chunk_len(dist.d.draw_size))
    try:
        c.tmp = mc_alloc_doubles(mc_round_threads(&rd) * c.tmp_len,
                                 "the accumulation buffers")
        code = mc_drive(&rd, _cb_accumulate, &c)
        return int(rd.ctl.err[1]) if code == ERR_F_NONFINITE else -1
    finally:
        free(c.tmp)


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

def stream_totals(double[:, ::1] stats, double[::1] shifts, Py_ssize_t n_coords):
    """Sum per-stream statistics (non-categorical layout) over the streams,
    re-centred on one common shift c0 (the first non-empty stream's).

    Returns (c0, n, G, H, M) with G = sum (f - c0), H = sum (f - c0)^2 and
    M of shape (5, n_coords): sums of s, s^2, g s, g s^2, g^2 s^2 with
    g = f - c0.  One pass in C instead of a dozen small array operations.
    """
    cdef Py_ssize_t S = stats.shape[0], s, q, k
    cdef double c0 = 0.0, d, d2, n = 0.0, G = 0.0, H = 0.0
    out = np.zeros((5, n_coords))
    cdef double[:, ::1] M = out
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
            M[0, q] += row[k]
            M[1, q] += row[k + 1]
            M[2, q] += row[k + 2] + d * row[k]
            M[3, q] += row[k + 3] + d * row[k + 1]
            M[4, q] += row[k + 4] + 2.0 * d * row[k + 3] + d2 * row[k + 1]
    return c0, n, G, H, out
