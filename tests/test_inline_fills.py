"""The inline PCG64 uniform, exponential and gamma draws (_kernels_inline.pxi)
and the fills drawn through them: NumPy's values bit for bit, the same
words of the stream consumed, and every estimate the one NumPy's per-draw
functions give."""
import numpy as np
import pytest

import mcscore as mc
from mcscore import _kernels as K
from mcscore import integrands as I
from _fills import assert_same_without_inline, result_bits

SEEDS = [0, 1, 20240601, 2**63 + 5]
SIZES = [1, 7, 255, 256, 257, 1_000_000]
# below, at and above 1, tiny and huge (0: zero, drawing nothing)
SHAPES = [0.0, 1e-300, 1e-8, 0.01, 0.3, 0.999, 1.0, 1.0000001, 2.5, 1e3, 1e12]


def _bits(a):
    return np.ascontiguousarray(a, dtype=np.float64).view(np.uint64)


def _pair(seed, bitgen=np.random.PCG64):
    return np.random.Generator(bitgen(seed)), np.random.Generator(bitgen(seed))


def _same(got, want, g, g_ref):
    assert np.array_equal(_bits(got), _bits(want))
    # the same words consumed
    if isinstance(g.bit_generator, np.random.PCG64):
        assert g.bit_generator.state == g_ref.bit_generator.state
    assert np.array_equal(g.bit_generator.random_raw(4), g_ref.bit_generator.random_raw(4))


def test_inline_draws_are_used_on_this_build():
    assert K.NORMAL_FILL_INLINE and K.INLINE_DRAWS


@pytest.mark.parametrize("seed,n", [(s, n) for s in SEEDS for n in SIZES
                                    if n < 1_000_000 or s in SEEDS[:2]])
@pytest.mark.parametrize("shape", SHAPES)
def test_standard_gamma_matches_numpy(seed, n, shape):
    g, g_ref = _pair(seed)
    _same(K.inline_sample(g.bit_generator, "gamma", n, shape), g_ref.standard_gamma(shape, n),
          g, g_ref)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kind", ["uniform", "exponential"])
def test_uniform_and_exponential_match_numpy(seed, n, kind):
    g, g_ref = _pair(seed)
    want = g_ref.random(n) if kind == "uniform" else g_ref.standard_exponential(n)
    _same(K.inline_sample(g.bit_generator, kind, n), want, g, g_ref)


@pytest.mark.parametrize("kind,shape", [("uniform", 1.0), ("exponential", 1.0),
                                        ("gamma", 0.4), ("gamma", 1.0), ("gamma", 3.5)])
def test_other_bit_generators_take_numpys_functions(kind, shape):
    g, g_ref = _pair(5, np.random.Philox)
    want = {"uniform": lambda: g_ref.random(1000),
            "exponential": lambda: g_ref.standard_exponential(1000),
            "gamma": lambda: g_ref.standard_gamma(shape, 1000)}[kind]()
    _same(K.inline_sample(g.bit_generator, kind, 1000, shape), want, g, g_ref)


def _dirichlet_ref(g, alpha, n):
    # NumPy's standard gammas drawn row by row, each row divided by its sum
    # (summed left to right, as the fill does)
    G = g.standard_gamma(np.broadcast_to(alpha, (n, len(alpha))))
    s = G[:, 0].copy()
    for k in range(1, len(alpha)):
        s = s + G[:, k]
    return G / s[:, None]


