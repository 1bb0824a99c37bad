"""Issue 13's families: Uniform, StudentT, Cauchy, HalfCauchy, VonMises and
OneHotCategorical.  Densities and scores against scipy.stats (finite
differences) and torch's autograd over random valid parameters, draws by KS
tests, gradient estimates of every estimator and baseline a family supports
against exact gradients (quadrature, exact sums), calibration of the
standard errors, thread bit-identity, Uniform's boundary term, and the
errors."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import integrate, special, stats

import mcscore as mc
from mcscore import integrands as I
from mcscore.distributions._bounded import bessel_ratio

from _exact import assert_same_estimate

# ---------------------------------------------------------------------------
# the continuous families: constructor, scipy reference, random parameters
# ---------------------------------------------------------------------------

pos = st.floats(0.3, 5.0)
real = st.floats(-3.0, 3.0)

CONT = {
    "Uniform": dict(
        make=lambda p: mc.Uniform(p["low"], p["high"]),
        ref=lambda p: stats.uniform(p["low"], p["high"] - p["low"]),
        params=st.tuples(real, pos).map(lambda t: {"low": t[0], "high": t[0] + t[1]}),
        torch=lambda td, p: td.Uniform(p["low"], p["high"])),
    "StudentT": dict(
        make=lambda p: mc.StudentT(p["df"], p["loc"], p["scale"]),
        ref=lambda p: stats.t(p["df"], p["loc"], p["scale"]),
        params=st.tuples(st.floats(0.5, 30.0), real, pos).map(
            lambda t: {"df": t[0], "loc": t[1], "scale": t[2]}),
        torch=lambda td, p: td.StudentT(p["df"], p["loc"], p["scale"])),
    "Cauchy": dict(
        make=lambda p: mc.Cauchy(p["loc"], p["scale"]),
        ref=lambda p: stats.cauchy(p["loc"], p["scale"]),
        params=st.tuples(real, pos).map(lambda t: {"loc": t[0], "scale": t[1]}),
        torch=lambda td, p: td.Cauchy(p["loc"], p["scale"])),
    "HalfCauchy": dict(
        make=lambda p: mc.HalfCauchy(p["scale"]),
        ref=lambda p: stats.halfcauchy(0.0, p["scale"]),
        params=pos.map(lambda s: {"scale": s}),
        torch=lambda td, p: td.HalfCauchy(p["scale"])),
    "VonMises": dict(
        make=lambda p: mc.VonMises(p["loc"], p["concentration"]),
        ref=lambda p: stats.vonmises(p["concentration"], p["loc"]),
        params=st.tuples(real, st.floats(0.05, 40.0)).map(
            lambda t: {"loc": t[0], "concentration": t[1]}),
        torch=lambda td, p: td.VonMises(p["loc"], p["concentration"])),
}

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def _fd_scores(name, p, x, rel=1e-6):
    """Central differences of scipy's log density in each parameter."""
    out = {}
    for k, v in p.items():
        h = rel * max(1.0, abs(v))
        up, dn = dict(p), dict(p)
        up[k], dn[k] = v + h, v - h
        out[k] = (CONT[name]["ref"](up).logpdf(x) - CONT[name]["ref"](dn).logpdf(x)) / (2 * h)
    return out


def _interior(name, p, x):
    """Draws away from Uniform's bounds (where the differences stay inside)."""
    if name != "Uniform":
        return x
    w = p["high"] - p["low"]
    return x[(x > p["low"] + 1e-3 * w) & (x < p["high"] - 1e-3 * w)]


@pytest.mark.parametrize("name", list(CONT))
def test_log_prob_and_score_equal_scipy(name):
    @SETTINGS
    @given(CONT[name]["params"], st.integers(0, 2**31))
    def check(p, seed):
        d = CONT[name]["make"](p)
        x = _interior(name, p, d.sample(40, rng=seed))
        np.testing.assert_allclose(d.log_prob(x), CONT[name]["ref"](p).logpdf(x),
                                   rtol=1e-10, atol=1e-10)
        s = d.score(x)
        fd = _fd_scores(name, p, x)
        for k in p:
            np.testing.assert_allclose(s[k], fd[k], rtol=1e-5, atol=1e-6 * (1 + abs(p[k])),
                                       err_msg=k)

    check()


