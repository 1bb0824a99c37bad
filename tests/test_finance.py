"""mcscore.finance: Greeks against closed forms and quadrature, calibrated
standard errors, reproducibility across threads, input errors."""
import numpy as np
import pytest

import mcscore as mc
from mcscore import finance as fi
from mcscore.finance.closed_forms import _fd_greeks

MKT = dict(spot=100.0, strike=105.0, rate=0.03, vol=0.25, maturity=0.75)
N = 400_000


def _within(g, ref, tol=5.0):
    z = g.z_scores({k: ref[k] for k in fi.GREEKS})
    assert all(np.isfinite(v) for v in z.values())
    assert max(abs(v) for v in z.values()) < tol, (g, ref, z)
    return z


@pytest.mark.parametrize("payoff", ["call", "put", "digital_call", "digital_put"])
@pytest.mark.parametrize("steps", [1, 3])
def test_black_scholes_lr(payoff, steps):
    g = fi.greeks(payoff, n=N, steps=steps, rng=11, **MKT)
    _within(g, fi.black_scholes(payoff, **MKT))
    assert g.method == "lr" and g.n == N


@pytest.mark.parametrize("payoff", ["call", "put"])
def test_black_scholes_pathwise(payoff):
    g = fi.greeks(payoff, n=N, rng=12, method="pathwise", **MKT)
    _within(g, fi.black_scholes(payoff, **MKT))
    # the pathwise / mixed estimators have (much) lower variance than LR
    lr = g.alternatives["lr"]
    for k in ("delta", "vega", "rho", "gamma"):
        assert g.stderr[k] < lr[k][1]


def test_black_scholes_closed_form_identities():
    c = fi.black_scholes("call", **MKT)
    p = fi.black_scholes("put", **MKT)
    dc = fi.black_scholes("digital_call", **MKT)
    dp = fi.black_scholes("digital_put", **MKT)
    D = np.exp(-MKT["rate"] * MKT["maturity"])
    assert c["price"] - p["price"] == pytest.approx(MKT["spot"] - MKT["strike"] * D, rel=1e-12)
    assert c["delta"] - p["delta"] == pytest.approx(1.0, rel=1e-12)
    assert dc["price"] + dp["price"] == pytest.approx(D, rel=1e-12)
    # finite differences of the closed-form price agree with the analytic Greeks
    for kind, exact in (("call", c), ("digital_call", dc)):
        fd = _fd_greeks(lambda S, s, r: fi.black_scholes(
            kind, spot=S, strike=MKT["strike"], rate=r, vol=s, maturity=MKT["maturity"]
        )["price"], MKT["spot"], MKT["vol"], MKT["rate"])
        for k in fi.GREEKS:
            assert fd[k] == pytest.approx(exact[k], rel=1e-4, abs=1e-7)


@pytest.mark.parametrize("method", ["lr", "pathwise"])
def test_geometric_asian_closed_form(method):
    kw = dict(MKT, strike=95.0)
    g = fi.greeks("geometric_asian_call", n=N, steps=12, rng=13, method=method, **kw)
    _within(g, fi.reference("geometric_asian_call", steps=12, **kw))


def test_geometric_asian_one_step_is_black_scholes():
    assert fi.geometric_asian_call(steps=1, **MKT) == pytest.approx(
        fi.black_scholes("call", **MKT)["price"], rel=1e-12)


@pytest.mark.parametrize("steps", [1, 2])
def test_up_and_out_against_quadrature(steps):
    kw = dict(MKT, barrier=130.0)
    g = fi.greeks("up_and_out_call", n=N, steps=steps, rng=14, **kw)
    ref = fi.reference("up_and_out_call", steps=steps, **kw)
    _within(g, ref)
    # knocking out costs: below the vanilla call
    assert ref["price"] < fi.black_scholes("call", **MKT)["price"]


def test_arithmetic_asian_methods_agree():
    g = fi.greeks("asian_call", n=N, steps=8, rng=15, method="pathwise", **MKT)
    lr = g.alternatives["lr"]
    for k in fi.GREEKS[1:]:
        e, s = lr[k]
        assert abs(getattr(g, k) - e) < 5 * np.hypot(s, g.stderr[k])
    # the arithmetic average dominates the geometric one
    geo = fi.geometric_asian_call(steps=8, **MKT)
    assert g.price > geo - 5 * g.stderr["price"]


@pytest.mark.parametrize("payoff, method", [("call", "lr"), ("call", "pathwise"),
                                             ("digital_call", "lr")])
