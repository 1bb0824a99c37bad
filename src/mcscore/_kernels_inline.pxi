# Included by _kernels.pyx ahead of the family table: the inline PCG64
# draws, NumPy's values bit for bit with the same stream consumption.  The
# standard normal column fill (mc_std_normal_fill; its layer constants,
# import checks and registration as the Normal family's fill are in
# _kernels_normal.pxi, which describes the method) and, on the same inline
# PCG64 state, the uniform (NumPy's next_double), the standard exponential
# (NumPy's ziggurat: the common case inline, NumPy's own code for a draw
# that leaves it, from the state before its first word) and the standard
# gamma (NumPy's methods, each variate drawn inline): mc_rng_t below.  The
# families' fills (_kernels_families.pxi) draw through these; for another
# bit generator, or when an import check fails, every draw is NumPy's
# per-draw function or fill loop.

from numpy.random.c_distributions cimport random_standard_normal, random_standard_exponential
from cpython.pycapsule cimport PyCapsule_GetPointer

cdef extern from *:
    """
    #if defined(__SIZEOF_INT128__)
    #define MC_HAVE_U128 1
    typedef unsigned __int128 mc_u128;
    #else
    #define MC_HAVE_U128 0
    typedef struct { uint64_t hi, lo; } mc_u128;
    #endif

    #include <string.h>
    #if defined(__GNUC__) || defined(__clang__)
    #define MC_UNLIKELY(c) __builtin_expect(!!(c), 0)
    #define MC_LIKELY(c) __builtin_expect(!!(c), 1)
    #else
    #define MC_UNLIKELY(c) (c)
    #define MC_LIKELY(c) (c)
    #endif

    /* the layer constants read off NumPy (_zig_probe) */
    static uint64_t mc_zig_k[256];
    static double mc_zig_w[256];

    /* a probing bitgen_t: the first word is the one under test, the later
       ones end any further draw at once (rabs = 0 in layer 0, 1, ...), and
       next_double gives 0.5 (which ends a tail draw at once) */
    static uint64_t mc_probe_word;
    static long mc_probe_calls;
    static uint64_t mc_probe_u64(void *st) {
        (void)st;
        mc_probe_calls++;
        return mc_probe_calls == 1 ? mc_probe_word : (uint64_t)((mc_probe_calls - 2) & 0xff);
    }
    static uint32_t mc_probe_u32(void *st) { return (uint32_t)mc_probe_u64(st); }
    static double mc_probe_dbl(void *st) { (void)st; mc_probe_calls++; return 0.5; }
    static uint64_t mc_probe_raw(void *st) { return mc_probe_u64(st); }

    /* PCG64: state <- state * MULT + inc, output XSL-RR of the new state */
    #if MC_HAVE_U128
    #define MC_PCG_MULT (((mc_u128)0x2360ED051FC65DA4ULL << 64) | 0x4385DF649FCCF645ULL)
    static inline uint64_t mc_pcg_out(mc_u128 s) {
        uint64_t v = (uint64_t)(s >> 64) ^ (uint64_t)s;
        unsigned rot = (unsigned)(s >> 122);
        return (v >> rot) | (v << ((-rot) & 63));
    }
    /* NumPy's PCG64 state: a pointer to {state, inc} (two 128-bit words)
       first in the struct bitgen_t.state points to */
    static inline mc_u128 *mc_pcg_words(bitgen_t *bg) {
        return *(mc_u128 **)bg->state;
    }
    static uint64_t mc_pcg_next(bitgen_t *bg) {
        mc_u128 *w = mc_pcg_words(bg);
        w[0] = w[0] * MC_PCG_MULT + w[1];
        return mc_pcg_out(w[0]);
    }
    #endif

    /* the next_uint64 of NumPy's PCG64 (set once the checks passed) */
    static void *mc_pcg_fn = NULL;

    /* out[i * d + k] = xt[k * m + i]: a drawn block (column-major, m draws
       of d values) laid out one draw per row, in tiles that stay in cache */
    static void mc_c_to_rows(const double *xt, Py_ssize_t m, Py_ssize_t d, double *out) {
        Py_ssize_t i0, k0, i, k, i1, k1;
        for (i0 = 0; i0 < m; i0 += 64) {
            i1 = m - i0 < 64 ? m : i0 + 64;
            for (k0 = 0; k0 < d; k0 += 16) {
                k1 = d - k0 < 16 ? d : k0 + 16;
                for (i = i0; i < i1; i++)
                    for (k = k0; k < k1; k++)
                        out[i * d + k] = xt[k * m + i];
            }
        }
    }

    #if MC_HAVE_U128
    /* The common case of NumPy's ziggurat on the word of PCG64 state t:
       stores +-rabs * w[idx] in *x; false when the draw leaves it. */
    static inline int mc_zig_common(mc_u128 t, double *x) {
        uint64_t r = mc_pcg_out(t), rabs, bits;
        unsigned idx = (unsigned)(r & 0xff);
        double v;
        r >>= 8;
        rabs = (r >> 1) & 0x000fffffffffffffULL;
        v = (double)rabs * mc_zig_w[idx];
        /* v = -v when the sign bit is set, without a branch (IEEE negation
           flips the sign bit only) */
        memcpy(&bits, &v, sizeof bits);
        bits ^= (r & 1) << 63;
        memcpy(x, &bits, sizeof bits);
        return rabs < mc_zig_k[idx];
    }

    /* One draw from the stream at state *s (the words w of bg): the common
       case inline, else NumPy's own draw from *s; *s is the state after. */
    static inline double mc_zig_one(bitgen_t *bg, mc_u128 *w, mc_u128 *s) {
        double x;
        mc_u128 t = *s * MC_PCG_MULT + w[1];
        if (MC_UNLIKELY(!mc_zig_common(t, &x))) {
            w[0] = *s;
            x = random_standard_normal(bg);
            t = w[0];
        }
        *s = t;
        return x;
    }
    #endif

    /* m standard normals into out from bg: NumPy's values bit for bit.  The
       words are made two at a time by two interleaved LCG chains (states
       i + 1 and i + 2 advance by the two-step multiplier and increment), so
       that the two 128-bit products of a pair do not wait on each other;
       a pair in which a draw leaves the common case is redone one draw at a
       time. */
    static void mc_std_normal_fill(bitgen_t *bg, Py_ssize_t m, double *out) {
    #if MC_HAVE_U128
        if (mc_pcg_fn != NULL && (void *)bg->next_uint64 == mc_pcg_fn) {
            mc_u128 *w = mc_pcg_words(bg);
            mc_u128 s = w[0], inc = w[1];
            mc_u128 a2 = MC_PCG_MULT * MC_PCG_MULT, c2 = (MC_PCG_MULT + 1) * inc;
            mc_u128 t1 = s * MC_PCG_MULT + inc, t2 = t1 * MC_PCG_MULT + inc;
            Py_ssize_t i = 0;
            double x1, x2;
            while (i + 2 <= m) {
                int ok1 = mc_zig_common(t1, &x1), ok2 = mc_zig_common(t2, &x2);
                if (MC_LIKELY(ok1 & ok2)) {
                    out[i] = x1;
                    out[i + 1] = x2;
                    s = t2;
                    t1 = t1 * a2 + c2;
                    t2 = t2 * a2 + c2;
                } else {  /* this pair one draw at a time, then the chains anew */
                    out[i] = mc_zig_one(bg, w, &s);
                    out[i + 1] = mc_zig_one(bg, w, &s);
                    t1 = s * MC_PCG_MULT + inc;
                    t2 = t1 * MC_PCG_MULT + inc;
                }
                i += 2;
            }
            if (i < m)
                out[i] = mc_zig_one(bg, w, &s);
            w[0] = s;
            return;
        }
    #endif
        random_standard_normal_fill(bg, m, out);
    }

    /* ---- the inline draws beyond the normal fill ---------------------- */

    /* NumPy's exponential ziggurat's layer constants, read off NumPy's
       random_standard_exponential at import like the normal's */
    static uint64_t mc_zexp_k[256];
    static double mc_zexp_w[256];
    /* the uniform, exponential and gamma draws below run inline (set by
       the import checks, _inline_draws_setup) */
    static int mc_inline_draws = 0;

    /* A stream being drawn from: the bit generator bg and, when it is a
       PCG64 (inl), its state s kept in a local between mc_rng_begin and
       mc_rng_end.  Around a call of a NumPy sampler on bg in between,
       mc_rng_end hands the state back and mc_rng_resume takes it again. */
    typedef struct { bitgen_t *bg; int inl; mc_u128 *w; mc_u128 s, inc; } mc_rng_t;

    static inline void mc_rng_begin(mc_rng_t *r, bitgen_t *bg) {
        r->bg = bg;
        r->inl = 0;
    #if MC_HAVE_U128
        r->w = NULL;
        r->s = r->inc = 0;
        if (mc_inline_draws && mc_pcg_fn != NULL && (void *)bg->next_uint64 == mc_pcg_fn) {
            r->inl = 1;
            r->w = mc_pcg_words(bg);
            r->s = r->w[0];
            r->inc = r->w[1];
        }
    #endif
    }

    static inline void mc_rng_end(mc_rng_t *r) {
    #if MC_HAVE_U128
        if (r->inl) r->w[0] = r->s;
    #endif
    }

    static inline void mc_rng_resume(mc_rng_t *r) {
    #if MC_HAVE_U128
        if (r->inl) r->s = r->w[0];
    #endif
    }

    /* NumPy's next_double of PCG64: the top 53 bits of a word times 2^-53 */
    static inline double mc_rng_double(mc_rng_t *r) {
    #if MC_HAVE_U128
        if (MC_LIKELY(r->inl)) {
            r->s = r->s * MC_PCG_MULT + r->inc;
            return (double)(mc_pcg_out(r->s) >> 11) * (1.0 / 9007199254740992.0);
        }
    #endif
        return r->bg->next_double(r->bg->state);
    }

    static inline double mc_rng_normal(mc_rng_t *r) {
    #if MC_HAVE_U128
        if (MC_LIKELY(r->inl)) return mc_zig_one(r->bg, r->w, &r->s);
    #endif
        return random_standard_normal(r->bg);
    }

    /* NumPy's exponential ziggurat on one word: the low 3 bits unused, the
       next 8 the layer, the top 53 the magnitude ri; x = ri * w[idx] when
       ri < k[idx], else the draw leaves the common case (false) */
    static inline int mc_zexp_common(uint64_t r, double *x) {
        unsigned idx = (unsigned)((r >> 3) & 0xff);
        r >>= 11;
        *x = (double)r * mc_zexp_w[idx];
        return r < mc_zexp_k[idx];
    }

    /* a standard exponential: the common case inline, else NumPy's own
       draw from the state before the first word */
    static inline double mc_rng_exponential(mc_rng_t *r) {
    #if MC_HAVE_U128
        if (MC_LIKELY(r->inl)) {
            double x;
            mc_u128 t = r->s * MC_PCG_MULT + r->inc;
            if (MC_UNLIKELY(!mc_zexp_common(mc_pcg_out(t), &x))) {
                r->w[0] = r->s;
                x = random_standard_exponential(r->bg);
                t = r->w[0];
            }
            r->s = t;
            return x;
        }
    #endif
        return random_standard_exponential(r->bg);
    }

    /* m uniforms of the stream r into out, each a NumPy next_double with
       the draws equal to 0 skipped (each still takes its word: NumPy's
       samplers that reject u = 0, Laplace and Gumbel).  Inline, the words
       come two at a time from two interleaved LCG chains, as in
       mc_std_normal_fill; a pair with a 0 ends them (the rest one by one). */
    static void mc_rng_nonzero_doubles(mc_rng_t *r, Py_ssize_t m, double *out) {
        Py_ssize_t i = 0;
        double u;
    #if MC_HAVE_U128
        if (r->inl) {
            const mc_u128 inc = r->inc, a2 = MC_PCG_MULT * MC_PCG_MULT,
                          c2 = (MC_PCG_MULT + 1) * inc;
            mc_u128 t1 = r->s * MC_PCG_MULT + inc, t2 = t1 * MC_PCG_MULT + inc;
            uint64_t w1, w2;
            while (i + 2 <= m) {
                w1 = mc_pcg_out(t1) >> 11;
                w2 = mc_pcg_out(t2) >> 11;
                if (MC_UNLIKELY(w1 == 0 || w2 == 0)) break;
                out[i] = (double)w1 * (1.0 / 9007199254740992.0);
                out[i + 1] = (double)w2 * (1.0 / 9007199254740992.0);
                r->s = t2;
                t1 = t1 * a2 + c2;
                t2 = t2 * a2 + c2;
                i += 2;
            }
        }
    #endif
        for (; i < m; i++) {
            do {
                u = mc_rng_double(r);
            } while (MC_UNLIKELY(u == 0.0));
            out[i] = u;
        }
    }

    /* m uniforms / standard exponentials into out: NumPy's fill loops'
       values and stream consumption */
    static void mc_std_uniform_fill(bitgen_t *bg, Py_ssize_t m, double *out) {
        Py_ssize_t i;
        mc_rng_t r;
        mc_rng_begin(&r, bg);
        if (!r.inl) {
            random_standard_uniform_fill(bg, m, out);
            return;
        }
        for (i = 0; i < m; i++) out[i] = mc_rng_double(&r);
        mc_rng_end(&r);
    }

    static void mc_std_exponential_fill(bitgen_t *bg, Py_ssize_t m, double *out) {
        Py_ssize_t i;
        mc_rng_t r;
        mc_rng_begin(&r, bg);
        if (!r.inl) {
            random_standard_exponential_fill(bg, m, out);
            return;
        }
        for (i = 0; i < m; i++) out[i] = mc_rng_exponential(&r);
        mc_rng_end(&r);
    }

    /* Gamma(shape, 1) as NumPy's random_standard_gamma draws it, bit for
       bit, with its per-shape constants computed once (mc_gamma_init):
       shape 1 one standard exponential; shape 0 zero, drawing nothing;
       shape < 1 tries of a uniform u then an exponential e (Ahrens and
       Dieter's GS method: pow(u, 1/shape) below 1 - shape, else the power
       of 1 - shape + shape y, y = -log((1 - u) / shape), accepted against
       e resp. e + y); otherwise Marsaglia and Tsang's method, tries of a
       normal x (again while 1 + c x <= 0) then a uniform u, with
       b = shape - 1/3, c = 1 / sqrt(9 b), v = (1 + c x)^3, accepted by the
       squeeze u < 1 - 0.0331 x^4 or else log u < x^2 / 2 + b (1 - v + log v),
       b v returned. */
    enum { MC_GAMMA_MT, MC_GAMMA_EXP, MC_GAMMA_ZERO, MC_GAMMA_SMALL };
    typedef struct { double shape, b, c, ia; int how; } mc_gamma_t;

    static inline void mc_gamma_init(mc_gamma_t *g, double shape) {
        g->shape = shape;
        g->how = shape == 1.0 ? MC_GAMMA_EXP : shape == 0.0 ? MC_GAMMA_ZERO
                 : shape < 1.0 ? MC_GAMMA_SMALL : MC_GAMMA_MT;
        g->b = shape - 1. / 3.;
        g->c = g->how == MC_GAMMA_MT ? 1. / sqrt(9 * g->b) : 0.0;
        g->ia = 1. / shape;
    }

    static inline double mc_gamma_draw(mc_rng_t *r, const mc_gamma_t *g) {
        double x, v, u, y;
        const double a = g->shape, b = g->b;
        if (MC_LIKELY(g->how == MC_GAMMA_MT)) {
            for (;;) {
                do {
                    x = mc_rng_normal(r);
                    v = 1.0 + g->c * x;
                } while (v <= 0.0);
                v = v * v * v;
                u = mc_rng_double(r);
                if (u < 1.0 - 0.0331 * (x * x) * (x * x)) return b * v;
                if (log(u) < 0.5 * x * x + b * (1. - v + log(v))) return b * v;
            }
        }
        if (g->how == MC_GAMMA_EXP) return mc_rng_exponential(r);
        if (g->how == MC_GAMMA_ZERO) return 0.0;
        for (;;) {
            u = mc_rng_double(r);
            v = mc_rng_exponential(r);
            if (u <= 1.0 - a) {
                x = pow(u, g->ia);
                if (x <= v) return x;
            } else {
                y = -log((1 - u) / a);
                x = pow(1.0 - a + a * y, g->ia);
                if (x <= v + y) return x;
            }
        }
    }
    """
    int MC_HAVE_U128
    uint64_t mc_zig_k[256]
    double mc_zig_w[256]
    uint64_t mc_probe_word
    long mc_probe_calls
    uint64_t mc_probe_u64(void *st) noexcept nogil
    uint32_t mc_probe_u32(void *st) noexcept nogil
    double mc_probe_dbl(void *st) noexcept nogil
    uint64_t mc_probe_raw(void *st) noexcept nogil
    uint64_t mc_pcg_next(bitgen_t *bg) noexcept nogil
    void *mc_pcg_fn
    void mc_std_normal_fill(bitgen_t *bg, Py_ssize_t m, double *out) noexcept nogil
    void mc_c_to_rows(const double *xt, Py_ssize_t m, Py_ssize_t d, double *out) noexcept nogil
    uint64_t mc_zexp_k[256]
    double mc_zexp_w[256]
    int mc_inline_draws
    ctypedef struct mc_rng_t:
        int inl
    void mc_rng_begin(mc_rng_t *r, bitgen_t *bg) noexcept nogil
    void mc_rng_end(mc_rng_t *r) noexcept nogil
    void mc_rng_resume(mc_rng_t *r) noexcept nogil
    double mc_rng_double(mc_rng_t *r) noexcept nogil
    double mc_rng_normal(mc_rng_t *r) noexcept nogil
    double mc_rng_exponential(mc_rng_t *r) noexcept nogil
    void mc_rng_nonzero_doubles(mc_rng_t *r, Py_ssize_t m, double *out) noexcept nogil
    void mc_std_uniform_fill(bitgen_t *bg, Py_ssize_t m, double *out) noexcept nogil
    void mc_std_exponential_fill(bitgen_t *bg, Py_ssize_t m, double *out) noexcept nogil
    ctypedef struct mc_gamma_t:
        double shape
    void mc_gamma_init(mc_gamma_t *g, double shape) noexcept nogil
    double mc_gamma_draw(mc_rng_t *r, const mc_gamma_t *g) noexcept nogil


