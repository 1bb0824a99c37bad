"""What the PyTorch and JAX bridges share (``mcscore.torch``, ``mcscore.jax``).

A bridge call is one ``score_grad`` on NumPy copies of the framework's
parameter arrays: the family built from them, f called on NumPy draws as
usual (a black box), the gradient computed by the kernels.  The framework
side only converts arrays and applies the estimate's gradient to the
incoming cotangent (a vector-Jacobian product: ``cotangent * grad``, per
batch element with ``batch_ndims``).
"""
from __future__ import annotations

import functools
import importlib
import inspect
import numbers

import numpy as np

from . import _validation as V
from .distributions import FAMILIES, Distribution
from .score import score_grad

__all__ = ["BridgeCall", "require", "resolve_family"]


def require(module, bridge, extra, note=""):
    """Import the framework `module` for the bridge `bridge`, or raise an
    ImportError naming the optional extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{bridge} needs {module}, which is not installed: install the optional extra "
            f"with  pip install \"mcscore[{extra}]\"{note}") from exc

_BY_NAME = {cls.__name__: cls for cls in FAMILIES}


def resolve_family(family):
    """The constructor of `family`: an mcscore distribution class (or any
    callable taking the parameters as keywords and returning a
    distribution), or a family's name ("Normal", "Categorical", ...)."""
    if isinstance(family, str):
        try:
            return _BY_NAME[family]
        except KeyError:
            raise ValueError(f"family {family!r} is not an mcscore family; the families are "
                             f"{sorted(_BY_NAME)}") from None
    if isinstance(family, Distribution):
        raise TypeError(f"family must be a family (e.g. mcscore.Normal), not a distribution "
                        f"object ({family!r}): the bridge builds it from the parameters")
    if not callable(family):
        raise TypeError(f"family must be an mcscore family class or name, got "
                        f"{type(family).__name__}")
    return family


@functools.lru_cache(maxsize=None)
def score_grad_has_batch_ndims():
    """Whether this mcscore's score_grad takes batch_ndims."""
    return "batch_ndims" in inspect.signature(score_grad).parameters


class BridgeCall:
    """One expectation's configuration: f, the family, n, baseline,
    batch_ndims and further ``score_grad`` options; ``run`` makes the call
    on NumPy parameters.  ``names`` are the parameters given as framework
    arrays (differentiable), ``constants`` the others (numbers, NumPy
    arrays)."""

    def __init__(self, f, family, n, baseline, batch_ndims, options, names, constants):
        if not callable(f):
            raise TypeError(f"f must be a callable taking NumPy draws, got {type(f).__name__}")
        self.f = f
        self.family = resolve_family(family)
        # checked here, before the framework runs the call (in JAX, inside a
        # host callback whose errors would come back wrapped)
        self.n = V.integer("n", n, minimum=2, maximum=2**62)
        self.baseline = baseline
        if isinstance(batch_ndims, (bool, np.bool_)) or not isinstance(
                batch_ndims, numbers.Integral) or batch_ndims < 0:
            raise ValueError(f"batch_ndims must be an int >= 0, got {batch_ndims!r}")
        self.batch_ndims = int(batch_ndims)
        if self.batch_ndims and not score_grad_has_batch_ndims():
            raise NotImplementedError(
                f"batch_ndims={self.batch_ndims}: this version of mcscore.score_grad has no "
                "batch_ndims parameter (batched expectations); use batch_ndims=0")
        if options is not None and not isinstance(options, dict):
            raise TypeError(f"options must be a dict of score_grad keyword arguments, got "
                            f"{type(options).__name__}")
        options = dict(options or {})
        unknown = set(options) - set(inspect.signature(score_grad).parameters)
        if unknown:
            raise TypeError(f"options has keys that are not score_grad arguments: "
                            f"{sorted(unknown)}")
        clash = {"rng", "baseline", "batch_ndims"} & set(options)
        if clash:
            raise TypeError(f"options must not repeat {sorted(clash)}: pass them as arguments")
        self.options = options
        if not names:
            raise ValueError("expectation needs at least one parameter given as a tensor "
                             "(the ones it differentiates)")
        self.names = tuple(names)
        self.constants = dict(constants)

    def run(self, arrays, rng):
        """score_grad on the parameters (float64 NumPy arrays in the order
        of ``names``) with `rng`; returns the GradientEstimate."""
        params = dict(self.constants)
        params.update(zip(self.names, arrays))
        dist = self.family(**params)
        kwargs = dict(self.options)
        if self.batch_ndims:
            kwargs["batch_ndims"] = self.batch_ndims
        return score_grad(self.f, dist, self.n, rng=rng, baseline=self.baseline, **kwargs)

    def grads(self, res, shapes):
        """The estimate's gradient for each differentiable parameter, shaped
        like the parameter as given (an error if the family broadcast it:
        its gradient would be a sum the bridge does not take)."""
        out = []
        for name, shape in zip(self.names, shapes):
            g = np.asarray(res.grad[name], dtype=np.float64)
            if g.shape != tuple(shape):
                raise ValueError(
                    f"the gradient w.r.t. {name} has shape {g.shape}, the parameter "
                    f"{tuple(shape)}: pass parameters already broadcast to each other")
            out.append(g)
        return out

    def value_shape(self, shapes):
        """The shape of the value: () or the batch (the first batch_ndims
        dimensions of the parameters' broadcast shape)."""
        if not self.batch_ndims:
            return ()
        lead = [tuple(s)[:self.batch_ndims] for s in shapes if len(s) >= self.batch_ndims]
        return tuple(np.broadcast_shapes(*lead)) if lead else ()
