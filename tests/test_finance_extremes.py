"""finance.black_scholes and finance.reference at extreme inputs: every
answer is right (against an independent computation: quadrature of the
lognormal law, or the limit in closed form) or a clear refusal; no bare
ZeroDivisionError / OverflowError, no NaN, no silently wrong "exact" value.

Swept: vol -> 0 and huge, T -> 0 and large, barriers far away / near the
spot, rates large of either sign, strikes and spots tiny and huge."""
import itertools
import math

import numpy as np
import pytest
from scipy import integrate, special

from mcscore import finance as fi
from mcscore.finance.closed_forms import _up_and_out_price

KINDS = ("call", "put", "digital_call", "digital_put")


def _phi(z):
    return math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def _quad(f, lo, hi):
    return integrate.quad(f, lo, hi, epsabs=0.0, epsrel=1e-12, limit=400)[0]


def _quad_bs(kind, S, K, r, s, T):
    """Price and Greeks by quadrature over the normal z of
    S_T = S exp((r - s^2/2) T + s sqrt(T) z): the call's by pathwise
    integrands, the digital's by likelihood-ratio integrands, the puts by
    parity.  Independent of the closed form's algebra."""
    sq = s * math.sqrt(T)
    D = math.exp(-r * T)
    zk = (math.log(K / S) - (r - 0.5 * s * s) * T) / sq
    top = max(zk, sq) + 40.0

    def ST(z):
        return S * math.exp((r - 0.5 * s * s) * T + sq * z)

    def over(g):                                  # D int_{zk}^{inf} g(z) phi(z) dz
        pts = sorted({zk, max(zk, sq), max(zk, 0.0)})
        pieces = list(zip(pts, pts[1:] + [top]))
        return D * sum(_quad(lambda z: g(z) * _phi(z), a, b) for a, b in pieces if b > a)

    if kind in ("call", "put"):
        price = over(lambda z: ST(z) - K)
        out = dict(price=price, delta=over(lambda z: ST(z) / S),
                   vega=over(lambda z: ST(z) * (math.sqrt(T) * z - s * T)),
                   rho=over(lambda z: ST(z) * T) - T * price,
                   gamma=D * K * _phi(zk) / (S * S * sq))   # the density at the kink
        if kind == "put":
            out = dict(price=price - S + K * D, delta=out["delta"] - 1.0, vega=out["vega"],
                       rho=out["rho"] - K * T * D, gamma=out["gamma"])
        return out
    price = over(lambda z: 1.0)
    out = dict(price=price, delta=over(lambda z: z / (S * sq)),
               vega=over(lambda z: (z * z - 1.0) / s - z * math.sqrt(T)),
               rho=over(lambda z: z * math.sqrt(T) / s - T),
               gamma=over(lambda z: ((z * z - 1.0) / sq ** 2 - z / sq) / S ** 2))
    if kind == "digital_put":
        out = {k: -v for k, v in out.items()}
        out["price"] += D
        out["rho"] -= T * D
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_black_scholes_against_quadrature_over_a_wide_grid(kind):
    S = 100.0
    for K, s, T, r in itertools.product((40.0, 100.0, 170.0), (0.02, 0.3, 2.5),
                                        (0.01, 1.0, 20.0), (-0.3, 0.0, 0.4)):
        if s * math.sqrt(T) < 0.01:
            continue           # the quadrature's own resolution, not the formula's
        bs = fi.black_scholes(kind, spot=S, strike=K, rate=r, vol=s, maturity=T)
        q = _quad_bs(kind, S, K, r, s, T)
        for g in q:
            scale = {"price": S, "delta": 1.0, "vega": S * math.sqrt(T) + 1.0 / s,
                     "rho": (K + 1.0) * T, "gamma": 1.0 / (S * S * s * math.sqrt(T))}[g]
            assert abs(bs[g] - q[g]) <= 1e-8 * scale, (kind, K, s, T, r, g, bs[g], q[g])


# ---------------------------------------------------------------------------
# limits in closed form
# ---------------------------------------------------------------------------

