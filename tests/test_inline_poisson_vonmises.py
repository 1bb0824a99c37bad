"""The inline Poisson (rate >= 10, PTRS; below 10 with the lazy exp(-rate)
of the per-draw rates) and von Mises samplers (_kernels_inline.pxi) and
the families drawn through them (Poisson, NegativeBinomial, VonMises):
NumPy's values bit for bit, the same words of the stream consumed, and
every estimate the one NumPy's per-draw functions give; the VonMises
scores' paired sin/cos pass gives the terms' own bits."""
import math

import numpy as np
import pytest
from scipy import special

import mcscore as mc
from mcscore import _kernels as K
from mcscore import integrands as I
from _fills import assert_same_without_inline, result_bits
# the draws' bits, a pair of generators on one seed, and the check of the
# same values and the same words consumed, as for the other inline draws
from test_inline_fills import _bits, _pair, _pyf, _same

SEEDS = [0, 3, 20240601, 2**63 + 5]
SIZES = [1, 2, 255, 256, 257, 10_000, 1_000_000]
RATES = [10.0, 10.000000000000002, 12.5, 37.25, 100.0, 1234.5, 1e5, 3.3e7, 1e9, 1e11, 1e12]
SMALL_RATES = [1e-300, 1e-12, 1e-3, 0.5, 1.0, 2.7, 6.0, 9.999999999999998]
KAPPAS = [1e-10, 9.9e-9, 1e-8, 5e-7, 9.99e-6, 1e-5, 0.01, 0.5, 2.0, 40.0, 1e3, 1e5, 1e6,
          1.0000001e6, 1e7, 1e8]
LOCS = [0.0, 0.5, -2.0, math.pi, -math.pi, 3.1, -3.1, 9.0, -20.0]


def _wrapped(x):
    # the family's mapping of NumPy's [-pi, pi] onto [-pi, pi)
    x = np.where(x >= math.pi, x - 2 * math.pi, x)
    return np.where(x < -math.pi, x + 2 * math.pi, x)


def _both(setup_on):
    # the inline samplers and the paired VonMises scores on or off together
    a = K._inline_samplers_setup(setup_on)
    b = K._vm_pair_check(setup_on)
    return all(a) and b if setup_on else True


def test_inline_samplers_are_used_on_this_build():
    assert K.INLINE_SAMPLERS == (True, True)
    assert K.VM_PAIRED_SCORES


