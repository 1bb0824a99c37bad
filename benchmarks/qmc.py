"""Time to accuracy: randomised quasi-Monte Carlo (``sampler="sobol"``)
against Monte Carlo, on the five problems of ``problems.py`` plus a d = 10
smooth VI-style gradient and the delta of a 12-date Asian call
("asian_delta": arithmetic average, its reference the preintegrated Sobol'
estimate at 32 x 2^15 paths, relative stderr ~1e-6; "geo_asian_delta": the
geometric average, exact in closed form).

    python benchmarks/qmc.py [--quick] [--no-timing] [--peers] [--reps N]
                             [--problems P ...] [--out DIR]

Two parts:

1. **RMSE against the exact gradient as n grows** (log-log, with the fitted
   slope): the relative RMSE ||g - g_exact|| / ||g_exact|| over ``--reps``
   independent seeds, for plain Monte Carlo ("mc") and Sobol' ("sobol") at
   the same total number of draws n = 32 randomisations x m points, m a power
   of two.  The variance ratio at the largest n (plain MC's mean squared
   error over Sobol's) and the mean reported relative standard error are
   printed too (the latter checks that the RQMC error bars are honest).
2. **Time to a relative standard error of 1e-3** (||stderr|| / ||g_exact||):
   every method, peers included, is timed alike (best of ``--repeats``) at
   the smallest n = 32 x 2^k that reaches 1e-3: a pilot at 32 x 2^12 (2^8
   with --quick) predicts n from the error's rate (n^-1/2 for Monte Carlo,
   the fitted RMSE slope for Sobol'), then n is doubled while the run
   misses 1e-3 and halved while the halved run still reaches it.  Beyond
   ``--cap`` draws the time is extrapolated linearly (marked "~").
   Methods: mcscore MC ("mc"), mcscore MC with its best variance reduction
   ("mc_vr": optimal baseline with the delta control variate, pathwise
   where it applies), mcscore Sobol' ("sobol", and "sobol_pw" where a
   pathwise form exists; "sobol_pi" for the Asians: pathwise with
   ``preintegrate=True``) and, with ``--peers``, the best JAX and PyTorch
   implementations (benchmarks/peers.py for the five problems,
   reparameterised autograd here for the last three, on the same average as
   mcscore; each is imported only when installed).

Results go to DIR (default benchmarks/results/): qmc.json, qmc.md and
qmc.png (RMSE curves and time-to-accuracy bars).  Timings are meaningful only
on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import warnings

import numpy as np
from scipy import special

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import problems as P  # noqa: E402

import mcscore as mc  # noqa: E402
from mcscore import integrands as I  # noqa: E402
from mcscore.demo import _best_time  # noqa: E402  (best of repeats: seconds, result)

R = mc._qmc.DEFAULT_RANDOMIZATIONS  # randomisations (32)
TARGET = 1e-3    # relative standard error to reach
BS = P.PROBLEMS["bs_delta"].params
ASIAN = dict(spot=100.0, strike=100.0, rate=0.05, vol=0.2, maturity=1.0)
ASIAN_STEPS = 12


def _flat(res, names):
    return (np.concatenate([np.ravel(res.grad[k]) for k in names]),
            np.concatenate([np.ravel(res.stderr[k]) for k in names]))


# ---------------------------------------------------------------------------
# the problems: exact gradient and the mcscore methods, run(n, seed) -> (g, se)
# ---------------------------------------------------------------------------

def _normal_sq():
    p = P.PROBLEMS["normal_sq"].params
    d = mc.Normal(p["loc"], p["scale"])
    names = ("loc", "scale")
    return P.truth("normal_sq").ravel(), 1, {
        "mc": lambda n, s: _flat(mc.score_grad(I.power(2), d, n, rng=s), names),
        "mc_vr": lambda n, s: _flat(mc.score_grad(
            lambda x: x * x, d, n, rng=s, baseline="optimal", control_variates=["delta"],
            grad_f=lambda x: 2 * x), names),
        "sobol": lambda n, s: _flat(mc.score_grad(I.power(2), d, n, rng=s, sampler="sobol",
                                                  baseline="loo"), names),
        "sobol_pw": lambda n, s: _flat(mc.pathwise_grad(
            lambda x: x * x, d, n, grad_f=lambda x: 2 * x, rng=s, sampler="sobol"), names),
    }


def _diag_gauss_quad():
    p = P.PROBLEMS["diag_gauss_quad"].params
    d = mc.Normal(p["loc"], p["scale"])
    f = I.sum_of_squares(center=p["shift"])
    names = ("loc", "scale")
    grad_f = lambda x: 2 * (x - p["shift"])  # noqa: E731
    return P.truth("diag_gauss_quad").ravel(), p["d"], {
        "mc": lambda n, s: _flat(mc.score_grad(f, d, n, rng=s), names),
        "mc_vr": lambda n, s: _flat(mc.pathwise_grad(f, d, n, grad_f=grad_f, rng=s), names),
        "sobol": lambda n, s: _flat(mc.score_grad(f, d, n, rng=s, sampler="sobol",
                                                  baseline="loo"), names),
        "sobol_pw": lambda n, s: _flat(mc.pathwise_grad(f, d, n, grad_f=grad_f, rng=s,
                                                        sampler="sobol"), names),
    }


def _categorical():
    p = P.PROBLEMS["categorical"].params
    K = p["K"]
    d = mc.Categorical(logits=p["logits"])
    f = I.power(2) * (1.0 / (K * K))
    return P.truth("categorical").ravel(), 1, {
        "mc": lambda n, s: _flat(mc.score_grad(f, d, n, rng=s), ("logits",)),
        "mc_vr": lambda n, s: _flat(mc.score_grad(f, d, n, rng=s, baseline="optimal"),
                                    ("logits",)),
        "sobol": lambda n, s: _flat(mc.score_grad(f, d, n, rng=s, sampler="sobol",
                                                  baseline="loo"), ("logits",)),
    }


def _gamma_shape():
    p = P.PROBLEMS["gamma_shape"].params
    d = mc.Gamma(p["concentration"], p["rate"])
    names = ("concentration", "rate")
    grad_f = lambda x: 1.0 / (1.0 + x)  # noqa: E731
    return P.truth("gamma_shape").ravel(), 1, {
        "mc": lambda n, s: _flat(mc.score_grad(I.log1p(), d, n, rng=s), names),
        "mc_vr": lambda n, s: _flat(mc.pathwise_grad(np.log1p, d, n, grad_f=grad_f, rng=s),
                                    names),
        "sobol": lambda n, s: _flat(mc.score_grad(I.log1p(), d, n, rng=s, sampler="sobol",
                                                  baseline="loo"), names),
        "sobol_pw": lambda n, s: _flat(mc.pathwise_grad(np.log1p, d, n, grad_f=grad_f, rng=s,
                                                        sampler="sobol"), names),
    }


def _bs_delta():
    from run import bs_from_lognormal

    S0, K, r, sig, T = BS["S0"], BS["K"], BS["r"], BS["sigma"], BS["T"]
    d = mc.LogNormal(math.log(S0) + (r - 0.5 * sig * sig) * T, sig * math.sqrt(T))
    f = I.call(K) * math.exp(-r * T)
    kw = dict(spot=S0, strike=K, rate=r, vol=sig, maturity=T)

    def greeks(n, s, **opt):
        g = mc.finance.greeks("call", n=n, rng=s, method="pathwise", **kw, **opt)
        return (np.array([g.delta, g.vega]),
                np.array([g.stderr["delta"], g.stderr["vega"]]))

    return P.truth("bs_delta").ravel(), 1, {
        "mc": lambda n, s: bs_from_lognormal(mc.score_grad(f, d, n, rng=s), BS),
        "mc_vr": greeks,
        "sobol": lambda n, s: bs_from_lognormal(
            mc.score_grad(f, d, n, rng=s, sampler="sobol", baseline="loo"), BS),
        "sobol_pw": lambda n, s: greeks(n, s, sampler="sobol"),
    }


# d = 10 smooth VI-style gradient: grad of E_q[f] for q = Normal(m, s) and
# f(x) = sum_j [-a_j (x_j - b_j)^2 / 2 + cos x_j] - c (sum_j x_j)^2
VI_D = 10
VI_M = np.linspace(-0.5, 0.5, VI_D)
VI_S = np.linspace(0.6, 1.2, VI_D)
VI_A = np.linspace(0.5, 2.0, VI_D)
VI_B = np.linspace(1.0, -1.0, VI_D)
VI_C = 0.05


def vi_f(x):
    return ((-0.5 * VI_A * (x - VI_B) ** 2 + np.cos(x)).sum(1) - VI_C * x.sum(1) ** 2)


def vi_grad_f(x):
    return -VI_A * (x - VI_B) - np.sin(x) - 2 * VI_C * x.sum(1, keepdims=True)


def vi_exact():
    """E[cos x] = exp(-s^2/2) cos m; E[(x - b)^2] = (m - b)^2 + s^2;
    E[(sum x)^2] = (sum m)^2 + sum s^2."""
    e = np.exp(-0.5 * VI_S ** 2)
    gm = -VI_A * (VI_M - VI_B) - e * np.sin(VI_M) - 2 * VI_C * VI_M.sum()
    gs = -VI_A * VI_S - VI_S * e * np.cos(VI_M) - 2 * VI_C * VI_S
    return np.concatenate([gm, gs])


def _vi_d10():
    d = mc.Normal(VI_M, VI_S)
    names = ("loc", "scale")
    return vi_exact(), VI_D, {
        "mc": lambda n, s: _flat(mc.score_grad(vi_f, d, n, rng=s, baseline="loo"), names),
        "mc_vr": lambda n, s: _flat(mc.pathwise_grad(vi_f, d, n, grad_f=vi_grad_f, rng=s),
                                    names),
        "sobol": lambda n, s: _flat(mc.score_grad(vi_f, d, n, rng=s, sampler="sobol",
                                                  baseline="loo"), names),
        "sobol_pw": lambda n, s: _flat(mc.pathwise_grad(vi_f, d, n, grad_f=vi_grad_f, rng=s,
                                                        sampler="sobol"), names),
    }


@functools.lru_cache(maxsize=None)
def asian_reference_delta():
    """Delta of the 12-date arithmetic-average Asian call: the preintegrated
    Sobol' pathwise estimate at 32 x 2^15 paths (relative stderr ~1e-6, far
    below the errors measured against it; tests/test_qmc_asian.py checks the
    method against plain Sobol' and closed forms)."""
    g = mc.finance.greeks("asian_call", n=R * 2**15, steps=ASIAN_STEPS, rng=20261130,
                          method="pathwise", sampler="sobol", preintegrate=True, **ASIAN)
    return g.delta


