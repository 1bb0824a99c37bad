"""finance.greeks(sampler="sobol", preintegrate=True): each path's quantities
integrated exactly over W(T) given the other Brownian bridge coordinates.
Calibration of the error bars over R' = 200 repeats (against closed forms,
and for the arithmetic Asian against a high-accuracy reference checked
against plain Sobol'), agreement with plain Sobol' for every built-in payoff
and both methods, the gain, bit-identity across thread counts, the errors."""
import math

import numpy as np
import pytest

import mcscore as mc
from mcscore.finance import _qmc as FQ
from mcscore.finance.closed_forms import black_scholes, geometric_asian_call

R_PRIME = 200
Z2_TOL = 5 * math.sqrt(2 / R_PRIME)
MARKET = dict(spot=100.0, strike=100.0, rate=0.05, vol=0.2, maturity=1.0)
N_SMALL = 32 * 32  # 32 randomisations of 32 paths


def _greeks(payoff, n, seed, method="lr", preintegrate=True, steps=12, **kw):
    return mc.finance.greeks(payoff, n=n, steps=steps, rng=seed, method=method,
                             sampler="sobol", preintegrate=preintegrate, **MARKET, **kw)


def _mean_z2(run, exact):
    """{greek: mean over R' repeats of ((estimate - exact) / stderr)^2}."""
    z2 = {k: [] for k in exact}
    for seed in range(R_PRIME):
        g = run(seed)
        assert g.sampler == "sobol" and g.info["preintegrate"] is True
        for k, v in exact.items():
            z2[k].append(((getattr(g, k) - v) / g.stderr[k]) ** 2)
    return {k: float(np.mean(v)) for k, v in z2.items()}


# -- calibration -------------------------------------------------------------

def test_calibration_arithmetic_asian_pathwise():
    """The benchmark's problem: the 12-date arithmetic Asian call, pathwise
    delta and vega and the mixed gamma.  No closed form: the reference is
    the preintegrated estimate at 512 times the points (its stderr is
    below 1/100 of a repeat's), itself checked against plain Sobol' (no
    preintegration) within 5 standard errors."""
    ref = _greeks("asian_call", 32 * 2**14, 10**6, "pathwise")
    plain = _greeks("asian_call", 32 * 2**14, 10**6 + 1, "pathwise", preintegrate=False)
    names = ("price", "delta", "vega", "gamma")
    for k in names:
        se = math.hypot(ref.stderr[k], plain.stderr[k])
        assert abs(getattr(ref, k) - getattr(plain, k)) < 5 * se, k
    exact = {k: getattr(ref, k) for k in names}
    z2 = _mean_z2(lambda s: _greeks("asian_call", N_SMALL, s, "pathwise"), exact)
    for k in names:
        assert ref.stderr[k] < 0.01 * _greeks("asian_call", N_SMALL, 0, "pathwise").stderr[k]
        assert abs(z2[k] - 1) < Z2_TOL, (k, z2)


def test_calibration_geometric_asian_exact():
    """Against the closed form of the geometric-average Asian call and its
    exact derivatives: likelihood-ratio and pathwise Greeks."""
    exact = geometric_asian_call(steps=12, greeks=True, **MARKET)
    for method in ("lr", "pathwise"):
        z2 = _mean_z2(lambda s: _greeks("geometric_asian_call", N_SMALL, s, method), exact)
        for k in exact:
            assert abs(z2[k] - 1) < Z2_TOL, (method, k, z2)


def test_calibration_digital_exact():
    """A discontinuous payoff: the digital call's likelihood-ratio delta,
    vega and gamma at 12 dates against Black-Scholes (its price and rho
    depend on W(T) alone, so they come out exact to rounding)."""
    exact = black_scholes("digital_call", **MARKET)
    z2 = _mean_z2(lambda s: _greeks("digital_call", N_SMALL, s),
                  {k: exact[k] for k in ("delta", "vega", "gamma")})
    for k, v in z2.items():
        assert abs(v - 1) < Z2_TOL, (k, z2)
    g = _greeks("digital_call", N_SMALL, 0)
    for k in ("price", "rho"):
        assert abs(getattr(g, k) - exact[k]) < 1e-12 * (1 + abs(exact[k]))


# -- every payoff, both methods, against plain Sobol' and exact values -------

PAYOFF_CASES = [("call", {}), ("put", {}), ("digital_call", {}), ("digital_put", {}),
                ("asian_call", {}), ("geometric_asian_call", {}),
                ("up_and_out_call", {"barrier": 130.0})]


