"""The base class of every family (Distribution: the declared parameters,
the kernel description from the score terms, sample / log_prob / score, the
optional capabilities) and the helpers the families share."""
from __future__ import annotations

import inspect
import math
import re
import threading
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from .._config import blas_single_threaded
from .. import _kernels as K
from .. import _validation as V


# Guards the lazy build of a distribution's kernel description, so that the
# first calls from several threads at once see a complete score table.
_BUILD_LOCK = threading.RLock()


def _index_map(shape: Any, target: Any) -> Any:
    """For every element of `target` (C order), the flat index of the
    element of an array of `shape` that broadcasting maps onto it."""
    size = int(np.prod(shape, dtype=np.int64))
    return np.broadcast_to(np.arange(size, dtype=np.int64).reshape(shape), target).ravel()


index_map = _index_map  # the estimators' name for it


# The score-table structure of a kernel description depends only on the
# family, the shapes and the kinds of its terms: the coordinate of each
# term, the draw coordinate it reads (col), its kind, where each
# coordinate's terms start (t_start) and the permutation putting the terms in
# coordinate order.  It is built once per key and shared (read-only) by
# every distribution of that key, so that a distribution built anew each
# step (a training loop) only computes its coefficients a, b, c.  Written
# under _BUILD_LOCK; cleared when it grows past _STRUCTURES_MAX keys.
_STRUCTURES: dict[Any, Any] = {}
_STRUCTURES_MAX = 512
_NO_ALIAS_Q = np.zeros(0)
_NO_ALIAS_I = np.zeros(0, np.int64)
_NO_ALIAS_Q.setflags(write=False)
_NO_ALIAS_I.setflags(write=False)


def clear_kernel_cache() -> Any:
    """Forget the cached score-table structures (they are rebuilt on use)."""
    with _BUILD_LOCK:
        _STRUCTURES.clear()


def _readonly(arr: Any) -> Any:
    arr.setflags(write=False)
    return arr


class _TermStructure:
    """The shape-only part of the score table of `dist` for its _terms()
    rows `rows`."""

    def __init__(self, dist: Any, rows: Any) -> None:
        term_rows = list(dist._term_rows(rows))
        coord_slices = {}
        offset = 0
        for name, *_ in term_rows:
            if name not in coord_slices:
                pshape = dist._params[name].shape
                psize = int(np.prod(pshape, dtype=np.int64))
                coord_slices[name] = (slice(offset, offset + psize), pshape)
                offset += psize
        coord = np.concatenate([coord_slices[r[0]][0].start + r[2] for r in term_rows])
        order = np.argsort(coord, kind="stable")
        kind = np.concatenate([np.full(r[2].size, r[1], dtype=np.intc) for r in term_rows])
        col = np.concatenate([r[3] for r in term_rows])
        self.t_start = _readonly(np.concatenate(
            [[0], np.cumsum(np.bincount(coord, minlength=offset))]))
        self.coord, self.col, self.kind = (_readonly(v[order]) for v in (coord, col, kind))
        # None when the terms are in coordinate order already (the common case)
        self.order = None if np.array_equal(order, np.arange(order.size)) else order
        self.coord_slices = coord_slices
        self.n_coords = offset
        self.n_units = int(np.prod(dist.batch_shape, dtype=np.int64))
        # where each row's terms go in the unsorted table, and their shape
        ds = tuple(dist.draw_shape)
        bounds = np.cumsum([0] + [r[2].size for r in term_rows])
        self.segments = [(int(bounds[i]), int(bounds[i + 1]), ds if len(row) == 5 else (r[2].size,))
                         for i, (row, r) in enumerate(zip(rows, term_rows))]
        self.n_terms = int(bounds[-1])

    def coefficients(self, rows: Any) -> Any:
        """(a, b, c) of the table for the _terms() rows `rows` (each
        broadcast to its terms, in the table's order)."""
        buf = np.empty((3, self.n_terms))
        for (start, stop, shape), row in zip(self.segments, rows):
            for k in range(3):
                buf[k, start:stop].reshape(shape)[...] = row[2 + k]
        if self.order is not None:
            buf = buf[:, self.order]
        return buf[0], buf[1], buf[2]


def _structure(dist: Any, rows: Any) -> Any:
    """The cached _TermStructure of `dist` for its _terms() rows, or None
    when a row is an explicit term list (its maps may depend on values)."""
    if any(len(r) != 5 for r in rows):
        return None
    params = dist._params
    key = (type(dist), dist.family, tuple(dist.batch_shape), tuple(dist.draw_shape),
           tuple((r[0], r[1], params[r[0]].shape) for r in rows))
    st = _STRUCTURES.get(key)
    if st is None:
        st = _TermStructure(dist, rows)
        with _BUILD_LOCK:
            if len(_STRUCTURES) >= _STRUCTURES_MAX:
                _STRUCTURES.clear()
            _STRUCTURES[key] = st
    return st


# The families in their public order (mcscore.distributions.FAMILIES), set by
# register_families when the package is imported: require() names them.
_FAMILIES: tuple[Any, ...] = ()


def register_families(families: Any) -> Any:
    """Set the families require() lists in its errors (the package's FAMILIES)."""
    global _FAMILIES
    _FAMILIES = tuple(families)


