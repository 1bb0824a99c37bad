"""Progress bars for long runs (``score_grad(..., progress=True)``).

The bar counts blocks and draws; it is updated between rounds of a Python f,
between batches of streams of a fused integrand or C callback, and as Dask
tasks finish.  None of this touches the kernels' arithmetic, so a run with a
bar gives the same bits as one without.
"""
from __future__ import annotations

import numpy as np

# A fused run with a bar is cut into about this many batches of streams.
TARGET_BATCHES = 16


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
        """Contiguous [lo, hi) ranges of the used streams for a fused run:
        each a multiple of the thread count (streams hold equal work up to
        one block, so no thread waits at a batch boundary)."""
        t = max(1, plan.threads)
        size = t * max(1, -(-plan.used // (t * TARGET_BATCHES)))
        return [(lo, min(plan.used, lo + size)) for lo in range(0, plan.used, size)]

    def close(self):
        self._bar.close()
