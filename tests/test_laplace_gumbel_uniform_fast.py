"""Laplace, Gumbel and Uniform at n = 1e6 (issue 17, target 2).

Uniform: score_grad takes a fused integrand or C callback for a scalar
Uniform (the draw pinned to a bound is the bound: the fused score estimate
plus f(low) and f(high) as constants).  Laplace and Gumbel: the fills draw
a chunk's uniforms first and take the logs in a second loop, Laplace's
halves by selects, and Laplace's two score coordinates are summed in one
pass; the draws stay NumPy's bit for bit and the estimates the same bits.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate

import mcscore as mc
from mcscore import _kernels as K
from mcscore import integrands as I

from _fills import assert_same_without_inline, result_bits


# ---------------------------------------------------------------------------
# Uniform with a fused f
# ---------------------------------------------------------------------------

FUSED = {
    "x^2": (lambda: I.power(2), lambda x: x * x),
    "x^3": (lambda: I.power(3), lambda x: x ** 3),
    "sin": (lambda: I.sin(), np.sin),
    "exp": (lambda: I.exp(0.5), lambda x: 0.5 * np.exp(x)),
    "[x <= 0.3]": (lambda: I.indicator(high=0.3), lambda x: (x <= 0.3) * 1.0),
}


def _exact_uniform(g, lo, hi):
    """d/dlow and d/dhigh of E f = int_lo^hi g / (hi - lo), by quadrature."""
    w = hi - lo
    ef = integrate.quad(g, lo, hi, points=[0.3] if lo < 0.3 < hi else None)[0] / w
    return (ef - g(lo)) / w, (g(hi) - ef) / w


@pytest.mark.parametrize("fname", sorted(FUSED))
@pytest.mark.parametrize("lo,hi", [(0.5, 2.0), (-1.0, 0.8), (-3.0, -2.5)])
@pytest.mark.parametrize("baseline", [None, "loo", "optimal", 0.7])
def test_uniform_fused_against_exact(fname, lo, hi, baseline):
    make, g = FUSED[fname]
    r = mc.score_grad(make(), mc.Uniform(lo, hi), 200_000, rng=17, baseline=baseline)
    dl, dh = _exact_uniform(g, lo, hi)
    assert r.method == "score+boundary" and r.info["boundary_term"]
    assert r.baseline == baseline
    for k, ex in (("low", dl), ("high", dh)):
        se = float(r.stderr[k])
        if se == 0.0:       # f constant on the support: the estimate is exact
            assert float(r.grad[k]) == pytest.approx(ex, abs=1e-12)
        else:
            assert abs(float(r.grad[k]) - ex) < 5 * se, (k, r.grad[k], ex, se)


@pytest.mark.parametrize("fname", sorted(FUSED))
def test_uniform_fused_matches_python_f_on_the_same_draws(fname):
    # the same draws (the same streams): the fused estimate and the Python
    # f's per-draw boundary terms agree to rounding, and threads do not matter
    make, g = FUSED[fname]
    d = mc.Uniform(-0.4, 1.3)
    runs = {t: mc.score_grad(make(), d, 100_003, rng=5, n_threads=t) for t in (1, 2)}
    py = mc.score_grad(lambda x: g(x), d, 100_003, rng=5, n_threads=1)
    assert np.array_equal(result_bits(runs[1]), result_bits(runs[2]))
    r = runs[1]
    for k in ("low", "high"):
        scale = float(py.stderr[k]) * np.sqrt(100_003) + 1e-300
        assert abs(float(r.grad[k]) - float(py.grad[k])) <= 1e-12 * scale + 1e-14
        assert float(r.stderr[k]) == pytest.approx(float(py.stderr[k]), rel=1e-9, abs=1e-15)
    assert r.value == pytest.approx(py.value, rel=1e-12, abs=1e-15)
    assert np.allclose(r.cov, py.cov, rtol=1e-8, atol=1e-18)


def test_uniform_fused_shapes_and_seeds():
    # a parameter of shape (1,) keeps its shape; a seed gives the same bits
    d = mc.Uniform(np.array([0.5]), np.array([2.0]))
    a = mc.score_grad(I.power(2), d, 5_000, rng=3)
    b = mc.score_grad(I.power(2), d, 5_000, rng=3)
    assert a.grad["low"].shape == (1,) and a.grad["high"].shape == (1,)
    assert np.array_equal(result_bits(a), result_bits(b))


def test_uniform_fused_refusals_and_errors():
    with pytest.raises(ValueError, match="boundary term.*pathwise_grad"):
        mc.score_grad(I.sum_of_squares(), mc.Uniform([0.0, 1.0], [1.0, 2.0]), 100)
    with pytest.raises(ValueError, match="antithetic.*pathwise_grad"):
        mc.score_grad(I.power(2), mc.Uniform(0.0, 1.0), 100, antithetic=True)
    with pytest.raises(ValueError, match="not finite at the draw pinned to low"):
        mc.score_grad(I.log1p(), mc.Uniform(-1.0, 0.0), 100)
    with pytest.raises(ValueError, match="n"):
        mc.score_grad(I.power(2), mc.Uniform(0.0, 1.0), 1)


# ---------------------------------------------------------------------------
# Laplace and Gumbel: NumPy's draws, the same estimates
# ---------------------------------------------------------------------------

DRAWS = {
    "Laplace": (lambda: mc.Laplace(0.5, 1.5), lambda g, n: g.laplace(0.5, 1.5, n)),
    "Laplace-far": (lambda: mc.Laplace(1e3, 1e-3), lambda g, n: g.laplace(1e3, 1e-3, n)),
    "Gumbel": (lambda: mc.Gumbel(0.5, 1.5), lambda g, n: g.gumbel(0.5, 1.5, n)),
    "Gumbel-far": (lambda: mc.Gumbel(-2.0, 0.01), lambda g, n: g.gumbel(-2.0, 0.01, n)),
}


@pytest.mark.parametrize("name", sorted(DRAWS))
@pytest.mark.parametrize("seed", [1, 2024, 987654321])
@pytest.mark.parametrize("n", [1, 9, 4097, 300_001])
def test_draws_are_numpys(name, seed, n):
    make, ref = DRAWS[name]
    got = np.asarray(make().sample(n, rng=np.random.Generator(np.random.PCG64(seed))))
    want = ref(np.random.Generator(np.random.PCG64(seed)), n)
    assert np.array_equal(got.view(np.uint64), np.asarray(want).view(np.uint64))


def _pyf(x):
    x = np.asarray(x, dtype=np.float64)
    return (x * x).reshape(len(x), -1).sum(axis=1)


LAPLACE_GUMBEL = {
    # loc and scale of the same shape (Laplace's one-pass statistics) and a
    # broadcast scale (coordinate by coordinate)
    "Laplace-pairs": lambda: mc.Laplace(np.array([0.0, 1.0, -2.0]), np.array([1.0, 0.3, 2.0])),
    "Laplace-broadcast": lambda: mc.Laplace(np.array([0.0, 1.0]), 2.0),
    "Laplace-scalar": lambda: mc.Laplace(0.5, 1.5),
    "Gumbel-pairs": lambda: mc.Gumbel(np.array([0.0, 1.0]), np.array([1.0, 0.3])),
    "Gumbel-scalar": lambda: mc.Gumbel(0.5, 1.5),
}


@pytest.mark.parametrize("name", sorted(LAPLACE_GUMBEL))
def test_estimates_same_without_inline_draws_and_threads(name):
    dist = LAPLACE_GUMBEL[name]()
    calls = [(f, bl, t) for f in (I.sum_of_squares(), _pyf) for bl in (None, "loo", "optimal")
             for t in (1, 2)]

    def run_all():
        return [result_bits(mc.score_grad(f, dist, 30_001, rng=13, baseline=bl, n_threads=t))
                for f, bl, t in calls]
    assert_same_without_inline(K._inline_draws_setup, run_all)


@pytest.mark.parametrize("baseline", [None, "loo"])
@pytest.mark.parametrize("f", [I.power(2), lambda x: x * x], ids=["fused", "python"])
def test_laplace_gradient_against_exact(f, baseline):
    # E x^2 = loc^2 + 2 scale^2: d/dloc = 2 loc, d/dscale = 4 scale
    m, s, n = 0.5, 1.5, 400_000
    r = mc.score_grad(f, mc.Laplace(m, s), n, rng=21, baseline=baseline)
    assert abs(r.grad["loc"] - 2 * m) < 5 * r.stderr["loc"]
    assert abs(r.grad["scale"] - 4 * s) < 5 * r.stderr["scale"]


@pytest.mark.parametrize("baseline", [None, "loo"])
@pytest.mark.parametrize("f", [I.power(1), lambda x: x], ids=["fused", "python"])
def test_gumbel_gradient_against_exact(f, baseline):
    # E x = loc + euler_gamma scale
    m, s, n = 0.5, 1.5, 400_000
    r = mc.score_grad(f, mc.Gumbel(m, s), n, rng=23, baseline=baseline)
    assert abs(r.grad["loc"] - 1.0) < 5 * r.stderr["loc"]
    assert abs(r.grad["scale"] - np.euler_gamma) < 5 * r.stderr["scale"]


@pytest.mark.parametrize("threads", [1, 2])
def test_laplace_pairs_gradient_against_exact(threads):
    # several units through the one-pass statistics: f = |x|^2, so
    # d/dloc_j = 2 loc_j and d/dscale_j = 4 scale_j
    loc, scale = np.array([0.0, 1.0, -0.5]), np.array([1.0, 0.3, 2.0])
    r = mc.score_grad(I.sum_of_squares(), mc.Laplace(loc, scale), 300_000, rng=29,
                      n_threads=threads)
    assert np.all(np.abs(r.grad["loc"] - 2 * loc) < 5 * r.stderr["loc"])
    assert np.all(np.abs(r.grad["scale"] - 4 * scale) < 5 * r.stderr["scale"])


# the rare u = 0 that NumPy's Laplace and Gumbel samplers reject: a PCG64
# state placed so that word k of the stream is 0 (a state whose two halves
# are equal outputs 0), at even and odd k (the fills' pairs of words)
_PCG_MULT = 0x2360ED051FC65DA44385DF649FCCF645
_MASK = (1 << 128) - 1


def _generator_with_zero_word(k, inc=0xDA3E39CB94B95BDB * 2 + 1, half=0x9E3779B97F4A7C15):
    inv = pow(_PCG_MULT, -1, 1 << 128)
    s = (half << 64) | half      # the state after word k's step: output 0
    for _ in range(k + 1):
        s = ((s - inc) * inv) & _MASK
    bg = np.random.PCG64(0)
    bg.state = {"bit_generator": "PCG64", "state": {"state": s, "inc": inc},
                "has_uint32": 0, "uinteger": 0}
    return np.random.Generator(bg)


@pytest.mark.parametrize("name", sorted(DRAWS))
@pytest.mark.parametrize("k", [0, 1, 6, 7, 1000])
def test_draws_skip_a_zero_word_as_numpy_does(name, k):
    g = _generator_with_zero_word(k)
    assert g.bit_generator.random_raw(k + 1)[-1] == 0
    make, ref = DRAWS[name]
    n = 2001
    got = np.asarray(make().sample(n, rng=_generator_with_zero_word(k)))
    want = ref(_generator_with_zero_word(k), n)
    assert np.array_equal(got.view(np.uint64), np.asarray(want).view(np.uint64))
