"""Likelihood-ratio sensitivities of options under geometric Brownian motion.

The price of a derivative is E[e^{-rT} h(S)] over paths of

    S_k = S_{k-1} exp((r - sigma^2/2) dt + sigma sqrt(dt) Z_k),  k = 1..steps,

and its sensitivities (the Greeks) are derivatives of that expectation with
respect to the spot S0, the volatility sigma and the rate r.  The
likelihood-ratio method (Glasserman, *Monte Carlo Methods in Financial
Engineering*, 2003, section 7.3) differentiates the path density instead of
the payoff, so it needs no smoothness of h: digitals and barriers are fine.
With a = sigma sqrt(dt) and W_T = sqrt(dt) sum Z_k the weights are

    delta  Z_1 / (S0 a)
    vega   sum_k (Z_k^2 - 1) / sigma - W_T
    rho    W_T / sigma - T          (the -T is the discount factor's)
    gamma  ((Z_1^2 - 1) / a^2 - Z_1 / a) / S0^2      (second-order LR)

Only the first step's density depends on S0, so the delta and gamma weights
grow like 1/sqrt(dt) and 1/dt as ``steps`` grows: with many monitoring dates
prefer ``method="pathwise"`` where it applies.

``method="pathwise"`` differentiates the payoff along the path instead
(lower variance, needs a Lipschitz payoff: calls, puts, Asians), with gamma
from the *mixed* estimator that applies the likelihood ratio to the pathwise
delta: e^{-rT} dh/dS0 (Z_1 / a - 1) / S0.

Each estimate is the mean of one per-path quantity (the discounted payoff
times its weight, the -T of rho included per path), so its standard error
is the sample standard deviation of that quantity over sqrt(n), merged
exactly from per-stream shifted sums; no estimator combines separately
averaged sums, so no covariance terms arise.

Every path is simulated inside a fused, parallel Cython kernel
(``mcscore._finance``) and never stored; the per-stream sums make the result
bit-identical for any number of threads, as in :func:`mcscore.score_grad`.

    >>> import mcscore as mc
    >>> g = mc.finance.greeks("call", spot=100, strike=100, rate=0.05, vol=0.2,
    ...                       maturity=1.0, n=10**6, rng=0)
    >>> g.delta, g.stderr["delta"]          # doctest: +SKIP
"""
from __future__ import annotations

import math

import numpy as np
from scipy import integrate, special

from . import _engine as E
from . import _finance as F
from . import _validation as V
from ._algebra import common_shift, shift_sums
from ._config import effective_n_threads
from .distributed import map_streams

__all__ = ["greeks", "Greeks", "black_scholes", "geometric_asian_call", "reference", "PAYOFFS",
           "GREEKS"]

PAYOFFS = ("call", "put", "digital_call", "digital_put", "asian_call", "geometric_asian_call",
           "up_and_out_call")
GREEKS = ("price", "delta", "vega", "rho", "gamma")
METHODS = ("lr", "pathwise")
_PATHWISE_OK = {"call", "put", "asian_call", "geometric_asian_call"}
# rows of the kernel's quantities for each method
_ROWS = {"lr": (0, 1, 2, 3, 4), "pathwise": (0, 5, 6, 7, 8)}


