"""REINFORCE: policy gradients with the score-function estimator.

Williams (1992): for a policy pi(a | s; theta) and episodes tau,

    grad_theta E[R(tau)] = E[ sum_t grad log pi(a_t | s_t; theta) (G_t - b_t) ]

with G_t the (discounted) return-to-go from step t and b_t any baseline that
does not depend on the episode's own actions.  This module supplies the
pieces:

* :class:`SoftmaxPolicy` (Categorical over actions, logits linear in the
  state features) and :class:`GaussianPolicy` (Normal actions, mean linear
  in the features, state-independent log standard deviation).  Their
  per-step scores come from the core's ``Categorical.score`` /
  ``Normal.score``, carried to the policy weights by the chain rule;
* :func:`returns_to_go` with discount;
* :func:`policy_gradient`: the estimate and its standard error across
  episodes (independent draws), with the core's baselines: ``None``, a
  constant, ``"loo"`` (leave-one-out across episodes, per time step) and,
  for episode-level returns, ``"optimal"`` (per coordinate, leave-one-out);
  for one-step episodes it is exactly :func:`mcscore.score_grad_from_samples`;
* :class:`CartPole` (the classic balancing task, vectorised over episodes,
  no dependency) and :class:`Reach1D` (a continuous-action reaching task),
  :func:`rollout` and :func:`reinforce` (a training loop with Adam that
  returns the learning curve).

    >>> import mcscore as mc
    >>> env = mc.rl.CartPole()
    >>> pol = mc.rl.SoftmaxPolicy(n_features=5, n_actions=2)
    >>> run = mc.rl.reinforce(env, pol, iterations=50, episodes=20, rng=0)  # doctest: +SKIP
    >>> run.returns[-5:]                                                  # doctest: +SKIP
"""
from __future__ import annotations

import math

import numpy as np

from . import _validation as V
from .distributions import Categorical, Normal
from ._algebra import baselined_terms, check_baseline
from ._progress import simple_bar
from .result import GradientEstimate, terms_cov
from .vi import Adam

__all__ = ["returns_to_go", "SoftmaxPolicy", "GaussianPolicy", "policy_gradient", "CartPole",
           "Reach1D",
           "Trajectories", "rollout", "reinforce", "ReinforceResult"]


# ---------------------------------------------------------------------------
# returns
# ---------------------------------------------------------------------------

def returns_to_go(rewards, gamma=1.0, mask=None):
    """Discounted returns-to-go G_t = sum_{k >= t} gamma^(k-t) r_k.

    Parameters
    ----------
    rewards : array, shape (..., T)
        Time on the last axis (episodes padded after they end).
    gamma : float in [0, 1]
    mask : bool array like rewards, optional
        False where an episode has ended: those rewards are ignored.

    Returns
    -------
    ndarray like rewards (float64)
    """
    r = V.as_real_array("rewards", rewards)
    if r.ndim < 1:
        raise ValueError("rewards must have a time axis (last), got a scalar")
    gamma = V.scalar("gamma", gamma, "unit_interval")
    if mask is not None:
        mask = _mask(mask)
        if mask.shape != r.shape:
            raise ValueError(f"mask must have the shape of rewards {r.shape}, got {mask.shape}")
        r = np.where(mask, r, 0.0)
    if not np.isfinite(r).all():
        raise ValueError("rewards must be finite")
    out = np.empty_like(r)
    acc = np.zeros(r.shape[:-1])
    with np.errstate(over="ignore"):
        for t in range(r.shape[-1] - 1, -1, -1):
            acc = r[..., t] + gamma * acc
            out[..., t] = acc
    if not np.isfinite(out).all():
        raise FloatingPointError("the returns-to-go overflowed (sums of rewards beyond the range "
                                 "of a double)")
    return out


