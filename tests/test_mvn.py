"""MultivariateNormal (covariance_matrix / precision_matrix / scale_tril) and
LowRankMultivariateNormal: densities against scipy, scores against finite
differences of scipy's log density and torch's autograd, gradient
estimates of every estimator within 5 standard errors of the closed-form
gradients of Gaussian moments, calibrated standard errors, bit-identity
over threads, VI with a full covariance, clear errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import mcscore as mc
from mcscore import integrands as I

D = 3
RNG = np.random.default_rng(20261130)
_A = RNG.normal(size=(D, D))
SIGMA = _A @ _A.T + D * np.eye(D)  # a correlated covariance
LTRI = np.linalg.cholesky(SIGMA)
PREC = np.linalg.inv(SIGMA)
MU = np.array([0.5, -1.0, 0.25])
# f(x) = x^T A x + b^T x with A symmetric
AMAT = np.array([[1.0, 0.3, -0.2], [0.3, 0.5, 0.1], [-0.2, 0.1, 0.8]])
BVEC = np.array([0.4, -0.3, 0.7])
W = np.array([[1.0, 0.2], [0.5, -0.7], [-0.3, 0.4]])
DIAG = np.array([0.6, 1.1, 0.4])

MATRIX = {"scale_tril": LTRI, "covariance_matrix": SIGMA, "precision_matrix": PREC}


def fquad(x):
    return np.einsum("ni,ij,nj->n", x, AMAT, x) + x @ BVEC


def grad_fquad(x):
    return 2 * x @ AMAT + BVEC


FUSED = I.quadratic(AMAT) + I.linear(BVEC)


def expect(mu, sigma):
    """E[x^T A x + b^T x] for x ~ N(mu, sigma)."""
    return mu @ AMAT @ mu + np.trace(AMAT @ sigma) + BVEC @ mu


def exact_grads(name):
    """Closed-form gradients of E[f] w.r.t. loc and the given matrix, in
    the layout of res.grad (see distributions._multivariate)."""
    g = {"loc": 2 * AMAT @ MU + BVEC}
    if name == "scale_tril":
        g[name] = np.tril(2 * AMAT @ LTRI)
    elif name == "covariance_matrix":
        g[name] = AMAT.copy()  # d tr(A Sigma) along symmetric E is sum A_ij E_ij
    elif name == "precision_matrix":
        g[name] = -SIGMA @ AMAT @ SIGMA
    elif name == "lowrank":
        g["cov_factor"] = 2 * AMAT @ W
        g["cov_diag"] = np.diag(AMAT).copy()
    return g


def make(name, loc=MU):
    if name == "lowrank":
        return mc.LowRankMultivariateNormal(loc, W, DIAG)
    return mc.MultivariateNormal(loc, **{name: MATRIX[name]})


ALL = ["scale_tril", "covariance_matrix", "precision_matrix", "lowrank"]


def assert_within(res, exact, k=5.0):
    for key, g in exact.items():
        se = res.stderr[key]
        diff = np.abs(res.grad[key] - g)
        mask = se > 0
        assert np.all(diff[mask] <= k * se[mask]), (key, res.grad[key], g, se)
        # coordinates without a term (above the diagonal of scale_tril) are exactly 0
        assert np.all(res.grad[key][~mask] == 0) and np.all(g[~mask] == 0), key


# ---------------------------------------------------------------------------
# the exact gradients' convention, against finite differences of E[f]
# ---------------------------------------------------------------------------

def test_symmetric_gradient_convention_matches_finite_differences_of_the_expectation():
    h = 1e-5
    for name in ("covariance_matrix", "precision_matrix"):
        G = exact_grads(name)[name]
        np.testing.assert_allclose(G, G.T)
        for i in range(D):
            for j in range(D):
                E = np.zeros((D, D))
                E[i, j] = E[j, i] = 1.0  # a symmetric perturbation
                if name == "covariance_matrix":
                    fd = (expect(MU, SIGMA + h * E) - expect(MU, SIGMA - h * E)) / (2 * h)
                else:
                    fd = (expect(MU, np.linalg.inv(PREC + h * E))
                          - expect(MU, np.linalg.inv(PREC - h * E))) / (2 * h)
                # sum_kl G_kl E_kl: G_ii on the diagonal, G_ij + G_ji = 2 G_ij off it
                np.testing.assert_allclose(fd, np.sum(G * E), rtol=1e-6, atol=1e-8)
    G = exact_grads("scale_tril")["scale_tril"]
    for i in range(D):
        for j in range(i + 1):
            E = np.zeros((D, D))
            E[i, j] = 1.0
            fd = (expect(MU, (LTRI + h * E) @ (LTRI + h * E).T)
                  - expect(MU, (LTRI - h * E) @ (LTRI - h * E).T)) / (2 * h)
            np.testing.assert_allclose(fd, G[i, j], rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------------------
# densities and scores at random valid parameters
# ---------------------------------------------------------------------------

@st.composite
def gaussians(draw):
    d = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d))
    sigma = a @ a.T + draw(st.floats(0.2, 3.0)) * np.eye(d)
    mu = rng.normal(size=d) * draw(st.floats(0.0, 5.0))
    return d, mu, sigma, rng


def _fd_scores(build, mats, x, name, h=1e-6):
    """Finite differences of scipy's log density w.r.t. each entry of the
    matrix `name`, in the layout of score() (symmetric perturbations for a
    covariance or precision matrix, halved off the diagonal)."""
    M = mats[name]
    d = M.shape[0]
    out = np.zeros((len(x), d, d))
    for i in range(d):
        for j in range(d):
            if name == "scale_tril" and j > i:
                continue
            E = np.zeros((d, d))
            E[i, j] = h
            if name != "scale_tril":
                E[j, i] = h
            up = stats.multivariate_normal(mats["loc"], build(M + E)).logpdf(x)
            dn = stats.multivariate_normal(mats["loc"], build(M - E)).logpdf(x)
            v = np.atleast_1d((up - dn) / (2 * h))
            out[:, i, j] = v if (name == "scale_tril" or i == j) else v / 2
    return out


TO_SIGMA = {"scale_tril": lambda L: L @ L.T, "covariance_matrix": lambda S: S,
            "precision_matrix": np.linalg.inv}


@settings(max_examples=25, deadline=None)
@given(gaussians(), st.sampled_from(sorted(MATRIX)))
def test_log_prob_and_scores_match_scipy(g, name):
    d, mu, sigma, rng = g
    mats = {"loc": mu, "scale_tril": np.linalg.cholesky(sigma), "covariance_matrix": sigma,
            "precision_matrix": np.linalg.inv(sigma)}
    q = mc.MultivariateNormal(mu, **{name: mats[name]})
    x = q.sample(6, rng=rng)
    np.testing.assert_allclose(q.log_prob(x), stats.multivariate_normal(mu, sigma).logpdf(x),
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(q.entropy(), stats.multivariate_normal(mu, sigma).entropy(),
                               rtol=1e-12)
    sc = q.score(x)
    scale = 1 + np.abs(sc[name]).max()
    np.testing.assert_allclose(sc[name], _fd_scores(TO_SIGMA[name], mats, x, name),
                               atol=2e-5 * scale)
    h = 1e-6
    fdl = np.stack([(stats.multivariate_normal(mu + h * e, sigma).logpdf(x)
                     - stats.multivariate_normal(mu - h * e, sigma).logpdf(x)) / (2 * h)
                    for e in np.eye(d)], -1).reshape(len(x), d)
    np.testing.assert_allclose(sc["loc"], fdl, atol=2e-5 * (1 + np.abs(fdl).max()))


@settings(max_examples=20, deadline=None)
@given(gaussians(), st.integers(1, 3))
def test_lowrank_log_prob_and_scores_match_scipy(g, r):
    d, mu, _, rng = g
    Wr = rng.normal(size=(d, r))
    Dg = rng.uniform(0.3, 2.0, size=d)
    q = mc.LowRankMultivariateNormal(mu, Wr, Dg)
    sigma = Wr @ Wr.T + np.diag(Dg)
    x = q.sample(6, rng=rng)
    lp = lambda m, w, dd: stats.multivariate_normal(m, w @ w.T + np.diag(dd)).logpdf(x)
    np.testing.assert_allclose(q.log_prob(x), lp(mu, Wr, Dg), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(q.covariance_matrix, sigma, rtol=1e-12)
    sc = q.score(x)
    h = 1e-6
    for name, base in (("loc", mu), ("cov_factor", Wr), ("cov_diag", Dg)):
        fd = np.zeros((len(x),) + base.shape)
        for idx in np.ndindex(base.shape):
            e = np.zeros(base.shape)
            e[idx] = h
            args = {"loc": mu, "cov_factor": Wr, "cov_diag": Dg}
            up, dn = dict(args), dict(args)
            up[name], dn[name] = base + e, base - e
            fd[(slice(None),) + idx] = (lp(*up.values()) - lp(*dn.values())) / (2 * h)
        np.testing.assert_allclose(sc[name], fd, atol=2e-5 * (1 + np.abs(fd).max()))


@settings(max_examples=15, deadline=None)
@given(gaussians(), st.sampled_from(ALL), st.integers(1, 3))
def test_scores_match_torch_autograd(g, name, r):
    torch = pytest.importorskip("torch")
    d, mu, sigma, rng = g
    if name == "lowrank":
        params = {"loc": mu, "cov_factor": rng.normal(size=(d, r)),
                  "cov_diag": rng.uniform(0.3, 2.0, size=d)}
        q = mc.LowRankMultivariateNormal(**params)
        build = torch.distributions.LowRankMultivariateNormal
    else:
        mats = {"scale_tril": np.linalg.cholesky(sigma), "covariance_matrix": sigma,
                "precision_matrix": np.linalg.inv(sigma)}
        params = {"loc": mu, name: mats[name]}
        q = mc.MultivariateNormal(**params)
        build = torch.distributions.MultivariateNormal
    x = q.sample(4, rng=rng)
    sc = q.score(x)
    for i in range(len(x)):
        tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
        build(**tp).log_prob(torch.tensor(x[i])).backward()
        for k, v in tp.items():
            tg = v.grad.numpy()
            np.testing.assert_allclose(sc[k][i], tg, rtol=1e-7, atol=1e-9 * (1 + np.abs(tg).max()),
                                       err_msg=f"{name}: {k}")


def test_sample_moments_mean_variance_and_batch():
    for name in ALL:
        q = make(name)
        x = q.sample(200_000, rng=1)
        sig = q.covariance_matrix
        se = np.sqrt(np.diag(sig) / len(x))
        assert np.all(np.abs(x.mean(0) - MU) < 5 * se)
        np.testing.assert_allclose(np.cov(x.T), sig, atol=0.03 * np.abs(sig).max())
        np.testing.assert_array_equal(q.mean(), MU)
        np.testing.assert_allclose(q.variance(), np.diag(sig))
        np.testing.assert_allclose(q.stddev(), np.sqrt(np.diag(sig)))
    qb = mc.MultivariateNormal(np.stack([MU, -MU]), scale_tril=LTRI)
    assert qb.batch_shape == (2,) and qb.event_shape == (D,) and qb.draw_shape == (2, D)
    x = qb.sample(4, rng=0)
    assert x.shape == (4, 2, D) and qb.log_prob(x).shape == (4, 2)
    np.testing.assert_allclose(qb.log_prob(x)[:, 1],
                               stats.multivariate_normal(-MU, SIGMA).logpdf(x[:, 1]))
    assert qb.entropy().shape == (2,)


# ---------------------------------------------------------------------------
# gradient estimates: every estimator and baseline within 5 se
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("baseline", [None, 2.0, "loo", "optimal"])
def test_score_grad_every_baseline_python_and_fused(name, baseline):
    q = make(name)
    ex = exact_grads(name)
    for f in (fquad, FUSED):
        res = mc.score_grad(f, q, 60_000, rng=5, baseline=baseline)
        assert_within(res, ex)


@pytest.mark.parametrize("name", ALL)
def test_variance_reduction_rloo_and_samples(name):
    q = make(name)
    ex = exact_grads(name)
    assert_within(mc.score_grad(fquad, q, 40_000, rng=6, antithetic=True), ex)
    assert_within(mc.score_grad(FUSED, q, 40_000, rng=6, antithetic=True, baseline="optimal"),
                  ex)
    # a control variate with a known gradient of its mean: h = b^T x, grad E[h] = b wrt loc
    grads = {k: np.zeros_like(v) for k, v in ex.items()}
    grads["loc"] = BVEC.copy()
    cv = (lambda x: x @ BVEC, grads)
    assert_within(mc.score_grad(fquad, q, 40_000, rng=7, control_variates=[cv]), ex)
    assert_within(mc.rloo_grad(fquad, q, 10_000, k=4, rng=8), ex)
    x = q.sample(40_000, rng=9)
    for baseline in (None, "loo", "optimal"):
        assert_within(mc.score_grad_from_samples(q, x, fquad(x), baseline=baseline), ex)


def test_pathwise_through_scale_tril():
    q = make("scale_tril")
    res = mc.pathwise_grad(fquad, q, 40_000, grad_f=grad_fquad, rng=10)
    assert_within(res, exact_grads("scale_tril"))
    # the same draws as score_grad (the sums' order differs: to rounding)
    assert res.value == pytest.approx(mc.score_grad(fquad, q, 40_000, rng=10).value, rel=1e-12)
    for name in ("covariance_matrix", "precision_matrix"):
        with pytest.raises(ValueError, match="scale_tril="):
            mc.pathwise_grad(fquad, make(name), 100, grad_f=grad_fquad, rng=0)


def test_batched_loc_gradients():
    locs = np.stack([MU, -0.5 * MU])
    q = mc.MultivariateNormal(locs, scale_tril=LTRI)

    def f(x):  # sum over the batch of the quadratic
        return sum(fquad(x[:, u]) for u in range(2))

    res = mc.score_grad(f, q, 80_000, rng=11, baseline="optimal")
    ex = {"loc": np.stack([2 * AMAT @ m + BVEC for m in locs]),
          "scale_tril": 2 * np.tril(2 * AMAT @ LTRI)}
    assert_within(res, ex)


@pytest.mark.parametrize("name", ALL)
def test_standard_errors_are_calibrated(name):
    R = 200
    z2 = []
    q = make(name)
    ex = exact_grads(name)
    for r in range(R):
        res = mc.score_grad(FUSED, q, 2000, rng=1000 + r, baseline="loo")
        z2.append(np.concatenate([((res.grad[k] - ex[k])[res.stderr[k] > 0]
                                   / res.stderr[k][res.stderr[k] > 0]) for k in ex]) ** 2)
    z2 = np.array(z2)
    # per coordinate: mean z^2 over repeats within 5 sqrt(2 / R) of 1
    assert np.all(np.abs(z2.mean(0) - 1) < 5 * np.sqrt(2 / R)), z2.mean(0)


def _same(a, b):
    assert a.value == b.value
    for k in a.grad:
        np.testing.assert_array_equal(a.grad[k], b.grad[k])
        np.testing.assert_array_equal(a.stderr[k], b.stderr[k])


@pytest.mark.parametrize("name", ALL)
def test_bit_identical_across_threads(name):
    q = make(name)
    for f in (fquad, FUSED):
        runs = [mc.score_grad(f, q, 50_000, rng=12, n_threads=t, baseline="optimal")
                for t in (1, 2)]
        _same(*runs)
    _same(*[mc.score_grad(fquad, q, 50_000, rng=12, n_threads=t, antithetic=True)
            for t in (1, 2)])
    np.testing.assert_array_equal(*[make(name).sample(1000, rng=3) for _ in range(2)])


def test_low_level_callable():
    numba = pytest.importorskip("numba")
    from numba import types
    from scipy import LowLevelCallable

    a = AMAT.copy()
    b = BVEC.copy()

    @numba.cfunc(types.float64(types.CPointer(types.float64), types.intp))
    def cb(x, d):
        s = 0.0
        for i in range(d):
            s += b[i] * x[i]
            for j in range(d):
                s += x[i] * a[i, j] * x[j]
        return s

    q = make("scale_tril")
    res = mc.score_grad(LowLevelCallable(cb.ctypes), q, 50_000, rng=13, baseline="loo")
    assert_within(res, exact_grads("scale_tril"))
    py = mc.score_grad(fquad, q, 50_000, rng=13, baseline="loo")
    np.testing.assert_allclose(res.grad["scale_tril"], py.grad["scale_tril"], rtol=1e-9,
                               atol=1e-12)


def test_dask_is_bit_identical():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       dashboard_address=None, silence_logs=40)
    client = distributed.Client(cluster)
    try:
        for name in ("scale_tril", "lowrank"):
            q = make(name)
            for f in (fquad, FUSED):
                kw = dict(rng=14, n_streams=8, block_size=500, baseline="optimal")
                _same(mc.score_grad(f, q, 20_000, **kw),
                      mc.score_grad(f, q, 20_000, client=client, **kw))
            _same(mc.rloo_grad(fquad, q, 5000, rng=15), mc.rloo_grad(fquad, q, 5000, rng=15,
                                                                     client=client))
        q = make("scale_tril")
        _same(mc.pathwise_grad(fquad, q, 5000, grad_f=grad_fquad, rng=16),
              mc.pathwise_grad(fquad, q, 5000, grad_f=grad_fquad, rng=16, client=client))
    finally:
        client.close()
        cluster.close()


# ---------------------------------------------------------------------------
# VI with a full covariance
# ---------------------------------------------------------------------------

def test_vi_recovers_a_correlated_gaussian_posterior():
    rng = np.random.default_rng(0)
    N, d = 40, 3
    X = rng.normal(size=(N, d))
    X[:, 1] = X[:, 0] + 0.3 * X[:, 1]  # a correlated design
    y = X @ np.array([1.0, -0.5, 0.3]) + rng.normal(size=N)
    tau = 2.0
    post_cov = np.linalg.inv(X.T @ X + np.eye(d) / tau**2)
    post_mean = post_cov @ X.T @ y

    def log_joint(b):
        r = y[None] - b @ X.T
        return -0.5 * (r**2).sum(1) - 0.5 * (b**2).sum(1) / tau**2

    q0 = mc.MultivariateNormal(np.zeros(d), scale_tril=np.eye(d))
    assert mc.vi.transforms(q0) == {"loc": "identity", "scale_tril": "tril_log_diag"}
    steps, n = 1500, 100
    res = mc.vi.fit(log_joint, q0, steps=steps, n=n, lr=0.02, rng=1, progress=False)
    sd = np.sqrt(np.diag(post_cov))
    # Monte Carlo error of the averaged iterate: the posterior spread over the
    # number of draws averaged (a generous bound; the family contains the
    # posterior, so the fit is exact up to Monte Carlo error)
    mc_err = 5 / np.sqrt(n * steps / 2)
    assert np.all(np.abs(res.q.loc - post_mean) < mc_err * sd)
    corr = post_cov / np.outer(sd, sd)
    qcov = res.q.covariance_matrix
    qsd = np.sqrt(np.diag(qcov))
    assert np.all(np.abs(qsd / sd - 1) < mc_err)
    assert np.all(np.abs(qcov / np.outer(qsd, qsd) - corr) < mc_err)
    assert abs(corr[0, 1]) > 0.5  # the correlation a mean-field q would lose
    assert np.all(np.triu(res.q.scale_tril, 1) == 0)
    with pytest.raises(ValueError, match="scale_tril="):
        mc.vi.fit(log_joint, make("covariance_matrix"), steps=2, progress=False)


def test_vi_lowrank_q_runs():
    y = np.array([0.5, -0.2])
    res = mc.vi.fit(lambda x: -0.5 * ((x - y) ** 2).sum(1),
                    mc.LowRankMultivariateNormal(np.zeros(2), [[0.1], [0.1]], [1.0, 1.0]),
                    steps=300, n=50, lr=0.05, rng=0, progress=False)
    assert np.all(np.abs(res.q.loc - y) < 0.1)


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    (dict(loc=MU), "exactly one of covariance_matrix, precision_matrix or scale_tril, got none"),
    (dict(loc=MU, covariance_matrix=SIGMA, scale_tril=LTRI),
     "exactly one of .*got covariance_matrix, scale_tril"),
    (dict(loc=MU, covariance_matrix=np.ones((3, 2))), "covariance_matrix must be a square"),
    (dict(loc=MU, covariance_matrix=np.eye(2)), r"covariance_matrix must have shape \(3, 3\)"),
    (dict(loc=MU, covariance_matrix=np.diag([1.0, -1.0, 1.0])),
     "covariance_matrix must be positive definite; its smallest eigenvalue is -1"),
    (dict(loc=MU, precision_matrix=np.zeros((3, 3))), "precision_matrix must be positive "
                                                      "definite"),
    (dict(loc=MU, covariance_matrix=SIGMA + np.triu(np.ones((3, 3)), 1)),
     "covariance_matrix must be symmetric"),
    (dict(loc=MU, scale_tril=LTRI.T), r"scale_tril must be lower triangular: entry \[0, 1\]"),
    (dict(loc=MU, scale_tril=np.diag([1.0, 0.0, 1.0])),
     r"scale_tril must have a positive diagonal .*scale_tril\[1, 1\] = 0.0"),
    (dict(loc=MU, scale_tril=np.full((3, 3), np.nan)), "scale_tril must be finite"),
    (dict(loc=1.0, scale_tril=np.eye(1)), "loc must be a vector"),
    (dict(loc=MU, scale_tril=np.eye(3)[None]), "scale_tril must be a square"),
])
def test_mvn_errors_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mc.MultivariateNormal(**kwargs)


def test_lowrank_errors_and_bad_draws():
    with pytest.raises(ValueError, match=r"cov_factor must have shape \(d, r\) = \(3, r\)"):
        mc.LowRankMultivariateNormal(MU, np.ones((2, 1)), DIAG)
    with pytest.raises(ValueError, match=r"cov_diag must have shape \(3,\)"):
        mc.LowRankMultivariateNormal(MU, W, np.ones(2))
    with pytest.raises(ValueError, match="cov_diag"):
        mc.LowRankMultivariateNormal(MU, W, [1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="x must have shape"):
        make("scale_tril").score(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="x must have shape"):
        make("scale_tril").log_prob(np.zeros((4, 2)))


def test_full_covariance_example_quick(capsys):
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "examples", "vi_full_covariance.py")
    spec = importlib.util.spec_from_file_location("example_vi_full_covariance", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main(["--quick"])
    post, full, mf = out["posterior"], out["full"], out["mean_field"]
    assert post["corr"] < -0.5
    assert abs(full["corr"] - post["corr"]) < 0.05
    assert np.all(np.abs(full["sd"] / post["sd"] - 1) < 0.1)
    assert np.all(mf["sd"] < 0.7 * post["sd"])  # mean-field understates the spread
    assert "mean-field q" in capsys.readouterr().out


@pytest.mark.parametrize("name", ALL)
def test_blas_accumulation_equals_the_per_coordinate_scores(name):
    """score_grad accumulates a MultivariateNormal's statistics by BLAS
    (bilinear sums per chunk); score_grad_from_samples evaluates each
    coordinate's score by the family's score kernel: on the same draws and
    values they agree to rounding."""
    q = make(name)
    xs = []

    def f(x):
        xs.append(x.copy())
        return fquad(x)

    for baseline in (None, "loo"):
        xs.clear()
        r = mc.score_grad(f, q, 5000, rng=1, n_threads=1, n_streams=1, baseline=baseline)
        x = np.concatenate(xs)
        r2 = mc.score_grad_from_samples(q, x, fquad(x), baseline=baseline)
        for k in r.grad:
            np.testing.assert_allclose(r.grad[k], r2.grad[k], rtol=1e-10,
                                       atol=1e-12 * np.abs(r2.grad[k]).max())
            np.testing.assert_allclose(r.stderr[k], r2.stderr[k], rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize("name", ALL)
def test_per_coordinate_score_kernel_equals_the_blas_scores(name):
    """A batch of two locs sharing the matrix is scored coordinate by
    coordinate (the family's score kernel); one loc by the BLAS form of
    every coordinate at once.  Unit u's loc scores are those of the one-loc
    distribution at x[:, u]; the shared matrix's are their sum."""
    q1 = make(name)
    q2 = make(name, loc=np.stack([MU, MU]))
    x = q2.sample(300, rng=17)
    s2 = q2.score(x)
    s1 = [q1.score(x[:, u]) for u in range(2)]
    for k, v in s2.items():
        want = np.stack([s[k] for s in s1], 1) if k == "loc" else s1[0][k] + s1[1][k]
        np.testing.assert_allclose(v, want, rtol=1e-10, atol=1e-12 * np.abs(want).max())
