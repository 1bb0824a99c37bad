"""HalfNormal, Chi2, InverseGamma, Gumbel and Weibull, added by the recipe of docs/design.md:
draws, densities, scores and the estimators, against scipy and closed forms.

Every family is tested with f(x) = sum_c (x_c + x_c^2), whose expectation and
gradient are closed forms of the first two moments."""
import math

import numpy as np
import pytest
from scipy import special, stats

import mcscore as mc
from mcscore import _kernels as K
from mcscore import _vr
from mcscore import integrands as I

C = math.sqrt(2.0 / math.pi)


def _f(x):
    x = np.asarray(x, float)
    return (x + x * x).sum(1)


def _grad_f(x):
    return 1.0 + 2.0 * np.asarray(x, float)


def _fused():
    return I.polynomial([0.0, 1.0, 1.0], coord=0) + I.polynomial([0.0, 1.0, 1.0], coord=1)


def _half_normal_exact(scale):
    # E[x] = c s, E[x^2] = s^2
    return (C * scale + scale**2).sum(), {"scale": C + 2 * scale}


def _chi2_exact(df):
    # E[x] = k, E[x^2] = k^2 + 2k
    return (df * df + 3 * df).sum(), {"df": 2 * df + 3}


def _inverse_gamma_exact(a, r):
    # E[x] = r / (a-1), E[x^2] = r^2 / ((a-1)(a-2))
    value = (r / (a - 1) + r * r / ((a - 1) * (a - 2))).sum()
    return value, {
        "concentration": -r / (a - 1) ** 2 - r * r * (2 * a - 3) / ((a - 1) ** 2 * (a - 2) ** 2),
        "rate": 1 / (a - 1) + 2 * r / ((a - 1) * (a - 2)),
    }


def _gumbel_exact(mu, s):
    # E[x] = mu + g s, Var x = pi^2 s^2 / 6
    g = np.euler_gamma
    m = mu + g * s
    return (m + m * m + math.pi**2 * s * s / 6).sum(), {
        "loc": 1 + 2 * m, "scale": g + 2 * m * g + math.pi**2 * s / 3}


def _weibull_exact(lam, k):
    # E[x^j] = lam^j Gamma(1 + j/k)
    g1, g2 = special.gamma(1 + 1 / k), special.gamma(1 + 2 / k)
    dg1 = -g1 * special.digamma(1 + 1 / k) / k**2
    dg2 = -2 * g2 * special.digamma(1 + 2 / k) / k**2
    return (lam * g1 + lam * lam * g2).sum(), {
        "scale": g1 + 2 * lam * g2, "concentration": lam * dg1 + lam * lam * dg2}


# name: (params, constructor, scipy frozen-law maker, exact(params))
SPECS = {
    "HalfNormal": ({"scale": np.array([0.7, 2.0])}, mc.HalfNormal,
                   lambda p: stats.halfnorm(scale=p["scale"]), _half_normal_exact),
    "Chi2": ({"df": np.array([0.8, 3.5])}, mc.Chi2,
             lambda p: stats.chi2(p["df"]), _chi2_exact),
    "InverseGamma": ({"concentration": np.array([5.5, 7.0]), "rate": np.array([1.5, 2.0])},
                     mc.InverseGamma,
                     lambda p: stats.invgamma(p["concentration"], scale=p["rate"]),
                     _inverse_gamma_exact),
    "Gumbel": ({"loc": np.array([0.5, -1.0]), "scale": np.array([1.5, 0.6])}, mc.Gumbel,
               lambda p: stats.gumbel_r(p["loc"], p["scale"]), _gumbel_exact),
    "Weibull": ({"scale": np.array([1.5, 0.8]), "concentration": np.array([0.9, 2.5])},
                mc.Weibull, lambda p: stats.weibull_min(p["concentration"], scale=p["scale"]),
                _weibull_exact),
}
REAL = {"Gumbel"}  # families whose support is the whole line
NAMES = list(SPECS)


def _dist(name, params=None):
    p, cls, _, _ = SPECS[name]
    return cls(**(p if params is None else params))


