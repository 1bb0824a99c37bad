"""Small calls (n = 2 .. 10**4): the caches and fast paths of the engine give
the same results as the general code, bit for bit, and stay correct when a
parameter changes, when threads share them, and on bad input."""
import threading

import numpy as np
import pytest

import mcscore as mc
from mcscore import _algebra as A
from mcscore import _engine as E
from mcscore import _rounds as R
from _exact import assert_same_estimate


def f_sq(x):
    x = np.asarray(x, float)
    return (x.reshape(len(x), -1) ** 2).sum(1)


def _normal(loc, scale):
    return mc.Normal(np.asarray(loc, float), np.asarray(scale, float))


def _exact_sq(loc, scale):
    """d/dloc, d/dscale of E[sum x^2] = sum loc^2 + scale^2."""
    return {"loc": 2 * np.asarray(loc, float), "scale": 2 * np.asarray(scale, float)}


def _clear_caches():
    R._ROOT_STATES.clear()
    R._PLAN_SHAPES.clear()
    for d in list(E._DIFFERENTIABLE):
        E._DIFFERENTIABLE.discard(d)


@pytest.mark.parametrize("n", [2, 100, 1000, 5003])
def test_changed_parameter_after_cached_call_gives_new_result(n):
    loc1, scale1 = [0.5, -1.0, 0.2], [1.0, 2.0, 0.7]
    loc2, scale2 = [1.5, 0.3, -0.4], [0.6, 1.1, 1.9]
    r1 = mc.score_grad(f_sq, _normal(loc1, scale1), n, rng=3)
    r2 = mc.score_grad(f_sq, _normal(loc2, scale2), n, rng=3)  # seed, plan cached
    _clear_caches()
    fresh = mc.score_grad(f_sq, _normal(loc2, scale2), n, rng=3)
    assert_same_estimate(r2, fresh)
    assert not np.array_equal(r1.grad["loc"], r2.grad["loc"])
    if n >= 1000:  # against the exact gradient, within 5 standard errors
        for r, (loc, scale) in ((r1, (loc1, scale1)), (r2, (loc2, scale2))):
            for k, v in _exact_sq(loc, scale).items():
                assert np.all(np.abs(r.grad[k] - v) < 5 * r.stderr[k]), (k, r.grad[k], v)


def test_differentiability_failure_is_not_cached():
    bad = _normal([0.0], [1e-120])
    for _ in range(3):
        with pytest.raises(ValueError, match="scale must be in"):
            mc.score_grad(f_sq, bad, 100, rng=0)
    assert bad not in E._DIFFERENTIABLE


def test_plan_cache_keeps_the_argument_checks():
    d = _normal([0.1], [1.0])
    mc.score_grad(f_sq, d, 100, rng=0)  # caches the plan of n=100
    with pytest.raises(TypeError, match="n must be an integer"):
        mc.score_grad(f_sq, d, 100.0, rng=0)
    with pytest.raises(TypeError, match="n must be an integer"):
        mc.score_grad(f_sq, d, True, rng=0)
    with pytest.raises(ValueError, match="n must be >= 2"):
        mc.score_grad(f_sq, d, 1, rng=0)
    with pytest.raises(ValueError, match="n_streams must be >= 1"):
        mc.score_grad(f_sq, d, 100, rng=0, n_streams=0)
    with pytest.raises(ValueError, match="rng must be a non-negative int seed"):
        mc.score_grad(f_sq, d, 100, rng=-1)
    # numpy integers are accepted and give the Python int's result
    assert_same_estimate(mc.score_grad(f_sq, d, np.int64(100), rng=np.int64(5), n_streams=np.int32(64)),
          mc.score_grad(f_sq, d, 100, rng=5))


def test_int_seed_equals_its_seed_sequence_and_info():
    d = _normal([0.1, 0.2], [1.0, 0.5])
    a = mc.score_grad(f_sq, d, 1000, rng=11)
    b = mc.score_grad(f_sq, d, 1000, rng=np.random.SeedSequence(11))
    assert_same_estimate(a, b)
    assert a.info["entropy"] == 11 and a.info["spawn_key"] == ()
    assert b.info["entropy"] == 11 and b.info["spawn_key"] == ()
    # spawned children with the same entropy are other streams
    c = mc.score_grad(f_sq, d, 1000, rng=np.random.SeedSequence(11, spawn_key=(1,)))
    assert not np.array_equal(a.grad["loc"], c.grad["loc"])