@pytest.mark.parametrize("payoff,kw", PAYOFF_CASES)
@pytest.mark.parametrize("steps", [2, 12])
def test_agrees_with_plain_sobol(payoff, kw, steps):
    """Every estimator the run forms (both methods' alternatives) agrees with
    plain Sobol' from independent scramblings within 5 combined standard
    errors (a quantity exact to rounding compares on the plain stderr)."""
    a = _greeks(payoff, 32 * 2**10, 1, steps=steps, **kw)
    b = _greeks(payoff, 32 * 2**13, 2, steps=steps, preintegrate=False, **kw)
    assert set(a.alternatives) == set(b.alternatives)
    for meth, table in a.alternatives.items():
        for k, (v, se) in table.items():
            vb, seb = b.alternatives[meth][k]
            assert np.isfinite(v) and se >= 0
            assert abs(v - vb) < 5 * math.hypot(se, seb) + 1e-12 * abs(vb), (meth, k, v, vb)


@pytest.mark.parametrize("payoff", ["call", "put", "digital_call", "digital_put"])
def test_terminal_payoffs_one_step_are_exact(payoff):
    """With one date the payoff depends on W(T) alone: the integral over it
    is Black-Scholes, every Greek to rounding."""
    exact = black_scholes(payoff, **MARKET)
    g = _greeks(payoff, 64, 0, steps=1)
    for meth, table in g.alternatives.items():
        for k, (v, _) in table.items():
            assert abs(v - exact[k]) < 1e-10 * (1 + abs(exact[k])), (meth, k)


def test_up_and_out_two_dates_against_reference():
    ref = mc.finance.reference("up_and_out_call", steps=2, barrier=130.0, **MARKET)
    g = _greeks("up_and_out_call", 32 * 2**10, 3, steps=2, barrier=130.0)
    for k, v in ref.items():
        # the reference's own error is ~1e-6 of each Greek's scale
        assert abs(getattr(g, k) - v) < 5 * g.stderr[k] + 1e-5 * (1 + abs(v)), k


def test_gain_over_plain_sobol():
    """The arithmetic Asian's pathwise delta: at the same n the standard
    error is far below plain Sobol's (85 to 120 x at 32 x 2^12 paths)."""
    n = 32 * 2**12
    pre = _greeks("asian_call", n, 5, "pathwise")
    plain = _greeks("asian_call", n, 5, "pathwise", preintegrate=False)
    assert pre.stderr["delta"] < plain.stderr["delta"] / 10
    assert pre.stderr["price"] < plain.stderr["price"]


def test_asian_root_is_the_average_strike_crossing():
    rng = np.random.default_rng(0)
    logc = math.log(100.0) + 0.1 * rng.standard_normal((50, 12))
    b = 0.2 * np.arange(1, 13) / 12
    for log_k in (math.log(60.0), math.log(100.0), math.log(180.0)):
        z = FQ._asian_root(logc, b, log_k)
        avg = np.exp(logc + b * z[:, None]).mean(1)
        np.testing.assert_allclose(avg, math.exp(log_k), rtol=1e-12)


# -- the points of preintegrate=True --------------------------------------------