class Greeks:
    """Price and sensitivities with their Monte Carlo standard errors.

    Attributes
    ----------
    price, delta, vega, rho, gamma : float
        The estimates (vega and rho per unit of vol / rate, not per 1%).
    stderr : dict[str, float]
        Standard error of each of the five.
    variance : dict[str, float]
        Per-path variance of each estimator (``stderr**2 * n``): the figure
        to compare estimators by.
    method : "lr" or "pathwise"
    estimators : dict[str, str]
        Which estimator produced each Greek ("likelihood ratio", "pathwise",
        "mixed (LR of the pathwise delta)", ...).
    alternatives : dict[str, dict[str, tuple[float, float]]]
        Every estimator the kernel formed in the same run,
        ``{"lr": {"delta": (estimate, stderr), ...}, "pathwise": {...}}``
        ("pathwise" only for payoffs that have one).
    n : int
        Paths simulated.
    info : dict
        The plan (streams, block size, threads, seed) and the inputs.
    """

    def __init__(self, values, stderr, variance, method, estimators, alternatives, n, info):
        for k in GREEKS:
            setattr(self, k, float(values[k]))
        self.stderr = dict(stderr)
        self.variance = dict(variance)
        self.method = method
        self.estimators = dict(estimators)
        self.alternatives = alternatives
        self.n = int(n)
        self.info = dict(info)

    def as_dict(self):
        """{greek: estimate}."""
        return {k: getattr(self, k) for k in GREEKS}

    def z_scores(self, exact):
        """(estimate - exact) / stderr for each greek in ``exact``."""
        return {k: (getattr(self, k) - float(v)) / self.stderr[k] for k, v in exact.items()}

    def __repr__(self):
        lines = [f"Greeks(payoff={self.info.get('payoff')!r}, method={self.method!r}, "
                 f"n={self.n})"]
        for k in GREEKS:
            lines.append(f"  {k:<6} {getattr(self, k):>12.6g} +/- {self.stderr[k]:.3g}"
                         f"   [{self.estimators[k]}]")
        return "\n".join(lines)


def _positive(name, v):
    return float(V.check(name, V.as_real_array(name, v), "positive"))


def _check_inputs(payoff, spot, strike, rate, vol, maturity, steps, barrier):
    if not isinstance(payoff, str) or payoff not in PAYOFFS:
        raise ValueError(f"payoff must be one of {', '.join(map(repr, PAYOFFS))}, got {payoff!r}")
    for name, v in (("spot", spot), ("strike", strike), ("vol", vol), ("maturity", maturity)):
        if np.ndim(v) != 0:
            raise TypeError(f"{name} must be a scalar real number, got shape {np.shape(v)}")
    spot = _positive("spot", spot)
    strike = _positive("strike", strike)
    vol = _positive("vol", vol)
    maturity = _positive("maturity", maturity)
    if np.ndim(rate) != 0:
        raise TypeError(f"rate must be a scalar real number, got shape {np.shape(rate)}")
    rate = float(V.check("rate", V.as_real_array("rate", rate), "real"))
    steps = V.integer("steps", steps, minimum=1, maximum=10**6)
    if payoff == "up_and_out_call":
        if barrier is None:
            raise ValueError("barrier is required for payoff 'up_and_out_call'")
        if np.ndim(barrier) != 0:
            raise TypeError(f"barrier must be a scalar real number, got shape {np.shape(barrier)}")
        barrier = _positive("barrier", barrier)
        if not barrier > spot:
            raise ValueError(f"barrier must be > spot for an up-and-out option (got barrier="
                             f"{barrier}, spot={spot})")
    elif barrier is not None:
        raise ValueError(f"barrier applies only to 'up_and_out_call', not to {payoff!r}")
    else:
        barrier = math.inf
    return spot, strike, rate, vol, maturity, steps, barrier


def _merge(stats, shifts):
    """Per-quantity mean, per-draw variance and n from per-stream sums
    relative to per-stream shifts."""
    count = stats[:, 0]
    n = float(count.sum())
    c0, d = common_shift(count, shifts)                  # (NQ,), (S, NQ)
    G, H = shift_sums(d, count[:, None], stats[:, 1::2], stats[:, 2::2])
    G, H = G.sum(0), H.sum(0)
    mean = c0 + G / n
    var = np.maximum(H - G * G / n, 0.0) / (n - 1)
    return mean, var, n


def _paths(inputs, plan, streams, threads):
    """Simulate the paths of the given streams in the fused kernel; returns
    (streams, stats rows, shifts, error code)."""
    streams = np.ascontiguousarray(streams, dtype=np.int64)
    stats = np.zeros((len(streams), 1 + 2 * F.N_QUANTITIES))
    shifts = np.zeros((len(streams), F.N_QUANTITIES))
    code = F.run_paths(*inputs, plan.bitgens(streams), streams, plan.n, plan.n_streams,
                       plan.block_size, threads, stats, shifts)
    return streams, stats, shifts, code