def _assert_within_5se(name, res):
    p, _, _, exact = SPECS[name]
    value, grad = exact(*p.values())
    assert set(res.grad) == set(grad)
    for k in grad:
        z = (res.grad[k] - grad[k]) / res.stderr[k]
        assert np.all(np.abs(z) < 5), (k, res.grad[k], grad[k], res.stderr[k])
        assert np.all(res.stderr[k] > 0)
    assert abs(res.value - value) < 5 * res.value_stderr


# --- the distribution ------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_sample_moments_within_5_standard_errors(name):
    d = _dist(name)
    law = SPECS[name][2](SPECS[name][0])
    np.testing.assert_allclose(d.mean, law.mean(), rtol=1e-12)
    np.testing.assert_allclose(d.variance, law.var(), rtol=1e-12)
    x = d.sample(200_000, rng=1)
    assert x.shape == (200_000, 2)
    n = x.shape[0]
    assert np.all(np.abs(x.mean(0) - d.mean) < 5 * x.std(0) / np.sqrt(n))
    dev2 = (x - d.mean) ** 2
    assert np.all(np.abs(dev2.mean(0) - d.variance) < 5 * dev2.std(0) / np.sqrt(n))


@pytest.mark.parametrize("name", NAMES)
def test_sample_passes_ks_against_scipy(name):
    p = {k: v[:1] for k, v in SPECS[name][0].items()}
    x = _dist(name, p).sample(20_000, rng=2)[:, 0]
    assert stats.kstest(x, SPECS[name][2](p).cdf).pvalue > 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_log_prob_matches_scipy_with_broadcasting(name):
    rng = np.random.default_rng(3)
    p = {k: rng.uniform(0.5, 4.0, size=(2, 1)) if i == 0 else rng.uniform(0.5, 4.0, size=3)
         for i, k in enumerate(SPECS[name][0])}
    d = _dist(name, p)
    assert d.batch_shape == ((2, 3) if len(p) == 2 else (2, 1))
    x = rng.uniform(0.01, 6.0, size=(7,) + d.batch_shape)
    want = SPECS[name][2]({k: np.broadcast_to(v, d.batch_shape) for k, v in p.items()}).logpdf(x)
    np.testing.assert_allclose(d.log_prob(x), want, rtol=1e-12, atol=1e-12)
    if name not in REAL:
        assert np.all(d.log_prob(-x) == -np.inf)


@pytest.mark.parametrize("name", NAMES)
def test_score_matches_finite_differences_of_scipy_log_density(name):
    rng = np.random.default_rng(4)
    for _ in range(4):
        p = {k: rng.uniform(0.5, 5.0, size=3) for k in SPECS[name][0]}
        d = _dist(name, p)
        x = d.sample(30, rng=rng)
        s = d.score(x)
        assert set(s) == set(p)
        for k in p:
            h = 1e-6 * p[k]
            up, dn = dict(p), dict(p)
            up[k] = p[k] + h
            dn[k] = p[k] - h
            law_up, law_dn = SPECS[name][2](up), SPECS[name][2](dn)
            fd = (law_up.logpdf(x) - law_dn.logpdf(x)) / (2 * h)
            np.testing.assert_allclose(s[k], fd, rtol=1e-6, atol=1e-6)


def test_score_closed_forms():
    s = mc.HalfNormal(2.0).score(np.array([0.0, 2.0, 4.0]))["scale"]
    np.testing.assert_allclose(s, [-0.5, -0.5 + 4 / 8, -0.5 + 16 / 8], rtol=1e-15)
    s = mc.Chi2(2.0).score(np.array([1.0, 2.0]))["df"]
    # digamma(1) = -Euler's gamma
    np.testing.assert_allclose(s, 0.5 * (np.log([1.0, 2.0]) - math.log(2) + np.euler_gamma),
                               rtol=1e-14)
    s = mc.InverseGamma(3.0, 2.0).score(np.array([0.5, 4.0]))["rate"]
    np.testing.assert_allclose(s, [1.5 - 2.0, 1.5 - 0.25], rtol=1e-15)
    s = mc.Gumbel(1.0, 2.0).score(np.array([1.0, 3.0]))
    # z = 0: d/dloc = (1 - 1) / 2, d/dscale = -1/2; z = 1: (1 - e^-1) / 2, (1 - e^-1 - 1) / 2
    np.testing.assert_allclose(s["loc"], [0.0, (1 - math.exp(-1)) / 2], rtol=1e-15, atol=0)
    np.testing.assert_allclose(s["scale"], [-0.5, -math.exp(-1) / 2], rtol=1e-15)
    s = mc.Weibull(2.0, 3.0).score(np.array([2.0, 4.0]))
    # L = log(x / 2): d/dscale = (3/2) expm1(3 L), d/dk = 1/3 - L expm1(3 L)
    np.testing.assert_allclose(s["scale"], [0.0, 1.5 * 7], rtol=1e-15, atol=0)
    np.testing.assert_allclose(s["concentration"], [1 / 3, 1 / 3 - math.log(2) * 7],
                               rtol=1e-14)


