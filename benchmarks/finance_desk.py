"""Benchmark: all Greeks of a 2-asset basket call with 50 time steps.

mcscore.finance.greeks (the parallel path engine: likelihood-ratio weights
of the correlated Gaussian increments, the payoff called per round of
blocks) against two vectorised peers that form exactly the same estimators
(price; delta, vega and dividend sensitivity per asset; the 2 x 2 gamma by
the second-order likelihood ratio; rho; theta) with their standard errors:

* numpy: np.random.default_rng, paths in chunks of CHUNK paths (the whole
  n x steps x assets array would be 800 MB at n = 1e6);
* torch: the same in torch.float64 with a torch.Generator (skipped when
  torch is not importable; run it with /work/benchvenv/bin/python).

Every estimate of every implementation is checked against an independent
bump-and-revalue with common random numbers (|z| < 5), and the timing
table gives the best of --repeats runs of each and the ratio of mcscore to
the best peer (the target is <= 0.3).

    python benchmarks/finance_desk.py                 # n = 1e6 (the lead's run)
    python benchmarks/finance_desk.py --n 20000 --repeats 1   # a quick check
"""
import argparse
import math
import time

import numpy as np

import mcscore as mc

try:                                       # the peer, where it is installed
    import torch
except ImportError:                        # pragma: no cover - depends on the venv
    torch = None

fi = mc.finance

SPOT = np.array([100.0, 95.0])
VOL = np.array([0.25, 0.3])
DIV = np.array([0.01, 0.02])
RHO = 0.5
CORR = np.array([[1.0, RHO], [RHO, 1.0]])
W = np.array([0.5, 0.5])
K, RATE, T, STEPS = 100.0, 0.03, 1.0, 50
CHUNK = 50_000
NAMES = ("price", "delta", "gamma", "vega", "rho", "theta", "dividend")


def run_mcscore(n, seed, n_threads=None):
    g = fi.greeks(fi.basket_call(K, W), spot=SPOT, vol=VOL, dividend=DIV, correlation=CORR,
                  rate=RATE, maturity=T, steps=STEPS, n=n, rng=seed, n_threads=n_threads)
    return {k: (np.asarray(getattr(g, k)), np.asarray(g.stderr[k])) for k in NAMES}


# ---------------------------------------------------------------------------
# the peers: the same per-path estimators, vectorised over a chunk of paths
# ---------------------------------------------------------------------------

def _per_path(xp, Z, h_fn):
    """Per-path quantities (m, 14): the discounted payoff times each
    likelihood-ratio weight.  xp: numpy or torch; Z: (m, steps, 2) normals."""
    d = 2
    L = np.linalg.cholesky(CORR)
    Linv = np.linalg.inv(L)
    cinv = np.linalg.inv(CORR)
    dt = T / STEPS
    sq = math.sqrt(dt)
    a = VOL * sq
    mu = RATE - DIV - 0.5 * VOL * VOL
    t = (lambda v: xp.asarray(v)) if xp is np else (lambda v: torch.as_tensor(v))
    X = Z @ t(L.T)                                    # correlated increments
    xi = Z @ t(Linv)                                  # C^-1 X = L^-T Z
    logST = t(np.log(SPOT) + mu * T) + t(a) * X.sum(1)
    h = math.exp(-RATE * T) * h_fn(xp.exp(logST))
    xi1 = xi[:, 0, :]
    vega = ((X * xi - 1.0) / t(VOL) - sq * xi).sum(1)
    sxs = (xi / t(VOL)).sum(1)                        # per asset: sum_k xi_k / sigma
    rho = sq * sxs.sum(1) - T
    theta = -(((Z * Z).sum(2) - d).sum(1) / (2 * T) + sq / T * (sxs * t(mu)).sum(1) - RATE)
    cols = [h]
    cols += [h * xi1[:, i] / float(SPOT[i] * a[i]) for i in range(d)]
    for i in range(d):
        for j in range(i, d):
            gw = xi1[:, i] * xi1[:, j] - float(cinv[i, j])
            if i == j:
                gw = gw - xi1[:, i] * float(a[i])
            cols.append(h * gw / float(a[i] * a[j] * SPOT[i] * SPOT[j]))
    cols += [h * vega[:, i] for i in range(d)]
    cols += [h * rho, h * theta]
    cols += [h * (-sq) * sxs[:, i] for i in range(d)]
    return xp.stack(cols, 1) if xp is np else torch.stack(cols, 1)


def _summarise(s1, s2, n):
    mean = s1 / n
    se = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0) * n / (n - 1) / n)
    out = {"price": (mean[0], se[0]), "delta": (mean[1:3], se[1:3])}
    gm, gs = np.empty((2, 2)), np.empty((2, 2))
    gm[0, 0], gm[0, 1], gm[1, 1] = mean[3:6]
    gs[0, 0], gs[0, 1], gs[1, 1] = se[3:6]
    gm[1, 0], gs[1, 0] = gm[0, 1], gs[0, 1]
    out["gamma"] = (gm, gs)
    out["vega"] = (mean[6:8], se[6:8])
    out["rho"] = (mean[8], se[8])
    out["theta"] = (mean[9], se[9])
    out["dividend"] = (mean[10:12], se[10:12])
    return out


