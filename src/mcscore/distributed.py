"""Distributed runs on Dask: ``score_grad(..., client=client)``.

A call's draws are cut into streams (see :func:`mcscore.score_grad`); each
stream has its own bit generator, spawned from the call's SeedSequence, and
its own row of sufficient statistics.  Streams are therefore independent
units of work: this module sends groups of streams to Dask workers, each
worker runs the same kernels on its streams and returns their statistics
rows, and the client puts the rows back in stream order and applies the
same estimator algebra.  The result is **bit-identical** to the local run
with the same (f, dist, n, rng, n_streams, block_size), whatever the number
of workers, and also when a worker dies and Dask recomputes its task
elsewhere (a task is a pure function of its streams).

What travels to a worker: the distribution (a plain Python object; its
cached kernel is rebuilt on the worker), f (an
:class:`~mcscore.integrands.Integrand`, or a Python callable that pickles
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

from . import _kernels as K
from . import _validation as V
from ._config import effective_n_threads

__all__ = ["run_on_dask", "default_tasks"]


def default_tasks(client, n_streams_used):
    """Tasks a call is cut into: about four per worker thread (so that the
    cluster balances and a lost task costs little), at most one per stream."""
    try:
        threads = sum(client.nthreads().values())
    except Exception:  # noqa: BLE001 - any client-like object
        threads = 1
    return max(1, min(int(n_streams_used), 4 * max(1, threads)))


# ---------------------------------------------------------------------------
# what a worker runs
# ---------------------------------------------------------------------------

def _bitgens(root, streams):
    from .estimator import stream_bit_generators

    return stream_bit_generators(root, [int(s) for s in streams])


def _task_fused(dist, f, root, streams, n, n_streams, block_size, n_threads):
    """Run whole streams with a fused integrand; returns
    (streams, stats rows, shifts, error code, failing draw index)."""
    from .estimator import _kernel_func

    kd = dist._kernel_dist()
    _, kf = _kernel_func(f, dist)
    streams = np.ascontiguousarray(streams, dtype=np.int64)
    stats = np.zeros((len(streams), kd.stats_len))
    shifts = np.zeros(len(streams))
    threads = effective_n_threads(n_threads, work_items=len(streams))
    code, idx = K.run_streams(kd, kf, _bitgens(root, streams), streams, n, n_streams,
                              block_size, threads, stats, shifts)
    return streams, stats, shifts, code, idx


def _task_python(dist, f, root, streams, n, n_streams, block_size, n_threads, chunk_size):
    """Run whole streams with a Python f, round by round: round k holds
    block ``s + k * n_streams`` of each stream s (at most one block per
    stream, so each stream still accumulates its blocks in order)."""
    from .estimator import _call_f

    kd = dist._kernel_dist()
    streams = np.ascontiguousarray(streams, dtype=np.int64)
    S, B, ds = n_streams, block_size, kd.draw_size
    nb = -(-n // B)
    ns = len(streams)
    bitgens = _bitgens(root, streams)
    stats = np.zeros((ns, kd.stats_len))
    shifts = np.zeros(ns)
    threads = effective_n_threads(n_threads, work_items=ns)
    if chunk_size is None:
        chunk_size = max(B, (1 << 18) // max(1, ds))
    xt = np.empty((ns, ds * B))
    # LogNormal: log x as drawn, exactly as the local driver keeps it
    lt = np.empty((ns, ds * B)) if kd.has_log_column else None
    fx = np.empty((ns, B))
    for k in range(-(-(nb - int(streams.min())) // S)):
        blocks = streams + k * S
        keep = blocks < nb
        slots = np.flatnonzero(keep).astype(np.int64)
        blocks = np.ascontiguousarray(blocks[keep])
        if len(blocks) == 0:
            break
        K.draw_round(kd, bitgens, blocks, slots, n, B, threads, xt, lt)
        for r, b in enumerate(blocks):
            m = min(B, n - int(b) * B)
            x = xt[r, : ds * m].reshape(ds, m).T
            x = dist._to_user_dtype(x.reshape((m,) + dist.draw_shape))
            for c0 in range(0, m, chunk_size):
                xc = np.array(x[c0: c0 + chunk_size])
                fx[r, c0: c0 + len(xc)] = _call_f(f, xc, int(b) * B + c0)
        bad = K.accumulate_round(kd, blocks, slots, n, B, S, threads, xt, fx, stats, shifts,
                                 lt)
        if bad >= 0:  # cannot happen after _call_f's checks, kept as a guard
            raise ValueError(f"f returned a non-finite value at draw {bad}")
    return streams, stats, shifts, 0, -1


# ---------------------------------------------------------------------------
# the client side
# ---------------------------------------------------------------------------

def run_on_dask(client, f, fkind, dist, kd, plan, *, n_threads=None, chunk_size=None,
                progress=None, n_tasks=None):
    """Run a planned call's streams on Dask; returns (stats, shifts) in
    stream order, exactly as the local drivers do."""
    if not (hasattr(client, "submit") and hasattr(client, "nthreads")):
        raise TypeError(f"client must be a dask.distributed.Client, got {type(client).__name__}")
    try:
        from distributed import as_completed
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError('client= needs Dask: pip install "mcscore[dask]"') from None
    if fkind == "callback":
        raise TypeError(
            "f: a scipy.LowLevelCallable is a function pointer into this process and cannot "
            "be sent to Dask workers; use an mcscore.integrands.Integrand or a picklable "
            "Python callable with client=, or run the callback locally (client=None)"
        )
    if chunk_size is not None:
        chunk_size = V.integer("chunk_size", chunk_size, minimum=1)
    if n_threads is not None:
        effective_n_threads(n_threads)  # validate here, resolve on the workers
    if n_tasks is None:
        n_tasks = default_tasks(client, plan.used)
    n_tasks = V.integer("n_tasks", n_tasks, minimum=1)
    groups = [g for g in np.array_split(np.arange(plan.used, dtype=np.int64), n_tasks) if len(g)]
    token = uuid.uuid4().hex
    common = (plan.n, plan.n_streams, plan.block_size, n_threads)
    if fkind == "python":
        task, extra = _task_python, (chunk_size,)
    else:
        task, extra = _task_fused, ()
    futures = [
        client.submit(task, dist, f, plan.root, g, *common, *extra,
                      key=f"mcscore-{fkind}-{token}-{i}", pure=False)
        for i, g in enumerate(groups)
    ]
    stats = np.zeros((plan.used, kd.stats_len))
    shifts = np.zeros(plan.used)
    first_error = None
    try:
        for fut in as_completed(futures):
            streams, rows, sh, code, idx = fut.result()
            stats[streams] = rows
            shifts[streams] = sh
            if code != 0 and (first_error is None or idx < first_error[1]):
                first_error = (code, idx)
            if progress is not None:
                progress.streams_done(streams)
    finally:
        for fut in futures:
            if not fut.done():
                fut.cancel()
    if first_error is not None:
        from .estimator import _raise_kernel_error

        _raise_kernel_error(first_error[0], first_error[1], plan, dist, kd)
    return stats, shifts