def test_root_state_cache_overflow_and_streams():
    d = _normal([0.3], [1.2])
    first = {s: mc.score_grad(f_sq, d, 3000, rng=s) for s in range(5)}
    for s in range(5, R._ROOT_STATES_MAX + 40):  # more seeds than the cache holds
        mc.score_grad(f_sq, d, 100, rng=s)
    assert len(R._ROOT_STATES) <= R._ROOT_STATES_MAX
    for s, r in first.items():
        assert_same_estimate(r, mc.score_grad(f_sq, d, 3000, rng=s))
    # every stream's generator is PCG64(root) jumped s times
    root = np.random.SeedSequence(7)
    gens = R.stream_bit_generators(None, [3, 0, 1], seed=7)
    for s, g in zip([3, 0, 1], gens):
        ref = np.random.PCG64(root).jumped(s) if s else np.random.PCG64(root)
        assert g.state == ref.state
    assert [g.state for g in R.stream_bit_generators(root, [2, 5])] == [
        np.random.PCG64(root).jumped(2).state, np.random.PCG64(root).jumped(5).state]


def test_caches_are_thread_safe():
    dists = [_normal(np.linspace(-1, 1, k), np.linspace(0.5, 1.5, k)) for k in (1, 3, 5)]
    jobs = [(d, n, seed) for d in dists for n in (2, 100, 1000) for seed in range(6)]
    _clear_caches()
    serial = [mc.score_grad(f_sq, d, n, rng=seed, n_threads=1) for d, n, seed in jobs]
    _clear_caches()
    out = [None] * len(jobs)
    errors = []
    barrier = threading.Barrier(6)

    def work(k):
        try:
            barrier.wait()
            for i in range(k, len(jobs), 6):
                d, n, seed = jobs[i]
                out[i] = mc.score_grad(f_sq, d, n, rng=seed, n_threads=1)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for a, b in zip(serial, out):
        assert_same_estimate(a, b)


def _gather_loop(rd, buf, W, region=0):
    out = np.empty((rd.total, W))
    o = 0
    for r, m in enumerate(rd.rows):
        out[o: o + m] = buf[r, region * W * m: (region + 1) * W * m].reshape(W, m).T
        o += m
    return out


@pytest.mark.parametrize("n,B,S,W", [(100, 256, 64, 5), (1000, 256, 64, 3), (1000, 7, 3, 1),
                                     (512, 256, 64, 2), (10, 3, 2, 4), (9, 3, 2, 4)])
def test_gather_equals_the_block_loop(n, B, S, W):
    plan = R.Plan(n, W, 0, S, B, 1)
    rng = np.random.default_rng(1)
    nb = plan.n_blocks
    for blocks, consecutive in ((np.arange(nb, dtype=np.int64), True),
                                (np.arange(nb, dtype=np.int64)[::-1].copy(), False),
                                (np.arange(0, nb, 2, dtype=np.int64), False)):
        rd = R.Round(plan, blocks, blocks % S, consecutive)
        buf = rng.normal(size=(len(blocks), 2 * W * B))
        for region in (0, 1):
            got = rd.gather(buf, W, region)
            assert got.flags.c_contiguous and not np.shares_memory(got, buf)
            assert np.array_equal(got, _gather_loop(rd, buf, W, region))