@pytest.mark.parametrize("name", list(CONT))
def test_score_equals_torch_autograd(name):
    torch = pytest.importorskip("torch")
    td = torch.distributions

    @SETTINGS
    @given(CONT[name]["params"], st.integers(0, 2**31))
    def check(p, seed):
        d = CONT[name]["make"](p)
        x = d.sample(8, rng=seed)
        s = d.score(x)
        for i in range(len(x)):
            tp = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True)
                  for k, v in p.items()}
            lp = CONT[name]["torch"](td, tp).log_prob(torch.tensor(x[i], dtype=torch.float64))
            lp.backward()
            for k, t in tp.items():
                # torch's VonMises normaliser is a polynomial fit of log I0
                # (about 1e-8 relative); every other score is exact
                tol = 1e-6 if (name, k) == ("VonMises", "concentration") else 1e-9
                assert abs(t.grad.item() - s[k][i]) <= tol * (1 + abs(s[k][i])), (k, i)

    check()


def test_one_hot_categorical_log_prob_and_scores():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    for _ in range(10):
        v = rng.uniform(0.1, 2.0, (2, 4))
        lg = rng.normal(size=(2, 4))
        for kw in ({"probs": v}, {"logits": lg}):
            d = mc.OneHotCategorical(**kw)
            x = d.sample(30, rng=int(rng.integers(1 << 30)))
            assert x.shape == (30, 2, 4) and ((x.sum(-1) == 1).all())
            p = v / v.sum(-1, keepdims=True) if "probs" in kw else special.softmax(lg, -1)
            np.testing.assert_allclose(
                d.log_prob(x), np.stack([stats.multinomial(1, p[b]).logpmf(x[:, b])
                                         for b in range(2)], 1), rtol=1e-12)
            (name, val), = kw.items()
            s = d.score(x)[name]
            for i in range(5):
                t = torch.tensor(val, requires_grad=True)
                td = torch.distributions.OneHotCategorical(**{name: t})
                td.log_prob(torch.tensor(x[i])).sum().backward()
                np.testing.assert_allclose(t.grad.numpy(), s[i], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(CONT))
def test_draws_pass_a_ks_test(name):
    examples = {"Uniform": {"low": -1.0, "high": 2.5},
                "StudentT": {"df": 2.5, "loc": 1.0, "scale": 2.0},
                "Cauchy": {"loc": -0.5, "scale": 3.0},
                "HalfCauchy": {"scale": 1.5},
                "VonMises": {"loc": 0.0, "concentration": 2.0}}
    p = examples[name]
    x = CONT[name]["make"](p).sample(50_000, rng=11)
    assert stats.kstest(x, CONT[name]["ref"](p).cdf).pvalue > 1e-3


@pytest.mark.parametrize("kappa", [0.0, 1e-9, 1e-4, 0.5, 3.0, 80.0, 5e6])
@pytest.mark.parametrize("loc", [0.4, -3.0, 7.0])
def test_von_mises_draws_on_the_circle(kappa, loc):
    x = mc.VonMises(loc, kappa).sample(40_000, rng=3)
    assert ((x >= -math.pi) & (x < math.pi)).all()
    y = np.mod(x - loc + math.pi, 2 * math.pi) - math.pi  # the angle about loc
    ref = stats.uniform(-math.pi, 2 * math.pi) if kappa == 0 else stats.vonmises(kappa)
    assert stats.kstest(y, ref.cdf).pvalue > 1e-3


def test_von_mises_bessel_ratio_is_accurate_for_small_and_large_concentration():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    for k in [1e-300, 1e-12, 1e-4, 0.3, 1.0, 30.0, 700.0, 1e5, 1e12, 1e200]:
        exact = mpmath.besseli(1, k) / mpmath.besseli(0, k)
        assert abs(bessel_ratio(k) - float(exact)) <= 4e-16 * float(exact)
        # the normaliser at large kappa (I0 itself overflows beyond ~700)
        d = mc.VonMises(0.0, k)
        lp0 = float(d.log_prob(np.array([0.0]))[0])
        exact_lp = -float(mpmath.log(2 * mpmath.pi * mpmath.besseli(0, k) * mpmath.exp(-k)))
        assert abs(lp0 - exact_lp) <= 1e-12 * max(1.0, abs(exact_lp))


