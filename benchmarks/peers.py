"""Peer (competitor) implementations of the score-function gradient estimates
defined in ``problems.py``: plain NumPy, JAX (jit + jax.random + jax.grad of
the log-density) and PyTorch (torch.distributions + surrogate loss).

Registry
--------
    PEERS[problem_name][impl_name] = factory
    factory(n: int, seed: int) -> run
    run() -> (grad, stderr)      # float64 NumPy arrays, shape PROBLEMS[name].grad_shape

Everything that is set-up rather than estimation happens in the factory
(building parameter tensors, and for JAX tracing + XLA compilation followed
by one warm-up call), so timing ``run()`` excludes JAX compile time.  Each
``run()`` call re-seeds, so repeated calls return identical results.
``grad`` is the n-sample average of f(x_i) * score(x_i); ``stderr`` is
std(summands, ddof=1) / sqrt(n), per coordinate.

Implementation names (not every problem has every name):
    numpy_f64                 vectorised NumPy, np.random.default_rng(seed), analytic score
    jax_f64, jax_f32          jax.jit; score = jax.vmap(jax.grad(logpdf)) (per-sample);
                              for ``categorical``: grad of the surrogate sum (see below)
    jax_f64_choice, _f32      categorical only: sampling by jax.random.choice(p=softmax)
                              (inverse CDF) instead of jax.random.categorical (Gumbel-max,
                              which draws n*K Gumbels)
    torch_f64, torch_f32      torch.distributions, sample(), then the surrogate-loss idiom
                              (f.detach() * d.log_prob(x)).mean().backward()
    torch_f64_index, _f32     categorical only: log_softmax once, index it with x
                              (instead of Categorical.log_prob, whose backward
                              materialises an n x K gradient)

NOTES[problem][impl] holds cost warnings (e.g. categorical jax_f64 at n=1e6 takes
~15 GiB and ~17 s per run); check it before running the benchmark-size n.

Floors (time to draw n standard normals only; run() returns None):
    FLOORS["numpy_rng_floor"], FLOORS["jax_rng_floor_f64"], ... (same factory signature)
    numpy_rng_floor(n, seed) is also a plain function.

Standard errors
---------------
* NumPy: from the per-sample summands (analytic score).
* JAX: from the per-sample gradients that vmap(grad(logpdf)) produced -- the
  same autodiff scores that give the mean.  For ``categorical`` the n x K
  per-sample matrix is never formed (8 GB at n=1e6); the mean is jax.grad of
  mean(f * log_softmax(logits)[x]) and the stderr uses the exact O(n + K)
  identity  sum_i g_ik^2 = Q_k (1 - 2 p_k) + p_k^2 Q  with
  Q_k = sum_{i: x_i = k} f_i^2, Q = sum_i f_i^2  (segment sums).
* PyTorch: the mean is the autograd gradient of the surrogate loss; the
  stderr is computed (inside run(), under no_grad, in the same framework and
  dtype) from the *analytic* per-sample score, because the surrogate loss
  only yields the mean.  ``categorical`` uses the same segment-sum identity
  (torch.bincount).

Side effects / caveats
----------------------
* Importing this module with JAX installed sets ``jax_enable_x64 = True``
  (needed for the f64 variants; f32 variants pass explicit float32 dtypes).
* torch runs call ``torch.manual_seed(seed)`` (global generator), since
  Distribution.sample() takes no generator.  torch uses its default
  intra-op thread count (torch.get_num_threads()); XLA:CPU uses its own
  thread pool.  The integrator decides thread limits (e.g.
  torch.set_num_threads(1), and XLA_FLAGS / taskset before importing jax).
* torch.distributions argument validation is left at its default (on), as
  users have it.
* Missing jax / torch: a message is printed and those peers are absent from
  PEERS; importing never raises ImportError for them.

Run ``python peers.py [--n-scale 0.1]`` for a small verification table.
"""

from __future__ import annotations

import math
import os
import sys
import time

import numpy as np
from scipy import special

