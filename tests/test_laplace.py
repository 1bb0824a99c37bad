"""Laplace(loc, scale), the family added by the recipe of docs/design.md:
draws, density, scores, and the estimators, against scipy and closed forms."""
import numpy as np
import pytest
from scipy import stats

import mcscore as mc
from mcscore import _kernels as K
from mcscore import _vr
from mcscore import integrands as I

LOC = np.array([0.5, -1.0])
SCALE = np.array([1.5, 0.7])
W = 0.3  # f(x) = x0^2 + W x0^3 + x1^2


def _dist():
    return mc.Laplace(LOC, SCALE)


def _f(x):
    x = np.asarray(x, float)
    return x[:, 0] ** 2 + W * x[:, 0] ** 3 + x[:, 1] ** 2


def _grad_f(x):
    x = np.asarray(x, float)
    return np.stack([2 * x[:, 0] + 3 * W * x[:, 0] ** 2, 2 * x[:, 1]], axis=1)


def _fused():
    return I.polynomial([0.0, 0.0, 1.0, W], coord=0) + I.polynomial([0.0, 0.0, 1.0], coord=1)


def _exact():
    """Closed forms: E[x] = loc, E[x^2] = loc^2 + 2 s^2, E[x^3] = loc^3 + 6 loc s^2."""
    (m0, m1), (s0, s1) = LOC, SCALE
    value = (m0**2 + 2 * s0**2) + W * (m0**3 + 6 * m0 * s0**2) + (m1**2 + 2 * s1**2)
    grad = {"loc": np.array([2 * m0 + W * (3 * m0**2 + 6 * s0**2), 2 * m1]),
            "scale": np.array([4 * s0 + W * 12 * m0 * s0, 4 * s1])}
    return value, grad


def _assert_within_5se(res):
    value, grad = _exact()
    for k in grad:
        z = (res.grad[k] - grad[k]) / res.stderr[k]
        assert np.all(np.abs(z) < 5), (k, res.grad[k], grad[k], res.stderr[k])
        assert np.all(res.stderr[k] > 0)
    assert abs(res.value - value) < 5 * res.value_stderr


# --- the distribution ------------------------------------------------------

def test_sample_moments_within_5_standard_errors():
    d = _dist()
    x = d.sample(200_000, rng=1)
    assert x.shape == (200_000, 2)
    n = x.shape[0]
    se_mean = x.std(0) / np.sqrt(n)
    assert np.all(np.abs(x.mean(0) - d.mean()) < 5 * se_mean)
    dev2 = (x - LOC) ** 2
    se_var = dev2.std(0) / np.sqrt(n)
    assert np.all(np.abs(dev2.mean(0) - d.variance()) < 5 * se_var)
    np.testing.assert_allclose(d.variance(), 2 * SCALE**2)
    np.testing.assert_allclose(d.stddev(), np.sqrt(2) * SCALE)
    np.testing.assert_allclose(d.entropy(), stats.laplace.entropy(LOC, SCALE), rtol=1e-14)


def test_sample_is_a_laplace_sample_ks():
    d = mc.Laplace(0.3, 2.0)
    x = d.sample(20_000, rng=2)
    assert stats.kstest(x, stats.laplace(0.3, 2.0).cdf).pvalue > 1e-3


def test_log_prob_matches_scipy_with_broadcasting():
    d = mc.Laplace(np.array([[0.0], [1.0]]), np.array([0.5, 2.0, 3.0]))
    assert d.batch_shape == (2, 3)
    x = np.random.default_rng(3).normal(size=(7, 2, 3)) * 3
    np.testing.assert_allclose(d.log_prob(x), stats.laplace.logpdf(x, d.loc, d.scale),
                               rtol=1e-13, atol=1e-13)


