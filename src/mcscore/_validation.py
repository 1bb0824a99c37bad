"""One vocabulary of constraints and one checker for every argument.

Comparisons are written so that NaN fails them (``not (x > 0)``), and every
message starts with the argument's name.
"""
from __future__ import annotations

import math
import numbers
import operator

import numpy as np

# constraint name -> (predicate on a float64 array, human description)
_CONSTRAINTS = {
    "real": (lambda a: np.isfinite(a), "a finite real number"),
    "positive": (lambda a: (a > 0) & np.isfinite(a), "> 0 and finite"),
    "nonnegative": (lambda a: (a >= 0) & np.isfinite(a), ">= 0 and finite"),
    "unit_interval": (lambda a: (a >= 0) & (a <= 1), "in [0, 1]"),
    "open_unit_interval": (lambda a: (a > 0) & (a < 1), "in (0, 1)"),
    "unit_interval_lt1": (lambda a: (a >= 0) & (a < 1), "in [0, 1)"),
    "unit_interval_gt0": (lambda a: (a > 0) & (a <= 1), "in (0, 1]"),
    "nonnegative_integer": (
        lambda a: (a >= 0) & np.isfinite(a) & (a == np.floor(a)) & (a < 2.0**62),
        "a non-negative integer (< 2**62)",
    ),
}


_INF = math.inf
_F64 = np.dtype(np.float64)
# The constraints as predicates on one Python float, True exactly where the
# array predicate above is (NaN fails them all): the fast path of param()
# and check() for Python floats and small float64 arrays.
_SCALAR_CONSTRAINTS = {
    "real": lambda v: -_INF < v < _INF,
    "positive": lambda v: 0.0 < v < _INF,
    "nonnegative": lambda v: 0.0 <= v < _INF,
    "unit_interval": lambda v: 0.0 <= v <= 1.0,
    "open_unit_interval": lambda v: 0.0 < v < 1.0,
    "unit_interval_lt1": lambda v: 0.0 <= v < 1.0,
    "unit_interval_gt0": lambda v: 0.0 < v <= 1.0,
    "nonnegative_integer": lambda v: 0.0 <= v < 2.0**62 and v.is_integer(),
}
# Arrays up to this size are checked element by element as Python floats
# (fewer calls than NumPy's predicates); larger ones by the array predicates.
_FAST_SIZE = 32


def _all_satisfy(arr, pred):
    """True when every element of the float64 array arr satisfies pred (one
    of _SCALAR_CONSTRAINTS), one pass over its values as Python floats."""
    if arr.ndim == 1:
        return all(map(pred, arr.tolist()))
    if arr.ndim == 0:
        return pred(arr.tolist())
    return all(map(pred, arr.ravel().tolist()))


def fast_param(value, constraint):
    """What ``check(as_real_array(value), constraint)`` returns, for a
    Python float (or an int of at most 2**53 in magnitude, exactly a float)
    or a float64 ndarray of at most _FAST_SIZE elements whose values all
    satisfy the constraint; None otherwise (the general path then converts,
    checks and raises its error)."""
    tv = type(value)
    if tv is float or tv is np.float64 or (tv is int and -2**53 <= value <= 2**53):
        v = float(value)
        if not _SCALAR_CONSTRAINTS[constraint](v):
            return None
        arr = np.array(v)
    elif tv is np.ndarray and value.dtype is _F64 and value.size <= _FAST_SIZE:
        if not _all_satisfy(value, _SCALAR_CONSTRAINTS[constraint]):
            return None
        arr = value.copy("K")  # np.array(value, dtype=np.float64, copy=True)
    else:
        return None
    arr.setflags(write=False)
    return arr


def reject_masked(name, value, *, owner=None):
    """Raise TypeError for a NumPy masked array: converting it would use the
    masked values as they are and silently drop the mask."""
    if isinstance(value, np.ma.MaskedArray):
        prefix = f"{owner}: " if owner else ""
        raise TypeError(
            f"{prefix}{name} must be a plain array, got a numpy masked array (its mask would "
            "be dropped silently and the masked values used); pass "
            f"{name}.filled(value) or the unmasked entries ({name}.compressed())")


