"""Helpers for code that drives mcscore's kernels from C or Cython.

mcscore's C-level API lives in ``mcscore/_kernels.pxd`` (installed with the
package).  A Cython extension builds against it with::

    # setup.py
    import mcscore.embed, numpy
    Extension(..., include_dirs=[numpy.get_include()])
    cythonize(..., include_path=[mcscore.embed.get_include()])

    # your .pyx
    from mcscore._kernels cimport (mc_dist, mc_func, mc_workspace,
        mc_workspace_init, mc_workspace_free, mc_run_block, mc_stats_len,
        mc_kernel_dist_ptr, FK_CALLBACK, CB_D_P_N)

and needs no link step against mcscore: Cython imports the C functions from
the ``mcscore._kernels`` module at import time.  This module gives the
Python-side pieces around such a loop, so that an embedding code can
reproduce :func:`mcscore.score_grad` exactly:

* :func:`kernel_dist` -- the prepared distribution whose ``mc_dist`` you get
  with ``mc_kernel_dist_ptr`` (keep the object alive while you use it);
* :func:`plan` -- the streams, blocks and per-stream bit generators that
  ``score_grad`` would use for the same (n, rng, n_streams, block_size);
* :func:`estimate` -- the estimator algebra on per-stream statistics rows
  (the ``mc_stats_len`` doubles each stream accumulated and its shift).

See ``examples/embed/`` for a complete extension and the section
"Embedding from Cython and C" of the user guide (``docs/guide/embedding.md``)
for the callback signatures.
"""
from __future__ import annotations

from typing import Any

import os

import numpy as np

from . import _engine as E

__all__ = ["get_include", "kernel_dist", "plan", "estimate", "StreamPlan"]


def get_include() -> Any:
    """The directory to put on Cython's include path so that
    ``from mcscore._kernels cimport ...`` finds ``mcscore/_kernels.pxd``.

    Returns
    -------
    str
        The directory holding the ``mcscore`` package.

    Examples
    --------
    >>> import os
    >>> import mcscore.embed
    >>> os.path.isfile(os.path.join(mcscore.embed.get_include(), "mcscore", "_kernels.pxd"))
    True
    """
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _check_dist(dist: Any) -> Any:
    E.check_distribution(dist)


def kernel_dist(dist: Any) -> Any:
    """The prepared kernel description of ``dist`` (a ``KernelDist``).

    Pass it to ``mc_kernel_dist_ptr`` in Cython to get a ``const mc_dist *``.
    Its ``draw_size``, ``stats_len``, ``n_coords``, ``per_category`` say how
    to size buffers.

    Parameters
    ----------
    dist : Distribution
        An mcscore distribution (not a Joint).

    Returns
    -------
    KernelDist

    Raises
    ------
    TypeError
        ``dist`` that is not an mcscore distribution.

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> kd = mc.embed.kernel_dist(mc.Normal(loc=np.zeros(3), scale=1.0))
    >>> kd.draw_size, kd.n_coords
    (3, 4)
    """
    _check_dist(dist)
    return dist._kernel_dist()


class StreamPlan:
    """How :func:`mcscore.score_grad` cuts a call into streams and blocks.

    Attributes
    ----------
    n, n_streams, block_size, n_blocks : int
    used : int
        Streams that hold at least one block (``min(n_streams, n_blocks)``);
        stream s walks blocks ``s, s + n_streams, s + 2 n_streams, ...`` and
        its first block is block ``s``.
    threads : int
        The thread count ``score_grad`` would use (``n_threads`` resolved).

    Made by :func:`plan`, not by hand.

    Parameters
    ----------
    _plan : object
        The engine's plan.

    Raises
    ------
    AttributeError
        An object that is not the engine's plan.

    Examples
    --------
    >>> import mcscore as mc
    >>> p = mc.embed.plan(mc.Normal(0.0, 1.0), 100_000, rng=0)
    >>> p.used <= p.n_streams, p.n_blocks * p.block_size >= p.n
    (True, True)
    """

    def __init__(self, _plan: Any) -> None:
        self._plan = _plan
        self.n = _plan.n
        self.n_streams = _plan.n_streams
        self.block_size = _plan.block_size
        self.n_blocks = _plan.n_blocks
        self.used = _plan.used
        self.threads = _plan.threads

    def bit_generators(self, streams: Any = None) -> Any:
        """PCG64 bit generators of the given streams (default: all used
        streams), seeded exactly as in ``score_grad``.  Get the ``bitgen_t *``
        of one with ``PyCapsule_GetPointer(bg.capsule, "BitGenerator")``; use
        each from one thread at a time.

        Parameters
        ----------
        streams : iterable of int, optional
            Stream indices in ``range(used)`` (default all).

        Returns
        -------
        list of numpy.random.PCG64

        Raises
        ------
        IndexError
            A stream index out of range.

        Examples
        --------
        >>> import mcscore as mc
        >>> p = mc.embed.plan(mc.Normal(0.0, 1.0), 100_000, rng=0)
        >>> bgs = p.bit_generators([0, 1])
        >>> type(bgs[0]).__name__, len(bgs)
        ('PCG64', 2)
        """
        if streams is None:
            streams = range(self.used)
        return self._plan.bitgens([int(s) for s in streams])

    def block_rows(self, b: Any) -> Any:
        """Draws in block b (block_size, or fewer for the last block).

        Parameters
        ----------
        b : int
            The block index, in ``range(n_blocks)``.

        Returns
        -------
        int

        Raises
        ------
        ValueError
            ``b`` out of range.

        Examples
        --------
        >>> import mcscore as mc
        >>> p = mc.embed.plan(mc.Normal(0.0, 1.0), 1000, rng=0, block_size=300)
        >>> [p.block_rows(b) for b in range(p.n_blocks)]
        [300, 300, 300, 100]
        """
        return self._plan.block_rows(int(b))

    def __repr__(self) -> Any:
        return (f"StreamPlan(n={self.n}, n_streams={self.n_streams}, "
                f"block_size={self.block_size}, used={self.used})")


