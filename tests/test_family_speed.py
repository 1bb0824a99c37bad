"""The family kernels rewritten for speed (issue 17, every family fused) are
still exact: the column fills of HalfNormal, Chi2, InverseGamma, Weibull,
StudentT, Cauchy, HalfCauchy and OneHotCategorical give NumPy's draws bit
for bit (a one-coordinate distribution sampled from a Generator consumes its
bit generator as NumPy's own method does), and the kernels' Gumbel and
Weibull scores, computed from each draw's standard exponential E kept by the
fill (exp(-(x - loc) / scale) = E, (x / scale)^k = E), are the derivatives
of the log density, at least as accurate as the x-based evaluator against a
long-double reference, and give the exact gradient."""
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
    """One batch element (batch_ndims=1) is accumulated by the batched
    accumulator, the unbatched call by the fused one: the same draws, the
    same scores (both from the kept E), the sums in a different order only."""
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
    w = np.array([1.0, 0.5, -0.3])
    for f in (I.linear(w), lambda x: x @ w):   # fused, and a Python f (its chunks)
        runs = [mc.score_grad(f, d, 40_003, rng=13, n_threads=t, chunk_size=c, baseline="loo")
                for t, c in ((1, None), (2, None), (2, 777), (1, 4096))]
        for r in runs[1:]:
            for k in r.grad:
                np.testing.assert_array_equal(r.grad[k], runs[0].grad[k])
                np.testing.assert_array_equal(r.stderr[k], runs[0].stderr[k])


def _scipy_logpdf(name, x):
    """scipy's log density at x as a function of the two parameters."""
    if name == "Gumbel":
        return lambda p, q: stats.gumbel_r.logpdf(x, loc=p, scale=q)
    return lambda p, q: stats.weibull_min.logpdf(x, q, scale=p)


@pytest.mark.parametrize("name,a,b", [("Gumbel", 0.5, 1.5), ("Weibull", 1.5, 2.5)])
def test_gumbel_weibull_scores_are_the_log_density_derivatives(name, a, b):
    """The per-draw scores of Distribution.score (the table evaluator, from
    x) against central differences of scipy's log density."""
    d = _dist(name, a, b)
    x = d.sample(50, rng=14)
    s = d.score(x)
    lp = _scipy_logpdf(name, x)
    h = 1e-6
    fd = {list(s)[0]: (lp(a + h, b) - lp(a - h, b)) / (2 * h),
          list(s)[1]: (lp(a, b + h) - lp(a, b - h)) / (2 * h)}
    for k in s:
        np.testing.assert_allclose(s[k], fd[k], rtol=1e-6, atol=1e-6)
    assert math.isfinite(float(np.sum(s[list(s)[0]])))


# --- Gumbel and Weibull: the kernels' scores from the kept exponential E -----

_LD = np.finfo(np.longdouble).eps < 1e-18   # an extended long double (x86)
_glog = np.frompyfunc(math.log, 1, 1)       # the C library's log, as the fill's
_gpow = np.frompyfunc(math.pow, 2, 1)


def _e_scores(name, p, q, E, x):
    """The kernels' per-draw scores from the draws' E: their arithmetic in
    their order (mc_exp_column_acc5 on the family's score table)."""
    if name == "Gumbel":
        r = -1.0 / q
        return {"loc": r * (E - 1.0), "scale": ((r / q) * (x - p)) * (E - 1.0) + (x * 0.0 + r)}
    return {"scale": (q / p) * (E - 1.0),
            "concentration": (-1.0 * (np.log(E) / q)) * (E - 1.0) + (x * 0.0 + 1.0 / q)}


def _stream_draws(name, p, q, n, seed):
    """E and x of the first n draws of stream 0 of a call seeded by `seed`
    (the root PCG64: NumPy's default_rng(seed)), as the kernels' fills make
    them: Gumbel E = -log(1 - u), Weibull NumPy's standard exponentials."""
    g = np.random.default_rng(seed)
    if name == "Gumbel":
        E = -_glog(1.0 - g.random(n)).astype(float)   # no u = 0 among these
        return E, p - q * _glog(E).astype(float)
    E = g.standard_exponential(n)
    return E, p * _gpow(E, 1.0 / q).astype(float)


@pytest.mark.parametrize("name,p,q", [("Gumbel", 0.5, 1.5), ("Gumbel", 1e3, 0.01),
                                      ("Weibull", 1.5, 2.5), ("Weibull", 1.0, 0.3)])
