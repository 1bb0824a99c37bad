"""GradientEstimate.cov and .linear: the covariance of the flattened gradient.

Calibration: for N(mu, sigma) and a polynomial f the exact covariance of the
(loc, scale) estimate is a Gaussian moment, computed here by Gauss-Hermite
quadrature (exact for polynomials): for each baseline the mean of ``cov``
over repeated estimates matches it, and so does the empirical covariance of
the repeated estimates (within 5 of their own standard errors).
"""
from __future__ import annotations

import pickle

import numpy as np
import pytest

import mcscore as mc

MU, SIGMA = 0.7, 1.3
N = 4096
REPEATS = 300
BLOCK = 64  # 64 streams of 64 draws: 63 degrees of freedom for the correlations


def f_poly(x):
    return x**3 - 2.0 * x + 4.0  # a mean far from 0: the baselines differ


def df_poly(x):
    return 3.0 * x**2 - 2.0


# ---------------------------------------------------------------------------
# exact moments by Gauss-Hermite quadrature
# ---------------------------------------------------------------------------

_Z, _W = np.polynomial.hermite_e.hermegauss(60)
_W = _W / _W.sum()


def _scores(z):
    """(len(z), 2) score of N(MU, SIGMA) w.r.t. (loc, scale) at x = MU + SIGMA z."""
    return np.stack([z / SIGMA, (z * z - 1.0) / SIGMA], axis=1)


def _moment_cov(term):
    """Cov[term(z)] for term (m,) -> (m, P) under z ~ N(0, 1)."""
    t = term(_Z)
    m = _W @ t
    return (t * _W[:, None]).T @ t - np.outer(m, m), m


def exact_per_draw_cov(baseline):
    """Exact per-draw covariance of the score estimator's terms with
    `baseline` (None, a number, "optimal": large-n, the per-coordinate
    constant E[f s_k^2] / E[s_k^2])."""
    x = MU + SIGMA * _Z
    fx = f_poly(x)
    S = _scores(_Z)
    if baseline is None:
        b = np.zeros(2)
    elif baseline == "optimal":
        b = (_W @ (fx[:, None] * S * S)) / (_W @ (S * S))
    else:
        b = np.full(2, float(baseline))
    t = (fx[:, None] - b[None, :]) * S
    m = _W @ t
    return (t * _W[:, None]).T @ t - np.outer(m, m)


def exact_loo_cov(n):
    """Exact covariance of the leave-one-out estimator at n draws: the
    U-statistic with kernel h(a, b) = (f_a - f_b)(s_a - s_b) / 2,
    Var = 4 (n - 2) / (n (n - 1)) zeta_1 + 2 / (n (n - 1)) zeta_2."""
    x = MU + SIGMA * _Z
    fx = f_poly(x)
    S = _scores(_Z)
    muf = _W @ fx
    t1 = 0.5 * (fx - muf)[:, None] * S  # h_1 minus its constant
    m1 = _W @ t1
    zeta1 = (t1 * _W[:, None]).T @ t1 - np.outer(m1, m1)
    df = fx[:, None] - fx[None, :]
    dS = S[:, None, :] - S[None, :, :]
    h = 0.5 * df[..., None] * dS  # (q, q, 2)
    W2 = _W[:, None] * _W[None, :]
    mh = np.einsum("ab,abp->p", W2, h)
    zeta2 = np.einsum("ab,abp,abq->pq", W2, h, h) - np.outer(mh, mh)
    return 4 * (n - 2) / (n * (n - 1)) * zeta1 + 2 / (n * (n - 1)) * zeta2


def exact_gradient():
    x = MU + SIGMA * _Z
    return _W @ (f_poly(x)[:, None] * _scores(_Z))


def _repeat(estimate):
    grads, covs = [], []
    for r in range(REPEATS):
        res = estimate(1000 + r)
        grads.append(np.concatenate([np.ravel(res.grad[k]) for k in res.grad]))
        covs.append(res.cov)
    return np.array(grads), np.array(covs)


def _check_calibrated(grads, covs, exact_cov, what):
    """Mean of cov over repeats vs exact; empirical covariance of the
    estimates vs exact: each entry within 5 standard errors."""
    R = len(grads)
    mean_cov = covs.mean(0)
    se_cov = covs.std(0, ddof=1) / np.sqrt(R)
    z = (mean_cov - exact_cov) / se_cov
    assert np.all(np.abs(z) < 5), (what, "mean cov", mean_cov, exact_cov, z)
    d = grads - grads.mean(0)
    prods = d[:, :, None] * d[:, None, :] * R / (R - 1)
    emp = prods.mean(0)
    se_emp = prods.std(0, ddof=1) / np.sqrt(R)
    z = (emp - exact_cov) / se_emp
    assert np.all(np.abs(z) < 5), (what, "empirical cov", emp, exact_cov, z)
    # the off-diagonal is far from 0 here: the check can tell a missing correlation
    assert abs(exact_cov[0, 1]) > 10 * se_cov[0, 1]


