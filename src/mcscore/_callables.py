"""f, lowered and called: the three kinds of f an estimator accepts (a
vectorised Python callable, a fused ``Integrand``, a
``scipy.LowLevelCallable``) lowered to what the kernels call, and a Python
f (grad_f, a control variate) called chunk by chunk on a round's draws
with its checks (shape, dtype, finiteness; a non-finite value at a draw
that is itself not finite is blamed on the sampler)."""
from __future__ import annotations

import ctypes
import numbers
import re

import numpy as np
from scipy import LowLevelCallable

from . import _kernels as K
from .integrands import Integrand

__all__ = ["CALLBACK_SIGNATURES", "lower_f", "call_f", "call_values", "call_grad", "chunks",
           "check_callable", "check_fx", "describe_draw", "nonfinite_draw_error"]


# ---------------------------------------------------------------------------
# lowering f: Python callable, fused Integrand, LowLevelCallable
# ---------------------------------------------------------------------------

_PTR_INTS = {"intptr_t", "Py_ssize_t", "ssize_t", "npy_intp", "long long", "int64_t",
             "longlong"}
_INT32 = {"int", "int32_t"}
if ctypes.sizeof(ctypes.c_long) == 8:
    _PTR_INTS.add("long")
else:
    _INT32.add("long")


def _norm_type(t):
    t = t.strip().replace("const ", "")
    return re.sub(r"\s*\*", " *", t).strip()


def _callback_signature(sig):
    m = re.fullmatch(r"\s*([\w ]+?)\s*\((.*)\)\s*", sig)
    if not m:
        return None
    ret = _norm_type(m.group(1))
    args = [_norm_type(a) for a in m.group(2).split(",")]
    if len(args) < 2 or args[0] != "double *":
        return None
    width = 8 if args[1] in _PTR_INTS else 4 if args[1] in _INT32 else None
    if width is None:
        return None
    rest = args[2:]
    if ret == "double" and rest == []:
        return K.CB_D_P_N if width == 8 else K.CB_D_P_I
    if ret == "double" and rest == ["void *"]:
        return K.CB_D_P_N_V if width == 8 else K.CB_D_P_I_V
    if ret == "int" and rest == ["double *", "void *"]:
        return K.CB_I_P_N_P_V if width == 8 else K.CB_I_P_I_P_V
    return None


CALLBACK_SIGNATURES = (
    "double (double *x, intptr_t d)",
    "double (double *x, intptr_t d, void *user_data)",
    "int (double *x, intptr_t d, double *out, void *user_data)   (non-zero return = error)",
    "the same with int d",
)


def _as_lowlevel(f):
    if isinstance(f, LowLevelCallable):
        return f
    # numba @cfunc objects
    if hasattr(f, "ctypes") and hasattr(f, "address") and hasattr(f, "native_name"):
        return LowLevelCallable(f.ctypes)
    if isinstance(f, ctypes._CFuncPtr):
        return LowLevelCallable(f)
    return None


def _address(obj, what):
    """Integer address of a capsule, a ctypes pointer/function, or a cffi pointer."""
    if obj is None:
        return 0
    if type(obj).__name__ == "PyCapsule":
        api = ctypes.pythonapi
        api.PyCapsule_GetName.restype = ctypes.c_char_p
        api.PyCapsule_GetName.argtypes = [ctypes.py_object]
        api.PyCapsule_GetPointer.restype = ctypes.c_void_p
        api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
        return api.PyCapsule_GetPointer(obj, api.PyCapsule_GetName(obj)) or 0
    if isinstance(obj, (ctypes._CFuncPtr, ctypes._Pointer, ctypes.c_void_p)):
        return ctypes.cast(obj, ctypes.c_void_p).value or 0
    if type(obj).__module__ == "_cffi_backend":
        import cffi

        return int(cffi.FFI().cast("uintptr_t", obj))
    raise TypeError(f"f: cannot take the address of the LowLevelCallable's {what} "
                    f"({type(obj).__name__})")


