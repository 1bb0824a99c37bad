"""The families drawn from columns of standard normals (LogNormal,
HalfNormal, Cauchy, HalfCauchy) take them from the inline PCG64 normal fill
of the Normal family: their draws stay NumPy's, bit for bit and with the
same stream consumption, and every estimate is the one NumPy's fill gives."""
import numpy as np
import pytest

import mcscore as mc
from mcscore import _kernels as K
from mcscore import integrands as I
from _fills import assert_same_without_inline, result_bits

SEEDS = [0, 1, 20240601, 2**63 + 5]
SIZES = [1, 7, 255, 256, 257, 1_000_000]


def _bits(a):
    return np.asarray(a, dtype=np.float64).view(np.uint64)


# each family with NumPy's draw of it from a Generator
CASES = {
    "HalfNormal": (lambda: mc.HalfNormal(1.7),
                   lambda g, n: np.abs(1.7 * g.standard_normal(n))),
    "Cauchy": (lambda: mc.Cauchy(-0.4, 2.5),
               lambda g, n: -0.4 + 2.5 * g.standard_cauchy(n)),
    "HalfCauchy": (lambda: mc.HalfCauchy(2.5),
                   lambda g, n: np.abs(2.5 * g.standard_cauchy(n))),
    # the kernels' exp is NumPy's float64 exp loop (see the libm case below)
    "LogNormal": (lambda: mc.LogNormal(0.3, 0.7),
                  lambda g, n: np.exp(0.3 + 0.7 * g.standard_normal(n))),
}


def _check_draws(make, ref, seed, n):
    g = np.random.Generator(np.random.PCG64(seed))
    g_ref = np.random.Generator(np.random.PCG64(seed))
    got = make().sample(n, rng=g)
    want = ref(g_ref, n)
    assert np.array_equal(_bits(got), _bits(want))
    assert g.bit_generator.state == g_ref.bit_generator.state  # the same words consumed
    # and the streams go on in step
    assert np.array_equal(_bits(make().sample(3, rng=g)), _bits(ref(g_ref, 3)))


def test_inline_fill_is_used_on_this_build():
    assert K.NORMAL_FILL_INLINE


@pytest.mark.parametrize("family", sorted(CASES))
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", SIZES)
def test_draws_match_numpy_bit_for_bit(family, seed, n):
    make, ref = CASES[family]
    _check_draws(make, ref, seed, n)


@pytest.mark.parametrize("seed", SEEDS[:2])
@pytest.mark.parametrize("n", [1, 257, 1_000_000])
def test_lognormal_matches_generator_lognormal_with_libm_exp(seed, n):
    # NumPy's random_lognormal is exp(loc + scale * z) with libm's exp: with
    # the kernels on libm's exp, LogNormal is Generator.lognormal bit for bit
    K._use_numpy_math(False)
    try:
        _check_draws(CASES["LogNormal"][0], lambda g, m: g.lognormal(0.3, 0.7, m), seed, n)
    finally:
        K._use_numpy_math(True)


@pytest.mark.parametrize("family", sorted(CASES))
def test_other_bit_generators_draw_numpys_values(family):
    # the inline step is PCG64's: other generators go to NumPy's fill
    make, ref = CASES[family]
    for cls in (np.random.MT19937, np.random.SFC64, np.random.PCG64DXSM, np.random.Philox):
        g, g_ref = np.random.Generator(cls(3)), np.random.Generator(cls(3))
        assert np.array_equal(_bits(make().sample(5000, rng=g)), _bits(ref(g_ref, 5000)))
        # the same words consumed: the next raw words agree
        assert np.array_equal(g.bit_generator.random_raw(8), g_ref.bit_generator.random_raw(8))


MULTI = {
    "LogNormal": lambda d: mc.LogNormal(np.linspace(-0.5, 0.5, d), np.linspace(0.2, 0.6, d)),
    "HalfNormal": lambda d: mc.HalfNormal(np.linspace(0.5, 2.0, d)),
    "Cauchy": lambda d: mc.Cauchy(np.linspace(-1, 1, d), np.linspace(0.5, 1.5, d)),
    "HalfCauchy": lambda d: mc.HalfCauchy(np.linspace(0.5, 1.5, d)),
}


def _pyf(x):
    return np.abs(x).sum(axis=1)


@pytest.mark.parametrize("family", sorted(MULTI))
@pytest.mark.parametrize("d,n", [(1, 7), (3, 10_001), (20, 3_001)])
def test_estimates_match_numpys_fill_bit_for_bit(family, d, n):
    dist = MULTI[family](d)
    calls = [(f, bl, t) for f in (I.sum_of_squares(), _pyf) for bl in (None, "loo", 0.25)
             for t in (1, 2)]

    def run_all():
        return [result_bits(mc.score_grad(f, dist, n, rng=11, baseline=bl, n_threads=t))
                for f, bl, t in calls]
    # with the inline draws and with NumPy's (the same bits); one and two threads agree
    assert_same_without_inline(K._normal_fill_setup, run_all)


@pytest.mark.parametrize("f", [I.sum_of_squares(), lambda x: (x * x).sum(axis=1)],
                         ids=["fused", "python"])
def test_gradients_against_exact(f):
    # E x^2: HalfNormal scale^2 -> 2 scale; LogNormal exp(2 loc + 2 scale^2)
    # -> (2, 4 scale) exp(2 loc + 2 scale^2)
    n = 400_000
    s = np.array([0.5, 1.0, 2.0])
    r = mc.score_grad(f, mc.HalfNormal(s), n, rng=5, baseline="loo")
    assert np.all(np.abs((r.grad["scale"] - 2 * s) / r.stderr["scale"]) < 5)
    loc, sc = np.array([-0.3, 0.0, 0.4]), np.array([0.2, 0.3, 0.5])
    m2 = np.exp(2 * loc + 2 * sc**2)
    r = mc.score_grad(f, mc.LogNormal(loc, sc), n, rng=6, baseline="loo")
    assert np.all(np.abs((r.grad["loc"] - 2 * m2) / r.stderr["loc"]) < 5)
    assert np.all(np.abs((r.grad["scale"] - 4 * sc * m2) / r.stderr["scale"]) < 5)