def _paths_task(inputs, plan, streams, n_threads):
    """_paths on a Dask worker (threads resolved there)."""
    return _paths(inputs, plan, streams,
                  effective_n_threads(n_threads, work_items=len(streams)))


def greeks(payoff, *, spot, strike, rate, vol, maturity, n, steps=1, barrier=None, rng=None,
           method="lr", n_threads=None, n_streams=E.DEFAULT_STREAMS, block_size=None,
           client=None):
    """Monte Carlo price, delta, vega, rho and gamma of an option under GBM.

    Parameters
    ----------
    payoff : str
        ``"call"``, ``"put"`` (on S_T), ``"digital_call"``, ``"digital_put"``
        (cash-or-nothing, pays 1 when S_T > K, resp. < K),
        ``"asian_call"`` (on the arithmetic average of S at the ``steps``
        dates T/steps, 2T/steps, ..., T), ``"geometric_asian_call"`` (on their
        geometric average), ``"up_and_out_call"`` (a call that dies when S
        reaches ``barrier`` at one of the ``steps`` monitoring dates).
    spot, strike, vol, maturity : float > 0
    rate : float
        Continuously compounded risk-free rate (also the drift).
    n : int >= 2
        Paths.
    steps : int >= 1
        Time steps (= monitoring / averaging dates).
    barrier : float > spot
        Only for ``"up_and_out_call"``.
    rng : None, int, SeedSequence or Generator
        Seeds the call's streams (as in :func:`mcscore.score_grad`).
    method : "lr" or "pathwise"
        "lr": every Greek by the likelihood ratio (gamma by the second-order
        likelihood ratio).  "pathwise": delta, vega and rho by pathwise
        differentiation and gamma by the mixed estimator (likelihood ratio of
        the pathwise delta); only for payoffs that are Lipschitz in the path
        (call, put, asian_call, geometric_asian_call).
    n_threads, n_streams, block_size
        As in :func:`mcscore.score_grad`; the result depends on (inputs, n,
        rng, n_streams, block_size) only, never on the thread count.

    Returns
    -------
    Greeks
        ``.price``, ``.delta``, ``.vega``, ``.rho``, ``.gamma`` and
        ``.stderr[name]``; ``.alternatives`` holds the other method's
        estimates from the same paths.
    """
    spot, strike, rate, vol, maturity, steps, barrier = _check_inputs(
        payoff, spot, strike, rate, vol, maturity, steps, barrier)
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be 'lr' or 'pathwise', got {method!r}")
    if method == "pathwise" and payoff not in _PATHWISE_OK:
        raise ValueError(
            f"method='pathwise' does not apply to {payoff!r}: its payoff is discontinuous "
            "(the pathwise derivative is zero almost surely and misses the jump); use "
            "method='lr'")
    plan = E.Plan(n, steps, rng, n_streams, block_size, n_threads)
    inputs = (PAYOFFS.index(payoff), spot, strike, rate, vol, maturity, barrier, steps)
    if client is None:
        _, stats, shifts, code = _paths(inputs, plan, np.arange(plan.used), plan.threads)
    else:
        stats = np.zeros((plan.used, 1 + 2 * F.N_QUANTITIES))
        shifts = np.zeros((plan.used, F.N_QUANTITIES))
        codes = []

        def on_result(res):
            streams, rows, sh, c = res
            stats[streams], shifts[streams] = rows, sh
            codes.append(c)

        map_streams(client, plan, _paths_task, (inputs, plan), (n_threads,),
                    n_threads=n_threads, n_tasks=None, kind="paths", on_result=on_result)
        code = max(codes, default=0)
    if code == 4:
        raise MemoryError("could not allocate the path kernels' block buffers")
    with np.errstate(over="ignore", invalid="ignore"):
        mean, var, nn = _merge(stats, shifts)
    if not (np.isfinite(mean).all() and np.isfinite(var).all()):
        raise FloatingPointError(
            f"the simulated prices overflowed (spot={spot}, rate={rate}, vol={vol}, "
            f"maturity={maturity}: S0 exp((rate - vol^2/2) t + vol W_t) leaves the range of "
            "a double); the estimates would be inf or NaN")
    se = np.sqrt(var / nn)
    alternatives = {}
    for m in METHODS:
        if m == "pathwise" and payoff not in _PATHWISE_OK:
            continue
        alternatives[m] = {g: (float(mean[r]), float(se[r])) for g, r in zip(GREEKS, _ROWS[m])}
    rows = _ROWS[method]
    values = {g: mean[r] for g, r in zip(GREEKS, rows)}
    stderr = {g: float(se[r]) for g, r in zip(GREEKS, rows)}
    variance = {g: float(var[r]) for g, r in zip(GREEKS, rows)}
    if method == "lr":
        est = {"price": "plain", "delta": "likelihood ratio", "vega": "likelihood ratio",
               "rho": "likelihood ratio", "gamma": "second-order likelihood ratio"}
    else:
        est = {"price": "plain", "delta": "pathwise", "vega": "pathwise", "rho": "pathwise",
               "gamma": "mixed (LR of the pathwise delta)"}
    info = plan.info()
    info.update(payoff=payoff, spot=spot, strike=strike, rate=rate, vol=vol, maturity=maturity,
                steps=steps, barrier=None if math.isinf(barrier) else barrier)
    return Greeks(values, stderr, variance, method, est, alternatives, int(nn), info)


