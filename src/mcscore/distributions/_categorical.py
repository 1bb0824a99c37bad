"""The families over K categories (the last axis of the parameter):
Categorical, Multinomial and Dirichlet."""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy import special, stats

from .. import _docs
from .. import _kernels as K
from .. import _validation as V
from .. import _vr
from ._base import Distribution, Support
from ._discrete import _check_probs_score, _is_count, _probs_or_logits


# ---------------------------------------------------------------------------
# categorical families (last axis of the parameter = categories)
# ---------------------------------------------------------------------------

class _CategoricalBase(Distribution):
    continuous = False
    _probs_transform = "log"
    _param_event_ndim = 1  # probs / logits: the last axis holds the categories

    def _init_probs(self, owner: Any, probs: Any, logits: Any) -> Any:
        self._which, v = _probs_or_logits(owner, probs, logits, min_ndim=1, simplex=True)
        if v.shape[-1] < 1:
            raise ValueError(f"{owner}: {self._which} needs at least one category (last axis)")
        self._params = {self._which: v}
        return v

    @property
    def probs(self) -> Any:
        """Normalised probabilities, shape ``(*batch_shape, K)``."""
        v = self._params[self._which]
        if self._which == "logits":
            return special.softmax(v, axis=-1)
        return v / v.sum(axis=-1, keepdims=True)

    @property
    def logits(self) -> Any:
        if self._which == "logits":
            v = self._params["logits"]
            return v - special.logsumexp(v, axis=-1, keepdims=True)
        with np.errstate(divide="ignore"):
            return np.log(self.probs)

    @property
    def n_categories(self) -> Any:
        return self._params[self._which].shape[-1]

    def _n_cat(self) -> Any:
        return self.n_categories

    def _check_differentiable(self) -> Any:
        if self._which == "probs" and not (self._params["probs"] > 0).all():
            raise ValueError(
                f"{type(self).__name__}: probs must be > 0 to estimate gradients w.r.t. probs "
                "(a category of probability 0 is never drawn, so its gradient cannot be "
                "estimated); pass logits, or drop the category"
            )
        if self._which == "probs":
            _check_probs_score(type(self).__name__, self._params["probs"], rescalable=True)

    def _category_ab(self, scale: Any) -> Any:
        """(a, b) of s = a * [count or indicator] + b per (unit, category);
        `scale` multiplies b (total_count for Multinomial)."""
        v = self._params[self._which]
        if self._which == "logits":
            return np.ones_like(self.probs), -scale * self.probs
        with np.errstate(divide="ignore"):
            return 1.0 / v, -scale / v.sum(axis=-1, keepdims=True) + 0 * v


