"""Estimators for a Categorical from several distinct categories per
sample: the unordered set estimator (Kool, van Hoof & Welling 2020,
"Estimating gradients for discrete random variables by sampling without
replacement"), :func:`unordered_set_grad`, and the stochastic
sum-and-sample estimator (Liu et al. 2019), :func:`sum_and_sample_grad`.

Unordered set: S = k categories drawn without replacement (Gumbel-top-k),
p(S) the probability of the unordered set (the sum over its k! orders of
prod_i p_{s_i} / (1 - sum_{j<i} p_{s_j})), R(S, s) = p^{D \\ s}(S \\ s) / p(S)
with p^{D \\ s} the set probability when s is removed from the domain, and

    g = sum_{s in S} p(s) R(S, s) d log p(s) / d theta (f(s) - B(S, s)),
    B(S, s) = p(s) f(s) + sum_{s' in S, s' != s} p(s') R^{D \\ s}(S, s') f(s'),
    R^{D \\ s}(S, s') = p^{D \\ {s, s'}}(S \\ {s, s'}) / p^{D \\ s}(S \\ s)

(the built-in baseline: ``baseline=False`` drops B).  Unbiased (their
Theorems 1-4).

Sum-and-sample: C = the k - 1 most probable categories (summed exactly) and
one draw x from the others:

    g = sum_{c in C} p(c) d log p(c) / d theta f(c) + (1 - p(C)) d log p(x) / d theta f(x).

Both cost k f evaluations per sample and run on the engine (threads, Dask,
seeds and standard errors as every estimator).  For a single Categorical
variable (batch shape ()): the domain is its K categories.
"""
from __future__ import annotations

from typing import Any

import itertools

import numpy as np

from . import _engine as E
from . import _validation as V
from ._features import FeatureJob, run_features
from .distributions import Categorical
from .result import GradientEstimate

__all__ = ["unordered_set_grad", "sum_and_sample_grad"]


def _set_prob(p: Any, removed: Any) -> Any:
    """Probability of drawing the unordered set of categories with
    probabilities p[..., i] (i < j, all orders summed) without replacement
    from the domain with mass `removed` taken out; p (m, j), removed (m,)."""
    j = p.shape[1]
    if j == 0:
        return np.ones(len(p))
    total = np.zeros(len(p))
    for order in itertools.permutations(range(j)):
        prob = np.ones(len(p))
        used = removed.copy()
        for i in order:
            prob = prob * p[:, i] / (1.0 - used)
            used = used + p[:, i]
        total += prob
    return total


def _setup(dist: Any, k: Any, what: Any) -> Any:
    E.check_distribution(dist)
    if type(dist) is not Categorical or dist.batch_shape != ():
        raise ValueError(f"{what} supports one Categorical variable (batch shape ()); got "
                         f"{dist!r}")
    E.check_differentiable(dist)
    dist._kernel_dist()
    K = dist.n_categories
    k = V.integer("k", k, minimum=1, maximum=min(K, 7))
    pi = dist.probs.astype(float)
    conv = 1.0 / dist._params["probs"] if dist._which == "probs" else np.ones(K)
    return K, k, pi, conv


class _SetJob(FeatureJob):
    L = 1

    def __init__(self, f: Any, dist: Any, k: Any, pi: Any, conv: Any, baseline: Any,
                 method: Any) -> None:
        self.f, self.dist, self.k, self.pi, self.conv = f, dist, k, pi, conv
        self.baseline, self.method = baseline, method
        self.P = self.width = len(pi)
        self.top = np.argsort(-pi, kind="stable")[:k - 1]  # sum-and-sample's C

    def sample(self, gen: Any, m: Any) -> Any:
        K, k = len(self.pi), self.k
        if self.method == "unordered":
            g = np.log(self.pi) - np.log(-np.log(gen.random((m, K))))
            return {"s": np.argsort(-g, axis=1, kind="stable")[:, :k]}
        rest = self.pi.copy()
        rest[self.top] = 0.0
        cum = np.cumsum(rest)
        u = gen.random(m) * cum[-1]
        x = np.minimum((u[:, None] >= cum).sum(1), K - 1)
        return {"s": np.concatenate([np.broadcast_to(self.top, (m, k - 1)), x[:, None]], 1)}

    def features(self, mat: Any, rd: Any, chunk: Any, mag: Any) -> Any:
        s = mat["s"]
        m, k = s.shape
        F = np.stack([mag.see(E.call_values(self.f, s[:, i].copy(), rd, chunk))
                      for i in range(k)], 1)
        p = self.pi[s]
        if self.method == "unordered":
            w, v = self._weights(p, F)
        else:
            w = p.copy()
            w[:, -1] = 1.0 - self.pi[self.top].sum()
            v = (w * F).sum(1)  # sum_C p(c) f(c) + (1 - p(C)) f(x): unbiased for E[f]
            w = w * F
        # d log p(s) / d logits = onehot(s) - pi
        hot = (s[:, :, None] == np.arange(self.P)).astype(float)
        g = np.einsum("mi,mik->mk", w, hot) - w.sum(1, keepdims=True) * self.pi
        return v, (g * self.conv)[:, :, None]

    def _weights(self, p: Any, F: Any) -> Any:
        """p(s) R(S, s) (f(s) - B(S, s)) per element s of each set, and the
        estimate of E[f], sum_s p(s) R(S, s) f(s)."""
        m, k = p.shape
        zero = np.zeros(m)
        pS = _set_prob(p, zero)
        w = np.empty((m, k))
        v = np.zeros(m)
        for i in range(k):
            others = np.delete(p, i, 1)
            pS_i = _set_prob(others, p[:, i])
            R = pS_i / pS
            term = F[:, i]
            v += p[:, i] * R * term
            if self.baseline and k > 1:
                # an unbiased estimate of E[f] given s in S: p(s) f(s) plus
                # the unordered set estimate on D minus s from S minus s
                B = p[:, i] * F[:, i]
                for jj in range(k - 1):
                    j = jj if jj < i else jj + 1
                    both = np.delete(p, [i, j], 1)
                    R2 = _set_prob(both, p[:, i] + p[:, j]) / pS_i
                    B += p[:, j] * R2 * F[:, j]
                term = term - B
            w[:, i] = p[:, i] * R * term
        return w, v