@pytest.mark.parametrize("offset", [0.0, 3.0, 1e70, -1e200])
@pytest.mark.parametrize("baseline", [None, 0.5, 1e65, "loo"])
def test_totals_fast_path_equals_general_algebra(offset, baseline):
    d = _normal([0.5, -1.0], [1.0, 2.0])
    kd = d._kernel_dist()
    plan = R.Plan(3000, kd.draw_size, 4, 64, None, 1)
    stats, shifts = R.run_job(E.ScoreJob(lambda x: offset + f_sq(x), d), plan)[:2]
    with np.errstate(over="ignore", invalid="ignore"):
        c0, count, G, H, mom = A.moments_total(d, kd, stats, shifts)
        ref = A.baseline_algebra(c0, count, G, H, mom, baseline)
    finite = all(np.isfinite(v).all() for v in ref)
    if not finite:
        with pytest.raises(FloatingPointError):
            A.finish_score(d, kd, stats, shifts, baseline, {})
        return
    res = A.finish_score(d, kd, stats, shifts, baseline, {})
    grad, se, var, value, vse, vvar = ref
    assert np.array_equal(np.concatenate([res.grad["loc"], res.grad["scale"]]), grad)
    assert np.array_equal(np.concatenate([res.stderr["loc"], res.stderr["scale"]]), se)
    assert np.array_equal(np.concatenate([res.variance["loc"], res.variance["scale"]]), var)
    assert (res.value, res.value_stderr, res.value_variance) == (value, vse, vvar)


