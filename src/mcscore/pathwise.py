"""The pathwise (reparameterisation) estimator: :func:`pathwise_grad`.

A family that can be reparameterised declares it (``has_rsample`` and
``pathwise_spec``: the tangent kind of each parameter, see
``mcscore.distributions``); the engine draws, calls f and grad_f, and the
``_vr`` kernel accumulates ``grad_f(x) . dx/dtheta``.
"""
from __future__ import annotations

import numpy as np

from . import _engine as E
from . import _vr
from .distributions import index_map

__all__ = ["pathwise_grad"]


def _pathwise_table(dist):
    """The reparameterisation table (t_start, kind, col, a, b) of the
    family's pathwise_spec, ordered by gradient coordinate (a Joint: its
    components' tables side by side)."""
    if E.is_joint(dist):
        return E.joint_tables(dist, _pathwise_table)
    ds = dist.draw_shape
    size = dist.draw_size
    dist._kernel_dist()
    coord, col, kind, ta, tb = [], [], [], [], []
    for row in dist.pathwise_spec():
        name, knd, a, bb = row[:4]
        sl, pshape = dist._coord_slices[name]
        if len(row) == 6:  # an explicit term list: element elem[i] reaches column col[i]
            elem, cc = (np.asarray(v, np.int64).ravel() for v in row[4:])
            shape = elem.shape
            coord.append(sl.start + elem)
            col.append(cc)
        else:
            shape = ds
            coord.append(sl.start + index_map(pshape, ds))
            col.append(np.arange(size))
        kind.append(np.full(int(np.prod(shape)), knd))
        ta.append(np.broadcast_to(np.asarray(a, float), shape).ravel())
        tb.append(np.broadcast_to(np.asarray(bb, float), shape).ravel())
    coord = np.concatenate(coord)
    order = np.argsort(coord, kind="stable")
    P = sum(sl.stop - sl.start for sl, _ in dist._coord_slices.values())
    t_start = np.concatenate([[0], np.cumsum(np.bincount(coord, minlength=P))]).astype(np.int64)
    return (t_start, np.concatenate(kind)[order].astype(np.intc),
            np.concatenate(col)[order].astype(np.int64),
            np.ascontiguousarray(np.concatenate(ta)[order]),
            np.ascontiguousarray(np.concatenate(tb)[order]))


def pathwise_grad(f, dist, n, *, grad_f, rng=None, n_threads=None, chunk_size=None,
                  n_streams=E.DEFAULT_STREAMS, block_size=None, client=None):
    """Pathwise (reparameterisation) estimate of grad_theta E_{x ~ dist}[f(x)].

    x = g(theta, eps) with base noise eps, and the estimate averages
    ``grad_f(x) . dx/dtheta``.  Normal, LogNormal and Exponential use the
    location-scale maps; Gamma, Beta and Dirichlet use *implicit*
    reparameterisation (dx/dalpha = -(dF/dalpha) / p(x) at the draw, Beta
    and Dirichlet through normalised Gamma variates).

    Parameters
    ----------
    f : callable
        Vectorised f, ``f(x)`` with x of shape ``(m, *dist.draw_shape)``
        returns ``(m,)``; used for ``value`` (E[f]).
    dist : Normal, LogNormal, Exponential, Gamma, Beta or Dirichlet
    n : int >= 2
    grad_f : callable
        Vectorised gradient of f: returns the shape of x.
    rng, n_threads, chunk_size, n_streams, block_size
        As in :func:`mcscore.score_grad` (bit-identical for any n_threads).
        Normal, LogNormal, Exponential and Gamma use the same draws as
        ``score_grad`` with the same seed and plan.
    client : dask.distributed.Client, optional
        Run on Dask, bit-identical to the local run (as in ``score_grad``).

    Returns
    -------
    GradientEstimate (method "pathwise"); ``variance`` is the per-draw variance.
    """
    E.check_distribution(dist)
    dist.require("rsample")
    f = E.check_callable("f", f)
    grad_f = E.check_callable("grad_f", grad_f)
    if E.is_joint(dist):  # f and grad_f take (and grad_f returns) dicts of component draws
        f, grad_f = E.JointF(f, dist), E.JointGrad(grad_f, dist)
    ds = dist.draw_size
    plan = E.Plan(n, ds, rng, n_streams, block_size, n_threads)
    job = PathwiseJob(f, grad_f, dist)
    stats, shifts, _, mag = E.run(job, plan, chunk_size=chunk_size, client=client,
                                  n_threads=n_threads)
    grand, se, var, value, vse, vvar, nn, _ = est = E.estimate(
        dist, stats, shifts, job.P, 1, [1.0], terms="grad_f * dx/dtheta", mag=mag)
    return E.gradient_estimate(dist, grand, se, var, value, vse, vvar, nn, "pathwise",
                               {**plan.info(), "f": "python"}, batch=est.batch)


class PathwiseJob(E.Job):
    """Draws of the family (Beta, Dirichlet: with their Gamma variates);
    f and grad_f; the kernel's sums of grad_f . dx/dtheta."""

    what = "pathwise_grad"

    def __init__(self, f, grad_f, dist):
        self.f, self.grad_f, self.dist = f, grad_f, dist
        self.width = dist.draw_size
        self.table = _pathwise_table(dist)
        self.P = len(self.table[0]) - 1
        self.has_aux = dist.rsample_through_gammas
        # the parameters of tangent kinds that read them (MultivariateNormal)
        self.prm = getattr(dist, "pathwise_params", lambda: None)()

    def buffers(self, R, B):
        return np.empty((R, (3 if self.has_aux else 1) * self.width * B))

    def draw(self, rd, bitgens, threads, buf, shared=False):
        self.prepare(rd, bitgens, threads, buf,
                     _vr.PREP_GAMMAS if self.has_aux else _vr.PREP_DRAW, np.zeros(1))

    def evaluate(self, rd, buf, chunk, mag):
        dist = self.dist
        x = self.gathered(rd, buf, self.width).reshape((rd.total,) + dist.draw_shape)
        if self.has_aux and not np.isfinite(x).all():
            i = int(np.argmax(~np.isfinite(x.reshape(rd.total, -1)).all(axis=1)))
            smallest = min(float(np.min(v)) for v in dist._params.values())
            raise FloatingPointError(
                f"pathwise_grad draws {type(dist).__name__} variates as normalised Gamma "
                f"variates, and at draw {rd.draw_index(i)} all of them underflowed to 0 for "
                f"concentrations as small as {smallest:.3g}: the draw is 0/0 and its "
                "reparameterisation gradient undefined; use larger concentrations or a "
                "score-function estimator")
        fv = rd.scatter(mag.see(E.call_values(self.f, x, rd, chunk)))
        G = rd.scatter(mag.see(E.call_grad(self.grad_f, x, rd, chunk), "grad_f"))
        return (fv, G), ()

    def accumulate(self, rd, buf, values, threads, stats, shifts):
        fv, G = values
        _vr.acc_pathwise(*self.table, rd.blocks, rd.slots, rd.n, rd.B, rd.n_streams, threads,
                         self.width, self.has_aux, buf[:len(rd.blocks)], G, fv, stats, shifts,
                         self.prm)