try:  # works both as ``benchmarks.peers`` and with benchmarks/ on sys.path
    from . import problems as _P
except ImportError:  # pragma: no cover
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import problems as _P  # type: ignore

PROBLEMS = _P.PROBLEMS

__all__ = [
    "PEERS",
    "FLOORS",
    "SKIPPED",
    "NOTES",
    "HAVE_JAX",
    "HAVE_TORCH",
    "numpy_normal_sq",
    "numpy_diag_gauss_quad",
    "numpy_categorical",
    "numpy_gamma_shape",
    "numpy_bs_delta",
    "numpy_rng_floor",
]

SKIPPED: dict[str, str] = {}

try:
    import jax
    import jax.numpy as jnp
    from jax import lax

    jax.config.update("jax_enable_x64", True)
    HAVE_JAX = True
except Exception as exc:  # ImportError or a broken install
    HAVE_JAX = False
    SKIPPED["jax"] = f"{type(exc).__name__}: {exc}"
    print(f"peers: jax not available ({SKIPPED['jax']}); skipping JAX peers", file=sys.stderr)

try:
    import torch
    import torch.distributions as TD

    HAVE_TORCH = True
except Exception as exc:
    HAVE_TORCH = False
    SKIPPED["torch"] = f"{type(exc).__name__}: {exc}"
    print(f"peers: torch not available ({SKIPPED['torch']}); skipping PyTorch peers", file=sys.stderr)


def _np_mean_se(*gs):
    """Per-sample summand arrays (n, ...) -> stacked (means, stderrs)."""
    n = gs[0].shape[0]
    mean = np.stack([g.mean(axis=0) for g in gs])
    se = np.stack([g.std(axis=0, ddof=1) for g in gs]) / math.sqrt(n)
    return mean, se


# ==========================================================================
# NumPy ("what users write today"): draw, analytic score, multiply, average
# ==========================================================================


def numpy_normal_sq(n: int, seed: int):
    p = PROBLEMS["normal_sq"].params
    loc, scale = p["loc"], p["scale"]
    rng = np.random.default_rng(seed)
    x = rng.normal(loc, scale, size=n)
    f = x * x
    eps = (x - loc) / scale
    g_loc = f * (eps / scale)  # d/dloc log N(x; loc, scale) = (x-loc)/scale^2
    g_scale = f * ((eps * eps - 1.0) / scale)  # d/dscale = ((x-loc)^2/scale^2 - 1)/scale
    return _np_mean_se(g_loc, g_scale)


def numpy_diag_gauss_quad(n: int, seed: int):
    p = PROBLEMS["diag_gauss_quad"].params
    loc, scale, c = p["loc"], p["scale"], p["shift"]
    rng = np.random.default_rng(seed)
    x = rng.normal(loc, scale, size=(n, loc.size))
    f = ((x - c) ** 2).sum(axis=1)[:, None]
    eps = (x - loc) / scale
    g_loc = f * (eps / scale)
    g_scale = f * ((eps * eps - 1.0) / scale)
    return _np_mean_se(g_loc, g_scale)


def _np_categorical_stats(x, f, prob, n):
    """Mean and stderr of g_i = f_i (onehot(x_i) - p) without forming n x K."""
    K = prob.size
    S = np.bincount(x, weights=f, minlength=K)
    Q = np.bincount(x, weights=f * f, minlength=K)
    F, Qt = f.sum(), (f * f).sum()
    mean = (S - prob * F) / n
    sumsq = Q * (1.0 - 2.0 * prob) + prob * prob * Qt
    var = np.maximum(sumsq - n * mean * mean, 0.0) / (n - 1)
    return mean, np.sqrt(var / n)


def numpy_categorical(n: int, seed: int):
    p = PROBLEMS["categorical"].params
    K, logits = p["K"], np.asarray(p["logits"], dtype=np.float64)
    prob = np.exp(logits - logits.max())
    prob /= prob.sum()
    rng = np.random.default_rng(seed)
    x = rng.choice(K, size=n, p=prob)
    f = (x / K) ** 2
    # score wrt logits: onehot(x) - softmax(logits)
    return _np_categorical_stats(x, f, prob, n)


