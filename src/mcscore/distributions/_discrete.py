"""The discrete univariate families: Poisson and the probs / logits
families (Bernoulli, Binomial, Geometric, NegativeBinomial), with the
helpers for probs / logits parameters and the accurate log-pmfs."""
from __future__ import annotations

from typing import Any

import math

import numpy as np
from scipy import special, stats

from .. import _docs
from .. import _kernels as K
from .. import _validation as V
from ._base import NONNEGATIVE_INTEGER, Distribution, Support

# Largest Poisson rate NumPy's sampler accepts (larger rates overflow int64).
POISSON_RATE_MAX = float(np.iinfo(np.int64).max - 10 * np.sqrt(np.iinfo(np.int64).max))
# Smallest Geometric success probability: P(draw >= 2**62) = exp(-1e-16 * 2**62)
# is then 0 in double precision; smaller ones overflow the int64 draws.
GEOMETRIC_PROBS_MIN = 1e-16


# ---------------------------------------------------------------------------
# helpers for probs / logits families
# ---------------------------------------------------------------------------

def _probs_or_logits(owner: Any, probs: Any, logits: Any, *, min_ndim: Any = 0,
                     simplex: Any = False) -> Any:
    if (probs is None) == (logits is None):
        raise ValueError(f"{owner}: pass exactly one of probs or logits")
    if probs is not None:
        p = V.param("probs", probs, "nonnegative" if simplex else "unit_interval",
                    owner=owner, min_ndim=min_ndim)
        if simplex and p.ndim == 1 and 0 < p.size <= 32 and 0.0 < max(p.tolist()) <= 1e300:
            pass  # validated values: their sum is > 0 and finite (32 values <= 1e300)
        elif simplex:
            with np.errstate(over="ignore"):
                tot = p.sum(axis=-1)
            if not (tot > 0).all():
                raise ValueError(f"{owner}: probs must have a positive sum along the last axis")
            if not np.isfinite(tot).all():
                raise ValueError(
                    f"{owner}: probs must have a finite sum along the last axis (at most "
                    f"{_DBL_MAX:.4g}), got a sum that overflows to inf; divide probs by a "
                    "constant (they need not sum to 1) or pass logits")
        return "probs", p
    return "logits", V.param("logits", logits, "real", owner=owner, min_ndim=min_ndim)


_DBL_MAX = float(np.finfo(np.float64).max)
# Scores with respect to probs hold 1 / probs: below this it overflows.
_PROBS_SCORE_MIN = 1.0 / _DBL_MAX


def _check_probs_score(owner: Any, p: Any, rescalable: Any = False) -> Any:
    """Raise unless 1 / p is finite for every p (the scores w.r.t. probs)."""
    if not (p >= _PROBS_SCORE_MIN).all():
        raise ValueError(
            f"{owner}: probs must be >= {_PROBS_SCORE_MIN:.4g} (1 / the largest double) to "
            f"estimate gradients w.r.t. probs (the score holds 1 / probs, which overflows), got "
            f"{float(np.min(p))!r}; pass logits instead" + (
                ", or multiply probs by a constant (they need not sum to 1)" if rescalable
                else ""))


def _expit_pair(logits: Any) -> Any:
    """(p, 1 - p) from logits, each accurate in its own tail."""
    return special.expit(logits), special.expit(-logits)