def _intrinsic(kind, S, K, r, T):
    """The vol -> 0 limit: the forward is deterministic (F != K)."""
    D = math.exp(-r * T)
    itm = S > K * D
    return {"call": dict(price=max(S - K * D, 0.0), delta=float(itm), rho=K * T * D * itm),
            "put": dict(price=max(K * D - S, 0.0), delta=-float(not itm),
                        rho=-K * T * D * (not itm)),
            "digital_call": dict(price=D * itm, delta=0.0, rho=-T * D * itm),
            "digital_put": dict(price=D * (not itm), delta=0.0, rho=-T * D * (not itm))}[kind]


def _finite_dict(d):
    assert set(d) == {"price", "delta", "vega", "rho", "gamma"}
    for k, v in d.items():
        assert isinstance(v, float) and not math.isnan(v), (k, v)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("vol", [1e-300, 1e-200, 1e-30, 1e-9])
@pytest.mark.parametrize("strike", [80.0, 120.0])
def test_vol_to_zero_gives_the_deterministic_limit(kind, vol, strike):
    S, r, T = 100.0, 0.05, 1.0
    bs = fi.black_scholes(kind, spot=S, strike=strike, rate=r, vol=vol, maturity=T)
    _finite_dict(bs)
    lim = _intrinsic(kind, S, strike, r, T)
    for k, v in lim.items():
        assert bs[k] == pytest.approx(v, rel=1e-12, abs=1e-300), (k, bs[k], v)
    assert bs["gamma"] == 0.0 and bs["vega"] == 0.0


def test_digital_at_tiny_vol_is_not_a_zero_division():
    """The reported bug: ZeroDivisionError at vol = 1e-300 (at the money
    in spot: the forward is above the strike, so the digital pays surely)."""
    bs = fi.black_scholes("digital_call", spot=100.0, strike=100.0, rate=0.05, vol=1e-300,
                          maturity=1.0)
    assert bs["price"] == pytest.approx(math.exp(-0.05), rel=1e-15)
    assert bs["delta"] == 0.0 and bs["gamma"] == 0.0 and bs["vega"] == 0.0
    assert bs["rho"] == pytest.approx(-math.exp(-0.05), rel=1e-15)


@pytest.mark.parametrize("vol", [1e-300, 1e-12])
def test_at_the_forward_with_vol_to_zero(vol):
    """F = K exactly (r = 0, S = K): call = S phi(0) v (1 + O(v^2)), the
    digital pays 1/2, gamma = phi(0) / (S v) large but finite."""
    S = 100.0
    c = fi.black_scholes("call", spot=S, strike=S, rate=0.0, vol=vol, maturity=1.0)
    assert c["price"] == pytest.approx(S * vol / math.sqrt(2 * math.pi), rel=1e-12)
    assert c["delta"] == pytest.approx(0.5, rel=1e-12)
    assert c["gamma"] == pytest.approx(1.0 / (math.sqrt(2 * math.pi) * S * vol), rel=1e-12)
    d = fi.black_scholes("digital_call", spot=S, strike=S, rate=0.0, vol=vol, maturity=1.0)
    assert d["price"] == pytest.approx(0.5, rel=1e-15)


@pytest.mark.parametrize("vol", [1e3, 1e8, 1e150])
def test_huge_vol_limits(vol):
    S, K, r, T = 100.0, 90.0, 0.03, 2.0
    D = math.exp(-r * T)
    lims = {"call": dict(price=S, delta=1.0), "put": dict(price=K * D, delta=0.0),
            "digital_call": dict(price=0.0, delta=0.0), "digital_put": dict(price=D, delta=0.0)}
    for kind, lim in lims.items():
        bs = fi.black_scholes(kind, spot=S, strike=K, rate=r, vol=vol, maturity=T)
        _finite_dict(bs)
        for k, v in lim.items():
            assert bs[k] == pytest.approx(v, rel=1e-12, abs=1e-300), (kind, k, bs[k], v)
        assert bs["gamma"] == 0.0 and bs["vega"] == 0.0


@pytest.mark.parametrize("T", [1e-300, 1e-30])
def test_maturity_to_zero_is_the_payoff(T):
    for kind, K in itertools.product(KINDS, (80.0, 120.0)):
        bs = fi.black_scholes(kind, spot=100.0, strike=K, rate=0.05, vol=0.2, maturity=T)
        _finite_dict(bs)
        payoff = {"call": max(100.0 - K, 0.0), "put": max(K - 100.0, 0.0),
                  "digital_call": float(100.0 > K), "digital_put": float(100.0 < K)}[kind]
        assert bs["price"] == pytest.approx(payoff, rel=1e-12, abs=1e-300)


