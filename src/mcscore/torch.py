"""PyTorch bridge: mcscore's score-function gradients inside autograd.

    import mcscore.torch as mct

    logits = policy(states)                      # (batch, actions), requires grad
    value = mct.expectation(reward, "Categorical", 1000, logits=logits, rng=gen)
    (-value).backward()                          # reaches the policy's weights

``expectation`` returns the Monte Carlo estimate of E[f(x)], x drawn from
the family with the given parameters, as a tensor on the parameters' device
and dtype.  Its backward pass multiplies the incoming gradient by mcscore's
score-function estimate of d E[f] / d parameter (computed by the kernels in
the same call as the value; f is a black box on NumPy draws, it never sees a
tensor), so ``loss.backward()`` reaches whatever produced the parameters.
The parameters are copied to the CPU as float64 for the call (float32 and
float64 tensors on any device that can be copied to the CPU); the gradient
is copied back to each parameter's device and dtype.

Standard errors: ``expectation(..., return_result=True)`` returns
``(value, result)`` with ``result`` the call's
:class:`~mcscore.GradientEstimate` (``value_stderr``, ``stderr``,
``cov``, ``linear``): the error bar of a network weight's gradient is
``result.linear(J)`` with J the Jacobian of the parameters w.r.t. the
weights (the chain rule).  The covariance is taken across the call's
streams; at a small n pass ``options={"block_size": n // 64}`` so that n
fills 64 of them (see :class:`~mcscore.GradientEstimate`).

Requires the optional dependency PyTorch (``pip install "mcscore[torch]"``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ._bridge import BridgeCall, require
from ._validation import flag

_torch: Any = require("torch", "mcscore.torch", "torch", "  (it pins a CPU build, torch==2.13.0)")

__all__ = ["expectation"]


def _to_numpy(t):
    return t.detach().to(device="cpu", dtype=_torch.float64).numpy()


class _Expectation(_torch.autograd.Function):
    """forward: one score_grad on NumPy copies of the parameters; backward:
    the incoming gradient times the estimate's gradient."""

    @staticmethod
    def forward(ctx, call, rng, box, *tensors):
        res = call.run([_to_numpy(t) for t in tensors], rng)
        box.append(res)
        shapes = [tuple(t.shape) for t in tensors]
        ctx.grads = call.grads(res, shapes)
        ctx.batch_ndims = call.batch_ndims
        ctx.meta = [(t.dtype, t.device) for t in tensors]
        ref = tensors[0]
        dtype = _torch.promote_types(ref.dtype, _torch.float32)
        for t in tensors[1:]:
            dtype = _torch.promote_types(dtype, t.dtype)
        value = np.asarray(res.value, dtype=np.float64).reshape(call.value_shape(shapes))
        return _torch.as_tensor(value, dtype=dtype, device=ref.device)

    @staticmethod
    @_torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        out = [None, None, None]
        for g, (dtype, device) in zip(ctx.grads, ctx.meta):
            gt = _torch.as_tensor(g, device=device, dtype=dtype)
            up = grad_out.to(device=device, dtype=dtype)
            # cotangent per batch element, broadcast over the parameter's own dimensions
            up = up.reshape(tuple(up.shape) + (1,) * (gt.ndim - up.ndim))
            out.append(up * gt)
        return tuple(out)


def expectation(f, family, n, *, rng=None, baseline=None, batch_ndims=0, return_result=False,
                options=None, **params):
    """Differentiable Monte Carlo estimate of ``E_{x ~ family(**params)}[f(x)]``.

    Parameters
    ----------
    f : callable
        Vectorised on NumPy arrays, as in :func:`mcscore.score_grad`:
        ``f(x)`` with x of shape ``(m, *draw_shape)`` returns ``(m,)``
        (``(m, *batch)`` with ``batch_ndims``).  It is never differentiated.
    family : mcscore family class (``mcscore.Categorical``) or its name
        (``"Categorical"``), built as ``family(**params)`` on float64 NumPy
        copies of the parameters.
    n : int
        Draws for the estimate.
    rng : None, int, SeedSequence or numpy Generator
        As in ``score_grad``.  Fresh draws on every call of a training loop:
        pass one ``numpy.random.Generator`` (each call takes its seed from
        it, so the run is reproducible from the generator's seed); an int
        gives the same draws on every call (common random numbers).
    baseline : None, float, "loo" or "optimal"
        As in ``score_grad``.
    batch_ndims : int
        Batched expectations (one per data point or state): passed to
        ``score_grad(..., batch_ndims=k)``; the value then has the batch's
        shape and the backward pass weights each batch element's gradient
        by its own incoming gradient.  Pass shared parameters expanded to
        the batch (``tensor.expand(...)``: autograd sums their gradient).
    return_result : bool
        Also return the call's :class:`~mcscore.GradientEstimate`
        (standard errors, ``cov``, ``linear``).
    options : dict, optional
        Further keyword arguments of ``score_grad`` (``n_threads``,
        ``n_streams``, ``block_size``, ``control_variates``, ...).
    **params : the family's parameters: floating-point torch tensors
        (differentiated) or numbers, NumPy arrays and integer tensors
        (constants).

    Returns
    -------
    value : torch.Tensor
        Shape () (the batch's shape with ``batch_ndims``), on the device of
        the first tensor parameter, dtype the promotion of the tensor
        parameters' dtypes (at least float32).
    result : GradientEstimate
        Only with ``return_result=True``, which returns ``(value, result)``.

    Notes
    -----
    Cost: the parameters' copy to the CPU and back, plus one ``score_grad``
    call; f runs once per draw, in chunks.  Higher-order gradients are not
    supported (the backward pass is not itself differentiable).

    Raises
    ------
    ImportError
        When the module is imported without PyTorch installed (with the command
        that installs it).
    ValueError
        An unknown ``family``, or any argument ``score_grad`` refuses (the
        same messages).

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> import mcscore.torch as mct
    >>> logits = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    >>> p2 = lambda x: (x == 2).astype(float)              # E[f] = P(x = 2)
    >>> value, res = mct.expectation(p2, "Categorical", 1000, logits=logits, rng=0,
    ...                              return_result=True)
    >>> value.backward()                                   # logits.grad: d P(x = 2) / d logits
    >>> logits.grad.shape
    torch.Size([3])
    >>> exact = np.array([-1.0, -1.0, 2.0]) / 9
    >>> bool(np.all(np.abs(logits.grad.numpy() - exact) < 5 * res.stderr["logits"]))
    True
    """
    tensors = {}
    constants = {}
    for k, v in params.items():
        if isinstance(v, _torch.Tensor):
            if v.is_complex():
                raise TypeError(f"parameter {k} must be real, got dtype {v.dtype}")
            if v.is_floating_point():
                tensors[k] = v
                continue
            v = v.detach().cpu().numpy()  # an integer tensor: a constant (not differentiable)
        constants[k] = v
    return_result = flag("return_result", return_result)
    call = BridgeCall(f, family, n, baseline, batch_ndims, options, list(tensors), constants)
    box = []
    value = _Expectation.apply(call, rng, box, *tensors.values())
    return (value, box[0]) if return_result else value
