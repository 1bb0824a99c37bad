"""The prepared estimator (mc.Estimator): the same bits as score_grad with
the same arguments, the same guards and result, across parameter changes."""
import numpy as np
import pytest

import mcscore as mc
from mcscore import integrands as I


def _sumsq(x):
    return (x * x).reshape(len(x), -1).sum(axis=1)


def _same(a, b, threads=True):
    for part in ("grad", "stderr", "variance"):
        pa, pb = getattr(a, part), getattr(b, part)
        assert pa.keys() == pb.keys()
        for k in pa:
            assert np.array_equal(pa[k], pb[k]), (part, k)
    assert np.array_equal(a.value, b.value) and np.array_equal(a.value_stderr, b.value_stderr)
    assert np.array_equal(a.n, b.n)
    if threads:
        assert a.info == b.info
    else:
        assert {**a.info, "threads": 0} == {**b.info, "threads": 0}
    try:
        cov_b = b.cov
    except ValueError as exc:  # one block: no covariance, the same error for both
        with pytest.raises(ValueError, match="2 streams"):
            a.cov
        assert "2 streams" in str(exc)
    else:
        assert np.array_equal(a.cov, cov_b)


CASES = [
    (mc.Normal, {}, [dict(loc=np.zeros(5), scale=np.ones(5)),
                     dict(loc=np.linspace(-1, 1, 5), scale=np.linspace(0.5, 1.5, 5))]),
    (mc.LogNormal, {}, [dict(loc=0.1, scale=0.3), dict(loc=-0.2, scale=0.5)]),
    (mc.Gamma, {}, [dict(concentration=[2.0, 3.0], rate=1.5),
                    dict(concentration=[0.7, 5.0], rate=0.5)]),
    (mc.Bernoulli, {}, [dict(probs=[0.3, 0.6, 0.9]), dict(probs=[0.5, 0.1, 0.2])]),
    (mc.Poisson, {}, [dict(rate=[1.5, 4.0]), dict(rate=[30.0, 0.2])]),
    (mc.Binomial, dict(total_count=7), [dict(probs=0.3), dict(probs=0.8)]),
    (mc.Categorical, {}, [dict(probs=[0.2, 0.3, 0.5]), dict(probs=[0.6, 0.3, 0.1])]),
    (mc.Dirichlet, {}, [dict(concentration=[1.0, 2.0, 3.0]),
                        dict(concentration=[0.5, 0.5, 4.0])]),
]


@pytest.mark.parametrize("family,fixed,steps", CASES, ids=[c[0].__name__ for c in CASES])
@pytest.mark.parametrize("baseline", [None, "loo", 0.5, "optimal"])
@pytest.mark.parametrize("n", [100, 3000])
def test_same_bits_as_score_grad(family, fixed, steps, baseline, n):
    bs = 32 if baseline == "optimal" else None  # cross-fitting needs 2 streams or more
    est = mc.Estimator(family, _sumsq, n, baseline=baseline, rng=7, block_size=bs, **fixed)
    for params in steps + steps[:1]:  # parameters change between calls, and come back
        got = est(**params)
        want = mc.score_grad(_sumsq, family(**fixed, **params), n, rng=7, baseline=baseline,
                             block_size=bs)
        _same(got, want)


@pytest.mark.parametrize("n", [100, 5000, 300_000])
def test_fused_and_python_f_match_score_grad(n):
    loc, scale = np.linspace(-1, 1, 5), np.linspace(0.5, 1.5, 5)
    for f in (I.sum_of_squares(), _sumsq):
        est = mc.Estimator(mc.Normal, f, n, rng=3, baseline="loo")
        for k in range(2):
            got = est(loc=loc + k, scale=scale)
            _same(got, mc.score_grad(f, mc.Normal(loc + k, scale), n, rng=3, baseline="loo"))


def test_generator_rng_advances_as_score_grad_calls():
    est = mc.Estimator(mc.Normal, _sumsq, 200, rng=np.random.default_rng(11))
    g = np.random.default_rng(11)
    for k in range(3):
        _same(est(loc=float(k), scale=1.0), mc.score_grad(_sumsq, mc.Normal(float(k), 1.0), 200,
                                                         rng=g))


def test_distribution_argument_and_threads():
    q = mc.Normal(np.zeros(4), np.ones(4))
    est = mc.Estimator(mc.Normal, _sumsq, 20_000, rng=5, n_threads=1)
    est2 = mc.Estimator(mc.Normal, _sumsq, 20_000, rng=5, n_threads=2)
    _same(est(q), est2(loc=np.zeros(4), scale=np.ones(4)), threads=False)
    with pytest.raises(TypeError, match="expected a Normal"):
        est(mc.Gamma(1.0, 1.0))
    with pytest.raises(TypeError, match="keywords"):
        est(q, loc=1.0)


def test_shape_change_between_calls():
    est = mc.Estimator(mc.Normal, _sumsq, 500, rng=1)
    for d in (3, 3, 6, 1):
        q = mc.Normal(np.zeros(d), np.full(d, 2.0))
        _same(est(loc=np.zeros(d), scale=np.full(d, 2.0)),
              mc.score_grad(_sumsq, q, 500, rng=1))


def test_kernel_of_a_call_stays_with_its_distribution():
    """Later calls do not change an earlier call's distribution (its draws)."""
    est = mc.Estimator(mc.Normal, _sumsq, 100, rng=1)
    est(loc=0.0, scale=1.0)
    q = mc.Normal(0.0, 2.0)
    est(q)
    est(loc=5.0, scale=0.1)
    np.testing.assert_array_equal(q.sample(50, rng=3), mc.Normal(0.0, 2.0).sample(50, rng=3))


