"""Measure-valued derivatives (mvd_grad): each decomposition unbiased within
5 standard errors of closed-form gradients for several f, with and without
coupling; standard errors calibrated over repeats; bit-identical over
thread counts; the decompositions' parts checked against their densities."""
import math

import numpy as np
import pytest
from scipy import integrate, special, stats

import mcscore as mc
from mcscore.enumeration import enumerate_grad
from mcscore.measure_valued import _family, mvd_grad

from _exact import assert_same_estimate


def _f(x):
    return np.asarray(x, float).reshape(len(x), -1)


def cube(x):
    return (_f(x) ** 3).sum(1)


def sine(x):
    return np.sin(_f(x)).sum(1)


def square(x):
    return (_f(x) ** 2).sum(1)


def expneg(x):
    return np.exp(-_f(x)).sum(1)


def ident(x):
    return _f(x).sum(1)


def step(x):  # not differentiable: MVD does not need grad f
    return (_f(x) > 1.0).sum(1).astype(float)


mu, sd = np.array([0.5, -1.0]), np.array([1.0, 2.0])
lam = np.array([0.5, 3.0])
alpha, beta = np.array([2.0, 0.7]), np.array([1.0, 3.0])

# (dist, wrt, f, exact gradient)
CASES = [
    ("normal-cube", lambda: mc.Normal(mu, sd), None, cube,
     {"loc": 3 * mu**2 + 3 * sd**2, "scale": 6 * mu * sd}),
    ("normal-sine", lambda: mc.Normal(mu, sd), None, sine,
     {"loc": np.cos(mu) * np.exp(-sd**2 / 2), "scale": -sd * np.sin(mu) * np.exp(-sd**2 / 2)}),
    ("normal-step", lambda: mc.Normal(mu, sd), None, step,
     {"loc": stats.norm.pdf((1 - mu) / sd) / sd,
      "scale": stats.norm.pdf((1 - mu) / sd) * (1 - mu) / sd**2}),
    ("lognormal-ident", lambda: mc.LogNormal(mu, sd / 4), None, ident,
     {"loc": np.exp(mu + sd**2 / 32), "scale": sd / 4 * np.exp(mu + sd**2 / 32)}),
    ("exponential-square", lambda: mc.Exponential(lam), None, square, {"rate": -4 / lam**3}),
    ("exponential-expneg", lambda: mc.Exponential(lam), None, expneg,
     {"rate": 1 / (lam + 1) ** 2}),
    ("gamma-ident", lambda: mc.Gamma(alpha, beta), ["rate"], ident, {"rate": -alpha / beta**2}),
    ("gamma-expneg", lambda: mc.Gamma(alpha, beta), ["rate"], expneg,
     {"rate": alpha * (beta / (beta + 1)) ** (alpha - 1) / (beta + 1) ** 2}),
    ("poisson-square", lambda: mc.Poisson(lam), None, square, {"rate": 1 + 2 * lam}),
    ("poisson-expneg", lambda: mc.Poisson(lam), None, expneg,
     {"rate": (math.exp(-1) - 1) * np.exp(lam * (math.exp(-1) - 1))}),
]


@pytest.mark.parametrize("coupling", [True, False])
@pytest.mark.parametrize("name,make,wrt,f,exact", CASES, ids=[c[0] for c in CASES])
def test_unbiased_closed_form(name, make, wrt, f, exact, coupling):
    r = mvd_grad(f, make(), 20000, rng=7, wrt=wrt, coupling=coupling)
    assert r.info["f_evals_per_sample"] == 2 * sum(np.size(v) for v in exact.values())
    for k, v in exact.items():
        assert np.all(np.abs(r.grad[k] - v) < 5 * r.stderr[k]), (k, r.grad[k], v, r.stderr[k])
        assert np.all(r.stderr[k] > 0)


def _mixed(x):
    x = _f(x)
    return np.cos(x).sum(1) + x[:, 0] * x[:, -1] + 0.5 * (x.sum(1) > 1)


@pytest.mark.parametrize("coupling", [True, False])
@pytest.mark.parametrize("make", [
    lambda: mc.Bernoulli(logits=[0.3, -1.0, 2.0]),
    lambda: mc.Bernoulli(probs=[0.2, 0.9]),
    lambda: mc.Categorical(logits=[[0.1, 0.5, -1.0], [0.0, 0.0, 2.0]]),
    lambda: mc.Categorical(probs=[[1.0, 3.0, 0.5, 2.0]]),
], ids=["bern-logits", "bern-probs", "cat-logits", "cat-probs"])
def test_unbiased_discrete_against_enumeration(make, coupling):
    d = make()
    exact = enumerate_grad(_mixed, d)
    r = mvd_grad(_mixed, d, 20000, rng=3, coupling=coupling, value=True)
    for k in exact.grad:
        assert np.all(np.abs(r.grad[k] - exact.grad[k]) <= 5 * r.stderr[k] + 1e-12)
    assert abs(r.value - exact.value) < 5 * r.value_stderr


