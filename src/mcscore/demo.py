"""``python -m mcscore demo``: the estimator at work on built-in defaults.

For several families: the estimate, its standard error and the exact
gradient side by side, and the time of mcscore against a plain NumPy
implementation of the same estimate, run in the same process.
"""
from __future__ import annotations

import os
import time

import numpy as np
from scipy import integrate, special, stats

import mcscore as mc
from mcscore import finance as fi
from mcscore import integrands as I
from mcscore import rl, vi
from mcscore._algebra import RARE_EXPECTED_COUNT
from mcscore._kernels import HAVE_OPENMP
from mcscore.vi import Adam


def _np_normal_sq(n, rng):
    mu, s = 0.5, 2.0
    x = rng.normal(mu, s, n)
    f = x * x
    z = (x - mu) / s
    return np.stack([f * z / s, f * (z * z - 1) / s])


def _np_gamma_log1p(n, rng):
    a, r = 2.5, 1.5
    x = rng.gamma(a, 1 / r, n)
    f = np.log1p(x)
    return np.stack([f * (np.log(r) - special.digamma(a) + np.log(x)), f * (a / r - x)])


def _np_poisson_sq(n, rng):
    lam = 3.0
    x = rng.poisson(lam, n).astype(float)
    return (x * x * (x / lam - 1))[None]


def _np_bernoulli_toy(n, rng):
    p = special.expit(0.3)
    x = (rng.random(n) < p).astype(float)
    return ((x - 0.45) ** 2 * (x - p))[None]


_K = 1000
_LOGITS = np.linspace(-2, 2, _K)


def _np_categorical(n, rng):
    p = special.softmax(_LOGITS)
    x = rng.choice(_K, size=n, p=p)
    f = (x / _K) ** 2
    # per-draw score: onehot(x) - p; summed without building the (n, K) matrix
    est = np.bincount(x, weights=f, minlength=_K) - p * f.sum()
    return est / n


def _np_dirichlet(n, rng):
    a = np.array([1.0, 2.0, 3.0])
    x = rng.dirichlet(a, n)
    f = x[:, 0]
    s = np.log(x) + special.digamma(a.sum()) - special.digamma(a)
    return (f[:, None] * s).T


def _exact_gamma_log1p():
    a, r = 2.5, 1.5

    def E(a, r):
        return integrate.quad(lambda x: np.log1p(x) * stats.gamma.pdf(x, a, scale=1 / r),
                              0, np.inf, epsabs=1e-13, epsrel=1e-12)[0]

    h = 1e-4
    return np.array([(E(a + h, r) - E(a - h, r)) / (2 * h), (E(a, r + h) - E(a, r - h)) / (2 * h)])


def _exact_categorical():
    p = special.softmax(_LOGITS)
    f = (np.arange(_K) / _K) ** 2
    return p * (f - p @ f)


def cases():
    """(label, distribution, integrand, param, exact gradient, numpy implementation)."""
    pb = special.expit(0.3)
    a = np.array([1.0, 2.0, 3.0])
    A = a.sum()
    return [
        ("Normal(0.5, 2)", "x^2", mc.Normal(0.5, 2.0), I.power(2), ("loc", "scale"),
         np.array([1.0, 4.0]), _np_normal_sq),
        ("Gamma(2.5, 1.5)", "log(1+x)", mc.Gamma(2.5, 1.5), I.log1p(),
         ("concentration", "rate"), _exact_gamma_log1p(), _np_gamma_log1p),
        ("Poisson(3)", "x^2", mc.Poisson(3.0), I.power(2), ("rate",), np.array([7.0]),
         _np_poisson_sq),
        ("Bernoulli(logits=.3)", "(x-.45)^2", mc.Bernoulli(logits=0.3),
         I.polynomial([0.45**2, -0.9, 1.0]), ("logits",), np.array([pb * (1 - pb) * 0.1]),
         _np_bernoulli_toy),
        ("Categorical(K=1000)", "(x/K)^2", mc.Categorical(logits=_LOGITS),
         I.polynomial([0, 0, 1 / _K**2]), ("logits",), _exact_categorical(), _np_categorical),
        ("Dirichlet(1,2,3)", "x_0", mc.Dirichlet(a), I.linear([1.0, 0.0, 0.0]),
         ("concentration",), np.array([(A - a[0]) / A**2, -a[0] / A**2, -a[0] / A**2]),
         _np_dirichlet),
    ]