def asian_exact_delta():
    """Delta of the 12-date geometric-average Asian call, from its closed form
    (the geometric average is lognormal and proportional to S0)."""
    S0, K, r, sig, T = (ASIAN[k] for k in ("spot", "strike", "rate", "vol", "maturity"))
    m = ASIAN_STEPS
    dt = T / m
    nu = math.log(S0) + (r - 0.5 * sig * sig) * dt * (m + 1) / 2
    v = sig * math.sqrt(dt * (m + 1) * (2 * m + 1) / (6 * m))
    d2 = (nu - math.log(K)) / v
    return math.exp(-r * T) * math.exp(nu + 0.5 * v * v) * special.ndtr(d2 + v) / S0


def _asian(payoff, exact):
    def greeks(method, **opt):
        def run(n, s):
            g = mc.finance.greeks(payoff, n=n, steps=ASIAN_STEPS, rng=s, method=method,
                                  **ASIAN, **opt)
            return np.array([g.delta]), np.array([g.stderr["delta"]])
        return run

    return np.array([exact]), ASIAN_STEPS, {
        "mc": greeks("lr"), "mc_vr": greeks("pathwise"),
        "sobol": greeks("lr", sampler="sobol"), "sobol_pw": greeks("pathwise", sampler="sobol"),
        "sobol_pi": greeks("pathwise", sampler="sobol", preintegrate=True),
    }


