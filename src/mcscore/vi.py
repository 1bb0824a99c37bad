"""Black-box variational inference with the score-function and pathwise
gradients.

Given an unnormalised log joint density log p(x, data) (a Python function,
vectorised over draws) and a variational family q(x; theta), the evidence
lower bound

    ELBO(theta) = E_q[log p(x, data) - log q(x; theta)]

has the score-function gradient (Ranganath, Gerrish & Blei, "Black Box
Variational Inference", AISTATS 2014)

    grad ELBO = E_q[(log p(x, data) - log q(x; theta)) grad log q(x; theta)]

(the term E_q[grad log q] = 0 drops), which needs only draws from q, its log
density and its score: :func:`elbo_grad` is :func:`mcscore.score_grad_from_samples`
with f = log p - log q, and inherits its baselines ("loo" is the default:
the leave-one-out baseline that keeps the estimate unbiased and removes most
of its variance).

**Which q.**  Any mcscore family that declares ``vi_transforms`` (every
built-in one), and any object with the same capabilities -- ``sample(n,
rng)``, ``log_prob(x)``, ``score(x)``, ``params``, ``vi_transforms()`` and
``with_params(params)`` (a new q with some parameters replaced) -- such as a
``Joint`` of families: its draws may be a dict of arrays keyed by component
(``log_joint`` then receives that dict) and its parameters are keyed
``"component.param"``.

**Estimators** (``estimator=``):

* ``"score"`` (default): the score-function gradient above, with a baseline.
* ``"pathwise"``: for a reparameterisable q (``has_rsample``: Normal,
  LogNormal, Exponential, Gamma, Beta, Dirichlet, ...), the gradient of
  E_q[log p] by the reparameterisation x = g(theta, eps)
  (:func:`mcscore.pathwise_grad`, needs ``grad_log_joint``: the gradient of
  log p with respect to x) plus the gradient of q's entropy H(q): exact when
  the family has a closed-form ``entropy()`` (differentiated by central
  differences in the unconstrained coordinates, an O(h^2) ~ 1e-10 relative
  error), otherwise the score-function estimate E[-log q grad log q] from n
  further draws (leave-one-out baseline).
* ``"mixed"``: both on independent draws (n each), combined per coordinate
  as ``w * score + (1 - w) * pathwise`` with the inverse-variance weight
  ``w = v_pw / (v_score + v_pw)``.  :func:`fit` takes the weights from the
  previous step's variances (so each step's gradient stays unbiased);
  :func:`elbo_grad` uses this call's own variances (plug-in weights: a bias
  of order 1/n, far below the standard error).

**Data subsampling.**  With ``data_size=N`` and ``batch_size=B``,
``log_joint(x, idx)`` is the log-likelihood of the minibatch of data indices
``idx`` (B distinct indices drawn uniformly each step) and ``log_prior(x)``
the log prior: log p(x, data) is estimated by
``log_prior(x) + N / B * log_joint(x, idx)``, unbiased for every x, so the
ELBO gradient stays unbiased (the minibatch is shared by the step's n draws;
the reported standard errors are conditional on it).

:func:`fit` maximises the ELBO with Adam on *unconstrained* parameters:
positive parameters (scale, rate, concentration, ...) are optimised on the
log scale, probabilities on the logit scale (Categorical / Multinomial probs
on the log scale), real ones (loc, logits) as they are.  The gradient is
carried to those coordinates by the chain rule.  The step size ``lr`` is a
number or a schedule: any callable of the step t = 1, 2, ... returning the
step size (:func:`inverse_time` and :func:`cosine` are standard ones).  The
returned distribution is the Polyak-Ruppert average (in the unconstrained
coordinates) of the iterates of the last ``average`` fraction of the steps,
which removes most of the noise a constant step size leaves.  A step so
large that it leaves q where its gradient cannot be estimated raises a
ValueError saying so (use a smaller lr or a decaying schedule).

    >>> import numpy as np, mcscore as mc
    >>> y = np.array([0.8, 1.3, 0.4])
    >>> def log_joint(x):                     # x: (n, 1); prior N(0, 1), y ~ N(x, 1)
    ...     mu = x[:, 0]
    ...     return -0.5 * mu**2 - 0.5 * ((y[None, :] - mu[:, None])**2).sum(1)
    >>> res = mc.vi.fit(log_joint, mc.Normal(np.zeros(1), np.ones(1)), steps=1000,
    ...                 n=100, lr=0.05, rng=0, progress=False)
    >>> res.q.loc, res.q.scale        # doctest: +SKIP
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _qmc
from . import _validation as V
from . import _kernels as K
from ._algebra import RESOLUTION, TINY_MEAN_SQUARE, baselined_terms, check_baseline, check_range
from ._config import blas_single_threaded
from ._progress import simple_bar
from .distributions import Distribution
from .distributions._base import _structure
from .result import GradientEstimate, terms_cov
from .score import samples_estimate

__all__ = ["elbo_grad", "fit", "VIResult", "transforms", "Adam", "inverse_time", "cosine",
           "ESTIMATORS"]

ESTIMATORS = ("score", "pathwise", "mixed")

def transforms(q: Any) -> dict[str, str]:
    """{param name: "identity" | "log" | "logit" | "tril_log_diag"}: the
    unconstrained coordinates :func:`fit` optimises for each of q's
    parameters (the family's ``vi_transforms``).  "tril_log_diag" is a
    Cholesky factor (MultivariateNormal's scale_tril): its entries below the
    diagonal as they are, the log of its diagonal, the zeros above the
    diagonal fixed (their gradient is 0).

    Parameters
    ----------
    q : Distribution or Joint
        The variational distribution.

    Returns
    -------
    dict of str to str

    Raises
    ------
    TypeError
        ``q`` that is not an mcscore distribution.

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> mc.vi.transforms(mc.Normal(0.0, 1.0))
    {'loc': 'identity', 'scale': 'log'}
    >>> mc.vi.transforms(mc.MultivariateNormal(np.zeros(2), scale_tril=np.eye(2)))["scale_tril"]
    'tril_log_diag'
    """
    if not callable(getattr(q, "vi_transforms", None)):
        raise TypeError(f"q must be an mcscore distribution, got {type(q).__name__}")
    return q.vi_transforms()


def _diag_mask(v: Any) -> Any:
    """True on the diagonal of the last two axes of v."""
    return np.eye(v.shape[-1], dtype=bool)


def _to_unconstrained(kind: Any, v: Any) -> Any:
    if kind == "log":
        return np.log(v)
    if kind == "logit":
        return np.log(v) - np.log1p(-v)
    if kind == "tril_log_diag":
        return np.where(_diag_mask(v), np.log(np.where(_diag_mask(v), v, 1.0)), np.tril(v))
    return np.array(v, dtype=float)


def _from_unconstrained(kind: Any, u: Any) -> Any:
    if kind == "log":
        return np.exp(u)
    if kind == "logit":
        return 1.0 / (1.0 + np.exp(-u))
    if kind == "tril_log_diag":
        return np.where(_diag_mask(u), np.exp(np.where(_diag_mask(u), u, 0.0)), np.tril(u))
    return np.array(u, dtype=float)


def _jacobian(kind: Any, v: Any) -> Any:
    """d(param)/d(unconstrained) at the parameter value v (elementwise: each
    transform maps every entry by itself)."""
    if kind == "log":
        return v
    if kind == "logit":
        return v * (1.0 - v)
    if kind == "tril_log_diag":
        return np.where(_diag_mask(v), v, np.tril(np.ones_like(v), -1))
    return np.ones_like(v)


def _rebuild(q: Any, params: Any) -> Any:
    """A distribution of q's family with some parameters replaced."""
    kwargs = dict(q._all_params())
    kwargs.update(params)
    return type(q)(**kwargs)


def _log_q(q: Any, x: Any) -> Any:
    """log q(x) per draw; raises when q's own density is not finite at one of
    its draws (the ELBO's integrand would be infinite there)."""
    lp = q.log_prob(x)
    out = lp.reshape(lp.shape[0], -1).sum(1)
    bad = ~np.isfinite(out)
    if bad.any():
        i = int(np.argmax(bad))
        raise FloatingPointError(
            f"log q(x) = {out[i]} at draw {i} (x = {x[i]!r}) of q = {q!r}: q's density is not "
            "finite at a draw it made itself (e.g. a Gamma, Beta or Dirichlet draw that "
            "rounded to the edge of the support for a tiny concentration), so the ELBO's "
            "integrand log p - log q is infinite; keep q's concentrations away from 0")
    return out


# ---------------------------------------------------------------------------
# q: a family or any object with the same capabilities (a Joint)
# ---------------------------------------------------------------------------

_Q_CAPABILITIES = ("sample", "log_prob", "score", "params", "vi_transforms", "with_params")


def _check_q(q: Any) -> Any:
    if isinstance(q, Distribution):
        return q
    if isinstance(q, type) or not all(hasattr(q, a) for a in _Q_CAPABILITIES):
        raise TypeError(f"q must be an mcscore distribution (or an object with "
                        f"{', '.join(_Q_CAPABILITIES)}, such as a Joint), got "
                        f"{type(q).__name__}")
    return q


def _replace(q: Any, params: Any) -> Any:
    """q with some parameters replaced: the object's own ``with_params`` when
    it has one (a Joint), else the family's rebuild."""
    with_params = getattr(q, "with_params", None)
    if callable(with_params):
        return with_params(params)
    return _rebuild(q, params)


def _n_draws(x: Any) -> Any:
    if isinstance(x, dict):
        return len(next(iter(x.values())))
    return x.shape[0]


def _draw(x: Any, i: Any) -> Any:
    if isinstance(x, dict):
        return {k: v[i] for k, v in x.items()}
    return x[i]


def _shape_of(x: Any) -> Any:
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k!r}: {np.shape(v)}" for k, v in x.items()) + "}"
    return str(x.shape)