# ---------------------------------------------------------------------------
# exact answers
# ---------------------------------------------------------------------------

def black_scholes(payoff, *, spot, strike, rate, vol, maturity):
    """Black-Scholes price and Greeks in closed form.

    ``payoff``: "call", "put", "digital_call" or "digital_put" (cash-or-
    nothing, pays 1).  Returns ``{"price", "delta", "vega", "rho", "gamma"}``
    (vega and rho per unit of vol / rate).
    """
    if payoff not in ("call", "put", "digital_call", "digital_put"):
        raise ValueError(f"payoff must be 'call', 'put', 'digital_call' or 'digital_put' for "
                         f"black_scholes, got {payoff!r}")
    spot, strike, rate, vol, maturity, _, _ = _check_inputs(
        payoff, spot, strike, rate, vol, maturity, 1, None)
    S, K, r, s, T = spot, strike, rate, vol, maturity
    sq = s * math.sqrt(T)
    d1 = (math.log(S / K) + (r + 0.5 * s * s) * T) / sq
    d2 = d1 - sq
    D = math.exp(-r * T)
    N, phi = special.ndtr, lambda x: math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    if payoff in ("call", "put"):
        gamma = phi(d1) / (S * sq)
        vega = S * phi(d1) * math.sqrt(T)
        if payoff == "call":
            return dict(price=S * N(d1) - K * D * N(d2), delta=N(d1), vega=vega,
                        rho=K * T * D * N(d2), gamma=gamma)
        return dict(price=K * D * N(-d2) - S * N(-d1), delta=N(d1) - 1.0, vega=vega,
                    rho=-K * T * D * N(-d2), gamma=gamma)
    price = D * N(d2)
    delta = D * phi(d2) / (S * sq)
    gamma = -D * phi(d2) * d1 / (S * S * s * s * T)
    vega = -D * phi(d2) * d1 / s
    rho = -T * price + D * phi(d2) * math.sqrt(T) / s
    if payoff == "digital_call":
        return dict(price=price, delta=delta, vega=vega, rho=rho, gamma=gamma)
    return dict(price=D - price, delta=-delta, vega=-vega, rho=-T * D - rho, gamma=-gamma)


def geometric_asian_call(*, spot, strike, rate, vol, maturity, steps):
    """Closed-form price of a discretely monitored geometric-average Asian
    call (average over the ``steps`` dates T/steps, ..., T): the geometric
    average is lognormal with log-mean log S0 + (r - sigma^2/2) dt (m+1)/2 and
    log-variance sigma^2 dt (m+1)(2m+1)/(6m)."""
    spot, strike, rate, vol, maturity, steps, _ = _check_inputs(
        "geometric_asian_call", spot, strike, rate, vol, maturity, steps, None)
    m = steps
    dt = maturity / m
    nu = math.log(spot) + (rate - 0.5 * vol * vol) * dt * (m + 1) / 2
    v = vol * math.sqrt(dt * (m + 1) * (2 * m + 1) / (6 * m))
    d2 = (nu - math.log(strike)) / v
    return math.exp(-rate * maturity) * (math.exp(nu + 0.5 * v * v) * special.ndtr(d2 + v)
                                         - strike * special.ndtr(d2))


