# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""Fused path kernels of mcscore.finance.

Geometric Brownian motion paths are simulated step by step and never
stored: a path's normals are drawn with numpy's C distributions into a
per-thread block buffer, the path is walked once, and the discounted payoff
times each sensitivity weight is added to the per-stream sums.  The stream /
block layout is the core's (_core.pxd, mc_drive): block b of the call belongs to
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
from libc.stdlib cimport free
from libc.stdint cimport int64_t
from numpy.random cimport bitgen_t
from numpy.random.c_distributions cimport random_standard_normal_fill

from mcscore._core cimport (
    mc_round, mc_round_init, mc_round_free, mc_round_threads, mc_drive, mc_poll,
    mc_alloc_doubles, mc_block_fn,
)

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

# Paths are simulated in chunks of about this many normals (at least one
# path): the calling thread checks for Ctrl-C between chunks.
cdef enum:
    PATH_CHUNK_VALUES = 65536

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


cdef inline void _add(const double *y, double *shift, double *acc, Py_ssize_t nq,
                      bint set_shift) noexcept nogil:
    """Add one path's nq quantities to the shifted sums acc (sum, sum of
    squares per quantity), first setting the shifts to them if set_shift."""
    cdef Py_ssize_t q
    cdef double d
    if set_shift:
        for q in range(nq):
            shift[q] = y[q]
    for q in range(nq):
        d = y[q] - shift[q]
        acc[2 * q] += d
        acc[2 * q + 1] += d * d


ctypedef struct _paths_t:
    gbm_t p
    double *zbuf             # per thread: chunk * steps normals (scratch)
    Py_ssize_t chunk         # paths per chunk
    double *stats            # row i at stats + i * (1 + 2 NQ) (IN/OUT)
    double *shifts           # row i at shifts + i * NQ (IN/OUT)


cdef int _block(void *ctx, mc_round *rd, Py_ssize_t si, int64_t b, Py_ssize_t m,
                int tid) noexcept nogil:
    """Simulate the m paths of block b of stream item si and add them to its
    statistics.  The normals are drawn chunk by chunk in the stream's order
    (the same numbers as one fill of m * steps), and the sums run over the
    paths in order, so the chunking does not change a bit."""
    cdef _paths_t *c = <_paths_t *> ctx
    cdef const gbm_t *p = &c.p
    cdef double *zbuf = c.zbuf + tid * c.chunk * p.steps
    cdef double *stats = c.stats + si * (1 + 2 * NQ)
    cdef double *shift = c.shifts + si * NQ
    cdef Py_ssize_t i, i0, cs
    cdef int q
    cdef double y[NQ]
    cdef double acc[2 * NQ]
    for q in range(2 * NQ):
        acc[q] = 0.0
    i0 = 0
    while i0 < m:
        cs = c.chunk if m - i0 > c.chunk else m - i0
        random_standard_normal_fill(rd.bitgens[si], cs * p.steps, zbuf)
        for i in range(cs):
            _path(p, &zbuf[i * p.steps], y)
            _add(y, shift, acc, NQ, b < rd.n_streams and i0 + i == 0)
        i0 += cs
        if i0 < m and mc_poll(rd, tid):
            return 1
    stats[0] += m
    for q in range(2 * NQ):
        stats[1 + q] += acc[q]
    return 0