@pytest.mark.parametrize("d,k", [(12, 5), (2, 8), (5, 11)])
def test_scrambled_points_are_a_net(d, k):
    """2^k scrambled points: one in each interval of length 2^-k of every
    coordinate, one in each elementary box 2^-a x 2^-(k-a) of the first two
    (scrambling keeps the (0, k, 2)-net); chunks give the same points;
    every point in (0, 1); different seeds, different points."""
    m = 2**k
    dirs, shift = FQ.scrambled_directions(d, m, [np.random.default_rng(k)])
    u = FQ.sobol_block(dirs, shift, 0, m)
    assert u.shape == (m, d) and (u > 0).all() and (u < 1).all()
    for j in range(d):
        assert len(np.unique(np.floor(u[:, j] * m))) == m
    for a in range(k + 1):
        cells = np.floor(u[:, 0] * 2**a) * 2**(k - a) + np.floor(u[:, 1] * 2**(k - a))
        assert len(np.unique(cells)) == m
    parts = [FQ.sobol_block(dirs, shift, s, m // 4) for s in range(0, m, m // 4)]
    assert np.array_equal(np.concatenate(parts), u)
    other = FQ.sobol_block(*FQ.scrambled_directions(d, m, [np.random.default_rng(k + 1)]), 0, m)
    assert not np.array_equal(other, u)
    # several scramblings at once: each is the one made alone
    both = FQ.sobol_block(*FQ.scrambled_directions(
        d, m, [np.random.default_rng(k), np.random.default_rng(k + 1)]), 0, m)
    assert np.array_equal(both, np.concatenate([u, other]))


def test_scrambled_points_uniform_marginals():
    """Each point of a randomisation is uniform: the first point over 4000
    scramblings, a Kolmogorov-Smirnov test per coordinate."""
    from scipy import stats

    gens = [np.random.default_rng(s) for s in range(4000)]
    first = FQ.sobol_block(*FQ.scrambled_directions(3, 8, gens), 5, 1)
    for j in range(3):
        assert stats.kstest(first[:, j], "uniform").pvalue > 1e-3


@pytest.mark.parametrize("m", [16, 4096, 16384])
def test_randomisation_sums_do_not_depend_on_grouping(m):
    """The randomisations are worked in groups fixed by n and R (several per
    group at small m, chunks of one at large m): randomisation r's sums are
    the same whatever R is."""
    inputs = ("asian_call", 100.0, 100.0, 0.05, 0.2, 1.0, math.inf, 12)
    _, sd = FQ.Q.seeds(4, 7)
    a = FQ._run_preintegrated(inputs, 7, m, sd, 1, None)
    b = FQ._run_preintegrated(inputs, 3, m, sd[:3], 2, None)
    assert np.array_equal(a[:3], b)


# -- reproducibility and errors -----------------------------------------------

@pytest.mark.parametrize("method", ["lr", "pathwise"])
def test_bit_identical_any_thread_count(method):
    runs = [mc.finance.greeks("asian_call", n=32 * 256, steps=12, rng=7, method=method,
                              sampler="sobol", preintegrate=True, n_threads=t, **MARKET)
            for t in (1, 2)]
    for k in ("price", "delta", "vega", "rho", "gamma"):
        assert getattr(runs[0], k) == getattr(runs[1], k)
        assert runs[0].stderr[k] == runs[1].stderr[k]
    assert runs[0].alternatives == runs[1].alternatives


def test_dask_bit_identical():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=False, threads_per_worker=1,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        kw = dict(n=32 * 512, steps=12, rng=8, method="pathwise", sampler="sobol",
                  preintegrate=True, **MARKET)
        a = mc.finance.greeks("asian_call", **kw)
        b = mc.finance.greeks("asian_call", client=client, **kw)
        assert a.alternatives == b.alternatives


def test_default_is_unchanged():
    kw = dict(n=32 * 64, steps=12, rng=3, method="pathwise", sampler="sobol", **MARKET)
    a = mc.finance.greeks("asian_call", **kw)
    b = mc.finance.greeks("asian_call", preintegrate=False, **kw)
    assert a.alternatives == b.alternatives and a.info["preintegrate"] is False


def test_errors():
    with pytest.raises(ValueError, match="preintegrate=True applies only to sampler='sobol'"):
        mc.finance.greeks("asian_call", n=1000, steps=12, preintegrate=True, **MARKET)
    with pytest.raises(ValueError, match="preintegrate=True applies to the built-in"):
        mc.finance.greeks(lambda p: p[:, -1, 0], n=1024, steps=4, sampler="sobol",
                          preintegrate=True, **MARKET)
    with pytest.raises(TypeError, match="preintegrate must be True or False"):
        mc.finance.greeks("asian_call", n=1024, steps=12, sampler="sobol", preintegrate=1,
                          **MARKET)
    with pytest.raises(ValueError, match="does not apply to the discontinuous"):
        _greeks("digital_call", 1024, 0, "pathwise")


def test_direction_numbers_checked_against_scipys_points(monkeypatch):
    """The direction numbers come from scipy's private attribute; they are
    checked against scipy's own first points, and a scipy without them is an
    error that names the way out, never other points."""
    from scipy.stats import qmc

    from mcscore.finance import _qmc as fq

    fq._direction_numbers.cache_clear()
    v = fq._direction_numbers(5)
    pts = qmc.Sobol(5, scramble=False, bits=52).random(64) * 2.0**52
    assert np.array_equal(fq._gray_points(v, 64), pts.astype(np.uint64))

    class NoDirections(qmc.Sobol):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            del self._sv

    monkeypatch.setattr(qmc, "Sobol", NoDirections)
    fq._direction_numbers.cache_clear()
    with pytest.raises(RuntimeError, match="preintegrate=False"):
        fq._direction_numbers(5)
    fq._direction_numbers.cache_clear()