class Categorical(_CategoricalBase):
    """Categorical(probs=None, logits=None): an index in 0..K-1, the last axis
    of probs / logits holding the K categories (probs need not sum to 1).

    Parameters
    ----------
    probs : array_like, optional
        Non-negative weights of the K categories on the last axis.
    logits : array_like, optional
        Unnormalised log-probabilities; give exactly one of ``probs`` and
        ``logits`` (the gradient is taken with respect to the one given).

    Raises
    ------
    ValueError
        Both or neither of ``probs`` and ``logits``, fewer than 2 categories,
        negative or non-finite probabilities, or non-finite logits.

    Examples
    --------
    >>> import mcscore as mc
    >>> q = mc.Categorical(probs=[0.2, 0.3, 0.5])
    >>> x = q.sample(1000, rng=0)
    >>> x.shape, bool(x.min() >= 0 and x.max() <= 2)
    ((1000,), True)
    >>> q.score(x[:5])["probs"].shape
    (5, 3)
    """

    @property
    def support(self) -> Any:
        return Support("x an integer in 0..K-1", "integer_interval", 0, self.n_categories - 1)

    family = K.MC_CATEGORICAL

    def __init__(self, probs: Any = None, logits: Any = None) -> None:
        super().__init__()
        v = self._init_probs("Categorical", probs, logits)
        self.batch_shape = v.shape[:-1]

    def _build_kernel(self) -> Any:
        kk = self.n_categories
        units = int(np.prod(self.batch_shape, dtype=np.int64))
        pr = np.ascontiguousarray(self.probs.reshape(units, kk))
        q, al = K.alias_table(pr)
        a, b = self._category_ab(1.0)
        name = self._which
        self._coord_slices = {name: (slice(0, units * kk), self._params[name].shape)}
        self._table = dict(a=np.ravel(a), b=np.ravel(b), n_coords=units * kk)
        # the kernels accumulate per-category counts; the table (coordinate
        # (unit, k): a * [x_unit == k] + b) serves score() and the features
        qq = np.arange(units * kk)
        return K.KernelDist(
            self.family, True, units, kk, units, np.zeros(units), np.zeros(units),
            q.ravel(), al.ravel(), np.arange(units * kk + 1, dtype=np.int64),
            np.full(units * kk, K.SK_CATEGORY, np.intc), qq // kk, np.ravel(a), np.ravel(b),
            (qq % kk).astype(float),
        )

    def _to_user_dtype(self, x: Any) -> Any:
        return x.astype(np.int64)

    def _in_support(self, x: Any) -> Any:
        return _is_count(x, self.n_categories - 1)

    def _log_prob(self, x: Any) -> Any:
        kk = self.n_categories
        ok = _is_count(x, kk - 1)
        idx = np.where(ok, x, 0).astype(np.int64)
        lp = np.broadcast_to(self.logits, x.shape + (kk,))
        out = np.take_along_axis(lp, idx[..., None], axis=-1)[..., 0]
        return np.where(ok, out, -np.inf)

    def _mean(self) -> Any:
        """sum_k k p_k (torch gives NaN: kept from before, an index's mean)."""
        return (self.probs * np.arange(self.n_categories)).sum(-1)

    def _variance(self) -> Any:
        k = np.arange(self.n_categories)
        return (self.probs * k * k).sum(-1) - self._mean() ** 2

    def _entropy(self) -> Any:
        return special.entr(self.probs).sum(-1)

    has_relaxation = True

    def relaxation(self) -> Any:
        """As Bernoulli.relaxation, K categories per unit; conversion 2 maps
        a logit gradient to (unnormalised) probs with cv = 1 / v and
        cvs = 1 / sum v.

        %(relaxation_returns)s

        Examples
        --------
        >>> import mcscore as mc
        >>> W, K, theta, probs = mc.Categorical(probs=[0.2, 0.3, 0.5]).relaxation()[:4]
        >>> K, probs.tolist()
        (3, [0.2, 0.3, 0.5])
        """
        kk = self.n_categories
        lp = np.ascontiguousarray(self.logits.ravel(), float)
        pr = np.ascontiguousarray(self.probs.ravel(), float)
        if self._which == "probs":
            v = self._params["probs"]
            cv = np.ravel(1.0 / v)
            cvs = np.ravel(1.0 / v.sum(-1))
            conv = 2
        else:
            cv, cvs, conv = np.ones(1), np.ones(1), 0
        return lp.size, kk, lp, pr, conv, np.ascontiguousarray(cv), np.ascontiguousarray(cvs)

    def relaxed_shape(self) -> Any:
        """Shape of one relaxed draw (a point of the simplex per unit).

        Examples
        --------
        >>> import mcscore as mc
        >>> mc.Categorical(probs=[0.2, 0.3, 0.5]).relaxed_shape()
        (3,)
        """
        return self.draw_shape + (self.n_categories,)

    # -- cdf / icdf (draws by inversion, sampler="sobol") -------------------
    def _cumulative(self) -> Any:
        """The cumulative table of the probabilities, last entry exactly 1."""
        c = np.cumsum(self.probs, axis=-1)
        c[..., -1] = 1.0
        return c

    def cdf(self, value: Any) -> Any:
        """P(X <= value), value broadcast against the batch shape.

        Examples
        --------
        >>> import mcscore as mc
        >>> q = mc.Categorical(probs=[0.2, 0.3, 0.5])
        >>> round(float(q.cdf(1)), 6)
        0.5
        """
        x = np.floor(np.asarray(value, dtype=np.float64))
        c = self._cumulative()
        k = np.clip(x, 0, self.n_categories - 1).astype(np.int64)
        shape = np.broadcast_shapes(k.shape, c.shape[:-1])
        out = np.take_along_axis(np.broadcast_to(c, shape + c.shape[-1:]),
                                 np.broadcast_to(k, shape)[..., None], axis=-1)[..., 0]
        return np.where(x < 0, 0.0, out)

    def icdf(self, value: Any) -> Any:
        """The smallest category k with cdf(k) >= value: the number of
        entries of the cumulative table below value.

        Examples
        --------
        >>> import mcscore as mc
        >>> q = mc.Categorical(probs=[0.2, 0.3, 0.5])
        >>> k = q.icdf(0.5)
        >>> bool(q.cdf(k) >= 0.5), bool(q.cdf(k - 1) < 0.5)
        (True, True)
        """
        u = self._unit_value(value)
        c = self._cumulative()
        shape = np.broadcast_shapes(u.shape, c.shape[:-1])
        u = np.broadcast_to(u, shape)
        c = np.broadcast_to(c, shape + c.shape[-1:]).reshape(-1, c.shape[-1])
        if len(c) and (c == c[0]).all():  # one table (the common case): one search
            k = np.searchsorted(c[0], u, side="left")
        else:
            k = np.empty(shape, np.int64)
            for i, (ui, ci) in enumerate(zip(u.reshape(-1), c)):
                k.reshape(-1)[i] = np.searchsorted(ci, ui, side="left")
        return np.minimum(k, self.n_categories - 1).astype(np.float64)


