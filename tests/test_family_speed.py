"""The family kernels rewritten for speed (issue 17, every family fused) are
still exact: the column fills of HalfNormal, Chi2, InverseGamma, Weibull,
StudentT, Cauchy, HalfCauchy and OneHotCategorical give NumPy's draws bit
for bit (a one-coordinate distribution sampled from a Generator consumes its
bit generator as NumPy's own method does), and the fused score accumulator
of Gumbel and Weibull (each shared expm1 computed once) gives the
statistics of the coordinate-by-coordinate evaluator and the exact
gradient."""
import math

import numpy as np
import pytest
from scipy import special, stats

import mcscore as mc
from mcscore import integrands as I

N = 20_011  # not a multiple of a chunk, of 8 or of the Cauchy fill's block of 256


def _g(seed):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("s", [1e-3, 0.7, 1.5, 40.0])
def test_half_normal_is_numpys(s):
    x = mc.HalfNormal(s).sample(N, rng=_g(1))
    np.testing.assert_array_equal(x, np.abs(s * _g(1).standard_normal(N)))


@pytest.mark.parametrize("df", [0.3, 1.0, 2.0, 2.0000001, 3.5, 80.0])
def test_chi2_is_numpys(df):
    x = mc.Chi2(df).sample(N, rng=_g(2))
    np.testing.assert_array_equal(x, _g(2).chisquare(df, N))


@pytest.mark.parametrize("a,rate", [(0.4, 1.0), (1.0, 2.0), (1.0000001, 0.5), (4.5, 1.5),
                                    (60.0, 3.0)])
def test_inverse_gamma_is_numpys(a, rate):
    x = mc.InverseGamma(a, rate).sample(N, rng=_g(3))
    np.testing.assert_array_equal(x, rate / _g(3).standard_gamma(a, N))


@pytest.mark.parametrize("lam,k", [(1.5, 2.5), (1.0, 0.2), (0.3, 1.0), (2.0, 30.0)])
def test_weibull_is_numpys(lam, k):
    x = mc.Weibull(lam, k).sample(N, rng=_g(4))
    np.testing.assert_array_equal(x, lam * _g(4).weibull(k, N))


@pytest.mark.parametrize("df", [0.5, 1.0, 2.0, 2.0000001, 6.0, 150.0])
def test_student_t_is_numpys(df):
    x = mc.StudentT(df, 0.5, 1.5).sample(N, rng=_g(5))
    np.testing.assert_array_equal(x, 0.5 + 1.5 * _g(5).standard_t(df, N))


@pytest.mark.parametrize("n", [1, 255, 256, 257, N])
def test_cauchy_and_half_cauchy_are_numpys(n):
    x = mc.Cauchy(0.5, 1.5).sample(n, rng=_g(6))
    np.testing.assert_array_equal(x, 0.5 + 1.5 * _g(6).standard_cauchy(n))
    x = mc.HalfCauchy(1.5).sample(n, rng=_g(7))
    np.testing.assert_array_equal(x, np.abs(1.5 * _g(7).standard_cauchy(n)))


def test_two_units_draw_each_column_from_the_stream():
    """Two units of a rewritten fill: each chunk draws unit 0's column, then
    unit 1's (one chunk of 100 draws)."""
    x = mc.StudentT([3.0, 8.0]).sample(100, rng=_g(8))
    g = _g(8)
    np.testing.assert_array_equal(x[:, 0], g.standard_t(3.0, 100))
    np.testing.assert_array_equal(x[:, 1], g.standard_t(8.0, 100))


def _one_hot_reference(p, u):
    """The inversion as a loop: the first k < last with u < p_0 + ... + p_k
    (summed in that order), else last (the last category of positive
    probability)."""
    last = int(np.flatnonzero(p > 0)[-1])
    out = np.zeros((u.size, p.size))
    for i, ui in enumerate(u):
        c, k = 0.0, 0
        while k < last:
            c = c + p[k]
            if ui < c:
                break
            k += 1
        out[i, k] = 1.0
    return out


@pytest.mark.parametrize("probs", [[0.1, 0.2, 0.3, 0.4], [0.0, 0.3, 0.0, 0.7, 0.0],
                                   [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0],
                                   [1e-300, 0.5, 0.5 - 1e-17, 1e-300]])
def test_one_hot_categorical_is_the_inversion(probs):
    d = mc.OneHotCategorical(probs=probs)
    n = 3001
    x = d.sample(n, rng=_g(9))
    np.testing.assert_array_equal(x, _one_hot_reference(np.asarray(d.probs), _g(9).random(n)))


def test_one_hot_categorical_frequencies():
    """Category counts of 10^6 draws against the probabilities (chi-square)."""
    p = special.softmax(np.linspace(-1.0, 1.0, 10))
    n = 1_000_000
    x = mc.OneHotCategorical(probs=p).sample(n, rng=10)
    assert np.all(x.sum(axis=1) == 1.0)
    counts = x.sum(axis=0)
    assert stats.chisquare(counts, n * p).pvalue > 1e-4


# --- Gumbel and Weibull: the fused score accumulator -----------------------

def _gumbel_exact(m, s):
    """f = x: E = m + gamma s."""
    return {"loc": np.ones_like(m), "scale": np.full_like(s, np.euler_gamma)}


