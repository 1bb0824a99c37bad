"""A grid in one pass: strikes and expiries on the time grid priced from the
same paths by mcscore.finance.greeks, every Greek (delta, gamma, vega, rho,
theta, dividend) with its standard error, for built-in names and user
payoffs; each against central differences of an independent closed form
within 5 standard errors; standard errors calibrated (mean z^2 over 200
repeats); bad grids refused."""
import math

import numpy as np
import pytest
from scipy import special

from mcscore import finance as fi

TOL = 5.0
MKT = dict(spot=100.0, rate=0.03, vol=0.25, dividend=0.02)
GRID_T = 1.0
STEPS = 4
EXPIRIES = [0.5, 1.0]
STRIKES = [90.0, 100.0, 115.0]


def _bs(kind, S, sig, r, T, K, q):
    """Black-Scholes with a dividend yield: call, put, digitals (pays 1)."""
    sq = sig * math.sqrt(T)
    d1 = (math.log(S / K) + (r - q + 0.5 * sig * sig) * T) / sq
    d2 = d1 - sq
    if kind == "call":
        return S * math.exp(-q * T) * special.ndtr(d1) - K * math.exp(-r * T) * special.ndtr(d2)
    if kind == "put":
        return K * math.exp(-r * T) * special.ndtr(-d2) - S * math.exp(-q * T) * special.ndtr(-d1)
    if kind == "digital_call":
        return math.exp(-r * T) * special.ndtr(d2)
    return math.exp(-r * T) * special.ndtr(-d2)


def _geo_asian(S, sig, r, T, K, q, m):
    """Geometric average over the m dates T/m, ..., T: lognormal."""
    dt = T / m
    nu = math.log(S) + (r - q - 0.5 * sig * sig) * dt * (m + 1) / 2
    v = sig * math.sqrt(dt * (m + 1) * (2 * m + 1) / (6 * m))
    d2 = (nu - math.log(K)) / v
    return math.exp(-r * T) * (math.exp(nu + 0.5 * v * v) * special.ndtr(d2 + v)
                               - K * special.ndtr(d2))


def _fd(price, S, sig, r, T, q):
    """Price and the six Greeks of price(S, sig, r, T, q) by central
    differences (theta = -dV/dT): errors ~1e-7, far below Monte Carlo's."""
    h = 1e-5
    hs, hg = 1e-4 * S, 1e-2 * S
    p0 = price(S, sig, r, T, q)
    return dict(
        price=p0,
        delta=(price(S + hs, sig, r, T, q) - price(S - hs, sig, r, T, q)) / (2 * hs),
        gamma=(price(S + hg, sig, r, T, q) - 2 * p0 + price(S - hg, sig, r, T, q)) / hg ** 2,
        vega=(price(S, sig + h, r, T, q) - price(S, sig - h, r, T, q)) / (2 * h),
        rho=(price(S, sig, r + h, T, q) - price(S, sig, r - h, T, q)) / (2 * h),
        theta=-(price(S, sig, r, T + h, q) - price(S, sig, r, T - h, q)) / (2 * h),
        dividend=(price(S, sig, r, T, q + h) - price(S, sig, r, T, q - h)) / (2 * h),
    )


def _z(g, name, exact):
    est, se = np.asarray(getattr(g, name), float), np.asarray(g.stderr[name], float)
    assert est.shape == np.shape(exact) == se.shape, (name, est.shape, np.shape(exact))
    assert np.all(se > 0) and np.all(np.isfinite(est))
    return (est - exact) / se


@pytest.mark.parametrize("kind, method", [("call", "lr"), ("call", "pathwise"),
                                          ("put", "pathwise"), ("digital_call", "lr"),
                                          ("digital_put", "lr")])
