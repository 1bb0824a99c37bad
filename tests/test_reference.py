"""Self-checks of tests/reference.py (the library-independent reference
values): log densities against hand-written formulas, finite-difference
scores against analytic scores, expectations against known moments, the
finite-difference gradients against closed forms, and the exact Gaussian
score-estimator moments against a plain numpy Monte Carlo."""
import math
import os
import sys

import numpy as np
import pytest
from scipy import special

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import reference as R  # noqa: E402

LOG2PI = math.log(2.0 * math.pi)
lg = math.lgamma

# ---------------------------------------------------------------------------
# log_prob against hand-written formulas (torch parameterisations)
# ---------------------------------------------------------------------------


def _sig(t):
    return 1.0 / (1.0 + math.exp(-t))


def _lchoose(n, k):
    return lg(n + 1) - lg(k + 1) - lg(n - k + 1)


LOGPROB_CASES = [
    ("Normal", dict(loc=0.3, scale=1.7), [-2.0, 0.1, 3.5],
     lambda x: -0.5 * ((x - 0.3) / 1.7) ** 2 - math.log(1.7) - 0.5 * LOG2PI),
    ("LogNormal", dict(loc=0.3, scale=0.7), [0.2, 1.0, 4.0],
     lambda x: (-math.log(x) - math.log(0.7) - 0.5 * LOG2PI
                - (math.log(x) - 0.3) ** 2 / (2 * 0.49))),
    ("Exponential", dict(rate=2.5), [0.1, 1.0, 3.0],
     lambda x: math.log(2.5) - 2.5 * x),
    ("Gamma", dict(concentration=0.7, rate=2.5), [0.1, 1.0, 3.0],
     lambda x: 0.7 * math.log(2.5) - 0.3 * math.log(x) - 2.5 * x - lg(0.7)),
    ("Beta", dict(concentration1=0.7, concentration0=2.5), [0.1, 0.5, 0.9],
     lambda x: (-0.3 * math.log(x) + 1.5 * math.log(1 - x)
                - (lg(0.7) + lg(2.5) - lg(3.2)))),
    ("Poisson", dict(rate=3.3), [0, 2, 7],
     lambda k: k * math.log(3.3) - 3.3 - lg(k + 1)),
    ("Bernoulli", dict(probs=0.3), [0, 1],
     lambda k: k * math.log(0.3) + (1 - k) * math.log(0.7)),
    ("Bernoulli", dict(logits=2.3), [0, 1],
     lambda k: k * math.log(_sig(2.3)) + (1 - k) * math.log(_sig(-2.3))),
    ("Binomial", dict(total_count=7, probs=0.3), [0, 3, 7],
     lambda k: _lchoose(7, k) + k * math.log(0.3) + (7 - k) * math.log(0.7)),
    ("Binomial", dict(total_count=7, logits=1.3), [0, 3, 7],
     lambda k: (_lchoose(7, k) + k * math.log(_sig(1.3))
                + (7 - k) * math.log(_sig(-1.3)))),
    # failures before the first success: P(0) = p
    ("Geometric", dict(probs=0.3), [0, 1, 5],
     lambda k: k * math.log(0.7) + math.log(0.3)),
    ("Geometric", dict(logits=-0.4), [0, 1, 5],
     lambda k: k * math.log(_sig(0.4)) + math.log(_sig(-0.4))),
    # successes (prob p) before r failures
    ("NegativeBinomial", dict(total_count=3, probs=0.3), [0, 2, 9],
     lambda k: (lg(k + 3) - lg(k + 1) - lg(3) + 3 * math.log(0.7)
                + k * math.log(0.3))),
    ("NegativeBinomial", dict(total_count=2.0, logits=0.8), [0, 2, 9],
     lambda k: (lg(k + 2) - lg(k + 1) - lg(2) + 2 * math.log(_sig(-0.8))
                + k * math.log(_sig(0.8)))),
    ("Categorical", dict(probs=np.array([1.0, 2.0, 5.0])), [0, 1, 2],
     lambda k: math.log([1.0, 2.0, 5.0][k] / 8.0)),
    ("Categorical", dict(logits=np.array([0.1, -2.0, 1.5])), [0, 1, 2],
     lambda k: [0.1, -2.0, 1.5][k] - math.log(sum(
         math.exp(t) for t in [0.1, -2.0, 1.5]))),
    ("Multinomial", dict(total_count=5, probs=np.array([1.0, 2.0, 5.0])),
     [np.array([1.0, 1.0, 3.0]), np.array([0.0, 0.0, 5.0])],
     lambda x: (lg(6) - sum(lg(t + 1) for t in x)
                + sum(t * math.log(q) for t, q in zip(x, [1 / 8, 2 / 8, 5 / 8])))),
    ("Multinomial", dict(total_count=4, logits=np.array([0.1, -2.0, 1.5])),
     [np.array([1.0, 1.0, 2.0]), np.array([4.0, 0.0, 0.0])],
     lambda x: (lg(5) - sum(lg(t + 1) for t in x)
                + sum(t * q for t, q in zip(x, special.log_softmax(
                    [0.1, -2.0, 1.5]))))),
    ("Dirichlet", dict(concentration=np.array([0.7, 2.0, 3.5])),
     [np.array([0.2, 0.3, 0.5]), np.array([0.05, 0.9, 0.05])],
     lambda x: (lg(6.2) - lg(0.7) - lg(2.0) - lg(3.5)
                + sum((a - 1) * math.log(t)
                      for a, t in zip([0.7, 2.0, 3.5], x)))),
]


