"""The score-function estimator of a family whose support moves with its
parameters (Uniform's low and high): the score alone is biased there, and
the family's ``boundary_terms`` capability supplies the missing part.

d/dtheta E[f] = E[f s] + (the flux of f p through the moving boundary); a
family with ``has_boundary`` writes the second part as an expectation over
its own draws, f evaluated at the draw with a coordinate pinned to its
bound (``dist.boundary_terms(f, x)``).  The engine adds it to f s draw by
draw, so the estimate and its standard error come from the same per-draw
terms (the Gram statistics of the pathwise kernel, one unit tangent per
coordinate).  Where the draw is one number (a scalar Uniform) the pinned
draw is the bound itself, so a fused integrand or C callback is taken too:
the fused score estimate plus f(bound) times the family's constant
(:func:`_fused_scalar`).  Estimators that cannot evaluate f at pinned draws
(fused integrands and C callbacks on draws of several coordinates, draws
without f, RLOO, control variates) refuse such a family through
:func:`refuse`, naming ``pathwise_grad``.
"""
from __future__ import annotations

import numpy as np

from . import _engine as E
from . import _kernels as K
from . import _validation as V
from . import _vr


def refuse(dist, what, why):
    """Raise the clear error of an estimator that cannot include the
    boundary term of `dist` (a family with a parameter-dependent support)."""
    if getattr(dist, "has_boundary", False):
        raise ValueError(
            f"{what} cannot estimate gradients for {type(dist).__name__}: its support moves "
            f"with its parameters, so the score-function estimate needs a boundary term (f at "
            f"draws pinned to the support's bounds) and {why}; use score_grad with a Python "
            "f (it adds the boundary term) or pathwise_grad (the reparameterisation)")


def refuse_inside(dist, batch_ndims):
    """A family with a boundary term inside a Joint, or with batched
    expectations: those paths do not add the term yet, so they refuse
    instead of returning the biased plain score-function estimate."""
    comps = getattr(dist, "joint_components", None)
    if comps is not None:
        for name, comp in comps.items():
            refuse(comp, f"score_grad on a Joint with component {name!r}",
                   "the Joint path does not evaluate f at pinned draws")
    elif batch_ndims:
        refuse(dist, "score_grad with batch_ndims > 0",
               "the batched path does not evaluate f at pinned draws")


def boundary_score_grad(f, dist, n, *, rng, baseline, antithetic, n_threads, chunk_size,
                        n_streams, block_size, client, progress):
    """score_grad for a family with a boundary term (every baseline: see
    the family's boundary_terms; antithetic pairs when it has a mirror)."""
    fkind, kf = E.lower_f(f, dist)
    if fkind != "python":
        if dist._kernel_dist().draw_size == 1 and antithetic is False:
            return _fused_scalar(f, kf, fkind, dist, n, rng=rng, baseline=baseline,
                                 n_threads=n_threads, chunk_size=chunk_size,
                                 n_streams=n_streams, block_size=block_size, client=client,
                                 progress=progress)
        refuse(dist, "score_grad with a fused integrand or C callback"
               + (" and antithetic pairs" if antithetic is not False else " on draws of "
                  "more than one coordinate"),
               "f is evaluated inside the kernels, which cannot pin draws")
    if not isinstance(antithetic, (bool, np.bool_)):
        raise TypeError(f"antithetic must be True or False, got {antithetic!r}")
    if antithetic:
        dist.require("mirror")
    E.check_differentiable(dist)
    kd = dist._kernel_dist()
    n = V.integer("n", n, minimum=4 if antithetic else 2, maximum=2**62)
    units = n // 2 if antithetic else n
    plan = E.Plan(units, kd.draw_size, rng, n_streams, block_size, n_threads)
    job = BoundaryJob(f, dist, bool(antithetic))
    if client is None:
        bar = E.progress_bar(progress, plan)
        try:
            stats, shifts, _, mag = E.run_job(job, plan, chunk_size, progress=bar)
        finally:
            if bar is not None:
                bar.close()
    else:
        stats, shifts, _, mag = E.run(job, plan, chunk_size=chunk_size, client=client,
                                      n_threads=n_threads)
    est = E.estimate(dist, stats, shifts, job.P, 1, [1.0], terms="f * score + boundary term",
                     mag=mag)
    grand, se, var, value, vse, vvar, nn, _ = est
    # the batch-means covariance, where the engine's estimate carries it
    extra = {"batch": est.batch} if hasattr(est, "batch") else {}
    n_draws = nn * (2 if antithetic else 1)
    info = {**plan.info(), "f": fkind, "baseline": baseline, "antithetic": bool(antithetic),
            "boundary_term": True, "f_evals_per_draw": 1 + 2 * kd.draw_size}
    est = E.gradient_estimate(dist, grand, se, var, value, vse, vvar, n_draws,
                              "score+boundary" + ("+antithetic" if antithetic else ""), info,
                              variance=se**2 * n_draws, **extra)
    est.value_variance = est.value_stderr**2 * n_draws
    return est


