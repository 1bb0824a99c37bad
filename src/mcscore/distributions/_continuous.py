"""The continuous univariate families: the location-scale families
(Normal, LogNormal, Laplace), Exponential, Gamma and Beta."""
from __future__ import annotations

import math

import numpy as np
from scipy import special

from .. import _kernels as K
from .. import _validation as V
from .. import _vr
from ._base import Distribution


# ---------------------------------------------------------------------------
# continuous families
# ---------------------------------------------------------------------------

class _LocScale(Distribution):
    """Shared plumbing of the location-scale families (loc real, scale > 0,
    unit blocks [loc, scale])."""

    support = "x any real number"
    arg_constraints = {"loc": "real", "scale": "positive"}

    def __init__(self, loc, scale):
        super().__init__(loc=loc, scale=scale)

    # the pathwise tangent kinds of loc and scale: x = loc + scale * eps (the
    # default, dx/dloc = 1 and dx/dscale = (x - loc) / scale), or its exp
    pathwise_tangents = (_vr.TK_ONE, _vr.TK_NSCALE)

    def pathwise_spec(self):
        b = self._draw_broadcast
        return [("loc", self.pathwise_tangents[0], 0.0, 0.0),
                ("scale", self.pathwise_tangents[1], b(self.loc), b(self.scale))]

    def _in_support(self, x):
        return np.ones(x.shape, dtype=bool)  # infinite x is checked by the caller


class Normal(_LocScale):
    """Normal(loc, scale): density exp(-(x-loc)^2 / (2 scale^2)) / (scale sqrt(2 pi))."""

    family = K.MC_NORMAL
    _log = False

    def _terms(self):
        mu, s = np.broadcast_arrays(self.loc, self.scale)
        s2 = s * s
        aff, quad = (K.SK_LOG_AFFINE, K.SK_LOG_QUAD) if self._log else (K.SK_AFFINE, K.SK_QUAD)
        return [
            ("loc", aff, 1.0 / s2, -mu / s2, 0.0),
            ("scale", quad, 1.0 / (s2 * s), -1.0 / s, mu),
        ]

    def _log_prob(self, x):
        z = (x - self.loc) / self.scale
        return -0.5 * z * z - np.log(self.scale) - 0.5 * math.log(2 * math.pi)

    # The score is a*t(x) + b with a = 1/scale**2 and a*(t(x) - loc)**2 + b with
    # a = 1/scale**3: outside this range of scales the coefficients over- or
    # underflow in double precision.
    SCALE_RANGE = (1e-100, 1e100)
    # Draws loc + scale*z must resolve the distribution: scale >= 2**-40 |loc|
    # keeps about 4000 representable values per standard deviation.
    RESOLUTION = 2.0**-40

    def _check_differentiable(self):
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

    def mean(self):
        return np.broadcast_to(self.loc, self.batch_shape).copy()

    has_rsample = has_mirror = has_mean_tangents = True
    rsample_through_gammas = False

    def mean_tangents(self):
        b = self._draw_broadcast
        return {"loc": b(1.0), "scale": b(0.0)}

    def mirror(self, x):
        return 2 * self.loc - x

    # -- cdf / icdf (draws by inversion, sampler="sobol") -------------------
    def cdf(self, value):
        """P(X <= value), value broadcast against the batch shape."""
        x = np.asarray(value, dtype=np.float64)
        if not self._log:
            return special.ndtr((x - self.loc) / self.scale)
        with np.errstate(divide="ignore"):
            lx = np.log(np.maximum(x, 0.0))
        return special.ndtr((lx - self.loc) / self.scale)

    def icdf(self, value):
        """The quantile function loc + scale ndtri(value) (exp of it for
        LogNormal), value in [0, 1]."""
        z = self.loc + self.scale * special.ndtri(self._unit_value(value))
        return np.exp(z) if self._log else z


