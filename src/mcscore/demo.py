"""``python -m mcscore demo``: the estimator at work on built-in defaults.

For several families: the estimate, its standard error and the exact
gradient side by side, and the time of mcscore against a plain NumPy
implementation of the same estimate, run in the same process.
"""
from __future__ import annotations

import time

import numpy as np
from scipy import integrate, special, stats

import mcscore as mc
from mcscore._kernels import HAVE_OPENMP
from mcscore import integrands as I


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


def run_core(n=10**6, seed=0, out=print):
    """The core table. Returns a list of row dicts."""
    rows = []
    out(f"mcscore {mc.__version__} | score-function gradients, n = {n:,} draws, "
        f"{mc.effective_n_threads()} thread(s), OpenMP {'on' if HAVE_OPENMP else 'off'}")
    out("")
    hdr = (f"{'distribution':<22}{'f':<11}{'parameter':<16}{'estimate':>11}{'+/- se':>10}"
           f"{'exact':>11}{'z':>7}{'mcscore':>10}{'numpy':>10}{'speed-up':>9}")
    out(hdr)
    out("-" * len(hdr))
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
            out(f"{label if first else '':<22}{flabel if first else '':<11}{pname:<16}"
                f"{est[j]:>11.5f}{se[j]:>10.5f}{exact[j]:>11.5f}{z[j]:>7.2f}"
                + (f"{t_mc * 1e3:>8.1f}ms{t_np * 1e3:>8.1f}ms{t_np / t_mc:>8.1f}x" if first else ""))
            first = False
        rows.append(dict(case=label, f=flabel, estimate=est, stderr=se, exact=exact,
                         max_abs_z=float(np.abs(z).max()), t_mcscore=t_mc, t_numpy=t_np))
    out("")
    out("z = (estimate - exact) / se; * = the coordinate with the largest |z| of K. Times: best "
        "of 3, same process;")
    out("numpy = the same estimator written with numpy.random and array arithmetic "
        "(one thread).")
    return rows
