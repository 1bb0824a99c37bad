"""mcscore.finance.greeks on payoffs of whole paths (Python blocks, C
callbacks, Payoff objects) and several correlated assets: every Greek against
closed forms (Black-Scholes with dividends, Margrabe's exchange option, the
geometric basket as a lognormal) or against an independent bump-and-revalue
with common random numbers, within 5 standard errors; calibration of the
standard errors; bad input."""
import ctypes
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
from scipy import LowLevelCallable, special

from mcscore import finance as fi

N = 300_000
TOL = 5.0


# ---------------------------------------------------------------------------
# independent exact values: closed-form prices and their central differences
# ---------------------------------------------------------------------------

def _bs_div(S, sig, r, T, K, q):
    """Black-Scholes call with a dividend yield (one asset)."""
    S, s, q = S[0], sig[0], q[0]
    sq = s * math.sqrt(T)
    d1 = (math.log(S / K) + (r - q + 0.5 * s * s) * T) / sq
    return S * math.exp(-q * T) * special.ndtr(d1) - K * math.exp(-r * T) * special.ndtr(d1 - sq)


def _margrabe(S, sig, r, T, rho, q):
    s = math.sqrt(sig[0] ** 2 + sig[1] ** 2 - 2 * rho * sig[0] * sig[1])
    d1 = (math.log(S[0] / S[1]) + (q[1] - q[0] + 0.5 * s * s) * T) / (s * math.sqrt(T))
    d2 = d1 - s * math.sqrt(T)
    return (S[0] * math.exp(-q[0] * T) * special.ndtr(d1)
            - S[1] * math.exp(-q[1] * T) * special.ndtr(d2))


def _geo_basket(S, sig, r, T, K, w, C, q):
    """Call on prod S_i(T)^w_i: log of it is normal."""
    S, sig, w, q = map(np.asarray, (S, sig, w, q))
    m = float(w @ (np.log(S) + (r - q - 0.5 * sig * sig) * T))
    v = float(T * (w * sig) @ C @ (w * sig))
    sd = math.sqrt(v)
    d2 = (m - math.log(K)) / sd
    return math.exp(-r * T) * (math.exp(m + 0.5 * v) * special.ndtr(d2 + sd)
                               - K * special.ndtr(d2))


def _exact(price, S, sig, r, T):
    """Price and Greeks (theta = -dV/dT) by central differences of a closed
    form: errors ~1e-7, far below the Monte Carlo errors."""
    S, sig = np.array(S, float), np.array(sig, float)
    d = S.size
    hs, hv, hr, ht = 1e-4 * S, 1e-5, 1e-5, 1e-5

    def p(dS=None, dv=None, dr=0.0, dT=0.0):
        return price(S + (0 if dS is None else dS), sig + (0 if dv is None else dv), r + dr,
                     T + dT)

    e = np.eye(d)
    gs = 1e-3 * S
    gamma = np.empty((d, d))
    for i in range(d):
        for j in range(d):
            a, b = gs[i] * e[i], gs[j] * e[j]
            gamma[i, j] = (p(a + b) - p(a - b) - p(b - a) + p(-a - b)) / (4 * gs[i] * gs[j])
    return dict(
        price=p(),
        delta=np.array([(p(hs[i] * e[i]) - p(-hs[i] * e[i])) / (2 * hs[i]) for i in range(d)]),
        vega=np.array([(p(dv=hv * e[i]) - p(dv=-hv * e[i])) / (2 * hv) for i in range(d)]),
        rho=(p(dr=hr) - p(dr=-hr)) / (2 * hr),
        theta=-(p(dT=ht) - p(dT=-ht)) / (2 * ht),
        gamma=gamma,
    )