# each family (at parameters that reach every method of its sampler) with
# NumPy's draw of it from a Generator
CASES = {
    "Gamma-2.5": (lambda: mc.Gamma(2.5, 1.5), lambda g, n: g.standard_gamma(2.5, n) * (1 / 1.5)),
    "Gamma-0.4": (lambda: mc.Gamma(0.4, 2.0), lambda g, n: g.standard_gamma(0.4, n) * 0.5),
    "Gamma-1": (lambda: mc.Gamma(1.0, 4.0), lambda g, n: g.standard_gamma(1.0, n) * 0.25),
    "Beta": (lambda: mc.Beta(2.0, 3.0), lambda g, n: g.beta(2.0, 3.0, n)),
    "Beta-small": (lambda: mc.Beta(0.5, 2.5), lambda g, n: g.beta(0.5, 2.5, n)),
    "Beta-johnk": (lambda: mc.Beta(0.5, 0.7), lambda g, n: g.beta(0.5, 0.7, n)),
    # Johnk's method with powers that underflow (the logarithms' ratio)
    "Beta-tiny": (lambda: mc.Beta(0.002, 0.001), lambda g, n: g.beta(0.002, 0.001, n)),
    "Beta-tiny-one": (lambda: mc.Beta(0.5, 0.001), lambda g, n: g.beta(0.5, 0.001, n)),
    "Beta-one-tiny": (lambda: mc.Beta(0.001, 1.0), lambda g, n: g.beta(0.001, 1.0, n)),
    "Chi2": (lambda: mc.Chi2(3.5), lambda g, n: g.chisquare(3.5, n)),
    "Chi2-1": (lambda: mc.Chi2(1.0), lambda g, n: g.chisquare(1.0, n)),
    "InverseGamma": (lambda: mc.InverseGamma(4.5, 1.5),
                     lambda g, n: 1.5 / g.standard_gamma(4.5, n)),
    "StudentT": (lambda: mc.StudentT(6.0, 0.5, 1.5),
                 lambda g, n: 0.5 + 1.5 * g.standard_t(6.0, n)),
    "StudentT-1": (lambda: mc.StudentT(1.0, 0.0, 1.0), lambda g, n: g.standard_t(1.0, n)),
    "NegativeBinomial": (lambda: mc.NegativeBinomial(4.0, probs=0.4),
                         lambda g, n: g.negative_binomial(4.0, 0.6, n).astype(float)),
    # rates of the Poisson above 10 too, and a gamma shape below 1
    "NegativeBinomial-wide": (lambda: mc.NegativeBinomial(0.7, probs=0.9),
                              lambda g, n: g.negative_binomial(0.7, 0.1, n).astype(float)),
    "Dirichlet": (lambda: mc.Dirichlet(np.array([0.3, 1.0, 2.5, 4.0])),
                  lambda g, n: _dirichlet_ref(g, np.array([0.3, 1.0, 2.5, 4.0]), n)),
    "Dirichlet-many": (lambda: mc.Dirichlet(np.linspace(0.5, 3.0, 20)),
                       lambda g, n: _dirichlet_ref(g, np.linspace(0.5, 3.0, 20), n)),
    "Poisson": (lambda: mc.Poisson(3.5), lambda g, n: g.poisson(3.5, n).astype(float)),
    "Laplace": (lambda: mc.Laplace(0.5, 1.5), lambda g, n: g.laplace(0.5, 1.5, n)),
    "Gumbel": (lambda: mc.Gumbel(0.5, 1.5), lambda g, n: g.gumbel(0.5, 1.5, n)),
    "Exponential": (lambda: mc.Exponential(1.5),
                    lambda g, n: g.standard_exponential(n) * (1 / 1.5)),
    "Weibull": (lambda: mc.Weibull(1.5, 2.5), lambda g, n: 1.5 * g.weibull(2.5, n)),
    "Uniform": (lambda: mc.Uniform(0.5, 2.0), lambda g, n: g.uniform(0.5, 2.0, n)),
    "Bernoulli": (lambda: mc.Bernoulli(probs=0.3), lambda g, n: (g.random(n) < 0.3) * 1.0),
    "Geometric": (lambda: mc.Geometric(probs=0.5), lambda g, n: g.geometric(0.5, n) - 1.0),
    "Geometric-small": (lambda: mc.Geometric(probs=0.1),
                        lambda g, n: g.geometric(0.1, n) - 1.0),
}


@pytest.mark.parametrize("family", sorted(CASES))
@pytest.mark.parametrize("seed,n", [(s, n) for s in SEEDS[:3] for n in SIZES
                                    if n < 1_000_000 or s == SEEDS[0]])
