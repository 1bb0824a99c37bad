"""Batched expectations (batch_ndims=k): the first k batch dimensions index
independent expectations, f returns one column per batch element, and each
parameter element's gradient uses only its own column; against closed
forms, separate calls, and every baseline."""
import numpy as np
import pytest
from scipy.special import expit, softmax

import mcscore as mc
from mcscore import integrands as I

BASELINES = [None, 0.7, "loo", "optimal"]


def _z_ok(res, exact, bound=5.0):
    for k, v in exact.items():
        assert res.grad[k].shape == np.shape(v), k
        assert np.all(res.stderr[k] > 0), k
        z = (res.grad[k] - v) / res.stderr[k]
        assert np.all(np.abs(z) < bound), (k, np.max(np.abs(z)))


# --- Normal: f_b = sin(x_b), E = sin(mu) exp(-s^2/2) ---------------------------

def _normal(B, rng=0):
    g = np.random.default_rng(rng)
    return mc.Normal(g.normal(size=B), g.uniform(0.5, 1.5, size=B))


def _sin(x):
    return np.sin(x)


def _sin_exact(d):
    m, s = d.loc, d.scale
    e = np.exp(-s**2 / 2)
    return np.sin(m) * e, {"loc": np.cos(m) * e, "scale": -s * np.sin(m) * e}


@pytest.mark.parametrize("baseline", BASELINES)
def test_normal_every_baseline_within_5se(baseline):
    d = _normal(20)
    res = mc.score_grad(_sin, d, 20_000, rng=1, baseline=baseline, batch_ndims=1)
    value, grad = _sin_exact(d)
    _z_ok(res, grad)
    assert res.value.shape == (20,) and res.value_stderr.shape == (20,)
    assert np.all(np.abs(res.value - value) < 5 * res.value_stderr)
    assert res.info["batch_ndims"] == 1


def test_B100_stderr_equals_separate_calls_and_matches_exact():
    """Done means: with B = 100, each element's standard error equals that
    of a separate call for that element with the same n (within 10%), and
    each estimate is within 5 se of its exact gradient."""
    B, n = 100, 100_000
    d = _normal(B, rng=3)
    res = mc.score_grad(_sin, d, n, rng=4, batch_ndims=1)
    _, grad = _sin_exact(d)
    _z_ok(res, grad)
    for b in range(B):
        one = mc.Normal(d.loc[b:b + 1], d.scale[b:b + 1])
        sep = mc.score_grad(lambda x: np.sin(x[:, 0]), one, n, rng=1000 + b)
        for k in ("loc", "scale"):
            ratio = res.stderr[k][b] / sep.stderr[k][0]
            assert 0.9 < ratio < 1.1, (b, k, ratio)


def test_B100_categorical_stderr_equals_separate_calls():
    """The same for a Categorical per state (the RL case), loo baseline."""
    B, K, n = 100, 5, 50_000
    g = np.random.default_rng(5)
    logits = g.normal(size=(B, K))
    R = g.normal(size=(B, K))
    d = mc.Categorical(logits=logits)
    res = mc.score_grad(lambda x: R[np.arange(B), x], d, n, rng=6, baseline="loo",
                        batch_ndims=1)
    p = softmax(logits, axis=1)
    exact = p * (R - (p * R).sum(1, keepdims=True))
    _z_ok(res, {"logits": exact})
    for b in range(B):
        sep = mc.score_grad(lambda x: R[b, x[:, 0]], mc.Categorical(logits=logits[b:b + 1]), n,
                            rng=2000 + b, baseline="loo")
        ratio = res.stderr["logits"][b] / sep.stderr["logits"][0]
        assert np.all((0.9 < ratio) & (ratio < 1.1)), (b, ratio)


