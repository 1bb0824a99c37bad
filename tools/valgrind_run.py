"""A small run of every core code path, for tools/valgrind.sh (memcheck).

Every family: sample, log_prob, score, score_grad with a Python f, a fused
integrand and a C callback (ctypes), on 2 threads; score_grad_from_samples;
a few error paths (which free their buffers early).
"""
import ctypes

import numpy as np
from scipy import LowLevelCallable

import mcscore as mc
from mcscore import integrands as I

CB = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.POINTER(ctypes.c_double), ctypes.c_ssize_t)


@CB
def _first(x, d):
    return x[0]


def families():
    yield mc.Normal([0.0, 1.0], 2.0)
    yield mc.LogNormal(0.1, [0.5, 1.0])
    yield mc.Exponential([1.0, 3.0])
    yield mc.Gamma([0.5, 4.0], 2.0)
    yield mc.Beta([0.5, 2.0], 3.0)
    yield mc.Poisson([0.5, 40.0])
    yield mc.Bernoulli(logits=[-1.0, 2.0])
    yield mc.Binomial([3, 50], probs=0.3)
    yield mc.Geometric(probs=[0.2, 0.7])
    yield mc.NegativeBinomial(2.5, logits=[0.0, -1.0])
    yield mc.Categorical(logits=[[0.0, 1.0, -1.0], [2.0, 0.0, 0.0]])
    yield mc.Multinomial(7, probs=[0.2, 0.3, 0.5])
    yield mc.Dirichlet([[0.5, 1.0, 2.0]])


def main():
    cb = LowLevelCallable(_first, signature="double (double *, intptr_t)")
    n = 3000
    for d in families():
        x = d.sample(50, rng=1)
        d.log_prob(x)
        d.score(x)
        for f in (lambda x: np.asarray(x, float).reshape(len(x), -1)[:, 0], I.linear(), cb):
            for baseline in (None, "loo", "optimal"):
                mc.score_grad(f, d, n, rng=2, n_threads=2, baseline=baseline, block_size=256)
        mc.score_grad_from_samples(d, x, np.arange(50.0), baseline="optimal")
    for bad in (lambda x: np.full(len(x), np.nan), I.log1p()):
        try:
            mc.score_grad(bad, mc.Normal(0.0, 3.0), n, rng=0, n_threads=2)
        except ValueError:
            pass
    try:
        mc.score_grad(I.linear(), mc.Normal(np.zeros(4), 1.0), 100, block_size=2**24)
    except MemoryError:
        pass
    print("valgrind run done")


if __name__ == "__main__":
    main()
