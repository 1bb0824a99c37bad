# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""Fused path kernels of mcscore.finance.

Geometric Brownian motion paths are simulated step by step and never
stored: a path's normals are drawn with numpy's C distributions into a
per-thread block buffer, the path is walked once, and the discounted payoff
times each sensitivity weight is added to the per-stream sums.  The stream /
block layout is the core's (see _kernels.pyx): block b of the call belongs to
stream b % n_streams, each stream walks its blocks in order with its own bit
generator, threads take whole streams, so the result is bit-identical for
any thread count.

Per path the kernel forms NQ quantities y_q (all discounted):

    q  estimator                                   weight on the payoff h
    0  price                                       1
    1  delta, likelihood ratio                     z1 / (S0 a)
    2  vega, likelihood ratio                      sum(z_k^2 - 1)/sigma - W_T
    3  rho, likelihood ratio                       W_T / sigma - T
    4  gamma, second-order likelihood ratio        ((z1^2 - 1)/a^2 - z1/a) / S0^2
    5  delta, pathwise                             dh/dS0
    6  vega, pathwise                              dh/dsigma
    7  rho, pathwise                               dh/dr - T h
    8  gamma, mixed (likelihood ratio applied      1{h' > 0} dh/dS0 (z1/a - 1)/S0
       to the pathwise delta)

with a = sigma sqrt(dt), W_T = sqrt(dt) sum z_k.  Rows 5-8 are zero for
payoffs without a pathwise derivative (digitals, the barrier option).

Per-stream statistics (one row of 1 + 2 NQ doubles):
    [count, then for each q: sum (y_q - c_q), sum (y_q - c_q)^2]
with the shift c_q = y_q at the stream's first path (shifts[s, q]).
"""
import numpy as np
from libc.math cimport log, exp, sqrt
from libc.stdlib cimport malloc, free, calloc
from libc.stdint cimport int64_t
from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_IsValid

cdef extern from "Python.h":
    # No exception clause on purpose (see _kernels.pyx): inside a prange the
    # exception would only surface after the running streams finish.  A flag
    # is set instead and the pending exception re-raised after the region.
    int _fin_check_signals "PyErr_CheckSignals" ()
from cython.parallel cimport prange, parallel
from numpy.random cimport bitgen_t
from numpy.random.c_distributions cimport random_standard_normal_fill

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int fin_thread_num(void) { return omp_get_thread_num(); }
    #else
    static int fin_thread_num(void) { return 0; }
    #endif
    /* A flag written by other threads: always go through memory. */
    static inline long long fin_flag_get(long long *p) { return *(volatile long long *)p; }
    static inline void fin_flag_set(long long *p, long long v) { *(volatile long long *)p = v; }
    """
    int fin_thread_num() noexcept nogil
    long long fin_flag_get(long long *p) noexcept nogil
    void fin_flag_set(long long *p, long long v) noexcept nogil

# payoff codes (mcscore.finance.PAYOFFS, same order)
cpdef enum:
    PO_CALL = 0
    PO_PUT = 1
    PO_DIGITAL_CALL = 2
    PO_DIGITAL_PUT = 3
    PO_ASIAN_CALL = 4
    PO_GEOMETRIC_ASIAN_CALL = 5
    PO_UP_AND_OUT_CALL = 6

cdef enum:
    NQ = 9
N_QUANTITIES = 9

cdef enum:
    ERR_NONE = 0
    ERR_INTERRUPT = 3
    ERR_MEMORY = 4

ctypedef struct gbm_t:
    int payoff
    int steps
    double s0, strike, rate, sigma, maturity, barrier
    double dt, sqdt, drift, a, disc, log_s0


cdef inline void _path(const gbm_t *p, const double *z, double *y) noexcept nogil:
    """The NQ discounted quantities of one path whose normals are z[0..steps)."""
    cdef int k, m = p.steps
    cdef double logs = p.log_s0, w = 0.0, sz2 = 0.0, zk, s, t
    cdef double sum_s = 0.0, sum_sw = 0.0, sum_st = 0.0, sum_log = 0.0, sum_wt = 0.0
    cdef double h = 0.0, d_s0 = 0.0, d_sig = 0.0, d_r = 0.0, ind = 0.0, u = 0.0
    cdef double z1 = z[0], st
    cdef bint alive = True, pathwise = True
    cdef int po = p.payoff
    for k in range(m):
        zk = z[k]
        w += p.sqdt * zk
        sz2 += zk * zk
        logs += p.drift + p.a * zk
        if po == PO_ASIAN_CALL:
            t = (k + 1) * p.dt
            s = exp(logs)
            sum_s += s
            sum_sw += s * (w - p.sigma * t)
            sum_st += s * t
        elif po == PO_GEOMETRIC_ASIAN_CALL:
            t = (k + 1) * p.dt
            sum_log += logs
            sum_wt += w - p.sigma * t
        elif po == PO_UP_AND_OUT_CALL:
            if exp(logs) >= p.barrier:
                alive = False
    st = exp(logs)
    if po == PO_CALL or po == PO_UP_AND_OUT_CALL:
        if st > p.strike:
            ind = 1.0
            h = st - p.strike
            u = st
        if po == PO_UP_AND_OUT_CALL:
            pathwise = False
            if not alive:
                h = 0.0
        d_sig = ind * st * (w - p.sigma * p.maturity)
        d_r = ind * st * p.maturity
    elif po == PO_PUT:
        if st < p.strike:
            ind = -1.0
            h = p.strike - st
            u = -st
        d_sig = ind * st * (w - p.sigma * p.maturity)
        d_r = ind * st * p.maturity
    elif po == PO_DIGITAL_CALL:
        h = 1.0 if st > p.strike else 0.0
        pathwise = False
    elif po == PO_DIGITAL_PUT:
        h = 1.0 if st < p.strike else 0.0
        pathwise = False
    elif po == PO_ASIAN_CALL:
        s = sum_s / m
        if s > p.strike:
            h = s - p.strike
            u = s
            d_sig = sum_sw / m
            d_r = sum_st / m
    else:  # PO_GEOMETRIC_ASIAN_CALL
        s = exp(sum_log / m)
        if s > p.strike:
            h = s - p.strike
            u = s
            d_sig = s * sum_wt / m
            d_r = s * p.dt * (m + 1) * 0.5
    h *= p.disc
    y[0] = h
    y[1] = h * z1 / (p.s0 * p.a)
    y[2] = h * ((sz2 - m) / p.sigma - w)
    y[3] = h * (w / p.sigma - p.maturity)
    y[4] = h * ((z1 * z1 - 1.0) / (p.a * p.a) - z1 / p.a) / (p.s0 * p.s0)
    if pathwise:
        # u = dh/dS0 * S0 (undiscounted): the payoff's slope times the
        # underlying quantity, which is homogeneous of degree 1 in S0.
        y[5] = p.disc * u / p.s0
        y[6] = p.disc * d_sig
        y[7] = p.disc * d_r - p.maturity * h
        y[8] = p.disc * u * (z1 / p.a - 1.0) / (p.s0 * p.s0)
    else:
        y[5] = 0.0
        y[6] = 0.0
        y[7] = 0.0
        y[8] = 0.0


cdef void _block(const gbm_t *p, bitgen_t *bg, Py_ssize_t m, double *zbuf,
                 double *stats, double *shift, bint first) noexcept nogil:
    """Simulate m paths (normals into zbuf, IN/OUT scratch) and add them to
    one stream's statistics (stats: IN/OUT, 1 + 2 NQ; shift: IN/OUT, NQ)."""
    cdef Py_ssize_t i
    cdef int q
    cdef double y[NQ]
    cdef double acc[2 * NQ]
    cdef double d
    random_standard_normal_fill(bg, m * p.steps, zbuf)
    for q in range(2 * NQ):
        acc[q] = 0.0
    for i in range(m):
        _path(p, &zbuf[i * p.steps], y)
        if first and i == 0:
            for q in range(NQ):
                shift[q] = y[q]
        for q in range(NQ):
            d = y[q] - shift[q]
            acc[2 * q] += d
            acc[2 * q + 1] += d * d
    stats[0] += m
    for q in range(2 * NQ):
        stats[1 + q] += acc[q]


cdef bitgen_t *_bitgen(object bit_generator) except NULL:
    capsule = bit_generator.capsule
    if not PyCapsule_IsValid(capsule, "BitGenerator"):
        raise TypeError("not a numpy BitGenerator")
    return <bitgen_t *> PyCapsule_GetPointer(capsule, "BitGenerator")


cdef int _reraise() except -1:
    """Propagate the exception a signal handler left pending."""
    return -1


def run_paths(int payoff, double spot, double strike, double rate, double vol,
              double maturity, double barrier, int steps, list bitgens,
              int64_t[::1] streams, int64_t n, int64_t n_streams, int64_t block_size,
              int n_threads, double[:, ::1] stats, double[:, ::1] shifts):
    """Run whole streams of GBM paths in parallel.

    streams[i] is the i-th stream to run, bitgens[i] its bit generator;
    its statistics go to stats[i] (1 + 2 NQ) and its shifts to shifts[i]
    (NQ).  Returns an error code: 0 ok, 4 out of memory (KeyboardInterrupt
    is re-raised).
    """
    cdef gbm_t p
    cdef Py_ssize_t ns = streams.shape[0]
    cdef Py_ssize_t si
    cdef int64_t nb = (n + block_size - 1) // block_size
    cdef int64_t b, check_every
    cdef Py_ssize_t m
    cdef double *zbuf
    cdef bitgen_t **bgs = <bitgen_t **> malloc(sizeof(bitgen_t *) * max(ns, 1))
    cdef long long *err = <long long *> calloc(2, sizeof(long long))
    if bgs == NULL or err == NULL:
        free(bgs)
        free(err)
        raise MemoryError()
    p.payoff = payoff
    p.steps = steps
    p.s0 = spot
    p.strike = strike
    p.rate = rate
    p.sigma = vol
    p.maturity = maturity
    p.barrier = barrier
    p.dt = maturity / steps
    p.sqdt = sqrt(p.dt)
    p.drift = (rate - 0.5 * vol * vol) * p.dt
    p.a = vol * p.sqdt
    p.disc = exp(-rate * maturity)
    p.log_s0 = log(spot)
    try:
        for si in range(ns):
            bgs[si] = _bitgen(bitgens[si])
        n_threads = max(1, min(n_threads, max(ns, 1)))
        check_every = max(1, (1 << 16) // max(1, block_size * steps))
        with nogil, parallel(num_threads=n_threads):
            zbuf = <double *> malloc(sizeof(double) * block_size * steps)
            if zbuf == NULL:
                fin_flag_set(err, ERR_MEMORY)
            for si in prange(ns, schedule='dynamic'):
                b = streams[si]
                while b < nb and fin_flag_get(err) == ERR_NONE:
                    m = <Py_ssize_t> (block_size if (b + 1) * block_size <= n
                                      else n - b * block_size)
                    _block(&p, bgs[si], m, zbuf, &stats[si, 0], &shifts[si, 0],
                           b == streams[si])
                    b = b + n_streams
                    if fin_thread_num() == 0:
                        err[1] += 1
                        if err[1] % check_every == 0:
                            with gil:
                                if _fin_check_signals() != 0:
                                    fin_flag_set(err, ERR_INTERRUPT)
            free(zbuf)
        if err[0] == ERR_INTERRUPT:
            _reraise()
        return int(err[0])
    finally:
        free(bgs)
        free(err)