# ---------------------------------------------------------------------------
# The inline Poisson (rate >= 10) and von Mises samplers, on the same
# mc_rng_t stream as the draws above: NumPy's methods (Hoermann's PTRS for
# the Poisson, Best and Fisher's rejection sampler for the von Mises), the
# same variates in the same order and the same arithmetic on them, so the
# values and the stream consumption are NumPy's.  Checked at import against
# NumPy's Generator (_inline_samplers_setup, called after the checks of the
# draws they are made of); when a check fails the families draw with
# NumPy's per-draw functions.
# ---------------------------------------------------------------------------

cdef extern from *:
    """
    /* NumPy's own log-gamma of its static library (only for the import
       check of mc_loggam below) */
    double random_loggam(double x);

    /* the inline Poisson (rate >= 10) and von Mises samplers are in use
       (set by _inline_samplers_setup) */
    static int mc_inline_poisson = 0;
    static int mc_inline_vonmises = 0;

    /* log Gamma(x) for x >= 1 by the method of NumPy's random_loggam, its
       values bit for bit: 0 at x = 1 and 2; else x is raised by
       n = (int)(7 - x) (below 7) to x0 = x + n, where Stirling's series
       (x0 - 1/2) log x0 - x0 + log(2 pi) / 2 + sum_k c_k / x0^(2k - 1) is
       evaluated with ten terms, c_k = B_2k / (2k (2k - 1)) as decimals of
       16 significant digits (the last of 15), the sum by Horner's rule in
       1 / x0^2 from c_10; then log(x0 - 1), log(x0 - 2), ... down to
       log(x) are subtracted. */
    static const double mc_stirling_c[10] = {
        8.333333333333333e-02, -2.777777777777778e-03, 7.936507936507937e-04,
        -5.952380952380952e-04, 8.417508417508418e-04, -1.917526917526918e-03,
        6.410256410256410e-03, -2.955065359477124e-02, 1.796443723688307e-01,
        -1.39243221690590e+00};

    static inline double mc_loggam(double x) {
        double x0, y2, s, g;
        int64_t n = 0, k;
        if (x == 1.0 || x == 2.0) return 0.0;
        if (x < 7.0) n = (int64_t)(7 - x);
        x0 = x + n;
        y2 = (1.0 / x0) * (1.0 / x0);
        s = mc_stirling_c[9];
        for (k = 8; k >= 0; k--) {
            s *= y2;
            s += mc_stirling_c[k];
        }
        g = s / x0 + 0.5 * 1.8378770664093453e+00 + (x0 - 0.5) * log(x0) - x0;
        for (k = 1; k <= n; k++) {
            g -= log(x0 - 1.0);
            x0 -= 1.0;
        }
        return g;
    }

    /* PTRS (Hoermann 1993) at rate lam >= 10 with its constants computed
       once: b = 0.931 + 2.53 sqrt(lam), a = -0.059 + 0.02483 b,
       1 / alpha = 1.1239 + 1.1328 / (b - 3.4), v_r = 0.9277 - 3.6224 / (b - 2).
       A try takes u = U - 1/2 and v of two uniforms, us = 1/2 - |u|,
       k = floor((2 a / us + b) u + lam + 0.43); k is taken at once when
       us >= 0.07 and v <= v_r, the try is lost when k < 0 or (us < 0.013
       and v > us), else k is taken when
       log v + log(1 / alpha) - log(a / us^2 + b) <= -lam + k log lam - log k!. */
    typedef struct { double lam, loglam, a, b, ia, lia, vr; int has_lia; } mc_ptrs_t;

    /* the constants; log(1 / alpha) too when column (many draws at this
       rate), else only when a draw reaches the test that needs it */
    static inline void mc_ptrs_init(mc_ptrs_t *t, double lam, int column) {
        double slam = sqrt(lam);
        t->lam = lam;
        t->loglam = log(lam);
        t->b = 0.931 + 2.53 * slam;
        t->a = -0.059 + 0.02483 * t->b;
        t->ia = 1.1239 + 1.1328 / (t->b - 3.4);
        t->has_lia = column;
        t->lia = column ? log(t->ia) : 0.0;
        t->vr = 0.9277 - 3.6224 / (t->b - 2);
    }

    static inline int64_t mc_ptrs_draw(mc_rng_t *r, const mc_ptrs_t *t) {
        int64_t k;
        double u, v, us;
        for (;;) {
            u = mc_rng_double(r) - 0.5;
            v = mc_rng_double(r);
            us = 0.5 - fabs(u);
            k = (int64_t)floor((2 * t->a / us + t->b) * u + t->lam + 0.43);
            if (us >= 0.07 && v <= t->vr) return k;
            if (k < 0 || (us < 0.013 && v > us)) continue;
            if (log(v) + (t->has_lia ? t->lia : log(t->ia)) - log(t->a / (us * us) + t->b)
                    <= -t->lam + k * t->loglam - mc_loggam((double)(k + 1)))
                return k;
        }
    }

    /* Bounds lo <= exp(-lam) <= hi for 0 < lam < 10 from a table of
       2^(j / 256) (mc_expb_init): with t = -lam log2(e) 256 and k = floor(t),
       exp(-lam) = 2^(t / 256) lies between 2^(k / 256) and 2^((k + 1) / 256);
       the margins of 1e-12 cover the roundings of t, of the table and of
       libm's exp (each below 1e-14 relative). */
    #define MC_EXPB_N 256
    static double mc_expb_t[MC_EXPB_N + 1];
    static int mc_expb_ready = 0;

    static void mc_expb_init(void) {
        int j;
        for (j = 0; j <= MC_EXPB_N; j++) mc_expb_t[j] = exp2((double)j / MC_EXPB_N);
        mc_expb_ready = 1;
    }

    static inline void mc_expb(double lam, double *lo, double *hi) {
        int64_t k = (int64_t)floor(-lam * 1.4426950408889634 * MC_EXPB_N);
        int64_t n = k >> 8, j = k & (MC_EXPB_N - 1);   /* k = 256 n + j, n in [-15, 0] */
        uint64_t bits = (uint64_t)(1023 + n) << 52;
        double sc;
        memcpy(&sc, &bits, sizeof sc);                  /* 2^n */
        *lo = mc_expb_t[j] * sc * (1.0 - 1e-12);
        *hi = mc_expb_t[j + 1] * sc * (1.0 + 1e-12);
    }

    /* NumPy's random_poisson below rate 10 (not 0): the count of uniforms
       multiplied into a product before it falls to exp(-lam) or below.
       Each product is compared with the bounds of mc_expb, and exp(-lam)
       itself is computed only when a product falls between them (a few
       draws in a thousand): the same counts and stream consumption. */
    static inline int64_t mc_poisson_mult_lazy(mc_rng_t *r, double lam) {
        double lo, hi, e, prod = 1.0;
        int64_t x = 0;
        mc_expb(lam, &lo, &hi);
        for (;;) {
            prod *= mc_rng_double(r);
            if (prod > hi) {
                x += 1;
                continue;
            }
            if (prod <= lo) return x;
            break;
        }
        e = exp(-lam);
        for (;;) {
            if (!(prod > e)) return x;
            x += 1;
            prod *= mc_rng_double(r);
        }
    }

    /* NumPy's random_poisson at any rate on the stream r (the constants
       computed per call, as there): PTRS at rate >= 10, 0 at rate 0, else
       the product of uniforms falling below exp(-rate) */
    static inline int64_t mc_poisson_any(mc_rng_t *r, double lam) {
        mc_ptrs_t t;
        int64_t x = 0;
        double prod = 1.0, enlam;
        if (lam >= 10) {
            mc_ptrs_init(&t, lam, 0);
            return mc_ptrs_draw(r, &t);
        }
        if (lam == 0) return 0;
        if (lam > 0 && mc_expb_ready) return mc_poisson_mult_lazy(r, lam);
        enlam = exp(-lam);
        for (;;) {
            prod *= mc_rng_double(r);
            if (!(prod > enlam)) return x;
            x += 1;
        }
    }

    /* The von Mises sampler of NumPy's random_vonmises(mu, kappa), with the
       per-parameter work done once (mc_vm_init):
       - kappa NaN: NaN, drawing nothing (MC_VM_NAN);
       - kappa < 1e-8: pi (2 u - 1) of one uniform (MC_VM_UNIFORM);
       - kappa > 1e6 (and not < 1e-5): mu + sqrt(1 / kappa) z of one standard
         normal z, then 2 pi added below -pi, taken off above pi
         (MC_VM_NORMAL);
       - else Best and Fisher's method (MC_VM_BF): s = 1 / kappa + kappa
         below 1e-5, else s = (1 + rho^2) / (2 rho) with
         rho = (r - sqrt(2 r)) / (2 kappa), r = 1 + sqrt(1 + 4 kappa^2);
         tries of a uniform u, z = cos(pi u), w = (1 + s z) / (s + z),
         y = kappa (s - w), and a uniform v, until y (2 - y) >= v or
         log(y / v) + 1 - y >= 0; then a uniform decides the sign (negative
         below 1/2) of acos(w), mu is added and the sum r is wrapped as
         sign(r) (fmod(|r| + pi, 2 pi) - pi).
       The fmod is taken as the subtraction of 2 pi that it is (exact) when
       |r| + pi < 4 pi.  For MC_VM_BF the draw's w (cos of the angle from
       mu that acos turned into the draw) is stored in *w. */
    enum { MC_VM_BF, MC_VM_UNIFORM, MC_VM_NORMAL, MC_VM_NAN };
    typedef struct { double mu, kappa, s, sd; int how; } mc_vm_t;
    #define MC_VM_PI 3.141592653589793238462643383279502884

    static inline void mc_vm_init(mc_vm_t *v, double mu, double kappa) {
        double r, rho;
        v->mu = mu;
        v->kappa = kappa;
        v->s = v->sd = 0.0;
        if (kappa != kappa) {
            v->how = MC_VM_NAN;
        } else if (kappa < 1e-8) {
            v->how = MC_VM_UNIFORM;
        } else if (kappa < 1e-5) {
            v->how = MC_VM_BF;
            v->s = 1. / kappa + kappa;
        } else if (kappa <= 1e6) {
            v->how = MC_VM_BF;
            r = 1 + sqrt(1 + 4 * kappa * kappa);
            rho = (r - sqrt(2 * r)) / (2 * kappa);
            v->s = (1 + rho * rho) / (2 * rho);
        } else {
            v->how = MC_VM_NORMAL;
            v->sd = sqrt(1. / kappa);
        }
    }

    static inline double mc_vm_draw(mc_rng_t *r, const mc_vm_t *v, double *w) {
        double u, z, ww, y, vv, res, mod, a;
        const double s = v->s, kappa = v->kappa;
        if (MC_LIKELY(v->how == MC_VM_BF)) {
            for (;;) {
                u = mc_rng_double(r);
                z = cos(MC_VM_PI * u);
                ww = (1 + s * z) / (s + z);
                y = kappa * (s - ww);
                vv = mc_rng_double(r);
                if (y * (2 - y) - vv >= 0 || log(y / vv) + 1 - y >= 0) break;
            }
            u = mc_rng_double(r);
            *w = ww;
            res = acos(ww);
            if (u < 0.5) res = -res;
            res += v->mu;
            a = fabs(res) + MC_VM_PI;
            if (a < 2 * MC_VM_PI) mod = a - MC_VM_PI;
            else if (a < 4 * MC_VM_PI) mod = (a - 2 * MC_VM_PI) - MC_VM_PI;
            else mod = fmod(a, 2 * MC_VM_PI) - MC_VM_PI;
            return res < 0 ? -mod : mod;
        }
        if (v->how == MC_VM_UNIFORM) return MC_VM_PI * (2 * mc_rng_double(r) - 1);
        if (v->how == MC_VM_NAN) return kappa;
        res = v->mu + v->sd * mc_rng_normal(r);
        if (res < -MC_VM_PI) res += 2 * MC_VM_PI;
        if (res > MC_VM_PI) res -= 2 * MC_VM_PI;
        return res;
    }
    """
    int mc_inline_poisson
    int mc_inline_vonmises
    double random_loggam(double x) noexcept nogil
    double mc_loggam(double x) noexcept nogil
    ctypedef struct mc_ptrs_t:
        double lam
    void mc_ptrs_init(mc_ptrs_t *t, double lam, int column) noexcept nogil
    int64_t mc_ptrs_draw(mc_rng_t *r, const mc_ptrs_t *t) noexcept nogil
    int64_t mc_poisson_any(mc_rng_t *r, double lam) noexcept nogil
    void mc_expb_init() noexcept nogil
    enum: MC_VM_BF
    ctypedef struct mc_vm_t:
        int how
    void mc_vm_init(mc_vm_t *v, double mu, double kappa) noexcept nogil
    double mc_vm_draw(mc_rng_t *r, const mc_vm_t *v, double *w) noexcept nogil


