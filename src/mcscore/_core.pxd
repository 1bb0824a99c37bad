# The core every mcscore extension cimports (the one place for each piece):
#
#   * the OpenMP shim (a serial build compiles and runs the same code);
#   * flags that several threads read and write (volatile access, atomics);
#   * bit generator pointers from numpy BitGenerator capsules;
#   * signal checks on the calling thread and re-raising the pending error;
#   * ONE stream driver, mc_drive: threads claim work items (whole streams,
#     or the blocks of a round) and call a per-block callback; the calling
#     thread checks for Ctrl-C, also while it waits for the other threads,
#     and the callbacks poll (mc_poll) inside long blocks, so an interrupt
#     is noticed within a fraction of a second whatever the block size.
#
#     from mcscore._core cimport mc_round, mc_drive, mc_poll, ...
#
# Determinism: a stream's blocks are always processed in order by one thread
# and the callbacks never depend on the thread or on where polls happen, so
# results are bit-identical for any thread count.  An interrupt only stops
# a run whose results are then discarded (KeyboardInterrupt is raised).
from libc.stdint cimport int64_t
from numpy.random cimport bitgen_t

cdef extern from *:
    """
    #ifndef MC_CORE_SHIM_H
    #define MC_CORE_SHIM_H
    #ifdef _OPENMP
    #include <omp.h>
    #define MC_HAVE_OPENMP 1
    static int mc_omp_max_threads(void) { return omp_get_max_threads(); }
    static int mc_omp_thread_num(void) { return omp_get_thread_num(); }
    static int mc_omp_num_procs(void) { return omp_get_num_procs(); }
    static int mc_omp_team_size(void) { return omp_get_num_threads(); }
    #else
    #define MC_HAVE_OPENMP 0
    static int mc_omp_max_threads(void) { return 1; }
    static int mc_omp_thread_num(void) { return 0; }
    static int mc_omp_num_procs(void) { return 1; }
    static int mc_omp_team_size(void) { return 1; }
    #endif
    /* A flag other threads write: read and write it through volatile so the
       compiler cannot keep a stale copy in a register across a long loop. */
    static inline long long mc_flag_get(long long *p) { return *(volatile long long *)p; }
    static inline void mc_flag_set(long long *p, long long v) { *(volatile long long *)p = v; }
    /* Atomic counters: claim the next work item, count running threads. */
    #if defined(_MSC_VER)
    #include <intrin.h>
    static long long mc_claim(long long *p) { return _InterlockedExchangeAdd64(p, 1); }
    static long long mc_atomic_add(long long *p, long long v) {
        return _InterlockedExchangeAdd64(p, v) + v; }
    #else
    static long long mc_claim(long long *p) { return __atomic_fetch_add(p, 1, __ATOMIC_RELAXED); }
    static long long mc_atomic_add(long long *p, long long v) {
        return __atomic_add_fetch(p, v, __ATOMIC_SEQ_CST); }
    #endif
    /* Monotonic clock (seconds) and a short sleep, for the signal checks. */
    #if defined(_WIN32)
    #include <windows.h>
    static double mc_now(void) { return (double)GetTickCount64() * 1e-3; }
    static void mc_nap(void) { Sleep(1); }
    #else
    #include <time.h>
    static double mc_now(void) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
    }
    static void mc_nap(void) {
        struct timespec t = {0, 200000};   /* 0.2 ms */
        nanosleep(&t, NULL);
    }
    #endif
    /* Seconds between two signal checks of the calling thread. */
    #define MC_POLL_SECONDS 0.02
    #endif
    """
    int MC_HAVE_OPENMP
    int mc_omp_max_threads() noexcept nogil
    int mc_omp_thread_num() noexcept nogil
    int mc_omp_num_procs() noexcept nogil
    int mc_omp_team_size() noexcept nogil
    long long mc_flag_get(long long *p) noexcept nogil
    void mc_flag_set(long long *p, long long v) noexcept nogil
    long long mc_claim(long long *p) noexcept nogil
    long long mc_atomic_add(long long *p, long long v) noexcept nogil
    double mc_now() noexcept nogil
    void mc_nap() noexcept nogil
    double MC_POLL_SECONDS

# Error codes of a run (mc_ctl.err[0]); err[1] carries the detail (the global
# index of the offending draw, or -1).
cpdef enum:
    ERR_NONE = 0
    ERR_F_NONFINITE = 1
    ERR_CALLBACK = 2
    ERR_INTERRUPT = 3
    ERR_MEMORY = 4

ctypedef struct mc_ctl:
    long long err[2]         # [0]: ERR_* (mc_flag_get/set), [1]: detail
    double next_check        # calling thread: time of its next signal check
    long long next_item      # the next work item to claim (mc_claim)
    long long finished       # threads done (atomic)
    long long *claim         # NULL, or an outside counter to claim items from

# One round of blocks (or whole streams) for mc_drive.  Block b of a call
# belongs to stream b % n_streams and holds rows(b) draws (paths):
# block_size, or what is left of n for the last block.
ctypedef struct mc_round:
    int64_t n                # draws (paths) of the whole call
    int64_t n_streams        # streams of the plan
    int64_t block_size
    Py_ssize_t count         # work items
    const int64_t *first     # item i starts at block first[i] ...
    int walk                 # ... 1: and walks its stream's blocks (first[i] +
                             #    k n_streams) up to max_blocks of them (0: all);
                             #    0: it is that one block only (a round)
    int64_t max_blocks
    int64_t *next_block      # walk: NULL, or IN/OUT where item i resumes
    const int64_t *slots     # NULL, or the row (stream slot) of item i
    bitgen_t **bitgens       # NULL, or the bit generator of item i
    int n_threads            # threads asked for (mc_round_threads: used)
    mc_ctl ctl

# The per-block callback: process block `b` (m rows) of item `item` on thread
# `tid` (0 <= tid < mc_round_threads(rd): index your per-thread buffers with
# it).  Return 0, or non-zero after setting rd.ctl.err to stop the run (or
# because mc_poll said so).
ctypedef int (*mc_block_fn)(void *ctx, mc_round *rd, Py_ssize_t item, int64_t b,
                            Py_ssize_t m, int tid) noexcept nogil

cdef bitgen_t *mc_bitgen_ptr(object bit_generator) except NULL
cdef int mc_round_init(mc_round *rd, int64_t n, int64_t n_streams, int64_t block_size,
                       int n_threads, Py_ssize_t count, const int64_t *first,
                       const int64_t *slots, list bitgens) except -1
cdef void mc_round_free(mc_round *rd) noexcept
cdef int mc_round_threads(const mc_round *rd) noexcept nogil
cdef Py_ssize_t mc_rows(const mc_round *rd, int64_t b) noexcept nogil
cdef bint mc_poll(mc_round *rd, int tid) noexcept nogil
cdef bint mc_poll_ctl(mc_ctl *ctl) noexcept nogil
cdef void mc_fail(mc_round *rd, long long code, long long detail) noexcept nogil
cdef int mc_drive(mc_round *rd, mc_block_fn fn, void *ctx) except -1
cdef int mc_reraise() except -1
cdef double *mc_alloc_doubles(Py_ssize_t count, str what) except NULL