def test_guards():
    est = mc.Estimator(mc.Normal, _sumsq, 100, rng=1)
    with pytest.raises(ValueError, match="scale"):
        est(loc=0.0, scale=-1.0)
    with pytest.raises(ValueError, match="scale"):
        est(loc=0.0, scale=1e-200)  # outside the differentiable range
    bad = mc.Estimator(mc.Normal, lambda x: np.full(len(x), np.nan), 100, rng=1)
    with pytest.raises(ValueError, match="finite"):
        bad(loc=0.0, scale=1.0)
    with pytest.raises(TypeError, match="family"):
        mc.Estimator(mc.Normal(0.0, 1.0), _sumsq, 100)
    with pytest.raises(ValueError, match="n"):
        mc.Estimator(mc.Normal, _sumsq, 1)
    with pytest.raises(ValueError, match="baseline"):
        mc.Estimator(mc.Normal, _sumsq, 100, baseline="best")


def test_estimate_is_unbiased_against_the_exact_gradient():
    # d/dloc E[x^2] = 2 loc, d/dscale = 2 scale, at several steps
    est = mc.Estimator(mc.Normal, _sumsq, 4000, baseline="loo", rng=2)
    for loc, scale in [(0.5, 1.0), (-1.0, 0.3), (2.0, 2.0)]:
        r = est(loc=loc, scale=scale)
        assert abs(r.grad["loc"] - 2 * loc) < 5 * r.stderr["loc"]
        assert abs(r.grad["scale"] - 2 * scale) < 5 * r.stderr["scale"]


def test_totals_algebra_is_baseline_algebra_bit_for_bit():
    """The C pass over the stream totals (small calls' finish) gives the
    array algebra's bits, on random sums over 300 orders of magnitude."""
    from mcscore import _algebra as A
    from mcscore import _kernels as K
    rng = np.random.default_rng(0)
    for trial in range(3000):
        P = int(rng.integers(1, 8))
        scale = 10.0 ** int(rng.integers(-140, 140))
        M = rng.normal(size=(5, P)) * scale
        M[1], M[4] = np.abs(M[1]), np.abs(M[4])
        if trial % 7 == 0:
            M[:, 0] = 0.0
        n = float(rng.integers(2, 10**6))
        c0 = float(rng.normal() * 10.0 ** int(rng.integers(-5, 5)))
        G, H = float(rng.normal() * scale), float(abs(rng.normal()) * scale)
        for bl, mode, b in ((None, 0, 0.0), ("loo", 1, 0.0), (0.37, 2, 0.37), (1e65, 2, 1e65)):
            with np.errstate(all="ignore"):
                ref = A.baseline_algebra(c0, np.array([n]), np.array([G]), np.array([H]),
                                         tuple(m[None] for m in M), bl)
            grad, se, var, value, vvar, q = K.totals_algebra(M, c0, n, G, H, mode, b)
            for r, g in zip((ref[0], ref[1], ref[2], ref[3], ref[5]), (grad, se, var, value, vvar)):
                assert np.array_equal(np.asarray(r, float), np.asarray(g, float), equal_nan=True)
            with np.errstate(all="ignore"):
                assert np.array_equal(q, var + grad * grad, equal_nan=True)


def test_batched_and_joint_calls_are_score_grads():
    loc, scale = np.linspace(-1, 1, 6), np.full(6, 0.7)
    est = mc.Estimator(mc.Normal, np.sin, 3000, rng=2, baseline="loo", batch_ndims=1)
    _same(est(loc=loc, scale=scale),
          mc.score_grad(np.sin, mc.Normal(loc, scale), 3000, rng=2, baseline="loo", batch_ndims=1))
    J = mc.Joint(z=mc.Bernoulli(logits=[0.2, -0.4]), w=mc.Normal(np.zeros(2), np.ones(2)))

    def f(x):
        return x["z"].sum(1) * x["w"].sum(1) + x["w"][:, 0] ** 2

    est = mc.Estimator(mc.Joint, f, 4000, rng=3)
    _same(est(J), mc.score_grad(f, J, 4000, rng=3))


def test_totals_algebra_squares_as_the_library_pow():
    """G ** 2 of a NumPy float64 is the C library's pow(G, 2), which for some
    G differs in the last bit from G * G (the value here)."""
    from mcscore import _algebra as A
    from mcscore import _kernels as K
    G, H, n, c0 = 12821.979972563387, 139222.03663746666, 5003.0, 1.3092974268256818
    assert G * G != np.float64(G) ** 2  # the case this test is about
    M = np.zeros((5, 1))
    for bl, mode in ((None, 0), ("loo", 1)):
        ref = A.baseline_algebra(c0, np.array([n]), np.array([G]), np.array([H]),
                                 tuple(m[None] for m in M), bl)
        got = K.totals_algebra(M, c0, n, G, H, mode)
        assert got[4] == ref[5] and got[3] == ref[3]


def test_multivariate_normal_matches_score_grad():
    est = mc.Estimator(mc.MultivariateNormal, _sumsq, 2000, rng=4, baseline="loo")
    for k in range(3):
        loc = np.array([0.5, -1.0, 0.2]) * k
        cov = np.array([[2.0, 0.3, 0.0], [0.3, 1.0, 0.1], [0.0, 0.1, 0.5]]) * (1 + k)
        _same(est(loc=loc, covariance_matrix=cov),
              mc.score_grad(_sumsq, mc.MultivariateNormal(loc, covariance_matrix=cov), 2000,
                            rng=4, baseline="loo"))