def _asian_delta():
    return _asian("asian_call", asian_reference_delta())


def _geo_asian_delta():
    return _asian("geometric_asian_call", asian_exact_delta())


CASES = {
    "normal_sq": (_normal_sq, 16), "diag_gauss_quad": (_diag_gauss_quad, 12),
    "categorical": (_categorical, 11), "gamma_shape": (_gamma_shape, 16),
    "bs_delta": (_bs_delta, 16), "vi_d10": (_vi_d10, 14), "asian_delta": (_asian_delta, 14),
    "geo_asian_delta": (_geo_asian_delta, 14),
}


# ---------------------------------------------------------------------------
# peers (JAX, PyTorch): the five problems from peers.py, the last two here
# ---------------------------------------------------------------------------

def _torch_peers():
    try:
        import torch
    except Exception:
        return {}
    torch.set_default_dtype(torch.float64)

    def vi(n, seed):
        def run():
            g = torch.Generator().manual_seed(seed)
            z = torch.randn(n, VI_D, generator=g)
            m = torch.tensor(VI_M, requires_grad=True)
            s = torch.tensor(VI_S, requires_grad=True)
            x = (m + s * z).detach().requires_grad_(True)
            a, b = torch.tensor(VI_A), torch.tensor(VI_B)
            f = (-0.5 * a * (x - b) ** 2 + torch.cos(x)).sum(1) - VI_C * x.sum(1) ** 2
            (gx,) = torch.autograd.grad(f.sum(), x)
            per = torch.cat([gx, gx * z], 1).numpy()
            return per.mean(0), per.std(0, ddof=1) / math.sqrt(n)
        return run

    def asian(geometric):
        def factory(n, seed):
            S0, K, r, sig, T = (ASIAN[k] for k in ("spot", "strike", "rate", "vol",
                                                   "maturity"))

            def run():
                g = torch.Generator().manual_seed(seed)
                dt = T / ASIAN_STEPS
                z = torch.randn(n, ASIAN_STEPS, generator=g)
                s0 = torch.full((n,), S0, requires_grad=True)
                logs = torch.log(s0)[:, None] + torch.cumsum(
                    (r - 0.5 * sig * sig) * dt + sig * math.sqrt(dt) * z, 1)
                avg = torch.exp(logs.mean(1)) if geometric else torch.exp(logs).mean(1)
                pay = math.exp(-r * T) * torch.clamp(avg - K, min=0.0)
                (gs,) = torch.autograd.grad(pay.sum(), s0)
                gs = gs.numpy()
                return np.array([gs.mean()]), np.array([gs.std(ddof=1) / math.sqrt(n)])
            return run
        return factory

    return {"vi_d10": vi, "asian_delta": asian(False), "geo_asian_delta": asian(True)}


