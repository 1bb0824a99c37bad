"""The variance table of the README's "Variance reduction" section.

    PYTHONPATH=src python benchmarks/variance_table.py [n]

Runs every applicable estimator (mcscore.compare_estimators) on the toy
problems and prints, per problem, a markdown table of the per-sample
variance (summed over the gradient's coordinates), its ratio to plain
REINFORCE, f evaluations per sample, and the largest |z| against the exact
gradient (exact sums / enumeration / Gaussian moments).
"""
import sys

import numpy as np
from scipy import special

import mcscore as mc


def bernoulli_toy(t, D):
    th = np.array([0.3]) if D == 1 else np.linspace(-1.5, 1.5, D)
    p = special.expit(th)
    return (f"Bernoulli toy f(b) = sum (b - {t})^2, D = {D}", mc.Bernoulli(logits=th),
            lambda b: ((b - t) ** 2).sum(-1), lambda b: 2 * (b - t),
            {"logits": p * (1 - p) * (1 - 2 * t)})


def categorical_toy(K=12):
    lg = np.random.default_rng(7).normal(size=K)
    c = np.linspace(-1.0, 1.0, K)

    def f(z):
        s = z @ c
        return np.sin(3 * s) + s**2

    def g(z):
        s = z @ c
        return (3 * np.cos(3 * s) + 2 * s)[:, None] * c

    pi = special.softmax(lg)
    fv = f(np.eye(K))
    return (f"Categorical K = {K}, f(z) = sin(3 c.z) + (c.z)^2", mc.Categorical(logits=lg), f, g,
            {"logits": pi * (fv - pi @ fv)})


def normal_toy():
    mu, sigma = 0.7, 1.3

    def f(x):
        return 1.0 + 2.0 * x - x**2 + 0.5 * x**3

    def g(x):
        return 2.0 - 2.0 * x + 1.5 * x**2

    # E f = 1 + 2 mu - (mu^2 + s^2) + (mu^3 + 3 mu s^2) / 2
    return ("Normal(0.7, 1.3), f = 1 + 2x - x^2 + x^3/2", mc.Normal(mu, sigma), f, g,
            {"loc": 2 - 2 * mu + 1.5 * (mu**2 + sigma**2), "scale": -2 * sigma + 3 * mu * sigma})


def main(n=100_000):
    problems = [bernoulli_toy(0.45, 1), bernoulli_toy(0.499, 1), bernoulli_toy(0.45, 16),
                bernoulli_toy(0.499, 16), categorical_toy(), normal_toy()]
    for title, d, f, g, exact in problems:
        cmp = mc.compare_estimators(f, d, n, grad_f=g, rng=2024, exact=exact,
                                    temperature=0.5, n_threads=1)
        base = cmp["score"]["variance"]
        print(f"\n**{title}** (n = {n})\n")
        print("| estimator | variance / sample | ratio to REINFORCE | f evals / sample "
              "| max abs z |")
        print("|---|---|---|---|---|")
        for r in cmp.rows:
            name = r["name"] + ("" if r["unbiased"] else " (biased)")
            print(f"| {name} | {r['variance']:.3g} | {r['variance'] / base:.2g} | "
                  f"{r['f_evals']:g} | {r['z']:.1f} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