class _BinaryFamily(Distribution):
    """Shared plumbing of Bernoulli, Binomial, Geometric, NegativeBinomial:
    one differentiable parameter, probs or logits (exactly one passed), and
    the fixed parameters of ``fixed_params`` ({name: constraint})."""

    continuous = False
    probs_constraint: str | None = None  # a narrower constraint on probs than [0, 1]

    def __init__(self, probs: Any = None, logits: Any = None, **fixed: Any) -> None:
        super().__init__()
        owner = type(self).__name__
        self._which, v = _probs_or_logits(owner, probs, logits)
        if self._which == "probs" and self.probs_constraint is not None:
            V.check("probs", v, self.probs_constraint, owner=owner)
        for name, constraint in self.fixed_params.items():
            setattr(self, name, V.param(name, fixed[name], constraint, owner=owner))
        shapes = {name: getattr(self, name) for name in self.fixed_params}
        self.batch_shape = V.broadcast_shapes(owner, **shapes, **{self._which: v})
        self._params = {self._which: v}
        self._check_params()

    def _draw_params(self) -> Any:
        """[probs of the unit, total_count of the unit (0 without one)]."""
        return (np.broadcast_to(self.probs, self.batch_shape),
                np.broadcast_to(getattr(self, "total_count", 0.0), self.batch_shape))

    def _pq(self) -> Any:
        name, v = self._which, self._params[self._which]
        if name == "logits":
            return _expit_pair(v)
        return v, 1.0 - v

    @property
    def probs(self) -> Any:
        return self._pq()[0]

    @property
    def logits(self) -> Any:
        p, q = self._pq()
        return np.log(p) - np.log(q)

    def _check_differentiable(self) -> Any:
        if self._which == "probs":
            p = self._params["probs"]
            if not ((p > 0) & (p < 1)).all():
                raise ValueError(
                    f"{type(self).__name__}: probs must be in (0, 1) to estimate gradients "
                    "w.r.t. probs (the score is undefined at 0 and 1); pass logits instead"
                )
            _check_probs_score(type(self).__name__, p)


# ---------------------------------------------------------------------------
# discrete univariate families
# ---------------------------------------------------------------------------

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _stirlerr(n: Any) -> Any:
    """log(n!) - [(n + 1/2) log n - n + log(2 pi)/2] for n > 0: the error of
    Stirling's formula, accurate for every n (series for n > 15)."""
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        small = special.gammaln(n + 1) - (n + 0.5) * np.log(n) + n - _HALF_LOG_2PI
        nn = n * n
        big = (1 / 12 - (1 / 360 - (1 / 1260 - (1 / 1680 - 1 / (1188 * nn)) / nn) / nn) / nn) / n
    return np.where(n > 15, big, small)


def _bd0(x: Any, m: Any) -> Any:
    """x log(x / m) + m - x, without cancellation when x is close to m
    (the deviance term of the saddle-point log-pmfs)."""
    x, m = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(m, np.float64))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = special.xlogy(x, x / m) + m - x
        near = np.abs(x - m) < 0.1 * (x + m)
        if near.any():
            xs, ms = x[near], m[near]
            v = (xs - ms) / (xs + ms)
            acc = (xs - ms) * v
            ej = 2 * xs * v
            v2 = v * v
            for j in range(1, 40):
                ej = ej * v2
                nxt = acc + ej / (2 * j + 1)
                if np.array_equal(nxt, acc):
                    break
                acc = nxt
            out = out.copy()
            out[near] = acc
    return out


def _binomial_log_pmf(x: Any, n: Any, p: Any, q: Any) -> Any:
    """log C(n, x) p^x q^(n-x) for real 0 <= x <= n by the saddle-point form
    (accurate for n up to 2**62; x = 0 and x = n exactly)."""
    x, n, p, q = np.broadcast_arrays(*(np.asarray(a, np.float64) for a in (x, n, p, q)))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        y = n - x
        inner = (_stirlerr(n) - _stirlerr(x) - _stirlerr(y) - _bd0(x, n * p) - _bd0(y, n * q)
                 + 0.5 * np.log(n / (2 * math.pi * x * y)))
        out = np.where(x == 0, special.xlogy(n, q), np.where(y == 0, special.xlogy(n, p), inner))
    return out


# Most values the entropy of a count family sums over.
_ENTROPY_TERMS_MAX = 1 << 23