def _jax_peers():
    try:
        import jax
        import jax.numpy as jnp
        jax.config.update("jax_enable_x64", True)
    except Exception:
        return {}

    def vi(n, seed):
        def f_sum(x):
            return ((-0.5 * VI_A * (x - VI_B) ** 2 + jnp.cos(x)).sum(1)
                    - VI_C * x.sum(1) ** 2).sum()

        @jax.jit
        def go(key):
            z = jax.random.normal(key, (n, VI_D))
            gx = jax.grad(f_sum)(VI_M + VI_S * z)
            per = jnp.concatenate([gx, gx * z], 1)
            return per.mean(0), per.std(0, ddof=1) / jnp.sqrt(n)

        key = jax.random.key(seed)
        jax.block_until_ready(go(key))
        return lambda: tuple(np.asarray(v) for v in go(key))

    def asian(geometric):
        def factory(n, seed):
            S0, K, r, sig, T = (ASIAN[k] for k in ("spot", "strike", "rate", "vol",
                                                   "maturity"))
            dt = T / ASIAN_STEPS

            def pay_sum(s0, z):
                logs = jnp.log(s0)[:, None] + jnp.cumsum(
                    (r - 0.5 * sig * sig) * dt + sig * math.sqrt(dt) * z, 1)
                avg = jnp.exp(logs.mean(1)) if geometric else jnp.exp(logs).mean(1)
                return (math.exp(-r * T) * jnp.maximum(avg - K, 0.0)).sum()

            @jax.jit
            def go(key):
                z = jax.random.normal(key, (n, ASIAN_STEPS))
                gs = jax.grad(pay_sum)(jnp.full((n,), S0), z)
                return gs.mean()[None], (gs.std(ddof=1) / jnp.sqrt(n))[None]

            key = jax.random.key(seed)
            jax.block_until_ready(go(key))
            return lambda: tuple(np.asarray(v) for v in go(key))
        return factory

    return {"vi_d10": vi, "asian_delta": asian(False), "geo_asian_delta": asian(True)}