# ---------------------------------------------------------------------------
# torch-style API: supports as readable constraint objects, and the
# properties mean / variance / stddev (methods before: still callable)
# ---------------------------------------------------------------------------

class Support(str):
    """A family's support: its readable description (a ``str``, e.g.
    ``"x > 0"``, used in error messages) that is also a constraint object
    like torch's: ``name`` (torch's constraint name: ``"real"``,
    ``"positive"``, ``"nonnegative"``, ``"unit_interval"``, ``"interval"``,
    ``"half_open_interval"``, ``"nonnegative_integer"``, ``"boolean"``, ``"real_vector"``,
    ``"integer_interval"``, ``"simplex"``, ``"one_hot"``, ``"multinomial"``),
    ``lower_bound`` / ``upper_bound`` (numbers or arrays; None where there is
    none), ``is_discrete``, ``event_dim`` and ``check(x)``: a boolean array,
    True where x is in the support (over the event's last axis for
    event_dim 1).

    Parameters
    ----------
    text : str
        The readable description.
    name : str
        torch's constraint name (one of the list above).
    lower, upper : float, array_like or None, optional
        The bounds (None where there is none).
    event_dim : int, default 0
        1 when the constraint is over the last axis (simplex, one-hot, ...).

    Raises
    ------
    ValueError
        From :meth:`check`, for a constraint name it does not know.

    Examples
    --------
    >>> import mcscore as mc
    >>> s = mc.Gamma(2.0, 1.0).support
    >>> str(s), s.name, s.lower_bound, s.is_discrete
    ('x > 0', 'positive', 0.0, False)
    >>> s.check([-1.0, 0.5]).tolist()
    [False, True]
    """

    name: str
    lower_bound: Any
    upper_bound: Any
    event_dim: int

    def __new__(cls, text: Any, name: Any, lower: Any = None, upper: Any = None,
                event_dim: Any = 0) -> Any:
        self = str.__new__(cls, text)
        self.name, self.lower_bound, self.upper_bound = name, lower, upper
        self.event_dim = event_dim
        return self

    def __reduce__(self) -> Any:
        return (Support, (str(self), self.name, self.lower_bound, self.upper_bound,
                          self.event_dim))

    @property
    def is_discrete(self) -> Any:
        return self.name in ("nonnegative_integer", "boolean", "integer_interval", "one_hot",
                             "multinomial")

    def __repr__(self) -> Any:
        return f"Support({self.name}: {str(self)!r})"

    def check(self, x: Any) -> Any:
        """True where x lies in the support.

        Parameters
        ----------
        x : array_like
            Values (for ``event_dim`` 1 the last axis is the event).

        Returns
        -------
        numpy.ndarray of bool
            True where ``x`` is in the support (shape of ``x``, without the last
            axis when ``event_dim`` is 1).

        Raises
        ------
        ValueError
            A constraint name this method does not know.

        Examples
        --------
        >>> import mcscore as mc
        >>> mc.Poisson(2.0).support.check([0.0, 1.5, 3.0]).tolist()
        [True, False, True]
        """
        x = np.asarray(x, dtype=np.float64)
        lo, hi, name = self.lower_bound, self.upper_bound, self.name
        with np.errstate(invalid="ignore"):
            integer = x == np.floor(x)
            if name == "real":
                return np.isfinite(x)
            if name == "real_vector":
                return np.isfinite(x).all(-1)
            if name == "positive":
                return (x > 0) & (x < np.inf)
            if name in ("nonnegative", "nonnegative_integer"):
                ok = (x >= 0) & (x < np.inf)
                return ok & integer if name == "nonnegative_integer" else ok
            if name == "boolean":
                return (x == 0) | (x == 1)
            if name in ("unit_interval", "interval", "integer_interval"):
                ok = (x >= lo) & (x <= hi)
                return ok & integer if name == "integer_interval" else ok
            if name == "half_open_interval":
                return (x >= lo) & (x < hi)
            if name == "simplex":
                return ((x >= 0) & (x <= 1)).all(-1) & (np.abs(x.sum(-1) - 1) < 1e-6)
            if name == "one_hot":
                return ((x == 0) | (x == 1)).all(-1) & (x.sum(-1) == 1)
            if name == "multinomial":
                return ((x >= 0) & integer).all(-1) & (x.sum(-1) == hi)
        raise ValueError(f"unknown support {name!r}")


REAL = Support("x any real number", "real")
POSITIVE = Support("x > 0", "positive", 0.0, None)
NONNEGATIVE = Support("x >= 0", "nonnegative", 0.0, None)
NONNEGATIVE_INTEGER = Support("x a non-negative integer", "nonnegative_integer", 0, None)


class _CallableArray(np.ndarray):
    """The value of a property that was a method (``mean``, ``variance``,
    ``stddev``): an array that may still be called, ``dist.mean()``, which
    returns the same values with a DeprecationWarning.  Arithmetic on it
    gives plain arrays."""

    def __call__(self) -> Any:
        warnings.warn(f"{self._mc_name}() is deprecated: {self._mc_name} is a property, as in "
                      f"torch.distributions; use dist.{self._mc_name} without the call",
                      DeprecationWarning, stacklevel=2)
        return np.array(self, dtype=np.float64)

    def __array_finalize__(self, obj: Any) -> Any:
        self._mc_name = getattr(obj, "_mc_name", "mean")

    def __array_wrap__(self, arr: Any, context: Any = None, return_scalar: Any = False) -> Any:
        arr = arr.view(np.ndarray)
        return arr[()] if return_scalar else arr


