"""The continuous univariate families: the location-scale families
(Normal, LogNormal, Laplace), Exponential, Gamma and Beta."""
from __future__ import annotations

from typing import Any

import math

import numpy as np
from scipy import special

from .. import _docs
from .. import _kernels as K
from .. import _validation as V
from .. import _vr
from ._base import (
    NONNEGATIVE, POSITIVE, REAL, Distribution, Support, _index_map,
)


# ---------------------------------------------------------------------------
# continuous families
# ---------------------------------------------------------------------------

class _LocScale(Distribution):
    """Shared plumbing of the location-scale families (loc real, scale > 0,
    unit blocks [loc, scale])."""

    support = REAL
    arg_constraints = {"loc": "real", "scale": "positive"}

    def __init__(self, loc: Any, scale: Any) -> None:
        super().__init__(loc=loc, scale=scale)

    # the pathwise tangent kinds of loc and scale: x = loc + scale * eps (the
    # default, dx/dloc = 1 and dx/dscale = (x - loc) / scale), or its exp
    pathwise_tangents = (_vr.TK_ONE, _vr.TK_NSCALE)

    def pathwise_spec(self) -> Any:
        b = self._draw_broadcast
        return [("loc", self.pathwise_tangents[0], 0.0, 0.0),
                ("scale", self.pathwise_tangents[1], b(self.loc), b(self.scale))]

    def _in_support(self, x: Any) -> Any:
        return np.ones(x.shape, dtype=bool)  # infinite x is checked by the caller


class Normal(_LocScale):
    """Normal(loc, scale): density exp(-(x-loc)^2 / (2 scale^2)) / (scale sqrt(2 pi)).

    Parameters
    ----------
    loc : float or array_like
        Mean (any real).
    scale : float or array_like
        Standard deviation (> 0); broadcast with ``loc`` to ``batch_shape``.

    Raises
    ------
    ValueError
        A non-finite ``loc`` or a ``scale`` that is not positive and finite.

    Examples
    --------
    >>> import mcscore as mc
    >>> q = mc.Normal(loc=1.0, scale=2.0)
    >>> q.sample(4, rng=0).shape
    (4,)
    >>> float(q.mean), float(q.variance)
    (1.0, 4.0)
    """

    family = K.MC_NORMAL
    _log = False

    def _terms(self) -> Any:
        mu, s = np.broadcast_arrays(self.loc, self.scale)
        s2 = s * s
        aff, quad = (K.SK_LOG_AFFINE, K.SK_LOG_QUAD) if self._log else (K.SK_AFFINE, K.SK_QUAD)
        return [
            ("loc", aff, 1.0 / s2, -mu / s2, 0.0),
            ("scale", quad, 1.0 / (s2 * s), -1.0 / s, mu),
        ]

    def _log_prob(self, x: Any) -> Any:
        z = (x - self.loc) / self.scale
        return -0.5 * z * z - np.log(self.scale) - 0.5 * math.log(2 * math.pi)

    # The score is a*t(x) + b with a = 1/scale**2 and a*(t(x) - loc)**2 + b with
    # a = 1/scale**3: outside this range of scales the coefficients over- or
    # underflow in double precision.
    SCALE_RANGE = (1e-100, 1e100)
    # Draws loc + scale*z must resolve the distribution: scale >= 2**-40 |loc|
    # keeps about 4000 representable values per standard deviation.
    RESOLUTION = 2.0**-40

    def _check_differentiable(self) -> Any:
        owner = type(self).__name__
        s, mu = np.broadcast_arrays(self.scale, self.loc)
        lo, hi = self.SCALE_RANGE
        bad = ~((s >= lo) & (s <= hi))
        if bad.any():
            v = s[bad].flat[0]
            raise ValueError(
                f"{owner}: scale must be in [{lo:g}, {hi:g}] to estimate gradients (got {float(v)!r}): "
                "the score's terms 1/scale**2 and 1/scale**3 over- or underflow in double "
                "precision beyond; rescale the problem (draw x/c and use f(c*x))"
            )
        ref = np.maximum(1.0, np.abs(mu)) if self._log else np.abs(mu)
        bad = s < self.RESOLUTION * ref
        if bad.any():
            i = np.argwhere(bad)[0]
            what = "log x = loc + scale*z" if self._log else "x = loc + scale*z"
            raise ValueError(
                f"{owner}: scale={float(s[tuple(i)])!r} is too small for loc={float(mu[tuple(i)])!r} to estimate "
                f"gradients: {what} rounds to a few values in double precision (need scale >= "
                f"2**-40 * {'max(1, |loc|)' if self._log else '|loc|'}); centre the problem "
                "(draw around 0 and shift x inside f)"
            )

    def _mean(self) -> Any:
        return self.loc

    def _variance(self) -> Any:
        return self.scale**2

    def _entropy(self) -> Any:
        return 0.5 + 0.5 * math.log(2 * math.pi) + np.log(self.scale)

    has_rsample = has_mirror = has_mean_tangents = True
    rsample_through_gammas = False

    def mean_tangents(self) -> Any:
        b = self._draw_broadcast
        return {"loc": b(1.0), "scale": b(0.0)}

    def mirror(self, x: Any) -> Any:
        return 2 * self.loc - x

    # -- cdf / icdf (draws by inversion, sampler="sobol") -------------------
    def cdf(self, value: Any) -> Any:
        """P(X <= value), value broadcast against the batch shape.

        Examples
        --------
        >>> import mcscore as mc
        >>> q = mc.Normal(loc=1.0, scale=2.0)
        >>> round(float(q.cdf(1.0)), 6)
        0.5
        """
        x = np.asarray(value, dtype=np.float64)
        if not self._log:
            return special.ndtr((x - self.loc) / self.scale)
        with np.errstate(divide="ignore"):
            lx = np.log(np.maximum(x, 0.0))
        return special.ndtr((lx - self.loc) / self.scale)

    def icdf(self, value: Any) -> Any:
        """The quantile function loc + scale ndtri(value) (exp of it for
        LogNormal), value in [0, 1].

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> q = mc.Normal(loc=1.0, scale=2.0)
        >>> bool(np.isclose(q.cdf(q.icdf(0.3)), 0.3))
        True
        """
        z = self.loc + self.scale * special.ndtri(self._unit_value(value))
        return np.exp(z) if self._log else z


@_docs.raises_bad_parameters(
    "A non-finite ``loc`` or a ``scale`` that is not positive and finite")
class LogNormal(Normal):
    """LogNormal(loc, scale): log x ~ Normal(loc, scale).

    Parameters
    ----------
    loc : float or array_like
        Mean of log x (any finite real).
    scale : float or array_like
        Standard deviation of log x (> 0); broadcast with ``loc``.

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> q = mc.LogNormal(loc=0.0, scale=0.5)
    >>> bool(np.isclose(q.mean, np.exp(0.125)))
    True
    """

    support = POSITIVE

    family = K.MC_LOGNORMAL
    _log = True
    pathwise_tangents = (_vr.TK_LNLOC, _vr.TK_LNSCALE)

    def _in_support(self, x: Any) -> Any:
        return x > 0

    def _log_prob(self, x: Any) -> Any:
        lx = np.log(x)
        out = super()._log_prob(lx) - lx
        return np.where(x > 0, out, -np.inf)

    def _mean(self) -> Any:
        return np.exp(self.loc + 0.5 * self.scale**2)

    def _variance(self) -> Any:
        s2 = self.scale**2
        return np.expm1(s2) * np.exp(2 * self.loc + s2)

    def _entropy(self) -> Any:
        return super()._entropy() + self.loc

    def mean_tangents(self) -> Any:
        b = self._draw_broadcast
        m = np.exp(self.loc + 0.5 * self.scale**2)
        return {"loc": b(m), "scale": b(self.scale * m)}

    def mirror(self, x: Any) -> Any:
        return np.exp(2 * self.loc - np.log(x))


