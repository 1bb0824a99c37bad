"""Every family against independent references (tests/reference.py: scipy.stats
densities, quadrature, exact sums): per-draw scores, log densities, and
gradient estimates within 5 standard errors of the exact gradient."""
import math

import numpy as np
import pytest

import mcscore as mc
from mcscore import integrands as I

import reference as ref

# (id, reference family, reference params, distribution, integrand, f for the reference)
CASES = [
    ("normal", "Normal", {"loc": 0.5, "scale": 2.0}, mc.Normal(0.5, 2.0),
     I.power(2) + I.sin(), lambda x: x * x + math.sin(x)),
    ("lognormal", "LogNormal", {"loc": 0.1, "scale": 0.5}, mc.LogNormal(0.1, 0.5),
     I.call(1.2), lambda x: max(x - 1.2, 0.0)),
    ("exponential", "Exponential", {"rate": 1.5}, mc.Exponential(1.5),
     I.indicator(0.5, 2.0), lambda x: 1.0 if 0.5 <= x <= 2.0 else 0.0),
    ("gamma", "Gamma", {"concentration": 2.5, "rate": 1.5}, mc.Gamma(2.5, 1.5),
     I.log1p(), math.log1p),
    ("gamma-small", "Gamma", {"concentration": 0.7, "rate": 2.0}, mc.Gamma(0.7, 2.0),
     I.power(2), lambda x: x * x),
    ("beta", "Beta", {"concentration1": 2.0, "concentration0": 3.0}, mc.Beta(2.0, 3.0),
     I.power(3), lambda x: x**3),
    ("beta-d", "Beta", {"concentration1": 1.5, "concentration0": 2.5}, mc.Beta(1.5, 2.5),
     I.digital_call(0.3), lambda x: 1.0 if x > 0.3 else 0.0),
    ("beta-u", "Beta", {"concentration1": 0.6, "concentration0": 1.4}, mc.Beta(0.6, 1.4),
     I.digital_call(0.3), lambda x: 1.0 if x > 0.3 else 0.0),
    ("gamma-tiny", "Gamma", {"concentration": 0.3, "rate": 1.0}, mc.Gamma(0.3, 1.0),
     I.indicator(0.1, 1.0), lambda x: 1.0 if 0.1 <= x <= 1.0 else 0.0),
    ("poisson", "Poisson", {"rate": 3.0}, mc.Poisson(3.0),
     I.digital_call(2.5), lambda k: 1.0 if k > 2.5 else 0.0),
    ("poisson-big", "Poisson", {"rate": 12.0}, mc.Poisson(12.0),
     0.01 * I.power(2) + I.cos(), lambda k: 0.01 * k * k + math.cos(k)),
    ("bernoulli-p", "Bernoulli", {"probs": 0.3}, mc.Bernoulli(probs=0.3),
     I.polynomial([0.45**2, -0.9, 1.0]), lambda b: (b - 0.45) ** 2),
    ("bernoulli-l", "Bernoulli", {"logits": -0.4}, mc.Bernoulli(logits=-0.4),
     I.polynomial([0.499**2, -0.998, 1.0]), lambda b: (b - 0.499) ** 2),
    ("binomial-p", "Binomial", {"total_count": 10, "probs": 0.3},
     mc.Binomial(10, probs=0.3), I.power(2), lambda k: k * k),
    ("binomial-l", "Binomial", {"total_count": 7, "logits": -0.5},
     mc.Binomial(7, logits=-0.5), I.sin(), math.sin),
    ("geometric-p", "Geometric", {"probs": 0.3}, mc.Geometric(probs=0.3),
     I.cos(), math.cos),
    ("geometric-l", "Geometric", {"logits": 0.5}, mc.Geometric(logits=0.5),
     I.power(2), lambda k: k * k),
    ("negbin-p", "NegativeBinomial", {"total_count": 4, "probs": 0.4},
     mc.NegativeBinomial(4, probs=0.4), I.put(3.0), lambda k: max(3.0 - k, 0.0)),
    ("negbin-l", "NegativeBinomial", {"total_count": 5, "logits": -0.2},
     mc.NegativeBinomial(5, logits=-0.2), I.linear(1.0), float),
    ("categorical-p", "Categorical", {"probs": np.array([0.2, 0.5, 0.3])},
     mc.Categorical(probs=[0.2, 0.5, 0.3]), I.power(2), lambda k: k * k),
    ("categorical-l", "Categorical", {"logits": np.linspace(-1, 1, 7)},
     mc.Categorical(logits=np.linspace(-1, 1, 7)), I.sin(), math.sin),
    ("multinomial-p", "Multinomial", {"total_count": 5, "probs": np.array([0.2, 0.5, 0.3])},
     mc.Multinomial(5, probs=[0.2, 0.5, 0.3]), I.sum_of_squares(),
     lambda x: float((np.asarray(x) ** 2).sum())),
    ("multinomial-l", "Multinomial", {"total_count": 4, "logits": np.array([0.1, -0.2, 0.3])},
     mc.Multinomial(4, logits=[0.1, -0.2, 0.3]), I.linear([1.0, 2.0, 3.0]) + I.sin(),
     lambda x: float(np.dot([1.0, 2.0, 3.0], x) + np.sin(x).sum())),
    ("dirichlet", "Dirichlet", {"concentration": np.array([1.5, 2.0, 3.0])},
     mc.Dirichlet([1.5, 2.0, 3.0]), I.sum_of_squares(),
     [(1.0, [2, 0, 0]), (1.0, [0, 2, 0]), (1.0, [0, 0, 2])]),
    ("dirichlet-2", "Dirichlet", {"concentration": np.array([0.5, 0.8])},
     mc.Dirichlet([0.5, 0.8]), I.linear([1.0, 0.0]), [(1.0, [1, 0])]),
]
IDS = [c[0] for c in CASES]


