"""Randomised quasi-Monte Carlo (sampler="sobol"): calibration of the error
bars against exact gradients, the families' inverse cdfs against scipy,
the gain over Monte Carlo, bit-identity across thread counts and the
errors."""
import math
import warnings

import numpy as np
import pytest
from scipy import special, stats

import mcscore as mc
from mcscore import distributions as D
from mcscore import QMCWarning
from mcscore.finance import _qmc as FQ
from mcscore.finance.closed_forms import black_scholes, geometric_asian_call

R_PRIME = 200
Z2_TOL = 5 * math.sqrt(2 / R_PRIME)


def _mean_z2(run, exact):
    z2 = []
    for seed in range(R_PRIME):
        res = run(seed)
        assert res.sampler == "sobol"
        for k, v in exact.items():
            z2.append(np.mean(((res.grad[k] - v) / res.stderr[k]) ** 2))
    return float(np.mean(z2))


# -- calibration: mean z^2 over R' = 200 repeats ---------------------------

def test_calibration_smooth():
    mu, s = np.array([0.3, -0.5]), np.array([1.0, 0.7])
    d = D.Normal(mu, s)

    def f(x):
        return np.exp(0.3 * x[:, 0]) + x[:, 1] ** 2

    # E = exp(0.3 mu0 + 0.045 s0^2) + mu1^2 + s1^2
    e0 = math.exp(0.3 * mu[0] + 0.045 * s[0] ** 2)
    exact = {"loc": np.array([0.3 * e0, 2 * mu[1]]),
             "scale": np.array([0.09 * s[0] * e0, 2 * s[1]])}
    z2 = _mean_z2(lambda seed: mc.score_grad(f, d, 32 * 32, rng=seed, sampler="sobol",
                                             baseline="loo"), exact)
    assert abs(z2 - 1) < Z2_TOL, z2


def test_calibration_digital():
    mu, s, c = 0.2, 1.3, 0.5
    d = D.Normal(np.array([mu, 0.0]), np.array([s, 1.0]))

    def f(x):
        return (x[:, 0] > c).astype(float)

    z = (mu - c) / s
    exact = {"loc": np.array([stats.norm.pdf(z) / s, 0.0]),
             "scale": np.array([-stats.norm.pdf(z) * (mu - c) / s**2, 0.0])}
    z2 = _mean_z2(lambda seed: mc.score_grad(f, d, 32 * 32, rng=seed, sampler="sobol"), exact)
    assert abs(z2 - 1) < Z2_TOL, z2


def test_calibration_discrete():
    """A discrete family needs a few hundred points per randomisation for
    the randomisations' estimates to be spread enough (see docs/design.md)."""
    lam = np.array([0.7, 3.0])
    d = D.Poisson(lam)

    def f(x):
        return x[:, 0] ** 2 + 0.5 * x[:, 1]

    exact = {"rate": np.array([1 + 2 * lam[0], 0.5])}
    z2 = _mean_z2(lambda seed: mc.score_grad(f, d, 32 * 256, rng=seed, sampler="sobol",
                                             baseline="loo"), exact)
    assert abs(z2 - 1) < Z2_TOL, z2


# -- inverse cdfs against scipy's ppf ------------------------------------------

U = np.array([1e-12, 1e-6, 0.01, 0.3, 0.5, 0.77, 0.99, 1 - 1e-9])

CONTINUOUS = [
    (D.Normal(1.0, 2.0), stats.norm(1, 2)),
    (D.LogNormal(0.5, 0.7), stats.lognorm(0.7, scale=math.exp(0.5))),
    (D.Exponential(2.0), stats.expon(scale=0.5)),
    (D.Gamma(0.7, 2.0), stats.gamma(0.7, scale=0.5)),
    (D.Beta(0.5, 2.0), stats.beta(0.5, 2.0)),
    (D.Laplace(1.0, 2.0), stats.laplace(1, 2)),
    (D.HalfNormal(2.0), stats.halfnorm(scale=2)),
    (D.Chi2(3.0), stats.chi2(3)),
    (D.InverseGamma(2.0, 3.0), stats.invgamma(2, scale=3)),
    (D.Gumbel(1.0, 2.0), stats.gumbel_r(1, 2)),
    (D.Weibull(2.0, 1.5), stats.weibull_min(1.5, scale=2)),
]
DISCRETE = [
    (D.Poisson(3.0), stats.poisson(3)),
    (D.Bernoulli(probs=0.3), stats.bernoulli(0.3)),
    (D.Binomial(10, probs=0.3), stats.binom(10, 0.3)),
    (D.Geometric(probs=0.3), stats.geom(0.3, loc=-1)),
    (D.NegativeBinomial(3.0, probs=0.4), stats.nbinom(3, 0.6)),
    (D.Categorical(probs=np.array([0.2, 0.5, 0.3])),
     stats.rv_discrete(values=([0, 1, 2], [0.2, 0.5, 0.3]))),
]


