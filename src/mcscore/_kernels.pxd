# C-level interface of mcscore's kernels, for other Cython code to cimport.
#
#     from mcscore._kernels cimport mc_dist, mc_func, mc_draw_block, ...
#
# Every entry point is `noexcept nogil`: call it from your own prange loops.
# Layout conventions (all arrays C-contiguous float64 unless noted):
#   * a *block* of m draws is stored column-major: xt[c * m + i] is
#     coordinate c (0 <= c < draw_size) of draw i (0 <= i < m);
#   * per-stream statistics are one row of `mc_stats_len(dist)` doubles:
#     [count, sum g, sum g^2, then per score coordinate q the five sums
#      sum s_q, sum s_q^2, sum g s_q, sum g s_q^2, sum g^2 s_q^2]
#     where g = f - shift (shift = f at the stream's first draw), or for
#     per-category families [count, sum g, sum g^2, then per (unit, category)
#     count, sum g, sum g^2].
from libc.stdint cimport int64_t
from numpy.random cimport bitgen_t
from mcscore._core cimport mc_round

cdef extern from "numpy/random/distributions.h":
    ctypedef struct binomial_t:
        int has_binomial

# Families (the order of mcscore.distributions.FAMILIES).  A family's kernel
# functions (its fill function, and optionally its own score kernel) are
# registered under its code in the family table (mc_family_of, _kernels.pyx).
cpdef enum:
    MC_NORMAL = 0
    MC_LOGNORMAL = 1
    MC_EXPONENTIAL = 2
    MC_GAMMA = 3
    MC_BETA = 4
    MC_POISSON = 5
    MC_BERNOULLI = 6
    MC_BINOMIAL = 7
    MC_GEOMETRIC = 8
    MC_NEGATIVE_BINOMIAL = 9
    MC_CATEGORICAL = 10
    MC_MULTINOMIAL = 11
    MC_DIRICHLET = 12
    MC_LAPLACE = 13
    MC_HALF_NORMAL = 14
    MC_CHI2 = 15
    MC_INVERSE_GAMMA = 16
    MC_GUMBEL = 17
    MC_WEIBULL = 18
    MC_MULTIVARIATE_NORMAL = 19
    MC_LOWRANK_MULTIVARIATE_NORMAL = 20
    MC_N_FAMILIES = 21

# Kinds of score term.  The score of parameter element q is the sum of its
# terms, each reading one draw coordinate x (the term's column) with
# constants a, b, c.  One evaluator (mc_score_col / mc_score_coord) computes
# every kind; a table holding any other kind is rejected when it is built.
cpdef enum:
    SK_AFFINE = 0        # a * x + b
    SK_LOG_AFFINE = 1    # a * log(x) + b
    SK_LOG1M_AFFINE = 2  # a * log1p(-x) + b
    SK_QUAD = 3          # a * (x - c)^2 + b
    SK_LOG_QUAD = 4      # a * (log(x) - c)^2 + b
    SK_CATEGORY = 5      # a * [x == c] + b    (per-category families)
    SK_SIGN = 6          # a * sign(x - c) + b (sign(0) = 0)
    SK_ABS = 7           # a * |x - c| + b
    SK_FAMILY = 8        # computed by the family's own score kernel (mc_family.score)
    SK_RECIP = 9         # a / (x - c) + b       (InverseGamma rate)
    # the exponential kinds: b scales the term, a is the rate inside expm1
    SK_EXPM1 = 10        # b * expm1(a * (x - c))                      (Gumbel)
    SK_XEXPM1 = 11       # b * (x - c) * expm1(a * (x - c))            (Gumbel scale)
    SK_LOG_EXPM1 = 12    # b * expm1(a * (log(x) - c))                 (Weibull scale)
    SK_LOG_XEXPM1 = 13   # b * (log(x) - c) * expm1(a * (log(x) - c))  (Weibull concentration)
    SK_N_KINDS = 14