def test_moments_and_entropy_equal_scipy():
    for name, p in [("Uniform", {"low": -1.0, "high": 2.5}),
                    ("StudentT", {"df": 4.5, "loc": 1.0, "scale": 2.0}),
                    ("HalfCauchy", {"scale": 1.5}),
                    ("Cauchy", {"loc": 0.3, "scale": 2.0}),
                    ("VonMises", {"loc": 0.2, "concentration": 2.0})]:
        d, ref = CONT[name]["make"](p), CONT[name]["ref"](p)
        np.testing.assert_allclose(d.entropy(), ref.entropy(), rtol=1e-10)
        if name in ("Uniform", "StudentT"):
            np.testing.assert_allclose(d.mean, ref.mean(), rtol=1e-12)
            np.testing.assert_allclose(d.variance, ref.var(), rtol=1e-12)
            np.testing.assert_allclose(d.stddev, ref.std(), rtol=1e-12)
    # no mean, infinite variance (as torch)
    assert np.isnan(mc.Cauchy(0.0, 1.0).mean) and np.isinf(mc.Cauchy(0.0, 1.0).variance)
    assert np.isinf(mc.HalfCauchy(1.0).mean)
    t = mc.StudentT([0.8, 1.5, 3.0], 0.0, 1.0)
    assert np.isnan(t.mean[0]) and t.mean[1] == 0.0
    assert np.isnan(t.variance[0]) and np.isinf(t.variance[1]) and t.variance[2] == 3.0
    # VonMises: the circular variance 1 - I1/I0, checked on draws
    d = mc.VonMises(0.0, 2.0)
    x = d.sample(200_000, rng=2)
    assert abs((1 - np.cos(x).mean()) - d.variance) < 5 * np.cos(x).std() / math.sqrt(len(x))
    oh = mc.OneHotCategorical(probs=[0.2, 0.3, 0.5])
    np.testing.assert_allclose(oh.entropy(), stats.multinomial(1, [0.2, 0.3, 0.5]).entropy())
    np.testing.assert_allclose(oh.mean, [0.2, 0.3, 0.5])
    np.testing.assert_allclose(oh.variance, [0.16, 0.21, 0.25])


# ---------------------------------------------------------------------------
# gradient estimates against exact gradients
# ---------------------------------------------------------------------------

def _g(x):
    return np.sin(x) + 0.5 * np.cos(x)


def _dg(x):
    return np.cos(x) - 0.5 * np.sin(x)


def _gu(x):  # Uniform's f per coordinate
    return x * x + np.sin(x)


def _dgu(x):
    return 2 * x + np.cos(x)


CASES = {
    "Uniform": (lambda p: mc.Uniform(p["low"], p["high"]),
                {"low": np.array([-0.5, 1.0]), "high": np.array([2.0, 1.5])}, _gu, _dgu),
    "StudentT": (lambda p: mc.StudentT(p["df"], p["loc"], p["scale"]),
                 {"df": np.array([3.0, 8.0]), "loc": np.array([0.5, -1.0]),
                  "scale": np.array([1.0, 2.0])}, _g, _dg),
    "Cauchy": (lambda p: mc.Cauchy(p["loc"], p["scale"]),
               {"loc": np.array([0.5, -1.0]), "scale": np.array([1.0, 0.6])}, _g, _dg),
    "HalfCauchy": (lambda p: mc.HalfCauchy(p["scale"]), {"scale": np.array([0.7, 2.0])}, _g,
                   _dg),
    "VonMises": (lambda p: mc.VonMises(p["loc"], p["concentration"]),
                 {"loc": np.array([0.5, -2.5]), "concentration": np.array([1.5, 0.3])}, _g,
                 _dg),
}


def _ref_1d(name, p):
    """The scipy distribution of coordinate j's parameters p (scalars)."""
    return CONT[name]["ref"](p)


def _char_fn_at_one(name, pj):
    """E[exp(i x)] of one coordinate in closed form, where the family has one
    (Cauchy, StudentT through the modified Bessel function K, VonMises
    through I1 / I0); None otherwise."""
    if name == "Cauchy":
        return np.exp(1j * pj["loc"] - pj["scale"])
    if name == "StudentT":
        nu, s = pj["df"], math.sqrt(pj["df"]) * pj["scale"]
        phi = s ** (nu / 2) * special.kv(nu / 2, s) / (special.gamma(nu / 2) * 2 ** (nu / 2 - 1))
        return np.exp(1j * pj["loc"]) * phi
    if name == "VonMises":
        k = pj["concentration"]
        return np.exp(1j * pj["loc"]) * special.ive(1, k) / special.ive(0, k)
    return None


