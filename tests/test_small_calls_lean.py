"""Lean small calls: score_grad's cache of prepared calls does not keep f
alive, and a dead f's cache entry is never used for a new f."""
import gc
import weakref

import numpy as np
import pytest

import mcscore as mc
from mcscore import prepared as PR
from mcscore import integrands as I
from _exact import assert_same_estimate
from test_small_calls import _engine_reference  # the general pieces, no cache


def _normal(d=3):
    return mc.Normal(np.linspace(-1.0, 1.0, d), np.linspace(0.5, 1.5, d))


def _sq(x):
    return (x * x).sum(axis=1)


def _reference(f, n, seed):
    """score_grad's estimate with its cache of prepared calls emptied."""
    PR._PREPARED.clear()
    return mc.score_grad(f, _normal(), n, rng=seed)


def test_score_grad_cache_does_not_keep_f_alive():
    PR._PREPARED.clear()

    def make():
        def f(x):
            return _sq(x) + 1.0
        return f

    for factory in (make, I.sum_of_squares):
        f = factory()
        mc.score_grad(f, _normal(), 100, rng=0)
        assert any(p.f is f for p in PR._PREPARED.values())  # cached ...
        ref = weakref.ref(f)
        del f
        gc.collect()
        assert ref() is None  # ... but not kept alive by the cache
        assert all(p.f is not None for p in PR._PREPARED.values())  # its entry is gone


def test_a_dead_f_entry_is_never_matched():
    """Functions made and dropped in a loop (their ids are often reused):
    each call gives its own f's estimate, bit for bit."""
    for c in range(8):
        def f(x, c=c):
            return _sq(x) * (1.0 + c)
        got = mc.score_grad(f, _normal(), 100, rng=5)
        assert_same_estimate(got, _reference(f, 100, 5))
        del f
        gc.collect()
    assert len(PR._PREPARED) <= PR._PREPARED_MAX


def test_f_without_weak_references_still_works():
    """An f that cannot be weakly referenced (a builtin-like callable) is
    run without being cached, with the same result."""
    class NoWeak:
        __slots__ = ()

        def __call__(self, x):
            return _sq(x)
    g = NoWeak()
    PR._PREPARED.clear()
    a = mc.score_grad(g, _normal(), 100, rng=2)
    assert not PR._PREPARED
    b = mc.score_grad(_sq, _normal(), 100, rng=2)
    assert_same_estimate(a, b)


# ---------------------------------------------------------------------------
# the lean renewal of Normal / LogNormal kernels (prepared.lean_dist)
# ---------------------------------------------------------------------------

def _counting(monkeypatch):
    """Count the calls that the lean renewal served."""
    hits = {"dist": 0, "kernel": 0}
    lean_dist, lean_kernel = PR.lean_dist, PR.lean_kernel

    def counted_dist(*a):
        out = lean_dist(*a)
        hits["dist"] += out is not None
        return out

    def counted_kernel(*a):
        out = lean_kernel(*a)
        hits["kernel"] += out is not None
        return out

    monkeypatch.setattr(PR, "lean_dist", counted_dist)
    monkeypatch.setattr(PR, "lean_kernel", counted_kernel)
    return hits


@pytest.mark.parametrize("family", [mc.Normal, mc.LogNormal])
@pytest.mark.parametrize("shape", [(), (1,), (5,), (2, 3)])
@pytest.mark.parametrize("baseline", [None, 0.25, "loo", "optimal"])
def test_lean_calls_give_the_general_bits(monkeypatch, family, shape, baseline):
    hits = _counting(monkeypatch)
    rs = np.random.default_rng(3)
    f = _sq_any if family is mc.Normal else _log_any
    for n in (2, 100, 1000):
        est = mc.Estimator(family, f, n, rng=4, baseline=baseline)
        fused = mc.Estimator(family, I.sum_of_squares(), n, rng=4, baseline=baseline)
        for step in range(3):
            loc = np.asarray(rs.normal(size=shape) * 0.3)
            scale = np.asarray(rs.uniform(0.2, 1.0, size=shape))
            calls = [(lambda: est(loc=loc, scale=scale), f),
                     (lambda: mc.score_grad(f, family(loc, scale), n, rng=4, baseline=baseline),
                      f),
                     (lambda: fused(loc=loc, scale=scale), I.sum_of_squares())]
            for call, g in calls:
                want = _general_error(lambda: _engine_reference(g, family(loc, scale), n, 4,
                                                                baseline))
                if want is not None:  # "optimal" needs 2 streams: the same error
                    assert _general_error(call) == want
                    continue
                got = call()
                assert_same_estimate(got, _engine_reference(g, family(loc, scale), n, 4,
                                                            baseline))
                assert got.info["f"] == ("python" if g is f else "integrand")
    assert hits["dist"] > 0 and hits["kernel"] > 0