# Kinds of fused integrand term (each multiplied by its coefficient).
cpdef enum:
    IK_POLY = 0          # sum_k p[k] x_col^k            params: coefficients
    IK_LINEAR = 1        # sum_c w_c x_c                 params: w (draw_size)
    IK_QUAD_DIAG = 2     # sum_c w_c (x_c - m_c)^2       params: m, w
    IK_QUAD_FULL = 3     # (x - m)^T A (x - m)           params: m, A (row-major)
    IK_SIN = 4           # sum_c w_c sin(x_c)            params: w
    IK_COS = 5
    IK_EXP = 6
    IK_LOG1P = 7
    IK_INDICATOR = 8     # [lo <= x_col <= hi]           params: lo, hi
    IK_CALL = 9          # max(x_col - K, 0)             params: K
    IK_PUT = 10          # max(K - x_col, 0)
    IK_DIGITAL_CALL = 11 # [x_col > K]
    IK_DIGITAL_PUT = 12  # [x_col < K]

# Kinds of f.
cpdef enum:
    FK_VALUES = 0        # f values are supplied by the caller
    FK_INTEGRAND = 1     # fused integrand (mc_func.integ)
    FK_CALLBACK = 2      # C function pointer (mc_func.fptr)

# C callback signatures accepted (mc_func.sig).
cpdef enum:
    CB_D_P_N = 0         # double f(double *x, intptr_t d)
    CB_D_P_N_V = 1       # double f(double *x, intptr_t d, void *user_data)
    CB_I_P_N_P_V = 2     # int f(double *x, intptr_t d, double *out, void *user_data); 0 = ok
    CB_D_P_I = 3         # double f(double *x, int d)
    CB_D_P_I_V = 4       # double f(double *x, int d, void *user_data)
    CB_I_P_I_P_V = 5     # int f(double *x, int d, double *out, void *user_data)

ctypedef struct mc_dist:
    int family               # MC_* code: index into the family table
    int per_category         # 1: categorical statistics per (unit, category)
    Py_ssize_t n_units       # independent units (the batch, flattened)
    Py_ssize_t n_cat         # categories K (1 for univariate families)
    Py_ssize_t draw_size     # doubles in one draw
    const double *prm        # draw parameters: unit j's block at prm + j * prm_len
    Py_ssize_t prm_len       # doubles per unit (any length: e.g. loc and a d x d factor)
    const double *alias_q    # Categorical: alias probabilities, n_units * K
    const int64_t *alias_i   # Categorical: alias indices, n_units * K
    Py_ssize_t n_coords      # score coordinates (parameter elements)
    const int64_t *t_start   # terms of coordinate q: t_start[q] .. t_start[q+1]
    const int *t_kind        # SK_*
    const int64_t *t_col     # draw coordinate the term reads
    const double *t_a
    const double *t_b
    const double *t_c

ctypedef struct mc_integrand:
    Py_ssize_t n_terms
    const int64_t *kind
    const int64_t *col
    const int64_t *off       # offset of the term's parameters in params
    const double *coef
    const double *params
    double constant

ctypedef struct mc_func:
    int kind                 # FK_*
    const mc_integrand *integ
    void *fptr
    int sig                  # CB_*
    void *user_data

ctypedef struct mc_workspace:
    double *xt               # draw_size * block_size
    double *fx               # block_size
    double *tmp              # block_size
    double *row              # draw_size (gathered draw for callbacks)
    int64_t *ibuf            # n_cat (Multinomial counts)
    binomial_t binom
    double *lt               # draw_size * block_size (LogNormal log columns)
    const double *lazy_thr   # NULL, or per unit the log-draw below which x is not needed

