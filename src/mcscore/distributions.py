"""Exponential-family distributions, named and parameterised as in
``torch.distributions``.

Each distribution knows how to

* ``sample(n, rng)`` -- ``n`` draws, shape ``(n, *draw_shape)``;
* ``log_prob(x)`` -- log density / mass, shape ``(m, *batch_shape)``;
* ``score(x)`` -- per-draw gradients of the log density of the whole draw
  with respect to each parameter the user passed, a dict of arrays shaped
  ``(m, *param_shape)``;

and describes itself to the kernels as a table of *score terms*: the score
with respect to parameter element q is a sum of terms, each reading one draw
coordinate c (``a*t(x_c) + b``, ``a*(t(x_c) - c0)^2 + b`` with t one of x,
log x, log(1-x), ``a*sign(x_c - c0) + b``, ``a*|x_c - c0| + b``, ...: the
``SK_*`` kinds of ``_kernels.pxd``).  The terms are an explicit list of
(parameter element, draw coordinate) pairs: by default the coordinates the
element reaches by broadcasting, or any list a family gives (a matrix
parameter).  One evaluator in the kernels computes every score, and
``score()`` calls it too, so they cannot disagree.  A family draws with its
fill function in ``_kernels.pyx`` (registered under its ``family`` code);
see docs/design.md, "Adding a family".

A family also declares its optional capabilities (the ``has_*`` flags and
``mean_tangents``, ``mirror``, ``pathwise_spec``, ``vi_transforms``,
``relaxation``); estimators ask for one (``require``) and get a clear error
naming the families that have it.  This module is longer than the others
(about 1300 lines) on purpose: each family is one class holding all it
knows, and the families share the base class and helpers above them.
"""
from __future__ import annotations

import math
import threading

import numpy as np
from scipy import special

from . import _kernels as K
from . import _validation as V
from . import _vr

__all__ = [
    "Distribution",
    "Normal",
    "LogNormal",
    "Exponential",
    "Gamma",
    "Beta",
    "Poisson",
    "Bernoulli",
    "Binomial",
    "Geometric",
    "NegativeBinomial",
    "Categorical",
    "Multinomial",
    "Dirichlet",
    "Laplace",
    "FAMILIES",
]


# Guards the lazy build of a distribution's kernel description, so that the
# first calls from several threads at once see a complete score table.
_BUILD_LOCK = threading.RLock()

# Largest Poisson rate NumPy's sampler accepts (larger rates overflow int64).
POISSON_RATE_MAX = float(np.iinfo(np.int64).max - 10 * np.sqrt(np.iinfo(np.int64).max))
# Smallest Geometric success probability: P(draw >= 2**62) = exp(-1e-16 * 2**62)
# is then 0 in double precision; smaller ones overflow the int64 draws.
GEOMETRIC_PROBS_MIN = 1e-16


def _index_map(shape, target):
    """For every element of `target` (C order), the flat index of the
    element of an array of `shape` that broadcasting maps onto it."""
    size = int(np.prod(shape, dtype=np.int64))
    return np.broadcast_to(np.arange(size, dtype=np.int64).reshape(shape), target).ravel()


