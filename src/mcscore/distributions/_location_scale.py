"""The location-scale families and their folded forms: Normal, LogNormal,
Laplace, Gumbel, Cauchy, StudentT (shared plumbing ``_LocScale``, and
``_Rational`` for the scores rational in x - loc), HalfNormal and
HalfCauchy (``_HalfScale``)."""
from __future__ import annotations

from typing import Any

import math

import numpy as np
from scipy import special

from .. import _docs
from .. import _kernels as K
from .. import _validation as V
from .. import _vr
from ._base import NONNEGATIVE, POSITIVE, REAL, Distribution


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
