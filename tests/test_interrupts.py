"""Ctrl-C within a second at any legal size (the largest blocks included).

Each case runs in a subprocess: after a warm-up call, a timer thread sends
SIGINT to the process while the measured call runs; the child prints how
long after the signal KeyboardInterrupt arrived, then checks that the next
call still works.  The kernels check for signals on the calling thread every
few tens of milliseconds, inside blocks too (per chunk of draws, per chunk of
paths), and while they wait for the other threads.
"""
import os
import signal
import subprocess
import sys

import pytest

POSIX = hasattr(signal, "SIGALRM") and os.name == "posix"
LATENCY = 1.0   # seconds, the promise

CHILD = """
import os, signal, threading, time
import numpy as np
import mcscore as mc
from mcscore import integrands as I
mc.score_grad(I.power(2), mc.Normal(0.0, 1.0), 10**5, rng=0)   # warm up
sent = []
def fire():
    sent.append(time.time())
    os.kill(os.getpid(), signal.SIGINT)
timer = threading.Timer(DELAY, fire)
timer.start()
try:
    CALL
    print("finished", flush=True)
except KeyboardInterrupt:
    latency = time.time() - sent[0]
    r = mc.score_grad(I.power(2), mc.Normal(0.0, 1.0), 10**4, rng=0)
    print("interrupted", latency, r.n, flush=True)
"""

# (call, seconds before SIGINT): each would run for minutes (hours) if not
# interrupted; a single block of the first ones takes several seconds.
CASES = {
    # 100 coordinates, the largest blocks: one block is 1.7e9 draw values
    "score_grad-block-2**24-100-coords": (
        "mc.score_grad(I.sum_of_squares(), mc.Normal(np.zeros(100), 1.0), 10**13, rng=0, "
        "block_size=2**24, n_threads=2)", 1.5),
    "score_grad-block-2**24-serial": (
        "mc.score_grad(I.sum_of_squares(), mc.Normal(np.zeros(100), 1.0), 10**13, rng=0, "
        "block_size=2**24, n_threads=1)", 1.5),
    # 1e4 coordinates at the default block size
    "score_grad-1e4-coords": (
        "mc.score_grad(I.sum_of_squares(), mc.Gamma(np.full(10**4, 2.0), 1.0), 10**12, "
        "rng=0)", 1.5),
    # a C callback over the largest blocks
    "score_grad-callback-block-2**24": ("CALLBACK", 1.5),
    # paths of 1e5 steps, the largest blocks
    "finance.greeks-1e5-steps": (
        "mc.finance.greeks('asian_call', spot=100.0, strike=100.0, rate=0.02, vol=0.2, "
        "maturity=1.0, n=10**12, steps=10**5, rng=0, block_size=2**24, n_threads=2)", 1.5),
    # variance-reduction kernels: pathwise Beta draws cost a few incomplete
    # gamma functions each (about 2**24 * 2 us per block without polls)
    "pathwise_grad-Beta-block-2**24": (
        "mc.pathwise_grad(lambda x: x, mc.Beta(2.0, 3.0), 10**12, grad_f=np.ones_like, "
        "rng=0, n_streams=2, block_size=2**24, n_threads=2)", 1.5),
    # a fused integrand evaluated on the caller's draws: 1e6 draws of 300
    # coordinates, a full quadratic form (9e10 multiply-adds; the zeros are
    # never written, so they take no memory)
    "Integrand.__call__-quadratic-300": (
        "I.quadratic(np.ones((300, 300)))(np.zeros((10**6, 300)))", 1.0),
    # one kernel call that draws 2e8 values
    "Distribution.sample-2e8": ("mc.Gamma(2.0, 1.0).sample(2 * 10**8, rng=0)", 1.0),
    # draws with dist.sample (one kernel call), then f and the estimate
    "vi.elbo_grad-1e8": (
        "mc.vi.elbo_grad(lambda x: -0.5 * x**2, mc.Gamma(2.0, 1.0), 10**8, rng=0)", 0.5),
}

CALLBACK = """
from numba import cfunc, types
from scipy import LowLevelCallable
@cfunc(types.double(types.CPointer(types.double), types.intp))
def g(x, d):
    s = 0.0
    for i in range(d):
        s += x[i] * x[i]
    return s
f = LowLevelCallable(g.ctypes)
mc.score_grad(f, mc.Normal(np.zeros(100), 1.0), 10**13, rng=0, block_size=2**24, n_threads=2)
"""


def _run(call, delay):
    import mcscore

    code = CHILD.replace("DELAY", repr(delay))
    if call == "CALLBACK":
        body = CALLBACK.strip().replace("\n", "\n    ")
        code = code.replace("CALL", body)
    else:
        code = code.replace("CALL", call)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(mcscore.__file__))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=env, timeout=300)
    lines = [w for w in p.stdout.splitlines() if w.startswith("interrupted")]
    assert lines, f"no KeyboardInterrupt: rc={p.returncode}\n{p.stdout}\n{p.stderr[-3000:]}"
    _, latency, n = lines[0].split()
    assert n == "10000"  # the next call works
    return float(latency)


@pytest.mark.skipif(not POSIX, reason="POSIX signals")
@pytest.mark.parametrize("case", sorted(CASES))
def test_ctrl_c_within_a_second(case):
    call, delay = CASES[case]
    if call == "CALLBACK":
        pytest.importorskip("numba")
    latency = _run(call, delay)
    assert latency < LATENCY, f"{case}: KeyboardInterrupt {latency:.2f} s after SIGINT"


def test_checks_do_not_change_results():
    """Whatever the polls see, a run that is not interrupted gives the same
    bits: the same call with one thread and with two, with the largest
    blocks and with small ones cut at the same block boundaries."""
    import numpy as np

    import mcscore as mc
    from mcscore import integrands as I

    d = mc.Normal(np.zeros(3), 1.0)
    a = mc.score_grad(I.sum_of_squares(), d, 300_000, rng=3, block_size=2**24, n_threads=1)
    b = mc.score_grad(I.sum_of_squares(), d, 300_000, rng=3, block_size=2**24, n_threads=2)
    for k in a.grad:
        assert np.array_equal(a.grad[k], b.grad[k]) and np.array_equal(a.stderr[k], b.stderr[k])
    g1 = mc.finance.greeks("call", spot=100.0, strike=95.0, rate=0.01, vol=0.2, maturity=1.0,
                           n=5000, steps=20_000, rng=1, n_threads=1)
    g2 = mc.finance.greeks("call", spot=100.0, strike=95.0, rate=0.01, vol=0.2, maturity=1.0,
                           n=5000, steps=20_000, rng=1, n_threads=2)
    assert g1.price == g2.price and g1.delta == g2.delta and g1.stderr == g2.stderr
    # sample draws chunk by chunk with polls in between: the same as the
    # estimator's draws of one stream
    x1 = mc.Gamma(2.0, 1.0).sample(100_000, rng=np.random.default_rng(5))
    x2 = np.concatenate([mc.Gamma(2.0, 1.0).sample(m, rng=g)
                         for g in [np.random.default_rng(5)] for m in (37_000, 63_000)])
    assert np.array_equal(x1, x2)