def _weibull_exact(lam, k):
    """f = x: E = lam Gamma(1 + 1/k)."""
    g1 = special.gamma(1.0 + 1.0 / k)
    return {"scale": g1, "concentration": -lam * g1 * special.digamma(1.0 + 1.0 / k) / k**2}


CASES = [
    ("Gumbel", 0.5, 1.5),
    ("Gumbel", np.array([0.5, -1.0, 2.0]), np.array([1.5, 0.4, 3.0])),
    ("Gumbel", 0.5, np.array([1.5, 0.4])),                        # a broadcast loc
    ("Gumbel", np.linspace(-1, 1, 9), np.linspace(0.5, 2, 9)),     # > 16 coordinates
    ("Weibull", 1.5, 2.5),
    ("Weibull", np.array([1.5, 0.5, 2.0]), np.array([2.5, 0.9, 1.0])),
    ("Weibull", np.array([1.5, 0.5]), 2.5),                        # a broadcast k
    ("Weibull", np.linspace(0.5, 2, 9), np.linspace(1.0, 3.0, 9)),
]


def _dist(name, a, b):
    return getattr(mc, name)(a, b)


def _exact(name, a0, b0):
    d = _dist(name, a0, b0)
    a, b = np.broadcast_arrays(np.asarray(a0, float), np.asarray(b0, float))
    ex = (_gumbel_exact if name == "Gumbel" else _weibull_exact)(a, b)
    out = {}
    for k, v in ex.items():
        shape = np.shape(getattr(d, k))
        full = np.broadcast_to(v, a.shape)
        # a broadcast parameter's gradient sums over the units it feeds
        out[k] = full.sum() if shape == () and a.shape != () else full.reshape(shape)
    return out


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("baseline", [None, "optimal"])
def test_gumbel_weibull_fused_gradient_within_5se(case, baseline):
    name, a, b = case
    d = _dist(name, a, b)
    f = I.linear(np.ones(d.draw_shape)) if d.draw_shape else I.power(1)
    r = mc.score_grad(f, d, 200_000, rng=11, baseline=baseline)
    for k, v in _exact(name, a, b).items():
        z = (np.asarray(r.grad[k]) - v) / np.asarray(r.stderr[k])
        assert np.all(np.abs(z) < 5.0), (k, z)


@pytest.mark.parametrize("case", CASES)
def test_gumbel_weibull_fused_statistics_are_the_evaluators(case):
    """One batch element (batch_ndims=1) is accumulated by the general
    coordinate-by-coordinate evaluator, the unbatched call by the fused
    accumulator: the same draws, the same scores, the sums in a different
    order only."""
    name, a, b = case
    a, b = np.broadcast_arrays(np.asarray(a, float), np.asarray(b, float))
    d = _dist(name, a.reshape(1, -1), b.reshape(1, -1))
    u = _dist(name, a.ravel(), b.ravel())

    def fb(x):
        return np.cos(x).sum(axis=-1)

    for baseline in (None, "loo", "optimal"):
        rb = mc.score_grad(fb, d, 30_000, rng=12, baseline=baseline, batch_ndims=1)
        ru = mc.score_grad(lambda x: fb(x[:, None, :])[:, 0], u, 30_000, rng=12,
                           baseline=baseline)
        for k in ru.grad:
            np.testing.assert_allclose(np.asarray(rb.grad[k])[0], ru.grad[k], rtol=1e-9,
                                       atol=1e-12)
            np.testing.assert_allclose(np.asarray(rb.stderr[k])[0], ru.stderr[k], rtol=1e-9)


@pytest.mark.parametrize("name", ["Gumbel", "Weibull"])
def test_gumbel_weibull_fused_bit_identical_across_threads_and_chunks(name):
    d = _dist(name, np.array([1.5, 0.5, 2.0]), np.array([2.5, 0.9, 1.0]))
    f = I.linear([1.0, 0.5, -0.3])
    runs = [mc.score_grad(f, d, 40_003, rng=13, n_threads=t, chunk_size=c, baseline="loo")
            for t, c in ((1, None), (2, None), (2, 777))]
    for r in runs[1:]:
        for k in r.grad:
            np.testing.assert_array_equal(r.grad[k], runs[0].grad[k])
            np.testing.assert_array_equal(r.stderr[k], runs[0].stderr[k])


@pytest.mark.parametrize("name,a,b", [("Gumbel", 0.5, 1.5), ("Weibull", 1.5, 2.5)])
def test_gumbel_weibull_scores_are_the_log_density_derivatives(name, a, b):
    """The per-draw scores (the evaluator the fused accumulator reproduces)
    against central differences of scipy's log density."""
    d = _dist(name, a, b)
    x = d.sample(50, rng=14)
    s = d.score(x)
    if name == "Gumbel":
        def lp(p, q):
            return stats.gumbel_r.logpdf(x, loc=p, scale=q)
    else:
        def lp(p, q):
            return stats.weibull_min.logpdf(x, q, scale=p)
    h = 1e-6
    fd = {list(s)[0]: (lp(a + h, b) - lp(a - h, b)) / (2 * h),
          list(s)[1]: (lp(a, b + h) - lp(a, b - h)) / (2 * h)}
    for k in s:
        np.testing.assert_allclose(s[k], fd[k], rtol=1e-6, atol=1e-6)
    assert math.isfinite(float(np.sum(s[list(s)[0]])))