def _close(g, exact, tol=TOL):
    """Every Greek within tol standard errors (an estimator that is exactly
    right with zero spread, e.g. a pathwise rho of 0, must match to 1e-9)."""
    zs = {}
    for k, v in exact.items():
        est, se = np.asarray(getattr(g, k), float), np.asarray(g.stderr[k], float)
        v = np.asarray(v, float)
        assert np.all(np.isfinite(est)) and np.all(np.isfinite(se)), (k, est, se)
        zero = se == 0
        assert np.all(np.abs(est - v)[zero] < 1e-9), (k, est, v)
        z = np.where(zero, 0.0, (est - v) / np.where(zero, 1.0, se))
        assert np.all(np.abs(z) < tol), (k, est, v, se, z)
        zs[k] = z
    return zs


# ---------------------------------------------------------------------------
# one asset: a payoff function against Black-Scholes with a dividend yield
# ---------------------------------------------------------------------------

ONE = dict(spot=100.0, rate=0.03, vol=0.25, maturity=0.75, dividend=0.02)
K1 = 105.0


def _call(p):
    return np.maximum(p[:, -1, 0] - K1, 0.0)


def _call_grad(p):
    g = np.zeros(p.shape)
    g[:, -1, 0] = p[:, -1, 0] > K1
    return g


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("method", ["lr", "pathwise"])
def test_one_asset_payoff_function_against_black_scholes(steps, method):
    g = fi.greeks(_call, payoff_grad=_call_grad, n=N, steps=steps, rng=21, method=method, **ONE)
    ex = _exact(lambda S, s, r, T: _bs_div(S, s, r, T, K1, [ONE["dividend"]]), [ONE["spot"]],
                [ONE["vol"]], ONE["rate"], ONE["maturity"])
    ex = {k: float(np.ravel(v)[0]) for k, v in ex.items()}
    _close(g, ex)
    assert isinstance(g.delta, float) and isinstance(g.gamma, float)
    assert set(g.alternatives) == {"lr", "pathwise"}
    if method == "pathwise":
        for k in ("delta", "vega", "rho", "theta", "gamma"):
            assert g.stderr[k] < g.alternatives["lr"][k][1]


def test_builtin_name_with_dividend_zero_agrees_with_the_fused_kernel():
    """The built-in "call" through the path engine (dividend=0) and through
    the fused kernel estimate the same Greeks (different paths)."""
    kw = dict(spot=100.0, strike=105.0, rate=0.03, vol=0.25, maturity=0.75)
    a = fi.greeks("call", n=N, rng=3, dividend=0.0, **kw)
    ref = fi.black_scholes("call", **kw)
    _close(a, {k: ref[k] for k in fi.GREEKS})
    assert isinstance(a, fi.PathGreeks)


# ---------------------------------------------------------------------------
# two assets: Margrabe's exchange option
# ---------------------------------------------------------------------------

EXCH = dict(spot=[100.0, 95.0], vol=[0.3, 0.2], dividend=[0.01, 0.03], rate=0.05,
            maturity=1.0)
RHO = 0.4


@pytest.mark.parametrize("steps", [1, 4])
@pytest.mark.parametrize("method", ["lr", "pathwise"])
def test_exchange_option_against_margrabe(steps, method):
    C = np.array([[1.0, RHO], [RHO, 1.0]])
    g = fi.greeks(fi.exchange(), correlation=C, n=N, steps=steps, rng=22, method=method, **EXCH)
    ex = _exact(lambda S, s, r, T: _margrabe(S, s, r, T, RHO, EXCH["dividend"]), EXCH["spot"],
                EXCH["vol"], EXCH["rate"], EXCH["maturity"])
    assert abs(ex["rho"]) < 1e-6                   # the exchange option ignores the rate
    _close(g, ex)
    assert g.delta.shape == (2,) and g.gamma.shape == (2, 2)
    assert np.array_equal(g.gamma, g.gamma.T) and g.gamma[0, 1] < 0   # cross-gamma


# ---------------------------------------------------------------------------
# three assets: the geometric basket, lognormal
# ---------------------------------------------------------------------------

