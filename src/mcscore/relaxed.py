"""Continuous relaxations of Bernoulli and Categorical variables (the
Concrete / Gumbel-softmax distributions of Maddison et al. 2016 and Jang
et al. 2016), named and parameterised as in ``torch.distributions``.

    RelaxedBernoulli(temperature, probs=None, logits=None)
        z = sigmoid((logit + log u - log(1 - u)) / temperature), u ~ U(0, 1)
    RelaxedOneHotCategorical(temperature, probs=None, logits=None)
        z = softmax((log pi + g) / temperature), g iid Gumbel(0, 1)

As the temperature falls, z concentrates on the vertices {0, 1} / the
one-hot vectors and its law tends to the discrete one.  Draws are made in
the kernels of ``mcscore._vr``; :func:`mcscore.relaxed_grad` and
:func:`mcscore.rebar_grad` use the same constructions.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

from . import _docs, _vr
from . import _validation as V
from ._engine import vr_dist
from .distributions import Bernoulli, Categorical

__all__ = ["RelaxedBernoulli", "RelaxedOneHotCategorical"]


def _temperature(owner: str, t: Any) -> float:
    arr = V.param("temperature", t, "positive", owner=owner)
    if arr.ndim != 0:
        raise ValueError(f"{owner}: temperature must be a scalar, got shape {arr.shape}")
    return float(arr)


class _Relaxed:
    _base_cls: type[Any] | None = None
    _mode: int | None = None

    def __init__(self, temperature: float, probs: ArrayLike | None = None,
                 logits: ArrayLike | None = None) -> None:
        owner = type(self).__name__
        assert self._base_cls is not None
        self.temperature = _temperature(owner, temperature)
        self.base = self._base_cls(probs=probs, logits=logits)

    @property
    def probs(self) -> Any:
        return self.base.probs

    @property
    def logits(self) -> Any:
        return self.base.logits

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.base.batch_shape

    def __repr__(self) -> str:
        return f"{type(self).__name__}(temperature={self.temperature!r}, base={self.base!r})"

    @property
    def draw_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def _noise_params(self) -> NDArray[np.float64]:
        raise NotImplementedError

    def sample(self, n: int, rng: Any = None, *, hard: bool = False) -> NDArray[np.float64]:
        """``n`` relaxed draws, shape ``(n, *draw_shape)``; ``hard=True``
        returns the discrete draws H(z) of the same noise instead.

        ``rng``: None, an int, a SeedSequence or a Generator (SPEC 7)."""
        n = V.integer("n", n, minimum=0)
        gen = V.as_generator(rng)
        W = int(np.prod(self.draw_shape, dtype=np.int64))
        out = np.empty((1, 2 * W * max(n, 1)))
        prm = np.concatenate([[self.temperature], self._noise_params()])
        with gen.bit_generator.lock:
            _vr.prepare_round(vr_dist(self.base), [gen.bit_generator], np.zeros(1, np.int64),
                              np.zeros(1, np.int64), n, max(n, 1), 1, self._mode, W, prm, out)
        k = 1 if hard else 0
        z = out[0, k * W * n: (k + 1) * W * n].reshape(W, n).T
        return np.ascontiguousarray(z).reshape((n,) + self.draw_shape)

    def _check(self, x: Any) -> NDArray[np.float64]:
        x = V.as_real_array("x", x)
        ds = self.draw_shape
        if x.shape == ds:
            x = x[None]
        if x.shape[1:] != ds:
            raise ValueError(f"x must have shape (m, {', '.join(map(str, ds))}) for {self!r}, "
                             f"got {x.shape}")
        return x


class RelaxedBernoulli(_Relaxed):
    """RelaxedBernoulli(temperature, probs=None, logits=None): the binary
    Concrete distribution on (0, 1),
    z = sigmoid((logits + logistic noise) / temperature).

    Parameters
    ----------
    %(temperature)s
    probs : float or array_like, optional
        P(1) of the underlying Bernoulli, in [0, 1].
    %(logits_and_raises)s

    Examples
    --------
    >>> import mcscore as mc
    >>> q = mc.RelaxedBernoulli(0.5, probs=[0.2, 0.9])
    >>> z = q.sample(4, rng=0)
    >>> z.shape, bool(((z > 0) & (z < 1)).all())
    ((4, 2), True)
    """

    _base_cls = Bernoulli
    _mode = _vr.PREP_RELAXED_BERN

    @property
    def draw_shape(self) -> tuple[int, ...]:
        return tuple(self.base.batch_shape)

    def _noise_params(self) -> NDArray[np.float64]:
        p, q = self.base._pq()
        return np.ravel(np.log(p) - np.log(q))

    def log_prob(self, x: ArrayLike) -> NDArray[np.float64]:
        """Log density of each coordinate, shape ``(m, *batch_shape)``.

        %(log_prob_sections)s

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> q = mc.RelaxedBernoulli(1.0, probs=0.5)      # temperature 1, p = 1/2: the uniform density
        >>> np.allclose(q.log_prob(np.array([0.3, 0.7])), 0.0)
        True
        """
        x = self._check(x)
        t = self.temperature
        p, q = self.base._pq()
        th = np.log(p) - np.log(q)
        with np.errstate(divide="ignore", invalid="ignore"):
            lg = np.log(x) - np.log1p(-x)
            el = t * lg - th
            # log logistic density: -|l| - 2 log(1 + exp(-|l|))
            out = (math.log(t) - np.abs(el) - 2 * np.log1p(np.exp(-np.abs(el)))
                   - np.log(x) - np.log1p(-x))
        return np.where((x > 0) & (x < 1), out, -np.inf)


class RelaxedOneHotCategorical(_Relaxed):
    """RelaxedOneHotCategorical(temperature, probs=None, logits=None): the
    Concrete distribution on the simplex,
    z = softmax((log pi + Gumbel noise) / temperature).

    Parameters
    ----------
    %(temperature)s
    probs : float or array_like, optional
        Non-negative weights of the K categories on the last axis.
    %(logits_and_raises)s

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> q = mc.RelaxedOneHotCategorical(0.5, probs=[0.2, 0.3, 0.5])
    >>> z = q.sample(4, rng=0)
    >>> z.shape, bool(np.allclose(z.sum(axis=-1), 1.0))
    ((4, 3), True)
    """

    _base_cls = Categorical
    _mode = _vr.PREP_RELAXED_CAT

    @property
    def draw_shape(self) -> tuple[int, ...]:
        return tuple(self.base.batch_shape) + (self.base.n_categories,)

    def _noise_params(self) -> NDArray[np.float64]:
        return np.ravel(self.base.logits)

    def log_prob(self, x: ArrayLike) -> NDArray[np.float64]:
        """Log density on the simplex (w.r.t. Lebesgue measure on the first
        K - 1 coordinates), shape ``(m, *batch_shape)``.

        %(log_prob_sections)s

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> q = mc.RelaxedOneHotCategorical(1.0, probs=[0.5, 0.5])
        >>> np.allclose(q.log_prob(np.array([[0.3, 0.7]])), 0.0)   # K = 2, t = 1: uniform on (0, 1)
        True
        """
        x = self._check(x)
        t = self.temperature
        kk = self.base.n_categories
        lp = self.base.logits
        with np.errstate(divide="ignore", invalid="ignore"):
            lx = np.log(x)
            a = lp - (t + 1) * lx
            out = (special.gammaln(kk) + (kk - 1) * math.log(t) + a.sum(-1)
                   - kk * special.logsumexp(lp - t * lx, axis=-1))
        ok = (x > 0).all(-1) & (np.abs(x.sum(-1) - 1) < 1e-8)
        return np.where(ok, out, -np.inf)

# The fragments the docstrings above name by %(name)s (see mcscore._docs), filled in
# once, when the module is imported.
_DOC_FRAGMENTS = {
    "temperature": """\
temperature : float
    The relaxation's temperature (> 0, a scalar); draws approach the
    discrete ones as it goes to 0.""",
    "logits_and_raises": """\
logits : float or array_like, optional
    The logits; give exactly one of ``probs`` and ``logits``.

Raises
------
ValueError
    A temperature that is not a positive scalar, both or neither of
    ``probs`` and ``logits``, or a value outside its range.""",
    "log_prob_sections": """\
Parameters
----------
x : array_like, shape ``(m, *draw_shape)``
    Relaxed draws (one draw without the leading axis is accepted).

Returns
-------
numpy.ndarray, shape ``(m, *batch_shape)``
    -inf outside the support.

Raises
------
ValueError
    ``x`` of the wrong shape.
TypeError
    ``x`` that is not real numbers.""",
}
_docs.fill_module(globals(), **_DOC_FRAGMENTS)