class LogNormal(Normal):
    """LogNormal(loc, scale): log x ~ Normal(loc, scale)."""

    support = "x > 0"

    family = K.MC_LOGNORMAL
    _log = True
    pathwise_tangents = (_vr.TK_LNLOC, _vr.TK_LNSCALE)

    def _in_support(self, x):
        return x > 0

    def _log_prob(self, x):
        lx = np.log(x)
        out = super()._log_prob(lx) - lx
        return np.where(x > 0, out, -np.inf)

    def mean(self):
        return np.broadcast_to(np.exp(self.loc + 0.5 * self.scale**2), self.batch_shape).copy()

    def mean_tangents(self):
        b = self._draw_broadcast
        m = np.exp(self.loc + 0.5 * self.scale**2)
        return {"loc": b(m), "scale": b(self.scale * m)}

    def mirror(self, x):
        return np.exp(2 * self.loc - np.log(x))


class Exponential(Distribution):
    """Exponential(rate): density rate * exp(-rate x) on x > 0."""

    support = "x >= 0"

    family = K.MC_EXPONENTIAL
    arg_constraints = {"rate": "positive"}

    def __init__(self, rate):
        super().__init__(rate=rate)

    def _terms(self):
        return [("rate", K.SK_AFFINE, -1.0, 1.0 / self.rate, 0.0)]

    def _log_prob(self, x):
        return np.where(x >= 0, np.log(self.rate) - self.rate * x, -np.inf)

    def mean(self):
        return 1.0 / self.rate

    has_rsample = has_mean_tangents = True

    def mean_tangents(self):
        return {"rate": self._draw_broadcast(-1.0 / self.rate**2)}

    def pathwise_spec(self):
        return [("rate", _vr.TK_NEG_X_OVER, self._draw_broadcast(self.rate), 0.0)]

    # -- cdf / icdf (draws by inversion, sampler="sobol") -------------------
    def cdf(self, value):
        """P(X <= value) = 1 - exp(-rate value) for value >= 0."""
        x = np.maximum(np.asarray(value, dtype=np.float64), 0.0)
        return -np.expm1(-self.rate * x)

    def icdf(self, value):
        """The quantile function -log(1 - value) / rate."""
        return -np.log1p(-self._unit_value(value)) / self.rate


class Gamma(Distribution):
    """Gamma(concentration, rate): density rate^a x^(a-1) e^(-rate x) / Gamma(a)."""

    support = "x > 0"

    family = K.MC_GAMMA
    arg_constraints = {"concentration": "positive", "rate": "positive"}

    def __init__(self, concentration, rate):
        super().__init__(concentration=concentration, rate=rate)

    def _terms(self):
        a, r = np.broadcast_arrays(self.concentration, self.rate)
        return [
            ("concentration", K.SK_LOG_AFFINE, 1.0, np.log(r) - special.digamma(a), 0.0),
            ("rate", K.SK_AFFINE, -1.0, a / r, 0.0),
        ]

    def _log_prob(self, x):
        a, r = self.concentration, self.rate
        out = a * np.log(r) + special.xlogy(a - 1, x) - r * x - special.gammaln(a)
        return np.where(x >= 0, out, -np.inf)

    def mean(self):
        return np.broadcast_to(self.concentration / self.rate, self.batch_shape).copy()

    has_rsample = has_mean_tangents = True

    def mean_tangents(self):
        b = self._draw_broadcast
        return {"concentration": b(1.0 / self.rate),
                "rate": b(-self.concentration / self.rate**2)}

    def pathwise_spec(self):
        b = self._draw_broadcast
        return [("concentration", _vr.TK_GAMMA_CONC, b(self.concentration), b(self.rate)),
                ("rate", _vr.TK_NEG_X_OVER, b(self.rate), 0.0)]

    # -- cdf / icdf (draws by inversion, sampler="sobol") -------------------
    def cdf(self, value):
        """P(X <= value): the regularised lower incomplete gamma function."""
        x = np.maximum(np.asarray(value, dtype=np.float64), 0.0)
        return special.gammainc(self.concentration, self.rate * x)

    def icdf(self, value):
        """The quantile function, by scipy.special.gammaincinv."""
        return special.gammaincinv(self.concentration, self._unit_value(value)) / self.rate