def test_large_negative_rate_is_the_right_value_not_an_overflow_error():
    """The reported bug: OverflowError at rate = -800.  The put is worth
    K e^{800} - S, beyond a double: inf; the call is worth 0."""
    kw = dict(spot=100.0, strike=100.0, rate=-800.0, vol=0.2, maturity=1.0)
    c, p = fi.black_scholes("call", **kw), fi.black_scholes("put", **kw)
    _finite_dict(c)
    assert c == dict(price=0.0, delta=0.0, vega=0.0, rho=0.0, gamma=0.0)
    assert p["price"] == math.inf and p["delta"] == -1.0 and p["rho"] == -math.inf
    dc, dp = fi.black_scholes("digital_call", **kw), fi.black_scholes("digital_put", **kw)
    assert dc["price"] == 0.0 and dp["price"] == math.inf
    # within range the same limit is a finite number: put = K e^{40} - S
    kw["rate"] = -40.0
    p = fi.black_scholes("put", **kw)
    assert p["price"] == pytest.approx(100.0 * math.exp(40.0) - 100.0, rel=1e-14)
    assert p["rho"] == pytest.approx(-100.0 * math.exp(40.0), rel=1e-14)


def test_large_positive_rate():
    kw = dict(spot=100.0, strike=100.0, rate=800.0, vol=0.2, maturity=1.0)
    c, p = fi.black_scholes("call", **kw), fi.black_scholes("put", **kw)
    assert c["price"] == pytest.approx(100.0, rel=1e-15) and c["delta"] == 1.0
    assert c["rho"] == 0.0
    assert p == dict(price=0.0, delta=0.0, vega=0.0, rho=0.0, gamma=0.0)
    assert fi.black_scholes("digital_call", **kw)["price"] == 0.0   # e^{-800} < 5e-324


@pytest.mark.parametrize("S, K", [(100.0, 1e-300), (100.0, 1e300), (1e-300, 100.0),
                                  (1e300, 100.0), (1e300, 1e-300)])
def test_strikes_and_spots_tiny_and_huge(S, K):
    r, T = 0.05, 1.0
    D = math.exp(-r * T)
    for kind in KINDS:
        bs = fi.black_scholes(kind, spot=S, strike=K, rate=r, vol=0.2, maturity=T)
        _finite_dict(bs)
        lim = _intrinsic(kind, S, K, r, T)      # d1, d2 are +-inf to double precision
        assert bs["price"] == pytest.approx(lim["price"], rel=1e-12, abs=1e-300), (kind, bs)
        assert bs["delta"] == pytest.approx(lim["delta"], abs=1e-300), (kind, bs)
    assert D > 0


# ---------------------------------------------------------------------------
# finance.reference: the up-and-out quadrature and the geometric Asian
# ---------------------------------------------------------------------------

def test_far_barrier_is_the_vanilla_call():
    """The reported bug: barrier 1e300 gave 6.9e-20 for a price of 10.45."""
    kw = dict(spot=100.0, strike=100.0, rate=0.05, vol=0.2, maturity=1.0)
    bs = fi.black_scholes("call", **kw)
    for barrier, steps in itertools.product((1e6, 1e100, 1e300), (1, 2)):
        ref = fi.reference("up_and_out_call", steps=steps, barrier=barrier, **kw)
        for k in bs:
            assert ref[k] == pytest.approx(bs[k], rel=1e-7, abs=1e-9), (barrier, steps, k)


def test_barrier_near_the_spot_against_independent_quadrature():
    """One date: E[(S_T - K) 1{K < S_T < H}] by quadrature over S_T's
    density (a different variable from the reference's)."""
    S, K, r, s, T = 100.0, 95.0, 0.02, 0.3, 0.5
    for H in (100.0 * (1 + 1e-9), 101.0, 150.0):
        ref = fi.reference("up_and_out_call", spot=S, strike=K, rate=r, vol=s, maturity=T,
                           steps=1, barrier=H)
        m, v = math.log(S) + (r - 0.5 * s * s) * T, s * math.sqrt(T)

        def dens(x):
            return math.exp(-0.5 * ((math.log(x) - m) / v) ** 2) / (x * v * math.sqrt(2 * math.pi))

        price = math.exp(-r * T) * _quad(lambda x: (x - K) * dens(x), K, H)
        assert ref["price"] == pytest.approx(price, rel=1e-9), H


