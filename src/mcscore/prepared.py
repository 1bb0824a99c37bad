"""A prepared score-function estimator for loops: :class:`Estimator`.

A VI or RL loop calls ``score_grad`` thousands of times with the same f, n,
family and parameter shapes, only the parameter values changing.  At small
n (hundreds of draws) most of such a call is fixed cost: validating the
arguments, the plan of streams and blocks, seeding, the kernels' buffers
and the result.  An :class:`Estimator` does the part that does not depend
on the parameter values once::

    est = mc.Estimator(mc.Normal, f, n=100, baseline="loo", rng=0)
    for step in range(steps):
        res = est(loc=loc, scale=scale)     # a GradientEstimate
        loc = loc + lr * res.grad["loc"]

``est(**params)`` is ``score_grad(f, family(**params), n, rng=rng, ...)``
with the arguments given to the constructor, bit for bit (the same streams,
the same guards, the same GradientEstimate, covariance included); ``est(q)``
takes a distribution of the family already built.  The rng is used as
``score_grad`` uses it: an int or SeedSequence gives the same streams at
every call (common random numbers across steps); a Generator gives fresh
streams at every call, seeded from the generator, exactly as successive
``score_grad`` calls with that generator would.
"""
from __future__ import annotations

import contextlib
import weakref
from typing import Any

import numpy as np

from . import _algebra as A
from . import _engine as E
from . import _kernels as K
from . import _validation as V
from ._callables import call_f, call_values
from ._config import blas_single_threaded, effective_n_threads
from . import _rounds as R
from ._rounds import Round, chunk_size_for, raise_kernel_error
from .distributions import Distribution, Normal
from .distributions._base import _structure
from .result import GradientEstimate
from . import score as _score

__all__ = ["Estimator"]