@_docs.raises_bad_parameters("A ``rate`` that is not positive and finite")
class Exponential(Distribution):
    """Exponential(rate): density rate * exp(-rate x) on x > 0.

    Parameters
    ----------
    rate : float or array_like
        The rate (> 0); the mean is 1 / rate.

    Examples
    --------
    >>> import mcscore as mc
    >>> q = mc.Exponential(rate=[1.0, 4.0])
    >>> q.mean.tolist(), q.sample(3, rng=0).shape
    ([1.0, 0.25], (3, 2))
    """

    support = NONNEGATIVE

    family = K.MC_EXPONENTIAL
    arg_constraints = {"rate": "positive"}

    def __init__(self, rate: Any) -> None:
        super().__init__(rate=rate)

    def _terms(self) -> Any:
        return [("rate", K.SK_AFFINE, -1.0, 1.0 / self.rate, 0.0)]

    def _log_prob(self, x: Any) -> Any:
        return np.where(x >= 0, np.log(self.rate) - self.rate * x, -np.inf)

    def _mean(self) -> Any:
        return 1.0 / self.rate

    def _variance(self) -> Any:
        return self.rate**-2.0

    def _entropy(self) -> Any:
        return 1.0 - np.log(self.rate)

    has_rsample = has_mean_tangents = True

    def mean_tangents(self) -> Any:
        return {"rate": self._draw_broadcast(-1.0 / self.rate**2)}

    def pathwise_spec(self) -> Any:
        return [("rate", _vr.TK_NEG_X_OVER, self._draw_broadcast(self.rate), 0.0)]

    # -- cdf / icdf (draws by inversion, sampler="sobol") -------------------
    def cdf(self, value: Any) -> Any:
        """P(X <= value) = 1 - exp(-rate value) for value >= 0.

        Examples
        --------
        >>> import mcscore as mc
        >>> q = mc.Exponential(rate=2.0)
        >>> round(float(q.cdf(0.5)), 6)
        0.632121
        """
        x = np.maximum(np.asarray(value, dtype=np.float64), 0.0)
        return -np.expm1(-self.rate * x)

    def icdf(self, value: Any) -> Any:
        """The quantile function -log(1 - value) / rate.

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> q = mc.Exponential(rate=2.0)
        >>> bool(np.isclose(q.cdf(q.icdf(0.3)), 0.3))
        True
        """
        return -np.log1p(-self._unit_value(value)) / self.rate


@_docs.raises_bad_parameters("A parameter that is not positive and finite")
class Gamma(Distribution):
    """Gamma(concentration, rate): density rate^a x^(a-1) e^(-rate x) / Gamma(a).

    Parameters
    ----------
    concentration : float or array_like
        The shape a (> 0).
    rate : float or array_like
        The rate (> 0; the scale is 1 / rate); broadcast with the concentration.

    Examples
    --------
    >>> import mcscore as mc
    >>> q = mc.Gamma(concentration=3.0, rate=2.0)
    >>> float(q.mean), float(q.variance)
    (1.5, 0.75)
    """

    support = POSITIVE

    family = K.MC_GAMMA
    arg_constraints = {"concentration": "positive", "rate": "positive"}

    def __init__(self, concentration: Any, rate: Any) -> None:
        super().__init__(concentration=concentration, rate=rate)

    def _terms(self) -> Any:
        a, r = np.broadcast_arrays(self.concentration, self.rate)
        return [
            ("concentration", K.SK_LOG_AFFINE, 1.0, np.log(r) - special.digamma(a), 0.0),
            ("rate", K.SK_AFFINE, -1.0, a / r, 0.0),
        ]

    def _log_prob(self, x: Any) -> Any:
        a, r = self.concentration, self.rate
        out = a * np.log(r) + special.xlogy(a - 1, x) - r * x - special.gammaln(a)
        return np.where(x >= 0, out, -np.inf)

    def _mean(self) -> Any:
        return self.concentration / self.rate

    def _variance(self) -> Any:
        return self.concentration / self.rate**2

    def _entropy(self) -> Any:
        a = self.concentration
        return a - np.log(self.rate) + special.gammaln(a) + (1.0 - a) * special.digamma(a)

    has_rsample = has_mean_tangents = True

    def mean_tangents(self) -> Any:
        b = self._draw_broadcast
        return {"concentration": b(1.0 / self.rate),
                "rate": b(-self.concentration / self.rate**2)}

    def pathwise_spec(self) -> Any:
        b = self._draw_broadcast
        return [("concentration", _vr.TK_GAMMA_CONC, b(self.concentration), b(self.rate)),
                ("rate", _vr.TK_NEG_X_OVER, b(self.rate), 0.0)]

    # -- cdf / icdf (draws by inversion, sampler="sobol") -------------------
    def cdf(self, value: Any) -> Any:
        """P(X <= value): the regularised lower incomplete gamma function.

        Examples
        --------
        >>> import mcscore as mc
        >>> q = mc.Gamma(concentration=2.0, rate=1.0)
        >>> round(float(q.cdf(2.0)), 6)
        0.593994
        """
        x = np.maximum(np.asarray(value, dtype=np.float64), 0.0)
        return special.gammainc(self.concentration, self.rate * x)

    def icdf(self, value: Any) -> Any:
        """The quantile function, by scipy.special.gammaincinv.

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> q = mc.Gamma(concentration=2.0, rate=1.0)
        >>> bool(np.isclose(q.cdf(q.icdf(0.3)), 0.3))
        True
        """
        return special.gammaincinv(self.concentration, self._unit_value(value)) / self.rate


@_docs.raises_bad_parameters("A parameter that is not positive and finite")
class Beta(Distribution):
    """Beta(concentration1, concentration0): density x^(c1-1) (1-x)^(c0-1) / B(c1, c0).

    Parameters
    ----------
    concentration1 : float or array_like
        c1 (> 0), the exponent of x.
    concentration0 : float or array_like
        c0 (> 0), the exponent of 1 - x.

    Examples
    --------
    >>> import mcscore as mc
    >>> q = mc.Beta(concentration1=2.0, concentration0=6.0)
    >>> float(q.mean)
    0.25
    """

    support = Support("0 < x < 1", "unit_interval", 0.0, 1.0)

    family = K.MC_BETA
    arg_constraints = {"concentration1": "positive", "concentration0": "positive"}

    def __init__(self, concentration1: Any, concentration0: Any) -> None:
        super().__init__(concentration1=concentration1, concentration0=concentration0)

    def _terms(self) -> Any:
        a, b = np.broadcast_arrays(self.concentration1, self.concentration0)
        dab = special.digamma(a + b)
        return [
            ("concentration1", K.SK_LOG_AFFINE, 1.0, dab - special.digamma(a), 0.0),
            ("concentration0", K.SK_LOG1M_AFFINE, 1.0, dab - special.digamma(b), 0.0),
        ]

    def _log_prob(self, x: Any) -> Any:
        a, b = self.concentration1, self.concentration0
        out = special.xlogy(a - 1, x) + special.xlog1py(b - 1, -x) - special.betaln(a, b)
        return np.where((x >= 0) & (x <= 1), out, -np.inf)

    def _mean(self) -> Any:
        a, b = self.concentration1, self.concentration0
        return a / (a + b)

    def _variance(self) -> Any:
        a, b = self.concentration1, self.concentration0
        return a * b / ((a + b) ** 2 * (a + b + 1.0))

    def _entropy(self) -> Any:
        a, b = self.concentration1, self.concentration0
        return (special.betaln(a, b) - (a - 1) * special.digamma(a) - (b - 1) * special.digamma(b)
                + (a + b - 2) * special.digamma(a + b))

    has_rsample = has_mean_tangents = True
    # pathwise_grad draws Beta variates as normalised Gamma variates
    rsample_through_gammas = True

    def mean_tangents(self) -> Any:
        a1, a0 = self.concentration1, self.concentration0
        return {"concentration1": self._draw_broadcast(a0 / (a1 + a0) ** 2),
                "concentration0": self._draw_broadcast(-a1 / (a1 + a0) ** 2)}

    def pathwise_spec(self) -> Any:
        return [("concentration1", _vr.TK_AUX0, 0.0, 0.0),
                ("concentration0", _vr.TK_AUX1, 0.0, 0.0)]

    # -- cdf / icdf (draws by inversion, sampler="sobol") -------------------
    def cdf(self, value: Any) -> Any:
        """P(X <= value): the regularised incomplete beta function.

        Examples
        --------
        >>> import mcscore as mc
        >>> q = mc.Beta(concentration1=2.0, concentration0=3.0)
        >>> round(float(q.cdf(0.4)), 6)
        0.5248
        """
        x = np.clip(np.asarray(value, dtype=np.float64), 0.0, 1.0)
        return special.betainc(self.concentration1, self.concentration0, x)

    def icdf(self, value: Any) -> Any:
        """The quantile function, by scipy.special.betaincinv.

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> q = mc.Beta(concentration1=2.0, concentration0=3.0)
        >>> bool(np.isclose(q.cdf(q.icdf(0.3)), 0.3))
        True
        """
        return special.betaincinv(self.concentration1, self.concentration0,
                                  self._unit_value(value))


