"""Heston parameter Greeks (Heston(param_greeks=True)): the sensitivities to
v0, kappa, theta, xi and rho by likelihood ratio through the per-step
Gaussian scores, checked

* against bump-and-revalue of the same discrete scheme with common random
  numbers (an independent NumPy simulation): the estimator is unbiased for
  the scheme, so only Monte Carlo error separates them;
* against central differences of the semi-analytic price
  (closed_forms.heston_call): Monte Carlo error plus the scheme's
  discretisation bias, both reported in the assertion message;
* pathwise (method="pathwise": tangents of log S through the scheme)
  against both as well;
* standard errors calibrated: mean z^2 over 200 small runs within
  5 sqrt(2/200) of 1.

Parameters satisfy 2 kappa theta / xi^2 > 2, where the weights' variance is
finite (see Heston's docstring)."""
import math

import numpy as np
import pytest

from mcscore import finance as fi

TOL = 5.0
P = dict(v0=0.04, kappa=3.0, theta=0.05, xi=0.25, rho=-0.6)
KW = dict(spot=100.0, rate=0.03, maturity=1.0, dividend=0.01)
K = 100.0


def _model(**over):
    return fi.Heston(**dict(P, **over), param_greeks=True)


def _scheme_prices(params, Z, steps):
    """Discounted call payoffs of the full-truncation log-Euler scheme
    (NumPy, independent of the kernels) on the normals Z (n, steps, 2)."""
    v0, kappa, theta, xi, rho = (params[k] for k in fi.Heston.PARAMS)
    dt = KW["maturity"] / steps
    s = math.sqrt(1 - rho * rho)
    logs = np.full(len(Z), math.log(KW["spot"]))
    v = np.full(len(Z), v0)
    for k in range(steps):
        vp = np.maximum(v, 0.0)
        rv = np.sqrt(vp * dt)
        z1, z2 = Z[:, k, 0], Z[:, k, 1]
        logs = logs + (KW["rate"] - KW["dividend"] - 0.5 * vp) * dt + rv * z1
        v = v + kappa * (theta - vp) * dt + xi * rv * (rho * z1 + s * z2)
    return math.exp(-KW["rate"] * KW["maturity"]) * np.maximum(np.exp(logs) - K, 0.0)


@pytest.mark.parametrize("method", ["lr", "pathwise"])
def test_parameter_greeks_against_bump_of_the_same_scheme(method):
    """The likelihood-ratio weights, and the pathwise tangents propagated
    through the scheme, against its central bumps with common random
    numbers (the pathwise errors are 10-700 times smaller than the LR ones
    here, so this pins the tangents down tightly)."""
    steps, n = 20, 300_000
    g = fi.greeks(fi.basket_call(K, [1.0]), model=_model(), steps=steps, n=n, rng=41,
                  method=method, **KW)
    assert set(g.as_dict()) == {"price", "delta", "gamma", *fi.Heston.PARAMS}
    assert g.estimators["kappa"] == ("likelihood ratio" if method == "lr" else "pathwise")
    Z = np.random.default_rng(42).standard_normal((400_000, steps, 2))
    zs = {}
    for name in fi.Heston.PARAMS:
        h = 1e-3 * max(abs(P[name]), 0.1)
        y = (_scheme_prices(dict(P, **{name: P[name] + h}), Z, steps)
             - _scheme_prices(dict(P, **{name: P[name] - h}), Z, steps)) / (2 * h)
        ref, ref_se = y.mean(), y.std(ddof=1) / math.sqrt(len(y))
        zs[name] = (getattr(g, name) - ref) / math.hypot(g.stderr[name], ref_se)
    assert all(abs(z) < TOL for z in zs.values()), zs
    if method == "pathwise":
        lr = g.alternatives["lr"]
        assert all(g.stderr[k] < lr[k][1] / 5 for k in fi.Heston.PARAMS)


def _semi_analytic_greeks():
    out = {}
    for name in fi.Heston.PARAMS:
        h = 1e-4 * max(abs(P[name]), 0.1)
        up = fi.heston_call(strike=K, model=fi.Heston(**dict(P, **{name: P[name] + h})), **KW)
        dn = fi.heston_call(strike=K, model=fi.Heston(**dict(P, **{name: P[name] - h})), **KW)
        out[name] = (up["price"] - dn["price"]) / (2 * h)
    return out