def _expectation(name, p, g):
    """E[sum_j g(x_j)] coordinate by coordinate: for g = sin + cos / 2 from the
    characteristic function where it has a closed form, otherwise by
    quadrature of scipy's density."""
    n = len(next(iter(p.values())))
    tot = 0.0
    for j in range(n):
        pj = {k: float(v[j]) for k, v in p.items()}
        cf = _char_fn_at_one(name, pj) if g is _g else None
        if cf is not None:
            tot += cf.imag + 0.5 * cf.real
            continue
        ref = _ref_1d(name, pj)
        if name == "VonMises":
            lo, hi = -math.pi, math.pi
        else:
            lo, hi = ref.support()
        tot += integrate.quad(lambda x: g(x) * ref.pdf(x), lo, hi, epsabs=1e-12, epsrel=1e-12,
                              limit=400)[0]
    return tot


def _exact(name):
    """(E[f], {param: d E[f] / d param}) by central differences of quadratures."""
    _, p, g, _ = CASES[name]
    out = {}
    for k, v in p.items():
        gk = np.empty_like(v)
        for j in range(v.size):
            h = 1e-5 * max(1.0, abs(v[j]))
            up = {a: b.copy() for a, b in p.items()}
            dn = {a: b.copy() for a, b in p.items()}
            up[k][j] += h
            dn[k][j] -= h
            gk[j] = (_expectation(name, up, g) - _expectation(name, dn, g)) / (2 * h)
        out[k] = gk
    return _expectation(name, p, g), out


_EXACT = {}


def _exact_cached(name):
    if name not in _EXACT:
        _EXACT[name] = _exact(name)
    return _EXACT[name]


def _f(name):
    g = CASES[name][2]
    return lambda x: g(x).sum(1)


def _grad_f(name):
    dg = CASES[name][3]
    return lambda x: dg(x)


def _dist(name):
    make, p, _, _ = CASES[name]
    return make(p)


def _check(name, res, nse=5.0):
    value, grad = _exact_cached(name)
    for k in grad:
        assert np.all(res.stderr[k] > 0), k
        z = (res.grad[k] - grad[k]) / res.stderr[k]
        assert np.all(np.abs(z) < nse), (k, res.grad[k], grad[k], res.stderr[k])
    assert abs(res.value - value) < nse * res.value_stderr + 1e-12


N = 40_000


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("baseline", [None, 0.7, "loo", "optimal"])
def test_score_grad_every_baseline_within_5_se(name, baseline):
    _check(name, mc.score_grad(_f(name), _dist(name), N, rng=7, baseline=baseline))


@pytest.mark.parametrize("name", [k for k in CASES if k != "Uniform"])
@pytest.mark.parametrize("baseline", [None, "optimal"])
def test_fused_integrand_within_5_se(name, baseline):
    fused = I.sin(1.0) + I.cos(0.5)
    _check(name, mc.score_grad(fused, _dist(name), N, rng=8, baseline=baseline))


@pytest.mark.parametrize("name", [k for k in CASES if CASES[k][0](CASES[k][1]).has_mirror])
@pytest.mark.parametrize("baseline", [None, "optimal"])
def test_antithetic_within_5_se(name, baseline):
    _check(name, mc.score_grad(_f(name), _dist(name), N, rng=9, antithetic=True,
                               baseline=baseline))


