"""Exact answers: Black-Scholes prices and Greeks, the geometric Asian call,
the discretely monitored up-and-out call, the Heston call (characteristic
function), and :func:`reference`, which picks the right one for a payoff."""
from __future__ import annotations

import math

import numpy as np
from scipy import integrate, special

from .. import _validation as V
from ._common import _check_inputs, _positive
from ._paths import Heston


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