def lower_f(f, dist):
    """(kind, KernelFunc or None)."""
    if isinstance(f, Integrand):
        return "integrand", f._kernel_func(dist.draw_shape)
    llc = _as_lowlevel(f)
    if llc is not None:
        code = _callback_signature(llc.signature)
        if code is None:
            raise TypeError(
                f"f: LowLevelCallable signature {llc.signature!r} is not supported; use one of: "
                + "; ".join(CALLBACK_SIGNATURES)
            )
        return "callback", K.KernelFunc(
            K.FK_CALLBACK, keep=llc, fptr=_address(llc.function, "function"), sig=code,
            user_data=_address(llc.user_data, "user_data"))
    if callable(f):
        return "python", None
    raise TypeError(
        f"f must be a vectorised Python callable, an mcscore.integrands.Integrand or a "
        f"scipy.LowLevelCallable, got {type(f).__name__}"
    )



# ---------------------------------------------------------------------------
# calling a Python f (and grad_f, control variates) with its checks
# ---------------------------------------------------------------------------

def describe_draw(x):
    x = np.asarray(x)
    if x.ndim == 0:
        return repr(x.item())
    return np.array2string(x, precision=6, threshold=6, separator=", ")


def nonfinite_draw_error(x, index):
    """The error for a non-finite value of f at a draw x that is itself not
    finite (the sampler's fault, not f's), or None when x is finite."""
    x = np.asarray(x)
    if x.dtype.kind != "f" or np.isfinite(x).all():
        return None
    return FloatingPointError(
        f"draw {index} is itself not finite (x = {describe_draw(x)}), so f could not be "
        "finite there: the sampler produced it, not f (e.g. a Beta or Dirichlet draw at "
        "tiny concentrations whose gamma variates all underflowed to 0); use larger "
        "concentrations")


_FLOAT64 = np.dtype(np.float64)


def check_fx(out, m, first_index, x):
    """Validate f's output for a chunk of m draws starting at global index
    first_index; returns a float64 array of shape (m,)."""
    if (type(out) is np.ndarray and out.dtype == _FLOAT64 and out.shape == (m,)
            and np.isfinite(out).all()):  # the common case, in three operations
        return out
    if out is None:
        raise TypeError("f returned None; it must return an array of shape (m,) for a batch "
                        "of m draws")
    if isinstance(out, np.ma.MaskedArray):
        raise TypeError("f returned a numpy masked array; the mask would be dropped silently "
                        "and the masked values used: return a plain array of real numbers")
    if isinstance(out, (list, tuple)):
        out = np.asarray(out)
    if not isinstance(out, np.ndarray):
        if np.isscalar(out):
            raise ValueError(f"f returned a scalar for a batch of {m} draws; it must be vectorised "
                             f"and return shape ({m},)")
        try:
            out = np.asarray(out)
        except Exception:
            raise TypeError(f"f returned {type(out).__name__}, not an array") from None
    if out.dtype.kind == "c":
        raise TypeError(f"f returned complex values (dtype {out.dtype}); it must return reals")
    if out.dtype.kind == "O":
        bad = [v for v in out.flat
               if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real)][:1]
        if bad:
            raise TypeError(f"f returned an object array holding {type(bad[0]).__name__} "
                            "values; it must return real numbers")
    if out.dtype.kind not in "biufO":  # datetime64, timedelta64, strings, ...
        raise TypeError(f"f returned dtype {out.dtype}; it must return real numbers")
    if out.dtype.kind == "O":
        try:
            out = out.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"f returned dtype {out.dtype}; it must return real numbers") from None
    if out.shape != (m,):
        raise ValueError(f"f returned shape {out.shape} instead of ({m},) for a batch of {m} "
                         f"draws (x of shape {x.shape})")
    out = np.asarray(out, dtype=np.float64)
    bad = ~np.isfinite(out)
    if bad.any():
        i = int(np.argmax(bad))
        err = nonfinite_draw_error(x[i], first_index + i)
        if err is not None:
            raise err
        raise ValueError(f"f returned {out[i]} at draw {first_index + i} "
                         f"(x = {describe_draw(x[i])}); f must be finite")
    return out