def test_builtin_strike_and_expiry_grid_against_black_scholes(kind, method):
    g = fi.greeks(kind, strikes=STRIKES, expiries=EXPIRIES, maturity=GRID_T, steps=STEPS,
                  n=200_000, rng=11, method=method, **MKT)
    assert isinstance(g, fi.PathGreeks) and g.info["grid"] == (2, 3)
    for name in fi.PATH_GREEKS:
        exact = np.array([[_fd(lambda S, s, r, T, q: _bs(kind, S, s, r, T, K, q), MKT["spot"],
                               MKT["vol"], MKT["rate"], T, MKT["dividend"])[name]
                           for K in STRIKES] for T in EXPIRIES])
        z = _z(g, name, exact)
        assert np.all(np.abs(z) < TOL), (name, z)


@pytest.mark.parametrize("method", ["lr", "pathwise"])
def test_geometric_asian_expiry_grid(method):
    """Expiry after k of the grid's dates: the average over those k dates,
    the lognormal closed form with k dates and maturity k T / steps."""
    kw = dict(MKT, dividend=0.0)
    g = fi.greeks("geometric_asian_call", strikes=[95.0, 105.0], expiries=[0.25, 0.75, 1.0],
                  maturity=GRID_T, steps=STEPS, n=200_000, rng=12, method=method, **kw)
    for name in fi.PATH_GREEKS:
        exact = np.array([[_fd(lambda S, s, r, T, q: _geo_asian(S, s, r, T, K, q, k),
                               kw["spot"], kw["vol"], kw["rate"], T, 0.0)[name]
                           for K in (95.0, 105.0)] for T, k in ((0.25, 1), (0.75, 3), (1.0, 4))])
        z = _z(g, name, exact)
        assert np.all(np.abs(z) < TOL), (name, z)


def _margrabe(S1, S2, s1, s2, rho, T, q1, q2):
    s = math.sqrt(s1 * s1 + s2 * s2 - 2 * rho * s1 * s2)
    d1 = (math.log(S1 / S2) + (q2 - q1 + 0.5 * s * s) * T) / (s * math.sqrt(T))
    return (S1 * math.exp(-q1 * T) * special.ndtr(d1)
            - S2 * math.exp(-q2 * T) * special.ndtr(d1 - s * math.sqrt(T)))


TWO = dict(spot=[100.0, 95.0], vol=[0.3, 0.2], dividend=[0.01, 0.03], rate=0.05)
RHO = 0.4
CORR = np.array([[1.0, RHO], [RHO, 1.0]])


def _margrabe_greeks(T):
    """Exchange option Greeks per asset by central differences."""
    S, sig, q = map(np.array, (TWO["spot"], TWO["vol"], TWO["dividend"]))

    def p(S=S, sig=sig, q=q, T=T, r=TWO["rate"]):
        return _margrabe(S[0], S[1], sig[0], sig[1], RHO, T, q[0], q[1])

    e, h = np.eye(2), 1e-5
    hs, hg = 1e-4 * S, 1e-3 * S
    gam = np.array([[(p(S=S + hg[i] * e[i] + hg[j] * e[j]) - p(S=S + hg[i] * e[i] - hg[j] * e[j])
                      - p(S=S - hg[i] * e[i] + hg[j] * e[j]) + p(S=S - hg[i] * e[i] - hg[j] * e[j]))
                     / (4 * hg[i] * hg[j]) for j in range(2)] for i in range(2)])
    return dict(
        price=p(),
        delta=[(p(S=S + hs[i] * e[i]) - p(S=S - hs[i] * e[i])) / (2 * hs[i]) for i in range(2)],
        vega=[(p(sig=sig + h * e[i]) - p(sig=sig - h * e[i])) / (2 * h) for i in range(2)],
        dividend=[(p(q=q + h * e[i]) - p(q=q - h * e[i])) / (2 * h) for i in range(2)],
        rho=0.0 * p(), theta=-(p(T=T + h) - p(T=T - h)) / (2 * h), gamma=gam)