def as_real_array(name, value, *, owner=None):
    """Convert an array-like of real numbers to a float64 array, rejecting
    booleans, complex numbers, strings, objects, masked arrays and None with
    a TypeError."""
    prefix = f"{owner}: " if owner else ""
    reject_masked(name, value, owner=owner)
    if value is None:
        raise TypeError(f"{prefix}{name} must be a real number or array of real numbers, got None")
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{prefix}{name} must be a real number or array-like: {exc}") from None
    kind = arr.dtype.kind
    if kind == "b":
        raise TypeError(f"{prefix}{name} must be real numbers, got booleans")
    if kind == "c":
        raise TypeError(f"{prefix}{name} must be real numbers, got complex dtype {arr.dtype}")
    if kind not in "iuf":
        raise TypeError(f"{prefix}{name} must be real numbers, got dtype {arr.dtype}")
    return np.array(arr, dtype=np.float64, copy=True)


def check(name, arr, constraint, *, owner=None):
    """Raise ValueError naming `name` unless every element of arr satisfies
    `constraint`. Returns arr."""
    if (type(arr) is np.ndarray and arr.dtype is _F64 and arr.size <= _FAST_SIZE
            and _all_satisfy(arr, _SCALAR_CONSTRAINTS[constraint])):
        arr.setflags(write=False)
        return arr
    pred, desc = _CONSTRAINTS[constraint]
    # the predicates (comparisons, isfinite, floor) raise no floating-point
    # flags, NaN included: the common, passing case needs no errstate
    ok = pred(arr)
    if not ok.all():
        with np.errstate(invalid="ignore"):
            ok = np.asarray(pred(arr), dtype=bool)
        bad = np.argwhere(~ok)[0] if arr.ndim else ()
        val = arr[tuple(bad)] if arr.ndim else arr[()]
        where = f" at index {tuple(int(i) for i in bad)}" if arr.ndim else ""
        prefix = f"{owner}: " if owner else ""
        raise ValueError(f"{prefix}{name} must be {desc} (got {val!r}{where})")
    arr.setflags(write=False)
    return arr


def param(name, value, constraint, *, owner=None, min_ndim=0):
    """value as a read-only float64 array (a copy) satisfying constraint,
    with at least min_ndim dimensions (TypeError / ValueError naming it)."""
    arr = fast_param(value, constraint)
    if arr is not None and arr.ndim >= min_ndim:
        return arr
    arr = check(name, as_real_array(name, value, owner=owner), constraint, owner=owner)
    if arr.ndim < min_ndim:
        prefix = f"{owner}: " if owner else ""
        raise ValueError(
            f"{prefix}{name} must have at least {min_ndim} dimension(s) "
            f"(the last axis holds the categories), got shape {arr.shape}"
        )
    return arr


def broadcast_shapes(owner, **arrays):
    shapes = [a.shape for a in arrays.values()]
    if shapes and shapes.count(shapes[0]) == len(shapes):
        return shapes[0]  # equal shapes (the common case) broadcast to themselves
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        shapes = ", ".join(f"{k} {v.shape}" for k, v in arrays.items())
        raise ValueError(f"{owner}: parameter shapes do not broadcast: {shapes}") from None


def scalar(name, v, constraint):
    """A real scalar satisfying constraint (TypeError for arrays and non-reals)."""
    a = as_real_array(name, v)
    if a.ndim != 0:
        raise TypeError(f"{name} must be a scalar real number, got shape {a.shape}")
    return float(check(name, a, constraint))


def flag(name, v):
    """True or False (TypeError otherwise)."""
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {v!r}")
    return bool(v)