def numpy_gamma_shape(n: int, seed: int):
    p = PROBLEMS["gamma_shape"].params
    a, b = p["concentration"], p["rate"]
    rng = np.random.default_rng(seed)
    x = rng.gamma(a, 1.0 / b, size=n)
    f = np.log1p(x)
    g_a = f * (math.log(b) - special.digamma(a) + np.log(x))  # d/da log p
    g_b = f * (a / b - x)  # d/db log p
    return _np_mean_se(g_a, g_b)


def numpy_bs_delta(n: int, seed: int):
    p = PROBLEMS["bs_delta"].params
    S0, K, r, sigma, T = p["S0"], p["K"], p["r"], p["sigma"], p["T"]
    sq = math.sqrt(T)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(n)
    ST = S0 * np.exp((r - 0.5 * sigma * sigma) * T + sigma * sq * z)
    pay = math.exp(-r * T) * np.maximum(ST - K, 0.0)
    g_delta = pay * (z / (S0 * sigma * sq))
    g_vega = pay * ((z * z - 1.0) / sigma - z * sq)
    return _np_mean_se(g_delta, g_vega)


def numpy_rng_floor(n: int, seed: int):
    """Only draw n standard normals (the sampling floor for NumPy)."""
    np.random.default_rng(seed).standard_normal(n)


_NUMPY_FUNCS = {
    "normal_sq": numpy_normal_sq,
    "diag_gauss_quad": numpy_diag_gauss_quad,
    "categorical": numpy_categorical,
    "gamma_shape": numpy_gamma_shape,
    "bs_delta": numpy_bs_delta,
}


def _numpy_factory(func):
    def factory(n: int, seed: int):
        n = int(n)

        def run():
            g, se = func(n, seed)
            return np.asarray(g, dtype=np.float64), np.asarray(se, dtype=np.float64)

        return run

    factory.__name__ = f"factory_{func.__name__}"
    return factory


def _numpy_floor_factory(n: int, seed: int):
    n = int(n)
    return lambda: numpy_rng_floor(n, seed)


# ==========================================================================
# JAX
# ==========================================================================