def test_user_payoff_expiry_grid_two_assets():
    """A plain payoff function returning (m, 3): the exchange option at
    each of three expiries on the time grid (declared by expiries=)."""
    ks = (1, 2, 4)

    def payoff(p):
        return np.maximum(p[:, ks, 0] - p[:, ks, 1], 0.0)

    g = fi.greeks(payoff, expiries=[0.25, 0.5, 1.0], correlation=CORR, maturity=1.0, steps=4,
                  n=200_000, rng=13, **TWO)
    assert g.delta.shape == (3, 2) and g.gamma.shape == (3, 2, 2) and g.price.shape == (3,)
    for name in fi.PATH_GREEKS:
        exact = np.array([_margrabe_greeks(T)[name] for T in (0.25, 0.5, 1.0)])
        if name == "rho":           # exactly 0: its LR estimator is not (spread ~ se)
            exact = np.zeros(3)
        z = _z(g, name, exact)
        assert np.all(np.abs(z) < TOL), (name, z)


def test_payoff_with_strike_axis_and_gradient():
    """A Payoff declaring grid=(3,): the basket of a geometric average with
    three strikes, pathwise with its gradient of shape (m, 3, steps+1, d)."""
    w = np.array([0.6, 0.4])
    strikes = np.array([85.0, 95.0, 110.0])

    def fn(p):
        b = np.exp(np.log(p[:, -1, :]) @ w)
        return np.maximum(b[:, None] - strikes, 0.0)

    def grad(p):
        b = np.exp(np.log(p[:, -1, :]) @ w)
        g = np.zeros((len(p), 3) + p.shape[1:])
        g[:, :, -1, :] = (b[:, None] > strikes)[:, :, None] * (b[:, None] * w / p[:, -1, :])[:,
                                                                                               None]
        return g

    pay = fi.Payoff(fn, grad, grid=(3,), assets=2)
    kw = dict(correlation=CORR, maturity=0.5, steps=2, n=200_000, rng=14, **TWO)
    for method in ("lr", "pathwise"):
        g = fi.greeks(pay, method=method, **kw)
        S, sig, q = map(np.array, (TWO["spot"], TWO["vol"], TWO["dividend"]))
        # the geometric basket is lognormal: a one-asset Black-Scholes call on
        # an asset with spot prod S^w, vol s_b and yield q_b
        sb = math.sqrt((w * sig) @ CORR @ (w * sig))

        def price(S=S, sig=sig, q=q, r=TWO["rate"], T=0.5, K=100.0):
            sb = math.sqrt((w * sig) @ CORR @ (w * sig))
            qb = w @ (q + 0.5 * sig * sig) - 0.5 * sb * sb
            return _bs("call", float(np.exp(np.log(S) @ w)), sb, r, T, K, qb)

        assert sb > 0
        for c, K in enumerate(strikes):
            h = 1e-5
            e = np.eye(2)
            ex = dict(
                price=price(K=K),
                delta=[(price(S=S + 1e-3 * e[i], K=K) - price(S=S - 1e-3 * e[i], K=K)) / 2e-3
                       for i in range(2)],
                vega=[(price(sig=sig + h * e[i], K=K) - price(sig=sig - h * e[i], K=K)) / (2 * h)
                      for i in range(2)],
                dividend=[(price(q=q + h * e[i], K=K) - price(q=q - h * e[i], K=K)) / (2 * h)
                          for i in range(2)],
                rho=(price(r=TWO["rate"] + h, K=K) - price(r=TWO["rate"] - h, K=K)) / (2 * h),
                theta=-(price(T=0.5 + h, K=K) - price(T=0.5 - h, K=K)) / (2 * h))
            for name, v in ex.items():
                z = (np.asarray(getattr(g, name))[c] - np.asarray(v)) / np.asarray(
                    g.stderr[name])[c]
                assert np.all(np.abs(z) < TOL), (method, c, name, z)


