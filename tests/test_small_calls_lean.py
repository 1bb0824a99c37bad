"""Lean small calls: score_grad's cache of prepared calls does not keep f
alive, and a dead f's cache entry is never used for a new f."""
import gc
import weakref

import numpy as np

import mcscore as mc
from mcscore import prepared as PR
from mcscore import integrands as I
from _exact import assert_same_estimate


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