def _mask(mask, name="mask"):
    """A boolean mask: booleans, or integers 0/1."""
    V.reject_masked(name, mask)
    m = np.asarray(mask)
    if m.dtype.kind == "b":
        return m
    if m.dtype.kind in "iu" and ((m == 0) | (m == 1)).all():
        return m.astype(bool)
    raise TypeError(f"{name} must be a boolean array (True while the episode runs), got dtype "
                    f"{m.dtype}")


# ---------------------------------------------------------------------------
# policies
# ---------------------------------------------------------------------------

def _features(phi, n_features):
    phi = V.as_real_array("features", phi)
    if phi.ndim < 1 or phi.shape[-1] != n_features:
        raise ValueError(f"features must have a last axis of {n_features}, got shape {phi.shape}")
    return phi


class SoftmaxPolicy:
    """pi(a | s) = softmax(phi(s) @ theta)[a], a in 0..n_actions-1.

    ``params = {"theta": (n_features, n_actions)}`` (zeros by default: the
    uniform policy).
    """

    def __init__(self, n_features, n_actions, theta=None):
        self.n_features = V.integer("n_features", n_features, minimum=1)
        self.n_actions = V.integer("n_actions", n_actions, minimum=2)
        shape = (self.n_features, self.n_actions)
        theta = np.zeros(shape) if theta is None else V.as_real_array("theta", theta)
        if theta.shape != shape:
            raise ValueError(f"theta must have shape {shape}, got {theta.shape}")
        self.params = {"theta": V.check("theta", theta, "real").copy()}

    def with_params(self, params):
        """A copy with new parameters."""
        return SoftmaxPolicy(self.n_features, self.n_actions, params["theta"])

    def distribution(self, features):
        """The action distribution: an mcscore Categorical with batch shape
        features.shape[:-1]."""
        phi = _features(features, self.n_features)
        return Categorical(logits=phi @ self.params["theta"])

    def sample(self, features, rng=None):
        """Actions, shape features.shape[:-1]."""
        d = self.distribution(features)
        return d.sample(1, rng)[0]

    def score(self, features, actions):
        """Per-step scores {"theta": (*batch, n_features, n_actions)}: the
        core's Categorical score w.r.t. the logits, times the features."""
        phi = _features(features, self.n_features)
        V.reject_masked("actions", actions)
        a = np.asarray(actions)
        if a.shape != phi.shape[:-1]:
            raise ValueError(f"actions must have shape {phi.shape[:-1]} (features without their "
                             f"last axis), got {a.shape}")
        if a.dtype.kind not in "iuf" or (a.size and not (
                np.isfinite(a).all() and (a == np.round(a)).all() and a.min() >= 0
                and a.max() < self.n_actions)):
            raise ValueError(f"actions must be integers in [0, {self.n_actions}), got "
                             f"{a.dtype} values {a.ravel()[:5]!r}...")
        d = Categorical(logits=phi @ self.params["theta"])
        s = d.score(a[None])["logits"][0]  # (*batch, A)
        return {"theta": phi[..., :, None] * s[..., None, :]}


LOG_STD_MAX = 230.0  # exp(230) ~ 8e99: the Normal's scale range