@pytest.mark.parametrize("baseline", BASELINES)
def test_categorical_bernoulli_gamma_multinomial_within_5se(baseline):
    g = np.random.default_rng(7)
    B, K = 6, 4
    # Categorical with a reward table
    logits = g.normal(size=(B, K))
    R = g.normal(size=(B, K))
    res = mc.score_grad(lambda x: R[np.arange(B), x], mc.Categorical(logits=logits), 30_000,
                        rng=8, baseline=baseline, batch_ndims=1)
    p = softmax(logits, axis=1)
    _z_ok(res, {"logits": p * (R - (p * R).sum(1, keepdims=True))})
    # Bernoulli (B, 3), batch_ndims=1: f_b = sum_j c_bj x_bj, d/dlogit = c p (1 - p)
    lg = g.normal(size=(B, 3))
    c = g.normal(size=(B, 3))
    res = mc.score_grad(lambda x: (c * x).sum(2), mc.Bernoulli(logits=lg), 30_000, rng=9,
                        baseline=baseline, batch_ndims=1)
    q = expit(lg)
    _z_ok(res, {"logits": c * q * (1 - q)})
    # Gamma: f_b = x_b, E = a / r
    a, r = g.uniform(1, 3, B), g.uniform(0.5, 2, B)
    res = mc.score_grad(lambda x: x, mc.Gamma(a, r), 30_000, rng=10, baseline=baseline,
                        batch_ndims=1)
    _z_ok(res, {"concentration": 1 / r, "rate": -a / r**2})
    # Multinomial (event dims): f_b = w_b . x_b, E = N p . w
    N = 5
    lm = g.normal(size=(B, K))
    w = g.normal(size=(B, K))
    res = mc.score_grad(lambda x: (x * w).sum(-1), mc.Multinomial(N, logits=lm), 30_000,
                        rng=11, baseline=baseline, batch_ndims=1)
    pm = softmax(lm, axis=1)
    _z_ok(res, {"logits": N * pm * (w - (pm * w).sum(1, keepdims=True))})


def test_two_batch_dims_and_event_like_trailing_dims():
    """batch_shape (3, 4, 2) with batch_ndims=2: each of the 12 expectations
    is over a 2-vector; f returns (m, 3, 4); value has shape (3, 4)."""
    g = np.random.default_rng(12)
    loc = g.normal(size=(3, 4, 2))
    scale = g.uniform(0.5, 1.5, size=(3, 4, 2))
    d = mc.Normal(loc, scale)
    res = mc.score_grad(lambda x: (x**2).sum(-1), d, 20_000, rng=13, batch_ndims=2,
                        baseline="optimal")
    _z_ok(res, {"loc": 2 * loc, "scale": 2 * scale})
    assert res.value.shape == (3, 4)
    value = (loc**2 + scale**2).sum(-1)
    assert np.all(np.abs(res.value - value) < 5 * res.value_stderr)


def test_calibration_over_repeats():
    """Standard errors are calibrated: mean z^2 over 20 seeds x 50 batch
    elements within 5 sqrt(2/R) of 1, for each baseline."""
    d = _normal(50, rng=14)
    _, grad = _sin_exact(d)
    for baseline in ("loo", "optimal"):
        z = []
        for seed in range(20):
            res = mc.score_grad(_sin, d, 2_000, rng=seed, baseline=baseline, batch_ndims=1)
            z.append((res.grad["loc"] - grad["loc"]) / res.stderr["loc"])
        z = np.concatenate(z)
        assert abs(np.mean(z**2) - 1) < 5 * np.sqrt(2 / len(z)), (baseline, np.mean(z**2))


def test_bit_identical_across_threads_and_chunks():
    d = _normal(30, rng=15)
    runs = [mc.score_grad(_sin, d, 50_000, rng=16, n_threads=t, chunk_size=c, batch_ndims=1,
                          baseline="optimal")
            for t, c in ((1, None), (2, None), (2, 1000))]
    for r in runs[1:]:
        for k in r.grad:
            np.testing.assert_array_equal(r.grad[k], runs[0].grad[k])
            np.testing.assert_array_equal(r.stderr[k], runs[0].stderr[k])
        np.testing.assert_array_equal(r.value, runs[0].value)