# A family's kernel functions (see docs/design.md, "Adding a family").
# fill: draw m samples of unit j into its columns of the chunk xt (column-major,
#       leading dimension ld: unit j of a univariate family is column j, of a
#       family with K coordinates per unit columns j*K .. j*K+K-1), reading the
#       unit's parameter block mc_unit_params(dist, j); lt (or NULL) is the log
#       column buffer of families with mc_family.log_column.
# fill_column: the simple form for a univariate family (one column per unit):
#       draw m samples into col from the unit's parameter block p.
# score (optional, NULL for the table-only families): add the values of term t
#       (an SK_FAMILY term; its column, a, b, c in the table) on m draws of the
#       chunk xt to out[0..m); it may read every column of the unit and its
#       parameter block (a matrix-parameter family's solve goes here).
ctypedef void (*mc_fill_fn)(const mc_dist *dist, Py_ssize_t j, bitgen_t *bg, Py_ssize_t m,
                            double *xt, Py_ssize_t ld, double *lt,
                            mc_workspace *ws) noexcept nogil
ctypedef void (*mc_column_fill_fn)(const double *p, bitgen_t *bg, Py_ssize_t m,
                                   double *col) noexcept nogil
ctypedef void (*mc_score_fn)(const mc_dist *dist, Py_ssize_t t, const double *xt,
                             Py_ssize_t ld, Py_ssize_t m, double *out) noexcept nogil

# accum (optional, NULL for most families): add the score statistics of a
#       chunk (the five sums of every coordinate, stats + 3 of a stream's row)
#       for all coordinates at once (a vector family: by BLAS); returns False
#       when it does not apply (then the per-coordinate evaluator runs).
ctypedef bint (*mc_accum_fn)(const mc_dist *dist, Py_ssize_t m, const double *xt,
                             Py_ssize_t ld, const double *fx, double shift,
                             double *stats) noexcept nogil

# scores (optional): write the scores of every coordinate of a chunk,
#       out[q * m + i] (n_coords * m doubles); False when it does not apply
#       (then the per-coordinate evaluator runs).
ctypedef bint (*mc_scores_fn)(const mc_dist *dist, Py_ssize_t m, const double *xt,
                              Py_ssize_t ld, double *out) noexcept nogil

ctypedef struct mc_family:
    const char *name
    mc_fill_fn fill          # or NULL, and then:
    mc_column_fill_fn fill_column  # the simple form of a univariate family
    mc_score_fn score        # NULL: every term is a table kind
    bint log_column          # the fill also writes log x (LogNormal)
    mc_accum_fn accum        # NULL: statistics coordinate by coordinate
    mc_scores_fn scores      # NULL: scores coordinate by coordinate

cdef const mc_family *mc_family_of(int family) noexcept nogil
cdef const double *mc_unit_params(const mc_dist *dist, Py_ssize_t j) noexcept nogil

# The one score evaluator.  mc_score_col returns a column p and a reduced form
# (*kind: MC_SKIND_AFFINE, MC_SKIND_QUAD or MC_SKIND_IDENT; abc = a, b, c) such
# that the score of coordinate q at draw i is  p[i]*a + b,  (p[i]-c)*(p[i]-c)*a + b
# or p[i]: single affine / quadratic terms are not materialised, so the fused
# accumulators apply them inside their sums.  tmp (m doubles) may be used.
# mc_score_coord writes the score of coordinate q into out (m doubles).
# xt: chunk of m draws, leading dimension ld; lt: its log columns or NULL.
cdef const double *mc_score_col(const mc_dist *dist, Py_ssize_t q, const double *xt,
                                Py_ssize_t ld, const double *lt, Py_ssize_t m, double *tmp,
                                int *kind, double *abc) noexcept nogil
cdef void mc_score_coord(const mc_dist *dist, Py_ssize_t q, const double *xt, Py_ssize_t ld,
                         const double *lt, Py_ssize_t m, double *out) noexcept nogil
# Point dist's score table at the arrays of a table (t_start of n_coords + 1
# entries); raises ValueError naming `owner` and the kind for a kind the
# evaluator does not know (or an SK_FAMILY term of a family without a score
# kernel).  Returns the arrays to keep alive.
cdef object mc_set_terms(mc_dist *dist, t_start, t_kind, t_col, t_a, t_b, t_c, str owner)
# Fill dist's draw fields (family, units, parameter blocks, alias tables);
# p0, p1: per-unit parameters (each n_units * k values, k >= 0), packed
# unit by unit into the blocks [p0 of unit j, p1 of unit j].  Raises
# ValueError for an unknown family code.  Returns the arrays to keep alive.
cdef object mc_set_draw(mc_dist *dist, int family, bint per_category, Py_ssize_t n_units,
                        Py_ssize_t n_cat, Py_ssize_t draw_size, p0, p1, alias_q, alias_i)

