"""Exact answers: Black-Scholes prices and Greeks, the geometric Asian call,
the discretely monitored up-and-out call, the Heston call (characteristic
function), and :func:`reference`, which picks the right one for a payoff."""
from __future__ import annotations

import math
from typing import Any, Callable, Literal, overload

import numpy as np
from scipy import integrate, special

from .. import _docs
from .. import _validation as V
from ._common import _DOC_FRAGMENTS as _COMMON_DOC_FRAGMENTS
from ._common import _check_inputs, _positive
from ._paths import Heston


# ---------------------------------------------------------------------------
# exact answers
# ---------------------------------------------------------------------------

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _e(*logs: float) -> float:
    """exp(sum of logs) where a factor 0 (a log of -inf) wins over any
    infinite factor (in every use below a Gaussian tail beats the
    exponential it multiplies), and an overflow is inf (the correctly
    rounded value of a number beyond the range of a double)."""
    if any(l == -math.inf for l in logs):
        return 0.0
    t = math.fsum(logs) if all(math.isfinite(l) for l in logs) else sum(logs)
    return math.inf if t > 709.78 else math.exp(t)


def _phi_times(logc: float, d: float, mult: float = 1.0) -> float:
    """phi(d) * mult * exp(logc), 0 when d is infinite (phi(d) |d|^k -> 0)."""
    if not math.isfinite(d) or mult == 0.0:
        return 0.0
    return math.copysign(_e(logc, -0.5 * d * d - _LOG_SQRT_2PI, math.log(abs(mult))), mult)


def _d12(x: float, lv: float) -> tuple[float, float]:
    """Black's d1, d2 for log-moneyness x = log(F/K) and log total standard
    deviation lv, without overflow or 0 * inf: x / v is formed in logs."""
    v = _e(lv)
    if x == 0.0:
        xv = 0.0
    elif math.isinf(x):
        xv = x
    else:
        xv = math.copysign(_e(math.log(abs(x)) - lv), x)
    return xv + 0.5 * v, xv - 0.5 * v


def _log_ratio(a: float, b: float) -> float:
    """log(a / b) for a, b > 0, exact to rounding when a / b is in range."""
    r = a / b
    return math.log(r) if 0.0 < r < math.inf else math.log(a) - math.log(b)


def _logN(d: float) -> float:
    return float(special.log_ndtr(d))


def _disc(K: float, lD: float, d: float) -> float:
    """K e^{lD} N(d): directly where e^{lD} is in range (full precision),
    in logarithms where it is not."""
    if lD < 700.0:
        return K * math.exp(lD) * float(special.ndtr(d))
    return _e(math.log(K), lD, _logN(d))


