"""score_grad: reproducibility, calibration of the standard errors, baselines,
precision with offsets, and agreement between the kinds of f."""
import numpy as np
import pytest
from numpy.polynomial import polynomial as P

import mcscore as mc
from mcscore import integrands as I

# ---------------------------------------------------------------------------
# exact Gaussian moment algebra (independent of the library)
# ---------------------------------------------------------------------------


def _gauss_moment(k):
    """E[z^k] for z ~ N(0, 1)."""
    if k % 2:
        return 0.0
    out = 1.0
    for j in range(k - 1, 0, -2):
        out *= j
    return out


def _E(poly_z):
    """E[p(z)] for a polynomial in z given by increasing coefficients."""
    return float(sum(c * _gauss_moment(k) for k, c in enumerate(poly_z)))


def _f_in_z(coeffs, mu, sigma):
    """f(mu + sigma z) as a polynomial in z."""
    out = np.zeros(1)
    lin = np.array([mu, sigma])
    power = np.ones(1)
    for c in coeffs:
        out = P.polyadd(out, c * power)
        power = P.polymul(power, lin)
    return out


def normal_poly_exact(coeffs, mu, sigma, baseline):
    """Exact (grad, per-draw variance, 4th central moment) of y = (f - b) s for
    x ~ N(mu, sigma), f polynomial, s the score w.r.t. loc and scale; the
    baseline b is a number, 'mean' (E f) or 'optimal' (E[f s^2] / E[s^2])."""
    fz = _f_in_z(coeffs, mu, sigma)
    scores = {"loc": np.array([0.0, 1.0 / sigma]),
              "scale": np.array([-1.0 / sigma, 0.0, 1.0 / sigma])}
    out = {}
    for name, s in scores.items():
        if baseline == "mean":
            b = _E(fz)
        elif baseline == "optimal":
            s2 = P.polymul(s, s)
            b = _E(P.polymul(fz, s2)) / _E(s2)
        else:
            b = float(baseline or 0.0)
        y = P.polymul(P.polysub(fz, [b]), s)
        mean = _E(y)
        c = P.polysub(y, [mean])
        var = _E(P.polymul(c, c))
        m4 = _E(P.polymul(P.polymul(c, c), P.polymul(c, c)))
        out[name] = (mean, var, m4)
    return out


COEFFS = [1.0, 2.0, -1.0, 0.5]  # f(x) = 1 + 2x - x^2 + x^3 / 2
MU, SIGMA = 0.7, 1.3


def f_poly(x):
    return 1.0 + 2.0 * x - x**2 + 0.5 * x**3


@pytest.mark.parametrize("baseline", [None, 3.0, "loo", "optimal"])
def test_per_draw_variances_match_closed_form(baseline):
    n = 400_000
    d = mc.Normal(MU, SIGMA)
    r = mc.score_grad(I.polynomial(COEFFS), d, n, rng=11, baseline=baseline)
    key = {"loo": "mean"}.get(baseline, baseline)
    exact = normal_poly_exact(COEFFS, MU, SIGMA, key)
    for name, (mean, var, m4) in exact.items():
        # the gradient: within 5 standard errors of the truth
        assert abs(r.grad[name] - mean) < 5 * r.stderr[name]
        # the per-draw variance: within 5 of its own standard errors,
        # sd(var_hat) ~ sqrt((mu4 - var^2) / n)
        sd_var = np.sqrt((m4 - var**2) / n)
        assert abs(r.variance[name] - var) < 5 * sd_var, (name, r.variance[name], var)
        assert np.isclose(r.stderr[name], np.sqrt(r.variance[name] / n))


@pytest.mark.parametrize("baseline", [None, "loo", "optimal"])
def test_standard_errors_are_calibrated_over_repeats(baseline):
    # z = (estimate - exact) / se over 300 independent runs: E[z^2] = 1 when
    # the standard error is right; the mean of 300 z^2 has sd ~ sqrt(2/300).
    d = mc.Normal(MU, SIGMA)
    exact = normal_poly_exact(COEFFS, MU, SIGMA, 0.0)
    f = I.polynomial(COEFFS)
    z2 = []
    ss = np.random.SeedSequence(2024)
    for child in ss.spawn(300):
        r = mc.score_grad(f, d, 4000, rng=child, baseline=baseline)
        for name in ("loc", "scale"):
            z2.append(((r.grad[name] - exact[name][0]) / r.stderr[name]) ** 2)
    z2 = np.array(z2)
    # loc and scale estimates from the same run are correlated: use 300 as n
    assert abs(z2.mean() - 1.0) < 5 * np.sqrt(2.0 / 300), z2.mean()


def test_value_and_value_stderr():
    d = mc.Normal(MU, SIGMA)
    r = mc.score_grad(I.polynomial(COEFFS), d, 200_000, rng=1)
    fz = _f_in_z(COEFFS, MU, SIGMA)
    Ef = _E(fz)
    varf = _E(P.polymul(fz, fz)) - Ef**2
    assert abs(r.value - Ef) < 5 * r.value_stderr
    assert abs(r.value_variance / varf - 1) < 0.1


