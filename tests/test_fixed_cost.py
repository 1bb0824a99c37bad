"""The small calls' fixed cost: the fast path of parameter checking
(V.fast_param, check()) gives what the general path gives, array for array,
and leaves every refusal to it; K.score_totals gives the values of the
separate calls it replaces, bit for bit."""
import math

import numpy as np
import pytest

import mcscore as mc
from mcscore import _kernels as K
from mcscore import _validation as V

CONSTRAINTS = sorted(V._CONSTRAINTS)

_SCALARS = [0.0, -0.0, 0.5, 1.0, 1.5, -1.0, 3.0, 1e-320, 1.7e308, -1.7e308, 2.0**62,
            2.0**62 - 1024.0, 2.0**53 + 2.0, float("nan"), float("inf"), -float("inf"),
            np.float64(0.25), np.float64(2.0), 0, 1, 7, -3, 2**53, -2**53, 2**53 + 1, 10**30]


def _arrays():
    rng = np.random.default_rng(4)
    out = []
    for v in _SCALARS:
        if isinstance(v, float):
            out.append(np.array(v))
            out.append(np.array([0.5, v, 1.0]))
    out += [np.linspace(0.1, 0.9, 5), np.zeros(0), np.zeros((0, 3)),
            np.asfortranarray(np.linspace(0.1, 0.9, 12).reshape(3, 4)),
            np.linspace(0.1, 0.9, 10)[::2], np.linspace(0.1, 0.9, 5)[::-1],
            np.linspace(0.1, 0.9, 6).reshape(3, 1, 2), np.arange(6.0).reshape(2, 3),
            np.linspace(0.0, 1.0, V._FAST_SIZE), np.linspace(0.0, 1.0, V._FAST_SIZE + 1),
            rng.uniform(-1, 2, 20), rng.integers(0, 5, 20).astype(float), np.full(4, 1e308)]
    return out


def _general(value, constraint):
    """The general path: check(as_real_array(...)), or the error it raises."""
    try:
        return V.check("x", V.as_real_array("x", value), constraint)
    except (TypeError, ValueError) as exc:
        return exc


@pytest.mark.parametrize("constraint", CONSTRAINTS)
def test_fast_param_is_the_general_path_or_nothing(constraint):
    for value in _SCALARS + _arrays():
        fast = V.fast_param(value, constraint)
        ref = _general(value, constraint)
        if isinstance(ref, Exception):
            assert fast is None, (value, constraint)  # the refusal is the general path's
            continue
        if fast is None:  # allowed (outside the fast path), never for the common inputs
            assert not (type(value) in (float, np.float64) or (
                type(value) is np.ndarray and value.size <= V._FAST_SIZE)), (value, constraint)
            continue
        assert fast.dtype == np.float64 and fast.shape == ref.shape
        assert fast.strides == ref.strides
        assert fast.tobytes() == ref.tobytes()
        assert not fast.flags.writeable
        if isinstance(value, np.ndarray):
            assert not np.shares_memory(fast, value)  # a copy, as the general path's


def test_param_refusals_keep_their_messages():
    with pytest.raises(ValueError, match=r"^Normal: loc must be a finite real number "
                                         r"\(got np\.float64\(nan\) at index \(1,\)\)$"):
        mc.Normal(np.array([0.0, np.nan, 1.0]), 1.0)
    with pytest.raises(ValueError, match=r"^Normal: scale must be > 0 and finite "
                                         r"\(got np\.float64\(-0\.0\)\)$"):
        mc.Normal(0.0, -0.0)
    with pytest.raises(ValueError, match=r"^Gamma: rate must be > 0 and finite "
                                         r"\(got np\.float64\(inf\) at index \(0, 1\)\)$"):
        mc.Gamma(1.0, np.array([[1.0, np.inf]]))
    with pytest.raises(ValueError, match=r"^Bernoulli: probs must be in \[0, 1\]"):
        mc.Bernoulli(probs=np.array([0.5, 1.5]))
    with pytest.raises(TypeError, match="loc must be real numbers, got booleans"):
        mc.Normal(True, 1.0)
    with pytest.raises(TypeError, match="must be a plain array, got a numpy masked array"):
        mc.Normal(np.ma.masked_array([1.0, 2.0], mask=[0, 1]), 1.0)
    with pytest.raises(ValueError, match="parameter shapes do not broadcast"):
        mc.Normal(np.zeros(3), np.ones(2))
    with pytest.raises(ValueError, match="at least 1 dimension"):
        mc.Dirichlet(2.0)


