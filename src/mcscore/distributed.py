"""Distributed runs on Dask: ``client=`` of every estimator.

A call's draws are cut into streams (see :func:`mcscore.score_grad`); each
stream has its own bit generator, spawned from the call's SeedSequence, and
its own row of sufficient statistics.  Streams are therefore independent
units of work: this module sends groups of streams to Dask workers, each
worker runs the same engine on its streams (``mcscore._rounds``: the fused
kernels, or the loop over rounds of an estimator's job) and returns their
statistics rows, and the client puts the rows back in stream order and
applies the same estimator algebra.  The result is **bit-identical** to the
local run with the same (f, dist, n, rng, n_streams, block_size), whatever
the number of workers, and also when a worker dies and Dask recomputes its
task elsewhere (a task is a pure function of its streams).

What travels to a worker: the distribution (a plain Python object; its
cached kernel is rebuilt on the worker), the estimator's job (f, grad_f,
control variates and the tables it was declared with: an
:class:`~mcscore.integrands.Integrand`, or Python callables that pickle
with cloudpickle: module-level functions, lambdas and closures over
picklable data) and the root SeedSequence.  A ``scipy.LowLevelCallable`` is
a pointer into the client's memory and cannot travel: wrap the C function
in a Python module the workers can import, or run locally.

Bit-identity needs the workers to run the same build of mcscore (and of
NumPy, whose C distributions draw the numbers) as the client; on a
heterogeneous cluster, results agree to rounding but not always to the bit.

Dask is an optional dependency: ``pip install "mcscore[dask]"``.
"""
from __future__ import annotations

import uuid

import numpy as np

from . import _docs
from . import _validation as V
from ._algebra import Mag, Offsets
from ._config import effective_n_threads
from ._rounds import ScoreJob, raise_kernel_error, task_fused, task_job

__all__ = ["run_on_dask", "run_job_on_dask", "map_streams", "default_tasks"]


def default_tasks(client, n_streams_used):
    """Tasks a call is cut into: about four per worker thread (so that the
    cluster balances and a lost task costs little), at most one per stream.

    Parameters
    ----------
    client : dask.distributed.Client or similar
        Its ``nthreads()`` gives the worker threads (1 when it cannot).
    n_streams_used : int
        The streams holding draws.

    Returns
    -------
    int
        Between 1 and ``n_streams_used``.

    Raises
    ------
    TypeError
        ``n_streams_used`` not a number.

    Examples
    --------
    >>> from mcscore.distributed import default_tasks
    >>> class TwoWorkers:
    ...     def nthreads(self):
    ...         return {"w1": 2, "w2": 2}
    >>> default_tasks(TwoWorkers(), 64), default_tasks(TwoWorkers(), 5)
    (16, 5)
    """
    try:
        threads = sum(client.nthreads().values())
    except Exception:  # noqa: BLE001 - any client-like object
        threads = 1
    return max(1, min(int(n_streams_used), 4 * max(1, threads)))


def map_streams(client, plan, task, head, tail, *, n_threads, n_tasks, kind, on_result):
    """Submit ``task(*head, group, *tail)`` for groups of the plan's streams and
    call ``on_result(result)`` for each as it completes.

    Parameters
    ----------
    client : dask.distributed.Client
        The cluster.
    plan : Plan
        The call's streams and blocks.
    task : callable
        Run on the workers for each group of streams.
    head, tail : tuple
        The task's arguments before and after the group.
    n_threads : int or None
        Threads per task on the workers.
    n_tasks : int or None
        The number of tasks (default :func:`default_tasks`).
    kind : str
        How f is lowered (a C callback cannot be sent to other processes).
    on_result : callable
        Called with each task's result, as it completes.

    Returns
    -------
    None

    Raises
    ------
    TypeError
        ``client`` that is not a Dask client.
    ImportError
        Without Dask.

    Examples
    --------
    It runs under ``score_grad(..., client=client)``: the result is bit for bit
    the local one.

    %(dask_client)s
    >>> q = mc.Normal(loc=1.0, scale=1.0)
    >>> a = mc.score_grad(lambda x: x ** 2, q, 20_000, rng=0, client=client)
    >>> b = mc.score_grad(lambda x: x ** 2, q, 20_000, rng=0)
    >>> bool(a.grad["loc"] == b.grad["loc"])
    True
    >>> client.close()
    """
    if not (hasattr(client, "submit") and hasattr(client, "nthreads")):
        raise TypeError(f"client must be a dask.distributed.Client, got {type(client).__name__}")
    try:
        from distributed import as_completed
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError('client= needs Dask: pip install "mcscore[dask]"') from None
    if n_threads is not None:
        effective_n_threads(n_threads)  # validate here, resolve on the workers
    if n_tasks is None:
        n_tasks = default_tasks(client, plan.used)
    n_tasks = V.integer("n_tasks", n_tasks, minimum=1)
    # Python ints, not arrays: an array unpickled on a worker may be a view
    # into a message frame with no 8-byte alignment, which the kernels'
    # int64 reads require; each task builds its own aligned array.
    groups = [g.tolist() for g in np.array_split(np.arange(plan.used, dtype=np.int64), n_tasks)
              if len(g)]
    token = uuid.uuid4().hex
    futures = [client.submit(task, *head, g, *tail, key=f"mcscore-{kind}-{token}-{i}",
                             pure=False)
               for i, g in enumerate(groups)]
    try:
        for fut in as_completed(futures):
            on_result(fut.result())
    finally:
        for fut in futures:
            if not fut.done():
                fut.cancel()