# ---------------------------------------------------------------------------
# added by the recipe of docs/design.md ("Adding a family")
# ---------------------------------------------------------------------------

@_docs.raises_bad_parameters(
    "A non-finite ``loc`` or a ``scale`` that is not positive and finite")
class Laplace(_LocScale):
    """Laplace(loc, scale): density ``exp(-|x - loc| / scale) / (2 scale)``.

    Drawn by NumPy's C sampler (``random_laplace``: inversion of one
    uniform).  The score is ``sign(x - loc) / scale`` w.r.t. loc (0 at
    x = loc, as torch's autograd gives) and ``-1/scale + |x - loc| / scale**2``
    w.r.t. scale.

    Parameters
    ----------
    loc : float or array_like
        The location (median; any finite real).
    scale : float or array_like
        The scale (> 0); the variance is 2 scale^2.

    Examples
    --------
    >>> import mcscore as mc
    >>> q = mc.Laplace(loc=1.0, scale=2.0)
    >>> float(q.mean), float(q.variance)
    (1.0, 8.0)
    """

    family = K.MC_LAPLACE
    has_mirror = True
    has_rsample = True
    has_mean_tangents = True

    # The score holds 1/scale**2: beyond this range of scales it over- or
    # underflows in double precision.
    SCALE_RANGE = (1e-150, 1e150)

    def _terms(self) -> Any:
        mu, s = np.broadcast_arrays(self.loc, self.scale)
        return [
            ("loc", K.SK_SIGN, 1.0 / s, 0.0, mu),
            ("scale", K.SK_ABS, 1.0 / (s * s), -1.0 / s, mu),
        ]

    def _log_prob(self, x: Any) -> Any:
        return -np.abs(x - self.loc) / self.scale - np.log(2.0 * self.scale)

    def _check_differentiable(self) -> Any:
        lo, hi = self.SCALE_RANGE
        s = np.asarray(self.scale)
        if not ((s >= lo) & (s <= hi)).all():
            raise ValueError(
                f"Laplace: scale must be in [{lo:g}, {hi:g}] to estimate gradients (got "
                f"{float(s[~((s >= lo) & (s <= hi))].flat[0])!r}): the score's term "
                "1/scale**2 over- or underflows in double precision beyond; rescale the "
                "problem (draw x/c and use f(c*x))")

    def _mean(self) -> Any:
        return self.loc

    def _variance(self) -> Any:
        return 2.0 * self.scale**2

    def _entropy(self) -> Any:
        return 1.0 + np.log(2.0 * self.scale)

    def cdf(self, value: Any) -> Any:
        """P(X <= value), broadcasting value against the batch shape.

        Examples
        --------
        >>> import mcscore as mc
        >>> q = mc.Laplace(loc=0.0, scale=1.0)
        >>> round(float(q.cdf(0.0)), 6)
        0.5
        """
        z = (np.asarray(value, dtype=np.float64) - self.loc) / self.scale
        return 0.5 - 0.5 * np.sign(z) * np.expm1(-np.abs(z))

    def icdf(self, value: Any) -> Any:
        """The quantile function (value in [0, 1]); the inverse of cdf.

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> q = mc.Laplace(loc=0.0, scale=1.0)
        >>> bool(np.isclose(q.cdf(q.icdf(0.3)), 0.3))
        True
        """
        u = V.param("value", value, "unit_interval", owner="Laplace.icdf")
        # log(2 u) below the median and -log(2 (1 - u)) above: exact in both tails
        with np.errstate(divide="ignore", invalid="ignore"):
            low = np.log(2.0 * np.minimum(u, 0.5))
            high = -np.log(2.0 * np.minimum(1.0 - u, 0.5))
        return self.loc + self.scale * np.where(u < 0.5, low, high)

    # -- capabilities (the estimators' protocol) --------------------------
    def mean_tangents(self) -> Any:
        """{param: d E[x_c] / d param, arrays of draw_shape}: E[x] = loc.

        Examples
        --------
        >>> import mcscore as mc
        >>> mc.Laplace(loc=0.0, scale=1.0).mean_tangents()
        {'loc': array(1.), 'scale': array(0.)}
        """
        ds = self.draw_shape
        return {"loc": np.ones(ds), "scale": np.zeros(ds)}

    def mirror(self, x: Any) -> Any:
        """Antithetic partner: the reflection 2 loc - x (Laplace is symmetric).

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> mc.Laplace(loc=0.0, scale=1.0).mirror(np.array([0.25, 1.5]))
        array([-0.25, -1.5 ])
        """
        return 2.0 * self.loc - x

    def vi_transforms(self) -> Any:
        """The unconstrained coordinates vi.fit optimises: loc as is, log scale.

        Examples
        --------
        >>> import mcscore as mc
        >>> mc.Laplace(loc=0.0, scale=1.0).vi_transforms()
        {'loc': 'identity', 'scale': 'log'}
        """
        return {"loc": "identity", "scale": "log"}


def _scale_range_check(owner: Any, name: Any, v: Any, bounds: Any, why: Any) -> Any:
    """Raise the clear error of a parameter outside the range in which its
    score terms are representable in double precision."""
    lo, hi = bounds
    v = np.asarray(v, dtype=np.float64)
    bad = ~((v >= lo) & (v <= hi))
    if bad.any():
        raise ValueError(f"{owner}: {name} must be in [{lo:g}, {hi:g}] to estimate gradients "
                         f"(got {float(v[bad].flat[0])!r}): {why}")


class _HalfScale(Distribution):
    """Shared plumbing of the folded families with one scale (HalfNormal,
    HalfCauchy): support x >= 0, the scale's range check (the score holds
    1/scale**SCALE_POWER) and vi's log scale."""

    support = NONNEGATIVE
    arg_constraints = {"scale": "positive"}
    SCALE_POWER = 2

    def __init__(self, scale: Any) -> None:
        super().__init__(scale=scale)

    def _in_support(self, x: Any) -> Any:
        return x >= 0

    def _check_differentiable(self) -> Any:
        _scale_range_check(type(self).__name__, "scale", self.scale, self.SCALE_RANGE,
                           f"the score's term 1/scale**{self.SCALE_POWER} over- or underflows "
                           "in double precision beyond; rescale the problem (draw x/c and use "
                           "f(c*x))")

    def vi_transforms(self) -> Any:
        return {"scale": "log"}