def _sum_entropy(owner: Any, frozen: Any, mean: Any, var: Any) -> Any:
    """The entropy -sum p log p of a count distribution (a frozen scipy
    distribution of the batch shape), summed over mean +- (12 sd + 50),
    the upper end moved out until the mass beyond is below 1e-18."""
    mean, var = np.broadcast_arrays(np.asarray(mean, float), np.asarray(var, float))
    if mean.size == 0:
        return np.zeros(mean.shape)
    half = 12.0 * np.sqrt(var) + 50.0
    lo = max(0.0, float(np.floor(np.min(mean - half))))
    hi = float(np.ceil(np.max(mean + half)))
    while hi - lo <= _ENTROPY_TERMS_MAX and np.max(frozen.sf(hi)) > 1e-18:
        hi = lo + 2.0 * (hi - lo)  # a heavy right tail (NegativeBinomial, probs near 1)
    if hi - lo > _ENTROPY_TERMS_MAX:
        raise NotImplementedError(
            f"{owner}.entropy: the sum over the support would take {hi - lo:.3g} terms (more "
            f"than {_ENTROPY_TERMS_MAX}); the distribution is too wide for an exact sum")
    k = np.arange(lo, hi + 1.0).reshape((-1,) + (1,) * mean.ndim)
    lp = frozen.logpmf(k)
    return -np.where(np.isfinite(lp), np.exp(lp) * lp, 0.0).sum(0)


def _is_count(x: Any, upper: Any = None) -> Any:
    ok = (x >= 0) & (x == np.floor(x))
    if upper is not None:
        ok &= x <= upper
    return ok


@_docs.raises_bad_parameters("A ``rate`` that is not positive and finite")
class Poisson(Distribution):
    """Poisson(rate): P(k) = rate^k e^(-rate) / k!.

    Parameters
    ----------
    rate : float or array_like
        The mean (> 0).

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> q = mc.Poisson(rate=3.0)
    >>> bool(np.isclose(q.log_prob(np.array([0.0]))[0], -3.0))
    True
    """

    support = NONNEGATIVE_INTEGER

    family = K.MC_POISSON
    continuous = False
    arg_constraints = {"rate": "positive"}

    def __init__(self, rate: Any) -> None:
        super().__init__(rate=rate)

    def _check_params(self, rate: Any) -> Any:
        if not (rate <= POISSON_RATE_MAX).all():
            raise ValueError(f"Poisson: rate must be <= {POISSON_RATE_MAX:.6g} (larger rates "
                             f"overflow the int64 draws), got {float(rate.max())!r}")

    def _terms(self) -> Any:
        return [("rate", K.SK_AFFINE, 1.0 / self.rate, -1.0, 0.0)]

    def _log_prob(self, x: Any) -> Any:
        lam = self.rate
        inner = -_stirlerr(x) - _bd0(x, lam) - 0.5 * np.log(2 * math.pi * x)
        out = np.where(x == 0, -lam, inner)
        return np.where(_is_count(x), out, -np.inf)

    def _in_support(self, x: Any) -> Any:
        return _is_count(x)

    def _mean(self) -> Any:
        return self.rate

    def _variance(self) -> Any:
        return self.rate

    def _entropy(self) -> Any:
        lam = np.asarray(self.rate, dtype=np.float64)
        big = lam > 1e4
        # above 1e4 the asymptotic series (next term O(rate**-4)): the log-pmfs
        # of the sum lose about rate * 1e-16 each there
        lb = np.where(big, lam, 1e4)
        series = (0.5 * np.log(2 * math.pi * math.e * lb) - 1 / (12 * lb) - 1 / (24 * lb**2)
                  - 19 / (360 * lb**3))
        small = np.where(big, 1.0, lam)
        return np.where(big, series, _sum_entropy("Poisson", stats.poisson(small), small, small))

    has_mean_tangents = True

    def mean_tangents(self) -> Any:
        return {"rate": self._draw_broadcast(1.0)}

    # -- cdf / icdf (draws by inversion, sampler="sobol") -------------------
    def cdf(self, value: Any) -> Any:
        """P(X <= value), value broadcast against the batch shape.

        Examples
        --------
        >>> import mcscore as mc
        >>> q = mc.Poisson(rate=2.0)
        >>> round(float(q.cdf(2)), 6)
        0.676676
        """
        from scipy import stats
        x = np.floor(np.asarray(value, dtype=np.float64))
        return stats.poisson.cdf(x, self.rate)

    def icdf(self, value: Any) -> Any:
        """The smallest count k with cdf(k) >= value (scipy.stats.poisson.ppf).

        Examples
        --------
        >>> import mcscore as mc
        >>> q = mc.Poisson(rate=2.0)
        >>> k = q.icdf(0.5)
        >>> bool(q.cdf(k) >= 0.5), bool(q.cdf(k - 1) < 0.5)
        (True, True)
        """
        from scipy import stats
        return np.maximum(stats.poisson.ppf(self._unit_value(value), self.rate), 0.0)