def black_scholes(payoff: str, *, spot: float, strike: float, rate: float, vol: float,
                  maturity: float) -> dict[str, float]:
    """Black-Scholes price and Greeks in closed form.

    ``payoff``: "call", "put", "digital_call" or "digital_put" (cash-or-
    nothing, pays 1).  Returns ``{"price", "delta", "vega", "rho", "gamma"}``
    (vega and rho per unit of vol / rate).

    Every input that passes the checks gets its value: the formulas are
    evaluated in logarithms (the discount factor, forward and x / (vol
    sqrt(T)) are never formed where they would overflow), so vol -> 0 gives
    the deterministic limit, vol -> inf the limit S (call), huge rates the
    right value, and a value beyond the range of a double is inf (e.g. a put
    at rate = -800: K e^{800 T}).

    Raises
    ------
    ValueError
        An unknown payoff, or an input outside its range (``vol`` <= 0,
        ...).

    Parameters
    ----------
    payoff : {"call", "put", "digital_call", "digital_put"}
    spot, strike : float
        S0 and K (> 0).
    rate : float
        The continuously compounded rate (finite).
    vol : float
        The volatility (> 0).
    maturity : float
        T in years (> 0).

    Returns
    -------
    dict of str to float

    Examples
    --------
    >>> import mcscore as mc
    >>> bs = mc.finance.black_scholes("call", spot=100.0, strike=100.0, rate=0.05, vol=0.2,
    ...                               maturity=1.0)
    >>> round(bs["price"], 4), round(bs["delta"], 4)
    (10.4506, 0.6368)
    """
    if payoff not in ("call", "put", "digital_call", "digital_put"):
        raise ValueError(f"payoff must be 'call', 'put', 'digital_call' or 'digital_put' for "
                         f"black_scholes, got {payoff!r}")
    spot, strike, rate, vol, maturity, _, _ = _check_inputs(
        payoff, spot, strike, rate, vol, maturity, 1, None)
    S, K, r, s, T = spot, strike, rate, vol, maturity
    lS, lK, lT, ls = math.log(S), math.log(K), math.log(T), math.log(s)
    rT = r * T
    lD = -rT                                   # log discount factor
    lv = ls + 0.5 * lT                         # log(vol sqrt(T))
    x = _log_ratio(S, K) + rT                  # log(F / K)
    if math.isnan(x):                          # log(S/K) + r T = inf - inf: r T dominates
        x = rT
    d1, d2 = _d12(x, lv)
    N: Callable[[float], float] = lambda d: float(special.ndtr(d))  # noqa: E731
    if payoff in ("call", "put"):
        gamma = _phi_times(-lS - lv, d1)
        vega = _phi_times(lS + 0.5 * lT, d1)
        if payoff == "call":
            kd = _disc(K, lD, d2)
            return dict(price=max(S * N(d1) - kd, 0.0), delta=N(d1), vega=vega, rho=T * kd,
                        gamma=gamma)
        kd = _disc(K, lD, -d2)
        return dict(price=max(kd - S * N(-d1), 0.0), delta=-N(-d1), vega=vega, rho=-T * kd,
                    gamma=gamma)
    sign = 1.0 if payoff == "digital_call" else -1.0
    price = _disc(1.0, lD, sign * d2)
    delta = _phi_times(lD - lS - lv, d2)
    gamma = -_phi_times(lD - 2 * lS - 2 * lv, d2, d1)
    vega = -_phi_times(lD - ls, d2, d1)
    x_rho = _phi_times(lD + 0.5 * lT - ls, d2)
    rho = -T * price + sign * x_rho
    return dict(price=price, delta=sign * delta, vega=sign * vega, rho=rho,
                gamma=sign * gamma)


@overload
def geometric_asian_call(*, spot: float, strike: float, rate: float, vol: float,
                         maturity: float, steps: int, greeks: Literal[False] = ...) -> float: ...
@overload
def geometric_asian_call(*, spot: float, strike: float, rate: float, vol: float,
                         maturity: float, steps: int,
                         greeks: Literal[True]) -> dict[str, float]: ...
@overload
def geometric_asian_call(*, spot: float, strike: float, rate: float, vol: float,
                         maturity: float, steps: int,
                         greeks: bool) -> float | dict[str, float]: ...


