# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""A small extension that drives mcscore's kernels from its own OpenMP loop.

It estimates grad E[f(x)] for f(x) = (x_1 + ... + x_d)^2, a C function, over
any mcscore distribution (x is one draw, flattened): each stream (its own PCG64 bit
generator) walks its blocks with mc_run_block (draw + evaluate f +
accumulate the stream's sufficient statistics), streams run in parallel in
this module's prange, and mcscore.embed.estimate turns the statistics into
a GradientEstimate.  With the same seed it matches mcscore.score_grad with
the same C function bit for bit.
"""
from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_New
from cython.parallel cimport prange
from libc.stdint cimport int64_t, intptr_t
from libc.stdlib cimport free, malloc
from numpy.random cimport bitgen_t

from mcscore._kernels cimport (
    CB_D_P_N, FK_CALLBACK, mc_dist, mc_func, mc_kernel_dist_ptr, mc_run_block,
    mc_stats_len, mc_workspace, mc_workspace_free, mc_workspace_init,
)

import numpy as np

import mcscore.embed as E


# The callback: signature CB_D_P_N, double f(double *x, intptr_t d), where x
# points at one draw (d doubles, the draw flattened in C order).  It runs
# without the GIL on many threads at once: no Python, no shared state.
cdef double square_of_sum(double *x, intptr_t d) noexcept nogil:
    cdef intptr_t c
    cdef double s = 0.0
    for c in range(d):
        s += x[c]
    return s * s


def lowlevel_callable():
    """The same C function as a scipy.LowLevelCallable, for mcscore.score_grad."""
    from scipy import LowLevelCallable

    return LowLevelCallable(PyCapsule_New(<void *> square_of_sum,
                                          b"double (double *, intptr_t)", NULL))


def run_streams(kernel_dist, list bitgens, int64_t n, int64_t n_streams, int64_t block_size,
                int n_threads):
    """Run stream s = 0 .. len(bitgens) - 1 with bitgens[s]; returns
    (stats, shifts), one row per stream, in mcscore's layout."""
    cdef const mc_dist *dist = mc_kernel_dist_ptr(kernel_dist)
    cdef mc_func func
    func.kind = FK_CALLBACK
    func.integ = NULL
    func.fptr = <void *> square_of_sum
    func.sig = CB_D_P_N
    func.user_data = NULL
    cdef Py_ssize_t ns = len(bitgens), si
    stats_arr = np.zeros((ns, mc_stats_len(dist)))
    shifts_arr = np.zeros(ns)
    errors_arr = np.full(ns, -1, dtype=np.int64)
    cdef double[:, ::1] stats = stats_arr
    cdef double[::1] shifts = shifts_arr
    cdef int64_t[::1] errors = errors_arr
    cdef int64_t nb = (n + block_size - 1) // block_size
    cdef int64_t b, bad
    cdef Py_ssize_t m
    cdef mc_workspace *ws
    cdef bitgen_t **bgs = <bitgen_t **> malloc(sizeof(bitgen_t *) * max(ns, 1))
    if bgs == NULL:
        raise MemoryError()
    try:
        for si in range(ns):
            bgs[si] = <bitgen_t *> PyCapsule_GetPointer(bitgens[si].capsule, "BitGenerator")
        with nogil:
            for si in prange(ns, schedule="dynamic", num_threads=max(1, n_threads)):
                # one workspace (block buffers) per stream, private to its thread
                ws = <mc_workspace *> malloc(sizeof(mc_workspace))
                if ws == NULL:
                    errors[si] = -2
                elif mc_workspace_init(ws, dist, block_size) != 0:
                    errors[si] = -2
                    free(ws)
                else:
                    b = si
                    while b < nb:
                        m = <Py_ssize_t> (block_size if (b + 1) * block_size <= n
                                          else n - b * block_size)
                        bad = mc_run_block(dist, &func, bgs[si], m, &stats[si, 0],
                                           &shifts[si], b == si, ws)
                        if bad >= 0:
                            errors[si] = b * block_size + bad
                            break
                        b = b + n_streams
                    mc_workspace_free(ws)
                    free(ws)
    finally:
        free(bgs)
    if (errors_arr == -2).any():
        raise MemoryError("could not allocate block buffers")
    if (errors_arr >= 0).any():
        raise ValueError(f"f failed at draw {int(errors_arr[errors_arr >= 0].min())}")
    return stats_arr, shifts_arr


def score_grad_square_of_sum(dist, n, *, rng=None, n_streams=None, block_size=None,
                             n_threads=None, baseline=None):
    """grad E[(sum x)^2] under dist, computed by this module's own loop."""
    plan = E.plan(dist, n, rng=rng, n_streams=n_streams, block_size=block_size,
                  n_threads=n_threads)
    kd = E.kernel_dist(dist)
    stats, shifts = run_streams(kd, plan.bit_generators(), plan.n, plan.n_streams,
                                plan.block_size, plan.threads)
    return E.estimate(dist, stats, shifts, baseline=baseline, plan=plan)