@pytest.mark.parametrize("family,params,xs,formula", LOGPROB_CASES,
                         ids=[c[0] + "-" + "-".join(k for k in c[1])
                              for c in LOGPROB_CASES])
def test_log_prob_matches_formula(family, params, xs, formula):
    for x in xs:
        assert R.log_prob(family, params, x) == pytest.approx(
            formula(x), rel=1e-12, abs=1e-12)


def test_all_families_covered():
    assert {c[0] for c in LOGPROB_CASES} == set(R.FAMILIES)


def test_log_prob_outside_support():
    assert R.log_prob("Exponential", {"rate": 1.0}, -0.5) == -math.inf
    assert R.log_prob("Poisson", {"rate": 1.0}, 1.5) == -math.inf
    assert R.log_prob("Binomial", {"total_count": 3, "probs": 0.5}, 4) \
        == -math.inf
    assert R.log_prob("Categorical", {"probs": [1.0, 1.0]}, 2) == -math.inf
    assert R.log_prob("Multinomial", {"total_count": 3, "probs": [1.0, 1.0]},
                      np.array([1.0, 1.0])) == -math.inf


def test_probs_and_logits_agree():
    for fam, extra, x in [("Bernoulli", {}, 1), ("Geometric", {}, 3),
                          ("Binomial", {"total_count": 6}, 4),
                          ("NegativeBinomial", {"total_count": 3}, 4)]:
        for t in (-3.0, 0.4, 5.0):
            a = R.log_prob(fam, {**extra, "logits": t}, x)
            b = R.log_prob(fam, {**extra, "probs": _sig(t)}, x)
            assert a == pytest.approx(b, rel=1e-12)
    lgt = np.array([0.3, -1.0, 2.0])
    for fam, extra, x in [("Categorical", {}, 2),
                          ("Multinomial", {"total_count": 3},
                           np.array([1.0, 0.0, 2.0]))]:
        a = R.log_prob(fam, {**extra, "logits": lgt}, x)
        b = R.log_prob(fam, {**extra, "probs": 7.0 * special.softmax(lgt)}, x)
        assert a == pytest.approx(b, rel=1e-12)


def test_bad_params():
    with pytest.raises(ValueError):
        R.log_prob("Bernoulli", {"probs": 0.3, "logits": 0.1}, 1)
    with pytest.raises(ValueError):
        R.log_prob("Normal", {"loc": 0.0}, 1.0)
    with pytest.raises(ValueError):
        R.log_prob("Normal", {"loc": 0.0, "scale": 1.0, "rate": 1.0}, 1.0)
    with pytest.raises(ValueError):
        R.log_prob("Cauchy", {"loc": 0.0, "scale": 1.0}, 1.0)
    with pytest.raises(ValueError):
        R.log_prob("NegativeBinomial", {"probs": 0.3}, 1)