def test_parameters_are_read_only_copies():
    loc = np.linspace(-1.0, 1.0, 5)
    q = mc.Normal(loc, 2)
    assert not q.loc.flags.writeable and not np.shares_memory(q.loc, loc)
    loc[0] = 99.0
    assert q.loc[0] == -1.0
    assert q.scale.dtype == np.float64 and q.scale.shape == () and float(q.scale) == 2.0
    assert q.batch_shape == (5,)
    assert mc.Normal(np.zeros((2, 1)), np.ones(3)).batch_shape == (2, 3)


def test_check_fast_path_sets_read_only_and_refuses_as_before():
    a = np.array([0.5, 0.25])
    assert V.check("x", a, "unit_interval") is a and not a.flags.writeable
    b = np.array([0.5, 2.0])
    with pytest.raises(ValueError, match=r"^x must be in \[0, 1\] \(got np\.float64\(2\.0\) "
                                         r"at index \(1,\)\)$"):
        V.check("x", b, "unit_interval")


def _stats(rng, S, P, bad=None):
    stats = rng.normal(size=(S, 3 + 5 * P))
    stats[:, 0] = rng.integers(0, 4, S)
    stats[:, 2] = np.abs(stats[:, 2])
    if bad is not None:
        stats.flat[rng.integers(stats.size)] = bad
    return stats, rng.normal(size=S)


@pytest.mark.parametrize("mode,b", [(0, 0.0), (1, 0.0), (2, 0.75)])
def test_score_totals_is_the_separate_calls_bit_for_bit(mode, b):
    rng = np.random.default_rng(11)
    for trial in range(300):
        S, P = int(rng.integers(1, 6)), int(rng.integers(0, 7))
        bad = [None, np.nan, np.inf, -np.inf, 1e300][trial % 5]
        stats, shifts = _stats(rng, S, P, bad)
        c0, n, G, H, M = K.stream_totals(stats, shifts, P)
        grad, se, var, value, vvar, q = K.totals_algebra(M, c0, n, G, H, mode, b)
        with np.errstate(all="ignore"):
            big = float(np.maximum.reduce(np.abs(M), axis=None)) if M.size else 0.0
        got = K.score_totals(stats, shifts, P, mode, b)
        want = (c0, n, G, H, big, grad, se, var, value, vvar)
        for g, w in zip(got[:10], want):
            assert np.asarray(g).tobytes() == np.asarray(w).tobytes()
        if P:
            for g, w in zip(got[10:], (np.minimum.reduce(q), np.maximum.reduce(q))):
                assert np.asarray(g).tobytes() == np.asarray(float(w)).tobytes() or (
                    math.isnan(g) and math.isnan(w))


def test_small_call_result_matches_the_general_finish():
    """The owned finish of a small call: the result finish_score builds."""
    from mcscore import _algebra as A
    from mcscore import prepared as PR

    seen = {}
    orig = A.finish_score_owned

    def spy(dist, kd, stats, shifts, baseline, info, split):
        seen["args"] = (dist, kd, stats.copy(), shifts.copy(), baseline, dict(info))
        return orig(dist, kd, stats, shifts, baseline, info, split)

    q = mc.Normal(np.linspace(-1.0, 1.0, 5), np.linspace(0.5, 1.5, 5))
    PR.A.finish_score_owned = spy
    try:
        got = mc.score_grad(lambda x: (x * x).sum(axis=1), q, 400, rng=3, baseline="loo",
                           block_size=50)
    finally:
        PR.A.finish_score_owned = orig
    ref = A.finish_score(*seen["args"])
    for k in ("grad", "stderr", "variance"):
        for name in ("loc", "scale"):
            assert getattr(got, k)[name].tobytes() == getattr(ref, k)[name].tobytes()
    assert (got.value, got.value_stderr, got.value_variance, got.n) == (
        ref.value, ref.value_stderr, ref.value_variance, ref.n)
    assert got.cov.tobytes() == ref.cov.tobytes()
    assert repr(got) == repr(ref)


@pytest.mark.parametrize("family", [mc.Categorical, mc.OneHotCategorical])
def test_simplex_sums_refused_as_before(family):
    name = family.__name__
    with pytest.raises(ValueError, match=f"^{name}: probs must have a positive sum"):
        family(probs=np.zeros(3))
    with pytest.raises(ValueError, match=f"^{name}: probs must have a finite sum"):
        family(probs=np.array([1.7e308, 1.7e308]))
    with pytest.raises(ValueError, match=f"^{name}: probs must have a positive sum"):
        family(probs=np.array([[0.5, 0.5], [0.0, 0.0]]))
    with pytest.raises(ValueError, match=f"^{name}: probs must have a positive sum"):
        family(probs=np.zeros(0))
    q = family(probs=np.full(3, 1e300))  # a large but finite sum
    assert np.allclose(q.probs, 1.0 / 3.0)
    assert family(probs=np.array([0.0, 0.0, 5e-324])).probs[-1] == 1.0