index_map = _index_map  # the estimators' name for it


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
    declared in ``fixed_params`` ({name: constraint}); ``repr`` shows them."""

    family = None  # kernel family code
    continuous = True
    event_ndim = 0  # 1 for Multinomial / Dirichlet (last axis = categories)
    support = "where log_prob is finite"  # in words, for error messages
    arg_constraints = {}  # {parameter name: constraint}, in signature order
    fixed_params = {}  # {name: constraint} of fixed (not differentiated) parameters

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in cls.arg_constraints:
            if not hasattr(cls, name):
                setattr(cls, name, property(
                    lambda self, name=name: self._params[name],
                    doc=f"The parameter {name!r} (validated float64, as passed)."))

    def __init__(self, **params):
        self._kernel = None
        if not params:
            return  # the family sets its parameters itself
        owner = type(self).__name__
        checked = {name: V.param(name, params[name], constraint, owner=owner,
                                 min_ndim=self.event_ndim)
                   for name, constraint in self.arg_constraints.items()}
        self._check_params(**checked)
        shapes = {k: v[..., 0] if self.event_ndim else v for k, v in checked.items()}
        self.batch_shape = V.broadcast_shapes(owner, **shapes)
        self._params = checked

    def _check_params(self, **params):
        """Hook: further checks of the validated parameters (raise ValueError);
        the probs / logits families call it without arguments, once set."""

    # -- shapes ---------------------------------------------------------
    @property
    def draw_shape(self):
        """Shape of one draw."""
        return tuple(self.batch_shape) + tuple(self.event_shape)

    @property
    def draw_size(self):
        return int(np.prod(self.draw_shape, dtype=np.int64))

    @property
    def event_shape(self):
        return ()

    @property
    def params(self):
        """The differentiable parameters, as passed (validated float64)."""
        return dict(self._params)

    @property
    def param_names(self):
        return tuple(self._params)

    def __repr__(self):
        def fmt(v):
            return repr(float(v)) if v.ndim == 0 else f"array(shape={v.shape})"

        parts = [f"{k}={fmt(v)}" for k, v in self._all_params().items()]
        return f"{type(self).__name__}({', '.join(parts)})"

    def _all_params(self):
        return {**{k: getattr(self, k) for k in self.fixed_params}, **self._params}

    def __getstate__(self):
        # The prepared kernel (a Cython object holding C pointers) is a cache:
        # drop it so that distributions pickle (Dask workers rebuild it).
        state = dict(self.__dict__)
        state["_kernel"] = None
        return state

    # -- kernel description ----------------------------------------------
    def _kernel_dist(self):
        if self._kernel is None:
            with _BUILD_LOCK:
                if self._kernel is None:  # another thread may have built it meanwhile
                    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                        self._kernel = self._build_kernel()
        return self._kernel

    def _terms(self):
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

    def _draw_params(self):
        """(p0, p1): the parameters of each unit (the flattened batch) for
        its fill function, each of n_units * k values (k >= 0 per unit);
        the kernels pack them into one block per unit, [p0 of the unit, p1
        of the unit] (a family may put everything in p0 and pass an empty
        p1).  By default the declared parameters in order, each broadcast
        to the batch (with its event axes), the second zeros when there is
        one parameter."""
        out = [np.broadcast_to(v, self.batch_shape + v.shape[v.ndim - self.event_ndim:])
               for v in self._params.values()]
        if len(out) == 1:
            out.append(np.zeros(self.batch_shape))
        return tuple(out)

    def _term_rows(self):
        """_terms() as (name, kind, elem, col, a, b, c) with flat arrays."""
        ds, size = self.draw_shape, self.draw_size
        owner = type(self).__name__
        for row in self._terms():
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

    def _build_kernel(self):
        rows = list(self._term_rows())
        self._coord_slices = {}
        offset = 0
        for name, *_ in rows:
            if name not in self._coord_slices:
                pshape = self._params[name].shape
                psize = int(np.prod(pshape, dtype=np.int64))
                self._coord_slices[name] = (slice(offset, offset + psize), pshape)
                offset += psize
        cat = lambda k: np.concatenate([r[k] for r in rows])  # noqa: E731
        coord = np.concatenate([self._coord_slices[r[0]][0].start + r[2] for r in rows])
        order = np.argsort(coord, kind="stable")
        kind = np.concatenate([np.full(r[2].size, r[1], dtype=np.intc) for r in rows])
        t_start = np.concatenate([[0], np.cumsum(np.bincount(coord, minlength=offset))])
        self._table = dict(
            coord=coord[order], col=cat(3)[order], kind=kind[order], a=cat(4)[order],
            b=cat(5)[order], c=cat(6)[order], t_start=t_start, n_coords=offset,
        )
        p0, p1 = self._draw_params()
        n_units = int(np.prod(self.batch_shape, dtype=np.int64))
        t = self._table
        return K.KernelDist(
            self.family, False, n_units, self._n_cat(), self.draw_size,
            np.ravel(p0), np.ravel(p1), np.zeros(0), np.zeros(0, np.int64),
            t["t_start"], t["kind"], t["col"], t["a"], t["b"], t["c"],
        )

    def _n_cat(self):
        return 1

    def _split_coords(self, arr):
        """Split the last axis (score coordinates) into a dict of param-shaped
        arrays: (..., n_coords) -> {name: (..., *param_shape)}."""
        self._kernel_dist()
        out = {}
        lead = arr.shape[:-1]
        for name, (sl, pshape) in self._coord_slices.items():
            out[name] = arr[..., sl].reshape(lead + tuple(pshape))
        return out

    # -- public methods ----------------------------------------------------
    def sample(self, n, rng=None):
        """``n`` draws as an array of shape ``(n, *draw_shape)``.

        ``rng``: None, an int, a SeedSequence or a Generator (SPEC 7).  A
        Generator's bit generator is advanced, as NumPy's own methods do.
        """
        n = V.integer("n", n, minimum=0, maximum=2**62)
        gen = V.as_generator(rng)
        kd = self._kernel_dist()
        with gen.bit_generator.lock:  # threads may share one Generator
            x = K.draw(kd, gen.bit_generator, n)
        x = x.reshape((n,) + self.draw_shape)
        self._check_draws(x)
        return self._to_user_dtype(x)

    def _to_user_dtype(self, x):
        return x

    def _check_draws(self, x):
        """Hook: raise when the kernel produced draws that are not valid."""

    def _check_x(self, x):
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

    def score(self, x):
        """Per-draw scores: {param name: array of shape (m, *param_shape)}, the
        gradient of log p(x) (summed over the whole draw) w.r.t. each
        element of each parameter the user passed.

        A draw outside the support (where :meth:`log_prob` is -inf) raises
        ValueError; a draw holding NaN gives NaN scores."""
        x = self._check_x(x)
        self._check_support(x)
        return self._score(x)

    def _check_support(self, x):
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

    def _in_support(self, x):
        """Where log_prob(x) is not -inf, shape (m, *batch_shape) (a family
        overrides it with a cheaper test of the same set)."""
        return self._log_prob(x) != -np.inf

    def _score(self, x):
        """score() on checked draws x of shape (m, *draw_shape), by the
        kernels' score evaluator (_kernels.eval_scores)."""
        self._check_differentiable()
        kd = self._kernel_dist()
        m = x.shape[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            s = K.eval_scores(kd, x.reshape(m, self.draw_size))
        return self._split_coords(s)

    def log_prob(self, x):
        """Log density (continuous) or mass (discrete) of each draw, shape
        ``(m, *batch_shape)``; ``-inf`` outside the support (including
        infinite coordinates), NaN for a draw holding NaN."""
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

    def _check_differentiable(self):
        """Raise when a score is undefined at the current parameters."""

    def mean(self):
        raise NotImplementedError


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

    def relaxed_shape(self):
        """Shape of one relaxed draw (relaxed_grad, rebar_grad)."""
        return self.draw_shape
    # the unconstrained coordinate of a "probs" parameter for vi.fit
    _probs_transform = "logit"

    def require(self, capability):
        """Raise the clear error of an estimator that needs `capability`
        ("rsample", "mirror", "mean_tangents") when this family lacks it."""
        if getattr(self, "has_" + capability):
            return
        name = type(self).__name__
        having = ", ".join(c.__name__ for c in FAMILIES if getattr(c, "has_" + capability))
        if capability == "rsample":
            raise ValueError(f"pathwise_grad supports {having}; got {name}")
        if capability == "mirror":
            raise ValueError("antithetic=True needs a family symmetric about a known point "
                             f"({having}); got {name}")
        raise ValueError(f"control variate 'delta' is not available for {name}")

    def mean_tangents(self):
        """{param: d E[x_c] / d param element, an array of draw_shape} for the
        delta control variate (each draw coordinate's mean differentiated
        w.r.t. the parameter element it depends on)."""
        self.require("mean_tangents")

    def mirror(self, x):
        """The antithetic partner of draws x (symmetric families)."""
        self.require("mirror")

    def pathwise_spec(self):
        """[(param name, _vr.TK_* tangent kind, a, b)]: the rows of the
        reparameterisation table, a and b broadcastable to draw_shape."""
        self.require("rsample")

    def vi_transforms(self):
        """{param name: "identity" | "log" | "logit"}: the unconstrained
        coordinate vi.fit optimises for each parameter."""
        out = {}
        for name in self.param_names:
            if name in _POSITIVE_PARAMS:
                out[name] = "log"
            elif name == "probs":
                out[name] = self._probs_transform
            else:
                out[name] = "identity"
        return out

    def _draw_broadcast(self, v):
        return np.broadcast_to(np.asarray(v, float), self.draw_shape)


# ---------------------------------------------------------------------------
# helpers for probs / logits families
# ---------------------------------------------------------------------------

def _probs_or_logits(owner, probs, logits, *, min_ndim=0, simplex=False):
    if (probs is None) == (logits is None):
        raise ValueError(f"{owner}: pass exactly one of probs or logits")
    if probs is not None:
        p = V.param("probs", probs, "nonnegative" if simplex else "unit_interval",
                    owner=owner, min_ndim=min_ndim)
        if simplex:
            with np.errstate(over="ignore"):
                tot = p.sum(axis=-1)
            if not (tot > 0).all():
                raise ValueError(f"{owner}: probs must have a positive sum along the last axis")
            if not np.isfinite(tot).all():
                raise ValueError(
                    f"{owner}: probs must have a finite sum along the last axis (at most "
                    f"{_DBL_MAX:.4g}), got a sum that overflows to inf; divide probs by a "
                    "constant (they need not sum to 1) or pass logits")
        return "probs", p
    return "logits", V.param("logits", logits, "real", owner=owner, min_ndim=min_ndim)


_DBL_MAX = float(np.finfo(np.float64).max)
# Scores with respect to probs hold 1 / probs: below this it overflows.
_PROBS_SCORE_MIN = 1.0 / _DBL_MAX


def _check_probs_score(owner, p, rescalable=False):
    """Raise unless 1 / p is finite for every p (the scores w.r.t. probs)."""
    if not (p >= _PROBS_SCORE_MIN).all():
        raise ValueError(
            f"{owner}: probs must be >= {_PROBS_SCORE_MIN:.4g} (1 / the largest double) to "
            f"estimate gradients w.r.t. probs (the score holds 1 / probs, which overflows), got "
            f"{float(np.min(p))!r}; pass logits instead" + (
                ", or multiply probs by a constant (they need not sum to 1)" if rescalable
                else ""))


def _expit_pair(logits):
    """(p, 1 - p) from logits, each accurate in its own tail."""
    return special.expit(logits), special.expit(-logits)


class _BinaryFamily(Distribution):
    """Shared plumbing of Bernoulli, Binomial, Geometric, NegativeBinomial:
    one differentiable parameter, probs or logits (exactly one passed), and
    the fixed parameters of ``fixed_params`` ({name: constraint})."""

    continuous = False
    probs_constraint = None  # a narrower constraint on probs than [0, 1]

    def __init__(self, probs=None, logits=None, **fixed):
        super().__init__()
        owner = type(self).__name__
        self._which, v = _probs_or_logits(owner, probs, logits)
        if self._which == "probs" and self.probs_constraint is not None:
            V.check("probs", v, self.probs_constraint, owner=owner)
        for name, constraint in self.fixed_params.items():
            setattr(self, name, V.param(name, fixed[name], constraint, owner=owner))
        shapes = {name: getattr(self, name) for name in self.fixed_params}
        self.batch_shape = V.broadcast_shapes(owner, **shapes, **{self._which: v})
        self._params = {self._which: v}
        self._check_params()

    def _draw_params(self):
        """[probs of the unit, total_count of the unit (0 without one)]."""
        return (np.broadcast_to(self.probs, self.batch_shape),
                np.broadcast_to(getattr(self, "total_count", 0.0), self.batch_shape))

    def _pq(self):
        name, v = self._which, self._params[self._which]
        if name == "logits":
            return _expit_pair(v)
        return v, 1.0 - v

    @property
    def probs(self):
        return self._pq()[0]

    @property
    def logits(self):
        p, q = self._pq()
        return np.log(p) - np.log(q)

    def _check_differentiable(self):
        if self._which == "probs":
            p = self._params["probs"]
            if not ((p > 0) & (p < 1)).all():
                raise ValueError(
                    f"{type(self).__name__}: probs must be in (0, 1) to estimate gradients "
                    "w.r.t. probs (the score is undefined at 0 and 1); pass logits instead"
                )
            _check_probs_score(type(self).__name__, p)


# ---------------------------------------------------------------------------
# continuous families
# ---------------------------------------------------------------------------

class _LocScale(Distribution):
    """Shared plumbing of the location-scale families (loc real, scale > 0,
    unit blocks [loc, scale])."""

    support = "x any real number"
    arg_constraints = {"loc": "real", "scale": "positive"}

    def __init__(self, loc, scale):
        super().__init__(loc=loc, scale=scale)

    def _in_support(self, x):
        return np.ones(x.shape, dtype=bool)  # infinite x is checked by the caller


class Normal(_LocScale):
    """Normal(loc, scale): density exp(-(x-loc)^2 / (2 scale^2)) / (scale sqrt(2 pi))."""

    family = K.MC_NORMAL
    _log = False

    def _terms(self):
        mu, s = np.broadcast_arrays(self.loc, self.scale)
        s2 = s * s
        aff, quad = (K.SK_LOG_AFFINE, K.SK_LOG_QUAD) if self._log else (K.SK_AFFINE, K.SK_QUAD)
        return [
            ("loc", aff, 1.0 / s2, -mu / s2, 0.0),
            ("scale", quad, 1.0 / (s2 * s), -1.0 / s, mu),
        ]

    def _log_prob(self, x):
        z = (x - self.loc) / self.scale
        return -0.5 * z * z - np.log(self.scale) - 0.5 * math.log(2 * math.pi)

    # The score is a*t(x) + b with a = 1/scale**2 and a*(t(x) - loc)**2 + b with
    # a = 1/scale**3: outside this range of scales the coefficients over- or
    # underflow in double precision.
    SCALE_RANGE = (1e-100, 1e100)
    # Draws loc + scale*z must resolve the distribution: scale >= 2**-40 |loc|
    # keeps about 4000 representable values per standard deviation.
    RESOLUTION = 2.0**-40

    def _check_differentiable(self):
        owner = type(self).__name__
        s, mu = np.broadcast_arrays(self.scale, self.loc)
        lo, hi = self.SCALE_RANGE
        bad = ~((s >= lo) & (s <= hi))
        if bad.any():
            v = s[bad].flat[0]
            raise ValueError(
                f"{owner}: scale must be in [{lo:g}, {hi:g}] to estimate gradients (got {float(v)!r}): "
                "the score's terms 1/scale**2 and 1/scale**3 over- or underflow in double "
                "precision beyond; rescale the problem (draw x/c and use f(c*x))"
            )
        ref = np.maximum(1.0, np.abs(mu)) if self._log else np.abs(mu)
        bad = s < self.RESOLUTION * ref
        if bad.any():
            i = np.argwhere(bad)[0]
            what = "log x = loc + scale*z" if self._log else "x = loc + scale*z"
            raise ValueError(
                f"{owner}: scale={float(s[tuple(i)])!r} is too small for loc={float(mu[tuple(i)])!r} to estimate "
                f"gradients: {what} rounds to a few values in double precision (need scale >= "
                f"2**-40 * {'max(1, |loc|)' if self._log else '|loc|'}); centre the problem "
                "(draw around 0 and shift x inside f)"
            )

    def mean(self):
        return np.broadcast_to(self.loc, self.batch_shape).copy()

    has_rsample = has_mirror = has_mean_tangents = True
    rsample_through_gammas = False

    def mean_tangents(self):
        b = self._draw_broadcast
        return {"loc": b(1.0), "scale": b(0.0)}

    def mirror(self, x):
        return 2 * self.loc - x

    def pathwise_spec(self):
        b = self._draw_broadcast
        return [("loc", _vr.TK_ONE, 0.0, 0.0),
                ("scale", _vr.TK_NSCALE, b(self.loc), b(self.scale))]


class LogNormal(Normal):
    """LogNormal(loc, scale): log x ~ Normal(loc, scale)."""

    support = "x > 0"

    family = K.MC_LOGNORMAL
    _log = True

    def _in_support(self, x):
        return x > 0

    def _log_prob(self, x):
        lx = np.log(x)
        out = super()._log_prob(lx) - lx
        return np.where(x > 0, out, -np.inf)

    def mean(self):
        return np.broadcast_to(np.exp(self.loc + 0.5 * self.scale**2), self.batch_shape).copy()

    def mean_tangents(self):
        b = self._draw_broadcast
        m = np.exp(self.loc + 0.5 * self.scale**2)
        return {"loc": b(m), "scale": b(self.scale * m)}

    def mirror(self, x):
        return np.exp(2 * self.loc - np.log(x))

    def pathwise_spec(self):
        b = self._draw_broadcast
        return [("loc", _vr.TK_LNLOC, 0.0, 0.0),
                ("scale", _vr.TK_LNSCALE, b(self.loc), b(self.scale))]


class Exponential(Distribution):
    """Exponential(rate): density rate * exp(-rate x) on x > 0."""

    support = "x >= 0"

    family = K.MC_EXPONENTIAL
    arg_constraints = {"rate": "positive"}

    def __init__(self, rate):
        super().__init__(rate=rate)

    def _terms(self):
        return [("rate", K.SK_AFFINE, -1.0, 1.0 / self.rate, 0.0)]

    def _log_prob(self, x):
        return np.where(x >= 0, np.log(self.rate) - self.rate * x, -np.inf)

    def mean(self):
        return 1.0 / self.rate

    has_rsample = has_mean_tangents = True

    def mean_tangents(self):
        return {"rate": self._draw_broadcast(-1.0 / self.rate**2)}

    def pathwise_spec(self):
        return [("rate", _vr.TK_NEG_X_OVER, self._draw_broadcast(self.rate), 0.0)]


class Gamma(Distribution):
    """Gamma(concentration, rate): density rate^a x^(a-1) e^(-rate x) / Gamma(a)."""

    support = "x > 0"

    family = K.MC_GAMMA
    arg_constraints = {"concentration": "positive", "rate": "positive"}

    def __init__(self, concentration, rate):
        super().__init__(concentration=concentration, rate=rate)

    def _terms(self):
        a, r = np.broadcast_arrays(self.concentration, self.rate)
        return [
            ("concentration", K.SK_LOG_AFFINE, 1.0, np.log(r) - special.digamma(a), 0.0),
            ("rate", K.SK_AFFINE, -1.0, a / r, 0.0),
        ]

    def _log_prob(self, x):
        a, r = self.concentration, self.rate
        out = a * np.log(r) + special.xlogy(a - 1, x) - r * x - special.gammaln(a)
        return np.where(x >= 0, out, -np.inf)

    def mean(self):
        return np.broadcast_to(self.concentration / self.rate, self.batch_shape).copy()

    has_rsample = has_mean_tangents = True

    def mean_tangents(self):
        b = self._draw_broadcast
        return {"concentration": b(1.0 / self.rate),
                "rate": b(-self.concentration / self.rate**2)}

    def pathwise_spec(self):
        b = self._draw_broadcast
        return [("concentration", _vr.TK_GAMMA_CONC, b(self.concentration), b(self.rate)),
                ("rate", _vr.TK_NEG_X_OVER, b(self.rate), 0.0)]


class Beta(Distribution):
    """Beta(concentration1, concentration0): density x^(c1-1) (1-x)^(c0-1) / B(c1, c0)."""

    support = "0 < x < 1"

    family = K.MC_BETA
    arg_constraints = {"concentration1": "positive", "concentration0": "positive"}

    def __init__(self, concentration1, concentration0):
        super().__init__(concentration1=concentration1, concentration0=concentration0)

    def _terms(self):
        a, b = np.broadcast_arrays(self._params["concentration1"], self._params["concentration0"])
        dab = special.digamma(a + b)
        return [
            ("concentration1", K.SK_LOG_AFFINE, 1.0, dab - special.digamma(a), 0.0),
            ("concentration0", K.SK_LOG1M_AFFINE, 1.0, dab - special.digamma(b), 0.0),
        ]

    def _log_prob(self, x):
        a, b = self._params["concentration1"], self._params["concentration0"]
        out = special.xlogy(a - 1, x) + special.xlog1py(b - 1, -x) - special.betaln(a, b)
        return np.where((x >= 0) & (x <= 1), out, -np.inf)

    def mean(self):
        a, b = self._params["concentration1"], self._params["concentration0"]
        return np.broadcast_to(a / (a + b), self.batch_shape).copy()

    has_rsample = has_mean_tangents = True
    # pathwise_grad draws Beta variates as normalised Gamma variates
    rsample_through_gammas = True

    def mean_tangents(self):
        a1, a0 = self._params["concentration1"], self._params["concentration0"]
        return {"concentration1": self._draw_broadcast(a0 / (a1 + a0) ** 2),
                "concentration0": self._draw_broadcast(-a1 / (a1 + a0) ** 2)}

    def pathwise_spec(self):
        return [("concentration1", _vr.TK_AUX0, 0.0, 0.0),
                ("concentration0", _vr.TK_AUX1, 0.0, 0.0)]


# ---------------------------------------------------------------------------
# discrete univariate families
# ---------------------------------------------------------------------------

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _stirlerr(n):
    """log(n!) - [(n + 1/2) log n - n + log(2 pi)/2] for n > 0: the error of
    Stirling's formula, accurate for every n (series for n > 15)."""
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        small = special.gammaln(n + 1) - (n + 0.5) * np.log(n) + n - _HALF_LOG_2PI
        nn = n * n
        big = (1 / 12 - (1 / 360 - (1 / 1260 - (1 / 1680 - 1 / (1188 * nn)) / nn) / nn) / nn) / n
    return np.where(n > 15, big, small)


def _bd0(x, m):
    """x log(x / m) + m - x, without cancellation when x is close to m
    (the deviance term of the saddle-point log-pmfs)."""
    x, m = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(m, np.float64))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = special.xlogy(x, x / m) + m - x
        near = np.abs(x - m) < 0.1 * (x + m)
        if near.any():
            xs, ms = x[near], m[near]
            v = (xs - ms) / (xs + ms)
            acc = (xs - ms) * v
            ej = 2 * xs * v
            v2 = v * v
            for j in range(1, 40):
                ej = ej * v2
                nxt = acc + ej / (2 * j + 1)
                if np.array_equal(nxt, acc):
                    break
                acc = nxt
            out = out.copy()
            out[near] = acc
    return out