def _up_and_out_price(spot, strike, rate, vol, maturity, steps, barrier):
    """Discretely monitored up-and-out call for steps in (1, 2), by exact
    conditional expectations and one adaptive quadrature."""
    dt = maturity / steps
    a = vol * math.sqrt(dt)
    mu = (rate - 0.5 * vol * vol) * dt
    K, H = strike, barrier

    def last_step(s):
        # E[(S' - K) 1{K < S' < H} | S = s], S' = s exp(mu + a Z)
        if s >= H or K >= H:
            return 0.0
        lo = (math.log(K / s) - mu) / a
        hi = (math.log(H / s) - mu) / a
        return (s * math.exp(mu + 0.5 * a * a) * (special.ndtr(hi - a) - special.ndtr(lo - a))
                - K * (special.ndtr(hi) - special.ndtr(lo)))

    D = math.exp(-rate * maturity)
    if steps == 1:
        return D * last_step(spot)
    zmax = (math.log(H / spot) - mu) / a

    def integrand(z):
        return math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) * last_step(
            spot * math.exp(mu + a * z))

    val = integrate.quad(integrand, -12.0, zmax, epsabs=1e-14, epsrel=1e-13, limit=200)[0]
    return D * val


def _fd_greeks(price, spot, vol, rate):
    """Central finite differences of an exact price function price(S, sigma, r)."""
    hs, hv, hr = 1e-3 * spot, 1e-4, 1e-4
    p0 = price(spot, vol, rate)
    up, dn = price(spot + hs, vol, rate), price(spot - hs, vol, rate)
    hg = 5e-3 * spot
    gup, gdn = price(spot + hg, vol, rate), price(spot - hg, vol, rate)
    return dict(
        price=p0,
        delta=(up - dn) / (2 * hs),
        vega=(price(spot, vol + hv, rate) - price(spot, vol - hv, rate)) / (2 * hv),
        rho=(price(spot, vol, rate + hr) - price(spot, vol, rate - hr)) / (2 * hr),
        gamma=(gup - 2 * p0 + gdn) / (hg * hg),
    )


def reference(payoff, *, spot, strike, rate, vol, maturity, steps=1, barrier=None):
    """Exact (or quadrature-accurate) price and Greeks where they are known.

    * call, put, digitals: Black-Scholes in closed form (any ``steps``: the
      terminal value does not depend on the time grid);
    * geometric_asian_call: the closed form of :func:`geometric_asian_call`,
      Greeks by central differences of it;
    * up_and_out_call with ``steps`` 1 or 2: exact conditional expectation
      of the last step and adaptive quadrature over the first, Greeks by
      central differences (errors well below 1e-6).

    Raises NotImplementedError otherwise (arithmetic Asian, barrier with
    more than 2 dates).
    """
    spot, strike, rate, vol, maturity, steps, barrier = _check_inputs(
        payoff, spot, strike, rate, vol, maturity, steps, barrier)
    if payoff in ("call", "put", "digital_call", "digital_put"):
        return black_scholes(payoff, spot=spot, strike=strike, rate=rate, vol=vol,
                             maturity=maturity)
    if payoff == "geometric_asian_call":
        return _fd_greeks(lambda S, s, r: geometric_asian_call(
            spot=S, strike=strike, rate=r, vol=s, maturity=maturity, steps=steps), spot, vol, rate)
    if payoff == "up_and_out_call" and steps <= 2:
        return _fd_greeks(lambda S, s, r: _up_and_out_price(S, strike, r, s, maturity, steps,
                                                            barrier), spot, vol, rate)
    raise NotImplementedError(f"no exact reference for {payoff!r} with steps={steps}")
