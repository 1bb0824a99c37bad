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
    """A {param: array} dict -> the flat coordinate vector (score order).

    Parameters
    ----------
    dist : Distribution or Joint
        The distribution whose score layout is used.
    grads : dict of str to array_like
        A value for every parameter, broadcastable to the parameter's shape.
    what : str
        The argument's name, for the error messages.

    Returns
    -------
    numpy.ndarray, shape (P,)
        The values in the flat coordinate order (``GradientEstimate.coordinates``).

    Raises
    ------
    TypeError
        ``grads`` not a dict.
    ValueError
        An unknown or missing parameter, a non-finite value, or one that does
        not broadcast to the parameter's shape.

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> from mcscore.variance_reduction import flat_coords
    >>> q = mc.Normal(loc=np.zeros(2), scale=1.0)
    >>> flat_coords(q, {"loc": [1.0, 2.0], "scale": 3.0}, "g")
    array([1., 2., 3.])
    """
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


def _per_param(dist, tang, weights):
    """{param: sum over the draw coordinates c it reaches of weights[c] *
    tang[param][c]} (a tangent per draw coordinate -> the parameter's shape)."""
    grads = {}
    for name, t in tang.items():
        pshape = dist._params[name].shape
        idx = index_map(pshape, dist.draw_shape)
        size = int(np.prod(pshape, dtype=np.int64))
        grads[name] = np.bincount(idx, weights=(weights * np.asarray(t, float)).ravel(),
                                  minlength=size).reshape(pshape)
    return grads


def _expansion_point(dist, grad_f, name="delta"):
    """(mu = E[x], grad_f(mu)) of the Taylor control variates."""
    if grad_f is None:
        raise TypeError(f"control variate {name!r} needs grad_f (the gradient of f)")
    tang = dist.mean_tangents()
    mu = np.broadcast_to(np.asarray(dist.mean, float), dist.draw_shape)
    g = E.call_grad(grad_f, mu[None].copy(), None, 1).reshape(dist.draw_shape)
    return tang, mu, g


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
    mu = np.concatenate([np.broadcast_to(np.asarray(c.mean, float), c.draw_shape).ravel()
                         for _, c, _ in parts]).reshape(dist.draw_shape)
    if E.is_joint(dist):
        grad_f = E.JointGrad(grad_f, dist)
    g = E.call_grad(grad_f, mu[None].copy(), None, 1).reshape(dist.draw_shape)
    grads = {}
    for prefix, c, off in parts:
        gc = g.ravel()[off:off + c.draw_size].reshape(c.draw_shape)
        for name, v in _per_param(c, c.mean_tangents(), gc).items():
            grads[prefix + name] = v
    gflat = g.ravel()
    muflat = mu.ravel()

    def h(x):
        return (np.asarray(x, float).reshape(len(x), -1) - muflat) @ gflat

    return h, grads


def _cv_kinds(control_variates):
    """'delta' (a built-in one: 'delta', 'delta2', ('delta2', H): h takes the
    flat draw) or 'pair' (the user's h) for each control variate, in
    _parse_cvs's order."""
    if control_variates is None:
        return []
    if isinstance(control_variates, (str, tuple)) or callable(control_variates):
        control_variates = [control_variates]
    return ["delta" if isinstance(cv, str) or (isinstance(cv, tuple) and cv
                                                and isinstance(cv[0], str)) else "pair"
            for cv in control_variates]


def variance_tangents(dist):
    """{param: d Var[x_c] / d param} per draw coordinate c, for the families
    whose coordinates are independent (the second-order delta method)."""
    b = dist._draw_broadcast
    fam = type(dist).__name__
    if fam == "Normal":
        return {"loc": b(0.0), "scale": b(2 * dist.scale)}
    if fam == "LogNormal":
        mu, s = dist.loc, dist.scale
        var = np.expm1(s * s) * np.exp(2 * mu + s * s)
        return {"loc": b(2 * var), "scale": b(2 * s * np.exp(2 * mu + 2 * s * s) + 2 * s * var)}
    if fam == "Laplace":
        return {"loc": b(0.0), "scale": b(4 * dist.scale)}
    if fam == "Exponential":
        return {"rate": b(-2 / dist.rate**3)}
    if fam == "Gamma":
        a, r = dist.concentration, dist.rate
        return {"concentration": b(1 / r**2), "rate": b(-2 * a / r**3)}
    if fam == "Poisson":
        return {"rate": b(1.0)}
    if fam == "Bernoulli":
        p, q = dist._pq()
        dv = (q - p) * (p * q if dist._which == "logits" else 1.0)
        return {dist._which: b(dv)}
    raise ValueError("control variate 'delta2' needs the variance tangents of the family: "
                     "Normal, LogNormal, Laplace, Exponential, Gamma, Poisson, Bernoulli; got "
                     f"{fam}")