def test_one_bernoulli_is_exact_to_rounding():
    """One Bernoulli coordinate: c (f(1) - f(0)) is the same at every draw,
    so the estimate equals the enumeration to rounding."""
    d = mc.Bernoulli(logits=0.7)
    f = lambda x: np.cos(3 * np.asarray(x, float))
    r = mvd_grad(f, d, 1000, rng=1)
    e = enumerate_grad(f, d)
    assert abs(r.grad["logits"] - e.grad["logits"]) < 1e-14


def test_coupled_beats_score_on_normal_cubic():
    """The README's Normal cubic (Normal(0.7, 1.3), f = 1 + 2x - x^2 + x^3/2):
    the coupled MVD's variance per f evaluation (4 per sample) is below the
    score function's (1 per sample), as in Mohamed et al.'s figures."""
    q = mc.Normal(0.7, 1.3)
    f = lambda x: 1.0 + 2.0 * x - x**2 + 0.5 * x**3
    m = mvd_grad(f, q, 20000, rng=1)
    s = mc.score_grad(f, q, 20000, rng=1)
    assert m.info["f_evals_per_sample"] == 4
    total = lambda r: sum(float(np.sum(v)) for v in r.variance.values())
    assert total(m) * 4 < 0.6 * total(s)


def test_calibration():
    """mean z^2 over R repeats within 5 sqrt(2/R) of 1."""
    q = mc.Normal([0.3], [1.5])
    exact = {"loc": 3 * 0.09 + 3 * 2.25, "scale": 6 * 0.3 * 1.5}
    R = 200
    z2 = []
    for seed in range(R):
        r = mvd_grad(cube, q, 400, rng=seed)
        z2 += [float(((r.grad[k] - v) / r.stderr[k])[0]) ** 2 for k, v in exact.items()]
    # 2 coordinates per repeat: the mean of the 2R values has variance <= 2 / R
    assert abs(np.mean(z2) - 1) < 5 * math.sqrt(2 / R)


@pytest.mark.parametrize("make", [lambda: mc.Normal(mu, sd), lambda: mc.Poisson(lam),
                                  lambda: mc.Categorical(logits=[[0.1, 0.5, -1.0]])])
@pytest.mark.parametrize("coupling", [True, False])
def test_bit_identical_over_threads(make, coupling):
    runs = [mvd_grad(_mixed, make(), 3000, rng=11, coupling=coupling, value=True,
                     n_threads=t, block_size=200) for t in (1, 2)]
    assert_same_estimate(*runs)
    # and over chunk sizes of f
    c = mvd_grad(_mixed, make(), 3000, rng=11, coupling=coupling, value=True, n_threads=2,
                 block_size=200, chunk_size=77)
    assert_same_estimate(runs[0], c)


def test_parts_are_densities():
    """The decompositions: c (p+ - p-) integrates against test functions to
    d E / d theta (checked by quadrature for the Normal's Rayleigh and Maxwell
    parts), and M U ~ N(0, 1) for the coupling of the scale."""
    rng = np.random.default_rng(0)
    for g in (np.sin, lambda t: t**3, lambda t: np.exp(-t * t)):
        # loc: c = 1/sqrt(2 pi) (sigma = 1): c (E g(R) - E g(-R)) = d/dmu E g(mu + z) at 0
        ray = lambda t: t * np.exp(-t * t / 2)
        lhs = (integrate.quad(lambda t: (g(t) - g(-t)) * ray(t), 0, np.inf)[0]
               / math.sqrt(2 * math.pi))
        rhs = integrate.quad(lambda t: g(t) * t * stats.norm.pdf(t), -np.inf, np.inf)[0]
        assert abs(lhs - rhs) < 1e-8
        # scale: c = 1: E g(M) - E g(Z) = E g(Z) (Z^2 - 1)
        lhs = integrate.quad(lambda t: g(t) * (t * t - 1) * stats.norm.pdf(t), -np.inf, np.inf)[0]
        mx = integrate.quad(lambda t: g(t) * t * t * stats.norm.pdf(t), -np.inf, np.inf)[0]
        z = integrate.quad(lambda t: g(t) * stats.norm.pdf(t), -np.inf, np.inf)[0]
        assert abs(lhs - (mx - z)) < 1e-8
    m = np.sqrt(rng.chisquare(3, 200000)) * np.where(rng.random(200000) < 0.5, -1, 1)
    assert stats.kstest(m * rng.random(200000), "norm").pvalue > 1e-3


