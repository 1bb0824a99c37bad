"""The pathwise (reparameterisation) estimator: :func:`pathwise_grad`.

A family that can be reparameterised declares it (``has_rsample`` and
``pathwise_spec``: the tangent kind of each parameter, see
``mcscore.distributions``); the engine draws, calls f and grad_f, and the
``_vr`` kernel accumulates ``grad_f(x) . dx/dtheta``.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from . import _engine as E
from . import _qmc
from . import _vr
from . import variance_reduction as VR
from ._features import FeatureJob, run_features
from .distributions import Distribution, index_map
from .result import GradientEstimate

__all__ = ["pathwise_grad", "pathwise_cv_grad"]


def _pathwise_table(dist: Any) -> Any:
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


def pathwise_grad(f: Any, dist: Distribution, n: int, *, grad_f: Callable[..., Any],
                  rng: Any = None, n_threads: int | None = None, chunk_size: int | None = None,
                  n_streams: int = E.DEFAULT_STREAMS, block_size: int | None = None,
                  client: Any = None, sampler: str = "mc",
                  n_randomizations: int | None = None) -> GradientEstimate:
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
    dist : a family with ``has_rsample`` (Normal, LogNormal, Exponential,
        Gamma, Beta, Dirichlet, Laplace, HalfNormal, Chi2, InverseGamma,
        Gumbel, Weibull, Uniform, Cauchy, HalfCauchy)
    n : int >= 2
    grad_f : callable
        Vectorised gradient of f: returns the shape of x.
    rng, n_threads, chunk_size, n_streams, block_size
        As in :func:`mcscore.score_grad` (bit-identical for any n_threads).
        Normal, LogNormal, Exponential and Gamma use the same draws as
        ``score_grad`` with the same seed and plan.
    client : dask.distributed.Client, optional
        Run on Dask, bit-identical to the local run (as in ``score_grad``).
    sampler, n_randomizations
        As in :func:`mcscore.score_grad`: "sobol" draws by inversion of
        scrambled Sobol' points (Beta and Dirichlet as normalised Gamma
        quantiles).

    Returns
    -------
    GradientEstimate (method "pathwise"); ``variance`` is the per-draw variance.

    Raises
    ------
    TypeError
        ``grad_f`` missing, or ``f``, ``dist`` or an option of the wrong type.
    ValueError
        A family without a reparameterisation (discrete families: use
        :func:`score_grad`), ``grad_f`` returning the wrong shape, or
        non-finite values of f or grad_f.

    Examples
    --------
    >>> import mcscore as mc
    >>> q = mc.Normal(loc=1.0, scale=2.0)
    >>> res = mc.pathwise_grad(lambda x: x ** 2, q, 1000, grad_f=lambda x: 2 * x, rng=0)
    >>> exact = {"loc": 2.0, "scale": 4.0}               # d (loc^2 + scale^2)
    >>> all(abs(res.grad[p] - exact[p]) < 5 * res.stderr[p] for p in exact)
    True
    """
    E.check_distribution(dist)
    dist.require("rsample")
    f = E.check_callable("f", f)
    grad_f = E.check_callable("grad_f", grad_f)
    if _qmc.check_sampler(sampler) == "sobol":
        return _qmc.pathwise_grad(f, dist, n, grad_f=grad_f, rng=rng, n_threads=n_threads,
                                  n_randomizations=n_randomizations, client=client)
    _qmc.check_mc_only(sampler, n_randomizations)
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

    def __init__(self, f: Any, grad_f: Any, dist: Any) -> None:
        self.f, self.grad_f, self.dist = f, grad_f, dist
        self.width = dist.draw_size
        self.table = _pathwise_table(dist)
        self.P = len(self.table[0]) - 1
        self.has_aux = dist.rsample_through_gammas
        # the parameters of tangent kinds that read them (MultivariateNormal)
        self.prm = getattr(dist, "pathwise_params", lambda: None)()

    def buffers(self, R: int, B: int) -> Any:
        return np.empty((R, (3 if self.has_aux else 1) * self.width * B))

    def draw(self, rd: Any, bitgens: Any, threads: Any, buf: Any, shared: bool = False) -> Any:
        self.prepare(rd, bitgens, threads, buf,
                     _vr.PREP_GAMMAS if self.has_aux else _vr.PREP_DRAW, np.zeros(1))

    def evaluate(self, rd: Any, buf: Any, chunk: Any, mag: Any) -> Any:
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
        return E.values_and_grads(self.f, self.grad_f, x, rd, chunk, mag), ()

    def accumulate(self, rd: Any, buf: Any, values: Any, threads: Any, stats: Any,
                   shifts: Any) -> None:
        fv, G = values
        _vr.acc_pathwise(*self.table, rd.blocks, rd.slots, rd.n, rd.B, rd.n_streams, threads,
                         self.width, self.has_aux, buf[:len(rd.blocks)], G, fv, stats, shifts,
                         self.prm)


