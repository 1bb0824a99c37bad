"""mcscore benchmark: five score-function gradient problems, mcscore against
idiomatic NumPy, JAX and PyTorch in one run, plus the RNG floor, scaling in
n, peak memory and the fixed cost of a call.

    python benchmarks/run.py [--quick] [--problems P ...] [--out DIR]
                             [--repeats R] [--no-peers] [--no-scaling] [--publish]
                             [--sizes | --sizes-only]

Every implementation's gradient is checked against the exact value of
``problems.py`` (max |z| over coordinates, with the implementation's own
standard error and with the exact one); the run fails (exit 1) when any
|z| > 5.  Results go to DIR (default benchmarks/results/): results.json,
results.md, and plots when matplotlib is installed.  ``--publish`` also
copies results.md to benchmarks/RESULTS.md.  ``--sizes`` also runs the
"sizes users run" tables (small_calls.py, families.py, many_coords.py, each
in its own process, with --quick passed on), ``--sizes-only`` only those.
"""
from __future__ import annotations

import os

# One-thread NumPy peer ("what users write today"): pin the BLAS pools before
# NumPy is imported (their idle spinning threads would also steal the cores
# from the threaded implementations).
for _v in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
if os.path.isdir(os.path.join(ROOT, "src", "mcscore")):
    sys.path.insert(0, os.path.join(ROOT, "src"))

import mcscore as mc  # noqa: E402
from mcscore import integrands as I  # noqa: E402

import problems as P  # noqa: E402
import peers  # noqa: E402

NCPU = os.cpu_count() or 1
if peers.HAVE_TORCH:
    peers.torch.set_num_threads(NCPU)

Z_MAX = 5.0
SEED = 20240601

# ---------------------------------------------------------------------------
# mcscore implementations: factory(n, seed) -> run() -> (grad, stderr)
# in the canonical shapes of problems.py
# ---------------------------------------------------------------------------


def _stack(res, names):
    return (np.stack([np.asarray(res.grad[k], float) for k in names]),
            np.stack([np.asarray(res.stderr[k], float) for k in names]))


def _mc_normal_sq(f, n_threads=None):
    def factory(n, seed):
        p = P.PROBLEMS["normal_sq"].params
        d = mc.Normal(p["loc"], p["scale"])
        return lambda: _stack(mc.score_grad(f, d, n, rng=seed, n_threads=n_threads),
                              ("loc", "scale"))
    return factory


def _mc_diag_gauss_quad(n, seed):
    p = P.PROBLEMS["diag_gauss_quad"].params
    d = mc.Normal(p["loc"], p["scale"])
    f = I.sum_of_squares(center=p["shift"])
    return lambda: _stack(mc.score_grad(f, d, n, rng=seed), ("loc", "scale"))


def _mc_categorical(n, seed):
    p = P.PROBLEMS["categorical"].params
    K = p["K"]
    d = mc.Categorical(logits=p["logits"])
    f = I.power(2) * (1.0 / (K * K))

    def run():
        r = mc.score_grad(f, d, n, rng=seed)
        return np.asarray(r.grad["logits"], float), np.asarray(r.stderr["logits"], float)
    return run


def _mc_gamma_shape(n, seed):
    p = P.PROBLEMS["gamma_shape"].params
    d = mc.Gamma(p["concentration"], p["rate"])
    return lambda: _stack(mc.score_grad(I.log1p(), d, n, rng=seed), ("concentration", "rate"))


def bs_from_lognormal(res, p):
    """Delta and vega from the gradient w.r.t. the LogNormal's (loc, scale).

    loc = log S0 + (r - sigma^2/2) T and scale = sigma sqrt(T), so
    d/dS0 = d/dloc / S0 and d/dsigma = d/dloc * (-sigma T) + d/dscale * sqrt(T):
    a linear map of the gradient, whose standard errors ``res.linear`` gives
    from the estimate's covariance of (loc, scale).
    """
    S0, sig, T = p["S0"], p["sigma"], p["T"]
    J = np.array([[1.0 / S0, 0.0], [-sig * T, math.sqrt(T)]])  # rows: delta, vega
    lin = res.linear(J)
    return np.asarray(lin.estimate, float), np.asarray(lin.stderr, float)