@_docs.raises_bad_parameters("A ``scale`` that is not positive and finite")
class HalfNormal(_HalfScale):
    """HalfNormal(scale): ``|z|`` for z ~ Normal(0, scale); density
    ``sqrt(2 / pi) / scale * exp(-x^2 / (2 scale^2))`` on x >= 0.

    Drawn as ``|scale * z|`` with NumPy's C normal sampler, one per draw.  The
    score ``-1/scale + x**2 / scale**3`` is one quadratic term.

    Parameters
    ----------
    scale : float or array_like
        The scale of the underlying normal (> 0).

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> q = mc.HalfNormal(scale=2.0)
    >>> bool(np.isclose(q.mean, 2.0 * np.sqrt(2 / np.pi)))
    True
    """

    family = K.MC_HALF_NORMAL

    # the score holds 1/scale**3
    SCALE_RANGE = (1e-100, 1e100)
    SCALE_POWER = 3

    def _terms(self) -> Any:
        s = np.asarray(self.scale, dtype=np.float64)
        return [("scale", K.SK_QUAD, 1.0 / (s * s * s), -1.0 / s, 0.0)]

    def _log_prob(self, x: Any) -> Any:
        z = x / self.scale
        out = -0.5 * z * z - np.log(self.scale) + 0.5 * math.log(2.0 / math.pi)
        return np.where(x >= 0, out, -np.inf)

    def _mean(self) -> Any:
        return self.scale * math.sqrt(2.0 / math.pi)

    def _variance(self) -> Any:
        return self.scale**2 * (1.0 - 2.0 / math.pi)

    def _entropy(self) -> Any:
        return 0.5 * np.log(0.5 * math.pi * self.scale**2) + 0.5

    has_rsample = has_mean_tangents = True

    def mean_tangents(self) -> Any:
        """d E[x] / d scale = sqrt(2 / pi).

        Examples
        --------
        >>> import mcscore as mc
        >>> mc.HalfNormal(scale=1.0).mean_tangents()
        {'scale': array(0.79788456)}
        """
        return {"scale": self._draw_broadcast(math.sqrt(2.0 / math.pi))}

    def pathwise_spec(self) -> Any:
        """``x = scale |eps|``: dx/dscale = x / scale (the Normal scale tangent at loc 0).

        Examples
        --------
        >>> import mcscore as mc
        >>> mc.HalfNormal(scale=1.0).pathwise_spec()
        [('scale', 1, 0.0, array(1.))]
        """
        return [("scale", _vr.TK_NSCALE, 0.0, self._draw_broadcast(self.scale))]

    # -- cdf / icdf (draws by inversion, sampler="sobol") -------------------
    def cdf(self, value: Any) -> Any:
        """P(X <= value) = erf(value / (scale sqrt 2)) for value >= 0.

        Examples
        --------
        >>> import mcscore as mc
        >>> q = mc.HalfNormal(scale=1.0)
        >>> round(float(q.cdf(1.0)), 6)
        0.682689
        """
        x = np.maximum(np.asarray(value, dtype=np.float64), 0.0)
        return special.erf(x / (self.scale * math.sqrt(2.0)))

    def icdf(self, value: Any) -> Any:
        """The quantile function scale sqrt(2) erfinv(value) (erfcinv(1 -
        value) above the median: exact in the upper tail).

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> q = mc.HalfNormal(scale=1.0)
        >>> bool(np.isclose(q.cdf(q.icdf(0.3)), 0.3))
        True
        """
        u = self._unit_value(value)
        z = np.where(u < 0.5, special.erfinv(u), special.erfcinv(1.0 - u))
        return self.scale * math.sqrt(2.0) * z


@_docs.raises_bad_parameters("A ``df`` that is not positive and finite")
class Chi2(Distribution):
    """Chi2(df): Gamma(df / 2, rate 1/2), as in torch; density
    x^(df/2 - 1) e^(-x/2) / (2^(df/2) Gamma(df/2)) on x > 0.

    Drawn by NumPy's C sampler (``random_chisquare``).  The score w.r.t. df
    is log-affine: ``(log x - log 2 - digamma(df / 2)) / 2``.

    Parameters
    ----------
    df : float or array_like
        The degrees of freedom (> 0, need not be an integer).

    Examples
    --------
    >>> import mcscore as mc
    >>> q = mc.Chi2(df=3.0)
    >>> float(q.mean), float(q.variance)
    (3.0, 6.0)
    """

    support = POSITIVE

    family = K.MC_CHI2
    arg_constraints = {"df": "positive"}

    def __init__(self, df: Any) -> None:
        super().__init__(df=df)

    def _terms(self) -> Any:
        k = np.asarray(self.df, dtype=np.float64)
        return [("df", K.SK_LOG_AFFINE, 0.5, -0.5 * (math.log(2.0) + special.digamma(0.5 * k)),
                 0.0)]

    def _in_support(self, x: Any) -> Any:
        return x >= 0

    def _log_prob(self, x: Any) -> Any:
        h = 0.5 * self.df
        out = special.xlogy(h - 1, x) - 0.5 * x - h * math.log(2.0) - special.gammaln(h)
        return np.where(x >= 0, out, -np.inf)

    def _mean(self) -> Any:
        return self.df

    def _variance(self) -> Any:
        return 2.0 * self.df

    def _entropy(self) -> Any:
        h = 0.5 * self.df
        return h + math.log(2.0) + special.gammaln(h) + (1.0 - h) * special.digamma(h)

    has_mean_tangents = has_rsample = True

    def mean_tangents(self) -> Any:
        """d E[x] / d df = 1.

        Examples
        --------
        >>> import mcscore as mc
        >>> mc.Chi2(df=3.0).mean_tangents()
        {'df': array(1.)}
        """
        return {"df": self._draw_broadcast(1.0)}

    def pathwise_spec(self) -> Any:
        """x = 2 g, g ~ Gamma(df / 2, 1): dx/ddf = dg/dalpha at alpha = df / 2
        (implicit reparameterisation of the Gamma draw).

        Examples
        --------
        >>> import mcscore as mc
        >>> mc.Chi2(df=3.0).pathwise_spec()
        [('df', 10, array(1.5), 0.0)]
        """
        return [("df", _vr.TK_CHI2_DF, self._draw_broadcast(0.5 * self.df), 0.0)]

    def vi_transforms(self) -> Any:
        return {"df": "log"}

    # -- cdf / icdf (draws by inversion, sampler="sobol") -------------------
    def cdf(self, value: Any) -> Any:
        """P(X <= value): Gamma(df / 2, rate 1/2)'s cdf.

        Examples
        --------
        >>> import mcscore as mc
        >>> q = mc.Chi2(df=3.0)
        >>> round(float(q.cdf(3.0)), 6)
        0.608375
        """
        x = np.maximum(np.asarray(value, dtype=np.float64), 0.0)
        return special.gammainc(0.5 * self.df, 0.5 * x)

    def icdf(self, value: Any) -> Any:
        """The quantile function 2 gammaincinv(df / 2, value).

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> q = mc.Chi2(df=3.0)
        >>> bool(np.isclose(q.cdf(q.icdf(0.3)), 0.3))
        True
        """
        return 2.0 * special.gammaincinv(0.5 * self.df, self._unit_value(value))