def _sq_any(x):
    return (x * x).reshape(len(x), -1).sum(axis=1)


def _log_any(x):
    return np.log(x).reshape(len(x), -1).sum(axis=1) ** 2


def test_lean_distribution_is_the_general_one(monkeypatch):
    """What lean_dist builds: the same parameters (read-only copies), batch
    shape, score table and coordinate slices as family(loc, scale) with
    its kernel built."""
    loc, scale = np.array([0.5, -1.0, 2.0]), np.array([1.0, 0.3, 2.5])
    est = mc.Estimator(mc.Normal, _sq, 10, rng=0)
    est(loc=loc * 2, scale=scale * 2)  # the shape seen once: the template
    dist, kd, key = PR.lean_dist(mc.Normal, loc, scale)
    ref = mc.Normal(loc, scale)
    ref._kernel_dist()
    assert type(dist) is mc.Normal and dist.batch_shape == ref.batch_shape
    assert dist.__dict__.keys() == ref.__dict__.keys()
    for name in ("loc", "scale"):
        p = dist._params[name]
        assert p.dtype == np.float64 and not p.flags.writeable and p.flags.c_contiguous
        assert np.array_equal(p, ref._params[name])
        assert p is not (loc if name == "loc" else scale)  # a copy
    for k, v in ref._table.items():
        assert np.array_equal(dist._table[k], v), k
        assert np.array_equal(np.signbit(dist._table[k]), np.signbit(v)), k
    assert dist._coord_slices == ref._coord_slices
    assert kd.draw_size == 3 and kd.n_coords == 6 and key == PR.shape_key(ref, ref._kernel)
    loc[0] = 100.0  # the caller's array changes: the distribution does not
    assert dist.loc[0] == 0.5


def _general_error(call):
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - compared below
        return type(exc), str(exc)
    return None


@pytest.mark.parametrize("family", [mc.Normal, mc.LogNormal])
def test_lean_path_keeps_every_guard(monkeypatch, family):
    """Once the lean renewal serves the shape, bad parameters give the
    general path's error (type and message), and inputs it does not take
    (lists, float32, strided arrays, other shapes) the general result."""
    hits = _counting(monkeypatch)
    est = mc.Estimator(family, _sq_any, 100, rng=1)
    good = dict(loc=np.zeros(2), scale=np.ones(2))
    est(**good)
    mc.score_grad(_sq_any, family(**good), 100, rng=1)
    bad = [dict(loc=np.array([0.0, np.nan]), scale=np.ones(2)),
           dict(loc=np.array([0.0, np.inf]), scale=np.ones(2)),
           dict(loc=np.zeros(2), scale=np.array([1.0, -1.0])),
           dict(loc=np.zeros(2), scale=np.array([1.0, 0.0])),
           dict(loc=np.zeros(2), scale=np.array([np.inf, 1.0])),
           dict(loc=np.zeros(2), scale=np.array([np.nan, 1.0])),
           dict(loc=np.zeros(2), scale=np.array([1e-120, 1.0])),
           dict(loc=np.zeros(2), scale=np.array([1e120, 1.0])),
           dict(loc=np.array([1e6, 0.0]), scale=np.array([1e-9, 1.0])),
           dict(loc=np.array([0.5, 0.0]), scale=np.array([1e-13, 1.0])),
           dict(loc=np.array([True, False]), scale=np.ones(2)),
           dict(loc=np.zeros(3), scale=np.ones(2))]
    for p in bad:
        for call in (lambda: est(**p), lambda: mc.score_grad(_sq_any, family(**p), 100, rng=1)):
            got = _general_error(call)
            assert got is not None, p
            monkeypatch.setitem(PR._LEAN_FAMILIES, family, False)  # the general path alone
            want = _general_error(lambda: mc.score_grad(_sq_any, family(**p), 100, rng=1))
            monkeypatch.setitem(PR._LEAN_FAMILIES, family, True)
            assert got == want, p
    served = hits["dist"] + hits["kernel"]
    others = [dict(loc=[0.1, 0.2], scale=[1.0, 2.0]),
              dict(loc=np.zeros(2, np.float32), scale=np.ones(2, np.float32)),
              dict(loc=np.zeros(4)[::2], scale=np.ones(4)[::2]),
              dict(loc=np.zeros(2).astype(">f8"), scale=np.ones(2)),
              dict(loc=np.zeros((2, 1)), scale=np.ones((2, 1))),
              dict(loc=0.3, scale=1.5),
              dict(loc=_ListShaped(), scale=np.ones(2))]
    for p in others:
        got = est(**p)
        assert_same_estimate(got, _engine_reference(_sq_any, family(**p), 100, 1, None))
    assert hits["dist"] + hits["kernel"] == served  # none of those took the lean path


