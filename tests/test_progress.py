"""progress=True: a tqdm bar over blocks and draws that does not change the
result."""
import numpy as np
import pytest

import mcscore as mc
from mcscore import integrands as I
from mcscore._progress import stream_draws
from mcscore._rounds import Plan as _Plan

pytest.importorskip("tqdm")


def _same(a, b):
    assert a.value == b.value and a.value_stderr == b.value_stderr
    for k in a.grad:
        np.testing.assert_array_equal(a.grad[k], b.grad[k])
        np.testing.assert_array_equal(a.stderr[k], b.stderr[k])


@pytest.mark.parametrize("n,S,B", [(10, 4, 3), (1000, 64, 7), (12345, 5, 1000), (64, 64, 1),
                                   (100, 3, 200)])
def test_stream_draws_partition_the_call(n, S, B):
    plan = _Plan(n, 1, 0, S, B, 1)
    per = [stream_draws(plan, [s]) for s in range(plan.used)]
    assert sum(b for b, _ in per) == plan.n_blocks
    assert sum(d for _, d in per) == n
    assert stream_draws(plan, range(plan.used)) == (plan.n_blocks, n)


@pytest.mark.parametrize("f", [I.sum_of_squares() - I.cos(), lambda x: (x ** 2).sum(-1)],
                         ids=["fused", "python"])
@pytest.mark.parametrize("threads", [1, 2])
def test_progress_bar_changes_nothing(f, threads, capsys):
    q = mc.Normal(loc=np.array([0.3, -0.2, 1.0]), scale=np.array([1.0, 0.5, 2.0]))
    kw = dict(rng=21, baseline="optimal", n_threads=threads, n_streams=64, block_size=333)
    plain = mc.score_grad(f, q, 50_000, **kw)
    with_bar = mc.score_grad(f, q, 50_000, progress=True, **kw)
    _same(plain, with_bar)
    err = capsys.readouterr().err
    nb = -(-50_000 // 333)
    assert f"blocks {nb}/{nb}" in err
    assert "50.0k/50.0k" in err


def test_progress_with_a_c_callback(capsys):
    ctypes = pytest.importorskip("ctypes")
    from scipy import LowLevelCallable

    proto = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.POINTER(ctypes.c_double), ctypes.c_ssize_t)
    cb = proto(lambda x, d: x[0] * x[0])
    llc = LowLevelCallable(cb, signature="double (double *, intptr_t)")
    q = mc.Normal(0.5, 1.5)
    a = mc.score_grad(llc, q, 3_000, rng=1, n_streams=8, block_size=100, n_threads=2)
    b = mc.score_grad(llc, q, 3_000, rng=1, n_streams=8, block_size=100, n_threads=2,
                      progress=True)
    _same(a, b)
    assert "blocks 30/30" in capsys.readouterr().err


def test_progress_argument_is_checked():
    with pytest.raises(TypeError, match="progress must be True or False"):
        mc.score_grad(I.power(2), mc.Normal(0.0, 1.0), 100, progress="yes")


def test_watch_reads_the_kernel_counts_while_it_runs():
    import time

    from mcscore._progress import ProgressBar

    plan = _Plan(1000, 1, 0, 4, 100, 1)
    bar = ProgressBar(plan)
    stats = np.zeros((plan.used, 8))
    try:
        with bar.watch(stats, interval=0.01):
            stats[:, 0] = [100, 200, 0, 0]  # what the kernel would have written so far
            deadline = time.monotonic() + 10
            while bar._bar.n != 300 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert bar._bar.n == 300 and bar.blocks == 3
            stats[:, 0] = [300, 300, 200, 200]
        # leaving the block reports the exact totals
        assert bar._bar.n == 1000 and bar.blocks == 10
    finally:
        bar.close()
