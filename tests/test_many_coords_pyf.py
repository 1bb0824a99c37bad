"""Many coordinates with a Python f (issue 17, target 3): the streams'
bit generators computed from the root state on Python ints and reused
between calls, and the rounds whose accumulation a helper thread runs while
f runs on the next round.  The results do not change, f is never called
concurrently nor from another thread, and an error in f leaves nothing
behind."""
import threading

import numpy as np
import pytest

import mcscore as mc
from mcscore import _rounds as R


def _normal(d):
    return mc.Normal(np.linspace(-1.0, 1.0, d), np.linspace(0.5, 1.5, d))


def _sumsq(x):
    return (x * x).sum(axis=1)


def _bits(r):
    return np.concatenate([r.grad["loc"], r.grad["scale"], r.stderr["loc"], r.stderr["scale"]])


def _advanced_states(root, streams):
    """The streams' states the slow way: PCG64(root) advanced s jumps."""
    out = []
    for s in streams:
        bg = np.random.PCG64(root)
        if s:
            bg.advance((s * R._PCG64_JUMP) % 2**128)
        out.append(bg.state)
    return out


@pytest.mark.parametrize("entropy", [0, 1, 12345, 2**63 + 5, [3, 1, 4, 1], [2**64 - 1, 0, 7, 9]])
@pytest.mark.parametrize("streams", [[0], [0, 1, 2, 3], list(range(64)), [5, 9, 13],
                                     [1000, 3], [2**20 - 1], [0, 0, 1], list(range(3, 40, 2))])
def test_stream_states_are_pcg64_advance_states(entropy, streams):
    """Dense streams (one jump after another) and sparse ones (one jump
    each, a Dask task's) give PCG64.advance's states bit for bit, for a
    plain seed, a Generator's entropy and a SeedSequence with a spawn key."""
    got = [bg.state for bg in R.stream_bit_generators(None, streams, entropy)]
    assert got == _advanced_states(np.random.SeedSequence(entropy), streams)
    ss = np.random.SeedSequence(entropy, spawn_key=(2, 5))
    got = [bg.state for bg in R.stream_bit_generators(ss, streams)]
    assert got == _advanced_states(ss, streams)


def test_lcg_advance_matches_numpy():
    """The jump-ahead on Python ints is NumPy's advance for any delta."""
    rng = np.random.default_rng(4)
    for delta in [0, 1, 2, 12345, R._PCG64_JUMP, 2**128 - 1] + [
            int(v) << 64 | int(w) for v, w in rng.integers(0, 2**63, (5, 2))]:
        bg = np.random.PCG64(8)
        st = bg.state["state"]
        a, g = R._lcg_advance(delta)
        bg.advance(delta)
        assert bg.state["state"]["state"] == (a * st["state"] + g * st["inc"]) % 2**128


def test_bit_generators_held_are_never_handed_out_again():
    """A bit generator is reused only once nothing holds it: the streams of
    two live calls are distinct objects, and a released one draws its new
    stream's values (not the old one's)."""
    a = R.stream_bit_generators(None, range(8), 1)
    b = R.stream_bit_generators(None, range(8), 2)
    assert not {id(x) for x in a} & {id(x) for x in b}
    gen = np.random.Generator(a[3])  # a user keeps one (through a Generator)
    kept = id(a[3])
    del a
    c = R.stream_bit_generators(None, range(8), 3)
    assert kept not in {id(x) for x in c}
    assert gen.bit_generator.state == _advanced_states(np.random.SeedSequence(1), [3])[0]
    ref = _advanced_states(np.random.SeedSequence(3), range(8))
    assert [x.state for x in c] == ref


class _Watch:
    """f = sum of squares, recording its threads and whether two calls
    ever overlapped (a stateful f)."""

    def __init__(self):
        self.inside = 0
        self.overlap = False
        self.threads = set()
        self.calls = 0

    def __call__(self, x):
        self.inside += 1
        if self.inside > 1:
            self.overlap = True
        self.threads.add(threading.get_ident())
        self.calls += 1
        v = (x * x).sum(axis=1)
        self.inside -= 1
        return v


@pytest.mark.parametrize("d,n", [(5, 100_000), (50, 10_000), (2, 300_000)])
def test_f_never_called_concurrently_nor_from_a_helper(d, n):
    """By default f runs on the calling thread only, one call at a time,
    while a helper draws and accumulates the rounds around it."""
    w = _Watch()
    r = mc.score_grad(w, _normal(d), n, rng=3, n_threads=2)
    assert r.info["threads"] == 2 and w.calls >= 2
    assert not w.overlap
    assert w.threads == {threading.get_ident()}
    np.testing.assert_array_equal(_bits(r), _bits(mc.score_grad(_sumsq, _normal(d), n, rng=3,
                                                                n_threads=1)))