def test_one_batch_element_agrees_with_unbatched_call():
    """B = 1 batched is the unbatched estimator (same draws; the sums in a
    different order only)."""
    d = mc.Normal(np.array([0.3]), np.array([1.2]))
    for baseline in BASELINES:
        a = mc.score_grad(_sin, d, 10_000, rng=17, baseline=baseline, batch_ndims=1)
        b = mc.score_grad(lambda x: np.sin(x[:, 0]), d, 10_000, rng=17, baseline=baseline)
        for k in a.grad:
            np.testing.assert_allclose(a.grad[k], b.grad[k], rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(a.stderr[k], b.stderr[k], rtol=1e-9)
        np.testing.assert_allclose(a.value, [b.value], rtol=1e-12)


def test_batch_ndims_zero_is_the_default():
    d = _normal(4, rng=18)
    f = lambda x: np.sin(x).sum(1)  # noqa: E731
    a = mc.score_grad(f, d, 5000, rng=1, baseline="loo")
    b = mc.score_grad(f, d, 5000, rng=1, baseline="loo", batch_ndims=0)
    for k in a.grad:
        np.testing.assert_array_equal(a.grad[k], b.grad[k])
    assert isinstance(b.value, float)


def test_rloo_grad_batched():
    d = _normal(10, rng=19)
    res = mc.rloo_grad(_sin, d, 10_000, k=4, rng=20, batch_ndims=1)
    value, grad = _sin_exact(d)
    _z_ok(res, grad)
    assert np.all(np.abs(res.value - value) < 5 * res.value_stderr)
    one = mc.rloo_grad(lambda x: np.sin(x[:, 0]), mc.Normal(d.loc[:1], d.scale[:1]), 10_000,
                       k=4, rng=21)
    assert 0.85 < res.stderr["loc"][0] / one.stderr["loc"][0] < 1.15
    # a per-category family (the score table's category terms, each unit's own column)
    g = np.random.default_rng(35)
    logits, R = g.normal(size=(6, 4)), g.normal(size=(6, 4))
    res = mc.rloo_grad(lambda a: R[np.arange(6), a], mc.Categorical(logits=logits), 20_000,
                       rng=36, batch_ndims=1)
    p = softmax(logits, axis=1)
    _z_ok(res, {"logits": p * (R - (p * R).sum(1, keepdims=True))})
    assert np.all(np.abs(res.value - (p * R).sum(1)) < 5 * res.value_stderr)


@pytest.mark.parametrize("baseline", BASELINES)
def test_score_grad_from_samples_batched(baseline):
    d = _normal(10, rng=22)
    x = d.sample(20_000, rng=23)
    res = mc.score_grad_from_samples(d, x, np.sin(x), baseline=baseline, batch_ndims=1)
    value, grad = _sin_exact(d)
    _z_ok(res, grad)
    np.testing.assert_allclose(res.value, np.sin(x).mean(0))
    # per element, the same as the unbatched estimator on that element's column
    one = mc.Normal(d.loc[3:4], d.scale[3:4])
    r1 = mc.score_grad_from_samples(one, x[:, 3:4], np.sin(x[:, 3]), baseline=baseline)
    np.testing.assert_allclose(res.grad["loc"][3], r1.grad["loc"][0], rtol=1e-10)
    np.testing.assert_allclose(res.stderr["scale"][3], r1.stderr["scale"][0], rtol=1e-10)


def test_progress_bar_does_not_change_result():
    pytest.importorskip("tqdm")
    d = _normal(5, rng=24)
    a = mc.score_grad(_sin, d, 5000, rng=1, batch_ndims=1)
    b = mc.score_grad(_sin, d, 5000, rng=1, batch_ndims=1, progress=True)
    np.testing.assert_array_equal(a.grad["loc"], b.grad["loc"])


# --- errors -------------------------------------------------------------------

def test_f_returning_the_wrong_batch_shape():
    d = _normal(4)
    with pytest.raises(ValueError, match=r"batch_ndims=1, f must return shape \(m, \*batch_shape"
                                         r"\) = \(\d+, 4\).*got \(\d+,\)"):
        mc.score_grad(lambda x: x.sum(1), d, 1000, rng=1, batch_ndims=1)
    with pytest.raises(ValueError, match=r"= \(\d+, 4\).*got None"):
        mc.score_grad(lambda x: None, d, 1000, rng=1, batch_ndims=1)
    with pytest.raises(ValueError, match="must return shape"):
        mc.rloo_grad(lambda x: x[:, :2], d, 1000, rng=1, batch_ndims=1)
    with pytest.raises(ValueError, match="batch element"):
        mc.score_grad(lambda x: np.where(x > 3, np.nan, x), d, 100_000, rng=1, batch_ndims=1)
    with pytest.raises(TypeError, match="real numbers"):
        mc.score_grad(lambda x: x.astype(str), d, 100, rng=1, batch_ndims=1)
    x = d.sample(10, rng=1)
    with pytest.raises(ValueError, match=r"fx must have shape \(10, 4\).*batch_ndims=1"):
        mc.score_grad_from_samples(d, x, x.sum(1), batch_ndims=1)


def test_batch_ndims_out_of_range():
    d = _normal(4)
    with pytest.raises(ValueError, match=r"batch_ndims=2 is larger than the batch rank.*rank 1"):
        mc.score_grad(_sin, d, 100, batch_ndims=2)
    with pytest.raises(ValueError, match="batch_ndims"):
        mc.score_grad(_sin, d, 100, batch_ndims=-1)
    with pytest.raises(TypeError, match="batch_ndims"):
        mc.score_grad(_sin, d, 100, batch_ndims=1.5)
    with pytest.raises(ValueError, match="larger than the batch rank"):
        mc.score_grad_from_samples(d, d.sample(5, rng=0), np.zeros(5), batch_ndims=3)
    with pytest.raises(ValueError, match="larger than the batch rank"):
        mc.rloo_grad(_sin, d, 100, batch_ndims=2)


def test_shared_parameter_is_refused():
    d = mc.Normal(np.zeros(4), 1.0)  # scale shared by the 4 batch elements
    with pytest.raises(ValueError, match=r"'scale' of shape \(\) is shared by the batch "
                                         r"elements.*np.broadcast_to\(scale, \(4,\)\)"):
        mc.score_grad(_sin, d, 100, batch_ndims=1)


def _normal_b2():
    g = np.random.default_rng(30)
    return mc.Normal(g.normal(size=(6, 2)), g.uniform(0.5, 1.5, size=(6, 2)))


@pytest.mark.parametrize("baseline", BASELINES)
def test_fused_integrand_applies_per_batch_element(baseline):
    """A fused integrand is evaluated on each batch element's own draw
    (shape draw_shape[k:]) in the kernels: the same values as the Python f
    on that element."""
    d = _normal_b2()
    res = mc.score_grad(I.sum_of_squares(), d, 30_000, rng=31, baseline=baseline,
                        batch_ndims=1)
    _z_ok(res, {"loc": 2 * d.loc, "scale": 2 * d.scale})
    py = mc.score_grad(lambda x: (x**2).sum(-1), d, 30_000, rng=31, baseline=baseline,
                       batch_ndims=1)
    for k in res.grad:
        np.testing.assert_allclose(res.grad[k], py.grad[k], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.value, py.value, rtol=1e-12)
    # a scalar-draw family: Categorical per state, f = (x / K)^2 per element
    logits = np.random.default_rng(32).normal(size=(5, 4))
    res = mc.score_grad(I.power(2) * (1 / 16), mc.Categorical(logits=logits), 30_000, rng=33,
                        batch_ndims=1, baseline="loo")
    p, v = softmax(logits, axis=1), (np.arange(4) / 4.0) ** 2
    _z_ok(res, {"logits": p * (v - (p * v).sum(1, keepdims=True))})


def test_c_callback_receives_one_batch_element():
    numba = pytest.importorskip("numba")
    from numba import types

    @numba.cfunc(types.float64(types.CPointer(types.float64), types.intp))
    def sq(x, d):  # d: the size of one batch element's draw (2 here)
        return x[0] * x[0] + x[d - 1] * x[d - 1]

    d = _normal_b2()
    a = mc.score_grad(sq, d, 20_000, rng=34, batch_ndims=1, baseline="optimal")
    b = mc.score_grad(lambda x: (x**2).sum(-1), d, 20_000, rng=34, batch_ndims=1,
                      baseline="optimal")
    for k in a.grad:
        np.testing.assert_allclose(a.grad[k], b.grad[k], rtol=1e-9, atol=1e-12)


def test_variance_reduction_and_joint_fused_refused_clearly():
    d = _normal(4)
    with pytest.raises(ValueError, match="control variates and antithetic"):
        mc.score_grad(_sin, d, 100, batch_ndims=1, antithetic=True)
    with pytest.raises(ValueError, match="control variates and antithetic"):
        mc.score_grad(_sin, d, 100, batch_ndims=1, control_variates=["delta"],
                      grad_f=np.cos)
    J = mc.Joint(a=d, b=mc.Bernoulli(logits=np.zeros(4)))
    with pytest.raises(ValueError, match="with a Joint, fused integrands and C callbacks"):
        mc.score_grad(I.sum_of_squares(), J, 100, batch_ndims=1)


# --- Dask ----------------------------------------------------------------------

def test_dask_bit_identical():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=False, threads_per_worker=1,
                                  dashboard_address=":0", silence_logs=40) as cluster, \
            distributed.Client(cluster) as client:
        d = _normal(8, rng=25)
        for run in (lambda c: mc.score_grad(_sin, d, 20_000, rng=26, batch_ndims=1,
                                            baseline="optimal", client=c, n_streams=8),
                    lambda c: mc.rloo_grad(_sin, d, 5_000, rng=27, batch_ndims=1, client=c,
                                           n_streams=8),
                    lambda c: mc.score_grad(I.sum_of_squares(), _normal_b2(), 20_000, rng=28,
                                            batch_ndims=1, client=c, n_streams=8)):
            a, b = run(None), run(client)
            for k in a.grad:
                np.testing.assert_array_equal(a.grad[k], b.grad[k])
                np.testing.assert_array_equal(a.stderr[k], b.stderr[k])
            np.testing.assert_array_equal(a.value, b.value)
            np.testing.assert_array_equal(a.value_stderr, b.value_stderr)