def _binomial_log_pmf(x, n, p, q):
    """log C(n, x) p^x q^(n-x) for real 0 <= x <= n by the saddle-point form
    (accurate for n up to 2**62; x = 0 and x = n exactly)."""
    x, n, p, q = np.broadcast_arrays(*(np.asarray(a, np.float64) for a in (x, n, p, q)))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        y = n - x
        inner = (_stirlerr(n) - _stirlerr(x) - _stirlerr(y) - _bd0(x, n * p) - _bd0(y, n * q)
                 + 0.5 * np.log(n / (2 * math.pi * x * y)))
        out = np.where(x == 0, special.xlogy(n, q), np.where(y == 0, special.xlogy(n, p), inner))
    return out


def _is_count(x, upper=None):
    ok = (x >= 0) & (x == np.floor(x))
    if upper is not None:
        ok &= x <= upper
    return ok


class Poisson(Distribution):
    """Poisson(rate): P(k) = rate^k e^(-rate) / k!."""

    support = "x a non-negative integer"

    family = K.MC_POISSON
    continuous = False
    arg_constraints = {"rate": "positive"}

    def __init__(self, rate):
        super().__init__(rate=rate)

    def _check_params(self, rate):
        if not (rate <= POISSON_RATE_MAX).all():
            raise ValueError(f"Poisson: rate must be <= {POISSON_RATE_MAX:.6g} (larger rates "
                             f"overflow the int64 draws), got {float(rate.max())!r}")

    def _terms(self):
        return [("rate", K.SK_AFFINE, 1.0 / self.rate, -1.0, 0.0)]

    def _log_prob(self, x):
        lam = self.rate
        inner = -_stirlerr(x) - _bd0(x, lam) - 0.5 * np.log(2 * math.pi * x)
        out = np.where(x == 0, -lam, inner)
        return np.where(_is_count(x), out, -np.inf)

    def _in_support(self, x):
        return _is_count(x)

    def mean(self):
        return self.rate.copy()

    has_mean_tangents = True

    def mean_tangents(self):
        return {"rate": self._draw_broadcast(1.0)}


