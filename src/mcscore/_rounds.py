"""The Python engine's lower half: what runs where the draws are made.

Everything here runs the same way in the calling process and on a Dask
worker (``mcscore.distributed`` sends a group of streams here): the plan
(streams, blocks, seeding, threads), fused runs, and **one loop over rounds
of blocks**
(``run_job``) under every estimator: per round the kernels draw, Python
evaluates f (and grad_f, control variates, ...), and the kernels accumulate
per-stream sums.  An estimator is a ``Job`` (``mcscore._jobs``): a short
declaration of what it draws (``draw``), what it evaluates (``evaluate``)
and what it accumulates (``accumulate``); the round buffers are in
``mcscore._buffers``.  This module re-exports both modules' names, and keeps
the settings read at call time (``SERIAL_VALUES``, ``EPOCH_VALUES``,
``OVERLAP_ROUNDS``, the thread pools, ``_bitgen_objects``) next to the code
that reads them, so that setting ``mcscore._rounds.X`` takes effect.  The
estimator algebra on the sums is in ``mcscore._algebra``, f's lowering and
calls in ``mcscore._callables``; ``mcscore._engine`` runs a job locally or
on Dask.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import _jobs
from . import _kernels as K
from . import _validation as V
from ._algebra import Mag, Offsets
from ._buffers import (  # noqa: F401 - re-exported: mcscore._rounds' names
    _POOL, Round, _BufferPool, _physical_memory, check_memory, chunk_size_for,
)
from ._callables import (  # noqa: F401 - re-exported
    call_raw, call_values, chunks, describe_draw, lower_f, nonfinite_draw_error,
)
from ._config import blas_single_threaded, effective_n_threads
from ._jobs import (  # noqa: F401 - re-exported: mcscore._rounds' names
    BatchedScoreJob, Job, JointF, JointGrad, JointScoreJob, ScoreJob, _flat_dist,
    _score_table, _vr_dist, batch_columns, batched_values, call_batched, carrier_dist,
    check_batch_ndims, coord_columns, is_joint, joint_draw, joint_prepare, joint_score_table,
    joint_tables, score_table, scatter_columns, vr_dist, wrap_joint,
)
from .distributions import Categorical  # noqa: F401 - re-exported

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
# the round loop (the jobs are in mcscore._jobs, the buffers in mcscore._buffers)
# ---------------------------------------------------------------------------

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
    global _POOL_LOCK
    _POOLS.clear()
    _POOL_LOCK, _jobs._ROWS_LOCK = threading.Lock(), threading.Lock()


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