class Beta(Distribution):
    """Beta(concentration1, concentration0): density x^(c1-1) (1-x)^(c0-1) / B(c1, c0)."""

    support = "0 < x < 1"

    family = K.MC_BETA
    arg_constraints = {"concentration1": "positive", "concentration0": "positive"}

    def __init__(self, concentration1, concentration0):
        super().__init__(concentration1=concentration1, concentration0=concentration0)

    def _terms(self):
        a, b = np.broadcast_arrays(self.concentration1, self.concentration0)
        dab = special.digamma(a + b)
        return [
            ("concentration1", K.SK_LOG_AFFINE, 1.0, dab - special.digamma(a), 0.0),
            ("concentration0", K.SK_LOG1M_AFFINE, 1.0, dab - special.digamma(b), 0.0),
        ]

    def _log_prob(self, x):
        a, b = self.concentration1, self.concentration0
        out = special.xlogy(a - 1, x) + special.xlog1py(b - 1, -x) - special.betaln(a, b)
        return np.where((x >= 0) & (x <= 1), out, -np.inf)

    def mean(self):
        a, b = self.concentration1, self.concentration0
        return np.broadcast_to(a / (a + b), self.batch_shape).copy()

    has_rsample = has_mean_tangents = True
    # pathwise_grad draws Beta variates as normalised Gamma variates
    rsample_through_gammas = True

    def mean_tangents(self):
        a1, a0 = self.concentration1, self.concentration0
        return {"concentration1": self._draw_broadcast(a0 / (a1 + a0) ** 2),
                "concentration0": self._draw_broadcast(-a1 / (a1 + a0) ** 2)}

    def pathwise_spec(self):
        return [("concentration1", _vr.TK_AUX0, 0.0, 0.0),
                ("concentration0", _vr.TK_AUX1, 0.0, 0.0)]

    # -- cdf / icdf (draws by inversion, sampler="sobol") -------------------
    def cdf(self, value):
        """P(X <= value): the regularised incomplete beta function."""
        x = np.clip(np.asarray(value, dtype=np.float64), 0.0, 1.0)
        return special.betainc(self.concentration1, self.concentration0, x)

    def icdf(self, value):
        """The quantile function, by scipy.special.betaincinv."""
        return special.betaincinv(self.concentration1, self.concentration0,
                                  self._unit_value(value))


# ---------------------------------------------------------------------------
# added by the recipe of docs/design.md ("Adding a family")
# ---------------------------------------------------------------------------