def test_reciprocal_term_kind_in_the_evaluator():
    """SK_RECIP, a / (x - c) + b, through the kernels' table of a Normal draw."""
    x = np.array([[0.5], [2.0], [-4.0]])
    kd = K.KernelDist(K.MC_NORMAL, False, 1, 1, 1, [0.0], [1.0], [], np.zeros(0, np.int64),
                      [0, 1], [K.SK_RECIP], [0], [3.0], [0.25], [1.0])
    np.testing.assert_allclose(K.eval_scores(kd, x)[:, 0], 3.0 / (x[:, 0] - 1.0) + 0.25,
                               rtol=1e-15)


@pytest.mark.parametrize("name", NAMES)
def test_bad_parameters_and_draws_are_clear_errors(name):
    p = SPECS[name][0]
    first = "scale" if name in REAL else next(iter(p))
    with pytest.raises(ValueError, match=first):
        _dist(name, {**p, first: -p[first]})
    if name not in REAL:
        with pytest.raises(ValueError, match="outside the support"):
            _dist(name).score(np.array([[-1.0, 1.0]]))
    with pytest.raises(ValueError, match="outside the support"):
        _dist(name).score(np.array([[np.inf, 1.0]]))


def test_half_normal_rejects_scales_whose_score_overflows():
    with pytest.raises(ValueError, match=r"scale must be in \[1e-100, 1e\+100\]"):
        mc.HalfNormal(1e-200).score(np.zeros(1))
    with pytest.raises(ValueError, match="scale must be in"):
        mc.score_grad(_f, mc.HalfNormal(np.array([1.0, 1e120])), 100, rng=0)


@pytest.mark.parametrize("name", NAMES)
def test_declarations_and_capabilities(name):
    d = _dist(name)
    cls = type(d)
    assert cls in mc.FAMILIES and name in mc.__all__ and getattr(mc, name) is cls
    assert mc.FAMILIES.index(cls) == d.family
    assert not d.has_mirror  # none of them is symmetric
    assert d.vi_transforms() == {k: "identity" if k == "loc" else "log" for k in SPECS[name][0]}
    assert mc.vi.transforms(d) == d.vi_transforms()
    if d.has_mean_tangents:
        t = d.mean_tangents()
        h = 1e-6
        for k, v in SPECS[name][0].items():
            up = _dist(name, {**SPECS[name][0], k: v + h}).mean
            dn = _dist(name, {**SPECS[name][0], k: v - h}).mean
            np.testing.assert_allclose(t[k], (up - dn) / (2 * h), rtol=1e-7)
    assert d.has_mean_tangents == (name != "InverseGamma")
    # issue 13 added pathwise_grad for Chi2, InverseGamma and Weibull (tests/test_unifam.py)
    assert d.has_rsample == (name in ("HalfNormal", "Gumbel", "Chi2", "InverseGamma", "Weibull"))
    if not d.has_rsample:
        with pytest.raises(ValueError, match="HalfNormal"):
            mc.pathwise_grad(_f, d, 100, grad_f=_grad_f, rng=0)


def test_inverse_gamma_moments_are_infinite_where_they_do_not_exist():
    d = mc.InverseGamma(np.array([0.5, 1.5, 2.5]), 2.0)
    np.testing.assert_array_equal(d.mean, [np.inf, 4.0, 2.0 / 1.5])
    np.testing.assert_array_equal(d.variance[:2], [np.inf, np.inf])
    np.testing.assert_allclose(d.variance[2], 4.0 / (1.5**2 * 0.5))