def test_stderr_calibrated(payoff, method):
    """Over 300 independent small runs, E[z^2] ~ 1 for every Greek."""
    ref = fi.black_scholes(payoff, **MKT)
    R = 300
    z2 = np.array([[v * v for v in fi.greeks(payoff, n=3000, rng=child, method=method,
                                              **MKT).z_scores(ref).values()]
                   for child in np.random.SeedSequence(1).spawn(R)])
    m = z2.mean(0)
    # sd of mean(z^2) is sqrt(2/R) = 0.08 for normal z; heavy tails of the
    # second-order weights add a little: allow about 5 of those (a standard
    # error off by a factor sqrt(2) either way gives 0.5 or 2 and fails)
    assert np.all(np.abs(m - 1.0) < 0.4), dict(zip(fi.GREEKS, m))


def test_bit_identical_across_threads_and_deterministic():
    kw = dict(n=50_000, steps=4, rng=7, block_size=512, **MKT)
    a = fi.greeks("asian_call", n_threads=1, **kw)
    b = fi.greeks("asian_call", n_threads=2, **kw)
    c = fi.greeks("asian_call", n_threads=2, **kw)
    for k in fi.GREEKS:
        assert getattr(a, k) == getattr(b, k) == getattr(c, k)
        assert a.stderr[k] == b.stderr[k]
    d = fi.greeks("asian_call", n_threads=1, **dict(kw, rng=8))
    assert d.price != a.price


def test_large_shift_keeps_precision():
    """Per-stream shifts: a deep in-the-money call (price ~ 1e6) keeps its
    tiny relative standard error and its exact delta."""
    kw = dict(spot=1e6, strike=1.0, rate=0.0, vol=0.01, maturity=1.0)
    g = fi.greeks("call", n=20_000, rng=3, method="pathwise", **kw)
    ref = fi.black_scholes("call", **kw)
    assert abs(g.price - ref["price"]) < 5 * g.stderr["price"]
    assert g.delta == pytest.approx(1.0, abs=5 * g.stderr["delta"] + 1e-12)


def test_submodule_and_repr():
    assert mc.finance is fi
    g = fi.greeks("put", n=1000, rng=0, **MKT)
    assert "delta" in repr(g) and set(g.stderr) == set(fi.GREEKS)
    assert set(g.as_dict()) == set(fi.GREEKS)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(payoff="straddle"), ValueError, "payoff must be one of"),
    (dict(vol=0.0), ValueError, "vol must be > 0"),
    (dict(spot=-1.0), ValueError, "spot must be > 0"),
    (dict(rate=float("nan")), ValueError, "rate must be a finite"),
    (dict(strike=[1.0, 2.0]), TypeError, "strike must be a scalar"),
    (dict(steps=0), ValueError, "steps must be >= 1"),
    (dict(steps=2.5), TypeError, "steps must be an integer"),
    (dict(n=1), ValueError, "n must be >= 2"),
    (dict(method="fd"), ValueError, "method must be"),
    (dict(payoff="digital_call", method="pathwise"), ValueError, "does not apply"),
    (dict(payoff="up_and_out_call", method="pathwise", barrier=150.0), ValueError,
     "does not apply"),
    (dict(payoff="up_and_out_call"), ValueError, "barrier is required"),
    (dict(payoff="up_and_out_call", barrier=90.0), ValueError, "barrier must be > spot"),
    (dict(barrier=150.0), ValueError, "barrier applies only"),
])
def test_errors(kwargs, exc, match):
    args = dict(MKT, payoff="call", n=1000, rng=0)
    args.update(kwargs)
    payoff = args.pop("payoff")
    with pytest.raises(exc, match=match):
        fi.greeks(payoff, **args)


def test_overflow_is_an_error_not_nan():
    with pytest.raises(FloatingPointError, match="overflowed"):
        fi.greeks("call", spot=100.0, strike=100.0, rate=10.0, vol=0.2, maturity=100.0,
                  n=1000, rng=0)


def test_reference_not_available():
    with pytest.raises(NotImplementedError):
        fi.reference("asian_call", steps=4, **MKT)


def test_ctrl_c_stops_a_long_run():
    import signal
    import subprocess
    import sys
    import textwrap
    import time

    code = textwrap.dedent("""
        import sys
        import mcscore as mc
        kw = dict(spot=100.0, strike=100.0, rate=0.0, vol=0.2, maturity=1.0)
        mc.finance.greeks("asian_call", n=10**4, steps=4, rng=0, **kw)
        print("ready", flush=True)
        try:
            mc.finance.greeks("asian_call", n=10**13, steps=4, rng=0, **kw)
        except KeyboardInterrupt:
            g = mc.finance.greeks("call", n=10**4, rng=0, **kw)
            print("interrupted", g.n, flush=True)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        t0 = time.perf_counter()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
        elapsed = time.perf_counter() - t0
    finally:
        p.kill()
    assert "interrupted 10000" in out, err
    assert elapsed < 5.0  # generous for a loaded machine; typically well under 1 s