def _hessian_at(grad_f, mu):
    """The Hessian of f at mu by central differences of grad_f (one call
    on 2 D points), symmetrised.  The control variate built on it is exact
    whatever its error: its mean gradient is computed for the H it uses."""
    D = mu.size
    h = 1e-5 * np.maximum(1.0, np.abs(mu.ravel()))
    pts = np.repeat(mu.reshape(1, D), 2 * D, 0)
    pts[np.arange(D), np.arange(D)] += h
    pts[D + np.arange(D), np.arange(D)] -= h
    g = E.call_grad(grad_f, pts.reshape((2 * D,) + mu.shape), None, 2 * D)
    H = (g[:D] - g[D:]) / (2 * h[:, None])
    return 0.5 * (H + H.T)


def _delta2_cv(dist, grad_f, hess):
    """The second-order delta method: h(x) = g . (x - mu) + 1/2 (x - mu)' H
    (x - mu), g = grad_f(mu), H the Hessian of f at mu (by differences of
    grad_f) or the user's (an array (D, D) or a callable mu -> array).  For
    independent coordinates d E[h] / d theta = g . d mu / d theta + 1/2
    sum_c H_cc d Var[x_c] / d theta (the expansion point held fixed)."""
    tang, mu, g = _expansion_point(dist, grad_f, "delta2")
    vt = variance_tangents(dist)
    D = mu.size
    if hess is None:
        H = _hessian_at(grad_f, mu)
    else:
        H = hess(mu.copy()) if callable(hess) else hess
        H = V.as_real_array("control variate 'delta2' Hessian", H)
        if H.shape != (D, D) or not np.isfinite(H).all():
            raise ValueError(f"control variate 'delta2': the Hessian must be a finite ({D}, {D}) "
                             f"array (draw size {D}), got shape {H.shape}")
    g1 = _per_param(dist, tang, g)
    g2 = _per_param(dist, vt, 0.5 * np.diag(H).reshape(dist.draw_shape))
    grads = {k: g1[k] + g2[k] for k in g1}
    gflat, muflat = g.ravel(), mu.ravel()

    def h(x):
        d = np.asarray(x, float).reshape(len(x), -1) - muflat
        return d @ gflat + 0.5 * np.einsum("mi,ij,mj->m", d, H, d)

    return h, grads


def _fixed_coefficient(dist, beta, where):
    """A control variate's fixed coefficient: a number, or per gradient
    coordinate a dict {param: array}; returns a flat vector."""
    if isinstance(beta, dict):
        return flat_coords(dist, beta, f"{where} coefficient")
    b = V.as_real_array(f"{where} coefficient", beta)
    if b.ndim != 0 or not np.isfinite(b):
        raise ValueError(f"{where}: the fixed coefficient must be a finite number or a dict "
                         f"{{parameter name: array}}, got {beta!r}")
    dist._kernel_dist()
    return np.full(dist._table["n_coords"], float(b))


