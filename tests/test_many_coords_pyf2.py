"""Many coordinates with a Python f (issue 17, target 3), second part: the
stream states written from C, and the f_threadsafe opt-in (f called from
several threads at once, the same bits)."""
import threading
import time

import numpy as np
import pytest

import mcscore as mc
from mcscore import _kernels as K
from mcscore import _rounds as R


def sumsq(x):
    return (x * x).sum(axis=1)


def bits(r):
    return np.concatenate([np.ravel(r.grad[k]) for k in sorted(r.grad)]
                          + [np.ravel(r.stderr[k]) for k in sorted(r.stderr)]
                          + [np.ravel(r.value)]).view(np.uint64)


def normal(d):
    return mc.Normal(np.linspace(-1, 1, d), np.linspace(0.5, 1.5, d))


# ---------------------------------------------------------------------------
# stream states set from C
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("streams", [[0, 1, 2, 3, 63], [5, 1000, 3], [0], list(range(64))])
@pytest.mark.parametrize("seed", [0, 2**70 + 5])
def test_stream_states_are_pcg64_jumped(streams, seed):
    root = np.random.SeedSequence(seed)
    got = [bg.state for bg in R.stream_bit_generators(root, streams)]
    want = []
    for s in streams:
        bg = np.random.PCG64(root)
        want.append((bg.jumped(s) if s else bg).state)
    assert got == want


def test_states_in_c_checked_at_import():
    # x86-64 with GCC has 128-bit integers: the C path is the one in use
    assert K.PCG64_STATES_IN_C
    bgs = [np.random.PCG64(1) for _ in range(2)]
    root = np.random.PCG64(9).state
    # a cached 32-bit word of the root is kept by stream 0 only
    root = dict(root, has_uint32=1, uinteger=12345)
    assert K.pcg64_set_streams(bgs, np.array([0, 1], np.int64), root, R._PCG64_JUMP, True)
    assert bgs[0].state == root
    assert bgs[1].state["has_uint32"] == 0
    ref = np.random.PCG64(9).jumped(1)
    assert bgs[1].state["state"] == ref.state["state"]


def test_state_setting_is_not_the_slow_path(monkeypatch):
    """The states are written from C: no PCG64.state assignment per stream."""
    calls = []
    orig = R._bitgen_objects

    def objects(k):
        out = orig(k)
        calls.append(len(out))
        return out
    monkeypatch.setattr(R, "_bitgen_objects", objects)
    a = mc.score_grad(sumsq, normal(5), 10**5, rng=3, n_threads=1)
    monkeypatch.setattr(K, "PCG64_STATES_IN_C", False)  # the Python path: the same bits
    b = mc.score_grad(sumsq, normal(5), 10**5, rng=3, n_threads=1)
    assert calls and np.array_equal(bits(a), bits(b))


# ---------------------------------------------------------------------------
# f_threadsafe: the same bits
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("d,n", [(1, 10**5), (5, 10**5), (50, 10**4), (200, 3000)])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("chunk", [None, 333, 4096])
def test_threadsafe_same_bits(d, n, threads, chunk):
    dist = normal(d)
    for seed in (0, 7):
        kw = dict(rng=seed, n_threads=threads, chunk_size=chunk)
        a = mc.score_grad(sumsq, dist, n, **kw)
        b = mc.score_grad(sumsq, dist, n, f_threadsafe=True, **kw)
        assert np.array_equal(bits(a), bits(b))


@pytest.mark.parametrize("baseline", [None, "loo", "optimal", 0.5])
def test_threadsafe_same_bits_baselines_and_small_streams(baseline):
    dist = normal(5)
    kw = dict(rng=np.random.SeedSequence(4), n_threads=2, baseline=baseline, n_streams=7,
              block_size=300)  # blocks wrap around the streams: rounds share streams
    a = mc.score_grad(sumsq, dist, 10**5, **kw)
    b = mc.score_grad(sumsq, dist, 10**5, f_threadsafe=True, **kw)
    assert np.array_equal(bits(a), bits(b))


def test_threadsafe_estimator_same_bits():
    a = mc.Estimator(mc.Normal, sumsq, 10**5, rng=11, n_threads=2)
    b = mc.Estimator(mc.Normal, sumsq, 10**5, rng=11, n_threads=2, f_threadsafe=True)
    for loc in (0.0, 0.3):
        p = dict(loc=np.full(5, loc), scale=np.ones(5))
        assert np.array_equal(bits(a(**p)), bits(b(**p)))


def test_threadsafe_estimate_is_right():
    """Against the exact gradient of E sum x^2 = sum (loc^2 + scale^2)."""
    dist = normal(5)
    r = mc.score_grad(sumsq, dist, 10**5, rng=5, n_threads=2, f_threadsafe=True)
    loc, scale = np.linspace(-1, 1, 5), np.linspace(0.5, 1.5, 5)
    assert np.all(np.abs((r.grad["loc"] - 2 * loc) / r.stderr["loc"]) < 5)
    assert np.all(np.abs((r.grad["scale"] - 2 * scale) / r.stderr["scale"]) < 5)


