"""Progress bars for long runs (``progress=True`` on every estimator and loop).

The same everywhere: ``progress=False`` is the default; ``progress=True``
shows a tqdm bar when tqdm is installed and otherwise prints a plain progress
line to stderr about once a second (never an ImportError, never silence).

The bar counts blocks and draws; it is updated between rounds of a Python f,
by a thread that reads the kernel's per-stream draw counts while a fused
integrand or C callback runs (the kernel itself is untouched), and as Dask
tasks finish.  None of this touches the kernels' arithmetic, so a run with a
bar gives the same bits as one without.
"""
from __future__ import annotations

import contextlib
import contextvars
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

# How often the bar of a fused run reads the kernel's draw counts.
WATCH_SECONDS = 0.2


def stream_draws(plan: Any, streams: ArrayLike) -> tuple[int, int]:
    """(blocks, draws) that the given streams of a plan hold."""
    streams = np.asarray(streams, dtype=np.int64)
    nb, S, B = plan.n_blocks, plan.n_streams, plan.block_size
    blocks = np.where(streams < nb, (nb - 1 - streams) // S + 1, 0)
    draws = blocks * B
    last = (nb - 1) % S  # the stream holding the last, possibly short, block
    draws = draws - np.where(streams == last, nb * B - plan.n, 0)
    return int(blocks.sum()), int(draws.sum())


class TextBar:
    """The bar used when tqdm is not installed: one line on stderr at most
    every `interval` seconds and a last one at close, with the same methods
    as the tqdm bar that the estimators use (update, set_postfix_str,
    close, n).  progress=True therefore behaves the same everywhere: a bar
    with tqdm, these lines without it, never an error and never silence."""

    def __init__(self, total: int, desc: str, unit: str = "it", interval: float = 1.0,
                 stream: IO[str] | None = None) -> None:
        self.total, self.desc, self.unit, self.interval = int(total), desc, unit, interval
        self.stream = stream if stream is not None else sys.stderr
        self.n = 0
        self.postfix = ""
        self._t0 = self._last = time.monotonic()
        self._closed = False

    def _line(self) -> str:
        dt = max(time.monotonic() - self._t0, 1e-9)
        pct = 100.0 * self.n / self.total if self.total else 100.0
        extra = f", {self.postfix}" if self.postfix else ""
        return (f"{self.desc}: {pct:5.1f}% ({self.n:,}/{self.total:,} {self.unit}s, "
                f"{self.n / dt:,.0f} {self.unit}/s{extra})")

    def update(self, k: int = 1) -> None:
        self.n += int(k)
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            print(self._line(), file=self.stream, flush=True)

    def set_postfix_str(self, s: object, refresh: bool = True) -> None:
        self.postfix = str(s)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            print(self._line(), file=self.stream, flush=True)


def make_bar(total: int, desc: str, unit: str = "it", **tqdm_options: Any) -> Any:
    """A tqdm bar when tqdm is installed, else a TextBar."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return TextBar(total, desc, unit)
    return tqdm(total=total, desc=desc, unit=unit, **tqdm_options)


class ProgressBar:
    """A bar over the draws of one estimator call (tqdm, or TextBar without
    it)."""

    def __init__(self, plan: Any) -> None:
        self.plan = plan
        self.blocks = 0
        self._bar = make_bar(plan.n, "mcscore", unit="draw", unit_scale=True, smoothing=0.1,
                             dynamic_ncols=True)
        self._bar.set_postfix_str(self._postfix(), refresh=False)

    def _postfix(self) -> str:
        return f"blocks {self.blocks}/{self.plan.n_blocks}"

    def update(self, blocks: int, draws: int) -> None:
        """Record that `blocks` more blocks holding `draws` draws are done."""
        self.blocks += int(blocks)
        self._bar.set_postfix_str(self._postfix(), refresh=False)
        self._bar.update(int(draws))

    def streams_done(self, streams: ArrayLike) -> None:
        self.update(*stream_draws(self.plan, streams))

    @contextlib.contextmanager
    def watch(self, stats: NDArray[Any], interval: float = WATCH_SECONDS) -> Iterator[None]:
        """While the body runs (a fused kernel call, GIL released), a
        thread reads the per-stream draw counts ``stats[:, 0]`` that the
        kernel keeps anyway and moves the bar.  It only reads: the kernel
        runs exactly as without a bar."""
        counts = stats[:, 0]
        stop = threading.Event()
        start_blocks, start_draws = self.blocks, self._bar.n

        def show() -> None:
            draws = int(counts.sum())
            blocks = min(self.plan.n_blocks, draws // self.plan.block_size)
            self.update(start_blocks + blocks - self.blocks, start_draws + draws - self._bar.n)

        def loop() -> None:
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

    def close(self) -> None:
        self._bar.close()


def simple_bar(total: int, enabled: bool, desc: str) -> Any:
    """A bar over `total` iterations when enabled (tqdm, or TextBar without
    it), else a no-op with the same methods."""
    if enabled:
        return make_bar(total, desc, leave=False)

    class _Null:
        def update(self, k: int = 1) -> None:
            pass

        def set_postfix_str(self, s: object) -> None:
            pass

        def close(self) -> None:
            pass

    return _Null()


# A loop deep inside an estimator (the finance path engine's rounds) moves
# the bar of the call that runs it without threading the bar through every
# signature: the call makes its bar current, the loop advances it.
_CURRENT: contextvars.ContextVar[Any] = contextvars.ContextVar("mcscore_progress_bar",
                                                               default=None)


@contextlib.contextmanager
def current(bar: Any) -> Iterator[Any]:
    """Make `bar` the bar that advance() moves while the body runs; close it
    at the end."""
    token = _CURRENT.set(bar)
    try:
        yield bar
    finally:
        _CURRENT.reset(token)
        bar.close()


def advance(k: int) -> None:
    """Move the current bar (if any) by k units."""
    bar = _CURRENT.get()
    if bar is not None:
        bar.update(int(k))


def done(total: int) -> None:
    """Move the current bar (if any) to `total` (a call that finished
    without intermediate steps, e.g. one kernel call)."""
    bar = _CURRENT.get()
    if bar is not None:
        bar.update(max(0, int(total) - int(getattr(bar, "n", 0))))