def _best_time(fn, repeats=3):
    best = np.inf
    out = None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def expected_max_abs_z(k):
    """Median of the largest |z| among k independent standard normal z's:
    the m with (2 Phi(m) - 1)^k = 1/2."""
    return float(special.ndtri(0.5 * (1.0 + 0.5 ** (1.0 / k))))


def z_summary(z):
    """One line on k z-scores: the share within 3, the largest |z|, and the
    largest |z| that k independent N(0, 1) draws give (its median)."""
    a = np.abs(np.asarray(z, dtype=float))
    k = a.size
    return (f"all {k}: {np.mean(a < 3):.1%} within |z| < 3 (expected 99.7%), "
            f"max |z| {a.max():.2f} (expected max of {k}: ~{expected_max_abs_z(k):.1f})")


def format_table(table, left=3, notes=None, gap=2):
    """Lines of an aligned text table: table[0] is the header, the first `left`
    columns are left-aligned and the rest right-aligned; each column is as wide
    as its widest cell, so any width of number stays aligned. notes maps a row
    index to lines printed (indented) under that row."""
    widths = [max(len(str(r[c])) for r in table) for c in range(len(table[0]))]

    def fmt(r):
        cells = [str(v).ljust(w) if c < left else str(v).rjust(w)
                 for c, (v, w) in enumerate(zip(r, widths))]
        return (" " * gap).join(cells).rstrip()

    head = fmt(table[0])
    lines = [head, "-" * len(head)]
    indent = " " * (sum(widths[:left]) + gap * left)
    for i, r in enumerate(table[1:], start=1):
        lines.append(fmt(r))
        lines += [indent + t for t in (notes or {}).get(i, [])]
    return lines


def run_core(n=10**6, seed=0, out=print):
    """The core table. Returns a list of row dicts."""
    rows = []
    out(f"mcscore {mc.__version__} | score-function gradients, n = {n:,} draws, "
        f"{mc.effective_n_threads()} thread(s), OpenMP {'on' if HAVE_OPENMP else 'off'}")
    out("")
    table = [["distribution", "f", "parameter", "estimate", "+/- se", "exact", "z",
              "mcscore", "numpy", "speed-up"]]
    notes = {}     # row index -> lines printed under that row
    for label, flabel, dist, f, names, exact, np_impl in cases():
        t_mc, res = _best_time(lambda: mc.score_grad(f, dist, n, rng=seed))
        rng = np.random.default_rng(seed)
        t_np, _ = _best_time(lambda: np_impl(n, rng))
        est = np.concatenate([np.ravel(res.grad[k]) for k in names])
        se = np.concatenate([np.ravel(res.stderr[k]) for k in names])
        z = (est - exact) / se
        shown = range(len(est)) if len(est) <= 3 else [int(np.argmax(np.abs(z)))]
        first = True
        for j in shown:
            pname = names[0] if len(names) == 1 else names[j]
            if len(est) > 3:
                pname = f"{names[0]}[{j}]*"
            elif len(names) == 1 and len(est) > 1:
                pname = f"{names[0]}[{j}]"
            times = ([f"{t_mc * 1e3:.1f}ms", f"{t_np * 1e3:.1f}ms", f"{t_np / t_mc:.1f}x"]
                     if first else ["", "", ""])
            table.append([label if first else "", flabel if first else "", pname,
                          f"{est[j]:.5f}", f"{se[j]:.5f}", f"{exact[j]:.5f}", f"{z[j]:.2f}"]
                         + times)
            first = False
        rare = res.info.get("rare_categories", 0)
        rows.append(dict(case=label, f=flabel, estimate=est, stderr=se, exact=exact,
                         max_abs_z=float(np.abs(z).max()), t_mcscore=t_mc, t_numpy=t_np,
                         rare_categories=rare))
        lines = []
        if len(est) > 3:
            lines.append(z_summary(z))
        if rare:
            lines.append(f"({rare} of {len(est)} categories expected < "
                         f"{RARE_EXPECTED_COUNT:g} times: their se is a conservative bound)")
        if lines:
            notes[len(table) - 1] = lines
    for line in format_table(table, left=3, notes=notes):
        out(line)
    out("")
    out("z = (estimate - exact) / se; * = the coordinate with the largest |z| of K (the line "
        "under it: all K). Times: best of 3, same process;")
    out("numpy = the same estimator written with numpy.random and array arithmetic "
        "(one thread).")
    return rows


