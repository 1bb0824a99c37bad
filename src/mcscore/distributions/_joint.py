"""Joint: a product of named, independent component distributions.

``Joint(z=Bernoulli(logits=...), w=Normal(...))`` (or ``Joint({"z": ...,
"w": ...})``) draws every component independently.  Its parameters are the
components' parameters under dotted names, ``"z.logits"``, ``"w.loc"``, ...
(a flat dict: ``params``, ``score``, a result's ``grad`` / ``stderr`` and
``vi_transforms`` use these keys).  A draw is a dict of arrays keyed by
component name, each shaped ``(m, *component.draw_shape)``.

Inside the engine a block of joint draws is the components' blocks one
after the other (the order of ``names``, the order the components were
given): draw coordinate ``offsets[name] + c`` is coordinate c (flat, C
order) of that component's draw.  A fused integrand or a C callback sees
that flat draw.
"""
from __future__ import annotations

from typing import Any

from collections.abc import Mapping

import warnings

import numpy as np

from .. import _docs
from ._base import Distribution

__all__ = ["Joint", "JointDraws"]


class JointDraws(dict[str, Any]):
    """Joint draws: a dict ``{component name: array (m, *draw_shape)}``, with
    ``shape == (m,)`` (m draws) like an array of draws.

    Examples
    --------
    >>> import mcscore as mc
    >>> x = mc.Joint(a=mc.Normal(0.0, 1.0), b=mc.Poisson(2.0)).sample(5, rng=0)
    >>> type(x).__name__, x.shape, sorted(x)
    ('JointDraws', (5,), ['a', 'b'])
    """

    @property
    def shape(self) -> Any:
        return (len(next(iter(self.values()))),) if self else (0,)


def _mean(obj: Any, what: Any) -> Any:
    """obj.<what> whether it is a method or a property (an array, which may
    itself be callable for backward compatibility: not called)."""
    v = getattr(obj, what)
    return np.asarray(v) if isinstance(v, np.ndarray) or not callable(v) else v()


class _CallableDict(dict[str, Any]):
    """Joint.mean's value: a dict that may still be called (the old method),
    returning itself with a DeprecationWarning."""

    def __call__(self) -> Any:
        warnings.warn("mean() is deprecated: mean is a property, as in torch.distributions; "
                      "use q.mean without the call", DeprecationWarning, stacklevel=2)
        return dict(self)


def _every(flag: Any) -> Any:
    """A capability a Joint has when every component has it."""
    return property(lambda self: all(getattr(c, flag) for c in self._components.values()),
                    doc=f"True when every component has {flag}.")