@pytest.fixture(scope="module")
def exact():
    return {c[0]: ref.exact_grad(c[1], c[2], c[5]) for c in CASES}


def _draws(dist, m, seed):
    x = dist.sample(m, rng=seed)
    return x


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_log_prob_matches_scipy(case):
    _, fam, params, dist, _, _ = case
    x = _draws(dist, 20, 0)
    lp = dist.log_prob(x)
    for i in range(len(x)):
        assert np.isclose(lp[i], ref.log_prob(fam, params, x[i]), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_scores_match_finite_differences_of_scipy_log_density(case):
    _, fam, params, dist, _, _ = case
    x = _draws(dist, 8, 1)
    sc = dist.score(x)
    for i in range(len(x)):
        fd = ref.score_fd(fam, params, x[i])
        for k, v in fd.items():
            np.testing.assert_allclose(sc[k][i], v, rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_mean_of_score_is_zero(case):
    _, _, _, dist, _, _ = case
    x = _draws(dist, 100_000, 2)
    for k, s in dist.score(x).items():
        z = s.mean(0) / (s.std(0, ddof=1) / np.sqrt(len(s)))
        assert np.all(np.abs(z) < 5), (k, z)


@pytest.mark.parametrize("baseline", [None, "loo", "optimal"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradient_within_5_standard_errors_of_exact(case, baseline, exact):
    name, _, _, dist, f, _ = case
    r = mc.score_grad(f, dist, 200_000, rng=17, baseline=baseline)
    for k, g in exact[name].items():
        z = (r.grad[k] - g) / r.stderr[k]
        assert np.all(np.abs(z) < 5), (k, r.grad[k], g, z)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_value_within_5_standard_errors_of_exact(case):
    name, fam, params, dist, f, fref = case
    r = mc.score_grad(f, dist, 200_000, rng=3)
    ev = ref.expectation(fam, params, fref)
    assert abs(r.value - ev) < 5 * r.value_stderr


@pytest.mark.parametrize("case", CASES[::3], ids=IDS[::3])
def test_python_callable_path_is_accurate_too(case, exact):
    name, _, _, dist, f, _ = case
    r = mc.score_grad(lambda x: f(x.reshape(len(x), -1)), dist, 100_000, rng=5,
                      baseline="loo")
    for k, g in exact[name].items():
        assert np.all(np.abs((r.grad[k] - g) / r.stderr[k]) < 5)


def test_closed_form_and_reference_agree_for_normal():
    # the reference's finite differences against the closed form d/dmu, d/dsigma
    g = ref.exact_grad("Normal", {"loc": 0.5, "scale": 2.0}, lambda x: x * x)
    assert np.isclose(g["loc"], 1.0, rtol=1e-7) and np.isclose(g["scale"], 4.0, rtol=1e-7)
