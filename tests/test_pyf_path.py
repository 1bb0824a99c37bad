"""The Python-f score path (mcscore._rounds.run_job with a ScoreJob): its
rounds, f's calls, the helper threads that draw while f runs, and the
results, which do not depend on any of them."""
import multiprocessing as mp
import threading

import numpy as np
import pytest

import mcscore as mc
from mcscore import _rounds as R


def _normal(d):
    return mc.Normal(np.linspace(-1.0, 1.0, d), np.linspace(0.5, 1.5, d))


def _sumsq(x):
    return (x * x).sum(axis=1)


def _grads(r):
    return np.concatenate([r.grad["loc"], r.grad["scale"], r.stderr["loc"], r.stderr["scale"]])


def _run(n, d, **kw):
    return _grads(mc.score_grad(_sumsq, _normal(d), n, rng=11, **kw))


class _Recorder:
    def __init__(self):
        self.sizes = []

    def __call__(self, x):
        self.sizes.append(len(x))
        return (x * x).sum(axis=1)


@pytest.mark.parametrize("d,n", [(5, 100_000), (50, 10_000), (50, 100_000)])
def test_default_chunk_calls_f_once_per_round(d, n):
    """With the default chunk, f gets each round's draws in one call: whole
    blocks, no tail call of a few rows; with two threads the call is split
    in a few rounds (f overlaps the next round's draws)."""
    rec = _Recorder()
    r = mc.score_grad(rec, _normal(d), n, rng=11, n_threads=2)
    B = r.info["block_size"]
    assert r.info["threads"] == 2
    assert sum(rec.sizes) == n
    assert all(m % B == 0 for m in rec.sizes[:-1]), rec.sizes
    assert rec.sizes[-1] == n - sum(rec.sizes[:-1])
    nb = -(-n // B)
    R_ = -(-rec.sizes[0] // B)
    assert len(rec.sizes) == -(-nb // R_)
    assert len(rec.sizes) >= min(R.OVERLAP_ROUNDS, nb // 2)


@pytest.mark.parametrize("d,n", [(1, 2), (5, 37), (5, 100_000), (50, 10_000), (200, 3_001)])
def test_result_independent_of_threads_and_chunks(d, n):
    """The same bits for one or two threads and any chunk size (f's calls
    and the rounds change, each stream's accumulation order does not)."""
    ref = _run(n, d, n_threads=1)
    for kw in ({"n_threads": 2}, {"n_threads": 2, "chunk_size": 1},
               {"n_threads": 1, "chunk_size": 777}, {"n_threads": 2, "chunk_size": 10**9}):
        np.testing.assert_array_equal(_run(n, d, **kw), ref, err_msg=str(kw))


@pytest.mark.parametrize("d", [5, 50])
def test_gradient_matches_exact(d):
    """E[sum x_j^2] = sum (loc_j^2 + scale_j^2): gradient 2 loc, 2 scale."""
    dist = _normal(d)
    r = mc.score_grad(_sumsq, dist, 100_000, rng=5, n_threads=2)
    for name, exact in (("loc", 2 * np.asarray(dist.loc)), ("scale", 2 * np.asarray(dist.scale))):
        z = np.abs(r.grad[name] - exact) / r.stderr[name]
        assert np.all(z < 5), (name, z.max())


def test_helper_threads_kept_between_calls():
    """The drawing helpers are started once, not once per call."""
    _run(100_000, 5, n_threads=2)
    before = threading.active_count()
    for _ in range(5):
        _run(100_000, 5, n_threads=2)
    assert threading.active_count() == before


def test_concurrent_and_nested_calls():
    """Calls from several Python threads, and a call made inside f, share
    the helpers without a deadlock and give the serial results."""
    ref = _run(50_000, 5, n_threads=2)
    got = [None] * 3

    def work(i):
        got[i] = _run(50_000, 5, n_threads=2)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in ts)
    for g in got:
        np.testing.assert_array_equal(g, ref)

    inner = []

    def f(x):
        inner.append(_run(50_000, 5, n_threads=2))
        return (x * x).sum(axis=1)

    outer = _grads(mc.score_grad(f, _normal(5), 50_000, rng=11, n_threads=2))
    np.testing.assert_array_equal(outer, ref)
    for g in inner:
        np.testing.assert_array_equal(g, ref)


def _child(q):
    q.put(_run(100_000, 5, n_threads=2))


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="no fork")
def test_forked_child_draws_with_its_own_helpers():
    """A child forked after the helpers started (they do not exist in it)
    still runs a two-thread call, and gets the same bits."""
    ref = _run(100_000, 5, n_threads=2)  # the parent's helpers are running
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q,))
    p.start()
    try:
        got = q.get(timeout=120)
    finally:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
    np.testing.assert_array_equal(got, ref)


def test_helpers_and_caller_share_the_rows_buffer(monkeypatch):
    """The helper and the calling thread ask for a round's rows buffer at
    the same time: both must draw into the one that f then receives (two
    buffers, each half drawn, gave f garbage rows)."""
    import time

    ref = _run(100_000, 5, n_threads=2)
    take = R._POOL.take

    def slow_take(shape):
        time.sleep(0.005)  # a thread switch inside the allocation
        return take(shape)

    monkeypatch.setattr(R._POOL, "take", slow_take)
    for _ in range(3):
        R._POOL._free.clear()
        np.testing.assert_array_equal(_run(100_000, 5, n_threads=2), ref)


def test_buffer_pool_keeps_float64_draw_buffers_only():
    """A batched Categorical's round buffers are int64 rows; returned to the
    shared pool they came back as another call's float64 draws (a dtype
    error in the next call of the same shape)."""
    from mcscore import _rounds

    _rounds._POOL._free.clear()
    _rounds._POOL._bytes = 0
    S, K = 24, 3
    d = mc.Categorical(logits=np.random.default_rng(0).normal(size=(S, K)))
    R = np.random.default_rng(1).normal(size=(S, K))
    mc.score_grad(lambda a: R[np.arange(S), a], d, 20_000, rng=0, batch_ndims=1, n_threads=2)
    assert all(a.dtype == np.float64 for _, a in _rounds._POOL._free)
    a = np.empty((4, 5), np.int64)
    _rounds._POOL.give(a)
    assert _rounds._POOL.take((4, 5)).dtype == np.float64
    # and the plain call after the batched one runs (the torch bridge's sequence)
    res = mc.score_grad(lambda a: R[np.arange(S), a].mean(-1), d, 20_000, rng=0, n_threads=2)
    assert np.all(np.isfinite(res.grad["logits"]))
