"""The ELBO and its gradient: the score-function, pathwise and mixed
estimators (:func:`elbo_grad`), and the randomised quasi-Monte Carlo
sampler's check."""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from .. import _qmc
from .. import _validation as V
from .._algebra import baselined_terms, check_baseline
from ..distributions import Distribution
from ..result import GradientEstimate, terms_cov
from ..score import samples_estimate
from ._optim import _Layout
from ._q import (
    _check_q, _from_unconstrained, _jacobian, _log_q, _replace, _to_unconstrained, transforms,
)
from ._target import _Objective, _call_log_joint


ESTIMATORS = ("score", "pathwise", "mixed")


def _split(vec: Any, shapes: Any) -> Any:
    return _Layout(shapes).split(vec)


def _estimate_from_scores(q: Any, x: Any, fx: Any, baseline: Any, method: Any) -> Any:
    """The score-function estimate from q's own ``score`` (any q with the
    capabilities, e.g. a Joint whose draws are a dict)."""
    m = len(fx)
    sc = q.score(x)
    shapes = {k: np.shape(v)[1:] for k, v in sc.items()}
    S = np.concatenate([np.asarray(v, dtype=float).reshape(m, -1) for v in sc.values()], axis=1)
    y = baselined_terms(fx, S, baseline)
    with np.errstate(over="ignore", invalid="ignore"):
        grad, var = y.mean(0), y.var(0, ddof=1)
        vvar = float(fx.var(ddof=1))
    if not (np.isfinite(grad).all() and np.isfinite(var).all() and np.isfinite(vvar)):
        raise FloatingPointError("the ELBO gradient overflowed ((log p - log q) x score beyond "
                                 "the range of a double)")
    se = np.sqrt(var / m)
    return GradientEstimate(_split(grad, shapes), _split(se, shapes), _split(var, shapes),
                            float(fx.mean()), math.sqrt(vvar / m), m, baseline=baseline,
                            method=method, value_variance=vvar, info={"f": "samples"},
                            cov=terms_cov(y))


def _score_part(obj: Any, idx: Any, q: Any, n: Any, gen: Any, baseline: Any) -> Any:
    x = q.sample(n, gen)
    lq = _log_q(q, x)  # first: an edge draw of q is q's fault, not log_joint's
    fx = obj.value(x, idx) - lq
    if isinstance(q, Distribution) and not isinstance(x, dict):
        # log q is finite at every draw (checked just above): x is in q's support
        res = samples_estimate(q, x, fx, baseline, in_support=True)
    else:
        res = _estimate_from_scores(q, x, fx, baseline, "score")
    res.method = "score (ELBO)"
    return res


def _has_entropy(q: Any) -> Any:
    try:
        h = q.entropy()
    except (AttributeError, NotImplementedError, TypeError, ValueError):
        return False  # no closed form (a Joint: a component without one)
    return np.isfinite(np.asarray(h, dtype=float)).all()


def _entropy_part(q: Any, n: Any, gen: Any) -> Any:
    """H(q) and its gradient (value, grad, variance of the gradient's terms
    per draw, value variance): closed form when q has ``entropy()``, else the
    score-function estimate E[-log q grad log q] on n draws."""
    if _has_entropy(q):
        kinds = transforms(q)
        params = q.params
        grad = {}
        for k, v in params.items():
            u = np.array(_to_unconstrained(kinds[k], v), dtype=float)  # 0-d: an array too
            g = np.empty(u.shape)
            for i in np.ndindex(u.shape):
                h = 1e-5 * max(1.0, abs(float(u[i])))
                side = []
                for s in (h, -h):
                    w = u.copy()
                    w[i] += s
                    side.append(float(np.sum(_replace(q, {k: _from_unconstrained(kinds[k], w)})
                                             .entropy())))
                g[i] = (side[0] - side[1]) / (2 * h)
            grad[k] = g / _jacobian(kinds[k], v)
        zero = {k: np.zeros(np.shape(v)) for k, v in params.items()}
        P = sum(int(np.size(v)) for v in params.values())
        return float(np.sum(q.entropy())), grad, zero, 0.0, np.zeros((P, P))
    x = q.sample(n, gen)
    lq = _log_q(q, x)
    if isinstance(q, Distribution) and not isinstance(x, dict):
        res = samples_estimate(q, x, -lq, "loo", in_support=True)
    else:
        res = _estimate_from_scores(q, x, -lq, "loo", "score")
    return res.value, res.grad, res.variance, res.value_variance, res.cov


