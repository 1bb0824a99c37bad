"""Overhead of the PyTorch and JAX bridges (issue 14, "Done means").

    python benchmarks/bridges.py [--quick] [--repeats R] [--n N] [--batch B] [--out DIR]

One training step of a small policy network (2 layers, 16 state features,
64 hidden units, 4 actions) on a batch of B = 256 states, with the expected
reward estimated from n = 1000 draws:

* bridge: ``logits = net(X)``; ``v = mcscore.torch.expectation(f,
  "Categorical", n, logits=logits)``; ``(-v).backward()``;
* parts: the network's own forward and backward (``logits.backward(G)``
  with a fixed G) plus ``mcscore.score_grad`` on the same logits as a NumPy
  array (the same f, n and seed): what the bridge costs at the least.

The table gives the median wall time of each and the ratio bridge / parts
(target <= 1.5).  The JAX bridge's step under ``jax.jit`` (network, host
callback, gradient) is timed beside it when JAX is installed.  f is the mean
reward over the states (one joint draw of an action per state); with
``--batched`` (needs ``score_grad(..., batch_ndims=...)``) one expectation
per state instead.  Timings on a loaded machine are not comparable across
machines: compare the ratio.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

import mcscore as mc

F_IN, HIDDEN, ACTIONS = 16, 64, 4
SEED = 20260601


def _problem(batch):
    rng = np.random.default_rng(SEED)
    X = rng.normal(size=(batch, F_IN))
    R = rng.normal(size=(batch, ACTIONS))
    return X, R


def _reward(R, batched):
    rows = np.arange(R.shape[0])
    if batched:
        return lambda a: R[rows, a]
    return lambda a: R[rows, a].mean(1)


def _median_time(fn, repeats):
    fn()  # warm-up (allocations, caches, jit)
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def torch_rows(n, batch, repeats, batched):
    import torch

    import mcscore.torch as mct

    torch.manual_seed(0)
    X, R = _problem(batch)
    Xt = torch.tensor(X, dtype=torch.float32)
    net = torch.nn.Sequential(torch.nn.Linear(F_IN, HIDDEN), torch.nn.Tanh(),
                              torch.nn.Linear(HIDDEN, ACTIONS))
    f = _reward(R, batched)
    k = 1 if batched else 0
    G = torch.full((batch, ACTIONS), 1e-3)

    def bridge():
        net.zero_grad()
        v = mct.expectation(f, "Categorical", n, logits=net(Xt), rng=SEED, batch_ndims=k)
        (-v.sum()).backward()

    def network():
        net.zero_grad()
        net(Xt).backward(G)

    logits = net(Xt).detach().double().numpy()
    kw = {"batch_ndims": k} if k else {}

    def numpy_call():
        mc.score_grad(f, mc.Categorical(logits=logits), n, rng=SEED, **kw)

    t_bridge = _median_time(bridge, repeats)
    t_net = _median_time(network, repeats)
    t_mc = _median_time(numpy_call, repeats)
    return [("torch", t_bridge, t_net, t_mc)]


def jax_rows(n, batch, repeats, batched):
    import jax
    import jax.numpy as jnp

    import mcscore.jax as mcj

    X, R = _problem(batch)
    Xj = jnp.asarray(X, jnp.float32)
    f = _reward(R, batched)
    k = 1 if batched else 0
    key = jax.random.key(0)
    k1, k2 = jax.random.split(key)
    params = {"w1": jax.random.normal(k1, (F_IN, HIDDEN)) / 4,
              "w2": jax.random.normal(k2, (HIDDEN, ACTIONS)) / 8}

    def net(p):
        return jnp.tanh(Xj @ p["w1"]) @ p["w2"]

    def loss(p, key):
        return -mcj.expectation(f, "Categorical", n, logits=net(p), rng=key,
                                batch_ndims=k).sum()

    step = jax.jit(jax.grad(loss))
    G = jnp.full((batch, ACTIONS), 1e-3, jnp.float32)
    net_step = jax.jit(lambda p: jax.vjp(net, p)[1](G))
    logits = np.asarray(net(params), np.float64)
    kw = {"batch_ndims": k} if k else {}

    def bridge():
        jax.block_until_ready(step(params, key))

    def network():
        jax.block_until_ready(net_step(params))

    def numpy_call():
        mc.score_grad(f, mc.Categorical(logits=logits), n, rng=SEED, **kw)

    return [("jax (jit)", _median_time(bridge, repeats), _median_time(network, repeats),
             _median_time(numpy_call, repeats))]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="n = 100, batch 16, 3 repeats")
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--batched", action="store_true",
                    help="one expectation per state (score_grad batch_ndims=1)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args(argv)
    n, batch, repeats = (100, 16, 3) if args.quick else (args.n, args.batch, args.repeats)
    from mcscore._bridge import score_grad_has_batch_ndims
    if args.batched and not score_grad_has_batch_ndims():
        sys.exit("--batched needs score_grad(..., batch_ndims=...), which this mcscore lacks")
    rows = []
    for name, fn in (("torch", torch_rows), ("jax", jax_rows)):
        try:
            rows += fn(n, batch, repeats, args.batched)
        except ImportError as exc:
            print(f"{name}: skipped ({exc})", file=sys.stderr)
    lines = [f"# Bridge overhead: n = {n}, batch {batch}, "
             f"{'one expectation per state' if args.batched else 'one joint expectation'}",
             "", "| bridge | step (ms) | network fwd+bwd (ms) | score_grad on NumPy (ms) "
             "| ratio step / (network + score_grad) |", "|---|---|---|---|---|"]
    for name, tb, tn, tm in rows:
        lines.append(f"| {name} | {tb * 1e3:.3f} | {tn * 1e3:.3f} | {tm * 1e3:.3f} | "
                     f"{tb / (tn + tm):.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.quick:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "bridges.md"), "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