def _reject_callback(fkind):
    if fkind == "callback":
        raise TypeError(
            "f: a scipy.LowLevelCallable is a function pointer into this process and cannot "
            "be sent to Dask workers; use an mcscore.integrands.Integrand or a picklable "
            "Python callable with client=, or run the callback locally (client=None)"
        )


def run_on_dask(client, f, fkind, dist, kd, plan, *, n_threads=None, chunk_size=None,
                progress=None, n_tasks=None):
    """Run a planned score_grad call's streams on Dask; returns (stats,
    shifts) in stream order, exactly as the local drivers do.

    Parameters
    ----------
    client : dask.distributed.Client
        The cluster.
    f : callable or Integrand
        The integrand (not a C callback).
    fkind : str
        How f is lowered.
    dist : Distribution
    kd : KernelDist
    plan : Plan
    n_threads, chunk_size : int, optional
        As in :func:`mcscore.score_grad`.
    progress : object, optional
        Told of each finished stream.
    n_tasks : int, optional
        The number of tasks.

    Returns
    -------
    tuple of numpy.ndarray
        ``(stats (streams, stats_len), shifts (streams,))``.

    Raises
    ------
    ValueError
        A C callback (``LowLevelCallable``), which cannot leave the process,
        or the error the kernels report for the first failing draw.

    Examples
    --------
    %(dask_client)s
    >>> q = mc.Normal(loc=0.0, scale=1.0)
    >>> res = mc.score_grad(mc.integrands.power(2), q, 20_000, rng=0, client=client)
    >>> bool(abs(res.grad["scale"] - 2.0) < 5 * res.stderr["scale"])     # d E[x^2] / d scale = 2
    True
    >>> client.close()
    """
    _reject_callback(fkind)
    if chunk_size is not None:
        chunk_size = V.integer("chunk_size", chunk_size, minimum=1)
    stats = np.zeros((plan.used, kd.stats_len))
    shifts = np.zeros(plan.used)
    first_error = []

    def on_result(res):
        streams, rows, sh = res[:3]
        stats[streams] = rows
        shifts[streams] = sh
        if fkind != "python":
            code, idx = res[3:]
            if code != 0 and (not first_error or idx < first_error[1]):
                first_error[:] = [code, idx]
        if progress is not None:
            progress.streams_done(streams)

    if fkind == "python":
        task, head, tail = task_job, (ScoreJob(f, dist), plan), (chunk_size, n_threads)
    else:
        task, head = task_fused, (dist, f, plan.root)
        tail = (plan.n, plan.n_streams, plan.block_size, n_threads)
    map_streams(client, plan, task, head, tail, n_threads=n_threads, n_tasks=n_tasks, kind=fkind,
            on_result=on_result)
    if first_error:
        raise_kernel_error(first_error[0], first_error[1], plan, dist, kd)
    return stats, shifts


def run_job_on_dask(client, job, plan, *, chunk_size=None, n_threads=None, n_tasks=None):
    """Run an estimator's job (see mcscore._rounds.Job) on the plan's streams
    on Dask; returns (stats, shifts, Offsets, Mag) in stream order, exactly
    as mcscore._rounds.run_job does locally.

    Parameters
    ----------
    client : dask.distributed.Client
    job : Job
        The estimator's job.
    plan : Plan
    chunk_size, n_threads, n_tasks : int, optional

    Returns
    -------
    tuple
        ``(stats, shifts, Offsets, Mag)`` in stream order.

    Raises
    ------
    ValueError
        A C callback, which cannot leave the process.

    Examples
    --------
    %(dask_client)s
    >>> q = mc.Normal(loc=1.0, scale=1.0)
    >>> res = mc.pathwise_grad(lambda x: x ** 2, q, 20_000, grad_f=lambda x: 2 * x, rng=0,
    ...                        client=client)
    >>> bool(abs(res.grad["loc"] - 2.0) < 5 * res.stderr["loc"])
    True
    >>> client.close()
    """
    _reject_callback(getattr(job, "fkind", "python"))
    if chunk_size is not None:
        chunk_size = V.integer("chunk_size", chunk_size, minimum=1)
    stats, shifts = job.new_stats(plan.used)
    offsets = Offsets(plan.used, plan.n_streams, job.offset_rows, job.carrier, job.mult)
    mag = Mag()

    def on_result(res):
        streams, rows, sh, off, m = res
        stats[streams] = rows
        shifts[streams] = sh
        offsets.c[streams] = off.c
        for k, v in m.seen.items():
            mag.seen[k] = max(mag.seen.get(k, 0.0), v)

    map_streams(client, plan, task_job, (job, plan), (chunk_size, n_threads), n_threads=n_threads,
            n_tasks=n_tasks, kind="job", on_result=on_result)
    return stats, shifts, offsets, mag


# The fragments the docstrings above name by %(name)s (see mcscore._docs), filled in
# once, when the module is imported.
_DOC_FRAGMENTS = {
    "dask_client": """\
>>> import pytest
>>> distributed = pytest.importorskip("distributed")
>>> import mcscore as mc
>>> client = distributed.Client(processes=False, n_workers=1, threads_per_worker=2,
...                             dashboard_address=None)""",
}
_docs.fill_module(globals(), **_DOC_FRAGMENTS)
