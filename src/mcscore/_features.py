"""Jobs whose per-draw terms are computed in Python: the engine's loop,
plan, streams, Dask and Gram algebra for estimators with no kernel of their
own (measure-valued derivatives, RELAX, the unordered-set estimator,
second-order control variates of the pathwise estimator).

A ``FeatureJob`` declares two things:

* ``sample(gen, m)``: the random material of m draws (a dict of arrays with
  leading axis m) from ``gen``, a ``numpy.random.Generator`` on the stream's
  own bit generator.  A block is drawn whole, in block order per stream, so
  the material of a draw depends only on (seed, stream, block), never on
  threads, chunks or where the stream runs (locally or on a Dask worker);
* ``features(mat, rd, chunk, mag)``: (v, Z), v the values behind ``value``
  (shape (m,)) and Z the features (m, P, L) of the draws (calling f through
  ``_engine.call_values``, chunk by chunk, with its checks).

The features are summed per stream in NumPy exactly as the kernels' Gram
accumulation does (``gram_add`` in ``_vr.pyx``: shifted by each stream's first
draw), so ``_engine.estimate`` (fixed or cross-fitted coefficients, range
checks, rounding floor) applies unchanged.
"""
from __future__ import annotations

import numpy as np

from . import _engine as E
from . import _vr

__all__ = ["FeatureJob", "gram_add", "run_features", "concat"]


def gram_add(Z, v, stats, shifts, first):
    """Add the features Z (m, P, L) and values v (m,) of one block to one
    stream's statistics row (its shifts set from the first draw when the
    block is the stream's first), in the layout of ``_vr.gram_add``."""
    m, P, L = Z.shape
    if m == 0:
        return
    if first:
        shifts[0] = v[0]
        shifts[1:] = Z[0].ravel()
    g = v - shifts[0]
    stats[0] += m
    stats[1] += g.sum()
    stats[2] += g @ g
    d = Z - shifts[1:].reshape(P, L)
    iu = np.triu_indices(L)
    cross = np.einsum("mpl,mpk->plk", d, d)[:, iu[0], iu[1]]
    W = L + L * (L + 1) // 2
    row = stats[3:].reshape(P, W)
    row[:, :L] += d.sum(0)
    row[:, L:] += cross


def concat(parts):
    """The per-block material dicts of a round joined along the draws."""
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class FeatureJob(E.Job):
    """An estimator whose draws are made with NumPy from the streams' bit
    generators and whose features are computed in Python (see the module
    docstring).  Subclasses set ``dist``, ``P``, ``L`` and ``width`` (draw
    values per unit, for the plan's default block size) and implement
    ``sample`` and ``features``."""

    def buffers(self, R, B):
        return [None] * R

    def draw(self, rd, bitgens, threads, buf, shared=False):
        for r, (slot, m) in enumerate(zip(rd.slots.tolist(), rd.rows)):
            buf[r] = self.sample(np.random.Generator(bitgens[slot]), m)

    def evaluate(self, rd, buf, chunk, mag):
        v, Z = self.features(concat(buf[:len(rd.blocks)]), rd, chunk, mag)
        return (np.asarray(v, float), np.asarray(Z, float)), ()

    def accumulate(self, rd, buf, values, threads, stats, shifts):
        v, Z = values
        o = 0
        for r, m in enumerate(rd.rows):
            s = int(rd.slots[r])
            gram_add(Z[o:o + m], v[o:o + m], stats[s], shifts[s], rd.blocks[r] < rd.n_streams)
            o += m

    def sample(self, gen, m):  # pragma: no cover - abstract
        raise NotImplementedError

    def features(self, mat, rd, chunk, mag):  # pragma: no cover - abstract
        raise NotImplementedError


def run_features(job, dist, n, *, rng, n_streams, block_size, n_threads, chunk_size, client,
                 coef=(1.0,), mu=None, terms="the per-draw terms"):
    """Plan, run (locally or on Dask) and finish a FeatureJob: returns
    (estimate tuple of ``_engine.estimate``, plan, Mag)."""
    plan = E.Plan(n, job.width, rng, n_streams, block_size, n_threads)
    stats, shifts, offsets, mag = E.run(job, plan, chunk_size=chunk_size, client=client,
                                        n_threads=n_threads)
    est = E.estimate(dist, stats, shifts, job.P, job.L, np.asarray(coef, float), mu=mu,
                     offsets=offsets if job.offset_rows else None, terms=terms, mag=mag)
    return est, plan, mag


def gram_width(P, L):
    return _vr.gram_width(P, L)