# ---------------------------------------------------------------------------
# control variates for the pathwise estimator
# ---------------------------------------------------------------------------

def _tangents(table: Any, x: Any) -> Any:
    """dx_col / dtheta of every term of the reparameterisation table at the
    draws x (m, D), by the kernels' tangent formulas (families drawn
    without auxiliary Gamma variates)."""
    _, kind, col, ta, tb = table
    xc = x[:, col]
    out = np.empty_like(xc)
    for k in np.unique(kind):
        sel = kind == k
        xs, a, b = xc[:, sel], ta[sel], tb[sel]
        if k == _vr.TK_ONE:
            out[:, sel] = 1.0
        elif k == _vr.TK_NSCALE:
            out[:, sel] = (xs - a) / b
        elif k == _vr.TK_LNLOC:
            out[:, sel] = xs
        elif k == _vr.TK_LNSCALE:
            out[:, sel] = xs * (np.log(xs) - a) / b
        elif k == _vr.TK_NEG_X_OVER:
            out[:, sel] = -xs / a
        elif k == _vr.TK_GAMMA_CONC:
            out[:, sel] = _vr.dgamma_dalpha_array(xs * b, a) / b
        else:
            raise ValueError("pathwise_cv_grad supports the families reparameterised without "
                             "auxiliary Gamma variates (not Beta, Dirichlet)")
    return out


def _parse_pathwise_cvs(dist: Any, control_variates: Any, grad_f: Any) -> Any:
    """[(grad_h, flat d E[h] / d theta, fixed coefficient or None)]: 'delta'
    (h = grad_f(mu) . (x - mu), grad_h constant), or pairs / triples
    (grad_h, grad_mean[, coefficient])."""
    if isinstance(control_variates, (str, tuple)) or callable(control_variates):
        control_variates = [control_variates]
    if not isinstance(control_variates, (list, tuple)) or not control_variates:
        raise TypeError("control_variates must be 'delta', a pair (grad_h, grad_mean), a triple "
                        "(grad_h, grad_mean, coefficient) or a non-empty list of them")
    out = []
    for j, cv in enumerate(control_variates):
        where = f"control_variates[{j}]"
        beta = None
        if isinstance(cv, str) and cv == "delta":
            tang, _, g = VR._expansion_point(dist, grad_f)
            grads = VR._per_param(dist, tang, g)
            gh = (lambda g: lambda x: np.broadcast_to(g, x.shape))(g)
        elif isinstance(cv, tuple) and len(cv) in (2, 3) and callable(cv[0]):
            gh, grads = cv[:2]
            if callable(grads):
                grads = grads(dist)
            if len(cv) == 3:
                beta = VR._fixed_coefficient(dist, cv[2], where)
        else:
            raise TypeError(f"{where} must be 'delta', a pair (grad_h, grad_mean) or a triple "
                            "(grad_h, grad_mean, coefficient): grad_h the vectorised gradient "
                            "of the control variate h, grad_mean the gradient of E[h] as a "
                            "dict {parameter name: array} (or a callable dist -> dict)")
        out.append((gh, VR.flat_coords(dist, grads, f"{where} grad_mean"), beta))
    if len(out) > 14:
        raise ValueError("at most 14 control variates")
    return out