class Bernoulli(_BinaryFamily):
    """Bernoulli(probs=None, logits=None): P(1) = probs = sigmoid(logits)."""

    support = "x 0 or 1"

    family = K.MC_BERNOULLI

    def _terms(self):
        p, q = self._pq()
        if self._which == "logits":
            return [("logits", K.SK_AFFINE, 1.0, -p, 0.0)]
        return [("probs", K.SK_AFFINE, 1.0 / p + 1.0 / q, -1.0 / q, 0.0)]

    def _log_prob(self, x):
        p, q = self._pq()
        out = np.where(x == 1, np.log(p), np.log(q))
        return np.where((x == 0) | (x == 1), out, -np.inf)

    def _in_support(self, x):
        return (x == 0) | (x == 1)

    def mean(self):
        return self.probs

    has_mean_tangents = has_relaxation = has_binary_relaxation = True

    def mean_tangents(self):
        p, q = self._pq()
        return {self._which: self._draw_broadcast(p * q if self._which == "logits" else 1.0)}

    def relaxation(self):
        """(units W, categories K (1: binary), logit-space parameters, probs,
        conversion code, cv, cvs) for the relaxed / REBAR / DisARM kernels:
        conversion 1 maps a logit gradient to probs with cv = 1 / (p q)."""
        p, q = self._pq()
        th = np.ravel(np.log(p) - np.log(q)) if self._which == "probs" else \
            np.ravel(np.broadcast_to(self._params["logits"], self.batch_shape))
        pr = np.ravel(p)
        conv = 1 if self._which == "probs" else 0
        cv = np.ravel(1.0 / (p * q)) if conv else np.ones(1)
        return th.size, 1, np.ascontiguousarray(th, float), pr, conv, cv, np.ones(1)