class Bernoulli(_BinaryFamily):
    """Bernoulli(probs=None, logits=None): P(1) = probs = sigmoid(logits).

    Parameters
    ----------
    probs : float or array_like, optional
        P(1), in [0, 1].
    logits : float or array_like, optional
        ``log(p / (1 - p))``; give exactly one of ``probs`` and ``logits``.

    Raises
    ------
    ValueError
        Both or neither of ``probs`` and ``logits``, or a value outside its
        range.

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> q = mc.Bernoulli(logits=np.zeros(3))
    >>> b = q.sample(2, rng=0)
    >>> b.shape, sorted(np.unique(b).tolist()) in ([0.0], [1.0], [0.0, 1.0])
    ((2, 3), True)
    """

    support = Support("x 0 or 1", "boolean", 0, 1)

    family = K.MC_BERNOULLI

    def _terms(self) -> Any:
        p, q = self._pq()
        if self._which == "logits":
            return [("logits", K.SK_AFFINE, 1.0, -p, 0.0)]
        return [("probs", K.SK_AFFINE, 1.0 / p + 1.0 / q, -1.0 / q, 0.0)]

    def _log_prob(self, x: Any) -> Any:
        p, q = self._pq()
        out = np.where(x == 1, np.log(p), np.log(q))
        return np.where((x == 0) | (x == 1), out, -np.inf)

    def _in_support(self, x: Any) -> Any:
        return (x == 0) | (x == 1)

    def _mean(self) -> Any:
        return self.probs

    def _variance(self) -> Any:
        p, q = self._pq()
        return p * q

    def _entropy(self) -> Any:
        p, q = self._pq()
        return special.entr(p) + special.entr(q)

    has_mean_tangents = has_relaxation = has_binary_relaxation = True

    def mean_tangents(self) -> Any:
        p, q = self._pq()
        return {self._which: self._draw_broadcast(p * q if self._which == "logits" else 1.0)}

    def relaxation(self) -> Any:
        """(units W, categories K (1: binary), logit-space parameters, probs,
        conversion code, cv, cvs) for the relaxed / REBAR / DisARM kernels:
        conversion 1 maps a logit gradient to probs with cv = 1 / (p q).

        %(relaxation_returns)s

        Examples
        --------
        >>> import mcscore as mc
        >>> W, K, theta, probs = mc.Bernoulli(probs=0.3).relaxation()[:4]
        >>> K, probs.tolist()
        (1, [0.3])
        """
        p, q = self._pq()
        th = np.ravel(np.log(p) - np.log(q)) if self._which == "probs" else \
            np.ravel(np.broadcast_to(self._params["logits"], self.batch_shape))
        pr = np.ravel(p)
        conv = 1 if self._which == "probs" else 0
        cv = np.ravel(1.0 / (p * q)) if conv else np.ones(1)
        return th.size, 1, np.ascontiguousarray(th, float), pr, conv, cv, np.ones(1)

    # -- cdf / icdf (draws by inversion, sampler="sobol") -------------------
    def cdf(self, value: Any) -> Any:
        """P(X <= value): 0 below 0, 1 - probs on [0, 1), 1 from 1 on.

        Examples
        --------
        >>> import mcscore as mc
        >>> q = mc.Bernoulli(probs=0.3)
        >>> round(float(q.cdf(0)), 6)
        0.7
        """
        x = np.asarray(value, dtype=np.float64)
        q = self._pq()[1]
        return np.where(x < 0, 0.0, np.where(x < 1, q, 1.0))

    def icdf(self, value: Any) -> Any:
        """1 where value > 1 - probs, else 0.

        Examples
        --------
        >>> import mcscore as mc
        >>> q = mc.Bernoulli(probs=0.3)
        >>> k = q.icdf(0.5)
        >>> bool(q.cdf(k) >= 0.5), bool(q.cdf(k - 1) < 0.5)
        (True, True)
        """
        return (self._unit_value(value) > self._pq()[1]).astype(np.float64)


