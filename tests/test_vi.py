"""mcscore.vi: the ELBO gradient against its closed form, and fits of
conjugate models against their exact posteriors."""
import numpy as np
import pytest

import mcscore as mc
from mcscore import vi


def _gaussian_model(seed=0):
    """Independent Normal-Normal models in 3 coordinates: prior N(0, s0^2),
    y_ij ~ N(mu_j, 1).  log_joint is -0.5 a x^2 + b x per coordinate."""
    rng = np.random.default_rng(seed)
    ns = np.array([5, 20, 50])
    ys = [rng.normal(m, 1.0, k) for m, k in zip([1.0, -2.0, 0.5], ns)]
    s0 = 2.0
    sums = np.array([y.sum() for y in ys])
    sumsq = np.array([(y * y).sum() for y in ys])
    a = 1 / s0**2 + ns
    b = sums

    def log_joint(x):
        return (-0.5 * x * x / s0**2 - 0.5 * (sumsq - 2 * x * sums + ns * x * x)).sum(1)

    const = -0.5 * sumsq.sum()
    return log_joint, a, b, const


def test_elbo_grad_matches_closed_form():
    log_joint, a, b, c = _gaussian_model()
    m = np.array([0.3, -1.0, 0.2])
    s = np.array([0.8, 0.5, 0.3])
    q = mc.Normal(m, s)
    exact_elbo = (-0.5 * a * (m * m + s * s) + b * m).sum() + c \
        + (0.5 * np.log(2 * np.pi * np.e) + np.log(s)).sum()
    exact = {"loc": -a * m + b, "scale": -a * s + 1 / s}
    for baseline in (None, "loo", "optimal"):
        res = vi.elbo_grad(log_joint, q, 20_000, rng=5, baseline=baseline)
        z = res.z_scores(exact)
        assert max(np.abs(v).max() for v in z.values()) < 5, (baseline, z)
        assert abs(res.value - exact_elbo) < 5 * res.value_stderr
    # the leave-one-out baseline helps a lot here
    plain = vi.elbo_grad(log_joint, q, 20_000, rng=5, baseline=None)
    loo = vi.elbo_grad(log_joint, q, 20_000, rng=5, baseline="loo")
    assert (loo.stderr["loc"] < plain.stderr["loc"]).all()


def test_fit_normal_normal_exact_posterior():
    log_joint, a, b, _ = _gaussian_model()
    post_mean, post_sd = b / a, 1 / np.sqrt(a)
    res = vi.fit(log_joint, mc.Normal(np.zeros(3), np.ones(3)), steps=1200, n=100, lr=0.05,
                 rng=1, progress=False)
    # stated tolerance: mean within 0.02 posterior sd, sd within 2 %
    assert np.all(np.abs(res.q.loc - post_mean) < 0.02 * post_sd)
    assert np.all(np.abs(res.q.scale / post_sd - 1) < 0.02)
    assert res.elbo.shape == (1200,)
    assert res.elbo[-100:].mean() > res.elbo[:10].mean()
    assert type(res.q) is mc.Normal and res.transforms == {"loc": "identity", "scale": "log"}


def test_fit_bayesian_linear_regression_mean_field():
    """Correlated posterior N(mean, Lam^-1): the mean-field optimum has the
    exact mean and variances 1 / Lam_ii (not the marginal variances)."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 3))
    X[:, 1] += 0.6 * X[:, 0]
    sig, tau = 0.7, 1.5
    y = X @ np.array([0.5, -1.0, 2.0]) + sig * rng.normal(size=40)
    Lam = X.T @ X / sig**2 + np.eye(3) / tau**2
    mean = np.linalg.solve(Lam, X.T @ y / sig**2)
    mf_sd = 1 / np.sqrt(np.diag(Lam))
    marg_sd = np.sqrt(np.diag(np.linalg.inv(Lam)))
    assert np.max(marg_sd / mf_sd) > 1.05  # the two differ: the test can tell them apart

    def log_joint(W):
        r = y[None, :] - W @ X.T
        return -0.5 * (r * r).sum(1) / sig**2 - 0.5 * (W * W).sum(1) / tau**2

    res = vi.fit(log_joint, mc.Normal(np.zeros(3), np.ones(3)), steps=1500, n=100, lr=0.05,
                 rng=4, progress=False)
    assert np.all(np.abs(res.q.loc - mean) < 0.02 * mf_sd)
    assert np.all(np.abs(res.q.scale / mf_sd - 1) < 0.02)


def test_fit_beta_bernoulli_exact_posterior():
    a0, b0, N, k = 2.0, 3.0, 30, 11

    def log_joint(x):
        p = x[:, 0]
        return (a0 + k - 1) * np.log(p) + (b0 + N - k - 1) * np.log1p(-p)

    res = vi.fit(log_joint, mc.Beta(np.ones(1), np.ones(1)), steps=1200, n=100, lr=0.05,
                 rng=2, progress=False)
    c1, c0 = res.q.params["concentration1"][0], res.q.params["concentration0"][0]
    # stated tolerance: concentrations within 1 % of (a0 + k, b0 + N - k)
    assert c1 == pytest.approx(a0 + k, rel=0.01)
    assert c0 == pytest.approx(b0 + N - k, rel=0.01)
    post_mean = (a0 + k) / (a0 + b0 + N)
    assert res.q.mean[0] == pytest.approx(post_mean, rel=1e-3)


def test_fit_progress_bar_and_reproducible():
    log_joint, *_ = _gaussian_model()
    q0 = mc.Normal(np.zeros(3), np.ones(3))
    r1 = vi.fit(log_joint, q0, steps=30, n=20, rng=9, progress=True)
    r2 = vi.fit(log_joint, q0, steps=30, n=20, rng=9, progress=False)
    np.testing.assert_array_equal(r1.elbo, r2.elbo)
    np.testing.assert_array_equal(r1.q.loc, r2.q.loc)
    assert "VIResult" in repr(r1)


def test_transforms():
    assert vi.transforms(mc.Gamma(1.0, 2.0)) == {"concentration": "log", "rate": "log"}
    assert vi.transforms(mc.Bernoulli(probs=0.3)) == {"probs": "logit"}
    assert vi.transforms(mc.Categorical(logits=np.zeros(3))) == {"logits": "identity"}


@pytest.mark.parametrize("log_joint, q, kw, exc, match", [
    (lambda x: x.sum(), mc.Normal(0.0, 1.0), {}, ValueError, r"shape \(\) instead of \(10,\)"),
    (lambda x: np.full(len(x), np.nan), mc.Normal(0.0, 1.0), {}, ValueError, "must be finite"),
    (lambda x: np.zeros(len(x)), "normal", {}, TypeError, "q must be an mcscore"),
    ("not callable", mc.Normal(0.0, 1.0), {}, TypeError, "log_joint must be callable"),
    (lambda x: np.zeros(len(x)), mc.Normal(0.0, 1.0), {"baseline": "mean"}, ValueError,
     "baseline must be"),
])
def test_elbo_grad_errors(log_joint, q, kw, exc, match):
    with pytest.raises(exc, match=match):
        vi.elbo_grad(log_joint, q, 10, rng=0, **kw)


def test_fit_errors():
    q = mc.Normal(0.0, 1.0)
    f = lambda x: -0.5 * x[:, ] ** 2  # noqa: E731
    with pytest.raises(ValueError, match="lr must be > 0"):
        vi.fit(f, q, steps=5, lr=0.0, progress=False)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        vi.fit(f, q, steps=0, progress=False)
    with pytest.raises(ValueError, match="n must be >= 2"):
        vi.fit(f, q, steps=5, n=1, progress=False)