def finite_real(name, v, expected="a real number", show=repr):
    """A Python real number, finite (TypeError for other types, naming
    what was `expected` and showing the value with `show`)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be {expected}, got {show(v)}")
    v = float(v)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    return v


def positive_real(name, v):
    """A Python real number > 0 and finite (TypeError for other types)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a positive real number, got {v!r}")
    v = float(v)
    if not (v > 0 and np.isfinite(v)):
        raise ValueError(f"{name} must be > 0 and finite, got {v}")
    return v


def integer(name, value, *, minimum=None, maximum=None):
    """A Python/NumPy integer (not bool, not float) within bounds."""
    if type(value) is int:  # the common case, checked first (bool is not int here)
        if (minimum is None or value >= minimum) and (maximum is None or value <= maximum):
            return value
    elif isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        try:
            if isinstance(value, (bool, np.bool_)):
                raise TypeError
            value = operator.index(value)
        except TypeError:
            raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}") from None
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def engine_sizes(chunk_size=None, n_streams=64, block_size=None):
    """chunk_size, n_streams and block_size checked with the engine's
    constraints, for a path that has no use for them (quasi-Monte Carlo):
    a bad value is an error there too, never silently ignored."""
    if chunk_size is not None:
        integer("chunk_size", chunk_size, minimum=1)
    integer("n_streams", n_streams, minimum=1, maximum=2**20)
    if block_size is not None:
        integer("block_size", block_size, minimum=1, maximum=2**24)


def _int_seed(rng, name):
    """rng as a non-negative int seed, or None when it is not an int."""
    if type(rng) is int and rng >= 0:
        return rng
    if isinstance(rng, (bool, np.bool_)):
        raise TypeError(f"{name} must be None, an int, a SeedSequence or a Generator, got bool")
    if isinstance(rng, numbers.Integral):
        if rng < 0:
            raise ValueError(f"{name} must be a non-negative int seed, got {rng}")
        return int(rng)
    return None


def as_generator(rng, name="rng"):
    """SPEC 7: None, an int, a SeedSequence or a Generator -> Generator."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, np.random.SeedSequence):
        return np.random.default_rng(rng)
    seed = _int_seed(rng, name)
    if seed is not None:
        return np.random.default_rng(seed)
    if isinstance(rng, np.random.BitGenerator):
        return np.random.Generator(rng)
    raise TypeError(
        f"{name} must be None, an int, a SeedSequence or a Generator, got {type(rng).__name__}"
    )


def root_seed_sequence(rng, name="rng"):
    """The SeedSequence a call's streams are spawned from.

    An int or SeedSequence gives the same streams every time; None draws
    fresh entropy.  A Generator (or bit generator) gives fresh streams on
    each call, seeded by 256 bits it produces itself (four raw 64-bit words,
    drawn under its lock): the result is a function of the generator's state
    only, so equal states (a saved and restored state, a jumped bit generator)
    give equal results, and threads sharing one generator get distinct
    streams.  The generator is advanced, as NumPy's own methods advance it.
    """
    if isinstance(rng, np.random.SeedSequence):
        return rng
    if rng is None:
        return np.random.SeedSequence()
    seed = _int_seed(rng, name)
    if seed is not None:
        return np.random.SeedSequence(seed)
    if isinstance(rng, (np.random.Generator, np.random.BitGenerator)):
        bg = rng.bit_generator if isinstance(rng, np.random.Generator) else rng
        with bg.lock:
            words = bg.random_raw(4)
        return np.random.SeedSequence([int(w) for w in words])
    raise TypeError(
        f"{name} must be None, an int, a SeedSequence or a Generator, got {type(rng).__name__}"
    )


def shaped_finite(arr, shape, shape_error, finite_error):
    """arr (an ndarray) itself when it has `shape` and only finite values;
    else ValueError with `shape_error` or `finite_error` (the caller's
    messages, naming what returned the array)."""
    if arr.shape != shape:
        raise ValueError(shape_error)
    if not np.isfinite(arr).all():
        raise ValueError(finite_error)
    return arr
