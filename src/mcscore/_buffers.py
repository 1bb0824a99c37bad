"""Round buffers: a round of blocks (``Round``: its indices, the rows of
statistics it accumulates into, gather and scatter of its draws), the pool
of round buffers kept from one call to the next (``_POOL``), the up-front
memory check and the chunk of a Python f's calls.  Used by the jobs
(``mcscore._jobs``) and the round loop (``mcscore._rounds``).
"""
from __future__ import annotations

import os
import sys
import threading

import numpy as np

from . import _validation as V
from . import _vr


# ---------------------------------------------------------------------------
# rounds of blocks
# ---------------------------------------------------------------------------

class Round:
    """One round of blocks: indices, the rows of statistics (slots) they
    accumulate into, row counts and gather/scatter helpers."""

    def __init__(self, plan, blocks, slots, consecutive):
        self.B = plan.block_size
        self.blocks = blocks
        self.slots = slots
        self.consecutive = consecutive  # blocks r0, r0 + 1, ... (local runs)
        self.n = plan.n
        self.n_streams = plan.n_streams
        n, B = plan.n, self.B
        self.rows = [min(B, n - b * B) for b in blocks.tolist()]
        self.total = sum(self.rows)
        self.first = int(self.blocks[0]) * self.B

    @property
    def index(self):
        """Positions r * B + i of the round's draws in (R * B,) arrays."""
        if self._index is None:
            self._index = np.concatenate([r * self.B + np.arange(m)
                                          for r, m in enumerate(self.rows)])
        return self._index

    _index = None

    def draw_index(self, i):
        """The global index of the round's i-th draw (for error messages)."""
        r = int(np.searchsorted(np.cumsum(self.rows), i, side="right"))
        return int(self.blocks[r]) * self.B + i - sum(self.rows[:r])

    def gather(self, buf, W, region=0, out=None):
        """(total, W) array of region `region` (W * m doubles) of each block
        (into the first `total` rows of `out` when given)."""
        out = np.empty((self.total, W)) if out is None else out[:self.total]
        rows, B = self.rows, self.B
        R = len(rows)
        full = R if rows[-1] == B else R - 1
        if self.total == full * B + (rows[-1] if full < R else 0):
            # every block but maybe the last is full: one transposing copy for them
            if full:
                out[:full * B].reshape(full, B, W)[...] = buf[
                    :full, region * W * B:(region + 1) * W * B].reshape(full, W, B).transpose(0, 2, 1)
            if full < R:
                m = rows[-1]
                out[full * B:] = buf[R - 1, region * W * m:(region + 1) * W * m].reshape(W, m).T
            return out
        o = 0
        for r, m in enumerate(rows):
            out[o: o + m] = buf[r, region * W * m: (region + 1) * W * m].reshape(W, m).T
            o += m
        return out

    def scatter(self, values, width=None):
        """Values of the round's draws (total,) or (total, W) -> padded
        (R * B,) / (R * B, W) arrays indexed by r * B + i."""
        R = len(self.blocks)
        if values.ndim == 1:
            out = np.zeros(R * self.B)
        else:
            out = np.zeros((R * self.B, values.shape[1]))
        out[self.index] = values
        return out


def _physical_memory():
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(plan, P, L, what):
    """A clear MemoryError naming the size asked for, not a bare one from
    deep inside a kernel, when the per-stream statistics and the kernels'
    per-thread block buffers (about (L + 2) P block_size doubles a thread)
    do not fit in the machine's memory."""
    per_stream = _vr.gram_width(P, L) + 1 + P * L
    per_thread = (L + 2) * P * plan.block_size
    need = 8.0 * (plan.used * per_stream + plan.threads * per_thread)
    have = _physical_memory()
    if have is not None and need > have:
        raise MemoryError(
            f"{what} with {P} gradient coordinates and {L} feature(s) each needs about "
            f"{need / 2**30:.3g} GiB ({plan.used} streams x {per_stream} statistics + "
            f"{plan.threads} thread(s) x {per_thread} block values at block_size="
            f"{plan.block_size}), more than the machine's {have / 2**30:.3g} GiB; use fewer "
            "streams (n_streams), a smaller block_size (or n) or, for a Categorical with many "
            "categories, score_grad without control variates (per-category sums)")


def chunk_size_for(chunk_size, B, width):
    """Draws per call of a Python f: by default about 2**18 draw values."""
    if chunk_size is None:
        chunk_size = max(B, (1 << 18) // max(1, width))
    return V.integer("chunk_size", chunk_size, minimum=1)


class _BufferPool:
    """Round buffers of the Python-f score path kept from one call to the
    next (up to max_bytes, the most recently returned first): a new call of
    the same shape draws into memory that is already mapped, instead of
    faulting in fresh pages (about a page fault per 4 KiB drawn) and
    unmapping them when it returns.  Thread-safe; an array is returned to
    the pool only when nothing else holds it (f may keep x or a view)."""

    def __init__(self, max_bytes=1 << 25):
        self.max_bytes = max_bytes
        self._free = []  # (shape, array), oldest first
        self._bytes = 0
        self._lock = threading.Lock()

    def take(self, shape):
        with self._lock:
            for i in range(len(self._free) - 1, -1, -1):
                if self._free[i][0] == shape:
                    a = self._free.pop(i)[1]
                    self._bytes -= a.nbytes
                    return a
        return np.empty(shape)

    def give(self, a, owners=0):
        """Keep a for a later take(); `owners`: references to a that the
        caller holds besides its argument (a held anywhere else is left)."""
        # float64 only: take() hands out float64 draw buffers (a batched
        # Categorical's int64 rows must not come back as another call's draws)
        if (a.dtype != np.float64 or sys.getrefcount(a) > 2 + owners
                or a.nbytes > self.max_bytes):
            return
        with self._lock:
            self._free.append((a.shape, a))
            self._bytes += a.nbytes
            while self._bytes > self.max_bytes:
                self._bytes -= self._free.pop(0)[1].nbytes


_POOL = _BufferPool()