# ---------------------------------------------------------------------------
# applications: finance, variational inference, reinforcement learning
# ---------------------------------------------------------------------------

_LAST: dict = {}  # results of the parts run in this process, reused by run_figures
_MKT = dict(spot=100.0, strike=100.0, rate=0.05, vol=0.2, maturity=1.0)


def _bar(iterable, total, desc):
    """tqdm over iterable when tqdm is installed, else the iterable."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False)


def _np_call_greeks(n, rng):
    """The call's five likelihood-ratio estimates and standard errors in NumPy."""
    S, K, r, s, T = (_MKT[k] for k in ("spot", "strike", "rate", "vol", "maturity"))
    z = rng.standard_normal(n)
    a = s * np.sqrt(T)
    h = np.exp(-r * T) * np.maximum(S * np.exp((r - 0.5 * s * s) * T + a * z) - K, 0.0)
    w = np.stack([np.ones(n), z / (S * a), (z * z - 1) / s - np.sqrt(T) * z,
                  np.sqrt(T) * z / s - T, ((z * z - 1) / (a * a) - z / a) / (S * S)])
    y = h * w
    return y.mean(1), y.std(1, ddof=1) / np.sqrt(n)


def run_finance(n=10**6, seed=0, out=print, **_):
    """Greeks by likelihood ratio (and pathwise / mixed) against exact values."""
    out("")
    out(f"Finance: likelihood-ratio Greeks under GBM (S0=100, K=100, r=5%, vol=20%, T=1), "
        f"n = {n:,} paths")
    out("")
    cases = [
        ("call", "lr", 1, None, "Black-Scholes"),
        ("call", "pathwise", 1, None, "Black-Scholes"),
        ("digital_call", "lr", 1, None, "Black-Scholes"),
        ("geometric_asian_call", "lr", 12, None, "closed form"),
        ("up_and_out_call", "lr", 2, 130.0, "quadrature"),
    ]
    hdr = (f"{'payoff':<32}{'method':<10}{'greek':<7}{'estimate':>12}{'+/- se':>11}"
           f"{'exact':>12}{'z':>7}")
    out(hdr + f"{'time':>9}")
    out("-" * (len(hdr) + 9))
    rows = []
    for payoff, method, steps, barrier, src in _bar(cases, len(cases), "Greeks"):
        t = time.perf_counter()
        g = fi.greeks(payoff, n=n, steps=steps, barrier=barrier, rng=seed, method=method, **_MKT)
        dt = time.perf_counter() - t
        ref = fi.reference(payoff, steps=steps, barrier=barrier, **_MKT)
        label = payoff + (f" ({steps} dates)" if steps > 1 else "")
        for i, k in enumerate(fi.GREEKS):
            z = (getattr(g, k) - ref[k]) / g.stderr[k]
            out(f"{label if i == 0 else '':<32}{method if i == 0 else '':<10}{k:<7}"
                f"{getattr(g, k):>12.5f}{g.stderr[k]:>11.5f}{ref[k]:>12.5f}{z:>7.2f}"
                + (f"{dt * 1e3:>7.0f}ms" if i == 0 else ""))
            rows.append(dict(payoff=payoff, method=method, greek=k, estimate=getattr(g, k),
                             stderr=g.stderr[k], exact=ref[k], z=z, reference=src))
    rng = np.random.default_rng(seed)
    t_np, _ = _best_time(lambda: _np_call_greeks(n, rng))
    t_mc, _ = _best_time(lambda: fi.greeks("call", n=n, rng=seed, **_MKT))
    out("")
    out(f"call, likelihood ratio, all five with standard errors: mcscore {t_mc * 1e3:.1f} ms, "
        f"NumPy (vectorised, one thread) {t_np * 1e3:.1f} ms: {t_np / t_mc:.1f}x")
    out("exact: Black-Scholes closed forms; geometric Asian: closed form (Greeks by central "
        "differences of it);")
    out("up-and-out (barrier 130, monitored at T/2 and T): exact last step + adaptive "
        "quadrature. Gamma by the")
    out("second-order likelihood ratio ('lr') or the mixed estimator ('pathwise').")
    _LAST["finance"] = rows
    return rows


