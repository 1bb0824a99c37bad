"""The families on a bounded support: Uniform (a support that moves with
its parameters) and the circular VonMises."""
from __future__ import annotations

from typing import Any

import math

import numpy as np
from scipy import special

from .. import _docs
from .. import _kernels as K
from .. import _vr
from ._base import Distribution, Support, _index_map


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