def test_errors():
    with pytest.raises(ValueError, match="concentration"):
        mvd_grad(ident, mc.Gamma(2.0, 1.0), 100)
    with pytest.raises(ValueError, match="mvd_grad supports"):
        mvd_grad(ident, mc.Beta(2.0, 1.0), 100)
    with pytest.raises(ValueError, match="wrt"):
        mvd_grad(ident, mc.Normal(0.0, 1.0), 100, wrt=["rate"])
    with pytest.raises(TypeError, match="coupling"):
        mvd_grad(ident, mc.Normal(0.0, 1.0), 100, coupling="yes")
    with pytest.raises(ValueError, match="n must"):
        mvd_grad(ident, mc.Normal(0.0, 1.0), 1)
    r = mvd_grad(ident, mc.Normal(0.0, 1.0), 100, rng=0)
    assert math.isnan(r.value)


@pytest.mark.parametrize("g", [np.sin, lambda t: t**2, lambda t: np.exp(-t)],
                         ids=["sin", "square", "expneg"])
def test_decompositions_by_quadrature(g):
    """c (E_{p+} g - E_{p-} g) = d/dtheta E g for each family's parts, by
    quadrature / exact sums against a central difference of E g."""
    def dnum(fun, th, h=1e-5):
        return (fun(th + h) - fun(th - h)) / (2 * h)

    def quad(pdf):
        return integrate.quad(lambda t: g(t) * pdf(t), 0, np.inf, limit=200)[0]

    lam = 1.7
    # Exponential(rate): (1 / rate) (Exp(rate) - Gamma(2, rate))
    lhs = (quad(lambda t: stats.expon.pdf(t, scale=1 / lam))
           - quad(lambda t: stats.gamma.pdf(t, 2, scale=1 / lam))) / lam
    rhs = dnum(lambda r: quad(lambda t: stats.expon.pdf(t, scale=1 / r)), lam)
    assert abs(lhs - rhs) < 1e-7
    # Gamma rate: (a / rate) (Gamma(a, rate) - Gamma(a + 1, rate))
    a = 2.3
    lhs = a / lam * (quad(lambda t: stats.gamma.pdf(t, a, scale=1 / lam))
                     - quad(lambda t: stats.gamma.pdf(t, a + 1, scale=1 / lam)))
    rhs = dnum(lambda r: quad(lambda t: stats.gamma.pdf(t, a, scale=1 / r)), lam)
    assert abs(lhs - rhs) < 1e-7
    # Poisson: E g(N + 1) - E g(N)
    k = np.arange(200)
    pois = lambda r: float((g(k.astype(float)) * stats.poisson.pmf(k, r)).sum())
    lhs = float(((g(k + 1.0) - g(k.astype(float))) * stats.poisson.pmf(k, lam)).sum())
    assert abs(lhs - dnum(pois, lam)) < 1e-7
    # Categorical logits: pi_j (1 - pi_j) (g(j) - E[g | != j])
    lg = np.array([0.2, -0.4, 1.1, 0.0])
    gv = g(np.arange(4.0))
    for j in range(4):
        pi = special.softmax(lg)
        rest = np.delete(pi, j) / (1 - pi[j])
        lhs = pi[j] * (1 - pi[j]) * (gv[j] - rest @ np.delete(gv, j))
        e = np.eye(4)[j]
        assert abs(lhs - dnum(lambda t: special.softmax(lg + t * e) @ gv, 0.0)) < 1e-8
        # unnormalised probs v: (1 - pi_j) / sum v (the same split)
        v = np.exp(lg)
        lhs = (1 - pi[j]) / v.sum() * (gv[j] - rest @ np.delete(gv, j))
        assert abs(lhs - dnum(lambda t: (v + t * e) @ gv / (v + t * e).sum(), 0.0)) < 1e-8
    # the samplers: the coupled parts have the laws of the table
    rng = np.random.default_rng(1)
    fam = mvd_pairs(mc.Gamma(a, lam), "rate", rng)
    assert stats.kstest(fam[0], stats.gamma(a, scale=1 / lam).cdf).pvalue > 1e-3
    assert stats.kstest(fam[1], stats.gamma(a + 1, scale=1 / lam).cdf).pvalue > 1e-3
    fam = mvd_pairs(mc.Exponential(lam), "rate", rng)
    assert stats.kstest(fam[1], stats.gamma(2, scale=1 / lam).cdf).pvalue > 1e-3
    fam = mvd_pairs(mc.Normal(0.5, 2.0), "loc", rng)
    assert stats.kstest((fam[0] - 0.5) / 2.0, stats.rayleigh.cdf).pvalue > 1e-3
    fam = mvd_pairs(mc.Normal(0.5, 2.0), "scale", rng)
    assert stats.kstest((fam[1] - 0.5) / 2.0, stats.norm.cdf).pvalue > 1e-3
    assert stats.kstest(np.abs(fam[0] - 0.5) / 2.0, stats.maxwell.cdf).pvalue > 1e-3


def mvd_pairs(dist, name, rng, m=20000):
    """The (x+, x-) draws of a parameter's decomposition, coupled."""
    xp, xm = _family(dist).pair(rng, m, name, True)
    return xp[:, 0], xm[:, 0]
