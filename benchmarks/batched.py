"""Batched expectations: one policy per state (the RL / amortised case).

B states, K actions, n draws per state: pi_b = Categorical(logits[b]),
reward table R (B, K); the gradient of sum_b E_{a ~ pi_b}[R[b, a]] with
respect to logits, one independent expectation per state, each with its own
leave-one-out baseline:

    g_bk = 1/n sum_i (R[b, a_ib] - mean of the others' rewards of state b) s_bk(a_ib)

exact: p_bk (R_bk - sum_j p_bj R_bj).  Implementations (each returns the
gradient and its standard error, checked against the exact gradient):

* ``mcscore``: ``mc.score_grad(f, Categorical(logits), n, batch_ndims=1,
  baseline="loo")`` with the Python f ``R.ravel()[a + K * arange(B)]``
  (default threads);
* ``numpy``: inverse-CDF draws (one uniform per draw), the score as
  one-hot minus p, per-state baselines, vectorised;
* ``torch``: ``torch.distributions.Categorical(logits).sample((n,))``, the
  surrogate loss ``(c.detach() * d.log_prob(a)).sum(1).mean().backward()``
  with the per-state leave-one-out c (the standard error from the per-state
  segment sums, under no_grad);
* ``jax``: ``jax.random.categorical`` and ``jax.grad`` of the same
  surrogate, jit-compiled (compile time excluded).

    python benchmarks/batched.py                # B = 1000, K = 10, n = 1000
    python benchmarks/batched.py --tiny         # B = 20, K = 4, n = 200: a check only
    python benchmarks/batched.py --cpu --threads 1 --impls mcscore numpy
                                                # one-thread CPU time (process_time)

Where the time of mcscore goes: the Categorical is drawn straight into f's
int64 rows (the same draws as the general kernels), f's (n, B) values are
accumulated as f returned them (per-category sums, per state), and the
streams' per-category sums are merged in one kernel pass; f is called once
per round of blocks.

Target (issue 13): mcscore at most 0.5 x the best peer.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from scipy.special import softmax

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
import mcscore as mc  # noqa: E402


def problem(B, K, seed=0):
    g = np.random.default_rng(seed)
    logits = g.normal(size=(B, K))
    R = g.normal(size=(B, K))
    p = softmax(logits, axis=1)
    exact = p * (R - (p * R).sum(1, keepdims=True))
    return logits, R, exact


def _loo(f):
    """Per-state leave-one-out centred rewards, f (n, B)."""
    n = f.shape[0]
    return (f - f.mean(0)) * (n / (n - 1))


def _segment_se(c, a, p, n):
    """Standard errors of mean_i c_i (onehot(a_i) - p) per (state, action)
    from per-state segment sums: sum_i c_i^2 s_ik^2 = Q_k (1 - 2 p_k) + p_k^2 Q,
    sum_i c_i s_ik = C_k - p_k C."""
    B, K = p.shape
    idx = (a + K * np.arange(B)).ravel()
    Ck = np.bincount(idx, weights=c.ravel(), minlength=B * K).reshape(B, K)
    Qk = np.bincount(idx, weights=(c * c).ravel(), minlength=B * K).reshape(B, K)
    C, Q = c.sum(0)[:, None], (c * c).sum(0)[:, None]
    mean = (Ck - p * C) / n
    m2 = (Qk * (1 - 2 * p) + p * p * Q) / n
    return mean, np.sqrt(np.maximum(m2 - mean * mean, 0) * n / (n - 1) / n)


def make_mcscore(logits, R, n, seed, n_threads=None):
    B, K = R.shape
    d = mc.Categorical(logits=logits)
    flat, off = R.ravel(), K * np.arange(B)

    def f(a):
        return flat[a + off]

    def run():
        res = mc.score_grad(f, d, n, rng=seed, baseline="loo", batch_ndims=1,
                            n_threads=n_threads)
        return res.grad["logits"], res.stderr["logits"]
    return run


def make_numpy(logits, R, n, seed):
    B, K = R.shape
    p = softmax(logits, axis=1)
    cdf = np.cumsum(p, axis=1)
    cdf[:, -1] = 1.0
    flat, off = R.ravel(), K * np.arange(B)

    def run():
        u = np.random.default_rng(seed).random((n, B))
        a = (u[:, :, None] > cdf[None]).sum(2)  # inverse CDF, (n, B)
        c = _loo(flat[a + off])
        return _segment_se(c, a, p, n)
    return run


def make_torch(logits, R, n, seed):
    import torch
    torch.set_num_threads(os.cpu_count() or 1)
    lg = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    Rt = torch.tensor(R, dtype=torch.float64)
    B, K = R.shape
    ar = torch.arange(B)

    def run():
        torch.manual_seed(seed)
        lg.grad = None
        d = torch.distributions.Categorical(logits=lg)
        a = d.sample((n,))
        f = Rt[ar, a]
        c = (f - f.mean(0)) * (n / (n - 1))
        (c.detach() * d.log_prob(a)).sum(1).mean().backward()
        with torch.no_grad():
            p = torch.softmax(lg, 1)
            idx = (a + K * ar).reshape(-1)
            Ck = torch.bincount(idx, c.reshape(-1), B * K).reshape(B, K)
            Qk = torch.bincount(idx, (c * c).reshape(-1), B * K).reshape(B, K)
            C, Q = c.sum(0)[:, None], (c * c).sum(0)[:, None]
            mean = (Ck - p * C) / n
            m2 = (Qk * (1 - 2 * p) + p * p * Q) / n
            se = torch.sqrt(torch.clamp(m2 - mean * mean, min=0) / (n - 1))
        return lg.grad.numpy().copy(), se.numpy()
    return run


def make_jax(logits, R, n, seed):
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    B, K = R.shape
    lg, Rj = jnp.asarray(logits), jnp.asarray(R)
    ar = jnp.arange(B)

    def surrogate(lg, a, c):
        return (c * jax.nn.log_softmax(lg, 1)[ar, a]).sum(1).mean()

    @jax.jit
    def est(key):
        a = jax.random.categorical(key, lg, axis=1, shape=(n, B))
        f = Rj[ar, a]
        c = (f - f.mean(0)) * (n / (n - 1))
        g = jax.grad(surrogate)(lg, a, c)
        p = jax.nn.softmax(lg, 1)
        onehot = jax.nn.one_hot(a, K, dtype=c.dtype)
        Ck = jnp.einsum("nb,nbk->bk", c, onehot)
        Qk = jnp.einsum("nb,nbk->bk", c * c, onehot)
        C, Q = c.sum(0)[:, None], (c * c).sum(0)[:, None]
        mean = (Ck - p * C) / n
        m2 = (Qk * (1 - 2 * p) + p * p * Q) / n
        return g, jnp.sqrt(jnp.maximum(m2 - mean * mean, 0) / (n - 1))

    key = jax.random.PRNGKey(seed)
    jax.block_until_ready(est(key))  # compile + warm up

    def run():
        g, se = jax.block_until_ready(est(key))
        return np.asarray(g), np.asarray(se)
    return run


IMPLS = {"mcscore": make_mcscore, "numpy": make_numpy, "torch": make_torch, "jax": make_jax}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--B", type=int, default=1000)
    ap.add_argument("--K", type=int, default=10)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--tiny", action="store_true", help="B = 20, K = 4, n = 200, 2 repeats")
    ap.add_argument("--impls", nargs="*", default=list(IMPLS))
    ap.add_argument("--threads", type=int, default=None,
                    help="mcscore's n_threads (default: its default)")
    ap.add_argument("--cpu", action="store_true",
                    help="time by CPU time of the process (time.process_time, all threads) "
                         "instead of wall-clock time")
    args = ap.parse_args(argv)
    clock = time.process_time if args.cpu else time.perf_counter
    if args.tiny:
        args.B, args.K, args.n, args.repeats = 20, 4, 200, 2
    logits, R, exact = problem(args.B, args.K)
    print(f"batched: B = {args.B} states, K = {args.K} actions, n = {args.n} draws each"
          f"{' (CPU time)' if args.cpu else ''}")
    times, failed = {}, False
    for name in args.impls:
        try:
            extra = {"n_threads": args.threads} if name == "mcscore" else {}
            run = IMPLS[name](logits, R, args.n, seed=1, **extra)
        except ImportError as exc:
            print(f"  {name:8s} skipped ({exc})")
            continue
        grad, se = run()  # warm-up, and the accuracy check
        z = np.max(np.abs(grad - exact) / se)
        ts = []
        for _ in range(args.repeats):
            t0 = clock()
            run()
            ts.append(clock() - t0)
        times[name] = float(np.median(ts))
        ok = z < 5
        failed |= not ok
        print(f"  {name:8s} {times[name] * 1e3:9.2f} ms   max |z| = {z:5.2f} "
              f"{'ok' if ok else 'FAIL (> 5)'}")
    peers = {k: v for k, v in times.items() if k != "mcscore"}
    if "mcscore" in times and peers:
        best = min(peers, key=peers.get)
        ratio = times["mcscore"] / peers[best]
        print(f"  mcscore / best peer ({best}) = {ratio:.3f} (target <= 0.5: "
              f"{'met' if ratio <= 0.5 else 'NOT met'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