@pytest.mark.parametrize("d,n", [(5, 100_000), (50, 10_000), (3, 200_003)])
def test_helper_accumulation_same_bits(d, n):
    """The rounds accumulated by a helper give the bits of one thread, of a
    chunk per block and of repeated calls (buffers and generators reused)."""
    ref = _bits(mc.score_grad(_sumsq, _normal(d), n, rng=17, n_threads=1))
    for kw in ({"n_threads": 2}, {"n_threads": 2}, {"n_threads": 2, "chunk_size": 1000},
               {"n_threads": 2, "baseline": None}):
        np.testing.assert_array_equal(
            _bits(mc.score_grad(_sumsq, _normal(d), n, rng=17, **kw)), ref, err_msg=str(kw))


@pytest.mark.parametrize("when", [1, 2, 3])
@pytest.mark.parametrize("exc", [ValueError, KeyboardInterrupt])
def test_error_in_f_mid_call_leaves_nothing_behind(when, exc):
    """f raising at its second or third call (a helper is drawing the next
    round and waiting to accumulate the previous one): the error comes out
    as raised, no helper is left waiting, and the next call's bits are
    unchanged."""
    d, n = 5, 100_000
    ref = _bits(mc.score_grad(_sumsq, _normal(d), n, rng=2, n_threads=2))
    calls = []

    def f(x):
        calls.append(len(x))
        if len(calls) == when:
            raise exc("stop here")
        return (x * x).sum(axis=1)

    with pytest.raises(exc, match="stop here"):
        mc.score_grad(f, _normal(d), n, rng=2, n_threads=2)
    assert len(calls) == when
    np.testing.assert_array_equal(_bits(mc.score_grad(_sumsq, _normal(d), n, rng=2,
                                                      n_threads=2)), ref)


def test_nonfinite_f_in_a_late_round_names_the_draw():
    """A NaN from f in the last rounds (accumulated by a helper when the
    value passes): the same clear error, naming the draw, as one thread."""
    d, n = 5, 100_000
    bad = n - 7

    def f(x, seen=[0]):
        v = (x * x).sum(axis=1)
        lo = seen[0]
        seen[0] += len(x)
        if lo <= bad < seen[0]:
            v[bad - lo] = np.nan
        return v

    msgs = []
    for th in (1, 2):
        f.__defaults__[0][0] = 0
        with pytest.raises(ValueError, match=f"f returned nan at draw {bad}") as info:
            mc.score_grad(f, _normal(d), n, rng=4, n_threads=th)
        msgs.append(str(info.value))
    assert msgs[0] == msgs[1]


def test_gradient_matches_exact_with_helper_accumulation():
    """E[sum x_j^2] = sum (loc_j^2 + scale_j^2): gradient 2 loc, 2 scale,
    within 5 standard errors, with two threads at d = 50."""
    dist = _normal(50)
    r = mc.score_grad(_sumsq, dist, 40_000, rng=8, n_threads=2)
    for name, exact in (("loc", 2 * np.asarray(dist.loc)), ("scale", 2 * np.asarray(dist.scale))):
        z = np.abs(r.grad[name] - exact) / r.stderr[name]
        assert np.all(z < 5), (name, z.max())


def test_f_that_runs_a_call_itself_on_the_same_helpers():
    """f may itself call score_grad with threads (the helpers are shared by
    the process): no helper task ever waits for f, so the inner call's draws
    are not queued behind a helper blocked on the outer f."""
    d, n = 5, 100_000
    ref_outer = _bits(mc.score_grad(_sumsq, _normal(d), n, rng=6, n_threads=1))
    ref_inner = _bits(mc.score_grad(_sumsq, _normal(3), n, rng=7, n_threads=1))
    inner = []

    def f(x):
        if len(inner) < 2:
            inner.append(_bits(mc.score_grad(_sumsq, _normal(3), n, rng=7, n_threads=2)))
        return (x * x).sum(axis=1)

    done = []
    t = threading.Thread(target=lambda: done.append(
        _bits(mc.score_grad(f, _normal(d), n, rng=6, n_threads=2))), daemon=True)
    t.start()
    t.join(120)
    assert not t.is_alive(), "the nested call hung"
    np.testing.assert_array_equal(done[0], ref_outer)
    for b in inner:
        np.testing.assert_array_equal(b, ref_inner)
