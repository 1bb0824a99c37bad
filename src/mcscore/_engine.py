"""The Python engine under every estimator (its internal API in one place).

Data flow of an estimator call::

    validate -> Plan (streams, blocks, seed, threads) -> Job (what is drawn,
    evaluated, accumulated) -> run: the loop over rounds of blocks
    (mcscore._rounds.run_job), locally or on Dask (mcscore.distributed) ->
    per-stream sums -> one merge and algebra (mcscore._algebra) with the
    range checks -> GradientEstimate

``mcscore._rounds`` is what runs where the draws are made (also on a Dask
worker), ``mcscore._algebra`` the estimator algebra on per-stream sums; this
module gathers the names the estimators use and chooses where a job runs.
"""
from __future__ import annotations

import weakref

from ._algebra import (  # noqa: F401 - the engine's API
    RESOLUTION, TINY_MEAN_SQUARE, baselined_terms, check_baseline, check_range, column_values,
    estimate, finish_batched, finish_joint, finish_score, gradient_estimate, rare_floor,
)
from ._callables import (  # noqa: F401 - the engine's API
    CALLBACK_SIGNATURES, call_grad, call_values, check_callable, lower_f, values_and_grads,
)
from ._rounds import (  # noqa: F401 - the engine's API
    DEFAULT_STREAMS, BatchedScoreJob, Job, JointF, JointGrad, JointScoreJob, Plan, ScoreJob,
    batch_columns, call_batched, carrier_dist, check_batch_ndims, check_memory, coord_columns,
    default_block_size, is_joint, joint_draw, joint_tables, run_fused, run_job, score_table,
    vr_dist, wrap_joint,
)
from ._progress import ProgressBar
from .distributed import run_job_on_dask, run_on_dask  # noqa: F401 - the engine's API
from .distributions import Distribution


def run(job, plan, *, chunk_size=None, client=None, n_threads=None):
    """Run `job` on all of the plan's streams, locally or on the Dask
    cluster behind `client` (bit-identical); returns (stats, shifts,
    Offsets, Mag) in stream order.  A job with Gram statistics (``what``
    names it) is first checked to fit in memory."""
    if job.what is not None:
        check_memory(plan, job.P, job.L, job.what)
    if client is not None:
        return run_job_on_dask(client, job, plan, chunk_size=chunk_size, n_threads=n_threads)
    return run_job(job, plan, chunk_size)


def progress_bar(progress, plan):
    """A tqdm progress bar for the plan when progress is True, else None."""
    if progress is False or progress is None:
        return None
    if progress is not True:
        raise TypeError(f"progress must be True or False, got {progress!r}")
    return ProgressBar(plan)


def check_distribution(dist, name="dist"):
    """TypeError unless dist is an mcscore distribution."""
    if not isinstance(dist, Distribution):
        raise TypeError(f"{name} must be an mcscore distribution, got {type(dist).__name__}")


# Distributions whose parameters passed _check_differentiable.  A
# distribution's parameters are validated, read-only arrays fixed at
# construction (its kernel description is cached on the same ground), so the
# check is done once per object; a changed parameter is a new object.
_DIFFERENTIABLE = weakref.WeakSet()


def check_differentiable(dist):
    """dist._check_differentiable(), once per distribution object."""
    try:
        if dist in _DIFFERENTIABLE:
            return
    except TypeError:  # an unhashable distribution: check every time
        dist._check_differentiable()
        return
    dist._check_differentiable()
    _DIFFERENTIABLE.add(dist)