def test_grid_column_is_the_single_payoff_bit_for_bit():
    """Column c of a strike grid (likelihood ratio) is the same estimate, to
    the bit, as the single payoff at that strike on the same paths."""
    kw = dict(maturity=1.0, steps=3, n=30_000, rng=15, **MKT)
    g = fi.greeks("call", strikes=STRIKES, **kw)
    for c, K in enumerate(STRIKES):
        one = fi.greeks(lambda p, K=K: np.maximum(p[:, -1, 0] - K, 0.0), **kw)
        for name in fi.PATH_GREEKS:
            assert np.asarray(getattr(g, name))[c] == getattr(one, name), name
            assert np.asarray(g.stderr[name])[c] == one.stderr[name], name


def test_up_and_out_with_dividend_through_the_path_engine():
    """up_and_out_call with a dividend (zero here, so the quadrature
    reference applies) has theta and dividend sensitivities too."""
    kw = dict(spot=100.0, strike=100.0, rate=0.03, vol=0.25, maturity=1.0, steps=2,
              barrier=130.0)
    g = fi.greeks("up_and_out_call", dividend=0.0, n=200_000, rng=16, **kw)
    ref = fi.reference("up_and_out_call", **kw)
    for name in ("price", "delta", "vega", "rho", "gamma"):
        assert abs(g.z_scores({name: ref[name]})[name]) < TOL, name
    # theta and the dividend sensitivity against central differences of the
    # quadrature price: a yield q moves the drift to r - q and leaves the
    # discount at r, so price(q) = e^{-qT} x (quadrature price at rate r - q)
    from mcscore.finance.closed_forms import _up_and_out_price

    def p(T=1.0, q=0.0):
        return math.exp(-q * T) * _up_and_out_price(100.0, 100.0, 0.03 - q, 0.25, T, 2, 130.0)

    h = 1e-5
    theta = -(p(T=1.0 + h) - p(T=1.0 - h)) / (2 * h)
    div = (p(q=h) - p(q=-h)) / (2 * h)
    assert abs((g.theta - theta) / g.stderr["theta"]) < TOL
    assert abs((g.dividend - div) / g.stderr["dividend"]) < TOL


# ---------------------------------------------------------------------------
# standard errors calibrated
# ---------------------------------------------------------------------------

def test_stderr_calibrated_grid():
    """Over 200 small runs, mean z^2 of every Greek of every grid column
    within 5 sqrt(2/200) of 1 (the new theta and dividend sensitivities,
    and the grid's expiries, included)."""
    kw = dict(strikes=[95.0, 110.0], expiries=[0.5, 1.0], maturity=1.0, steps=2, n=2000,
              **MKT)
    exact = {name: np.array([[_fd(lambda S, s, r, T, q: _bs("call", S, s, r, T, K, q),
                                  MKT["spot"], MKT["vol"], MKT["rate"], T,
                                  MKT["dividend"])[name] for K in (95.0, 110.0)]
                             for T in (0.5, 1.0)]) for name in fi.PATH_GREEKS}
    for method in ("lr", "pathwise"):
        z2 = []
        for child in np.random.SeedSequence(8).spawn(200):
            g = fi.greeks("call", rng=child, method=method, **kw)
            z2.append(np.concatenate([np.ravel(v) ** 2 for v in g.z_scores(exact).values()]))
        m = np.mean(z2, axis=0)
        assert np.all(np.abs(m - 1.0) < 5 * math.sqrt(2 / 200)), (method, m)


