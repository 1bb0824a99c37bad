"""Randomised quasi-Monte Carlo Greeks (``greeks(..., sampler="sobol")``)
for the built-in payoffs of one asset under Black-Scholes.

Each path takes ``steps`` coordinates of a scrambled Sobol' point, turned
into standard normals by the inverse normal cdf, and the Brownian path is
built from them by the Brownian bridge (Glasserman 2003, section 3.1): the
first coordinate gives W(T), the next ones the midpoints of ever finer
intervals (breadth first), so that the first Sobol' dimensions, the
best-equidistributed ones, carry most of the variance of the payoff.  The
increments Z_k = (W(t_k) - W(t_{k-1})) / sqrt(dt) are iid standard normal
for each point, so the likelihood-ratio weights (functions of Z) and the
pathwise derivatives (functions of W) are those of the Monte Carlo kernel
(``mcscore._finance``), evaluated here on whole blocks of paths with NumPy.

The estimate of each Greek is the mean over ``n_randomizations``
independent scramblings, its standard error their spread (see
:mod:`mcscore._qmc`).

``preintegrate=True`` (built-in payoffs): each path's quantities are
integrated exactly over the first bridge coordinate (W(T)) given the others
(:func:`preintegrated_quantities`; "preintegration", a conditional Monte Carlo:
Griebel, Kuo and Sloan, Math. Comp. 2013 and 2017), which
leaves smooth integrands for the Sobol' points.  Its points are made here
(:func:`scrambled_directions`, :func:`sobol_block`), several randomisations
per block, which removes most of the fixed cost of a small run.  The
geometric-average control variate (Kemna and Vorst) was measured too and
does not pay under Sobol': the randomisations' errors of the arithmetic and
geometric Asians are nearly uncorrelated (they come from the kinks, at
different places), so the control adds variance.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from scipy import special

from .. import _qmc as Q
from .. import _validation as V
from ._paths import _check_array
from ._common import GREEKS, METHODS, PAYOFFS, Greeks, _PATHWISE_OK, _ROWS, _check_inputs


def bridge_order(steps: Any) -> Any:
    """The Brownian bridge of dates 1..steps (date 0 is W = 0): a list of
    (k, left, right) in Sobol' dimension order, W(t_k) drawn given W at the
    dates left and right (right None: k = steps, drawn from W(0) = 0)."""
    out = [(steps, 0, None)]
    queue = [(0, steps)]
    while queue:
        nxt = []
        for lo, hi in queue:
            if hi - lo < 2:
                continue
            mid = (lo + hi) // 2
            out.append((mid, lo, hi))
            nxt += [(lo, mid), (mid, hi)]
        queue = nxt
    return out


def bridge(z: Any, dt: Any, order: Any) -> Any:
    """Brownian paths W (m, steps + 1) at the dates k dt from standard
    normals z (m, steps) by the bridge `order`."""
    m, steps = z.shape
    W = np.zeros((m, steps + 1))
    for j, (k, lo, hi) in enumerate(order):
        if hi is None:
            W[:, k] = math.sqrt(k * dt) * z[:, j]
        else:
            a, b = k - lo, hi - k
            W[:, k] = (b * W[:, lo] + a * W[:, hi]) / (a + b) \
                + math.sqrt(dt * a * b / (a + b)) * z[:, j]
    return W


def path_quantities(payoff: Any, z: Any, s0: Any, strike: Any, rate: Any, sigma: Any, T: Any,
                    barrier: Any, order: Any) -> Any:
    """The nine discounted quantities of the fused kernel (price, the four
    likelihood-ratio Greeks, the four pathwise ones), per path: (m, 9)."""
    m, K = z.shape
    dt = T / K
    sqdt, a = math.sqrt(dt), sigma * math.sqrt(dt)
    disc = math.exp(-rate * T)
    W = bridge(z, dt, order)
    Z = np.diff(W, axis=1) / sqdt
    t = dt * np.arange(1, K + 1)
    logs = math.log(s0) + (rate - 0.5 * sigma * sigma) * t + sigma * W[:, 1:]
    w, sz2, z1 = W[:, K], (Z * Z).sum(1), Z[:, 0]
    st = np.exp(logs[:, -1])
    zero = np.zeros(m)
    pathwise = payoff in _PATHWISE_OK
    if payoff in ("call", "up_and_out_call", "put"):
        sign = -1.0 if payoff == "put" else 1.0
        ind = (sign * (st - strike) > 0).astype(float)
        h = ind * sign * (st - strike)
        if payoff == "up_and_out_call":
            h = h * (np.exp(logs) < barrier).all(1)
        u = sign * ind * st
        d_sig = u * (w - sigma * T)
        d_r = u * T
    elif payoff in ("digital_call", "digital_put"):
        h = ((st > strike) if payoff == "digital_call" else (st < strike)).astype(float)
        u = d_sig = d_r = zero
    elif payoff == "asian_call":
        S = np.exp(logs)
        avg = S.mean(1)
        ind = (avg > strike).astype(float)
        h, u = ind * (avg - strike), ind * avg
        d_sig = ind * (S * (W[:, 1:] - sigma * t)).mean(1)
        d_r = ind * (S * t).mean(1)
    else:  # geometric_asian_call
        g = np.exp(logs.mean(1))
        ind = (g > strike).astype(float)
        h, u = ind * (g - strike), ind * g
        d_sig = u * (W[:, 1:] - sigma * t).mean(1)
        d_r = u * dt * (K + 1) * 0.5
    h = disc * h
    y = np.empty((m, 9))
    y[:, 0] = h
    y[:, 1] = h * z1 / (s0 * a)
    y[:, 2] = h * ((sz2 - K) / sigma - w)
    y[:, 3] = h * (w / sigma - T)
    y[:, 4] = h * ((z1 * z1 - 1.0) / (a * a) - z1 / a) / (s0 * s0)
    if pathwise:
        y[:, 5] = disc * u / s0
        y[:, 6] = disc * d_sig
        y[:, 7] = disc * d_r - T * h
        y[:, 8] = disc * u * (z1 / a - 1.0) / (s0 * s0)
    else:
        y[:, 5:] = 0.0
    return y


def _normal_moments(lo: Any, hi: Any, b: Any) -> Any:
    """(I0, I1, I2): int_lo^hi z^j e^{b z - b^2/2} phi(z) dz, j = 0, 1, 2, i.e.
    the moments of N(b, 1) over [lo, hi] (bounds may be infinite)."""
    c, d = lo - b, hi - b
    with np.errstate(invalid="ignore"):
        # the difference of the tails on the side where it does not cancel
        p = np.where(c > 0, special.ndtr(-c) - special.ndtr(-d), special.ndtr(d) - special.ndtr(c))
        pc, pd = np.exp(-0.5 * c * c) / _SQRT2PI, np.exp(-0.5 * d * d) / _SQRT2PI
        cpc = np.where(np.isfinite(c), c * pc, 0.0)
        dpd = np.where(np.isfinite(d), d * pd, 0.0)
    y1 = pc - pd                      # int y phi(y) over [c, d]
    y2 = cpc - dpd + p                # int y^2 phi(y)
    return p, y1 + b * p, y2 + 2 * b * y1 + b * b * p


_SQRT2PI = math.sqrt(2 * math.pi)


def _asian_root(logc: Any, b: Any, log_k: Any) -> Any:
    """The z where the average of exp(logc_k + b_k z) equals exp(log_k)
    (m,): Newton's method on the convex, increasing log-sum-exp, started at
    the geometric average's root (to the right of it, the arithmetic average
    being the larger), so the iterates decrease monotonically to it."""
    z = (log_k - logc.mean(1)) / b.mean()
    for _ in range(100):
        x = logc + b * z[:, None]
        top = x.max(1, keepdims=True)
        e = np.exp(x - top)
        s = e.sum(1)
        f = top[:, 0] + np.log(s / b.size) - log_k
        step = f / ((e * b).sum(1) / s)
        z = z - step
        if not np.abs(step).max(initial=0.0) > 1e-13 * (1.0 + np.abs(z).max(initial=0.0)):
            break
    return z


def preintegrated_quantities(payoff: Any, z: Any, s0: Any, strike: Any, rate: Any, sigma: Any,
                             T: Any, barrier: Any, order: Any) -> Any:
    """The nine quantities of path_quantities, each integrated exactly over
    W(T) given the other Brownian bridge coordinates (preintegration).

    With the bridge, W(t_k) = (t_k / sqrt(T)) z_1 + B_k, B the bridge pinned
    at W(T) = 0 built from the other coordinates; so S_k = c_k e^{b_k z_1}
    (b_k = sigma t_k / sqrt(T)), the payoff is non-zero on an interval of
    z_1 (the strike's and the barrier's roots, the arithmetic average's by
    Newton's method), and every likelihood-ratio weight is a polynomial of
    degree <= 2 in z_1 (Z_k = z_1 / sqrt(steps) + e_k, sum Z_k^2 =
    z_1^2 + sum e_k^2), every pathwise derivative a sum of S_k times one of
    degree <= 1.  The integrals against the normal density are moments of
    shifted normals over the interval: closed forms.  The quantities become
    smooth functions of the other coordinates (no kink, no jump), which is
    what scrambled Sobol' points integrate fast.  z[:, 0] is not used."""
    m, K = z.shape
    dt = T / K
    sqT, sqdt, a = math.sqrt(T), math.sqrt(dt), sigma * math.sqrt(dt)
    disc = math.exp(-rate * T)
    z = z.copy()
    z[:, 0] = 0.0
    B = bridge(z, dt, order)                           # (m, K + 1), B[:, K] = 0
    e = np.diff(B, axis=1) / sqdt                      # Z_k = gam z_1 + e_k
    B = B[:, 1:]
    gam = 1.0 / math.sqrt(K)
    e1, e2 = e[:, 0], (e * e).sum(1)
    t = dt * np.arange(1, K + 1)
    beta = t / sqT                                     # dW(t_k) / dz_1
    b = sigma * beta
    logc = math.log(s0) + (rate - 0.5 * sigma * sigma) * t + sigma * B
    log_k = math.log(strike)
    inf = np.full(m, np.inf)
    # exponential terms s_j exp(la_j + b_j z) of the payoff (pathwise: of u),
    # with the pathwise vega's (nu_j + beta_j z) and rho's tau_j; the
    # payoff's constant term const
    if payoff in ("call", "put", "up_and_out_call", "digital_call", "digital_put"):
        zs = (log_k - logc[:, -1]) / b[-1]
        la, bj, sgn = logc[:, -1:], b[-1:], np.array([-1.0 if payoff == "put" else 1.0])
        nu, bet, tau = np.full((m, 1), -sigma * T), beta[-1:], t[-1:]
        lo, hi = (-inf, zs) if payoff.endswith("put") else (zs, inf)
        if payoff == "up_and_out_call":
            hi = np.maximum(((math.log(barrier) - logc) / b).min(1), zs)
        if payoff.startswith("digital"):  # no exponential term: the payoff is 1
            la, bj, sgn, nu, bet, tau = la[:, :0], bj[:0], sgn[:0], nu[:, :0], bet[:0], tau[:0]
            const = 1.0
        else:
            const = -sgn[0] * strike
    elif payoff == "asian_call":
        la, bj, sgn = logc - math.log(K), b, np.ones(K)
        nu, bet, tau = B - sigma * t, beta, t
        lo, hi, const = _asian_root(logc, b, log_k), inf, -strike
    else:  # geometric_asian_call
        la, bj, sgn = logc.mean(1, keepdims=True), b.mean(keepdims=True), np.ones(1)
        nu = B.mean(1, keepdims=True) - sigma * t.mean()
        bet, tau = beta.mean(keepdims=True), t.mean(keepdims=True)
        lo, hi, const = (log_k - la[:, 0]) / bj[0], inf, -strike
    lo2, hi2 = lo[:, None], hi[:, None]
    M0, M1, M2 = _normal_moments(lo2, hi2, bj)        # (m, J) each
    with np.errstate(over="ignore", invalid="ignore"):
        E = sgn * np.exp(la + 0.5 * bj * bj)           # (m, J)
        N0, N1, N2 = _normal_moments(lo, hi, 0.0)
        U0, U1 = (E * M0).sum(1), (E * M1).sum(1)
        H0, H1, H2 = U0 + const * N0, U1 + const * N1, (E * M2).sum(1) + const * N2
        y = np.empty((m, 9))
        y[:, 0] = H0
        y[:, 1] = (e1 * H0 + gam * H1) / (s0 * a)
        y[:, 2] = (e2 - K) / sigma * H0 - sqT * H1 + H2 / sigma
        y[:, 3] = sqT / sigma * H1 - T * H0
        y[:, 4] = (((e1 * e1 - 1) / (a * a) - e1 / a) * H0 + (2 * gam * e1 / (a * a) - gam / a) * H1
                   + gam * gam / (a * a) * H2) / (s0 * s0)
        if payoff in _PATHWISE_OK:
            y[:, 5] = U0 / s0
            y[:, 6] = (E * (nu * M0 + bet * M1)).sum(1)
            y[:, 7] = (E * tau * M0).sum(1) - T * H0
            y[:, 8] = ((e1 / a - 1.0) * U0 + gam / a * U1) / (s0 * s0)
        else:
            y[:, 5:] = 0.0
        y *= disc
    return y


class _GreeksWork:
    """One randomisation: the sums of the nine quantities over its paths."""

    def __init__(self, inputs: Any, m: Any, seeds: Any) -> None:
        self.inputs, self.m, self.seeds = inputs, m, seeds

    def __call__(self, r: Any) -> Any:
        payoff, s0, strike, rate, sigma, T, barrier, steps = self.inputs
        order = bridge_order(steps)
        acc = np.zeros(9)
        for _, u in Q.points(steps, self.m, self.seeds[r], 4 * steps + 12):
            y = path_quantities(payoff, special.ndtri(u), s0, strike, rate, sigma, T, barrier,
                                order)
            acc += np.ones(len(y)) @ y
        return acc


# ---------------------------------------------------------------------------
# the points of preintegrate=True: scrambled Sobol' points made here, for
# many randomisations at once
# ---------------------------------------------------------------------------

_SOBOL_BITS = 52
_U64 = np.uint64


@functools.lru_cache(maxsize=64)
def _direction_numbers(d: Any) -> Any:
    """scipy's (Joe-Kuo) Sobol' direction numbers of d dimensions, 52 bits,
    (d, 52) integers, v_j's leading bit at 2^(51 - j)."""
    from scipy.stats import qmc

    sampler = qmc.Sobol(d, scramble=False, bits=_SOBOL_BITS)
    # scipy keeps the direction numbers in a private attribute (its public
    # fast_forward does not take 52-bit samplers); checked against scipy's own
    # first 2^8 points, so that a change in scipy is an error, not other points
    sv = getattr(sampler, "_sv", None)
    sv = None if sv is None else np.array(sv, dtype=_U64)
    if sv is None or sv.shape != (d, _SOBOL_BITS) or not np.array_equal(
            _gray_points(sv[:, :8], 256), np.asarray(sampler.random(256) * 2.0**_SOBOL_BITS,
                                                     dtype=_U64)):
        import scipy
        raise RuntimeError(
            f"preintegrate=True: cannot read the Sobol' direction numbers of scipy "
            f"{scipy.__version__} (scipy.stats.qmc.Sobol changed); use preintegrate=False")
    sv.flags.writeable = False
    return sv


def _gray_points(v: Any, m: Any) -> Any:
    """The first m unscrambled points (m, d) of direction numbers v (d, J),
    2^J >= m, in scipy's Gray-code order."""
    out = np.zeros((m, v.shape[0]), dtype=_U64)
    for i in range(1, m):
        low = (~(i - 1) & i).bit_length() - 1  # the lowest zero bit of i - 1
        out[i] = out[i - 1] ^ v[:, low]
    return out


def _parity(x: Any) -> Any:
    return np.bitwise_count(x).astype(_U64) & _U64(1)


def scrambled_directions(d: Any, m: Any, gens: Any) -> Any:
    """The first ceil(log2 m) direction numbers of each of d dimensions under
    a random linear matrix scrambling (a lower-triangular bit matrix with a
    unit diagonal, most significant bit first: each bit of a coordinate is
    flipped by a random parity of the bits above it), and a random digital
    shift, one scrambling per Generator of gens (one draw from each):
    ((G, d, J), (G, d)) integers."""
    B = _SOBOL_BITS
    J = max(1, (m - 1).bit_length())
    V = _direction_numbers(d)[:, :J]
    draws = np.stack([g.integers(0, 1 << B, size=(d, B + 1), dtype=_U64) for g in gens])
    words, shift = draws[:, :, :B], draws[:, :, B]              # row of bit position p
    p = np.arange(B, dtype=_U64)
    bit = _U64(1) << p
    above = _U64((1 << B) - 1) & ~((bit << _U64(1)) - _U64(1))  # positions > p
    rows = (words & above) | bit                                # (G, d, B)
    out = _parity(rows[..., None] & V[:, None, :]) << p[:, None]   # (G, d, B, J)
    return np.bitwise_or.reduce(out, axis=2), shift


def sobol_block(dirs: Any, shift: Any, start: Any, count: Any) -> Any:
    """Points start..start + count - 1 (Gray-code order, as scipy's) of the
    G scrambled sequences of scrambled_directions: (G * count, d), sequence
    by sequence, in (0, 1), each on the grid (k + 1/2) 2^-52."""
    i = np.arange(start, start + count, dtype=_U64)
    g = i ^ (i >> _U64(1))
    x = np.repeat(shift[:, None, :], count, axis=1)             # (G, count, d)
    for j in range(dirs.shape[2]):
        x ^= ((g >> _U64(j)) & _U64(1))[None, :, None] * dirs[:, None, :, j]
    return (x.reshape(-1, x.shape[2]).astype(np.float64) + 0.5) * 2.0 ** -_SOBOL_BITS


# points of one block of the preintegrated work (all its randomisations)
_PREINT_POINTS = 1 << 13


class _PreintegratedWork:
    """preintegrate=True: a fixed group of randomisations (``group`` of
    them; the groups depend on n and n_randomizations only), their points
    from scrambled_directions / sobol_block, the quantities of all their
    paths computed together, chunk by chunk, and summed per randomisation
    (each randomisation's sums do not depend on the group it is in)."""

    def __init__(self, inputs: Any, m: Any, seeds: Any, group: Any) -> None:
        self.inputs, self.m, self.seeds, self.group = inputs, m, seeds, group

    def __call__(self, gi: Any) -> Any:
        payoff, s0, strike, rate, sigma, T, barrier, steps = self.inputs
        order = bridge_order(steps)
        rs = range(gi * self.group, min(len(self.seeds), (gi + 1) * self.group))
        dirs, shift = scrambled_directions(
            steps, self.m, [np.random.default_rng(self.seeds[r]) for r in rs])
        acc = np.zeros((self.group, 9))
        chunk = min(self.m, max(1, _PREINT_POINTS // self.group))
        stop = getattr(Q._RUN, "stop", None)
        for start in range(0, self.m, chunk):
            if stop is not None and stop.is_set():
                raise Q._Stopped
            c = min(chunk, self.m - start)
            u = sobol_block(dirs, shift, start, c)
            y = preintegrated_quantities(payoff, special.ndtri(u), s0, strike, rate, sigma, T,
                                         barrier, order)
            # each randomisation's c rows summed in order (np.add.reduceat),
            # whatever the group
            acc[:len(rs)] += np.add.reduceat(y, np.arange(0, len(rs) * c, c), axis=0)
        return acc


def _run_preintegrated(inputs: Any, R: Any, m: Any, sd: Any, n_threads: Any, client: Any) -> Any:
    """(R, 9) sums of the preintegrated quantities per randomisation."""
    group = max(1, min(R, _PREINT_POINTS // m))
    n_groups = -(-R // group)
    sums = Q.run(_PreintegratedWork(inputs, m, sd, group), n_groups, n_threads, client)
    return sums.reshape(n_groups * group, 9)[:R]


_ESTIMATORS = {
    "lr": ("plain", "likelihood ratio", "likelihood ratio", "likelihood ratio",
           "second-order likelihood ratio"),
    "pathwise": ("plain", "pathwise", "pathwise", "pathwise",
                 "mixed (LR of the pathwise delta)"),
}


def greeks(payoff: Any, *, spot: Any, strike: Any, rate: Any, vol: Any, maturity: Any, n: Any,
           steps: Any, barrier: Any, rng: Any, method: Any, n_threads: Any, client: Any,
           n_randomizations: Any, path: Any, preintegrate: Any = False, **path_args: Any) -> Any:
    """greeks(..., sampler="sobol"): a built-in payoff of one asset, or (path
    True) a payoff of paths."""
    preintegrate = V.flag("preintegrate", preintegrate)
    if preintegrate and path:
        raise ValueError("preintegrate=True applies to the built-in payoff names of one asset "
                         "(without dividend, correlation, payoff_grad or model); a payoff of "
                         "paths has no known interval of W(T) to integrate over")
    if path:
        if client is not None:
            raise ValueError("client (Dask) is not supported for a payoff function; run "
                             "locally")
        return greeks_paths(payoff, spot=spot, strike=strike, rate=rate, vol=vol,
                            maturity=maturity, n=n, steps=steps, barrier=barrier, rng=rng,
                            method=method, n_randomizations=n_randomizations, **path_args)
    spot, strike, rate, vol, maturity, steps, barrier = _check_inputs(
        payoff, spot, strike, rate, vol, maturity, steps, barrier)
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be 'lr' or 'pathwise', got {method!r}")
    if method == "pathwise" and payoff not in _PATHWISE_OK:
        raise ValueError(f"method='pathwise' does not apply to the discontinuous payoff "
                         f"{payoff!r}; use method='lr'")
    R, m = Q.split(n, n_randomizations)
    root, sd = Q.seeds(rng, R)
    inputs = (payoff, spot, strike, rate, vol, maturity, barrier, steps)
    if preintegrate:
        per = _run_preintegrated(inputs, R, m, sd, n_threads, client) / m
    else:
        per = Q.run(_GreeksWork(inputs, m, sd), R, n_threads, client) / m
    with np.errstate(over="ignore", invalid="ignore"):
        mean = per.mean(0)
        se = per.std(0, ddof=1) / math.sqrt(R)
    if not (np.isfinite(mean).all() and np.isfinite(se).all()):
        raise FloatingPointError(f"the simulated prices overflowed (spot={spot}, vol={vol}, "
                                 f"maturity={maturity}): the estimates would be inf or NaN")
    alternatives = {mth: {g: (float(mean[r]), float(se[r])) for g, r in zip(GREEKS, _ROWS[mth])}
                    for mth in METHODS if mth == "lr" or payoff in _PATHWISE_OK}
    rows = _ROWS[method]
    info = {"entropy": root.entropy, "spawn_key": tuple(root.spawn_key), "sampler": "sobol",
            "n_randomizations": R, "points_per_randomization": m, "payoff": payoff,
            "spot": spot, "strike": strike, "rate": rate, "vol": vol, "maturity": maturity,
            "steps": steps, "barrier": None if math.isinf(barrier) else barrier,
            "construction": "brownian bridge", "preintegrate": preintegrate}
    out = Greeks({g: mean[r] for g, r in zip(GREEKS, rows)},
                 {g: float(se[r]) for g, r in zip(GREEKS, rows)},
                 {g: float(se[r] ** 2 * R * m) for g, r in zip(GREEKS, rows)}, method,
                 dict(zip(GREEKS, _ESTIMATORS[method])), alternatives, R * m, info)
    out.sampler = "sobol"
    out.n_randomizations = R
    return out


# ---------------------------------------------------------------------------
# a payoff of paths: several correlated geometric Brownian motions
# ---------------------------------------------------------------------------

class _PathWork:
    """One randomisation of the path engine: sums of the per-path
    quantities (price; delta, vega, rho, theta, gamma by the likelihood
    ratio; the same by pathwise differentiation when the payoff has a
    gradient) over its paths, each asset's Brownian motion built by the
    bridge (bridge level by level, all assets at each level)."""

    def __init__(self, fn: Any, grad: Any, model: Any, m: Any, seeds: Any) -> None:
        self.fn, self.grad, self.model, self.m, self.seeds = fn, grad, model, m, seeds

    def __call__(self, r: Any) -> Any:
        s0, sig, q, rate, T, steps, corr = self.model
        d = s0.size
        dt = T / steps
        order = bridge_order(steps)
        L = np.linalg.cholesky(corr)
        Linv = np.linalg.inv(L)
        cinv = Linv.T @ Linv
        mu = rate - q - 0.5 * sig * sig
        a = sig * math.sqrt(dt)
        t = dt * np.arange(steps + 1)
        disc = math.exp(-rate * T)
        iu = np.triu_indices(d)
        acc = None
        for start, u in Q.points(steps * d, self.m, self.seeds[r], 6 * steps * d + d * d):
            mm = len(u)
            z = special.ndtri(u).reshape(mm, steps, d)
            B = np.stack([bridge(z[:, :, i], dt, order) for i in range(d)], axis=-1)
            Z = np.diff(B, axis=1) / math.sqrt(dt)                 # (m, K, d) iid N(0, 1)
            X, xi = Z @ L.T, Z @ Linv                              # X_k = L Z_k, xi_k = C^-1 X_k
            W = np.concatenate([np.zeros((mm, 1, d)), math.sqrt(dt) * np.cumsum(X, 1)], 1)
            with np.errstate(over="ignore"):
                paths = s0 * np.exp(mu * t[:, None] + sig * W)
            if not np.isfinite(paths).all():
                raise FloatingPointError("the simulated prices overflowed (S leaves the range "
                                         "of a double): the estimates would be inf or NaN")
            paths.flags.writeable = False
            h = disc * _check_array(self.fn(paths), "payoff", (mm,), start)
            x1 = xi[:, 0, :]
            g_lr = ((x1[:, :, None] * x1[:, None, :] - cinv
                     - np.diag(a)[None] * x1[:, :, None] * np.eye(d))
                    / np.outer(a * s0, a * s0))[:, iu[0], iu[1]]
            lr = np.concatenate([
                x1 / (s0 * a),
                ((X * xi - 1).sum(1)) / sig - math.sqrt(dt) * xi.sum(1),
                (math.sqrt(dt) * (xi / sig).sum((1, 2)) - T)[:, None],
                -((Z * Z).sum((1, 2)) - steps * d)[:, None] / (2 * T)
                - (math.sqrt(dt) / T) * (xi * (mu / sig)).sum((1, 2))[:, None] + rate,
                g_lr], axis=1) * h[:, None]
            cols = [h[:, None], lr]
            if self.grad is not None:
                G = _check_array(self.grad(paths), "payoff_grad", paths.shape, start) * disc
                GS = G * paths
                delta = GS.sum(1) / s0
                score = x1 / (s0 * a)
                mix = delta[:, None, :] * (score[:, :, None] - np.diag(1 / s0)[None])
                mix = 0.5 * (mix + np.swapaxes(mix, 1, 2))
                cols.append(np.concatenate([
                    delta, (GS * (W - sig * t[:, None])).sum(1),
                    ((GS * t[:, None]).sum((1, 2)) - T * h)[:, None],
                    -((GS * (mu * t[:, None] + 0.5 * sig * W)).sum((1, 2)) / T
                      - rate * h)[:, None],
                    mix[:, iu[0], iu[1]]], axis=1))
            y = np.ones(mm) @ np.concatenate(cols, axis=1)
            acc = y if acc is None else acc + y
        return acc


def greeks_paths(payoff: Any, *, spot: Any, strike: Any, rate: Any, vol: Any, maturity: Any,
                 n: Any, steps: Any, barrier: Any, rng: Any, method: Any, n_randomizations: Any,
                 dividend: Any, correlation: Any, payoff_grad: Any, model: Any) -> Any:
    """greeks(..., sampler="sobol") for a payoff of the paths of one or
    several correlated geometric Brownian motions (see greeks)."""
    from ._paths import (SobolPathGreeks, _correlation, _estimators, _lower_payoff,
                         _per_asset)
    from .payoffs import PATH_GREEKS

    if model is not None:
        raise ValueError("sampler='sobol' supports geometric Brownian motions (model=None); "
                         f"use sampler='mc' for model={model!r}")
    if np.ndim(spot) > 1:
        raise ValueError(f"spot must be a scalar or one value per asset, got shape "
                         f"{np.shape(spot)}")
    s0 = np.atleast_1d(_per_asset("spot", spot, None))
    d = s0.size
    sig = np.broadcast_to(np.atleast_1d(_per_asset("vol", vol, d)), (d,)).copy()
    q = np.broadcast_to(np.atleast_1d(_per_asset("dividend", dividend, d, positive=False,
                                                 default=0.0)), (d,)).copy()
    if np.ndim(rate) != 0 or np.ndim(maturity) != 0:
        raise TypeError("rate and maturity must be scalar real numbers")
    rate = float(_per_asset("rate", rate, None, positive=False))
    maturity = float(_per_asset("maturity", maturity, None))
    steps = V.integer("steps", steps, minimum=1, maximum=10**6)
    corr = _correlation(correlation, d)
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be 'lr' or 'pathwise', got {method!r}")
    kind, fn, grad, name, grid, _ = _lower_payoff(payoff, strike, barrier, d)
    if grid is not None:
        raise ValueError(f"sampler='sobol' takes one payoff value per path; payoff {name!r} "
                         "declares a grid: use sampler='mc' for a grid in one pass")
    if kind == "callback":
        raise TypeError("sampler='sobol' calls the payoff on blocks of paths from Python: pass "
                        "a vectorised callable or a Payoff, not a scipy.LowLevelCallable")
    grad = payoff_grad if payoff_grad is not None else grad
    if grad is not None and not callable(grad):
        raise TypeError(f"payoff_grad must be callable, got {type(grad).__name__}")
    if method == "pathwise" and grad is None:
        raise ValueError(f"method='pathwise' needs the payoff's derivative along the path "
                         f"(payoff_grad); payoff {name!r} has none")
    R, m = Q.split(n, n_randomizations)
    root, sd = Q.seeds(rng, R)
    work = _PathWork(fn, grad, (s0, sig, q, rate, maturity, steps, corr), m, sd)
    per = Q.run(work, R, 1, None, parallel=False) / m
    mean = per.mean(0)
    se = per.std(0, ddof=1) / math.sqrt(R)
    nw = (per.shape[1] - 1) // (2 if grad is not None else 1)
    iu = np.triu_indices(d)
    scalar = np.ndim(spot) == 0

    def unpack(x: Any, off: Any) -> Any:
        g = np.empty((d, d))
        g[iu] = x[off + 2 * d + 2:off + nw]
        g.T[iu] = g[iu]
        out = {"price": float(x[0]), "delta": x[off:off + d].copy(),
               "vega": x[off + d:off + 2 * d].copy(), "rho": float(x[off + 2 * d]),
               "theta": float(x[off + 2 * d + 1]), "gamma": g}
        return {k: float(np.ravel(v)[0]) for k, v in out.items()} if scalar else out

    # the Sobol' path work gives price, delta, gamma, vega, rho and theta (not
    # the dividend sensitivity of sampler="mc")
    names = tuple(k for k in PATH_GREEKS if k != "dividend")
    alternatives = {mth: {k: (unpack(mean, off)[k], unpack(se, off)[k]) for k in names}
                    for mth, off in (("lr", 1), ("pathwise", 1 + nw))
                    if mth == "lr" or grad is not None}
    off = 1 if method == "lr" else 1 + nw
    var = {k: np.asarray(v) ** 2 * R * m for k, v in unpack(se, off).items()}
    info = {"entropy": root.entropy, "spawn_key": tuple(root.spawn_key), "sampler": "sobol",
            "n_randomizations": R, "points_per_randomization": m, "threads": 1,
            "payoff": name, "spot": float(s0[0]) if scalar else s0, "strike": strike,
            "rate": rate, "dividend": q, "maturity": maturity, "steps": steps, "assets": d,
            "vol": sig, "correlation": corr, "construction": "brownian bridge"}
    out = SobolPathGreeks(unpack(mean, off), unpack(se, off), var, method,
                     _estimators(method, names), alternatives, R * m, info)
    out.sampler = "sobol"
    out.n_randomizations = R
    return out