class Binomial(_BinaryFamily):
    """Binomial(total_count, probs=None, logits=None): successes in
    total_count trials (total_count is fixed, not differentiated)."""

    support = "x an integer in 0..total_count"

    family = K.MC_BINOMIAL
    fixed_params = {"total_count": "nonnegative_integer"}

    def __init__(self, total_count=1, probs=None, logits=None):
        super().__init__(probs, logits, total_count=total_count)

    def _terms(self):
        p, q = self._pq()
        n = self.total_count
        if self._which == "logits":
            return [("logits", K.SK_AFFINE, 1.0, -n * p, 0.0)]
        return [("probs", K.SK_AFFINE, 1.0 / p + 1.0 / q, -n / q, 0.0)]

    def _log_prob(self, x):
        p, q = self._pq()
        n = self.total_count
        ok = _is_count(x, n)
        out = _binomial_log_pmf(np.where(ok, x, 0.0), n, p, q)
        return np.where(ok, out, -np.inf)

    def _in_support(self, x):
        return _is_count(x, self.total_count)

    def mean(self):
        return np.broadcast_to(self.total_count * self.probs, self.batch_shape).copy()


class Geometric(_BinaryFamily):
    """Geometric(probs=None, logits=None): failures before the first success,
    P(k) = (1 - p)^k p, k = 0, 1, ..."""

    support = "x a non-negative integer"

    family = K.MC_GEOMETRIC
    probs_constraint = "unit_interval_gt0"

    def _check_params(self):
        v = self._params[self._which]
        p = self._pq()[0]
        if not (p >= GEOMETRIC_PROBS_MIN).all():
            lim = ("probs must be >= 1e-16" if self._which == "probs"
                   else f"logits must be >= {math.log(GEOMETRIC_PROBS_MIN):.4f} (probs >= 1e-16)")
            raise ValueError(f"Geometric: {lim}: smaller success probabilities make draws "
                             f"(about 1/probs failures) overflow int64, got {self._which} "
                             f"{float(v[p < GEOMETRIC_PROBS_MIN].flat[0])!r}")

    def _terms(self):
        p, q = self._pq()
        if self._which == "logits":
            return [("logits", K.SK_AFFINE, -p, q, 0.0)]
        return [("probs", K.SK_AFFINE, -1.0 / q, 1.0 / p, 0.0)]

    def _in_support(self, x):
        return _is_count(x)

    def _log_prob(self, x):
        p, q = self._pq()
        out = special.xlogy(x, q) + np.log(p)
        return np.where(_is_count(x), out, -np.inf)

    def mean(self):
        p, q = self._pq()
        return q / p