def _call_user(fn: Any, x: Any, args: Any, name: Any) -> Any:
    """fn(x, *args), with a note naming it on any exception it raises."""
    try:
        return fn(x, *args)
    except Exception as exc:
        if hasattr(exc, "add_note"):
            exc.add_note(f"(raised by {name} on a batch of draws from q)")
        raise


def _call_log_joint(log_joint: Any, x: Any, *args: Any, name: Any = "log_joint") -> Any:
    out = _call_user(log_joint, x, args, name)
    V.reject_masked(f"{name}'s output", out)
    out = np.asarray(out)
    m = _n_draws(x)
    if out.dtype.kind not in "biuf":
        raise TypeError(f"{name} returned dtype {out.dtype}; it must return real numbers")
    if out.shape != (m,):
        raise ValueError(f"{name} returned shape {out.shape} instead of ({m},) for a batch "
                         f"of {m} draws (x of shape {_shape_of(x)}); it must be vectorised")
    out = out.astype(np.float64)
    bad = ~np.isfinite(out)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{name} returned {out[i]} at draw {i} (x = {_draw(x, i)!r}); it must "
                         "be finite on the support of q")
    return out


def _check_grad(out: Any, x: Any, name: Any) -> Any:
    out = V.as_real_array(f"{name}'s output", out)
    return V.shaped_finite(
        out, x.shape,
        f"{name} returned shape {out.shape}; it must return the gradient of log p with "
        f"respect to x, the shape of x {x.shape}",
        f"{name} returned a value that is not finite")