def _parse_cvs(dist, control_variates, grad_f):
    """[(h, flat d E[h] / d theta, flat fixed coefficient or None)]."""
    if control_variates is None:
        return []
    if isinstance(control_variates, (str, tuple)) or callable(control_variates):
        control_variates = [control_variates]
    if not isinstance(control_variates, (list, tuple)):
        raise TypeError("control_variates must be 'delta', 'delta2', a pair (h, grad_mean), a "
                        "triple (h, grad_mean, coefficient) or a list of them, got "
                        f"{type(control_variates).__name__}")
    out = []
    for j, cv in enumerate(control_variates):
        where = f"control_variates[{j}]"
        beta = None
        if isinstance(cv, str):
            if cv not in ("delta", "delta2"):
                raise ValueError(f"{where}: unknown built-in control variate {cv!r}; "
                                 "the built-in ones are 'delta' and 'delta2' (need grad_f)")
            h, grads = _delta_cv(dist, grad_f) if cv == "delta" else _delta2_cv(dist, grad_f,
                                                                                None)
        elif isinstance(cv, tuple) and len(cv) == 2 and isinstance(cv[0], str) and \
                cv[0] == "delta2":
            h, grads = _delta2_cv(dist, grad_f, cv[1])
        elif isinstance(cv, tuple) and len(cv) in (2, 3):
            h, grads = cv[:2]
            if not callable(h):
                raise TypeError(f"{where}: h must be a vectorised callable, got "
                                f"{type(h).__name__}")
            if callable(grads):
                grads = grads(dist)
            if len(cv) == 3:
                if not E.is_joint(dist):
                    dist._kernel_dist()  # the coordinate layout (_coord_slices)
                names = list(dist._coord_slices)
                if not isinstance(grads, dict) or set(grads) != set(names):
                    raise TypeError(
                        f"{where}: a triple (h, grad_mean, coefficient) needs grad_mean as a "
                        f"dict with the gradient for every parameter {names}, got {grads!r}")
                beta = _fixed_coefficient(dist, cv[2], where)
        else:
            raise TypeError(f"{where} must be 'delta', 'delta2', ('delta2', H), a pair (h, "
                            "grad_mean) or a triple (h, grad_mean, coefficient) with h a "
                            "vectorised callable, grad_mean the gradient of E[h] as a dict "
                            "{parameter name: array} (or a callable dist -> dict) and a fixed "
                            "coefficient (a number or a dict; not fitted)")
        out.append((h, flat_coords(dist, grads, f"{where} grad_mean"), beta))
    if len(out) > 14:
        raise ValueError("at most 14 control variates")
    return out


def score_vr(f, dist, n, *, rng, baseline, control_variates, antithetic, grad_f, n_threads,
             chunk_size, n_streams, block_size, client=None):
    """score_grad with control variates and/or antithetic pairs.

    Called by :func:`~mcscore.score_grad` when ``control_variates`` or
    ``antithetic`` is given; use that.

    Parameters
    ----------
    f : callable, Integrand or LowLevelCallable
        The integrand.
    dist : Distribution or Joint
        The distribution.
    n : int
        Draws (>= 2; >= 4 with antithetic pairs).
    rng, baseline, control_variates, antithetic, grad_f, client
        As in :func:`~mcscore.score_grad`.
    n_threads, chunk_size, n_streams, block_size
        As in :func:`~mcscore.score_grad`.

    Returns
    -------
    GradientEstimate
        The variance-reduced estimate.

    Raises
    ------
    TypeError
        ``antithetic`` not a bool, or a control variate of the wrong kind.
    ValueError
        ``baseline="loo"`` (not combinable), antithetic pairs for a family
        without a mirror, an unknown built-in control variate.

    Examples
    --------
    >>> import mcscore as mc
    >>> q = mc.Normal(loc=1.0, scale=1.0)
    >>> res = mc.score_grad(lambda x: x ** 2, q, 10_000, rng=0, control_variates="delta",
    ...                     grad_f=lambda x: 2 * x)
    >>> bool(abs(res.grad["loc"] - 2.0) < 5 * res.stderr["loc"])      # d E[x^2] / d loc = 2 loc
    True
    """
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
        cvs = [(h if j == "delta" else E.JointF(h, dist), gm, beta)
               for (h, gm, beta), j in zip(cvs, _cv_kinds(control_variates))]
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
    coef = np.full((P, L), np.nan)
    coef[:, 0] = 1.0
    if not add_score:
        coef[:, J] = 0.0
    mu = np.zeros((P, L))
    for j, (_, gm, beta) in enumerate(cvs):
        mu[:, 1 + j] = gm
        if beta is not None:  # a fixed coefficient: f s - beta (h s - grad E[h])
            coef[:, 1 + j] = -beta
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
        for j, (h, *_) in enumerate(self.cvs):
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