def plan(dist: Any, n: Any, *, rng: Any = None, n_streams: Any = None, block_size: Any = None,
         n_threads: Any = None) -> Any:
    """The :class:`StreamPlan` of ``score_grad(f, dist, n, rng=rng, ...)``.

    With an int or SeedSequence ``rng``, statistics accumulated with these
    bit generators and blocks give, through :func:`estimate`, bit for bit
    the estimate ``score_grad`` returns for the same f.

    Parameters
    ----------
    dist : Distribution
        The distribution.
    n : int
        Draws (>= 2).
    rng : None, int, SeedSequence or Generator
        As in :func:`mcscore.score_grad`.
    n_streams, block_size, n_threads : int, optional
        As in :func:`mcscore.score_grad`.

    Returns
    -------
    StreamPlan

    Raises
    ------
    TypeError
        ``dist`` that is not an mcscore distribution.
    ValueError
        ``n``, ``n_streams`` or ``block_size`` out of range.

    Examples
    --------
    >>> import mcscore as mc
    >>> p = mc.embed.plan(mc.Normal(0.0, 1.0), 10_000, rng=0, n_streams=8)
    >>> p.n, p.n_streams
    (10000, 8)
    """
    _check_dist(dist)
    kd = dist._kernel_dist()
    return StreamPlan(E.Plan(n, kd.draw_size, rng, E.DEFAULT_STREAMS if n_streams is None
                             else n_streams, block_size, n_threads))


def estimate(dist: Any, stats: Any, shifts: Any, *, baseline: Any = None, plan: Any = None) -> Any:
    """A :class:`~mcscore.GradientEstimate` from per-stream statistics.

    Parameters
    ----------
    dist : Distribution
        The distribution the statistics were accumulated for.
    stats : array, shape (streams, stats_len)
        One row per stream in stream order, laid out as documented in
        ``_kernels.pxd`` (what ``mc_run_block`` / ``mc_accumulate_block``
        accumulate).  Rows of unused streams are all zero.
    shifts : array, shape (streams,)
        Each stream's shift (f at its first draw; ``mc_run_block`` sets it
        when called with ``first=True``).
    baseline : None, float, "loo" or "optimal"
        As in :func:`mcscore.score_grad`.
    plan : StreamPlan, optional
        Only recorded in the result's ``info``.

    Returns
    -------
    GradientEstimate
        The estimate from the streams' statistics, as ``score_grad`` reports it.

    Raises
    ------
    ValueError
        ``stats`` or ``shifts`` of the wrong shape or not finite, fewer than
        2 draws in all, an unknown baseline.
    TypeError
        ``dist`` that is not an mcscore distribution.

    Examples
    --------
    The shapes a kernel loop fills (here left empty, so the call refuses):

    >>> import numpy as np
    >>> import mcscore as mc
    >>> q = mc.Normal(0.0, 1.0)
    >>> kd = mc.embed.kernel_dist(q)
    >>> mc.embed.estimate(q, np.zeros((4, kd.stats_len)), np.zeros(4))
    Traceback (most recent call last):
    ...
    ValueError: stats[:, 0] (draw counts) must be >= 0 and add up to at least 2
    """
    _check_dist(dist)
    kd = dist._kernel_dist()
    stats = np.ascontiguousarray(stats, dtype=np.float64)
    shifts = np.ascontiguousarray(shifts, dtype=np.float64)
    if stats.ndim != 2 or stats.shape[1] != kd.stats_len:
        raise ValueError(f"stats must have shape (streams, {kd.stats_len}) for {dist!r}, got "
                         f"{stats.shape}")
    if shifts.shape != (stats.shape[0],):
        raise ValueError(f"shifts must have shape ({stats.shape[0]},), got {shifts.shape}")
    if not np.isfinite(stats).all() or not np.isfinite(shifts).all():
        raise ValueError("stats and shifts must be finite")
    if not (stats[:, 0] >= 0).all() or stats[:, 0].sum() < 2:
        raise ValueError("stats[:, 0] (draw counts) must be >= 0 and add up to at least 2")
    baseline = E.check_baseline(baseline)
    info = plan._plan.info() if plan is not None else {}
    return E.finish_score(dist, kd, stats, shifts, baseline, {**info, "f": "embedded"})