def _fused_scalar(f, kf, fkind, dist, n, *, rng, baseline, n_threads, chunk_size, n_streams,
                  block_size, client, progress):
    """score_grad with a fused integrand (or C callback) f for a family with a
    boundary term whose draw is one number (a scalar Uniform).  Pinning the
    draw's one coordinate to a bound gives the bound itself, so the pinned
    parts of boundary_terms are constants, f(bound) times the family's
    coefficient (-1 / (high - low) at low, +1 / (high - low) at high): the
    fused score estimate without a baseline plus those constants.  The
    per-draw terms f s + constant have the score estimate's variance, and a
    baseline cancels from them (see boundary_terms), so every baseline gives
    this estimate."""
    E.check_differentiable(dist)
    kd = dist._kernel_dist()
    n = V.integer("n", n, minimum=2, maximum=2**62)
    # the pinned draws: the draw at each bound, and f there
    pinned = {}
    for name, sign in (("low", -1.0), ("high", 1.0)):
        bound = np.asarray(getattr(dist, name), dtype=np.float64).reshape(1, 1)
        fb = float(K.eval_integrand(kf, kd, bound)[0])
        if not np.isfinite(fb):
            raise ValueError(
                f"f is not finite at the draw pinned to {name} = {float(bound[0, 0])!r} "
                f"(got {fb!r}): the boundary term of {type(dist).__name__} needs f at the "
                "support's bounds")
        pinned[name] = sign * fb / np.asarray(dist._width(), dtype=np.float64)
    plan = E.Plan(n, kd.draw_size, rng, n_streams, block_size, n_threads)
    bar = E.progress_bar(progress, plan)
    try:
        if client is not None:
            stats, shifts = E.run_on_dask(client, f, fkind, dist, kd, plan,
                                          n_threads=n_threads, chunk_size=chunk_size,
                                          progress=bar)
        else:
            stats, shifts = E.run_fused(kf, fkind, dist, kd, plan, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    info = {**plan.info(), "f": fkind, "baseline": baseline, "antithetic": False,
            "boundary_term": True, "f_evals_per_draw": 1}
    est = E.finish_score(dist, kd, stats, shifts, None, info)
    est.grad = {k: np.asarray(g + np.reshape(pinned[k], np.shape(g)), dtype=np.float64)
                for k, g in est.grad.items()}
    est.method = "score+boundary"
    est.baseline = baseline
    return est


class BoundaryJob(E.Job):
    """Draws of the family (and their mirror images); f at the draws and at
    the draws pinned to the support's bounds (the family's boundary_terms);
    the per-draw terms f s + boundary accumulated as features with unit
    tangents by the pathwise kernel."""

    def __init__(self, f, dist, antithetic):
        self.f, self.dist, self.antithetic = f, dist, antithetic
        kd = dist._kernel_dist()
        self.width = kd.draw_size
        self.P = P = dist._table["n_coords"]
        # one unit-tangent term per gradient coordinate: the kernel sums
        # G[i, q] * 1, so G holds the per-draw terms themselves
        self.table = (np.arange(P + 1, dtype=np.int64), np.full(P, _vr.TK_ONE, np.intc),
                      np.arange(P, dtype=np.int64), np.zeros(P), np.zeros(P))

    def buffers(self, R, B):
        # the kernel reads x at each term's column (unused by a unit
        # tangent): rows wide enough for P columns
        return np.empty((R, max(self.width, self.P) * B))

    def draw(self, rd, bitgens, threads, buf, shared=False):
        self.prepare(rd, bitgens, threads, buf, _vr.PREP_DRAW, np.zeros(1))

    def _terms(self, x, rd, chunk, mag):
        dist = self.dist
        m = x.shape[0]
        S = dist._score(x)  # before f sees (and may change) the draws
        S = np.concatenate([S[k].reshape(m, -1) for k in S], axis=1)
        fv = mag.see(E.call_values(self.f, x.copy(), rd, chunk))
        pinned = dist.boundary_terms(
            lambda xp: mag.see(E.call_values(self.f, xp, rd, chunk)), x)
        return fv, fv[:, None] * S + pinned

    def evaluate(self, rd, buf, chunk, mag):
        dist = self.dist
        x = self.gathered(rd, buf, self.width).reshape((rd.total,) + dist.draw_shape)
        x = dist._to_user_dtype(x)
        fv, Z = self._terms(x, rd, chunk, mag)
        if self.antithetic:
            fm, Zm = self._terms(dist.mirror(x), rd, chunk, mag)
            fv, Z = 0.5 * (fv + fm), 0.5 * (Z + Zm)
        return (rd.scatter(fv), rd.scatter(np.ascontiguousarray(Z))), ()

    def accumulate(self, rd, buf, values, threads, stats, shifts):
        fv, G = values
        _vr.acc_pathwise(*self.table, rd.blocks, rd.slots, rd.n, rd.B, rd.n_streams, threads,
                         self.width, False, buf[:len(rd.blocks)], G, fv, stats, shifts)
