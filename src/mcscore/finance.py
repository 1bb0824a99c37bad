"""Likelihood-ratio sensitivities of options: built-in payoffs of one asset,
any payoff of the paths of several correlated assets, the Heston model.

The seven built-in payoffs (``PAYOFFS``) of one asset run in one fused
kernel, described first below.  A payoff of whole paths (a vectorised Python
function, a C callback or a :class:`Payoff`) on one or several correlated
geometric Brownian motions with dividend yields, or on a :class:`Heston`
model, runs in the path engine described in :func:`greeks` ("Any payoff,
several assets"): paths and weights are simulated and summed in Cython,
the payoff is evaluated on whole blocks of paths.

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

__all__ = ["greeks", "Greeks", "PathGreeks", "Payoff", "black_scholes", "geometric_asian_call",
           "reference", "PAYOFFS", "GREEKS", "PATH_GREEKS", "Heston", "Diffusion", "SpotGreeks",
           "heston_call", "basket_call", "basket_put",
           "geometric_basket_call", "spread_call", "exchange", "best_of_call", "worst_of_call"]

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

    _names = GREEKS

    @staticmethod
    def _value(v):
        return float(v)

    def __init__(self, values, stderr, variance, method, estimators, alternatives, n, info):
        for k in self._names:
            setattr(self, k, self._value(values[k]))
        self.stderr = dict(stderr)
        self.variance = dict(variance)
        self.method = method
        self.estimators = dict(estimators)
        self.alternatives = alternatives
        self.n = int(n)
        self.info = dict(info)

    def as_dict(self):
        """{greek: estimate}."""
        return {k: getattr(self, k) for k in self._names}

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


def greeks(payoff, *, spot, strike=None, rate=None, vol=None, maturity=None, n=None, steps=1,
           barrier=None,
           rng=None, method="lr", n_threads=None, n_streams=E.DEFAULT_STREAMS, block_size=None,
           client=None, dividend=None, correlation=None, payoff_grad=None, model=None):
    """Monte Carlo price, delta, vega, rho and gamma of an option under GBM.

    ``payoff`` may also be a function of the simulated paths (or a C
    callback), on one asset or several: see "Any payoff, several assets"
    below.

    Parameters
    ----------
    payoff : str, callable, Payoff or scipy.LowLevelCallable
        A built-in name: ``"call"``, ``"put"`` (on S_T), ``"digital_call"``, ``"digital_put"``
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

    dividend, correlation, payoff_grad
        See below (not for the built-in names).
    model : None, Heston or Diffusion
        None: geometric Brownian motion(s) with ``vol``.  A :class:`Heston`
        model (one asset, no ``vol``): price, delta and gamma (a
        :class:`SpotGreeks`).  A :class:`Diffusion` (one asset, Euler steps,
        likelihood ratio only): price, delta, gamma and one Greek per model
        parameter, named after it.

    Returns
    -------
    Greeks
        ``.price``, ``.delta``, ``.vega``, ``.rho``, ``.gamma`` and
        ``.stderr[name]``; ``.alternatives`` holds the other method's
        estimates from the same paths.  (A :class:`PathGreeks`, with theta
        as well, for a payoff function.)

    Any payoff, several assets
    --------------------------
    ``payoff`` a vectorised Python function ``payoff(paths) -> (m,)`` of a
    block of m simulated paths, ``paths[p, k, i]`` = S_i(t_k) for
    t_k = k T / steps, k = 0..steps (k = 0 is the spot), i the asset: shape
    ``(m, steps + 1, assets)`` (the last axis has length 1 for one asset;
    the array is read-only and reused between calls).  It is called block by
    block, never per path.  Or a ``scipy.LowLevelCallable`` with one of the
    signatures of :func:`mcscore.score_grad` (``CALLBACK_SIGNATURES``),
    called per path on the path flattened time-major, ``x[k * assets + i]``,
    ``d = (steps + 1) * assets``.  Or a :class:`Payoff` (the factories
    :func:`basket_call`, :func:`spread_call`, :func:`best_of_call`, ...),
    which carries its own derivative.

    spot, vol, dividend: a scalar (one asset) or one value per asset (a
    scalar vol or dividend is used for every asset); dividend is the
    continuous yield q_i (default 0).  correlation: the assets' (assets x
    assets) correlation matrix C, symmetric positive definite with unit
    diagonal (default identity).  The model, with C = L L^T and Z_k iid
    standard normal vectors, X_k = L Z_k,

        log S_i(t_k) = log S_i(t_{k-1}) + mu_i dt + a_i X_ki,
        mu_i = r - q_i - sigma_i^2 / 2,   a_i = sigma_i sqrt(dt).

    Each increment is Gaussian, N(mu dt, dt diag(sigma) C diag(sigma)), and
    the likelihood-ratio weights are the Gaussian scores of the increments
    (Glasserman 2003, ch. 7), with xi_k = C^{-1} X_k = L^{-T} Z_k:

        delta_i    xi_1i / (S0_i a_i)
        gamma_ij   (xi_1i xi_1j - (C^{-1})_ij - [i = j] a_i xi_1i) / (a_i a_j S0_i S0_j)
        vega_i     sum_k (X_ki xi_ki - 1) / sigma_i - sqrt(dt) xi_ki
        rho        sqrt(dt) sum_k sum_i xi_ki / sigma_i - T
        theta      -(sum_k (|Z_k|^2 - assets) / (2T)
                     + (sqrt(dt) / T) sum_k sum_i mu_i xi_ki / sigma_i - r)

    each multiplying the discounted payoff (theta = -dV/dT with ``steps``
    fixed, the dates moving with T; rho and theta include the discount
    factor's -T and +r).  Cross-gammas are ``gamma[i, j]``.

    ``method="pathwise"`` needs the payoff's derivative along the path,
    ``payoff_grad(paths) -> dh/dS`` of the shape of paths (or a
    :class:`Payoff` that has one); then dS_i(t_k)/dS0_i = S_i(t_k)/S0_i,
    dS/dsigma_i = S (W_i(t_k) - sigma_i t_k), dS/dr = S t_k,
    dS/dT = S (mu_i t_k + sigma_i W_i(t_k) / 2) / T, and gamma is the mixed
    estimator E[delta_j^pw (score_i - [i = j] / S0_j)], symmetrised.
    Without a derivative, pathwise is refused.  A payoff function or
    callback runs on one thread (``n_threads`` is not used); the result
    depends on (inputs, n, rng, n_streams, block_size) only.
    """
    path = not isinstance(payoff, str) or any(v is not None for v in (dividend, correlation,
                                                                       payoff_grad, model))
    given = dict(strike=strike, rate=rate, vol=vol, maturity=maturity)
    needed = ("strike", "rate", "vol", "maturity") if not path else (
        ("rate", "maturity") if model is not None else ("rate", "vol", "maturity"))
    missing = [k for k in needed if given[k] is None]
    if missing:
        raise TypeError("greeks() missing required keyword argument(s): "
                        + ", ".join(map(repr, missing)))
    if path:
        return _greeks_paths(payoff, spot=spot, strike=strike, rate=rate, vol=vol,
                             maturity=maturity, n=n, steps=steps, barrier=barrier, rng=rng,
                             method=method, n_streams=n_streams, block_size=block_size,
                             client=client, dividend=dividend, correlation=correlation,
                             payoff_grad=payoff_grad, model=model)
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
# any payoff, several assets
# ---------------------------------------------------------------------------

PATH_GREEKS = ("price", "delta", "gamma", "vega", "rho", "theta")


class Payoff:
    """A payoff of simulated paths for :func:`greeks`, with its derivative.

    ``fn(paths) -> (m,)`` and, optionally, ``grad(paths) -> dh/dS`` of the
    shape of paths, ``(m, steps + 1, assets)``; ``assets`` (if not None) is
    the number of assets it needs.
    """

    def __init__(self, fn, grad=None, *, name=None, assets=None):
        if not callable(fn):
            raise TypeError(f"Payoff: fn must be callable, got {type(fn).__name__}")
        if grad is not None and not callable(grad):
            raise TypeError(f"Payoff: grad must be callable or None, got {type(grad).__name__}")
        self.fn, self.grad, self.assets = fn, grad, assets
        self.name = name or getattr(fn, "__name__", "payoff")

    def __call__(self, paths):
        return self.fn(paths)

    def __repr__(self):
        return f"Payoff({self.name!r})"


def _terminal(name, assets, value, slope):
    """A Payoff of the terminal values S(T) only: value(ST) -> (m,),
    slope(ST) -> (m, assets) its gradient."""
    def fn(paths):
        return value(paths[:, -1, :])

    def grad(paths):
        g = np.zeros(paths.shape)
        g[:, -1, :] = slope(paths[:, -1, :])
        return g

    return Payoff(fn, grad, name=name, assets=assets)


def _weights(weights, what):
    w = V.as_real_array("weights", weights)
    if w.ndim != 1 or w.size < 1 or not np.isfinite(w).all():
        raise ValueError(f"weights of {what} must be a non-empty 1-D array of finite numbers, "
                         f"got {weights!r}")
    return w


def basket_call(strike, weights):
    """(sum_i w_i S_i(T) - K)^+ on len(weights) assets."""
    w = _weights(weights, "basket_call")
    return _terminal("basket_call", w.size, lambda s: np.maximum(s @ w - strike, 0.0),
                     lambda s: (s @ w > strike)[:, None] * w)


def basket_put(strike, weights):
    """(K - sum_i w_i S_i(T))^+ on len(weights) assets."""
    w = _weights(weights, "basket_put")
    return _terminal("basket_put", w.size, lambda s: np.maximum(strike - s @ w, 0.0),
                     lambda s: -(s @ w < strike)[:, None] * w)


def geometric_basket_call(strike, weights):
    """(prod_i S_i(T)^{w_i} - K)^+ (weights summing to 1 make it lognormal)."""
    w = _weights(weights, "geometric_basket_call")

    def g(s):
        return np.exp(np.log(s) @ w)

    return _terminal("geometric_basket_call", w.size, lambda s: np.maximum(g(s) - strike, 0.0),
                     lambda s: ((g(s) > strike) * g(s))[:, None] * w / s)


def spread_call(strike, *, name="spread_call"):
    """(S_1(T) - S_2(T) - K)^+ on two assets."""
    return _terminal(name, 2, lambda s: np.maximum(s[:, 0] - s[:, 1] - strike, 0.0),
                     lambda s: (s[:, 0] - s[:, 1] > strike)[:, None] * np.array([1.0, -1.0]))


def exchange():
    """(S_1(T) - S_2(T))^+: Margrabe's option to exchange asset 2 for asset 1."""
    return spread_call(0.0, name="exchange")


def _extreme_call(name, pick):
    def make(strike):
        def slope(s):
            g = np.zeros(s.shape)
            i = pick(s)
            r = np.arange(len(s))
            g[r, i] = s[r, i] > strike
            return g

        return _terminal(name, None, lambda s: np.maximum(s[np.arange(len(s)), pick(s)] - strike,
                                                           0.0), slope)
    return make


best_of_call = _extreme_call("best_of_call", lambda s: np.argmax(s, axis=1))
best_of_call.__doc__ = "(max_i S_i(T) - K)^+."
worst_of_call = _extreme_call("worst_of_call", lambda s: np.argmin(s, axis=1))
worst_of_call.__doc__ = "(min_i S_i(T) - K)^+."


def _builtin(name, strike, barrier):
    """The built-in single-asset payoffs as Payoff objects (for dividends)."""
    if not isinstance(name, str) or name not in PAYOFFS:
        raise ValueError(f"payoff must be one of {', '.join(map(repr, PAYOFFS))}, a callable, "
                         f"a Payoff or a scipy.LowLevelCallable, got {name!r}")
    if strike is None:
        raise TypeError(f"greeks() missing required keyword argument 'strike' (for payoff "
                        f"{name!r})")
    if name == "up_and_out_call":
        raise ValueError("payoff 'up_and_out_call' takes no dividend, correlation or "
                         "payoff_grad; pass the barrier condition in a payoff function")
    K = _positive("strike", strike)
    one = np.ones(1)
    if name == "call":
        return basket_call(K, one)
    if name == "put":
        return basket_put(K, one)
    if name in ("digital_call", "digital_put"):
        sign = 1.0 if name == "digital_call" else -1.0
        return Payoff(lambda p: (sign * (p[:, -1, 0] - K) > 0).astype(float), name=name)

    def avg(p):
        x = p[:, 1:, 0]
        return x.mean(1) if name == "asian_call" else np.exp(np.log(x).mean(1))

    def grad(p):
        a = avg(p)
        g = np.zeros(p.shape)
        steps = p.shape[1] - 1
        d = 1.0 / steps if name == "asian_call" else a[:, None] / (steps * p[:, 1:, 0])
        g[:, 1:, 0] = (a > K)[:, None] * d
        return g

    return Payoff(lambda p: np.maximum(avg(p) - K, 0.0), grad, name=name, assets=1)


class PathGreeks(Greeks):
    """Price and Greeks of a payoff of paths, with standard errors.

    Attributes
    ----------
    price, rho, theta : float
    delta, vega : float (one asset given as a scalar spot) or (assets,) array
    gamma : float, or (assets, assets) array (cross-gammas off the diagonal)
    stderr, variance : dict[str, float or array]
        Standard error and per-path variance of each, same shapes.
    method, estimators, alternatives, n, info : as in :class:`Greeks`
        (theta is -dV/dT).
    """

    _names = PATH_GREEKS

    @staticmethod
    def _value(v):
        return v

    def z_scores(self, exact):
        """(estimate - exact) / stderr for each greek in ``exact`` (arrays
        for per-asset Greeks)."""
        return {k: (np.asarray(getattr(self, k)) - np.asarray(v, float)) / self.stderr[k]
                for k, v in exact.items()}

    def __repr__(self):
        lines = [f"{type(self).__name__}(payoff={self.info.get('payoff')!r}, method={self.method!r}, "
                 f"n={self.n})"]
        def fmt(v, digits):
            return np.array2string(np.asarray(v), formatter={
                "float_kind": lambda x: f"{x:.{digits}g}"})

        for k in self._names:
            lines.append(f"  {k:<6} {fmt(getattr(self, k), 6)} +/- {fmt(self.stderr[k], 3)}"
                         f"   [{self.estimators[k]}]")
        return "\n".join(lines)


def _per_asset(name, v, d, positive=True, default=None):
    if v is None:
        v = default
    a = V.as_real_array(name, v)
    if a.ndim > 1 or (a.ndim == 1 and d is not None and a.size != d):
        want = "a scalar" if d is None else f"a scalar or {d} values (one per asset)"
        raise ValueError(f"{name} must be {want}, got shape {a.shape}")
    a = np.asarray(V.check(name, a, "positive" if positive else "real"), dtype=float)
    return a


def _correlation(correlation, d):
    if correlation is None:
        return np.eye(d)
    c = np.array(V.as_real_array("correlation", correlation), dtype=float)
    if c.shape != (d, d):
        raise ValueError(f"correlation must be a {d} x {d} matrix (one row per asset), got "
                         f"shape {c.shape}")
    if not np.isfinite(c).all():
        raise ValueError("correlation must be finite")
    if not np.allclose(c, c.T, rtol=0.0, atol=1e-12):
        raise ValueError("correlation must be symmetric")
    if not np.allclose(np.diag(c), 1.0, rtol=0.0, atol=1e-12):
        raise ValueError(f"correlation must have a unit diagonal, got {np.diag(c)}")
    c = 0.5 * (c + c.T)
    np.fill_diagonal(c, 1.0)
    try:
        L = np.linalg.cholesky(c)
    except np.linalg.LinAlgError:
        L = None
    if L is None or np.min(np.diag(L)) < 1e-8:
        raise ValueError("correlation must be positive definite (its Cholesky factor failed "
                         "or is singular: the assets must not be perfectly correlated)")
    return c


def _check_array(out, what, shape, first):
    if isinstance(out, np.ma.MaskedArray):
        raise TypeError(f"{what} returned a masked array; return a plain array of reals")
    try:
        a = np.asarray(out)
    except Exception:
        raise TypeError(f"{what} returned {type(out).__name__}, not an array") from None
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{what} returned dtype {a.dtype}; it must return real numbers")
    if a.shape != shape:
        raise ValueError(f"{what} returned shape {a.shape} instead of {shape} for a block of "
                         f"{shape[0]} paths")
    a = np.ascontiguousarray(a, dtype=np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        i = np.unravel_index(int(np.argmax(bad)), a.shape)
        raise ValueError(f"{what} returned {a[i]} for path {first + i[0]}; it must be finite")
    return a


def _lower_payoff(payoff, strike, barrier, d):
    """(kind, payoff callable or callback tuple, grad or None, name)."""
    from . import _callables as C

    if isinstance(payoff, str):
        payoff = _builtin(payoff, strike, barrier)
    elif barrier is not None:
        raise ValueError("barrier applies only to the built-in 'up_and_out_call'")
    llc = C._as_lowlevel(payoff)
    if llc is not None:
        code = C._callback_signature(llc.signature)
        if code is None:
            raise TypeError(f"payoff: LowLevelCallable signature {llc.signature!r} is not "
                            "supported; use one of: " + "; ".join(C.CALLBACK_SIGNATURES))
        cb = (C._address(llc.function, "function"), int(code),
              C._address(llc.user_data, "user_data"), llc)
        return "callback", cb, None, "LowLevelCallable"
    if isinstance(payoff, Payoff):
        if payoff.assets is not None and payoff.assets != d:
            raise ValueError(f"payoff {payoff.name!r} is for {payoff.assets} asset(s), but "
                             f"spot gives {d}")
        return "python", payoff.fn, payoff.grad, payoff.name
    if callable(payoff):
        return "python", payoff, None, getattr(payoff, "__name__", "payoff")
    raise ValueError(f"payoff must be one of {', '.join(map(repr, PAYOFFS))}, a vectorised "
                     "callable of the paths, a Payoff or a scipy.LowLevelCallable, got "
                     f"{payoff!r}")


class Heston:
    """The Heston model for :func:`greeks` (``model=Heston(...)``):

        dS = (r - q) S dt + sqrt(v) S dW1,
        dv = kappa (theta - v) dt + xi sqrt(v) dW2,   d<W1, W2> = rho dt,

    simulated by log-Euler steps for S and Euler steps with full truncation
    for v (v+ = max(v, 0) in drift and diffusion).  Only the first step's
    density depends on S0 (and there v0 > 0 is known), so the likelihood-
    ratio delta and gamma weights are that step's Gaussian scores: with
    a = sqrt(v0 dt), e = Z1 - rho Z2 / sqrt(1 - rho^2),

        delta  e / (S0 a),      gamma  (e^2 - 1/(1 - rho^2) - a e) / (a S0)^2;

    pathwise, dS(t)/dS0 = S(t)/S0 on every path.  Greeks with respect to the
    model's parameters are not formed (a truncated step with v+ = 0 has no
    density).  Estimates carry the scheme's discretisation bias, O(dt).
    """

    def __init__(self, *, v0, kappa, theta, xi, rho):
        for name, v in (("v0", v0), ("kappa", kappa), ("theta", theta), ("xi", xi)):
            if np.ndim(v) != 0:
                raise TypeError(f"Heston: {name} must be a scalar, got shape {np.shape(v)}")
        self.v0 = _positive("v0", v0)
        self.kappa = _positive("kappa", kappa)
        self.theta = _positive("theta", theta)
        self.xi = _positive("xi", xi)
        if np.ndim(rho) != 0:
            raise TypeError(f"Heston: rho must be a scalar, got shape {np.shape(rho)}")
        rho = float(V.check("rho", V.as_real_array("rho", rho), "real"))
        if not -1.0 < rho < 1.0:
            raise ValueError(f"Heston: rho must be in (-1, 1), got {rho}")
        self.rho = rho

    def __repr__(self):
        return (f"Heston(v0={self.v0}, kappa={self.kappa}, theta={self.theta}, xi={self.xi}, "
                f"rho={self.rho})")


class Diffusion:
    """A one-factor diffusion for :func:`greeks` (``model=Diffusion(...)``):

        dX = drift(t, x, **params) dt + diffusion(t, x, **params) dW,

    X = S (``log=False``) or X = log S (``log=True``), simulated by Euler
    steps X_{k+1} = X_k + a_k dt + b_k sqrt(dt) Z_k (a_k, b_k the functions
    at (t_k, X_k)).  drift and diffusion are vectorised over x (an (m,) array
    of states) and must return (m,) arrays (or scalars), diffusion > 0.

    Each step is Gaussian given the past, so the likelihood-ratio weight of
    a model parameter theta is a sum over steps of Gaussian scores
    (Glasserman 2003, 7.3):

        sum_k Z_k sqrt(dt) (da_k/dtheta) / b_k + (Z_k^2 - 1) (db_k/dtheta) / b_k,

    and delta and gamma come from the first step's density
    N(x0 + a(x0) dt, b(x0)^2 dt): score s = Z m' / (b sqrt(dt))
    + (Z^2 - 1) b'/b with m' = 1 + a' dt, and the second-order weight
    s^2 + ds/dx0 (chained to S0 = e^{x0} when log).  The derivatives in
    theta and x0 are central differences of the given functions (relative
    step 1e-5; 1e-3 for the second derivatives in x0): their error, ~1e-9
    relative, is far below Monte Carlo's.  A path whose diffusion is not
    > 0 or not finite is an error (use log=True, or truncate in the
    functions as Heston's full truncation does).
    """

    _RESERVED = frozenset(PATH_GREEKS) | {"n", "info", "method", "stderr", "variance",
                                          "estimators", "alternatives"}

    def __init__(self, drift, diffusion, params=None, *, log=False):
        if not callable(drift):
            raise TypeError(f"Diffusion: drift must be callable, got {type(drift).__name__}")
        if not callable(diffusion):
            raise TypeError(f"Diffusion: diffusion must be callable, got "
                            f"{type(diffusion).__name__}")
        params = {} if params is None else dict(params)
        for k, v in params.items():
            if not isinstance(k, str) or not k.isidentifier() or k in self._RESERVED:
                raise ValueError(f"Diffusion: params names must be identifiers other than "
                                 f"{sorted(self._RESERVED)}, got {k!r}")
            if np.ndim(v) != 0:
                raise TypeError(f"Diffusion: params[{k!r}] must be a scalar, got shape "
                                f"{np.shape(v)}")
            params[k] = float(V.check(k, V.as_real_array(k, v), "real"))
        self.drift, self.diffusion, self.params, self.log = drift, diffusion, params, bool(log)

    def __repr__(self):
        return f"Diffusion(params={self.params}, log={self.log})"

    def _eval(self, fn, what, t, x, params):
        m = len(x)
        out = np.asarray(fn(t, x, **params), dtype=np.float64)
        if out.shape not in ((), (m,)):
            raise ValueError(f"Diffusion: {what} returned shape {out.shape} for {m} states")
        out = np.broadcast_to(out, (m,))
        if not np.isfinite(out).all() or (what == "diffusion" and not (out > 0).all()):
            i = int(np.argmax(~np.isfinite(out) | ((out <= 0) if what == "diffusion" else False)))
            raise ValueError(f"Diffusion: {what}({t}, {x[i]}) = {out[i]}; it must be finite"
                             + (" and > 0" if what == "diffusion" else ""))
        return out

    def _ab(self, t, x, params=None):
        params = self.params if params is None else params
        return (self._eval(self.drift, "drift", t, x, params),
                self._eval(self.diffusion, "diffusion", t, x, params))

    def _dtheta(self, t, x, name):
        v = self.params[name]
        h = 1e-5 * max(1.0, abs(v))
        up = dict(self.params, **{name: v + h})
        dn = dict(self.params, **{name: v - h})
        (au, bu), (ad, bd) = self._ab(t, x, up), self._ab(t, x, dn)
        return (au - ad) / (2 * h), (bu - bd) / (2 * h)

    def simulate(self, z, m, steps, maturity, s0, paths, wts):
        """Euler paths from the normals z (m, steps) into paths[:m, :, 0]
        and the weights [delta, gamma, params...] into wts[:m]."""
        dt = maturity / steps
        sq = math.sqrt(dt)
        x0 = math.log(s0) if self.log else s0
        # first step's density in x0: derivatives by central differences
        hx = 1e-5 * max(1.0, abs(x0))
        h2 = 1e-3 * max(1.0, abs(x0))
        pts = np.array([x0 - h2, x0 - hx, x0, x0 + hx, x0 + h2])
        a, b = self._ab(0.0, pts)
        a1, b1 = (a[3] - a[1]) / (2 * hx), (b[3] - b[1]) / (2 * hx)
        a2, b2 = (a[4] - 2 * a[2] + a[0]) / h2 ** 2, (b[4] - 2 * b[2] + b[0]) / h2 ** 2
        a0, bb = a[2], b[2]
        z1 = z[:, 0]
        mp = 1.0 + a1 * dt
        score = z1 * mp / (bb * sq) + (z1 * z1 - 1.0) * b1 / bb
        dz = -mp / (bb * sq) - z1 * b1 / bb
        dscore = (dz * mp / (bb * sq) + z1 * (a2 * dt / (bb * sq) - mp * b1 / (bb * bb * sq))
                  + 2.0 * z1 * dz * b1 / bb + (z1 * z1 - 1.0) * (b2 / bb - (b1 / bb) ** 2))
        if self.log:
            wts[:m, 0] = score / s0
            wts[:m, 1] = (score * score + dscore - score) / (s0 * s0)
        else:
            wts[:m, 0] = score
            wts[:m, 1] = score * score + dscore
        names = list(self.params)
        wts[:m, 2:] = 0.0
        x = np.full(m, x0)
        paths[:m, 0, 0] = s0
        for k in range(steps):
            t = k * dt
            a, b = self._ab(t, x)
            zk = z[:, k]
            for j, name in enumerate(names):
                da, db = self._dtheta(t, x, name)
                wts[:m, 2 + j] += zk * sq * da / b + (zk * zk - 1.0) * db / b
            x = x + a * dt + b * sq * zk
            paths[:m, k + 1, 0] = np.exp(x) if self.log else x


class SpotGreeks(PathGreeks):
    """Price, delta and gamma of a payoff under a model other than GBM (see
    :class:`PathGreeks`; floats)."""

    _names = ("price", "delta", "gamma")

    def __init__(self, *args, names=None, **kwargs):
        if names is not None:
            self._names = tuple(names)     # with a Diffusion's parameters
        super().__init__(*args, **kwargs)


def _run_blocks(plan, chunk, shape, normals, nq, simulate, payoff, grad, accumulate):
    """Stream by stream, block by block, chunk by chunk: simulate paths
    (in the kernels), evaluate the payoff (and its gradient) on the whole
    chunk, accumulate; returns (mean, var, n) of the nq quantities."""
    kind, fn = payoff
    paths = np.empty((chunk,) + shape)
    h = np.empty(chunk)
    stats = np.zeros((plan.used, 1 + 2 * nq))
    shifts = np.zeros((plan.used, nq))
    with np.errstate(over="ignore", invalid="ignore"):
        for s, bg in enumerate(plan.bitgens(np.arange(plan.used))):
            stream = F.PathStream(bg, chunk * normals)
            first = True
            for b in range(s, plan.n_blocks, plan.n_streams):
                rows, done = plan.block_rows(b), 0
                while done < rows:
                    m = min(chunk, rows - done)
                    at = b * plan.block_size + done
                    simulate(stream, m, paths)
                    if not np.isfinite(paths[:m, -1]).all():
                        raise FloatingPointError(
                            "the simulated prices overflowed (S leaves the range of a "
                            "double): the estimates would be inf or NaN")
                    view = paths[:m]
                    view.flags.writeable = False       # the payoff only reads it
                    if kind == "callback":
                        bad = F.callback_block(fn[0], fn[1], fn[2], paths, m, h)
                        if bad >= 0:
                            raise ValueError(f"payoff (a LowLevelCallable) reported an "
                                             f"error at path {at + bad}")
                        hv = _check_array(h[:m], "payoff", (m,), at)
                    else:
                        hv = _check_array(fn(view), "payoff", (m,), at)
                    gv = None if grad is None else _check_array(
                        grad(view), "payoff_grad", (m,) + shape, at)
                    accumulate(m, hv, paths, gv, stats[s], shifts[s], first)
                    first = False
                    done += m
        mean, var, nn = _merge(stats, shifts)
    if not (np.isfinite(mean).all() and np.isfinite(var).all()):
        raise FloatingPointError("the estimates are not finite (the payoff or the weights "
                                 "overflowed)")
    return mean, var, nn


def _estimators(method, names):
    if method == "lr":
        est = dict.fromkeys(names[1:], "likelihood ratio")
        est["gamma"] = "second-order likelihood ratio"
    else:
        est = dict.fromkeys(names[1:], "pathwise")
        est["gamma"] = "mixed (LR of the pathwise delta)"
    est["price"] = "plain"
    return est


def _greeks_paths(payoff, *, spot, strike, rate, vol, maturity, n, steps, barrier, rng, method,
                  n_streams, block_size, client, dividend, correlation, payoff_grad,
                  model=None):
    """greeks() for a payoff of paths (see its docstring)."""
    if client is not None:
        raise ValueError("client (Dask) is not supported for a payoff function; run locally")
    if model is not None and not isinstance(model, (Heston, Diffusion)):
        raise TypeError(f"model must be None (geometric Brownian motion), a finance.Heston or "
                        f"a finance.Diffusion, got {type(model).__name__}")
    if np.ndim(spot) > 1 or (model is not None and np.ndim(spot) != 0):
        raise ValueError(f"spot must be a scalar or one value per asset (a scalar for "
                         f"model={model!r}), got shape {np.shape(spot)}")
    scalar = np.ndim(spot) == 0
    s0 = np.atleast_1d(_per_asset("spot", spot, None))
    d = s0.size
    if d < 1:
        raise ValueError("spot must hold at least one asset")
    if model is None:
        sig = np.broadcast_to(np.atleast_1d(_per_asset("vol", vol, d)), (d,)).copy()
    elif vol is not None or correlation is not None:
        raise ValueError(f"vol and correlation do not apply to model={model!r} (its "
                         "volatility is the model's)")
    q = np.broadcast_to(np.atleast_1d(_per_asset("dividend", dividend, d, positive=False,
                                                 default=0.0)), (d,)).copy()
    for name, v in (("rate", rate), ("maturity", maturity)):
        if np.ndim(v) != 0:
            raise TypeError(f"{name} must be a scalar real number, got shape {np.shape(v)}")
    rate = float(V.check("rate", V.as_real_array("rate", rate), "real"))
    maturity = _positive("maturity", maturity)
    steps = V.integer("steps", steps, minimum=1, maximum=10**6)
    corr = _correlation(correlation, d) if model is None else None
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be 'lr' or 'pathwise', got {method!r}")
    kind, fn, grad, name = _lower_payoff(payoff, strike, barrier, d)
    if payoff_grad is not None:
        if not callable(payoff_grad):
            raise TypeError(f"payoff_grad must be callable, got {type(payoff_grad).__name__}")
        grad = payoff_grad
    if isinstance(model, Diffusion) and (method == "pathwise" or grad is not None):
        raise ValueError("method='pathwise' and payoff_grad are not supported for a "
                         "Diffusion model (likelihood ratio only); use method='lr' without "
                         "payoff_grad")
    if isinstance(model, Diffusion) and dividend is not None:
        raise ValueError("dividend does not apply to a Diffusion model: put the yield in its "
                         "drift")
    if method == "pathwise" and grad is None:
        raise ValueError(
            f"method='pathwise' needs the payoff's derivative along the path: pass "
            f"payoff_grad(paths) -> dh/dS (shape of paths) or a Payoff with grad; payoff "
            f"{name!r} has none (for a discontinuous payoff use method='lr')")

    disc = math.exp(-rate * maturity)
    normals = steps * (d if model is None else 1 if isinstance(model, Diffusion) else 2)
    plan = E.Plan(n, normals, rng, n_streams, block_size, 1)
    chunk = max(1, min(plan.block_size, (1 << 18) // ((steps + 1) * max(d, 2))))
    if model is None:
        chol = np.linalg.cholesky(corr)
        cinv = np.linalg.inv(corr)
        cinv = 0.5 * (cinv + cinv.T)
        drift = rate - q - 0.5 * sig * sig
        nw = F.n_weights(d)
        wts = np.empty((chunk, nw))

        def simulate(stream, m, paths):
            F.gbm_block(stream, m, steps, maturity, rate, s0, drift, sig, chol, cinv, paths,
                        wts)

        def accumulate(m, hv, paths, gv, st, sh, first):
            F.accumulate_block(m, hv, wts, disc, maturity, rate, s0, drift, sig, paths, gv, st,
                               sh, first)
        names = PATH_GREEKS
    else:
        sp, qq = float(s0[0]), float(q[0])
        names = SpotGreeks._names
        if isinstance(model, Diffusion):
            names += tuple(model.params)
        nw = len(names) - 1
        wts = np.empty((chunk, nw))
        if isinstance(model, Diffusion):
            def simulate(stream, m, paths):
                z = F.normals(stream, m * steps).reshape(m, steps)
                model.simulate(z, m, steps, maturity, sp, paths, wts)
        else:
            def simulate(stream, m, paths):
                F.heston_block(stream, m, steps, maturity, rate, qq, sp, model.v0, model.kappa,
                               model.theta, model.xi, model.rho, paths, wts)

        def accumulate(m, hv, paths, gv, st, sh, first):
            F.accumulate_block(m, hv, wts, disc, maturity, rate, s0, q, q, paths, gv, st, sh,
                               first, False)
    nq = 1 + nw * (2 if grad is not None else 1)
    mean, var, nn = _run_blocks(plan, chunk, (steps + 1, d), normals, nq, simulate, (kind, fn),
                                grad, accumulate)
    se = np.sqrt(var / nn)
    iu = np.triu_indices(d)

    def unpack(x, off):
        if model is not None:
            return {k: float(x[0] if k == "price" else x[off + i - 1])
                    for i, k in enumerate(names)}
        g = np.empty((d, d))
        g[iu] = x[off + 2 * d + 2:off + nw]
        g.T[iu] = g[iu]
        out = {"price": x[0], "delta": x[off:off + d].copy(), "vega": x[off + d:off + 2 * d].copy(),
               "rho": float(x[off + 2 * d]), "theta": float(x[off + 2 * d + 1]), "gamma": g}
        if scalar:
            out = {k: float(np.ravel(v)[0]) for k, v in out.items()}
        else:
            out["price"] = float(out["price"])
        return out

    alternatives = {}
    for mth, off in (("lr", 1), ("pathwise", 1 + nw)):
        if mth == "pathwise" and grad is None:
            continue
        e, ee = unpack(mean, off), unpack(se, off)
        alternatives[mth] = {k: (e[k], ee[k]) for k in names}
    off = 1 if method == "lr" else 1 + nw
    values, stderr, variance = unpack(mean, off), unpack(se, off), unpack(var, off)
    info = plan.info()
    info.update(threads=1, payoff=name, spot=s0 if not scalar else float(s0[0]), strike=strike,
                rate=rate, dividend=q, maturity=maturity, steps=steps, assets=d, model=model)
    if model is None:
        info.update(vol=sig, correlation=corr)
    est = _estimators(method, names)
    if model is None:
        return PathGreeks(values, stderr, variance, method, est, alternatives, int(nn), info)
    return SpotGreeks(values, stderr, variance, method, est, alternatives, int(nn), info,
                      names=names)


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


def heston_call(*, spot, strike, rate, maturity, model, dividend=0.0):
    """Semi-analytic Heston (1993) call: price, delta and gamma.

    price = S0 e^{-qT} P1 - K e^{-rT} P2, delta = e^{-qT} P1, with P1, P2
    by adaptive quadrature of the characteristic function of log S_T in the
    "little trap" form (Albrecher et al. 2007, no branch-cut jumps); gamma by
    a central difference of delta.  The continuous-time model: a Monte Carlo
    estimate adds its scheme's discretisation bias.
    """
    if not isinstance(model, Heston):
        raise TypeError(f"model must be a finance.Heston, got {type(model).__name__}")
    S, K, T = _positive("spot", spot), _positive("strike", strike), _positive("maturity", maturity)
    r = float(V.check("rate", V.as_real_array("rate", rate), "real"))
    q = float(V.check("dividend", V.as_real_array("dividend", dividend), "real"))
    kap, th, xi, rho, v0 = model.kappa, model.theta, model.xi, model.rho, model.v0

    def cf(u, s):
        """E[exp(i u log S_T)] for complex u."""
        b = kap - rho * xi * 1j * u
        d = np.sqrt(b * b + xi * xi * (1j * u + u * u))
        g = (b - d) / (b + d)
        e = np.exp(-d * T)
        C = kap * th / xi ** 2 * ((b - d) * T - 2.0 * np.log((1.0 - g * e) / (1.0 - g)))
        D = (b - d) / xi ** 2 * (1.0 - e) / (1.0 - g * e)
        return np.exp(1j * u * (math.log(s) + (r - q) * T) + C + D * v0)

    def probs(s):
        lk = math.log(K)
        fwd = s * math.exp((r - q) * T)

        def f1(u):
            return (np.exp(-1j * u * lk) * cf(u - 1j, s) / (1j * u * fwd)).real

        def f2(u):
            return (np.exp(-1j * u * lk) * cf(u, s) / (1j * u)).real

        # the characteristic function decays exponentially: integrate up to
        # where it is below 1e-16 (found by doubling), in unit pieces
        top = 8.0
        while top < 1e6 and abs(cf(top, s)) > 1e-16 * top:
            top *= 2.0
        opts = dict(epsabs=1e-13, epsrel=1e-11, limit=200)
        cuts = np.linspace(0.0, top, int(min(top, 4096)) + 1)
        p1 = p2 = 0.5
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            p1 += integrate.quad(f1, lo, hi, **opts)[0] / math.pi
            p2 += integrate.quad(f2, lo, hi, **opts)[0] / math.pi
        return p1, p2

    p1, p2 = probs(S)
    h = 1e-3 * S
    gamma = math.exp(-q * T) * (probs(S + h)[0] - probs(S - h)[0]) / (2 * h)
    return dict(price=S * math.exp(-q * T) * p1 - K * math.exp(-r * T) * p2,
                delta=math.exp(-q * T) * p1, gamma=gamma)


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
