"""torch.distributions API parity for every family: the properties mean,
variance, stddev, support, batch_shape / event_shape, entropy(),
sample(sample_shape) with an int or a tuple, expand, and the deprecation
path of the old mean() / variance() methods."""
import warnings

import numpy as np
import pytest
from scipy import stats

import mcscore as mc

# (mcscore distribution, torch constructor name and arguments) per family
CASES = {
    "Normal": (lambda: mc.Normal([0.5, -1.0], [1.0, 2.0]), "Normal",
               dict(loc=[0.5, -1.0], scale=[1.0, 2.0])),
    "LogNormal": (lambda: mc.LogNormal([0.1, 0.3], [0.5, 0.2]), "LogNormal",
                  dict(loc=[0.1, 0.3], scale=[0.5, 0.2])),
    "Exponential": (lambda: mc.Exponential([0.7, 2.0]), "Exponential", dict(rate=[0.7, 2.0])),
    "Gamma": (lambda: mc.Gamma([0.7, 3.0], [2.0, 0.5]), "Gamma",
              dict(concentration=[0.7, 3.0], rate=[2.0, 0.5])),
    "Beta": (lambda: mc.Beta([1.5, 0.6], [2.0, 3.0]), "Beta",
             dict(concentration1=[1.5, 0.6], concentration0=[2.0, 3.0])),
    "Poisson": (lambda: mc.Poisson([1.5, 4.0]), "Poisson", dict(rate=[1.5, 4.0])),
    "Bernoulli": (lambda: mc.Bernoulli(probs=[0.3, 0.8]), "Bernoulli", dict(probs=[0.3, 0.8])),
    "Binomial": (lambda: mc.Binomial(5, probs=[0.3, 0.6]), "Binomial",
                 dict(total_count=5, probs=[0.3, 0.6])),
    "Geometric": (lambda: mc.Geometric(probs=[0.3, 0.6]), "Geometric", dict(probs=[0.3, 0.6])),
    "NegativeBinomial": (lambda: mc.NegativeBinomial(3.0, probs=[0.3, 0.6]), "NegativeBinomial",
                         dict(total_count=3.0, probs=[0.3, 0.6])),
    "Categorical": (lambda: mc.Categorical(logits=[[0.0, 1.0, -1.0], [0.5, 0.2, 0.1]]),
                    "Categorical", dict(logits=[[0.0, 1.0, -1.0], [0.5, 0.2, 0.1]])),
    "Multinomial": (lambda: mc.Multinomial(4, probs=[[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]]),
                    "Multinomial", dict(total_count=4, probs=[[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])),
    "Dirichlet": (lambda: mc.Dirichlet([[1.5, 0.7, 2.0], [1.0, 3.0, 0.5]]), "Dirichlet",
                  dict(concentration=[[1.5, 0.7, 2.0], [1.0, 3.0, 0.5]])),
    "Laplace": (lambda: mc.Laplace([0.5, -1.0], [1.0, 2.0]), "Laplace",
                dict(loc=[0.5, -1.0], scale=[1.0, 2.0])),
    "HalfNormal": (lambda: mc.HalfNormal([0.7, 2.0]), "HalfNormal", dict(scale=[0.7, 2.0])),
    "Chi2": (lambda: mc.Chi2([0.8, 3.5]), "Chi2", dict(df=[0.8, 3.5])),
    "InverseGamma": (lambda: mc.InverseGamma([5.5, 7.0], [1.5, 2.0]), "InverseGamma",
                     dict(concentration=[5.5, 7.0], rate=[1.5, 2.0])),
    "Gumbel": (lambda: mc.Gumbel([0.5, -1.0], [1.5, 0.6]), "Gumbel",
               dict(loc=[0.5, -1.0], scale=[1.5, 0.6])),
    "Weibull": (lambda: mc.Weibull([1.5, 0.8], [0.9, 2.5]), "Weibull",
                dict(scale=[1.5, 0.8], concentration=[0.9, 2.5])),
    "Uniform": (lambda: mc.Uniform([-1.0, 0.5], [2.0, 0.75]), "Uniform",
                dict(low=[-1.0, 0.5], high=[2.0, 0.75])),
    "StudentT": (lambda: mc.StudentT([3.5, 1.5], [0.5, -1.0], [1.0, 2.0]), "StudentT",
                 dict(df=[3.5, 1.5], loc=[0.5, -1.0], scale=[1.0, 2.0])),
    "Cauchy": (lambda: mc.Cauchy([0.5, -1.0], [1.0, 2.0]), "Cauchy",
               dict(loc=[0.5, -1.0], scale=[1.0, 2.0])),
    "HalfCauchy": (lambda: mc.HalfCauchy([0.7, 2.0]), "HalfCauchy", dict(scale=[0.7, 2.0])),
    "VonMises": (lambda: mc.VonMises([0.5, -2.0], [1.5, 0.2]), "VonMises",
                 dict(loc=[0.5, -2.0], concentration=[1.5, 0.2])),
    "OneHotCategorical": (lambda: mc.OneHotCategorical(logits=[[0.0, 1.0, -1.0], [0.5, 0.2, 0.1]]),
                          "OneHotCategorical", dict(logits=[[0.0, 1.0, -1.0], [0.5, 0.2, 0.1]])),
    "MultivariateNormal": (lambda: mc.MultivariateNormal([[0.5, -1.0], [0.0, 2.0]],
                                                         scale_tril=[[1.0, 0.0], [0.3, 2.0]]),
                           "MultivariateNormal", dict(loc=[[0.5, -1.0], [0.0, 2.0]],
                                                      scale_tril=[[1.0, 0.0], [0.3, 2.0]])),
    "LowRankMultivariateNormal": (
        lambda: mc.LowRankMultivariateNormal([[0.5, -1.0], [0.0, 2.0]], [[1.0], [0.5]], [0.3, 0.7]),
        "LowRankMultivariateNormal", dict(loc=[[0.5, -1.0], [0.0, 2.0]], cov_factor=[[1.0], [0.5]],
                                          cov_diag=[0.3, 0.7])),
}

# entropies torch does not implement (or sums in a less accurate way,
# Multinomial: 2e-8 from the exact sum over the support): scipy's
SCIPY_ENTROPY = {
    "Poisson": lambda: stats.poisson([1.5, 4.0]).entropy(),
    "NegativeBinomial": lambda: stats.nbinom(3.0, [0.7, 0.4]).entropy(),
    "VonMises": lambda: stats.vonmises([1.5, 0.2], [0.5, -2.0]).entropy(),
    "Multinomial": lambda: np.array([stats.multinomial(4, p).entropy()
                                     for p in ([0.2, 0.5, 0.3], [0.1, 0.1, 0.8])]),
}


def test_every_family_is_covered():
    assert set(CASES) == {c.__name__ for c in mc.FAMILIES}


def _torch(name):
    torch = pytest.importorskip("torch")
    _, tname, kw = CASES[name]
    args = {k: (torch.tensor(v, dtype=torch.float64) if k != "total_count" or name in (
        "NegativeBinomial", "Binomial") else v) for k, v in kw.items()}
    return torch, getattr(torch.distributions, tname)(**args)


@pytest.mark.parametrize("name", list(CASES))
def test_shapes_and_moments_equal_torch(name):
    torch, t = _torch(name)
    d = CASES[name][0]()
    assert tuple(d.batch_shape) == tuple(t.batch_shape)
    assert tuple(d.event_shape) == tuple(t.event_shape)
    if name == "Categorical":
        # torch's Categorical has NaN moments; mcscore's are those of the index
        k = np.arange(3)
        np.testing.assert_allclose(d.mean, (d.probs * k).sum(-1))
        np.testing.assert_allclose(d.variance, (d.probs * k * k).sum(-1) - d.mean**2)
    else:
        for prop in ("mean", "variance", "stddev"):
            got = getattr(d, prop)
            assert isinstance(got, np.ndarray) and got.shape == d.draw_shape
            # torch's VonMises uses a polynomial fit of the Bessel functions
            rtol = 1e-7 if name == "VonMises" else 1e-12
            np.testing.assert_allclose(got, getattr(t, prop).numpy(), rtol=rtol,
                                       equal_nan=True, err_msg=prop)


@pytest.mark.parametrize("name", list(CASES))
def test_entropy_equals_torch(name):
    torch, t = _torch(name)
    d = CASES[name][0]()
    got = d.entropy()
    assert got.shape == tuple(d.batch_shape)
    if name in SCIPY_ENTROPY:
        np.testing.assert_allclose(got, SCIPY_ENTROPY[name](), rtol=1e-8)
        return
    # torch's VonMises normaliser is a polynomial fit (about 1e-8 relative)
    rtol = 1e-7 if name == "VonMises" else 1e-10
    np.testing.assert_allclose(got, t.entropy().numpy(), rtol=rtol)


@pytest.mark.parametrize("name", list(CASES))
def test_support_is_a_readable_constraint_holding_the_draws(name):
    d = CASES[name][0]()
    sup = d.support
    assert isinstance(sup, str) and isinstance(sup, mc.distributions.Support)
    assert sup.name in repr(sup) and str(sup) in repr(sup)
    assert sup.is_discrete == (not d.continuous)
    x = d.sample(500, rng=1)
    ok = sup.check(x)
    assert ok.shape == (500,) + tuple(d.batch_shape) and ok.all()
    # a point outside: -7 (every support here but the real line excludes it)
    if sup.name not in ("real", "real_vector"):
        assert not sup.check(np.full(d.draw_shape, -7.0)).any()
    assert not sup.check(np.full(d.draw_shape, np.inf)).any()


@pytest.mark.parametrize("name", list(CASES))
def test_sample_accepts_an_int_or_a_tuple(name):
    d = CASES[name][0]()
    ds = d.draw_shape
    assert d.sample(5, rng=1).shape == (5,) + ds
    assert d.sample((2, 3), rng=1).shape == (2, 3) + ds
    assert d.sample((), rng=1).shape == ds
    assert d.sample(rng=1).shape == ds
    # the tuple form is the int form reshaped (same draws for the same seed)
    np.testing.assert_array_equal(d.sample((2, 3), rng=4).reshape((6,) + ds),
                                  d.sample(6, rng=4))


@pytest.mark.parametrize("name", list(CASES))
def test_expand(name):
    d = CASES[name][0]()
    e = d.expand((3,) + tuple(d.batch_shape))
    assert type(e) is type(d) and tuple(e.batch_shape) == (3,) + tuple(d.batch_shape)
    assert e.event_shape == d.event_shape
    x = d.sample(4, rng=2)
    xe = np.broadcast_to(x[:, None], (4, 3) + d.draw_shape)
    np.testing.assert_allclose(e.log_prob(xe), np.broadcast_to(d.log_prob(x)[:, None],
                                                               (4, 3) + tuple(d.batch_shape)))
    with pytest.raises(ValueError, match="does not broadcast"):
        d.expand((5,))


def test_expand_matches_torch():
    torch = pytest.importorskip("torch")
    d = mc.Normal(0.5, 2.0).expand((4, 3))
    t = torch.distributions.Normal(0.5, 2.0).expand((4, 3))
    assert tuple(d.batch_shape) == tuple(t.batch_shape)
    np.testing.assert_allclose(d.entropy(), t.entropy().numpy())


@pytest.mark.parametrize("name", ["Normal", "Laplace", "InverseGamma", "Dirichlet"])
def test_old_method_calls_still_work_with_a_deprecation_warning(name):
    d = CASES[name][0]()
    for prop in ("mean", "variance", "stddev"):
        with pytest.warns(DeprecationWarning, match=f"{prop}\\(\\) is deprecated"):
            v = getattr(d, prop)()
        np.testing.assert_array_equal(v, getattr(d, prop))
        assert type(v) is np.ndarray
    # arithmetic on the property gives plain arrays, without warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = d.mean + 1.0
        assert type(y) is np.ndarray and not callable(y)
        assert float(np.sum(d.variance)) > 0


# ---------------------------------------------------------------------------
# scores of every family against torch's autograd, over random parameters
# ---------------------------------------------------------------------------

def _perturbed(name, u):
    """The family's example parameters moved by u in [0.6, 1.6]: probs to
    probs**u, every other differentiable parameter times u (each keeps its
    constraint: Uniform's high stays above low)."""
    _, _, kw = CASES[name]
    out = {}
    for k, v in kw.items():
        v = np.asarray(v, float)
        if k == "total_count":
            out[k] = kw[k]
        elif k == "probs":
            out[k] = v**u
        else:
            out[k] = v * u
    return out


def _build_mc(name, kw):
    cls = getattr(mc, CASES[name][1])
    if name in ("Binomial", "NegativeBinomial", "Multinomial"):
        return cls(kw["total_count"], **{k: v for k, v in kw.items() if k != "total_count"})
    if name == "StudentT":
        return cls(kw["df"], kw["loc"], kw["scale"])
    return cls(**kw)


@pytest.mark.parametrize("name", list(CASES))
def test_scores_equal_torch_autograd_for_every_family(name):
    torch = pytest.importorskip("torch")
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=15, deadline=None, derandomize=True)
    @given(st.floats(0.6, 1.6), st.integers(0, 2**31))
    def check(u, seed):
        kw = _perturbed(name, u)
        d = _build_mc(name, kw)
        x = d.sample(6, rng=seed)
        s = d.score(x)
        for i in range(len(x)):
            tk = {k: (torch.tensor(v, dtype=torch.float64, requires_grad=k != "total_count")
                      if k != "total_count" or name != "Multinomial" else v)
                  for k, v in kw.items()}
            t = getattr(torch.distributions, CASES[name][1])(**tk)
            xi = torch.tensor(x[i])
            t.log_prob(xi).sum().backward()
            for k in d.param_names:
                g = tk[k].grad.numpy()
                tol = 1e-6 if (name, k) == ("VonMises", "concentration") else 1e-9
                np.testing.assert_allclose(s[k][i], g, rtol=tol, atol=tol, err_msg=k)

    check()


def test_entropy_of_wide_count_distributions():
    """Heavy right tails and large means (where scipy's generic sum stops
    early): long explicit sums and the Poisson asymptotic series."""
    nb = mc.NegativeBinomial(0.5, probs=[0.999]).entropy()
    k = np.arange(0, 400_000)
    lp = stats.nbinom(0.5, 0.001).logpmf(k)
    np.testing.assert_allclose(nb, -(np.exp(lp) * lp).sum(), rtol=1e-12)
    # the Poisson sum (rate <= 1e4) against the asymptotic series (O(rate**-4))
    lam = 5e3
    series = (0.5 * np.log(2 * np.pi * np.e * lam) - 1 / (12 * lam) - 1 / (24 * lam**2)
              - 19 / (360 * lam**3))
    np.testing.assert_allclose(mc.Poisson(lam).entropy(), series, rtol=1e-11)
    np.testing.assert_allclose(mc.Poisson(1e18).entropy(), 0.5 * np.log(2 * np.pi * np.e * 1e18),
                               rtol=1e-15)
    with pytest.raises(NotImplementedError, match="too wide"):
        mc.Binomial(10**18, probs=0.5).entropy()
