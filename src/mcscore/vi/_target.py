"""log p(x, data), the target of the fit: the user's log joint and its
gradient in x, called on a batch of draws and checked, and the objective of
one step with data subsampling (the minibatch and its N / B weight)."""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import _validation as V


def _n_draws(x: Any) -> Any:
    if isinstance(x, dict):
        return len(next(iter(x.values())))
    return x.shape[0]


def _draw(x: Any, i: Any) -> Any:
    if isinstance(x, dict):
        return {k: v[i] for k, v in x.items()}
    return x[i]


def _shape_of(x: Any) -> Any:
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k!r}: {np.shape(v)}" for k, v in x.items()) + "}"
    return str(x.shape)


def _call_user(fn: Any, x: Any, args: Any, name: Any) -> Any:
    """fn(x, *args), with a note naming it on any exception it raises."""
    try:
        return fn(x, *args)
    except Exception as exc:
        if hasattr(exc, "add_note"):
            exc.add_note(f"(raised by {name} on a batch of draws from q)")
        raise


def _call_log_joint(log_joint: Any, x: Any, *args: Any, name: Any = "log_joint") -> Any:
    return _checked_output(_call_user(log_joint, x, args, name), x, name)


def _checked_output(out: Any, x: Any, name: Any = "log_joint") -> Any:
    """The output of log_joint on the draws x as float64 of shape (n,),
    checked: a plain array of real numbers, of that shape, finite."""
    V.reject_masked(f"{name}'s output", out)
    out = np.asarray(out)
    m = _n_draws(x)
    if out.dtype.kind not in "biuf":
        raise TypeError(f"{name} returned dtype {out.dtype}; it must return real numbers")
    if out.shape != (m,):
        raise ValueError(f"{name} returned shape {out.shape} instead of ({m},) for a batch "
                         f"of {m} draws (x of shape {_shape_of(x)}); it must be vectorised")
    out = out.astype(np.float64)
    bad = ~np.isfinite(out)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{name} returned {out[i]} at draw {i} (x = {_draw(x, i)!r}); it must "
                         "be finite on the support of q")
    return out


def _check_grad(out: Any, x: Any, name: Any) -> Any:
    out = V.as_real_array(f"{name}'s output", out)
    return V.shaped_finite(
        out, x.shape,
        f"{name} returned shape {out.shape}; it must return the gradient of log p with "
        f"respect to x, the shape of x {x.shape}",
        f"{name} returned a value that is not finite")


def _call_grad(grad: Any, x: Any, *args: Any, name: Any = "grad_log_joint") -> Any:
    """The gradient in x: an array like x, or for dict draws (a Joint) a dict
    of arrays keyed and shaped like them."""
    out = _call_user(grad, x, args, name)
    if not isinstance(x, dict):
        return _check_grad(out, x, name)
    if not isinstance(out, dict) or set(out) != set(x):
        raise TypeError(f"{name} must return a dict of gradients keyed like the draws "
                        f"{list(x)}, got {type(out).__name__}")
    return {k: _check_grad(out[k], x[k], f"{name}[{k!r}]") for k in x}


def _scaled_sum(c: Any, a: Any, b: Any = None) -> Any:
    """c * a (+ b), for arrays or dicts of arrays (a Joint's gradients)."""
    if isinstance(a, dict):
        return {k: c * a[k] + (0.0 if b is None else b[k]) for k in a}
    return c * a + (0.0 if b is None else b)


class _Objective:
    """log p(x, data) of one step: the full log joint, or (data subsampling)
    log_prior(x) + N/B * log_lik(x, idx) for a minibatch idx; and its
    gradient in x for the pathwise estimator."""

    def __init__(self, log_joint: Any, grad_log_joint: Any, data_size: Any, batch_size: Any,
                 log_prior: Any, grad_log_prior: Any) -> None:
        if not callable(log_joint):
            raise TypeError(f"log_joint must be callable, got {type(log_joint).__name__}")
        for name, g in (("grad_log_joint", grad_log_joint), ("log_prior", log_prior),
                        ("grad_log_prior", grad_log_prior)):
            if g is not None and not callable(g):
                raise TypeError(f"{name} must be callable or None, got {type(g).__name__}")
        self.log_joint, self.grad = log_joint, grad_log_joint
        self.log_prior, self.grad_prior = log_prior, grad_log_prior
        if data_size is None:
            if batch_size is not None or log_prior is not None or grad_log_prior is not None:
                raise ValueError("batch_size, log_prior and grad_log_prior go with data "
                                 "subsampling: pass data_size=N (the number of data points)")
            self.N = self.B = None
            return
        self.N = V.integer("data_size", data_size, minimum=1, maximum=2**62)
        self.B = self.N if batch_size is None else V.integer(
            "batch_size", batch_size, minimum=1, maximum=self.N)
        if grad_log_joint is not None and log_prior is not None and grad_log_prior is None:
            raise TypeError("grad_log_prior is needed with log_prior for the pathwise "
                            "estimator (the gradient of log_prior with respect to x)")

    def minibatch(self, gen: Any) -> Any:
        if self.N is None:
            return None
        if self.B == self.N:
            return np.arange(self.N)
        return np.sort(gen.choice(self.N, self.B, replace=False))

    def value(self, x: Any, idx: Any) -> Any:
        if idx is None:
            return _call_log_joint(self.log_joint, x)
        assert self.N is not None and self.B is not None
        out = (self.N / self.B) * _call_log_joint(self.log_joint, x, idx)
        if self.log_prior is not None:
            out = out + _call_log_joint(self.log_prior, x, name="log_prior")
        return out

    def raw_value(self, x: Any) -> Any:
        """log_joint(x) without data subsampling, for a caller that tests
        the sum of what it computes from it for finiteness and, when that
        fails, passes it to :meth:`checked`: a plain float64 array of
        shape (n,) as log_joint returned it (its finiteness not checked),
        anything else checked (and converted) at once."""
        out = _call_user(self.log_joint, x, (), "log_joint")
        if type(out) is np.ndarray and out.dtype == np.float64 and out.shape == (x.shape[0],):
            return out
        return _checked_output(out, x)

    @staticmethod
    def checked(out: Any, x: Any) -> Any:
        """The full check of a :meth:`raw_value` (raises when it is not finite)."""
        return _checked_output(out, x)

    def gradient(self, x: Any, idx: Any) -> Any:
        if idx is None:
            return _call_grad(self.grad, x)
        assert self.N is not None and self.B is not None
        prior = None if self.grad_prior is None else _call_grad(self.grad_prior, x,
                                                                  name="grad_log_prior")
        return _scaled_sum(self.N / self.B, _call_grad(self.grad, x, idx), prior)