@pytest.mark.parametrize("method", ["lr", "pathwise"])
def test_parameter_greeks_against_semi_analytic(method):
    """Within 5 se; the message reports each Greek's total error and its
    Monte Carlo standard error (the rest is the O(dt) discretisation,
    measured at 50 steps by bumping the scheme: v0 +0.38 +/- 0.17, kappa
    -0.001 +/- 0.002, theta -0.45 +/- 0.29, xi +0.008 +/- 0.036, rho
    -0.017 +/- 0.011, against LR errors 9, 0.02, 2.2, 1.2, 0.34 and pathwise
    errors 0.12, 0.0013, 0.2, 0.026, 0.008 at n = 4e5)."""
    ex = _semi_analytic_greeks()
    g = fi.greeks(fi.basket_call(K, [1.0]), model=_model(), steps=50, n=400_000, rng=43,
                  method=method, **KW)
    rep = {k: dict(error=getattr(g, k) - v, se=g.stderr[k]) for k, v in ex.items()}
    assert all(abs(r["error"]) < TOL * r["se"] for r in rep.values()), rep
    # the spot Greeks are unchanged by the parameter weights (same paths)
    plain = fi.greeks(fi.basket_call(K, [1.0]), model=fi.Heston(**P), steps=50, n=400_000,
                      rng=43, method=method, **KW)
    for k in ("price", "delta", "gamma"):
        assert getattr(plain, k) == getattr(g, k)


def test_parameter_greeks_stderr_calibrated():
    ex = _semi_analytic_greeks()
    ex["price"] = fi.heston_call(strike=K, model=fi.Heston(**P), **KW)["price"]
    z2 = []
    for child in np.random.SeedSequence(44).spawn(200):
        g = fi.greeks(fi.basket_call(K, [1.0]), model=_model(), steps=8, n=3000, rng=child,
                      **KW)
        z2.append([v ** 2 for v in g.z_scores(ex).values()])
    m = np.mean(z2, axis=0)
    assert np.all(np.abs(m - 1.0) < 5 * math.sqrt(2 / 200)), dict(zip(ex, m))


def test_param_greeks_flag_and_repr():
    assert "param_greeks=True" in repr(_model())
    g = fi.greeks(fi.basket_call(K, [1.0]), model=fi.Heston(**P), steps=4, n=1000, rng=0, **KW)
    assert set(g.as_dict()) == {"price", "delta", "gamma"}


def test_heston_parallel_bit_identical_over_threads():
    """Heston runs in the parallel path engine: every estimate (parameter
    Greeks and the pathwise alternatives included) is the same to the bit
    for 1, 2 and 3 threads."""
    kw = dict(model=_model(), steps=6, n=20_000, rng=45, n_streams=12, block_size=400,
              method="pathwise", **KW)
    runs = [fi.greeks(fi.basket_call(K, [1.0]), n_threads=t, **kw) for t in (1, 2, 3)]
    for g in runs[1:]:
        for name in runs[0].as_dict():
            assert getattr(g, name) == getattr(runs[0], name), name
            assert g.stderr[name] == runs[0].stderr[name], name


def test_pathwise_parameter_greeks_stderr_calibrated():
    """Pathwise parameter Greeks: mean z^2 over 200 small runs within
    5 sqrt(2/200) of 1, against the discrete scheme's own values (central
    bumps with common random numbers on 2e6 paths: their error is below a
    thirtieth of a run's)."""
    steps = 4
    Z = np.random.default_rng(46).standard_normal((2_000_000, steps, 2))
    ex = {"price": float(_scheme_prices(P, Z, steps).mean())}
    for name in fi.Heston.PARAMS:
        h = 1e-3 * max(abs(P[name]), 0.1)
        ex[name] = float(((_scheme_prices(dict(P, **{name: P[name] + h}), Z, steps)
                           - _scheme_prices(dict(P, **{name: P[name] - h}), Z, steps))
                          / (2 * h)).mean())
    del Z
    z2 = []
    for child in np.random.SeedSequence(47).spawn(200):
        g = fi.greeks(fi.basket_call(K, [1.0]), model=_model(), steps=steps, n=2000, rng=child,
                      method="pathwise", **KW)
        z2.append([v ** 2 for v in g.z_scores(ex).values()])
    m = np.mean(z2, axis=0)
    assert np.all(np.abs(m - 1.0) < 5 * math.sqrt(2 / 200)), dict(zip(ex, m))