@_docs.raises_bad_parameters(
    "Both or neither of ``probs`` and ``logits``, a ``total_count`` that is not a "
    "non-negative integer, or a probability outside [0, 1]")
class Binomial(_BinaryFamily):
    """Binomial(total_count, probs=None, logits=None): successes in
    total_count trials (total_count is fixed, not differentiated).

    Parameters
    ----------
    total_count : int or array_like of int, default 1
        The number of trials (>= 0; fixed, not differentiated).
    probs : float or array_like, optional
        The success probability, in [0, 1].
    logits : float or array_like, optional
        ``log(p / (1 - p))``; give exactly one of ``probs`` and ``logits``.

    Examples
    --------
    >>> import mcscore as mc
    >>> q = mc.Binomial(total_count=10, probs=0.3)
    >>> float(q.mean), round(float(q.variance), 12)
    (3.0, 2.1)
    """

    @property
    def support(self) -> Any:
        return Support("x an integer in 0..total_count", "integer_interval", 0,
                       self.total_count)

    family = K.MC_BINOMIAL
    fixed_params = {"total_count": "nonnegative_integer"}

    def __init__(self, total_count: Any = 1, probs: Any = None, logits: Any = None) -> None:
        super().__init__(probs, logits, total_count=total_count)

    def _terms(self) -> Any:
        p, q = self._pq()
        n = self.total_count
        if self._which == "logits":
            return [("logits", K.SK_AFFINE, 1.0, -n * p, 0.0)]
        return [("probs", K.SK_AFFINE, 1.0 / p + 1.0 / q, -n / q, 0.0)]

    def _log_prob(self, x: Any) -> Any:
        p, q = self._pq()
        n = self.total_count
        ok = _is_count(x, n)
        out = _binomial_log_pmf(np.where(ok, x, 0.0), n, p, q)
        return np.where(ok, out, -np.inf)

    def _in_support(self, x: Any) -> Any:
        return _is_count(x, self.total_count)

    def _mean(self) -> Any:
        return self.total_count * self.probs

    def _variance(self) -> Any:
        p, q = self._pq()
        return self.total_count * p * q

    def _entropy(self) -> Any:
        p, q = self._pq()
        n = np.broadcast_to(self.total_count, self.batch_shape)
        return _sum_entropy("Binomial", stats.binom(n, p), n * p, n * p * q)

    # -- cdf / icdf (draws by inversion, sampler="sobol") -------------------
    def cdf(self, value: Any) -> Any:
        """P(X <= value), value broadcast against the batch shape.

        Examples
        --------
        >>> import mcscore as mc
        >>> q = mc.Binomial(total_count=5, probs=0.4)
        >>> round(float(q.cdf(2)), 6)
        0.68256
        """
        from scipy import stats
        x = np.floor(np.asarray(value, dtype=np.float64))
        return stats.binom.cdf(x, self.total_count, self.probs)

    def icdf(self, value: Any) -> Any:
        """The smallest count k with cdf(k) >= value (scipy.stats.binom.ppf).

        Examples
        --------
        >>> import mcscore as mc
        >>> q = mc.Binomial(total_count=5, probs=0.4)
        >>> k = q.icdf(0.5)
        >>> bool(q.cdf(k) >= 0.5), bool(q.cdf(k - 1) < 0.5)
        (True, True)
        """
        from scipy import stats
        u = self._unit_value(value)
        return np.maximum(stats.binom.ppf(u, self.total_count, self.probs), 0.0)


@_docs.raises_bad_parameters(
    "Both or neither of ``probs`` and ``logits``, or a probability outside (0, 1]")