def inline_poisson(bit_generator, lam, Py_ssize_t m, bint per_call=False):
    """m Poisson draws of rate lam from bit_generator by the inline sampler
    (the per-column constants once; per_call: recomputed at every draw, as
    the NegativeBinomial's per-draw rates are), or NumPy's random_poisson
    when the inline sampler is off: Generator.poisson(lam, m), bit for bit."""
    cdef bitgen_t *bg = <bitgen_t *> PyCapsule_GetPointer(bit_generator.capsule, "BitGenerator")
    cdef double rate = lam
    cdef Py_ssize_t i
    cdef mc_rng_t r
    cdef mc_ptrs_t t
    out = np.empty(max(m, 0), dtype=np.int64)
    cdef int64_t[::1] o = out
    if m > 0:
        with bit_generator.lock, nogil:
            if not mc_inline_poisson:
                for i in range(m):
                    o[i] = random_poisson(bg, rate)
            else:
                mc_rng_begin(&r, bg)
                if per_call or rate < 10:
                    for i in range(m):
                        o[i] = mc_poisson_any(&r, rate)
                else:
                    mc_ptrs_init(&t, rate, 1)
                    for i in range(m):
                        o[i] = mc_ptrs_draw(&r, &t)
                mc_rng_end(&r)
    return out