GEO = dict(spot=[100.0, 90.0, 110.0], vol=[0.2, 0.3, 0.25], dividend=[0.0, 0.02, 0.01],
           rate=0.04, maturity=0.5)
CG = np.array([[1.0, 0.5, 0.2], [0.5, 1.0, -0.3], [0.2, -0.3, 1.0]])
WG = np.array([0.5, 0.3, 0.2])


@pytest.mark.parametrize("method", ["lr", "pathwise"])
def test_geometric_basket_against_lognormal_closed_form(method):
    g = fi.greeks(fi.geometric_basket_call(100.0, WG), correlation=CG, n=N, steps=2, rng=23,
                  method=method, **GEO)
    ex = _exact(lambda S, s, r, T: _geo_basket(S, s, r, T, 100.0, WG, CG, GEO["dividend"]),
                GEO["spot"], GEO["vol"], GEO["rate"], GEO["maturity"])
    _close(g, ex)


# ---------------------------------------------------------------------------
# no closed form: bump and revalue with common random numbers (numpy)
# ---------------------------------------------------------------------------

def _bump(payoff, spot, vol, q, C, r, T, steps, n, seed):
    """Independent finite-difference Greeks with common random numbers:
    (estimate, standard error) from per-path differences."""
    spot, vol, q = map(lambda a: np.asarray(a, float), (spot, vol, q))
    d = spot.size
    Z = np.random.default_rng(seed).standard_normal((n, steps, d))
    X = Z @ np.linalg.cholesky(C).T

    def values(S0=spot, sig=vol, rr=r, TT=T):
        dt = TT / steps
        inc = (rr - q - 0.5 * sig * sig) * dt + sig * math.sqrt(dt) * X
        paths = np.concatenate([np.broadcast_to(np.log(S0), (n, 1, d)),
                                np.log(S0) + np.cumsum(inc, axis=1)], axis=1)
        return math.exp(-rr * TT) * payoff(np.exp(paths))

    def est(y):
        return float(y.mean()), float(y.std(ddof=1) / math.sqrt(n))

    e = np.eye(d)
    hs, hv, h = 0.01 * spot, 1e-3, 1e-3
    out = {"price": est(values())}
    out["delta"] = [est((values(S0=spot + hs[i] * e[i]) - values(S0=spot - hs[i] * e[i]))
                        / (2 * hs[i])) for i in range(d)]
    out["vega"] = [est((values(sig=vol + hv * e[i]) - values(sig=vol - hv * e[i])) / (2 * hv))
                   for i in range(d)]
    out["rho"] = est((values(rr=r + h) - values(rr=r - h)) / (2 * h))
    out["theta"] = est(-(values(TT=T + h) - values(TT=T - h)) / (2 * h))
    gs = 0.05 * spot
    out["gamma_diag"] = [est((values(S0=spot + gs[i] * e[i]) - 2 * values()
                              + values(S0=spot - gs[i] * e[i])) / gs[i] ** 2) for i in range(d)]
    return out


def _against_bump(g, b):
    def z(est, se, ref):
        return (est - ref[0]) / math.hypot(se, ref[1])

    zs = [z(g.price, g.stderr["price"], b["price"]),
          z(g.rho, g.stderr["rho"], b["rho"]), z(g.theta, g.stderr["theta"], b["theta"])]
    for i in range(len(b["delta"])):
        zs += [z(g.delta[i], g.stderr["delta"][i], b["delta"][i]),
               z(g.vega[i], g.stderr["vega"][i], b["vega"][i]),
               z(g.gamma[i, i], g.stderr["gamma"][i, i], b["gamma_diag"][i])]
    assert max(abs(v) for v in zs) < TOL, zs
    return zs


BASK = dict(spot=[100.0, 80.0], vol=[0.25, 0.35], dividend=[0.01, 0.0], rate=0.03,
            maturity=1.0)