def run_numpy(n, seed):
    rng = np.random.default_rng(seed)
    s1, s2 = np.zeros(12), np.zeros(12)
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        y = _per_path(np, rng.standard_normal((m, STEPS, 2)),
                      lambda s: np.maximum(s @ W - K, 0.0))
        s1 += y.sum(0)
        s2 += (y * y).sum(0)
    return _summarise(s1, s2, n)


def run_torch(n, seed):
    gen = torch.Generator().manual_seed(seed)
    w = torch.as_tensor(W)
    s1 = torch.zeros(12, dtype=torch.float64)
    s2 = torch.zeros(12, dtype=torch.float64)
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        Z = torch.randn((m, STEPS, 2), generator=gen, dtype=torch.float64)
        y = _per_path(torch, Z, lambda s: torch.clamp(s @ w - K, min=0.0))
        s1 += y.sum(0)
        s2 += (y * y).sum(0)
    return _summarise(s1.numpy(), s2.numpy(), n)


# ---------------------------------------------------------------------------
# the independent check: bump and revalue with common random numbers
# ---------------------------------------------------------------------------

def bump_and_revalue(n, seed):
    """Central differences of the price with common random numbers (the
    basket depends on S(T) only, whose law is exact in one step)."""
    Z = np.random.default_rng(seed).standard_normal((n, 2)) @ np.linalg.cholesky(CORR).T

    def v(S=SPOT, sig=VOL, q=DIV, r=RATE, TT=T):
        ST = S * np.exp((r - q - 0.5 * sig * sig) * TT + sig * math.sqrt(TT) * Z)
        return math.exp(-r * TT) * np.maximum(ST @ W - K, 0.0)

    def est(y):
        return float(y.mean()), float(y.std(ddof=1) / math.sqrt(n))

    e, h = np.eye(2), 1e-3
    hs, gs = 1e-3 * SPOT, 0.05 * SPOT
    out = {"price": est(v()), "rho": est((v(r=RATE + h) - v(r=RATE - h)) / (2 * h)),
           "theta": est(-(v(TT=T + h) - v(TT=T - h)) / (2 * h))}
    for name, f in (("delta", lambda i, s: v(S=SPOT + s * hs[i] * e[i])),
                    ("vega", lambda i, s: v(sig=VOL + s * h * e[i])),
                    ("dividend", lambda i, s: v(q=DIV + s * h * e[i]))):
        step = hs if name == "delta" else np.full(2, h)
        pairs = [est((f(i, 1) - f(i, -1)) / (2 * step[i])) for i in range(2)]
        out[name] = (np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))
    gm, gsd = np.empty((2, 2)), np.empty((2, 2))
    for i in range(2):
        for j in range(2):
            a, b = gs[i] * e[i], gs[j] * e[j]
            y = (v(S=SPOT + a + b) - v(S=SPOT + a - b) - v(S=SPOT - a + b)
                 + v(S=SPOT - a - b)) / (4 * gs[i] * gs[j])
            gm[i, j], gsd[i, j] = est(y)
    out["gamma"] = (gm, gsd)
    return out


def max_z(res, ref):
    return max(float(np.max(np.abs((np.asarray(res[k][0]) - ref[k][0])
                                   / np.hypot(res[k][1], ref[k][1])))) for k in NAMES)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10**6)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="mcscore n_threads")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    impls = {"mcscore": lambda: run_mcscore(args.n, args.seed, args.threads),
             "numpy": lambda: run_numpy(args.n, args.seed)}
    if torch is not None:
        impls["torch"] = lambda: run_torch(args.n, args.seed)
    else:
        print("torch: not importable here (run with /work/benchvenv/bin/python)")
    ref = bump_and_revalue(max(args.n, 200_000), args.seed + 1000)
    best, zs = {}, {}
    for name, run in impls.items():
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            res = run()
            times.append(time.perf_counter() - t0)
        best[name], zs[name] = min(times), max_z(res, ref)
    print(f"2-asset basket call, {STEPS} steps, n = {args.n}: all Greeks with standard errors")
    print(f"{'impl':<10}{'best s':>10}{'max |z| vs bump':>18}")
    for name in impls:
        print(f"{name:<10}{best[name]:>10.3f}{zs[name]:>18.2f}")
    peers = [best[k] for k in impls if k != "mcscore"]
    ratio = best["mcscore"] / min(peers)
    print(f"mcscore / best peer = {ratio:.3f} (target <= 0.3)")
    bad = [k for k, z in zs.items() if not z < 5.0]
    if bad:
        raise SystemExit(f"estimates off the bump-and-revalue reference (|z| >= 5): {bad}")
    return ratio


if __name__ == "__main__":
    main()
