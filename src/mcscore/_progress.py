"""Progress bars for long runs (``score_grad(..., progress=True)``).

The bar counts blocks and draws; it is updated between rounds of a Python f,
by a thread that reads the kernel's per-stream draw counts while a fused
integrand or C callback runs (the kernel itself is untouched), and as Dask
tasks finish.  None of this touches the kernels' arithmetic, so a run with a
bar gives the same bits as one without.
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np

# How often the bar of a fused run reads the kernel's draw counts.
WATCH_SECONDS = 0.2


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

    @contextlib.contextmanager
    def watch(self, stats, interval=WATCH_SECONDS):
        """While the body runs (a fused kernel call, GIL released), a
        thread reads the per-stream draw counts ``stats[:, 0]`` that the
        kernel keeps anyway and moves the bar.  It only reads: the kernel
        runs exactly as without a bar."""
        counts = stats[:, 0]
        stop = threading.Event()
        start_blocks, start_draws = self.blocks, self._bar.n

        def show():
            draws = int(counts.sum())
            blocks = min(self.plan.n_blocks, draws // self.plan.block_size)
            self.update(start_blocks + blocks - self.blocks, start_draws + draws - self._bar.n)

        def loop():
            while not stop.wait(interval):
                show()

        thread = threading.Thread(target=loop, name="mcscore-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
        draws = int(counts.sum())
        if draws == self.plan.n:  # finished: exact totals
            self.update(self.plan.n_blocks - self.blocks, draws - self._bar.n)
        else:
            show()

    def close(self):
        self._bar.close()


def simple_bar(total, enabled, desc):
    """A tqdm bar when tqdm is installed and enabled, else a no-op."""
    if enabled:
        try:
            from tqdm.auto import tqdm

            return tqdm(total=total, desc=desc, leave=False)
        except ImportError:
            pass

    class _Null:
        def update(self, k=1):
            pass

        def set_postfix_str(self, s):
            pass

        def close(self):
            pass

    return _Null()
