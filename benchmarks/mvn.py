"""MultivariateNormal benchmark: the score-function gradient of
E[x^T A x + b^T x] w.r.t. loc and scale_tril for x ~ N(loc, L L^T), d = 50,
n = 1e5, against NumPy (draw by the Cholesky factor, score by triangular
solves), PyTorch (torch.distributions.MultivariateNormal and the surrogate
loss, float32 and float64) and JAX (jit; grad of the surrogate).

Every implementation's gradient is checked against the exact one, per
coordinate, |estimate - exact| < 5 se (its own standard errors); a failing
check is reported next to the time.  Peers are imported only if present.

    python benchmarks/mvn.py                     # d = 50, n = 1e5
    python benchmarks/mvn.py --d 5 --n 2000      # a tiny smoke run
    python benchmarks/mvn.py --repeats 7 --threads 1

The issue's target: mcscore at most 0.5 x the best peer's time.
"""
import argparse
import time

import numpy as np

import mcscore as mc
from mcscore import integrands as I


def problem(d, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d)) / np.sqrt(d)
    L = np.linalg.cholesky(a @ a.T + np.eye(d))
    mu = rng.normal(size=d) * 0.5
    A = rng.normal(size=(d, d)) / d
    A = 0.5 * (A + A.T)
    b = rng.normal(size=d) / np.sqrt(d)
    exact = {"loc": 2 * A @ mu + b, "scale_tril": np.tril(2 * A @ L)}
    return mu, L, A, b, exact


def _fsums(F, W, Z, n, L):
    """grad and se of the summands f_i w_i (loc) and f_i (w_i z_i^T - diag(1 / L_jj))
    (tril) from n x d arrays, by BLAS: sums of f w z^T, f^2 w z^T and
    f^2 (w o w)(z o z)^T."""
    c = np.diag(1.0 / np.diag(L))
    F2 = F * F
    gl = F @ W / n
    sl = np.sqrt(np.maximum(F2 @ (W * W) / n - gl * gl, 0) / (n - 1))
    gL = (W * F[:, None]).T @ Z / n - F.mean() * c
    m2 = ((W * W * F2[:, None]).T @ (Z * Z) - 2 * c * ((W * F2[:, None]).T @ Z)
          + c * c * F2.sum()) / n
    sL = np.sqrt(np.maximum(m2 - gL * gL, 0) / (n - 1))
    return {"loc": gl, "scale_tril": np.tril(gL)}, {"loc": sl, "scale_tril": np.tril(sL)}


def numpy_impl(mu, L, A, b, n, seed):
    from scipy.linalg import solve_triangular

    def run():
        rng = np.random.default_rng(seed)
        eps = rng.standard_normal((n, len(mu)))
        x = mu + eps @ L.T                           # draw by the Cholesky factor
        F = np.einsum("ni,ij,nj->n", x, A, x) + x @ b
        Z = solve_triangular(L, (x - mu).T, lower=True).T     # z = L^-1 (x - mu)
        Wm = solve_triangular(L, Z.T, lower=True, trans="T").T  # w = L^-T z
        return _fsums(F, Wm, Z, n, L)
    return run


def torch_impl(mu, L, A, b, n, seed, dtype):
    import torch

    def run():
        torch.manual_seed(seed)
        loc = torch.tensor(mu, dtype=dtype, requires_grad=True)
        tril = torch.tensor(L, dtype=dtype, requires_grad=True)
        At, bt = torch.tensor(A, dtype=dtype), torch.tensor(b, dtype=dtype)
        dist = torch.distributions.MultivariateNormal(loc, scale_tril=tril)
        x = dist.sample((n,))
        F = torch.einsum("ni,ij,nj->n", x, At, x) + x @ bt
        (F.detach() * dist.log_prob(x)).mean().backward()
        with torch.no_grad():  # standard errors from the analytic per-draw score
            Z = torch.linalg.solve_triangular(tril, (x - loc).T, upper=False).T
            Wm = torch.linalg.solve_triangular(tril.T, Z.T, upper=True).T
            _, se = _fsums(F.double().numpy(), Wm.double().numpy(), Z.double().numpy(), n, L)
        return {"loc": loc.grad.double().numpy(),
                "scale_tril": np.tril(tril.grad.double().numpy())}, se
    return run