if HAVE_JAX:
    from jax.scipy.stats import gamma as _jgamma
    from jax.scipy.stats import norm as _jnorm

    def _jax_dtype(prec):
        return jnp.float64 if prec == "f64" else jnp.float32

    def _jax_mean_se(G, n):
        """G: (n, ...) per-sample summands -> (mean, stderr)."""
        return G.mean(axis=0), G.std(axis=0, ddof=1) / math.sqrt(n)

    def _jax_per_sample_scores(logpdf, theta, x):
        """vmap over samples of jax.grad(logpdf) wrt theta; x is data (no gradient)."""
        return jax.vmap(jax.grad(logpdf), in_axes=(None, 0))(theta, lax.stop_gradient(x))

    # ---- each builder returns (fn(key, theta) -> (grad, stderr), theta) ----

    def _jax_build_normal_sq(n, prec, **_):
        p = PROBLEMS["normal_sq"].params
        dt = _jax_dtype(prec)
        theta = jnp.array([p["loc"], p["scale"]], dtype=dt)

        def logpdf(th, x):
            return _jnorm.logpdf(x, th[0], th[1])

        def fn(key, th):
            x = th[0] + th[1] * jax.random.normal(key, (n,), dtype=dt)
            f = x * x
            S = _jax_per_sample_scores(logpdf, th, x)  # (n, 2)
            return _jax_mean_se(f[:, None] * S, n)

        return fn, theta

    def _jax_build_diag_gauss_quad(n, prec, **_):
        p = PROBLEMS["diag_gauss_quad"].params
        dt = _jax_dtype(prec)
        d, c = p["d"], p["shift"]
        theta = jnp.stack([jnp.asarray(p["loc"], dtype=dt), jnp.asarray(p["scale"], dtype=dt)])  # (2, d)

        def logpdf(th, x):  # x: (d,), independent coordinates
            return _jnorm.logpdf(x, th[0], th[1]).sum()

        def fn(key, th):
            x = th[0] + th[1] * jax.random.normal(key, (n, d), dtype=dt)
            f = ((x - c) ** 2).sum(axis=1)
            S = _jax_per_sample_scores(logpdf, th, x)  # (n, 2, d)
            return _jax_mean_se(f[:, None, None] * S, n)

        return fn, theta

    def _jax_build_categorical(n, prec, sampler="categorical", **_):
        p = PROBLEMS["categorical"].params
        dt = _jax_dtype(prec)
        K = p["K"]
        theta = jnp.asarray(p["logits"], dtype=dt)

        def fn(key, logits):
            if sampler == "categorical":  # Gumbel-max over an (n, K) array
                x = jax.random.categorical(key, logits, shape=(n,))
            else:  # inverse CDF
                x = jax.random.choice(key, K, shape=(n,), replace=True, p=jax.nn.softmax(logits))
            f = (x.astype(dt) / K) ** 2

            # mean via jax.grad of the surrogate  mean_i f_i log p(x_i; logits)
            def surrogate(lg):
                return jnp.mean(f * jax.nn.log_softmax(lg)[x])

            grad = jax.grad(surrogate)(logits)
            # stderr via segment sums (n x K per-sample scores never formed)
            prob = jax.nn.softmax(logits)
            Q = jnp.zeros(K, dt).at[x].add(f * f)
            Qt = jnp.sum(f * f)
            sumsq = Q * (1.0 - 2.0 * prob) + prob * prob * Qt
            var = jnp.maximum(sumsq - n * grad * grad, 0.0) / (n - 1)
            return grad, jnp.sqrt(var / n)

        return fn, theta

    def _jax_build_gamma_shape(n, prec, **_):
        p = PROBLEMS["gamma_shape"].params
        dt = _jax_dtype(prec)
        theta = jnp.array([p["concentration"], p["rate"]], dtype=dt)

        def logpdf(th, x):
            return _jgamma.logpdf(x, th[0], scale=1.0 / th[1])

        def fn(key, th):
            x = jax.random.gamma(key, th[0], (n,), dtype=dt) / th[1]
            f = jnp.log1p(x)
            S = _jax_per_sample_scores(logpdf, th, x)  # (n, 2)
            return _jax_mean_se(f[:, None] * S, n)

        return fn, theta

    def _jax_build_bs_delta(n, prec, **_):
        p = PROBLEMS["bs_delta"].params
        dt = _jax_dtype(prec)
        K, r, T = p["K"], p["r"], p["T"]
        sq = math.sqrt(T)
        disc = math.exp(-r * T)
        theta = jnp.array([p["S0"], p["sigma"]], dtype=dt)

        def logpdf(th, ST):  # lognormal density of S_T given (S0, sigma)
            S0, sigma = th[0], th[1]
            logST = jnp.log(ST)
            mu = jnp.log(S0) + (r - 0.5 * sigma * sigma) * T
            return _jnorm.logpdf(logST, mu, sigma * sq) - logST

        def fn(key, th):
            S0, sigma = th[0], th[1]
            z = jax.random.normal(key, (n,), dtype=dt)
            ST = S0 * jnp.exp((r - 0.5 * sigma * sigma) * T + sigma * sq * z)
            pay = disc * jnp.maximum(ST - K, 0.0)
            S = _jax_per_sample_scores(logpdf, th, ST)  # (n, 2)
            return _jax_mean_se(pay[:, None] * S, n)

        return fn, theta

    def _jax_factory(builder, prec, **opts):
        def factory(n: int, seed: int):
            n = int(n)
            fn, theta = builder(n, prec, **opts)
            key = jax.random.key(seed)
            compiled = jax.jit(fn).lower(key, theta).compile()
            jax.block_until_ready(compiled(key, theta))  # warm-up

            def run():
                g, se = compiled(key, theta)
                return np.asarray(g, dtype=np.float64), np.asarray(se, dtype=np.float64)

            return run

        return factory

    def _jax_floor_factory(prec):
        def factory(n: int, seed: int):
            n = int(n)
            dt = _jax_dtype(prec)
            key = jax.random.key(seed)
            compiled = jax.jit(lambda k: jax.random.normal(k, (n,), dtype=dt)).lower(key).compile()
            jax.block_until_ready(compiled(key))

            def run():
                jax.block_until_ready(compiled(key))

            return run

        return factory