@_docs.raises_bad_parameters("A parameter that is not positive and finite")
class InverseGamma(Distribution):
    """InverseGamma(concentration, rate): 1 / x ~ Gamma(concentration, rate),
    as in torch; density rate^a x^(-a-1) e^(-rate/x) / Gamma(a) on x > 0.

    Drawn as rate / g with g from NumPy's C standard-gamma sampler.  The
    score is ``log(rate) - digamma(a) - log x`` w.r.t. the concentration a
    and ``a / rate - 1 / x`` w.r.t. the rate (the reciprocal term kind
    ``SK_RECIP``).

    Parameters
    ----------
    concentration : float or array_like
        The shape a (> 0).
    rate : float or array_like
        The rate of the Gamma of 1 / x (> 0).

    Examples
    --------
    >>> import mcscore as mc
    >>> q = mc.InverseGamma(concentration=3.0, rate=4.0)
    >>> float(q.mean)                     # rate / (a - 1)
    2.0
    """

    arg_constraints = {"concentration": "positive", "rate": "positive"}
    family = K.MC_INVERSE_GAMMA
    support = POSITIVE

    def __init__(self, concentration: Any, rate: Any) -> None:
        super().__init__(concentration=concentration, rate=rate)

    def _terms(self) -> Any:
        a, r = np.broadcast_arrays(self.concentration, self.rate)
        dlog = np.log(r) - special.digamma(a)  # log rate - digamma(a)
        return [("concentration", K.SK_LOG_AFFINE, -1.0, dlog, 0.0),
                ("rate", K.SK_RECIP, -1.0, a / r, 0.0)]

    has_rsample = True

    def pathwise_spec(self) -> Any:
        """x = rate / g, g ~ Gamma(a, 1): dx/drate = x / rate and dx/da =
        -(x^2 / rate) dg/da at g = rate / x (implicit reparameterisation).

        Examples
        --------
        >>> import mcscore as mc
        >>> mc.InverseGamma(concentration=3.0, rate=2.0).pathwise_spec()
        [('concentration', 11, array(3.), array(2.)), ('rate', 1, 0.0, array(2.))]
        """
        b = self._draw_broadcast
        return [("concentration", _vr.TK_INVGAMMA_CONC, b(self.concentration), b(self.rate)),
                ("rate", _vr.TK_NSCALE, 0.0, b(self.rate))]

    def _in_support(self, x: Any) -> Any:
        return x > 0

    def _log_prob(self, x: Any) -> Any:
        a, r = self.concentration, self.rate
        with np.errstate(divide="ignore", invalid="ignore"):
            out = a * np.log(r) - special.gammaln(a) - (a + 1) * np.log(x) - r / x
        return np.where(x > 0, out, -np.inf)

    def _entropy(self) -> Any:
        a = self.concentration
        return a + np.log(self.rate) + special.gammaln(a) - (1.0 + a) * special.digamma(a)

    def _mean(self) -> Any:
        """rate / (concentration - 1), infinite for concentration <= 1."""
        a, r = np.broadcast_arrays(self.concentration, self.rate)
        with np.errstate(divide="ignore"):
            return np.where(a > 1, r / np.where(a > 1, a - 1, 1.0), np.inf)

    def _variance(self) -> Any:
        """rate^2 / ((a - 1)^2 (a - 2)), infinite for concentration <= 2."""
        a, r = np.broadcast_arrays(self.concentration, self.rate)
        ok = a > 2
        a1 = np.where(ok, a, 3.0)
        return np.where(ok, r * r / ((a1 - 1) ** 2 * (a1 - 2)), np.inf)

    def vi_transforms(self) -> Any:
        return {"concentration": "log", "rate": "log"}

    # -- cdf / icdf (draws by inversion, sampler="sobol") -------------------
    def cdf(self, value: Any) -> Any:
        """P(X <= value) = Q(concentration, rate / value) for value > 0.

        Examples
        --------
        >>> import mcscore as mc
        >>> q = mc.InverseGamma(concentration=3.0, rate=2.0)
        >>> round(float(q.cdf(1.0)), 6)
        0.676676
        """
        x = np.asarray(value, dtype=np.float64)
        with np.errstate(divide="ignore"):
            t = np.where(x > 0, self.rate / np.maximum(x, 0.0), np.inf)
        return special.gammaincc(self.concentration, t)

    def icdf(self, value: Any) -> Any:
        """The quantile function rate / gammainccinv(concentration, value).

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> q = mc.InverseGamma(concentration=3.0, rate=2.0)
        >>> bool(np.isclose(q.cdf(q.icdf(0.3)), 0.3))
        True
        """
        with np.errstate(divide="ignore"):
            return self.rate / special.gammainccinv(self.concentration, self._unit_value(value))


@_docs.raises_bad_parameters(
    "A non-finite ``loc`` or a ``scale`` that is not positive and finite")
class Gumbel(_LocScale):
    """Gumbel(loc, scale): density exp(-(z + exp(-z))) / scale with
    z = (x - loc) / scale.

    Drawn by NumPy's C sampler (``random_gumbel``: inversion of one uniform).
    The score is ``-expm1(-z) / scale`` w.r.t. loc and
    ``(-z expm1(-z) - 1) / scale`` w.r.t. scale (the exponential term kinds
    ``SK_EXPM1``, ``SK_XEXPM1``).  The kernels keep each draw's standard
    exponential E = exp(-z) and take expm1(-z) = E - 1 from it (no
    transcendental per draw; the last bits can differ from ``score(x)``,
    which recomputes it from x).

    Parameters
    ----------
    loc : float or array_like
        The location (mode; any finite real).
    scale : float or array_like
        The scale (> 0); the variance is pi^2 scale^2 / 6.

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> q = mc.Gumbel(loc=0.0, scale=1.0)
    >>> bool(np.isclose(q.mean, np.euler_gamma))
    True
    """

    family = K.MC_GUMBEL
    has_rsample = has_mean_tangents = True

    # the score holds 1/scale**2
    SCALE_RANGE = (1e-150, 1e150)

    def _terms(self) -> Any:
        mu, s = np.broadcast_arrays(self.loc, self.scale)
        r = -1.0 / s
        return [
            ("loc", K.SK_EXPM1, r, r, mu),
            ("scale", K.SK_XEXPM1, r, r / s, mu),
            ("scale", K.SK_AFFINE, 0.0, r, 0.0),
        ]

    def _log_prob(self, x: Any) -> Any:
        z = (x - self.loc) / self.scale
        return -(z + np.exp(-z)) - np.log(self.scale)

    def _check_differentiable(self) -> Any:
        _scale_range_check("Gumbel", "scale", self.scale, self.SCALE_RANGE,
                           "the score's term 1/scale**2 over- or underflows in double "
                           "precision beyond; rescale the problem (draw x/c and use f(c*x))")

    def _mean(self) -> Any:
        return self.loc + np.euler_gamma * self.scale

    def _variance(self) -> Any:
        return math.pi**2 / 6.0 * self.scale**2

    def _entropy(self) -> Any:
        return np.log(self.scale) + np.euler_gamma + 1.0

    def mean_tangents(self) -> Any:
        """E[x] = loc + gamma scale (gamma: Euler's constant).

        Examples
        --------
        >>> import mcscore as mc
        >>> mc.Gumbel(loc=0.0, scale=1.0).mean_tangents()
        {'loc': array(1.), 'scale': array(0.57721566)}
        """
        b = self._draw_broadcast
        return {"loc": b(1.0), "scale": b(np.euler_gamma)}

    def vi_transforms(self) -> Any:
        return {"loc": "identity", "scale": "log"}

    # -- cdf / icdf (draws by inversion, sampler="sobol") -------------------
    def cdf(self, value: Any) -> Any:
        """P(X <= value) = exp(-exp(-(value - loc) / scale)).

        Examples
        --------
        >>> import mcscore as mc
        >>> q = mc.Gumbel(loc=0.0, scale=1.0)
        >>> round(float(q.cdf(0.0)), 6)
        0.367879
        """
        z = (np.asarray(value, dtype=np.float64) - self.loc) / self.scale
        with np.errstate(over="ignore"):
            return np.exp(-np.exp(-z))

    def icdf(self, value: Any) -> Any:
        """The quantile function loc - scale log(-log(value)).

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> q = mc.Gumbel(loc=0.0, scale=1.0)
        >>> bool(np.isclose(q.cdf(q.icdf(0.3)), 0.3))
        True
        """
        with np.errstate(divide="ignore"):
            return self.loc - self.scale * np.log(-np.log(self._unit_value(value)))