def test_cdf_icdf_match_scipy_and_invert():
    d = _dist()
    x = np.random.default_rng(4).normal(size=(50, 2)) * 3
    np.testing.assert_allclose(d.cdf(x), stats.laplace.cdf(x, LOC, SCALE), rtol=1e-12,
                               atol=1e-300)
    u = np.random.default_rng(5).uniform(size=(50, 2))
    np.testing.assert_allclose(d.icdf(u), stats.laplace.ppf(u, LOC, SCALE), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(d.icdf(d.cdf(x)), x, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="value"):
        d.icdf(1.5)


def test_score_matches_finite_differences_of_scipy_log_density():
    rng = np.random.default_rng(6)
    for _ in range(5):
        loc = rng.normal(size=3)
        scale = rng.uniform(0.2, 3.0, size=3)
        d = mc.Laplace(loc, scale)
        x = d.sample(40, rng=rng)
        s = d.score(x)
        h = 1e-6
        for name, val in (("loc", loc), ("scale", scale)):
            fd = np.empty((40, 3))
            for j in range(3):
                up, dn = val.copy(), val.copy()
                up[j] += h
                dn[j] -= h
                kw_up = {"loc": loc, "scale": scale, name: up}
                kw_dn = {"loc": loc, "scale": scale, name: dn}
                fd[:, j] = (stats.laplace.logpdf(x[:, j], kw_up["loc"][j], kw_up["scale"][j])
                            - stats.laplace.logpdf(x[:, j], kw_dn["loc"][j],
                                                   kw_dn["scale"][j])) / (2 * h)
            np.testing.assert_allclose(s[name], fd, rtol=1e-6, atol=1e-6)


def test_score_closed_form_and_kink():
    d = mc.Laplace(1.0, 2.0)
    s = d.score(np.array([3.0, 1.0, -1.0]))
    np.testing.assert_array_equal(s["loc"], [0.5, 0.0, -0.5])  # sign(0) = 0
    np.testing.assert_allclose(s["scale"], [-0.5 + 2 / 4, -0.5, -0.5 + 2 / 4])


def test_score_rejects_bad_draws_and_tiny_scales():
    d = _dist()
    with pytest.raises(ValueError, match="outside the support"):
        d.score(np.array([[np.inf, 0.0]]))
    with pytest.raises(ValueError, match="scale must be in"):
        mc.Laplace(0.0, 1e-200).score(np.zeros((1,)))
    with pytest.raises(ValueError, match="scale"):
        mc.Laplace(0.0, -1.0)


def test_capabilities():
    d = _dist()
    assert mc.Laplace in mc.FAMILIES and "Laplace" in mc.__all__
    assert d.has_mirror and d.has_rsample and d.has_mean_tangents
    t = d.mean_tangents()
    np.testing.assert_array_equal(t["loc"], np.ones(2))
    np.testing.assert_array_equal(t["scale"], np.zeros(2))
    x = d.sample(1000, rng=7)
    np.testing.assert_allclose(d.mirror(x), 2 * LOC - x)
    # the mirror preserves the law: log densities of x and its mirror agree
    np.testing.assert_allclose(d.log_prob(d.mirror(x)), d.log_prob(x), rtol=1e-12)
    rows = d.pathwise_spec()
    assert [r[0] for r in rows] == ["loc", "scale"]
    assert rows[0][1] == _vr.TK_ONE and rows[1][1] == _vr.TK_NSCALE
    # dx/dscale = (x - loc) / scale is the noise eps of x = loc + scale * eps
    np.testing.assert_allclose(np.broadcast_to(rows[1][2], (2,)), LOC)
    np.testing.assert_allclose(np.broadcast_to(rows[1][3], (2,)), SCALE)
    assert d.vi_transforms() == {"loc": "identity", "scale": "log"}
    assert set(d.vi_transforms().values()) <= {"identity", "log", "logit"}
    assert mc.vi.transforms(d) == d.vi_transforms()


# --- score_grad ---------------------------------------------------------------

@pytest.mark.parametrize("baseline", [None, "loo", "optimal"])
@pytest.mark.parametrize("kind", ["fused", "python"])
def test_score_grad_within_5_standard_errors(baseline, kind):
    f = _fused() if kind == "fused" else _f
    res = mc.score_grad(f, _dist(), 400_000, rng=11, baseline=baseline)
    _assert_within_5se(res)


@pytest.mark.parametrize("kind", ["fused", "python"])
def test_score_grad_bit_identical_across_threads(kind):
    f = _fused() if kind == "fused" else _f
    a = mc.score_grad(f, _dist(), 100_003, rng=12, n_threads=1, baseline="optimal")
    b = mc.score_grad(f, _dist(), 100_003, rng=12, n_threads=2, baseline="optimal")
    for k in ("loc", "scale"):
        assert np.array_equal(a.grad[k], b.grad[k])
        assert np.array_equal(a.stderr[k], b.stderr[k])
    assert a.value == b.value


def test_fused_and_python_f_see_the_same_draws():
    a = mc.score_grad(_fused(), _dist(), 50_000, rng=13)
    b = mc.score_grad(_f, _dist(), 50_000, rng=13)
    for k in ("loc", "scale"):
        np.testing.assert_allclose(a.grad[k], b.grad[k], rtol=1e-9)


def test_score_of_the_kernels_agrees_with_score():
    """The kernels' accumulators (score_grad, baseline None) and score() on
    the very draws the kernels made give the same estimate."""
    seen = []

    def f(x):
        seen.append(np.array(x))
        return _f(x)

    d = _dist()
    res = mc.score_grad(f, d, 20_000, rng=14)
    x = np.concatenate(seen)
    s = d.score(x)
    fx = _f(x)
    for k in ("loc", "scale"):
        np.testing.assert_allclose(res.grad[k], (fx[:, None] * s[k]).mean(0), rtol=1e-10)
    res2 = mc.score_grad_from_samples(d, x, fx)
    for k in ("loc", "scale"):
        np.testing.assert_allclose(res2.grad[k], res.grad[k], rtol=1e-10)


def test_rloo_within_5_standard_errors():
    res = mc.rloo_grad(_f, _dist(), 200_000, rng=15)
    _assert_within_5se(res)


# --- estimators that ask the family for a capability (mirror, mean tangents,
# pathwise rows) ------------------------------------------------------------

@pytest.mark.parametrize("baseline", [None, "optimal"])
def test_antithetic_within_5_standard_errors(baseline):
    res = mc.score_grad(_f, _dist(), 200_000, rng=16, antithetic=True, baseline=baseline)
    _assert_within_5se(res)


def test_delta_control_variate_within_5_standard_errors():
    res = mc.score_grad(_f, _dist(), 200_000, rng=17, control_variates=["delta"],
                        grad_f=_grad_f)
    _assert_within_5se(res)


def test_pathwise_within_5_standard_errors():
    res = mc.pathwise_grad(_f, _dist(), 200_000, grad_f=_grad_f, rng=18)
    _assert_within_5se(res)


def test_elbo_grad_within_5_standard_errors():
    """Target N(0, 1) up to a constant: ELBO(q) = -(loc^2 + 2 s^2) / 2 + 1 + log(2 s)
    per coordinate, so dELBO/dloc = -loc and dELBO/ds = -2 s + 1 / s."""
    q = _dist()
    res = mc.vi.elbo_grad(lambda x: -0.5 * (np.asarray(x) ** 2).sum(-1), q, 200_000, rng=19)
    exact = {"loc": -LOC, "scale": -2 * SCALE + 1 / SCALE}
    for k in exact:
        assert np.all(np.abs(res.grad[k] - exact[k]) < 5 * res.stderr[k]), (k, res.grad[k])
    elbo = float(np.sum(-(LOC**2 + 2 * SCALE**2) / 2 + 1 + np.log(2 * SCALE)))
    assert abs(res.value - elbo) < 5 * res.value_stderr


# --- the one score evaluator rejects what it does not know ---------------------

class _BadFamily(mc.Normal):
    def _terms(self):
        return [("loc", 99, 1.0, 0.0, 0.0), ("scale", K.SK_AFFINE, 1.0, 0.0, 0.0)]


def test_unknown_term_kind_is_an_error_naming_kind_and_family():
    d = _BadFamily(0.0, 1.0)
    with pytest.raises(ValueError, match=r"_BadFamily's score term for 'loc'.*unknown score "
                                         r"term kind 99"):
        d.score(np.zeros(3))
    with pytest.raises(ValueError, match="unknown score term kind 99"):
        mc.score_grad(_f, d, 1000, rng=0)


def test_unknown_kind_rejected_by_the_kernel_tables():
    with pytest.raises(ValueError, match=r"Laplace's score table: unknown score term kind 42"):
        K.KernelDist(K.MC_LAPLACE, False, 1, 1, 1, [0.0], [1.0], [], np.zeros(0, np.int64),
                     [0, 1], [42], [0], [1.0], [0.0], [0.0])
    with pytest.raises(ValueError, match="unknown family code 77"):
        K.KernelDist(77, False, 1, 1, 1, [0.0], [1.0], [], np.zeros(0, np.int64),
                     [0, 1], [K.SK_AFFINE], [0], [1.0], [0.0], [0.0])
    with pytest.raises(ValueError, match="SK_FAMILY score term needs the family's own score"):
        K.KernelDist(K.MC_LAPLACE, False, 1, 1, 1, [0.0], [1.0], [], np.zeros(0, np.int64),
                     [0, 1], [K.SK_FAMILY], [0], [1.0], [0.0], [0.0])
    z = np.zeros((1, 1))
    with pytest.raises(ValueError, match="acc_score's score table: unknown score term kind -3"):
        _vr.acc_score(np.array([0, 1], np.int64), np.array([-3], np.intc),
                      np.zeros(1, np.int64), np.ones(1), np.zeros(1), np.zeros(1),
                      np.zeros(1, np.int64), np.zeros(1, np.int64), 1, 1, 1, 1, 1, z, z, z, z,
                      False, False, 1, np.zeros((1, 8)), np.zeros((1, 8)))


def test_explicit_term_list_maps_elements_to_coordinates():
    """A family may give its terms as (element, coordinate) lists: here the
    Normal scores written out element by element, in reverse order, with a
    scalar loc reaching both coordinates."""
    class _Explicit(mc.Normal):
        def _terms(self):
            mu, s = np.broadcast_arrays(self.loc, self.scale)
            s2 = s * s
            return [("loc", K.SK_AFFINE, 1.0 / s2[::-1], -mu[::-1] / s2[::-1], 0.0,
                     [0, 0], [1, 0]),
                    ("scale", K.SK_QUAD, 1.0 / (s2 * s), -1.0 / s, mu, [0, 1], [0, 1])]

    ref = mc.Normal(0.3, np.array([1.0, 2.0]))
    d = _Explicit(0.3, np.array([1.0, 2.0]))
    x = ref.sample(100, rng=20)
    a, b = ref.score(x), d.score(x)
    np.testing.assert_allclose(b["loc"], a["loc"], rtol=1e-15)
    np.testing.assert_array_equal(b["scale"], a["scale"])
    ra = mc.score_grad(_f, ref, 20_000, rng=21)
    rb = mc.score_grad(_f, d, 20_000, rng=21)
    np.testing.assert_allclose(rb.grad["loc"], ra.grad["loc"], rtol=1e-12)
    with pytest.raises(ValueError, match="elem in"):
        class _Bad(mc.Normal):
            def _terms(self):
                return [("loc", K.SK_AFFINE, 1.0, 0.0, 0.0, [5], [0])]
        _Bad(0.0, 1.0).score(np.zeros(1))