# ---------------------------------------------------------------------------
# score_fd against analytic scores
# ---------------------------------------------------------------------------


def _close(a, b, tol=1e-7):
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float),
                               rtol=tol, atol=tol)


@pytest.mark.parametrize("x", [-1.3, 0.2, 4.0])
def test_score_normal(x):
    mu, s = 0.4, 1.3
    sc = R.score_fd("Normal", {"loc": mu, "scale": s}, x)
    _close(sc["loc"], (x - mu) / s ** 2)
    _close(sc["scale"], ((x - mu) ** 2 - s ** 2) / s ** 3)


@pytest.mark.parametrize("x", [0.05, 1.0, 6.0])
def test_score_gamma(x):
    a, r = 0.7, 2.5
    sc = R.score_fd("Gamma", {"concentration": a, "rate": r}, x)
    _close(sc["concentration"], math.log(r) - special.digamma(a) + math.log(x))
    _close(sc["rate"], a / r - x)


@pytest.mark.parametrize("t", [-2.0, 0.3, 3.0])
def test_score_bernoulli_logits(t):
    for x in (0, 1):
        sc = R.score_fd("Bernoulli", {"logits": t}, x)
        _close(sc["logits"], x - _sig(t))


def test_score_categorical_logits():
    lgt = np.array([0.2, -1.0, 1.5, 0.0])
    p = special.softmax(lgt)
    for x in range(4):
        sc = R.score_fd("Categorical", {"logits": lgt}, x)
        _close(sc["logits"], (np.arange(4) == x) - p)


def test_score_categorical_unnormalised_probs():
    pr = np.array([1.0, 2.0, 5.0])
    for x in range(3):
        sc = R.score_fd("Categorical", {"probs": pr}, x)
        _close(sc["probs"], (np.arange(3) == x) / pr[x] - 1.0 / pr.sum())


def test_score_poisson_and_dirichlet():
    sc = R.score_fd("Poisson", {"rate": 3.3}, 5)
    _close(sc["rate"], 5 / 3.3 - 1.0)
    a = np.array([0.7, 2.0, 3.5])
    x = np.array([0.2, 0.3, 0.5])
    sc = R.score_fd("Dirichlet", {"concentration": a}, x)
    _close(sc["concentration"],
           special.digamma(a.sum()) - special.digamma(a) + np.log(x))
    assert "total_count" not in R.score_fd(
        "Binomial", {"total_count": 5, "probs": 0.3}, 2)


# ---------------------------------------------------------------------------
# expectation: normalisation and means for every family
# ---------------------------------------------------------------------------

MEAN_CASES = [
    ("Normal", dict(loc=0.3, scale=1.7), 0.3),
    ("LogNormal", dict(loc=0.3, scale=0.6), math.exp(0.3 + 0.18)),
    ("Exponential", dict(rate=2.5), 0.4),
    ("Gamma", dict(concentration=0.4, rate=2.5), 0.16),
    ("Beta", dict(concentration1=0.6, concentration0=0.8), 0.6 / 1.4),
    ("Poisson", dict(rate=3.3), 3.3),
    ("Bernoulli", dict(logits=0.7), _sig(0.7)),
    ("Binomial", dict(total_count=9, probs=0.3), 2.7),
    ("Geometric", dict(probs=0.3), 0.7 / 0.3),
    ("Geometric", dict(logits=0.5), math.exp(-0.5)),
    ("NegativeBinomial", dict(total_count=3, probs=0.4), 3 * 0.4 / 0.6),
    ("NegativeBinomial", dict(total_count=2, logits=-0.3), 2 * math.exp(-0.3)),
    ("Categorical", dict(probs=np.array([1.0, 2.0, 5.0])), (2 + 10) / 8),
]


@pytest.mark.parametrize("family,params,mean", MEAN_CASES,
                         ids=[c[0] for c in MEAN_CASES])
def test_expectation_one_and_mean(family, params, mean):
    assert R.expectation(family, params, lambda x: 1.0) == pytest.approx(
        1.0, rel=1e-12)
    assert R.expectation(family, params, lambda x: x) == pytest.approx(
        mean, rel=1e-11, abs=1e-13)