@_docs.raises_bad_parameters("A parameter that is not positive and finite")
class Weibull(Distribution):
    """Weibull(scale, concentration), as in torch: density
    (k / scale) (x / scale)^(k-1) exp(-(x / scale)^k) on x > 0, k the
    concentration.

    Drawn as scale times NumPy's standard Weibull variate (``random_weibull``).
    With L = log(x / scale) the score is ``(k / scale) expm1(k L)`` w.r.t. the
    scale and ``1/k - L expm1(k L)`` w.r.t. k (the term kinds ``SK_LOG_EXPM1``,
    ``SK_LOG_XEXPM1``).  The kernels keep each draw's standard exponential
    E = (x / scale)^k and take expm1(k L) = E - 1 and L = log(E) / k from it
    (the last bits can differ from ``score(x)``, which recomputes them from x).

    Parameters
    ----------
    scale : float or array_like
        The scale (> 0).
    concentration : float or array_like
        The shape k (> 0).

    Examples
    --------
    >>> import mcscore as mc
    >>> q = mc.Weibull(scale=2.0, concentration=1.0)   # k = 1: Exponential(rate 1/2)
    >>> round(float(q.mean), 12)
    2.0
    """

    support = POSITIVE

    family = K.MC_WEIBULL
    arg_constraints = {"scale": "positive", "concentration": "positive"}

    def __init__(self, scale: Any, concentration: Any) -> None:
        super().__init__(scale=scale, concentration=concentration)

    def _terms(self) -> Any:
        lam, k = np.broadcast_arrays(self.scale, self.concentration)
        ll = np.log(lam)
        return [
            ("scale", K.SK_LOG_EXPM1, k, k / lam, ll),
            ("concentration", K.SK_LOG_XEXPM1, k, -1.0, ll),
            ("concentration", K.SK_AFFINE, 0.0, 1.0 / k, 0.0),
        ]

    def _in_support(self, x: Any) -> Any:
        return x > 0

    def _log_prob(self, x: Any) -> Any:
        lam, k = self.scale, self.concentration
        with np.errstate(divide="ignore", invalid="ignore"):
            lz = np.log(x) - np.log(lam)
            out = np.log(k) - np.log(lam) + (k - 1) * lz - np.exp(k * lz)
        return np.where(x > 0, out, -np.inf)

    def _moment_factor(self, j: Any) -> Any:
        return special.gamma(1.0 + j / self.concentration)

    def _mean(self) -> Any:
        return self.scale * self._moment_factor(1)

    def _variance(self) -> Any:
        g1, g2 = self._moment_factor(1), self._moment_factor(2)
        return self.scale**2 * (g2 - g1 * g1)

    def _entropy(self) -> Any:
        k = self.concentration
        return np.euler_gamma * (1.0 - 1.0 / k) + np.log(self.scale / k) + 1.0

    has_mean_tangents = has_rsample = True

    def pathwise_spec(self) -> Any:
        """x = scale e^(1/k), e ~ Exponential(1): dx/dscale = x / scale and
        dx/dk = -(x / k) log(x / scale) (the LogNormal scale tangent
        x (log x - a) / b with a = log scale, b = -k).

        Examples
        --------
        >>> import mcscore as mc
        >>> mc.Weibull(scale=1.0, concentration=2.0).pathwise_spec()
        [('scale', 1, 0.0, array(1.)), ('concentration', 3, array(0.), array(-2.))]
        """
        b = self._draw_broadcast
        return [("scale", _vr.TK_NSCALE, 0.0, b(self.scale)),
                ("concentration", _vr.TK_LNSCALE, b(np.log(self.scale)), b(-self.concentration))]

    def mean_tangents(self) -> Any:
        """E[x] = scale Gamma(1 + 1/k).

        Examples
        --------
        >>> import mcscore as mc
        >>> mc.Weibull(scale=1.0, concentration=2.0).mean_tangents()
        {'scale': array(0.88622693), 'concentration': array(-0.0080846)}
        """
        k = self.concentration
        g1 = self._moment_factor(1)
        b = self._draw_broadcast
        return {"scale": b(g1),
                "concentration": b(-self.scale * g1 * special.digamma(1.0 + 1.0 / k) / k**2)}

    def vi_transforms(self) -> Any:
        return {"scale": "log", "concentration": "log"}

    # -- cdf / icdf (draws by inversion, sampler="sobol") -------------------
    def cdf(self, value: Any) -> Any:
        """P(X <= value) = 1 - exp(-(value / scale)^concentration), value >= 0.

        Examples
        --------
        >>> import mcscore as mc
        >>> q = mc.Weibull(scale=1.0, concentration=2.0)
        >>> round(float(q.cdf(1.0)), 6)
        0.632121
        """
        x = np.maximum(np.asarray(value, dtype=np.float64), 0.0)
        return -np.expm1(-(x / self.scale) ** self.concentration)

    def icdf(self, value: Any) -> Any:
        """The quantile function scale (-log(1 - value))^(1 / concentration).

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> q = mc.Weibull(scale=1.0, concentration=2.0)
        >>> bool(np.isclose(q.cdf(q.icdf(0.3)), 0.3))
        True
        """
        return self.scale * (-np.log1p(-self._unit_value(value))) ** (1.0 / self.concentration)

# ---------------------------------------------------------------------------
# issue 13: Uniform, StudentT, Cauchy, HalfCauchy, VonMises
# ---------------------------------------------------------------------------

@_docs.raises_bad_parameters("Non-finite bounds or ``high <= low``")
class Uniform(Distribution):
    """Uniform(low, high): density 1 / (high - low) on [low, high), as in torch.

    Drawn as low + (high - low) u with one standard uniform per draw.  The
    support moves with both parameters, so the score alone does not give
    the gradient of E[f]: ``score_grad`` adds the boundary term (f at the
    draw with a coordinate pinned to its bound, see :meth:`boundary_terms`);
    the estimators that cannot evaluate f at pinned draws refuse Uniform
    and name ``pathwise_grad`` (x = low + (high - low) u).

    Parameters
    ----------
    low : float or array_like
        The lower bound (finite).
    high : float or array_like
        The upper bound (finite, > low); broadcast with ``low``.

    Examples
    --------
    >>> import mcscore as mc
    >>> q = mc.Uniform(low=1.0, high=3.0)
    >>> float(q.mean), float(q.variance) == 4.0 / 12
    (2.0, True)
    """

    family = K.MC_UNIFORM
    arg_constraints = {"low": "real", "high": "real"}

    def __init__(self, low: Any, high: Any) -> None:
        super().__init__(low=low, high=high)

    def _check_params(self, low: Any, high: Any) -> Any:
        with np.errstate(invalid="ignore", over="ignore"):
            width = high - low
        bad = ~(width > 0)
        if bad.any():
            lo, hi = np.broadcast_arrays(low, high)
            i = np.argwhere(np.broadcast_to(bad, lo.shape))[0]
            raise ValueError(f"Uniform: high must be > low (got low={float(lo[tuple(i)])!r}, "
                             f"high={float(hi[tuple(i)])!r})")
        if not np.isfinite(width).all():
            raise ValueError("Uniform: high - low must be finite (it overflows to inf)")

    @property
    def support(self) -> Any:
        """[low, high) (torch's interval constraint; its check is closed)."""
        return Support("low <= x < high", "interval", self.low, self.high)

    def _width(self) -> Any:
        return self.high - self.low

    def _check_differentiable(self) -> Any:
        w = np.asarray(self._width())
        with np.errstate(divide="ignore", over="ignore"):
            bad = ~np.isfinite(1.0 / w)
        if bad.any():
            raise ValueError(
                f"Uniform: high - low must be at least {1 / np.finfo(float).max:.4g} to "
                f"estimate gradients (got {float(w[bad].flat[0])!r}): the score 1/(high - low) "
                "overflows; rescale the problem (draw x/c and use f(c*x))")

    def _terms(self) -> Any:
        w = self._width()
        return [("low", K.SK_AFFINE, 0.0, 1.0 / w, 0.0),
                ("high", K.SK_AFFINE, 0.0, -1.0 / w, 0.0)]

    def _in_support(self, x: Any) -> Any:
        return (x >= self.low) & (x <= self.high)

    def _log_prob(self, x: Any) -> Any:
        lp = np.broadcast_to(-np.log(self._width()), np.broadcast_shapes(x.shape, self.batch_shape))
        return np.where((x >= self.low) & (x <= self.high), lp, -np.inf)

    def _mean(self) -> Any:
        return 0.5 * (self.low + self.high)

    def _variance(self) -> Any:
        return self._width() ** 2 / 12.0

    def _entropy(self) -> Any:
        return np.log(self._width())

    has_rsample = has_mirror = True

    def mirror(self, x: Any) -> Any:
        """Antithetic partner: the reflection low + high - x.

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> mc.Uniform(low=0.0, high=2.0).mirror(np.array([0.25, 1.5]))
        array([1.75, 0.5 ])
        """
        return self.low + self.high - x

    def pathwise_spec(self) -> Any:
        """x = low + (high - low) u: dx/dlow = (high - x) / (high - low) and
        dx/dhigh = (x - low) / (high - low), both the scale tangent
        (x - a) / b.

        Examples
        --------
        >>> import mcscore as mc
        >>> mc.Uniform(low=0.0, high=2.0).pathwise_spec()
        [('low', 1, array(2.), array(-2.)), ('high', 1, array(0.), array(2.))]
        """
        b = self._draw_broadcast
        return [("low", _vr.TK_NSCALE, b(self.high), b(self.low - self.high)),
                ("high", _vr.TK_NSCALE, b(self.low), b(self.high - self.low))]

    # -- the boundary term (a parameter-dependent support) -------------
    has_boundary = True

    def boundary_terms(self, f: Any, x: Any) -> Any:
        """The boundary part of each draw's gradient term: ``(m, n_coords)``,
        in the score's coordinate order.

        For a product of uniforms, d/dlow_j E[f] = E[f(x) - f(x with x_j =
        low_j)] / (high_j - low_j) and d/dhigh_j E[f] = E[f(x with x_j =
        high_j) - f(x)] / (high_j - low_j).  The score (1 / (high_j - low_j)
        w.r.t. low_j, its negative w.r.t. high_j) gives the f(x) parts; this
        gives the pinned parts, -f(x with x_j = low_j) / (high_j - low_j)
        and +f(x with x_j = high_j) / (high_j - low_j), summed over the
        draw coordinates a broadcast parameter element reaches.  ``f`` is
        called on the m draws with one coordinate pinned, twice per draw
        coordinate: 2 * draw_size extra evaluations of f per draw.

        The score is constant on the support and the pinned parts of f = 1
        cancel it, so any baseline b cancels exactly from score + boundary:
        every baseline gives the same unbiased estimate.

        Parameters
        ----------
        f : callable
            The integrand, ``f(x)`` for draws of shape ``(m, *draw_shape)``
            returning shape ``(m,)``.
        x : numpy.ndarray, shape ``(m, *draw_shape)``
            Draws of this distribution.

        Returns
        -------
        numpy.ndarray, shape ``(m, n_coords)``
            The pinned parts of each draw's gradient term.

        Raises
        ------
        ValueError
            When ``f`` returns values of the wrong shape or not finite.

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> q = mc.Uniform(low=0.0, high=2.0)
        >>> q.boundary_terms(lambda x: x, np.array([0.5, 1.5]))    # -low / 2, +high / 2
        array([[0., 1.],
               [0., 1.]])
        """
        m = x.shape[0]
        ds, size = self.draw_shape, self.draw_size
        xf = x.reshape(m, size)
        lo = np.broadcast_to(self.low, ds).ravel()
        hi = np.broadcast_to(self.high, ds).ravel()
        w = hi - lo
        parts = []
        for name, bound, sign in (("low", lo, -1.0), ("high", hi, 1.0)):
            per = np.empty((m, size))
            for j in range(size):
                xp = xf.copy()
                xp[:, j] = bound[j]
                per[:, j] = sign * np.asarray(f(xp.reshape((m,) + ds)), dtype=np.float64) / w[j]
            psize = self._params[name].size
            emap = _index_map(self._params[name].shape, ds)
            out = np.zeros((m, psize))
            for j in range(size):
                out[:, emap[j]] += per[:, j]
            parts.append(out)
        return np.concatenate(parts, axis=1)

    def vi_transforms(self) -> Any:
        return {"low": "identity", "high": "identity"}