class Geometric(_BinaryFamily):
    """Geometric(probs=None, logits=None): failures before the first success,
    P(k) = (1 - p)^k p, k = 0, 1, ...

    Parameters
    ----------
    probs : float or array_like, optional
        The success probability p, in (0, 1].
    logits : float or array_like, optional
        ``log(p / (1 - p))``; give exactly one of ``probs`` and ``logits``.
    **fixed :
        Reserved for :meth:`expand` (no further parameters are accepted).

    Examples
    --------
    >>> import mcscore as mc
    >>> q = mc.Geometric(probs=0.25)
    >>> float(q.mean)
    3.0
    """

    support = NONNEGATIVE_INTEGER

    family = K.MC_GEOMETRIC
    probs_constraint = "unit_interval_gt0"

    def _check_params(self) -> Any:
        v = self._params[self._which]
        p = self._pq()[0]
        if not (p >= GEOMETRIC_PROBS_MIN).all():
            lim = ("probs must be >= 1e-16" if self._which == "probs"
                   else f"logits must be >= {math.log(GEOMETRIC_PROBS_MIN):.4f} (probs >= 1e-16)")
            raise ValueError(f"Geometric: {lim}: smaller success probabilities make draws "
                             f"(about 1/probs failures) overflow int64, got {self._which} "
                             f"{float(v[p < GEOMETRIC_PROBS_MIN].flat[0])!r}")

    def _terms(self) -> Any:
        p, q = self._pq()
        if self._which == "logits":
            return [("logits", K.SK_AFFINE, -p, q, 0.0)]
        return [("probs", K.SK_AFFINE, -1.0 / q, 1.0 / p, 0.0)]

    def _in_support(self, x: Any) -> Any:
        return _is_count(x)

    def _log_prob(self, x: Any) -> Any:
        p, q = self._pq()
        out = special.xlogy(x, q) + np.log(p)
        return np.where(_is_count(x), out, -np.inf)

    def _mean(self) -> Any:
        p, q = self._pq()
        return q / p

    def _variance(self) -> Any:
        p, q = self._pq()
        return q / (p * p)

    def _entropy(self) -> Any:
        p, q = self._pq()
        return (special.entr(p) + special.entr(q)) / p

    # -- cdf / icdf (draws by inversion, sampler="sobol") -------------------
    def cdf(self, value: Any) -> Any:
        """P(X <= value) = 1 - (1 - probs)^(floor(value) + 1) for value >= 0.

        Examples
        --------
        >>> import mcscore as mc
        >>> q = mc.Geometric(probs=0.5)
        >>> round(float(q.cdf(1)), 6)
        0.75
        """
        from scipy import stats
        x = np.floor(np.asarray(value, dtype=np.float64))
        return stats.geom.cdf(x + 1.0, self.probs)

    def icdf(self, value: Any) -> Any:
        """The smallest count k with cdf(k) >= value (scipy.stats.geom.ppf,
        whose support starts at 1, less one).

        Examples
        --------
        >>> import mcscore as mc
        >>> q = mc.Geometric(probs=0.5)
        >>> k = q.icdf(0.5)
        >>> bool(q.cdf(k) >= 0.5), bool(q.cdf(k - 1) < 0.5)
        (True, True)
        """
        from scipy import stats
        return np.maximum(stats.geom.ppf(self._unit_value(value), self.probs) - 1.0, 0.0)


@_docs.raises_bad_parameters(
    "Both or neither of ``probs`` and ``logits``, a ``total_count`` that is not positive, or "
    "a probability outside its range")