def geometric_asian_call(*, spot: float, strike: float, rate: float, vol: float,
                         maturity: float, steps: int,
                         greeks: bool = False) -> float | dict[str, float]:
    """Closed-form price of a discretely monitored geometric-average Asian
    call (average over the ``steps`` dates T/steps, ..., T): the geometric
    average is lognormal with log-mean log S0 + (r - sigma^2/2) dt (m+1)/2 and
    log-variance sigma^2 dt (m+1)(2m+1)/(6m).

    ``greeks=True``: a dict of the price and its exact derivatives (delta,
    vega, rho, gamma) instead of the price, evaluated in logarithms like
    :func:`black_scholes`.

    Parameters
    ----------
    %(spot_strike_rate)s
    vol : float
        The volatility (> 0).
    maturity : float
        T (> 0).
    steps : int
        The number of averaging dates (>= 1).
    greeks : bool, default False
        Return the Greeks too.

    Returns
    -------
    float or dict of str to float
        The price, or ``{"price", "delta", "vega", "rho", "gamma"}``.

    Raises
    ------
    ValueError
        An input outside its range.
    TypeError
        ``greeks`` not a bool.

    Examples
    --------
    >>> import mcscore as mc
    >>> round(mc.finance.geometric_asian_call(spot=100.0, strike=100.0, rate=0.05, vol=0.2,
    ...                                       maturity=1.0, steps=12), 6)
    5.9402
    """
    spot, strike, rate, vol, maturity, steps, _ = _check_inputs(
        "geometric_asian_call", spot, strike, rate, vol, maturity, steps, None)
    greeks = V.flag("greeks", greeks)
    m, S, K, r, s, T = steps, spot, strike, rate, vol, maturity
    dt = T / m
    u = dt * (m + 1) / 2                       # d nu / d r
    c2 = dt * (m + 1) * (2 * m + 1) / (6 * m)  # v = s sqrt(c2)
    lv = math.log(s) + 0.5 * math.log(c2)
    v = _e(lv)
    # the average's forward G = S exp(a), a = (r - s^2/2) u + v^2/2
    a = r * u + 0.5 * s * s * (c2 - u)
    lD, lS, lK = -r * T, math.log(S), math.log(K)
    x = _log_ratio(S, K) + a                   # log(G / K)
    d1, d2 = _d12(x, lv)
    lG = lS + a
    price = max(_disc(S, lD + a, d1) - _disc(K, lD, d2), 0.0)
    if not greeks:
        return price
    # dG/dS = G/S, dG/ds = G s (c2 - u), dG/dr = G u, dv/ds = v/s
    delta = _e(lD, a, _logN(d1))
    gamma = _phi_times(lD + 2 * a - lG - lv, d1)
    dGs = s * (c2 - u)
    vega = (math.copysign(_e(lD, lG, _logN(d1), math.log(abs(dGs))), dGs) if dGs else 0.0)
    vega += _phi_times(lD + lG + lv - math.log(s), d1)
    rho = -T * price + _e(lD, lG, _logN(d1), math.log(u))
    return dict(price=price, delta=delta, vega=vega, rho=rho, gamma=gamma)


def _up_and_out_price(spot: float, strike: float, rate: float, vol: float, maturity: float,
                      steps: int, barrier: float) -> float:
    """Discretely monitored up-and-out call for steps in (1, 2), by exact
    conditional expectations and one adaptive quadrature."""
    dt = maturity / steps
    a = vol * math.sqrt(dt)
    mu = (rate - 0.5 * vol * vol) * dt
    K, H = strike, barrier

    def last_step(s: float) -> float:
        # E[(S' - K) 1{K < S' < H} | S = s], S' = s exp(mu + a Z)
        # (a knock-out at the first date is the quadrature's upper limit;
        # the spot itself is not monitored)
        if K >= H:
            return 0.0
        lo = (math.log(K / s) - mu) / a
        hi = (math.log(H / s) - mu) / a
        return (s * math.exp(mu + 0.5 * a * a) * (special.ndtr(hi - a) - special.ndtr(lo - a))
                - K * (special.ndtr(hi) - special.ndtr(lo)))

    D = math.exp(-rate * maturity)
    if steps == 1:
        return D * last_step(spot)
    zmax = (math.log(H / spot) - mu) / a

    def integrand(z: float) -> float:
        return math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) * last_step(
            spot * math.exp(mu + a * z))

    # the integrand's mass: the strike part phi(z) near 0, the asset part
    # phi(z) S e^{a z} near z = a; beyond 12 standard deviations it is below
    # 1e-32 of the price (a window reaching to a huge zmax would miss it)
    lo, hi = min(0.0, a) - 12.0, min(zmax, max(0.0, a) + 12.0)
    if not hi > lo:
        return 0.0
    pts = [p for p in (0.0, a) if lo < p < hi]
    val = integrate.quad(integrand, lo, hi, points=pts or None, epsabs=1e-15 * spot,
                         epsrel=1e-13,
                         limit=400)[0]
    return D * val