CB = np.array([[1.0, 0.6], [0.6, 1.0]])


@pytest.mark.parametrize("name, payoff", [
    ("basket_call", fi.basket_call(90.0, [0.5, 0.5])),
    ("spread_call", fi.spread_call(15.0)),
    ("best_of_call", fi.best_of_call(95.0)),
    ("worst_of_call", fi.worst_of_call(75.0)),
])
@pytest.mark.parametrize("method", ["lr", "pathwise"])
def test_two_asset_payoffs_against_bump_and_revalue(name, payoff, method):
    # the bump's own paths: a different seed, independent of the estimate
    b = _bump(payoff.fn, BASK["spot"], BASK["vol"], BASK["dividend"], CB, BASK["rate"],
              BASK["maturity"], 3, 400_000, seed=99)
    g = fi.greeks(payoff, correlation=CB, n=200_000, steps=3, rng=24, method=method, **BASK)
    _against_bump(g, b)


def test_path_dependent_barrier_basket_lr_against_bump():
    """A discontinuous, path-dependent payoff (a basket call knocked out when
    the basket reaches 130 on a date): likelihood ratio only."""
    def payoff(p):
        basket = p @ np.array([0.5, 0.5])
        alive = basket.max(axis=1) < 130.0
        return alive * np.maximum(basket[:, -1] - 90.0, 0.0)

    b = _bump(payoff, BASK["spot"], BASK["vol"], BASK["dividend"], CB, BASK["rate"],
              BASK["maturity"], 4, 400_000, seed=98)
    g = fi.greeks(payoff, correlation=CB, n=200_000, steps=4, rng=25, **BASK)
    _against_bump(g, b)
    with pytest.raises(ValueError, match="needs the payoff's derivative"):
        fi.greeks(payoff, correlation=CB, n=1000, steps=4, rng=25, method="pathwise", **BASK)


# ---------------------------------------------------------------------------
# standard errors, reproducibility
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["lr", "pathwise"])
def test_stderr_calibrated_exchange(method):
    """Over 200 small runs, mean z^2 ~ 1 for every Greek of the exchange
    option (rho excluded: exactly 0 with zero spread pathwise)."""
    C = np.array([[1.0, RHO], [RHO, 1.0]])
    ex = _exact(lambda S, s, r, T: _margrabe(S, s, r, T, RHO, EXCH["dividend"]), EXCH["spot"],
                EXCH["vol"], EXCH["rate"], EXCH["maturity"])
    ex.pop("rho")
    z2 = []
    for child in np.random.SeedSequence(4).spawn(200):
        g = fi.greeks(fi.exchange(), correlation=C, n=4000, steps=1, rng=child, method=method,
                      **EXCH)
        z2.append(np.concatenate([np.ravel(v) ** 2 for v in g.z_scores(ex).values()]))
    m = np.mean(z2, axis=0)
    assert np.all(np.abs(m - 1.0) < 0.4), m


def test_deterministic_and_block_layout():
    kw = dict(correlation=CB, n=20_000, steps=2, **BASK)
    p = fi.basket_call(90.0, [0.5, 0.5])
    a = fi.greeks(p, rng=5, **kw)
    b = fi.greeks(p, rng=5, **kw)
    c = fi.greeks(p, rng=6, **kw)
    for k in fi.PATH_GREEKS:
        assert np.array_equal(getattr(a, k), getattr(b, k))
    assert a.price != c.price
    assert a.n == 20_000 and "theta" in repr(a)