def call_raw(f, x, first_index):
    """f(x), an exception noted with the draws it was raised on."""
    try:
        return f(x)
    except Exception as exc:
        if hasattr(exc, "add_note"):
            exc.add_note(f"(raised by f on draws {first_index}..{first_index + len(x) - 1} "
                         f"of the estimator)")
        raise


def call_f(f, x, first_index):
    return check_fx(call_raw(f, x, first_index), len(x), first_index, x)


def chunks(rd, m, chunk):
    """(start, stop, global index of the first draw) of the chunks of the m
    draws of round rd (one chunk when rd is None): consecutive blocks are
    cut every `chunk` draws, a Dask task's blocks (one per stream) block by
    block, so that error messages name the right draw."""
    if rd is None:
        yield 0, m, 0
    elif rd.consecutive:
        for c0 in range(0, m, chunk):
            yield c0, min(m, c0 + chunk), rd.first + c0
    else:
        o = 0
        for b, rows in zip(rd.blocks, rd.rows):
            for c0 in range(0, rows, chunk):
                yield o + c0, o + min(rows, c0 + chunk), int(b) * rd.B + c0
            o += rows


def call_values(fn, x, rd, chunk, name="f", out=None):
    """fn on the draws x of round rd, chunk by chunk, checked (check_fx),
    into `out` (a new array by default); `name` is the callable's name in
    error messages."""
    if out is None:
        out = np.empty(len(x))
    for c0, c1, first in chunks(rd, len(x), chunk):
        xc = x[c0:c1]
        try:
            out[c0:c1] = call_f(fn, xc, first)
        except (ValueError, TypeError) as exc:
            if name != "f":
                msg = str(exc).replace("f returned", f"{name} returned", 1)
                raise type(exc)(msg.replace("; f must", f"; {name} must", 1)) from None
            raise
    return out


def call_grad(grad_f, x, rd, chunk, name="grad_f"):
    """grad_f on chunks; checks shape (m, *x.shape[1:]) and finiteness."""
    m = len(x)
    ds = int(np.prod(x.shape[1:], dtype=np.int64))
    out = np.empty((m, ds))
    for c0, c1, first in chunks(rd, m, chunk):
        xc = x[c0:c1]
        g = grad_f(xc)
        if g is None:
            raise TypeError(f"{name} returned None; it must return an array shaped like x")
        g = np.asarray(g)
        if g.dtype.kind not in "biuf":
            raise TypeError(f"{name} returned dtype {g.dtype}; it must return real numbers")
        if g.shape != xc.shape:
            raise ValueError(f"{name} returned shape {g.shape} instead of {xc.shape} (the shape "
                             f"of its input x)")
        g = g.reshape(len(xc), ds).astype(np.float64)
        bad = ~np.isfinite(g)
        if bad.any():
            i = int(np.argmax(bad.any(axis=1)))
            raise ValueError(f"{name} returned a non-finite value at draw {first + i}; "
                             f"{name} must be finite")
        out[c0:c1] = g
    return out


def check_callable(name, fn, required=True):
    if fn is None:
        if required:
            raise TypeError(f"{name} is required: a vectorised Python callable")
        return None
    if not callable(fn):
        raise TypeError(f"{name} must be a vectorised Python callable, got {type(fn).__name__}")
    return fn


def values_and_grads(f, grad_f, x, rd, chunk, mag):
    """f's values and grad_f's gradients at the round's points x, checked
    (shape, finiteness), seen by the magnitude guard and scattered to the
    round's blocks: (fv, G), for the reparameterised estimators' jobs."""
    fv = rd.scatter(mag.see(call_values(f, x, rd, chunk)))
    G = rd.scatter(mag.see(call_grad(grad_f, x, rd, chunk), "grad_f"))
    return fv, G
