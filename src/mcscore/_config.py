"""Build configuration and the one function that decides thread counts."""
from __future__ import annotations

import os
import sys

from . import _kernels
from . import _validation as V


def effective_n_threads(n_threads=None, *, work_items=None):
    """Threads to use for a parallel region.

    None: all threads OpenMP would use now (OMP_NUM_THREADS and threadpoolctl
    limits are honoured); a negative count counts from the end (-1 = all,
    -2 = all but one); 0 is an error.  The result is capped at the number of
    work items (streams) so tiny problems do not oversubscribe.
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
    return max(1, t)


def show_config(file=None):
    """Print (and return as a dict) how this mcscore was built and how many
    threads it will use."""
    import numpy as np
    import scipy

    from . import __version__

    cfg = {
        "mcscore": __version__,
        "openmp": bool(_kernels.HAVE_OPENMP),
        "threads": effective_n_threads(None),
        "processors": _kernels.omp_num_procs(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "python": sys.version.split()[0],
        "platform": sys.platform,
    }
    out = file if file is not None else sys.stdout
    for k, v in cfg.items():
        print(f"{k:>16}: {v}", file=out)
    return cfg
