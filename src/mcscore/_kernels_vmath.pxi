# Included by _kernels.pyx (one extension, one C file): the vector math and
# the C hot loops.  NumPy's float64 ufunc loops for log / log1p / exp, called
# without the GIL, and the C code (chunk sums in fixed lanes, column fills,
# alias sampling, gathers) that the kernels run per chunk.

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
    void mc_c_alias(double *col, Py_ssize_t m, Py_ssize_t K, const double *q,
                    const int64_t *al) noexcept nogil
    Py_ssize_t mc_c_gather_above(const double *y, double *x, Py_ssize_t m, double thr,
                                 Py_ssize_t *idx, double *yg) noexcept nogil
    void mc_c_scatter(const double *v, Py_ssize_t c, const Py_ssize_t *idx,
                      double *x) noexcept nogil
