"""The cache of score-table structures (distributions/_base.py): distributions
of one family and shapes share the structure and keep their own
coefficients; results equal, bit for bit, those built with the cache
cleared; different shapes do not collide; threads building at once agree."""
import threading

import numpy as np

import mcscore as mc
from mcscore.distributions import _base as B
from _exact import assert_same_estimate


def f_sq(x):
    return (np.asarray(x, float).reshape(len(x), -1) ** 2).sum(1)


def f_id(x):
    return np.asarray(x, float).reshape(len(x), -1).sum(1)


def _within_5se(res, exact):
    for k, g in exact.items():
        z = (res.grad[k] - g) / res.stderr[k]
        assert np.all(np.abs(z) < 5), (k, z)


def _uncached(make, *args):
    """make(*args) computed on a freshly built structure."""
    B.clear_kernel_cache()
    return make(*args)


def test_same_shapes_different_parameters_keep_their_own_results():
    params = [(np.array([0.3, -1.0, 2.0]), np.array([0.5, 1.5, 0.8])),
              (np.array([-2.0, 0.1, 0.7]), np.array([2.0, 0.3, 1.1]))]

    def run(loc, scale):
        return mc.score_grad(f_sq, mc.Normal(loc, scale), 40_000, rng=7)

    B.clear_kernel_cache()
    # one after the other, the second reusing the first's structure
    cached = [run(*p) for p in params]
    for (loc, scale), res in zip(params, cached):
        _within_5se(res, {"loc": 2 * loc, "scale": 2 * scale})
    for p, res in zip(params, cached):
        assert_same_estimate(res, _uncached(run, *p))
    # and in the other order
    for p, res in zip(params[::-1], [run(*p) for p in params[::-1]]):
        assert_same_estimate(res, _uncached(run, *p))


def test_discrete_family_parameters_change_between_builds():
    def run(rate):
        return mc.score_grad(f_id, mc.Poisson(rate), 40_000, rng=3)

    B.clear_kernel_cache()
    rates = [np.array([0.5, 3.0]), np.array([7.0, 1.2])]
    out = [run(r) for r in rates]
    for r, res in zip(rates, out):
        _within_5se(res, {"rate": np.ones_like(r)})  # d/drate E[x] = 1
        assert_same_estimate(res, _uncached(run, r))


def test_different_shapes_do_not_collide():
    x = np.random.default_rng(0).normal(size=(50, 2, 3))
    cases = [
        (np.zeros(3), np.ones(3)),
        (np.zeros((2, 3)), np.ones((2, 3))),
        (0.0, np.ones((2, 3))),              # loc broadcast onto the batch
        (np.zeros((2, 1)), np.ones(3)),      # both broadcast
        (0.5, 2.0),
    ]
    B.clear_kernel_cache()
    for loc, scale in cases * 2:  # the second round reads the cache
        q = mc.Normal(np.asarray(loc, float) + 0.25, np.asarray(scale, float) * 1.5)
        xs = x[:, : q.batch_shape[0], : q.batch_shape[1]] if len(q.batch_shape) == 2 else (
            x[:, 0, : q.batch_shape[0]] if q.batch_shape else x[:, 0, 0])
        s = q.score(xs)
        assert s["loc"].shape == (50,) + np.shape(loc)
        assert s["scale"].shape == (50,) + np.shape(scale)
        # the score summed over the coordinates each parameter broadcasts onto
        z = (xs - q.loc) / q.scale
        for name, per in (("loc", z / q.scale), ("scale", (z * z - 1) / q.scale)):
            shape = np.shape(q.params[name])
            lead = per.ndim - len(shape)
            axes = tuple(range(1, lead)) + tuple(
                lead + i for i, n in enumerate(shape) if n == 1 and per.shape[lead + i] != 1)
            want = per.sum(axis=axes, keepdims=True).reshape((50,) + shape) if axes else per
            assert np.allclose(s[name], want, rtol=1e-12, atol=1e-12), name


def test_families_of_equal_shapes_do_not_collide():
    x = np.random.default_rng(1).uniform(0.1, 3.0, size=(20, 4))
    B.clear_kernel_cache()
    for _ in range(2):
        for q in (mc.Normal(np.ones(4), np.ones(4)), mc.LogNormal(np.ones(4), np.ones(4)),
                  mc.Gamma(np.full(4, 2.0), np.ones(4))):
            got = q.score(x)
            B.clear_kernel_cache()
            fresh = type(q)(*q.params.values()).score(x)
            for k in fresh:
                assert np.array_equal(got[k], fresh[k]), (type(q).__name__, k)


def test_threads_building_at_once_agree():
    rng = np.random.default_rng(2)
    locs = rng.normal(size=(16, 7))
    scales = rng.uniform(0.5, 2.0, size=(16, 7))
    x = rng.normal(size=(30, 7))
    B.clear_kernel_cache()
    want = [mc.Normal(l, s).score(x) for l, s in zip(locs, scales)]
    for _ in range(3):
        B.clear_kernel_cache()
        got = [None] * len(locs)
        barrier = threading.Barrier(len(locs))

        def work(i):
            q = mc.Normal(locs[i], scales[i])
            barrier.wait()
            got[i] = q.score(x)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(locs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for w, g in zip(want, got):
            for k in w:
                assert np.array_equal(w[k], g[k])


def test_tables_are_the_distributions_own():
    """A distribution's table is writable and its own: changing it does not
    reach the cached structure or another distribution."""
    B.clear_kernel_cache()
    q1, q2 = mc.Normal(np.zeros(3), np.ones(3)), mc.Normal(np.ones(3), np.ones(3))
    q1._kernel_dist()
    q2._kernel_dist()
    for key in ("col", "kind", "t_start"):
        assert q1._table[key].flags.writeable
        assert not np.shares_memory(q1._table[key], q2._table[key])
    assert not np.array_equal(q1._table["b"], q2._table["b"])


class _ExplicitNormal(mc.Normal):
    """Normal whose score terms are given as explicit term lists (elem, col):
    the uncached build, which must agree with the broadcast rows."""

    def _terms(self):
        size = self.draw_size
        elem = np.arange(size)
        return [row + (elem, elem) for row in super()._terms()]


def test_explicit_term_lists_take_the_uncached_build():
    x = np.random.default_rng(4).normal(size=(40, 6))
    B.clear_kernel_cache()
    for loc in (np.zeros(6), np.linspace(-1, 1, 6)):
        scale = np.linspace(0.5, 2.0, 6)
        want = mc.Normal(loc, scale).score(x)
        got = _ExplicitNormal(loc, scale).score(x)
        for k in want:
            assert np.array_equal(want[k], got[k]), k
    # only the broadcast rows' structure was cached
    assert all(key[0] is mc.Normal for key in B._STRUCTURES)