# ---------------------------------------------------------------------------
# bad grids
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(expiries=[0.3]), ValueError, "expiries must lie on the time grid"),
    (dict(expiries=[0.0]), ValueError, "expiries must lie on the time grid"),
    (dict(expiries=[1.5]), ValueError, "expiries must lie on the time grid"),
    (dict(expiries=[np.nan]), ValueError, "expiries must be a non-empty array of finite"),
    (dict(strikes=[[90.0, 100.0]]), ValueError, "strikes must be a non-empty 1-D"),
    (dict(strikes=[]), ValueError, "strikes must be a non-empty 1-D"),
    (dict(strikes=[90.0, -1.0]), ValueError, "strike must be > 0"),
    (dict(strikes=[90.0], strike=90.0), ValueError, "strike .* or strikes .*, not both"),
    (dict(payoff=lambda p: p[:, -1, 0], strikes=[90.0]), ValueError,
     "strikes .* applies to the built-in"),
    (dict(payoff=lambda p: p[:, -2:, 0], expiries=[0.5, 0.75, 1.0]), ValueError,
     r"payoff returned shape \(\d+, 2\) instead of \(\d+, 3\)"),
    (dict(payoff=fi.Payoff(lambda p: p[:, 1:, 0], grid=(4,)), expiries=[0.5, 1.0]), ValueError,
     "do not broadcast to the payoff's grid"),
    (dict(model=fi.Heston(v0=0.04, kappa=1.0, theta=0.04, xi=0.3, rho=-0.5), vol=None,
          dividend=None, expiries=[1.0]), ValueError, "expiries apply to geometric Brownian"),
])
def test_grid_errors(kwargs, exc, match):
    args = dict(MKT, payoff="call", strike=None, maturity=1.0, steps=4, n=1000, rng=0)
    if "strikes" not in kwargs and isinstance(kwargs.get("payoff", "call"), str):
        args["strike"] = 100.0
    args.update(kwargs)
    payoff = args.pop("payoff")
    with pytest.raises(exc, match=match):
        fi.greeks(payoff, **args)


def test_payoff_grid_declaration_errors():
    with pytest.raises(ValueError, match="grid must be a tuple of positive ints"):
        fi.Payoff(lambda p: p[:, -1, 0], grid=(0,))
    with pytest.raises(ValueError, match="grid must be a tuple of positive ints"):
        fi.Payoff(lambda p: p[:, -1, 0], grid=(2.5,))


# ---------------------------------------------------------------------------
# the parallel path engine
# ---------------------------------------------------------------------------

def test_parallel_engine_bit_identical_over_threads():
    """Every estimate and standard error of a grid (pathwise, with the
    mixed gamma and the LR alternatives) is the same to the bit for 1, 2
    and 3 threads, and for several rounds of blocks."""
    kw = dict(expiries=[0.5, 1.0], correlation=CORR, maturity=1.0, steps=4, n=20_000, rng=17,
              n_streams=16, block_size=300, **TWO)

    def payoff(p):
        return np.maximum(p[:, (2, 4), 0] - p[:, (2, 4), 1] - 2.0, 0.0)

    def grad(p):
        g = np.zeros((len(p), 2) + p.shape[1:])
        for c, k in enumerate((2, 4)):
            on = p[:, k, 0] - p[:, k, 1] > 2.0
            g[:, c, k, 0], g[:, c, k, 1] = on, -1.0 * on
        return g

    runs = [fi.greeks(payoff, payoff_grad=grad, method="pathwise", n_threads=t, **kw)
            for t in (1, 2, 3)]
    for g in runs[1:]:
        for name in fi.PATH_GREEKS:
            assert np.array_equal(getattr(g, name), getattr(runs[0], name)), name
            assert np.array_equal(g.stderr[name], runs[0].stderr[name]), name
            assert np.array_equal(g.alternatives["lr"][name][0],
                                  runs[0].alternatives["lr"][name][0]), name


