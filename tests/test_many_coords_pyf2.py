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
