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

The package holds one topic per module: ``_q`` (the variational
distribution, its unconstrained coordinates), ``_target`` (log p and data
subsampling), ``_objective`` (the ELBO and its estimators, :func:`elbo_grad`),
``_optim`` (Adam, the step-size schedules) and ``_fit`` (:func:`fit`, its
prepared score step, :class:`VIResult`).  Every public name is imported from
here and says it lives here, so that reprs and pickles name ``mcscore.vi``.
"""
from ._fit import VIResult, fit
from ._objective import ESTIMATORS, elbo_grad
from ._optim import Adam, cosine, inverse_time
from ._q import transforms
# private names other modules and tests use: mcscore.rl's schedule checks,
# the prepared step (tests/test_loop_speed.py), the rebuild of q, and the
# layout an Adam holds (so that its pickles name mcscore.vi._Layout)
from ._fit import _ScoreStep as _ScoreStep
from ._optim import _check_lr as _check_lr, _Layout as _Layout, _lr_at as _lr_at
from ._q import _rebuild as _rebuild

__all__ = ["elbo_grad", "fit", "VIResult", "transforms", "Adam", "inverse_time", "cosine",
           "ESTIMATORS"]

for _obj in (elbo_grad, fit, VIResult, transforms, Adam, inverse_time, cosine, _Layout):
    _obj.__module__ = __name__
del _obj