# ---------------------------------------------------------------------------
# C callbacks
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clib(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    d = tmp_path_factory.mktemp("payoffs")
    src = d / "payoffs.c"
    src.write_text(
        r"""
        #include <stdint.h>
        typedef struct { double strike; intptr_t assets; } basket_t;
        /* equal-weight basket call on the last date of a time-major path */
        double basket(double *x, intptr_t d, void *user) {
            basket_t *b = (basket_t *)user;
            double s = 0.0;
            for (intptr_t i = d - b->assets; i < d; i++) s += x[i];
            s = s / b->assets - b->strike;
            return s > 0.0 ? s : 0.0;
        }
        int refuse(double *x, intptr_t d, double *out, void *user) {
            if (x[d - 1] > 150.0) return 3;
            *out = x[d - 1];
            return 0;
        }
        """)
    lib = d / ("payoffs.dll" if sys.platform == "win32" else "payoffs.so")
    subprocess.run([cc, "-O2", "-shared", "-fPIC", str(src), "-o", str(lib)], check=True)
    return ctypes.CDLL(str(lib))


class _Basket(ctypes.Structure):
    _fields_ = [("strike", ctypes.c_double), ("assets", ctypes.c_ssize_t)]


P = ctypes.POINTER(ctypes.c_double)


def test_lowlevelcallable_payoff_matches_python(clib):
    fn = clib.basket
    fn.restype, fn.argtypes = ctypes.c_double, [P, ctypes.c_ssize_t, ctypes.c_void_p]
    data = _Basket(90.0, 2)
    llc = LowLevelCallable(fn, user_data=ctypes.cast(ctypes.pointer(data), ctypes.c_void_p))
    kw = dict(correlation=CB, n=50_000, steps=3, rng=8, **BASK)
    a = fi.greeks(llc, **kw)
    b = fi.greeks(lambda p: np.maximum(p[:, -1, :].mean(axis=1) - 90.0, 0.0), **kw)
    for k in fi.PATH_GREEKS:
        np.testing.assert_allclose(getattr(a, k), getattr(b, k), rtol=1e-12, atol=1e-14)


def test_lowlevelcallable_error_names_the_path(clib):
    fn = clib.refuse
    fn.restype, fn.argtypes = ctypes.c_int, [P, ctypes.c_ssize_t, P, ctypes.c_void_p]
    with pytest.raises(ValueError, match="reported an error at path"):
        fi.greeks(LowLevelCallable(fn), n=10_000, rng=0, **dict(ONE, vol=0.5))


def test_numba_cfunc_payoff():
    numba = pytest.importorskip("numba")
    from numba import types

    @numba.cfunc(types.float64(types.CPointer(types.float64), types.intp))
    def last_call(x, d):
        v = x[d - 1] - K1
        return v if v > 0.0 else 0.0

    kw = dict(n=20_000, steps=2, rng=4, **ONE)
    a = fi.greeks(LowLevelCallable(last_call.ctypes), **kw)
    b = fi.greeks(_call, **kw)
    for k in fi.PATH_GREEKS:
        assert getattr(a, k) == getattr(b, k)


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(correlation=[[1.0, 0.5], [0.4, 1.0]]), ValueError, "correlation must be symmetric"),
    (dict(correlation=[[1.0, 1.0], [1.0, 1.0]]), ValueError,
     "correlation must be positive definite"),
    (dict(correlation=[[1.0, 2.0], [2.0, 1.0]]), ValueError,
     "correlation must be positive definite"),
    (dict(correlation=[[2.0, 0.0], [0.0, 1.0]]), ValueError, "correlation must have a unit"),
    (dict(correlation=np.eye(3)), ValueError, "correlation must be a 2 x 2"),
    (dict(correlation=[[1.0, np.nan], [np.nan, 1.0]]), ValueError, "correlation must be finite"),
    (dict(vol=[0.2, 0.3, 0.4]), ValueError, "vol must be a scalar or 2 values"),
    (dict(vol=[0.2, -0.3]), ValueError, "vol must be > 0"),
    (dict(spot=[100.0, 0.0]), ValueError, "spot must be > 0"),
    (dict(spot=[[100.0, 90.0]]), ValueError, "spot must be a scalar or one value"),
    (dict(dividend=[0.0, np.inf]), ValueError, "dividend must be"),
    (dict(maturity=0.0), ValueError, "maturity must be > 0"),
    (dict(rate=[0.1, 0.2]), TypeError, "rate must be a scalar"),
    (dict(method="pathwise", payoff=lambda p: p[:, -1, 0]), ValueError,
     "needs the payoff's derivative"),
    (dict(payoff=lambda p: p[:, -1]), ValueError, r"payoff returned shape \(\d+, 2\)"),
    (dict(payoff=lambda p: np.full(len(p), np.nan)), ValueError, "payoff returned nan"),
    (dict(payoff=lambda p: np.zeros(len(p), complex)), TypeError, "payoff returned dtype"),
    (dict(payoff=fi.exchange(), payoff_grad=lambda p: p[:, -1]), ValueError,
     "payoff_grad returned shape"),
    (dict(payoff=fi.basket_call(90.0, [1.0, 1.0, 1.0])), ValueError,
     "is for 3 asset"),
    (dict(payoff=42), ValueError, "payoff must be one of"),
    (dict(payoff=None), ValueError, "payoff must be one of"),
    (dict(payoff="straddle"), ValueError, "payoff must be one of"),
    (dict(payoff="call"), TypeError, "missing required keyword argument 'strike'"),
    (dict(vol=None), TypeError, "missing required keyword argument.*'vol'"),
    (dict(rate=None), TypeError, "missing required keyword argument.*'rate'"),
    (dict(client=object()), ValueError, "client"),
    (dict(payoff_grad=3), TypeError, "payoff_grad must be callable"),
])
def test_errors(kwargs, exc, match):
    args = dict(BASK, payoff=fi.exchange(), n=1000, rng=0)
    args.update(kwargs)
    payoff = args.pop("payoff")
    with pytest.raises(exc, match=match):
        fi.greeks(payoff, **args)


