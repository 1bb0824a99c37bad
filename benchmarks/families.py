"""Every family fused at n = 1e6 (issue 17, target 2).

    python benchmarks/families.py [--quick] [--n N] [--repeats R] [--out DIR]

For each family in ``mcscore.FAMILIES`` (iterated, so a family added later
shows up as a row; one without an entry in SPECS below is reported as "no
benchmark entry yet"), mcscore's ``score_grad`` with a simple fused
integrand against the idiomatic NumPy estimator: NumPy's own sampler
(Bernoulli by comparing uniforms, Categorical by ``rng.choice``), the analytic
score, multiply, mean and standard error, one thread.  Both gradients are
checked against the exact one from the closed-form E f (|z| with each
implementation's own standard error).  Uniform (a support that moves with
the parameters) is scalar here, where score_grad takes a fused f and adds
the boundary term f(bound) / (high - low) as a constant; the
multivariate normals have their own benchmark (mvn.py).  Writes DIR/families.md (default
benchmarks/results/).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from scipy import special  # noqa: E402

import sizes_common as C  # noqa: E402
from sizes_common import mc  # noqa: E402
from mcscore import integrands as I  # noqa: E402

SEED = 20240601
TARGET = 0.35


def _softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


# Each entry: (distribution, fused integrand, f in words, NumPy sampler in
# words, numpy(n, rng) -> {param: per-draw summands (n, ...)}, exact gradient
# {param: value}).

def _normal():
    m, s = 0.5, 2.0

    def est(n, rng):
        x = rng.normal(m, s, n)
        e = (x - m) / s
        f = x * x
        return {"loc": f * (e / s), "scale": f * ((e * e - 1.0) / s)}
    return (mc.Normal(m, s), I.power(2), "x^2", "rng.normal", est,
            {"loc": 2 * m, "scale": 2 * s})


def _lognormal():
    m, s = 0.1, 0.5
    E = math.exp(m + 0.5 * s * s)

    def est(n, rng):
        x = rng.lognormal(m, s, n)
        z = (np.log(x) - m) / s
        return {"loc": x * (z / s), "scale": x * ((z * z - 1.0) / s)}
    return (mc.LogNormal(m, s), I.power(1), "x", "rng.lognormal", est,
            {"loc": E, "scale": s * E})


def _exponential():
    lam = 1.5

    def est(n, rng):
        x = rng.exponential(1.0 / lam, n)
        return {"rate": x * x * (1.0 / lam - x)}
    return (mc.Exponential(lam), I.power(2), "x^2", "rng.exponential", est,
            {"rate": -4.0 / lam**3})


def _gamma():
    a, b = 2.5, 1.5
    c = math.log(b) - special.digamma(a)

    def est(n, rng):
        x = rng.gamma(a, 1.0 / b, n)
        f = x * x
        return {"concentration": f * (c + np.log(x)), "rate": f * (a / b - x)}
    return (mc.Gamma(a, b), I.power(2), "x^2", "rng.gamma", est,
            {"concentration": (2 * a + 1) / b**2, "rate": -2 * a * (a + 1) / b**3})


def _beta():
    a, b = 2.0, 3.0
    pab = special.digamma(a + b)
    ca, cb = pab - special.digamma(a), pab - special.digamma(b)

    def est(n, rng):
        x = rng.beta(a, b, n)
        return {"concentration1": x * (np.log(x) + ca), "concentration0": x * (np.log1p(-x) + cb)}
    return (mc.Beta(a, b), I.power(1), "x", "rng.beta", est,
            {"concentration1": b / (a + b) ** 2, "concentration0": -a / (a + b) ** 2})


def _poisson():
    lam = 3.5

    def est(n, rng):
        x = rng.poisson(lam, n).astype(np.float64)
        return {"rate": x * x * (x / lam - 1.0)}
    return (mc.Poisson(lam), I.power(2), "x^2", "rng.poisson", est, {"rate": 1.0 + 2.0 * lam})


def _bernoulli():
    lg = 0.3
    p = 1.0 / (1.0 + math.exp(-lg))

    def est(n, rng):
        x = (rng.random(n) < p).astype(np.float64)
        return {"logits": x * (x - p)}
    return (mc.Bernoulli(logits=lg), I.power(1), "x", "rng.random(n) < p", est,
            {"logits": p * (1 - p)})


def _binomial():
    N, p = 10, 0.3
    q = 1 - p

    def est(n, rng):
        x = rng.binomial(N, p, n).astype(np.float64)
        return {"probs": x * x * (x / p - (N - x) / q)}
    return (mc.Binomial(N, probs=p), I.power(2), "x^2", "rng.binomial", est,
            {"probs": N * (1 - 2 * p) + 2 * N * N * p})


def _geometric():
    p = 0.3
    q = 1 - p

    def est(n, rng):
        x = (rng.geometric(p, n) - 1).astype(np.float64)  # failures before the success
        return {"probs": x * (1.0 / p - x / q)}
    return (mc.Geometric(probs=p), I.power(1), "x", "rng.geometric(p) - 1", est,
            {"probs": -1.0 / p**2})


def _negative_binomial():
    r, p = 4.0, 0.4
    q = 1 - p

    def est(n, rng):
        # mcscore counts successes (prob p) before r failures: NumPy's count of
        # failures before r successes with success probability q
        x = rng.negative_binomial(r, q, n).astype(np.float64)
        return {"probs": x * (x / p - r / q)}
    return (mc.NegativeBinomial(r, probs=p), I.power(1), "x", "rng.negative_binomial(r, 1-p)",
            est, {"probs": r / q**2})


def _categorical():
    K = 10
    logits = np.linspace(-1.0, 1.0, K)
    p = _softmax(logits)
    fk = np.arange(K, dtype=np.float64) ** 2

    def est(n, rng):
        x = rng.choice(K, size=n, p=p)
        f = fk[x]
        # summand f (onehot(x) - p) in O(n + K) (never n x K), as peers.py does
        S = np.bincount(x, weights=f, minlength=K)
        Q = np.bincount(x, weights=f * f, minlength=K)
        F, Qt = f.sum(), (f * f).sum()
        mean = (S - p * F) / n
        var = np.maximum(Q * (1 - 2 * p) + p * p * Qt - n * mean * mean, 0.0) / (n - 1)
        return {"logits": (mean, np.sqrt(var / n))}
    return (mc.Categorical(logits=logits), I.power(2), "x^2", "rng.choice(K, p=p)", est,
            {"logits": p * (fk - p @ fk)})


def _multinomial():
    N, K = 10, 5
    logits = np.linspace(-1.0, 1.0, K)
    p = _softmax(logits)
    w = np.arange(K, dtype=np.float64)

    def est(n, rng):
        x = rng.multinomial(N, p, size=n).astype(np.float64)
        return {"logits": (x @ w)[:, None] * (x - N * p)}
    return (mc.Multinomial(N, logits=logits), I.linear(w), "sum_k k x_k",
            "rng.multinomial", est, {"logits": N * p * (w - w @ p)})


def _dirichlet():
    a = np.array([1.0, 2.0, 3.0])
    A = a.sum()
    c = special.digamma(A) - special.digamma(a)
    ex = -a[0] / A**2 * np.ones(3)
    ex[0] += 1.0 / A

    def est(n, rng):
        x = rng.dirichlet(a, n)
        return {"concentration": x[:, :1] * (np.log(x) + c)}
    return (mc.Dirichlet(a), I.linear([1.0, 0.0, 0.0]), "x_0", "rng.dirichlet", est,
            {"concentration": ex})


def _half_normal():
    s = 1.5

    def est(n, rng):
        x = np.abs(rng.normal(0.0, s, n))
        return {"scale": x * x * ((x * x / (s * s) - 1.0) / s)}
    return (mc.HalfNormal(s), I.power(2), "x^2", "abs(rng.normal)", est, {"scale": 2 * s})


def _chi2():
    k = 3.5
    c = -0.5 * (math.log(2.0) + special.digamma(0.5 * k))

    def est(n, rng):
        x = rng.chisquare(k, n)
        return {"df": x * x * (0.5 * np.log(x) + c)}
    return (mc.Chi2(k), I.power(2), "x^2", "rng.chisquare", est, {"df": 2 * k + 2})


def _inverse_gamma():
    a, b = 4.5, 1.5
    c = math.log(b) - special.digamma(a)

    def est(n, rng):
        x = b / rng.standard_gamma(a, n)
        return {"concentration": x * (c - np.log(x)), "rate": x * (a / b - 1.0 / x)}
    return (mc.InverseGamma(a, b), I.power(1), "x", "rate / rng.standard_gamma", est,
            {"concentration": -b / (a - 1) ** 2, "rate": 1.0 / (a - 1)})


def _gumbel():
    m, s = 0.5, 1.5

    def est(n, rng):
        x = rng.gumbel(m, s, n)
        z = (x - m) / s
        u = -np.expm1(-z)
        return {"loc": x * (u / s), "scale": x * ((z * u - 1.0) / s)}
    return (mc.Gumbel(m, s), I.power(1), "x", "rng.gumbel", est,
            {"loc": 1.0, "scale": np.euler_gamma})


def _weibull():
    lam, k = 1.5, 2.5
    g1 = special.gamma(1.0 + 1.0 / k)

    def est(n, rng):
        x = lam * rng.weibull(k, n)
        L = np.log(x / lam)
        w1 = np.expm1(k * L)
        return {"scale": x * (k / lam * w1), "concentration": x * (1.0 / k - L * w1)}
    return (mc.Weibull(lam, k), I.power(1), "x", "scale * rng.weibull", est,
            {"scale": g1, "concentration": -lam * g1 * special.digamma(1.0 + 1.0 / k) / k**2})


def _laplace():
    m, s = 0.5, 1.5

    def est(n, rng):
        x = rng.laplace(m, s, n)
        d = x - m
        f = x * x
        return {"loc": f * (np.sign(d) / s), "scale": f * ((np.abs(d) / s - 1.0) / s)}
    return (mc.Laplace(m, s), I.power(2), "x^2", "rng.laplace", est,
            {"loc": 2 * m, "scale": 4 * s})


def _uniform():
    lo, hi = 0.5, 2.0
    w = hi - lo

    def est(n, rng):
        # the support moves with both parameters: the score (-+1/w) plus the
        # boundary term f(bound) / w, per draw (f - f(lo)) / w and (f(hi) - f) / w
        x = rng.uniform(lo, hi, n)
        f = x * x
        return {"low": (f - lo * lo) / w, "high": (hi * hi - f) / w}
    # fused as the other rows: a scalar Uniform's draw pinned to a bound is
    # the bound, so score_grad adds f(low) and f(high) as constants
    return (mc.Uniform(lo, hi), I.power(2), "x^2", "rng.uniform", est,
            {"low": (hi + 2 * lo) / 3, "high": (2 * hi + lo) / 3})


def _student_t():
    nu, m, s = 6.0, 0.5, 1.5
    c = 0.5 * (special.digamma(0.5 * (nu + 1)) - special.digamma(0.5 * nu)) + 0.5

    def est(n, rng):
        x = m + s * rng.standard_t(nu, n)
        d = x - m
        u = d * d / (nu * s * s)
        r = 1.0 / (1.0 + u)
        f = x * x
        return {"df": f * (c - 0.5 * np.log1p(u) - (nu + 1) / (2 * nu) * r),
                "loc": f * ((nu + 1) / (nu * s * s) * d * r),
                "scale": f * (nu / s - (nu + 1) / s * r)}
    return (mc.StudentT(nu, m, s), I.power(2), "x^2", "loc + scale * rng.standard_t", est,
            {"df": -2 * s * s / (nu - 2) ** 2, "loc": 2 * m, "scale": 2 * s * nu / (nu - 2)})


def _cauchy():
    m, s = 0.5, 1.5
    t = 1.0
    z = (t - m) / s
    # P(x <= t) = 1/2 + atan(z) / pi: d/dloc = -1 / (pi s (1 + z^2)), d/dscale = z d/dloc

    def est(n, rng):
        x = m + s * rng.standard_cauchy(n)
        d = x - m
        r = 1.0 / (1.0 + (d / s) ** 2)
        f = (x <= t).astype(np.float64)
        return {"loc": f * (2.0 / (s * s) * d * r), "scale": f * ((1.0 - 2.0 * r) / s)}
    g = -1.0 / (math.pi * s * (1.0 + z * z))
    return (mc.Cauchy(m, s), I.indicator(high=t), "[x <= 1]",
            "loc + scale * rng.standard_cauchy", est, {"loc": g, "scale": z * g})


def _half_cauchy():
    s = 1.5

    def est(n, rng):
        x = np.abs(s * rng.standard_cauchy(n))
        f = (x <= 1.0).astype(np.float64)
        return {"scale": f * ((1.0 - 2.0 / (1.0 + (x / s) ** 2)) / s)}
    return (mc.HalfCauchy(s), I.indicator(high=1.0), "[x <= 1]", "abs(rng.standard_cauchy)",
            est, {"scale": -2.0 / (math.pi * (s * s + 1.0))})


def _von_mises():
    m, k = 0.5, 2.0
    A = special.i1e(k) / special.i0e(k)

    def est(n, rng):
        x = rng.vonmises(m, k, n)
        f = np.cos(x)
        return {"loc": f * (k * np.sin(x - m)), "concentration": f * (np.cos(x - m) - A)}
    return (mc.VonMises(m, k), I.cos(), "cos x", "rng.vonmises", est,
            {"loc": -A * math.sin(m), "concentration": (1.0 - A / k - A * A) * math.cos(m)})


def _one_hot_categorical():
    K = 10
    logits = np.linspace(-1.0, 1.0, K)
    p = _softmax(logits)
    w = np.arange(K, dtype=np.float64) ** 2
    cat = _categorical()[4]  # the same estimator: f = w_k at category k
    return (mc.OneHotCategorical(logits=logits), I.linear(w), "sum_k k^2 x_k",
            "rng.choice(K, p=p)", cat, {"logits": p * (w - p @ w)})


SPECS = {
    "Normal": _normal, "LogNormal": _lognormal, "Exponential": _exponential, "Gamma": _gamma,
    "Beta": _beta, "Poisson": _poisson, "Bernoulli": _bernoulli, "Binomial": _binomial,
    "Geometric": _geometric, "NegativeBinomial": _negative_binomial,
    "Categorical": _categorical, "Multinomial": _multinomial, "Dirichlet": _dirichlet,
    "HalfNormal": _half_normal, "Chi2": _chi2, "InverseGamma": _inverse_gamma,
    "Gumbel": _gumbel, "Weibull": _weibull, "Laplace": _laplace, "Uniform": _uniform,
    "StudentT": _student_t, "Cauchy": _cauchy, "HalfCauchy": _half_cauchy,
    "VonMises": _von_mises, "OneHotCategorical": _one_hot_categorical,
}

# families with a benchmark of their own (their rows here would only repeat it)
OWN_BENCHMARK = {"MultivariateNormal": "benchmarks/mvn.py",
                 "LowRankMultivariateNormal": "benchmarks/mvn.py"}


def _numpy_run(est, n):
    def run():
        rng = np.random.default_rng(SEED)
        out = {}
        for k, g in est(n, rng).items():
            if isinstance(g, tuple):  # (mean, stderr) already reduced
                out[k] = g
            else:
                out[k] = (g.mean(axis=0), g.std(axis=0, ddof=1) / math.sqrt(n))
        return out
    return run


def _mc_run(dist, f, n):
    def run():
        r = mc.score_grad(f, dist, n, rng=SEED)
        return {k: (np.asarray(r.grad[k]), np.asarray(r.stderr[k])) for k in r.grad}
    return run


def _z(res, exact):
    z = 0.0
    for k, ex in exact.items():
        g, se = res[k]
        z = max(z, float(np.max(np.abs(np.asarray(g) - ex) / np.asarray(se))))
    return z


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="5 repeats (about 15 s)")
    ap.add_argument("--n", type=float, default=1e6)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    n = int(args.n)
    repeats = args.repeats or (5 if args.quick else 9)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    L = [f"| family | f | NumPy sampler | mcscore fused | NumPy | ratio | <= {TARGET} | "
         "abs z mcscore | abs z NumPy |",
         "|---|---|---|---:|---:|---:|---|---:|---:|"]
    bad = []
    for fam in mc.FAMILIES:
        name = fam.__name__
        if name in OWN_BENCHMARK:
            L.append(f"| {name} | - | - | - | - | - | see {OWN_BENCHMARK[name]} | - | - |")
            continue
        if name not in SPECS:
            C.log(f"  {name}: no benchmark entry yet (add one to SPECS in families.py)")
            L.append(f"| {name} | - | - | - | - | - | no benchmark entry yet | - | - |")
            continue
        dist, f, f_words, sampler, est, exact = SPECS[name]()
        impls = {"mcscore": _mc_run(dist, f, n), "numpy": _numpy_run(est, n)}
        first, t, _ = C.bench(impls, repeats)
        z_mc, z_np = _z(first["mcscore"], exact), _z(first["numpy"], exact)
        ratio = t["mcscore"] / t["numpy"]
        if not (z_mc <= C.Z_MAX and z_np <= C.Z_MAX):
            bad.append(name)
        C.log(f"  {name:17s} mcscore {C.fmt_t(t['mcscore']):>9s}  NumPy {C.fmt_t(t['numpy']):>9s}"
              f"  ratio {ratio:.3f}  |z| {z_mc:.2f} / {z_np:.2f}")
        L.append(f"| {name} | {f_words} | `{sampler}` | {C.fmt_t(t['mcscore'])} | "
                 f"{C.fmt_t(t['numpy'])} | {ratio:.3f} | {'yes' if ratio <= TARGET else '**no**'} "
                 f"| {z_mc:.2f} | {z_np:.2f} |")
    head = (C.header(repeats, load0) + f"  n = {n:,}; parameters in families.py (scalar "
            "families: one coordinate; Categorical K = 10, Multinomial K = 5 with 10 trials, "
            "Dirichlet K = 3).  Ratio = mcscore time / NumPy time.")
    md = head + "\n\n" + "\n".join(L) + f"\n\n({time.perf_counter() - t0:.0f} s in all.)"
    C.write("families.md", md, args.out)
    for name in bad:
        C.log(f"ACCURACY FAILURE: {name}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