def _call_grad(grad: Any, x: Any, *args: Any, name: Any = "grad_log_joint") -> Any:
    """The gradient in x: an array like x, or for dict draws (a Joint) a dict
    of arrays keyed and shaped like them."""
    out = _call_user(grad, x, args, name)
    if not isinstance(x, dict):
        return _check_grad(out, x, name)
    if not isinstance(out, dict) or set(out) != set(x):
        raise TypeError(f"{name} must return a dict of gradients keyed like the draws "
                        f"{list(x)}, got {type(out).__name__}")
    return {k: _check_grad(out[k], x[k], f"{name}[{k!r}]") for k in x}


def _scaled_sum(c: Any, a: Any, b: Any = None) -> Any:
    """c * a (+ b), for arrays or dicts of arrays (a Joint's gradients)."""
    if isinstance(a, dict):
        return {k: c * a[k] + (0.0 if b is None else b[k]) for k in a}
    return c * a + (0.0 if b is None else b)


class _Objective:
    """log p(x, data) of one step: the full log joint, or (data subsampling)
    log_prior(x) + N/B * log_lik(x, idx) for a minibatch idx; and its
    gradient in x for the pathwise estimator."""

    def __init__(self, log_joint: Any, grad_log_joint: Any, data_size: Any, batch_size: Any,
                 log_prior: Any, grad_log_prior: Any) -> None:
        if not callable(log_joint):
            raise TypeError(f"log_joint must be callable, got {type(log_joint).__name__}")
        for name, g in (("grad_log_joint", grad_log_joint), ("log_prior", log_prior),
                        ("grad_log_prior", grad_log_prior)):
            if g is not None and not callable(g):
                raise TypeError(f"{name} must be callable or None, got {type(g).__name__}")
        self.log_joint, self.grad = log_joint, grad_log_joint
        self.log_prior, self.grad_prior = log_prior, grad_log_prior
        if data_size is None:
            if batch_size is not None or log_prior is not None or grad_log_prior is not None:
                raise ValueError("batch_size, log_prior and grad_log_prior go with data "
                                 "subsampling: pass data_size=N (the number of data points)")
            self.N = self.B = None
            return
        self.N = V.integer("data_size", data_size, minimum=1, maximum=2**62)
        self.B = self.N if batch_size is None else V.integer(
            "batch_size", batch_size, minimum=1, maximum=self.N)
        if grad_log_joint is not None and log_prior is not None and grad_log_prior is None:
            raise TypeError("grad_log_prior is needed with log_prior for the pathwise "
                            "estimator (the gradient of log_prior with respect to x)")

    def minibatch(self, gen: Any) -> Any:
        if self.N is None:
            return None
        if self.B == self.N:
            return np.arange(self.N)
        return np.sort(gen.choice(self.N, self.B, replace=False))

    def value(self, x: Any, idx: Any) -> Any:
        if idx is None:
            return _call_log_joint(self.log_joint, x)
        assert self.N is not None and self.B is not None
        out = (self.N / self.B) * _call_log_joint(self.log_joint, x, idx)
        if self.log_prior is not None:
            out = out + _call_log_joint(self.log_prior, x, name="log_prior")
        return out

    def gradient(self, x: Any, idx: Any) -> Any:
        if idx is None:
            return _call_grad(self.grad, x)
        assert self.N is not None and self.B is not None
        prior = None if self.grad_prior is None else _call_grad(self.grad_prior, x,
                                                                  name="grad_log_prior")
        return _scaled_sum(self.N / self.B, _call_grad(self.grad, x, idx), prior)


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


