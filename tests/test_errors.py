"""The failure contract: bad input gets a clear error naming the argument and
the constraint; nothing crashes, nothing returns a silent NaN."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import mcscore as mc
from mcscore import integrands as I

N = mc.Normal(0.0, 1.0)


def sq(x):
    return x**2


# -- distribution parameters -------------------------------------------------

@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: mc.Normal(0.0, -1.0), r"Normal: scale must be > 0"),
        (lambda: mc.Normal(0.0, 0.0), r"scale must be > 0"),
        (lambda: mc.Normal(np.nan, 1.0), r"loc must be a finite real"),
        (lambda: mc.Normal(np.inf, 1.0), r"loc must be a finite real"),
        (lambda: mc.Normal(0.0, [1.0, np.nan]), r"scale must be > 0 .*index \(1,\)"),
        (lambda: mc.Normal([0, 0, 0], [1, 1]), r"do not broadcast"),
        (lambda: mc.LogNormal(0.0, -2.0), r"LogNormal: scale must be > 0"),
        (lambda: mc.Exponential(0.0), r"Exponential: rate must be > 0"),
        (lambda: mc.Gamma(-1.0, 1.0), r"Gamma: concentration must be > 0"),
        (lambda: mc.Gamma(1.0, np.inf), r"Gamma: rate must be > 0 and finite"),
        (lambda: mc.Beta(1.0, 0.0), r"Beta: concentration0 must be > 0"),
        (lambda: mc.Poisson(-3.0), r"Poisson: rate must be > 0"),
        (lambda: mc.Bernoulli(probs=1.5), r"Bernoulli: probs must be in \[0, 1\]"),
        (lambda: mc.Bernoulli(probs=np.nan), r"probs must be in \[0, 1\]"),
        (lambda: mc.Bernoulli(), r"exactly one of probs or logits"),
        (lambda: mc.Bernoulli(probs=0.5, logits=0.0), r"exactly one of probs or logits"),
        (lambda: mc.Binomial(-1, probs=0.5), r"Binomial: total_count must be a non-negative integer"),
        (lambda: mc.Binomial(2.5, probs=0.5), r"total_count must be a non-negative integer"),
        (lambda: mc.Geometric(probs=0.0), r"Geometric: probs must be in \(0, 1\]"),
        (lambda: mc.NegativeBinomial(3, probs=1.0), r"NegativeBinomial: probs must be in \[0, 1\)"),
        (lambda: mc.NegativeBinomial(0, probs=0.5), r"total_count must be > 0"),
        (lambda: mc.Categorical(probs=[0.5, -0.1]), r"Categorical: probs must be >= 0"),
        (lambda: mc.Categorical(probs=[0.0, 0.0]), r"positive sum"),
        (lambda: mc.Categorical(probs=0.5), r"at least 1 dimension"),
        (lambda: mc.Categorical(logits=[0.0, np.inf]), r"logits must be a finite real"),
        (lambda: mc.Multinomial(3, probs=[[0.5, 0.5]] * 2, ) if False else
         mc.Multinomial([1, 2, 3], probs=[[0.5, 0.5]] * 2), r"does not broadcast"),
        (lambda: mc.Dirichlet([1.0]), r"at least 2 categories"),
        (lambda: mc.Dirichlet([1.0, -1.0]), r"Dirichlet: concentration must be > 0"),
    ],
)
def test_bad_parameters_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("bad", [True, 1 + 2j, "1.0", None, object(), [[1.0], [1.0, 2.0]]])
def test_bad_parameter_types_raise_type_error(bad):
    with pytest.raises(TypeError, match="loc"):
        mc.Normal(bad, 1.0)


def test_parameters_are_copied_and_frozen():
    loc = np.zeros(3)
    d = mc.Normal(loc, 1.0)
    loc[0] = 100.0
    assert d.loc[0] == 0.0
    with pytest.raises(ValueError):
        d.loc[1] = 1.0


# -- score_grad arguments ------------------------------------------------------

@pytest.mark.parametrize("n, exc, match", [
    (1, ValueError, "n must be >= 2"),
    (0, ValueError, "n must be >= 2"),
    (-5, ValueError, "n must be >= 2"),
    (10.0, TypeError, "n must be an integer"),
    (True, TypeError, "n must be an integer"),
    ("100", TypeError, "n must be an integer"),
    (None, TypeError, "n must be an integer"),
    (2**63, ValueError, "n must be <="),
])
def test_bad_n(n, exc, match):
    with pytest.raises(exc, match=match):
        mc.score_grad(sq, N, n)


def test_numpy_integer_n_is_fine():
    r = mc.score_grad(sq, N, np.int64(1000), rng=0)
    assert r.n == 1000


@pytest.mark.parametrize("rng, exc", [
    (-1, ValueError), (1.5, TypeError), ("seed", TypeError), (True, TypeError),
])
def test_bad_rng(rng, exc):
    with pytest.raises(exc, match="rng"):
        mc.score_grad(sq, N, 100, rng=rng)


@pytest.mark.parametrize("t, exc", [(0, ValueError), (1.0, TypeError), ("2", TypeError)])
def test_bad_n_threads(t, exc):
    with pytest.raises(exc, match="n_threads"):
        mc.score_grad(sq, N, 100, n_threads=t)


@pytest.mark.parametrize("b", ["mean", np.nan, np.inf, True, [1.0], object()])
def test_bad_baseline(b):
    with pytest.raises(ValueError, match="baseline"):
        mc.score_grad(sq, N, 100, baseline=b)


def test_optimal_baseline_needs_two_streams():
    with pytest.raises(ValueError, match="at least 2 streams"):
        mc.score_grad(sq, N, 100, baseline="optimal")
    # ... and works with a smaller block size
    r = mc.score_grad(sq, N, 100, baseline="optimal", block_size=10, rng=0)
    assert np.isfinite(r.grad["loc"])


def test_bad_dist_and_f():
    with pytest.raises(TypeError, match="dist must be an mcscore distribution"):
        mc.score_grad(sq, "normal", 100)
    with pytest.raises(TypeError, match="f must be a vectorised Python callable"):
        mc.score_grad(3.0, N, 100)


@pytest.mark.parametrize("kw, match", [
    ({"n_streams": 0}, "n_streams must be >= 1"),
    ({"block_size": 0}, "block_size must be >= 1"),
    ({"chunk_size": 0}, "chunk_size must be >= 1"),
])
def test_bad_plan_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        mc.score_grad(sq, N, 100, **kw)


def test_score_undefined_at_boundary_probs():
    with pytest.raises(ValueError, match=r"probs must be in \(0, 1\) to estimate gradients"):
        mc.score_grad(sq, mc.Bernoulli(probs=0.0), 100)
    with pytest.raises(ValueError, match="probs must be > 0 to estimate gradients"):
        mc.score_grad(sq, mc.Categorical(probs=[0.5, 0.0, 0.5]), 100)
    # logits are fine, and sampling at the boundary is fine
    assert (mc.Bernoulli(probs=0.0).sample(10, rng=0) == 0).all()


# -- f's output ----------------------------------------------------------------

@pytest.mark.parametrize("f, exc, match", [
    (lambda x: None, TypeError, "f returned None"),
    (lambda x: x[:, None], ValueError, r"f returned shape \(\d+, 1\) instead of \(\d+,\)"),
    (lambda x: x[:-1], ValueError, "instead of"),
    (lambda x: 1.0, ValueError, "returned a scalar"),
    (lambda x: x.astype(complex), TypeError, "complex"),
    (lambda x: np.array(["a"] * len(x)), TypeError, "real numbers"),
    (lambda x: np.where(np.arange(len(x)) == 7, np.nan, x), ValueError,
     r"f returned nan at draw \d+ \(x = .*\); f must be finite"),
    (lambda x: np.where(x > 2.5, np.inf, x), ValueError, r"f returned inf at draw"),
])
def test_bad_f_output(f, exc, match):
    with pytest.raises(exc, match=match):
        mc.score_grad(f, N, 5000, rng=0)


def test_f_list_output_is_accepted():
    r1 = mc.score_grad(lambda x: list(x * x), N, 1000, rng=0)
    r2 = mc.score_grad(lambda x: x * x, N, 1000, rng=0)
    assert r1.grad == r2.grad or np.array_equal(r1.grad["loc"], r2.grad["loc"])


def test_nan_draw_index_is_exact():
    # f is NaN only on the draw with global index 1234: the error names it.
    seen = {}

    def f(x):
        return x * 0.0 + 1.0

    def record(x):
        return x

    # find the value of draw 1234 by recording the draws
    xs = []
    mc.score_grad(lambda x: (xs.append(x.copy()), x * 0)[1], N, 3000, rng=5, chunk_size=3000)
    allx = np.concatenate(xs)
    target = allx[1234]

    def bad(x):
        return np.where(x == target, np.nan, 1.0)

    with pytest.raises(ValueError, match=r"at draw 1234 "):
        mc.score_grad(bad, N, 3000, rng=5)
    seen["ok"] = True
    assert seen


def test_fused_integrand_nan_names_the_draw():
    # log1p(x) is NaN for x < -1: the kernel stops and names a draw with x < -1
    with pytest.raises(ValueError, match=r"non-finite value .* at draw \d+ \(x = -"):
        mc.score_grad(I.log1p(), mc.Normal(0.0, 1.0), 10**5, rng=0)


def test_errors_from_f_propagate_with_context():
    class Boom(RuntimeError):
        pass

    def f(x):
        raise Boom("simulator failed")

    with pytest.raises(Boom, match="simulator failed") as info:
        mc.score_grad(f, N, 1000, rng=0)
    if sys.version_info >= (3, 11):
        assert any("raised by f on draws" in n for n in info.value.__notes__)


def test_f_that_mutates_its_input_cannot_corrupt_the_estimate():
    def mutating(x):
        out = x**2
        x[:] = 1e300  # vandalise the batch we were given
        return out

    r1 = mc.score_grad(mutating, N, 10**4, rng=3)
    r2 = mc.score_grad(sq, N, 10**4, rng=3)
    assert np.array_equal(r1.grad["loc"], r2.grad["loc"])


def test_integrand_argument_errors():
    with pytest.raises(ValueError, match="coord=5 is out of range"):
        mc.score_grad(I.power(2, coord=5), mc.Normal(np.zeros(3), 1.0), 100)
    with pytest.raises(ValueError, match="does not broadcast to the draw shape"):
        mc.score_grad(I.linear([1.0, 2.0]), mc.Normal(np.zeros(3), 1.0), 100)
    with pytest.raises(ValueError, match="A must have shape"):
        mc.score_grad(I.quadratic(np.ones((2, 2))), mc.Normal(np.zeros(3), 1.0), 100)
    with pytest.raises(ValueError, match="low <= high"):
        I.indicator(1.0, 0.0)
    with pytest.raises(TypeError, match="strike"):
        I.call("100")
    with pytest.raises(ValueError, match="strike must be finite"):
        I.call(np.nan)
    with pytest.raises(TypeError, match="p must be an integer"):
        I.power(1.5)


# -- score_grad_from_samples ------------------------------------------------

def test_from_samples_errors():
    x = N.sample(100, rng=0)
    with pytest.raises(ValueError, match=r"fx must have shape \(100,\)"):
        mc.score_grad_from_samples(N, x, np.ones(99))
    with pytest.raises(ValueError, match=r"fx\[3\] = nan is not finite"):
        fx = np.ones(100)
        fx[3] = np.nan
        mc.score_grad_from_samples(N, x, fx)
    with pytest.raises(TypeError, match="fx must be an array of real numbers"):
        mc.score_grad_from_samples(N, x, None)
    with pytest.raises(ValueError, match="at least 2 draws"):
        mc.score_grad_from_samples(N, x[:1], np.ones(1))
    with pytest.raises(ValueError, match="outside the support"):
        mc.score_grad_from_samples(mc.Poisson(2.0), np.array([1.0, 2.5, 3.0]), np.ones(3))
    with pytest.raises(ValueError, match=r"x must have shape"):
        mc.score_grad_from_samples(mc.Normal(np.zeros(3), 1.0), np.ones((10, 2)), np.ones(10))


# -- interrupts and memory -------------------------------------------------------

@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("kind", ["integrand", "python"])
def test_ctrl_c_stops_a_long_run_within_a_second(kind):
    f = "I.power(2)" if kind == "integrand" else "lambda x: x * x"
    code = textwrap.dedent(f"""
        import sys, time
        import mcscore as mc
        from mcscore import integrands as I
        mc.score_grad(I.power(2), mc.Normal(0.0, 1.0), 10**5, rng=0)
        print("ready", flush=True)
        t0 = time.perf_counter()
        try:
            mc.score_grad({f}, mc.Normal(0.0, 1.0), 10**12, rng=0)
        except KeyboardInterrupt:
            t1 = time.perf_counter()
            # the next call works
            r = mc.score_grad(I.power(2), mc.Normal(0.0, 1.0), 10**4, rng=0)
            print("interrupted", r.n, flush=True)
            sys.stdout.flush()
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        time.sleep(1.0)
        t0 = time.perf_counter()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
        elapsed = time.perf_counter() - t0
    finally:
        p.kill()
    assert "interrupted 10000" in out, err
    assert elapsed < 5.0  # generous for a loaded machine; typically well under 1 s