def test_f_output_checks_on_the_fast_path():
    d = _normal([0.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="f returned inf at draw"):
        mc.score_grad(lambda x: np.where(np.arange(len(x)) == 7, np.inf, 1.0), d, 100, rng=0)
    with pytest.raises(ValueError, match="shape"):
        mc.score_grad(lambda x: np.ones(len(x) + 1), d, 100, rng=0)
    # float32 and integer outputs are converted, as before
    r32 = mc.score_grad(lambda x: f_sq(x).astype(np.float32), d, 100, rng=0)
    r64 = mc.score_grad(lambda x: f_sq(x).astype(np.float32).astype(np.float64), d, 100, rng=0)
    assert_same_estimate(r32, r64)
    # f receives a fresh copy: writing into x does not change the estimate
    def scribble(x):
        v = f_sq(x)
        x[...] = 0.0
        return v

    assert_same_estimate(mc.score_grad(scribble, d, 1000, rng=2), mc.score_grad(f_sq, d, 1000, rng=2))


def test_vi_elbo_grad_matches_samples_estimator():
    q = mc.Gamma([2.0, 3.0], 1.5)

    def log_joint(x):
        return -0.5 * (np.asarray(x, float) ** 2).sum(1)

    res = mc.vi.elbo_grad(log_joint, q, 200, rng=4)
    x = q.sample(200, np.random.default_rng(4))
    lq = q.log_prob(x).sum(1)
    ref = mc.score_grad_from_samples(q, x, log_joint(x) - lq, baseline="loo")
    assert_same_estimate(res, ref)


# ---------------------------------------------------------------------------
# the prepared small-call path (mcscore.prepared: Prepared, KernelTemplates,
# score_grad's cache of them) against the engine's general composition
# ---------------------------------------------------------------------------

from mcscore import integrands as I  # noqa: E402
from mcscore import prepared as PR  # noqa: E402

_FAMILIES = [
    (mc.Normal, [dict(loc=np.linspace(-1, 1, 4), scale=np.linspace(0.5, 1.5, 4)),
                 dict(loc=np.linspace(-2, 0, 4), scale=np.linspace(0.7, 1.1, 4))]),
    (mc.Gamma, [dict(concentration=[2.0, 3.0], rate=1.5), dict(concentration=[0.7, 5.0], rate=0.5)]),
    (mc.Bernoulli, [dict(probs=[0.3, 0.6, 0.9]), dict(probs=[0.5, 0.1, 0.2])]),
    (mc.Categorical, [dict(probs=[0.2, 0.3, 0.5]), dict(logits=[0.6, 0.3, -2.1])]),
    (mc.Dirichlet, [dict(concentration=[1.0, 2.0, 3.0]), dict(concentration=[0.5, 0.5, 4.0])]),
    (mc.MultivariateNormal, [
        dict(loc=np.array([0.5, -1.0]), covariance_matrix=np.array([[2.0, 0.3], [0.3, 1.0]])),
        dict(loc=np.array([0.1, 1.0]), covariance_matrix=np.array([[1.0, -0.2], [-0.2, 0.7]]))]),
]


def _engine_reference(f, dist, n, rng, baseline, block_size=None):
    """score_grad's estimate by the engine's general pieces (a kernel built
    from scratch, run_job / run_fused, finish_score)."""
    fkind, kf = E.lower_f(f, dist)
    kd = dist._kernel_dist()
    plan = E.Plan(n, kd.draw_size, rng, E.DEFAULT_STREAMS, block_size, 1)
    if fkind == "python":
        stats, shifts = E.run_job(E.ScoreJob(f, dist), plan)[:2]
    else:
        stats, shifts = E.run_fused(kf, fkind, dist, kd, plan)
    return E.finish_score(dist, kd, stats, shifts, baseline, {**plan.info(), "f": fkind})


@pytest.mark.parametrize("family,steps", _FAMILIES, ids=[f.__name__ for f, _ in _FAMILIES])
@pytest.mark.parametrize("baseline", [None, 0.5, "loo", "optimal"])
@pytest.mark.parametrize("fused", [False, True])
def test_small_path_equals_the_general_engine(family, steps, baseline, fused):
    f = I.sum_of_squares() if fused else f_sq
    est = {}
    for n in (2, 100, 1000, 5003):
        bs = 16 if baseline == "optimal" else None  # cross-fitting: 2 streams or more
        est[n] = mc.Estimator(family, f, n, rng=9, baseline=baseline, block_size=bs,
                              n_threads=1)
        for params in steps + steps[:1] + steps:  # the caches see changes and returns
            fresh = family(**params)
            try:
                ref = _engine_reference(f, fresh, n, 9, baseline, bs)
            except ValueError as exc:  # e.g. "optimal" with draws in one stream only
                for call in (lambda: mc.score_grad(f, family(**params), n, rng=9,
                                                   baseline=baseline, block_size=bs),
                             lambda: est[n](**params)):
                    with pytest.raises(ValueError) as got:
                        call()
                    assert str(got.value) == str(exc)
                continue
            for res in (mc.score_grad(f, family(**params), n, rng=9, baseline=baseline,
                                      block_size=bs, n_threads=1), est[n](**params)):
                assert_same_estimate(res, ref)
                assert res.info == ref.info
                if ref.info["streams_used"] > 1:
                    assert np.array_equal(res.cov, ref.cov)


def test_coordinate_layout_changes_at_the_same_draw_shape():
    """Normal(loc (4,), scale ()) and Normal(loc (), scale (4,)): the same
    draw shape and number of coordinates, another split of the gradient."""
    est = mc.Estimator(mc.Normal, f_sq, 300, rng=2, baseline="loo")
    steps = [dict(loc=np.linspace(-1, 1, 4), scale=0.8), dict(loc=0.3, scale=np.linspace(.5, 1.5, 4)),
             dict(loc=np.linspace(-1, 1, 4), scale=0.8)]
    for p in steps:
        ref = _engine_reference(f_sq, mc.Normal(**p), 300, 2, "loo")
        for res in (est(**p), mc.score_grad(f_sq, mc.Normal(**p), 300, rng=2, baseline="loo")):
            assert_same_estimate(res, ref)
            assert res.grad["loc"].shape == np.shape(p["loc"])
            assert res.grad["scale"].shape == np.shape(p["scale"])


def test_a_new_f_is_used_even_where_an_old_one_lived():
    """score_grad's cache is keyed on f's identity: a new f (which may reuse
    a dead one's id) is lowered and called, never the old one."""
    d = _normal([0.2, -0.1], [1.0, 0.5])
    for c in range(6):
        def f(x, c=c):
            return f_sq(x) + c
        res = mc.score_grad(f, d, 200, rng=1)
        ref = _engine_reference(f, _normal([0.2, -0.1], [1.0, 0.5]), 200, 1, None)
        assert_same_estimate(res, ref)
        del f
    for g in (I.sum_of_squares(), I.linear(2.0), I.sum_of_squares()):
        assert_same_estimate(mc.score_grad(g, d, 200, rng=1),
                             _engine_reference(g, _normal([0.2, -0.1], [1.0, 0.5]), 200, 1, None))


def test_prepared_cache_is_bounded_and_keeps_results():
    d = _normal([0.3], [1.1])
    fs = [(lambda x, c=c: f_sq(x) * (1.0 + c)) for c in range(PR._PREPARED_MAX + 10)]
    first = [mc.score_grad(f, d, 100, rng=3) for f in fs]
    assert len(PR._PREPARED) <= PR._PREPARED_MAX
    for f, r in zip(fs, first):
        assert_same_estimate(r, mc.score_grad(f, d, 100, rng=3))


def test_guards_on_the_small_path():
    """Parameters, differentiability and f are checked at every call, with
    the messages of the general path."""
    est = mc.Estimator(mc.Normal, f_sq, 100, rng=1)
    est(loc=np.zeros(2), scale=np.ones(2))
    mc.score_grad(f_sq, _normal([0.0, 0.0], [1.0, 1.0]), 100, rng=1)
    for p, msg in ((dict(loc=np.array([0.0, np.nan]), scale=1.0), "loc must be a finite"),
                   (dict(loc=0.0, scale=np.array([1.0, -1.0])), "scale must be > 0"),
                   (dict(loc=0.0, scale=1e-200), "scale must be in"),
                   (dict(loc=1e6, scale=1e-9), "too small for loc")):
        with pytest.raises(ValueError, match=msg):
            est(**p)
        with pytest.raises(ValueError, match=msg):
            mc.score_grad(f_sq, mc.Normal(**p), 100, rng=1)

    def nan_at_7(x):
        v = f_sq(x)
        v[7] = np.nan
        return v

    for call in (lambda f: mc.Estimator(mc.Normal, f, 100, rng=1)(loc=np.zeros(2), scale=1.0),
                 lambda f: mc.score_grad(f, mc.Normal(np.zeros(2), 1.0), 100, rng=1)):
        with pytest.raises(ValueError, match="f returned nan at draw 7"):
            call(nan_at_7)
        with pytest.raises(ValueError, match=r"f returned shape \(100, 2\) instead of \(100,\)"):
            call(lambda x: np.zeros((len(x), 2)))
    with pytest.raises(ValueError, match="n_threads must be a positive or negative integer"):
        mc.score_grad(f_sq, mc.Normal(0.0, 1.0), 100, rng=1, n_threads=0)
    with pytest.raises(TypeError, match="rng must be"):
        mc.score_grad(f_sq, mc.Normal(0.0, 1.0), 100, rng="seed")


def test_small_path_threads_and_generators():
    """n_threads 1 and 2 give the same bits (with the thread count in info);
    a Generator is advanced as by the general path."""
    p = dict(loc=np.linspace(-1, 1, 5), scale=np.linspace(0.5, 1.5, 5))
    for n in (2, 100, 1000, 20_000):
        a = mc.score_grad(f_sq, mc.Normal(**p), n, rng=4, n_threads=1)
        b = mc.score_grad(f_sq, mc.Normal(**p), n, rng=4, n_threads=2)
        assert_same_estimate(a, b)
        g1, g2 = np.random.default_rng(8), np.random.default_rng(8)
        est = mc.Estimator(mc.Normal, f_sq, n, rng=g1)
        for _ in range(2):
            assert_same_estimate(est(**p), _engine_reference(f_sq, mc.Normal(**p), n, g2, None))
        assert g1.bit_generator.state == g2.bit_generator.state


def test_prepared_cache_holds_small_buffers_only():
    """score_grad keeps the Prepared of a call whose one-round buffers are
    small; a large one-round call (50,000 draws of 5 values) is not kept."""
    PR._PREPARED.clear()
    d = _normal(np.zeros(5), np.ones(5))
    for n, kept in ((1000, True), (50_000, False)):
        def f(x):
            return f_sq(x)
        res = mc.score_grad(f, d, n, rng=1)
        assert any(p.f is f for p in PR._PREPARED.values()) == kept
        assert_same_estimate(res, _engine_reference(f, _normal(np.zeros(5), np.ones(5)), n, 1,
                                                    None))
