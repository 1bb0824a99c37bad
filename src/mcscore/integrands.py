"""Built-in compiled integrands, fused into the kernels.

An :class:`Integrand` is a weighted sum of terms, each a cheap function of
one draw; the kernel evaluates it block by block right after drawing, so no
array of samples is ever built and memory stays O(1) in n.  Integrands add
and scale like functions::

    import mcscore as mc
    from mcscore import integrands as I

    f = I.power(2) - 3 * I.sin() + 1.0          # x^2 - 3 sin(x) + 1
    mc.score_grad(f, mc.Normal(0.5, 2.0), n=10**7, rng=0)

Coordinates: ``coord`` indexes the flattened draw (C order of
``dist.draw_shape``); for a scalar draw it is 0.  Weights and centres
broadcast to the draw's shape.  Every integrand is also an ordinary
vectorised Python callable (``f(x)`` for ``x`` of shape ``(m, *draw_shape)``)
that evaluates the same function in the same kernel code.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable

import numpy as np
import numpy.typing as npt

from . import _docs
from . import _kernels as K
from . import _validation as V

__all__ = [
    "Integrand", "constant", "polynomial", "power", "linear", "quadratic", "sum_of_squares",
    "sin", "cos", "exp", "log1p", "indicator", "call", "put", "digital_call", "digital_put",
]


class _Term:
    __slots__ = ("kind", "coord", "params", "coef", "vector")

    def __init__(self, kind: int, coord: int = 0, params: tuple[float, ...] = (),
                 coef: float = 1.0, vector: Any = None) -> None:
        self.kind = kind
        self.coord = coord
        self.params = params          # scalars (tuple of float) for one-coordinate terms
        self.coef = float(coef)
        self.vector = vector          # per-coordinate arrays (weights, centres, matrix)

    def scaled(self, c: float) -> _Term:
        return _Term(self.kind, self.coord, self.params, self.coef * c, self.vector)


class Integrand:
    """A fused integrand: ``constant + sum_t coef_t * term_t(x)``.

    Build one with the functions of this module (:func:`power`,
    :func:`sin`, :func:`call`, ...); combine with ``+``, ``-`` and
    multiplication by a finite number.  Pass it as ``f`` to
    :func:`~mcscore.score_grad` and the other estimators: the kernel then
    evaluates it right after each draw, with no Python call per block.

    Parameters
    ----------
    terms : sequence of term objects, optional
        The terms built by this module's functions (not constructed by hand).
    constant : float, default 0.0
        The constant added to the sum of the terms.
    name : str or None, optional
        A label shown in the ``repr`` of a one-term integrand.

    Raises
    ------
    ValueError
        When scaled by a non-finite number (``inf * f``), or, at evaluation,
        when a term does not fit the draw shape (a ``coord`` out of range,
        weights that do not broadcast, a matrix of the wrong shape).
    TypeError
        When ``constant`` is not a real number.

    Examples
    --------
    >>> import numpy as np
    >>> from mcscore import integrands as I
    >>> f = I.power(2) - 3 * I.sin() + 1.0          # x^2 - 3 sin(x) + 1
    >>> x = np.array([[0.0], [1.0]])
    >>> np.allclose(f(x), x[:, 0] ** 2 - 3 * np.sin(x[:, 0]) + 1)
    True
    """

    def __init__(self, terms: Any = (), constant: float = 0.0, name: str | None = None) -> None:
        self._terms = tuple(terms)
        self._constant = float(constant)
        self._name = name

    # -- algebra -----------------------------------------------------------
    def __add__(self, other: Integrand | float) -> Integrand:
        if isinstance(other, Integrand):
            return Integrand(self._terms + other._terms, self._constant + other._constant)
        if isinstance(other, numbers.Real) and not isinstance(other, bool):
            return Integrand(self._terms, self._constant + float(other))
        return NotImplemented

    __radd__ = __add__

    def __neg__(self) -> Integrand:
        return self * -1.0

    def __sub__(self, other: Integrand | float) -> Integrand:
        return self + (-other)

    def __rsub__(self, other: float) -> Integrand:
        return (-self) + other

    def __mul__(self, c: float) -> Integrand:
        if isinstance(c, numbers.Real) and not isinstance(c, bool):
            c = float(c)
            if not np.isfinite(c):
                raise ValueError(f"an integrand can only be scaled by a finite number, got {c}")
            return Integrand([t.scaled(c) for t in self._terms], self._constant * c)
        return NotImplemented

    __rmul__ = __mul__

    def __repr__(self) -> str:
        if self._name and len(self._terms) <= 1:
            return f"Integrand({self._name})"
        return f"Integrand({len(self._terms)} terms, constant={self._constant})"

    # -- lowering to the kernel ----------------------------------------------
    def _lower(self, draw_shape: tuple[int, ...]) -> Any:
        """(kinds, cols, offsets, coefs, params, constant) for a draw of the
        given shape; raises ValueError when a term does not fit it."""
        ds = int(np.prod(draw_shape, dtype=np.int64))
        kinds, cols, offs, coefs, params = [], [], [], [], []
        for t in self._terms:
            if t.kind in (K.IK_POLY, K.IK_INDICATOR, K.IK_CALL, K.IK_PUT,
                          K.IK_DIGITAL_CALL, K.IK_DIGITAL_PUT):
                if not 0 <= t.coord < ds:
                    raise ValueError(
                        f"integrand coord={t.coord} is out of range for draws of shape "
                        f"{draw_shape} ({ds} coordinate(s))"
                    )
                p = np.asarray(t.params, dtype=np.float64)
            else:
                vecs = []
                for name, v in t.vector:
                    if name == "A":
                        v = np.asarray(v, dtype=np.float64)
                        if v.shape != (ds, ds):
                            raise ValueError(
                                f"quadratic: A must have shape ({ds}, {ds}) for draws of shape "
                                f"{draw_shape}, got {v.shape}"
                            )
                        vecs.append(v.ravel())
                        continue
                    try:
                        vecs.append(np.broadcast_to(np.asarray(v, np.float64), draw_shape).ravel())
                    except ValueError:
                        raise ValueError(
                            f"integrand {name} of shape {np.shape(v)} does not broadcast to the "
                            f"draw shape {draw_shape}"
                        ) from None
                p = np.concatenate(vecs) if vecs else np.zeros(0)
            kinds.append(t.kind)
            cols.append(t.coord)
            offs.append(sum(len(q) for q in params))  # type: ignore[misc]
            coefs.append(t.coef)
            params.append(p)
        flat = np.concatenate(params) if params else np.zeros(0)
        return (np.array(kinds, np.int64), np.array(cols, np.int64),
                np.array(offs, np.int64), np.array(coefs, np.float64), flat, self._constant)

    def __getstate__(self) -> dict[str, Any]:
        # the lowered kernel function cache holds C pointers: never pickled
        state = dict(self.__dict__)
        state.pop("_kf_cache", None)
        return state

    def _kernel_func(self, draw_shape: Any) -> Any:
        # An Integrand is immutable: lower it once per draw shape.
        key = tuple(draw_shape)
        cache = self.__dict__.setdefault("_kf_cache", {})
        kf = cache.get(key)
        if kf is None:
            kf = cache[key] = K.KernelFunc(K.FK_INTEGRAND, integrand=self._lower(key))
        return kf

    # -- Python evaluation ---------------------------------------------------
    def __call__(self, x: npt.ArrayLike) -> np.ndarray:
        """Evaluate on a batch of draws, by the same code the kernels run.

        Parameters
        ----------
        x : array_like, shape ``(m, *draw_shape)``
            ``m`` draws; the draw shape is taken as ``x.shape[1:]``.

        Returns
        -------
        numpy.ndarray, shape (m,)
            The integrand at each draw.

        Raises
        ------
        ValueError
            When ``x`` is a scalar (no batch axis) or a term does not fit the
            draw shape.

        Examples
        --------
        >>> import numpy as np
        >>> from mcscore import integrands as I
        >>> I.linear([1.0, 2.0], c=1.0)(np.array([[1.0, 1.0], [0.0, 3.0]]))
        array([4., 7.])
        """
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 0:
            raise ValueError("x must have a leading batch axis: shape (m, *draw_shape)")
        draw_shape = x.shape[1:]
        m = x.shape[0]
        func = self._kernel_func(draw_shape)
        ds = int(np.prod(draw_shape, dtype=np.int64))
        dummy = K.KernelDist(K.MC_NORMAL, False, ds, 1, ds, np.zeros(ds), np.ones(ds),
                           np.zeros(0), np.zeros(0, np.int64), np.zeros(1, np.int64),
                           np.zeros(0, np.intc), np.zeros(0, np.int64), np.zeros(0),
                           np.zeros(0), np.zeros(0))
        return K.eval_integrand(func, dummy, x.reshape(m, ds))


def _real(name: str, v: Any) -> float:
    return V.finite_real(name, v, show=lambda v: type(v).__name__)  # type: ignore[no-any-return]


def _coord(coord: Any) -> int:
    return V.integer("coord", coord, minimum=0)  # type: ignore[no-any-return]


def _vec(name: str, v: Any) -> np.ndarray:
    arr = V.as_real_array(name, v)
    V.check(name, arr, "real")
    return arr  # type: ignore[no-any-return]


def constant(c: float) -> Integrand:
    """The constant function c.

    Parameters
    ----------
    c : float
        The value (finite).

    %(returns_integrand)s

    Raises
    ------
    TypeError
        ``c`` that is not a real number.
    ValueError
        ``c`` not finite.

    Examples
    --------
    >>> import numpy as np
    >>> from mcscore import integrands as I
    >>> I.constant(2.5)(np.zeros((3, 2)))
    array([2.5, 2.5, 2.5])
    """
    return Integrand((), _real("c", c), name=f"constant {c}")


def polynomial(coeffs: npt.ArrayLike, coord: int = 0) -> Integrand:
    """sum_k coeffs[k] * x[coord]**k (Horner; coeffs in increasing degree).

    Parameters
    ----------
    coeffs : array_like, shape (k + 1,)
        The coefficients, constant first (finite, at least one).
    coord : int, default 0
        The flat draw coordinate (C order of ``draw_shape``) it reads.

    %(returns_integrand)s

    Raises
    ------
    ValueError
        ``coeffs`` empty, not 1-d or not finite; ``coord`` negative, or (at
        evaluation) not below the draw size.

    Examples
    --------
    >>> import mcscore as mc
    >>> f = mc.integrands.polynomial([1.0, 2.0, -1.0])        # 1 + 2 x - x^2, fused in the kernel
    >>> res = mc.score_grad(f, mc.Normal(loc=0.5, scale=1.0), 10_000, rng=0)
    >>> bool(abs(res.grad["loc"] - 1.0) < 5 * res.stderr["loc"])   # d E[f] / d loc = 2 - 2 loc
    True
    """
    c = _vec("coeffs", coeffs)
    if c.ndim != 1 or c.size == 0:
        raise ValueError(f"coeffs must be a non-empty 1-d sequence, got shape {c.shape}")
    params = (float(c.size - 1),) + tuple(c.tolist())
    return Integrand([_Term(K.IK_POLY, _coord(coord), params)], name="polynomial")


def power(p: int, coord: int = 0) -> Integrand:
    """x[coord]**p for an integer p >= 0.

    Parameters
    ----------
    p : int
        The power, 0 <= p <= 64.
    %(coord)s

    %(returns_integrand)s

    Raises
    ------
    ValueError
        ``p`` not an integer in [0, 64], or ``coord`` negative (or, at
        evaluation, not below the draw size).

    Examples
    --------
    >>> import numpy as np
    >>> from mcscore import integrands as I
    >>> I.power(3, coord=1)(np.array([[5.0, 2.0]]))
    array([8.])
    """
    p = V.integer("p", p, minimum=0, maximum=64)
    return polynomial([0.0] * p + [1.0], coord=coord)


def linear(weights: npt.ArrayLike = 1.0, c: float = 0.0) -> Integrand:
    """sum_j weights_j * x_j + c (weights broadcast to the draw shape).

    Parameters
    ----------
    %(weights)s
    c : float, default 0.0
        The constant (finite).

    %(returns_integrand)s

    Raises
    ------
    ValueError
        Non-finite weights or ``c``, or (at evaluation) weights that do not
        broadcast to the draw shape.

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> f = mc.integrands.linear([1.0, -1.0])
    >>> res = mc.score_grad(f, mc.Normal(loc=np.zeros(2), scale=1.0), 10_000, rng=0)
    >>> bool(np.all(np.abs(res.grad["loc"] - [1.0, -1.0]) < 5 * res.stderr["loc"]))
    True
    """
    w = _vec("weights", weights)
    return Integrand([_Term(K.IK_LINEAR, vector=[("weights", w)])], _real("c", c), name="linear")


def sum_of_squares(center: npt.ArrayLike = 0.0, weights: npt.ArrayLike = 1.0) -> Integrand:
    """sum_j weights_j * (x_j - center_j)^2, O(d) per draw.

    Parameters
    ----------
    %(center)s
    weights : float or array_like, default 1.0
        Finite weights, broadcast to ``draw_shape``.

    %(returns_integrand)s

    Raises
    ------
    ValueError
        Non-finite centres or weights, or (at evaluation) ones that do not broadcast
        to the draw shape ``draw_shape``.

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> f = mc.integrands.sum_of_squares(center=1.0)
    >>> res = mc.score_grad(f, mc.Normal(loc=np.zeros(3), scale=1.0), 10_000, rng=0)
    >>> z = (res.grad["loc"] + 2.0) / res.stderr["loc"]     # d E[sum (x - 1)^2] / d loc = 2 (loc - 1)
    >>> bool(np.all(np.abs(z) < 5))
    True
    """
    return Integrand([_Term(K.IK_QUAD_DIAG, vector=[("center", _vec("center", center)),
                                                    ("weights", _vec("weights", weights))])],
                     name="sum_of_squares")


def quadratic(A: npt.ArrayLike, center: npt.ArrayLike = 0.0) -> Integrand:
    """(x - center)^T A (x - center) for a (d, d) matrix A (d = draw size),
    O(d^2) per draw; a diagonal A is lowered to the O(d) form.

    Parameters
    ----------
    A : array_like, shape (d, d)
        A finite square matrix (d the draw size; need not be symmetric).
    %(center)s

    %(returns_integrand)s

    Raises
    ------
    ValueError
        ``A`` not square or not finite, or (at evaluation) ``A`` not of shape
        (d, d) for the draw size d.

    Examples
    --------
    >>> import numpy as np
    >>> from mcscore import integrands as I
    >>> A = np.array([[2.0, 1.0], [0.0, 1.0]])
    >>> x = np.array([[1.0, 2.0]])
    >>> I.quadratic(A)(x), x[0] @ A @ x[0]
    (array([8.]), np.float64(8.0))
    """
    A = _vec("A", A)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be a square matrix, got shape {A.shape}")
    if np.count_nonzero(A - np.diag(np.diag(A))) == 0:
        return sum_of_squares(center, np.diag(A).copy())
    return Integrand([_Term(K.IK_QUAD_FULL, vector=[("center", _vec("center", center)), ("A", A)])],
                     name="quadratic")


def _elementwise(kind: int, label: str) -> Callable[..., Integrand]:
    def make(weights: npt.ArrayLike = 1.0) -> Integrand:
        return Integrand([_Term(kind, vector=[("weights", _vec("weights", weights))])], name=label)

    make.__name__ = label
    make.__doc__ = f"sum_j weights_j * {label}(x_j) (weights broadcast to the draw shape)."
    return make


_ELEMENTWISE_DOC = """sum_j weights_j * {label}(x_j) (weights broadcast to the draw shape).

    Parameters
    ----------
    %(weights)s

    %(returns_integrand)s

    Raises
    ------
    ValueError
        Non-finite weights, or (at evaluation) weights that do not broadcast
        to the draw shape.

    Examples
    --------
    >>> import numpy as np
    >>> from mcscore import integrands as I
    >>> x = np.array([[0.5, 1.0]])
    >>> bool(np.allclose(I.{label}([2.0, 1.0])(x), 2 * np.{label}(0.5) + np.{label}(1.0)))
    True
    """

sin = _elementwise(K.IK_SIN, "sin")
cos = _elementwise(K.IK_COS, "cos")
exp = _elementwise(K.IK_EXP, "exp")
log1p = _elementwise(K.IK_LOG1P, "log1p")
for _f in (sin, cos, exp, log1p):
    _f.__doc__ = _ELEMENTWISE_DOC.format(label=_f.__name__)


def indicator(low: float = -np.inf, high: float = np.inf, coord: int = 0) -> Integrand:
    """1 when low <= x[coord] <= high, else 0 (infinite bounds allowed).

    Parameters
    ----------
    low, high : float, default -inf and inf
        The bounds (low <= high, not NaN).
    %(coord)s

    %(returns_integrand)s

    Raises
    ------
    ValueError
        A NaN bound, ``low > high``, or ``coord`` negative (or, at
        evaluation, not below the draw size).

    Examples
    --------
    >>> import mcscore as mc
    >>> f = mc.integrands.indicator(high=0.0)               # P(X <= 0) = cdf(0)
    >>> res = mc.score_grad(f, mc.Normal(loc=0.0, scale=1.0), 10_000, rng=0)
    >>> bool(abs(res.value - 0.5) < 5 * res.value_stderr)
    True
    """
    lo, hi = float(low), float(high)
    if np.isnan(lo) or np.isnan(hi):
        raise ValueError("indicator bounds must not be NaN")
    if not lo <= hi:
        raise ValueError(f"indicator needs low <= high, got low={lo}, high={hi}")
    return Integrand([_Term(K.IK_INDICATOR, _coord(coord), (lo, hi))], name="indicator")


def _strike_term(kind: int, label: str) -> Callable[..., Integrand]:
    def make(strike: float, coord: int = 0) -> Integrand:
        return Integrand([_Term(kind, _coord(coord), (_real("strike", strike),))], name=label)

    make.__name__ = label
    return make


_STRIKE_DOC = """{what}

    Parameters
    ----------
    strike : float
        The strike (finite).
    %(coord)s

    %(returns_integrand)s

    Raises
    ------
    ValueError
        A non-finite strike, or ``coord`` negative (or, at evaluation, not
        below the draw size).

    Examples
    --------
    >>> import numpy as np
    >>> from mcscore import integrands as I
    >>> I.{label}(strike=1.0)(np.array([[0.5], [1.5]]))
    {out}
    """

call = _strike_term(K.IK_CALL, "call")
call.__doc__ = "max(x[coord] - strike, 0)."
put = _strike_term(K.IK_PUT, "put")
put.__doc__ = "max(strike - x[coord], 0)."
digital_call = _strike_term(K.IK_DIGITAL_CALL, "digital_call")
digital_call.__doc__ = "1 when x[coord] > strike, else 0 (cash-or-nothing, pays 1)."
digital_put = _strike_term(K.IK_DIGITAL_PUT, "digital_put")
digital_put.__doc__ = "1 when x[coord] < strike, else 0."
for _f, _out in ((call, "array([0. , 0.5])"), (put, "array([0.5, 0. ])"),
                 (digital_call, "array([0., 1.])"), (digital_put, "array([1., 0.])")):
    _f.__doc__ = _STRIKE_DOC.format(what=_f.__doc__, label=_f.__name__, out=_out)

# The fragments the docstrings above name by %(name)s (see mcscore._docs), filled in
# once, when the module is imported.
_DOC_FRAGMENTS = {
    "coord": """\
coord : int, default 0
    The flat draw coordinate it reads.""",
    "weights": """\
weights : float or array_like, default 1.0
    Finite weights, broadcast to ``draw_shape`` at evaluation.""",
    "center": """\
center : float or array_like, default 0.0
    Finite centres, broadcast to ``draw_shape``.""",
    "returns_integrand": """\
Returns
-------
Integrand""",
}
_docs.fill_module(globals(), **_DOC_FRAGMENTS)