@pytest.mark.parametrize("baseline", [None, 1.5, "loo", "optimal"])
def test_score_cov_calibrated(baseline):
    d = mc.Normal(MU, SIGMA)
    grads, covs = _repeat(lambda seed: mc.score_grad(f_poly, d, N, rng=seed, baseline=baseline,
                                                     block_size=BLOCK))
    if baseline == "loo":
        exact = exact_loo_cov(N)
    else:
        exact = exact_per_draw_cov(baseline) / N
    _check_calibrated(grads, covs, exact, f"baseline={baseline!r}")
    # the estimates are unbiased around the exact gradient
    z = (grads.mean(0) - exact_gradient()) / (grads.std(0, ddof=1) / np.sqrt(REPEATS))
    assert np.all(np.abs(z) < 5)


def test_fused_integrand_cov_calibrated():
    """A fused integrand (no Python f: the kernels' own sums), f = x^2:
    exact per-draw covariance by quadrature."""
    from mcscore import integrands as I
    d = mc.Normal(MU, SIGMA)
    grads, covs = _repeat(lambda seed: mc.score_grad(I.power(2), d, N, rng=seed,
                                                     block_size=BLOCK))
    exact, _ = _moment_cov(lambda z: (MU + SIGMA * z)[:, None] ** 2 * _scores(z))
    _check_calibrated(grads, covs, exact / N, "fused x^2")


def test_pathwise_cov_calibrated():
    d = mc.Normal(MU, SIGMA)
    grads, covs = _repeat(lambda seed: mc.pathwise_grad(f_poly, d, N, grad_f=df_poly, rng=seed,
                                                        block_size=BLOCK))
    # per-draw terms f'(x) (1, z)
    exact, _ = _moment_cov(lambda z: df_poly(MU + SIGMA * z)[:, None]
                           * np.stack([np.ones_like(z), z], axis=1))
    _check_calibrated(grads, covs, exact / N, "pathwise")


@pytest.mark.parametrize("kind", ["rloo", "cv", "antithetic"])
def test_other_estimators_cov_matches_spread(kind):
    """rloo, control variates, antithetic pairs: the mean of cov over
    repeats matches the empirical covariance of the repeated estimates."""
    d = mc.Normal(MU, SIGMA)
    if kind == "rloo":
        def est(seed):
            return mc.rloo_grad(f_poly, d, 4 * N, k=4, rng=seed)  # 64 streams
    elif kind == "cv":
        def est(seed):
            return mc.score_grad(f_poly, d, N, rng=seed, control_variates="delta",
                                 grad_f=df_poly, block_size=BLOCK)
    else:
        def est(seed):
            return mc.score_grad(f_poly, d, N, rng=seed, antithetic=True, block_size=BLOCK)
    grads, covs = _repeat(est)
    R = len(grads)
    d_ = grads - grads.mean(0)
    prods = d_[:, :, None] * d_[:, None, :] * R / (R - 1)
    diff = covs - prods
    z = diff.mean(0) / (diff.std(0, ddof=1) / np.sqrt(R))
    assert np.all(np.abs(z) < 5), (kind, covs.mean(0), prods.mean(0), z)


def test_discrete_estimators_have_cov():
    """REBAR, DisARM and the relaxed estimator on a batch of Bernoullis:
    cov is symmetric, positive semi-definite, with diagonal stderr**2."""
    d = mc.Bernoulli(probs=np.array([0.2, 0.5, 0.7]))
    w = np.array([1.0, -2.0, 0.5])

    def f(b):
        return (b @ w) ** 2

    def grad_f(b):
        return 2 * (b @ w)[:, None] * w

    for res in (mc.disarm_grad(f, d, 20000, rng=1),
                mc.rebar_grad(f, d, 20000, grad_f=grad_f, rng=1),
                mc.relaxed_grad(f, d, 20000, grad_f=grad_f, temperature=0.5, rng=1)):
        C = res.cov
        se = np.concatenate([np.ravel(res.stderr[k]) for k in res.grad])
        assert C.shape == (3, 3)
        np.testing.assert_allclose(C, C.T)
        # batch means over 63 degrees of freedom: relative sd sqrt(2/63) of a variance
        assert np.all(np.abs(np.diag(C) / se**2 - 1) < 5 * np.sqrt(2 / 63)), res.method
        assert np.linalg.eigvalsh(C).min() > -1e-12 * np.abs(C).max()


def test_categorical_cov_sums_to_zero():
    """Categorical logits: E[f s] is unchanged by adding a constant to all
    logits, so every draw's score sums to 0 over categories and the
    estimate's covariance matrix has the all-ones vector in its kernel; the
    sum of the logits' gradient has standard error ~0 through linear()
    (batch means keep every exact linear relation of the terms)."""
    d = mc.Categorical(logits=np.array([0.1, -0.4, 0.3, 0.0]))
    vals = np.array([1.0, 3.0, -2.0, 0.5])
    res = mc.score_grad(lambda k: vals[k], d, 40000, rng=3)
    lin = res.linear({"logits": np.ones(4)})
    assert abs(lin.estimate) < 1e-9
    assert lin.stderr < 1e-9 * float(np.max(res.stderr["logits"]))