def test_payoff_cannot_write_the_paths():
    def sneaky(p):
        p[:] = 0.0
        return p[:, -1, 0]

    with pytest.raises(ValueError, match="read-only"):
        fi.greeks(sneaky, n=1000, rng=0, **ONE)


def test_factories_reject_bad_weights():
    with pytest.raises(ValueError, match="weights of basket_call"):
        fi.basket_call(100.0, [])
    with pytest.raises(ValueError, match="weights of basket_call"):
        fi.basket_call(100.0, [1.0, np.nan])


def test_desk_example_quick(capsys):
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "examples", "desk.py")
    spec = importlib.util.spec_from_file_location("example_desk", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main(["--quick"])
    assert abs(out["z"]) < TOL
    g = out["worst_of"]
    assert g.price > 0 and g.gamma.shape == (3, 3)
    assert np.all(np.isfinite(g.gamma)) and np.all(g.stderr["gamma"] > 0)
    assert "exchange option" in capsys.readouterr().out


# ---------------------------------------------------------------------------
# Heston (log-Euler, full truncation) against the semi-analytic price
# ---------------------------------------------------------------------------

HESTON = fi.Heston(v0=0.04, kappa=2.0, theta=0.04, xi=0.3, rho=-0.7)   # Feller holds
HKW = dict(spot=100.0, rate=0.03, maturity=1.0, dividend=0.01)


def test_heston_semi_analytic_tends_to_black_scholes():
    """With rho = 0 and v0 = theta, the Heston price differs from
    Black-Scholes at vol sqrt(theta) by O(xi^2): check the limit and the rate."""
    bs = fi.black_scholes("call", spot=100.0 * math.exp(-0.01), strike=105.0, rate=0.03,
                          vol=0.2, maturity=1.0)            # dividend via the spot
    diffs = []
    for xi in (1e-2, 3e-3):
        h = fi.heston_call(strike=105.0, model=fi.Heston(v0=0.04, kappa=2.0, theta=0.04, xi=xi,
                                                         rho=0.0), **HKW)
        diffs.append(h["price"] - bs["price"])
        assert h["delta"] == pytest.approx(math.exp(-0.01) * bs["delta"], abs=1e-5)
        assert h["gamma"] == pytest.approx(math.exp(-0.02) * bs["gamma"], abs=5e-6)
    assert abs(diffs[1]) < 5e-5
    assert 9.0 < diffs[0] / diffs[1] < 13.5          # (1e-2 / 3e-3)^2 = 11.1


@pytest.mark.parametrize("method", ["lr", "pathwise"])
def test_heston_call_against_semi_analytic(method):
    ex = fi.heston_call(strike=100.0, model=HESTON, **HKW)
    g = fi.greeks(fi.basket_call(100.0, [1.0]), model=HESTON, steps=50, n=N, rng=31,
                  method=method, **HKW)
    # the scheme's O(dt) bias is below the Monte Carlo error here (measured:
    # |error| < 1.5 se at 25, 50 and 100 steps with 4e5 paths)
    _close(g, ex)
    assert isinstance(g, fi.SpotGreeks) and set(g.as_dict()) == {"price", "delta", "gamma"}


def test_heston_digital_lr_against_semi_analytic_strike_difference():
    """A digital call is -dC/dK: its price and likelihood-ratio delta against
    central differences in the strike of the semi-analytic call."""
    K, h = 100.0, 0.05
    c2 = fi.heston_call(strike=K + h, model=HESTON, **HKW)
    c0 = fi.heston_call(strike=K - h, model=HESTON, **HKW)
    ex = {k: (c0[k] - c2[k]) / (2 * h) for k in ("price", "delta")}
    g = fi.greeks(lambda p: (p[:, -1, 0] > K).astype(float), model=HESTON, steps=20, n=N,
                  rng=32, **HKW)
    _close(g, ex)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(vol=0.2), ValueError, "vol and correlation do not apply"),
    (dict(spot=[100.0, 90.0]), ValueError, "a scalar for model"),
    (dict(model="heston"), TypeError, "model must be None"),
])
def test_heston_errors(kwargs, exc, match):
    args = dict(HKW, model=HESTON, n=1000, rng=0)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        fi.greeks(fi.basket_call(100.0, [1.0]), **args)