def test_expectation_multinomial_and_dirichlet():
    lgt = np.array([0.3, -1.0, 2.0, 0.1])
    p = special.softmax(lgt)
    prm = {"total_count": 5, "logits": lgt}
    assert R.expectation("Multinomial", prm, lambda x: 1.0) == pytest.approx(
        1.0, rel=1e-12)
    for j in range(4):
        assert R.expectation("Multinomial", prm, lambda x: x[j]) == \
            pytest.approx(5 * p[j], rel=1e-12)
    # second moment: Var x_0 + (E x_0)^2
    assert R.expectation("Multinomial", prm, lambda x: x[0] ** 2) == \
        pytest.approx(5 * p[0] * (1 - p[0]) + 25 * p[0] ** 2, rel=1e-12)

    a = np.array([0.7, 2.0, 3.5])
    prm = {"concentration": a}
    assert R.expectation("Dirichlet", prm, {"powers": [0, 0, 0]}) == 1.0
    for j in range(3):
        e = np.eye(3)[j]
        assert R.expectation("Dirichlet", prm, {"powers": e}) == \
            pytest.approx(a[j] / a.sum(), rel=1e-13)
    # E[x0 x1] = a0 a1 / (A (A + 1)); list-of-terms form
    A = a.sum()
    val = R.expectation("Dirichlet", prm,
                        [(2.0, [1, 1, 0]), (-1.0, [0, 0, 1])])
    assert val == pytest.approx(2 * a[0] * a[1] / (A * (A + 1)) - a[2] / A,
                                rel=1e-13)
    # K = 2 callable goes through Beta quadrature
    a2 = np.array([0.7, 2.0])
    assert R.expectation("Dirichlet", {"concentration": a2},
                         lambda x: x[0] * x[1] ** 2) == pytest.approx(
        R.dirichlet_moment(a2, [1, 2]), rel=1e-12)
    with pytest.raises(NotImplementedError):
        R.expectation("Dirichlet", prm, lambda x: x[0])


def test_expectation_higher_moments():
    assert R.expectation("Normal", {"loc": 0.3, "scale": 1.7},
                         lambda x: x ** 4) == pytest.approx(
        0.3 ** 4 + 6 * 0.09 * 1.7 ** 2 + 3 * 1.7 ** 4, rel=1e-12)
    assert R.expectation("Poisson", {"rate": 2.2}, lambda k: k ** 4) == \
        pytest.approx(R.poisson_moment(4, 2.2), rel=1e-13)
    # singular density at 0 and a singular f
    assert R.expectation("Gamma", {"concentration": 0.3, "rate": 2.0},
                         math.log) == pytest.approx(
        special.digamma(0.3) - math.log(2.0), rel=1e-11)


def test_closed_form_moments():
    assert [R.gaussian_moment(m) for m in range(7)] == [1, 0, 1, 0, 3, 0, 15]
    mu, s = -0.4, 1.3
    assert R.normal_moment(3, mu, s) == pytest.approx(mu ** 3 + 3 * mu * s ** 2)
    assert R.normal_moment(4, mu, s) == pytest.approx(
        mu ** 4 + 6 * mu ** 2 * s ** 2 + 3 * s ** 4)
    lam = 1.7   # Touchard: E k^3 = lam^3 + 3 lam^2 + lam
    assert R.poisson_moment(3, lam) == pytest.approx(lam ** 3 + 3 * lam ** 2
                                                     + lam)
    assert R.exponential_moment(3, 2.0) == pytest.approx(6 / 8)
    # Beta moment via the Dirichlet formula
    a, b = 0.6, 1.9
    assert R.dirichlet_moment([a, b], [2, 0]) == pytest.approx(
        a * (a + 1) / ((a + b) * (a + b + 1)))


# ---------------------------------------------------------------------------
# exact_grad (Richardson finite differences) against closed forms
# ---------------------------------------------------------------------------


