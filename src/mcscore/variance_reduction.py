"""Variance reduction for the score-function estimator: control variates
and antithetic pairs (``score_grad(..., control_variates=, antithetic=)``).

The estimator averages ``f s - sum_j beta_j (h_j s - grad E[h_j])`` (and,
with antithetic pairs, the pair's mean) with per-coordinate coefficients
beta cross-fitted across streams (unbiased), by the engine's Gram algebra;
f and the control variates are shifted per stream by a constant when they
sit at an offset (see ``mcscore._algebra.Offsets``).
"""
from __future__ import annotations

import numpy as np

from . import _engine as E
from . import _kernels as K
from . import _validation as V
from . import _vr
from .distributions import index_map

__all__ = ["score_vr", "flat_coords"]


def flat_coords(dist, grads, what):
    """A {param: array} dict -> the flat coordinate vector (score order)."""
    if not E.is_joint(dist):
        dist._kernel_dist()
    if not isinstance(grads, dict):
        raise TypeError(f"{what} must be a dict {{parameter name: array}}, got "
                        f"{type(grads).__name__}")
    out = np.zeros(sum(sl.stop - sl.start for sl, _ in dist._coord_slices.values()))
    unknown = set(grads) - set(dist._coord_slices)
    if unknown:
        raise ValueError(f"{what}: unknown parameter(s) {sorted(unknown)}; "
                         f"{dist!r} has {list(dist._coord_slices)}")
    for name, (sl, pshape) in dist._coord_slices.items():
        if name not in grads:
            raise ValueError(f"{what} must give the gradient for every parameter; missing {name!r}")
        g = V.check(f"{what}[{name!r}]", V.as_real_array(f"{what}[{name!r}]", grads[name]), "real")
        if g.shape != tuple(pshape):
            try:
                g = np.broadcast_to(g, pshape)
            except ValueError:
                raise ValueError(f"{what}[{name!r}] must have shape {tuple(pshape)}, got "
                                 f"{g.shape}") from None
        out[sl] = g.ravel()
    return out


def _delta_cv(dist, grad_f):
    """The delta-method (first-order Taylor) control variate
    h(x) = grad_f(mu) . (x - mu), mu = E[x]; returns (h, d E[h] / d theta)
    with the expansion point held fixed."""
    if grad_f is None:
        raise TypeError("control variate 'delta' needs grad_f (the gradient of f)")
    dist.require("mean_tangents")
    # a Joint: its components' means and tangents, side by side in the flat layout
    parts = ([(n + ".", c, dist.offsets[n]) for n, c in dist.joint_components.items()]
             if E.is_joint(dist) else [("", dist, 0)])
    mu = np.concatenate([np.broadcast_to(np.asarray(c.mean(), float), c.draw_shape).ravel()
                         for _, c, _ in parts]).reshape(dist.draw_shape)
    if E.is_joint(dist):
        grad_f = E.JointGrad(grad_f, dist)
    g = E.call_grad(grad_f, mu[None].copy(), None, 1).reshape(dist.draw_shape)
    grads = {}
    for prefix, c, off in parts:
        gc = g.ravel()[off:off + c.draw_size].reshape(c.draw_shape)
        for name, t in c.mean_tangents().items():
            pshape = c._params[name].shape
            idx = index_map(pshape, c.draw_shape)
            size = int(np.prod(pshape, dtype=np.int64))
            grads[prefix + name] = np.bincount(idx, weights=(gc * t).ravel(),
                                               minlength=size).reshape(pshape)
    gflat = g.ravel()
    muflat = mu.ravel()

    def h(x):
        return (np.asarray(x, float).reshape(len(x), -1) - muflat) @ gflat

    return h, grads


def _cv_kinds(control_variates):
    """'delta' or 'pair' for each control variate (as _parse_cvs lists them)."""
    if control_variates is None:
        return []
    if isinstance(control_variates, (str, tuple)) or callable(control_variates):
        control_variates = [control_variates]
    return ["delta" if isinstance(cv, str) else "pair" for cv in control_variates]


