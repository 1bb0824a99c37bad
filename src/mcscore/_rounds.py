"""The Python engine's lower half: what runs where the draws are made.

Everything here runs the same way in the calling process and on a Dask
worker (``mcscore.distributed`` sends a group of streams here): the plan
(streams, blocks, seeding, threads), fused runs, and **one loop over rounds
of blocks**
(``run_job``) under every estimator: per round the kernels draw, Python
evaluates f (and grad_f, control variates, ...), and the kernels accumulate
per-stream sums.  An estimator is a ``Job``: a short declaration of what it
draws (``draw``), what it evaluates (``evaluate``) and what it accumulates
(``accumulate``).  The estimator algebra on the sums is in
``mcscore._algebra``, f's lowering and calls in ``mcscore._callables``;
``mcscore._engine`` runs a job locally or on Dask.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from . import _kernels as K
from . import _validation as V
from . import _vr
from ._algebra import Mag, Offsets
from ._callables import (
    call_raw, call_values, chunks, describe_draw, lower_f, nonfinite_draw_error,
)
from ._config import blas_single_threaded, effective_n_threads
from .distributions import Categorical

DEFAULT_STREAMS = 64
# draw values a stream runs per kernel call of a long fused run (see run_fused)
EPOCH_VALUES = 1 << 22
MIN_BLOCK = 256
MAX_BLOCK_VALUES = 1 << 16  # draw values held in one block buffer (about 512 KiB)



# ---------------------------------------------------------------------------
# the plan: streams, blocks, seeding, threads
# ---------------------------------------------------------------------------

def default_block_size(n, draw_size, n_streams=DEFAULT_STREAMS):
    """Block size B as a function of (n, draw size, streams) only.

    Large enough to amortise per-block work, small enough that the streams
    share the draws (parallelism, cross-fitting) and a block's buffer stays
    in cache.  It never depends on the thread count.

    Parameters
    ----------
    n : int
        The number of draws of the call.
    draw_size : int
        The number of coordinates of one draw.
    n_streams : int, default 64
        The number of random streams the draws are shared among.

    Returns
    -------
    int
        B, a power of two.

    Raises
    ------
    ValueError
        ``n``, ``draw_size`` or ``n_streams`` that is not a number.

    Examples
    --------
    >>> import mcscore as mc
    >>> b = mc.default_block_size(10**6, 1)
    >>> b & (b - 1) == 0, b == mc.default_block_size(10**6, 1)
    (True, True)
    """
    cap = max(64, MAX_BLOCK_VALUES // max(1, int(draw_size)))
    cap = 1 << (cap.bit_length() - 1)
    target = -(-int(n) // int(n_streams))
    b = 1 << max(MIN_BLOCK.bit_length() - 1, (target - 1).bit_length())
    return max(1, min(b, cap))


class _FixedSeed(np.random.bit_generator.ISeedSequence):
    """A seed source that costs nothing, for bit generators whose state is
    set right after construction."""

    _words = {}

    def generate_state(self, n_words, dtype=np.uint32):
        key = (n_words, np.dtype(dtype).str)
        w = self._words.get(key)
        if w is None:
            w = self._words[key] = np.ones(n_words, dtype=dtype)
        return w



_NO_SEED = _FixedSeed()

_PCG64_JUMP = 0x9E3779B97F4A7C15F39CC0605CEDC835  # PCG64.jumped's step, (phi - 1) * 2**128

_MASK128 = (1 << 128) - 1

# Below this many draw values a call runs on one thread: the work is smaller
# than the cost of waking a second one.  (Results never depend on threads.)
SERIAL_VALUES = 1 << 15



# The root PCG64 state of a SeedSequence with an int entropy (an int seed,
# SeedSequence(int, spawn_key=...)), by (entropy, spawn_key, pool_size): a
# function of those only, and a third of a small call's seeding cost (the
# SeedSequence's generate_state).  A few hundred entries at most.
_ROOT_STATES = {}
_ROOT_STATES_MAX = 256


_POOL_SIZE = np.random.SeedSequence(0).pool_size  # of SeedSequence(int)


def _root_state(root, seed=None):
    """The state of PCG64(root), from the cached state when root's entropy
    is an int.  With root None, the root is SeedSequence(seed) (an int seed,
    or the list of words a Generator drew), never built: its PCG64 state is
    computed by K.pcg64_seed_state (cached for int seeds)."""
    if root is not None and type(root.entropy) is not int:
        return np.random.PCG64(root).state
    if root is None and type(seed) is not int:
        # the entropy a Generator drew (a list of words): a new root every
        # call, seeded in C (K.pcg64_seed_state: the state PCG64(
        # SeedSequence(seed)) has, without building the SeedSequence)
        return K.pcg64_seed_state(seed)
    key = ((seed, (), _POOL_SIZE) if root is None
           else (root.entropy, tuple(root.spawn_key), root.pool_size))
    state = _ROOT_STATES.get(key)
    if state is None:
        if root is None or (not root.spawn_key and root.pool_size == _POOL_SIZE):
            state = K.pcg64_seed_state(seed if root is None else root.entropy)
        else:
            state = np.random.PCG64(root).state
        if len(_ROOT_STATES) >= _ROOT_STATES_MAX:
            _ROOT_STATES.clear()
        _ROOT_STATES[key] = state
    return state


# PCG64's LCG (NumPy's multiplier): a step is state -> MULT * state + inc
_PCG64_MULT = (2549297995355413924 << 64) + 4865540595714422341


def _lcg_advance(delta):
    """(A, G) such that advancing PCG64's LCG by delta steps maps a state s
    of increment inc to (A s + G inc) mod 2**128 (the jump-ahead of NumPy's
    pcg_advance_lcg_128, with the increment factored out)."""
    acc_mult, acc_plus, cur_mult, cur_plus = 1, 0, _PCG64_MULT, 1
    delta &= _MASK128
    while delta:
        if delta & 1:
            acc_mult = (acc_mult * cur_mult) & _MASK128
            acc_plus = (acc_plus * cur_mult + cur_plus) & _MASK128
        cur_plus = ((cur_mult + 1) * cur_plus) & _MASK128
        cur_mult = (cur_mult * cur_mult) & _MASK128
        delta >>= 1
    return acc_mult, acc_plus


_JUMP_A, _JUMP_G = _lcg_advance(_PCG64_JUMP)  # one stream's jump

# PCG64 objects handed out by stream_bit_generators, reused by a later call
# once nothing else holds them (constructing one costs a few microseconds, a
# call uses up to n_streams of them).  At most _BG_POOL_MAX are kept.
_BG_POOL = []
_BG_POOL_MAX = 256
_BG_LOCK = threading.Lock()


def _free_refs():
    """getrefcount of a pooled object that nothing else holds, as seen in
    _bitgen_objects' loop (the list's reference, the loop variable's and
    getrefcount's argument)."""
    for bg in [np.random.PCG64(_NO_SEED)]:
        return sys.getrefcount(bg)


_BG_FREE_REFS = _free_refs()


def _bitgen_objects(k):
    """k PCG64 objects that nothing else holds (their states are to be set)."""
    out = []
    with _BG_LOCK:
        for bg in _BG_POOL:
            if sys.getrefcount(bg) == _BG_FREE_REFS:  # held by the pool only
                out.append(bg)
                if len(out) == k:
                    return out
        while len(out) < k:
            bg = np.random.PCG64(_NO_SEED)
            if len(_BG_POOL) < _BG_POOL_MAX:
                _BG_POOL.append(bg)
            out.append(bg)
    return out