class GaussianPolicy:
    """a ~ Normal(phi(s) @ w, exp(log_std)), actions of dimension n_actions.

    ``params = {"w": (n_features, n_actions), "log_std": (n_actions,)}``.
    """

    def __init__(self, n_features, n_actions=1, w=None, log_std=None):
        self.n_features = V.integer("n_features", n_features, minimum=1)
        self.n_actions = V.integer("n_actions", n_actions, minimum=1)
        shape = (self.n_features, self.n_actions)
        w = np.zeros(shape) if w is None else V.as_real_array("w", w)
        ls = np.zeros(self.n_actions) if log_std is None else V.as_real_array("log_std", log_std)
        if w.shape != shape:
            raise ValueError(f"w must have shape {shape}, got {w.shape}")
        try:
            ls = np.broadcast_to(ls, (self.n_actions,)).copy()
        except ValueError:
            raise ValueError(f"log_std must have shape ({self.n_actions},) or (), got "
                             f"{ls.shape}") from None
        if (np.abs(ls) > LOG_STD_MAX).any():
            raise ValueError(f"log_std must be in [-{LOG_STD_MAX}, {LOG_STD_MAX}] (the scale "
                             f"exp(log_std) in [1e-100, 1e100]), got {ls!r}")
        self.params = {"w": V.check("w", w, "real").copy(),
                       "log_std": V.check("log_std", ls, "real").copy()}

    def with_params(self, params):
        return GaussianPolicy(self.n_features, self.n_actions, params["w"], params["log_std"])

    def distribution(self, features):
        """An mcscore Normal with batch shape features.shape[:-1] + (n_actions,)."""
        phi = _features(features, self.n_features)
        mean = phi @ self.params["w"]
        return Normal(mean, np.broadcast_to(np.exp(self.params["log_std"]), mean.shape))

    def sample(self, features, rng=None):
        """Actions, shape features.shape[:-1] + (n_actions,)."""
        return self.distribution(features).sample(1, rng)[0]

    def score(self, features, actions):
        """Per-step scores {"w": (*batch, n_features, n_actions),
        "log_std": (*batch, n_actions)} from the core's Normal score."""
        phi = _features(features, self.n_features)
        d = self.distribution(phi)
        a = V.as_real_array("actions", actions)
        if a.shape != d.batch_shape:
            raise ValueError(f"actions must have shape {tuple(d.batch_shape)}, got {a.shape}")
        V.check("actions", a, "real")
        s = d.score(a[None])
        s_loc, s_scale = s["loc"][0], s["scale"][0]
        return {"w": phi[..., :, None] * s_loc[..., None, :],
                "log_std": s_scale * np.exp(self.params["log_std"])}


# ---------------------------------------------------------------------------
# the estimator
# ---------------------------------------------------------------------------