def test_family_draws_match_numpy(family, seed, n):
    make, ref = CASES[family]
    g, g_ref = _pair(seed)
    got = np.asarray(make().sample(n, rng=g), dtype=np.float64)
    want = np.asarray(ref(g_ref, n), dtype=np.float64).reshape(got.shape)
    _same(got, want, g, g_ref)
    # and the streams go on in step
    assert np.array_equal(_bits(np.asarray(make().sample(3, rng=g), dtype=np.float64).ravel()),
                          _bits(np.asarray(ref(g_ref, 3), dtype=np.float64).ravel()))


MULTI = {
    "Gamma": lambda: mc.Gamma(np.array([2.5, 0.4, 1.0]), np.array([1.5, 2.0, 1.0])),
    "Beta": lambda: mc.Beta(np.array([2.0, 0.5, 0.7]), np.array([3.0, 0.5, 2.0])),
    "Chi2": lambda: mc.Chi2(np.array([3.0, 1.0, 2.0, 0.5])),
    "InverseGamma": lambda: mc.InverseGamma(np.array([3.0, 0.6]), np.array([2.0, 1.0])),
    "StudentT": lambda: mc.StudentT(np.array([5.0, 1.0, 0.7]), 0.1, 1.3),
    "NegativeBinomial": lambda: mc.NegativeBinomial(np.array([5.0, 0.5]),
                                                    probs=np.array([0.4, 0.9])),
    "Dirichlet": lambda: mc.Dirichlet(np.array([0.3, 1.0, 2.5])),
    "Poisson": lambda: mc.Poisson(np.array([3.0, 0.2, 15.0])),
    "Laplace": lambda: mc.Laplace(np.array([0.0, 1.0]), np.array([1.0, 0.3])),
    "Gumbel": lambda: mc.Gumbel(np.array([0.0, 1.0]), np.array([1.0, 0.3])),
    "Exponential": lambda: mc.Exponential(np.array([1.5, 0.2])),
    "Weibull": lambda: mc.Weibull(np.array([1.0, 2.0]), np.array([0.5, 2.0])),
    "Bernoulli": lambda: mc.Bernoulli(probs=np.array([0.3, 0.9])),
    "Geometric": lambda: mc.Geometric(probs=np.array([0.5, 0.1])),
    "Categorical": lambda: mc.Categorical(probs=np.array([0.1, 0.2, 0.3, 0.4])),
    "OneHotCategorical": lambda: mc.OneHotCategorical(probs=np.array([0.1, 0.2, 0.3, 0.4])),
}


def _pyf(x):
    x = np.asarray(x, dtype=np.float64)
    return np.abs(x).reshape(len(x), -1).sum(axis=1)


@pytest.mark.parametrize("family", sorted(MULTI))
def test_estimates_match_numpys_per_draw_functions(family):
    dist = MULTI[family]()
    calls = [(f, bl, t) for f in (I.sum_of_squares(), _pyf) for bl in (None, "loo", "optimal")
             for t in (1, 2)]

    def run_all():
        return [result_bits(mc.score_grad(f, dist, 10_001, rng=11, baseline=bl, n_threads=t))
                for f, bl, t in calls]
    # with the inline draws and with NumPy's (the same bits); one and two threads agree
    assert_same_without_inline(K._inline_draws_setup, run_all)


@pytest.mark.parametrize("a", [0.6, 1.0, 2.5])
@pytest.mark.parametrize("f", [I.sum_of_squares(), lambda x: x * x],
                         ids=["fused", "python"])
def test_gamma_gradient_against_exact(a, f):
    # E x^2 = a (a + 1) / b^2: d/da = (2 a + 1) / b^2, d/db = -2 a (a + 1) / b^3
    b, n = 1.5, 400_000
    r = mc.score_grad(f, mc.Gamma(a, b), n, rng=7, baseline="loo")
    assert abs((r.grad["concentration"] - (2 * a + 1) / b**2) / r.stderr["concentration"]) < 5
    assert abs((r.grad["rate"] + 2 * a * (a + 1) / b**3) / r.stderr["rate"]) < 5