def inline_vonmises(bit_generator, double mu, double kappa, Py_ssize_t m):
    """m von Mises draws from bit_generator by the inline sampler (NumPy's
    random_vonmises when it is off), NumPy's Generator.vonmises(mu, kappa, m)
    bit for bit (before the family's mapping of pi to -pi), and each draw's
    w (the cosine that acos turned into the angle; NaN where the draw was
    not made by Best and Fisher's method)."""
    cdef bitgen_t *bg = <bitgen_t *> PyCapsule_GetPointer(bit_generator.capsule, "BitGenerator")
    cdef Py_ssize_t i
    cdef mc_rng_t r
    cdef mc_vm_t v
    cdef double nan = float("nan")
    out = np.empty(max(m, 0))
    wout = np.full(max(m, 0), np.nan)
    cdef double[::1] o = out
    cdef double[::1] w = wout
    if m > 0:
        with bit_generator.lock, nogil:
            if not mc_inline_vonmises:
                for i in range(m):
                    o[i] = random_vonmises(bg, mu, kappa)
            else:
                mc_vm_init(&v, mu, kappa)
                mc_rng_begin(&r, bg)
                for i in range(m):
                    o[i] = mc_vm_draw(&r, &v, &w[i])
                mc_rng_end(&r)
    return out, wout