def test_linear_forms_agree():
    d = mc.Normal(np.array([0.5, -1.0]), np.array([1.0, 2.0]))
    res = mc.score_grad(lambda x: (x**2).sum(1) + x[:, 0] * x[:, 1], d, 20000, rng=7)
    assert res.coordinates() == ["loc[0]", "loc[1]", "scale[0]", "scale[1]"]
    C = res.cov
    se = np.concatenate([res.stderr["loc"], res.stderr["scale"]])
    assert np.all(np.abs(np.diag(C) / se**2 - 1) < 5 * np.sqrt(2 / 63))
    J = np.array([[1.0, 0.0, 2.0, -1.0], [0.0, 1.0, 0.0, 0.0]])
    lin = res.linear(J)
    g = np.concatenate([res.grad["loc"], res.grad["scale"]])
    np.testing.assert_allclose(lin.estimate, J @ g)
    np.testing.assert_allclose(lin.cov, J @ C @ J.T, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(lin.stderr, np.sqrt(np.diag(J @ C @ J.T)), rtol=1e-10)
    # a unit vector gives the coordinate's standard error from cov
    assert lin.stderr[1] == pytest.approx(np.sqrt(C[1, 1]), rel=1e-12)
    one = res.linear({"loc": np.array([1.0, 0.0]), "scale": np.array([2.0, -1.0])})
    assert one.estimate == pytest.approx(lin.estimate[0], rel=1e-12)
    assert one.stderr == pytest.approx(lin.stderr[0], rel=1e-12)
    est, sd = res.linear(J[0])
    assert est == pytest.approx(lin.estimate[0]) and sd == pytest.approx(lin.stderr[0])
    # pickling keeps the covariance
    res2 = pickle.loads(pickle.dumps(res))
    np.testing.assert_allclose(res2.cov, C)


def test_from_samples_cov_is_sample_cov():
    d = mc.Normal(MU, SIGMA)
    x = d.sample(5000, rng=2)
    fx = f_poly(x)
    res = mc.score_grad_from_samples(d, x, fx)
    S = _scores((x - MU) / SIGMA)
    y = fx[:, None] * S
    np.testing.assert_allclose(res.cov, np.cov(y.T) / len(x), rtol=1e-9)


def test_linear_bad_input():
    res = mc.score_grad(f_poly, mc.Normal(MU, SIGMA), 4096, rng=1)
    with pytest.raises(ValueError, match=r"J must have shape \(k, 2\)"):
        res.linear(np.ones(3))
    with pytest.raises(ValueError, match="unknown parameter"):
        res.linear({"mean": 1.0})
    with pytest.raises(ValueError, match="shape of grad"):
        res.linear({"loc": np.ones(2)})
    with pytest.raises(ValueError, match="finite"):
        res.linear([np.nan, 1.0])
    with pytest.raises(TypeError, match="J must be"):
        res.linear("loc")


def test_one_stream_cov_error():
    res = mc.score_grad(f_poly, mc.Normal(MU, SIGMA), 100, rng=1)
    with pytest.raises(ValueError, match="at least 2 streams"):
        res.cov
    bare = mc.GradientEstimate({"a": np.array([1.0, 2.0])}, {"a": np.array([0.1, 0.1])},
                               {"a": np.array([1.0, 1.0])}, 0.0, 0.0, 10)
    with pytest.raises(ValueError, match="carries no covariance"):
        bare.cov


def test_estimates_unchanged_by_cov():
    """The covariance is computed from the same per-stream sums: asking
    for it changes nothing in the estimate, and two calls agree bit for bit."""
    d = mc.Normal(MU, SIGMA)
    a = mc.score_grad(f_poly, d, 8192, rng=4, baseline="optimal")
    b = mc.score_grad(f_poly, d, 8192, rng=4, baseline="optimal")
    a.cov
    for k in a.grad:
        assert np.array_equal(a.grad[k], b.grad[k])
        assert np.array_equal(a.stderr[k], b.stderr[k])


def test_dask_cov_matches_local():
    """On Dask the per-stream sums, and so the covariance, are those of the
    local run, bit for bit (score with the optimal baseline, and rloo)."""
    distributed = pytest.importorskip("dask.distributed")
    d = mc.Normal(np.array([0.5, -1.0]), np.array([1.0, 2.0]))

    def f(x):
        return (x**2).sum(1) + x[:, 0]

    with distributed.LocalCluster(n_workers=1, processes=False, threads_per_worker=2,
                                  dashboard_address=":0", silence_logs=40) as cluster, \
            distributed.Client(cluster) as client:
        for run in (lambda **kw: mc.score_grad(f, d, 20000, rng=3, baseline="optimal", **kw),
                    lambda **kw: mc.rloo_grad(f, d, 5000, rng=3, **kw)):
            local, remote = run(), run(client=client)
            assert np.array_equal(local.cov, remote.cov)