@pytest.mark.parametrize("fused", [True, False])
def test_gumbel_weibull_kernel_scores_come_from_the_kept_exponential(name, p, q, fused):
    """The mean score a call accumulates (f = 1, one stream) is that of the
    scores from E at the stream's own draws; at loc / scale = 1e5 the
    x-based scores are off by more (z recomputed from the rounded x)."""
    n = 20_011
    d = _dist(name, p, q)
    seen = []

    def f(x):
        seen.append(x.copy())
        return np.ones(len(x))
    r = mc.score_grad(I.constant(1.0) if fused else f, d, n, rng=11, n_streams=1,
                      n_threads=1)
    E, x = _stream_draws(name, p, q, n, 11)
    if not fused:
        np.testing.assert_array_equal(np.concatenate(seen), x)
    new = _e_scores(name, p, q, E, x)
    old = d.score(x)
    for k in new:
        unit = np.sqrt(np.mean(new[k] ** 2))
        assert abs(float(r.grad[k]) - math.fsum(new[k]) / n) <= 1e-15 * unit, k
        if name == "Gumbel" and p / q > 1e4:
            assert abs(float(r.grad[k]) - math.fsum(old[k]) / n) > 1e-14 * unit, k


@pytest.mark.parametrize("name,p,q", [("Gumbel", 0.5, 1.5), ("Gumbel", -3.0, 0.2),
                                      ("Weibull", 1.5, 2.5), ("Weibull", 1.0, 0.3)])
def test_gumbel_weibull_e_scores_are_the_log_density_derivatives(name, p, q):
    """The scores from E against central differences of scipy's log density
    at the draw x, at 1e-7 relative (1e-7 of the score's scale near its
    zeros)."""
    E, x = _stream_draws(name, p, q, 400, 14)
    s = _e_scores(name, p, q, E, x)
    lp = _scipy_logpdf(name, x)
    ha, hb = 1e-5 * max(abs(p), q), 1e-5 * q
    keys = list(s)
    fd = {keys[0]: (lp(p + ha, q) - lp(p - ha, q)) / (2 * ha),
          keys[1]: (lp(p, q + hb) - lp(p, q - hb)) / (2 * hb)}
    for k in keys:
        unit = np.sqrt(np.mean(fd[k] ** 2))
        np.testing.assert_allclose(s[k], fd[k], rtol=1e-7, atol=1e-7 * unit, err_msg=k)


@pytest.mark.skipif(not _LD, reason="needs an extended long double for the reference")
@pytest.mark.parametrize("name,p,q", [("Gumbel", 0.5, 1.5), ("Gumbel", 1e3, 0.01),
                                      ("Weibull", 1.5, 2.5), ("Weibull", 1.0, 0.3),
                                      ("Weibull", 2.0, 10.0)])
def test_gumbel_weibull_e_scores_at_least_as_accurate(name, p, q):
    """Scores from E against the exact score of the draw (long double, from
    its uniform U or its E), over 2e5 draws and the tails (E tiny and huge,
    E near 1): the largest error, in units of the score's scale, is no
    larger than the x-based evaluator's, and within 64 roundings of the
    largest score (Gumbel: of z = (x - loc) / scale from the rounded x, the
    one input not taken from E)."""
    L = np.longdouble
    ulp = 2.0 ** -53
    k = np.arange(1, 1001, dtype=float)
    if name == "Gumbel":
        u = np.concatenate([np.random.default_rng(5).random(200_000), k * ulp, 1.0 - k * ulp,
                            1.0 - math.exp(-1.0) + np.linspace(-1e-6, 1e-6, 1001)])
        U = 1.0 - u
        E = -_glog(U).astype(float)
        x = p - q * _glog(E).astype(float)
        El = -np.log(U.astype(L))
        zl = -np.log(El)
        ref = {"loc": (1 - El) / L(q), "scale": (zl * (1 - El) - 1) / L(q)}
        units = {"loc": 1.0 / q, "scale": 1.0 / q}
    else:
        E = np.concatenate([np.random.default_rng(6).standard_exponential(200_000), k * ulp,
                            np.geomspace(1e-300, 1e-17, 300), np.linspace(30.0, 40.0, 300),
                            1.0 + np.linspace(-1e-6, 1e-6, 1001)])
        x = p * _gpow(E, 1.0 / q).astype(float)
        E, x = E[x > 0], x[x > 0]   # x underflowed to 0: outside the support
        El = E.astype(L)
        ref = {"scale": L(q) / L(p) * (El - 1),
               "concentration": 1 / L(q) + np.log(El) / L(q) * (1 - El)}
        units = {"scale": q / p, "concentration": 1.0 / q}
    new = _e_scores(name, p, q, E, x)
    old = _dist(name, p, q).score(x)
    for key in ref:
        e_new = float(np.max(np.abs(new[key].astype(L) - ref[key]))) / units[key]
        e_old = float(np.max(np.abs(old[key].astype(L) - ref[key]))) / units[key]
        big = float(np.max(np.abs(ref[key]))) / units[key]
        tol = 64 * np.finfo(float).eps * max(1.0, big) * (1 + (abs(p) / q if name == "Gumbel" else 0))
        assert e_new <= e_old and e_new < tol, (key, e_new, e_old, tol)