class Estimator:
    """score_grad prepared for repeated calls with changing parameters.

    Parameters
    ----------
    family : a Distribution subclass (``mc.Normal``, ``mc.Bernoulli``, ...)
    f : Python callable, Integrand or LowLevelCallable, as in ``score_grad``
    n : int >= 2
    baseline, rng, n_threads, chunk_size, n_streams, block_size, f_threadsafe :
        as in ``score_grad`` (fixed for the estimator's lifetime).
    batch_ndims : int
        As in ``score_grad``; batched calls (and Joint distributions) run
        ``score_grad`` itself at every call.
    **fixed : parameters of the family passed at every call (e.g. a
        Binomial's ``total_count``).

    Calling the estimator, ``est(**params)`` or ``est(dist)``, returns the
    :class:`GradientEstimate` of ``score_grad(f, dist, n, ...)``.

    Raises
    ------
    TypeError
        ``family`` that is not a distribution class, or ``f`` not callable.
    ValueError
        ``n`` below 2 or another argument outside its range (as
        ``score_grad``); at a call, parameters the family rejects.

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> est = mc.Estimator(mc.Normal, lambda x: x ** 2, 10_000, rng=0)
    >>> for loc in (0.5, 1.0):
    ...     res = est(loc=loc, scale=1.0)
    ...     print(bool(abs(res.grad["loc"] - 2 * loc) < 5 * res.stderr["loc"]))
    True
    True
    """

    def __init__(self, family: type[Distribution], f: Any, n: int, *, baseline: Any = None,
                 rng: Any = None, n_threads: int | None = None, chunk_size: int | None = None,
                 n_streams: int = E.DEFAULT_STREAMS, block_size: int | None = None,
                 batch_ndims: int = 0, f_threadsafe: bool = False, **fixed: Any) -> None:
        if not (isinstance(family, type) and issubclass(family, Distribution)):
            raise TypeError(f"family must be an mcscore distribution class (e.g. mc.Normal), "
                            f"got {family!r}")
        self.family = family
        self.f = f
        self.n = V.integer("n", n, minimum=2, maximum=2**62)
        self.baseline = E.check_baseline(baseline)
        self.n_streams = V.integer("n_streams", n_streams, minimum=1, maximum=2**20)
        self.block_size = (None if block_size is None
                           else V.integer("block_size", block_size, minimum=1, maximum=2**24))
        self.n_threads = n_threads
        self.chunk_size = None if chunk_size is None else V.integer("chunk_size", chunk_size,
                                                                     minimum=1)
        self.fixed = dict(fixed)
        self.batch_ndims = batch_ndims
        self.f_threadsafe = V.flag("f_threadsafe", f_threadsafe)
        self._rng_arg = rng
        # rng: an int or SeedSequence seeds every call alike (its SeedSequence
        # is built once); a Generator is read at every call
        if isinstance(rng, (np.random.Generator, np.random.BitGenerator)) or rng is None:
            self._rng = rng
        elif type(rng) is int and rng >= 0:
            self._rng = rng  # Plan's cached path for int seeds
        else:
            self._rng = V.root_seed_sequence(rng)
        self._fkind = None
        self._kernels = KernelTemplates(8)
        # calls est(loc=..., scale=...) of a Normal-like family may take the
        # lean renewal (lean_dist) once a call has shown the shape
        self._lean = (family if not fixed and type(batch_ndims) is int and batch_ndims == 0
                      and lean_family(family) else None)

    def __repr__(self) -> str:
        return (f"Estimator({self.family.__name__}, n={self.n}, baseline={self.baseline!r}, "
                f"f={self._fkind or 'not yet lowered'})")

    # -- per-shape preparation ------------------------------------------
    def _prepare(self, dist: Any, kd: Any) -> Any:
        """Everything that depends on the draw shape only: the lowered f, the
        plan's shape, the streams (their bit generators' states when the rng
        gives the same streams at every call), the coordinates' split and,
        for a Python f run in one round, the round and its buffers."""
        self._prep = prep = Prepared(self.f, dist, kd, self.n, self.n_streams, self.block_size,
                                     self.n_threads, self.chunk_size, self.f_threadsafe)
        self._fkind = prep.fkind
        if self._rng is not None and not isinstance(
                self._rng, (np.random.Generator, np.random.BitGenerator)):
            plan = E.Plan(self.n, kd.draw_size, self._rng, self.n_streams, self.block_size,
                          self.n_threads)
            prep.fix_streams(plan)
        return prep

    # -- a call -------------------------------------------------------------
    def __call__(self, *dist: Any, **params: Any) -> GradientEstimate:
        if self._lean is not None and not dist and len(params) == 2:
            got = lean_dist(self._lean, params.get("loc"), params.get("scale"))
            prep = self._prep
            if got is not None and prep is not None and prep.key == got[2]:
                return prep.run(got[0], got[1], self._rng, self.baseline)
        if dist:
            if len(dist) != 1 or params:
                raise TypeError("call the estimator with the family's parameters as keywords "
                                "or with one distribution")
            dist = dist[0]
            if type(dist) is not self.family:
                raise TypeError(f"expected a {self.family.__name__} distribution, got "
                                f"{type(dist).__name__}")
            fresh = False
        else:
            dist = self.family(**self.fixed, **params) if self.fixed else self.family(**params)
            fresh = True
        if not (type(self.batch_ndims) is int and self.batch_ndims == 0) or E.is_joint(dist):
            return _score.score_grad(self.f, dist, self.n, rng=self._rng_arg, baseline=self.baseline,
                              n_threads=self.n_threads, chunk_size=self.chunk_size,
                              n_streams=self.n_streams, block_size=self.block_size,
                              batch_ndims=self.batch_ndims, f_threadsafe=self.f_threadsafe)
        if fresh:  # a new object: checked once here, never seen again
            dist._check_differentiable()
        else:
            E.check_differentiable(dist)
        kd = self._kernels.kernel(dist)
        remember_lean(dist, kd)
        prep = self._prep
        if prep is None or prep.key != shape_key(dist, kd):
            prep = self._prepare(dist, kd)
        return prep.run(dist, kd, self._rng, self.baseline)

    _prep = None


def shape_key(dist: Any, kd: Any) -> Any:
    """What a Prepared depends on besides f and the options: the draw's
    size and shape, the statistics' length and the kernel's log column."""
    return (kd.draw_size, tuple(dist.draw_shape), kd.stats_len, kd.has_log_column)


