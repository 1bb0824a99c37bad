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