class _ScoreStep:
    """The score-function ELBO gradient of :func:`fit`'s steps after the
    first, prepared once: what the first step validated and cannot change
    between steps (the family, its support, the baseline, the shapes) is
    not checked again.  A call gives (value, value stderr, {param: grad}),
    the numbers ``_score_part`` gives for the same q and generator, bit for
    bit; every guard a step can fail (q's density at its own draws,
    log_joint's output, overflow and underflow of the sums) stays, by a
    cheap test that falls back to the full path when it does not pass."""

    def __init__(self, q: Any, obj: Any, n: Any, baseline: Any) -> None:
        self.obj, self.n, self.baseline = obj, n, baseline
        self.draw_size = q.draw_size
        self.shape = (n,) + tuple(q.draw_shape)
        self.names = dict(q._coord_slices)  # {name: (slice, shape)} of the score columns
        # the first q's kernel, renewed for the next qs when their score
        # terms share its (cached) structure
        self.structure = None
        if type(q)._build_kernel is Distribution._build_kernel:
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                self.structure = _structure(q, q._terms())
            self.kernel, self.table = q._kernel, dict(q._table)

    def _kernel(self, q: Any) -> Any:
        """q's kernel: KernelDist.renewed of the first q's with q's unit
        parameters and score coefficients (the numbers the full build gives)
        when q's terms have the first q's structure, else the full build."""
        st = self.structure
        if st is None or q._kernel is not None:
            return q._kernel_dist()
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            rows = q._terms()
            if _structure(q, rows) is not st:
                return q._kernel_dist()
            a, b, c = st.coefficients(rows)
            p0, p1 = q._draw_params()
        q._table = dict(self.table, a=a, b=b, c=c)
        q._coord_slices = self.names
        q._kernel = self.kernel.renewed(np.ravel(p0), np.ravel(p1), a, b, c)
        return q._kernel

    @classmethod
    def for_fit(cls, q: Any, obj: Any, n: Any, baseline: Any, estimator: Any, sampler: Any) -> Any:
        """The prepared step for q's family, or None where fit takes the
        full path at every step (another estimator or sampler, a Joint, a
        family that overrides the base class's sampling, density or score,
        one with a boundary term or a per-category kernel)."""
        base = Distribution
        if (estimator != "score" or sampler != "mc" or not isinstance(q, base)
                or getattr(q, "joint_components", None) is not None
                or getattr(q, "has_boundary", False) or q._kernel is None
                or q._kernel.per_category or getattr(q, "_coord_slices", None) is None
                or any(getattr(type(q), m) is not getattr(base, m)
                       for m in ("sample", "log_prob", "_score", "_check_x", "score"))):
            return None
        return cls(q, obj, n, baseline)

    def __call__(self, q: Any, gen: Any) -> Any:
        obj, n, add = self.obj, self.n, np.add.reduce
        idx = obj.minibatch(gen)
        kd = self._kernel(q)
        with gen.bit_generator.lock:  # q.sample(n, gen), its arguments known good
            x = K.draw(kd, gen.bit_generator, n)
        x = x.reshape(self.shape)
        q._check_draws(x)
        x = q._to_user_dtype(x)
        xf = np.asarray(x, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            lq = add(q._log_prob(xf).reshape(n, -1), 1)
            ok = math.isfinite(add(lq) + add(xf, None))
        if not ok:  # an infinite draw or density: the full check and its message
            lq = _log_q(q, x)
        fx = obj.value(x, idx) - lq
        if not math.isfinite(add(fx)):  # fx not finite (or its sum beyond the doubles)
            res = samples_estimate(q, x, fx, self.baseline, in_support=True)
            return res.value, res.value_stderr, res.grad
        with np.errstate(divide="ignore", invalid="ignore"):
            with blas_single_threaded(q):
                S = K.eval_scores(kd, xf.reshape(n, self.draw_size))
        y = baselined_terms(fx, S, self.baseline)
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            # y.mean(0), y.var(0, ddof=1), fx.mean() and fx.var(ddof=1) as
            # NumPy computes them (the same sums and divisions)
            grad = add(y, 0) / n
            z = y - grad
            var = add(z * z, 0) / (n - 1)
            value = add(fx) / n
            zf = fx - value
            vvar = float(add(zf * zf) / (n - 1))
            g = fx - fx[0]
            f_underflow = (float(add(g * g)) / n < TINY_MEAN_SQUARE
                           and abs(float(add(g)) / n) > RESOLUTION)
            # the common case of check_range's tests, in two reductions
            fine = (math.isfinite(add(grad) + add(var) + value + vvar) and not f_underflow
                    and (not var.size or np.minimum.reduce(var + grad * grad) >= TINY_MEAN_SQUARE))
        if not fine:
            check_range(q, grad, var, float(value), vvar, f_underflow)
        return value, math.sqrt(vvar / n), {k: grad[sl].reshape(shp)
                                             for k, (sl, shp) in self.names.items()}


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
    from .pathwise import pathwise_grad

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


# ---------------------------------------------------------------------------
# step-size schedules
# ---------------------------------------------------------------------------

class inverse_time:
    """The step size ``lr / (1 + t / scale) ** power`` at step t = 1, 2, ...
    (Robbins-Monro for 0.5 < power <= 1).

    Parameters
    ----------
    lr : float
        The step size at t = 0 (> 0).
    scale : float, default 100.0
        The steps over which it halves (power 1) (> 0).
    power : float, default 1.0
        The decay exponent (> 0).

    Raises
    ------
    ValueError
        An argument that is not positive and finite.

    Examples
    --------
    >>> import mcscore as mc
    >>> sched = mc.vi.inverse_time(0.1, scale=10.0)
    >>> sched(10)                                            # 0.1 / (1 + 10 / 10)
    0.05
    """

    def __init__(self, lr: float, scale: float = 100.0, power: float = 1.0) -> None:
        self.lr = V.scalar("lr", lr, "positive")
        self.scale = V.scalar("scale", scale, "positive")
        self.power = V.scalar("power", power, "positive")

    def __call__(self, t: int) -> float:
        return self.lr / (1.0 + t / self.scale) ** self.power

    def __repr__(self) -> str:
        return f"inverse_time(lr={self.lr:g}, scale={self.scale:g}, power={self.power:g})"


class cosine:
    """Cosine annealing from ``lr`` at step 1 to ``final`` at step ``steps``
    (``final`` afterwards).

    Parameters
    ----------
    lr : float
        The step size at step 1 (> 0).
    steps : int
        The step at which it reaches ``final`` (>= 1).
    final : float, default 0.0
        The last step size (>= 0).

    Raises
    ------
    ValueError
        An argument outside its range.

    Examples
    --------
    >>> import mcscore as mc
    >>> sched = mc.vi.cosine(0.1, steps=101)
    >>> sched(1), round(sched(51), 12), sched(101)
    (0.1, 0.05, 0.0)
    """

    def __init__(self, lr: float, steps: int, final: float = 0.0) -> None:
        self.lr = V.scalar("lr", lr, "positive")
        self.steps = V.integer("steps", steps, minimum=1)
        self.final = V.scalar("final", final, "nonnegative")

    def __call__(self, t: int) -> float:
        frac = min(max(t - 1, 0), self.steps - 1) / max(self.steps - 1, 1)
        return self.final + 0.5 * (self.lr - self.final) * (1.0 + math.cos(math.pi * frac))

    def __repr__(self) -> str:
        return f"cosine(lr={self.lr:g}, steps={self.steps}, final={self.final:g})"


def _check_lr(lr: Any) -> Any:
    """A positive number, or a schedule (a callable of the step)."""
    if callable(lr) and not isinstance(lr, numbers.Real):
        return lr
    return V.scalar("lr", lr, "positive")


def _lr_at(lr: Any, t: Any) -> Any:
    if not callable(lr):
        return lr
    try:
        v = lr(t)
    except Exception as exc:
        if hasattr(exc, "add_note"):
            exc.add_note(f"(raised by the lr schedule at step {t})")
        raise
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Real, np.floating,
                                                              np.integer)):
        raise TypeError(f"the lr schedule returned {v!r} at step {t}; it must return a "
                        "real number >= 0")
    v = float(v)
    if not (v >= 0 and math.isfinite(v)):
        raise ValueError(f"the lr schedule returned {v} at step {t}; it must return a "
                         "finite step size >= 0")
    return v