def _property_value(values: Any, shape: Any, name: Any) -> Any:
    out = np.array(np.broadcast_to(np.asarray(values, dtype=np.float64), shape)).view(
        _CallableArray)
    out._mc_name = name
    return out

class _ClassFlag:
    """A capability flag computed from the class (has_icdf), read on the
    class or on an instance."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def __get__(self, obj: Any, cls: Any) -> Any:
        return self.fn(cls)


# parameters that vi.fit optimises on the log scale
_POSITIVE_PARAMS = {"scale", "rate", "concentration", "concentration1", "concentration0"}


class Distribution:
    """Base class: a family declares its parameters and fills in the hooks.

    ``arg_constraints`` (ordered, as in ``torch.distributions``) maps each
    differentiable parameter to its constraint, a word of the validation
    vocabulary (``"real"``, ``"positive"``, ...).  A family whose
    parameters are all declared there calls ``super().__init__(name=value,
    ...)``: the base class validates each (in declaration order), broadcasts
    them to ``batch_shape``, stores them in ``_params`` and provides a
    read-only property per parameter and the default ``_draw_params``.
    Parameters that are fixed, not differentiated (``total_count``), are
    declared in ``fixed_params`` ({name: constraint}); ``repr`` shows them.

    Parameters
    ----------
    **params : array_like
        One value per name of ``arg_constraints`` (a family passes them
        through from its own signature).  They broadcast together to the
        ``batch_shape``; a family with ``event_ndim = 1`` keeps the last
        axis (the categories) out of the broadcast.

    Raises
    ------
    TypeError
        A parameter that is not real numbers (booleans, complex, strings,
        None, a masked array).
    ValueError
        A parameter outside its constraint (the message names it, the
        constraint and the first offending index), or parameters whose
        shapes do not broadcast.

    Examples
    --------
    Every family has the same interface (``sample``, ``log_prob``,
    ``score``, ``mean``, ``variance``, ...):

    >>> import numpy as np
    >>> import mcscore as mc
    >>> q = mc.Normal(loc=0.0, scale=np.array([1.0, 2.0]))
    >>> x = q.sample(5, rng=0)
    >>> x.shape, q.log_prob(x).shape
    ((5, 2), (5, 2))
    >>> {name: s.shape for name, s in q.score(x).items()}   # a broadcast scalar: one entry
    {'loc': (5,), 'scale': (5, 2)}
    """

    family: int | None = None  # kernel family code
    continuous = True
    event_ndim = 0  # 1 for Multinomial / Dirichlet (last axis = categories)
    # in words (for error messages), and a constraint object (a Support)
    support = "where log_prob is finite"
    arg_constraints: dict[str, str] = {}  # {parameter name: constraint}, in signature order
    fixed_params: dict[str, str] = {}  # {name: constraint} of fixed (not differentiated) parameters
    _log_prob: Any  # the family's log density hook: (m, *draw_shape) -> (m, *batch_shape)

    if TYPE_CHECKING:
        # the parameters are properties made per family (__init_subclass__)
        def __getattr__(self, name: str) -> Any: ...

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in cls.arg_constraints:
            if not hasattr(cls, name):
                setattr(cls, name, property(
                    lambda self, name=name: self._params[name],
                    doc=f"The parameter {name!r} (validated float64, as passed)."))

    def __init__(self, **params: Any) -> None:
        self._kernel = None
        if not params:
            return  # the family sets its parameters itself
        cls = type(self)
        ndim = self.event_ndim
        checked = {}
        first: Any = None  # the common shape of the parameters (their batch axes), if any
        same = True
        for name, constraint in self.arg_constraints.items():
            # (V.param takes Python floats and small float64 arrays that pass
            # in one pass, V.fast_param; anything else the general way)
            arr = V.param(name, params[name], constraint, owner=cls.__name__, min_ndim=ndim)
            checked[name] = arr
            shape = arr.shape[:-1] if ndim else arr.shape
            if first is None:
                first = shape
            elif shape != first:
                same = False
        if cls._check_params is not Distribution._check_params:
            self._check_params(**checked)
        if same:
            # equal shapes (the common case) broadcast to themselves
            self.batch_shape = () if first is None else first
        else:
            self.batch_shape = V.broadcast_shapes(
                cls.__name__, **{k: v[..., 0] if ndim else v for k, v in checked.items()})
        self._params = checked

    def _check_params(self, **params: Any) -> Any:
        """Hook: further checks of the validated parameters (raise ValueError);
        the probs / logits families call it without arguments, once set."""

    # -- shapes ---------------------------------------------------------
    @property
    def draw_shape(self) -> Any:
        """Shape of one draw."""
        return tuple(self.batch_shape) + tuple(self.event_shape)

    @property
    def draw_size(self) -> Any:
        return int(np.prod(self.draw_shape, dtype=np.int64))

    @property
    def event_shape(self) -> Any:
        return ()

    @property
    def params(self) -> Any:
        """The differentiable parameters, as passed (validated float64)."""
        return dict(self._params)

    @property
    def param_names(self) -> Any:
        return tuple(self._params)

    def __repr__(self) -> Any:
        def fmt(v: Any) -> Any:
            return repr(float(v)) if v.ndim == 0 else f"array(shape={v.shape})"

        parts = [f"{k}={fmt(v)}" for k, v in self._all_params().items()]
        return f"{type(self).__name__}({', '.join(parts)})"

    def _all_params(self) -> Any:
        return {**{k: getattr(self, k) for k in self.fixed_params}, **self._params}

    def __getstate__(self) -> Any:
        # The prepared kernel (a Cython object holding C pointers) is a cache:
        # drop it so that distributions pickle (Dask workers rebuild it).
        state = dict(self.__dict__)
        state["_kernel"] = None
        return state

    # -- kernel description ----------------------------------------------
    def _table_kernel_dist(self) -> Any:
        """The KernelDist the variance-reduction kernels read for SK_FAMILY
        terms of the score table (a Joint has none: None)."""
        return self._kernel_dist()

    def _kernel_dist(self) -> Any:
        if self._kernel is None:
            with _BUILD_LOCK:
                if self._kernel is None:  # another thread may have built it meanwhile
                    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                        self._kernel = self._build_kernel()
        return self._kernel

    def _terms(self) -> Any:
        """The score terms, rows of one of two forms:

        * ``(param name, kind, a, b, c)``: every element of the parameter
          reaches the draw coordinates it broadcasts onto, a term per pair;
          a, b, c are arrays of draw_shape (or broadcastable to it);
        * ``(param name, kind, a, b, c, elem, col)``: an explicit term list,
          a term per entry: flat element ``elem[i]`` of the parameter reads
          draw coordinate ``col[i]`` (flat index into draw_shape) with
          constants a[i], b[i], c[i] (broadcastable to elem's shape), for
          maps that are not broadcasting (a matrix parameter).

        kind is an ``SK_*`` code of ``_kernels.pxd``; a parameter may appear
        in several rows (its terms are summed)."""
        raise NotImplementedError

    def _draw_params(self) -> Any:
        """(p0, p1): the parameters of each unit (the flattened batch) for
        its fill function, each of n_units * k values (k >= 0 per unit);
        the kernels pack them into one block per unit, [p0 of the unit, p1
        of the unit] (a family may put everything in p0 and pass an empty
        p1).  By default the declared parameters in order, each broadcast
        to the batch (with its event axes), the second zeros when there is
        one parameter."""
        out = []
        for v in self._params.values():
            shape = self.batch_shape + v.shape[v.ndim - self.event_ndim:]
            out.append(v if v.shape == shape else np.broadcast_to(v, shape))
        if len(out) == 1:
            out.append(np.zeros(self.batch_shape))
        return tuple(out)

    def _term_rows(self, rows: Any = None) -> Any:
        """_terms() (or the given rows of it) as (name, kind, elem, col, a,
        b, c) with flat arrays."""
        ds, size = self.draw_shape, self.draw_size
        owner = type(self).__name__
        for row in (self._terms() if rows is None else rows):
            name, knd, ta, tb, tc = row[:5]
            K.check_term_kinds([knd], f"{owner}'s score term for {name!r}", self.family)
            if len(row) == 7:
                elem = np.asarray(row[5], dtype=np.int64).ravel()
                col = np.asarray(row[6], dtype=np.int64).ravel()
                shape = elem.shape
                psize = self._params[name].size
                if col.shape != shape or (elem.size and not (
                        (elem.min() >= 0) & (elem.max() < psize) & (col.min() >= 0)
                        & (col.max() < size))):
                    raise ValueError(f"{owner}'s score terms for {name!r}: elem and col must "
                                     f"be equally long, elem in [0, {psize}) and col in "
                                     f"[0, {size})")
            else:
                elem = _index_map(self._params[name].shape, ds)
                col = np.arange(size, dtype=np.int64)
                shape = ds
            yield (name, knd, elem, col, np.broadcast_to(ta, shape).ravel(),
                   np.broadcast_to(tb, shape).ravel(), np.broadcast_to(tc, shape).ravel())

    def _build_kernel(self) -> Any:
        rows = list(self._terms())
        st = _structure(self, rows)
        if st is None:  # explicit term lists: the general (uncached) build
            st = _TermStructure(self, rows)
        self._coord_slices = dict(st.coord_slices)
        a, b, c = st.coefficients(rows)
        # the distribution's own copies of the shared (read-only) structure:
        # the Cython consumers of _table take writable buffers
        self._table = dict(coord=st.coord.copy(), col=st.col.copy(), kind=st.kind.copy(),
                           a=a, b=b, c=c, t_start=st.t_start.copy(), n_coords=st.n_coords)
        t = self._table
        p0, p1 = self._draw_params()
        return K.KernelDist(
            self.family, False, st.n_units, self._n_cat(), self.draw_size,
            np.ravel(p0), np.ravel(p1), _NO_ALIAS_Q, _NO_ALIAS_I,
            t["t_start"], t["kind"], t["col"], a, b, c,
        )

    def _n_cat(self) -> Any:
        return 1

    def _split_coords(self, arr: Any) -> Any:
        """Split the last axis (score coordinates) into a dict of param-shaped
        arrays: (..., n_coords) -> {name: (..., *param_shape)}."""
        self._kernel_dist()
        out = {}
        lead = arr.shape[:-1]
        for name, (sl, pshape) in self._coord_slices.items():
            out[name] = arr[..., sl].reshape(lead + tuple(pshape))
        return out

    # -- public methods ----------------------------------------------------
    def sample(self, n: Any = (), rng: Any = None) -> np.ndarray:
        """Draw from the distribution (by the compiled samplers).

        Parameters
        ----------
        n : int or tuple of int, default ()
            The number of draws: an int gives shape ``(n, *draw_shape)``; a
            tuple (torch's ``sample_shape``) gives ``(*n, *draw_shape)``;
            ``()`` gives one draw of ``draw_shape``.
        rng : None, int, numpy.random.SeedSequence or numpy.random.Generator
            The randomness (SPEC 7).  A Generator's bit generator is
            advanced, as NumPy's own methods do.

        Returns
        -------
        numpy.ndarray
            The draws, float64 (the counts of the discrete families are
            whole numbers; Categorical gives int64 indices).

        Raises
        ------
        ValueError
            ``n`` negative or not an integer (the message names ``n``).
        TypeError
            ``rng`` of another type.

        Examples
        --------
        >>> import mcscore as mc
        >>> mc.Normal(loc=[0.0, 1.0], scale=1.0).sample(4, rng=0).shape
        (4, 2)
        >>> mc.Poisson(rate=3.0).sample((2, 3), rng=0).shape
        (2, 3)
        """
        if isinstance(n, (tuple, list)):
            shape = tuple(V.integer("sample_shape", v, minimum=0, maximum=2**62) for v in n)
            total = math.prod(shape)
            return self.sample(total, rng).reshape(shape + self.draw_shape)
        n = V.integer("n", n, minimum=0, maximum=2**62)
        gen = V.as_generator(rng)
        kd = self._kernel_dist()
        with gen.bit_generator.lock:  # threads may share one Generator
            x = K.draw(kd, gen.bit_generator, n)
        x = x.reshape((n,) + self.draw_shape)
        self._check_draws(x)
        return self._to_user_dtype(x)

    def _to_user_dtype(self, x: Any) -> Any:
        return x

    def _check_draws(self, x: Any) -> Any:
        """Hook: raise when the kernel produced draws that are not valid."""

    def _check_x(self, x: Any) -> Any:
        V.reject_masked("x", x)
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"x must be real numbers, got dtype {x.dtype}")
        x = np.asarray(x, dtype=np.float64)
        ds = self.draw_shape
        if x.shape == ds:
            x = x[None]
        nd = len(ds)
        if x.ndim != nd + 1 or x.shape[1:] != ds:
            raise ValueError(
                f"x must have shape (m, *draw_shape) = (m, {', '.join(map(str, ds))}"
                f"{',' if len(ds) == 1 else ''}) for {self!r}, got {x.shape}"
            )
        return x

    def score(self, x: Any) -> dict[str, np.ndarray]:
        """Per-draw scores: the gradient of log p(x) (summed over the whole
        draw) with respect to each element of each parameter as passed.

        Parameters
        ----------
        x : array_like, shape ``(m, *draw_shape)``
            ``m`` draws (a leading batch axis is required).

        Returns
        -------
        dict of str to numpy.ndarray
            ``{param name: array of shape (m, *param_shape)}``; a parameter
            passed as a scalar and broadcast over the batch has shape ``(m,)``.
            A draw holding NaN gives NaN scores.

        Raises
        ------
        ValueError
            ``x`` of the wrong shape, or a draw outside the support (where
            :meth:`log_prob` is -inf); the message names the first such draw.

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> q = mc.Normal(loc=1.0, scale=2.0)
        >>> s = q.score(np.array([3.0]))      # d log p / d loc = (x - loc) / scale^2
        >>> float(s["loc"][0]), float(s["scale"][0])
        (0.5, 0.0)
        """
        x = self._check_x(x)
        self._check_support(x)
        return self._score(x)

    def _check_support(self, x: Any) -> Any:
        """Raise ValueError naming the first draw of x outside the support."""
        if x.shape[0] == 0:
            return
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ok = self._in_support(x)
        m = x.shape[0]
        out = ~np.broadcast_to(ok, (m,) + self.batch_shape).reshape(m, -1)
        out |= np.isinf(x).reshape(m, -1).any(1, keepdims=True)
        bad = out.any(1)
        if bad.any():
            i = int(np.argmax(bad))
            xi = x[i]
            shown = repr(xi.item()) if xi.ndim == 0 else np.array2string(
                xi, precision=6, threshold=6, separator=", ")
            raise ValueError(f"x[{i}] = {shown} is outside the support of {self!r} "
                             f"({self.support}): its log_prob is -inf and its score is "
                             "undefined")

    def _in_support(self, x: Any) -> Any:
        """Where log_prob(x) is not -inf, shape (m, *batch_shape) (a family
        overrides it with a cheaper test of the same set)."""
        return self._log_prob(x) != -np.inf

    def _score(self, x: Any) -> Any:
        """score() on checked draws x of shape (m, *draw_shape), by the
        kernels' score evaluator (_kernels.eval_scores)."""
        self._check_differentiable()
        kd = self._kernel_dist()
        m = x.shape[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            with blas_single_threaded(self):
                s = K.eval_scores(kd, x.reshape(m, self.draw_size))
        return self._split_coords(s)

    def log_prob(self, x: Any) -> np.ndarray:
        """Log density (continuous) or log mass (discrete) of each draw.

        Parameters
        ----------
        x : array_like, shape ``(m, *draw_shape)``
            ``m`` draws.

        Returns
        -------
        numpy.ndarray, shape ``(m, *batch_shape)``
            ``-inf`` outside the support (infinite coordinates included),
            NaN for a draw holding NaN.

        Raises
        ------
        ValueError
            ``x`` whose trailing axes are not ``draw_shape``.
        TypeError
            ``x`` that is not real numbers.

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> lp = mc.Normal(loc=0.0, scale=1.0).log_prob(np.array([0.0, np.inf]))
        >>> bool(np.isclose(lp[0], -0.5 * np.log(2 * np.pi))), float(lp[1])
        (True, -inf)
        """
        x = self._check_x(x)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            out = self._log_prob(x)
        if not np.isfinite(x).all():
            # NaN in a draw propagates; an infinite coordinate is outside every support
            axes = tuple(range(x.ndim - self.event_ndim, x.ndim))
            nan_in = np.isnan(x).any(axis=axes) if axes else np.isnan(x)
            inf_in = np.isinf(x).any(axis=axes) if axes else np.isinf(x)
            out = np.where(nan_in, np.nan, np.where(inf_in, -np.inf, out))
        return out

    def _check_differentiable(self) -> Any:
        """Raise when a score is undefined at the current parameters."""

    # -- moments, entropy, expand (torch's API) ----------------------------
    # A family computes them in _mean / _variance / _entropy (values that
    # broadcast to the draw shape, the batch shape for the entropy); the
    # public names are properties (entropy() a method), as in torch.
    @property
    def mean(self) -> Any:
        """E[x], an array of ``draw_shape`` (NaN where it does not exist,
        inf where it is infinite).  A property, as in torch; calling it,
        ``dist.mean()``, still works with a DeprecationWarning."""
        return _property_value(self._mean(), self.draw_shape, "mean")

    @property
    def variance(self) -> Any:
        """Var[x] per draw coordinate, an array of ``draw_shape`` (a property)."""
        return _property_value(self._variance(), self.draw_shape, "variance")

    @property
    def stddev(self) -> Any:
        """The standard deviation, sqrt(variance) (a property)."""
        with np.errstate(invalid="ignore"):
            return _property_value(np.sqrt(self._variance()), self.draw_shape, "stddev")

    def entropy(self) -> np.ndarray:
        """The differential entropy (continuous) or entropy (discrete) of
        each distribution of the batch, in nats.

        Returns
        -------
        numpy.ndarray, shape ``batch_shape``

        Raises
        ------
        NotImplementedError
            For a family without a closed-form entropy.

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> h = mc.Normal(loc=0.0, scale=[1.0, 2.0]).entropy()
        >>> np.allclose(h, 0.5 * np.log(2 * np.pi * np.e * np.array([1.0, 4.0])))
        True
        """
        return np.array(np.broadcast_to(np.asarray(self._entropy(), dtype=np.float64),
                                        self.batch_shape))

    def _mean(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no mean")

    def _variance(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no variance")

    def _entropy(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no entropy")

    @property
    def _param_event_ndim(self) -> Any:
        """Trailing axes of a parameter that are not batch axes (the categories)."""
        return self.event_ndim

    def _constructor_args(self) -> Any:
        """The keyword arguments that rebuild this distribution (expand)."""
        return self._all_params()

    def _expand_shape(self, batch_shape: Any) -> Any:
        """expand's target batch shape as a tuple, checked: the current batch
        shape must broadcast to it."""
        shape = (batch_shape,) if isinstance(batch_shape, (int, np.integer)) else tuple(
            int(v) for v in batch_shape)
        try:
            if np.broadcast_shapes(tuple(self.batch_shape), shape) != shape:
                raise ValueError
        except ValueError:
            raise ValueError(f"{type(self).__name__}.expand: batch shape {tuple(self.batch_shape)}"
                             f" does not broadcast to {shape}") from None
        return shape

    def expand(self, batch_shape: Any) -> "Distribution":
        """A new distribution of the same family with a larger batch shape,
        as torch's ``expand``.

        Parameters
        ----------
        batch_shape : int or tuple of int
            The new batch shape; the current batch shape must broadcast to it.

        Returns
        -------
        Distribution
            The same family, every parameter broadcast to ``batch_shape``
            (and copied: gradients are then per element).

        Raises
        ------
        ValueError
            When the current batch shape does not broadcast to ``batch_shape``.

        Examples
        --------
        >>> import mcscore as mc
        >>> q = mc.Gamma(concentration=2.0, rate=1.0).expand((3,))
        >>> q.batch_shape, q.concentration.shape
        ((3,), (3,))
        """
        shape = self._expand_shape(batch_shape)
        kw = {}
        pe = self._param_event_ndim
        for name, v in self._constructor_args().items():
            v = np.asarray(v)
            ev = v.shape[v.ndim - pe:] if (pe and name not in self.fixed_params) else ()
            kw[name] = np.array(np.broadcast_to(v, shape + ev))
        return type(self)(**kw)


    # -- optional capabilities -------------------------------------------
    # A family that supports a capability sets the flag and overrides the
    # method; estimators ask for it (``require``) and get a clear error
    # naming the families that have it otherwise.
    has_rsample = False  # pathwise_spec: the reparameterisation table
    has_mirror = False  # mirror: antithetic partners
    has_mean_tangents = False  # mean_tangents: the delta control variate
    has_relaxation = False  # relaxation: Concrete / REBAR parameters
    has_binary_relaxation = False  # ... of 0/1 draws (DisARM)
    rsample_through_gammas = False  # pathwise draws normalised Gamma variates (Beta, Dirichlet)

    def relaxed_shape(self) -> tuple[int, ...]:
        """Shape of one relaxed draw (relaxed_grad, rebar_grad).

        Returns
        -------
        tuple of int
            ``draw_shape``; a Categorical's relaxed draw adds the category axis.

        Examples
        --------
        >>> import mcscore as mc
        >>> mc.Bernoulli(probs=[0.2, 0.7]).relaxed_shape()
        (2,)
        """
        return self.draw_shape
    # the unconstrained coordinate of a "probs" parameter for vi.fit
    _probs_transform = "logit"

    def require(self, capability: str) -> None:
        """Raise the clear error of an estimator that needs a capability this
        family lacks.

        Parameters
        ----------
        capability : {"rsample", "mirror", "mean_tangents", "relaxation", ...}
            The name of a ``has_*`` flag without its prefix.

        Returns
        -------
        None
            When the family has the capability.

        Raises
        ------
        ValueError
            When it does not; the message lists the families that have it.

        Examples
        --------
        >>> import mcscore as mc
        >>> mc.Normal(0.0, 1.0).require("rsample")
        >>> mc.Poisson(2.0).require("rsample")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: pathwise_grad supports ...; got Poisson
        """
        if getattr(self, "has_" + capability):
            return
        name = type(self).__name__
        having = ", ".join(c.__name__ for c in _FAMILIES if getattr(c, "has_" + capability))
        if capability == "rsample":
            raise ValueError(f"pathwise_grad supports {having}; got {name}")
        if capability == "mirror":
            raise ValueError("antithetic=True needs a family symmetric about a known point "
                             f"({having}); got {name}")
        raise ValueError(f"control variate 'delta' is not available for {name}")

    def mean_tangents(self) -> Any:
        """The derivative of each draw coordinate's mean with respect to the
        parameter element it depends on (the ``'delta'`` control variate).

        Returns
        -------
        dict of str to numpy.ndarray
            ``{param: array of draw_shape}``.

        Raises
        ------
        ValueError
            For a family without them (``has_mean_tangents`` is False).

        Examples
        --------
        >>> import mcscore as mc
        >>> t = mc.Exponential(rate=2.0).mean_tangents()     # E[x] = 1 / rate
        >>> float(t["rate"])
        -0.25
        """
        self.require("mean_tangents")

    def mirror(self, x: Any) -> Any:
        """The antithetic partner of draws ``x`` (``antithetic=True``), for
        the families symmetric about a known point.

        Parameters
        ----------
        x : array_like, shape ``(m, *draw_shape)``
            Draws of this distribution.

        Returns
        -------
        numpy.ndarray
            Draws of the same distribution, same shape (e.g. ``2 loc - x``).

        Raises
        ------
        ValueError
            For a family without a mirror (``has_mirror`` is False).

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> mc.Normal(loc=1.0, scale=1.0).mirror(np.array([0.5, 3.0]))
        array([ 1.5, -1. ])
        """
        self.require("mirror")

    def pathwise_spec(self) -> Any:
        """The rows of the reparameterisation table that
        :func:`~mcscore.pathwise_grad` reads.

        Returns
        -------
        list of tuple
            ``[(param name, tangent kind, a, b)]``: the kind is a
            ``mcscore._vr.TK_*`` code, ``a`` and ``b`` broadcast to ``draw_shape``.

        Raises
        ------
        ValueError
            For a family without a reparameterisation (``has_rsample`` is False).

        Examples
        --------
        >>> import mcscore as mc
        >>> [row[0] for row in mc.Normal(0.0, 1.0).pathwise_spec()]
        ['loc', 'scale']
        """
        self.require("rsample")

    def vi_transforms(self) -> dict[str, str]:
        """The unconstrained coordinate :func:`mcscore.vi.fit` optimises for
        each parameter.

        Returns
        -------
        dict of str to {"identity", "log", "logit"}

        Examples
        --------
        >>> import mcscore as mc
        >>> mc.Normal(0.0, 1.0).vi_transforms()
        {'loc': 'identity', 'scale': 'log'}
        """
        out = {}
        for name in self.param_names:
            if name in _POSITIVE_PARAMS:
                out[name] = "log"
            elif name == "probs":
                out[name] = self._probs_transform
            else:
                out[name] = "identity"
        return out

    def _draw_broadcast(self, v: Any) -> Any:
        return np.broadcast_to(np.asarray(v, float), self.draw_shape)

    # -- cdf / icdf: draws by inversion (sampler="sobol") -----------------
    # A family with a quantile function defines ``icdf(value)`` (and
    # ``cdf(value)``), torch's semantics: value broadcasts against the batch
    # shape.  The quasi-Monte Carlo driver (mcscore._qmc) turns uniforms into
    # draws through ``_qmc_draws``: by default icdf of one uniform per draw
    # coordinate; a multivariate family overrides ``_qmc_dim`` and
    # ``_qmc_draws`` with a construction of its own.  A family without either
    # gets the clear error of ``_qmc_dim``.
    def cdf(self, value: Any) -> Any:
        """The cumulative distribution function P(X <= value), for the
        families that have a closed form or an accurate special function.

        Parameters
        ----------
        value : array_like
            Points, broadcast against ``batch_shape`` (torch's semantics).

        Returns
        -------
        numpy.ndarray
            P(X <= value), the broadcast shape of ``value`` and the batch.

        Raises
        ------
        ValueError
            ``value`` that does not convert to float64 numbers or does not
            broadcast against the batch shape.
        NotImplementedError
            For a family without a cdf.

        Examples
        --------
        >>> import mcscore as mc
        >>> float(mc.Normal(loc=1.0, scale=2.0).cdf(1.0))
        0.5
        """
        raise NotImplementedError(f"{type(self).__name__} has no cdf")

    def icdf(self, value: Any) -> Any:
        """The quantile function: the smallest x with ``cdf(x) >= value``
        (draws by inversion, ``sampler="sobol"``).

        Parameters
        ----------
        value : array_like
            Probabilities in [0, 1], broadcast against ``batch_shape``.

        Returns
        -------
        numpy.ndarray
            The quantiles, the broadcast shape of ``value`` and the batch.

        Raises
        ------
        ValueError
            A value outside [0, 1] or NaN (the message names ``value``).
        NotImplementedError
            For a family without a quantile function.

        Examples
        --------
        >>> import mcscore as mc
        >>> round(float(mc.Normal(loc=1.0, scale=2.0).icdf(0.5)), 12)
        1.0
        """
        raise NotImplementedError(f"{type(self).__name__} has no inverse cdf (icdf)")

    # whether the family draws by inversion (icdf, or a construction of its
    # own): a flag like the other has_* ones, read on the class or an instance
    has_icdf = _ClassFlag(lambda cls: cls.icdf is not Distribution.icdf
                          or cls._qmc_draws is not Distribution._qmc_draws)

    def _unit_value(self, value: Any) -> Any:
        """icdf's argument, checked to lie in [0, 1]."""
        return V.param("value", value, "unit_interval", owner=f"{type(self).__name__}.icdf")

    def _qmc_dim(self) -> Any:
        """Uniforms per draw for quasi-Monte Carlo draws by inversion."""
        if not self.has_icdf:
            having = ", ".join(c.__name__ for c in _FAMILIES if c.has_icdf)
            raise ValueError(
                f"sampler='sobol' draws by inversion of the cdf and {type(self).__name__} has "
                f"no inverse cdf (icdf) nor a construction from uniforms; families that have "
                f"one: {having}. Use sampler='mc' for {type(self).__name__}")
        return self.draw_size

    def _qmc_draws(self, u: Any) -> Any:
        """Draws (kernel representation, shape (m, *draw_shape)) from
        uniforms u of shape (m, _qmc_dim()) in (0, 1)."""
        return np.asarray(self.icdf(u.reshape((len(u),) + self.draw_shape)), dtype=np.float64)


# -- docstrings ----------------------------------------------------------------
_SECTION = re.compile(r"^([A-Z][A-Za-z ]+)\n-{3,}$", re.M)
_INHERITED_SECTIONS = ("Parameters", "Returns", "Raises")


def _sections(doc: str) -> tuple[str, dict[str, str]]:
    """(summary, {title: body}) of a numpydoc docstring, the sections in order."""
    text = inspect.cleandoc(doc)
    heads = list(_SECTION.finditer(text))
    summary = text[:heads[0].start()] if heads else text
    out = {}
    for h, nxt in zip(heads, heads[1:] + [None]):
        out[h.group(1)] = text[h.end():nxt.start() if nxt else len(text)].strip("\n")
    return summary.rstrip(), out


def inherit_sections(cls: type, base: type = Distribution) -> None:
    """Complete the docstrings of ``cls``'s overrides of ``base``'s public
    methods with the sections of ``base``'s docstring they leave out
    (Parameters, Returns, Raises: the same for every family); an override
    keeps its own summary, notes and Examples."""
    for name, member in list(vars(cls).items()):
        parent = getattr(base, name, None)
        if (name.startswith("_") or not inspect.isfunction(member) or not member.__doc__
                or not inspect.isfunction(parent) or not parent.__doc__):
            continue
        summary, own = _sections(member.__doc__)
        inherited = _sections(parent.__doc__)[1]
        if not any(t in inherited and t not in own for t in _INHERITED_SECTIONS):
            continue
        parts = [summary]
        for title in _INHERITED_SECTIONS:
            body = own.get(title, inherited.get(title))
            if body is not None:
                parts.append(f"{title}\n{'-' * len(title)}\n{body}")
        parts += [f"{t}\n{'-' * len(t)}\n{b}" for t, b in own.items()
                  if t not in _INHERITED_SECTIONS]
        member.__doc__ = "\n\n".join(parts) + "\n"
