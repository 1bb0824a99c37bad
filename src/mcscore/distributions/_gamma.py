"""The gamma family and its relatives on the positive half-line and the
unit interval: Exponential, Gamma, Chi2, InverseGamma, Weibull and Beta."""
from __future__ import annotations

from typing import Any

import math

import numpy as np
from scipy import special

from .. import _docs
from .. import _kernels as K
from .. import _vr
from ._base import NONNEGATIVE, POSITIVE, Distribution, Support


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