class Joint(Distribution):
    """A product of named, independent distributions of any families.

    ``Joint(z=Bernoulli(...), w=Normal(...))`` or ``Joint({"z": ..., "w":
    ...})``: names are Python identifiers (without dots), components
    mcscore distributions (not themselves Joint).  Keyword arguments with a
    dot, ``"w.loc"=array``, replace one parameter of a component (how
    ``vi.fit`` rebuilds q with new parameters).

    ``batch_shape`` is the longest common prefix of the components' batch
    shapes: with ``batch_ndims=k`` every component's first k batch
    dimensions index the same independent expectations.

    Parameters
    ----------
    components : dict of str to Distribution, optional (positional only)
        The components by name.
    **kwargs : Distribution or array_like
        More components by name, or ``"name.param"=value`` to replace one
        parameter of a component.

    Raises
    ------
    TypeError
        A component that is not a distribution of a family (or is a Joint).
    ValueError
        No components, or a name that is not an identifier without dots.

    Examples
    --------
    %(joint_example)s
    >>> x = q.sample(4, rng=0)
    >>> sorted(x), x["z"].shape, x["w"].shape
    (['w', 'z'], (4,), (4, 2))
    >>> f = lambda x: x["z"] * x["w"].sum(axis=-1) + x["z"]     # E[f] = p (sum(loc) + 1)
    >>> res = mc.score_grad(f, q, 10_000, rng=0)
    >>> sorted(res.grad)
    ['w.loc', 'w.scale', 'z.probs']
    >>> bool(abs(res.grad["z.probs"] - 1.0) < 5 * res.stderr["z.probs"])
    True
    """

    continuous = False

    def __init__(self, components: Any = None, /, **kwargs: Any) -> None:
        Distribution.__init__(self)
        items = {}
        if components is not None:
            if not isinstance(components, Mapping):
                raise TypeError("Joint takes its components as a dict {name: distribution} or "
                                f"as keyword arguments, got {type(components).__name__}")
            items.update(components)
        overrides = {}
        for key, value in kwargs.items():
            if "." in key:
                overrides[key] = value
            elif key in items:
                raise ValueError(f"Joint: component name {key!r} given twice (in the dict and "
                                 "as a keyword argument)")
            else:
                items[key] = value
        if not items:
            raise ValueError("Joint needs at least one component, e.g. Joint(z=Bernoulli(...), "
                             "w=Normal(...))")
        for name, comp in items.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"Joint: component names must be Python identifiers without "
                                 f"dots, got {name!r}")
            if isinstance(comp, Joint) or not isinstance(comp, Distribution):
                raise TypeError(f"Joint: component {name!r} must be an mcscore distribution of a "
                                f"family (not a Joint), got {type(comp).__name__}")
        for key, value in overrides.items():
            name, param = key.split(".", 1)
            comp = items.get(name)
            if comp is None or param not in comp._all_params():
                raise ValueError(
                    f"Joint: {key!r} names no parameter of a component (components "
                    f"{list(items)}; e.g. {name}.{next(iter(comp._all_params()), '?')})"
                    if comp is not None else
                    f"Joint: {key!r} names no component (components {list(items)})")
            items[name] = type(comp)(**{**comp._all_params(), param: value})
        self._components = items
        shapes = [tuple(c.batch_shape) for c in items.values()]
        common = []
        for dims in zip(*shapes):
            if any(d != dims[0] for d in dims):
                break
            common.append(dims[0])
        self.batch_shape = tuple(common)
        self._params = {f"{n}.{p}": v for n, c in items.items() for p, v in c._params.items()}
        sizes = [c.draw_size for c in items.values()]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.offsets = {n: int(o) for n, o in zip(items, starts[:-1])}
        self._size = int(starts[-1])

    # -- structure ---------------------------------------------------------
    @property
    def names(self) -> Any:
        """The component names, in order (the order of the flat layout)."""
        return tuple(self._components)

    @property
    def components(self) -> Any:
        """{name: component distribution} (a copy)."""
        return dict(self._components)

    def __getitem__(self, name: Any) -> Any:
        return self._components[name]

    joint_components = components  # the engine's test for a Joint

    @property
    def kernel_blas(self) -> Any:
        """True when a component's kernels call BLAS (see
        _config.blas_single_threaded)."""
        return any(getattr(c, "kernel_blas", False) for c in self._components.values())

    @property
    def draw_shape(self) -> Any:
        """The engine's flat layout of one draw: (sum of the components'
        draw sizes,)."""
        return (self._size,)

    @property
    def draw_size(self) -> Any:
        return self._size

    def __repr__(self) -> Any:
        return f"Joint({', '.join(f'{n}={c!r}' for n, c in self._components.items())})"

    def _all_params(self) -> Any:
        return dict(self._components)

    def _table_kernel_dist(self) -> Any:
        return None

    def _kernel_dist(self) -> Any:
        raise TypeError(
            "a Joint has no single kernel description: this estimator takes one family; "
            "score_grad (every baseline, control variates, antithetic pairs), "
            "score_grad_from_samples, rloo_grad, pathwise_grad and vi.fit take a Joint")

    def _check_differentiable(self) -> Any:
        for c in self._components.values():
            c._check_differentiable()

    # -- draws ---------------------------------------------------------------
    def unflatten(self, x: Any) -> Any:
        """Flat draws ``(m, draw_size)`` -> JointDraws ``{name: (m, *draw_shape)}``.

        Parameters
        ----------
        x : numpy.ndarray, shape ``(m, draw_size)``
            Draws in the engine's flat layout (the components side by side, in
            the order of ``names``).

        Returns
        -------
        JointDraws
            ``{name: array of shape (m, *component.draw_shape)}``.

        Raises
        ------
        ValueError
            ``x`` with fewer than ``draw_size`` columns.

        Examples
        --------
        %(joint_example)s
        >>> d = q.unflatten(np.array([[1.0, 0.5, -0.5]]))
        >>> d["z"].tolist(), d["w"].tolist()
        ([1.0], [[0.5, -0.5]])
        """
        m = x.shape[0]
        return JointDraws((n, c._to_user_dtype(
            x[:, self.offsets[n]:self.offsets[n] + c.draw_size].reshape((m,) + c.draw_shape)))
            for n, c in self._components.items())

    def flatten(self, x: Any) -> Any:
        """JointDraws / dict ``{name: (m, *draw_shape)}`` -> flat float64 ``(m, draw_size)``.

        Parameters
        ----------
        x : dict of str to array_like
            ``{name: array of shape (m, *component.draw_shape)}``, one entry per
            component (a JointDraws, or a plain dict).

        Returns
        -------
        numpy.ndarray, shape ``(m, draw_size)``
            float64, the components side by side in the order of ``names``.

        Raises
        ------
        ValueError
            Keys that are not exactly the component names, components holding
            different numbers of draws, or a component's draws of the wrong shape.

        Examples
        --------
        %(joint_example)s
        >>> q.flatten({"z": np.array([1.0]), "w": np.array([[0.5, -0.5]])})
        array([[ 1. ,  0.5, -0.5]])
        """
        return self._check_x(x)

    def sample(self, n: Any, rng: Any = None) -> Any:
        """``n`` draws: a JointDraws dict ``{name: (n, *component.draw_shape)}``,
        the components drawn one after the other from ``rng``.

        Parameters
        ----------
        n : int
            The number of draws (>= 0).
        rng : None, int, numpy.random.SeedSequence or numpy.random.Generator
            The randomness (SPEC 7); the components draw one after the other
            from one Generator.

        Returns
        -------
        JointDraws
            ``{name: array of shape (n, *component.draw_shape)}``.

        Raises
        ------
        ValueError
            ``n`` negative or not an integer.

        Examples
        --------
        %(joint_example)s
        >>> x = q.sample(3, rng=0)
        >>> x["z"].shape, x["w"].shape
        ((3,), (3, 2))
        """
        from .. import _validation as V

        gen = V.as_generator(rng)
        return JointDraws((name, c.sample(n, gen)) for name, c in self._components.items())

    def _check_x(self, x: Any) -> Any:
        if isinstance(x, Mapping):
            if set(x) != set(self._components):
                raise ValueError(f"x must be a dict with the components {list(self.names)} of "
                                 f"the Joint, got keys {list(x)}")
            parts = [c._check_x(x[n]) for n, c in self._components.items()]
            ms = {p.shape[0] for p in parts}
            if len(ms) != 1:
                raise ValueError("x's components must hold the same number of draws, got "
                                 + ", ".join(f"{n}: {p.shape[0]}" for n, p in zip(self.names,
                                                                                 parts)))
            m = ms.pop()
            return np.concatenate([p.reshape(m, -1) for p in parts], axis=1)
        return super()._check_x(x)

    def _parts(self, x: Any) -> Any:
        """(name, component, its flat columns reshaped) of checked flat x."""
        m = x.shape[0]
        for n, c in self._components.items():
            o = self.offsets[n]
            yield n, c, x[:, o:o + c.draw_size].reshape((m,) + c.draw_shape)

    def _reduce(self, lp: Any) -> Any:
        """A component's ``(m, *its batch)`` per-draw values summed to ``(m, *batch_shape)``."""
        extra = tuple(range(1 + len(self.batch_shape), lp.ndim))
        return lp.sum(axis=extra) if extra else lp

    def log_prob(self, x: Any) -> Any:
        """Sum of the components' log densities / masses, shape ``(m, *batch_shape)``.

        Parameters
        ----------
        x : dict of str to array_like, or array_like of shape ``(m, draw_size)``
            Joint draws (a dict keyed by component name) or the flat layout.

        Returns
        -------
        numpy.ndarray, shape ``(m, *batch_shape)``
            The sum of the components' log densities / masses (each summed over
            its batch axes beyond the Joint's ``batch_shape``).

        Raises
        ------
        ValueError
            Keys that are not the component names or draws of the wrong shape.

        Examples
        --------
        %(joint_example)s
        >>> x = q.sample(4, rng=0)
        >>> lp = q.log_prob(x)
        >>> bool(np.allclose(lp, mc.Bernoulli(probs=0.3).log_prob(x["z"])
        ...                  + mc.Normal(np.zeros(2), 1.0).log_prob(x["w"]).sum(axis=-1)))
        True
        """
        x = self._check_x(x)
        return sum(self._reduce(c.log_prob(xc)) for _, c, xc in self._parts(x))

    def _log_prob(self, x: Any) -> Any:
        return self.log_prob(x)

    def score(self, x: Any) -> Any:
        """``{"name.param": (m, *param_shape)}``: each component's score of its
        own draws (the other components' parameters do not enter).

        Parameters
        ----------
        %(joint_draws)s

        Returns
        -------
        dict of str to numpy.ndarray
            ``{"name.param": array of shape (m, *param_shape)}``: each
            component's score of its own draws.

        Raises
        ------
        ValueError
            Keys that are not the component names, draws of the wrong shape or
            outside a component's support.

        Examples
        --------
        %(joint_example)s
        >>> sorted(q.score(q.sample(4, rng=0)))
        ['w.loc', 'w.scale', 'z.probs']
        """
        x = self._check_x(x)
        return {f"{n}.{k}": v for n, c, xc in self._parts(x) for k, v in c.score(xc).items()}

    def _score(self, x: Any) -> Any:
        return {f"{n}.{k}": v for n, c, xc in self._parts(x) for k, v in c._score(xc).items()}

    def _split_coords(self, arr: Any) -> Any:
        out, o = {}, 0
        for n, c in self._components.items():
            c._kernel_dist()
            size = sum(sl.stop - sl.start for sl, _ in c._coord_slices.values())
            out.update({f"{n}.{k}": v for k, v in c._split_coords(arr[..., o:o + size]).items()})
            o += size
        return out

    @property
    def _coord_slices(self) -> Any:
        out, o = {}, 0
        for n, c in self._components.items():
            c._kernel_dist()
            for k, (sl, shape) in c._coord_slices.items():
                out[f"{n}.{k}"] = (slice(o + sl.start, o + sl.stop), shape)
            o += max((sl.stop for sl, _ in c._coord_slices.values()), default=0)
        return out

    @property
    def mean(self) -> Any:
        """{name: the component's mean} (a property, as for every family;
        calling it, ``q.mean()``, still works with a DeprecationWarning)."""
        return _CallableDict({n: _mean(c, "mean") for n, c in self._components.items()})

    def entropy(self) -> Any:
        """Sum of the components' entropies, shape batch_shape (every
        component must have ``entropy``).

        Returns
        -------
        numpy.ndarray, shape ``batch_shape``
            The sum of the components' entropies (in nats).

        Raises
        ------
        ValueError
            A component without an entropy.

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> q = mc.Joint(a=mc.Normal(0.0, 1.0), b=mc.Normal(0.0, 2.0))
        >>> bool(np.isclose(q.entropy(), mc.Normal(0.0, 1.0).entropy() + mc.Normal(0.0, 2.0).entropy()))
        True
        """
        total = 0.0
        for n, c in self._components.items():
            if not hasattr(c, "entropy"):
                raise ValueError(f"Joint.entropy: component {n!r} ({type(c).__name__}) has no "
                                 "entropy")
            h = np.asarray(_mean(c, "entropy"), dtype=float)
            total = total + h.sum(axis=tuple(range(len(self.batch_shape), h.ndim)))
        return total

    # -- capabilities -----------------------------------------------------
    def vi_transforms(self) -> Any:
        return {f"{n}.{k}": v for n, c in self._components.items()
                for k, v in c.vi_transforms().items()}

    has_mirror = _every("has_mirror")
    has_mean_tangents = _every("has_mean_tangents")
    has_rsample = _every("has_rsample")

    def mirror(self, x: Any) -> Any:
        """Antithetic partners, component by component (a dict, or the flat
        layout).

        Parameters
        ----------
        %(joint_draws)s

        Returns
        -------
        JointDraws or numpy.ndarray
            The partners, in the form of ``x``.

        Raises
        ------
        ValueError
            When a component has no mirror (the message names it).

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> q = mc.Joint(a=mc.Normal(1.0, 1.0), b=mc.Laplace(0.0, 1.0))
        >>> m = q.mirror({"a": np.array([0.0]), "b": np.array([2.0])})
        >>> m["a"].tolist(), m["b"].tolist()
        ([2.0], [-2.0])
        """
        self.require("mirror")
        if isinstance(x, Mapping):
            return JointDraws((n, c.mirror(x[n])) for n, c in self._components.items())
        x = np.asarray(x, dtype=float)
        return np.concatenate([c.mirror(xc).reshape(len(x), -1) for _, c, xc in self._parts(x)],
                              axis=1)

    @property
    def rsample_through_gammas(self) -> Any:
        return any(c.rsample_through_gammas for c in self._components.values())

    def require(self, capability: Any) -> Any:
        for n, c in self._components.items():
            if not getattr(c, "has_" + capability):
                try:
                    c.require(capability)
                except ValueError as exc:
                    raise ValueError(f"Joint component {n!r} ({type(c).__name__}): "
                                     f"{exc}") from None
        if not getattr(self, "has_" + capability):
            super().require(capability)

# The fragments the docstrings above name by %(name)s (see mcscore._docs), filled in
# once, when the module is imported.
_DOC_FRAGMENTS = {
    "joint_example": """\
>>> import numpy as np
>>> import mcscore as mc
>>> q = mc.Joint(z=mc.Bernoulli(probs=0.3), w=mc.Normal(loc=np.zeros(2), scale=1.0))""",
    "joint_draws": """\
x : dict of str to array_like, or array_like of shape ``(m, draw_size)``
    Joint draws.""",
}
_docs.fill_module(globals(), **_DOC_FRAGMENTS)