def heston_call(*, spot: float, strike: float, rate: float, maturity: float, model: Heston,
                dividend: float = 0.0) -> dict[str, float]:
    """Semi-analytic Heston (1993) call: price, delta and gamma.

    price = S0 e^{-qT} P1 - K e^{-rT} P2, delta = e^{-qT} P1, with P1, P2
    by adaptive quadrature of the characteristic function of log S_T in the
    "little trap" form (Albrecher et al. 2007, no branch-cut jumps); gamma by
    a central difference of delta.  The continuous-time model: a Monte Carlo
    estimate adds its scheme's discretisation bias.

    Parameters
    ----------
    %(spot_strike_rate)s
    maturity : float
        T (> 0).
    model : Heston
        The model.
    dividend : float, default 0.0
        q, the continuous dividend yield (finite).

    Returns
    -------
    dict of str to float
        ``{"price", "delta", "gamma"}``.

    Raises
    ------
    TypeError
        ``model`` not a :class:`Heston`.
    ValueError
        An input outside its range.

    Examples
    --------
    %(heston_model)s
    >>> h = mc.finance.heston_call(spot=100.0, strike=100.0, rate=0.03, maturity=1.0, model=model)
    >>> round(h["price"], 4), round(h["delta"], 4)
    (9.2425, 0.6557)
    """
    if not isinstance(model, Heston):
        raise TypeError(f"model must be a finance.Heston, got {type(model).__name__}")
    S, K, T = _positive("spot", spot), _positive("strike", strike), _positive("maturity", maturity)
    r = float(V.check("rate", V.as_real_array("rate", rate), "real"))
    q = float(V.check("dividend", V.as_real_array("dividend", dividend), "real"))
    kap, th, xi, rho, v0 = model.kappa, model.theta, model.xi, model.rho, model.v0

    def cf(u: Any, s: float) -> Any:
        """E[exp(i u log S_T)] for complex u."""
        b = kap - rho * xi * 1j * u
        d = np.sqrt(b * b + xi * xi * (1j * u + u * u))
        g = (b - d) / (b + d)
        e = np.exp(-d * T)
        C = kap * th / xi ** 2 * ((b - d) * T - 2.0 * np.log((1.0 - g * e) / (1.0 - g)))
        D = (b - d) / xi ** 2 * (1.0 - e) / (1.0 - g * e)
        return np.exp(1j * u * (math.log(s) + (r - q) * T) + C + D * v0)

    def probs(s: float) -> tuple[float, float]:
        lk = math.log(K)
        fwd = s * math.exp((r - q) * T)

        def f1(u: float) -> float:
            return (np.exp(-1j * u * lk) * cf(u - 1j, s) / (1j * u * fwd)).real

        def f2(u: float) -> float:
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


def _fd_greeks(price: Callable[[float, float, float], float], spot: float, vol: float,
               rate: float, maturity: float = 1.0, what: str = "the price") -> dict[str, float]:
    """Central finite differences of an exact price function price(S, sigma,
    r), with steps on each input's own scale (S sigma sqrt(T) for the spot,
    sigma for the vol, the smaller of 1/T and sigma/sqrt(T) for the rate),
    each checked against the same difference at half the step: a Greek whose
    two differences disagree beyond 1e-6 of its scale is refused."""
    sq = vol * math.sqrt(maturity)
    ss = spot * min(1.0, sq)
    hs, hv, hr = 2e-3 * ss, 1e-3 * vol, 1e-3 * min(1.0 / maturity, sq / maturity)
    hg = 1e-2 * ss
    p0 = price(spot, vol, rate)

    def d1(f: Callable[[float], float], h: float) -> float:
        return (f(h) - f(-h)) / (2 * h)

    def d2(f: Callable[[float], float], h: float) -> float:
        return (f(h) - 2 * p0 + f(-h)) / (h * h)

    out = dict(price=p0)
    # the quadrature's relative error (~1e-13) amplified by the difference
    # and each Greek's natural scale (price over the input's scale)
    size = abs(p0) + 1e-300
    noise = 1e-12 * size
    for name, diff, f, h, floor in (
            ("delta", d1, lambda e: price(spot + e, vol, rate), hs,
             max(noise / hs, 1e-5 * size / ss)),
            ("vega", d1, lambda e: price(spot, vol + e, rate), hv,
             max(noise / hv, 1e-5 * size / vol)),
            ("rho", d1, lambda e: price(spot, vol, rate + e), hr,
             max(noise / hr, 1e-8 * size / hr)),
            ("gamma", d2, lambda e: price(spot + e, vol, rate), hg,
             max(4 * noise / hg ** 2, 1e-5 * size / ss ** 2))):
        a, b = diff(f, h), diff(f, h / 2)
        # truncation error ~ h^2: b's is ~ (a - b) / 3; Richardson's value
        # b + (b - a) / 3 is of higher order
        if not (math.isfinite(a) and math.isfinite(b)) or abs(a - b) > max(1e-3 * abs(b),
                                                                               floor):
            raise NotImplementedError(
                f"no accurate reference for the {name} of {what} at spot={spot}, vol={vol}, "
                f"rate={rate}, maturity={maturity}: its finite differences do not converge "
                f"({a} vs {b} at half the step)")
        out[name] = b + (b - a) / 3.0
    return out