@np.errstate(over="ignore", invalid="ignore")  # an overflow is reported below, clearly
def policy_gradient(scores, returns, *, mask=None, baseline="loo"):
    """REINFORCE estimate of grad E[return] and its standard error.

    Parameters
    ----------
    scores : dict[str, array]
        Per-step scores of the policy, each of shape (E, T, *param_shape)
        (E episodes, T steps), e.g. ``policy.score(features, actions)``.
    returns : array, shape (E, T) or (E,)
        (E, T): the returns-to-go G_t (:func:`returns_to_go`), weighting
        each step's score; (E,): one return per episode, weighting the
        episode's summed score (the plain estimator, higher variance).
    mask : bool array (E, T), optional
        False after an episode ended (those steps are ignored).
    baseline : None, float, "loo" or "optimal"
        "loo": b_{i,t} = the mean of G_t over the *other* episodes still
        running at t (unbiased: it does not depend on episode i).
        "optimal" (episode returns only): per coordinate
        sum_{j != i} G_j S_j^2 / sum_{j != i} S_j^2, leave-one-out.

    Returns
    -------
    GradientEstimate
        ``grad`` / ``stderr`` per parameter (episodes are the independent
        draws: ``n`` = E); ``value`` = mean return of the episodes.
    """
    baseline = check_baseline(baseline)
    G = V.as_real_array("returns", returns)
    if not np.isfinite(G).all():
        raise ValueError("returns must be finite")
    if G.ndim not in (1, 2):
        raise ValueError(f"returns must have shape (E, T) or (E,), got {G.shape}")
    E = G.shape[0]
    if E < 2:
        raise ValueError(f"returns must hold at least 2 episodes, got {E}")
    if not isinstance(scores, dict):
        raise TypeError(f"scores must be a dict {{parameter name: array (E, T, ...)}}, got "
                        f"{type(scores).__name__}")
    if not scores:
        raise ValueError("scores must hold at least one parameter's scores")
    names = list(scores)
    S = {}
    T = None
    for k in names:
        s = V.check(f"scores[{k!r}]", V.as_real_array(f"scores[{k!r}]", scores[k]), "real")
        if s.ndim < 2 or s.shape[0] != E:
            raise ValueError(f"scores[{k!r}] must have shape (E={E}, T, ...), got {s.shape}")
        if T is None:
            T = s.shape[1]
        elif s.shape[1] != T:
            raise ValueError(f"scores have different numbers of steps: {T} and {s.shape[1]}")
        S[k] = s
    if mask is None:
        mask = np.ones((E, T), dtype=bool)
    else:
        mask = _mask(mask)
        if mask.shape != (E, T):
            raise ValueError(f"mask must have shape ({E}, {T}), got {mask.shape}")
    flat = np.concatenate(
        [(S[k] * mask.reshape(E, T, *([1] * (S[k].ndim - 2)))).reshape(E, T, -1)
         for k in names], axis=2)  # (E, T, P)
    if G.ndim == 2:
        if G.shape != (E, T):
            raise ValueError(f"returns must have shape ({E}, {T}) to match the scores, got "
                             f"{G.shape}")
        if baseline == "optimal":
            raise ValueError("baseline='optimal' needs episode returns of shape (E,); with "
                             "returns-to-go use 'loo'")
        Gm = np.where(mask, G, 0.0)
        if baseline is None:
            b = np.zeros_like(Gm)
        elif baseline == "loo":
            cnt = mask.sum(0)[None, :] - mask
            with np.errstate(divide="ignore", invalid="ignore"):
                b = np.where(cnt > 0, (Gm.sum(0)[None, :] - Gm) / cnt, 0.0)
        else:
            b = np.full_like(Gm, baseline)
        y = np.einsum("etp,et->ep", flat, Gm - b)
        value_per_episode = Gm[:, 0]
    else:
        if G.shape != (E,):
            raise ValueError(f"returns must have shape ({E},), got {G.shape}")
        y = baselined_terms(G, flat.sum(1), baseline)  # scores summed over steps
        value_per_episode = G
    with np.errstate(over="ignore", invalid="ignore"):
        mean = y.mean(0)
        var = y.var(0, ddof=1)
        se = np.sqrt(var / E)
    if not (np.isfinite(mean).all() and np.isfinite(var).all()):
        raise FloatingPointError("the policy gradient overflowed (returns x scores beyond the "
                                 "range of a double)")
    out = []
    for part in (mean, se, var):
        d, o = {}, 0
        for k in names:
            shp = S[k].shape[2:]
            size = int(np.prod(shp, dtype=np.int64))
            d[k] = part[o:o + size].reshape(shp)
            o += size
        out.append(d)
    vvar = float(value_per_episode.var(ddof=1))
    return GradientEstimate(out[0], out[1], out[2], float(value_per_episode.mean()),
                            math.sqrt(vvar / E), E, baseline=baseline, method="reinforce",
                            value_variance=vvar, info={"steps": T}, cov=terms_cov(y))


# ---------------------------------------------------------------------------
# an environment, roll-outs and training
# ---------------------------------------------------------------------------

def _state_and_one(states):
    """Policy features of the built-in environments: the state and a constant 1."""
    return np.concatenate([states, np.ones(states.shape[:-1] + (1,))], axis=-1)


