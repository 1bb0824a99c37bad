"""RELAX (relax_grad): unbiased with an untrained and a trained surrogate
(the mean over repeats within 5 se of the exact gradient by enumeration),
training lowers the variance, the REBAR surrogate reproduces rebar_grad's
estimator, gradient tuning of REBAR's temperature, calibration,
bit-identity over threads, and the torch surrogate."""
import math

import numpy as np
import pytest
from scipy import special

import mcscore as mc
from mcscore.relax import (NumpySurrogate, RebarSurrogate, TorchSurrogate, relax_grad,
                           train_surrogate, tune_rebar)

from _exact import assert_same_estimate

T = 0.45
TH = np.linspace(-1.5, 1.5, 4)


def bern_f(b):
    return ((b - T) ** 2).sum(-1) + b[:, 0] * b[:, -1]


def bern_g(b):
    g = 2 * (b - T)
    g[:, 0] += b[:, -1]
    g[:, -1] += b[:, 0]
    return g


K = 5
LG = np.random.default_rng(7).normal(size=K)
C = np.linspace(-1.0, 1.0, K)


def cat_f(z):
    s = z @ C
    return np.sin(3 * s) + s**2


def cat_g(z):
    s = z @ C
    return (3 * np.cos(3 * s) + 2 * s)[:, None] * C


def linear_surrogate(D):
    """c(z) = phi_0 + sum_c phi_{1+c} sigmoid(z_c)."""
    sig = special.expit
    return NumpySurrogate(
        lambda z, phi: phi[0] + (sig(z.reshape(len(z), -1)) * phi[1:]).sum(1),
        lambda z, phi: ((sig(z) * (1 - sig(z))).reshape(len(z), -1) * phi[1:]).reshape(z.shape),
        lambda z, phi: np.concatenate([np.ones((len(z), 1)), sig(z.reshape(len(z), -1))], 1),
        np.zeros(D + 1), lr=0.05)


PROBLEMS = [
    ("bern-logits", lambda: mc.Bernoulli(logits=TH), bern_f, bern_g, False),
    ("bern-probs", lambda: mc.Bernoulli(probs=special.expit(TH)), bern_f, bern_g, False),
    ("cat-logits", lambda: mc.Categorical(logits=LG), cat_f, cat_g, True),
    ("cat-probs", lambda: mc.Categorical(probs=np.exp(LG)), cat_f, cat_g, True),
]


def _exact(d, f, cat):
    fe = (lambda k: f(np.eye(K)[np.asarray(k)])) if cat else f
    return mc.enumerate_grad(fe, d).grad


def _check_mean(runs, exact):
    """The mean over repeats within 5 of its standard errors."""
    for k, v in exact.items():
        g = np.array([r.grad[k] for r in runs])
        se = np.sqrt((np.array([r.stderr[k] for r in runs]) ** 2).sum(0)) / len(runs)
        assert np.all(np.abs(g.mean(0) - v) < 5 * se), (k, g.mean(0), v, se)


@pytest.mark.parametrize("name,make,f,g,cat", PROBLEMS, ids=[p[0] for p in PROBLEMS])
def test_unbiased_untrained_and_trained(name, make, f, g, cat):
    d = make()
    exact = _exact(d, f, cat)
    D = d.draw_size * (K if cat else 1)
    s = linear_surrogate(D)
    untrained = [relax_grad(f, d, 4000, surrogate=s, rng=i, train_steps=0) for i in range(5)]
    _check_mean(untrained, exact)
    losses = train_surrogate(f, d, s, steps=150, batch=256, rng=99)
    trained = [relax_grad(f, d, 4000, surrogate=s, rng=i, train_steps=0) for i in range(5)]
    _check_mean(trained, exact)
    v0 = sum(float(np.sum(v)) for v in untrained[0].variance.values())
    v1 = sum(float(np.sum(v)) for v in trained[0].variance.values())
    assert losses[-20:].mean() < losses[:5].mean()
    assert v1 < 0.8 * v0


def test_online_training_in_a_loop():
    """Each call trains the surrogate once after its estimate: every call's
    estimate is unbiased, the later ones have lower variance."""
    d = mc.Bernoulli(logits=TH)
    exact = _exact(d, bern_f, False)
    s = linear_surrogate(4)
    runs = [relax_grad(bern_f, d, 2000, surrogate=s, rng=i, train_steps=5) for i in range(30)]
    _check_mean(runs, exact)
    var = [float(np.sum(r.variance["logits"])) for r in runs]
    assert np.mean(var[-5:]) < 0.5 * np.mean(var[:3])
    assert len(runs[0].info["train_loss"]) == 5


@pytest.mark.parametrize("cat", [False, True])
def test_rebar_surrogate_is_rebar(cat):
    """With c = eta f(sigma(z / tau)) the RELAX terms are REBAR's: the same
    variance as rebar_grad at fixed eta (different draws; within 10%)."""
    if cat:
        d, f, g = mc.Categorical(logits=LG), cat_f, cat_g
    else:
        d, f, g = mc.Bernoulli(logits=TH), bern_f, bern_g
    s = RebarSurrogate(f, g, temperature=0.5, eta=1.0, categorical=cat)
    r = relax_grad(f, d, 40000, surrogate=s, rng=1, train_steps=0)
    rb = mc.rebar_grad(f, d, 40000, grad_f=g, temperature=0.5, eta=1.0, rng=2)
    exact = _exact(d, f, cat)
    assert np.all(np.abs(r.grad["logits"] - exact["logits"]) < 5 * r.stderr["logits"])
    v, vb = (float(np.sum(x.variance["logits"])) for x in (r, rb))
    assert abs(v / vb - 1) < 0.1


