"""JAX bridge: mcscore's score-function gradients under jax.grad and jax.jit.

    import jax, mcscore.jax as mcj

    @jax.jit
    def loss(w, key):
        logits = features @ w
        return -mcj.expectation(reward, "Categorical", 1000, logits=logits, rng=key)

    g = jax.grad(loss)(w, jax.random.key(0))

``expectation`` is a ``jax.custom_vjp`` function whose forward pass is a
host callback (``jax.pure_callback``): the parameters reach the host as
NumPy arrays, one :func:`mcscore.score_grad` call there gives the estimate
of E[f] and of its gradient (f is a black box on NumPy draws, the kernels
compute the score), and the backward pass multiplies the incoming cotangent
by that gradient (no second call).  It works under ``jit``, ``grad``,
``value_and_grad`` and ``vmap`` (sequentially, one host call per element).

Random numbers.  Under ``jit`` the host cannot see a Python seed change
between calls, so pass a JAX PRNG key as ``rng`` (``jax.random.key`` or a
raw ``PRNGKey``), split per step as usual in JAX: the callback receives 128
bits drawn from the key (``jax.random.bits``) and seeds the call's streams
with them, so a key gives the same draws every time and fresh keys give
fresh draws, jitted or not.  ``rng`` an int gives the same draws on every
call (common random numbers); None or a NumPy Generator draw fresh entropy
on the host at each execution (not reproducible, and JAX may merge two
identical calls in one jitted function: prefer keys).

Standard errors: ``return_result=True`` returns ``(value, aux)`` with
``aux`` a dict of arrays: ``value_stderr``, ``grad`` and ``stderr``
({parameter: array}) and, with ``cov=True``, ``cov`` -- the (P, P)
covariance of the flattened gradient (coordinate order: the differentiated
parameters in the order given, each raveled in C order), from which the
chain rule gives the error bar of any weight's gradient (``J.T @ cov @ J``).
They carry no gradient.

Requires the optional dependency JAX (``pip install "mcscore[jax]"``).
"""
from __future__ import annotations

import numpy as np

from ._bridge import BridgeCall, require
from ._validation import flag

_jax = require("jax", "mcscore.jax", "jax")
_jnp = require("jax.numpy", "mcscore.jax", "jax")

__all__ = ["expectation"]


def _is_key(x):
    dt = getattr(x, "dtype", None)
    if dt is None:
        return False
    if _jax.dtypes.issubdtype(dt, _jax.dtypes.prng_key):
        return True
    return np.dtype(dt) == np.uint32 and tuple(np.shape(x)) == (2,)


def _seed_words(rng):
    """(words, host rng): 4 uint32 words drawn from a JAX key (traced under
    jit) with host rng None, or zeros and the host-side rng itself."""
    if rng is not None and _is_key(rng):
        key = rng if _jax.dtypes.issubdtype(rng.dtype, _jax.dtypes.prng_key) else (
            _jax.random.wrap_key_data(rng))
        return _jax.random.bits(key, (4,), _jnp.uint32), None
    if isinstance(rng, _jax.Array):
        raise TypeError("rng must be a JAX PRNG key (jax.random.key / PRNGKey), an int, a "
                        f"NumPy Generator or None, got a JAX array of dtype {rng.dtype}")
    return _jnp.zeros(4, _jnp.uint32), rng


