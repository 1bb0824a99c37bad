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

from typing import Any

import numpy as np

from . import _engine as E
from . import _validation as V
from ._config import blas_single_threaded
from ._rounds import Round, chunk_size_for
from .distributions import Distribution
from .distributions._base import _structure
from .result import GradientEstimate
from .score import score_grad

__all__ = ["Estimator"]


class Estimator:
    """score_grad prepared for repeated calls with changing parameters.

    Parameters
    ----------
    family : a Distribution subclass (``mc.Normal``, ``mc.Bernoulli``, ...)
    f : Python callable, Integrand or LowLevelCallable, as in ``score_grad``
    n : int >= 2
    baseline, rng, n_threads, chunk_size, n_streams, block_size :
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
                 batch_ndims: int = 0, **fixed: Any) -> None:
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
        self._rng_arg = rng
        # rng: an int or SeedSequence seeds every call alike (its SeedSequence
        # is built once); a Generator is read at every call
        if isinstance(rng, (np.random.Generator, np.random.BitGenerator)) or rng is None:
            self._rng = rng
        elif type(rng) is int and rng >= 0:
            self._rng = rng  # Plan's cached path for int seeds
        else:
            self._rng = V.root_seed_sequence(rng)
        self._shape = None  # (draw_size, draw_shape) the prepared state is for
        self._fkind = None

    def __repr__(self) -> str:
        return (f"Estimator({self.family.__name__}, n={self.n}, baseline={self.baseline!r}, "
                f"f={self._fkind or 'not yet lowered'})")

    # -- per-shape preparation ------------------------------------------
    def _prepare(self, dist: Any, kd: Any) -> Any:
        """The lowered f and, for a Python f run in one round, the round and
        its buffers: everything that depends on the draw shape only."""
        fkind, kf = E.lower_f(self.f, dist)
        self._fkind, self._kf = fkind, kf
        self._shape = (kd.draw_size, tuple(dist.draw_shape), kd.stats_len)
        plan = E.Plan(self.n, kd.draw_size, 0, self.n_streams, self.block_size, self.n_threads)
        self._streams = np.arange(plan.used, dtype=np.int64)
        self._stream_list = self._streams.tolist()
        self._round = None
        if fkind == "python":
            chunk = chunk_size_for(self.chunk_size, plan.block_size, kd.draw_size)
            nb = plan.n_blocks
            # run_job's round holds min(n_streams, n_blocks, max(threads,
            # chunk / block_size)) blocks: all of them, whatever the threads,
            # when n_blocks <= min(n_streams, chunk / block_size)
            if nb <= min(plan.n_streams, -(-chunk // plan.block_size)):
                blocks = np.arange(nb, dtype=np.int64)
                self._round = Round(plan, blocks, blocks % plan.n_streams, True)
                self._chunk = chunk
                self._job = E.ScoreJob(self.f, dist)
                self._bufs = self._job.buffers(nb, plan.block_size)

    def _kernel_of(self, dist: Any) -> Any:
        """dist._kernel_dist(), built from the previous call's kernel when
        the score-term structure is the same: only the unit parameters and
        the terms' coefficients are new (what Distribution._build_kernel
        computes from them, value for value)."""
        tpl = self._template
        if tpl is None or dist._kernel is not None:
            return self._remember(dist, dist._kernel_dist())
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            rows = dist._terms()
            if _structure(dist, rows) is not tpl[0]:
                return self._remember(dist, dist._kernel_dist())
            a, b, c = tpl[0].coefficients(rows)
            p0, p1 = dist._draw_params()
        kd = tpl[1].renewed(np.ravel(p0), np.ravel(p1), a, b, c)
        dist._table = dict(tpl[2], a=a, b=b, c=c)
        dist._coord_slices = tpl[3]
        dist._kernel = kd
        return kd

    def _remember(self, dist: Any, kd: Any) -> Any:
        """Keep dist's kernel as the template of the next calls' when the
        family builds it with the shared, cached term structure."""
        self._template = None
        if (type(dist)._build_kernel is Distribution._build_kernel and not kd.per_category
                and getattr(dist, "_table", None) is not None):
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                st = _structure(dist, dist._terms())
            if st is not None:
                self._template = (st, kd, dict(dist._table), dict(dist._coord_slices))
        return kd

    _template = None

    # -- a call -------------------------------------------------------------
    def __call__(self, *dist: Any, **params: Any) -> GradientEstimate:
        if dist:
            if len(dist) != 1 or params:
                raise TypeError("call the estimator with the family's parameters as keywords "
                                "or with one distribution")
            dist = dist[0]
            if type(dist) is not self.family:
                raise TypeError(f"expected a {self.family.__name__} distribution, got "
                                f"{type(dist).__name__}")
        else:
            dist = self.family(**self.fixed, **params) if self.fixed else self.family(**params)
        if not (type(self.batch_ndims) is int and self.batch_ndims == 0) or E.is_joint(dist):
            return score_grad(self.f, dist, self.n, rng=self._rng_arg, baseline=self.baseline,
                              n_threads=self.n_threads, chunk_size=self.chunk_size,
                              n_streams=self.n_streams, block_size=self.block_size,
                              batch_ndims=self.batch_ndims)
        E.check_differentiable(dist)
        kd = self._kernel_of(dist)
        if self._shape != (kd.draw_size, tuple(dist.draw_shape), kd.stats_len):
            self._prepare(dist, kd)
        plan = E.Plan(self.n, kd.draw_size, self._rng, self.n_streams, self.block_size,
                      self.n_threads)
        fkind = self._fkind
        if fkind != "python":
            stats, shifts = E.run_fused(self._kf, fkind, dist, kd, plan)
        elif self._round is not None:
            stats, shifts = self._run_one_round(dist, plan)
        else:
            stats, shifts = E.run_job(E.ScoreJob(self.f, dist), plan, self.chunk_size)[:2]
        return E.finish_score(dist, kd, stats, shifts, self.baseline, {**plan.info(), "f": fkind})

    def _run_one_round(self, dist: Any, plan: Any) -> tuple[Any, Any]:
        """run_job for a plan whose blocks all fit in one round (no helper
        threads: there is no next round to draw while f runs)."""
        job, rd, buf = self._job, self._round, self._bufs
        job.dist = dist
        stats, shifts = job.new_stats(plan.used)
        bitgens = plan.bitgens(self._stream_list)
        job.draw(rd, bitgens, plan.threads, buf)
        values, _ = job.evaluate(rd, buf, self._chunk, None)
        with blas_single_threaded(dist):
            job.accumulate(rd, buf, values, plan.threads, stats, shifts)
        return stats, shifts