class Laplace(_LocScale):
    """Laplace(loc, scale): density exp(-|x - loc| / scale) / (2 scale).

    Drawn by NumPy's C sampler (``random_laplace``: inversion of one
    uniform).  The score is ``sign(x - loc) / scale`` w.r.t. loc (0 at
    x = loc, as torch's autograd gives) and ``-1/scale + |x - loc| / scale**2``
    w.r.t. scale."""

    family = K.MC_LAPLACE
    has_mirror = True
    has_rsample = True
    has_mean_tangents = True

    # The score holds 1/scale**2: beyond this range of scales it over- or
    # underflows in double precision.
    SCALE_RANGE = (1e-150, 1e150)

    def _terms(self):
        mu, s = np.broadcast_arrays(self.loc, self.scale)
        return [
            ("loc", K.SK_SIGN, 1.0 / s, 0.0, mu),
            ("scale", K.SK_ABS, 1.0 / (s * s), -1.0 / s, mu),
        ]

    def _log_prob(self, x):
        return -np.abs(x - self.loc) / self.scale - np.log(2.0 * self.scale)

    def _check_differentiable(self):
        lo, hi = self.SCALE_RANGE
        s = np.asarray(self.scale)
        if not ((s >= lo) & (s <= hi)).all():
            raise ValueError(
                f"Laplace: scale must be in [{lo:g}, {hi:g}] to estimate gradients (got "
                f"{float(s[~((s >= lo) & (s <= hi))].flat[0])!r}): the score's term "
                "1/scale**2 over- or underflows in double precision beyond; rescale the "
                "problem (draw x/c and use f(c*x))")

    def mean(self):
        return np.broadcast_to(self.loc, self.batch_shape).copy()

    def variance(self):
        return np.broadcast_to(2.0 * self.scale**2, self.batch_shape).copy()

    def stddev(self):
        return np.sqrt(self.variance())

    def entropy(self):
        return np.broadcast_to(1.0 + np.log(2.0 * self.scale), self.batch_shape).copy()

    def cdf(self, value):
        """P(X <= value), broadcasting value against the batch shape."""
        z = (np.asarray(value, dtype=np.float64) - self.loc) / self.scale
        return 0.5 - 0.5 * np.sign(z) * np.expm1(-np.abs(z))

    def icdf(self, value):
        """The quantile function (value in [0, 1]); the inverse of cdf."""
        u = V.param("value", value, "unit_interval", owner="Laplace.icdf")
        # log(2 u) below the median and -log(2 (1 - u)) above: exact in both tails
        with np.errstate(divide="ignore", invalid="ignore"):
            low = np.log(2.0 * np.minimum(u, 0.5))
            high = -np.log(2.0 * np.minimum(1.0 - u, 0.5))
        return self.loc + self.scale * np.where(u < 0.5, low, high)

    # -- capabilities (the estimators' protocol) --------------------------
    def mean_tangents(self):
        """{param: d E[x_c] / d param, arrays of draw_shape}: E[x] = loc."""
        ds = self.draw_shape
        return {"loc": np.ones(ds), "scale": np.zeros(ds)}

    def mirror(self, x):
        """Antithetic partner: the reflection 2 loc - x (Laplace is symmetric)."""
        return 2.0 * self.loc - x

    def vi_transforms(self):
        """The unconstrained coordinates vi.fit optimises: loc as is, log scale."""
        return {"loc": "identity", "scale": "log"}


def _scale_range_check(owner, name, v, bounds, why):
    """Raise the clear error of a parameter outside the range in which its
    score terms are representable in double precision."""
    lo, hi = bounds
    v = np.asarray(v, dtype=np.float64)
    bad = ~((v >= lo) & (v <= hi))
    if bad.any():
        raise ValueError(f"{owner}: {name} must be in [{lo:g}, {hi:g}] to estimate gradients "
                         f"(got {float(v[bad].flat[0])!r}): {why}")