class _Rational(_LocScale):
    """Location-scale families whose score is rational in d = x - loc
    (Cauchy, StudentT): the kinds SK_RATIO_SQ, SK_INV_1P_SQ."""

    has_rsample = has_mirror = True
    # the score holds 1 / scale**2
    SCALE_RANGE = (1e-150, 1e150)

    def _check_differentiable(self) -> Any:
        _scale_range_check(type(self).__name__, "scale", self.scale, self.SCALE_RANGE,
                           "the score's term 1/scale**2 over- or underflows in double "
                           "precision beyond; rescale the problem (draw x/c and use f(c*x))")

    def mirror(self, x: Any) -> Any:
        """Antithetic partner: the reflection 2 loc - x (a symmetric family)."""
        return 2.0 * self.loc - x

    def _loc_scale_terms(self, nu: Any) -> Any:
        """The loc and scale rows for degrees of freedom nu (Cauchy: 1)."""
        mu, s = self.loc, self.scale
        inv = 1.0 / (nu * s * s)
        return [("loc", K.SK_RATIO_SQ, (nu + 1.0) * inv, inv, mu),
                ("scale", K.SK_INV_1P_SQ, -(nu + 1.0) / s, inv, mu),
                ("scale", K.SK_AFFINE, 0.0, nu / s, 0.0)]

    def vi_transforms(self) -> Any:
        return {"loc": "identity", "scale": "log"}


@_docs.raises_bad_parameters(
    "A non-finite ``loc`` or a ``scale`` that is not positive and finite")
class Cauchy(_Rational):
    """Cauchy(loc, scale): density 1 / (pi scale (1 + z^2)), z = (x - loc) / scale.

    Drawn as loc + scale c with NumPy's standard Cauchy sampler.  With
    u = z^2 the score is ``(2 / scale^2) d / (1 + u)`` w.r.t. loc and
    ``1/scale - (2/scale) / (1 + u)`` w.r.t. scale.  It has no mean: the
    ``mean`` is NaN and the ``variance`` infinite, as in torch.

    Parameters
    ----------
    loc : float or array_like
        The location (median; finite).
    scale : float or array_like
        The scale (> 0; the half-width at half-maximum).

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> q = mc.Cauchy(loc=0.0, scale=1.0)
    >>> bool(np.isnan(q.mean)), float(q.variance)
    (True, inf)
    """

    family = K.MC_CAUCHY

    def _terms(self) -> Any:
        return self._loc_scale_terms(1.0)

    def _log_prob(self, x: Any) -> Any:
        z = (x - self.loc) / self.scale
        return -math.log(math.pi) - np.log(self.scale) - np.log1p(z * z)

    def _mean(self) -> Any:
        return np.full(self.batch_shape, np.nan)

    def _variance(self) -> Any:
        return np.full(self.batch_shape, np.inf)

    def _entropy(self) -> Any:
        return np.log(4.0 * math.pi * self.scale)


@_docs.raises_bad_parameters(
    "A non-finite ``loc``, or a ``df`` or ``scale`` that is not positive and finite")
class StudentT(_Rational):
    """StudentT(df, loc=0, scale=1): density
    Gamma((df+1)/2) / (Gamma(df/2) sqrt(df pi) scale) (1 + z^2/df)^(-(df+1)/2).

    Drawn as loc + scale t with NumPy's standard-t sampler (a normal over
    the root of an independent chi-square / df).  With d = x - loc and
    u = d^2 / (df scale^2) the score is ``(df+1)/(df scale^2) d / (1 + u)``
    w.r.t. loc, ``df/scale - ((df+1)/scale) / (1 + u)`` w.r.t. scale and
    ``(digamma((df+1)/2) - digamma(df/2) + 1 - log1p(u)) / 2
    - ((df+1)/(2 df)) / (1 + u)`` w.r.t. df.

    ``pathwise_grad`` refuses StudentT: the reparameterisation through df
    (an implicit derivative of the t CDF in df) is not available exactly.

    Parameters
    ----------
    df : float or array_like
        The degrees of freedom (> 0).
    loc : float or array_like, default 0.0
        The location (finite).
    scale : float or array_like, default 1.0
        The scale (> 0).

    Examples
    --------
    >>> import mcscore as mc
    >>> q = mc.StudentT(df=5.0, loc=1.0, scale=2.0)
    >>> float(q.mean), float(q.variance)     # scale^2 df / (df - 2)
    (1.0, 6.666666666666667)
    """

    family = K.MC_STUDENT_T
    arg_constraints = {"df": "positive", "loc": "real", "scale": "positive"}

    def __init__(self, df: Any, loc: Any = 0.0, scale: Any = 1.0) -> None:
        Distribution.__init__(self, df=df, loc=loc, scale=scale)

    has_rsample = False

    def _draw_params(self) -> Any:
        """Unit blocks [df, loc, scale]."""
        b = [np.broadcast_to(v, self.batch_shape) for v in (self.df, self.loc, self.scale)]
        return np.stack(b[:2], axis=-1), b[2]

    def require(self, capability: Any) -> Any:
        try:
            return super().require(capability)
        except ValueError as e:
            if capability != "rsample":
                raise
            raise ValueError(
                f"{e}: StudentT's draw has no exact reparameterisation in df here (x = loc + "
                "scale z / sqrt(chi2_df / df) needs the implicit derivative of the chi-square "
                "draw); use score_grad (every baseline, antithetic=True) for the gradient "
                "w.r.t. df, loc and scale") from None

    def pathwise_spec(self) -> Any:
        self.require("rsample")

    def _terms(self) -> Any:
        nu, mu, s = np.broadcast_arrays(self.df, self.loc, self.scale)
        inv = 1.0 / (nu * s * s)
        const = 0.5 * (special.digamma(0.5 * (nu + 1.0)) - special.digamma(0.5 * nu)) + 0.5
        return self._loc_scale_terms(nu) + [
            ("df", K.SK_LOG1P_SQ, -0.5, inv, mu),
            ("df", K.SK_INV_1P_SQ, -(nu + 1.0) / (2.0 * nu), inv, mu),
            ("df", K.SK_AFFINE, 0.0, const, 0.0),
        ]

    def _log_prob(self, x: Any) -> Any:
        nu = self.df
        z = (x - self.loc) / self.scale
        return (special.gammaln(0.5 * (nu + 1.0)) - special.gammaln(0.5 * nu)
                - 0.5 * np.log(nu * math.pi) - np.log(self.scale)
                - 0.5 * (nu + 1.0) * np.log1p(z * z / nu))

    def _mean(self) -> Any:
        nu, mu = np.broadcast_arrays(self.df, self.loc)
        return np.where(nu > 1, mu, np.nan)

    def _variance(self) -> Any:
        nu, s = np.broadcast_arrays(self.df, self.scale)
        with np.errstate(divide="ignore", invalid="ignore"):
            v = s * s * nu / (nu - 2.0)
        return np.where(nu > 2, v, np.where(nu > 1, np.inf, np.nan))

    def _entropy(self) -> Any:
        nu = self.df
        h = 0.5 * (nu + 1.0)
        return (np.log(self.scale) + h * (special.digamma(h) - special.digamma(0.5 * nu))
                + 0.5 * np.log(nu) + special.betaln(0.5 * nu, 0.5))

    def vi_transforms(self) -> Any:
        return {"df": "log", "loc": "identity", "scale": "log"}