class PathwiseCVJob(PathwiseJob):
    """pathwise_grad's draws; per coordinate q the features grad_f . dx/dq
    and grad_h_j . dx/dq of each control variate, summed per stream in
    NumPy (``mcscore._features``)."""

    what = None
    accumulate = FeatureJob.accumulate

    def __init__(self, f: Any, grad_f: Any, dist: Any, cvs: Any) -> None:
        super().__init__(f, grad_f, dist)
        if self.has_aux:
            raise ValueError("pathwise_grad's control variates support the families "
                             "reparameterised without auxiliary Gamma variates (not "
                             f"{type(dist).__name__})")
        self.cvs = cvs
        self.L = 1 + len(cvs)

    def evaluate(self, rd: Any, buf: Any, chunk: Any, mag: Any) -> Any:
        dist = self.dist
        x = self.gathered(rd, buf, self.width).reshape((rd.total,) + dist.draw_shape)
        m = rd.total
        v = mag.see(E.call_values(self.f, x, rd, chunk))
        T = _tangents(self.table, x.reshape(m, -1))
        t_start, _, col = self.table[:3]
        coord = np.repeat(np.arange(self.P), np.diff(t_start))
        Z = np.zeros((m, self.P, self.L))
        grads = [self.grad_f] + [gh for gh, *_ in self.cvs]
        for l, gfun in enumerate(grads):
            name = "grad_f" if l == 0 else f"control_variates[{l - 1}] grad_h"
            G = mag.see(E.call_grad(gfun, x, rd, chunk, name=name), "grad_f")
            np.add.at(Z[:, :, l], (slice(None), coord), G[:, col] * T)
        return (v, Z), ()


def pathwise_cv_grad(f: Any, dist: Distribution, n: int, *, grad_f: Callable[..., Any],
                     control_variates: Any, rng: Any = None, n_threads: int | None = None,
                     chunk_size: int | None = None, n_streams: int = E.DEFAULT_STREAMS,
                     block_size: int | None = None, client: Any = None) -> GradientEstimate:
    """The pathwise estimator with control variates: averages

        grad_f(x) . dx/dtheta - sum_j beta_j (grad_h_j(x) . dx/dtheta - grad E[h_j])

    per coordinate, with beta_j fitted to minimise the variance and
    cross-fitted across streams (unbiased), or fixed (a triple's third
    entry).  The draws are pathwise_grad's (the same seed gives the same
    draws).

    Parameters
    ----------
    control_variates : list of
        * ``"delta"``: h(x) = grad_f(mu) . (x - mu), mu = E[x] (its
          pathwise term is grad_f(mu) . dx/dtheta);
        * ``(grad_h, grad_mean)``: grad_h the vectorised gradient of h (the
          shape of x), grad_mean d E[h] / d theta as ``{param: array}`` (or a
          callable dist -> dict);
        * ``(grad_h, grad_mean, coefficient)``: a fixed coefficient (a number
          or ``{param: array}``), not fitted.
    Other parameters as in :func:`pathwise_grad`.

    Returns
    -------
    GradientEstimate (method "pathwise+cv"); ``info["coefficients"]`` holds the
    coefficients used (averaged over streams).

    Raises
    ------
    TypeError
        A control variate that is not ``"delta"``, a pair or a triple.
    ValueError
        As :func:`pathwise_grad` (a family without a reparameterisation, f or
        grad_f of the wrong shape or non-finite).

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> q = mc.Normal(loc=1.0, scale=2.0)
    >>> f, grad_f = (lambda x: x ** 2 + np.sin(x)), (lambda x: 2 * x + np.cos(x))
    >>> res = mc.pathwise_cv_grad(f, q, 1000, grad_f=grad_f, control_variates=["delta"], rng=0)
    >>> exact = 2.0 + np.exp(-2.0) * np.cos(1.0)        # d E[f] / d loc
    >>> bool(abs(res.grad["loc"] - exact) < 5 * res.stderr["loc"])
    True
    """
    E.check_distribution(dist)
    dist.require("rsample")
    f = E.check_callable("f", f)
    grad_f = E.check_callable("grad_f", grad_f)
    cvs = _parse_pathwise_cvs(dist, control_variates, grad_f)
    job = PathwiseCVJob(f, grad_f, dist, cvs)
    coef = np.full((job.P, job.L), np.nan)
    coef[:, 0] = 1.0
    mu = np.zeros((job.P, job.L))
    for j, (_, gm, beta) in enumerate(cvs):
        mu[:, 1 + j] = gm
        if beta is not None:
            coef[:, 1 + j] = -beta
    est, plan, mag = run_features(job, dist, n, rng=rng, n_streams=n_streams, block_size=block_size,
                             n_threads=n_threads, chunk_size=chunk_size, client=client, coef=coef,
                             mu=mu, terms="grad_f * dx/dtheta")
    grand, se, var, value, vse, vvar, nn, w = est
    info = {**plan.info(), "f": "python", "control_variates": len(cvs),
            "coefficients": -w[..., 1:].mean(0)}
    return E.gradient_estimate(dist, grand, se, var, value, vse, vvar, nn, "pathwise+cv", info,
                               batch=est.batch)