@pytest.mark.parametrize("kwargs, match", [
    (dict(rho=1.0), "rho must be in"), (dict(v0=0.0), "v0 must be > 0"),
    (dict(xi=-1.0), "xi must be > 0"), (dict(kappa=np.nan), "kappa must be"),
])
def test_heston_parameter_errors(kwargs, match):
    p = dict(v0=0.04, kappa=2.0, theta=0.04, xi=0.3, rho=-0.7)
    p.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fi.Heston(**p)


# ---------------------------------------------------------------------------
# one-factor diffusions by Euler steps
# ---------------------------------------------------------------------------

BS1 = dict(spot=100.0, strike=105.0, rate=0.03, vol=0.25, maturity=0.75)


def _bs_diffusion_exact():
    ref = fi.black_scholes("call", **BS1)
    # theta "r" moves the drift only (the discount uses rate): rho + T price
    return dict(price=ref["price"], delta=ref["delta"], gamma=ref["gamma"], sigma=ref["vega"],
                r=ref["rho"] + BS1["maturity"] * ref["price"])


def _bs_call(p):
    return np.maximum(p[:, -1, 0] - BS1["strike"], 0.0)


@pytest.mark.parametrize("steps", [1, 4])
def test_log_diffusion_gbm_is_black_scholes(steps):
    """GBM written as a diffusion of log S: Euler in log S is exact, so the
    sums of per-step Gaussian scores give the Black-Scholes Greeks."""
    m = fi.Diffusion(lambda t, x, r, sigma: r - 0.5 * sigma * sigma,
                     lambda t, x, r, sigma: sigma, dict(r=0.03, sigma=0.25), log=True)
    g = fi.greeks(_bs_call, spot=100.0, rate=0.03, maturity=0.75, model=m, steps=steps, n=N,
                  rng=41)
    _close(g, _bs_diffusion_exact())
    assert set(g.as_dict()) == {"price", "delta", "gamma", "r", "sigma"}