cdef Py_ssize_t mc_stats_len(const mc_dist *dist) noexcept nogil
cdef int mc_workspace_init(mc_workspace *ws, const mc_dist *dist, Py_ssize_t block_size) noexcept nogil
cdef void mc_workspace_free(mc_workspace *ws) noexcept nogil
cdef void mc_draw_block(const mc_dist *dist, bitgen_t *bg, Py_ssize_t m, double *xt,
                        mc_workspace *ws) noexcept nogil
cdef Py_ssize_t mc_eval_block(const mc_func *func, const mc_dist *dist, Py_ssize_t m,
                              const double *xt, double *fx, mc_workspace *ws) noexcept nogil
cdef Py_ssize_t mc_accumulate_block(const mc_dist *dist, Py_ssize_t m, const double *xt,
                                    const double *fx, double shift, double *stats,
                                    double *tmp) noexcept nogil
cdef Py_ssize_t mc_run_block(const mc_dist *dist, const mc_func *func, bitgen_t *bg,
                             Py_ssize_t m, double *stats, double *shift, bint first,
                             mc_workspace *ws) noexcept nogil

# --- Access from other extensions (appended for embedding) -----------------
# The C views of the Python-level objects: `mc_kernel_dist_ptr(kd)` for a
# KernelDist (``mcscore.embed.kernel_dist(dist)``) and `mc_kernel_func_ptr(kf)`
# for a KernelFunc.  The pointers stay valid while the object is alive.
cdef const mc_dist *mc_kernel_dist_ptr(object kernel_dist) except NULL
cdef const mc_func *mc_kernel_func_ptr(object kernel_func) except NULL

# Chunked processing (added): a block is drawn, evaluated and accumulated in
# chunks of mc_chunk_len(draw_size) draws; lt holds LogNormal's log columns
# (log x exactly as drawn) or is NULL.
cdef Py_ssize_t mc_chunk_len(Py_ssize_t draw_size) noexcept nogil
cdef bint mc_has_log_column(const mc_dist *dist) noexcept nogil
cdef void mc_draw_chunk(const mc_dist *dist, bitgen_t *bg, Py_ssize_t m, double *xt,
                        Py_ssize_t ld, double *lt, mc_workspace *ws) noexcept nogil
cdef void mc_draw_block_lt(const mc_dist *dist, bitgen_t *bg, Py_ssize_t m, double *xt,
                           double *lt, mc_workspace *ws) noexcept nogil
cdef void mc_accum_chunk(const mc_dist *dist, Py_ssize_t m, const double *xt, Py_ssize_t ld,
                         const double *lt, const double *fx, double shift, double *stats,
                         double *tmp) noexcept nogil
cdef Py_ssize_t mc_accumulate_block_lt(const mc_dist *dist, Py_ssize_t m, const double *xt,
                                       const double *lt, const double *fx, double shift,
                                       double *stats, double *tmp) noexcept nogil

# Under the core's driver (mcscore._core.mc_drive, see _core.pxd): draw a block
# like mc_draw_block_lt, polling the run (rd, thread tid) after every chunk;
# True when it stopped early (Ctrl-C or an error elsewhere: discard the draws).
# mc_workspaces: one workspace per thread (n of them; mc_workspaces_free).
cdef bint mc_draw_block_polled(const mc_dist *dist, bitgen_t *bg, Py_ssize_t m, double *xt,
                               double *lt, mc_workspace *ws, mc_round *rd,
                               int tid) noexcept nogil
cdef mc_workspace *mc_workspaces(const mc_dist *dist, int n, Py_ssize_t block_size) except NULL
cdef void mc_workspaces_free(mc_workspace *wss, int n) noexcept