# ---------------------------------------------------------------------------
# who calls f
# ---------------------------------------------------------------------------

class Recorder:
    """f = sum of squares that records its threads and how many of its calls
    ran at once (a short sleep, which releases the GIL, widens the window)."""

    def __init__(self, sleep=0.0):
        self.lock = threading.Lock()
        self.active = self.most = 0
        self.threads = set()
        self.sleep = sleep

    def __call__(self, x):
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
            self.threads.add(threading.get_ident())
        try:
            if self.sleep:
                time.sleep(self.sleep)
            return (x * x).sum(axis=1)
        finally:
            with self.lock:
                self.active -= 1


@pytest.mark.parametrize("threads", [2, 3])
def test_default_never_calls_f_concurrently(threads):
    f = Recorder(sleep=0.01)
    mc.score_grad(f, normal(5), 10**5, rng=1, n_threads=threads, chunk_size=2048)
    assert f.most == 1
    assert f.threads == {threading.get_ident()}


def test_threadsafe_calls_f_from_several_threads():
    f = Recorder(sleep=0.05)
    r = mc.score_grad(f, normal(5), 10**5, rng=1, n_threads=2, f_threadsafe=True)
    ref = mc.score_grad(sumsq, normal(5), 10**5, rng=1, n_threads=2)
    assert np.array_equal(bits(r), bits(ref))
    assert f.most == 2 and len(f.threads) == 2


# ---------------------------------------------------------------------------
# errors, nested calls, validation
# ---------------------------------------------------------------------------

def _message(f, **kw):
    with pytest.raises(Exception) as info:
        mc.score_grad(f, normal(5), 10**5, rng=2, n_threads=2, **kw)
    return type(info.value), str(info.value)


def test_threadsafe_error_is_the_first_rounds():
    def boom(x):
        raise RuntimeError(f"f failed at {x[0, 0]!r}")

    def nan_late(x):  # non-finite at every draw with a large first coordinate
        v = (x * x).sum(axis=1)
        v[x[:, 0] < -2.6] = np.nan
        return v
    for f in (boom, nan_late):
        assert _message(f, f_threadsafe=True) == _message(f)


def test_threadsafe_error_leaves_next_call_unchanged():
    before = mc.score_grad(sumsq, normal(5), 10**5, rng=3, n_threads=2, f_threadsafe=True)
    calls = []

    def flaky(x):
        calls.append(1)
        if len(calls) == 2:
            raise KeyError("second call")
        return (x * x).sum(axis=1)
    with pytest.raises(KeyError):
        mc.score_grad(flaky, normal(5), 10**5, rng=3, n_threads=2, f_threadsafe=True)
    after = mc.score_grad(sumsq, normal(5), 10**5, rng=3, n_threads=2, f_threadsafe=True)
    assert np.array_equal(bits(before), bits(after))


@pytest.mark.parametrize("inner_opt", [False, True])
def test_no_hang_when_f_calls_score_grad(inner_opt):
    inner = normal(3)
    want = mc.score_grad(sumsq, inner, 4 * 10**4, rng=9, n_threads=2)

    def outer(x):
        r = mc.score_grad(sumsq, inner, 4 * 10**4, rng=9, n_threads=2,
                          f_threadsafe=inner_opt)
        assert np.array_equal(bits(r), bits(want))
        return (x * x).sum(axis=1)
    done = []

    def run():
        done.append(mc.score_grad(outer, normal(5), 10**5, rng=1, n_threads=2,
                                  f_threadsafe=True))
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(120)
    assert not t.is_alive(), "score_grad hung with f calling score_grad"
    ref = mc.score_grad(sumsq, normal(5), 10**5, rng=1, n_threads=2)
    assert done and np.array_equal(bits(done[0]), bits(ref))


@pytest.mark.parametrize("bad", ["yes", 1, None, 0.0])
def test_threadsafe_validated(bad):
    with pytest.raises(TypeError, match="f_threadsafe must be True or False"):
        mc.score_grad(sumsq, normal(2), 100, rng=0, f_threadsafe=bad)
    with pytest.raises(TypeError, match="f_threadsafe must be True or False"):
        mc.Estimator(mc.Normal, sumsq, 100, rng=0, f_threadsafe=bad)