def test_memory_is_bounded_for_huge_n():
    # n = 10**8 draws with a fused integrand: no O(n) allocation.
    import tracemalloc

    tracemalloc.start()
    r = mc.score_grad(I.power(1), mc.Bernoulli(logits=0.0), 10**8, rng=0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert r.n == 10**8
    assert peak < 20 * 2**20  # far below the 800 MB an array of draws would take
    assert abs(r.grad["logits"] - 0.25) < 5 * r.stderr["logits"]


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="resource module")
def test_n_1e9_with_a_fused_integrand_runs_in_bounded_memory():
    # A child process so that its peak RSS is its own.
    code = textwrap.dedent("""
        import resource, mcscore as mc
        from mcscore import integrands as I
        r = mc.score_grad(I.power(1), mc.Bernoulli(logits=0.0), 10**9, rng=0)
        z = (r.grad["logits"] - 0.25) / r.stderr["logits"]
        # VmHWM is this process's own peak; ru_maxrss may include the parent's
        # resident set inherited at fork.
        try:
            with open("/proc/self/status") as fh:
                peak_mb = [int(l.split()[1]) for l in fh if l.startswith("VmHWM")][0] / 1024
        except OSError:
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(r.n, z, peak_mb)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    n, z, peak_mb = out.stdout.split()
    assert int(n) == 10**9
    assert abs(float(z)) < 5
    # an array of 1e9 draws would be 8 GB; the run needs the interpreter plus
    # a few block buffers
    assert float(peak_mb) < 300, peak_mb