class NegativeBinomial(_BinaryFamily):
    """NegativeBinomial(total_count, probs=None, logits=None): successes
    (probability probs) before total_count failures,
    P(k) = C(k + r - 1, k) (1 - p)^r p^k.

    Parameters
    ----------
    total_count : float or array_like
        r, the number of failures (> 0, real; fixed, not differentiated).
    probs : float or array_like, optional
        The success probability p, in [0, 1).
    logits : float or array_like, optional
        ``log(p / (1 - p))``; give exactly one of ``probs`` and ``logits``.

    Examples
    --------
    >>> import mcscore as mc
    >>> q = mc.NegativeBinomial(total_count=4.0, probs=0.5)
    >>> float(q.mean)
    4.0
    """

    support = NONNEGATIVE_INTEGER

    family = K.MC_NEGATIVE_BINOMIAL
    fixed_params = {"total_count": "positive"}
    probs_constraint = "unit_interval_lt1"

    def __init__(self, total_count: Any, probs: Any = None, logits: Any = None) -> None:
        super().__init__(probs, logits, total_count=total_count)

    def _check_params(self) -> Any:
        owner, r = "NegativeBinomial", self.total_count
        p, q = self._pq()
        with np.errstate(divide="ignore", over="ignore"):
            # a draw is Poisson(Gamma(r) * p/q); Gamma(r) < r + 12 sqrt(r) + 50 always
            top = (p / q) * (r + 12 * np.sqrt(r) + 50)
        if not (top <= 2.0**62).all():
            with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
                mean = np.max(r * p / q)
            raise ValueError(
                f"{owner}: total_count * probs / (1 - probs) is too large (the mean is "
                f"{mean:.3g}): draws would overflow int64; need "
                "probs / (1 - probs) * (total_count + 12 sqrt(total_count) + 50) <= 2**62"
            )

    def _terms(self) -> Any:
        p, q = self._pq()
        r = self.total_count
        if self._which == "logits":
            return [("logits", K.SK_AFFINE, q, -r * p, 0.0)]
        return [("probs", K.SK_AFFINE, 1.0 / p, -r / q, 0.0)]

    def _in_support(self, x: Any) -> Any:
        return _is_count(x)

    def _log_prob(self, x: Any) -> Any:
        p, q = self._pq()
        r = self.total_count
        ok = _is_count(x)
        k = np.where(ok, x, 0.0)
        # C(k + r - 1, k) q^r p^k = r / (k + r) * [binomial pmf of r in k + r trials, prob q]
        out = np.log(r / (k + r)) + _binomial_log_pmf(r, k + r, q, p)
        out = np.where(k == 0, special.xlogy(r, q), out)
        return np.where(ok, out, -np.inf)

    def _mean(self) -> Any:
        p, q = self._pq()
        return self.total_count * p / q

    def _variance(self) -> Any:
        p, q = self._pq()
        return self.total_count * p / (q * q)

    def _entropy(self) -> Any:
        p, q = self._pq()
        r = np.broadcast_to(self.total_count, self.batch_shape)
        m = r * p / q
        return _sum_entropy("NegativeBinomial", stats.nbinom(r, q), m, m / q)

    # -- cdf / icdf (draws by inversion, sampler="sobol") -------------------
    def cdf(self, value: Any) -> Any:
        """P(X <= value); scipy's nbinom counts the failures (probability
        1 - probs there) before total_count successes: our successes.

        Examples
        --------
        >>> import mcscore as mc
        >>> q = mc.NegativeBinomial(total_count=3.0, probs=0.5)
        >>> round(float(q.cdf(2)), 6)
        0.5
        """
        from scipy import stats
        x = np.floor(np.asarray(value, dtype=np.float64))
        return stats.nbinom.cdf(x, self.total_count, self._pq()[1])

    def icdf(self, value: Any) -> Any:
        """The smallest count k with cdf(k) >= value (scipy.stats.nbinom.ppf).

        Examples
        --------
        >>> import mcscore as mc
        >>> q = mc.NegativeBinomial(total_count=3.0, probs=0.5)
        >>> k = q.icdf(0.5)
        >>> bool(q.cdf(k) >= 0.5), bool(q.cdf(k - 1) < 0.5)
        (True, True)
        """
        from scipy import stats
        u = self._unit_value(value)
        return np.maximum(stats.nbinom.ppf(u, self.total_count, self._pq()[1]), 0.0)


# fill the docstrings' %(name)s slots (see mcscore._docs)
_docs.fill_module(globals())
