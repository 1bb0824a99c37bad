"""Shared plumbing of the "sizes users run" benchmarks (small_calls.py,
families.py, many_coords.py): imports with the peers optional, interleaved
timing, the exact gradient and standard deviation of the Normal / sum of
squares problem, and the markdown header (machine, load, threads).

Timing: every implementation is called once first (warm-up, and the result
that is checked against the exact gradient), then calibrated to a batch of
`number` calls lasting at least `min_batch` seconds; the `repeats` batches
are interleaved round-robin over the implementations, so that a burst of load
from the other users of a shared machine hits all of them alike; the time of
an implementation is the median over its batches of the per-call time.
"""
from __future__ import annotations

import os

for _v in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import math  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if os.path.isdir(os.path.join(ROOT, "src", "mcscore")):
    sys.path.insert(0, os.path.join(ROOT, "src"))
sys.path.insert(0, HERE)

import mcscore as mc  # noqa: E402

NCPU = os.cpu_count() or 1
SKIPPED: dict[str, str] = {}

try:
    import torch
    import torch.distributions as TD

    torch.set_num_threads(NCPU)
    HAVE_TORCH = True
except Exception as exc:  # not installed, or broken
    torch = TD = None
    HAVE_TORCH = False
    SKIPPED["torch"] = f"{type(exc).__name__}: {exc}"

try:
    import jax
    import jax.numpy as jnp
    from jax.scipy.stats import norm as jnorm

    jax.config.update("jax_enable_x64", True)
    HAVE_JAX = True
except Exception as exc:
    jax = jnp = jnorm = None
    HAVE_JAX = False
    SKIPPED["jax"] = f"{type(exc).__name__}: {exc}"

Z_MAX = 5.0


def log(msg=""):
    print(msg, flush=True)


def announce_skipped():
    for lib, why in SKIPPED.items():
        log(f"peer {lib} not installed, its rows are skipped ({why})")


# ---------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------

def _batch(fn, number):
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def restore_threads():
    """torch.set_num_threads(k) also sets the OpenMP runtime's default team
    size that mcscore's kernels use (one libgomp in the process): after a
    one-thread PyTorch variant, put the default back to all cores."""
    if HAVE_TORCH and torch.get_num_threads() != NCPU:
        torch.set_num_threads(NCPU)


def bench(impls, repeats, min_batch=0.02):
    """impls: {name: fn}; returns ({name: first result}, {name: median s per
    call}, {name: number of calls per batch}).  Round-robin interleaved."""
    first, number = {}, {}
    for name, fn in impls.items():
        t0 = time.perf_counter()
        first[name] = fn()
        one = time.perf_counter() - t0
        if one < min_batch:  # calibrate on a second (warm) call
            one = max(_batch(fn, 1), 1e-7)
        number[name] = max(1, int(math.ceil(min_batch / one)))
        restore_threads()
    samples = {name: [] for name in impls}
    for _ in range(repeats):
        for name, fn in impls.items():
            samples[name].append(_batch(fn, number[name]))
            restore_threads()
    return first, {k: float(np.median(v)) for k, v in samples.items()}, number


def fmt_t(s):
    if s >= 1.0:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} us"


# ---------------------------------------------------------------------------
# Normal(loc, scale) with d coordinates, f(x) = sum_j x_j^2
# ---------------------------------------------------------------------------

def normal_params(d):
    return np.linspace(-1.0, 1.0, d), np.linspace(0.5, 1.5, d)


def normal_sumsq_exact(d):
    """(exact gradient (2, d), exact sd of one summand f(x) * score (2, d)).

    E f = sum_j loc_j^2 + scale_j^2, so the gradient is (2 loc, 2 scale).
    Per coordinate k, f = A + B with B = x_k^2 and A the other coordinates'
    sum, independent of x_k: E[f^2 S^2] = E[A^2] E[S^2] + 2 E[A] E[B S^2] +
    E[B^2 S^2], each one-dimensional expectation by Gauss-Hermite (exact for
    these polynomials).
    """
    from problems import _normal_expect

    loc, scale = normal_params(d)
    grad = np.stack([2 * loc, 2 * scale])
    eB = loc**2 + scale**2
    vB = 2 * scale**4 + 4 * loc**2 * scale**2
    e2 = np.empty((2, d))
    for k in range(d):
        m, s = loc[k], scale[k]
        eA = eB.sum() - eB[k]
        eA2 = (vB.sum() - vB[k]) + eA**2
        for row, sc in enumerate((lambda x: (x - m) / s**2,
                                  lambda x: (((x - m) / s) ** 2 - 1.0) / s)):
            e2[row, k] = (eA2 * _normal_expect(lambda x: sc(x) ** 2, m, s)
                          + 2 * eA * _normal_expect(lambda x: x**2 * sc(x) ** 2, m, s)
                          + _normal_expect(lambda x: x**4 * sc(x) ** 2, m, s))
    return grad, np.sqrt(e2 - grad**2)


def z_exact(grad, exact, sd, n):
    """max |grad - exact| / (sd / sqrt n) over the coordinates."""
    g = np.asarray(grad, float).reshape(exact.shape)
    if not np.isfinite(g).all():
        return float("inf")
    return float(np.max(np.abs(g - exact) / (sd / math.sqrt(n))))