@pytest.mark.filterwarnings("ignore:Error in function boost")  # scipy's beta.ppf at 1e-12
@pytest.mark.parametrize("dist, ref", CONTINUOUS, ids=lambda v: type(v).__name__)
def test_icdf_continuous(dist, ref):
    x = dist.icdf(U)
    # the upper tail against scipy's isf(1 - u) (exact there); scipy's
    # halfnorm.ppf goes through (1 + u) / 2 and loses digits near 0, and its
    # beta.ppf gives up at 1e-12 for a = 0.5 (the exact quantile is
    # (u a B(a, b))^(1/a) = 4.44e-25 there, as icdf gives: checked below)
    want = np.where(U < 0.5, ref.ppf(U), ref.isf(1 - U))
    lo = {D.HalfNormal: 1e-6, D.Beta: 1e-10}.get(type(dist), 0)
    np.testing.assert_allclose(x[U > lo], want[U > lo], rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(dist.cdf(x), ref.cdf(x), rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(dist.cdf(dist.icdf(U)), U, rtol=1e-7, atol=1e-15)
    assert dist.has_icdf
    if isinstance(dist, D.Beta):
        assert x[0] == pytest.approx((U[0] * 0.5 * special.beta(0.5, 2.0)) ** 2, rel=1e-6)


@pytest.mark.parametrize("dist, ref", DISCRETE, ids=lambda v: type(v).__name__)
def test_icdf_discrete(dist, ref):
    np.testing.assert_array_equal(dist.icdf(U), ref.ppf(U))
    k = np.arange(-1.0, 12.0)
    np.testing.assert_allclose(dist.cdf(k), ref.cdf(k), rtol=1e-12, atol=1e-15)
    assert dist.has_icdf


def test_icdf_checks_its_argument():
    with pytest.raises(ValueError, match="value"):
        D.Normal(0.0, 1.0).icdf(1.5)


def test_icdf_broadcasts_against_the_batch():
    d = D.Normal(np.zeros(3), np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(d.icdf(np.full((4, 3), 0.975)),
                               np.tile(special.ndtri(0.975) * np.array([1.0, 2.0, 3.0]), (4, 1)))


# -- every family: the Sobol' estimate against an exact gradient -----------

def _families():
    out = []
    for d in [c[0] for c in CONTINUOUS + DISCRETE]:
        if getattr(d, "has_mean_tangents", False):
            out.append(d)
    return out


@pytest.mark.parametrize("dist", _families(), ids=lambda v: type(v).__name__)
def test_every_family_mean_gradient(dist):
    """grad E[x] = mean_tangents, estimated from inverse-cdf draws."""
    res = mc.score_grad(lambda x: np.asarray(x, float).reshape(len(x), -1).sum(1), dist,
                        32 * 1024, rng=3, sampler="sobol", baseline="loo")
    for name, t in dist.mean_tangents().items():
        z = (res.grad[name] - np.asarray(t).sum()) / res.stderr[name]
        assert abs(z) < 5, (name, res.grad[name], t, res.stderr[name])


def test_dirichlet_by_normalised_gamma_quantiles():
    a = np.array([0.8, 2.0, 1.5])
    d = D.Dirichlet(a)
    res = mc.score_grad(lambda x: x[:, 0], d, 32 * 1024, rng=1, sampler="sobol")
    s = a.sum()
    exact = np.array([1 / s - a[0] / s**2, -a[0] / s**2, -a[0] / s**2])
    assert np.all(np.abs(res.z_scores({"concentration": exact})["concentration"]) < 5)


def test_multinomial_by_conditional_binomials():
    p = np.array([0.2, 0.5, 0.3])
    N = 6
    d = D.Multinomial(N, logits=np.log(p))
    res = mc.score_grad(lambda x: x[:, 0] ** 2, d, 32 * 1024, rng=2, sampler="sobol")
    # E[x0^2] = N p0 (1 - p0) + N^2 p0^2; d p0 / d logit_j = p0 ([j = 0] - p_j)
    dE = N * (1 - 2 * p[0]) + 2 * N * N * p[0]
    exact = dE * p[0] * (np.eye(3)[0] - p)
    assert np.all(np.abs(res.z_scores({"logits": exact})["logits"]) < 5)
    x = d._qmc_draws(np.random.default_rng(0).random((100, d._qmc_dim())))
    assert np.all(x.sum(1) == N) and np.all(x >= 0)


# -- gain over Monte Carlo ---------------------------------------------------

def test_variance_reduction_vs_mc():
    """A smooth f in d = 3: the Sobol' error bar at the same total draws is
    far below Monte Carlo's (the variances compared per draw)."""
    d = D.Normal(np.array([0.2, -0.1, 0.4]), np.array([1.0, 0.8, 1.2]))

    def f(x):
        return np.sin(x[:, 0]) + x[:, 1] * x[:, 2] + 0.5 * x[:, 2] ** 2

    n = 32 * 2**13
    q = mc.score_grad(f, d, n, rng=0, sampler="sobol", baseline="loo")
    m = mc.score_grad(f, d, n, rng=0, baseline="loo")
    for k in q.grad:
        assert np.all(m.variance[k] / q.variance[k] > 20), (k, m.variance[k] / q.variance[k])


def test_pathwise_sobol():
    mu, s = np.array([0.3, -0.5]), np.array([1.0, 2.0])
    d = D.Normal(mu, s)
    res = mc.pathwise_grad(lambda x: (x**2).sum(1), d, 32 * 256, grad_f=lambda x: 2 * x,
                           rng=0, sampler="sobol")
    z = res.z_scores({"loc": 2 * mu, "scale": 2 * s})
    assert all(np.all(np.abs(v) < 5) for v in z.values())
    g = D.Gamma(np.array([0.7, 2.0]), np.array([1.5, 1.0]))
    res = mc.pathwise_grad(lambda x: x.sum(1), g, 32 * 1024, grad_f=np.ones_like, rng=0,
                           sampler="sobol")
    a, b = g.concentration, g.rate
    z = res.z_scores({"concentration": 1 / b, "rate": -a / b**2})
    assert all(np.all(np.abs(v) < 5) for v in z.values())


def test_pathwise_sobol_through_gammas():
    """Beta and Dirichlet: normalised Gamma quantiles and their implicit
    tangents, against closed forms."""
    c1, c0 = np.array([0.7, 2.0]), np.array([1.5, 3.0])

    def m2(a, b):  # E[x^2] of Beta(a, b)
        return a * (a + 1) / ((a + b) * (a + b + 1))

    h = 1e-6
    exact = {"concentration1": (m2(c1 + h, c0) - m2(c1 - h, c0)) / (2 * h),
             "concentration0": (m2(c1, c0 + h) - m2(c1, c0 - h)) / (2 * h)}
    res = mc.pathwise_grad(lambda x: (x**2).sum(1), D.Beta(c1, c0), 32 * 1024,
                           grad_f=lambda x: 2 * x, rng=0, sampler="sobol")
    assert all(np.all(np.abs(v) < 5) for v in res.z_scores(exact).values())
    al = np.array([[0.8, 2.0, 1.5], [1.2, 0.5, 3.0]])
    s = al.sum(-1, keepdims=True)
    exact = np.eye(3)[0] / s - al[:, :1] / s**2  # d E[x_0] / d alpha, per unit
    e0 = np.eye(3)[0]
    res = mc.pathwise_grad(lambda x: x[:, :, 0].sum(1), D.Dirichlet(al), 32 * 1024,
                           grad_f=lambda x: np.broadcast_to(e0, x.shape).copy(), rng=0,
                           sampler="sobol")
    assert np.all(np.abs(res.z_scores({"concentration": exact})["concentration"]) < 5)


@pytest.mark.parametrize("kw", [dict(baseline="optimal"), dict(antithetic=True),
                                dict(control_variates=["delta"], grad_f=lambda x: 2 * x)])
def test_variance_reduction_options(kw):
    mu, s = np.array([0.3, -0.5]), np.array([1.0, 2.0])
    d = D.Normal(mu, s)
    res = mc.score_grad(lambda x: (x**2).sum(1), d, 32 * 512, rng=4, sampler="sobol", **kw)
    z = res.z_scores({"loc": 2 * mu, "scale": 2 * s})
    assert all(np.all(np.abs(v) < 5) for v in z.values())


def test_vi_sobol():
    y = np.array([0.8, 1.3, 0.4])

    def log_joint(x):
        return -0.5 * x[:, 0] ** 2 - 0.5 * ((y[None, :] - x[:, :1]) ** 2).sum(1)

    q = D.Normal(np.array([0.1]), np.array([0.9]))
    res = mc.vi.elbo_grad(log_joint, q, 32 * 256, rng=0, sampler="sobol")
    # ELBO = E[log p] + entropy: d/dm = sum(y) - 4 m, d/ds = -4 s + 1 / s
    exact = {"loc": np.array([y.sum() - 4 * 0.1]), "scale": np.array([-4 * 0.9 + 1 / 0.9])}
    assert all(np.all(np.abs(v) < 5) for v in res.z_scores(exact).values())
    assert res.sampler == "sobol" and res.n_randomizations == 32
    fit = mc.vi.fit(log_joint, q, steps=200, n=32 * 8, lr=0.05, rng=0, progress=False,
                    sampler="sobol")
    assert abs(float(fit.q.loc[0]) - y.sum() / 4) < 0.02
    assert abs(float(fit.q.scale[0]) - 0.5) < 0.02


# -- finance -------------------------------------------------------------------

BS = dict(spot=100.0, strike=100.0, rate=0.05, vol=0.2, maturity=1.0)


@pytest.mark.parametrize("payoff, method", [("call", "lr"), ("call", "pathwise"), ("put", "lr"),
                                             ("put", "pathwise"), ("digital_call", "lr")])
def test_greeks_sobol_black_scholes(payoff, method):
    g = mc.finance.greeks(payoff, n=32 * 1024, rng=0, sampler="sobol", method=method, **BS)
    ex = black_scholes(payoff, **BS)
    z = g.z_scores({k: ex[k] for k in ("price", "delta", "vega", "rho", "gamma")})
    assert all(abs(v) < 5 for v in z.values()), z
    assert g.sampler == "sobol" and g.n_randomizations == 32
    assert mc.finance.greeks(payoff, n=64, rng=0, **BS).sampler == "mc"


@pytest.mark.parametrize("method", ["lr", "pathwise"])
def test_greeks_sobol_geometric_asian_bridge(method):
    """A 12-date geometric Asian call (path-dependent, by the bridge)
    against the closed form, its Greeks by central differences of it."""
    steps = 12

    def price(**kw):
        return geometric_asian_call(**{**BS, **kw}, steps=steps)

    h = 1e-4
    exact = {"price": price(),
             "delta": (price(spot=100 + h) - price(spot=100 - h)) / (2 * h),
             "vega": (price(vol=0.2 + h) - price(vol=0.2 - h)) / (2 * h),
             "rho": (price(rate=0.05 + h) - price(rate=0.05 - h)) / (2 * h)}
    g = mc.finance.greeks("geometric_asian_call", n=32 * 2048, steps=steps, rng=0,
                          sampler="sobol", method=method, **BS)
    z = g.z_scores(exact)
    assert all(abs(v) < 5 for v in z.values()), z
    m = mc.finance.greeks("geometric_asian_call", n=32 * 2048, steps=steps, rng=0,
                          method=method, **BS)
    assert g.stderr["price"] ** 2 * 20 < m.stderr["price"] ** 2


def _asian(p):
    return np.maximum(p[:, 1:, 0].mean(1) - 100.0, 0.0)


def _asian_grad(p):
    g = np.zeros_like(p)
    g[:, 1:, 0] = (p[:, 1:, 0].mean(1) > 100.0)[:, None] / (p.shape[1] - 1)
    return g


@pytest.mark.parametrize("method", ["lr", "pathwise"])
def test_greeks_sobol_payoff_function_matches_builtin(method):
    """A payoff of paths on one asset takes the same Sobol' points and the
    same bridge as the built-in kernel: the same Greeks up to rounding."""
    kw = {k: v for k, v in BS.items() if k != "strike"}
    f = mc.finance.greeks(_asian, n=32 * 256, steps=12, rng=0, sampler="sobol", method=method,
                          payoff_grad=_asian_grad, **kw)
    b = mc.finance.greeks("asian_call", n=32 * 256, steps=12, rng=0, sampler="sobol",
                          method=method, **BS)
    for k in ("price", "delta", "vega", "rho", "gamma"):
        assert getattr(f, k) == pytest.approx(getattr(b, k), rel=1e-9, abs=1e-12)
        assert f.stderr[k] == pytest.approx(b.stderr[k], rel=1e-6, abs=1e-12)
    assert f.sampler == "sobol" and np.isfinite(f.theta)


@pytest.mark.parametrize("method", ["lr", "pathwise"])
def test_greeks_sobol_basket_against_mc(method):
    """Two correlated assets with dividends: every Greek (theta and the
    cross-gamma included) agrees with the Monte Carlo path engine."""
    kw = dict(spot=[100.0, 95.0], vol=[0.2, 0.3], dividend=[0.01, 0.0], rate=0.03,
              correlation=[[1.0, 0.4], [0.4, 1.0]], maturity=1.0, steps=4, method=method)
    bc = mc.finance.basket_call(100.0, [0.5, 0.5])
    q = mc.finance.greeks(bc, n=32 * 1024, rng=1, sampler="sobol", **kw)
    m = mc.finance.greeks(bc, n=2**18, rng=1, **kw)
    for k in q.stderr:
        z = (np.asarray(getattr(q, k)) - np.asarray(getattr(m, k))) / np.hypot(q.stderr[k],
                                                                               m.stderr[k])
        assert np.all(np.abs(z) < 5), (k, z)


def test_brownian_bridge_covariance():
    """The bridge is a linear map of the normals whose covariance is
    min(s, t): the law of Brownian motion at the dates."""
    for steps in (1, 5, 12, 16):
        dt = 0.25
        B = FQ.bridge(np.eye(steps), dt, FQ.bridge_order(steps))[:, 1:]  # row j: normal j
        t = dt * np.arange(1, steps + 1)
        np.testing.assert_allclose(B.T @ B, np.minimum.outer(t, t), atol=1e-12)
        assert sorted(k for k, _, _ in FQ.bridge_order(steps)) == list(range(1, steps + 1))
    assert FQ.bridge_order(8)[:3] == [(8, 0, None), (4, 0, 8), (2, 0, 4)]


# -- reproducibility ------------------------------------------------------------

def _same(a, b):
    for k in a.grad:
        np.testing.assert_array_equal(a.grad[k], b.grad[k])
        np.testing.assert_array_equal(a.stderr[k], b.stderr[k])


def test_bit_identical_for_any_thread_count():
    d = D.Normal(np.array([0.2, -0.1]), np.array([1.0, 0.8]))
    kw = dict(rng=7, sampler="sobol", baseline="optimal")
    runs = [mc.score_grad(lambda x: np.cos(x).sum(1), d, 32 * 128, n_threads=t, **kw)
            for t in (1, 2, 3, None)]
    for r in runs[1:]:
        _same(runs[0], r)
    fused = [mc.score_grad(mc.integrands.sum_of_squares(), d, 32 * 128, n_threads=t, **kw)
             for t in (1, 2, 3)]
    assert fused[1].info["threads"] == 2
    for r in fused[1:]:
        _same(fused[0], r)
    p = [mc.pathwise_grad(lambda x: np.cos(x).sum(1), d, 32 * 128, grad_f=lambda x: -np.sin(x),
                          rng=1, sampler="sobol", n_threads=t) for t in (1, 2)]
    _same(*p)
    g = [mc.finance.greeks("asian_call", n=32 * 128, steps=12, rng=2, sampler="sobol",
                           n_threads=t, **BS) for t in (1, 2)]
    assert g[0].as_dict() == g[1].as_dict() and g[0].stderr == g[1].stderr
    # an int seed and a SeedSequence of it agree; another seed differs
    _same(runs[0], mc.score_grad(lambda x: np.cos(x).sum(1), d, 32 * 128,
                                 **{**kw, "rng": np.random.SeedSequence(7)}))
    other = mc.score_grad(lambda x: np.cos(x).sum(1), d, 32 * 128, **{**kw, "rng": 8})
    assert not np.array_equal(other.grad["loc"], runs[0].grad["loc"])


def test_generator_rng_is_advanced():
    d = D.Normal(0.0, 1.0)
    gen = np.random.default_rng(0)
    a = mc.score_grad(lambda x: x**2, d, 32 * 16, rng=gen, sampler="sobol")
    b = mc.score_grad(lambda x: x**2, d, 32 * 16, rng=gen, sampler="sobol")
    assert a.grad["loc"] != b.grad["loc"]


def test_dask_bit_identical():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=False, threads_per_worker=1,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        d = D.Normal(np.array([0.2, -0.1]), np.array([1.0, 0.8]))
        kw = dict(rng=5, sampler="sobol", baseline="loo")
        _same(mc.score_grad(mc.integrands.sum_of_squares(), d, 32 * 64, **kw),
              mc.score_grad(mc.integrands.sum_of_squares(), d, 32 * 64, client=client, **kw))
        a = mc.finance.greeks("call", n=32 * 64, rng=3, sampler="sobol", **BS)
        b = mc.finance.greeks("call", n=32 * 64, rng=3, sampler="sobol", client=client, **BS)
        assert a.as_dict() == b.as_dict()


# -- n, the result, the errors --------------------------------------------------

def test_result_says_rqmc_and_n_is_total():
    res = mc.score_grad(lambda x: x**2, D.Normal(0.0, 1.0), 8 * 32, rng=0, sampler="sobol",
                        n_randomizations=8)
    assert res.sampler == "sobol" and res.n_randomizations == 8 and res.n == 256
    assert res.info["points_per_randomization"] == 32
    plain = mc.score_grad(lambda x: x**2, D.Normal(0.0, 1.0), 256, rng=0)
    assert plain.sampler == "mc" and plain.n_randomizations is None


def test_warns_when_not_a_power_of_two():
    with pytest.warns(QMCWarning, match="power of two"):
        res = mc.score_grad(lambda x: x**2, D.Normal(0.0, 1.0), 1000, rng=0, sampler="sobol")
    assert res.n == 32 * 31
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mc.score_grad(lambda x: x**2, D.Normal(0.0, 1.0), 1024, rng=0, sampler="sobol")


def test_errors():
    d = D.Normal(0.0, 1.0)
    f = lambda x: x**2  # noqa: E731
    with pytest.raises(ValueError, match="sampler must be 'mc' or 'sobol'"):
        mc.score_grad(f, d, 64, sampler="halton")
    with pytest.raises(ValueError, match="n_randomizations applies only"):
        mc.score_grad(f, d, 64, n_randomizations=8)
    with pytest.raises(ValueError, match="n_randomizations must"):
        mc.score_grad(f, d, 64, sampler="sobol", n_randomizations=1)
    with pytest.raises(ValueError, match="need n >= 64"):
        mc.score_grad(f, d, 40, sampler="sobol")
    with pytest.raises(ValueError, match="antithetic=True needs"):
        mc.score_grad(f, D.Exponential(1.0), 64, sampler="sobol", antithetic=True)
    with pytest.raises(ValueError, match="n_randomizations >= 5"):
        mc.score_grad(f, d, 64, sampler="sobol", n_randomizations=4,
                      control_variates=["delta"], grad_f=lambda x: 2 * x, baseline="optimal")
    with pytest.raises(ValueError, match="geometric Brownian motions"):
        mc.finance.greeks(lambda p: p[:, -1, 0], n=64, sampler="sobol", spot=100.0, rate=0.0,
                          maturity=1.0, model=mc.finance.Heston(v0=0.04, kappa=1.0, theta=0.04,
                                                                xi=0.3, rho=-0.5))
    with pytest.raises(ValueError, match="needs the payoff's derivative"):
        mc.finance.greeks(lambda p: p[:, -1, 0], n=64, sampler="sobol", method="pathwise",
                          spot=100.0, vol=0.2, rate=0.0, maturity=1.0)
    with pytest.raises(ValueError, match="sampler must"):
        mc.vi.elbo_grad(f, d, 64, sampler="qmc")


def test_family_without_inverse_is_a_clear_error():
    class NoInverse(D.Normal):
        icdf = D.Distribution.icdf

    d = NoInverse(0.0, 1.0)
    assert not d.has_icdf
    with pytest.raises(ValueError, match="NoInverse has no inverse cdf"):
        mc.score_grad(lambda x: x**2, d, 64, sampler="sobol")
    with pytest.raises(NotImplementedError, match="no inverse cdf"):
        d.icdf(0.5)


def test_lowlevelcallable_is_refused():
    ctypes = pytest.importorskip("ctypes")
    from scipy import LowLevelCallable

    lib = ctypes.CDLL(None)
    fn = ctypes.cast(lib.abs, ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_int,
                                                ctypes.POINTER(ctypes.c_double)))
    llc = LowLevelCallable(fn, signature="double (int, double *)")
    with pytest.raises(TypeError, match="LowLevelCallable"):
        mc.score_grad(llc, D.Normal(0.0, 1.0), 64, sampler="sobol")


def test_categorical_icdf_per_unit_tables():
    p = np.array([[0.1, 0.6, 0.3], [0.5, 0.25, 0.25]])
    d = D.Categorical(probs=p)
    u = np.random.default_rng(0).random((50, 2))
    k = d.icdf(u)
    for i in range(2):
        ref = stats.rv_discrete(values=([0, 1, 2], p[i]))
        np.testing.assert_array_equal(k[:, i], ref.ppf(u[:, i]))


def test_n_threads_is_checked():
    with pytest.raises(ValueError, match="n_threads"):
        mc.score_grad(lambda x: x**2, D.Normal(0.0, 1.0), 64, sampler="sobol", n_threads=0)


def test_no_scipy_balance_warning_across_chunks():
    """Several chunks per randomisation (scipy warns at 3 * 2**k points
    drawn): no warning reaches the caller."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mc.score_grad(lambda x: x**2, D.Normal(0.0, 1.0), 2 * 2**19, rng=0, sampler="sobol",
                      n_randomizations=2)


def test_has_icdf_is_a_class_flag():
    assert D.Normal.has_icdf is True and D.Dirichlet.has_icdf is True
    assert D.Distribution.has_icdf is False
    for name in ("Normal", "LogNormal", "Exponential", "Gamma", "Beta", "Poisson", "Bernoulli",
                 "Binomial", "Geometric", "NegativeBinomial", "Categorical", "Multinomial",
                 "Dirichlet", "Laplace", "HalfNormal", "Chi2", "InverseGamma", "Gumbel",
                 "Weibull"):
        assert getattr(D, name).has_icdf, name


def test_sobol_covariance_is_the_randomisations_sample_covariance():
    q = mc.Normal(np.array([0.3, -0.2]), np.array([1.0, 1.5]))
    res = mc.score_grad(lambda x: (x ** 2).sum(-1), q, 32 * 256, rng=4, sampler="sobol")
    C = res.cov
    np.testing.assert_allclose(np.sqrt(np.diag(C)), np.concatenate(
        [res.stderr["loc"], res.stderr["scale"]]), rtol=1e-12)
    lin = res.linear({"loc": np.ones(2)})
    np.testing.assert_allclose(lin.stderr, np.sqrt(C[:2, :2].sum()), rtol=1e-12)
