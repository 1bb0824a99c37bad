# Included by _kernels.pyx after the family table: standard normal columns
# from a PCG64 stream, the same values as NumPy's random_standard_normal_fill
# bit for bit, about three times faster.  The Normal family's column fill
# (re-registered below) and the other families drawn from columns of
# standard normals (LogNormal, HalfNormal, Cauchy, HalfCauchy in
# _kernels_families.pxi, which declares mc_std_normal_fill ahead) use it.
#
# NumPy draws a standard normal by the ziggurat method: one 64-bit word r of
# the bit generator gives a layer idx (its low 8 bits), a sign and a 52-bit
# magnitude rabs; x = +-rabs * w[idx] is returned when rabs < k[idx] (about
# 99.3% of the draws), else the draw goes on in the layer's wedge or the
# tail, consuming more words.  Through the bitgen_t interface every word is
# an indirect call into the PCG64 module; here the PCG64 step (128-bit LCG,
# XSL-RR output) runs inline with its state in registers and the common case
# is taken in place.  Whenever a draw leaves the common case the stream is
# put back to the state before its first word and NumPy's own
# random_standard_normal makes that draw, so the rare cases are NumPy's code
# and the stream consumes exactly the words NumPy's fill would.
#
# Nothing is copied from NumPy: the layer constants k[idx] and w[idx] are
# read off NumPy's own random_standard_normal at import, by feeding it chosen
# words through a probing bitgen_t (w: the value returned for rabs = 1; k:
# the smallest rabs that leaves the common case, by bisection).  The PCG64
# state layout and step are checked against NumPy's PCG64 (state dict and
# random_raw) and the fill against random_standard_normal_fill; if any check
# fails (another NumPy build, no 128-bit integers), every fill is NumPy's.

from numpy.random.c_distributions cimport random_standard_normal
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


cdef bint _zig_leaves(bitgen_t *probe, int idx, uint64_t rabs) noexcept:
    """True when NumPy's draw from the word (layer idx, sign +, rabs) leaves
    the common case (asks the bit generator for more)."""
    global mc_probe_word, mc_probe_calls
    mc_probe_word = <uint64_t> idx | (rabs << 9)
    mc_probe_calls = 0
    random_standard_normal(probe)
    return mc_probe_calls > 1


cdef bint _zig_probe():
    """Read NumPy's layer constants off random_standard_normal (see above)."""
    global mc_probe_word, mc_probe_calls
    cdef bitgen_t probe
    cdef int idx
    cdef uint64_t lo, hi, mid, top = (<uint64_t> 1) << 52
    probe.state = NULL
    probe.next_uint64 = mc_probe_u64
    probe.next_uint32 = mc_probe_u32
    probe.next_double = mc_probe_dbl
    probe.next_raw = mc_probe_raw
    for idx in range(256):
        # k = the smallest rabs that leaves the common case (top: none does)
        if not _zig_leaves(&probe, idx, top - 1):
            mc_zig_k[idx] = top
        else:
            lo, hi = 0, top - 1          # leaves at hi; find the first
            while lo < hi:
                mid = lo + (hi - lo) // 2
                if _zig_leaves(&probe, idx, mid):
                    hi = mid
                else:
                    lo = mid + 1
            mc_zig_k[idx] = lo
        if mc_zig_k[idx] > 1:
            mc_probe_word = <uint64_t> idx | ((<uint64_t> 1) << 9)
            mc_probe_calls = 0
            mc_zig_w[idx] = random_standard_normal(&probe)   # 1 * w[idx]
        else:
            mc_zig_k[idx] = 0            # never the common case here: NumPy's draw
            mc_zig_w[idx] = 0.0
    return True


def _normal_fill_setup(bint on=True):
    """Use the inline PCG64 normal fill for Normal draws (True, when NumPy's
    PCG64 and normal sampler pass the checks) or NumPy's fill (False).
    Returns whether the inline fill is in use."""
    global mc_pcg_fn
    cdef bitgen_t *bg
    cdef double[::1] a, b
    cdef Py_ssize_t m = 20000
    mc_pcg_fn = NULL
    if not on or not MC_HAVE_U128:
        return False
    _zig_probe()
    ref = np.random.PCG64(12345)
    bg = <bitgen_t *> PyCapsule_GetPointer(ref.capsule, "BitGenerator")
    st = ref.state["state"]
    words = <uint64_t *> (<void **> bg.state)[0]
    if ((<object> words[0]) | (<object> words[1]) << 64) != st["state"] or \
            ((<object> words[2]) | (<object> words[3]) << 64) != st["inc"]:
        return False
    raw = ref.random_raw(8)
    twin = np.random.PCG64(12345)
    bg = <bitgen_t *> PyCapsule_GetPointer(twin.capsule, "BitGenerator")
    if [int(mc_pcg_next(bg)) for _ in range(8)] != [int(v) for v in raw]:
        return False
    # the fill against NumPy's on both streams (many slow-path draws)
    a = np.empty(m)
    b = np.empty(m)
    mc_pcg_fn = <void *> bg.next_uint64
    random_standard_normal_fill(<bitgen_t *> PyCapsule_GetPointer(ref.capsule,
                                                                       "BitGenerator"), m, &a[0])
    mc_std_normal_fill(bg, m, &b[0])
    if not np.array_equal(np.asarray(a).view(np.uint64), np.asarray(b).view(np.uint64)) \
            or ref.state != twin.state:
        mc_pcg_fn = NULL
        return False
    return True


NORMAL_FILL_INLINE = _normal_fill_setup(True)


cdef void _fill_normal_inline(const double *p, bitgen_t *bg, Py_ssize_t m,
                              double *col) noexcept nogil:
    # p = [loc, scale]: the same values as the family table's Normal fill
    mc_std_normal_fill(bg, m, col)
    mc_c_affine(col, m, p[0], p[1])


_FAMILY_TABLE[MC_NORMAL].fill_column = _fill_normal_inline


def std_normal_fill(bit_generator, Py_ssize_t m):
    """m standard normals from bit_generator by the Normal family's fill (the
    inline PCG64 fill when it is in use): NumPy's
    Generator(bit_generator).standard_normal(m), bit for bit."""
    cdef bitgen_t *bg = <bitgen_t *> PyCapsule_GetPointer(bit_generator.capsule, "BitGenerator")
    out = np.empty(max(m, 0))
    cdef double[::1] o = out
    if m > 0:
        with bit_generator.lock, nogil:
            mc_std_normal_fill(bg, m, &o[0])
    return out