@_docs.raises_bad_parameters(
    "Both or neither of ``probs`` and ``logits``, fewer than 2 categories, negative or "
    "non-finite probabilities, or a ``total_count`` that is not a non-negative integer")
class Multinomial(_CategoricalBase):
    """Multinomial(total_count, probs=None, logits=None): category counts of
    total_count draws (total_count fixed, may broadcast with the batch).

    Parameters
    ----------
    total_count : int or array_like of int, default 1
        The number of draws (>= 0; fixed, may broadcast with the batch).
    %(probs_logits)s

    Examples
    --------
    >>> import mcscore as mc
    >>> q = mc.Multinomial(total_count=5, probs=[0.2, 0.8])
    >>> x = q.sample(3, rng=0)
    >>> x.shape, x.sum(axis=-1).tolist()
    ((3, 2), [5.0, 5.0, 5.0])
    """

    @property
    def support(self) -> Any:
        return Support("x non-negative integer counts summing to total_count", "multinomial",
                       0, self.total_count, event_dim=1)

    family = K.MC_MULTINOMIAL
    fixed_params = {"total_count": "nonnegative_integer"}
    event_ndim = 1

    def __init__(self, total_count: Any = 1, probs: Any = None, logits: Any = None) -> None:
        super().__init__()
        owner = "Multinomial"
        v = self._init_probs(owner, probs, logits)
        n = V.param("total_count", total_count, self.fixed_params["total_count"], owner=owner)
        self.total_count = n
        try:
            self.batch_shape = np.broadcast_shapes(v.shape[:-1], n.shape)
        except ValueError:
            raise ValueError(
                f"{owner}: total_count {n.shape} does not broadcast with the batch shape "
                f"{v.shape[:-1]} of {self._which} {v.shape}"
            ) from None

    @property
    def event_shape(self) -> Any:
        return (self.n_categories,)

    def _draw_params(self) -> Any:
        pr = np.broadcast_to(self.probs, self.draw_shape)
        return pr, np.broadcast_to(self.total_count, self.batch_shape)

    def _terms(self) -> Any:
        n = self.total_count[..., None]
        a, b = self._category_ab(n)
        return [(self._which, K.SK_AFFINE, a, b, 0.0)]

    def _log_prob(self, x: Any) -> Any:
        n = self.total_count
        ok = _is_count(x).all(-1) & (x.sum(-1) == n)
        lp = np.broadcast_to(self.logits, x.shape)
        terms = np.where(x > 0, x * lp, 0.0).sum(-1)
        out = special.gammaln(n + 1) - special.gammaln(x + 1).sum(-1) + terms
        return np.where(ok, out, -np.inf)

    def _mean(self) -> Any:
        return self.total_count[..., None] * self.probs

    def _variance(self) -> Any:
        p = self.probs
        return self.total_count[..., None] * p * (1.0 - p)

    def _entropy(self) -> Any:
        n = np.broadcast_to(self.total_count, self.batch_shape)
        p = np.broadcast_to(self.probs, self.draw_shape)
        out = np.empty(self.batch_shape)
        for i in np.ndindex(*self.batch_shape):
            out[i] = stats.multinomial(int(n[i]), p[i]).entropy() if n[i] > 0 else 0.0
        return out

    # -- cdf / icdf (draws by inversion, sampler="sobol") -------------------
    # Multinomial counts from uniforms by conditional binomials: with K
    # categories, K - 1 uniforms per unit; count k is the Binomial(remaining
    # trials, p_k / (p_k + ... + p_{K-1})) quantile of its uniform and the
    # last category takes the remaining trials.
    def _qmc_dim(self) -> Any:
        return int(np.prod(self.batch_shape, dtype=np.int64)) * (self.n_categories - 1)

    def _qmc_draws(self, u: Any) -> Any:
        from scipy import stats
        kk, m = self.n_categories, len(u)
        u = u.reshape((m,) + tuple(self.batch_shape) + (kk - 1,))
        p = np.broadcast_to(self.probs, tuple(self.batch_shape) + (kk,))
        tail = np.cumsum(p[..., ::-1], axis=-1)[..., ::-1]  # p_k + ... + p_{K-1}
        left = np.broadcast_to(self.total_count, (m,) + tuple(self.batch_shape)).astype(float)
        out = np.empty((m,) + tuple(self.batch_shape) + (kk,))
        for k in range(kk - 1):
            with np.errstate(divide="ignore", invalid="ignore"):
                pk = np.clip(np.where(tail[..., k] > 0, p[..., k] / tail[..., k], 0.0), 0.0, 1.0)
            out[..., k] = np.maximum(stats.binom.ppf(u[..., k], left, pk), 0.0)
            left = left - out[..., k]
        out[..., kk - 1] = left
        return out