def _inline_samplers_setup(bint on=True):
    """Use the inline Poisson (rate >= 10) and von Mises samplers (True for
    each that passes its checks against NumPy: the log-gamma against
    NumPy's own, the draws and the stream state after against NumPy's
    Generator on two seeds) or NumPy's per-draw functions.  Returns
    (poisson, vonmises): which are in use."""
    global mc_inline_poisson, mc_inline_vonmises
    mc_inline_poisson = 0
    mc_inline_vonmises = 0
    if not on:
        return (False, False)
    mc_expb_init()
    xs = np.concatenate([np.arange(1.0, 2000.0), [1e4 + 1, 1e6 + 1, 1e9 + 1, 1e12 + 1]])
    mc_inline_poisson = all(mc_loggam(x) == random_loggam(x) for x in xs)
    mc_inline_vonmises = 1
    for seed in (11, 2**70 + 5):
        for lam in (1e-9, 0.3, 2.5, 9.75, 10.0, 10.5, 37.25, 1e3, 1e7, 1e12):
            if not mc_inline_poisson:
                break
            for per_call in (False, True):
                mine, theirs = np.random.PCG64(seed), np.random.PCG64(seed)
                x = inline_poisson(mine, lam, 3000, per_call)
                y = np.random.Generator(theirs).poisson(lam, 3000)
                if not np.array_equal(x, y) or mine.state != theirs.state:
                    mc_inline_poisson = 0
        for mu, kappa in ((0.5, 1e-9), (-3.0, 1e-6), (3.1, 0.5), (1.0, 4.0), (-2.0, 1e3),
                          (3.14, 2e6), (-3.14, 1e8), (7.5, 2.0)):
            if not mc_inline_vonmises:
                break
            mine, theirs = np.random.PCG64(seed), np.random.PCG64(seed)
            x = inline_vonmises(mine, mu, kappa, 3000)[0]
            y = np.random.Generator(theirs).vonmises(mu, kappa, 3000)
            if not np.array_equal(x.view(np.uint64), y.view(np.uint64)) \
                    or mine.state != theirs.state:
                mc_inline_vonmises = 0
    return (bool(mc_inline_poisson), bool(mc_inline_vonmises))


def loggam_pair(xs):
    """(mc_loggam(x), NumPy's random_loggam(x)) for each x of xs (x >= 1)."""
    x = np.ascontiguousarray(xs, dtype=np.float64).ravel()
    a, b = np.empty_like(x), np.empty_like(x)
    cdef double[::1] xv = x, av = a, bv = b
    cdef Py_ssize_t i
    for i in range(x.shape[0]):
        av[i] = mc_loggam(xv[i])
        bv[i] = random_loggam(xv[i])
    return a, b