def jax_impl(mu, L, A, b, n, seed):
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)

    def logpdf(loc, tril, x):
        z = jax.scipy.linalg.solve_triangular(tril, (x - loc).T, lower=True)
        return (-0.5 * jnp.sum(z * z, 0) - jnp.sum(jnp.log(jnp.diag(tril)))
                - 0.5 * len(mu) * jnp.log(2 * jnp.pi))

    @jax.jit
    def step(key, loc, tril):
        eps = jax.random.normal(key, (n, len(mu)), dtype=jnp.float64)
        x = loc + eps @ tril.T
        F = jnp.einsum("ni,ij,nj->n", x, A, x) + x @ b
        g = jax.grad(lambda l, t: jnp.mean(F * logpdf(l, t, x)), argnums=(0, 1))(loc, tril)
        Wm = jax.scipy.linalg.solve_triangular(tril, eps.T, lower=True, trans="T").T
        return g, F, Wm, eps

    key = jax.random.PRNGKey(seed)
    args = (jnp.asarray(mu), jnp.asarray(L))
    jax.block_until_ready(step(key, *args))  # compile outside the timing

    def run():
        (gl, gL), F, Wm, Z = jax.block_until_ready(step(key, *args))
        _, se = _fsums(np.asarray(F), np.asarray(Wm), np.asarray(Z), n, L)
        return {"loc": np.asarray(gl), "scale_tril": np.tril(np.asarray(gL))}, se
    return run


def mcscore_impl(mu, L, A, b, n, seed, fused, threads):
    q = mc.MultivariateNormal(mu, scale_tril=L)
    q.sample(2, rng=0)  # set-up outside the timing: builds the kernel description
    f = (I.quadratic(A) + I.linear(b)) if fused else (
        lambda x: np.einsum("ni,ij,nj->n", x, A, x) + x @ b)

    def run():
        r = mc.score_grad(f, q, n, rng=seed, n_threads=threads)
        return r.grad, r.stderr
    return run


def check(grad, se, exact):
    worst = 0.0
    for k, g in exact.items():
        mask = se[k] > 0
        worst = max(worst, float(np.max(np.abs(grad[k] - g)[mask] / se[k][mask])))
    return worst


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d", type=int, default=50)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="mcscore's n_threads")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    mu, L, A, b, exact = problem(args.d)
    impls = {"mcscore (fused f)": lambda: mcscore_impl(mu, L, A, b, args.n, args.seed, True,
                                                       args.threads),
             "mcscore (Python f)": lambda: mcscore_impl(mu, L, A, b, args.n, args.seed, False,
                                                        args.threads),
             "numpy_f64": lambda: numpy_impl(mu, L, A, b, args.n, args.seed)}
    try:
        import torch
        impls["torch_f64"] = lambda: torch_impl(mu, L, A, b, args.n, args.seed, torch.float64)
        impls["torch_f32"] = lambda: torch_impl(mu, L, A, b, args.n, args.seed, torch.float32)
    except ImportError:
        print("PyTorch not installed: skipped")
    try:
        import jax  # noqa: F401
        impls["jax_f64"] = lambda: jax_impl(mu, L, A, b, args.n, args.seed)
    except ImportError:
        print("JAX not installed: skipped")
    print(f"MultivariateNormal d = {args.d}, n = {args.n}: grad of E[x^T A x + b^T x] w.r.t. "
          f"loc and scale_tril ({args.d + args.d * (args.d + 1) // 2} coordinates)")
    times = {}
    for name, make in impls.items():
        run = make()
        best = np.inf
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            grad, se = run()
            best = min(best, time.perf_counter() - t0)
        z = check(grad, se, exact)
        times[name] = best
        print(f"  {name:20s} {best * 1e3:10.1f} ms   max |z| = {z:5.2f} "
              f"{'ok' if z < 5 else 'FAILS the 5 se check'}")
    peers = {k: v for k, v in times.items() if not k.startswith("mcscore")}
    best_peer = min(peers, key=peers.get)
    for k in ("mcscore (fused f)", "mcscore (Python f)"):
        print(f"  {k}: {times[k] / peers[best_peer]:.2f} x the best peer ({best_peer})")
    return times


if __name__ == "__main__":
    main()
