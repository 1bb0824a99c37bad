"""Exact enumeration (enumerate_grad): against independent exact sums and
closed forms, against the estimators' means to rounding, the truncation of
Poisson / Geometric with its exact bound, and enumeration_advice."""
import math

import numpy as np
import pytest
from scipy import special, stats

import mcscore as mc
from mcscore.enumeration import enumerate_grad, enumeration_advice


def _f(x):
    return np.asarray(x, float).reshape(len(x), -1)


def mixed(x):
    x = _f(x)
    return np.cos(x).sum(1) + x[:, 0] * x[:, -1]


def test_bernoulli_closed_form():
    th = np.array([0.3, -1.2, 2.0])
    p = special.expit(th)
    t = 0.45
    e = enumerate_grad(lambda b: ((_f(b) - t) ** 2).sum(1), mc.Bernoulli(logits=th))
    np.testing.assert_allclose(e.grad["logits"], p * (1 - p) * (1 - 2 * t), rtol=1e-13)
    assert e.n == 8 and e.info["f_evals"] == 8
    assert np.all(e.stderr["logits"] == 0)


def test_categorical_single_unit_closed_form():
    lg = np.array([0.2, -0.5, 1.0, 0.0])
    pi = special.softmax(lg)
    fv = np.array([1.0, -2.0, 0.5, 3.0])
    e = enumerate_grad(lambda k: fv[np.asarray(k)], mc.Categorical(logits=lg))
    np.testing.assert_allclose(e.grad["logits"], pi * (fv - pi @ fv), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(e.value, pi @ fv, rtol=1e-14)
    # probs (unnormalised): d pi_k / d v_j = ([k = j] - pi_k) / sum v
    v = np.array([1.0, 3.0, 0.5])
    pv = v / v.sum()
    e = enumerate_grad(lambda k: fv[np.asarray(k)], mc.Categorical(probs=v))
    np.testing.assert_allclose(e.grad["probs"], (fv[:3] - pv @ fv[:3]) / v.sum(), rtol=1e-13)


def test_binomial_closed_form():
    n, p = np.array([3, 5]), np.array([0.3, 0.6])
    # E[x^2] = n p (1 - p) + n^2 p^2: d/dp = n (1 - 2p) + 2 n^2 p
    e = enumerate_grad(lambda x: (_f(x) ** 2).sum(1), mc.Binomial(total_count=n, probs=p))
    np.testing.assert_allclose(e.grad["probs"], n * (1 - 2 * p) + 2 * n**2 * p, rtol=1e-12)
    assert e.n == 4 * 6


@pytest.mark.parametrize("make", [
    lambda: mc.Bernoulli(logits=[0.3, -1.0, 2.0]),
    lambda: mc.Categorical(logits=[[0.1, 0.5, -1.0], [0.0, 0.0, 2.0]]),
    lambda: mc.Binomial(total_count=[2, 3], probs=[0.3, 0.6]),
], ids=["bernoulli", "categorical", "binomial"])
def test_agrees_with_score_estimator(make):
    d = make()
    e = enumerate_grad(mixed, d)
    s = mc.score_grad(mixed, d, 100000, rng=5, baseline="optimal")
    for k in e.grad:
        assert np.all(np.abs(s.grad[k] - e.grad[k]) < 5 * s.stderr[k])
    assert abs(s.value - e.value) < 5 * s.value_stderr


def test_estimator_means_to_rounding():
    """With one draw per support point weighted by its probability the
    score estimator's mean is the enumeration: the estimators' algebra on
    the whole support (score_grad_from_samples with weights folded into f)
    reproduces it to rounding."""
    d = mc.Categorical(logits=[0.1, 0.5, -1.0, 0.3])
    e = enumerate_grad(mixed, d)
    x = np.arange(4)
    w = np.exp(d.log_prob(x)) * 4  # mean over the 4 points of p(x) f(x) s(x) * 4 / 4
    r = mc.score_grad_from_samples(d, x, w * mixed(x))
    np.testing.assert_allclose(r.grad["logits"], e.grad["logits"], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("make,exact", [
    (lambda: mc.Poisson([0.5, 3.0]),
     lambda d: {"rate": (math.exp(-1) - 1) * np.exp(d.rate * (math.exp(-1) - 1))}),
    (lambda: mc.Geometric(probs=[0.3, 0.7]),
     # E[e^-x] = p / (1 - (1 - p) e^-1): d/dp = (1 - e^-1) / (1 - (1 - p) e^-1)^2
     lambda d: {"probs": (1 - math.exp(-1)) / (1 - (1 - d.probs) * math.exp(-1)) ** 2}),
], ids=["poisson", "geometric"])
def test_truncated_with_bound(make, exact):
    d = make()
    f = lambda x: np.exp(-_f(x)).sum(1)
    e = enumerate_grad(f, d, f_bound=2.0, tol=1e-9)
    ex = exact(d)
    for k, v in ex.items():
        err = np.abs(e.grad[k] - v)
        assert np.all(err <= e.info["truncation_bound"][k] + 1e-13)
        assert np.all(e.info["truncation_bound"][k] <= 1e-9)
        assert np.all(err < 1e-9)


def test_truncation_bound_is_a_bound():
    """A loose tolerance: the actual error of the truncated gradient is
    below the reported bound (f = 1 on the tail, the worst case for a
    bound |f| <= 1)."""
    d = mc.Poisson(4.0)
    f = lambda x: np.ones(len(x))  # E[f s] = 0 exactly
    e = enumerate_grad(f, d, f_bound=1.0, tol=1e-3)
    assert abs(e.grad["rate"]) <= e.info["truncation_bound"]["rate"]
    g = lambda x: (_f(x)[:, 0] > 9).astype(float)  # the tail mass P(x > 9)
    e = enumerate_grad(g, d, f_bound=1.0, tol=1e-3)
    exact = stats.poisson.pmf(9, 4.0)  # d/dlam P(N > 9) = P(N = 9)
    assert abs(e.grad["rate"] - exact) <= e.info["truncation_bound"]["rate"] + 1e-15


def test_refusals():
    with pytest.raises(ValueError, match="f_bound"):
        enumerate_grad(mixed, mc.Poisson(2.0))
    with pytest.raises(ValueError, match="supports Bernoulli"):
        enumerate_grad(mixed, mc.Normal(0.0, 1.0))
    with pytest.raises(ValueError, match="max_support"):
        enumerate_grad(mixed, mc.Bernoulli(logits=np.zeros(30)))
    with pytest.raises(ValueError, match="max_support"):
        enumerate_grad(mixed, mc.Poisson(np.full(5, 50.0)), f_bound=1.0, tol=1e-12,
                       max_support=1000)


def test_advice():
    small = enumeration_advice(mixed, mc.Bernoulli(logits=[0.3, -1.0]), 1e-3, rng=0)
    assert small["support_size"] == 4 and small["cheaper"] == "enumerate"
    big = enumeration_advice(mixed, mc.Bernoulli(logits=np.zeros(40)), 1.0, rng=0)
    assert big["cheaper"] == "sample" and big["support_size"] > big["sample_evals"]
