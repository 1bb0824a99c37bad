"""Exact gradients by enumeration: :func:`enumerate_grad`, and
:func:`enumeration_advice` (is enumerating cheaper than sampling to a
target standard error?).

For a discrete distribution with a small support (Bernoulli, Categorical,
Binomial, and their products over the batch coordinates),

    d E[f] / d theta = sum_x p(x) f(x) s(x),  s = d log p / d theta,

is a finite sum: f is evaluated once per support point (the product of the
coordinates' supports), the scores by the family's own score evaluator.
Poisson and Geometric have infinite supports: they are truncated at counts
K only with an exact bound on what is left out, which needs a bound
|f| <= f_bound from the caller: their scores are affine in x, so past the
point where the score keeps one sign, E[|s|; x > K] = |E[s; x <= K]| (E[s]
= 0), a finite sum; the bound on the error of coordinate i's gradient is

    f_bound (E|s_i| - E[|s_i|; x_i <= K_i] prod_{j != i} P(x_j <= K_j)),

and K grows until it is below ``tol`` (and so is the error of E[f]).
Without f_bound and tol they are refused.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _engine as E
from . import _kernels as K
from . import _validation as V
from .distributions import Bernoulli, Binomial, Categorical, Geometric, Poisson
from .score import score_grad
from .result import GradientEstimate

__all__ = ["enumerate_grad", "enumeration_advice", "support_size", "MAX_SUPPORT"]

MAX_SUPPORT = 1 << 20
_FINITE = (Bernoulli, Categorical, Binomial)
_COUNTABLE = (Poisson, Geometric)


def _check_family(dist: Any, what: Any) -> Any:
    E.check_distribution(dist)
    if type(dist) not in _FINITE + _COUNTABLE:
        raise ValueError(f"{what} supports Bernoulli, Categorical, Binomial (finite supports) and "
                         f"Poisson, Geometric (truncated with f_bound and tol); got "
                         f"{type(dist).__name__}")


def _finite_support(dist: Any) -> Any:
    """Per draw coordinate, its support values (a list of arrays)."""
    D = dist.draw_size
    if isinstance(dist, Categorical):
        return [np.arange(dist.n_categories, dtype=float)] * D
    if isinstance(dist, Bernoulli):
        return [np.array([0.0, 1.0])] * D
    n = np.broadcast_to(dist.total_count, dist.draw_shape).ravel()
    return [np.arange(int(k) + 1, dtype=float) for k in n]


def support_size(dist: Any, limit: Any = MAX_SUPPORT) -> Any:
    """Number of support points of a finite-support distribution (the
    product over its coordinates); a number above `limit` is returned as
    limit + 1.

    Parameters
    ----------
    dist : Bernoulli, Categorical or Binomial
        A finite-support distribution.
    limit : int, default 2**20
        The cap.

    Returns
    -------
    int
        The number of support points, or ``limit + 1`` when above ``limit``.

    Raises
    ------
    AttributeError
        For a family without a finite support (no ``total_count``).

    Examples
    --------
    >>> import mcscore as mc
    >>> from mcscore.enumeration import support_size
    >>> support_size(mc.Binomial(total_count=[3, 4], probs=0.5))
    20
    >>> support_size(mc.Bernoulli(probs=[0.5] * 30), limit=1000)
    1001
    """
    size = 1
    for s in _finite_support(dist):
        size *= len(s)
        if size > limit:
            return limit + 1
    return size


def _grid(supports: Any) -> Any:
    """(N, D) array of every combination of the coordinates' supports,
    the last coordinate varying fastest."""
    if len(supports) <= 32:  # numpy's limit on the dimensions of an array
        mesh = np.meshgrid(*supports, indexing="ij")
        return np.stack([m.ravel() for m in mesh], 1)
    sizes = [len(s) for s in supports]
    n = math.prod(sizes)
    out = np.empty((n, len(supports)), dtype=np.result_type(*supports))
    inner = n
    for c, s in enumerate(supports):
        inner //= sizes[c]
        out[:, c] = np.tile(np.repeat(s, inner), n // (sizes[c] * inner))
    return out


def _coord_probs(dist: Any, supports: Any) -> Any:
    """Per coordinate, the probabilities of its support values (marginals of
    the product)."""
    out = []
    for c, s in enumerate(supports):
        x = np.zeros((len(s), dist.draw_size))
        x[:, c] = s
        lp = dist.log_prob(dist._to_user_dtype(x.reshape((len(s),) + dist.draw_shape)))
        out.append(np.exp(lp.reshape(len(s), -1)[:, c]))
    return out


def _truncate(dist: Any, f_bound: Any, tol: Any, limit: Any) -> Any:
    """Supports [0..K_c] of a Poisson / Geometric product with the exact
    error bound below tol; returns (supports, bound per coordinate)."""
    if f_bound is None or tol is None:
        raise ValueError(
            f"enumerate_grad: {type(dist).__name__} has an infinite support; it is truncated "
            "only with an exact bound on the rest, which needs f_bound (a bound on |f|) and "
            "tol (the largest error allowed): pass both, or use an estimator")
    M = V.positive_real("f_bound", f_bound)
    tol = V.positive_real("tol", tol)
    t = dist._table
    if not (np.asarray(t["kind"]) == K.SK_AFFINE).all():  # pragma: no cover - families above
        raise ValueError(f"enumerate_grad cannot bound the tail of {dist!r}")
    mean = np.broadcast_to(dist.mean(), dist.draw_shape).ravel()
    Kc = np.ceil(mean + 10 * np.sqrt(mean + 1) + 10).astype(np.int64)
    while True:
        size = int(np.prod((Kc + 1).astype(float)))
        if size > limit:
            raise ValueError(
                f"enumerate_grad: the truncation of {dist!r} with f_bound={M:g} and tol={tol:g} "
                f"needs more than {limit} support points (max_support); use an estimator")
        sup = [np.arange(k + 1, dtype=float) for k in Kc]
        probs = _coord_probs(dist, sup)
        F = np.array([p.sum() for p in probs])
        bound = np.zeros(t["n_coords"])
        ok = True
        rest_all = float(np.prod(F))
        # each score term a x_c + b (SK_AFFINE) of coordinate q reading x_c
        for q, c, a, b in zip(t["coord"], t["col"], t["a"], t["b"]):
            xs = sup[c]
            s_end = a * (xs[-1] + 1) + b
            if s_end != 0 and (s_end > 0) != (a > 0):
                ok = False  # the score still changes sign past K: grow K
                break
            col = a * xs + b
            inside = float(probs[c] @ np.abs(col))
            # E[s; x > K] = -E[s; x <= K] (E[s] = 0), with a margin for its rounding
            tail = abs(float(probs[c] @ col)) + 1e-14 * inside
            rest = rest_all / F[c]
            bound[q] += M * (inside + tail - inside * rest)
        vbound = M * (1 - float(np.prod(F)))
        if ok and bound.max(initial=0.0) <= tol and vbound <= tol:
            return sup, bound
        Kc = np.ceil(Kc * 1.5 + 1).astype(np.int64)


def enumerate_grad(f: Any, dist: Any, *, f_bound: Any = None, tol: Any = None,
                   max_support: Any = MAX_SUPPORT,
                   chunk_size: Any = 1 << 16) -> GradientEstimate:
    """The exact gradient of E_{x ~ dist}[f(x)] by enumerating the support.

    Parameters
    ----------
    f : vectorised Python callable, as in ``score_grad`` (evaluated once on
        every support point, in chunks of ``chunk_size``).
    dist : Bernoulli, Categorical, Binomial (any batch shape: the support is
        the product of the coordinates'), or Poisson, Geometric with
        ``f_bound`` and ``tol``.
    f_bound, tol : float, optional
        For Poisson / Geometric: ``|f| <= f_bound`` everywhere; the supports are
        truncated where the exact bound on the rest is below tol.
    max_support : int
        Refuse (ValueError) supports larger than this.

    Returns
    -------
    GradientEstimate (method "enumeration"); ``stderr`` is 0 (the bound on the
    truncation error for Poisson / Geometric is in ``info["truncation_bound"]``),
    ``n`` and ``info["f_evals"]`` the number of support points.

    Raises
    ------
    ValueError
        A family other than those above, a support larger than
        ``max_support``, Poisson / Geometric without ``f_bound`` and ``tol``,
        or f returning the wrong shape or a non-finite value.

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> q = mc.Bernoulli(probs=np.array([0.2, 0.7]))
    >>> res = mc.enumerate_grad(lambda b: b.prod(axis=-1), q)    # E[b0 b1] = p0 p1
    >>> bool(np.allclose(res.grad["probs"], [0.7, 0.2]))
    True
    """
    _check_family(dist, "enumerate_grad")
    f = E.check_callable("f", f)
    limit = V.integer("max_support", max_support, minimum=1)
    chunk = V.integer("chunk_size", chunk_size, minimum=1)
    dist._kernel_dist()
    E.check_differentiable(dist)
    info: dict[str, Any] = {"f": "python"}
    if isinstance(dist, _COUNTABLE):
        sup, bound = _truncate(dist, f_bound, tol, limit)
        info["truncation_bound"] = dist._split_coords(bound)
        info["truncated_at"] = np.array([len(s) - 1 for s in sup])
    else:
        sup = _finite_support(dist)
        size = support_size(dist, limit)
        if size > limit:
            raise ValueError(f"enumerate_grad: the support of {dist!r} has more than {limit} "
                             "points (max_support); use an estimator")
    x = _grid(sup)
    N = len(x)
    xu = dist._to_user_dtype(x.reshape((N,) + dist.draw_shape))
    fx = np.empty(N)
    for c0 in range(0, N, chunk):
        fx[c0:c0 + chunk] = E.call_values(f, xu[c0:c0 + chunk], None, chunk)
    lp = dist.log_prob(xu).reshape(N, -1).sum(1)
    p = np.exp(lp)
    S = dist.score(xu)
    names = list(dist._coord_slices)
    Sm = np.concatenate([S[k].reshape(N, -1) for k in names], 1)
    pf = p * fx
    grad = pf @ Sm
    value = float(pf.sum())
    zero = np.zeros_like(grad)
    info.update({"f_evals": N, "support_size": N})
    return GradientEstimate(dist._split_coords(grad), dist._split_coords(zero),
                            dist._split_coords(zero), value, 0.0, N, method="enumeration",
                            value_variance=0.0, info=info)


def enumeration_advice(f: Any, dist: Any, target_se: Any, *, pilot: Any = 2000, rng: Any = None,
                       max_support: Any = MAX_SUPPORT) -> Any:
    """Whether enumerating the support is cheaper than sampling to a
    standard error ``target_se`` (on every gradient coordinate).

    The cost of enumeration is the support size (f evaluations); the cost
    of sampling is what the score-function estimator with the "optimal"
    baseline needs, max over coordinates of variance / target_se^2, with
    the per-sample variance measured on a pilot run of ``pilot`` draws
    (``rng`` seeds it).  Returns a dict: ``support_size``, ``sample_evals``
    (estimated), ``pilot_variance`` and ``cheaper`` ("enumerate" or
    "sample").

    Parameters
    ----------
    f : callable
        The integrand, as in :func:`~mcscore.score_grad`.
    dist : Bernoulli, Categorical or Binomial
        The distribution.
    target_se : float
        The standard error wanted on every gradient coordinate (> 0).
    pilot : int, default 2000
        Draws of the pilot run (>= 4).
    rng : None, int, SeedSequence or Generator
        Seeds the pilot run.
    max_support : int, default 2**20
        Support sizes above it are reported as ``max_support + 1``.

    Returns
    -------
    dict
        ``support_size``, ``sample_evals``, ``pilot_variance`` and ``cheaper``.

    Raises
    ------
    ValueError
        Another family (Poisson and Geometric included: their enumeration is
        truncated), a ``target_se`` that is not positive, or a ``pilot`` below 4.

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> q = mc.Bernoulli(probs=np.full(3, 0.3))
    >>> adv = mc.enumeration_advice(lambda x: x.sum(axis=-1), q, target_se=1e-3, rng=0)
    >>> adv["support_size"], adv["cheaper"]
    (8, 'enumerate')
    """
    _check_family(dist, "enumeration_advice")
    target = V.positive_real("target_se", target_se)
    if isinstance(dist, _COUNTABLE):
        raise ValueError("enumeration_advice: Poisson / Geometric are enumerated only "
                         "truncated (enumerate_grad with f_bound and tol); their cost depends "
                         "on the bound")
    size = support_size(dist, V.integer("max_support", max_support, minimum=1))
    res = score_grad(f, dist, V.integer("pilot", pilot, minimum=4), rng=rng, baseline="loo")
    var = max(float(np.max(v)) for v in res.variance.values())
    need = math.ceil(var / target**2)
    return {"support_size": size, "sample_evals": need, "pilot_variance": var,
            "cheaper": "enumerate" if size <= need else "sample"}