def _blr_problem(seed=3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40, 3))
    X[:, 1] += 0.6 * X[:, 0]
    sig, tau = 0.7, 1.5
    y = X @ np.array([0.5, -1.0, 2.0]) + sig * rng.normal(size=40)
    Lam = X.T @ X / sig**2 + np.eye(3) / tau**2
    mean = np.linalg.solve(Lam, X.T @ y / sig**2)

    def log_joint(W):
        r = y[None, :] - W @ X.T
        return -0.5 * (r * r).sum(1) / sig**2 - 0.5 * (W * W).sum(1) / tau**2

    return log_joint, mean, Lam


def run_vi(seed=0, out=print, progress=True, **_):
    """Black-box VI on two conjugate models against their exact posteriors."""
    out("")
    out("Variational inference: score-function ELBO gradients (leave-one-out baseline), Adam")
    out("")
    log_joint, mean, Lam = _blr_problem()
    mf_sd = 1 / np.sqrt(np.diag(Lam))
    t = time.perf_counter()
    res = vi.fit(log_joint, mc.Normal(np.zeros(3), np.ones(3)), steps=1500, n=100, lr=0.05,
                 rng=seed, progress=progress)
    dt = time.perf_counter() - t
    out(f"Bayesian linear regression (40 points, 3 weights, known noise), mean-field Normal q, "
        f"1500 steps x 100 draws, {dt:.1f} s")
    out(f"{'':<6}{'q mean':>10}{'exact':>10}{'q sd':>10}{'exact':>10}")
    for j in range(3):
        out(f"w[{j}]  {res.q.loc[j]:>10.4f}{mean[j]:>10.4f}{res.q.scale[j]:>10.4f}"
            f"{mf_sd[j]:>10.4f}")
    out("  (exact mean-field optimum: the posterior mean and sd 1/sqrt(Lambda_ii))")
    a0, b0, N, k = 2.0, 3.0, 30, 11

    def lj_beta(x):
        p = x[:, 0]
        return (a0 + k - 1) * np.log(p) + (b0 + N - k - 1) * np.log1p(-p)

    t = time.perf_counter()
    rb = vi.fit(lj_beta, mc.Beta(np.ones(1), np.ones(1)), steps=1200, n=100, lr=0.05,
                rng=seed + 1, progress=progress)
    dt = time.perf_counter() - t
    c1, c0 = rb.q.params["concentration1"][0], rb.q.params["concentration0"][0]
    out(f"Beta-Bernoulli ({k} successes in {N}, prior Beta({a0:g}, {b0:g})), Beta q, "
        f"{dt:.1f} s:")
    out(f"  q = Beta({c1:.4f}, {c0:.4f});  exact posterior Beta({a0 + k:g}, {b0 + N - k:g})")
    err = dict(blr_mean=float(np.max(np.abs(res.q.loc - mean) / mf_sd)),
               blr_sd=float(np.max(np.abs(res.q.scale / mf_sd - 1))),
               beta=float(max(abs(c1 / (a0 + k) - 1), abs(c0 / (b0 + N - k) - 1))))
    out(f"  largest errors: mean {err['blr_mean']:.2e} sd, sd {err['blr_sd']:.2e} relative; "
        f"Beta concentrations {err['beta']:.2e} relative")
    _LAST["vi"] = dict(blr=res, beta=rb, errors=err)
    return _LAST["vi"]


