"""Independent references for the reliability and property tests.

For every family (torch parameterisation): how to build it from a dict of
parameters, its log density through ``scipy.stats``, and its exact mean and
variance per draw coordinate in closed form.  Exact gradients of
expectations are central finite differences of these closed forms (the
closed forms are smooth, so the differences are accurate to ~1e-8 relative,
far below Monte Carlo error).

A new family is one more ``Family`` entry in ``FAMILIES``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy import special, stats

import mcscore as mc


def _p_from(params):
    """Success probability of a binary family from probs or logits."""
    if "probs" in params:
        return np.asarray(params["probs"], float)
    return special.expit(np.asarray(params["logits"], float))


def _cat_probs(params):
    if "probs" in params:
        v = np.asarray(params["probs"], float)
        return v / v.sum(-1, keepdims=True)
    return special.softmax(np.asarray(params["logits"], float), axis=-1)


@dataclass
class Family:
    """How to build, score and check one family.

    make(params, fixed) -> Distribution
    logpdf(params, fixed, x) -> log density of each draw, shape (m, *batch_shape)
    moments(params, fixed) -> (mean, variance), each of the draw shape
    """

    name: str
    make: Callable
    logpdf: Callable
    moments: Callable
    fixed: tuple = ()          # parameters that are not differentiated
    event_ndim: int = 0
    meta: dict = field(default_factory=dict)


def _bcast(*arrays):
    return np.broadcast_arrays(*[np.asarray(a, float) for a in arrays])


def _normal_lp(p, fx, x):
    return stats.norm.logpdf(x, p["loc"], p["scale"])


def _normal_mom(p, fx):
    mu, s = _bcast(p["loc"], p["scale"])
    return mu, s * s


def _lognormal_lp(p, fx, x):
    mu, s = _bcast(p["loc"], p["scale"])
    return stats.lognorm.logpdf(x, s, scale=np.exp(mu))


def _lognormal_mom(p, fx):
    mu, s = _bcast(p["loc"], p["scale"])
    return np.exp(mu + s * s / 2), np.expm1(s * s) * np.exp(2 * mu + s * s)


def _gamma_mom(p, fx):
    a, r = _bcast(p["concentration"], p["rate"])
    return a / r, a / r**2


def _beta_mom(p, fx):
    a, b = _bcast(p["concentration1"], p["concentration0"])
    return a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))


def _binom_mom(p, fx):
    pr, n = _bcast(_p_from(p), fx["total_count"])
    return n * pr, n * pr * (1 - pr)


def _geom_mom(p, fx):
    pr = _p_from(p)
    q = 1 - pr
    return q / pr, q / pr**2


def _nb_lp(p, fx, x):
    # torch: successes (prob p) before total_count failures == scipy's
    # failures before n successes with success probability 1 - p
    return stats.nbinom.logpmf(x, fx["total_count"], 1 - _p_from(p))


def _nb_mom(p, fx):
    pr, r = _bcast(_p_from(p), fx["total_count"])
    q = 1 - pr
    return r * pr / q, r * pr / q**2


def _cat_lp(p, fx, x):
    pr = _cat_probs(p)
    k = pr.shape[-1]
    xi = x.astype(np.int64)
    lp = np.log(np.broadcast_to(pr, x.shape + (k,)))
    return np.take_along_axis(lp, xi[..., None], axis=-1)[..., 0]


def _cat_mom(p, fx):
    pr = _cat_probs(p)
    k = np.arange(pr.shape[-1])
    m1 = (pr * k).sum(-1)
    return m1, (pr * k * k).sum(-1) - m1**2


def _mult_lp(p, fx, x):
    pr = _cat_probs(p)
    n = np.asarray(fx["total_count"], float)
    batch = x.shape[1:-1]
    pr = np.broadcast_to(pr, batch + pr.shape[-1:])
    n = np.broadcast_to(n, batch)
    out = np.empty(x.shape[:-1])
    for idx in np.ndindex(x.shape[:-1]):
        b = idx[1:]
        out[idx] = stats.multinomial.logpmf(x[idx], int(n[b]), pr[b])
    return out


def _mult_mom(p, fx):
    pr = _cat_probs(p)
    n = np.asarray(fx["total_count"], float)[..., None]
    return n * pr + 0 * n, n * pr * (1 - pr) + 0 * n


def _dir_lp(p, fx, x):
    a = np.asarray(p["concentration"], float)
    a = np.broadcast_to(a, x.shape[1:])
    out = np.empty(x.shape[:-1])
    for idx in np.ndindex(x.shape[:-1]):
        out[idx] = stats.dirichlet.logpdf(x[idx], a[idx[1:]])
    return out


def _dir_mom(p, fx):
    a = np.asarray(p["concentration"], float)
    a0 = a.sum(-1, keepdims=True)
    return a / a0, a * (a0 - a) / (a0**2 * (a0 + 1))


FAMILIES = {
    "Normal": Family("Normal", lambda p, fx: mc.Normal(**p), _normal_lp, _normal_mom),
    "LogNormal": Family("LogNormal", lambda p, fx: mc.LogNormal(**p), _lognormal_lp,
                        _lognormal_mom),
    "Exponential": Family(
        "Exponential", lambda p, fx: mc.Exponential(**p),
        lambda p, fx, x: stats.expon.logpdf(x, scale=1 / np.asarray(p["rate"])),
        lambda p, fx: (1 / np.asarray(p["rate"]), 1 / np.asarray(p["rate"]) ** 2)),
    "Gamma": Family(
        "Gamma", lambda p, fx: mc.Gamma(**p),
        lambda p, fx, x: stats.gamma.logpdf(x, p["concentration"], scale=1 / np.asarray(p["rate"])),
        _gamma_mom),
    "Beta": Family(
        "Beta", lambda p, fx: mc.Beta(**p),
        lambda p, fx, x: stats.beta.logpdf(x, p["concentration1"], p["concentration0"]),
        _beta_mom),
    "Poisson": Family(
        "Poisson", lambda p, fx: mc.Poisson(**p),
        lambda p, fx, x: stats.poisson.logpmf(x, p["rate"]),
        lambda p, fx: (np.asarray(p["rate"]), np.asarray(p["rate"]))),
    "Bernoulli": Family(
        "Bernoulli", lambda p, fx: mc.Bernoulli(**p),
        lambda p, fx, x: stats.bernoulli.logpmf(x, _p_from(p)),
        lambda p, fx: (_p_from(p), _p_from(p) * (1 - _p_from(p)))),
    "Binomial": Family(
        "Binomial", lambda p, fx: mc.Binomial(fx["total_count"], **p),
        lambda p, fx, x: stats.binom.logpmf(x, fx["total_count"], _p_from(p)),
        _binom_mom, fixed=("total_count",)),
    "Geometric": Family(
        "Geometric", lambda p, fx: mc.Geometric(**p),
        # scipy counts trials (support 1, 2, ...), torch counts failures
        lambda p, fx, x: stats.geom.logpmf(x + 1, _p_from(p)),
        _geom_mom),
    "NegativeBinomial": Family(
        "NegativeBinomial", lambda p, fx: mc.NegativeBinomial(fx["total_count"], **p),
        _nb_lp, _nb_mom, fixed=("total_count",)),
    "Categorical": Family("Categorical", lambda p, fx: mc.Categorical(**p), _cat_lp, _cat_mom),
    "Multinomial": Family(
        "Multinomial", lambda p, fx: mc.Multinomial(fx["total_count"], **p), _mult_lp,
        _mult_mom, fixed=("total_count",), event_ndim=1),
    "Laplace": Family(
        "Laplace", lambda p, fx: mc.Laplace(**p),
        lambda p, fx, x: stats.laplace.logpdf(x, p["loc"], p["scale"]),
        lambda p, fx: (lambda mu, s: (mu, 2 * s * s))(*_bcast(p["loc"], p["scale"]))),
    "Dirichlet": Family("Dirichlet", lambda p, fx: mc.Dirichlet(**p), _dir_lp, _dir_mom,
                        event_ndim=1),
}


def finite_difference(fun, params, rel=1e-6):
    """Central differences of fun(params) -> array (any shape) with respect to
    every element of every array in params: {name: array of shape
    out.shape + param.shape}."""
    base = {k: np.array(v, float) for k, v in params.items()}
    out0 = np.asarray(fun(base), float)
    grads = {}
    for name, v in base.items():
        g = np.empty(out0.shape + v.shape)
        for idx in np.ndindex(v.shape):
            h = rel * max(1.0, abs(v[idx]))
            up = {k: a.copy() for k, a in base.items()}
            dn = {k: a.copy() for k, a in base.items()}
            up[name][idx] += h
            dn[name][idx] -= h
            g[(...,) + idx] = (np.asarray(fun(up), float) - np.asarray(fun(dn), float)) / (2 * h)
        grads[name] = g
    return grads


def exact_grad_of_expectation(family, params, fixed, weights, power=1):
    """d/dtheta E[sum_j w_j x_j**power] for power 1 or 2, from the closed-form
    mean and variance (by central differences); a dict shaped like params."""

    def expectation(p):
        mean, var = family.moments(p, fixed)
        m = mean if power == 1 else var + mean**2
        return float((np.broadcast_to(weights, np.shape(m)) * m).sum())

    return {k: v for k, v in finite_difference(expectation, params).items()}


# ---------------------------------------------------------------------------
# exact values for the numerical-extremes tests
# ---------------------------------------------------------------------------

def stirling_error(n):
    """log(n!) - [(n + 1/2) log n - n + log(2 pi)/2], for large n (series)."""
    n = float(n)
    return 1 / (12 * n) - 1 / (360 * n**3) + 1 / (1260 * n**5)


def poisson_log_pmf_at_mode(lam):
    """log P(X = lam) for X ~ Poisson(lam), lam a large integer: exactly
    -stirling_error(lam) - log(2 pi lam) / 2 (the other terms cancel)."""
    return -stirling_error(lam) - 0.5 * np.log(2 * np.pi * lam)


def assert_same_estimate(a, b):
    """Two GradientEstimates equal bit for bit (values, standard errors,
    variances, draw counts and the signs of zeros)."""
    assert a.n == b.n and a.value == b.value and a.value_stderr == b.value_stderr
    assert a.value_variance == b.value_variance
    for part in ("grad", "stderr", "variance"):
        pa, pb = getattr(a, part), getattr(b, part)
        assert pa.keys() == pb.keys()
        for k in pa:
            assert pa[k].shape == pb[k].shape
            assert np.array_equal(pa[k], pb[k]), (part, k)
            assert np.array_equal(np.signbit(pa[k]), np.signbit(pb[k])), (part, k)