def test_terminal_payoff_sees_only_its_dates():
    """Payoff(terminal=True): S is formed only at the expiries; reading
    another date gives NaN, which is refused, not averaged."""
    ok = fi.Payoff(lambda p: np.maximum(p[:, 2, 0] - 100.0, 0.0), terminal=True)
    g = fi.greeks(ok, expiries=0.5, maturity=1.0, steps=4, n=50_000, rng=18, **MKT)
    ex = _fd(lambda S, s, r, T, q: _bs("call", S, s, r, T, 100.0, q), MKT["spot"], MKT["vol"],
             MKT["rate"], 0.5, MKT["dividend"])
    assert all(abs(z) < TOL for z in g.z_scores(ex).values())
    full = fi.greeks(lambda p: np.maximum(p[:, 2, 0] - 100.0, 0.0), expiries=0.5,
                     maturity=1.0, steps=4, n=50_000, rng=18, **MKT)
    assert full.price == g.price and full.delta == g.delta      # same paths, same sums
    bad = fi.Payoff(lambda p: np.maximum(p[:, 1:, 0].mean(1) - 100.0, 0.0), terminal=True)
    with pytest.raises(ValueError, match="payoff returned nan"):
        fi.greeks(bad, maturity=1.0, steps=4, n=1000, rng=0, **MKT)


def _spread_grid(p):
    """Module level: picklable for Dask workers."""
    return np.maximum(p[:, -1, 0:1] - p[:, -1, 1:2] - np.array([0.0, 5.0]), 0.0)


def test_dask_path_payoff_bit_identical_to_local():
    """client=: groups of streams on Dask workers (a payoff function with a
    grid, pathwise alternatives off), the same estimates to the bit."""
    distributed = pytest.importorskip("distributed")
    kw = dict(correlation=CORR, maturity=1.0, steps=3, n=30_001, rng=19, n_streams=8,
              block_size=700, **TWO)
    pay = fi.Payoff(_spread_grid, grid=(2,), assets=2)
    local = fi.greeks(pay, **kw)
    hkw = dict(spot=100.0, rate=0.03, maturity=1.0, steps=5, n=10_001, rng=20, n_streams=6,
               block_size=900, method="pathwise",
               model=fi.Heston(v0=0.04, kappa=3.0, theta=0.05, xi=0.25, rho=-0.6,
                               param_greeks=True))
    heston = fi.greeks(fi.basket_call(100.0, [1.0]), **hkw)
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None, silence_logs=40) as cluster, \
            distributed.Client(cluster) as client:
        remote = fi.greeks(pay, client=client, **kw)
        heston_remote = fi.greeks(fi.basket_call(100.0, [1.0]), client=client, **hkw)
    for name in fi.PATH_GREEKS:
        assert np.array_equal(getattr(local, name), getattr(remote, name)), name
        assert np.array_equal(local.stderr[name], remote.stderr[name]), name
    for name in heston.as_dict():
        assert getattr(heston, name) == getattr(heston_remote, name), name
        assert heston.stderr[name] == heston_remote.stderr[name], name
    with pytest.raises(ValueError, match="client must be a dask.distributed.Client"):
        fi.greeks(pay, client=object(), **kw)


# ---------------------------------------------------------------------------
# the examples
# ---------------------------------------------------------------------------

def _example(name):
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "examples", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.__doc__.strip()
    return mod


def test_finance_desk_example_quick(capsys):
    out = _example("finance_desk").main(["--quick"])
    assert np.all(np.abs(out["z"]) < TOL)
    g = out["strip"]
    assert g.price.shape == (5,) and g.gamma.shape == (5, 2, 2) and g.dividend.shape == (5, 2)
    assert np.all(np.diff(g.price) < 0)                    # higher strike, cheaper
    assert "Asian basket call" in capsys.readouterr().out


def test_finance_local_vol_example_quick(capsys):
    out = _example("finance_local_vol").main(["--quick"])
    assert all(abs(z) < TOL for z in out["z"].values())
    assert set(out["greeks"].as_dict()) == {"price", "delta", "gamma", "base", "skew"}
    assert "local vol" in capsys.readouterr().out


def test_benchmark_script_tiny():
    """benchmarks/finance_desk.py at a tiny size: it runs, and the NumPy
    peer and mcscore agree with the bump-and-revalue reference (it raises
    otherwise)."""
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "benchmarks", "finance_desk.py")
    spec = importlib.util.spec_from_file_location("bench_finance_desk", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ratio = mod.main(["--n", "20000", "--repeats", "1"])
    assert ratio > 0