@pytest.mark.parametrize("vol", [2e-3, 1e-2])
def test_up_and_out_small_vol_is_the_call(vol):
    """Barrier out of reach: at small vol the up-and-out is the vanilla
    call, Greeks included (the old fixed vol step 1e-4 exceeded vol)."""
    kw = dict(spot=100.0, strike=90.0, rate=0.05, vol=vol, maturity=1.0)
    ref = fi.reference("up_and_out_call", steps=2, barrier=130.0, **kw)
    bs = fi.black_scholes("call", **kw)
    for k in bs:
        assert ref[k] == pytest.approx(bs[k], rel=1e-6, abs=1e-6), (k, ref[k], bs[k])


@pytest.mark.parametrize("kw", [dict(vol=1e-9), dict(vol=1e-5), dict(vol=50.0), dict(maturity=1e-14),
                                dict(rate=-1000.0)])
def test_up_and_out_refuses_where_it_cannot_be_trusted(kw):
    args = dict(spot=100.0, strike=90.0, rate=0.05, vol=0.2, maturity=1.0, steps=2,
                barrier=130.0)
    args.update(kw)
    with pytest.raises(NotImplementedError, match="no accurate reference for 'up_and_out_call'"):
        fi.reference("up_and_out_call", **args)


@pytest.mark.parametrize("barrier", [math.inf, -math.inf, 100.0])
def test_barrier_at_infinity_or_at_the_spot_is_refused_clearly(barrier):
    with pytest.raises(ValueError, match="barrier must be"):
        fi.reference("up_and_out_call", spot=100.0, strike=90.0, rate=0.05, vol=0.2,
                     maturity=1.0, steps=2, barrier=barrier)


def test_up_and_out_two_dates_against_nested_quadrature():
    """Two dates, no barrier shortcut: a 2-D quadrature over both normals."""
    S, K, r, s, T, H = 100.0, 100.0, 0.03, 0.25, 1.0, 125.0
    dt = T / 2
    a, mu = s * math.sqrt(dt), (r - 0.5 * s * s) * dt
    z1max = (math.log(H / S) - mu) / a

    def inner(z1):
        s1 = S * math.exp(mu + a * z1)
        lo, hi = (math.log(K / s1) - mu) / a, (math.log(H / s1) - mu) / a
        return _quad(lambda z2: (s1 * math.exp(mu + a * z2) - K) * _phi(z2), lo, hi) * _phi(z1)

    price = math.exp(-r * T) * integrate.quad(inner, -12.0, z1max, epsrel=1e-11)[0]
    ref = fi.reference("up_and_out_call", spot=S, strike=K, rate=r, vol=s, maturity=T, steps=2,
                       barrier=H)
    assert ref["price"] == pytest.approx(price, rel=1e-8)


def _geo_quad(S, K, r, s, T, m):
    dt = T / m
    nu = math.log(S) + (r - 0.5 * s * s) * dt * (m + 1) / 2
    v = s * math.sqrt(dt * (m + 1) * (2 * m + 1) / (6 * m))
    zk = (math.log(K) - nu) / v
    top = max(zk, v) + 40.0
    return math.exp(-r * T) * sum(
        _quad(lambda z: (math.exp(nu + v * z) - K) * _phi(z), lo, hi)
        for lo, hi in ((zk, max(zk, v)), (max(zk, v), top)) if hi > lo)


@pytest.mark.parametrize("s, T, r, m", [(0.2, 1.0, 0.05, 3), (0.02, 5.0, -0.2, 12),
                                        (1.5, 0.1, 0.5, 2)])
def test_geometric_asian_reference_against_quadrature_and_differences(s, T, r, m):
    S, K = 100.0, 97.0
    ref = fi.reference("geometric_asian_call", spot=S, strike=K, rate=r, vol=s, maturity=T,
                       steps=m)
    assert ref["price"] == pytest.approx(_geo_quad(S, K, r, s, T, m), rel=1e-9)

    def p(S=S, s=s, r=r):
        return _geo_quad(S, K, r, s, T, m)

    h = 1e-4
    fd = dict(delta=(p(S=S + h * S) - p(S=S - h * S)) / (2 * h * S),
              vega=(p(s=s * (1 + h)) - p(s=s * (1 - h))) / (2 * h * s),
              rho=(p(r=r + h) - p(r=r - h)) / (2 * h),
              gamma=(p(S=S * 1.001) - 2 * p() + p(S=S * 0.999)) / (0.001 * S) ** 2)
    for k, v in fd.items():
        assert ref[k] == pytest.approx(v, rel=1e-4, abs=1e-7), (k, ref[k], v)


