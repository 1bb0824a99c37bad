"""Many coordinates (issue 17, target 3): Normal with d = 5, 50, 1000
coordinates, f = sum of squares, at n = 1e4, 1e5 (and 1e6 with --full).

    python benchmarks/many_coords.py [--quick | --full] [--repeats R] [--out DIR]
                                     [--ds 5,50,1000] [--ns 1e4,1e5]

Implementations: mcscore fused (``I.sum_of_squares()``) and with the Python f
``(x * x).sum(1)`` (by default, f called from the calling thread only; and,
in its own column, with the ``f_threadsafe=True`` opt-in, f called from
several threads at once: the same bits), the hand-written NumPy estimator (one thread), PyTorch's
surrogate-loss step in float64 and float32 (its own thread pool over all
cores, and one thread), JAX ``jit(grad(surrogate))`` in float64 and float32.
Every gradient is checked against the exact one (2 loc, 2 scale) with the
exact standard error.  The table gives mcscore against the best PyTorch and
the best JAX variant of the same row (target: faster than both, fused and
with a Python f).  Sizes whose n x d array would be too big or too slow for
the mode (n d > 1e7 with --quick, > 1e8 otherwise) run mcscore fused only
(O(1) memory) and are marked.  Writes DIR/many_coords.md (default
benchmarks/results/).  --ds / --ns run chosen sizes only (e.g. one row while
profiling).  The header says whether mcscore draws its Normals with the
inline PCG64 fill (NumPy's values bit for bit) or NumPy's own.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import sizes_common as C  # noqa: E402
from mcscore import integrands as I  # noqa: E402

SEED = 20240601
DS = (5, 50, 1000)


def _inline_fill():
    try:
        from mcscore import _kernels
        return bool(getattr(_kernels, "NORMAL_FILL_INLINE", False))
    except ImportError:
        return False


def _pyf(x):
    return (x * x).sum(axis=1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="n d <= 1e7 for the array-based "
                   "implementations, 3 repeats (about 1-2 minutes)")
    g.add_argument("--full", action="store_true", help="also n = 1e6")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--ds", default=None, help="comma-separated coordinate counts")
    ap.add_argument("--ns", default=None, help="comma-separated sample sizes (1e4 style ok)")
    args = ap.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 5)
    ns = (10**4, 10**5) + ((10**6,) if args.full else ())
    if args.ns:
        ns = tuple(int(float(v)) for v in args.ns.split(","))
    ds = tuple(int(v) for v in args.ds.split(",")) if args.ds else DS
    cap = 10**7 if args.quick else 10**8
    C.announce_skipped()
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    L = ["| d | n | mcscore fused | mcscore Python f | mcscore Python f, thread-safe opt-in | "
         "NumPy | best PyTorch | best JAX | fused / best peer | Python f / best peer | "
         "Python f, thread-safe opt-in / best peer | max abs z (all) |",
         "|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|"]
    bad = []
    for d in ds:
        exact, sd = C.normal_sumsq_exact(d)
        for n in ns:
            factories = {"fused": lambda: C.mc_normal_sumsq(n, d, I.sum_of_squares(), SEED)}
            big = n * d > cap
            if big:
                C.log(f"  d={d} n={n:g}: n d = {n * d:.0e} > {cap:.0e}: mcscore fused only")
            else:
                factories["pyf"] = lambda: C.mc_normal_sumsq(n, d, _pyf, SEED)
                factories["pyf_ts"] = lambda: C.mc_normal_sumsq(n, d, _pyf, SEED,
                                                                f_threadsafe=True)
                factories["numpy"] = lambda: C.numpy_normal_sumsq(n, d, SEED)
                factories.update(C.peer_impls(n, d, SEED))
            impls = {k: f() for k, f in factories.items()}
            first, t, _ = C.bench(impls, repeats)
            zs = {k: C.z_exact(v, exact, sd, n) for k, v in first.items()}
            for k in impls:
                C.log(f"  d={d:<5d} n={n:<8g} {k:18s} {C.fmt_t(t[k]):>9s}  |z| {zs[k]:5.2f}")
            bad += [(d, n, k) for k, z in zs.items() if not z <= C.Z_MAX]

            def best(prefix):
                c = [k for k in t if k.startswith(prefix)]
                return min(c, key=t.get) if c else None
            bt, bj = best("torch"), best("jax")
            peers = [k for k in (bt, bj) if k]
            bp = min(peers, key=t.get) if peers else None

            def cell(k):
                return C.fmt_t(t[k]) if k in t else "-"

            def vs(k):
                return f"{t[k] / t[bp]:.2f}" if k in t and bp else "-"
            L.append(f"| {d} | {n:,} | {cell('fused')} | {cell('pyf')} | {cell('pyf_ts')} | "
                     f"{cell('numpy')} | {f'{cell(bt)} ({bt})' if bt else '-'} | "
                     f"{f'{cell(bj)} ({bj})' if bj else '-'} | {vs('fused')} | {vs('pyf')} | "
                     f"{vs('pyf_ts')} | {max(zs.values()):.2f} |")
    head = (C.header(repeats, load0) + "  Normal(linspace(-1, 1, d), linspace(0.5, 1.5, d)), "
            "f = sum_j x_j^2; the PyTorch and JAX steps return the gradient only (surrogate "
            "loss), mcscore and NumPy also the standard error.  A ratio < 1 means mcscore is "
            "faster than the best peer of the row; '-': not run at that size.  The thread-safe "
            "opt-in column is score_grad(..., f_threadsafe=True): f called from several "
            "threads at once (the same bits as the default column).  mcscore's Normal "
            f"draws: {'inline PCG64 fill' if _inline_fill() else 'NumPy fill'} (the same "
            "values bit for bit).")
    md = head + "\n\n" + "\n".join(L) + f"\n\n({time.perf_counter() - t0:.0f} s in all.)"
    C.write("many_coords.md", md, args.out)
    for d, n, k in bad:
        C.log(f"ACCURACY FAILURE: d={d} n={n} {k}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
