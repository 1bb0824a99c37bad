"""The capabilities a family declares (mean_tangents, mirror, pathwise_spec,
vi_transforms, relaxation) agree with what the family is, and a family
without one gives the estimator's clear error."""
import numpy as np
import pytest

import mcscore as mc

DISTS = {
    "Normal": mc.Normal([0.5, -1.0], [1.0, 2.0]),
    "LogNormal": mc.LogNormal([0.1, 0.3], [0.5, 0.2]),
    "Exponential": mc.Exponential([0.7, 2.0]),
    "Gamma": mc.Gamma([0.7, 3.0], [2.0, 0.5]),
    "Beta": mc.Beta([1.5, 0.6], [2.0, 3.0]),
    "Poisson": mc.Poisson([1.5, 4.0]),
    "Bernoulli": mc.Bernoulli(probs=[0.3, 0.8]),
    "Bernoulli-logits": mc.Bernoulli(logits=[0.2, -1.0]),
    "Binomial": mc.Binomial(5, probs=[0.3, 0.6]),
    "Geometric": mc.Geometric(probs=[0.3, 0.6]),
    "NegativeBinomial": mc.NegativeBinomial(3.0, probs=[0.3, 0.6]),
    "Categorical": mc.Categorical(logits=[0.0, 1.0, -1.0]),
    "Multinomial": mc.Multinomial(4, probs=[0.2, 0.5, 0.3]),
    "Dirichlet": mc.Dirichlet([1.5, 0.7, 2.0]),
    "Laplace": mc.Laplace([0.5, -1.0], [1.0, 2.0]),
    "HalfNormal": mc.HalfNormal([0.7, 2.0]),
    "Chi2": mc.Chi2([0.8, 3.5]),
    "InverseGamma": mc.InverseGamma([5.5, 7.0], [1.5, 2.0]),
    "Gumbel": mc.Gumbel([0.5, -1.0], [1.5, 0.6]),
    "Weibull": mc.Weibull([1.5, 0.8], [0.9, 2.5]),
    "MultivariateNormal": mc.MultivariateNormal([0.5, -1.0], scale_tril=[[1.0, 0.0], [0.3, 2.0]]),
    "LowRankMultivariateNormal": mc.LowRankMultivariateNormal([0.5, -1.0], [[1.0], [0.5]],
                                                              [0.3, 0.7]),
    "Uniform": mc.Uniform([-1.0, 0.5], [2.0, 0.75]),
    "StudentT": mc.StudentT([3.5, 1.5], [0.5, -1.0], [1.0, 2.0]),
    "Cauchy": mc.Cauchy([0.5, -1.0], [1.0, 2.0]),
    "HalfCauchy": mc.HalfCauchy([0.7, 2.0]),
    "VonMises": mc.VonMises([0.0, 0.0], [1.5, 0.2]),
    "OneHotCategorical": mc.OneHotCategorical(logits=[0.0, 1.0, -1.0]),
}


def test_every_family_is_covered():
    assert {type(d).__name__ for d in DISTS.values()} == {c.__name__ for c in mc.FAMILIES}


def _mean(cls, params):
    return np.asarray(cls(**params).mean, float)


@pytest.mark.parametrize("name", [k for k, d in DISTS.items() if d.has_mean_tangents])
def test_mean_tangents_are_derivatives_of_the_mean(name):
    d = DISTS[name]
    tang = d.mean_tangents()
    assert set(tang) == set(d.param_names)
    for p, t in tang.items():
        assert t.shape == d.draw_shape
        h = 1e-6
        up, dn = dict(d._all_params()), dict(d._all_params())
        up[p] = d.params[p] + h
        dn[p] = d.params[p] - h
        fd = (_mean(type(d), up) - _mean(type(d), dn)) / (2 * h)
        np.testing.assert_allclose(t, fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", [k for k, d in DISTS.items() if d.has_mirror])
def test_mirror_is_an_involution_with_the_same_law(name):
    d = DISTS[name]
    x = d.sample(200_000, 1)
    xm = d.mirror(x)
    np.testing.assert_allclose(d.mirror(xm), x, rtol=1e-12, atol=1e-15 * np.abs(x).max())
    # the partner has the same law: same mean, within 5 standard errors
    if not np.isfinite(np.asarray(d.mean)).all():
        # no mean (Cauchy, StudentT with df <= 1): same quartiles, within 5 standard errors
        q = np.quantile(x, [0.25, 0.75], axis=0)
        qm = np.quantile(xm, [0.25, 0.75], axis=0)
        iqr = q[1] - q[0]
        assert np.all(np.abs(qm - q) < 5 * 1.5 * iqr / np.sqrt(len(x)))
        return
    se = x.std(0) / np.sqrt(len(x))
    assert np.all(np.abs(xm.mean(0) - d.mean) < 5 * se)


@pytest.mark.parametrize("name", [k for k, d in DISTS.items() if d.has_rsample])
def test_pathwise_spec_covers_every_parameter(name):
    d = DISTS[name]
    rows = d.pathwise_spec()
    assert sorted(r[0] for r in rows) == sorted(d.param_names)
    for _, kind, a, b, *explicit in rows:
        assert isinstance(int(kind), int)
        # a row is broadcast onto the draw, or an explicit term list (elem, col)
        shape = np.shape(explicit[0]) if explicit else d.draw_shape
        np.broadcast_to(a, shape)
        np.broadcast_to(b, shape)


@pytest.mark.parametrize("name", list(DISTS))
def test_vi_transforms_map_the_parameter_range(name):
    d = DISTS[name]
    kinds = d.vi_transforms()
    assert set(kinds) == set(d.param_names)
    for p, kind in kinds.items():
        v = d.params[p]
        if kind == "log":
            assert (v > 0).all()
        elif kind == "logit":
            assert ((v > 0) & (v < 1)).all()
        elif kind == "tril_log_diag":  # a Cholesky factor
            assert (np.triu(v, 1) == 0).all() and (np.diagonal(v, 0, -2, -1) > 0).all()
        else:
            assert kind == "identity"


@pytest.mark.parametrize("capability, message", [
    ("mean_tangents", "control variate 'delta' is not available for"),
    ("mirror", r"antithetic=True needs a family symmetric about a known point \(Normal, "
               r"LogNormal, Laplace, MultivariateNormal, LowRankMultivariateNormal, Uniform, StudentT, Cauchy, VonMises\); got"),
    ("rsample", "pathwise_grad supports Normal, LogNormal, Exponential, Gamma, Beta"),
])
def test_a_missing_capability_is_a_clear_error(capability, message):
    for d in DISTS.values():
        if getattr(d, "has_" + capability):
            d.require(capability)
            continue
        with pytest.raises(ValueError, match=message):
            d.require(capability)
        method = {"rsample": "pathwise_spec"}.get(capability, capability)
        with pytest.raises(ValueError, match=message):
            getattr(d, method)(*([d.sample(2, 0)] if capability == "mirror" else []))


def test_relaxations():
    for name, d in DISTS.items():
        if not d.has_relaxation:
            continue
        W, K, th, pr, conv, cv, cvs = d.relaxation()
        assert W == th.size == pr.size and K in (1, d.relaxed_shape()[-1])
        # logit-space parameters give back the probabilities
        if K == 1:
            np.testing.assert_allclose(1 / (1 + np.exp(-th)), pr, rtol=1e-12)
        else:
            p = np.exp(th.reshape(-1, K))
            np.testing.assert_allclose((p / p.sum(-1, keepdims=True)).ravel(), pr, rtol=1e-12)