def _parse_cvs(dist, control_variates, grad_f):
    """[(h, flat d E[h] / d theta)]."""
    if control_variates is None:
        return []
    if isinstance(control_variates, (str, tuple)) or callable(control_variates):
        control_variates = [control_variates]
    if not isinstance(control_variates, (list, tuple)):
        raise TypeError("control_variates must be 'delta', a pair (h, grad_mean) or a list of "
                        f"them, got {type(control_variates).__name__}")
    out = []
    for j, cv in enumerate(control_variates):
        where = f"control_variates[{j}]"
        if isinstance(cv, str):
            if cv != "delta":
                raise ValueError(f"{where}: unknown built-in control variate {cv!r}; "
                                 "the built-in one is 'delta' (needs grad_f)")
            h, grads = _delta_cv(dist, grad_f)
        elif isinstance(cv, tuple) and len(cv) == 2:
            h, grads = cv
            if not callable(h):
                raise TypeError(f"{where}: h must be a vectorised callable, got "
                                f"{type(h).__name__}")
            if callable(grads):
                grads = grads(dist)
        else:
            raise TypeError(f"{where} must be 'delta' or a pair (h, grad_mean) with h a "
                            "vectorised callable and grad_mean the gradient of E[h] as a dict "
                            "{parameter name: array} (or a callable dist -> dict)")
        out.append((h, flat_coords(dist, grads, f"{where} grad_mean")))
    if len(out) > 14:
        raise ValueError("at most 14 control variates")
    return out


def score_vr(f, dist, n, *, rng, baseline, control_variates, antithetic, grad_f, n_threads,
             chunk_size, n_streams, block_size, client=None):
    """score_grad with control variates and/or antithetic pairs."""
    if not isinstance(antithetic, (bool, np.bool_)):
        raise TypeError(f"antithetic must be True or False, got {antithetic!r}")
    if antithetic:
        dist.require("mirror")
    if baseline == "loo":
        raise ValueError("baseline='loo' cannot be combined with control_variates or "
                         "antithetic; use None, a number or 'optimal'")
    grad_f = E.check_callable("grad_f", grad_f, required=False)
    fkind, _ = E.lower_f(f, dist)
    dist._check_differentiable()
    cvs = _parse_cvs(dist, control_variates, grad_f)
    if E.is_joint(dist):  # f and each h take the dict of component draws
        f = E.wrap_joint(dist, f)
        cvs = [(h if j == "delta" else E.JointF(h, dist), gm)
               for (h, gm), j in zip(cvs, _cv_kinds(control_variates))]
    n = V.integer("n", n, minimum=4 if antithetic else 2, maximum=2**62)
    units = n // 2 if antithetic else n
    plan = E.Plan(units, dist.draw_size, rng, n_streams, block_size, n_threads)
    shift_f = float(baseline) if isinstance(baseline, float) else 0.0
    job = ScoreVRJob(f, fkind, dist, cvs, antithetic, shift_f)
    P, J = job.P, job.offset_rows
    add_score = baseline == "optimal"
    # column J is the score itself: the baseline's feature with "optimal",
    # and the carrier of the offsets taken out of f and the control variates
    L = J + 1
    coef = np.full(L, np.nan)
    coef[0] = 1.0
    if not add_score:
        coef[J] = 0.0
    mu = np.zeros((P, L))
    for j, (_, gm) in enumerate(cvs):
        mu[:, 1 + j] = gm
    stats, shifts, offsets, mag = E.run(job, plan, chunk_size=chunk_size, client=client,
                                        n_threads=n_threads)
    grand, se, var, value, vse, vvar, nn, w = gram = E.estimate(
        dist, stats, shifts, P, L, coef, mu=mu, offsets=offsets, mag=mag)
    value += shift_f
    n_draws = nn * (2 if antithetic else 1)
    info = {**plan.info(), "f": fkind, "baseline": baseline, "antithetic": bool(antithetic),
            "control_variates": len(cvs), "samples": nn}
    if J + add_score > 1:
        info["coefficients"] = -w[..., 1: J + add_score].mean(0)
    # per-draw variance: se^2 times the draws used (a pair counts as 2)
    est = E.gradient_estimate(
        dist, grand, se, var, value, vse, vvar, n_draws,
        "score" + ("+antithetic" if antithetic else "") + ("+cv" if cvs else ""), info,
        variance=se**2 * n_draws, batch=gram.batch)
    est.value_variance = est.value_stderr**2 * n_draws
    return est