def expectation(f, family, n, *, rng=None, baseline=None, batch_ndims=0, return_result=False,
                cov=False, options=None, **params):
    """Differentiable Monte Carlo estimate of ``E_{x ~ family(**params)}[f(x)]``.

    Parameters
    ----------
    f : callable
        Vectorised on NumPy arrays, as in :func:`mcscore.score_grad`
        (never differentiated).
    family : mcscore family class or its name
        Built as ``family(**params)`` on float64 NumPy copies.
    n : int
        Draws for the estimate.
    rng : JAX PRNG key, int, numpy Generator or None
        A key (see the module docstring) gives fresh, reproducible draws
        inside ``jit`` and ``grad``.
    baseline : None, float, "loo" or "optimal"
        As in ``score_grad``.
    batch_ndims : int, default 0
        Batched expectations, as in :func:`mcscore.torch.expectation`.
    return_result : bool, default False
        Also return the call's statistics (``aux``).
    cov : bool, default False
        Add the gradient's covariance matrix to ``aux``.
    options : dict, optional
        Further keyword arguments of ``score_grad``.
    **params
        The family's parameters: JAX arrays or tracers (differentiated),
        numbers and NumPy arrays (constants).

    Returns
    -------
    value : jax.Array
        Shape () (the batch's with ``batch_ndims``), dtype the promotion of
        the differentiated parameters' dtypes (float32 unless JAX's x64
        mode is on).
    aux : dict
        Only with ``return_result=True``, which returns ``(value, aux)``:
        ``value_stderr``, ``grad`` and ``stderr`` (and ``cov``) as arrays.

    Raises
    ------
    ImportError
        On ``import mcscore.jax`` where JAX is missing; the message says
        how to install it.
    ValueError
        A ``family`` that is not an mcscore family name or class, or an
        argument that ``score_grad`` refuses (with its message).

    Examples
    --------
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import mcscore.jax as mcj
    >>> def p2(logits, key):                               # P(x = 2), differentiable in logits
    ...     return mcj.expectation(lambda x: (x == 2).astype(float), "Categorical", 1000,
    ...                            logits=logits, rng=key)
    >>> g = jax.grad(p2)(jnp.zeros(3), jax.random.key(0))  # exact: (-1, -1, 2) / 9
    >>> g.shape
    (3,)
    >>> bool(abs(float(g[2]) - 2 / 9) < 0.05)
    True
    """
    arrays = {}
    constants = {}
    for k, v in params.items():
        if isinstance(v, _jax.Array) and _jnp.issubdtype(
                v.dtype, _jnp.floating):
            arrays[k] = v
        else:
            constants[k] = np.asarray(v) if isinstance(v, _jax.Array) else v
    return_result = flag("return_result", return_result)
    call = BridgeCall(f, family, n, baseline, batch_ndims, options, list(arrays), constants)
    ts = tuple(arrays.values())
    dtype = _jnp.result_type(*ts)
    shapes = [tuple(t.shape) for t in ts]
    vshape = call.value_shape(shapes)
    P = int(sum(np.prod(s, dtype=np.int64) for s in shapes))
    words, host_rng = _seed_words(rng)

    def sds(shape):
        return _jax.ShapeDtypeStruct(shape, dtype)

    out_shapes = (sds(vshape), sds(vshape), tuple(sds(s) for s in shapes),
                  tuple(sds(s) for s in shapes)) + ((sds((P, P)),) if cov else ())

    errors = []

    def host(w, *xs):
        try:
            return host_body(w, *xs)
        except Exception as exc:  # kept: JAX hands back a wrapped copy
            errors.append(exc)
            raise

    def host_body(w, *xs):
        seed = np.random.SeedSequence([int(v) for v in np.asarray(w)]) if host_rng is None \
            else host_rng
        res = call.run([np.asarray(x, dtype=np.float64) for x in xs], seed)
        grads = call.grads(res, shapes)
        nd = np.dtype(dtype)
        out = (np.asarray(res.value, nd).reshape(vshape),
               np.asarray(res.value_stderr, nd).reshape(vshape),
               tuple(g.astype(nd) for g in grads),
               tuple(np.asarray(res.stderr[k], nd).reshape(s)
                     for k, s in zip(call.names, shapes)))
        if cov:
            out = out + (np.asarray(res.cov, nd),)
        return out

    def callback(w, xs):
        return _jax.pure_callback(host, out_shapes, w, *xs, vmap_method="sequential")

    def pack(out):
        aux = {"value_stderr": out[1], "grad": dict(zip(call.names, out[2])),
               "stderr": dict(zip(call.names, out[3]))}
        if cov:
            aux["cov"] = out[4]
        return out[0], aux

    @_jax.custom_vjp
    def run(w, xs):
        return pack(callback(w, xs))

    def fwd(w, xs):
        out = callback(w, xs)
        return pack(out), out[2]

    def bwd(grads, cts):
        ct = cts[0]
        return None, tuple(ct.reshape(ct.shape + (1,) * (g.ndim - ct.ndim)) * g
                           for g in grads)

    run.defvjp(fwd, bwd)
    try:
        value, aux = run(words, ts)
    except Exception:
        if errors:  # an eager call: raise mcscore's own error, not JAX's wrapper
            raise errors[-1] from None
        raise
    return (value, aux) if return_result else value
