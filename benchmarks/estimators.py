"""Every estimator on the README's three variance problems, in one run:
per-sample variance and variance per f evaluation.

    PYTHONPATH=src python benchmarks/estimators.py [n]

The problems are those of benchmarks/variance_table.py (the Bernoulli toy
f(b) = sum (b - 0.45)^2 with D = 1 and 16, the Categorical K = 12 problem and the
Normal cubic).  Every estimator that applies runs through
mcscore.compare_estimators with the same seed; the variance is per sample,
summed over the gradient's coordinates, and "per f evaluation" multiplies
it by the f evaluations a sample costs: the variance of an estimate that
spends one f evaluation (stderr^2 x f evaluations spent), the figure to
compare at equal cost in f.  It is a
variance measurement, not a timing (one thread).  |z| is the largest
|estimate - exact| / stderr against the exact gradient (0 for the exact
enumeration row).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import mcscore as mc  # noqa: E402
from variance_table import bernoulli_toy, categorical_toy, normal_toy  # noqa: E402


def main(n=20_000):
    problems = [bernoulli_toy(0.45, 1), bernoulli_toy(0.45, 16), categorical_toy(), normal_toy()]
    for title, d, f, g, exact in problems:
        cmp = mc.compare_estimators(f, d, n, grad_f=g, rng=2024, exact=exact,
                                    temperature=0.5, n_threads=1)
        base = cmp["score"]["variance"]
        print(f"\n**{title}** (n = {n})\n")
        print("| estimator | variance / sample | f evals / sample | variance per f evaluation "
              "| ratio to REINFORCE per f evaluation | max abs z |")
        print("|---|---|---|---|---|---|")
        for r in cmp.rows:
            name = r["name"] + ("" if r["unbiased"] else " (biased)")
            print(f"| {name} | {r['variance']:.3g} | {r['f_evals']:g} | "
                  f"{r['eval_variance']:.3g} | {r['eval_variance'] / base:.2g} | "
                  f"{r['z']:.1f} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