class VIResult:
    """The result of :func:`fit`.

    Attributes
    ----------
    q : Distribution
        The fitted distribution (Polyak-Ruppert average of the last iterates).
    q_last : Distribution
        The last iterate.
    elbo : ndarray, shape (steps,)
        The ELBO estimate at each step (at that step's parameters; with data
        subsampling, on that step's minibatch).
    elbo_stderr : ndarray, shape (steps,)
    steps, n : int
    transforms : dict[str, str]
        The unconstrained coordinate of each parameter.
    estimator : str
    lr : ndarray, shape (steps,)
        The step size of each step.

    Parameters
    ----------
    q, q_last : Distribution
        The averaged and the last iterate.
    elbo, elbo_stderr : numpy.ndarray, shape (steps,)
    steps, n : int
    transforms : dict of str to str
    estimator : str, default "score"
    lr : numpy.ndarray, optional

    Raises
    ------
    TypeError
        ``elbo`` without a length (the ``repr`` needs one).

    Examples
    --------
    >>> import mcscore as mc
    >>> res = mc.vi.fit(lambda x: -0.5 * (x - 1.0) ** 2, mc.Normal(0.0, 1.0), steps=50, n=50, rng=0)
    >>> type(res).__name__, res.elbo.shape, res.steps
    ('VIResult', (50,), 50)
    """

    def __init__(self, q: Any, q_last: Any, elbo: NDArray[np.float64],
                 elbo_stderr: NDArray[np.float64], steps: int, n: int, transforms: dict[str, str],
                 estimator: str = "score", lr: NDArray[np.float64] | None = None) -> None:
        self.q = q
        self.q_last = q_last
        self.elbo = elbo
        self.elbo_stderr = elbo_stderr
        self.steps = steps
        self.n = n
        self.transforms = transforms
        self.estimator = estimator
        self.lr = lr

    def __repr__(self) -> str:
        tail = self.elbo[-max(1, len(self.elbo) // 10):]
        return (f"VIResult(q={self.q!r}, steps={self.steps}, n={self.n}, "
                f"final ELBO ~ {tail.mean():.6g})")


def _check_betas(betas: Any) -> Any:
    """Adam's moment decays (beta1, beta2), each in [0, 1)."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    b1, b2 = (V.scalar(f"betas[{i}]", b, "real") for i, b in enumerate(betas))
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise ValueError(f"betas must be in [0, 1), got {betas!r}")
    return b1, b2


class Adam:
    """Adam (Kingma & Ba 2015) for *ascent* on a dict of arrays.

    ``opt = Adam(params, lr=0.05); params = opt.step(grads)`` moves each
    array along its bias-corrected first moment over the root of its second
    moment; ``opt.step(grads, lr=...)`` overrides the step size for that step
    (a schedule).  Used by :func:`fit` and :func:`mcscore.rl.reinforce`.

    Parameters
    ----------
    params : dict of str to array_like
        The starting point (finite arrays).
    lr : float, default 0.05
        The step size (> 0).
    betas : pair of float, default (0.9, 0.999)
        The moments' decays, each in [0, 1).
    eps : float, default 1e-8
        Added to the root of the second moment (> 0).

    Raises
    ------
    TypeError
        ``params`` not a dict, ``betas`` not a pair.
    ValueError
        Non-finite parameters, a non-positive ``lr`` or ``eps``, ``betas``
        outside [0, 1).

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> params = {"x": np.array([0.0])}
    >>> opt = mc.vi.Adam(params, lr=0.1)
    >>> for _ in range(200):                       # ascend -(x - 3)^2
    ...     params = opt.step({"x": -2 * (params["x"] - 3.0)})
    >>> bool(abs(params["x"][0] - 3.0) < 0.05)
    True
    """

    def __init__(self, params: dict[str, Any], *, lr: float = 0.05,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        if not isinstance(params, dict):
            raise TypeError(f"params must be a dict {{name: array}}, got {type(params).__name__}")
        params = {k: np.array(V.check(f"params[{k!r}]", V.as_real_array(
            f"params[{k!r}]", v), "real"), dtype=float) for k, v in params.items()}
        lr = V.positive_real("lr", lr)
        betas = _check_betas(betas)
        eps = V.positive_real("eps", eps)
        self.lr, self.b1, self.b2, self.eps = float(lr), float(betas[0]), float(betas[1]), eps
        # the parameters and moments of every array in one flat vector each
        # (the update is elementwise: the same numbers as array by array)
        self._layout = _Layout({k: v.shape for k, v in params.items()})
        self._p = self._layout.flat(params)
        self._m1 = np.zeros_like(self._p)
        self._m2 = np.zeros_like(self._p)
        self.t = 0

    @property
    def params(self) -> dict[str, NDArray[np.float64]]:
        """The current parameters {name: array}."""
        return self._layout.split(self._p)

    @property
    def m1(self) -> dict[str, NDArray[np.float64]]:
        return self._layout.split(self._m1)

    @property
    def m2(self) -> dict[str, NDArray[np.float64]]:
        return self._layout.split(self._m2)

    def step(self, grads: Mapping[str, ArrayLike],
             lr: float | None = None) -> dict[str, NDArray[np.float64]]:
        """One ascent step with the gradients ``grads`` (same keys/shapes);
        returns the updated parameters (new arrays).

        Parameters
        ----------
        grads : dict of str to array_like
            A finite gradient per parameter, same shapes.
        lr : float, optional
            The step size of this step (default the optimizer's ``lr``).

        Returns
        -------
        dict of str to numpy.ndarray

        Raises
        ------
        ValueError
            A missing key, a gradient of another shape or not finite.

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> opt = mc.vi.Adam({"x": np.zeros(2)}, lr=0.1)
        >>> opt.step({"x": np.array([1.0, -3.0])})["x"]            # the first step has size lr
        array([ 0.1, -0.1])
        """
        self.t += 1
        checked = []
        for k, shape in self._layout.shapes.items():
            if k not in grads:
                raise ValueError(f"grads has no entry {k!r} (the parameters are "
                                 f"{sorted(self._layout.shapes)})")
            g = V.check(f"grads[{k!r}]", V.as_real_array(f"grads[{k!r}]", grads[k]), "real")
            if g.shape != shape:
                raise ValueError(f"grads[{k!r}] has shape {g.shape}, the parameter {shape}")
            checked.append(g.ravel())
        self._update(np.concatenate(checked) if checked else np.zeros(0), lr)
        return self._layout.split(self._p)

    def _step_flat(self, g: Any, lr: Any) -> Any:
        """step() with the gradient as one flat vector in the parameters'
        order, already checked finite; returns the new flat parameters."""
        self.t += 1
        self._update(g, lr)
        return self._p

    def _update(self, g: Any, lr: Any) -> None:
        lr = self.lr if lr is None else float(lr)
        b1, b2 = self.b1, self.b2
        self._m1 = b1 * self._m1 + (1 - b1) * g
        self._m2 = b2 * self._m2 + (1 - b2) * g * g
        mh = self._m1 / (1 - b1**self.t)
        vh = self._m2 / (1 - b2**self.t)
        self._p = self._p + lr * mh / (np.sqrt(vh) + self.eps)


class _Layout:
    """Arrays of the shapes {name: shape} as one flat float vector (in the
    dict's order) and back."""

    def __init__(self, shapes: Any) -> None:
        self.shapes = {k: tuple(shp) for k, shp in shapes.items()}
        self.slices, o = {}, 0
        for k, shp in self.shapes.items():
            size = int(np.prod(shp, dtype=np.int64))
            self.slices[k] = slice(o, o + size)
            o += size
        self.size = o

    def flat(self, arrays: Any) -> Any:
        return np.concatenate([np.ravel(np.asarray(arrays[k], dtype=float))
                               for k in self.shapes]) if self.shapes else np.zeros(0)

    def split(self, vec: Any) -> Any:
        return {k: vec[self.slices[k]].reshape(shp) for k, shp in self.shapes.items()}


def _step_too_large(t: Any, lr: Any, exc: Any) -> Any:
    # the family's own reason, without its advice (which is for other callers)
    reason = str(exc).split("; ")[0]
    return ValueError(
        f"fit: Adam step {t} (lr={lr:g}) was too large: it moved q to parameters where its "
        f"ELBO gradient cannot be estimated ({reason}); use a smaller lr or a decaying "
        "schedule (vi.inverse_time, vi.cosine)")


def fit(log_joint: Callable[..., Any], q: Any, *, steps: int = 2000, n: int = 100,
        lr: float | Callable[[int], float] = 0.05, rng: Any = None, progress: Any = False,
        baseline: float | str | None = "loo", betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8, average: float = 0.5, estimator: str = "score",
        grad_log_joint: Callable[..., Any] | None = None, data_size: int | None = None,
        batch_size: int | None = None, log_prior: Callable[..., Any] | None = None,
        grad_log_prior: Callable[..., Any] | None = None, sampler: str = "mc",
        n_randomizations: int | None = None) -> VIResult:
    """Fit q to the posterior by maximising the ELBO (black-box VI).

    Each step draws ``n`` points from the current q, forms the ELBO
    gradient (:func:`elbo_grad` with ``estimator``), and takes an Adam step
    (Kingma & Ba 2015) on q's unconstrained parameters (see
    :func:`transforms`); the next q is a new distribution of the same family.

    Parameters
    ----------
    log_joint : callable
        Vectorised log p(x, data), as in :func:`elbo_grad`; with
        ``data_size``, ``log_joint(x, idx)`` is the minibatch log-likelihood.
    q : Distribution, or an object with the same capabilities (a Joint)
        Initial variational distribution.
    steps : int >= 1
    n : int >= 2
        Draws per step.
    lr : float > 0, or a callable of the step t = 1, 2, ...
        Adam step size (in the unconstrained coordinates), or a schedule
        returning it (a finite number >= 0) (:func:`inverse_time`, :func:`cosine`, any callable).
    rng : None, int, SeedSequence or Generator
    progress : bool
        Show a progress bar over the steps (tqdm when installed, plain lines
        on stderr otherwise), as every estimator's ``progress``.  Default
        False.
    baseline : None, float, "loo" or "optimal"
    betas, eps : Adam's moment decays and denominator guard.
    average : float in [0, 1)
        Fraction of the last steps whose iterates are averaged into the
        returned ``q`` (0: the last iterate).
    estimator, grad_log_joint, data_size, batch_size, log_prior, grad_log_prior
        As in :func:`elbo_grad` (the minibatch is drawn afresh each step).

    sampler, n_randomizations
        As in :func:`elbo_grad` ("sobol": each step's gradient from freshly
        scrambled Sobol' points, n draws in total per step).
    Returns
    -------
    VIResult
        ``.q`` (fitted), ``.elbo`` (history), ...

    Raises
    ------
    TypeError
        ``log_joint`` not callable, or ``q`` not an mcscore distribution (or
        Joint).
    ValueError
        An option outside its range (``steps`` < 1, ``lr`` <= 0, an unknown
        ``estimator``, ...), ``log_joint`` returning the wrong shape or a
        non-finite value on the support of ``q``, or a run whose ELBO
        diverges.

    Examples
    --------
    A Normal mean with a N(0, 1) prior and three observations y_i ~ N(mu, 1):
    the exact posterior is N(sum(y) / 4, 1/4).

    >>> import numpy as np
    >>> import mcscore as mc
    >>> y = np.array([0.8, 1.3, 0.4])
    >>> def log_joint(x):
    ...     mu = x[:, 0]
    ...     return -0.5 * mu ** 2 - 0.5 * ((y[None, :] - mu[:, None]) ** 2).sum(axis=1)
    >>> res = mc.vi.fit(log_joint, mc.Normal(np.zeros(1), np.ones(1)), steps=500, n=100,
    ...                 lr=0.05, rng=0, progress=False)
    >>> bool(abs(res.q.loc[0] - y.sum() / 4) < 0.05), bool(abs(res.q.scale[0] - 0.5) < 0.05)
    (True, True)
    """
    q = _check_q(q)
    obj = _Objective(log_joint, grad_log_joint, data_size, batch_size, log_prior,
                     grad_log_prior)
    steps = V.integer("steps", steps, minimum=1, maximum=2**40)
    n = V.integer("n", n, minimum=2)
    lr = _check_lr(lr)
    average = V.scalar("average", average, "unit_interval_lt1")
    eps = V.scalar("eps", eps, "positive")
    progress = V.flag("progress", progress)
    baseline = check_baseline(baseline)
    estimator = _check_estimator(estimator)
    sampler = _check_sampler(sampler, n_randomizations, estimator, obj)
    b1, b2 = _check_betas(betas)
    gen = V.as_generator(rng)
    kinds = transforms(q)
    u = {k: _to_unconstrained(kinds[k], v) for k, v in q.params.items()}
    opt = Adam(u, lr=lr if not callable(lr) else 1.0, betas=(b1, b2), eps=eps)
    layout = opt._layout
    start_avg = min(steps - 1, int(math.floor(steps * (1 - average))))
    acc = np.zeros(layout.size)
    n_acc = 0
    elbo = np.empty(steps)
    elbo_se = np.empty(steps)
    lrs = np.empty(steps)
    weights = None  # "mixed": the previous step's inverse-variance weights
    bar = simple_bar(steps, progress, "VI (Adam)")
    cur = q
    prepared = None  # the score step prepared by the first step
    try:
        for t in range(1, steps + 1):
            if prepared is not None:
                value, value_se, grad = prepared(cur, gen)
            else:
                res = _elbo_grad(obj, cur, n, gen, baseline, estimator, weights, sampler,
                                 n_randomizations)
                if estimator == "mixed":
                    weights = res.info["plugin_weights"]
                value, value_se, grad = res.value, res.value_stderr, res.grad
                if t == 1:
                    prepared = _ScoreStep.for_fit(q, obj, n, baseline, estimator, sampler)
            elbo[t - 1] = value
            elbo_se[t - 1] = value_se
            lrs[t - 1] = lr_t = _lr_at(lr, t)
            params = cur.params
            g = {k: grad[k] * _jacobian(kinds[k], params[k]) for k in layout.shapes}
            gf = layout.flat(g)
            if math.isfinite(gf.sum()):
                uf = opt._step_flat(gf, lr_t)
            else:  # the optimiser's own check names the gradient that is not finite
                opt.step(g, lr_t)
                uf = opt._p
            try:
                with np.errstate(over="ignore", under="ignore"):
                    cur = _replace(q, {k: _from_unconstrained(kinds[k], v)
                                       for k, v in layout.split(uf).items()})
                    check = getattr(cur, "_check_differentiable", None)
                    if check is not None:
                        check()
            except ValueError as exc:
                raise _step_too_large(t, lr_t, exc) from None
            if t - 1 >= start_avg:
                acc += uf
                n_acc += 1
            bar.update(1)
            if t % 50 == 0:
                bar.set_postfix_str(f"ELBO {elbo[max(0, t - 50):t].mean():.4g}")
    finally:
        bar.close()
    q_avg = _replace(q, {k: _from_unconstrained(kinds[k], v)
                         for k, v in layout.split(acc / n_acc).items()})
    return VIResult(q_avg, cur, elbo, elbo_se, steps, n, kinds, estimator, lrs)