def run_rl(seed=0, out=print, progress=True, **_):
    """REINFORCE on a bandit and on cart-pole: learning curves."""
    out("")
    out("Reinforcement learning: REINFORCE with the leave-one-out baseline, Adam")
    out("")
    rng = np.random.default_rng(seed)
    means = np.array([0.3, 0.5, 0.45, 0.8, 0.6, 0.2, 0.7, 0.35, 0.55, 0.4])
    logits = np.zeros(len(means))
    opt = Adam({"logits": logits}, lr=0.1)
    for _it in range(150):
        pol = mc.Categorical(logits=logits)
        arms = pol.sample(64, rng)
        r = (rng.random(64) < means[arms]).astype(float)
        logits = opt.step(mc.score_grad_from_samples(pol, arms, r, baseline="loo").grad)["logits"]
    pb = mc.Categorical(logits=logits).probs
    out(f"10-armed Bernoulli bandit, 150 iterations x 64 pulls: P(best arm) = "
        f"{pb[int(np.argmax(means))]:.3f}, expected reward {pb @ means:.3f} (best {means.max()})")
    t = time.perf_counter()
    run = rl.reinforce(rl.CartPole(), rl.SoftmaxPolicy(5, 2), iterations=50, episodes=20,
                       lr=0.1, rng=seed, progress=progress)
    dt = time.perf_counter() - t
    out(f"cart-pole (linear softmax policy), 50 iterations x 20 episodes, {dt:.1f} s; "
        "mean return (max 200):")
    marks = list(range(0, 50, 5)) + [49]
    out("  iteration " + "".join(f"{i + 1:>6d}" for i in marks))
    out("  return    " + "".join(f"{run.returns[i]:>6.0f}" for i in marks))
    _LAST["rl"] = dict(cartpole=run, bandit_p_best=float(pb[int(np.argmax(means))]))
    return _LAST["rl"]