def _mc_bs_delta(n_threads=None):
    def factory(n, seed):
        p = P.PROBLEMS["bs_delta"].params
        S0, K, r, sig, T = p["S0"], p["K"], p["r"], p["sigma"], p["T"]
        d = mc.LogNormal(math.log(S0) + (r - 0.5 * sig * sig) * T, sig * math.sqrt(T))
        f = I.call(K) * math.exp(-r * T)
        return lambda: bs_from_lognormal(mc.score_grad(f, d, n, rng=seed, n_threads=n_threads),
                                         p)
    return factory


MC_IMPLS = {
    "normal_sq": {"mcscore": _mc_normal_sq(I.power(2)),
                  "mcscore_pyf": _mc_normal_sq(lambda x: x * x),
                  "mcscore_1thread": _mc_normal_sq(I.power(2), n_threads=1)},
    "diag_gauss_quad": {"mcscore": _mc_diag_gauss_quad},
    "categorical": {"mcscore": _mc_categorical},
    "gamma_shape": {"mcscore": _mc_gamma_shape},
    "bs_delta": {"mcscore": _mc_bs_delta(), "mcscore_1thread": _mc_bs_delta(n_threads=1)},
}

# Peers that are far too slow or too big at the benchmark n (peers.NOTES):
# run at a reduced n and scale the time linearly (or skip in --quick).
REDUCED = {("categorical", k): 100_000 for k in ("jax_f64", "jax_f32", "torch_f64", "torch_f32")}

# ---------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------


def time_run(run, repeats):
    """(result of the first call, median seconds of `repeats` further calls;
    at most 3 calls for an implementation slower than a second)."""
    t0 = time.perf_counter()
    out = run()  # warm-up (caches, page faults); also the checked result
    if time.perf_counter() - t0 > 1.0:
        repeats = min(repeats, 3)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        ts.append(time.perf_counter() - t0)
    return out, float(np.median(ts)), [float(t) for t in ts]


def check_all(name, grad, se, n):
    """(max |z| with the reported stderr, max |z| with the exact stderr)."""
    z_own = P.check(name, grad, se)
    z_exact = P.check(name, grad, None, n=n)
    return z_own, z_exact