def _pathwise_part(obj: Any, idx: Any, q: Any, n: Any, gen: Any) -> Any:
    from ..pathwise import pathwise_grad

    if not (isinstance(q, Distribution) and q.has_rsample):
        raise ValueError(f"estimator='pathwise' needs a reparameterisable q (a family with "
                         f"has_rsample, e.g. Normal, LogNormal, Gamma, Beta); got "
                         f"{type(q).__name__}: use estimator='score'")
    if obj.grad is None:
        raise TypeError("estimator='pathwise' needs grad_log_joint: the gradient of log_joint "
                        "with respect to x (same arguments, returns the shape of x)")
    pw = pathwise_grad(lambda x: obj.value(x, idx), q, n,
                       grad_f=lambda x: obj.gradient(x, idx), rng=gen)
    H, dH, vH, vvH, cH = _entropy_part(q, n, gen)
    grad = {k: pw.grad[k] + dH[k] for k in pw.grad}
    var = {k: pw.variance[k] + vH[k] for k in pw.grad}
    se = {k: np.sqrt(v / n) for k, v in var.items()}
    vvar = pw.value_variance + vvH
    # the two parts use independent draws: their covariances add
    return GradientEstimate(grad, se, var, pw.value + H, math.sqrt(vvar / n), n, baseline=None,
                            method="pathwise (ELBO)", value_variance=vvar,
                            info={"entropy": "closed form" if vvH == 0.0 else "score"},
                            cov=_sum_cov(_cov_or_none(pw), cH))


def _cov_or_none(res: Any) -> Any:
    """res.cov, or None when it cannot be taken (a pathwise estimate whose
    n fills a single stream block: its covariance is by batch means)."""
    try:
        return res.cov
    except ValueError:
        return None


def _sum_cov(a: Any, b: Any) -> Any:
    return None if a is None or b is None else a + b


def _mixed(sf: Any, pw: Any, weights: Any) -> Any:
    """w * score + (1 - w) * pathwise per coordinate (independent draws)."""
    own = _mix_weights(sf, pw)
    if weights is None:
        weights = own
    grad, se, var = {}, {}, {}
    for k in sf.grad:
        w = weights[k]
        grad[k] = w * sf.grad[k] + (1 - w) * pw.grad[k]
        var[k] = w * w * sf.variance[k] + (1 - w) ** 2 * pw.variance[k]
        se[k] = np.sqrt(w * w * sf.stderr[k] ** 2 + (1 - w) ** 2 * pw.stderr[k] ** 2)
    vw = pw.value_stderr ** 2 / (sf.value_stderr ** 2 + pw.value_stderr ** 2) \
        if sf.value_stderr + pw.value_stderr > 0 else 0.5
    value = vw * sf.value + (1 - vw) * pw.value
    vse = math.sqrt(vw * vw * sf.value_stderr ** 2 + (1 - vw) ** 2 * pw.value_stderr ** 2)
    wv = np.concatenate([np.ravel(weights[k]) for k in sf.grad])
    c_sf, c_pw = _cov_or_none(sf), _cov_or_none(pw)
    cov = None if c_sf is None or c_pw is None else (
        wv[:, None] * c_sf * wv[None, :] + (1 - wv)[:, None] * c_pw * (1 - wv)[None, :])
    return GradientEstimate(grad, se, var, value, vse, sf.n + pw.n, baseline=sf.baseline,
                            method="mixed (ELBO)",
                            info={"weights": weights, "plugin_weights": own}, cov=cov)


def _mix_weights(sf: Any, pw: Any) -> Any:
    """Inverse-variance weights of the score estimate, per coordinate."""
    out = {}
    for k in sf.grad:
        a, b = sf.stderr[k] ** 2, pw.stderr[k] ** 2
        with np.errstate(invalid="ignore", divide="ignore"):
            out[k] = np.where(a + b > 0, b / (a + b), 0.5)
    return out


def _check_sampler(sampler: Any, n_randomizations: Any, estimator: Any, obj: Any) -> Any:
    """sampler="sobol" (randomised quasi-Monte Carlo) goes with the score
    estimator on the full log joint."""
    if _qmc.check_sampler(sampler) == "mc":
        _qmc.check_mc_only(sampler, n_randomizations)
    elif estimator != "score" or obj.N is not None:
        raise ValueError("sampler='sobol' supports estimator='score' without data subsampling "
                         f"(got estimator={estimator!r}"
                         f"{', data_size=' + str(obj.N) if obj.N is not None else ''})")
    return sampler