def _save(fig, folder, name):
    """Lay out, write folder/name (PNG, 120 dpi) and close the figure; its path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    p = os.path.join(folder, name)
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return p


def run_figures(seed=0, out=print, folder="mcscore-figures", **_):
    """Figures: convergence with confidence bands, estimator variances,
    learning curves.  Needs matplotlib; returns the written paths."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        out("")
        out("figures: matplotlib is not installed (pip install 'mcscore[demo]'); skipped")
        return []
    os.makedirs(folder, exist_ok=True)
    paths = []
    out("")
    # 1. convergence with the 95% band against n
    ns = np.unique(np.logspace(2, 6, 13).astype(int))
    q = mc.Normal(0.5, 2.0)
    core, lr, pw = [], [], []
    for n in _bar(ns, len(ns), "figures: convergence"):
        r = mc.score_grad(I.power(2), q, int(n), rng=seed)
        core.append((r.grad["loc"], r.stderr["loc"]))
        g = fi.greeks("call", n=int(n), rng=seed, method="pathwise", **_MKT)
        lr.append(g.alternatives["lr"]["delta"])
        pw.append((g.delta, g.stderr["delta"]))
    exact_delta = fi.black_scholes("call", **_MKT)["delta"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    for ax, series, exact, title in (
        (axes[0], [("score_grad", core)], 1.0, "d/dloc E[x^2], x ~ Normal(0.5, 2)"),
        (axes[1], [("likelihood ratio", lr), ("pathwise", pw)], exact_delta,
         "Black-Scholes call delta"),
    ):
        for label, s in series:
            est = np.array([e for e, _ in s])
            se = np.array([v for _, v in s])
            line, = ax.plot(ns, est, marker="o", ms=3, label=f"{label}: estimate")
            ax.fill_between(ns, est - 1.96 * se, est + 1.96 * se, alpha=0.25,
                            color=line.get_color(), label=f"{label}: +/- 1.96 se (95%)")
        ax.axhline(exact, color="k", lw=1, ls="--", label="exact value")
        ax.set_xscale("log")
        ax.set_xlabel("n (draws or paths, log scale)")
        ax.set_ylabel("gradient estimate")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    fig.suptitle("Convergence of the estimate: the band is +/- 1.96 standard errors (95%)")
    paths.append(_save(fig, folder, "convergence.png"))
    # 2. per-draw variance of the estimators
    g = fi.greeks("call", n=200_000, rng=seed, method="pathwise", **_MKT)
    greeks_ = ["delta", "vega", "rho", "gamma"]
    v_lr = [g.alternatives["lr"][k][1] ** 2 * g.n for k in greeks_]
    v_pw = [g.alternatives["pathwise"][k][1] ** 2 * g.n for k in greeks_]
    cases_ = cases()[:4]
    v_base = {b: [] for b in ("none", "loo", "optimal")}
    labels = []
    for label, flabel, dist, f, names, exact, _ in cases_:
        labels.append(f"{label}\n{names[0]}")
        for b, bb in (("none", None), ("loo", "loo"), ("optimal", "optimal")):
            r = mc.score_grad(f, dist, 200_000, rng=seed, baseline=bb)
            v_base[b].append(float(np.ravel(r.variance[names[0]])[0]))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    x = np.arange(len(greeks_))
    axes[0].bar(x - 0.2, v_lr, 0.4, label="likelihood ratio")
    axes[0].bar(x + 0.2, v_pw, 0.4, label="pathwise (mixed for gamma)")
    axes[0].set_xticks(x, greeks_)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("Greek of a Black-Scholes call")
    axes[0].set_ylabel("variance per path (n x se^2, log scale)")
    axes[0].set_title("Call Greeks (lower is better)", fontsize=10)
    axes[0].legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2,
                   frameon=False)
    x = np.arange(len(labels))
    for i, (b, v) in enumerate(v_base.items()):
        axes[1].bar(x + (i - 1) * 0.27, v, 0.27, label=f"baseline {b}")
    axes[1].set_xticks(x, labels, fontsize=7)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("variance per draw (n x se^2, log scale)")
    axes[1].set_title("Score-function gradient by baseline (lower is better)", fontsize=10)
    axes[1].legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3,
                   frameon=False)
    fig.suptitle("Variance of one draw's contribution: the standard error is sqrt(variance / n)")
    paths.append(_save(fig, folder, "variance.png"))
    # 3. learning curves
    rl_res = _LAST.get("rl") or run_rl(seed=seed, out=lambda *a: None, progress=False)
    vi_res = _LAST.get("vi") or run_vi(seed=seed, out=lambda *a: None, progress=False)
    run = rl_res["cartpole"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    it = np.arange(1, len(run.returns) + 1)
    axes[0].plot(it, run.returns, label="mean return of the iteration's episodes")
    axes[0].fill_between(it, run.returns - 2 * run.returns_stderr,
                         run.returns + 2 * run.returns_stderr, alpha=0.3,
                         label="+/- 2 standard errors")
    axes[0].axhline(200, color="k", ls=":", lw=1, label="maximum (200 steps)")
    axes[0].set_ylim(0, 215)
    axes[0].set_xlabel("iteration (one policy-gradient step)")
    axes[0].set_ylabel("episode return (steps balanced)")
    axes[0].set_title("REINFORCE on cart-pole", fontsize=10)
    axes[0].legend(fontsize=8, loc="lower right")
    elbo = vi_res["blr"].elbo
    log_joint, mean, Lam = _blr_problem()
    # exact ELBO at the mean-field optimum (mean, sd_i = Lambda_ii^-1/2)
    best = (log_joint(mean[None])[0] - 0.5 * len(mean)
            + np.sum(-0.5 * np.log(np.diag(Lam)) + 0.5 * np.log(2 * np.pi * np.e)))
    # The whole run on one axis: the gap to the exact optimum on a symmetric
    # log scale (linear within 0.1 nats, where Monte Carlo noise lives).
    w = 25
    gap = best - np.asarray(elbo)
    smooth = np.convolve(gap, np.ones(w) / w, mode="valid")
    steps_ = np.arange(1, len(elbo) + 1)
    axes[1].plot(steps_, gap, alpha=0.3, lw=0.8, label="one step's ELBO estimate")
    axes[1].plot(np.arange(w, len(elbo) + 1), smooth, label=f"moving average over {w} steps")
    axes[1].axhline(0.0, color="k", ls="--", lw=1, label="exact mean-field optimum")
    axes[1].set_yscale("symlog", linthresh=0.1)
    axes[1].set_xscale("log")
    axes[1].set_xlim(1, len(elbo))
    axes[1].set_ylim(min(1.5 * float(gap.min()), -0.1), 2.0 * max(float(gap.max()), 0.1))
    axes[1].set_xlabel("Adam step (log scale)")
    axes[1].set_ylabel("optimal ELBO minus ELBO (nats, symlog)")
    axes[1].set_title("Black-box VI: Bayesian linear regression (whole run)", fontsize=10)
    axes[1].legend(fontsize=8, loc="upper right")
    paths.append(_save(fig, folder, "learning_curves.png"))
    out(f"figures written to {os.path.abspath(folder)}/: "
        + ", ".join(os.path.basename(p) for p in paths))
    return paths