class HalfNormal(Distribution):
    """HalfNormal(scale): |z| for z ~ Normal(0, scale); density
    sqrt(2 / pi) / scale * exp(-x^2 / (2 scale^2)) on x >= 0.

    Drawn as |scale * z| with NumPy's C normal sampler, one per draw.  The
    score ``-1/scale + x**2 / scale**3`` is one quadratic term."""

    support = "x >= 0"

    family = K.MC_HALF_NORMAL
    arg_constraints = {"scale": "positive"}

    def __init__(self, scale):
        super().__init__(scale=scale)

    # the score holds 1/scale**3
    SCALE_RANGE = (1e-100, 1e100)

    def _terms(self):
        s = np.asarray(self.scale, dtype=np.float64)
        return [("scale", K.SK_QUAD, 1.0 / (s * s * s), -1.0 / s, 0.0)]

    def _in_support(self, x):
        return x >= 0

    def _log_prob(self, x):
        z = x / self.scale
        out = -0.5 * z * z - np.log(self.scale) + 0.5 * math.log(2.0 / math.pi)
        return np.where(x >= 0, out, -np.inf)

    def _check_differentiable(self):
        _scale_range_check("HalfNormal", "scale", self.scale, self.SCALE_RANGE,
                           "the score's term 1/scale**3 over- or underflows in double "
                           "precision beyond; rescale the problem (draw x/c and use f(c*x))")

    def mean(self):
        return np.broadcast_to(self.scale * math.sqrt(2.0 / math.pi), self.batch_shape).copy()

    def variance(self):
        return np.broadcast_to(self.scale**2 * (1.0 - 2.0 / math.pi), self.batch_shape).copy()

    has_rsample = has_mean_tangents = True

    def mean_tangents(self):
        """d E[x] / d scale = sqrt(2 / pi)."""
        return {"scale": self._draw_broadcast(math.sqrt(2.0 / math.pi))}

    def pathwise_spec(self):
        """x = scale |eps|: dx/dscale = x / scale (the Normal scale tangent at loc 0)."""
        return [("scale", _vr.TK_NSCALE, 0.0, self._draw_broadcast(self.scale))]

    def vi_transforms(self):
        return {"scale": "log"}

    # -- cdf / icdf (draws by inversion, sampler="sobol") -------------------
    def cdf(self, value):
        """P(X <= value) = erf(value / (scale sqrt 2)) for value >= 0."""
        x = np.maximum(np.asarray(value, dtype=np.float64), 0.0)
        return special.erf(x / (self.scale * math.sqrt(2.0)))

    def icdf(self, value):
        """The quantile function scale sqrt(2) erfinv(value) (erfcinv(1 -
        value) above the median: exact in the upper tail)."""
        u = self._unit_value(value)
        z = np.where(u < 0.5, special.erfinv(u), special.erfcinv(1.0 - u))
        return self.scale * math.sqrt(2.0) * z


class Chi2(Distribution):
    """Chi2(df): Gamma(df / 2, rate 1/2), as in torch; density
    x^(df/2 - 1) e^(-x/2) / (2^(df/2) Gamma(df/2)) on x > 0.

    Drawn by NumPy's C sampler (``random_chisquare``).  The score w.r.t. df
    is log-affine: ``(log x - log 2 - digamma(df / 2)) / 2``."""

    support = "x > 0"

    family = K.MC_CHI2
    arg_constraints = {"df": "positive"}

    def __init__(self, df):
        super().__init__(df=df)

    def _terms(self):
        k = np.asarray(self.df, dtype=np.float64)
        return [("df", K.SK_LOG_AFFINE, 0.5, -0.5 * (math.log(2.0) + special.digamma(0.5 * k)),
                 0.0)]

    def _in_support(self, x):
        return x >= 0

    def _log_prob(self, x):
        h = 0.5 * self.df
        out = special.xlogy(h - 1, x) - 0.5 * x - h * math.log(2.0) - special.gammaln(h)
        return np.where(x >= 0, out, -np.inf)

    def mean(self):
        return np.broadcast_to(self.df, self.batch_shape).astype(np.float64)

    def variance(self):
        return np.broadcast_to(2.0 * self.df, self.batch_shape).astype(np.float64)

    has_mean_tangents = True

    def mean_tangents(self):
        """d E[x] / d df = 1."""
        return {"df": self._draw_broadcast(1.0)}

    def vi_transforms(self):
        return {"df": "log"}

    # -- cdf / icdf (draws by inversion, sampler="sobol") -------------------
    def cdf(self, value):
        """P(X <= value): Gamma(df / 2, rate 1/2)'s cdf."""
        x = np.maximum(np.asarray(value, dtype=np.float64), 0.0)
        return special.gammainc(0.5 * self.df, 0.5 * x)

    def icdf(self, value):
        """The quantile function 2 gammaincinv(df / 2, value)."""
        return 2.0 * special.gammaincinv(0.5 * self.df, self._unit_value(value))