@pytest.mark.parametrize("offset", [1e8, 1e12])
def test_huge_offset_loses_no_precision(offset):
    # f = offset + x: the gradient w.r.t. loc is 1 and the variance of f is
    # sigma^2, however large the offset.
    d = mc.Normal(0.5, 2.0)
    n = 200_000
    f = I.linear(1.0, c=offset)
    for kind in ("fused", "python"):
        ff = f if kind == "fused" else (lambda x: offset + x)
        r = mc.score_grad(ff, d, n, rng=3, baseline="loo")
        assert abs(r.value_variance / 4.0 - 1) < 0.05
        assert abs(r.value - offset - 0.5) < 5 * r.value_stderr
        # with the mean as baseline, y = (x - xbar) * (x - mu) / sigma^2:
        # per-draw variance Var[z^2] = 2, tiny next to offset^2
        assert abs(r.variance["loc"] / 2.0 - 1) < 0.05, r.variance["loc"]
        assert abs(r.grad["loc"] - 1.0) < 5 * r.stderr["loc"]
        ro = mc.score_grad(ff, d, n, rng=3, baseline="optimal")
        assert abs(ro.grad["loc"] - 1.0) < 5 * ro.stderr["loc"]
        assert ro.variance["loc"] < 2.5


def test_constant_f_has_zero_gradient_and_tiny_error_with_baseline():
    d = mc.Gamma(2.0, 3.0)
    r = mc.score_grad(I.constant(5.0), d, 10_000, rng=0, baseline="loo")
    for k in r.grad:
        assert r.grad[k] == 0.0
        assert r.stderr[k] == 0.0
    assert r.value == 5.0 and r.value_stderr == 0.0


# ---------------------------------------------------------------------------
# reproducibility: bit-identical for any thread count and chunk size
# ---------------------------------------------------------------------------

FAMILY_CASES = [
    mc.Normal([0.5, -1.0], 2.0),
    mc.LogNormal(0.1, [0.5, 0.3]),
    mc.Exponential(1.5),
    mc.Gamma([0.5, 2.5], 1.5),
    mc.Beta(2.0, [3.0, 0.7]),
    mc.Poisson([3.0, 40.0]),
    mc.Bernoulli(probs=[0.3, 0.9]),
    mc.Bernoulli(logits=-0.4),
    mc.Binomial([10, 200], probs=0.3),
    mc.Binomial(10, logits=0.2),
    mc.Geometric(probs=0.3),
    mc.Geometric(logits=[0.5, -2.0]),
    mc.NegativeBinomial(4, probs=0.4),
    mc.NegativeBinomial(4.5, logits=-0.2),
    mc.Categorical(probs=[[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]]),
    mc.Categorical(logits=np.linspace(-1, 1, 7)),
    mc.Multinomial(5, probs=[0.2, 0.5, 0.3]),
    mc.Multinomial([3, 9], logits=[0.1, -0.2, 0.3]),
    mc.Dirichlet([1.5, 2.0, 3.0]),
    mc.Dirichlet([[0.5, 0.5], [4.0, 1.0]]),
]


def _ids(cases):
    return [repr(c) for c in cases]


def _f_for(dist):
    """An integrand valid on the distribution's support."""
    return I.sin() + 0.1 * I.cos() + I.linear(0.3)


@pytest.mark.parametrize("dist", FAMILY_CASES, ids=_ids(FAMILY_CASES))
def test_bit_identical_for_any_thread_count_and_chunk_size(dist):
    n = 30_011  # not a multiple of anything
    f = _f_for(dist)
    ref = mc.score_grad(f, dist, n, rng=7, n_threads=1)
    for kw in ({"n_threads": 2}, {"n_threads": 3}, {"n_threads": -1}):
        r = mc.score_grad(f, dist, n, rng=7, **kw)
        for k in ref.grad:
            assert np.array_equal(r.grad[k], ref.grad[k]), kw
            assert np.array_equal(r.stderr[k], ref.stderr[k]), kw
        assert r.value == ref.value
    # the same function as a Python callable, any chunk size, any threads
    for kw in ({"n_threads": 1, "chunk_size": 1000}, {"n_threads": 2, "chunk_size": 77},
               {"n_threads": 2}):
        r = mc.score_grad(lambda x: f(x.reshape(len(x), -1)), dist, n, rng=7, **kw)
        for k in ref.grad:
            assert np.array_equal(r.grad[k], ref.grad[k]), kw
        assert r.value == ref.value