class NegativeBinomial(_BinaryFamily):
    """NegativeBinomial(total_count, probs=None, logits=None): successes
    (probability probs) before total_count failures,
    P(k) = C(k + r - 1, k) (1 - p)^r p^k."""

    support = "x a non-negative integer"

    family = K.MC_NEGATIVE_BINOMIAL
    fixed_params = {"total_count": "positive"}
    probs_constraint = "unit_interval_lt1"

    def __init__(self, total_count, probs=None, logits=None):
        super().__init__(probs, logits, total_count=total_count)

    def _check_params(self):
        owner, r = "NegativeBinomial", self.total_count
        p, q = self._pq()
        with np.errstate(divide="ignore", over="ignore"):
            # a draw is Poisson(Gamma(r) * p/q); Gamma(r) < r + 12 sqrt(r) + 50 always
            top = (p / q) * (r + 12 * np.sqrt(r) + 50)
        if not (top <= 2.0**62).all():
            raise ValueError(
                f"{owner}: total_count * probs / (1 - probs) is too large (the mean is "
                f"{np.max(r * p / q):.3g}): draws would overflow int64; need "
                "probs / (1 - probs) * (total_count + 12 sqrt(total_count) + 50) <= 2**62"
            )

    def _terms(self):
        p, q = self._pq()
        r = self.total_count
        if self._which == "logits":
            return [("logits", K.SK_AFFINE, q, -r * p, 0.0)]
        return [("probs", K.SK_AFFINE, 1.0 / p, -r / q, 0.0)]

    def _in_support(self, x):
        return _is_count(x)

    def _log_prob(self, x):
        p, q = self._pq()
        r = self.total_count
        ok = _is_count(x)
        k = np.where(ok, x, 0.0)
        # C(k + r - 1, k) q^r p^k = r / (k + r) * [binomial pmf of r in k + r trials, prob q]
        out = np.log(r / (k + r)) + _binomial_log_pmf(r, k + r, q, p)
        out = np.where(k == 0, special.xlogy(r, q), out)
        return np.where(ok, out, -np.inf)

    def mean(self):
        p, q = self._pq()
        return np.broadcast_to(self.total_count * p / q, self.batch_shape).copy()


# ---------------------------------------------------------------------------
# categorical families (last axis of the parameter = categories)
# ---------------------------------------------------------------------------