class _ListShaped:
    """An array-like whose shape attribute is a list (not hashable)."""

    shape = [2]

    def __array__(self, dtype=None, copy=None):
        return np.array([0.25, -0.5])


def test_lean_renewal_needs_normals_own_code():
    """A subclass that changes the score terms or the checks is never
    renewed by the lean path (it would repeat Normal's arithmetic)."""
    class Shifted(mc.Normal):
        def _terms(self):
            return super()._terms()

    class Checked(mc.Normal):
        def _check_differentiable(self):
            raise ValueError("Checked: never differentiable")

    assert PR.lean_family(mc.Normal) and PR.lean_family(mc.LogNormal)
    assert not PR.lean_family(Shifted) and not PR.lean_family(Checked)
    assert not PR.lean_family(mc.Laplace) and not PR.lean_family(mc.Gamma)
    est = mc.Estimator(Checked, _sq, 100, rng=0)
    for _ in range(2):
        with pytest.raises(ValueError, match="never differentiable"):
            est(loc=np.zeros(2), scale=np.ones(2))
        with pytest.raises(ValueError, match="never differentiable"):
            mc.score_grad(_sq, Checked(np.zeros(2), np.ones(2)), 100, rng=0)


def test_lean_estimate_is_accurate():
    """The lean path's estimate against the exact gradient of E[sum x^2] =
    sum loc^2 + scale^2 (2 loc, 2 scale), within 5 standard errors."""
    loc, scale = np.linspace(-1.0, 1.0, 5), np.linspace(0.5, 1.5, 5)
    est = mc.Estimator(mc.Normal, _sq, 20_000, rng=9)
    est(loc=loc + 1.0, scale=scale)
    res = est(loc=loc, scale=scale)
    for name, exact in (("loc", 2 * loc), ("scale", 2 * scale)):
        assert np.all(np.abs(res.grad[name] - exact) < 5 * res.stderr[name]), name


def test_one_round_refuses_buffers_of_the_wrong_kind():
    """K.one_round (draw, evaluate, accumulate of a prepared one-round call)
    checks its buffers before it touches them."""
    from mcscore import _kernels as K
    d = _normal(3)
    kd = d._kernel_dist()
    bg = [np.random.PCG64(0)]
    blocks = np.zeros(1, np.int64)
    xt, rows = np.empty((1, 3 * 8)), np.empty((8, 3))
    fx, stats, shifts = np.empty((1, 8)), np.zeros((1, kd.stats_len)), np.zeros(1)
    calls = []
    good = (xt, None, rows, blocks, fx, stats, shifts)
    assert K.one_round(kd, bg, blocks, blocks, 8, 8, 64, 1, *good[:3], blocks, *good[4:],
                       lambda: calls.append(fx.fill(1.0))) == -1
    assert len(calls) == 1 and stats[0, 0] == 8
    for bad in (dict(xt=np.empty((1, 3 * 4))), dict(rows=np.empty((4, 3))),
                dict(xt=np.empty((1, 3 * 8), np.float32)), dict(stats=np.zeros((1, 2))),
                dict(blocks=np.ones(1, np.int64)), dict(blocks=np.zeros(1, np.int32)),
                dict(fx=np.empty((1, 4)))):
        a = dict(xt=xt, rows=rows, blocks=blocks, fx=fx, stats=stats)
        a.update(bad)
        with pytest.raises(ValueError, match="one_round"):
            K.one_round(kd, bg, a["blocks"], blocks, 8, 8, 64, 1, a["xt"], None, a["rows"],
                        blocks, a["fx"], a["stats"], shifts, lambda: None)