def _elbo_grad(obj: Any, q: Any, n: Any, gen: Any, baseline: Any, estimator: Any,
               weights: Any = None, sampler: Any = "mc", n_randomizations: Any = None) -> Any:
    if sampler == "sobol":
        return _qmc.elbo_grad(obj.log_joint, q, n, rng=gen, baseline=baseline,
                              n_randomizations=n_randomizations, log_q=_log_q,
                              call_log_joint=_call_log_joint)
    idx = obj.minibatch(gen)
    if estimator == "score":
        return _score_part(obj, idx, q, n, gen, baseline)
    if estimator == "pathwise":
        return _pathwise_part(obj, idx, q, n, gen)
    pw = _pathwise_part(obj, idx, q, n, gen)
    sf = _score_part(obj, idx, q, n, gen, baseline)
    return _mixed(sf, pw, weights)


def _check_estimator(estimator: Any) -> Any:
    if not isinstance(estimator, str) or estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(map(repr, ESTIMATORS))}, got "
                         f"{estimator!r}")
    return estimator


def elbo_grad(log_joint: Callable[..., Any], q: Any, n: int, *, rng: Any = None,
              baseline: float | str | None = "loo", estimator: str = "score",
              grad_log_joint: Callable[..., Any] | None = None, data_size: int | None = None,
              batch_size: int | None = None, log_prior: Callable[..., Any] | None = None,
              grad_log_prior: Callable[..., Any] | None = None, sampler: str = "mc",
              n_randomizations: int | None = None) -> GradientEstimate:
    """Estimate of the ELBO and of its gradient w.r.t. q's parameters.

    Parameters
    ----------
    log_joint : callable
        ``log_joint(x)`` for ``x`` of shape ``(n, *q.draw_shape)`` (a dict of
        such arrays for a Joint q) returns shape ``(n,)``: log p(x, data) up
        to a constant.  With ``data_size``: ``log_joint(x, idx)``, the
        log-likelihood of the data points ``idx`` (see the module notes).
    q : Distribution, or an object with the same capabilities (a Joint)
        The variational distribution.
    n : int >= 2
        Draws from q (per estimator: ``"mixed"`` uses 2n).
    rng : None, int, SeedSequence or Generator
    baseline : None, float, "loo" or "optimal"
        As in :func:`mcscore.score_grad_from_samples` (default "loo"); for
        the score-function estimator.
    estimator : "score", "pathwise" or "mixed"
        See the module notes.
    grad_log_joint : callable, optional
        The gradient of log_joint with respect to x (same arguments, returns
        the shape of x); needed by "pathwise" and "mixed".
    data_size, batch_size : int, optional
        Data subsampling: N data points, minibatches of B (default N).
    log_prior, grad_log_prior : callable, optional
        With data subsampling: log p(x) (vectorised, shape (n,)) and its
        gradient in x.
    sampler, n_randomizations
        As in :func:`mcscore.score_grad`: "sobol" draws q by inversion of
        scrambled Sobol' points (randomised quasi-Monte Carlo; "loo" is then
        the mean of the other randomisations); with estimator="score" and
        no data subsampling.

    Returns
    -------
    GradientEstimate
        ``value`` / ``value_stderr``: the ELBO estimate E_q[log p - log q]
        and its standard error; ``grad[name]`` / ``stderr[name]``: its
        gradient with respect to each parameter q was given.

    Raises
    ------
    TypeError
        ``q`` not a distribution, or ``log_joint`` not callable.
    ValueError
        ``n`` below 2, an unknown ``estimator`` or ``sampler``, a missing
        ``grad_log_joint`` for ``"pathwise"`` / ``"mixed"``, a ``log_joint``
        returning values of the wrong shape or not finite.

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> log_joint = lambda x: -0.5 * (x - 1.0) ** 2          # posterior Normal(1, 1)
    >>> res = mc.vi.elbo_grad(log_joint, mc.Normal(loc=0.0, scale=1.0), 10_000, rng=0)
    >>> bool(abs(res.grad["loc"] - 1.0) < 5 * res.stderr["loc"])    # d ELBO / d loc = 1 - loc
    True
    """
    q = _check_q(q)
    obj = _Objective(log_joint, grad_log_joint, data_size, batch_size, log_prior,
                     grad_log_prior)
    baseline = check_baseline(baseline)
    estimator = _check_estimator(estimator)
    sampler = _check_sampler(sampler, n_randomizations, estimator, obj)
    n = V.integer("n", n, minimum=2)
    gen = V.as_generator(rng)
    return _elbo_grad(obj, q, n, gen, baseline, estimator, sampler=sampler,
                      n_randomizations=n_randomizations)
