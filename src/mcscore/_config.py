"""Build configuration and the one function that decides thread counts."""
from __future__ import annotations

import contextlib
import os
import sys
from typing import IO, Any

import numpy as np
import scipy

from . import _kernels
from . import _validation as V
from ._version import __version__

# libgomp's thread pool does not survive fork(): a child forked after the
# parent ran a parallel region can hang in its own first parallel region.
# mcscore cannot see every user of that pool: another library loaded in the
# same process (PyTorch, scikit-learn, ...) shares the one libgomp, and its
# threads hang a forked child just the same.  So every forked child (and its
# children) runs the kernels serially, unless the environment variable
# MCSCORE_THREADS_AFTER_FORK=1 is set in the child (for a parent known never
# to have run OpenMP threads of any library); even then a child of a parent
# that ran mcscore's own parallel kernels stays serial.  Results are
# bit-identical for any thread count, so only speed changes; use the "spawn"
# or "forkserver" start methods of multiprocessing for parallel workers.
THREADS_AFTER_FORK_ENV = "MCSCORE_THREADS_AFTER_FORK"
_STATE: dict[str, bool] = {"pool_used": False, "serial_after_fork": False}


def _after_fork_in_child() -> None:
    opted_in = os.environ.get(THREADS_AFTER_FORK_ENV, "").strip() == "1"
    if _STATE["pool_used"] or not opted_in:
        _STATE["serial_after_fork"] = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def effective_n_threads(n_threads: int | None = None, *, work_items: int | None = None) -> int:
    """Threads to use for a parallel region.

    None: all threads OpenMP would use now (OMP_NUM_THREADS and threadpoolctl
    limits are honoured); a negative count counts from the end (-1 = all,
    -2 = all but one); 0 is an error.  The result is capped at the number of
    work items (streams) so tiny problems do not oversubscribe.

    In a process forked (``os.fork``, multiprocessing's "fork" start method)
    the result is always 1: the OpenMP runtime's threads do not survive fork,
    and a parallel region there could hang if the parent ran OpenMP threads,
    whether mcscore's or another library's sharing libgomp (PyTorch, ...).
    Set the environment variable ``MCSCORE_THREADS_AFTER_FORK=1`` (read in
    the child at the fork) to keep threads in a child whose parent never ran
    any OpenMP thread; a child of a parent that ran mcscore's parallel
    kernels stays serial regardless.  Results do not depend on the thread
    count.

    Parameters
    ----------
    n_threads : int or None, default None
        None: all available threads; a positive count; a negative count from
        the end (-1 = all, -2 = all but one).
    work_items : int or None, optional
        The number of parallel work items (streams): the result is at most this.

    Returns
    -------
    int
        The thread count (>= 1).

    Raises
    ------
    ValueError
        ``n_threads`` 0 or not an integer.

    Examples
    --------
    >>> import mcscore as mc
    >>> mc.effective_n_threads(1)
    1
    >>> mc.effective_n_threads(-1, work_items=1)
    1
    """
    max_threads = _kernels.omp_max_threads()
    if n_threads is None:
        t = max_threads
    else:
        t = V.integer("n_threads", n_threads)
        if t == 0:
            raise ValueError("n_threads must be a positive or negative integer, not 0 "
                             "(None uses all available threads)")
        if t < 0:
            t = max(1, max_threads + 1 + t)
    if work_items is not None:
        t = min(t, max(1, int(work_items)))
    if _STATE["serial_after_fork"]:
        return 1
    if t > 1:
        _STATE["pool_used"] = True
    return max(1, t)


def show_config(file: IO[str] | None = None) -> dict[str, Any]:
    """Print (and return as a dict) how this mcscore was built and how many
    threads it will use.

    Parameters
    ----------
    file : text stream or None, default None
        Where to print (None: ``sys.stdout``).

    Returns
    -------
    dict
        The printed keys and values (``"mcscore"``, ``"openmp"``, ``"threads"``, ...).

    Raises
    ------
    OSError
        When ``file`` cannot be written.

    Examples
    --------
    >>> import io
    >>> import mcscore as mc
    >>> cfg = mc.show_config(file=io.StringIO())
    >>> cfg["mcscore"] == mc.__version__, cfg["threads"] >= 1
    (True, True)
    """
    cfg = {
        "mcscore": __version__,
        "openmp": bool(_kernels.HAVE_OPENMP),
        "threads": effective_n_threads(None),
        "serial_after_fork": _STATE["serial_after_fork"],
        "processors": _kernels.omp_num_procs(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "python": sys.version.split()[0],
        "platform": sys.platform,
    }
    out = file if file is not None else sys.stdout
    if not hasattr(out, "write"):
        raise TypeError(f"show_config: file must have a write method (a text stream), "
                        f"got {type(file).__name__}")
    for k, v in cfg.items():
        print(f"{k:>16}: {v}", file=out)
    return cfg


# -- BLAS inside mcscore's threads -------------------------------------------
# The vector families (MultivariateNormal, LowRankMultivariateNormal) call
# BLAS (scipy.linalg.cython_blas) on each chunk from inside mcscore's own
# OpenMP threads.  A multithreaded OpenBLAS would then start its own pool
# under each of them: on 2 cores, 6 to 10 times the CPU time, spent
# spinning.  While the kernels run, BLAS is limited to one thread (by
# threadpoolctl, which restores the previous limit afterwards); f itself
# runs outside that window with the user's BLAS settings.
_BLAS_CONTROLLER: Any = None


def blas_single_threaded(dist: object) -> contextlib.AbstractContextManager[Any]:
    """A context in which BLAS runs on one thread when `dist` is a family
    whose kernels call BLAS (``kernel_blas``), else a no-op context."""
    global _BLAS_CONTROLLER
    if not getattr(dist, "kernel_blas", False):
        return contextlib.nullcontext()
    if _BLAS_CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _BLAS_CONTROLLER = ThreadpoolController()
    limit: contextlib.AbstractContextManager[Any] = _BLAS_CONTROLLER.limit(limits=1,
                                                                           user_api="blas")
    return limit