@_docs.raises_bad_parameters(
    "A concentration that is not positive and finite, or fewer than 2 categories")
class Dirichlet(Distribution):
    """Dirichlet(concentration): a point of the simplex, the last axis of
    concentration holding the K categories.

    Parameters
    ----------
    concentration : array_like
        Positive concentrations, the last axis holding the K categories (K >= 2).

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> q = mc.Dirichlet(concentration=[1.0, 2.0, 5.0])
    >>> x = q.sample(4, rng=0)
    >>> x.shape, bool(np.allclose(x.sum(axis=-1), 1.0))
    ((4, 3), True)
    """

    support = Support("x in [0, 1]^K summing to 1", "simplex", 0.0, 1.0, event_dim=1)

    family = K.MC_DIRICHLET
    event_ndim = 1
    arg_constraints = {"concentration": "positive"}

    def __init__(self, concentration: Any) -> None:
        super().__init__(concentration=concentration)

    def _check_params(self, concentration: Any) -> Any:
        if concentration.shape[-1] < 2:
            raise ValueError("Dirichlet: concentration needs at least 2 categories (last axis)")

    @property
    def event_shape(self) -> Any:
        return (self.concentration.shape[-1],)

    def _n_cat(self) -> Any:
        return self.concentration.shape[-1]

    def _check_draws(self, x: Any) -> Any:
        if np.isnan(x).any():
            raise FloatingPointError(
                f"{self!r}: some draws are NaN: for tiny concentrations all K gamma variates of "
                "a draw can underflow to 0 (the kernel normalises 0/0); use larger "
                "concentrations"
            )

    def _terms(self) -> Any:
        a = self.concentration
        b = special.digamma(a.sum(-1, keepdims=True)) - special.digamma(a)
        return [("concentration", K.SK_LOG_AFFINE, 1.0, b, 0.0)]

    def _log_prob(self, x: Any) -> Any:
        a = self.concentration
        ok = ((x >= 0) & (x <= 1)).all(-1) & (np.abs(x.sum(-1) - 1) < 1e-8)
        out = (special.xlogy(a - 1, x).sum(-1) + special.gammaln(a.sum(-1))
               - special.gammaln(a).sum(-1))
        return np.where(ok, out, -np.inf)

    def _mean(self) -> Any:
        a = self.concentration
        return a / a.sum(-1, keepdims=True)

    def _variance(self) -> Any:
        a = self.concentration
        a0 = a.sum(-1, keepdims=True)
        return a * (a0 - a) / (a0 * a0 * (a0 + 1.0))

    def _entropy(self) -> Any:
        a = self.concentration
        a0 = a.sum(-1)
        kk = a.shape[-1]
        return (special.gammaln(a).sum(-1) - special.gammaln(a0) + (a0 - kk) * special.digamma(a0)
                - ((a - 1.0) * special.digamma(a)).sum(-1))

    has_rsample = True
    rsample_through_gammas = True

    def pathwise_spec(self) -> Any:
        kk = self.event_shape[0]
        cols = np.arange(self.draw_size).reshape(self.draw_shape)
        return [("concentration", _vr.TK_DIRICHLET, (cols // kk) * kk, float(kk))]

    # -- cdf / icdf (draws by inversion, sampler="sobol") -------------------
    # Dirichlet draws from uniforms: K Gamma(concentration_k, 1) quantiles
    # per unit (scipy.special.gammaincinv), normalised by their sum.
    def _qmc_draws(self, u: Any) -> Any:
        m = len(u)
        g = special.gammaincinv(self.concentration, u.reshape((m,) + self.draw_shape))
        with np.errstate(invalid="ignore"):
            return g / g.sum(axis=-1, keepdims=True)

@_docs.raises_bad_parameters(
    "Both or neither of ``probs`` and ``logits``, fewer than 2 categories, negative or "
    "non-finite probabilities, or non-finite logits")
class OneHotCategorical(_CategoricalBase):
    """OneHotCategorical(probs=None, logits=None): as torch, a one-hot
    vector of event_shape (K,) per draw (the Categorical index as an
    indicator vector), the last axis of probs / logits holding the K
    categories (probs need not sum to 1).

    Drawn by inverting the cumulative probabilities at one uniform per draw
    (O(K)).  The score is ``x_k - p_k`` w.r.t. logits_k and ``x_k / v_k -
    1 / sum v`` w.r.t. unnormalised probs v (the Multinomial's with one
    trial).

    Parameters
    ----------
    %(probs_logits)s

    Examples
    --------
    >>> import mcscore as mc
    >>> x = mc.OneHotCategorical(probs=[0.1, 0.9]).sample(3, rng=0)
    >>> x.shape, x.sum(axis=-1).tolist()
    ((3, 2), [1.0, 1.0, 1.0])
    """

    support = Support("x a one-hot vector of length K", "one_hot", 0, 1, event_dim=1)

    family = K.MC_ONE_HOT_CATEGORICAL
    event_ndim = 1

    def __init__(self, probs: Any = None, logits: Any = None) -> None:
        super().__init__()
        v = self._init_probs("OneHotCategorical", probs, logits)
        self.batch_shape = v.shape[:-1]

    @property
    def event_shape(self) -> Any:
        return (self.n_categories,)

    def _draw_params(self) -> Any:
        return np.broadcast_to(self.probs, self.draw_shape), np.zeros(self.batch_shape)

    def _terms(self) -> Any:
        a, b = self._category_ab(1.0)
        return [(self._which, K.SK_AFFINE, a, b, 0.0)]

    def _in_support(self, x: Any) -> Any:
        return ((x == 0) | (x == 1)).all(-1) & (x.sum(-1) == 1)

    def _log_prob(self, x: Any) -> Any:
        ok = self._in_support(x)
        lp = np.broadcast_to(self.logits, x.shape)
        out = np.where(x == 1, lp, 0.0).sum(-1)
        return np.where(ok, out, -np.inf)

    def _mean(self) -> Any:
        return self.probs

    def _variance(self) -> Any:
        p = self.probs
        return p * (1.0 - p)

    def _entropy(self) -> Any:
        return special.entr(self.probs).sum(-1)


# fill the docstrings' %(name)s slots (see mcscore._docs)
_docs.fill_module(globals())