@pytest.mark.parametrize("dist", FAMILY_CASES, ids=_ids(FAMILY_CASES))
def test_kernel_statistics_agree_with_the_estimator_on_recorded_draws(dist):
    # Record exactly the draws f sees, then redo the estimate with the plain
    # per-sample algebra of score_grad_from_samples.
    seen = []

    def f(x):
        seen.append(np.array(x, copy=True))
        flat = x.reshape(len(x), -1).astype(float)
        return np.sin(flat).sum(1) + 0.5 * flat[:, 0]

    for baseline in (None, 1.5, "loo"):
        seen.clear()
        r = mc.score_grad(f, dist, 5000, rng=2, baseline=baseline)
        x = np.concatenate(seen)
        assert x.shape == (5000,) + dist.draw_shape
        ref = mc.score_grad_from_samples(dist, x, f(x), baseline=baseline)
        for k in r.grad:
            np.testing.assert_allclose(r.grad[k], ref.grad[k], rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(r.stderr[k], ref.stderr[k], rtol=1e-7, atol=1e-12)
        np.testing.assert_allclose(r.value, ref.value, rtol=1e-12)


def test_categorical_draws_are_int64_and_others_float64():
    x = mc.Categorical(logits=[0.0, 1.0]).sample(5, rng=0)
    assert x.dtype == np.int64
    assert mc.Poisson(2.0).sample(5, rng=0).dtype == np.float64
    got = []
    mc.score_grad(lambda x: (got.append(x.dtype), x * 1.0)[1],
                  mc.Categorical(logits=[0.0, 1.0]), 100, rng=0)
    assert got[0] == np.int64


def test_seeding_semantics():
    d = mc.Normal(0.0, 1.0)
    f = I.power(2)
    a = mc.score_grad(f, d, 1000, rng=5)
    b = mc.score_grad(f, d, 1000, rng=np.random.SeedSequence(5))
    assert a.grad == b.grad or np.array_equal(a.grad["loc"], b.grad["loc"])
    g = np.random.default_rng(5)
    c1 = mc.score_grad(f, d, 1000, rng=g)
    c2 = mc.score_grad(f, d, 1000, rng=g)
    assert c1.grad["loc"] != c2.grad["loc"]  # a Generator gives fresh streams
    g2 = np.random.default_rng(5)
    assert mc.score_grad(f, d, 1000, rng=g2).grad["loc"] == c1.grad["loc"]
    # a different block size is a different (documented) plan
    e = mc.score_grad(f, d, 1000, rng=5, block_size=100)
    assert e.grad["loc"] != a.grad["loc"]


def test_generator_rng_in_sample_advances_it():
    g = np.random.default_rng(1)
    x1 = mc.Normal(0.0, 1.0).sample(10, rng=g)
    x2 = mc.Normal(0.0, 1.0).sample(10, rng=g)
    assert not np.array_equal(x1, x2)
    np.testing.assert_array_equal(mc.Normal(0.0, 1.0).sample(10, rng=1), x1)


def test_broadcast_parameter_gets_one_gradient_entry():
    # loc has 3 elements, scale is a scalar broadcast over them: the gradient
    # w.r.t. scale is the derivative w.r.t. that one shared number.
    loc = np.array([0.5, -1.0, 2.0])
    d = mc.Normal(loc, 1.5)
    r = mc.score_grad(I.sum_of_squares(), d, 400_000, rng=0, baseline="optimal")
    assert r.grad["loc"].shape == (3,) and r.grad["scale"].shape == ()
    z_loc = (r.grad["loc"] - 2 * loc) / r.stderr["loc"]
    z_scale = (r.grad["scale"] - 3 * 2 * 1.5) / r.stderr["scale"]
    assert np.abs(z_loc).max() < 5 and abs(z_scale) < 5


def test_score_grad_from_samples_optimal_is_unbiased():
    # exact leave-one-out optimal baseline on external samples
    d = mc.Normal(MU, SIGMA)
    exact = normal_poly_exact(COEFFS, MU, SIGMA, 0.0)
    est = []
    for seed in range(400):
        x = d.sample(100, rng=seed)
        r = mc.score_grad_from_samples(d, x, f_poly(x), baseline="optimal")
        est.append(r.grad["loc"])
    est = np.array(est)
    # unbiased: the mean of 400 independent estimates is the truth within 5
    # of its standard errors (z-scores would not do: se and estimate correlate)
    assert abs(est.mean() - exact["loc"][0]) < 5 * est.std(ddof=1) / np.sqrt(len(est))


def test_repr_is_readable():
    r = mc.score_grad(I.power(2), mc.Normal(np.zeros(3), 1.0), 1000, rng=0)
    s = repr(r)
    assert "GradientEstimate" in s and "grad['loc']" in s and "stderr" in s and "value" in s
    ci = r.confidence_interval(0.95)
    assert (ci["loc"][0] < r.grad["loc"]).all()


@pytest.mark.parametrize("dist", [mc.Normal([0.5, -1.0], 2.0), mc.Categorical(logits=[0.0, 1.0, -1.0]),
                                  mc.LogNormal(0.1, 0.5)], ids=repr)
def test_long_runs_cut_into_epochs_give_the_same_bits(dist, monkeypatch):
    from mcscore import _rounds as estimator

    f = I.sin() + I.linear(0.5)
    ref = mc.score_grad(f, dist, 200_003, rng=9, block_size=500)
    monkeypatch.setattr(estimator, "EPOCH_VALUES", 700)  # one or two blocks per epoch
    r = mc.score_grad(f, dist, 200_003, rng=9, block_size=500)
    for k in ref.grad:
        assert np.array_equal(r.grad[k], ref.grad[k])
        assert np.array_equal(r.stderr[k], ref.stderr[k])
    assert r.value == ref.value