def reference(payoff: str, *, spot: float, strike: float, rate: float, vol: float,
              maturity: float, steps: int = 1, barrier: float | None = None) -> dict[str, float]:
    """Exact (or quadrature-accurate) price and Greeks where they are known.

    * call, put, digitals: Black-Scholes in closed form (any ``steps``: the
      terminal value does not depend on the time grid), right at every
      input (see :func:`black_scholes`);
    * geometric_asian_call: the closed form of :func:`geometric_asian_call`
      and its exact derivatives;
    * up_and_out_call with ``steps`` 1 or 2: exact conditional expectation
      of the last step and adaptive quadrature over the first, Greeks by
      central differences on each input's scale, checked against half the
      step and extrapolated (Richardson; errors well below 1e-6 of each
      Greek's scale);
      refused (NotImplementedError) where the quadrature or the differences
      cannot be trusted: vol sqrt(T / steps) outside [1e-3, 10].

    Raises NotImplementedError otherwise (arithmetic Asian, barrier with
    more than 2 dates).

    Parameters
    ----------
    payoff : str
        One of ``PAYOFFS``.
    spot, strike, rate, vol, maturity : float
        As in :func:`black_scholes`.
    steps : int, default 1
        The monitoring dates (Asian, barrier).
    barrier : float, optional
        The up-and-out barrier (> spot).

    Returns
    -------
    dict of str to float
        ``{"price", "delta", "vega", "rho", "gamma"}``.

    Raises
    ------
    NotImplementedError
        Where no exact value is known (see above).
    ValueError
        An unknown payoff or an input outside its range.

    Examples
    --------
    >>> import mcscore as mc
    >>> ref = mc.finance.reference("call", spot=100.0, strike=100.0, rate=0.05, vol=0.2,
    ...                            maturity=1.0)
    >>> round(ref["price"], 4)
    10.4506
    """
    spot, strike, rate, vol, maturity, steps, barrier = _check_inputs(
        payoff, spot, strike, rate, vol, maturity, steps, barrier)
    if payoff in ("call", "put", "digital_call", "digital_put"):
        return black_scholes(payoff, spot=spot, strike=strike, rate=rate, vol=vol,
                             maturity=maturity)
    if payoff == "geometric_asian_call":
        return geometric_asian_call(spot=spot, strike=strike, rate=rate, vol=vol,
                                    maturity=maturity, steps=steps, greeks=True)
    if payoff == "up_and_out_call" and steps <= 2:
        a = vol * math.sqrt(maturity / steps)
        if not 1e-3 <= a <= 10.0 or not abs(rate) * maturity <= 700.0:
            raise NotImplementedError(
                f"no accurate reference for 'up_and_out_call' at vol * sqrt(maturity / steps) "
                f"= {a:g} (needs [1e-3, 10]) and rate * maturity = {rate * maturity:g} (needs "
                f"|.| <= 700)")
        return _fd_greeks(lambda S, s, r: _up_and_out_price(S, strike, r, s, maturity, steps,
                                                            barrier), spot, vol, rate, maturity,
                          "'up_and_out_call'")
    raise NotImplementedError(f"no exact reference for {payoff!r} with steps={steps}")

# The fragments the docstrings above name by %(name)s (see mcscore._docs), filled in
# once, when the module is imported.
_DOC_FRAGMENTS = {
    "spot_strike_rate": """\
spot, strike : float
    S0 and K (> 0).
rate : float
    The rate (finite).""",
}
_docs.fill_module(globals(), **_COMMON_DOC_FRAGMENTS, **_DOC_FRAGMENTS)