def mc_normal_sumsq(n, d, f, seed, **kw):
    """mcscore: score_grad with f (fused integrand or Python callable).  The
    distribution is built inside the call, as in a training loop whose
    parameters change at every step (and as the PyTorch peer does)."""
    loc, scale = normal_params(d)

    def run():
        r = mc.score_grad(f, mc.Normal(loc, scale), n, rng=seed, **kw)
        return np.stack([r.grad["loc"], r.grad["scale"]])
    return run


def mc_prepared_normal_sumsq(n, d, f, seed, **kw):
    """mcscore's prepared estimator (mc.Estimator), called with the
    parameters of the step: the same result as mc_normal_sumsq bit for bit,
    without the per-call setup that does not depend on the values."""
    loc, scale = normal_params(d)
    est = mc.Estimator(mc.Normal, f, n, rng=seed, **kw)

    def run():
        r = est(loc=loc, scale=scale)
        return np.stack([r.grad["loc"], r.grad["scale"]])
    return run


def numpy_normal_sumsq(n, d, seed):
    """The hand-written NumPy estimator (gradient and standard error, as
    mcscore returns them)."""
    loc, scale = normal_params(d)

    def run():
        rng = np.random.default_rng(seed)
        x = rng.normal(loc, scale, size=(n, d))
        f = (x * x).sum(axis=1)[:, None]
        eps = (x - loc) / scale
        g_loc = f * (eps / scale)
        g_scale = f * ((eps * eps - 1.0) / scale)
        # the standard error too, as mcscore returns it (not checked here)
        _se = np.stack([g_loc.std(0, ddof=1), g_scale.std(0, ddof=1)]) / math.sqrt(n)
        return np.stack([g_loc.mean(0), g_scale.mean(0)])
    return run


def torch_normal_sumsq(n, d, seed, dtype, threads=NCPU):
    """PyTorch surrogate-loss step: sample, (f * log_prob).mean().backward(),
    with `threads` intra-op threads (switched only when another variant ran
    last, i.e. once per timed batch)."""
    loc0, scale0 = normal_params(d)
    dt = torch.float64 if dtype == "f64" else torch.float32
    loc = torch.tensor(loc0, dtype=dt, requires_grad=True)
    scale = torch.tensor(scale0, dtype=dt, requires_grad=True)

    def run():
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        torch.manual_seed(seed)
        loc.grad = scale.grad = None
        dist = TD.Normal(loc, scale)
        x = dist.sample((n,))
        f = (x * x).sum(1)
        (f * dist.log_prob(x).sum(1)).mean().backward()
        return np.stack([loc.grad.double().numpy(), scale.grad.double().numpy()])
    return run


def jax_normal_sumsq(n, d, seed, dtype):
    """JAX: jax.jit(jax.grad(surrogate)); compile time excluded (done here,
    plus one warm-up call)."""
    loc0, scale0 = normal_params(d)
    dt = jnp.float64 if dtype == "f64" else jnp.float32
    theta = (jnp.asarray(loc0, dt), jnp.asarray(scale0, dt))

    def surrogate(th, key):
        loc, scale = th
        x = jax.lax.stop_gradient(loc + scale * jax.random.normal(key, (n, d), dt))
        f = (x * x).sum(1)
        return (f * jnorm.logpdf(x, loc, scale).sum(1)).mean()

    key = jax.random.key(seed)
    g = jax.jit(jax.grad(surrogate)).lower(theta, key).compile()
    jax.block_until_ready(g(theta, key))

    def run():
        gl, gs = g(theta, key)
        return np.stack([np.asarray(gl, np.float64), np.asarray(gs, np.float64)])
    return run


def peer_impls(n, d, seed, torch_dtypes=("f64", "f32"), jax_dtypes=("f64", "f32")):
    """{name: factory()} of the available PyTorch / JAX peers."""
    out = {}
    if HAVE_TORCH:
        for dt in torch_dtypes:
            out[f"torch_{dt}"] = lambda dt=dt: torch_normal_sumsq(n, d, seed, dt)
        if NCPU > 1:  # on a loaded machine torch's own pool can be far slower than 1 thread
            for dt in torch_dtypes:
                out[f"torch_{dt}_1thread"] = lambda dt=dt: torch_normal_sumsq(n, d, seed, dt, 1)
    if HAVE_JAX:
        for dt in jax_dtypes:
            out[f"jax_{dt}"] = lambda dt=dt: jax_normal_sumsq(n, d, seed, dt)
    return out


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------

MC_THREADS = mc.effective_n_threads(None)  # before any peer has run


def header(repeats, t_start_load):
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
    except Exception:
        pass
    parts = [f"Machine: {cpu} ({NCPU} cores, shared with other users), load average "
             f"{t_start_load:.2f} at start, {os.getloadavg()[0]:.2f} at end",
             f"mcscore {mc.__version__} threads {MC_THREADS} (checked after the run: "
             f"{mc.effective_n_threads(None)})",
             f"NumPy {np.__version__}, one thread"]
    if HAVE_TORCH:
        parts.append(f"torch {torch.__version__} threads {NCPU} (1 in the _1thread rows)")
    if HAVE_JAX:
        parts.append(f"jax {jax.__version__} (XLA's own CPU pool)")
    for lib in SKIPPED:
        parts.append(f"{lib}: not installed, skipped")
    return ("; ".join(parts) + f".  Median over {repeats} interleaved batches, after a "
            "warm-up call.")


def write(name, md, out_dir=None):
    out_dir = out_dir or os.path.join(HERE, "results")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, name)
    with open(path, "w") as fh:
        fh.write(md + "\n")
    log("")
    log(md)
    log(f"\nwrote {path}")
    return path