def test_tune_rebar_and_rebar_gradient_temperature():
    d = mc.Bernoulli(logits=TH)
    out = tune_rebar(bern_f, d, grad_f=bern_g, temperature=2.0, eta=0.2, steps=150, rng=0)
    assert out["loss"][-20:].mean() < out["loss"][:5].mean()
    assert out["temperature"] != 2.0 and out["eta"] != 0.2
    r = mc.rebar_grad(bern_f, d, 20000, grad_f=bern_g, temperature="gradient", rng=3)
    exact = _exact(d, bern_f, False)
    assert np.all(np.abs(r.grad["logits"] - exact["logits"]) < 5 * r.stderr["logits"])
    assert r.info["temperature"] > 0 and len(r.info["tuning_loss"]) >= 1


def test_calibration():
    d = mc.Bernoulli(logits=[0.4, -0.8])
    f = lambda b: ((b - T) ** 2).sum(-1) + 3 * b[:, 0] * b[:, 1]
    exact = _exact(d, f, False)["logits"]
    s = linear_surrogate(2)
    R = 150
    z2 = []
    for i in range(R):
        r = relax_grad(f, d, 300, surrogate=s, rng=i, train_steps=0)
        z2 += list(((r.grad["logits"] - exact) / r.stderr["logits"]) ** 2)
    # 2 coordinates per repeat: the mean of the 2R values has variance <= 2 / R
    assert abs(np.mean(z2) - 1) < 5 * math.sqrt(2 / R)


@pytest.mark.parametrize("cat", [False, True])
def test_bit_identical_over_threads(cat):
    d, f = (mc.Categorical(logits=LG), cat_f) if cat else (mc.Bernoulli(logits=TH), bern_f)
    s = linear_surrogate(K if cat else 4)
    runs = [relax_grad(f, d, 3000, surrogate=s, rng=5, train_steps=0, n_threads=t,
                       block_size=128) for t in (1, 2)]
    assert_same_estimate(*runs)


def test_training_is_reproducible_and_after_the_estimate():
    d = mc.Bernoulli(logits=TH)
    a, b = linear_surrogate(4), linear_surrogate(4)
    ra = relax_grad(bern_f, d, 2000, surrogate=a, rng=3, train_steps=3)
    rb = relax_grad(bern_f, d, 2000, surrogate=b, rng=3, train_steps=0)
    assert_same_estimate(ra, rb)  # the estimate uses phi before training
    c = linear_surrogate(4)
    relax_grad(bern_f, d, 2000, surrogate=c, rng=3, train_steps=3)
    np.testing.assert_array_equal(a.phi, c.phi)
    assert not np.array_equal(a.phi, b.phi)


def test_errors():
    s = linear_surrogate(1)
    with pytest.raises(ValueError, match="Bernoulli and Categorical"):
        relax_grad(lambda x: x[:, 0], mc.Normal(0.0, 1.0), 100, surrogate=s)
    with pytest.raises(TypeError, match="surrogate"):
        relax_grad(bern_f, mc.Bernoulli(logits=TH), 100, surrogate=object())
    with pytest.raises(ValueError, match="train_steps"):
        relax_grad(bern_f, mc.Bernoulli(logits=TH), 100, surrogate=s, train_steps=-1)


def test_torch_surrogate():
    pytest.importorskip("torch")
    d = mc.Categorical(logits=LG)
    exact = _exact(d, cat_f, True)
    s = TorchSurrogate(K, hidden=8, lr=0.02, seed=0)
    untrained = [relax_grad(cat_f, d, 3000, surrogate=s, rng=i, train_steps=0) for i in range(3)]
    _check_mean(untrained, exact)
    losses = train_surrogate(cat_f, d, s, steps=40, batch=256, rng=1)
    trained = [relax_grad(cat_f, d, 3000, surrogate=s, rng=i, train_steps=0) for i in range(3)]
    _check_mean(trained, exact)
    assert losses[-5:].mean() < losses[:3].mean()


def test_batched_shapes():
    """Two Categorical units (f on one-hot (m, 2, 3)) and a (2, 2) batch of
    Bernoullis: unbiased against enumeration."""
    lg = np.random.default_rng(1).normal(size=(2, 3))
    d = mc.Categorical(logits=lg)
    w = np.arange(3.0)

    def f(z):
        return np.sin(z[:, 0] @ w) + (z[:, 1] @ w) ** 2 + z[:, 0, 0] * z[:, 1, 2]

    def g(z):
        a = np.cos(z[:, 0] @ w)[:, None] * w + np.eye(3)[0] * z[:, 1, 2:3]
        b = 2 * (z[:, 1] @ w)[:, None] * w + np.eye(3)[2] * z[:, 0, 0:1]
        return np.stack([a, b], 1)

    exact = mc.enumerate_grad(lambda k: f(np.eye(3)[k]), d).grad
    s = RebarSurrogate(f, g, categorical=True)
    _check_mean([relax_grad(f, d, 20000, surrogate=s, rng=1, train_steps=0)], exact)
    b = mc.Bernoulli(logits=np.array([[0.3, -1.0], [2.0, 0.1]]))
    fb = lambda x: np.exp(x.reshape(len(x), -1) @ np.arange(1, 5.0) / 4)  # noqa: E731
    s = linear_surrogate(4)
    train_surrogate(fb, b, s, steps=50, rng=0)
    _check_mean([relax_grad(fb, b, 20000, surrogate=s, rng=2, train_steps=0)],
                mc.enumerate_grad(fb, b).grad)