def test_threadsafe_numpy_bool_and_other_paths():
    dist = normal(3)
    a = mc.score_grad(sumsq, dist, 5000, rng=0, n_threads=2, f_threadsafe=np.True_)
    b = mc.score_grad(sumsq, dist, 5000, rng=0, n_threads=2)
    assert np.array_equal(bits(a), bits(b))
    # paths that call f as by default accept the flag and give the same bits
    for kw in (dict(antithetic=True), dict(baseline="loo")):
        a = mc.score_grad(sumsq, dist, 5000, rng=0, n_threads=2, f_threadsafe=True, **kw)
        b = mc.score_grad(sumsq, dist, 5000, rng=0, n_threads=2, **kw)
        assert np.array_equal(bits(a), bits(b))


# ---------------------------------------------------------------------------
# draws straight into f's row layout, accumulated from it
# ---------------------------------------------------------------------------

def _round_both_ways(dist, n, B, threads=1):
    """(rows, stats) of one round drawn and accumulated through the
    column-major blocks and through the row layout only."""
    kd = dist._kernel_dist()
    nb = -(-n // B)
    blocks = np.arange(nb, dtype=np.int64)
    slots = blocks.copy()
    rows_m = [min(B, n - b * B) for b in range(nb)]
    off = np.zeros(nb, np.int64)
    np.cumsum(rows_m[:-1], out=off[1:])
    fxs = np.random.default_rng(0).normal(size=(nb, B))
    out = []
    for only in (False, True):
        bgs = R.stream_bit_generators(np.random.SeedSequence(5), list(range(nb)))
        xt = np.full((nb, kd.draw_size * B), np.nan)
        rows = np.empty((n, kd.draw_size))
        K.draw_round_rows(kd, bgs, blocks, slots, n, B, threads, xt, None, rows, off, None, only)
        stats = np.zeros((nb, kd.stats_len))
        shifts = np.zeros(nb)
        if only:
            assert np.isnan(xt).all()  # the column-major buffer is not written
            bad = K.accumulate_round_rows(kd, blocks, slots, n, B, nb, threads, rows, off, fxs,
                                          stats, shifts)
        else:
            bad = K.accumulate_round(kd, blocks, slots, n, B, nb, threads, xt, fxs, stats,
                                     shifts)
        assert bad == -1
        out.append((rows, stats, shifts))
    return out


@pytest.mark.parametrize("make", [
    lambda d: normal(d),
    lambda d: mc.Normal(0.5, np.linspace(0.5, 2, d)),  # a broadcast loc: several terms
    lambda d: mc.Poisson(np.linspace(0.5, 4, d)),
    lambda d: mc.Exponential(np.linspace(0.5, 4, d)),
    lambda d: mc.Gamma(np.linspace(0.5, 4, d), np.ones(d)),
])
@pytest.mark.parametrize("d,n,B", [(1, 1000, 256), (7, 1500, 256), (300, 100, 32)])
def test_row_layout_same_draws_and_sums(make, d, n, B):
    dist = make(d)
    assert K.rows_direct(dist._kernel_dist())
    (r0, s0, h0), (r1, s1, h1) = _round_both_ways(dist, n, B)
    assert np.array_equal(r0.view(np.uint64), r1.view(np.uint64))
    assert np.array_equal(s0.view(np.uint64), s1.view(np.uint64))
    assert np.array_equal(h0, h1)
    # two threads: the same
    (_, s2, _), (_, s3, _) = _round_both_ways(dist, n, B, threads=2)
    assert np.array_equal(s0.view(np.uint64), s3.view(np.uint64))


def test_row_layout_families_and_errors():
    assert not K.rows_direct(mc.LogNormal(np.zeros(2), np.ones(2))._kernel_dist())
    assert not K.rows_direct(mc.Categorical(probs=np.full((2, 3), 1 / 3))._kernel_dist())
    kd = mc.LogNormal(np.zeros(2), np.ones(2))._kernel_dist()
    z = np.zeros(1, np.int64)
    with pytest.raises(ValueError, match="column by column"):
        K.draw_round_rows(kd, [np.random.PCG64(0)], z, z, 10, 16, 1, np.zeros((1, 32)), None,
                          np.zeros((10, 2)), z, None, True)
    with pytest.raises(ValueError, match="column by column"):
        K.accumulate_round_rows(kd, z, z, 10, 16, 1, 1, np.zeros((10, 2)), z,
                                np.zeros((1, 16)), np.zeros((1, kd.stats_len)), np.zeros(1))


def test_row_layout_nonfinite_f_index():
    dist = normal(3)
    kd = dist._kernel_dist()
    blocks = np.array([0, 1], np.int64)
    off = np.array([0, 64], np.int64)
    rows = np.random.default_rng(1).normal(size=(100, 3))
    fx = np.ones((2, 64))
    fx[1, 5] = np.inf
    bad = K.accumulate_round_rows(kd, blocks, blocks, 100, 64, 2, 1, rows, off, fx,
                                  np.zeros((2, kd.stats_len)), np.zeros(2))
    assert bad == 64 + 5