@pytest.mark.parametrize("name", [k for k in CASES if k != "Uniform"])
def test_rloo_within_5_se(name):
    _check(name, mc.rloo_grad(_f(name), _dist(name), N // 4, k=4, rng=10))


@pytest.mark.parametrize("name", [k for k in CASES if k != "Uniform"])
@pytest.mark.parametrize("baseline", [None, "loo", "optimal"])
def test_score_grad_from_samples_within_5_se(name, baseline):
    d = _dist(name)
    x = d.sample(N, rng=12)
    _check(name, mc.score_grad_from_samples(d, x, _f(name)(x), baseline=baseline))


@pytest.mark.parametrize("name", ["Uniform", "Cauchy", "HalfCauchy"])
def test_pathwise_within_5_se(name):
    _check(name, mc.pathwise_grad(_f(name), _dist(name), N, rng=13, grad_f=_grad_f(name)))


OLD_PATHWISE = {
    "Chi2": (lambda p: mc.Chi2(*p), lambda p: stats.chi2(p[0]), [2.5], ["df"]),
    "InverseGamma": (lambda p: mc.InverseGamma(*p), lambda p: stats.invgamma(p[0], scale=p[1]),
                     [3.5, 2.0], ["concentration", "rate"]),
    "Weibull": (lambda p: mc.Weibull(*p), lambda p: stats.weibull_min(p[1], scale=p[0]),
                [1.5, 2.2], ["scale", "concentration"]),
}


@pytest.mark.parametrize("name", list(OLD_PATHWISE))
def test_pathwise_of_chi2_inverse_gamma_weibull_within_5_se(name):
    """The reparameterisations added to the earlier families (implicit
    Gamma derivatives for Chi2 and InverseGamma, the closed form for
    Weibull) against central differences of quadratures."""
    make, ref, p, names = OLD_PATHWISE[name]

    def expect(q):
        r = ref(q)
        return integrate.quad(lambda x: _g(x) * r.pdf(x), 0, r.ppf(1 - 1e-13), limit=500,
                              epsabs=1e-13, epsrel=1e-12)[0]

    res = mc.pathwise_grad(_g, make(p), 100_000, rng=21, grad_f=_dg)
    for i, k in enumerate(names):
        up, dn = list(p), list(p)
        up[i] += 1e-5
        dn[i] -= 1e-5
        exact = (expect(up) - expect(dn)) / 2e-5
        assert abs(res.grad[k] - exact) < 5 * res.stderr[k], (k, res.grad[k], exact)
        assert res.stderr[k] > 0


def test_one_hot_categorical_estimators_within_5_se():
    w = np.array([1.0, -2.0, 0.5, 3.0])

    def f(x):
        y = x @ w
        return y + 0.5 * y * y

    fk = w + 0.5 * w * w  # f at each one-hot vector
    for kw in ({"logits": np.array([0.3, -1.0, 0.5, 0.1])},
               {"probs": np.array([0.2, 0.1, 0.4, 0.6])}):
        d = mc.OneHotCategorical(**kw)
        p = d.probs
        value = p @ fk
        (name, v), = kw.items()
        grad = p * (fk - value) if name == "logits" else (fk - value) / v.sum()
        fused = I.linear(w) + I.quadratic(0.5 * np.outer(w, w))
        runs = [mc.score_grad(f, d, N, rng=1, baseline=b) for b in (None, 0.5, "loo", "optimal")]
        runs.append(mc.score_grad(fused, d, N, rng=2, baseline="optimal"))
        runs.append(mc.rloo_grad(f, d, N // 4, rng=3))
        x = d.sample(N, rng=4)
        runs.append(mc.score_grad_from_samples(d, x, f(x), baseline="optimal"))
        for r in runs:
            z = (r.grad[name] - grad) / r.stderr[name]
            assert np.all(np.abs(z) < 5), (r.method, r.grad[name], grad)


@pytest.mark.parametrize("name", list(CASES))
def test_standard_errors_are_calibrated(name):
    _, grad = _exact_cached(name)
    R = 60
    z2 = []
    for r in range(R):
        res = mc.score_grad(_f(name), _dist(name), 2000, rng=1000 + r, baseline="optimal")
        for k in grad:
            z2.append(((res.grad[k] - grad[k]) / res.stderr[k]) ** 2)
    z2 = np.concatenate([np.ravel(v) for v in z2])
    # each repeat gives several coordinates (not independent of each other):
    # the bound uses R, the number of independent repeats
    assert abs(z2.mean() - 1.0) < 5 * math.sqrt(2.0 / R), z2.mean()


@pytest.mark.parametrize("name", list(CASES) + ["OneHotCategorical"])
def test_bit_identical_across_threads(name):
    d = mc.OneHotCategorical(logits=[0.3, -1.0, 0.5]) if name == "OneHotCategorical" else \
        _dist(name)
    f = (lambda x: x @ np.array([1.0, 2.0, -1.0])) if name == "OneHotCategorical" else _f(name)
    for kw in ({}, {"baseline": "optimal"}):
        a = mc.score_grad(f, d, 30_000, rng=5, n_threads=1, **kw)
        b = mc.score_grad(f, d, 30_000, rng=5, n_threads=2, **kw)
        assert_same_estimate(a, b)
    np.testing.assert_array_equal(d.sample(1000, rng=3), d.sample(1000, rng=3))


# ---------------------------------------------------------------------------
# Uniform's boundary term
# ---------------------------------------------------------------------------

def test_uniform_boundary_term_closed_form():
    """f(x) = x^2: d/dlow E = (E - low^2) / (high - low), d/dhigh E =
    (high^2 - E) / (high - low); a broadcast low reaches every coordinate
    (its gradient is the sum of theirs)."""
    lo, hi = -0.5, np.array([2.0, 1.0, 3.0])
    d = mc.Uniform(lo, hi)
    E = (hi**3 - lo**3) / (3 * (hi - lo))
    dl = ((E - lo**2) / (hi - lo)).sum()
    dh = (hi**2 - E) / (hi - lo)
    r = mc.score_grad(lambda x: (x * x).sum(1), d, 50_000, rng=3)
    assert r.grad["low"].shape == () and r.grad["high"].shape == (3,)
    assert abs(r.grad["low"] - dl) < 5 * r.stderr["low"]
    assert np.all(np.abs(r.grad["high"] - dh) < 5 * r.stderr["high"])
    assert r.info["boundary_term"] and r.info["f_evals_per_draw"] == 7
    # the plain score-function estimate (no boundary term) is far off
    x = d.sample(50_000, rng=4)
    fx = (x * x).sum(1)
    plain = np.mean(fx[:, None] * d.score(x)["high"], 0)
    assert np.all(np.abs(plain - dh) > 20 * r.stderr["high"])


def test_uniform_boundary_term_non_separable_f():
    """f(x) = x0 x1^2 on a product of uniforms: exact gradients in closed form."""
    d = mc.Uniform([0.0, 1.0], [1.0, 3.0])
    E0, E1 = 0.5, (27 - 1) / (3 * 2)
    dl = [(E0 - 0.0) / 1 * E1, E0 * (E1 - 1.0) / 2]
    dh = [(1.0 - E0) / 1 * E1, E0 * (9.0 - E1) / 2]
    for b in (None, "loo", "optimal"):
        r = mc.score_grad(lambda x: x[:, 0] * x[:, 1] ** 2, d, 40_000, rng=6, baseline=b)
        assert np.all(np.abs(r.grad["low"] - dl) < 5 * r.stderr["low"])
        assert np.all(np.abs(r.grad["high"] - dh) < 5 * r.stderr["high"])


def test_uniform_refusals_name_pathwise_grad():
    d = mc.Uniform(0.0, 1.0)
    x = d.sample(10, rng=1)
    for call in (lambda: mc.score_grad_from_samples(d, x, x),
                 lambda: mc.rloo_grad(lambda x: x, d, 100),
                 # a fused f where pinned draws depend on the other coordinates
                 lambda: mc.score_grad(I.sin(1.0), mc.Uniform([0.0, 0.0], [1.0, 1.0]), 100),
                 lambda: mc.score_grad(I.sin(1.0), d, 100, antithetic=True),
                 lambda: mc.score_grad(lambda x: x, d, 100,
                                       control_variates=[(lambda x: x, {"low": 0.5,
                                                                        "high": 0.5})])):
        with pytest.raises(ValueError, match="boundary term.*pathwise_grad"):
            call()


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("call, match", [
    (lambda: mc.StudentT(0.0), "df"),
    (lambda: mc.StudentT(-1.0, 0.0, 1.0), "df"),
    (lambda: mc.StudentT(2.0, 0.0, 0.0), "scale"),
    (lambda: mc.Uniform(1.0, 1.0), "high must be > low"),
    (lambda: mc.Uniform([0.0, 2.0], [1.0, 1.5]), "high must be > low"),
    (lambda: mc.Uniform(np.nan, 1.0), "low"),
    (lambda: mc.Uniform(-1e308, 1e308), "finite"),
    (lambda: mc.Cauchy(0.0, -1.0), "scale"),
    (lambda: mc.HalfCauchy(0.0), "scale"),
    (lambda: mc.VonMises(0.0, -0.5), "concentration"),
    (lambda: mc.VonMises(np.inf, 1.0), "loc"),
    (lambda: mc.OneHotCategorical(probs=[0.5, -0.1]), "probs"),
    (lambda: mc.OneHotCategorical(), "exactly one of probs or logits"),
    (lambda: mc.OneHotCategorical(logits=[0.0, np.nan]), "logits"),
])
def test_bad_parameters_are_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_uniform_too_narrow_for_gradients_is_a_clear_error():
    d = mc.Uniform(0.0, 1e-310)
    with pytest.raises(ValueError, match="high - low must be at least"):
        mc.score_grad(lambda x: x, d, 100)


def test_studentt_pathwise_refused_clearly():
    with pytest.raises(ValueError, match="no exact reparameterisation in df"):
        mc.pathwise_grad(lambda x: x, mc.StudentT(3.0), 100, grad_f=lambda x: np.ones_like(x))


def test_draws_outside_the_support_are_errors():
    for d, bad in [(mc.Uniform(0.0, 1.0), 1.5), (mc.HalfCauchy(1.0), -0.1),
                   (mc.VonMises(0.0, 1.0), math.pi)]:
        assert d.log_prob(np.array([bad]))[0] == -np.inf
        with pytest.raises(ValueError, match="outside the support"):
            d.score(np.array([bad]))
    oh = mc.OneHotCategorical(probs=[0.5, 0.5])
    assert oh.log_prob(np.array([[1.0, 1.0]]))[0] == -np.inf


def _sum_sq(x):
    return (x * x).reshape(len(x), -1).sum(1)


def test_dask_runs_are_bit_identical_to_local_runs():
    """Uniform's boundary job and the new families on a Dask cluster (f
    must pickle: a module-level function)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=False, threads_per_worker=1,
                                  dashboard_address=None, silence_logs=40) as cluster, \
            distributed.Client(cluster) as client:
        for d, kw in [(mc.Uniform([0.0, 1.0], [1.0, 3.0]), {}),
                      (mc.Uniform(-1.0, 2.0), {"antithetic": True}),
                      (mc.StudentT(4.0, 0.5, 2.0), {"baseline": "optimal"}),
                      (mc.VonMises(0.3, 2.0), {}),
                      (mc.OneHotCategorical(logits=[0.0, 1.0, 2.0]), {})]:
            a = mc.score_grad(_sum_sq, d, 20_000, rng=3, client=client, **kw)
            b = mc.score_grad(_sum_sq, d, 20_000, rng=3, **kw)
            assert_same_estimate(a, b)


def test_one_hot_categorical_draw_frequencies():
    """A chi-square test of the category frequencies, per batch element,
    with a category of probability 0 never drawn."""
    probs = np.array([[0.1, 0.0, 0.6, 0.3], [0.25, 0.25, 0.25, 0.25]])
    x = mc.OneHotCategorical(probs=probs).sample(40_000, rng=8)
    counts = x.sum(0)
    assert counts[0, 1] == 0
    for b in range(2):
        keep = probs[b] > 0
        assert stats.chisquare(counts[b, keep], 40_000 * probs[b, keep]).pvalue > 1e-3


def test_one_hot_categorical_standard_errors_are_calibrated():
    w = np.array([1.0, -2.0, 0.5])
    logits = np.array([0.3, -1.0, 0.5])
    d = mc.OneHotCategorical(logits=logits)
    p = d.probs
    exact = p * (w - p @ w)
    R = 60
    z2 = []
    for r in range(R):
        res = mc.score_grad(lambda x: x @ w, d, 2000, rng=500 + r, baseline="optimal")
        z2.append(((res.grad["logits"] - exact) / res.stderr["logits"]) ** 2)
    assert abs(np.mean(z2) - 1.0) < 5 * math.sqrt(2.0 / R), np.mean(z2)


def test_control_variates_within_5_se():
    """(h, grad E[h]) control variates with a known mean: h(x) = x for
    StudentT (E[x] = loc), h(x) = cos(x - loc0) for VonMises (E = cos(loc -
    loc0) I1/I0), both fitted jointly with the optimal baseline."""
    d = _dist("StudentT")
    cv = (lambda x: x.sum(1), {"df": np.zeros(2), "loc": np.ones(2), "scale": np.zeros(2)})
    res = mc.score_grad(_f("StudentT"), d, N, rng=31, baseline="optimal", control_variates=[cv])
    _check("StudentT", res)
    loc, kappa = CASES["VonMises"][1]["loc"], CASES["VonMises"][1]["concentration"]
    A = bessel_ratio(kappa)
    dA = 1.0 - A / kappa - A * A  # d/dkappa I1/I0

    def h(x):
        return np.cos(x).sum(1)

    grad_h = {"loc": -np.sin(loc) * A, "concentration": np.cos(loc) * dA}
    res = mc.score_grad(_f("VonMises"), _dist("VonMises"), N, rng=32, baseline="optimal",
                        control_variates=[(h, grad_h)])
    _check("VonMises", res)
