"""Small calls (issue 17, target 1): the sizes of a VI or RL loop.

    python benchmarks/small_calls.py [--quick] [--repeats R] [--out DIR]

Tables (written to DIR/small_calls.md, default benchmarks/results/):

1. ``score_grad`` at n = 100, 1000, 10000, Normal with d = 5 coordinates,
   f = sum of squares: mcscore with a Python f and fused
   (``I.sum_of_squares()``), each also through the prepared estimator
   ``mc.Estimator(mc.Normal, f, n, rng=...)`` called with the step's
   parameters (the same bits), the hand-written NumPy estimator, a PyTorch
   surrogate-loss step (float64, float32) and JAX (jit of grad of the
   surrogate, float64, float32); time per call, ratio to NumPy, and |z| of
   the gradient against the exact one (exact standard error).
2. The fixed cost of a call: the same at n = 2 (plan, seeding, validation,
   result), and building the distribution alone.
3. Per-step cost of ``mcscore.vi.fit`` (n = 100 draws, d = 5 mean-field
   Normal, Gaussian target) against the same step in PyTorch (torch.optim.Adam
   on loc and log scale, leave-one-out baseline, surrogate loss) and in NumPy
   (by hand, with Adam); and of ``mcscore.rl.reinforce`` (CartPole, linear
   softmax policy, 20 episodes) against the same iteration in PyTorch.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import sizes_common as C  # noqa: E402
from sizes_common import mc  # noqa: E402
from mcscore import integrands as I  # noqa: E402

SEED = 20240601
D = 5
NS = (100, 1000, 10000)


def _pyf(x):
    return (x * x).sum(axis=1)


def score_grad_table(repeats, log):
    exact, sd = C.normal_sumsq_exact(D)
    rows = {}  # impl -> {n: (seconds, z)}
    for n in NS + (2,):
        factories = {
            "mcscore, Python f": lambda: C.mc_normal_sumsq(n, D, _pyf, SEED),
            "mcscore, fused": lambda: C.mc_normal_sumsq(n, D, I.sum_of_squares(), SEED),
            "mcscore Estimator, Python f": lambda: C.mc_prepared_normal_sumsq(n, D, _pyf, SEED),
            "mcscore Estimator, fused": lambda: C.mc_prepared_normal_sumsq(
                n, D, I.sum_of_squares(), SEED),
            "NumPy by hand": lambda: C.numpy_normal_sumsq(n, D, SEED),
        }
        if n != 2:
            factories.update(C.peer_impls(n, D, SEED))
        impls = {k: f() for k, f in factories.items()}
        if n == 2:
            loc, scale = C.normal_params(D)
            impls["mcscore: mc.Normal(loc, scale) alone"] = lambda: mc.Normal(loc, scale)
        first, t, _ = C.bench(impls, repeats)
        for k, v in first.items():
            # n = 2 times the fixed cost only: no accuracy check there
            z = C.z_exact(v, exact, sd, n) if n > 2 and isinstance(v, np.ndarray) else float("nan")
            rows.setdefault(k, {})[n] = (t[k], z)
            log(f"  n={n:<6d} {k:40s} {C.fmt_t(t[k]):>9s}  |z| {z:5.2f}")
    L = ["| implementation | " + " | ".join(f"n = {n:,}" for n in NS) + " | max abs z |",
         "|---|" + "---:|" * len(NS) + "---:|"]
    for k, per in rows.items():
        if not any(n in per for n in NS):
            continue
        cells = []
        for n in NS:
            if n in per:
                r = per[n][0] / rows["NumPy by hand"][n][0]
                cells.append(f"{C.fmt_t(per[n][0])} ({r:.2f} x)")
            else:
                cells.append("-")
        zmax = max(per[n][1] for n in NS if n in per)
        L.append(f"| {k} | " + " | ".join(cells) + f" | {zmax:.2f} |")
    L.append("")
    L.append("Fixed cost of a call (n = 2, same d = 5 Normal; the mcscore calls include "
             "building the distribution):")
    L.append("")
    L.append("| call | time per call |")
    L.append("|---|---:|")
    for k, per in rows.items():
        if 2 in per:
            L.append(f"| {k} | {per[2][0] * 1e6:.1f} us |")
    return "\n".join(L), rows


def fixed_cost_profile(calls=2000, top=10, prepared=False):
    """Where the fixed cost goes: cProfile of `calls` fused calls at n = 2
    (distribution built inside; `prepared`: through mc.Estimator), the
    functions with the largest own time.  Profiling inflates every Python
    call, so read the shares, not the absolute times."""
    import cProfile
    import pstats

    run = (C.mc_prepared_normal_sumsq if prepared else C.mc_normal_sumsq)(
        2, D, I.sum_of_squares(), SEED)
    run()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        run()
    prof.disable()
    st = pstats.Stats(prof)
    total = sum(v[2] for v in st.stats.values())
    rows = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:top]
    what = "prepared (mc.Estimator) " if prepared else ""
    L = [f"Where the fixed cost goes (cProfile of {calls} {what}fused calls at n = 2; own time of "
         "the largest functions, as a share of the profiled total; profiling inflates Python "
         "calls, so read the shares):",
         "",
         "| function | calls per score_grad | share of own time |",
         "|---|---:|---:|"]
    for (fname, line, func), (_cc, nc, tt, _ct, _callers) in rows:
        L.append(f"| `{func}` ({_where(fname, line)}) | {nc / calls:.1f} | {tt / total:.1%} |")
    # the phases: mcscore's own functions by cumulative time (callees included)
    src = os.path.join("src", "mcscore")
    mine = [(k, v) for k, v in st.stats.items()
            if src in k[0] and k[2] not in ("score_grad", "run", "__call__")]
    mine = sorted(mine, key=lambda kv: -kv[1][3])[:top]
    L += ["", "mcscore's functions by cumulative time (callees included; the phases of a call):",
          "", "| function | calls per score_grad | share of the total |", "|---|---:|---:|"]
    for (fname, line, func), (_cc, nc, _tt, ct, _callers) in mine:
        L.append(f"| `{func}` ({_where(fname, line)}) | {nc / calls:.1f} | {ct / total:.1%} |")
    return "\n".join(L)


def _where(fname, line):
    if "site-packages" in fname:
        return f"{fname.split('site-packages' + os.sep, 1)[1]}:{line}"
    if fname.startswith(C.ROOT):
        return f"{os.path.relpath(fname, C.ROOT)}:{line}"
    return "built-in"


# ---------------------------------------------------------------------------
# VI step: q = mean-field Normal(d = 5), target N(mu, sig^2), n = 100
# ---------------------------------------------------------------------------

VI_MU = np.linspace(-1.0, 1.0, D) + 0.3
VI_SIG = np.linspace(0.5, 1.5, D)


def _log_joint_np(x):
    return -0.5 * (((x - VI_MU) / VI_SIG) ** 2).sum(axis=1)


def vi_mcscore(steps, n):
    def run():
        res = mc.vi.fit(_log_joint_np, mc.Normal(np.zeros(D), np.ones(D)), steps=steps, n=n,
                        lr=0.05, rng=SEED, progress=False, average=0.0)
        return res.q.loc, res.q.scale
    return run


def vi_numpy(steps, n, lr=0.05, b1=0.9, b2=0.999, eps=1e-8):
    def run():
        rng = np.random.default_rng(SEED)
        loc, logs = np.zeros(D), np.zeros(D)
        m = np.zeros((2, D))
        v = np.zeros((2, D))
        c = 0.5 * math.log(2 * math.pi) * D
        for t in range(1, steps + 1):
            s = np.exp(logs)
            e = rng.standard_normal((n, D))
            x = loc + s * e
            lq = -0.5 * (e * e).sum(1) - logs.sum() - c
            f = _log_joint_np(x) - lq
            w = f - (f.sum() - f) / (n - 1)  # leave-one-out baseline
            g = np.stack([(w[:, None] * (e / s)).mean(0),
                          (w[:, None] * (e * e - 1.0)).mean(0)])  # d/dloc, d/dlog scale
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            step = lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
            loc, logs = loc + step[0], logs + step[1]
        return loc, np.exp(logs)
    return run


def vi_torch(steps, n, dtype, threads):
    torch, TD = C.torch, C.TD
    dt = torch.float64 if dtype == "f64" else torch.float32
    mu, sig = torch.tensor(VI_MU, dtype=dt), torch.tensor(VI_SIG, dtype=dt)

    def run():
        torch.set_num_threads(threads)
        torch.manual_seed(SEED)
        loc = torch.zeros(D, dtype=dt, requires_grad=True)
        logs = torch.zeros(D, dtype=dt, requires_grad=True)
        opt = torch.optim.Adam([loc, logs], lr=0.05)
        for _ in range(steps):
            opt.zero_grad()
            q = TD.Normal(loc, logs.exp())
            x = q.sample((n,))
            lq = q.log_prob(x).sum(1)
            f = (-0.5 * (((x - mu) / sig) ** 2).sum(1) - lq).detach()
            w = f - (f.sum() - f) / (n - 1)  # leave-one-out baseline
            (-(w * lq).mean()).backward()
            opt.step()
        return loc.detach().double().numpy(), logs.detach().exp().double().numpy()
    return run


def vi_table(repeats, quick, log):
    steps, n = (100 if quick else 300), 100
    impls = {"mcscore vi.fit": vi_mcscore(steps, n), "NumPy by hand (Adam)": vi_numpy(steps, n)}
    if C.HAVE_TORCH:
        for dt in ("f64", "f32"):
            for th in sorted({C.NCPU, 1}, reverse=True):
                impls[f"PyTorch {dt}, {th} thread{'s' if th > 1 else ''}"] = vi_torch(
                    steps, n, dt, th)
    first, t, _ = C.bench(impls, max(3, repeats // 2), min_batch=0.0)
    tp = [k for k in t if k.startswith("PyTorch")]
    ref = min(t[k] for k in tp) if tp else None
    L = [f"VI step (n = {n} draws, d = {D} mean-field Normal, Gaussian target, leave-one-out "
         f"baseline, Adam lr 0.05; {steps} steps per run, time per step; distance = max_j "
         f"|q loc_j - mu_j| / sigma_j after the run, the same for every implementation up to "
         "Monte Carlo noise; issue 17's target: vi.fit at most 0.5 x the best PyTorch step):",
         "",
         "| implementation | per step | ratio to the best PyTorch | ratio to NumPy | distance |",
         "|---|---:|---:|---:|---:|"]
    for k, (loc, _scale) in first.items():
        dist = float(np.max(np.abs(loc - VI_MU) / VI_SIG))
        per = t[k] / steps
        rt = f"{t[k] / ref:.2f}" if ref else "-"
        L.append(f"| {k} | {per * 1e6:.0f} us | {rt} | {t[k] / t['NumPy by hand (Adam)']:.2f} | "
                 f"{dist:.3f} |")
        log(f"  VI {k:30s} {per * 1e6:8.0f} us/step  distance {dist:.3f}")
    return "\n".join(L)


# ---------------------------------------------------------------------------
# REINFORCE iteration: CartPole, linear softmax policy, 20 episodes
# ---------------------------------------------------------------------------

def rl_mcscore(iters, episodes):
    def run():
        res = mc.rl.reinforce(mc.rl.CartPole(), mc.rl.SoftmaxPolicy(5, 2), iterations=iters,
                              episodes=episodes, lr=0.05, rng=SEED, progress=False)
        return float(res.returns.sum() * episodes)  # environment steps taken
    return run


def rl_torch(iters, episodes, threads):
    torch = C.torch
    env = mc.rl.CartPole()

    def run():
        torch.set_num_threads(threads)
        torch.manual_seed(SEED)
        rng = np.random.default_rng(SEED)
        theta = torch.zeros(5, 2, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([theta], lr=0.05)
        E, T = episodes, env.max_steps
        total = 0.0
        for _ in range(iters):
            state = env.reset(E, rng)
            feats = np.zeros((E, T, 5))
            acts = np.zeros((E, T), dtype=np.int64)
            rews = np.zeros((E, T))
            mask = np.zeros((E, T), dtype=bool)
            alive = np.ones(E, dtype=bool)
            for t in range(T):
                if not alive.any():
                    break
                phi = env.features(state)
                with torch.no_grad():
                    a = C.TD.Categorical(logits=torch.from_numpy(phi) @ theta).sample().numpy()
                state, r, done = env.step(state, a)
                feats[:, t], acts[:, t] = phi, a
                rews[:, t] = np.where(alive, r, 0.0)
                mask[:, t] = alive
                alive &= ~done
            total += rews.sum()
            G = torch.from_numpy(np.flip(np.cumsum(np.flip(rews, 1), 1), 1).copy())
            M = torch.from_numpy(mask)
            cnt = (M.sum(0, keepdim=True) - M.double()).clamp(min=1)
            b = (G.sum(0, keepdim=True) - G) / cnt  # leave-one-out over the running episodes
            logp = torch.log_softmax(torch.from_numpy(feats) @ theta, -1)
            logp = logp.gather(-1, torch.from_numpy(acts)[..., None])[..., 0]
            opt.zero_grad()
            (-(M * (G - b) * logp).sum() / E).backward()
            opt.step()
        return total
    return run


def rl_table(repeats, quick, log):
    iters, episodes = (5 if quick else 20), 20
    impls = {"mcscore rl.reinforce": rl_mcscore(iters, episodes)}
    if C.HAVE_TORCH:
        for th in sorted({C.NCPU, 1}, reverse=True):
            impls[f"PyTorch, {th} thread{'s' if th > 1 else ''}"] = rl_torch(iters, episodes, th)
    first, t, _ = C.bench(impls, max(3, repeats // 2), min_batch=0.0)
    L = [f"REINFORCE iteration (CartPole, linear softmax policy, {episodes} episodes in "
         f"lock-step, returns-to-go, leave-one-out baseline, Adam lr 0.05; {iters} iterations "
         "per run; episode lengths differ between the two by their random draws, so the "
         "per-environment-step time is the fairer ratio; both step the same CartPole; issue "
         "17's target: rl.reinforce at most 0.5 x the best PyTorch per environment step):",
         "",
         "| implementation | per iteration | env steps per iteration | per env step | "
         "ratio to the best PyTorch (per env step) |",
         "|---|---:|---:|---:|---:|"]
    tp = [k for k in t if k.startswith("PyTorch")]
    ref = min(t[k] / first[k] for k in tp) if tp else None
    for k, steps in first.items():
        per_it = t[k] / iters
        per_step = t[k] / steps
        rt = f"{per_step / ref:.2f}" if ref else "-"
        L.append(f"| {k} | {per_it * 1e3:.1f} ms | {steps / iters:.0f} | "
                 f"{per_step * 1e6:.1f} us | {rt} |")
        log(f"  RL {k:30s} {per_it * 1e3:8.1f} ms/iteration, {per_step * 1e6:.1f} us/env step")
    return "\n".join(L)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats and steps (< 2 min)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    repeats = args.repeats or (9 if args.quick else 15)
    C.announce_skipped()
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    md1, rows = score_grad_table(repeats, C.log)
    md1 += "\n\n" + fixed_cost_profile() + "\n\n" + fixed_cost_profile(prepared=True)
    md2 = vi_table(repeats, args.quick, C.log)
    md3 = rl_table(repeats, args.quick, C.log)
    md = "\n\n".join([C.header(repeats, load0), md1, md2, md3])
    md += f"\n\n({time.perf_counter() - t0:.0f} s in all.)"
    C.write("small_calls.md", md, args.out)
    bad = [(k, n) for k, per in rows.items() for n, (_, z) in per.items()
           if n > 2 and not z <= C.Z_MAX]
    for k, n in bad:
        C.log(f"ACCURACY FAILURE: {k} at n={n}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