@_docs.raises_bad_parameters("A ``scale`` that is not positive and finite")
class HalfCauchy(_HalfScale):
    """HalfCauchy(scale): ``|c|`` for c ~ Cauchy(0, scale); density
    ``2 / (pi scale (1 + (x/scale)^2))`` on x >= 0.

    Drawn as ``|scale c|`` with NumPy's standard Cauchy sampler.  The score is
    ``1/scale - (2/scale) / (1 + (x/scale)^2)``; mean and variance are
    infinite, as in torch.

    Parameters
    ----------
    scale : float or array_like
        The scale (> 0).

    Examples
    --------
    >>> import mcscore as mc
    >>> q = mc.HalfCauchy(scale=2.0)
    >>> x = q.sample(5, rng=0)
    >>> x.shape, bool((x >= 0).all())
    ((5,), True)
    """

    family = K.MC_HALF_CAUCHY

    SCALE_RANGE = (1e-150, 1e150)

    def _terms(self) -> Any:
        s = np.asarray(self.scale, dtype=np.float64)
        return [("scale", K.SK_INV_1P_SQ, -2.0 / s, 1.0 / (s * s), 0.0),
                ("scale", K.SK_AFFINE, 0.0, 1.0 / s, 0.0)]

    def _log_prob(self, x: Any) -> Any:
        z = x / self.scale
        out = math.log(2.0 / math.pi) - np.log(self.scale) - np.log1p(z * z)
        return np.where(x >= 0, out, -np.inf)

    def _mean(self) -> Any:
        return np.full(self.batch_shape, np.inf)

    def _variance(self) -> Any:
        return np.full(self.batch_shape, np.inf)

    def _entropy(self) -> Any:
        return np.log(2.0 * math.pi * self.scale)

    has_rsample = True

    def pathwise_spec(self) -> Any:
        """``x = scale |c|``: dx/dscale = x / scale.

        Examples
        --------
        >>> import mcscore as mc
        >>> mc.HalfCauchy(scale=1.0).pathwise_spec()
        [('scale', 1, 0.0, array(1.))]
        """
        return [("scale", _vr.TK_NSCALE, 0.0, self._draw_broadcast(self.scale))]


def bessel_ratio(kappa: Any) -> Any:
    """I1(kappa) / I0(kappa), accurate for every kappa >= 0: the ratio of
    the exponentially scaled Bessel functions (no overflow for large kappa,
    kappa / 2 to full precision for small kappa)."""
    k = np.asarray(kappa, dtype=np.float64)
    return special.i1e(k) / special.i0e(k)


def _wrap_angle(x: Any) -> Any:
    """x mapped onto [-pi, pi)."""
    return np.mod(x + math.pi, 2.0 * math.pi) - math.pi


@_docs.raises_bad_parameters(
    "A non-finite ``loc`` or a negative or non-finite concentration")
class VonMises(Distribution):
    """VonMises(loc, concentration): the circular normal on [-pi, pi),
    density exp(kappa cos(x - loc)) / (2 pi I0(kappa)), kappa the
    concentration (>= 0; 0 is the uniform angle).

    Drawn by NumPy's C sampler (Best and Fisher's rejection method; below
    kappa = 1e-8 a uniform angle, above 1e6 a wrapped normal, both within
    rounding of the density there), mapped onto [-pi, pi).  The score is
    ``kappa sin(x - loc)`` w.r.t. loc and ``cos(x - loc) - I1(kappa) /
    I0(kappa)`` w.r.t. the concentration, the Bessel ratio computed from the
    exponentially scaled I0, I1 (:func:`bessel_ratio`), accurate for small
    and large kappa; the normaliser is log(2 pi i0e(kappa)) + kappa.

    Parameters
    ----------
    loc : float or array_like
        The mean direction (finite; any real, taken modulo 2 pi).
    concentration : float or array_like
        kappa (>= 0; 0 is the uniform angle).

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> x = mc.VonMises(loc=0.0, concentration=4.0).sample(1000, rng=0)
    >>> bool(((x >= -np.pi) & (x < np.pi)).all())
    True
    """

    support = Support("x in [-pi, pi)", "half_open_interval", -math.pi, math.pi)

    family = K.MC_VON_MISES
    arg_constraints = {"loc": "real", "concentration": "nonnegative"}

    def __init__(self, loc: Any, concentration: Any) -> None:
        super().__init__(loc=loc, concentration=concentration)

    def _terms(self) -> Any:
        mu, k = np.broadcast_arrays(self.loc, self.concentration)
        return [("loc", K.SK_SIN, k, 0.0, mu),
                ("concentration", K.SK_COS, 1.0, -bessel_ratio(k), mu)]

    def _in_support(self, x: Any) -> Any:
        return (x >= -math.pi) & (x < math.pi)

    def _log_prob(self, x: Any) -> Any:
        k = self.concentration
        out = k * (np.cos(x - self.loc) - 1.0) - np.log(2.0 * math.pi * special.i0e(k))
        return np.where((x >= -math.pi) & (x < math.pi), out, -np.inf)

    def _mean(self) -> Any:
        """loc (as torch: the circular mean, loc itself, not wrapped)."""
        return np.broadcast_to(self.loc, self.batch_shape).astype(np.float64)

    def _variance(self) -> Any:
        """The circular variance 1 - I1(kappa) / I0(kappa), as torch."""
        return np.broadcast_to(1.0 - bessel_ratio(self.concentration), self.batch_shape).copy()

    def _entropy(self) -> Any:
        k = self.concentration
        return np.broadcast_to(-k * bessel_ratio(k) + k + np.log(2.0 * math.pi * special.i0e(k)),
                               self.batch_shape).copy()

    has_mirror = True

    def mirror(self, x: Any) -> Any:
        """Antithetic partner: the reflection 2 loc - x about loc, wrapped onto [-pi, pi).

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> mc.VonMises(loc=0.5, concentration=2.0).mirror(np.array([0.0, 1.0]))
        array([1., 0.])
        """
        return _wrap_angle(2.0 * self.loc - x)

    def vi_transforms(self) -> Any:
        return {"loc": "identity", "concentration": "log"}