def test_exact_grad_normal_poly():
    c = [0.5, -1.0, 0.3, 0.2, -0.1]
    mu, s = 0.3, 1.7
    g = R.exact_grad("Normal", {"loc": mu, "scale": s},
                     lambda x: np.polynomial.polynomial.polyval(x, c))
    gl, gs = R.normal_poly_grad(c, mu, s)
    assert g["loc"] == pytest.approx(gl, rel=1e-9)
    assert g["scale"] == pytest.approx(gs, rel=1e-9)
    # closed form itself, degree 2: E = c0 + c1 mu + c2 (mu^2 + s^2)
    gl, gs = R.normal_poly_grad([1.0, 2.0, 3.0], mu, s)
    assert gl == pytest.approx(2.0 + 6.0 * mu)
    assert gs == pytest.approx(6.0 * s)


def test_exact_grad_gamma():
    g = R.exact_grad("Gamma", {"concentration": 0.7, "rate": 2.5},
                     lambda x: x ** 2, levels=3)
    ref = R.gamma_moment_grad(2, 0.7, 2.5)
    for k in ref:
        assert g[k] == pytest.approx(ref[k], rel=1e-9)


def test_exact_grad_discrete_closed_forms():
    g = R.exact_grad("Poisson", {"rate": 3.3}, lambda k: k ** 3)
    assert g["rate"] == pytest.approx(R.poisson_moment_grad(3, 3.3)["rate"],
                                      rel=1e-10)
    fv = [2.0, -1.0]
    for key, val in (("probs", 0.3), ("logits", 0.7)):
        g = R.exact_grad("Bernoulli", {key: val}, lambda k: fv[k])
        ref = R.bernoulli_grad(*fv, **{key: val})
        assert g[key] == pytest.approx(ref[key], rel=1e-10)
    fv = np.array([1.0, -2.0, 0.5, 3.0])
    for key, val in (("logits", np.array([0.1, -0.5, 1.0, 0.3])),
                     ("probs", np.array([1.0, 2.0, 3.0, 4.0]))):
        g = R.exact_grad("Categorical", {key: val}, lambda k: fv[k])
        np.testing.assert_allclose(
            g[key], R.categorical_grad(fv, **{key: val})[key], rtol=1e-9,
            atol=1e-12)
    g = R.exact_grad("NegativeBinomial", {"total_count": 3, "probs": 0.3},
                     lambda k: k)
    assert g["probs"] == pytest.approx(3 / 0.7 ** 2, rel=1e-10)
    a = np.array([0.7, 2.0, 3.0])
    pw = [1, 2, 0.5]
    g = R.exact_grad("Dirichlet", {"concentration": a}, {"powers": pw})
    np.testing.assert_allclose(
        g["concentration"], R.dirichlet_moment_grad(a, pw)["concentration"],
        rtol=1e-9)


# ---------------------------------------------------------------------------
# exact score-estimator moments for Normal x polynomial vs plain Monte Carlo
# ---------------------------------------------------------------------------


def _check_var(sample, exact, nse=5.0):
    n = sample.size
    c = sample - sample.mean()
    v = c.var()
    se = math.sqrt(max(np.mean(c ** 4) - v ** 2, 0.0) / n)
    assert abs(v - exact) < nse * se, (v, exact, se)


def _check_mean(sample, exact, nse=5.0):
    se = sample.std() / math.sqrt(sample.size)
    assert abs(sample.mean() - exact) < nse * se, (sample.mean(), exact, se)


@pytest.mark.parametrize("coeffs,loc,scale,b", [
    ([0.5, -1.0, 0.3], 0.3, 1.7, 0.7),
    ([2.0, 0.0, 0.0, 0.5], -0.8, 0.6, 0.0),
    ([1000.0, 1.0], 2.0, 0.5, 1000.0),
])
def test_normal_poly_score_moments_vs_mc(coeffs, loc, scale, b):
    ex = R.normal_poly_score_moments(coeffs, loc, scale, b)
    rng = np.random.default_rng(12345)
    x = rng.normal(loc, scale, 400_000)
    z = (x - loc) / scale
    f = np.polynomial.polynomial.polyval(x, coeffs)
    _check_mean(f, ex["value"])
    _check_var(f, ex["var_f"])
    scores = {"loc": z / scale, "scale": (z * z - 1) / scale}
    gl, gs = R.normal_poly_grad(coeffs, loc, scale)
    assert ex["grad"]["loc"] == pytest.approx(gl, rel=1e-12, abs=1e-12)
    assert ex["grad"]["scale"] == pytest.approx(gs, rel=1e-12, abs=1e-12)
    for name, s in scores.items():
        g = (f - b) * s
        _check_mean(g, ex["grad"][name])
        _check_var(g, ex["var"][name])