def test_loggam_is_numpys():
    x = np.concatenate([np.arange(1.0, 5000.0), np.geomspace(5000.0, 1e13, 3000).round(),
                        [1.5, 2.5, 6.999999999999999, 7.0, 7.000000000000001]])
    mine, numpy = K.loggam_pair(x)
    assert np.array_equal(_bits(mine), _bits(numpy))
    # and it is log Gamma
    assert np.allclose(mine, special.gammaln(x), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("seed,n", [(s, n) for s in SEEDS for n in SIZES
                                    if n < 1_000_000 or s in SEEDS[:2]])
@pytest.mark.parametrize("per_call", [False, True], ids=["column", "per-draw"])
@pytest.mark.parametrize("lam", RATES)
def test_poisson_ptrs_matches_numpy(seed, n, per_call, lam):
    if per_call and n == 1_000_000 and lam not in (10.0, 1e12):
        pytest.skip("the per-draw constants at 1e6 draws: two rates suffice")
    g, g_ref = _pair(seed)
    got = K.inline_poisson(g.bit_generator, lam, n, per_call)
    want = g_ref.poisson(lam, n)
    assert np.array_equal(got, want)
    assert g.bit_generator.state == g_ref.bit_generator.state


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("lam", SMALL_RATES + [0.0])
def test_poisson_per_draw_rates_below_10_match_numpy(seed, lam):
    # the NegativeBinomial's per-draw rates below 10: exp(-rate) only
    # where a product falls near it
    g, g_ref = _pair(seed)
    assert np.array_equal(K.inline_poisson(g.bit_generator, lam, 50_000, True),
                          g_ref.poisson(lam, 50_000))
    assert g.bit_generator.state == g_ref.bit_generator.state


@pytest.mark.parametrize("seed,n", [(s, n) for s in SEEDS[:3] for n in SIZES
                                    if n < 1_000_000 or s == SEEDS[0]])
@pytest.mark.parametrize("lam", [10.0, 15.0, 250.0, 1e12])
def test_poisson_family_matches_numpy(seed, n, lam):
    g, g_ref = _pair(seed)
    got = np.asarray(mc.Poisson(lam).sample(n, rng=g), dtype=np.float64)
    _same(got, g_ref.poisson(lam, n).astype(np.float64), g, g_ref)


# (total_count, probs): rates of the Poisson below and above 10, gamma
# shapes below and above 1
NB = [(4.0, 0.4), (50.0, 0.7), (0.7, 0.9), (3.0, 0.999), (200.0, 0.2), (1e-3, 0.5)]


@pytest.mark.parametrize("seed,n", [(s, n) for s in SEEDS[:3] for n in SIZES
                                    if n < 1_000_000 or s == SEEDS[0]])
@pytest.mark.parametrize("r,p", NB)
def test_negative_binomial_family_matches_numpy(seed, n, r, p):
    g, g_ref = _pair(seed)
    got = np.asarray(mc.NegativeBinomial(r, probs=p).sample(n, rng=g), dtype=np.float64)
    _same(got, g_ref.negative_binomial(r, 1 - p, n).astype(np.float64), g, g_ref)


@pytest.mark.parametrize("seed", SEEDS[:3])
@pytest.mark.parametrize("kappa", KAPPAS)
@pytest.mark.parametrize("loc", LOCS)
def test_vonmises_sampler_matches_numpy(seed, kappa, loc):
    g, g_ref = _pair(seed)
    x, w = K.inline_vonmises(g.bit_generator, loc, kappa, 3000)
    _same(x, g_ref.vonmises(loc, kappa, 3000), g, g_ref)
    if 1e-8 <= kappa <= 1e6:    # Best and Fisher's method: x is loc +- acos(w)
        assert np.all(np.abs(w) <= 1.0)
        assert np.allclose(np.cos(x - loc), w, atol=1e-12)


@pytest.mark.parametrize("seed,n", [(s, n) for s in SEEDS[:3] for n in SIZES
                                    if n < 1_000_000 or s == SEEDS[0]])
@pytest.mark.parametrize("loc,kappa", [(0.5, 2.0), (3.1, 1e-9), (-3.0, 1e-6), (1.0, 1e3),
                                       (3.14159, 5e6), (-math.pi, 1e8), (7.0, 0.3)])
def test_vonmises_family_matches_numpy(seed, n, loc, kappa):
    g, g_ref = _pair(seed)
    got = np.asarray(mc.VonMises(loc, kappa).sample(n, rng=g), dtype=np.float64)
    _same(got, _wrapped(g_ref.vonmises(loc, kappa, n)), g, g_ref)
    assert np.all((got >= -math.pi) & (got < math.pi))


@pytest.mark.parametrize("make,ref", [
    (lambda: mc.Poisson(37.5), lambda g, n: g.poisson(37.5, n).astype(float)),
    (lambda: mc.NegativeBinomial(50.0, probs=0.7),
     lambda g, n: g.negative_binomial(50.0, 0.3, n).astype(float)),
    (lambda: mc.VonMises(0.5, 2.0), lambda g, n: _wrapped(g.vonmises(0.5, 2.0, n))),
], ids=["Poisson", "NegativeBinomial", "VonMises"])
def test_other_bit_generators_give_numpys_draws(make, ref):
    g, g_ref = _pair(5, np.random.Philox)
    _same(np.asarray(make().sample(5000, rng=g), dtype=np.float64), ref(g_ref, 5000), g, g_ref)


MULTI = {
    "Poisson": lambda: mc.Poisson(np.array([3.0, 12.0, 400.0, 1e9])),
    "NegativeBinomial": lambda: mc.NegativeBinomial(np.array([5.0, 0.5, 60.0]),
                                                    probs=np.array([0.4, 0.9, 0.8])),
    "VonMises": lambda: mc.VonMises(np.array([0.5, -3.0, 3.1, 0.0]),
                                    np.array([2.0, 1e-9, 1e3, 1e7])),
    "VonMises-broadcast": lambda: mc.VonMises(0.25, np.array([0.5, 4.0])),
}


@pytest.mark.parametrize("family", sorted(MULTI))
def test_estimates_with_the_samplers_off_are_the_same(family):
    dist = MULTI[family]()
    fused = I.cos() if family.startswith("VonMises") else I.sum_of_squares()
    calls = [(f, bl, t) for f in (fused, _pyf) for bl in (None, "loo", "optimal")
             for t in (1, 2)]

    def run_all():
        return [result_bits(mc.score_grad(f, dist, 10_001, rng=11, baseline=bl, n_threads=t))
                for f, bl, t in calls]
    assert_same_without_inline(_both, run_all)


def test_paired_vonmises_scores_are_the_terms_own():
    dist = mc.VonMises(np.array([0.5, -2.0]), np.array([2.0, 300.0]))
    assert K._vm_pair_check(True)
    # the fused estimate's statistics come from the paired pass; the same
    # scores one term at a time (the pass off) give the same bits
    r1 = result_bits(mc.score_grad(I.cos(), dist, 20_000, rng=4, n_threads=1))
    assert not K._vm_pair_check(False)
    try:
        r0 = result_bits(mc.score_grad(I.cos(), dist, 20_000, rng=4, n_threads=1))
    finally:
        assert K._vm_pair_check(True)
    assert np.array_equal(r1, r0)


def test_poisson_gradient_above_rate_10_against_exact():
    # E x^2 = lam + lam^2: d/dlam = 1 + 2 lam
    lam = 23.5
    r = mc.score_grad(I.power(2), mc.Poisson(lam), 400_000, rng=7, baseline="loo")
    assert abs((r.grad["rate"] - (1 + 2 * lam)) / r.stderr["rate"]) < 5


def test_negative_binomial_gradient_against_exact():
    # successes (prob p) before r failures: E x = r p / (1 - p), d/dp = r / (1 - p)^2
    rc, p = 30.0, 0.6
    r = mc.score_grad(I.power(1), mc.NegativeBinomial(rc, probs=p), 400_000, rng=8,
                      baseline="loo")
    assert abs((r.grad["probs"] - rc / (1 - p) ** 2) / r.stderr["probs"]) < 5


@pytest.mark.parametrize("m,k", [(0.5, 2.0), (-2.5, 40.0), (1.0, 1e-9)])
def test_vonmises_gradient_against_exact(m, k):
    # E cos x = A cos m, A = I1(k) / I0(k): d/dm = -A sin m, d/dk = A'(k) cos m
    # with A' = 1 - A / k - A^2
    A = special.i1e(k) / special.i0e(k)
    dA = 1.0 - A / k - A * A if k > 1e-6 else 0.5
    r = mc.score_grad(I.cos(), mc.VonMises(m, k), 400_000, rng=9, baseline="loo")
    assert abs((r.grad["loc"] + A * math.sin(m)) / r.stderr["loc"]) < 5
    assert abs((r.grad["concentration"] - dA * math.cos(m)) / r.stderr["concentration"]) < 5
