# Included by _kernels.pyx after the family table: standard normal columns
# from a PCG64 stream, the same values as NumPy's random_standard_normal_fill
# bit for bit, about three times faster (mc_std_normal_fill, whose C code is
# in _kernels_inline.pxi, included ahead of the family table; here its
# constants, its import checks and those of the other inline draws, and its
# registration).  The Normal family's column fill (re-registered below) and
# the other families drawn from columns of standard normals (LogNormal,
# HalfNormal, Cauchy, HalfCauchy in _kernels_families.pxi) use it.
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


cdef bint _zexp_leaves(bitgen_t *probe, int idx, uint64_t ri) noexcept:
    """True when NumPy's exponential from the word (layer idx, magnitude ri)
    leaves the common case."""
    global mc_probe_word, mc_probe_calls
    mc_probe_word = (<uint64_t> idx << 3) | (ri << 11)
    mc_probe_calls = 0
    random_standard_exponential(probe)
    return mc_probe_calls > 1


cdef void _zexp_probe() noexcept:
    """Read the exponential ziggurat's layer constants off NumPy's
    random_standard_exponential, as _zig_probe does the normal's."""
    global mc_probe_word, mc_probe_calls
    cdef bitgen_t probe
    cdef int idx
    cdef uint64_t lo, hi, mid, top = (<uint64_t> 1) << 53
    probe.state = NULL
    probe.next_uint64 = mc_probe_u64
    probe.next_uint32 = mc_probe_u32
    probe.next_double = mc_probe_dbl
    probe.next_raw = mc_probe_raw
    for idx in range(256):
        if not _zexp_leaves(&probe, idx, top - 1):
            mc_zexp_k[idx] = top
        else:
            lo, hi = 0, top - 1
            while lo < hi:
                mid = lo + (hi - lo) // 2
                if _zexp_leaves(&probe, idx, mid):
                    hi = mid
                else:
                    lo = mid + 1
            mc_zexp_k[idx] = lo
        if mc_zexp_k[idx] > 1:
            mc_probe_word = (<uint64_t> idx << 3) | ((<uint64_t> 1) << 11)
            mc_probe_calls = 0
            mc_zexp_w[idx] = random_standard_exponential(&probe)   # 1 * w[idx]
        else:
            mc_zexp_k[idx] = 0
            mc_zexp_w[idx] = 0.0


def inline_sample(bit_generator, str kind, Py_ssize_t m, double shape=1.0):
    """m draws from bit_generator by the inline draws (NumPy's per-draw
    functions for another bit generator or when they are off): kind
    "uniform" (Generator.random), "exponential" (.standard_exponential) or
    "gamma" (.standard_gamma(shape)), NumPy's values bit for bit."""
    cdef bitgen_t *bg = <bitgen_t *> PyCapsule_GetPointer(bit_generator.capsule, "BitGenerator")
    cdef int k = {"uniform": 0, "exponential": 1, "gamma": 2}[kind]
    cdef Py_ssize_t i
    cdef mc_rng_t r
    cdef mc_gamma_t g
    out = np.empty(max(m, 0))
    cdef double[::1] o = out
    mc_gamma_init(&g, shape)
    if m > 0:
        with bit_generator.lock, nogil:
            if k == 0:
                mc_std_uniform_fill(bg, m, &o[0])
            elif k == 1:
                mc_std_exponential_fill(bg, m, &o[0])
            else:
                mc_rng_begin(&r, bg)
                for i in range(m):
                    o[i] = mc_gamma_draw(&r, &g)
                mc_rng_end(&r)
    return out


def _inline_draws_setup(bint on=True):
    """Use the inline uniform, exponential and gamma draws (True, when the
    inline normal fill is in use and they pass the checks against NumPy's
    Generator) or NumPy's per-draw functions (False).  Returns whether they
    are in use."""
    global mc_inline_draws
    mc_inline_draws = 0
    if not on or not NORMAL_FILL_INLINE or mc_pcg_fn == NULL:
        return False
    _zexp_probe()
    mc_inline_draws = 1
    for seed in (7, 2**64 + 3):
        checks = [("uniform", 1.0, lambda g, m, a: g.random(m)),
                  ("exponential", 1.0, lambda g, m, a: g.standard_exponential(m))]
        checks += [("gamma", a, lambda g, m, a: g.standard_gamma(a, m))
                   for a in (0.0, 0.3, 1.0, 1.5, 7.25)]
        for kind, a, ref in checks:
            mine, theirs = np.random.PCG64(seed), np.random.PCG64(seed)
            x = inline_sample(mine, kind, 20000, a)
            y = ref(np.random.Generator(theirs), 20000, a)
            if not np.array_equal(x.view(np.uint64), y.view(np.uint64)) \
                    or mine.state != theirs.state:
                mc_inline_draws = 0
                return False
    return True


INLINE_DRAWS = _inline_draws_setup(True)


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

INLINE_SAMPLERS = _inline_samplers_setup(True)