def test_normal_poly_score_moments_simple_closed_form():
    # f(x) = x, b = 0: (x s_loc) = (mu + s z) z / s, Var = mu^2/s^2 + 2
    mu, s = 0.7, 1.3
    ex = R.normal_poly_score_moments([0.0, 1.0], mu, s, 0.0)
    assert ex["value"] == pytest.approx(mu)
    assert ex["var_f"] == pytest.approx(s ** 2)
    assert ex["grad"]["loc"] == pytest.approx(1.0)
    assert ex["var"]["loc"] == pytest.approx(mu ** 2 / s ** 2 + 2.0)


def test_optimal_baseline_normal_poly():
    coeffs, mu, s = [0.5, -1.0, 0.3, 0.2], 0.3, 1.7
    opt = R.optimal_baseline_normal_poly(coeffs, mu, s)
    for name in ("loc", "scale"):
        b = opt["baseline"][name]
        v = opt["var"][name]
        assert v == pytest.approx(
            R.normal_poly_score_moments(coeffs, mu, s, b)["var"][name],
            rel=1e-12)
        # Var(b) is a quadratic in b minimised at b*
        lo = R.normal_poly_score_moments(coeffs, mu, s, b - 0.5)["var"][name]
        hi = R.normal_poly_score_moments(coeffs, mu, s, b + 0.5)["var"][name]
        assert lo > v and hi > v
        assert lo == pytest.approx(hi, rel=1e-10)
    # f constant: b* = the constant, zero variance
    opt = R.optimal_baseline_normal_poly([3.0], mu, s)
    assert opt["baseline"]["loc"] == pytest.approx(3.0)
    assert opt["var"]["scale"] == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------------------
# quadrature robustness: endpoint singularities and jumps in f
# ---------------------------------------------------------------------------


def test_quadrature_small_concentration():
    # density ~ x^(a - 1) at 0 (and (1 - x)^(b - 1) at 1 for Beta): plain
    # QUADPACK pieces starting at tiny x lose ~1e-6 here; log-x pieces do not
    for a in (0.05, 0.3):
        prm = {"concentration": a, "rate": 2.0}
        assert R.expectation("Gamma", prm, lambda x: 1.0) == pytest.approx(
            1.0, rel=1e-13)
        assert R.expectation("Gamma", prm, lambda x: x) == pytest.approx(
            a / 2.0, rel=1e-12)
    prm = {"concentration1": 0.4, "concentration0": 0.2}
    assert R.expectation("Beta", prm, lambda x: x * x) == pytest.approx(
        R.dirichlet_moment([0.4, 0.2], [2, 0]), rel=1e-12)


def test_jumps_in_f():
    # without breakpoints at the jumps, Gauss-Kronrod is off by up to ~1e-6
    # for some rates; the automatic jump search puts them in
    def ind(x):
        return 1.0 if 0.5 <= x <= 2.0 else 0.0

    for r in (1.483, 1.489, 1.493, 1.502):
        assert R.expectation("Exponential", {"rate": r}, ind) == \
            pytest.approx(math.exp(-0.5 * r) - math.exp(-2 * r), abs=1e-14)
    g = R.exact_grad("Exponential", {"rate": 1.5}, ind, levels=3)
    assert g["rate"] == pytest.approx(
        -0.5 * math.exp(-0.75) + 2 * math.exp(-3.0), rel=1e-10)
    # many jumps; explicit points give the same
    m, s = 0.3, 1.7
    k = np.arange(-30, 30)
    cdf = special.ndtr((k / 2.0 - m) / s)
    exact = math.fsum(k[:-1] * np.diff(cdf))
    f = lambda x: math.floor(2 * x)  # noqa: E731
    assert R.expectation("Normal", {"loc": m, "scale": s}, f) == \
        pytest.approx(exact, abs=1e-13)
    assert R.expectation("Normal", {"loc": m, "scale": s}, f,
                         points=k / 2.0, detect_jumps=False) == \
        pytest.approx(exact, abs=1e-13)