@pytest.mark.parametrize("vol", [1e-300, 1e-100])
def test_geometric_asian_vol_to_zero(vol):
    """The average is deterministic: G = S exp(r dt (m+1)/2)."""
    S, K, r, T, m = 100.0, 95.0, 0.05, 1.0, 4
    u = T / m * (m + 1) / 2
    ref = fi.reference("geometric_asian_call", spot=S, strike=K, rate=r, vol=vol, maturity=T,
                       steps=m)
    D = math.exp(-r * T)
    assert ref["price"] == pytest.approx(D * (S * math.exp(r * u) - K), rel=1e-13)
    assert ref["delta"] == pytest.approx(D * math.exp(r * u), rel=1e-13)
    assert ref["gamma"] == 0.0
    c2 = T / m * (m + 1) * (2 * m + 1) / (6 * m)      # vega -> D G vol (c2 - u): linear in vol
    assert ref["vega"] == pytest.approx(D * S * math.exp(r * u) * vol * (c2 - u), rel=1e-12)
    assert ref["rho"] == pytest.approx(-T * ref["price"] + D * S * math.exp(r * u) * u,
                                       rel=1e-12)


def test_up_and_out_price_function_far_barrier_regression():
    """The quadrature window no longer reaches to the huge barrier."""
    assert _up_and_out_price(100.0, 100.0, 0.05, 0.2, 1.0, 2, 1e300) == pytest.approx(
        fi.black_scholes("call", spot=100.0, strike=100.0, rate=0.05, vol=0.2,
                         maturity=1.0)["price"], rel=1e-10)
    assert np.isfinite(_up_and_out_price(100.0, 100.0, 0.05, 0.2, 1.0, 2, 100.0 + 1e-9))


@pytest.mark.parametrize("kw, match", [
    (dict(strike=0.0), "strike must be > 0"), (dict(spot=0.0), "spot must be > 0"),
    (dict(vol=math.inf), "vol must be > 0 and finite"),
    (dict(maturity=math.inf), "maturity must be > 0 and finite"),
    (dict(rate=math.nan), "rate must be a finite"),
])
def test_inputs_outside_the_domain_are_refused_clearly(kw, match):
    args = dict(spot=100.0, strike=100.0, rate=0.05, vol=0.2, maturity=1.0)
    args.update(kw)
    for kind in KINDS:
        with pytest.raises(ValueError, match=match):
            fi.black_scholes(kind, **args)


@pytest.mark.parametrize("T", [1e6, 1e300])
def test_long_maturity_limits(T):
    """T -> inf at r > 0: the call tends to S (the strike is discounted
    away and d1 -> inf), the put and the digitals to 0."""
    for kind, lim in (("call", 100.0), ("put", 0.0), ("digital_call", 0.0),
                      ("digital_put", 0.0)):
        bs = fi.black_scholes(kind, spot=100.0, strike=100.0, rate=0.05, vol=0.2, maturity=T)
        _finite_dict(bs)
        assert bs["price"] == pytest.approx(lim, rel=1e-12, abs=1e-300), (kind, bs)


def test_no_warnings_or_nan_over_a_log_grid_of_extremes():
    """Every combination of extreme inputs gives a NaN-free dict (no
    exception, no floating-point warning)."""
    import warnings
    vals = dict(spot=(1e-300, 1.0, 1e300), strike=(1e-300, 1.0, 1e300),
                rate=(-800.0, -1e-12, 0.0, 50.0, 800.0), vol=(1e-300, 1e-8, 1.0, 1e8),
                maturity=(1e-300, 1e-6, 1.0, 1e6))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for combo in itertools.product(*vals.values()):
            kw = dict(zip(vals, combo))
            for kind in KINDS:
                _finite_dict(fi.black_scholes(kind, **kw))