def _run(f: Any, dist: Any, n: Any, k: Any, baseline: Any, method: Any, what: Any, rng: Any,
         n_threads: Any, chunk_size: Any, n_streams: Any,
         block_size: Any, client: Any) -> Any:
    f = E.check_callable("f", f)
    K, k, pi, conv = _setup(dist, k, what)
    if not isinstance(baseline, (bool, np.bool_)):
        raise TypeError(f"baseline must be True or False, got {baseline!r}")
    job = _SetJob(f, dist, k, pi, conv, bool(baseline), method)
    n = V.integer("n", n, minimum=2, maximum=2**62)
    est, plan, mag = run_features(job, dist, n, rng=rng, n_streams=n_streams, block_size=block_size,
                             n_threads=n_threads, chunk_size=chunk_size, client=client,
                             terms=f"the {method} terms")
    grand, se, var, value, vse, vvar, nn, _ = est
    info = {**plan.info(), "f": "python", "k": k, "f_evals_per_sample": k}
    name = f"{'unordered-set' if method == 'unordered' else 'sum-and-sample'}(k={k})"
    return E.gradient_estimate(dist, grand, se, var, value, vse, vvar, nn, name, info,
                               batch=est.batch)


def unordered_set_grad(f: Any, dist: Any, n: Any, *, k: Any = 2, baseline: Any = True,
                       rng: Any = None, n_threads: Any = None,
                       chunk_size: Any = None, n_streams: Any = E.DEFAULT_STREAMS, block_size: Any
                       = None,
                       client: Any = None) -> GradientEstimate:
    """The unordered set estimator (Kool et al. 2020) for one Categorical:
    k distinct categories per sample drawn without replacement.

    Parameters
    ----------
    f : vectorised callable on category indices (shape (m,)), as in
        ``score_grad``; evaluated k times per sample.
    dist : Categorical with batch shape ()
    k : int in 1..min(K, 7) (the set probabilities sum over k! orders)
    baseline : bool, the built-in baseline B(S, s) (k >= 2)
    rng, n_threads, chunk_size, n_streams, block_size, client : as in ``score_grad``

    Returns
    -------
    GradientEstimate (method "unordered-set(k=...)"); ``value`` estimates
    E[f] by sum_s p(s) R(S, s) f(s).

    Raises
    ------
    ValueError
        Not one Categorical variable (batch shape ()), ``k`` outside
        1..min(K, 7), or f returning the wrong shape or a non-finite value.

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> q = mc.Categorical(probs=[0.5, 0.3, 0.2])
    >>> f = lambda x: (x == 2).astype(float)          # d P(x = 2) / d probs = (-0.2, -0.2, 0.8)
    >>> res = mc.unordered_set_grad(f, q, 1000, k=2, rng=0)
    >>> exact = np.array([-0.2, -0.2, 0.8])
    >>> bool(np.all(np.abs(res.grad["probs"] - exact) < 5 * res.stderr["probs"]))
    True
    """
    return _run(f, dist, n, k, baseline, "unordered", "unordered_set_grad", rng, n_threads,
                chunk_size, n_streams, block_size, client)


def sum_and_sample_grad(f: Any, dist: Any, n: Any, *, k: Any = 2, rng: Any = None,
                        n_threads: Any = None, chunk_size: Any = None,
                        n_streams: Any = E.DEFAULT_STREAMS, block_size: Any = None, client: Any =
                        None) -> GradientEstimate:
    """Stochastic sum-and-sample for one Categorical: the k - 1 most
    probable categories summed exactly and one draw from the rest per
    sample (k f evaluations).

    Parameters
    ----------
    f : vectorised callable on category indices (shape (m,)), as in
        ``score_grad``; evaluated k times per sample.
    dist : Categorical with batch shape ()
    n : int, samples
    k : int >= 1, categories per sample (k - 1 summed, one drawn)
    rng, n_threads, chunk_size, n_streams, block_size, client : as in ``score_grad``

    Returns
    -------
    GradientEstimate

    Raises
    ------
    ValueError
        Not one Categorical variable (batch shape ()), ``k`` < 1, or f
        returning the wrong shape or a non-finite value.

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> p = np.array([0.5, 0.3, 0.2])
    >>> res = mc.sum_and_sample_grad(lambda x: (x == 2).astype(float),
    ...                              mc.Categorical(logits=np.log(p)), 1000, k=2, rng=0)
    >>> exact = p[2] * (np.eye(3)[2] - p)            # d P(x = 2) / d logits
    >>> z = (res.grad["logits"] - exact) / res.stderr["logits"]
    >>> bool(np.all(np.abs(z) < 5))                  # category 0 summed, one draw from 1, 2
    True
    """
    return _run(f, dist, n, k, False, "sum-and-sample", "sum_and_sample_grad", rng, n_threads,
                chunk_size, n_streams, block_size, client)
