"""The jobs: what an estimator draws, evaluates and accumulates, round by
round (``Job`` and the score-function jobs ``ScoreJob``,
``BatchedScoreJob``, ``JointScoreJob``), the kernels' tables of a family,
and the helpers of batched expectations and of Joint distributions.
``mcscore._rounds.run_job`` runs a job's rounds.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from . import _kernels as K
from . import _validation as V
from . import _vr
from ._buffers import _POOL, chunk_size_for
from ._callables import call_raw, call_values, chunks, describe_draw, lower_f
from .distributions import Categorical

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
# jobs
# ---------------------------------------------------------------------------

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