def bench_problem(name, ns, repeats, use_peers, quick, log):
    rows = []
    impls = dict(MC_IMPLS[name])
    if use_peers:
        impls.update(peers.PEERS[name])
    else:
        impls["numpy_f64"] = peers.PEERS[name]["numpy_f64"]
    for n in ns:
        for impl, factory in impls.items():
            n_run = n
            if (name, impl) in REDUCED and n > REDUCED[(name, impl)]:
                if quick:
                    log(f"  skip {name}/{impl} at n={n:g} in --quick ({peers.NOTES[name][impl]})")
                    continue
                n_run = REDUCED[(name, impl)]
            if impl == "mcscore_pyf" or impl.endswith("1thread"):
                if n > 10_000_000:
                    continue
            t_setup = time.perf_counter()
            try:
                run = factory(n_run, SEED)
            except Exception as exc:  # a peer that cannot run here
                log(f"  skip {name}/{impl}: {type(exc).__name__}: {exc}")
                continue
            t_setup = time.perf_counter() - t_setup
            reps = repeats if n_run * (100 if name == "diag_gauss_quad" else 1) < 5e7 else max(
                3, repeats // 2)
            (g, se), t, ts = time_run(run, reps)
            z_own, z_exact = check_all(name, g, se, n_run)
            scale = n / n_run
            row = dict(problem=name, impl=impl, n=n, n_run=n_run, seconds=t * scale,
                       seconds_raw=ts, setup_seconds=t_setup, z_own=z_own, z_exact=z_exact,
                       scaled=n_run != n)
            if n_run != n:
                # at 1e5 draws the per-category empirical stderr is unreliable
                # (peers.NOTES): judge these by the exact stderr only
                row["z_own_unreliable"] = True
            rows.append(row)
            note = f" (run at n={n_run:g}, time x{scale:g})" if n_run != n else ""
            log(f"  {name:16s} n={n:<9g} {impl:18s} {t * scale * 1e3:10.2f} ms   "
                f"|z| {z_own:5.2f} / exact {z_exact:5.2f}{note}")
    # ratios to numpy at each n
    for n in ns:
        base = [r for r in rows if r["n"] == n and r["impl"] == "numpy_f64"]
        for r in rows:
            if r["n"] == n and base:
                r["ratio_numpy"] = r["seconds"] / base[0]["seconds"]
    return rows


def rng_floor(ns, repeats):
    out = {}
    for n in ns:
        run = peers.FLOORS["numpy_rng_floor"](n, SEED)
        _, t, _ = time_run(run, repeats)
        out[n] = t
    return out


def fixed_cost(repeats=7, number=200):
    """Per-call time at n = 1000 (P1) for mcscore (fused) and NumPy."""
    import timeit

    mc_run = MC_IMPLS["normal_sq"]["mcscore"](1000, SEED)
    np_run = peers.PEERS["normal_sq"]["numpy_f64"](1000, SEED)
    res = {}
    for k, run in (("mcscore", mc_run), ("numpy_f64", np_run)):
        run()
        res[k] = min(timeit.repeat(run, number=number, repeat=repeats)) / number
    res["excess_us"] = (res["mcscore"] - res["numpy_f64"]) * 1e6
    return res


_SCALING_CHILD = r"""
import sys, time, resource, json
sys.path[:0] = {paths!r}
import numpy as np, mcscore as mc
from mcscore import integrands as I
d = mc.Normal(0.5, 2.0); f = I.power(2)
def hwm():
    # peak RSS of this process image in KiB (ru_maxrss would carry the
    # parent's peak across fork + exec on Linux)
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rss0 = hwm()
mc.score_grad(f, d, 1000, rng=1)
ts = []
for _ in range({reps}):
    t0 = time.perf_counter(); r = mc.score_grad(f, d, {n}, rng=1); ts.append(time.perf_counter() - t0)
z = abs(r.grad["loc"] - 2 * 0.5) / r.stderr["loc"]
print(json.dumps(dict(n={n}, seconds=float(np.median(ts)), rss_kib_after_import=rss0,
                      rss_kib=hwm(), z=float(z))))
"""


def scaling(ns, log):
    """P1 with the fused integrand, one subprocess per n (peak RSS per n,
    from VmHWM)."""
    rows = []
    paths = [p for p in sys.path[:3] if p]
    for n in ns:
        reps = 5 if n <= 10**7 else (3 if n <= 10**8 else 1)
        code = _SCALING_CHILD.format(paths=paths, n=n, reps=reps)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        log(f"  scaling n={n:<11g} {row['seconds'] * 1e3:10.2f} ms  "
            f"{row['seconds'] / n * 1e9:6.2f} ns/draw  peak RSS {row['rss_kib'] / 1024:7.1f} MiB"
            f"  |z| {row['z']:.2f}")
    return rows


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------

TARGETS = [
    # (label, problem, impl, n or None = largest run, max ratio to numpy)
    ("P1 fused <= 0.25 x NumPy", "normal_sq", "mcscore", 10**7, 0.25),
    ("P5 fused <= 0.25 x NumPy", "bs_delta", "mcscore", 10**7, 0.25),
    ("P1 Python f <= 0.5 x NumPy", "normal_sq", "mcscore_pyf", 10**7, 0.5),
    ("P2 <= 0.25 x NumPy", "diag_gauss_quad", "mcscore", None, 0.25),
    ("P3 <= 0.07 x NumPy", "categorical", "mcscore", None, 0.07),
    ("P4 <= 0.35 x NumPy", "gamma_shape", "mcscore", None, 0.35),
]


def _find(rows, problem, impl, n):
    cand = [r for r in rows if r["problem"] == problem and r["impl"] == impl]
    if n is not None:
        cand = [r for r in cand if r["n"] == n] or cand
    return max(cand, key=lambda r: r["n"]) if cand else None


def evaluate_targets(rows, floors, threads, fixed, scal):
    out = []
    for label, prob, impl, n, lim in TARGETS:
        r = _find(rows, prob, impl, n)
        if r is None or "ratio_numpy" not in r:
            continue
        out.append(dict(target=label, n=r["n"], value=r["ratio_numpy"], limit=lim,
                        ok=r["ratio_numpy"] <= lim))
    for prob, n in (("normal_sq", 10**7), ("bs_delta", 10**7)):
        r = _find(rows, prob, "mcscore", n)
        if r is None or r["n"] not in floors:
            continue
        fl = floors[r["n"]] / threads
        out.append(dict(target=f"{'P1' if prob == 'normal_sq' else 'P5'} fused <= 1.2 x "
                        "(RNG floor / threads)", n=r["n"], value=r["seconds"] / fl, limit=1.2,
                        ok=r["seconds"] <= 1.2 * fl))
    for prob in P.PROBLEMS:
        for n in sorted({r["n"] for r in rows if r["problem"] == prob}):
            mine = _find(rows, prob, "mcscore", n)
            if mine is None or mine["n"] != n:
                continue
            for fam in ("jax", "torch"):
                peer = [r for r in rows if r["problem"] == prob and r["n"] == n
                        and r["impl"].startswith(fam)]
                if not peer:
                    continue
                best = min(peer, key=lambda r: r["seconds"])
                out.append(dict(target=f"{prob} faster than best {fam} ({best['impl']})", n=n,
                                value=mine["seconds"] / best["seconds"], limit=1.0,
                                ok=mine["seconds"] < best["seconds"]))
    if fixed:
        out.append(dict(target="fixed cost at n=1000 < 50 us above NumPy", n=1000,
                        value=fixed["excess_us"], limit=50.0, ok=fixed["excess_us"] < 50.0))
    if scal and len(scal) >= 3:
        big = [s for s in scal if s["n"] >= 10**6]
        per = [s["seconds"] / s["n"] for s in big]
        lin = max(per) / min(per) if per else float("nan")
        out.append(dict(target="time linear in n (max/min ns per draw, n >= 1e6)", n=None,
                        value=lin, limit=1.5, ok=lin <= 1.5))
        rss = [s["rss_kib"] for s in scal]
        grow = (max(rss) - min(rss)) / 1024
        out.append(dict(target="peak RSS flat in n (spread, MiB)", n=None, value=grow,
                        limit=16.0, ok=grow <= 16.0))
    return out


def _cpu_idle_fraction(dt=1.0):
    def snap():
        with open("/proc/stat") as fh:
            v = [int(x) for x in fh.readline().split()[1:]]
        return v[3] + v[4], sum(v)
    i0, t0 = snap()
    time.sleep(dt)
    i1, t1 = snap()
    return (i1 - i0) / max(1, t1 - t0)


def wait_idle(limit, need=3):
    """Wait until the CPUs were >= 90% idle for `need` seconds in a row (at
    most `limit` seconds); returns the seconds waited."""
    t0 = time.perf_counter()
    ok = 0
    try:
        while ok < need and time.perf_counter() - t0 < limit:
            ok = ok + 1 if _cpu_idle_fraction() >= 0.9 else 0
    except OSError:  # no /proc/stat
        pass
    return time.perf_counter() - t0


def _fmt_t(s):
    return f"{s * 1e3:.1f} ms" if s >= 1e-3 else f"{s * 1e6:.0f} us"


def summary(rows):
    """Compact table: per problem and n, mcscore against NumPy and the best
    JAX and PyTorch variants."""
    L = ["| problem | n | mcscore | NumPy | ratio | best JAX | best PyTorch |",
         "|---|---:|---:|---:|---:|---|---|"]
    keys = sorted({(r["problem"], r["n"]) for r in rows},
                  key=lambda k: (list(P.PROBLEMS).index(k[0]), k[1]))
    for prob, n in keys:
        sel = [r for r in rows if r["problem"] == prob and r["n"] == n]
        get = {r["impl"]: r for r in sel}
        if "mcscore" not in get or "numpy_f64" not in get:
            continue
        best = {}
        for fam in ("jax", "torch"):
            c = [r for r in sel if r["impl"].startswith(fam)]
            best[fam] = (f"{_fmt_t(min(c, key=lambda r: r['seconds'])['seconds'])} "
                         f"({min(c, key=lambda r: r['seconds'])['impl']})") if c else "-"
        me = get["mcscore"]
        extra = ""
        if "mcscore_pyf" in get:
            extra = f"; Python f: {_fmt_t(get['mcscore_pyf']['seconds'])}"
        L.append(f"| {prob} | {n:g} | {_fmt_t(me['seconds'])}{extra} | "
                 f"{_fmt_t(get['numpy_f64']['seconds'])} | {me['ratio_numpy']:.3f} | "
                 f"{best['jax']} | {best['torch']} |")
    return "\n".join(L)


def markdown(meta, rows, floors, fixed, scal, targets):
    L = []
    L.append(f"Machine: {meta['cpu']} ({meta['ncpu']} cores), load average at start "
             f"{meta['load_start']}, at end {meta['load_end']}; mcscore threads: "
             f"{meta['mc_threads']}; torch threads: {meta.get('torch_threads', '-')}; "
             f"XLA: its default CPU thread pool (all cores).  Median of {meta['repeats']} "
             f"repeats after a warm-up call; float64 unless the name says f32.  "
             f"Ratio = time / NumPy's time at the same n.  |z| = max over coordinates of "
             f"|estimate - exact| / stderr (reported stderr / exact stderr).")
    L.append("")
    L.append(summary(rows))
    L.append("")
    L.append("All implementations:")
    L.append("")
    L.append("| problem | n | implementation | time | ratio to NumPy | max abs z (own / exact) |")
    L.append("|---|---:|---|---:|---:|---|")
    for r in rows:
        note = f" (n={r['n_run']:g}, scaled)" if r["scaled"] else ""
        zo = "n/a" if r.get("z_own_unreliable") else f"{r['z_own']:.2f}"
        L.append(f"| {r['problem']} | {r['n']:g} | {r['impl']}{note} | {_fmt_t(r['seconds'])} | "
                 f"{r.get('ratio_numpy', float('nan')):.3f} | {zo} / {r['z_exact']:.2f} |")
    L.append("")
    if floors:
        L.append("RNG floor (NumPy, one thread, standard normals only): " + ", ".join(
            f"n={n:g}: {_fmt_t(t)}" for n, t in floors.items()))
        L.append("")
    if fixed:
        L.append(f"Fixed cost of a call at n=1000 (P1): mcscore {fixed['mcscore'] * 1e6:.0f} us, "
                 f"NumPy {fixed['numpy_f64'] * 1e6:.0f} us, excess {fixed['excess_us']:.0f} us.")
        L.append("")
    if scal:
        L.append("Scaling (P1, fused integrand, one process per n):")
        L.append("")
        L.append("| n | time | ns per draw | peak RSS |")
        L.append("|---:|---:|---:|---:|")
        for s in scal:
            L.append(f"| {s['n']:g} | {_fmt_t(s['seconds'])} | {s['seconds'] / s['n'] * 1e9:.2f} | "
                     f"{s['rss_kib'] / 1024:.0f} MiB |")
        L.append("")
    if targets:
        L.append("Targets:")
        L.append("")
        L.append("| target | n | measured | limit | met |")
        L.append("|---|---:|---:|---:|---|")
        for t in targets:
            n = "" if t["n"] is None else f"{t['n']:g}"
            L.append(f"| {t['target']} | {n} | {t['value']:.3f} | {t['limit']:g} | "
                     f"{'yes' if t['ok'] else '**no**'} |")
        L.append("")
    return "\n".join(L)


def _impl_order(name):
    """Series order in the plots: mcscore's variants, then NumPy, JAX, PyTorch."""
    for rank, prefix in enumerate(("mcscore", "numpy", "jax", "torch")):
        if name.startswith(prefix):
            return (rank, name)
    return (9, name)


def machine_line(meta):
    """'<cpu>, <k> cores; mcscore <t> threads' for figure subtitles."""
    return (f"{meta.get('cpu', '?')}, {meta.get('ncpu', '?')} cores; "
            f"mcscore {meta.get('mc_threads', '?')} threads, one run")


def plots(out_dir, rows, scal, meta):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return []
    made = []
    where = machine_line(meta)
    if scal:
        fig, ax = plt.subplots(1, 2, figsize=(11, 4.4))
        n = np.array([s["n"] for s in scal], float)
        t = np.array([s["seconds"] for s in scal])
        ax[0].loglog(n, t, "o-", label="mcscore, P1 fused (x^2 under a Normal)")
        ax[0].loglog(n, t[-1] * n / n[-1], "k--", lw=0.8, label="linear in n (reference)")
        ax[0].set_xlabel("n (draws, log scale)")
        ax[0].set_ylabel("wall time (seconds, log scale)")
        ax[0].set_title("Time against n (lower is better)", fontsize=10)
        ax[0].legend(fontsize=8, loc="upper left")
        ax[1].semilogx(n, [s["rss_kib"] / 1024 for s in scal], "o-", label="peak resident memory")
        ax[1].set_xlabel("n (draws, log scale)")
        ax[1].set_ylabel("peak RSS (MiB)")
        ax[1].set_title("Memory against n: flat means streaming (lower is better)", fontsize=10)
        ax[1].set_ylim(bottom=0)
        ax[1].legend(fontsize=8, loc="lower right")
        fig.suptitle(f"Scaling of one call. {where}", fontsize=10)
        fig.tight_layout()
        p = os.path.join(out_dir, "scaling.png")
        fig.savefig(p, dpi=100)
        plt.close(fig)
        made.append(p)
    probs = sorted({(r["problem"], r["n"]) for r in rows},
                   key=lambda k: (list(P.PROBLEMS).index(k[0]), k[1]))
    if probs:
        impls = sorted({r["impl"] for r in rows}, key=_impl_order)
        fig, ax = plt.subplots(figsize=(13, 5.2))
        w = 0.8 / len(impls)
        # one colour family per library, shades for its variants
        fams = {0: "Blues", 1: "Greys", 2: "Oranges", 3: "Greens", 9: "Purples"}
        shades = {}
        for impl in impls:
            shades.setdefault(_impl_order(impl)[0], []).append(impl)
        color = {impl: plt.get_cmap(fams[k])(0.85 - 0.45 * i / max(len(v) - 1, 1))
                 for k, v in shades.items() for i, impl in enumerate(v)}
        for j, impl in enumerate(impls):
            vals = []
            for prob, n in probs:
                m = [r for r in rows if r["problem"] == prob and r["n"] == n and r["impl"] == impl]
                vals.append(m[0].get("ratio_numpy", np.nan) if m else np.nan)
            ax.bar(np.arange(len(probs)) + j * w, vals, w, label=impl, color=color[impl])
        ax.set_yscale("log")
        ax.axhline(1.0, color="k", lw=0.8, label="NumPy (= 1)")
        ax.set_xticks(np.arange(len(probs)) + 0.4 - w / 2)
        ax.set_xticklabels([f"{p}\nn={n:g}" for p, n in probs], fontsize=8)
        ax.set_xlabel("problem and number of draws")
        ax.set_ylabel("wall time / NumPy's wall time (log scale)")
        ax.set_title(f"Time relative to NumPy's estimator, lower is better. {where}", fontsize=10)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        fig.tight_layout()
        p = os.path.join(out_dir, "ratios.png")
        fig.savefig(p, dpi=100)
        plt.close(fig)
        made.append(p)
    return made


SIZES_SCRIPTS = ("small_calls.py", "families.py", "many_coords.py")


def run_sizes(args):
    """The small-call, per-family and many-coordinate tables, one process
    each (a clean thread state); returns the worst exit status."""
    rc = 0
    for script in SIZES_SCRIPTS:
        cmd = [sys.executable, os.path.join(HERE, script), "--out", args.out]
        if args.quick:
            cmd.append("--quick")
        print(f"\n=== {script}", flush=True)
        rc = max(rc, subprocess.run(cmd).returncode)
    return rc


def _write_md(args, md):
    with open(os.path.join(args.out, "results.md"), "w") as fh:
        fh.write(md + "\n")
    if args.publish:
        with open(os.path.join(HERE, "RESULTS.md"), "w") as fh:
            fh.write("# Benchmark results\n\nWritten by `python benchmarks/run.py --publish`.\n\n")
            fh.write(md + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smaller n, fewer repeats, scaling to 1e7 (about 2 minutes)")
    ap.add_argument("--problems", nargs="*", choices=list(P.PROBLEMS), default=None)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--no-peers", action="store_true", help="NumPy only (no JAX / PyTorch)")
    ap.add_argument("--no-scaling", action="store_true")
    ap.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                    help="first wait up to SECONDS for 3 s in a row with the CPUs >= 90%% idle "
                         "(a shared machine)")
    ap.add_argument("--publish", action="store_true",
                    help="also write the markdown to benchmarks/RESULTS.md")
    ap.add_argument("--report", metavar="JSON",
                    help="only re-render results.md (and --publish) from a results.json")
    ap.add_argument("--sizes", action="store_true",
                    help="also run small_calls.py, families.py and many_coords.py")
    ap.add_argument("--sizes-only", action="store_true",
                    help="only run small_calls.py, families.py and many_coords.py")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.sizes_only:
        return run_sizes(args)
    if args.report:
        with open(args.report) as fh:
            res = json.load(fh)
        floors = {int(k): v for k, v in res["rng_floor"].items()}
        md = markdown(res["meta"], res["rows"], floors, res["fixed_cost"], res["scaling"],
                      res["targets"])
        _write_md(args, md)
        print(md)
        return 0
    repeats = args.repeats or (3 if args.quick else 7)
    names = args.problems or list(P.PROBLEMS)

    def log(msg):
        print(msg, flush=True)

    if args.wait_idle > 0:
        waited = wait_idle(args.wait_idle)
        log(f"waited {waited:.0f} s for an idle machine")
    for lib, why in peers.SKIPPED.items():
        log(f"peer {lib} skipped: {why}")
    load_start = os.getloadavg()
    threads = mc.effective_n_threads(None)
    log(f"mcscore {mc.__version__}: {threads} threads; numpy {np.__version__}; "
        f"load {load_start[0]:.2f}")
    rows = []
    t_all = time.perf_counter()
    for name in names:
        ns = P.PROBLEMS[name].ns
        if args.quick:
            ns = (min(ns),)
        log(f"{name}: {P.PROBLEMS[name].description}")
        rows += bench_problem(name, ns, repeats, not args.no_peers, args.quick, log)
    all_ns = sorted({r["n"] for r in rows if r["problem"] in ("normal_sq", "bs_delta")})
    floors = rng_floor(all_ns, repeats)
    for n, t in floors.items():
        log(f"  RNG floor n={n:g}: {t * 1e3:.2f} ms (NumPy, one thread)")
    fixed = fixed_cost()
    log(f"  fixed cost n=1000: mcscore {fixed['mcscore'] * 1e6:.0f} us, NumPy "
        f"{fixed['numpy_f64'] * 1e6:.0f} us")
    scal = []
    if not args.no_scaling:
        top = 7 if args.quick else 9
        scal = scaling([10**k for k in range(4, top + 1)], log)
    targets = evaluate_targets(rows, floors, threads, fixed, scal)
    meta = dict(cpu=platform.processor() or platform.machine(), ncpu=NCPU,
                python=sys.version.split()[0], numpy=np.__version__, mcscore=mc.__version__,
                mc_threads=threads, repeats=repeats, quick=args.quick,
                load_start=f"{load_start[0]:.2f}", load_end=f"{os.getloadavg()[0]:.2f}",
                seconds_total=time.perf_counter() - t_all,
                peers_skipped=dict(peers.SKIPPED),
                rusage_maxrss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    try:
        with open("/proc/cpuinfo") as fh:
            meta["cpu"] = next(l.split(":", 1)[1].strip() for l in fh if l.startswith("model name"))
    except Exception:
        pass
    if peers.HAVE_TORCH:
        meta["torch"] = peers.torch.__version__
        meta["torch_threads"] = peers.torch.get_num_threads()
    if peers.HAVE_JAX:
        meta["jax"] = peers.jax.__version__
    md = markdown(meta, rows, floors, fixed, scal, targets)
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(dict(meta=meta, rows=rows, rng_floor={str(k): v for k, v in floors.items()},
                       fixed_cost=fixed, scaling=scal, targets=targets), fh, indent=1)
    _write_md(args, md)
    made = plots(args.out, rows, scal, meta)
    log("")
    log(md)
    log(f"\nwrote {args.out}/results.json, results.md" + "".join(f", {os.path.basename(p)}"
                                                                for p in made))
    bad = [r for r in rows if r["z_exact"] > Z_MAX
           or (not r.get("z_own_unreliable") and r["z_own"] > Z_MAX)]
    bad += [s for s in scal if s["z"] > Z_MAX]
    rc = run_sizes(args) if args.sizes else 0
    if bad:
        for r in bad:
            log(f"ACCURACY FAILURE: {r}")
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