class InverseGamma(Distribution):
    """InverseGamma(concentration, rate): 1 / x ~ Gamma(concentration, rate),
    as in torch; density rate^a x^(-a-1) e^(-rate/x) / Gamma(a) on x > 0.

    Drawn as rate / g with g from NumPy's C standard-gamma sampler.  The
    score is ``log(rate) - digamma(a) - log x`` w.r.t. the concentration a
    and ``a / rate - 1 / x`` w.r.t. the rate (the reciprocal term kind
    ``SK_RECIP``)."""

    arg_constraints = {"concentration": "positive", "rate": "positive"}
    family = K.MC_INVERSE_GAMMA
    support = "x > 0"

    def __init__(self, concentration, rate):
        super().__init__(concentration=concentration, rate=rate)

    def _terms(self):
        a, r = np.broadcast_arrays(self.concentration, self.rate)
        dlog = np.log(r) - special.digamma(a)  # log rate - digamma(a)
        return [("concentration", K.SK_LOG_AFFINE, -1.0, dlog, 0.0),
                ("rate", K.SK_RECIP, -1.0, a / r, 0.0)]

    def _in_support(self, x):
        return x > 0

    def _log_prob(self, x):
        a, r = self.concentration, self.rate
        with np.errstate(divide="ignore", invalid="ignore"):
            out = a * np.log(r) - special.gammaln(a) - (a + 1) * np.log(x) - r / x
        return np.where(x > 0, out, -np.inf)

    def mean(self):
        """rate / (concentration - 1), infinite for concentration <= 1."""
        a, r = np.broadcast_arrays(self.concentration, self.rate)
        with np.errstate(divide="ignore"):
            return np.where(a > 1, r / np.where(a > 1, a - 1, 1.0), np.inf)

    def variance(self):
        """rate^2 / ((a - 1)^2 (a - 2)), infinite for concentration <= 2."""
        a, r = np.broadcast_arrays(self.concentration, self.rate)
        ok = a > 2
        a1 = np.where(ok, a, 3.0)
        return np.where(ok, r * r / ((a1 - 1) ** 2 * (a1 - 2)), np.inf)

    def vi_transforms(self):
        return {"concentration": "log", "rate": "log"}

    # -- cdf / icdf (draws by inversion, sampler="sobol") -------------------
    def cdf(self, value):
        """P(X <= value) = Q(concentration, rate / value) for value > 0."""
        x = np.asarray(value, dtype=np.float64)
        with np.errstate(divide="ignore"):
            t = np.where(x > 0, self.rate / np.maximum(x, 0.0), np.inf)
        return special.gammaincc(self.concentration, t)

    def icdf(self, value):
        """The quantile function rate / gammainccinv(concentration, value)."""
        with np.errstate(divide="ignore"):
            return self.rate / special.gammainccinv(self.concentration, self._unit_value(value))


class Gumbel(_LocScale):
    """Gumbel(loc, scale): density exp(-(z + exp(-z))) / scale with
    z = (x - loc) / scale.

    Drawn by NumPy's C sampler (``random_gumbel``: inversion of one uniform).
    The score is ``-expm1(-z) / scale`` w.r.t. loc and
    ``(-z expm1(-z) - 1) / scale`` w.r.t. scale (the exponential term kinds
    ``SK_EXPM1``, ``SK_XEXPM1``)."""

    family = K.MC_GUMBEL
    has_rsample = has_mean_tangents = True

    # the score holds 1/scale**2
    SCALE_RANGE = (1e-150, 1e150)

    def _terms(self):
        mu, s = np.broadcast_arrays(self.loc, self.scale)
        r = -1.0 / s
        return [
            ("loc", K.SK_EXPM1, r, r, mu),
            ("scale", K.SK_XEXPM1, r, r / s, mu),
            ("scale", K.SK_AFFINE, 0.0, r, 0.0),
        ]

    def _log_prob(self, x):
        z = (x - self.loc) / self.scale
        return -(z + np.exp(-z)) - np.log(self.scale)

    def _check_differentiable(self):
        _scale_range_check("Gumbel", "scale", self.scale, self.SCALE_RANGE,
                           "the score's term 1/scale**2 over- or underflows in double "
                           "precision beyond; rescale the problem (draw x/c and use f(c*x))")

    def mean(self):
        return np.broadcast_to(self.loc + np.euler_gamma * self.scale, self.batch_shape).copy()

    def variance(self):
        return np.broadcast_to(math.pi**2 / 6.0 * self.scale**2, self.batch_shape).copy()

    def mean_tangents(self):
        """E[x] = loc + gamma scale (gamma: Euler's constant)."""
        b = self._draw_broadcast
        return {"loc": b(1.0), "scale": b(np.euler_gamma)}

    def vi_transforms(self):
        return {"loc": "identity", "scale": "log"}

    # -- cdf / icdf (draws by inversion, sampler="sobol") -------------------
    def cdf(self, value):
        """P(X <= value) = exp(-exp(-(value - loc) / scale))."""
        z = (np.asarray(value, dtype=np.float64) - self.loc) / self.scale
        with np.errstate(over="ignore"):
            return np.exp(-np.exp(-z))

    def icdf(self, value):
        """The quantile function loc - scale log(-log(value))."""
        with np.errstate(divide="ignore"):
            return self.loc - self.scale * np.log(-np.log(self._unit_value(value)))