class CartPole:
    """The classic cart-pole balancing task (Barto, Sutton & Anderson 1983)
    with the usual constants (pole half-length 0.5 m, force 10 N, 50 Hz Euler
    steps), vectorised over a batch of episodes.

    State (x, x_dot, theta, theta_dot); actions 0 (push left) and 1 (push
    right); reward 1 for every step taken; an episode ends when |x| > 2.4,
    |theta| > 12 degrees or after ``max_steps`` steps.
    """

    n_actions = 2
    n_features = 5  # the state and a constant

    def __init__(self, max_steps=200):
        self.max_steps = V.integer("max_steps", max_steps, minimum=1)
        self.gravity, self.m_cart, self.m_pole, self.half_len = 9.8, 1.0, 0.1, 0.5
        self.force, self.tau = 10.0, 0.02
        self.x_limit, self.theta_limit = 2.4, 12 * 2 * math.pi / 360

    def reset(self, n, rng=None):
        """Initial states of n episodes, uniform in [-0.05, 0.05]^4."""
        return V.as_generator(rng).uniform(-0.05, 0.05, size=(V.integer("n", n, minimum=1), 4))

    features = staticmethod(_state_and_one)

    def step(self, states, actions):
        """(next states, rewards, done) for a batch."""
        x, xd, th, thd = states.T
        f = np.where(np.asarray(actions) == 1, self.force, -self.force)
        total = self.m_cart + self.m_pole
        pml = self.m_pole * self.half_len
        c, s = np.cos(th), np.sin(th)
        temp = (f + pml * thd * thd * s) / total
        thacc = (self.gravity * s - c * temp) / (
            self.half_len * (4.0 / 3.0 - self.m_pole * c * c / total))
        xacc = temp - pml * thacc * c / total
        new = np.stack([x + self.tau * xd, xd + self.tau * xacc,
                        th + self.tau * thd, thd + self.tau * thacc], axis=1)
        done = (np.abs(new[:, 0]) > self.x_limit) | (np.abs(new[:, 2]) > self.theta_limit)
        return new, np.ones(len(states)), done


class Reach1D:
    """Reach the origin on a line: a continuous-action task for
    :class:`GaussianPolicy`.

    State x (start uniform in [-1, 1]); action a (real, clipped to
    [-max_action, max_action]); x <- x + dt * a; reward -(x^2 + c a^2) per
    step; ``max_steps`` steps, no early end.  Features (x, 1).
    """

    n_features = 2

    def __init__(self, max_steps=20, dt=0.2, action_cost=0.01, max_action=5.0):
        self.max_steps = V.integer("max_steps", max_steps, minimum=1)
        self.dt = V.scalar("dt", dt, "positive")
        self.action_cost = V.scalar("action_cost", action_cost, "nonnegative")
        self.max_action = V.scalar("max_action", max_action, "positive")

    def reset(self, n, rng=None):
        """Initial positions of n episodes, shape (n, 1)."""
        return V.as_generator(rng).uniform(-1.0, 1.0, size=(V.integer("n", n, minimum=1), 1))

    features = staticmethod(_state_and_one)

    def step(self, states, actions):
        a = np.clip(np.asarray(actions, dtype=float).reshape(states.shape), -self.max_action,
                    self.max_action)
        new = states + self.dt * a
        r = -(new[:, 0] ** 2 + self.action_cost * a[:, 0] ** 2)
        return new, r, np.zeros(len(states), dtype=bool)


class Trajectories:
    """A batch of episodes padded to T steps: ``features`` (E, T, F),
    ``actions`` (E, T), ``rewards`` (E, T), ``mask`` (E, T) (True while
    running), ``lengths`` (E,)."""

    def __init__(self, features, actions, rewards, mask):
        self.features, self.actions, self.rewards, self.mask = features, actions, rewards, mask
        self.lengths = mask.sum(1)

    @property
    def total_returns(self):
        return np.where(self.mask, self.rewards, 0.0).sum(1)