class _CategoricalBase(Distribution):
    continuous = False
    _probs_transform = "log"

    def _init_probs(self, owner, probs, logits):
        self._which, v = _probs_or_logits(owner, probs, logits, min_ndim=1, simplex=True)
        if v.shape[-1] < 1:
            raise ValueError(f"{owner}: {self._which} needs at least one category (last axis)")
        self._params = {self._which: v}
        return v

    @property
    def probs(self):
        """Normalised probabilities, shape (*batch_shape, K)."""
        v = self._params[self._which]
        if self._which == "logits":
            return special.softmax(v, axis=-1)
        return v / v.sum(axis=-1, keepdims=True)

    @property
    def logits(self):
        if self._which == "logits":
            v = self._params["logits"]
            return v - special.logsumexp(v, axis=-1, keepdims=True)
        with np.errstate(divide="ignore"):
            return np.log(self.probs)

    @property
    def n_categories(self):
        return self._params[self._which].shape[-1]

    def _n_cat(self):
        return self.n_categories

    def _check_differentiable(self):
        if self._which == "probs" and not (self._params["probs"] > 0).all():
            raise ValueError(
                f"{type(self).__name__}: probs must be > 0 to estimate gradients w.r.t. probs "
                "(a category of probability 0 is never drawn, so its gradient cannot be "
                "estimated); pass logits, or drop the category"
            )
        if self._which == "probs":
            _check_probs_score(type(self).__name__, self._params["probs"], rescalable=True)

    def _category_ab(self, scale):
        """(a, b) of s = a * [count or indicator] + b per (unit, category);
        `scale` multiplies b (total_count for Multinomial)."""
        v = self._params[self._which]
        if self._which == "logits":
            return np.ones_like(self.probs), -scale * self.probs
        with np.errstate(divide="ignore"):
            return 1.0 / v, -scale / v.sum(axis=-1, keepdims=True) + 0 * v


class Categorical(_CategoricalBase):
    """Categorical(probs=None, logits=None): an index in 0..K-1, the last axis
    of probs / logits holding the K categories (probs need not sum to 1)."""

    support = "x an integer in 0..K-1"

    family = K.MC_CATEGORICAL

    def __init__(self, probs=None, logits=None):
        super().__init__()
        v = self._init_probs("Categorical", probs, logits)
        self.batch_shape = v.shape[:-1]

    def _build_kernel(self):
        kk = self.n_categories
        units = int(np.prod(self.batch_shape, dtype=np.int64))
        pr = np.ascontiguousarray(self.probs.reshape(units, kk))
        q, al = K.alias_table(pr)
        a, b = self._category_ab(1.0)
        name = self._which
        self._coord_slices = {name: (slice(0, units * kk), self._params[name].shape)}
        self._table = dict(a=np.ravel(a), b=np.ravel(b), n_coords=units * kk)
        # the kernels accumulate per-category counts; the table (coordinate
        # (unit, k): a * [x_unit == k] + b) serves score() and the features
        qq = np.arange(units * kk)
        return K.KernelDist(
            self.family, True, units, kk, units, np.zeros(units), np.zeros(units),
            q.ravel(), al.ravel(), np.arange(units * kk + 1, dtype=np.int64),
            np.full(units * kk, K.SK_CATEGORY, np.intc), qq // kk, np.ravel(a), np.ravel(b),
            (qq % kk).astype(float),
        )

    def _to_user_dtype(self, x):
        return x.astype(np.int64)

    def _in_support(self, x):
        return _is_count(x, self.n_categories - 1)

    def _log_prob(self, x):
        kk = self.n_categories
        ok = _is_count(x, kk - 1)
        idx = np.where(ok, x, 0).astype(np.int64)
        lp = np.broadcast_to(self.logits, x.shape + (kk,))
        out = np.take_along_axis(lp, idx[..., None], axis=-1)[..., 0]
        return np.where(ok, out, -np.inf)

    def mean(self):
        return (self.probs * np.arange(self.n_categories)).sum(-1)

    has_relaxation = True

    def relaxation(self):
        """As Bernoulli.relaxation, K categories per unit; conversion 2 maps
        a logit gradient to (unnormalised) probs with cv = 1 / v and
        cvs = 1 / sum v."""
        kk = self.n_categories
        lp = np.ascontiguousarray(self.logits.ravel(), float)
        pr = np.ascontiguousarray(self.probs.ravel(), float)
        if self._which == "probs":
            v = self._params["probs"]
            cv = np.ravel(1.0 / v)
            cvs = np.ravel(1.0 / v.sum(-1))
            conv = 2
        else:
            cv, cvs, conv = np.ones(1), np.ones(1), 0
        return lp.size, kk, lp, pr, conv, np.ascontiguousarray(cv), np.ascontiguousarray(cvs)

    def relaxed_shape(self):
        """Shape of one relaxed draw (a point of the simplex per unit)."""
        return self.draw_shape + (self.n_categories,)


class Multinomial(_CategoricalBase):
    """Multinomial(total_count, probs=None, logits=None): category counts of
    total_count draws (total_count fixed, may broadcast with the batch)."""

    support = "x non-negative integer counts summing to total_count"

    family = K.MC_MULTINOMIAL
    fixed_params = {"total_count": "nonnegative_integer"}
    event_ndim = 1

    def __init__(self, total_count=1, probs=None, logits=None):
        super().__init__()
        owner = "Multinomial"
        v = self._init_probs(owner, probs, logits)
        n = V.param("total_count", total_count, self.fixed_params["total_count"], owner=owner)
        self.total_count = n
        try:
            self.batch_shape = np.broadcast_shapes(v.shape[:-1], n.shape)
        except ValueError:
            raise ValueError(
                f"{owner}: total_count {n.shape} does not broadcast with the batch shape "
                f"{v.shape[:-1]} of {self._which} {v.shape}"
            ) from None

    @property
    def event_shape(self):
        return (self.n_categories,)

    def _draw_params(self):
        pr = np.broadcast_to(self.probs, self.draw_shape)
        return pr, np.broadcast_to(self.total_count, self.batch_shape)

    def _terms(self):
        n = self.total_count[..., None]
        a, b = self._category_ab(n)
        return [(self._which, K.SK_AFFINE, a, b, 0.0)]

    def _log_prob(self, x):
        n = self.total_count
        ok = _is_count(x).all(-1) & (x.sum(-1) == n)
        lp = np.broadcast_to(self.logits, x.shape)
        terms = np.where(x > 0, x * lp, 0.0).sum(-1)
        out = special.gammaln(n + 1) - special.gammaln(x + 1).sum(-1) + terms
        return np.where(ok, out, -np.inf)

    def mean(self):
        return self.total_count[..., None] * self.probs


