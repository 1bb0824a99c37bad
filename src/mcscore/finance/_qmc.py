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
"""
from __future__ import annotations

import math

import numpy as np
from scipy import special

from .. import _qmc as Q
from ._common import GREEKS, METHODS, PAYOFFS, Greeks, _PATHWISE_OK, _ROWS, _check_inputs


def bridge_order(steps):
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


def bridge(z, dt, order):
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


def path_quantities(payoff, z, s0, strike, rate, sigma, T, barrier, order):
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


class _GreeksWork:
    """One randomisation: the sums of the nine quantities over its paths."""

    def __init__(self, inputs, m, seeds):
        self.inputs, self.m, self.seeds = inputs, m, seeds

    def __call__(self, r):
        payoff, s0, strike, rate, sigma, T, barrier, steps = self.inputs
        order = bridge_order(steps)
        acc = np.zeros(9)
        for _, u in Q.points(steps, self.m, self.seeds[r], 4 * steps + 12):
            y = path_quantities(payoff, special.ndtri(u), s0, strike, rate, sigma, T, barrier,
                                order)
            acc += y.sum(0)
        return acc


_ESTIMATORS = {
    "lr": ("plain", "likelihood ratio", "likelihood ratio", "likelihood ratio",
           "second-order likelihood ratio"),
    "pathwise": ("plain", "pathwise", "pathwise", "pathwise",
                 "mixed (LR of the pathwise delta)"),
}


def greeks(payoff, *, spot, strike, rate, vol, maturity, n, steps, barrier, rng, method,
           n_threads, client, n_randomizations, path):
    """greeks(..., sampler="sobol") for a built-in payoff."""
    if path:
        raise ValueError("sampler='sobol' supports the built-in payoffs "
                         f"({', '.join(PAYOFFS)}) under Black-Scholes; for a payoff function, "
                         "several assets or a model use sampler='mc'")
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
            "construction": "brownian bridge"}
    out = Greeks({g: mean[r] for g, r in zip(GREEKS, rows)},
                 {g: float(se[r]) for g, r in zip(GREEKS, rows)},
                 {g: float(se[r] ** 2 * R * m) for g, r in zip(GREEKS, rows)}, method,
                 dict(zip(GREEKS, _ESTIMATORS[method])), alternatives, R * m, info)
    out.sampler = "sobol"
    out.n_randomizations = R
    return out