class Prepared:
    """A score_grad call's part that depends on the draw shape and the
    options only, for small calls repeated with new parameter values (an
    Estimator's, or score_grad's own cache of them): the lowered f, the
    plan's shape, the streams, and for a Python f whose blocks fit in one round, the round and its buffers.

    ``run(dist, kd, rng, baseline)`` is score_grad's estimate for a
    distribution of this shape (dist checked, kd its kernel), bit for bit:
    the same streams, kernels, checks and result."""

    def __init__(self, f: Any, dist: Any, kd: Any, n: Any, n_streams: Any, block_size: Any,
                 n_threads: Any, chunk_size: Any, f_threadsafe: bool = False) -> None:
        self.fkind, self.kf = E.lower_f(f, dist)
        self.f_threadsafe = f_threadsafe  # run_job's opt-in (see score_grad)
        try:  # f by weak reference: score_grad's cache must not keep it alive
            self._fref: Any = weakref.ref(f, _forget_dead)
            self._fstrong = None
        except TypeError:  # f without weak references (a builtin, a LowLevelCallable)
            self._fref, self._fstrong = None, f
        self.key = shape_key(dist, kd)
        self.n_threads, self.chunk_size = n_threads, chunk_size
        plan = E.Plan(n, kd.draw_size, 0, n_streams, block_size, 1)  # threads: at each call
        self.shape = (n, kd.draw_size, n_streams, block_size)
        self.used, self.stats_len = plan.used, kd.stats_len
        self.streams = np.arange(plan.used, dtype=np.int64)
        self.stream_list = self.streams.tolist()
        self.values = plan.n * kd.draw_size  # Plan's thread count is capped by them
        self.info0 = {"n_streams": plan.n_streams, "block_size": plan.block_size,
                      "streams_used": plan.used}
        self.blas = getattr(dist, "kernel_blas", False)
        self.per_block = plan.block_size * max(1, kd.draw_size)
        self.n_blocks = plan.n_blocks
        self.states = None  # the streams' bit generator states, when fixed
        self.last_seed: Any = None  # score_small: the int seed of the previous call
        self.round = None
        self.held_values = 0  # the largest buffer's doubles
        if self.fkind == "python":
            chunk = chunk_size_for(chunk_size, plan.block_size, kd.draw_size)
            nb = plan.n_blocks
            # run_job's round holds min(n_streams, n_blocks, max(threads,
            # chunk / block_size)) blocks: all of them, whatever the threads,
            # when n_blocks <= min(n_streams, chunk / block_size)
            if nb <= min(plan.n_streams, -(-chunk // plan.block_size)):
                blocks = np.arange(nb, dtype=np.int64)
                self.round = rd = Round(plan, blocks, blocks % plan.n_streams, True)
                self.chunk = chunk
                self.bufs = E.ScoreJob(f, dist).buffers(nb, plan.block_size)
                self.xbuf = np.empty((nb * plan.block_size, kd.draw_size))
                self.row_off = np.zeros(nb, dtype=np.int64)  # each block's first row
                np.cumsum(rd.rows[:-1], out=self.row_off[1:])
                self.fx = self.bufs[2].reshape(-1)[:rd.total]
                self.xshape = (rd.total,) + tuple(dist.draw_shape)
                self.held_values = self.xbuf.size

    @property
    def f(self) -> Any:
        """The f this was prepared for (None once it is gone)."""
        return self._fstrong if self._fref is None else self._fref()

    def fix_streams(self, plan: Any) -> Any:
        """Keep the states of the plan's stream bit generators: the same at
        every call of an rng that is an int or a SeedSequence."""
        self.bitgens = plan.bitgens(self.stream_list)
        self.states = [bg.state for bg in self.bitgens]
        info = plan.info()
        self.seed_info = {"entropy": info["entropy"], "spawn_key": info["spawn_key"]}

    def run(self, dist: Any, kd: Any, rng: Any, baseline: Any) -> Any:
        if self.states is not None:
            work = min(self.used, max(1, self.values // R.SERIAL_VALUES))
            # one work item and no thread count: effective_n_threads is 1
            threads = (1 if work == 1 and self.n_threads is None
                       else effective_n_threads(self.n_threads, work_items=work))
            bitgens = self.bitgens
            for bg, st in zip(bitgens, self.states):  # rewound to the streams' starts
                bg.state = st
            info = {**self.info0, "threads": threads, **self.seed_info}
            plan = None
        else:
            plan = self._plan(rng)
            threads = plan.threads
            bitgens = plan.bitgens(self.stream_list)
            info = plan.info()
        stats = np.zeros((self.used, self.stats_len))
        shifts = np.zeros(self.used)
        if self.fkind != "python":
            self._fused(dist, kd, bitgens, threads, stats, shifts, plan, rng)
        elif self.round is not None:
            self._one_round(dist, kd, bitgens, threads, stats, shifts)
        else:
            if plan is None:
                plan = self._plan(rng)
            stats, shifts = E.run_job(E.ScoreJob(self.f, dist), plan, self.chunk_size,
                                      bitgens=bitgens, f_threadsafe=self.f_threadsafe)[:2]
        info["f"] = self.fkind
        return A.finish_score_owned(dist, kd, stats, shifts, baseline, info, self._splitter(dist))

    def _splitter(self, dist: Any) -> Any:
        """dist._split_coords, as a precomputed list of (name, slice, shape)
        while dist shares its coordinate slices with the previous call's
        (a kernel renewed from the same template)."""
        cs = dist._coord_slices
        if cs is not self._slices:
            self._slices = cs
            # the shape, or None where the slice has it already (a 1-d parameter)
            self._coords = [(name, sl, None if tuple(shape) == (sl.stop - sl.start,)
                             else tuple(shape)) for name, (sl, shape) in cs.items()]
        coords = self._coords

        def split(arr: Any) -> Any:
            return {name: arr[sl] if shape is None else arr[sl].reshape(shape)
                    for name, sl, shape in coords}
        return split

    _slices = None

    def _plan(self, rng: Any) -> Any:
        return E.Plan(self.shape[0], self.shape[1], rng, self.shape[2], self.shape[3],
                      self.n_threads)

    def _fused(self, dist: Any, kd: Any, bitgens: Any, threads: Any, stats: Any, shifts: Any,
               plan: Any, rng: Any) -> Any:
        """run_fused on these streams."""
        n, S, B = self.shape[0], self.shape[2], self.info0["block_size"]
        next_block = self.streams.copy()
        nb, kf, streams = self.n_blocks, self.kf, self.streams
        mb = max(1, R.EPOCH_VALUES // self.per_block)  # run_fused's epochs
        with blas_single_threaded(dist) if self.blas else contextlib.nullcontext():
            while True:
                code, idx = K.run_streams(kd, kf, bitgens, streams, n, S, B, threads, stats,
                                          shifts, next_block, mb)
                if code != 0 or not (next_block < nb).any():
                    break
        if code != 0:
            raise_kernel_error(code, idx, plan if plan is not None else self._plan(rng), dist,
                               kd)

    def _one_round(self, dist: Any, kd: Any, bitgens: Any, threads: Any, stats: Any,
                   shifts: Any) -> Any:
        """run_job for a plan whose blocks all fit in one round (no helper
        threads: there is no next round to draw while f runs)."""
        rd = self.round
        xt, lt, fx, _ = self.bufs
        f = self.f

        def evaluate() -> None:
            """f at the round's draws (laid out one per row by the drawing
            threads, as run_job's), checked, into fx."""
            x = dist._to_user_dtype(self.xbuf[:rd.total].reshape(self.xshape))
            if rd.total <= self.chunk:  # call_values' one chunk
                self.fx[:] = call_f(f, x, rd.first)
            else:
                call_values(f, x, rd, self.chunk, out=self.fx)

        if not self.blas:  # draw, evaluate, accumulate in one kernel call
            bad = K.one_round(kd, bitgens, rd.blocks, rd.slots, rd.n, rd.B, rd.n_streams,
                              threads, xt, lt, self.xbuf, self.row_off, fx, stats, shifts,
                              evaluate)
        else:
            K.draw_round_rows(kd, bitgens, rd.blocks, rd.slots, rd.n, rd.B, threads, xt, lt,
                              self.xbuf, self.row_off)
            evaluate()
            with blas_single_threaded(dist):
                bad = K.accumulate_round(kd, rd.blocks, rd.slots, rd.n, rd.B, rd.n_streams,
                                         threads, xt, fx, stats, shifts, lt)
        if bad >= 0:  # cannot happen after check_fx, kept as a guard
            raise ValueError(f"f returned a non-finite value at draw {bad}")


class KernelTemplates:
    """dist._kernel_dist() for distributions built anew at every step: when
    a previous distribution of the same score-term structure (family, shapes,
    term kinds) gave its kernel, the new one is that kernel renewed with the
    new unit parameters and terms' coefficients (what
    Distribution._build_kernel computes from them, value for value), and the
    distribution gets the table and coordinate slices _build_kernel would
    set.  Holds at most `size` structures (cleared when full)."""

    def __init__(self, size: Any) -> None:
        self.size = size
        self.templates: dict[Any, Any] = {}  # structure -> (kernel, table, coordinate slices)

    def kernel(self, dist: Any) -> Any:
        if (dist._kernel is not None or not self.templates
                or type(dist)._build_kernel is not Distribution._build_kernel):
            return self._remember(dist, dist._kernel_dist())
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            rows = dist._terms()
            st = _structure(dist, rows)
            tpl = self.templates.get(st) if st is not None else None
            if tpl is None:
                return self._remember(dist, dist._kernel_dist())
            a, b, c = st.coefficients(rows)
            p0, p1 = dist._draw_params()
        kd = tpl[0].renewed(np.ravel(p0), np.ravel(p1), a, b, c)
        dist._table = dict(tpl[1], a=a, b=b, c=c)
        dist._coord_slices = tpl[2]
        dist._kernel = kd
        return kd

    def _remember(self, dist: Any, kd: Any) -> Any:
        """Keep dist's kernel as the template of its structure when the
        family builds it with the shared, cached term structure."""
        if (type(dist)._build_kernel is Distribution._build_kernel and not kd.per_category
                and getattr(dist, "_table", None) is not None):
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                st = _structure(dist, dist._terms())
            if st is not None and st not in self.templates:
                if len(self.templates) >= self.size:
                    self.templates.clear()
                self.templates[st] = (kd, dict(dist._table), dict(dist._coord_slices))
        return kd


# score_grad's small calls: the kernels' templates and the Prepared of the
# last few (f, shape, options), so that a loop calling score_grad with a new
# distribution at every step skips the same per-shape work an Estimator
# skips.  A Prepared in use is taken out of the cache (threads calling at
# once each get their own buffers).  The cache never keeps f alive: a
# Prepared holds f by weak reference (an f without weak references is not
# cached), its entry is dropped when f dies, and an entry whose f is gone
# (or is another object that reused the id) is never used.
_TEMPLATES = KernelTemplates(64)
_PREPARED: dict[Any, Any] = {}
_PREPARED_MAX = 32
_HELD_VALUES_MAX = 1 << 16  # doubles per buffer of a cached Prepared (512 KiB)


def score_small(f: Any, dist: Any, n: Any, rng: Any, baseline: Any, n_threads: Any,
                chunk_size: Any, n_streams: Any, block_size: Any,
                f_threadsafe: bool = False) -> Any:
    """score_grad's plain local estimate (no progress bar, no Dask) of a
    checked distribution with a lowered f: the same result, bit for bit,
    through the caches above.  Checks that dist is differentiable
    (E.check_differentiable, or the same checks in lean_kernel)."""
    kd = lean_kernel(dist)
    if kd is None:
        E.check_differentiable(dist)
        kd = _TEMPLATES.kernel(dist)
        remember_lean(dist, kd)
    key = (id(f), type(dist), shape_key(dist, kd), n, n_streams, block_size, n_threads,
           chunk_size, f_threadsafe)
    prep = _PREPARED.pop(key, None)
    if prep is None or prep.f is not f:
        prep = Prepared(f, dist, kd, n, n_streams, block_size, n_threads, chunk_size,
                        f_threadsafe)
    if type(rng) is int and rng >= 0 and rng == prep.last_seed:
        # the int seed of the previous call again (a loop with common random
        # numbers): its streams' states, kept, as an Estimator keeps them
        if prep.states is None:
            prep.fix_streams(prep._plan(rng))
    else:
        prep.states = None
        prep.last_seed = rng if type(rng) is int else None
    out = prep.run(dist, kd, rng, baseline)
    # small buffers only (the cache stays small), and f held weakly only
    if prep.held_values <= _HELD_VALUES_MAX and prep._fref is not None:
        if len(_PREPARED) >= _PREPARED_MAX:
            _PREPARED.clear()
        _PREPARED[key] = prep
    return out


def _forget_dead(ref: Any) -> None:
    """A Prepared's f has died: drop the cache's entries prepared for it."""
    for key, prep in list(_PREPARED.items()):
        if prep._fref is ref:
            _PREPARED.pop(key, None)


# ---------------------------------------------------------------------------
# Lean renewal of Normal / LogNormal kernels (K.locscale_renewed)
# ---------------------------------------------------------------------------
#
# For a family that builds its parameters, checks and score terms as Normal
# does, a distribution whose parameters are float64 arrays of a shape seen
# before gets its kernel from one C pass (the checks, the score terms, the
# table and the renewed kernel: the same bits as Distribution.__init__,
# _check_differentiable and KernelTemplates.kernel).  When a check fails, or
# the input is anything else, the general path runs and raises its error.

_LEAN: dict[Any, Any] = {}  # (family, batch shape) -> (kernel, table, coordinate slices, key)
_LEAN_MAX = 64
_LEAN_FAMILIES: dict[Any, bool] = {}


def lean_family(family: Any) -> bool:
    """True when `family` computes its parameters, checks, draw parameters
    and score terms with Normal's code (what locscale_renewed repeats)."""
    ok = _LEAN_FAMILIES.get(family)
    if ok is None:
        ok = _LEAN_FAMILIES[family] = bool(
            isinstance(family, type) and issubclass(family, Normal)
            and family.family in (K.MC_NORMAL, K.MC_LOGNORMAL)
            and family.__init__ is Normal.__init__
            and family._check_params is Distribution._check_params
            and family._terms is Normal._terms
            and family._check_differentiable is Normal._check_differentiable
            and family._draw_params is Distribution._draw_params
            and family._build_kernel is Distribution._build_kernel
            and list(family.arg_constraints.items()) == [("loc", "real"),
                                                         ("scale", "positive")])
    return ok


def _renew(family: Any, entry: Any, loc: Any, scale: Any, copy: bool) -> Any:
    return K.locscale_renewed(entry[0], loc, scale, entry[4], bool(family._log),
                              float(family.SCALE_RANGE[0]), float(family.SCALE_RANGE[1]),
                              float(family.RESOLUTION), copy)


def lean_dist(family: Any, loc: Any, scale: Any) -> Any:
    """(family(loc=loc, scale=scale) with its kernel, the kernel, its
    shape_key), or None: the general path is needed."""
    if type(loc) is not np.ndarray:
        return None
    entry = _LEAN.get((family, loc.shape))
    if entry is None:
        return None
    got = _renew(family, entry, loc, scale, True)
    if got is None:
        return None
    kd, lo, sc, a, b, c = got
    dist = family.__new__(family)  # what Distribution.__init__ and the kernel set
    dist._kernel = kd
    dist.batch_shape = entry[4]
    dist._params = {"loc": lo, "scale": sc}
    dist._table = dict(entry[1], a=a, b=b, c=c)
    dist._coord_slices = entry[2]
    return dist, kd, entry[3]


def lean_kernel(dist: Any) -> Any:
    """The kernel of a distribution without one, renewed by lean renewal
    (its differentiability checked on the way), or None."""
    family = type(dist)
    if dist._kernel is not None or not lean_family(family):
        return None
    entry = _LEAN.get((family, dist.batch_shape))
    if entry is None:
        return None
    got = _renew(family, entry, dist._params["loc"], dist._params["scale"], False)
    if got is None:
        return None
    kd, _, _, a, b, c = got
    dist._table = dict(entry[1], a=a, b=b, c=c)
    dist._coord_slices = entry[2]
    dist._kernel = kd
    return kd


def remember_lean(dist: Any, kd: Any) -> None:
    """Keep dist's kernel as the lean template of its family and shape when
    the family qualifies (lean_family), its parameters have the batch shape
    and its table has the layout locscale_renewed writes, whose
    coefficients it reproduces bit for bit."""
    family = type(dist)
    if not lean_family(family) or kd.per_category:
        return
    shape = dist.batch_shape
    if type(shape) is not tuple or (family, shape) in _LEAN:
        return
    lo, sc = dist._params["loc"], dist._params["scale"]
    t = getattr(dist, "_table", None)
    if t is None or lo.shape != shape or sc.shape != shape or not lo.size:
        return
    u = np.arange(lo.size)
    if not (np.array_equal(t["coord"], np.arange(2 * lo.size))
            and np.array_equal(t["col"], np.concatenate([u, u]))
            and np.array_equal(t["t_start"], np.arange(2 * lo.size + 1))):
        return
    entry = (kd, dict(t), dict(dist._coord_slices), shape_key(dist, kd), shape)
    got = _renew(family, entry, lo, sc, False)
    if got is None or any(np.asarray(t[k], dtype=np.float64).tobytes() != v.tobytes()
                          for k, v in zip("abc", got[3:])):
        return
    if len(_LEAN) >= _LEAN_MAX:
        _LEAN.clear()
    _LEAN[(family, shape)] = entry