class Weibull(Distribution):
    """Weibull(scale, concentration), as in torch: density
    (k / scale) (x / scale)^(k-1) exp(-(x / scale)^k) on x > 0, k the
    concentration.

    Drawn as scale times NumPy's standard Weibull variate (``random_weibull``).
    With L = log(x / scale) the score is ``(k / scale) expm1(k L)`` w.r.t. the
    scale and ``1/k - L expm1(k L)`` w.r.t. k (the term kinds ``SK_LOG_EXPM1``,
    ``SK_LOG_XEXPM1``)."""

    support = "x > 0"

    family = K.MC_WEIBULL
    arg_constraints = {"scale": "positive", "concentration": "positive"}

    def __init__(self, scale, concentration):
        super().__init__(scale=scale, concentration=concentration)

    def _terms(self):
        lam, k = np.broadcast_arrays(self.scale, self.concentration)
        ll = np.log(lam)
        return [
            ("scale", K.SK_LOG_EXPM1, k, k / lam, ll),
            ("concentration", K.SK_LOG_XEXPM1, k, -1.0, ll),
            ("concentration", K.SK_AFFINE, 0.0, 1.0 / k, 0.0),
        ]

    def _in_support(self, x):
        return x > 0

    def _log_prob(self, x):
        lam, k = self.scale, self.concentration
        with np.errstate(divide="ignore", invalid="ignore"):
            lz = np.log(x) - np.log(lam)
            out = np.log(k) - np.log(lam) + (k - 1) * lz - np.exp(k * lz)
        return np.where(x > 0, out, -np.inf)

    def _moment_factor(self, j):
        return special.gamma(1.0 + j / self.concentration)

    def mean(self):
        return np.broadcast_to(self.scale * self._moment_factor(1), self.batch_shape).copy()

    def variance(self):
        g1, g2 = self._moment_factor(1), self._moment_factor(2)
        return np.broadcast_to(self.scale**2 * (g2 - g1 * g1), self.batch_shape).copy()

    has_mean_tangents = True

    def mean_tangents(self):
        """E[x] = scale Gamma(1 + 1/k)."""
        k = self.concentration
        g1 = self._moment_factor(1)
        b = self._draw_broadcast
        return {"scale": b(g1),
                "concentration": b(-self.scale * g1 * special.digamma(1.0 + 1.0 / k) / k**2)}

    def vi_transforms(self):
        return {"scale": "log", "concentration": "log"}

    # -- cdf / icdf (draws by inversion, sampler="sobol") -------------------
    def cdf(self, value):
        """P(X <= value) = 1 - exp(-(value / scale)^concentration), value >= 0."""
        x = np.maximum(np.asarray(value, dtype=np.float64), 0.0)
        return -np.expm1(-(x / self.scale) ** self.concentration)

    def icdf(self, value):
        """The quantile function scale (-log(1 - value))^(1 / concentration)."""
        return self.scale * (-np.log1p(-self._unit_value(value))) ** (1.0 / self.concentration)