# ==========================================================================
# PyTorch
# ==========================================================================

if HAVE_TORCH:

    def _torch_dtype(prec):
        return torch.float64 if prec == "f64" else torch.float32

    def _t_mean_se_of(G, n):
        return G.std(dim=0) / math.sqrt(n)  # torch.std default is unbiased (ddof=1)

    def _torch_out(params, se):
        g = np.stack([pp.grad.detach().cpu().numpy().astype(np.float64) for pp in params])
        return g, se.detach().cpu().numpy().astype(np.float64).reshape(g.shape)

    def _torch_factory_normal_sq(prec):
        def factory(n: int, seed: int):
            n = int(n)
            p = PROBLEMS["normal_sq"].params
            dt = _torch_dtype(prec)
            loc = torch.tensor(p["loc"], dtype=dt, requires_grad=True)
            scale = torch.tensor(p["scale"], dtype=dt, requires_grad=True)

            def run():
                torch.manual_seed(seed)
                loc.grad = scale.grad = None
                d = TD.Normal(loc, scale)
                x = d.sample((n,))
                f = x * x
                (f.detach() * d.log_prob(x)).mean().backward()
                with torch.no_grad():  # stderr from the analytic per-sample score
                    eps = (x - loc) / scale
                    G = torch.stack([f * eps / scale, f * (eps * eps - 1.0) / scale], dim=1)
                    se = _t_mean_se_of(G, n)
                return _torch_out((loc, scale), se)

            return run

        return factory

    def _torch_factory_diag_gauss_quad(prec):
        def factory(n: int, seed: int):
            n = int(n)
            p = PROBLEMS["diag_gauss_quad"].params
            dt = _torch_dtype(prec)
            c = p["shift"]
            loc = torch.tensor(p["loc"], dtype=dt, requires_grad=True)
            scale = torch.tensor(p["scale"], dtype=dt, requires_grad=True)

            def run():
                torch.manual_seed(seed)
                loc.grad = scale.grad = None
                d = TD.Independent(TD.Normal(loc, scale), 1)
                x = d.sample((n,))  # (n, d)
                f = ((x - c) ** 2).sum(dim=1)
                (f.detach() * d.log_prob(x)).mean().backward()
                with torch.no_grad():
                    eps = (x - loc) / scale
                    fc = f[:, None]
                    se = torch.stack(
                        [_t_mean_se_of(fc * (eps / scale), n), _t_mean_se_of(fc * ((eps * eps - 1.0) / scale), n)]
                    )
                return _torch_out((loc, scale), se)

            return run

        return factory

    def _torch_categorical_se(x, f, logits, grad, n):
        prob = torch.softmax(logits.detach(), dim=0)
        K = prob.numel()
        Q = torch.bincount(x, weights=f * f, minlength=K).to(f.dtype)
        Qt = (f * f).sum()
        sumsq = Q * (1.0 - 2.0 * prob) + prob * prob * Qt
        var = torch.clamp(sumsq - n * grad * grad, min=0.0) / (n - 1)
        return torch.sqrt(var / n)

    def _torch_factory_categorical(prec, index_form=False):
        def factory(n: int, seed: int):
            n = int(n)
            p = PROBLEMS["categorical"].params
            dt = _torch_dtype(prec)
            K = p["K"]
            logits = torch.tensor(p["logits"], dtype=dt, requires_grad=True)

            def run():
                torch.manual_seed(seed)
                logits.grad = None
                d = TD.Categorical(logits=logits)
                x = d.sample((n,))  # int64 indices
                f = (x.to(dt) / K) ** 2
                if index_form:
                    logp = torch.log_softmax(logits, dim=0)
                    (f * logp[x]).mean().backward()
                else:
                    (f.detach() * d.log_prob(x)).mean().backward()
                with torch.no_grad():
                    se = _torch_categorical_se(x, f, logits, logits.grad, n)
                return logits.grad.detach().numpy().astype(np.float64), se.numpy().astype(np.float64)

            return run

        return factory

    def _torch_factory_gamma_shape(prec):
        def factory(n: int, seed: int):
            n = int(n)
            p = PROBLEMS["gamma_shape"].params
            dt = _torch_dtype(prec)
            a = torch.tensor(p["concentration"], dtype=dt, requires_grad=True)
            b = torch.tensor(p["rate"], dtype=dt, requires_grad=True)

            def run():
                torch.manual_seed(seed)
                a.grad = b.grad = None
                d = TD.Gamma(a, b)
                x = d.sample((n,))
                f = torch.log1p(x)
                (f.detach() * d.log_prob(x)).mean().backward()
                with torch.no_grad():
                    G = torch.stack([f * (torch.log(b) - torch.digamma(a) + torch.log(x)), f * (a / b - x)], dim=1)
                    se = _t_mean_se_of(G, n)
                return _torch_out((a, b), se)

            return run

        return factory

    def _torch_factory_bs_delta(prec):
        def factory(n: int, seed: int):
            n = int(n)
            p = PROBLEMS["bs_delta"].params
            dt = _torch_dtype(prec)
            K, r, T = p["K"], p["r"], p["T"]
            sq = math.sqrt(T)
            disc = math.exp(-r * T)
            S0 = torch.tensor(p["S0"], dtype=dt, requires_grad=True)
            sigma = torch.tensor(p["sigma"], dtype=dt, requires_grad=True)

            def run():
                torch.manual_seed(seed)
                S0.grad = sigma.grad = None
                d = TD.LogNormal(torch.log(S0) + (r - 0.5 * sigma * sigma) * T, sigma * sq)
                ST = d.sample((n,))
                pay = disc * torch.clamp(ST - K, min=0.0)
                (pay.detach() * d.log_prob(ST)).mean().backward()
                with torch.no_grad():  # analytic LR scores for the stderr
                    z = (torch.log(ST) - d.loc) / d.scale
                    G = torch.stack(
                        [pay * (z / (S0 * sigma * sq)), pay * ((z * z - 1.0) / sigma - z * sq)], dim=1
                    )
                    se = _t_mean_se_of(G, n)
                return _torch_out((S0, sigma), se)

            return run

        return factory

    def _torch_floor_factory(prec):
        def factory(n: int, seed: int):
            n = int(n)
            dt = _torch_dtype(prec)

            def run():
                torch.manual_seed(seed)
                torch.randn(n, dtype=dt)

            return run

        return factory