def peer_factories(name):
    """{label: factory(n, seed) -> run() -> (g, se)}: the best JAX and
    PyTorch implementation (f64) of each problem, when installed."""
    out = {}
    if name in P.PROBLEMS:
        try:
            import peers
        except Exception:
            return out
        for label in ("jax_f64", "torch_f64"):
            if label in peers.PEERS.get(name, {}):
                out[label] = peers.PEERS[name][label]
        return out
    for label, table in (("torch_f64", _torch_peers()), ("jax_f64", _jax_peers())):
        if name in table:
            out[label] = table[name]
    return out


# ---------------------------------------------------------------------------
# measurements
# ---------------------------------------------------------------------------

def _slope(ns, ys):
    ok = np.isfinite(ys) & (np.asarray(ys) > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(np.asarray(ns)[ok]), np.log(np.asarray(ys)[ok]), 1)[0])


def rmse_ladder(run, exact, log2s, reps):
    """Relative RMSE and mean reported relative stderr at n = R * 2^k."""
    norm = float(np.linalg.norm(exact))
    rows = []
    for k in log2s:
        n = R * 2**k
        errs, ses = [], []
        for seed in range(reps):
            g, se = run(n, 1000 + seed)
            errs.append(float(np.linalg.norm(np.asarray(g) - exact) ** 2))
            ses.append(float(np.linalg.norm(se) ** 2))
        rows.append({"n": n, "rmse": math.sqrt(np.mean(errs)) / norm,
                     "stderr": math.sqrt(np.mean(ses)) / norm})
    return rows


