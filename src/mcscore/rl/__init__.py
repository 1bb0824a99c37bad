"""REINFORCE: policy gradients with the score-function estimator.

Williams (1992): for a policy pi(a | s; theta) and episodes tau,

    grad_theta E[R(tau)] = E[ sum_t grad log pi(a_t | s_t; theta) (G_t - b_t) ]

with G_t the (discounted) return-to-go from step t and b_t any baseline that
does not depend on the episode's own action a_t.  This module supplies the
pieces:

* :class:`SoftmaxPolicy` (Categorical over actions, logits linear in the
  state features) and :class:`GaussianPolicy` (Normal actions, mean linear
  in the features, state-independent log standard deviation).  Their
  per-step scores come from the core's ``Categorical.score`` /
  ``Normal.score``, carried to the policy weights by the chain rule;
  :class:`TorchPolicy` wraps a PyTorch module (torch imported on use);
* :func:`returns_to_go` with discount, :func:`value_baseline` (a learned
  linear value function) and :func:`gae` (generalised advantage estimation);
* :func:`policy_gradient`: the estimate and its standard error across
  episodes (independent draws), with the baselines ``None``, a constant,
  ``"loo"`` (leave-one-out across episodes, per time step), ``"value"``
  (per state: a linear value function, fitted leaving the episode out),
  an array of per-step baselines and, for episode-level returns,
  ``"optimal"`` (per coordinate, leave-one-out); for one-step episodes it is
  exactly :func:`mcscore.score_grad_from_samples`;
* :class:`CartPole` (the classic balancing task, vectorised over episodes,
  no dependency) and :class:`Reach1D` (a continuous-action reaching task),
  both optionally stochastic; :class:`GymEnv` (any Gymnasium-style
  environment); :func:`rollout` and :func:`reinforce` (a training loop with
  Adam that returns the learning curve).

**The policy protocol.**  :func:`rollout`, :func:`reinforce` and
:func:`policy_gradient` take any object with

* ``sample(features, rng)`` -> actions for features of shape
  ``(*batch, F)``: shape ``batch`` (discrete actions, integers) or
  ``(*batch, *action_shape)`` (continuous); ``rng`` is a NumPy Generator;
* ``score(features, actions)`` -> ``{name: array (*batch, *param_shape)}``:
  the gradient of log pi(action | state) at each step with respect to each
  parameter;
* ``params`` -> ``{name: array}`` and ``with_params(params)`` -> the policy
  with those parameters (a new object, or the same one updated in place);
  :func:`reinforce` updates them with Adam;
* optionally ``entropy(features)`` -> ``(H, dH)``: the entropy of the action
  distribution at each step, shape ``batch``, and its gradient
  ``{name: array (*batch, *param_shape)}`` (needed for an entropy bonus);
* optionally ``episode_grads(features, actions, weights, entropy_weights)``
  -> ``{name: array (E, *param_shape)}``: per episode, sum_t weights[e, t]
  grad log pi(a_t | s_t) (+ entropy_weights[e, t] grad H), for features
  (E, T, F); :func:`reinforce` uses it instead of the per-step scores when
  present (:class:`TorchPolicy`: one autograd pass of that surrogate).

**Environments.**  ``reset(n, rng)`` -> states (n, ...), ``features(states)``
-> (n, n_features), ``step(states, actions[, rng])`` -> (next states,
rewards (n,), done (n,)), ``max_steps`` and ``n_features``.  A ``step``
that takes an ``rng`` argument receives the roll-out's Generator (the same
one the policy samples with), so a stochastic environment is reproducible
from the seed; a ``step(states, actions)`` without it keeps working.

**Stepping in place.**  An environment may also offer ``stepper(states)``
-> ``None`` or ``step_into(features, actions, out, rng)`` -> (rewards (n,),
done (n,) bool), given the reset states of a roll-out: one step on the
*features* of the current states (n, n_features), writing the features of
the next states into ``out`` (a row of :func:`rollout`'s buffer, filled
beforehand with the reset states' features, so columns that do not depend
on the state need not be written), the numbers of ``step`` bit for bit.
The returned arrays may be work arrays that the next call overwrites.
:func:`rollout` then keeps every step's features in one buffer and
allocates nothing per step; :class:`CartPole` has one.  A policy may
likewise offer ``sampler(n)`` -> ``None`` or ``draw(features, rng, out)``:
``sample(features, rng)``'s actions for n states, written into ``out`` (the
int64 row of the actions) and returned (:class:`SoftmaxPolicy` with two
actions).  ``None`` (e.g. from a subclass that replaces ``step`` or
``sample``) means the per-step path.

**Baselines and advantages.**  Any baseline that does not use episode i's
own actions leaves the estimate unbiased: "loo" uses the other episodes'
returns at the same step; "value" a linear least-squares regression of the
returns-to-go on the state features, their squares and the fraction of the
horizon left (1, tau, tau^2, tau^3), fitted on the *other* episodes (exact
leave-one-episode-out by downdating the normal equations), so it varies
with the state as well as the time.  :func:`gae` gives the generalised
advantages of Schulman et al. (2016) from such a value function: lambda = 1
is exactly returns-to-go minus the value baseline (unbiased); lambda < 1
trades bias for variance.  An entropy bonus ``entropy_coef * sum_t grad
H(pi(. | s_t))`` (the direct gradient at the visited states, as in A3C) is
added to each episode's term.

    >>> import mcscore as mc
    >>> env = mc.rl.CartPole()
    >>> pol = mc.rl.SoftmaxPolicy(n_features=5, n_actions=2)
    >>> run = mc.rl.reinforce(env, pol, iterations=50, episodes=20, rng=0)  # doctest: +SKIP
    >>> run.returns[-5:]                                                  # doctest: +SKIP
"""
from __future__ import annotations

from ._baselines import LinearValue, gae, returns_to_go, value_baseline
from ._bridges import GymEnv, TorchPolicy
from ._envs import CartPole, Reach1D
from ._policies import GaussianPolicy, SoftmaxPolicy
from ._policies import _alias_draw, _softmax_probs, _two_action_draw  # noqa: F401 (tests)
from ._reinforce import ReinforceResult, policy_gradient, reinforce
from ._rollout import Trajectories, rollout

__all__ = ["returns_to_go", "SoftmaxPolicy", "GaussianPolicy", "TorchPolicy", "policy_gradient",
           "value_baseline", "LinearValue", "gae", "CartPole", "Reach1D", "GymEnv",
           "Trajectories", "rollout", "reinforce", "ReinforceResult"]

# The public names live here: their pickles, documentation pages and
# docstring-test names stay mcscore.rl.<name> whichever module defines them.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