def test_euler_diffusion_of_s_against_black_scholes():
    """GBM as a diffusion of S itself (Euler, 50 steps: weak bias O(dt),
    below the Monte Carlo error here)."""
    m = fi.Diffusion(lambda t, s, r, sigma: r * s, lambda t, s, r, sigma: sigma * np.abs(s),
                     dict(r=0.03, sigma=0.25))
    g = fi.greeks(_bs_call, spot=100.0, rate=0.03, maturity=0.75, model=m, steps=50, n=N,
                  rng=42)
    _close(g, _bs_diffusion_exact())


def test_local_vol_against_bump_and_revalue():
    """A local volatility sigma(t, S) = s0 + s1 (S/100 - 1)^2 (no closed form):
    LR delta, gamma and parameter Greeks against central bumps of the price
    with common random numbers (the same seed: the same normals)."""
    def model(**p):
        return fi.Diffusion(lambda t, x, s0, s1: 0.03 - 0.5 * (s0 + s1 * (np.exp(x) / 100 - 1) ** 2) ** 2,
                            lambda t, x, s0, s1: s0 + s1 * (np.exp(x) / 100 - 1) ** 2,
                            dict(dict(s0=0.2, s1=0.5), **p), log=True)

    kw = dict(rate=0.03, maturity=0.75, steps=8, rng=43)
    g = fi.greeks(_bs_call, spot=100.0, model=model(), n=N, **kw)

    def price(spot=100.0, **p):
        return fi.greeks(_bs_call, spot=spot, model=model(**p), n=N, **kw).price

    h = 0.5
    bump = dict(delta=(price(100 + h) - price(100 - h)) / (2 * h),
                gamma=(price(100 + 4 * h) - 2 * g.price + price(100 - 4 * h)) / (4 * h) ** 2,
                s0=(price(s0=0.201) - price(s0=0.199)) / 0.002,
                s1=(price(s1=0.51) - price(s1=0.49)) / 0.02)
    # the bumps' own noise (common random numbers) is far below the LR errors
    _close(g, bump)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(model=fi.Diffusion(lambda t, s: 0.0 * s, lambda t, s: s - 100.0)), ValueError,
     "diffusion.*must be finite and > 0"),
    (dict(model=fi.Diffusion(lambda t, s: s[:2], lambda t, s: 0.2 * s)), ValueError,
     "drift returned shape"),
    (dict(method="pathwise", payoff_grad=lambda p: np.ones(p.shape)), ValueError,
     "not supported for a Diffusion"),
    (dict(dividend=0.01), ValueError, "dividend does not apply"),
])
def test_diffusion_errors(kwargs, exc, match):
    args = dict(spot=100.0, rate=0.03, maturity=0.75, n=1000, rng=0, steps=2,
                model=fi.Diffusion(lambda t, s: 0.03 * s, lambda t, s: 0.2 * s))
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        fi.greeks(_bs_call, **args)


@pytest.mark.parametrize("args, exc, match", [
    ((1.0, lambda t, x: x), TypeError, "drift must be callable"),
    ((lambda t, x: x, lambda t, x: x, {"delta": 1.0}), ValueError, "params names"),
    ((lambda t, x: x, lambda t, x: x, {"k": [1.0, 2.0]}), TypeError, "must be a scalar"),
    ((lambda t, x: x, lambda t, x: x, {"k": np.nan}), ValueError, "k must be"),
])
def test_diffusion_constructor_errors(args, exc, match):
    with pytest.raises(exc, match=match):
        fi.Diffusion(*args)