class ScoreVRJob(E.Job):
    """Draws of the family (and their mirror images); f (a Python f or a
    fused integrand) and the control variates h_j on both, shifted per
    stream; the score kernel's Gram sums of f s, h_j s and s."""

    def __init__(self, f, fkind, dist, cvs, antithetic, shift_f):
        self.f, self.fkind, self.dist, self.cvs = f, fkind, dist, cvs
        self.antithetic, self.shift_f = antithetic, shift_f
        self.width = dist.draw_size
        self.table = E.score_table(dist)
        self.P = len(self.table[0]) - 1
        self.offset_rows = J = 1 + len(cvs)
        self.L, self.carrier, self.mult = J + 1, J, np.eye(J + 1, J)
        self.what = "score_grad with control_variates/antithetic"

    def buffers(self, R, B):
        xt = np.empty((R, self.width * B))
        return xt, (np.empty_like(xt) if self.antithetic else xt)

    def draw(self, rd, bitgens, threads, buf, shared=False):
        self.prepare(rd, bitgens, threads, buf[0], _vr.PREP_DRAW, np.zeros(1))

    def _values(self, rd, x_user, xflat, chunk, mag):
        out = np.empty((self.offset_rows, len(x_user)))
        if self.fkind == "python":
            out[0] = E.call_values(self.f, x_user, rd, chunk)
        else:
            if self._kf is None:
                self._kf = E.lower_f(self.f, self.dist)[1]
            out[0] = K.eval_integrand(self._kf, E.carrier_dist(self.dist), xflat)
            if not np.isfinite(out[0]).all():
                i = int(np.argmax(~np.isfinite(out[0])))
                raise ValueError(f"f returned {out[0][i]} at draw {rd.draw_index(i)}; f must "
                                 "be finite")
        out[0] -= self.shift_f
        for j, (h, _) in enumerate(self.cvs):
            out[1 + j] = E.call_values(h, x_user, rd, chunk, name=f"control_variates[{j}]")
        return mag.see(out)

    _kf = None

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_kf", None)
        return state

    def evaluate(self, rd, buf, chunk, mag):
        xt, xt2 = buf
        ds, dist = self.width, self.dist
        xf = self.gathered(rd, xt, ds)
        xu = dist._to_user_dtype(xf.reshape((rd.total,) + dist.draw_shape))
        F = self.padded("F", self.offset_rows, rd)
        F[:, rd.index] = self._values(rd, xu, xf, chunk, mag)
        if not self.antithetic:
            return (F, F), [F]
        xm = dist.mirror(xu)
        F2 = self.padded("F2", self.offset_rows, rd)
        F2[:, rd.index] = self._values(rd, xm, xm.reshape(rd.total, ds), chunk, mag)
        o = 0
        for r, m in enumerate(rd.rows):
            xt2[r, : ds * m] = xm.reshape(rd.total, ds)[o: o + m].T.ravel()
            o += m
        return (F, F2), [F, F2]

    def accumulate(self, rd, buf, values, threads, stats, shifts):
        R = len(rd.blocks)
        (xt, xt2), (F, F2) = buf, values
        _vr.acc_score(*self.table, rd.blocks, rd.slots, rd.n, rd.B, rd.n_streams, threads,
                      self.width, xt[:R], xt2[:R], F, F2, bool(self.antithetic), True, 1, stats,
                      shifts, kd=self.dist._table_kernel_dist())
