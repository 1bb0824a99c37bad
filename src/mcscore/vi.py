"""Black-box variational inference with the score-function gradient.

Given an unnormalised log joint density log p(x, data) (a Python function,
vectorised over draws) and a variational family q(x; theta) (any mcscore
distribution), the evidence lower bound

    ELBO(theta) = E_q[log p(x, data) - log q(x; theta)]

has the gradient (Ranganath, Gerrish & Blei, "Black Box Variational
Inference", AISTATS 2014)

    grad ELBO = E_q[(log p(x, data) - log q(x; theta)) grad log q(x; theta)]

(the term E_q[grad log q] = 0 drops), which needs only draws from q, its log
density and its score: :func:`elbo_grad` is :func:`mcscore.score_grad_from_samples`
with f = log p - log q, and inherits its baselines ("loo" is the default:
the leave-one-out baseline that keeps the estimate unbiased and removes most
of its variance).

:func:`fit` maximises the ELBO with Adam on *unconstrained* parameters:
positive parameters (scale, rate, concentration, ...) are optimised on the
log scale, probabilities on the logit scale (Categorical / Multinomial probs
on the log scale), real ones (loc, logits) as they are.  The gradient is
carried to those coordinates by the chain rule.  The returned distribution
is the Polyak-Ruppert average (in the unconstrained coordinates) of the
iterates of the last ``average`` fraction of the steps, which removes most
of the noise a constant step size leaves.

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

import numpy as np

from . import _validation as V
from ._algebra import check_baseline
from ._progress import simple_bar
from .distributions import Distribution
from .score import samples_estimate

__all__ = ["elbo_grad", "fit", "VIResult", "transforms", "Adam"]

def transforms(q):
    """{param name: "identity" | "log" | "logit" | "tril_log_diag"}: the
    unconstrained coordinates :func:`fit` optimises for each of q's
    parameters (the family's ``vi_transforms``).  "tril_log_diag" is a
    Cholesky factor (MultivariateNormal's scale_tril): its entries below the
    diagonal as they are, the log of its diagonal, the zeros above the
    diagonal fixed (their gradient is 0)."""
    return q.vi_transforms()


def _diag_mask(v):
    """True on the diagonal of the last two axes of v."""
    return np.eye(v.shape[-1], dtype=bool)


def _to_unconstrained(kind, v):
    if kind == "log":
        return np.log(v)
    if kind == "logit":
        return np.log(v) - np.log1p(-v)
    if kind == "tril_log_diag":
        return np.where(_diag_mask(v), np.log(np.where(_diag_mask(v), v, 1.0)), np.tril(v))
    return np.array(v, dtype=float)


def _from_unconstrained(kind, u):
    if kind == "log":
        return np.exp(u)
    if kind == "logit":
        return 1.0 / (1.0 + np.exp(-u))
    if kind == "tril_log_diag":
        return np.where(_diag_mask(u), np.exp(np.where(_diag_mask(u), u, 0.0)), np.tril(u))
    return np.array(u, dtype=float)


def _jacobian(kind, v):
    """d(param)/d(unconstrained) at the parameter value v (elementwise: each
    transform maps every entry by itself)."""
    if kind == "log":
        return v
    if kind == "logit":
        return v * (1.0 - v)
    if kind == "tril_log_diag":
        return np.where(_diag_mask(v), v, np.tril(np.ones_like(v), -1))
    return np.ones_like(v)


def _rebuild(q, params):
    """A distribution of q's family with some parameters replaced."""
    kwargs = dict(q._all_params())
    kwargs.update(params)
    return type(q)(**kwargs)


def _log_q(q, x):
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


def _call_log_joint(log_joint, x):
    try:
        out = log_joint(x)
    except Exception as exc:
        if hasattr(exc, "add_note"):
            exc.add_note("(raised by log_joint on a batch of draws from q)")
        raise
    V.reject_masked("log_joint's output", out)
    out = np.asarray(out)
    m = x.shape[0]
    if out.dtype.kind not in "biuf":
        raise TypeError(f"log_joint returned dtype {out.dtype}; it must return real numbers")
    if out.shape != (m,):
        raise ValueError(f"log_joint returned shape {out.shape} instead of ({m},) for a batch "
                         f"of {m} draws (x of shape {x.shape}); it must be vectorised")
    out = out.astype(np.float64)
    bad = ~np.isfinite(out)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"log_joint returned {out[i]} at draw {i} (x = {x[i]!r}); it must be "
                         "finite on the support of q")
    return out


def elbo_grad(log_joint, q, n, *, rng=None, baseline="loo"):
    """Score-function estimate of the ELBO and of its gradient w.r.t. q's
    parameters.

    Parameters
    ----------
    log_joint : callable
        ``log_joint(x)`` for ``x`` of shape ``(n, *q.draw_shape)`` returns
        shape ``(n,)``: log p(x, data) up to a constant.
    q : Distribution
        The variational distribution (any mcscore family).
    n : int >= 2
        Draws from q.
    rng : None, int, SeedSequence or Generator
    baseline : None, float, "loo" or "optimal"
        As in :func:`mcscore.score_grad_from_samples` (default "loo").

    Returns
    -------
    GradientEstimate
        ``value`` / ``value_stderr``: the ELBO estimate E_q[log p - log q]
        and its standard error; ``grad[name]`` / ``stderr[name]``: its
        gradient with respect to each parameter q was given.
    """
    if not isinstance(q, Distribution):
        raise TypeError(f"q must be an mcscore distribution, got {type(q).__name__}")
    if not callable(log_joint):
        raise TypeError(f"log_joint must be callable, got {type(log_joint).__name__}")
    baseline = check_baseline(baseline)
    n = V.integer("n", n, minimum=2)
    gen = V.as_generator(rng)
    x = q.sample(n, gen)
    lq = _log_q(q, x)  # first: an edge draw of q is q's fault, not log_joint's
    fx = _call_log_joint(log_joint, x) - lq
    # log q is finite at every draw (checked just above): x is in q's support
    res = samples_estimate(q, x, fx, baseline, in_support=True)
    res.method = "score (ELBO)"
    return res


class VIResult:
    """The result of :func:`fit`.

    Attributes
    ----------
    q : Distribution
        The fitted distribution (Polyak-Ruppert average of the last iterates).
    q_last : Distribution
        The last iterate.
    elbo : ndarray, shape (steps,)
        The ELBO estimate at each step (at that step's parameters).
    elbo_stderr : ndarray, shape (steps,)
    steps, n : int
    transforms : dict[str, str]
        The unconstrained coordinate of each parameter.
    """

    def __init__(self, q, q_last, elbo, elbo_stderr, steps, n, transforms):
        self.q = q
        self.q_last = q_last
        self.elbo = elbo
        self.elbo_stderr = elbo_stderr
        self.steps = steps
        self.n = n
        self.transforms = transforms

    def __repr__(self):
        tail = self.elbo[-max(1, len(self.elbo) // 10):]
        return (f"VIResult(q={self.q!r}, steps={self.steps}, n={self.n}, "
                f"final ELBO ~ {tail.mean():.6g})")


class Adam:
    """Adam (Kingma & Ba 2015) for *ascent* on a dict of arrays.

    ``opt = Adam(params, lr=0.05); params = opt.step(grads)`` moves each
    array along its bias-corrected first moment over the root of its second
    moment.  Used by :func:`fit` and :func:`mcscore.rl.reinforce`.
    """

    def __init__(self, params, *, lr=0.05, betas=(0.9, 0.999), eps=1e-8):
        self.params = {k: np.array(v, dtype=float) for k, v in params.items()}
        self.lr, self.b1, self.b2, self.eps = float(lr), float(betas[0]), float(betas[1]), eps
        self.m1 = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.m2 = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.t = 0

    def step(self, grads):
        """One ascent step with the gradients ``grads`` (same keys/shapes);
        returns the updated parameters (new arrays)."""
        self.t += 1
        out = {}
        for k, p in self.params.items():
            g = np.asarray(grads[k], dtype=float)
            self.m1[k] = self.b1 * self.m1[k] + (1 - self.b1) * g
            self.m2[k] = self.b2 * self.m2[k] + (1 - self.b2) * g * g
            mh = self.m1[k] / (1 - self.b1**self.t)
            vh = self.m2[k] / (1 - self.b2**self.t)
            out[k] = p + self.lr * mh / (np.sqrt(vh) + self.eps)
        self.params = out
        return dict(out)


def fit(log_joint, q, *, steps=2000, n=100, lr=0.05, rng=None, progress=True,
        baseline="loo", betas=(0.9, 0.999), eps=1e-8, average=0.5):
    """Fit q to the posterior by maximising the ELBO (black-box VI).

    Each step draws ``n`` points from the current q, forms the
    score-function ELBO gradient (:func:`elbo_grad`), and takes an Adam step
    (Kingma & Ba 2015) on q's unconstrained parameters (see
    :func:`transforms`); the next q is a new distribution of the same family.

    Parameters
    ----------
    log_joint : callable
        Vectorised log p(x, data), as in :func:`elbo_grad`.
    q : Distribution
        Initial variational distribution.
    steps : int >= 1
    n : int >= 2
        Draws per step.
    lr : float > 0
        Adam step size (in the unconstrained coordinates).
    rng : None, int, SeedSequence or Generator
    progress : bool
        Show a tqdm progress bar when tqdm is installed.
    baseline : None, float, "loo" or "optimal"
    betas, eps : Adam's moment decays and denominator guard.
    average : float in [0, 1)
        Fraction of the last steps whose iterates are averaged into the
        returned ``q`` (0: the last iterate).

    Returns
    -------
    VIResult
        ``.q`` (fitted), ``.elbo`` (history), ...
    """
    if not isinstance(q, Distribution):
        raise TypeError(f"q must be an mcscore distribution, got {type(q).__name__}")
    steps = V.integer("steps", steps, minimum=1, maximum=2**40)
    n = V.integer("n", n, minimum=2)
    lr = V.scalar("lr", lr, "positive")
    average = V.scalar("average", average, "unit_interval_lt1")
    eps = V.scalar("eps", eps, "positive")
    progress = V.flag("progress", progress)
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    b1, b2 = (V.scalar(f"betas[{i}]", b, "real") for i, b in enumerate(betas))
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise ValueError(f"betas must be in [0, 1), got {betas!r}")
    gen = V.as_generator(rng)
    kinds = transforms(q)
    u = {k: _to_unconstrained(kinds[k], v) for k, v in q.params.items()}
    opt = Adam(u, lr=lr, betas=(b1, b2), eps=eps)
    start_avg = min(steps - 1, int(math.floor(steps * (1 - average))))
    acc = {k: np.zeros_like(v) for k, v in u.items()}
    n_acc = 0
    elbo = np.empty(steps)
    elbo_se = np.empty(steps)
    bar = simple_bar(steps, progress, "VI (Adam)")
    cur = q
    try:
        for t in range(1, steps + 1):
            res = elbo_grad(log_joint, cur, n, rng=gen, baseline=baseline)
            elbo[t - 1] = res.value
            elbo_se[t - 1] = res.value_stderr
            params = cur.params
            u = opt.step({k: res.grad[k] * _jacobian(kinds[k], params[k]) for k in u})
            try:
                with np.errstate(over="ignore", under="ignore"):
                    cur = _rebuild(q, {k: _from_unconstrained(kinds[k], v) for k, v in u.items()})
            except ValueError as exc:
                raise ValueError(f"fit: Adam step {t} (lr={lr}) moved q out of its parameter "
                                 f"range: {exc}; use a smaller lr") from None
            if t - 1 >= start_avg:
                for k in u:
                    acc[k] += u[k]
                n_acc += 1
            bar.update(1)
            if t % 50 == 0:
                bar.set_postfix_str(f"ELBO {elbo[max(0, t - 50):t].mean():.4g}")
    finally:
        bar.close()
    q_avg = _rebuild(q, {k: _from_unconstrained(kinds[k], acc[k] / n_acc) for k in u})
    return VIResult(q_avg, cur, elbo, elbo_se, steps, n, kinds)