def rollout(env, policy, n_episodes, rng=None):
    """Run ``n_episodes`` episodes of ``env`` with ``policy`` in lock-step
    (one vectorised policy call per time step)."""
    gen = V.as_generator(rng)
    E = V.integer("n_episodes", n_episodes, minimum=1)
    T = env.max_steps
    state = env.reset(E, gen)
    F = env.n_features
    feats = np.zeros((E, T, F))
    acts = np.zeros((E, T), dtype=np.int64) if isinstance(policy, SoftmaxPolicy) else \
        np.zeros((E, T, policy.n_actions))
    rews = np.zeros((E, T))
    mask = np.zeros((E, T), dtype=bool)
    alive = np.ones(E, dtype=bool)
    for t in range(T):
        if not alive.any():
            break
        phi = env.features(state)
        a = policy.sample(phi, gen)
        nxt, r, done = env.step(state, a)
        feats[:, t] = phi
        acts[:, t] = a
        rews[:, t] = np.where(alive, r, 0.0)
        mask[:, t] = alive
        alive = alive & ~done
        state = nxt
    return Trajectories(feats, acts, rews, mask)


class ReinforceResult:
    """The result of :func:`reinforce`: ``policy`` (trained), ``returns``
    (mean episode return per iteration), ``returns_stderr``, ``grad_norm``."""

    def __init__(self, policy, returns, returns_stderr, grad_norm):
        self.policy = policy
        self.returns = returns
        self.returns_stderr = returns_stderr
        self.grad_norm = grad_norm

    def __repr__(self):
        k = max(1, len(self.returns) // 10)
        return (f"ReinforceResult(iterations={len(self.returns)}, first {k}: "
                f"{self.returns[:k].mean():.4g}, last {k}: {self.returns[-k:].mean():.4g})")


def reinforce(env, policy, *, iterations=100, episodes=20, lr=0.05, gamma=1.0, baseline="loo",
              rng=None, progress=True):
    """Train ``policy`` on ``env`` with REINFORCE and Adam.

    Each iteration rolls out ``episodes`` episodes, forms the returns-to-go
    (discount ``gamma``), the policy gradient with the ``baseline``
    (:func:`policy_gradient`), and takes an Adam ascent step of size ``lr``.

    Returns
    -------
    ReinforceResult
        ``.policy`` and the learning curve ``.returns`` (undiscounted mean
        return of each iteration's episodes).
    """
    for name in ("max_steps", "n_features", "reset", "features", "step"):
        if isinstance(env, type) or not hasattr(env, name):
            raise TypeError(f"env must be an environment instance (CartPole(), Reach1D(), or an "
                            f"object with {name}), got {env!r}")
    if not isinstance(policy, (SoftmaxPolicy, GaussianPolicy)):
        raise TypeError(f"policy must be a SoftmaxPolicy or GaussianPolicy, got "
                        f"{type(policy).__name__}")
    iterations = V.integer("iterations", iterations, minimum=1, maximum=2**40)
    episodes = V.integer("episodes", episodes, minimum=2, maximum=2**24)
    lr = V.scalar("lr", lr, "positive")
    progress = V.flag("progress", progress)
    gen = V.as_generator(rng)
    opt = Adam(policy.params, lr=lr)
    curve = np.empty(iterations)
    curve_se = np.empty(iterations)
    gnorm = np.empty(iterations)
    bar = simple_bar(iterations, progress, "REINFORCE")
    try:
        for it in range(iterations):
            tr = rollout(env, policy, episodes, gen)
            G = returns_to_go(tr.rewards, gamma, tr.mask)
            sc = policy.score(tr.features, tr.actions)
            est = policy_gradient(sc, G, mask=tr.mask, baseline=baseline)
            tot = tr.total_returns
            curve[it] = tot.mean()
            curve_se[it] = tot.std(ddof=1) / math.sqrt(episodes)
            gnorm[it] = math.sqrt(sum(float((g * g).sum()) for g in est.grad.values()))
            try:
                policy = policy.with_params(opt.step(est.grad))
            except ValueError as exc:
                raise ValueError(f"reinforce: Adam step {it + 1} (lr={lr}) moved the policy out "
                                 f"of its parameter range: {exc}; use a smaller lr") from None
            bar.update(1)
            bar.set_postfix_str(f"return {curve[it]:.1f}")
    finally:
        bar.close()
    return ReinforceResult(policy, curve, curve_se, gnorm)