def time_to_target(run_factory, exact, rate, n0, cap, repeats):
    """(seconds, n, measured relative stderr, extrapolated?) at the smallest
    n = R * 2^k (k >= 1) whose run reaches TARGET, the same search for every
    method: the pilot at n0 predicts n by the error's rate (n^-rate), then n
    doubles while the run misses TARGET and halves while the halved run
    still reaches it.  Where the n needed exceeds cap the time is
    extrapolated linearly from the largest run."""
    norm = float(np.linalg.norm(exact))

    def measure(n):
        t, (_, se) = _best_time(run_factory(n), repeats)
        return t, float(np.linalg.norm(se)) / norm

    def extrapolated(n, t, rel):
        need = n * (rel / TARGET) ** (1.0 / rate)
        return t * need / n, int(need), float("nan"), True

    t, rel = measure(n0)
    need = n0 * (rel / TARGET) ** (1.0 / rate)
    n = R * 2 ** max(1, math.ceil(math.log2(max(need, 2 * R) / R)))
    if n > cap:
        return extrapolated(n0, t, rel)
    if n != n0:
        t, rel = measure(n)
    while rel > TARGET:
        if 2 * n > cap:
            return extrapolated(n, t, rel)
        n *= 2
        t, rel = measure(n)
    while n >= 4 * R:
        t2, rel2 = measure(n // 2)
        if rel2 > TARGET:
            break
        n, t, rel = n // 2, t2, rel2
    return t, n, rel, False


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes: check that it runs")
    ap.add_argument("--no-timing", action="store_true", help="RMSE / variance part only")
    ap.add_argument("--peers", action="store_true", help="time the JAX / PyTorch peers")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--problems", nargs="*", default=list(CASES))
    ap.add_argument("--cap", type=float, default=2e8, help="largest n run for real")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    warnings.simplefilter("ignore", mc._qmc.QMCWarning)
    results = {}
    for name in args.problems:
        build, top = CASES[name]
        exact, dim, methods = build()
        top = min(top, 8) if args.quick else top
        log2s = list(range(6, top + 1, 2 if top - 6 > 6 else 1))
        reps = 3 if args.quick else args.reps
        res = {"dim": dim, "ladder": {}, "slope": {}, "time": {}}
        for label in ("mc", "sobol"):
            res["ladder"][label] = rmse_ladder(methods[label], exact, log2s, reps)
            res["slope"][label] = _slope([r["n"] for r in res["ladder"][label]],
                                         [r["rmse"] for r in res["ladder"][label]])
        a, b = res["ladder"]["mc"][-1], res["ladder"]["sobol"][-1]
        res["variance_ratio"] = {"n": a["n"], "mse": (a["rmse"] / b["rmse"]) ** 2,
                                 "reported": (a["stderr"] / b["stderr"]) ** 2}
        print(f"{name:16s} d={dim:<4d} slope mc {res['slope']['mc']:+.2f} sobol "
              f"{res['slope']['sobol']:+.2f}  variance ratio at n={a['n']}: "
              f"{res['variance_ratio']['mse']:.3g} (MSE) {res['variance_ratio']['reported']:.3g}"
              f" (reported)", flush=True)
        if not args.no_timing:
            facs = {lab: (lambda run: (lambda n, s=0: (lambda: run(n, s))))(run)
                    for lab, run in methods.items()}
            if args.peers:
                facs.update(peer_factories(name))
            n0 = R * 2**(8 if args.quick else 12)
            for lab, fac in facs.items():
                # Monte Carlo: n^-1/2; Sobol': the fitted RMSE rate, kept in [1/2, 3/2]
                rate = 0.5
                if lab.startswith("sobol") and np.isfinite(res["slope"]["sobol"]):
                    rate = min(1.5, max(0.5, -res["slope"]["sobol"]))
                t, n, rel, extra = time_to_target(lambda n, fac=fac: fac(n, 0), exact, rate, n0,
                                                  1e5 if args.quick else args.cap, args.repeats)
                res["time"][lab] = {"seconds": t, "n": n, "rel_stderr": rel, "extrapolated": extra}
                print(f"    {lab:12s} {'~' if extra else ' '}{t:9.4g} s  n={n:.3g}", flush=True)
        results[name] = res
    with open(os.path.join(args.out, "qmc.json"), "w") as fh:
        json.dump(results, fh, indent=1, default=float)
    _markdown(results, os.path.join(args.out, "qmc.md"))
    _plot(results, os.path.join(args.out, "qmc.png"))
    return results


def _markdown(results, path):
    lines = ["| problem | d | RMSE slope MC | RMSE slope Sobol' | variance ratio (MSE) | at n |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        v = r["variance_ratio"]
        lines.append(f"| {name} | {r['dim']} | {r['slope']['mc']:+.2f} | "
                     f"{r['slope']['sobol']:+.2f} | {v['mse']:.3g} | {R} x 2^"
                     f"{int(math.log2(v['n'] // R))} |")
    timed = [(n, r) for n, r in results.items() if r["time"]]
    if timed:
        labels = sorted({lab for _, r in timed for lab in r["time"]})
        lines += ["", f"Time (s) to a relative standard error of {TARGET:g} (~: extrapolated)",
                  "", "| problem | " + " | ".join(labels) + " |",
                  "| --- |" + " --- |" * len(labels)]
        for name, r in timed:
            cells = []
            for lab in labels:
                t = r["time"].get(lab)
                cells.append("" if t is None else
                             f"{'~' if t['extrapolated'] else ''}{t['seconds']:.3g}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def _plot(results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return
    names = list(results)
    timed = any(r["time"] for r in results.values())
    fig, axes = plt.subplots(1 + timed, len(names), figsize=(3.2 * len(names), 3.2 * (1 + timed)),
                             squeeze=False)
    for j, name in enumerate(names):
        ax = axes[0, j]
        for label, style in (("mc", "o-"), ("sobol", "s-")):
            rows = results[name]["ladder"][label]
            ax.loglog([r["n"] for r in rows], [r["rmse"] for r in rows], style,
                      label=f"{label} ({results[name]['slope'][label]:+.2f})")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("n (total draws)")
        ax.legend(fontsize=7)
        if j == 0:
            ax.set_ylabel("relative RMSE")
        if timed:
            ax = axes[1, j]
            t = results[name]["time"]
            ax.bar(range(len(t)), [v["seconds"] for v in t.values()],
                   color=["0.6" if v["extrapolated"] else "C0" for v in t.values()])
            ax.set_xticks(range(len(t)), list(t), rotation=60, fontsize=7)
            ax.set_yscale("log")
            if j == 0:
                ax.set_ylabel(f"s to rel. stderr {TARGET:g}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