# --- score_grad ---------------------------------------------------------------

@pytest.mark.parametrize("baseline", [None, "loo", "optimal"])
@pytest.mark.parametrize("kind", ["fused", "python"])
@pytest.mark.parametrize("name", NAMES)
def test_score_grad_within_5_standard_errors(name, baseline, kind):
    f = _fused() if kind == "fused" else _f
    res = mc.score_grad(f, _dist(name), 300_000, rng=11, baseline=baseline)
    _assert_within_5se(name, res)


@pytest.mark.parametrize("kind", ["fused", "python"])
@pytest.mark.parametrize("name", NAMES)
def test_score_grad_bit_identical_across_threads(name, kind):
    f = _fused() if kind == "fused" else _f
    a = mc.score_grad(f, _dist(name), 100_003, rng=12, n_threads=1, baseline="optimal")
    b = mc.score_grad(f, _dist(name), 100_003, rng=12, n_threads=2, baseline="optimal")
    for k in a.grad:
        assert np.array_equal(a.grad[k], b.grad[k])
        assert np.array_equal(a.stderr[k], b.stderr[k])
    assert a.value == b.value


@pytest.mark.parametrize("name", NAMES)
def test_score_of_the_kernels_agrees_with_score(name):
    """The kernels' accumulators and score() on the draws the kernels made
    give the same estimate; fused and Python f see the same draws."""
    seen = []

    def f(x):
        seen.append(np.array(x))
        return _f(x)

    d = _dist(name)
    res = mc.score_grad(f, d, 20_000, rng=14)
    fused = mc.score_grad(_fused(), d, 20_000, rng=14)
    x = np.concatenate(seen)
    s, fx = d.score(x), _f(x)
    for k in res.grad:
        np.testing.assert_allclose(res.grad[k], (fx[:, None] * s[k]).mean(0), rtol=1e-10)
        np.testing.assert_allclose(fused.grad[k], res.grad[k], rtol=1e-9)
    res2 = mc.score_grad_from_samples(d, x, fx)
    for k in res.grad:
        np.testing.assert_allclose(res2.grad[k], res.grad[k], rtol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_rloo_within_5_standard_errors(name):
    _assert_within_5se(name, mc.rloo_grad(_f, _dist(name), 200_000, rng=15))


@pytest.mark.parametrize("name", ["HalfNormal", "Chi2", "Gumbel", "Weibull"])
def test_delta_control_variate_within_5_standard_errors(name):
    res = mc.score_grad(_f, _dist(name), 200_000, rng=17, control_variates=["delta"],
                        grad_f=_grad_f)
    _assert_within_5se(name, res)


@pytest.mark.parametrize("name", ["HalfNormal", "Gumbel"])
def test_pathwise_within_5_standard_errors(name):
    d = _dist(name)
    rows = d.pathwise_spec()
    assert rows[-1][:2] == ("scale", _vr.TK_NSCALE)
    res = mc.pathwise_grad(_f, d, 200_000, grad_f=_grad_f, rng=18)
    _assert_within_5se(name, res)


def test_exponential_term_kinds_in_the_evaluator():
    """SK_EXPM1, SK_XEXPM1 and their log forms against NumPy, through the
    kernels' table of a LogNormal draw (positive x)."""
    x = np.array([[0.5], [2.0], [7.0]])
    kinds = [K.SK_EXPM1, K.SK_XEXPM1, K.SK_LOG_EXPM1, K.SK_LOG_XEXPM1]
    kd = K.KernelDist(K.MC_LOGNORMAL, False, 1, 1, 1, [0.0], [1.0], [], np.zeros(0, np.int64),
                      [0, 1, 2, 3, 4], kinds, [0, 0, 0, 0], [-0.7] * 4, [1.3] * 4, [0.4] * 4)
    got = K.eval_scores(kd, x)
    v, lv = x[:, 0] - 0.4, np.log(x[:, 0]) - 0.4
    want = np.stack([1.3 * np.expm1(-0.7 * v), 1.3 * v * np.expm1(-0.7 * v),
                     1.3 * np.expm1(-0.7 * lv), 1.3 * lv * np.expm1(-0.7 * lv)], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-14)
