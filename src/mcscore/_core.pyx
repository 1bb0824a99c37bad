# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""The core of mcscore's extensions: bit generators, signal checks and the
one stream driver (see _core.pxd for the contract).

A run is a set of *work items*: whole streams (each walks its blocks b, b +
n_streams, ... in order) or the blocks of a round.  Threads claim items one
by one and call the per-block callback.  The calling thread (OpenMP thread
0, the Python thread that called) checks for signals every MC_POLL_SECONDS:
between blocks, inside blocks when a callback calls mc_poll, and while it
waits for the other threads once it has no item left.  A pending signal sets
the shared flag; every thread stops at its next block or poll, and mc_drive
re-raises the exception (KeyboardInterrupt) after the parallel region.
"""
import threading

from cpython.exc cimport PyErr_Occurred
from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_IsValid
from cpython.pythread cimport PyThread_get_thread_ident
from cython.parallel cimport parallel
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memset
from numpy.random cimport bitgen_t

cdef extern from "Python.h":
    # Declared without an exception clause on purpose: inside a parallel
    # region a Cython-level exception would only be noticed at its end.  We
    # set a flag instead, leave the exception pending, and re-raise it once
    # the region is over (mc_reraise).
    int _mc_check_signals "PyErr_CheckSignals" ()

HAVE_OPENMP = bool(MC_HAVE_OPENMP)


cdef bitgen_t *mc_bitgen_ptr(object bit_generator) except NULL:
    """The bitgen_t of a numpy BitGenerator (valid while it lives; use it from
    one thread at a time)."""
    capsule = bit_generator.capsule
    if not PyCapsule_IsValid(capsule, "BitGenerator"):
        raise TypeError("not a numpy BitGenerator")
    return <bitgen_t *> PyCapsule_GetPointer(capsule, "BitGenerator")


cdef int mc_reraise() except -1:
    """Propagate the exception a signal handler left pending."""
    if PyErr_Occurred() == NULL:
        raise KeyboardInterrupt
    return -1


cdef double *mc_alloc_doubles(Py_ssize_t count, str what) except NULL:
    """malloc(count doubles) (at least one), or MemoryError naming `what` and
    the size asked for."""
    cdef double *p
    if count < 1:
        count = 1
    if count > (<Py_ssize_t> 1 << 60) // <Py_ssize_t> sizeof(double):
        p = NULL
    else:
        p = <double *> malloc(sizeof(double) * count)
    if p == NULL:
        raise MemoryError(f"could not allocate {what} ({count} doubles, "
                          f"{count * sizeof(double) / 2**20:.1f} MiB)")
    return p


cdef int mc_round_init(mc_round *rd, int64_t n, int64_t n_streams, int64_t block_size,
                       int n_threads, Py_ssize_t count, const int64_t *first,
                       const int64_t *slots, list bitgens) except -1:
    """Fill rd for `count` items starting at blocks first[0..count) (a round:
    walk = 0; set walk, max_blocks and next_block for whole streams).
    bitgens (or None): item i uses bitgens[slots[i]] (bitgens[i] without
    slots).  Free with mc_round_free."""
    cdef Py_ssize_t i
    memset(rd, 0, sizeof(mc_round))      # no walk, no resume, no outside counter
    rd.n, rd.n_streams, rd.block_size = n, n_streams, block_size
    rd.count, rd.first, rd.slots, rd.n_threads = count, first, slots, n_threads
    rd.ctl.err[1] = -1
    # only the main thread can run Python's signal handlers: elsewhere the
    # checks would cost a GIL round trip for nothing
    rd.ctl.next_check = 0.0 if PyThread_get_thread_ident() == _MAIN_IDENT else 1e300
    if bitgens is None:
        return 0
    rd.bitgens = <bitgen_t **> malloc(sizeof(bitgen_t *) * max(count, 1))
    if rd.bitgens == NULL:
        raise MemoryError()
    try:
        for i in range(count):
            rd.bitgens[i] = mc_bitgen_ptr(bitgens[slots[i] if slots != NULL else i])
    except BaseException:
        mc_round_free(rd)
        raise
    return 0


cdef unsigned long _MAIN_IDENT = threading.main_thread().ident


cdef void mc_round_free(mc_round *rd) noexcept:
    free(rd.bitgens)
    rd.bitgens = NULL


cdef int mc_round_threads(const mc_round *rd) noexcept nogil:
    """Threads mc_drive uses: n_threads, at least 1, at most one per item."""
    cdef Py_ssize_t nt = rd.n_threads
    if nt > rd.count:
        nt = rd.count
    return <int> (nt if nt > 1 else 1)


cdef Py_ssize_t mc_rows(const mc_round *rd, int64_t b) noexcept nogil:
    """Draws (paths) in block b: block_size, or what is left of n."""
    return <Py_ssize_t> (rd.block_size if (b + 1) * rd.block_size <= rd.n
                         else rd.n - b * rd.block_size)


cdef bint mc_poll_ctl(mc_ctl *ctl) noexcept nogil:
    """On the calling thread: check for signals when MC_POLL_SECONDS have
    passed since the last check.  True when the run must stop."""
    cdef double t
    if mc_flag_get(&ctl.err[0]) != ERR_NONE:
        return True
    t = mc_now()
    if t < ctl.next_check:
        return False
    ctl.next_check = t + MC_POLL_SECONDS
    with gil:
        if _mc_check_signals() != 0:
            mc_flag_set(&ctl.err[0], ERR_INTERRUPT)
            return True
    return False


cdef bint mc_poll(mc_round *rd, int tid) noexcept nogil:
    """For callbacks, every bounded amount of work (a chunk of a block): True
    when the run must stop (an error elsewhere, or a signal).  Thread 0 is
    the calling thread and checks for signals; the others read the flag."""
    if tid == 0:
        return mc_poll_ctl(&rd.ctl)
    return mc_flag_get(&rd.ctl.err[0]) != ERR_NONE


cdef void mc_fail(mc_round *rd, long long code, long long detail) noexcept nogil:
    """Record an error (code ERR_*, detail: e.g. the global draw index); every
    thread stops at its next block or poll."""
    rd.ctl.err[1] = detail
    mc_flag_set(&rd.ctl.err[0], code)


cdef void _work(mc_round *rd, mc_block_fn fn, void *ctx, int tid) noexcept nogil:
    """One thread's share of mc_drive."""
    cdef long long *claim = rd.ctl.claim if rd.ctl.claim != NULL else &rd.ctl.next_item
    cdef long long *err = &rd.ctl.err[0]
    cdef int64_t nb = (rd.n + rd.block_size - 1) // rd.block_size
    cdef int64_t b, done
    cdef long long i
    while mc_flag_get(err) == ERR_NONE:
        i = mc_claim(claim)
        if i >= rd.count:
            break
        b = rd.next_block[i] if (rd.walk and rd.next_block != NULL) else rd.first[i]
        done = 0
        while b < nb and mc_flag_get(err) == ERR_NONE and (rd.max_blocks <= 0 or
                                                           done < rd.max_blocks):
            done = done + 1
            if fn(ctx, rd, <Py_ssize_t> i, b, mc_rows(rd, b), tid) != 0:
                break
            if tid == 0:
                mc_poll_ctl(&rd.ctl)
            if not rd.walk:
                break
            b = b + rd.n_streams
        if rd.walk and rd.next_block != NULL:
            rd.next_block[i] = b
    # The calling thread keeps checking for signals until every thread is
    # done: the others stop at their next block or poll once the flag is set.
    # (The team may be smaller than asked for: count what OpenMP gave.)
    mc_atomic_add(&rd.ctl.finished, 1)
    if tid == 0:
        while mc_atomic_add(&rd.ctl.finished, 0) < mc_omp_team_size():
            mc_poll_ctl(&rd.ctl)
            mc_nap()


cdef int mc_drive(mc_round *rd, mc_block_fn fn, void *ctx) except -1:
    """Run the items of rd with mc_round_threads(rd) threads, calling fn per
    block.  Returns the error code (ERR_*; the detail is in rd.ctl.err[1]);
    re-raises the exception of a signal (KeyboardInterrupt)."""
    cdef int nt = mc_round_threads(rd), tid
    rd.ctl.next_item = 0
    rd.ctl.finished = 0
    if rd.count > 0 and nt == 1:
        with nogil:     # no parallel region (and no OpenMP threads) for one
            _work(rd, fn, ctx, 0)
    elif rd.count > 0:
        with nogil, parallel(num_threads=nt):
            tid = mc_omp_thread_num()
            _work(rd, fn, ctx, tid)
    if rd.ctl.err[0] == ERR_INTERRUPT:
        return mc_reraise()
    return <int> rd.ctl.err[0]
