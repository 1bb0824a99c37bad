"""The stream plan documented in README "Reproducibility": stream s is the
call's PCG64 jumped s times, independent of how many streams a call uses."""
import numpy as np

import mcscore as mc
from mcscore._rounds import Plan as _Plan
from mcscore import integrands as I


def test_stream_s_is_the_root_pcg64_jumped_s_times():
    plan = _Plan(10**6, 1, 123, 64, None, 1)
    bgs = plan.bitgens([0, 1, 5, 63])
    for s, bg in zip([0, 1, 5, 63], bgs):
        ref = np.random.PCG64(np.random.SeedSequence(123))
        ref = ref.jumped(s) if s else ref
        assert np.array_equal(bg.random_raw(4), ref.random_raw(4)), s


def test_a_stream_does_not_depend_on_how_many_streams_are_used():
    # the same block in stream 3 whether the call uses 4 or 64 streams
    small = _Plan(4 * 256, 1, 9, 64, 256, 1)
    large = _Plan(64 * 256, 1, 9, 64, 256, 1)
    assert small.used == 4 and large.used == 64
    a = small.bitgens([3])[0].random_raw(3)
    b = large.bitgens([3])[0].random_raw(3)
    assert np.array_equal(a, b)


def test_small_calls_run_on_one_thread_with_the_same_result():
    d = mc.Normal(0.3, 1.2)
    r1 = mc.score_grad(I.power(2), d, 5000, rng=4, n_threads=1)
    r2 = mc.score_grad(I.power(2), d, 5000, rng=4, n_threads=2)
    assert r2.info["threads"] == 1
    assert r1.grad["loc"] == r2.grad["loc"] and r1.stderr["scale"] == r2.stderr["scale"]


def test_lognormal_call_shortcut_gives_the_same_bits_as_python_f():
    # fused kernels skip exp() below the strike when f reads x only through
    # calls / digital calls; f, and so the estimate, must not change
    d = mc.LogNormal([4.6, 4.5], 0.25)
    for f in (I.call(105.0, coord=1) * 0.98, I.digital_call(101.0) + 2 * I.call(120.0)):
        a = mc.score_grad(f, d, 50_003, rng=3)
        b = mc.score_grad(lambda x: f(x), d, 50_003, rng=3, chunk_size=999)
        for k in a.grad:
            assert np.array_equal(a.grad[k], b.grad[k])
            assert np.array_equal(a.stderr[k], b.stderr[k])
        assert a.value == b.value