class Dirichlet(Distribution):
    """Dirichlet(concentration): a point of the simplex, the last axis of
    concentration holding the K categories."""

    support = "x in [0, 1]^K summing to 1"

    family = K.MC_DIRICHLET
    event_ndim = 1
    arg_constraints = {"concentration": "positive"}

    def __init__(self, concentration):
        super().__init__(concentration=concentration)

    def _check_params(self, concentration):
        if concentration.shape[-1] < 2:
            raise ValueError("Dirichlet: concentration needs at least 2 categories (last axis)")

    @property
    def event_shape(self):
        return (self.concentration.shape[-1],)

    def _n_cat(self):
        return self.concentration.shape[-1]

    def _check_draws(self, x):
        if np.isnan(x).any():
            raise FloatingPointError(
                f"{self!r}: some draws are NaN: for tiny concentrations all K gamma variates of "
                "a draw can underflow to 0 (the kernel normalises 0/0); use larger "
                "concentrations"
            )

    def _terms(self):
        a = self.concentration
        b = special.digamma(a.sum(-1, keepdims=True)) - special.digamma(a)
        return [("concentration", K.SK_LOG_AFFINE, 1.0, b, 0.0)]

    def _log_prob(self, x):
        a = self.concentration
        ok = ((x >= 0) & (x <= 1)).all(-1) & (np.abs(x.sum(-1) - 1) < 1e-8)
        out = (special.xlogy(a - 1, x).sum(-1) + special.gammaln(a.sum(-1))
               - special.gammaln(a).sum(-1))
        return np.where(ok, out, -np.inf)

    def mean(self):
        a = self.concentration
        return a / a.sum(-1, keepdims=True)

    has_rsample = True
    rsample_through_gammas = True

    def pathwise_spec(self):
        kk = self.event_shape[0]
        cols = np.arange(self.draw_size).reshape(self.draw_shape)
        return [("concentration", _vr.TK_DIRICHLET, (cols // kk) * kk, float(kk))]


# ---------------------------------------------------------------------------
# added by the recipe of docs/design.md ("Adding a family")
# ---------------------------------------------------------------------------

class Laplace(_LocScale):
    """Laplace(loc, scale): density exp(-|x - loc| / scale) / (2 scale).

    Drawn by NumPy's C sampler (``random_laplace``: inversion of one
    uniform).  The score is ``sign(x - loc) / scale`` w.r.t. loc (0 at
    x = loc, as torch's autograd gives) and ``-1/scale + |x - loc| / scale**2``
    w.r.t. scale."""

    family = K.MC_LAPLACE
    has_mirror = True
    has_rsample = True
    has_mean_tangents = True

    # The score holds 1/scale**2: beyond this range of scales it over- or
    # underflows in double precision.
    SCALE_RANGE = (1e-150, 1e150)

    def _terms(self):
        mu, s = np.broadcast_arrays(self.loc, self.scale)
        return [
            ("loc", K.SK_SIGN, 1.0 / s, 0.0, mu),
            ("scale", K.SK_ABS, 1.0 / (s * s), -1.0 / s, mu),
        ]

    def _log_prob(self, x):
        return -np.abs(x - self.loc) / self.scale - np.log(2.0 * self.scale)

    def _check_differentiable(self):
        lo, hi = self.SCALE_RANGE
        s = np.asarray(self.scale)
        if not ((s >= lo) & (s <= hi)).all():
            raise ValueError(
                f"Laplace: scale must be in [{lo:g}, {hi:g}] to estimate gradients (got "
                f"{float(s[~((s >= lo) & (s <= hi))].flat[0])!r}): the score's term "
                "1/scale**2 over- or underflows in double precision beyond; rescale the "
                "problem (draw x/c and use f(c*x))")

    def mean(self):
        return np.broadcast_to(self.loc, self.batch_shape).copy()

    def variance(self):
        return np.broadcast_to(2.0 * self.scale**2, self.batch_shape).copy()

    def stddev(self):
        return np.sqrt(self.variance())

    def entropy(self):
        return np.broadcast_to(1.0 + np.log(2.0 * self.scale), self.batch_shape).copy()

    def cdf(self, value):
        """P(X <= value), broadcasting value against the batch shape."""
        z = (np.asarray(value, dtype=np.float64) - self.loc) / self.scale
        return 0.5 - 0.5 * np.sign(z) * np.expm1(-np.abs(z))

    def icdf(self, value):
        """The quantile function (value in [0, 1]); the inverse of cdf."""
        u = V.param("value", value, "unit_interval", owner="Laplace.icdf")
        t = u - 0.5
        with np.errstate(divide="ignore"):
            return self.loc - self.scale * np.sign(t) * np.log1p(-2.0 * np.abs(t))

    # -- capabilities (the estimators' protocol) --------------------------
    def mean_tangents(self):
        """{param: d E[x_c] / d param, arrays of draw_shape}: E[x] = loc."""
        ds = self.draw_shape
        return {"loc": np.ones(ds), "scale": np.zeros(ds)}

    def mirror(self, x):
        """Antithetic partner: the reflection 2 loc - x (Laplace is symmetric)."""
        return 2.0 * self.loc - x

    def pathwise_spec(self):
        """x = loc + scale * eps: dx/dloc = 1, dx/dscale = (x - loc) / scale."""
        b = lambda v: np.broadcast_to(np.asarray(v, float), self.draw_shape)  # noqa: E731
        return [("loc", _vr.TK_ONE, 0.0, 0.0),
                ("scale", _vr.TK_NSCALE, b(self.loc), b(self.scale))]

    def vi_transforms(self):
        """The unconstrained coordinates vi.fit optimises: loc as is, log scale."""
        return {"loc": "identity", "scale": "log"}


FAMILIES = (
    Normal, LogNormal, Exponential, Gamma, Beta, Poisson, Bernoulli, Binomial,
    Geometric, NegativeBinomial, Categorical, Multinomial, Dirichlet, Laplace,
)
