"""Progress bars for long runs (``score_grad(..., progress=True)``).

The bar counts blocks and draws; it is updated between rounds of a Python f,
between batches of streams of a fused integrand or C callback, and as Dask
tasks finish.  None of this touches the kernels' arithmetic, so a run with a
bar gives the same bits as one without.
"""
from __future__ import annotations

import time

import numpy as np

# A fused run with a bar runs its streams in batches of about this duration.
BATCH_SECONDS = 0.5


def stream_draws(plan, streams):
    """(blocks, draws) that the given streams of a plan hold."""
    streams = np.asarray(streams, dtype=np.int64)
    nb, S, B = plan.n_blocks, plan.n_streams, plan.block_size
    blocks = np.where(streams < nb, (nb - 1 - streams) // S + 1, 0)
    draws = blocks * B
    last = (nb - 1) % S  # the stream holding the last, possibly short, block
    draws = draws - np.where(streams == last, nb * B - plan.n, 0)
    return int(blocks.sum()), int(draws.sum())


class ProgressBar:
    """A tqdm bar over the draws of one estimator call."""

    def __init__(self, plan):
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - depends on the environment
            raise ImportError("progress=True needs tqdm: pip install tqdm") from None
        self.plan = plan
        self.blocks = 0
        self._bar = tqdm(total=plan.n, unit="draw", unit_scale=True, desc="mcscore",
                         smoothing=0.1, dynamic_ncols=True)
        self._bar.set_postfix_str(self._postfix(), refresh=False)

    def _postfix(self):
        return f"blocks {self.blocks}/{self.plan.n_blocks}"

    def update(self, blocks, draws):
        """Record that `blocks` more blocks holding `draws` draws are done."""
        self.blocks += int(blocks)
        self._bar.set_postfix_str(self._postfix(), refresh=False)
        self._bar.update(int(draws))

    def streams_done(self, streams):
        self.update(*stream_draws(self.plan, streams))

    def batches(self, plan):
        """Contiguous [lo, hi) ranges of the used streams for a fused run.

        Each batch is a multiple of the thread count (streams hold equal
        work up to one block, so no thread waits at a batch boundary).  The
        first batch is one stream per thread; later ones are sized from the
        time it took so that a batch lasts about BATCH_SECONDS: the bar moves
        at least that often, and the cost of a batch boundary (a thread team
        and buffers, about a millisecond) stays well under 1% of the run.
        """
        t = max(1, plan.threads)
        lo, size = 0, t
        while lo < plan.used:
            hi = min(plan.used, lo + size)
            t0 = time.perf_counter()
            yield lo, hi
            dt = time.perf_counter() - t0
            groups = BATCH_SECONDS * (hi - lo) / (t * max(dt, 1e-6))
            size = t * max(1, int(groups))
            lo = hi

    def close(self):
        self._bar.close()