# ==========================================================================
# Registry
# ==========================================================================


def _build_registry():
    peers: dict[str, dict] = {name: {} for name in PROBLEMS}
    for name, func in _NUMPY_FUNCS.items():
        peers[name]["numpy_f64"] = _numpy_factory(func)
    if HAVE_JAX:
        builders = {
            "normal_sq": _jax_build_normal_sq,
            "diag_gauss_quad": _jax_build_diag_gauss_quad,
            "categorical": _jax_build_categorical,
            "gamma_shape": _jax_build_gamma_shape,
            "bs_delta": _jax_build_bs_delta,
        }
        for name, builder in builders.items():
            for prec in ("f64", "f32"):
                peers[name][f"jax_{prec}"] = _jax_factory(builder, prec)
        for prec in ("f64", "f32"):
            peers["categorical"][f"jax_{prec}_choice"] = _jax_factory(_jax_build_categorical, prec, sampler="choice")
    if HAVE_TORCH:
        makers = {
            "normal_sq": _torch_factory_normal_sq,
            "diag_gauss_quad": _torch_factory_diag_gauss_quad,
            "categorical": _torch_factory_categorical,
            "gamma_shape": _torch_factory_gamma_shape,
            "bs_delta": _torch_factory_bs_delta,
        }
        for name, maker in makers.items():
            for prec in ("f64", "f32"):
                peers[name][f"torch_{prec}"] = maker(prec)
        for prec in ("f64", "f32"):
            peers["categorical"][f"torch_{prec}_index"] = _torch_factory_categorical(prec, index_form=True)
    return peers