def stream_bit_generators(root, streams, seed=None):
    """The bit generators of the given streams of a call seeded by `root`.

    Stream s is the call's root PCG64 (seeded from the root SeedSequence)
    jumped s times, i.e. ``PCG64(root).jumped(s)``: advanced by
    s * (phi - 1) * 2**128 steps, so the streams are far-apart,
    non-overlapping pieces of one PCG64 sequence, and stream s does not
    depend on how many streams a call uses (a Dask worker rebuilds its
    streams alone).  root None stands for SeedSequence(seed), seed an int
    or a list of ints (the entropy a Generator drew).

    The jumps are computed on Python ints (stream s + 1 is stream s advanced
    by one jump: two 128-bit products) when the streams are dense, and the
    PCG64 objects of an earlier call are reused once nothing holds them;
    the states are those of ``PCG64.advance``, bit for bit.  Where NumPy's
    PCG64 state layout passed the import check (K.PCG64_STATES_IN_C), the
    jumps are computed and the states written in C (K.pcg64_set_streams),
    not through a state dict per stream."""
    streams = [int(s) for s in streams]
    root_state = _root_state(root, seed)
    if not streams:
        return []
    top = max(streams)
    dense = top <= 4 * len(streams) + 64
    out = _bitgen_objects(len(streams))
    # the states written from C (the same states as below, bit for bit)
    if K.pcg64_set_streams(out, np.array(streams, np.int64), root_state, _PCG64_JUMP, dense):
        return out
    st0 = root_state["state"]
    state0, inc = st0["state"], st0["inc"]
    if not dense:  # sparse (a Dask task's streams): one jump each
        states = {}
        for s in set(streams):
            a, g = _lcg_advance(s * _PCG64_JUMP)
            states[s] = (a * state0 + g * inc) & _MASK128
    else:  # stream s + 1 is stream s jumped once
        want = set(streams)
        states = {}
        x = state0
        for s in range(top + 1):
            if s in want:
                states[s] = x
            x = (_JUMP_A * x + _JUMP_G * inc) & _MASK128
    for s, bg in zip(streams, out):
        if s:  # PCG64.advance's state: the jumped LCG state, no cached 32-bit word
            bg.state = {"bit_generator": "PCG64", "state": {"state": states[s], "inc": inc},
                        "has_uint32": 0, "uinteger": 0}
        else:  # stream 0 is the root generator itself
            bg.state = root_state
    return out