def run_paths(int payoff, double spot, double strike, double rate, double vol,
              double maturity, double barrier, int steps, list bitgens,
              int64_t[::1] streams, int64_t n, int64_t n_streams, int64_t block_size,
              int n_threads, double[:, ::1] stats, double[:, ::1] shifts):
    """Run whole streams of GBM paths in parallel (the core's driver).

    streams[i] is the i-th stream to run, bitgens[i] its bit generator;
    its statistics go to stats[i] (1 + 2 NQ) and its shifts to shifts[i]
    (NQ).  Returns an error code: 0 ok (MemoryError and KeyboardInterrupt
    are raised).
    """
    cdef _paths_t c
    cdef gbm_t *p = &c.p
    cdef Py_ssize_t ns = streams.shape[0]
    cdef mc_round rd
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
    c.chunk = max(1, min(block_size, PATH_CHUNK_VALUES // max(1, steps)))
    c.stats = &stats[0, 0] if ns else NULL
    c.shifts = &shifts[0, 0] if ns else NULL
    c.zbuf = NULL
    mc_round_init(&rd, n, n_streams, block_size, n_threads, ns, &streams[0] if ns else NULL,
                  NULL, bitgens)
    rd.walk = 1
    try:
        c.zbuf = mc_alloc_doubles(mc_round_threads(&rd) * c.chunk * steps,
                                  "the path kernels' block buffers")
        return mc_drive(&rd, _block, &c)
    finally:
        free(c.zbuf)
        mc_round_free(&rd)


# ---------------------------------------------------------------------------
# Correlated GBM paths for a payoff given by the caller (a Python function or
# a C callback): blocks of paths are simulated into an array, the payoff is
# evaluated on the whole block, and the per-path likelihood-ratio weights and
# pathwise quantities are formed and summed here.
#
# Per path, with X_k = L Z_k (C = L L^T the correlation), xi_k = C^-1 X_k =
# L^-T Z_k, a_i = sigma_i sqrt(dt), mu_i = r - q_i - sigma_i^2/2, the weights
# (row layout of `weights`, d assets, NW = 3 d + 2 + d (d + 1) / 2):
#
#   [0, d)        delta_i   xi_1i / (S0_i a_i)
#   [d, 2d)       vega_i    sum_k (X_ki xi_ki - 1) / sigma_i - sqrt(dt) xi_ki
#   2d            rho       sqrt(dt) sum_k sum_i xi_ki / sigma_i - T
#   2d + 1        theta     -(sum_k (|Z_k|^2 - d) / (2T)
#                             + sqrt(dt)/T sum_k sum_i mu_i xi_ki / sigma_i - r)
#   2d + 2 + ...  gamma_ij  (xi_1i xi_1j - Cinv_ij - [i=j] a_i xi_1i)
#                           / (a_i a_j S0_i S0_j),   i <= j, row by row
#   NW - d + i    dividend_i  -sqrt(dt) sum_k xi_ki / sigma_i   (dV/dq_i)
#
# For a grid of expiries T_e = k_e dt on the time grid, the weights of
# expiry e are the same formulas with the sums over k <= k_e and T = T_e
# (the law of the first k_e steps is the k_e-step model with maturity T_e).
# ---------------------------------------------------------------------------

from mcscore._core cimport mc_bitgen_ptr

ctypedef double (*cb_d_p_n)(double *, Py_ssize_t) noexcept nogil
ctypedef double (*cb_d_p_n_v)(double *, Py_ssize_t, void *) noexcept nogil
ctypedef int (*cb_i_p_n_p_v)(double *, Py_ssize_t, double *, void *) noexcept nogil
ctypedef double (*cb_d_p_i)(double *, int) noexcept nogil
ctypedef double (*cb_d_p_i_v)(double *, int, void *) noexcept nogil
ctypedef int (*cb_i_p_i_p_v)(double *, int, double *, void *) noexcept nogil


def n_weights(int d):
    """Likelihood-ratio weights per path for d assets."""
    return 3 * d + 2 + d * (d + 1) // 2


cdef class PathStream:
    """One stream's bit generator and its normals buffer."""
    cdef object bit_generator
    cdef bitgen_t *bg
    cdef double[::1] z

    def __init__(self, bit_generator, Py_ssize_t size):
        self.bit_generator = bit_generator
        self.bg = mc_bitgen_ptr(bit_generator)
        self.z = np.empty(max(size, 1))


def callback_block(size_t fptr, int sig, size_t user_data, const double[:, :, ::1] paths,
                   Py_ssize_t m, double[::1] h):
    """h[p] = payoff(paths[p]) by a C callback on the flattened path (time
    major, (steps + 1) * d doubles).  Returns -1, or the first path whose
    callback reported an error (non-zero return)."""
    cdef Py_ssize_t p, L = paths.shape[1] * paths.shape[2]
    cdef double *x
    cdef double out
    cdef int rc = 0
    cdef Py_ssize_t bad = -1
    with nogil:
        for p in range(m):
            x = <double *> &paths[p, 0, 0]
            out = 0.0
            if sig == 0:
                out = (<cb_d_p_n> fptr)(x, L)
            elif sig == 1:
                out = (<cb_d_p_n_v> fptr)(x, L, <void *> user_data)
            elif sig == 2:
                rc = (<cb_i_p_n_p_v> fptr)(x, L, &out, <void *> user_data)
            elif sig == 3:
                out = (<cb_d_p_i> fptr)(x, <int> L)
            elif sig == 4:
                out = (<cb_d_p_i_v> fptr)(x, <int> L, <void *> user_data)
            else:
                rc = (<cb_i_p_i_p_v> fptr)(x, <int> L, &out, <void *> user_data)
            if rc != 0:
                bad = p
                break
            h[p] = out
    return bad


def accumulate_block(Py_ssize_t m, const double[::1] h, const double[:, ::1] weights,
                     double disc, double[::1] stats, double[::1] shift, bint set_shift):
    """Add the m paths' quantities to one stream's shifted sums (the serial
    engine of a Diffusion model).

    Quantities per path: the discounted payoff, then the NW likelihood-ratio
    estimators (discounted payoff times each weight).  stats = [count,
    sum (y - c), sum (y - c)^2, ...]; the shift c is set from the first path
    when set_shift.
    """
    cdef Py_ssize_t nw = weights.shape[1], nq = shift.shape[0], p, q
    cdef double[::1] y = np.empty(nq), acc = np.zeros(2 * nq)
    cdef double hd
    with nogil:
        for p in range(m):
            hd = disc * h[p]
            y[0] = hd
            for q in range(nw):
                y[1 + q] = hd * weights[p, q]
            _add(&y[0], &shift[0], &acc[0], nq, set_shift and p == 0)
    stats[0] += m
    for q in range(2 * nq):
        stats[1 + q] += acc[q]


# ---------------------------------------------------------------------------
# Heston paths (log-Euler for S, Euler with full truncation for v):
#
#   v+ = max(v_k, 0)
#   log S_{k+1} = log S_k + (r - q - v+/2) dt + sqrt(v+ dt) Z1
#   v_{k+1}     = v_k + kappa (theta - v+) dt + xi sqrt(v+ dt) (rho Z1 + sqrt(1 - rho^2) Z2)
#
# Only the first step's density depends on S0, and there v0 > 0 is known,
# so the likelihood-ratio weights are the Gaussian scores of that step:
# with a = sqrt(v0 dt), s = sqrt(1 - rho^2), e = Z1 - rho Z2 / s,
#   delta  e / (S0 a),    gamma  (e^2 - 1/s^2 - a e) / (a S0)^2.
# ---------------------------------------------------------------------------

ctypedef struct heston_t:
    double v0, kappa, theta, xi, rho, q


cdef void _heston_path(const heston_t *hp, Py_ssize_t steps, double maturity, double rate,
                       double s0, const double *z, double *path, double *w,
                       Py_ssize_t nw, double *J) noexcept nogil:
    """One Heston path from its 2 * steps normals (Z1, Z2 per step) into
    path (steps + 1) and its likelihood-ratio weights into w: delta, gamma,
    and, when nw >= 7, the sensitivities to v0, kappa, theta, xi, rho (see
    _paths.Heston: per-step Gaussian scores, with the state's derivatives
    carried through the truncated steps).

    J (or NULL): the pathwise tangents d log S(t_k) / d(v0, kappa, theta,
    xi, rho), (steps + 1) * 5, propagated through the scheme (a truncated
    step moves v by kappa theta dt and log S by (r - q) dt)."""
    cdef Py_ssize_t k, j
    cdef double T[5]
    cdef double Tv[5]
    cdef double sqv, dsq, cz, dv
    cdef double kappa = hp.kappa, theta = hp.theta, xi = hp.xi, rho = hp.rho
    cdef double dt = maturity / steps, sq = sqrt(maturity / steps)
    cdef double s = sqrt(1.0 - rho * rho), a = sqrt(hp.v0 * maturity / steps)
    cdef double logs = log(s0), v = hp.v0, vp, rv, z1, z2, e, u1, u2, sv
    cdef double D[5]
    cdef double W[5]
    cdef bint params = nw >= 7
    path[0] = s0
    for j in range(5):
        D[j] = 0.0
        W[j] = 0.0
    D[0] = 1.0
    if J != NULL:
        for j in range(5):
            T[j] = 0.0          # d log S
            Tv[j] = 0.0         # d v
            J[j] = 0.0
        Tv[0] = 1.0
    for k in range(steps):
        z1 = z[2 * k]
        z2 = z[2 * k + 1]
        vp = v if v > 0.0 else 0.0
        rv = sqrt(vp) * sq
        if J != NULL:
            cz = rho * z1 + s * z2
            sqv = sqrt(vp)
            for j in range(5):
                dv = Tv[j] if vp > 0.0 else 0.0            # d v+
                dsq = 0.5 * dv / sqv if vp > 0.0 else 0.0  # d sqrt(v+)
                T[j] += -0.5 * dt * dv + sq * z1 * dsq
                Tv[j] += -kappa * dt * dv + xi * sq * cz * dsq
            Tv[1] += (theta - vp) * dt
            Tv[2] += kappa * dt
            Tv[3] += rv * cz
            Tv[4] += xi * rv * (z1 - rho / s * z2)
            for j in range(5):
                J[(k + 1) * 5 + j] = T[j]
        if params and vp > 0.0:
            u1 = z1 - rho * z2 / s
            u2 = z2 / (xi * s)
            sv = (-0.5 * dt * u1 - kappa * dt * u2) / rv + (z1 * z1 + z2 * z2 - 2.0) / (2.0 * vp)
            W[0] += sv * D[0]
            W[1] += u2 / rv * (theta - vp) * dt + sv * D[1]
            W[2] += u2 / rv * kappa * dt + sv * D[2]
            W[3] += rho * u1 * u2 + xi * u2 * u2 - 1.0 / xi + sv * D[3]
            W[4] += xi * u1 * u2 + rho / (s * s) + sv * D[4]
        elif params:            # a truncated step: v moves by kappa theta dt
            D[1] += theta * dt
            D[2] += kappa * dt
        logs = logs + (rate - hp.q - 0.5 * vp) * dt + rv * z1
        v = v + kappa * (theta - vp) * dt + xi * rv * (rho * z1 + s * z2)
        path[k + 1] = exp(logs)
    e = z[0] - rho * z[1] / s
    w[0] = e / (s0 * a)
    w[1] = (e * e - 1.0 / (s * s) - a * e) / (a * a * s0 * s0)
    if params:
        for j in range(5):
            w[2 + j] = W[j]


cdef inline void _pathwise_spot(Py_ssize_t steps, Py_ssize_t nw, const double *G,
                                const double *path, const double *w, const double *ylr,
                                double disc, double s0, const double *J,
                                double *y) noexcept nogil:
    """Pathwise quantities of a one-asset model with S proportional to S0
    on every path (Heston): delta, the mixed gamma, and for the model's
    parameters the pathwise derivatives from the tangents J ((steps + 1) x
    (nw - 2), d log S(t_k) / d parameter), or, without J, the likelihood
    ratio's values ylr."""
    cdef Py_ssize_t k, q, np_ = nw - 2
    cdef double pd = 0.0, gs
    for q in range(2, nw):
        y[q] = 0.0 if J != NULL else ylr[q]
    for k in range(steps + 1):
        gs = G[k] * path[k]
        pd += gs
        if J != NULL and gs != 0.0:
            for q in range(np_):
                y[2 + q] += gs * J[k * np_ + q]
    pd = disc * pd / s0
    y[0] = pd
    y[1] = pd * (w[0] - 1.0 / s0)
    if J != NULL:
        for q in range(2, nw):
            y[q] = disc * y[q]


def normals(PathStream stream, Py_ssize_t count):
    """The stream's next `count` standard normals (a view of its buffer,
    overwritten by the next call)."""
    with nogil:
        random_standard_normal_fill(stream.bg, count, &stream.z[0])
    return np.asarray(stream.z[:count])


# ---------------------------------------------------------------------------
# The parallel path engine for payoffs of correlated GBM paths.
#
# A call runs in rounds of R consecutive blocks (R <= n_streams, so the
# blocks of a round belong to distinct streams).  In a round the core's
# driver simulates the R blocks in parallel (item i: block first[i] of stream
# slots[i], with that stream's bit generator, into paths[i] and weights[i]),
# the caller evaluates the payoff on all of the round's paths at once, and
# the driver adds each block's quantities to its stream's shifted sums in
# parallel.  A stream's blocks are simulated and summed in order whatever the
# thread count, so the result is bit-identical for any n_threads.
# ---------------------------------------------------------------------------

ctypedef struct gbmg_t:
    Py_ssize_t d, steps, ne, nw, bs, path_len, ncols, nq
    bint sparse              # S only at the expiries (the payoff reads no other date)
    bint heston              # the model: Heston (one asset, 2 normals a step), else GBM
    heston_t hp
    double maturity, rate, dt, sq
    const double *s0
    const double *lg0
    const double *drift
    const double *sigma
    const double *isig      # 1 / sigma
    const double *mdt       # drift * dt
    const double *ms        # drift / sigma
    const double *a
    const double *chol
    const double *idiag     # 1 / chol[i, i]
    const double *cinv
    const int64_t *expiries
    double *paths            # item i at paths + i * bs * path_len
    double *weights          # item i, path p, expiry e at ((i * bs + p) * ne + e) * nw
    double *tangents         # NULL, or Heston's d log S / d parameters per path
    double *scratch          # per thread: bs * steps * d normals, then 8 d doubles
    Py_ssize_t scratch_len
    # accumulation
    const double *h          # (rows of the round, ncols), rows of item i from row0[i]
    const double *grad       # NULL, or (rows, ncols, path_len)
    const int64_t *row0
    const int64_t *col_e
    const int64_t *col_k
    const double *col_T
    const double *col_disc
    double *stats            # stream s, column c: stats + (s * ncols + c) * (1 + 2 nq)
    double *shifts           # stream s, column c: shifts + (s * ncols + c) * nq


cdef inline void _gbm_weights(const gbmg_t *g, double *w, const double *xi1, const double *vs,
                              const double *ds, double rs, double tz, double tm,
                              double T) noexcept nogil:
    """The nw likelihood-ratio weights of one path at one expiry (layout in
    the comment above n_weights: delta, vega, rho, theta, gamma (i <= j),
    dividend)."""
    cdef Py_ssize_t d = g.d, i, j, k = 2 * g.d + 2
    cdef double acc
    for i in range(d):
        w[i] = xi1[i] / (g.s0[i] * g.a[i])
        w[d + i] = vs[i]
        w[g.nw - d + i] = -g.sq * ds[i]
    w[2 * d] = g.sq * rs - T
    w[2 * d + 1] = -(tz / (2.0 * T) + g.sq * tm / T - g.rate)
    for i in range(d):
        for j in range(i, d):
            acc = xi1[i] * xi1[j] - g.cinv[i * d + j]
            if i == j:
                acc = acc - g.a[i] * xi1[i]
            w[k] = acc / (g.a[i] * g.a[j] * g.s0[i] * g.s0[j])
            k += 1


cdef inline void _gbm_path(const gbmg_t *g, const double *z, double *path, double *wts,
                           double *tmp) noexcept nogil:
    """One path from its steps * d normals z: S at every date into path
    ((steps + 1) * d, time major) and its weights at each expiry into wts
    (ne * nw).  tmp: 6 d doubles of scratch."""
    cdef Py_ssize_t d = g.d, i, j, k, e = 0
    cdef double *x = tmp
    cdef double *xi = tmp + d
    cdef double *xi1 = tmp + 2 * d
    cdef double *vs = tmp + 3 * d
    cdef double *ds = tmp + 4 * d
    cdef double *logs = tmp + 5 * d
    cdef double tz = 0.0, tm = 0.0, rs = 0.0, acc, T, u
    cdef bint store
    for i in range(d):
        logs[i] = g.lg0[i]
        path[i] = g.s0[i]
        vs[i] = 0.0
        ds[i] = 0.0
    for k in range(g.steps):
        for i in range(d):
            acc = 0.0
            for j in range(i + 1):
                acc = acc + g.chol[i * d + j] * z[k * d + j]
            x[i] = acc
            tz = tz + z[k * d + i] * z[k * d + i]
        i = d - 1
        while i >= 0:
            acc = z[k * d + i]
            for j in range(i + 1, d):
                acc = acc - g.chol[j * d + i] * xi[j]
            xi[i] = acc * g.idiag[i]
            i -= 1
        store = not g.sparse or (e < g.ne and g.expiries[e] == k + 1)
        for i in range(d):
            logs[i] = logs[i] + g.mdt[i] + g.a[i] * x[i]
            if store:
                path[(k + 1) * d + i] = exp(logs[i])
            u = xi[i] * g.isig[i]
            vs[i] = vs[i] + (x[i] * xi[i] - 1.0) * g.isig[i] - g.sq * xi[i]
            rs = rs + u
            ds[i] = ds[i] + u
            tm = tm + g.ms[i] * xi[i]
            if k == 0:
                xi1[i] = xi[i]
        tz = tz - d
        while e < g.ne and g.expiries[e] == k + 1:
            T = g.maturity if k + 1 == g.steps else (k + 1) * g.dt
            _gbm_weights(g, wts + e * g.nw, xi1, vs, ds, rs, tz, tm, T)
            e += 1


cdef int _sim_block(void *ctx, mc_round *rd, Py_ssize_t item, int64_t b, Py_ssize_t m,
                    int tid) noexcept nogil:
    cdef gbmg_t *g = <gbmg_t *> ctx
    cdef double *z = g.scratch + tid * g.scratch_len
    cdef double *tmp = z + g.bs * g.steps * (2 if g.heston else g.d)
    cdef Py_ssize_t p, nz = g.steps * (2 if g.heston else g.d)
    random_standard_normal_fill(rd.bitgens[item], m * nz, z)
    for p in range(m):
        if g.heston:
            _heston_path(&g.hp, g.steps, g.maturity, g.rate, g.s0[0], z + p * nz,
                         g.paths + (item * g.bs + p) * g.path_len,
                         g.weights + (item * g.bs + p) * g.nw, g.nw,
                         NULL if g.tangents == NULL else
                         g.tangents + (item * g.bs + p) * g.path_len * 5)
        else:
            _gbm_path(g, z + p * nz, g.paths + (item * g.bs + p) * g.path_len,
                      g.weights + (item * g.bs + p) * g.ne * g.nw, tmp)
    return 0


cdef inline void _pathwise_gbm(Py_ssize_t d, Py_ssize_t nw, const double *G, const double *path,
                               const double *w, double hd, double disc, double T, double dt,
                               Py_ssize_t kfrom, Py_ssize_t kmax, double rate, const double *s0,
                               const double *drift, const double *sigma, double *pd,
                               double *y) noexcept nogil:
    """The nw pathwise quantities of one path (layout of the weights) into
    y, from dh/dS along the path G ((steps + 1) * d, time major) at the
    dates kfrom..kmax (a terminal payoff: its expiry only) and the
    likelihood-ratio weights w (for the mixed gamma).  pd: d doubles."""
    cdef Py_ssize_t i, j, k, q
    cdef double t, gs, wk, v, dq, dr = 0.0, dT = 0.0
    for i in range(d):
        pd[i] = 0.0
        v = 0.0
        dq = 0.0
        for k in range(kfrom, kmax + 1):
            if G[k * d + i] == 0.0:
                continue                 # (the path may hold no value there)
            t = k * dt
            gs = G[k * d + i] * path[k * d + i]
            wk = (log(path[k * d + i] / s0[i]) - drift[i] * t) / sigma[i]
            pd[i] += gs
            v += gs * (wk - sigma[i] * t)
            dr += gs * t
            dT += gs * (drift[i] * t + 0.5 * sigma[i] * wk)
            dq -= gs * t
        pd[i] = disc * pd[i] / s0[i]
        y[i] = pd[i]
        y[d + i] = disc * v
        y[nw - d + i] = disc * dq
    y[2 * d] = disc * dr - T * hd
    y[2 * d + 1] = -(disc * dT / T - rate * hd)
    q = 2 * d + 2
    for i in range(d):
        for j in range(i, d):
            v = pd[j] * w[i] + pd[i] * w[j]
            if i == j:
                v = v - 2.0 * pd[i] / s0[i]
            y[q] = 0.5 * v
            q += 1


cdef int _acc_block(void *ctx, mc_round *rd, Py_ssize_t item, int64_t b, Py_ssize_t m,
                    int tid) noexcept nogil:
    cdef gbmg_t *g = <gbmg_t *> ctx
    cdef Py_ssize_t s = rd.slots[item], nq = g.nq, nw = g.nw, p, c, q, r
    cdef double *y = g.scratch + tid * g.scratch_len
    cdef double *pd = y + nq
    cdef double *acc = pd + g.d
    cdef double *st
    cdef const double *w
    cdef double hd
    for c in range(g.ncols):
        for q in range(2 * nq):
            acc[q] = 0.0
        for p in range(m):
            r = g.row0[item] + p
            hd = g.col_disc[c] * g.h[r * g.ncols + c]
            w = g.weights + ((item * g.bs + p) * g.ne + g.col_e[c]) * nw
            y[0] = hd
            for q in range(nw):
                y[1 + q] = hd * w[q]
            if g.grad != NULL and g.heston:
                _pathwise_spot(g.steps, nw, g.grad + (r * g.ncols + c) * g.path_len,
                               g.paths + (item * g.bs + p) * g.path_len, w, y + 1, g.col_disc[c],
                               g.s0[0], NULL if g.tangents == NULL else
                               g.tangents + (item * g.bs + p) * g.path_len * 5, y + 1 + nw)
            elif g.grad != NULL:
                _pathwise_gbm(g.d, nw, g.grad + (r * g.ncols + c) * g.path_len,
                              g.paths + (item * g.bs + p) * g.path_len, w, hd, g.col_disc[c],
                              g.col_T[c], g.dt, g.col_k[c] if g.sparse else 0, g.col_k[c],
                              g.rate, g.s0, g.drift, g.sigma, pd, y + 1 + nw)
            _add(y, g.shifts + (s * g.ncols + c) * nq, acc, nq, b < rd.n_streams and p == 0)
        st = g.stats + (s * g.ncols + c) * (1 + 2 * nq)
        st[0] += m
        for q in range(2 * nq):
            st[1 + q] += acc[q]
    return 0


cdef class GbmEngine:
    """The parallel GBM path engine of one call (see the comment above):
    buffers for a round of R blocks, the model, the grid's columns."""
    cdef gbmg_t g
    cdef object keep            # the arrays the pointers in g point into
    cdef list bitgens
    cdef int64_t n, n_streams, block_size
    cdef int n_threads
    cdef public object paths    # (R * bs, steps + 1, d)
    cdef public object weights  # (R * bs, ne, nw)
    cdef public object stats    # (streams, ncols, 1 + 2 nq)
    cdef public object shifts   # (streams, ncols, nq)

    def __init__(self, list bitgens, int64_t n, int64_t n_streams, int64_t block_size,
                 Py_ssize_t rounds, int n_threads, int steps, double maturity, double rate,
                 s0, drift, sigma, chol, cinv, expiries, col_e, col_k, col_T, col_disc,
                 Py_ssize_t nq, bint sparse=False, heston=None, Py_ssize_t nw=-1,
                 bint tangents=False):
        cdef gbmg_t *g = &self.g
        cdef Py_ssize_t d = len(s0), ne = len(expiries), ncols = len(col_e)
        cdef double[::1] v
        cdef int64_t[::1] iv
        def own(x, dtype=np.float64):          # writable, contiguous, owned
            return np.array(x, dtype=dtype, order="C", copy=True)
        s0, sigma = own(s0), own(sigma)
        drift = own(drift)
        arrs = dict(s0=s0, lg0=np.log(s0), drift=drift, sigma=sigma, isig=1.0 / sigma,
                    mdt=drift * (maturity / steps), ms=drift / sigma,
                    a=sigma * sqrt(maturity / steps), chol=own(chol),
                    idiag=1.0 / np.diag(chol), cinv=own(cinv),
                    expiries=own(expiries, np.int64), col_e=own(col_e, np.int64),
                    col_k=own(col_k, np.int64), col_T=own(col_T), col_disc=own(col_disc))
        self.bitgens, self.n, self.n_streams, self.block_size = bitgens, n, n_streams, block_size
        self.n_threads = n_threads
        g.d, g.steps, g.ne, g.nw, g.bs = d, steps, ne, n_weights(d) if nw < 0 else nw, block_size
        g.heston = heston is not None
        if g.heston:                 # (v0, kappa, theta, xi, rho, dividend)
            g.hp.v0, g.hp.kappa, g.hp.theta, g.hp.xi, g.hp.rho, g.hp.q = heston
        g.path_len, g.ncols, g.nq, g.sparse = (steps + 1) * d, ncols, nq, sparse
        g.maturity, g.rate, g.dt, g.sq = maturity, rate, maturity / steps, sqrt(maturity / steps)
        # sparse: the dates not written stay NaN (a payoff reading them fails loudly)
        self.paths = np.full((rounds * block_size, steps + 1, d), np.nan)
        self.weights = np.empty((rounds * block_size, ne, g.nw))
        self.stats = np.zeros((len(bitgens), ncols, 1 + 2 * nq))
        self.shifts = np.zeros((len(bitgens), ncols, nq))
        g.scratch_len = max(block_size * steps * max(d, 2) + 6 * d, 3 * nq + d)
        threads = max(1, min(n_threads, rounds))
        scratch = np.empty(threads * g.scratch_len)
        arrs.update(paths=self.paths, weights=self.weights, stats=self.stats,
                    shifts=self.shifts, scratch=scratch)
        self.keep = arrs

        v = arrs["s0"];        g.s0 = &v[0]
        v = arrs["lg0"];       g.lg0 = &v[0]
        v = arrs["drift"];     g.drift = &v[0]
        v = arrs["sigma"];     g.sigma = &v[0]
        v = arrs["isig"];      g.isig = &v[0]
        v = arrs["mdt"];       g.mdt = &v[0]
        v = arrs["ms"];        g.ms = &v[0]
        v = arrs["a"];         g.a = &v[0]
        v = arrs["chol"].reshape(-1);  g.chol = &v[0]
        v = arrs["idiag"];     g.idiag = &v[0]
        v = arrs["cinv"].reshape(-1);  g.cinv = &v[0]
        iv = arrs["expiries"]; g.expiries = &iv[0]
        iv = arrs["col_e"];    g.col_e = &iv[0]
        iv = arrs["col_k"];    g.col_k = &iv[0]
        v = arrs["col_T"];     g.col_T = &v[0]
        v = arrs["col_disc"];  g.col_disc = &v[0]
        v = self.paths.reshape(-1);    g.paths = &v[0]
        v = self.weights.reshape(-1);  g.weights = &v[0]
        v = self.stats.reshape(-1);    g.stats = &v[0]
        v = self.shifts.reshape(-1);   g.shifts = &v[0]
        v = scratch;           g.scratch = &v[0]
        g.tangents = NULL
        if tangents:                 # Heston's parameter tangents, 5 per date and path
            tang = np.zeros(rounds * block_size * (steps + 1) * 5)
            arrs["tangents"] = tang
            v = tang
            g.tangents = &v[0]

    cdef int _drive(self, int64_t[::1] blocks, mc_block_fn fn) except -1:
        cdef mc_round rd
        cdef Py_ssize_t count = blocks.shape[0]
        cdef int64_t[::1] slots = np.asarray(blocks) % self.n_streams
        cdef int code
        mc_round_init(&rd, self.n, self.n_streams, self.block_size, self.n_threads, count,
                      &blocks[0], &slots[0], self.bitgens)
        try:
            code = mc_drive(&rd, fn, &self.g)
        finally:
            mc_round_free(&rd)
        return code

    def simulate(self, int64_t[::1] blocks):
        """Simulate the round's blocks (consecutive, at most n_streams) into
        paths (rows in block order) and weights."""
        self._drive(blocks, _sim_block)

    def accumulate(self, int64_t[::1] blocks, const double[:, ::1] h, grad):
        """Add the round's quantities to its streams' sums: h (rows, ncols)
        the payoffs, grad None or (rows, ncols * (steps + 1) * d)."""
        cdef const double[:, ::1] G
        cdef int64_t[::1] row0 = np.arange(blocks.shape[0], dtype=np.int64) * self.block_size
        self.g.h = &h[0, 0]
        self.g.row0 = &row0[0]
        self.g.grad = NULL
        if grad is not None:
            G = grad
            self.g.grad = &G[0, 0]
        try:
            self._drive(blocks, _acc_block)
        finally:
            self.g.h = NULL
            self.g.grad = NULL
            self.g.row0 = NULL