PEERS = _build_registry()

# Cost warnings measured on the 2-core / 24 GiB machine (one run after warm-up).
# The integrator may want to skip or cap these at the benchmark n.
NOTES: dict[str, dict[str, str]] = {
    "categorical": {
        "jax_f64": "jax.random.categorical = Gumbel-max over n*K draws: n=1e6 ~17 s/run, "
        "~25 s compile, ~15 GiB peak RSS",
        "jax_f32": "as jax_f64 (Gumbel-max): n=1e6 ~24 s/run, ~36 s compile, ~15 GiB peak RSS",
        "torch_f64": "Categorical.log_prob backward materialises an n x K gradient: n=1e6 "
        "~6 s/run, ~7.9 GiB peak RSS",
        "torch_f32": "as torch_f64: n=1e6 ~2 s/run, ~4.2 GiB peak RSS",
    },
}

FLOORS = {"numpy_rng_floor": _numpy_floor_factory}
if HAVE_JAX:
    FLOORS["jax_rng_floor_f64"] = _jax_floor_factory("f64")
    FLOORS["jax_rng_floor_f32"] = _jax_floor_factory("f32")
if HAVE_TORCH:
    FLOORS["torch_rng_floor_f64"] = _torch_floor_factory("f64")
    FLOORS["torch_rng_floor_f32"] = _torch_floor_factory("f32")


# ==========================================================================
# Small self-verification (not a benchmark runner)
# ==========================================================================


def _verify(n_scale=1.0, only=None, impls=None, seed=12345, repeat=3):
    """Run each peer at a moderate n; print setup time, best-of-`repeat` run
    time (after the first, untimed call), max |z| vs the truth, and the range
    of stderr / exact stderr.  A check, not a benchmark runner."""
    default_n = {
        "normal_sq": 1_000_000,
        "diag_gauss_quad": 100_000,
        "categorical": 100_000,
        "gamma_shape": 1_000_000,
        "bs_delta": 1_000_000,
    }
    # Below ~1e5 draws some of the 1000 categories are hit 0-3 times and their
    # empirical stderr is meaningless (max |z| explodes for every peer alike).
    min_n = {"categorical": 100_000}
    bad = []
    print(f"{'problem':16s} {'impl':18s} {'n':>9s} {'setup s':>8s} {'run s':>8s} {'max|z|':>7s} {'se/exact se':>14s}")
    for name, impls_ in PEERS.items():
        if only and name not in only:
            continue
        n = max(min_n.get(name, 1000), int(default_n[name] * n_scale))
        exact_se = _P.exact_sd(name) / math.sqrt(n)
        for impl, factory in impls_.items():
            if impls and not any(s in impl for s in impls):
                continue
            t0 = time.perf_counter()
            run = factory(n, seed)
            t1 = time.perf_counter()
            g, se = run()
            times = []
            for _ in range(repeat):
                ta = time.perf_counter()
                run()
                times.append(time.perf_counter() - ta)
            z = _P.check(name, g, se)
            ratio = se / exact_se
            flag = "" if z < 5 else "  <-- FAIL"
            if z >= 5:
                bad.append((name, impl, z))
            print(
                f"{name:16s} {impl:18s} {n:9d} {t1 - t0:8.3f} {min(times):8.4f} {z:7.2f} "
                f"{ratio.min():6.3f}-{ratio.max():6.3f}{flag}",
                flush=True,
            )
    return bad


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-scale", type=float, default=1.0)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--impls", nargs="*", help="substrings of implementation names")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    bad = _verify(args.n_scale, args.only, args.impls, repeat=args.repeat)
    sys.exit(1 if bad else 0)