def _plan_shape(n, draw_size, n_streams, block_size):
    """(n, n_streams, block_size, n_blocks, streams used), validated."""
    n = V.integer("n", n, minimum=2, maximum=2**62)
    n_streams = V.integer("n_streams", n_streams, minimum=1, maximum=2**20)
    if block_size is None:
        block_size = default_block_size(n, draw_size, n_streams)
    block_size = V.integer("block_size", block_size, minimum=1, maximum=2**24)
    n_blocks = -(-n // block_size)
    return n, n_streams, block_size, n_blocks, min(n_streams, n_blocks)


# Plan shapes by (n, draw_size, n_streams, block_size) of Python ints (the
# validation and block-size arithmetic of a call repeated in a loop).
_PLAN_SHAPES = {}


class Plan:
    def __init__(self, n, draw_size, rng, n_streams, block_size, n_threads):
        key = (n, draw_size, n_streams, block_size)
        shape = (_PLAN_SHAPES.get(key) if type(n) is int and type(n_streams) is int
                 and type(draw_size) is int and type(block_size) in (int, type(None)) else None)
        if shape is None:
            shape = _plan_shape(n, draw_size, n_streams, block_size)
            if type(n) is int and type(n_streams) is int and type(draw_size) is int:
                if len(_PLAN_SHAPES) >= 1024:
                    _PLAN_SHAPES.clear()
                _PLAN_SHAPES[key] = shape
        self.n, self.n_streams, self.block_size, self.n_blocks, self.used = shape
        if type(rng) is int and rng >= 0:  # SeedSequence(rng), built when needed
            self._seed, self._root = rng, None
        elif isinstance(rng, (np.random.Generator, np.random.BitGenerator)):
            # V.root_seed_sequence's entropy (four raw words of the
            # generator), its SeedSequence built only when needed
            bg = rng.bit_generator if isinstance(rng, np.random.Generator) else rng
            with bg.lock:
                words = bg.random_raw(4)
            self._seed, self._root = [int(w) for w in words], None
        else:
            self._seed, self._root = None, V.root_seed_sequence(rng)
        work = min(self.used, max(1, (self.n * int(draw_size)) // SERIAL_VALUES))
        self.threads = effective_n_threads(n_threads, work_items=work)

    @property
    def root(self):
        """The SeedSequence the call's streams come from."""
        if self._root is None:
            self._root = np.random.SeedSequence(self._seed)
        return self._root

    def bitgens(self, streams):
        """The bit generators of the given streams (see stream_bit_generators)."""
        return stream_bit_generators(self._root, streams, self._seed)

    def block_rows(self, b):
        return min(self.block_size, self.n - b * self.block_size)

    def info(self):
        return {"n_streams": self.n_streams, "block_size": self.block_size,
                "streams_used": self.used, "threads": self.threads,
                "entropy": self._seed if self._root is None else self._root.entropy,
                "spawn_key": () if self._root is None else tuple(self._root.spawn_key)}



# ---------------------------------------------------------------------------
# the kernels' tables of a family
# ---------------------------------------------------------------------------

def _vr_dist(dist):
    """The core's draw parameters of `dist` as a _vr.VrDist."""
    units = int(np.prod(dist.batch_shape, dtype=np.int64))
    if isinstance(dist, Categorical):
        kk = dist.n_categories
        q, al = K.alias_table(np.ascontiguousarray(dist.probs.reshape(units, kk)))
        return _vr.VrDist(dist.family, units, kk, units, np.zeros(units), np.zeros(units),
                          q.ravel(), al.ravel())
    p0, p1 = dist._draw_params()
    return _vr.VrDist(dist.family, units, dist._n_cat(), dist.draw_size, np.ravel(p0),
                      np.ravel(p1), np.zeros(0), np.zeros(0, np.int64))


def _score_table(dist):
    """(t_start, kind, col, a, b, c) of the per-coordinate score terms."""
    if is_joint(dist):
        return joint_score_table(dist)
    dist._kernel_dist()
    t = dist._table
    if isinstance(dist, Categorical):
        kk = dist.n_categories
        P = t["n_coords"]
        q = np.arange(P)
        return (np.arange(P + 1, dtype=np.int64), np.full(P, K.SK_CATEGORY, np.intc),
                (q // kk).astype(np.int64), np.ascontiguousarray(t["a"], float),
                np.ascontiguousarray(t["b"], float), (q % kk).astype(float))
    return (np.ascontiguousarray(t["t_start"], np.int64), np.ascontiguousarray(t["kind"], np.intc),
            np.ascontiguousarray(t["col"], np.int64), np.ascontiguousarray(t["a"], float),
            np.ascontiguousarray(t["b"], float), np.ascontiguousarray(t["c"], float))



# the engine's names for the two tables above (kept as they are, under their
# own names, for the kernel work that changes how _vr receives them)
vr_dist = _vr_dist
score_table = _score_table


# ---------------------------------------------------------------------------
# fused runs (Integrand, LowLevelCallable): whole streams in the kernels
# ---------------------------------------------------------------------------

def redraw(plan, dist, kd, index):
    """The draw with global index `index` (for error messages)."""
    b = index // plan.block_size
    s = b % plan.n_streams
    bg = plan.bitgens([s])[0]
    ds = kd.draw_size
    xt = np.empty((1, ds * plan.block_size))
    for bb in range(s, b + 1, plan.n_streams):
        K.draw_round(kd, [bg], np.array([bb], np.int64), np.array([0], np.int64), plan.n,
                     plan.block_size, 1, xt)
    m = plan.block_rows(b)
    i = index - b * plan.block_size
    x = xt[0, : ds * m].reshape(ds, m)[:, i]
    return dist._to_user_dtype(x.reshape(dist.draw_shape))


def run_fused(kf, fkind, dist, kd, plan, progress=None):
    streams = np.arange(plan.used, dtype=np.int64)
    stats = np.zeros((plan.used, kd.stats_len))
    shifts = np.zeros(plan.used)
    # A progress bar only reads the draw counts the kernel writes (stats[:, 0]).
    bitgens = plan.bitgens(streams.tolist())
    # Long runs go in epochs of at most EPOCH_VALUES draw values per stream;
    # the result does not depend on the cut.  Ctrl-C no longer needs them (the
    # core's calling thread keeps polling while it waits for the others):
    # they remain as a tested resume path of run_streams and cost one kernel
    # call per 2**22 values a stream draws.
    per_block = plan.block_size * max(1, kd.draw_size)
    max_blocks = max(1, EPOCH_VALUES // per_block)
    next_block = streams.copy()
    nb = plan.n_blocks
    with progress.watch(stats) if progress is not None else contextlib.nullcontext(), \
            blas_single_threaded(dist):
        while True:
            code, idx = K.run_streams(kd, kf, bitgens, streams, plan.n, plan.n_streams,
                                      plan.block_size, plan.threads, stats, shifts,
                                      next_block, max_blocks)
            if code != 0 or not (next_block < nb).any():
                break
    raise_kernel_error(code, idx, plan, dist, kd)
    return stats, shifts


def raise_kernel_error(code, idx, plan, dist, kd):
    """Turn run_streams' error code into the exception it stands for."""
    if code == 3:
        raise KeyboardInterrupt
    if code == 4:
        raise MemoryError("could not allocate the kernels' block buffers")
    if code in (1, 2):
        x = redraw(plan, dist, kd, idx)
        err = nonfinite_draw_error(x, idx) if code == 1 else None
        if err is not None:
            raise err
        what = ("the callback signalled an error (non-zero return)" if code == 2
                else "f returned a non-finite value (nan or inf)")
        raise ValueError(f"{what} at draw {idx} (x = {describe_draw(x)})")



# ---------------------------------------------------------------------------
# rounds of blocks and jobs
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


class Job:
    """What an estimator draws, evaluates and accumulates, round by round.

    A subclass sets ``dist``, ``width`` (draw values per unit of the plan)
    and, for the Gram kernels of ``mcscore._vr``, ``P`` gradient
    coordinates and ``L`` features per coordinate; ``offset_rows``,
    ``carrier`` and ``mult`` declare the rows of f's values that are
    shifted per stream (see ``mcscore._algebra.Offsets``).  It implements:

    * ``buffers(R, B)``: the round's buffers (R blocks of B draws);
    * ``draw(rd, bitgens, threads, buf, shared=False)``: draw round rd in
      the kernels (``shared``: helper threads share its blocks);
    * ``evaluate(rd, buf, chunk, mag)``: call f (and grad_f, ...) on chunks
      of the round's draws; returns (values, arrays whose first
      ``offset_rows`` rows are shifted per stream before accumulating);
    * ``accumulate(rd, buf, values, threads, stats, shifts)``.

    ``what`` names the estimator for the up-front memory check of its Gram
    statistics.  A job pickles (a Dask worker runs it on its streams); what it caches
    from the kernels (``vd``) is rebuilt where it runs.
    """

    width = 1
    P = L = 1
    what = None  # the estimator's name in a MemoryError (Gram jobs)
    offset_rows = 0
    carrier = None
    mult = None
    shared_draw = False
    _vd = None

    @property
    def vd(self):
        """The family's draw parameters for the _vr kernels (cached)."""
        if self._vd is None:
            self._vd = vr_dist(self.dist)
        return self._vd

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_vd", None)
        state.pop("_gathered", None)
        state.pop("_padded", None)
        state.pop("_rows", None)
        return state

    def padded(self, key, rows, rd):
        """A zeroed (rows, R * B) array (values at rd.index, zeros in the
        padding), shared by the rounds of this call like `gathered`."""
        cache = self.__dict__.setdefault("_padded", {})
        shape = (rows, len(rd.blocks) * rd.B)
        out = cache.get(key)
        if out is None or out.shape != shape:
            out = cache[key] = np.zeros(shape)
        else:
            out.fill(0.0)
        return out

    def gathered(self, rd, buf, W, region=0):
        """rd.gather(buf, W, region) into a buffer that the rounds of this
        call share (one per region): f and grad_f receive a copy of the
        draws that they may change, reused for the next chunk.  Allocating
        it once per call instead of once per round keeps the C heap from
        being trimmed and refaulted every round (a page fault per 4 KiB:
        ~40% of a Python-f call at n = 1e6 with glibc's default trimming)."""
        cache = self.__dict__.setdefault("_gathered", {})
        out = cache.get(region)
        if out is None or out.shape[0] < rd.total or out.shape[1] != W:
            out = cache[region] = np.empty((len(rd.blocks) * rd.B, W))
        return rd.gather(buf, W, region, out)

    def new_stats(self, streams: int) -> Any:
        return (np.zeros((streams, _vr.gram_width(self.P, self.L))),
                np.zeros((streams, 1 + self.P * self.L)))

    def prepare(self, rd, bitgens, threads, buf, mode, prm):
        """The common draw of the _vr jobs: kernels' mode `mode` with
        parameters `prm` into buf (a Joint: its components' plain draws,
        laid side by side)."""
        if is_joint(self.dist):
            joint_prepare(self, rd, bitgens, threads, buf, mode, prm)
            return
        _vr.prepare_round(self.vd, bitgens, rd.blocks, rd.slots, rd.n, rd.B, threads, mode,
                          self.width, prm, buf)


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
_ROWS_LOCK = threading.Lock()


class ScoreJob(Job):
    """score_grad with a Python f on the core kernels (per-stream
    statistics of mcscore._kernels; per-category sums for a Categorical).
    Its rounds can be drawn by helper threads while f runs on the previous
    one (``shared_draw``)."""

    shared_draw = True

    def __init__(self, f, dist):
        self.f = f
        self.dist = dist
        self.width = dist._kernel_dist().draw_size

    def new_stats(self, streams):
        return np.zeros((streams, self.dist._kernel_dist().stats_len)), np.zeros(streams)

    def buffers(self, R, B):
        kd = self.dist._kernel_dist()
        ds = kd.draw_size
        # LogNormal: log x as drawn, so that the score does not recompute it
        return (_POOL.take((R, ds * B)), np.empty((R, ds * B)) if kd.has_log_column else None,
                np.empty((R, B)), np.zeros(1, dtype=np.longlong))

    def release(self, bufs):
        """run_job is done with bufs: their draw buffers, and the rows f saw
        unless f kept them, go back to the pool for the next call."""
        rows = self.__dict__.pop("_rows", {})
        while rows:
            _POOL.give(rows.popitem()[1][0])
        for buf in bufs:
            _POOL.give(buf[0], owners=1)  # held by buf

    def draw(self, rd, bitgens, threads, buf, shared=False):
        xt, lt, _, counter = buf
        kd = self.dist._kernel_dist()
        if type(self) is ScoreJob:  # f's rows laid out by the drawing threads
            rows, off = self.row_buffer(rd, xt)
            K.draw_round_rows(kd, bitgens, rd.blocks, rd.slots, rd.n, rd.B, threads, xt, lt,
                              rows, off, counter if shared else None, self.rows_only)
        elif shared:  # helpers and the calling thread claim the round's blocks one by one
            K.draw_round_shared(kd, bitgens, rd.blocks, rd.slots, rd.n, rd.B, xt, lt, counter)
        else:
            K.draw_round(kd, bitgens, rd.blocks, rd.slots, rd.n, rd.B, threads, xt, lt)

    def row_buffer(self, rd, xt):
        """The (R * B, width) array that round rd's draws are laid out in,
        one draw per row (K.draw_round_rows), and each block's first row:
        one per round buffer xt (the next round is drawn while f runs on
        this one), allocated once per call (see Job.gathered)."""
        with _ROWS_LOCK:  # the helpers and the calling thread ask for it at once
            cache = self.__dict__.setdefault("_rows", {})
            rows = cache.get(id(xt))
            if rows is None or rows[0].shape[0] < rd.total:
                rows = cache[id(xt)] = (_POOL.take((len(rd.blocks) * rd.B, self.width)), xt)
        off = np.zeros(len(rd.rows), dtype=np.int64)
        np.cumsum(rd.rows[:-1], out=off[1:])
        return rows[0], off

    @property
    def rows_only(self):
        """True when the round's draws are made straight into f's rows and
        accumulated from them (K.rows_direct: a family drawn column by
        column), without the column-major block buffer."""
        flag = self.__dict__.get("_rows_only")
        if flag is None:
            flag = self._rows_only = K.rows_direct(self.dist._kernel_dist())
        return flag

    def drawn_rows(self, rd, xt):
        """Round rd's draws (total, width), as draw() laid them out."""
        if type(self) is ScoreJob:
            return self._rows[id(xt)][0][:rd.total]
        return self.gathered(rd, xt, self.width)

    def evaluate(self, rd, buf, chunk, mag):
        xt, _, fx, _ = buf
        dist = self.dist
        x = self.drawn_rows(rd, xt)
        x = dist._to_user_dtype(x.reshape((rd.total,) + dist.draw_shape))
        if rd.consecutive:  # the round's draws are the first total slots of fx
            call_values(self.f, x, rd, chunk, out=fx.reshape(-1)[:rd.total])
        else:
            fx.reshape(-1)[rd.index] = call_values(self.f, x, rd, chunk)
        return fx, ()

    def accumulate(self, rd, buf, values, threads, stats, shifts):
        xt, lt, fx, _ = buf
        if type(self) is ScoreJob and self.rows_only:
            rows, off = self.row_buffer(rd, xt)
            bad = K.accumulate_round_rows(self.dist._kernel_dist(), rd.blocks, rd.slots, rd.n,
                                          rd.B, rd.n_streams, threads, rows, off, fx, stats,
                                          shifts)
        else:
            bad = K.accumulate_round(self.dist._kernel_dist(), rd.blocks, rd.slots, rd.n,
                                     rd.B, rd.n_streams, threads, xt, fx, stats, shifts, lt)
        if bad >= 0:  # cannot happen after check_fx, kept as a guard
            raise ValueError(f"f returned a non-finite value at draw {bad}")


OVERLAP_ROUNDS = 4  # rounds of a call whose f overlaps the next round's draws (default chunk)
_POOL_LOCK = threading.Lock()
_POOLS = {}  # thread-name prefix -> ThreadPoolExecutor


def _pool(prefix):
    """The process's thread pool of that name (cpu_count - 1 threads), kept
    from one call to the next (starting and joining a thread per call cost
    about 0.1 ms); a forked child starts its own."""
    with _POOL_LOCK:
        pool = _POOLS.get(prefix)
        if pool is None:
            pool = _POOLS[prefix] = ThreadPoolExecutor(
                max_workers=max(1, (os.cpu_count() or 2) - 1), thread_name_prefix=prefix)
        return pool


def _draw_pool():
    """The helper threads that draw a round while f runs on the previous one."""
    return _pool("mcscore-draw")


def _f_pool():
    """The threads that run rounds of a thread-safe f (f_threadsafe=True)
    besides the calling thread: a pool of their own, so that an f running
    there that calls score_grad again never waits for the draw helpers it
    occupies (the draw helpers never run f)."""
    return _pool("mcscore-f")


def _forget_draw_pool():
    global _POOL_LOCK, _ROWS_LOCK
    _POOLS.clear()
    _POOL_LOCK, _ROWS_LOCK = threading.Lock(), threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_draw_pool)


def run_rounds_threadsafe(job, plan, round_, n_rounds, R, chunk, threads, stats, shifts,
                          bitgens, progress):
    """run_job's rounds of a plain ScoreJob whose f is thread safe
    (f_threadsafe=True): the calling thread and threads - 1 workers of
    _f_pool each take the next round, draw it (after the earlier rounds
    that share a stream with it), call f on it (several rounds' f at once)
    and accumulate it once the round before it is accumulated.  The rounds,
    f's calls and each stream's sums in block order are those of run_job,
    so the result is the same bits.  A worker that starts after every round
    was taken does nothing, and the calling thread never waits for a worker
    that has not taken a round (no hang when f itself calls score_grad).
    f's first error, in round order, is raised once no round is in flight."""
    S = plan.n_streams
    lock = threading.Lock()
    drawn = [threading.Event() for _ in range(n_rounds)]
    summed = [threading.Event() for _ in range(n_rounds)]
    errors = {}  # round -> the exception its f (or draw) raised
    taken = [0, False]  # the next round to take; closed

    def claim():
        with lock:
            i = taken[0]
            if taken[1] or errors or i >= n_rounds:
                return None
            taken[0] = i + 1
            return i

    def run_round(i, buf):
        rd = round_(i)
        try:
            try:
                # stream s's draws continue where its previous block's ended:
                # wait for the earlier rounds that may hold a block of rd's streams
                for k in range(i):
                    if (i - k + 1) * R - 1 >= S:
                        drawn[k].wait()
                job.draw(rd, bitgens, 1, buf, False)
            finally:
                drawn[i].set()
            values, _ = job.evaluate(rd, buf, chunk, None)
            if i:
                summed[i - 1].wait()
            with lock:
                failed = bool(errors)
            if not failed:
                job.accumulate(rd, buf, values, 1, stats, shifts)
                if progress is not None:
                    progress.update(len(rd.blocks), rd.total)
        except BaseException as exc:  # f's error (or an interrupt): raised by the caller
            with lock:
                errors[i] = exc
        finally:
            summed[i].set()

    def worker(buf):
        i = claim()
        while i is not None:
            run_round(i, buf)
            i = claim()

    bufs = [job.buffers(R, plan.block_size) for _ in range(threads)]
    pool = _f_pool()
    for t in range(1, threads):
        pool.submit(worker, bufs[t])
    try:
        worker(bufs[0])
    finally:
        with lock:
            taken[1] = True  # a worker not yet started takes nothing
            last = taken[0]
        for i in range(last):  # the rounds taken, all done
            summed[i].wait()
        job.release(bufs)
    if errors:
        raise errors[min(errors)]


def run_job(job, plan, chunk_size=None, streams=None, threads=None, progress=None,
            bitgens=None, f_threadsafe=False):
    """The loop over rounds of blocks under every estimator.

    Locally (``streams`` None) a round is R consecutive blocks (enough for
    the threads and for a chunk of f); on a Dask worker, the blocks of the
    given streams, one per stream (each stream still walks its blocks in
    order, so the sums, and the result, are the same).  With two or more
    threads and a job whose rounds can be shared, threads - 1 helper
    threads draw the next round while f runs on the current one; with
    ``f_threadsafe`` (a plain ScoreJob), they also run f on other rounds at
    the same time (run_rounds_threadsafe).  Returns (stats, shifts,
    Offsets, Mag) of the streams."""
    local = streams is None
    if local:
        streams = np.arange(plan.used, dtype=np.int64)
        threads = plan.threads
    ns = len(streams)
    S, B, nb = plan.n_streams, plan.block_size, plan.n_blocks
    chunk = chunk_size_for(chunk_size, B, job.width)
    if local:
        R = min(S, nb, max(threads, -(-chunk // B)))
        if chunk_size is None and threads >= 2 and type(job) is ScoreJob:
            # f runs on a round while the helpers draw the next: rounds of
            # about a quarter of the draws keep the helpers busy but for the
            # last round's f (two rounds left them idle half of f's time)
            R = min(R, max(threads, -(-nb // OVERLAP_ROUNDS)))
        n_rounds = -(-nb // R)
        if chunk_size is None:  # one f call per round, not a chunk and a tail of B - 1 rows at most
            chunk = max(chunk, R * B)
    else:
        R = ns
        n_rounds = -(-(nb - int(streams.min())) // S)

    def round_(i):
        if local:
            blocks = np.arange(i * R, min(nb, (i + 1) * R), dtype=np.int64)
            return Round(plan, blocks, blocks % S, True)
        blocks = streams + i * S
        keep = blocks < nb
        return Round(plan, np.ascontiguousarray(blocks[keep]),
                     np.flatnonzero(keep).astype(np.int64), False)

    overlap = job.shared_draw and local and threads >= 2 and n_rounds >= 2
    if (f_threadsafe and overlap and type(job) is ScoreJob
            and not getattr(job.dist, "kernel_blas", False)):
        stats, shifts = job.new_stats(ns)
        if bitgens is None:
            bitgens = plan.bitgens(streams.tolist())
        run_rounds_threadsafe(job, plan, round_, n_rounds, R, chunk, threads, stats, shifts,
                              bitgens, progress)
        return stats, shifts, Offsets(ns, S, job.offset_rows, job.carrier, job.mult), Mag()
    # A plain ScoreJob's round is accumulated by a helper while f runs on the
    # next round (its values are in the round's own buffer fx, not in an
    # array f may reuse): the calling thread runs f, and little else.  Three
    # buffers: the round f runs on, the next one being drawn, the previous
    # one being accumulated.
    late = (overlap and type(job) is ScoreJob
            and not getattr(job.dist, "kernel_blas", False))
    bufs = [job.buffers(R, B) for _ in range(3 if late else 2 if overlap else 1)]
    acc_threads = 1 if overlap else threads
    stats, shifts = job.new_stats(ns)
    offsets = Offsets(ns, S, job.offset_rows, job.carrier, job.mult)
    mag = Mag()
    if bitgens is None:  # else the caller's, of these streams, at their starts
        bitgens = plan.bitgens(streams.tolist())
    pool = _draw_pool() if overlap else None
    pending = []  # the helpers' futures not yet waited for

    def accumulate_after(ard, abuf, before):
        """A helper's task: accumulate round ard once the round before it
        is (future `before`): each stream's sums in block order."""
        if before is not None:
            before.result()
        job.accumulate(ard, abuf, None, 1, stats, shifts)

    def start(rd, buf):
        """Start drawing round rd in the helpers (None when there is none)."""
        if rd is None or pool is None:
            return None
        buf[-1][0] = 0
        futs = [pool.submit(job.draw, rd, bitgens, threads, buf, True)
                for _ in range(threads - 1)]
        pending.extend(futs)
        return futs

    def wait(futs):
        for fut in futs or ():
            fut.result()
            pending.remove(fut)

    try:
        rd = round_(0)
        futs = start(rd, bufs[0])
        job.draw(rd, bitgens, threads, bufs[0], overlap)
        wait(futs)
        acc_fut = prev_acc = None  # the helpers accumulating rounds i - 1 and i - 2
        for i in range(n_rounds):
            buf = bufs[i % len(bufs)]
            nxt = round_(i + 1) if i + 1 < n_rounds else None
            nbuf = bufs[(i + 1) % len(bufs)]
            if prev_acc is not None:  # round i + 1 goes to round i - 2's buffer
                wait([prev_acc])
                prev_acc = None
            futs = start(nxt, nbuf)
            values, shifted = job.evaluate(rd, buf, chunk, mag)
            if len(shifted):
                offsets.shift(rd, shifted)
            if late and nxt is not None:
                # a task queued behind the helpers' draws (never one that
                # waits for f: f may itself run a call on the same helpers)
                prev_acc, acc_fut = acc_fut, pool.submit(accumulate_after, rd, buf, acc_fut)
                pending.append(acc_fut)
            else:
                if late:  # the last round: the earlier ones accumulated first
                    wait([f for f in (prev_acc, acc_fut) if f is not None])
                with blas_single_threaded(getattr(job, "dist", None)):
                    job.accumulate(rd, buf, values, acc_threads, stats, shifts)
            if progress is not None:
                progress.update(len(rd.blocks), rd.total)
            if nxt is not None:  # f is done: (help) draw the next round
                job.draw(nxt, bitgens, threads, nbuf, overlap)
                wait(futs)
            rd = nxt
    finally:
        for fut in list(pending):  # no helper may still use the buffers
            try:
                fut.result()
            except BaseException:
                pass
        if hasattr(job, "release"):  # its buffers may serve the next call
            job.release(bufs)
    return stats, shifts, offsets, mag


# ---------------------------------------------------------------------------
# what a Dask worker runs (see mcscore.distributed)
# ---------------------------------------------------------------------------

def task_fused(dist, f, root, streams, n, n_streams, block_size, n_threads):
    """Run whole streams with a fused integrand; returns
    (streams, stats rows, shifts, error code, failing draw index)."""
    kd = dist._kernel_dist()
    _, kf = lower_f(f, dist)
    streams = np.ascontiguousarray(streams, dtype=np.int64)
    stats = np.zeros((len(streams), kd.stats_len))
    shifts = np.zeros(len(streams))
    threads = effective_n_threads(n_threads, work_items=len(streams))
    code, idx = K.run_streams(kd, kf, stream_bit_generators(root, [int(s) for s in streams]),
                              streams, n, n_streams, block_size, threads, stats, shifts)
    return streams, stats, shifts, code, idx


def task_job(job, plan, streams, chunk_size, n_threads):
    """Run a job on whole streams (round k holds block ``s + k * n_streams``
    of each stream s); returns (streams, stats rows, shifts, Offsets, Mag)."""
    streams = np.ascontiguousarray(streams, dtype=np.int64)
    threads = effective_n_threads(n_threads, work_items=len(streams))
    return (streams,) + run_job(job, plan, chunk_size, streams=streams, threads=threads)


# ---------------------------------------------------------------------------
# batched expectations: the first k batch dimensions index independent
# expectations, f returns one column per batch element
# ---------------------------------------------------------------------------

def check_batch_ndims(batch_ndims, dist):
    """batch_ndims validated against dist's batch rank (0 <= k <= rank)."""
    k = V.integer("batch_ndims", batch_ndims, minimum=0, maximum=1 << 16)
    rank = len(dist.batch_shape)
    if k > rank:
        raise ValueError(
            f"batch_ndims={k} is larger than the batch rank of {dist!r} (batch_shape "
            f"{tuple(dist.batch_shape)}, rank {rank}): the first batch_ndims dimensions of the "
            "batch shape index the independent expectations")
    return k


def batch_columns(dist, k):
    """For batch_ndims=k: the f column (flat batch element of
    dist.batch_shape[:k]) of each score coordinate (of each unit for a
    per-category family).  A parameter element whose terms reach several
    batch elements (a parameter shared across the batch) is an error."""
    kd = dist._kernel_dist()
    nf = int(np.prod(dist.batch_shape[:k], dtype=np.int64))
    if kd.per_category:
        return np.arange(kd.n_units, dtype=np.int64) // max(1, kd.n_units // nf)
    ts, _, col = score_table(dist)[:3]
    elem = col // max(1, dist.draw_size // nf)
    P = len(ts) - 1
    has = np.diff(ts) > 0
    out = np.zeros(P, dtype=np.int64)
    if has.any():
        starts = ts[:-1][has]
        lo = np.minimum.reduceat(elem, starts)
        hi = np.maximum.reduceat(elem, starts)
        out[has] = lo
        if (lo != hi).any():
            q = int(np.flatnonzero(has)[np.argmax(lo != hi)])
            name = next(nm for nm, (sl, _) in dist._coord_slices.items()
                        if sl.start <= q < sl.stop)
            shape = tuple(dist.batch_shape[:k])
            pv = dist._params[name]
            full = tuple(dist.batch_shape) + pv.shape[pv.ndim - dist.event_ndim:]
            raise ValueError(
                f"with batch_ndims={k}, every parameter element must belong to one batch "
                f"element, but {type(dist).__name__}'s {name!r} of shape "
                f"{dist._params[name].shape} is shared by the batch elements of "
                f"batch_shape[:{k}] = {shape}: pass it with the batch dimensions (e.g. "
                f"np.broadcast_to({name}, {full})) to get one gradient per batch element")
    return out


def coord_columns(dist, k):
    """batch_columns per score coordinate (a per-category family's units
    repeated over their categories; a Joint's components one after the
    other)."""
    if is_joint(dist):
        return np.concatenate([coord_columns(c, k) for c in dist.joint_components.values()])
    cols = batch_columns(dist, k)
    kd = dist._kernel_dist()
    return np.repeat(cols, kd.n_cat) if kd.per_category else cols


def batched_values(f, x, rd, chunk, bshape):
    """f on chunks of the round's draws x, each returning (m, *bshape)
    finite reals (checked, with an error naming the expected shape),
    yielded as (c0, v): v the (m, nf) C-contiguous float64 values of the
    round's draws c0 .. c0 + m - 1."""
    k = len(bshape)
    for c0, c1, first in chunks(rd, len(x), chunk):
        xc = x[c0:c1]
        v = call_raw(f, xc, first)
        want = (c1 - c0,) + tuple(bshape)
        if isinstance(v, np.ma.MaskedArray):
            raise TypeError("f returned a numpy masked array; return a plain array of reals")
        got = np.shape(v) if v is not None else None
        if got != want:
            raise ValueError(
                f"with batch_ndims={k}, f must return shape (m, *batch_shape) = {want} for a "
                f"batch of {c1 - c0} draws (x of shape {xc.shape}), got "
                f"{'None' if got is None else got}")
        v = np.asarray(v)
        if v.dtype.kind not in "biuf":
            raise TypeError(f"f returned dtype {v.dtype}; it must return real numbers")
        v = np.ascontiguousarray(v.reshape(c1 - c0, -1), dtype=np.float64)
        bad = K.first_nonfinite(v)
        if bad >= 0:
            i, j = divmod(bad, v.shape[1])
            raise ValueError(
                f"f returned {v[i, j]} at draw {first + i}, batch element "
                f"{np.unravel_index(j, bshape)}; f must be finite")
        yield c0, v


def call_batched(f, x, rd, chunk, bshape, sink):
    """f on chunks of the round's draws x, each returning (m, *bshape)
    finite reals (checked, with an error naming the expected shape), handed
    to sink(c0, v) as v (m, nf) for the round's draws c0 .. c0 + m - 1."""
    for c0, v in batched_values(f, x, rd, chunk, bshape):
        sink(c0, v)


def scatter_columns(rd, v, fx, start=0):
    """f's values v (m, nf) of the round's draws start .. start + m - 1 ->
    fx (R, nf * B): column k of block r at fx[r, k * B: k * B + rows]
    (the batched accumulators' layout)."""
    R, nf, B = len(rd.blocks), v.shape[1], rd.B
    cols = fx[:R].reshape(R, nf, B)
    stop = start + len(v)
    o = 0
    for r, m in enumerate(rd.rows):
        lo, hi = max(start, o), min(stop, o + m)
        if lo < hi:
            cols[r, :, lo - o:hi - o] = v[lo - start:hi - start].T
        o += m
        if o >= stop:
            break


class BatchedScoreJob(ScoreJob):
    """score_grad with batch_ndims=k: the draws of ScoreJob, f's nf columns
    (one per batch element), accumulated in the kernels with each score
    coordinate's own column (K.accumulate_round_batched)."""

    def __init__(self, f, dist, k, fkind="python"):
        super().__init__(f, dist)
        self.k, self.fkind = k, fkind
        self.bshape = tuple(dist.batch_shape[:k])
        self.nf = int(np.prod(self.bshape, dtype=np.int64))
        self.fcol = batch_columns(dist, k)
        # a Categorical with a Python f is drawn straight into f's layout
        # (K.draw_categorical_rows: the same draws), its categories kept as
        # int32 rows for the accumulation
        self.rows = fkind == "python" and isinstance(dist, Categorical)

    def default_chunk(self, plan):
        """The default chunk_size of a batched call: the draws of one local
        round (run_job's R blocks for the default chunk_size_for), so that f
        is called once per round and its values are accumulated as f
        returned them, without a copy."""
        B = plan.block_size
        c = chunk_size_for(None, B, self.width)
        return min(plan.n_streams, plan.n_blocks, max(plan.threads, -(-c // B))) * B

    def element_func(self):
        """A fused integrand / C callback lowered for one batch element's
        draw (shape draw_shape[k:]), and the carrier of its flat draws."""
        shape = tuple(self.dist.draw_shape[self.k:])
        kf = (self.f._kernel_func(shape) if self.fkind == "integrand"
              else lower_f(self.f, self.dist)[1])
        return kf, _flat_dist(int(np.prod(shape, dtype=np.int64)))

    def fused_values(self, rd, x):
        """The fused f on each batch element's draw: (total, nf), in the kernels."""
        kf, carrier = self.element_func()
        v = K.eval_integrand(kf, carrier, x.reshape(rd.total * self.nf, -1))
        v = v.reshape(rd.total, self.nf)
        bad = ~np.isfinite(v)
        if bad.any():
            i, j = np.unravel_index(int(np.argmax(bad)), v.shape)
            raise ValueError(f"f returned {v[i, j]} at draw {rd.draw_index(i)}, batch element "
                             f"{np.unravel_index(j, self.bshape)}; f must be finite")
        return v

    def new_stats(self, streams):
        kd = self.dist._kernel_dist()
        return np.zeros((streams, kd.stats_len - 2 + 2 * self.nf)), np.zeros((streams, self.nf))

    def buffers(self, R, B):
        if self.rows:  # (f's int64 draws, the categories) as rows
            U = self.dist._kernel_dist().n_units
            return (np.empty((R * B, U), np.int64), np.empty((R * B, U), np.int32), None,
                    np.zeros(1, dtype=np.longlong))
        xt, lt, _, counter = super().buffers(R, B)
        return xt, lt, np.zeros((R, self.nf * B)), counter

    def draw(self, rd, bitgens, threads, buf, shared=False):
        if not self.rows:
            super().draw(rd, bitgens, threads, buf, shared)
            return
        x, cats, _, counter = buf
        K.draw_categorical_rows(self.dist._kernel_dist(), bitgens, rd.blocks, rd.slots, rd.n,
                                rd.B, threads, x, cats, counter if shared else None)

    def user_draws(self, rd, xt):
        """The round's draws in f's layout (total, *draw_shape) and dtype, by
        one transposing pass in the kernels (K.gather_round).  Float draws
        go to a buffer the rounds of the call share (like `gathered`);
        integer draws (a Categorical's) to a new array, as astype gave."""
        dist = self.dist
        dtype = self.__dict__.get("_user_dtype")
        if dtype is None:
            dtype = self._user_dtype = dist._to_user_dtype(np.zeros(1)).dtype
        if dtype == np.float64:
            cache = self.__dict__.setdefault("_gathered", {})
            out = cache.get("rows")
            if out is None or out.shape[0] < rd.total:
                out = cache["rows"] = np.empty((len(rd.blocks) * rd.B, self.width))
            out = out[:rd.total]
        elif dtype == np.int64:
            out = np.empty((rd.total, self.width), np.int64)
        else:  # a family with another user dtype: the general path
            x = self.gathered(rd, xt, self.width)
            return dist._to_user_dtype(x.reshape((rd.total,) + dist.draw_shape))
        K.gather_round(dist._kernel_dist(), rd.blocks, rd.n, rd.B, 1, xt, out)
        return out.reshape((rd.total,) + dist.draw_shape)

    def evaluate(self, rd, buf, chunk, mag):
        """f's values of the round: fx (fused f, transposed into the batched
        accumulators' layout) or, for a Python f, the list of f's (m, nf)
        row arrays (K.accumulate_rows_batched reads them as they are)."""
        xt, _, fx, _ = buf
        if self.fkind != "python":
            scatter_columns(rd, self.fused_values(rd, self.gathered(rd, xt, self.width)), fx)
            return fx, ()
        if self.rows:
            x = xt[:rd.total].reshape((rd.total,) + self.dist.draw_shape)
        else:
            x = self.user_draws(rd, xt)
        if sum(1 for _ in chunks(rd, rd.total, chunk)) == 1:
            # one call of f: its values are read before f is called again
            return [v for _, v in batched_values(self.f, x, rd, chunk, self.bshape)], ()
        # several calls: f may reuse the array it returns, so each chunk's
        # values are copied before the next call
        rows = self._round_rows(rd)
        for c0, v in batched_values(self.f, x, rd, chunk, self.bshape):
            rows[c0:c0 + len(v)] = v
        return [rows[:rd.total]], ()

    def _round_rows(self, rd):
        """A (R * B, nf) buffer of f's rows that the rounds of this call share."""
        cache = self.__dict__.setdefault("_gathered", {})
        out = cache.get("f rows")
        if out is None or out.shape[0] < rd.total:
            out = cache["f rows"] = np.empty((len(rd.blocks) * rd.B, self.nf))
        return out

    def accumulate(self, rd, buf, values, threads, stats, shifts):
        xt, lt, fx, _ = buf
        kd = self.dist._kernel_dist()
        if self.rows:  # f's rows and the categories as rows
            K.accumulate_rows_batched(kd, rd.blocks, rd.slots, rd.n, rd.B, rd.n_streams,
                                      threads, None, values, self.fcol, stats, shifts,
                                      cats=lt)
        elif isinstance(values, list):  # f's rows (a Python f)
            K.accumulate_rows_batched(kd, rd.blocks, rd.slots, rd.n, rd.B, rd.n_streams,
                                      threads, xt, values, self.fcol, stats, shifts, lt)
        else:
            K.accumulate_round_batched(kd, rd.blocks, rd.slots, rd.n, rd.B, rd.n_streams,
                                       threads, xt, fx, self.fcol, stats, shifts, lt)


# ---------------------------------------------------------------------------
# Joint distributions: the components drawn one after the other per block,
# their blocks laid side by side (the flat layout of distributions.Joint)
# ---------------------------------------------------------------------------

def is_joint(dist):
    """True for a distributions.Joint (asked by capability, not class)."""
    return getattr(dist, "joint_components", None) is not None


def joint_tables(dist, table):
    """The components' tables (t_start, kind, col, float columns...) of
    table(component) side by side: coordinates in component order, each
    term's column moved to the component's columns of the flat layout."""
    parts = [(table(c), dist.offsets[n]) for n, c in dist.joint_components.items()]
    ts = [np.zeros(1, np.int64)]
    for (t, *_), _o in parts:
        ts.append(t[1:] + ts[-1][-1])
    return (np.concatenate(ts), np.concatenate([p[1] for p, _ in parts]).astype(np.intc),
            np.concatenate([p[2] + o for p, o in parts]).astype(np.int64),
            *(np.ascontiguousarray(np.concatenate([p[i] for p, _ in parts]), float)
              for i in range(3, len(parts[0][0]))))


def joint_score_table(dist):
    """The score table of a Joint (see joint_tables)."""
    return joint_tables(dist, _score_table)


def _flat_dist(ds):
    """A KernelDist of ds draw values with no score terms: the carrier of a
    fused integrand or C callback evaluated on flat draws (eval_integrand)."""
    return K.KernelDist(K.MC_NORMAL, False, ds, 1, ds, np.zeros(ds), np.ones(ds), np.zeros(0),
                        np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.intc),
                        np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0))


class JointF:
    """A Python f of a Joint: called on flat draws (the engine's layout),
    it calls f on the dict of component draws."""

    def __init__(self, f, dist):
        self.f, self.dist = f, dist

    def __call__(self, x):
        return self.f(self.dist.unflatten(x))


class JointGrad(JointF):
    """A Python grad_f of a Joint: f's gradient as a dict {name: array shaped
    like that component's draws}, returned flat (m, draw_size)."""

    def __call__(self, x):
        g = self.f(self.dist.unflatten(x))
        if not isinstance(g, dict):
            raise TypeError(f"grad_f must return a dict {{component name: array}} for a Joint, "
                            f"got {type(g).__name__}")
        try:
            return self.dist.flatten(g)
        except ValueError as exc:
            raise ValueError(f"grad_f returned {exc}".replace("returned x ", "returned ", 1)
                             ) from None


def carrier_dist(dist):
    """The KernelDist a fused integrand or C callback is evaluated with on
    dist's flat draws (eval_integrand): the family's own, or a Joint's
    flat carrier."""
    return _flat_dist(dist.draw_size) if is_joint(dist) else dist._kernel_dist()


def wrap_joint(dist, fn):
    """fn wrapped to receive a Joint's dict of draws (a Python callable
    only; a fused integrand or C callback reads the flat draw)."""
    if fn is None or not is_joint(dist) or lower_f(fn, dist)[0] != "python":
        return fn
    return JointF(fn, dist)


def joint_draw(dist, rd, bitgens, threads, bufs, out):
    """Draw round rd of every component (one after the other from each
    stream's bit generator) into its buffer of bufs ((xt, lt) per
    component), then lay the blocks side by side into out (R, ds * B) when
    out is given."""
    comps = list(dist.joint_components.values())
    for c, (xt, lt) in zip(comps, bufs):
        K.draw_round(c._kernel_dist(), bitgens, rd.blocks, rd.slots, rd.n, rd.B, threads, xt, lt)
    if out is not None:
        for r, m in enumerate(rd.rows):
            o = 0
            for c, (xt, _) in zip(comps, bufs):
                w = c.draw_size * m
                out[r, o:o + w] = xt[r, :w]
                o += w


def joint_prepare(job, rd, bitgens, threads, buf, mode, prm):
    """Job.prepare for a Joint: each component drawn (mode PREP_DRAW, or
    PREP_GAMMAS for the components drawn through Gamma variates: x and its
    two auxiliary regions) one after the other, its regions laid side by
    side into buf (region k of the flat layout at k * draw_size * m)."""
    if mode not in (_vr.PREP_DRAW, _vr.PREP_GAMMAS):
        raise ValueError(f"{job.what or 'this estimator'} draws one family, not a Joint")
    cache = job.__dict__.setdefault("_padded", {})
    comps = list(job.dist.joint_components.values())
    R, B = len(rd.blocks), rd.B
    regions = 3 if mode == _vr.PREP_GAMMAS else 1
    key = ("joint", R, B, regions)
    if key not in cache:
        cache[key] = [(vr_dist(c), np.zeros((R, regions * c.draw_size * B))) for c in comps]
    ds = job.dist.draw_size
    for c, (vd, cb) in zip(comps, cache[key]):
        cm = mode if c.rsample_through_gammas else _vr.PREP_DRAW
        _vr.prepare_round(vd, bitgens, rd.blocks, rd.slots, rd.n, B, threads, cm, c.draw_size,
                          prm, cb)
    for r, m in enumerate(rd.rows):
        o = 0
        for c, (_, cb) in zip(comps, cache[key]):
            w = c.draw_size
            for k in range(regions if c.rsample_through_gammas else 1):
                buf[r, (k * ds + o) * m:(k * ds + o + w) * m] = cb[r, k * w * m:(k + 1) * w * m]
            o += w


class JointScoreJob(Job):
    """score_grad on a Joint: every component drawn in the kernels, f (a
    Python f on the dict of draws, or a fused integrand / C callback on the
    flat draw, evaluated in the kernels) once per draw, and each component's
    score sums accumulated with the same f values (batched: f's columns)."""

    def __init__(self, f, dist, fkind="python", kf=None, k=0):
        self.f = JointF(f, dist) if fkind == "python" else f
        self.fkind, self.kf = fkind, kf
        self.dist = dist
        self.comps = list(dist.joint_components.values())
        self.width = dist.draw_size
        self.k = k
        self.bshape = tuple(dist.batch_shape[:k])
        self.nf = int(np.prod(self.bshape, dtype=np.int64)) if k else 1
        self.fcols = [batch_columns(c, k) for c in self.comps] if k else None
        self.head = 1 + 2 * self.nf if k else 3
        self.rest = [c._kernel_dist().stats_len - 3 for c in self.comps]

    def __getstate__(self):
        state = super().__getstate__()
        state["kf"] = None  # rebuilt by lower_f where the job runs (Integrand)
        return state

    def new_stats(self, streams):
        return (np.zeros((streams, self.head + sum(self.rest))),
                np.zeros((streams, self.nf)) if self.k else np.zeros(streams))

    def buffers(self, R, B):
        bufs = []
        for c in self.comps:
            kd = c._kernel_dist()
            bufs.append((np.empty((R, kd.draw_size * B)),
                         np.empty((R, kd.draw_size * B)) if kd.has_log_column else None))
        return bufs, np.empty((R, self.nf * B))

    def draw(self, rd, bitgens, threads, buf, shared=False):
        joint_draw(self.dist, rd, bitgens, threads, buf[0], None)

    def evaluate(self, rd, buf, chunk, mag):
        bufs, fx = buf
        cache = self.__dict__.setdefault("_gathered", {})
        x = cache.get("x")
        if x is None or x.shape[0] < rd.total:
            x = cache["x"] = np.empty((len(rd.blocks) * rd.B, self.width))
        x = x[:rd.total]
        o = 0
        for c, (xt, _) in zip(self.comps, bufs):
            rd.gather(xt, c.draw_size, 0, x[:, o:o + c.draw_size])
            o += c.draw_size
        if self.k:
            call_batched(self.f, x, rd, chunk, self.bshape,
                         lambda c0, v: scatter_columns(rd, v, fx, c0))
            return fx, ()
        if self.fkind == "python":
            v = call_values(self.f, x, rd, chunk)
        else:
            if self.kf is None:
                self.kf = lower_f(self.f, self.dist)[1]
            v = K.eval_integrand(self.kf, _flat_dist(self.width), x)
            bad = ~np.isfinite(v)
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(f"f returned {v[i]} at draw {rd.draw_index(i)} (x = "
                                 f"{describe_draw(x[i])}); f must be finite")
        scatter_columns(rd, v.reshape(rd.total, 1), fx)
        return fx, ()

    def accumulate(self, rd, buf, values, threads, stats, shifts):
        """Each component's kernel on the round's rows [head | its own sums]
        (contiguous copies of the round's streams only, so the copying is
        proportional to the round's work), the same f values and shifts."""
        bufs, fx = buf
        h, slots = self.head, rd.slots
        local = np.arange(len(slots), dtype=np.int64)
        head = stats[slots, :h]
        sh = np.ascontiguousarray(shifts[slots])
        off = h
        for i, (c, (xt, lt)) in enumerate(zip(self.comps, bufs)):
            w = self.rest[i]
            part = np.concatenate([head, stats[slots, off:off + w]], axis=1)
            kd = c._kernel_dist()
            if self.k:
                K.accumulate_round_batched(kd, rd.blocks, local, rd.n, rd.B, rd.n_streams,
                                           threads, xt, fx, self.fcols[i], part, sh, lt)
            else:
                K.accumulate_round(kd, rd.blocks, local, rd.n, rd.B, rd.n_streams, threads,
                                   xt, fx, part, sh, lt)
            stats[slots, off:off + w] = part[:, h:]
            off += w
        stats[slots, :h] = part[:, :h]
        shifts[slots] = sh
