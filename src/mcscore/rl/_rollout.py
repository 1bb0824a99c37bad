"""Roll-outs: episodes in lock-step, per step or in place (the optional
``stepper`` and ``sampler`` of the protocols; re-exported by :mod:`mcscore.rl`)."""
from __future__ import annotations

import inspect
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import _docs
from .. import _validation as V
from ._fragments import DOC_FRAGMENTS


def _step_takes_rng(env: Any) -> bool:
    """Whether env.step accepts the roll-out's Generator (a parameter named
    rng, or a third positional parameter)."""
    try:
        sig = inspect.signature(env.step)
    except (TypeError, ValueError):
        return False
    ps = list(sig.parameters.values())
    if any(p.name == "rng" for p in ps) or any(p.kind == p.VAR_POSITIONAL for p in ps):
        return True
    pos = [p for p in ps if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(pos) >= 3


class Trajectories:
    """A batch of episodes padded to T steps: ``features`` (E, T, F),
    ``actions`` (E, T) for discrete actions or ``(E, T, *action_shape)``,
    ``rewards`` (E, T), ``mask`` (E, T) (True while running), ``lengths``
    (E,).

    Parameters
    ----------
    features : numpy.ndarray, shape (E, T, F)
    actions : numpy.ndarray, shape (E, T) or ``(E, T, *action_shape)``
    rewards : numpy.ndarray, shape (E, T)
    mask : numpy.ndarray of bool, shape (E, T)

    Raises
    ------
    AttributeError
        ``mask`` that is not an array (no ``sum``).

    Examples
    --------
    >>> import mcscore as mc
    >>> tr = mc.rl.rollout(mc.rl.Reach1D(max_steps=3), mc.rl.GaussianPolicy(2), 2, rng=0)
    >>> tr.lengths.tolist(), tr.total_returns.shape
    ([3, 3], (2,))
    """

    def __init__(self, features: NDArray[np.float64], actions: NDArray[Any],
                 rewards: NDArray[np.float64], mask: NDArray[np.bool_]) -> None:
        self.features, self.actions, self.rewards, self.mask = features, actions, rewards, mask
        self.lengths = mask.sum(1)

    @property
    def total_returns(self) -> NDArray[np.float64]:
        return np.where(self.mask, self.rewards, 0.0).sum(1)


_POLICY_PROTOCOL = ("sample", "score", "params", "with_params")


def _check_policy(policy: Any) -> None:
    if isinstance(policy, type) or not all(hasattr(policy, a) for a in _POLICY_PROTOCOL):
        raise TypeError(f"policy must provide the policy protocol ({', '.join(_POLICY_PROTOCOL)}"
                        f"; e.g. SoftmaxPolicy, GaussianPolicy, TorchPolicy), got "
                        f"{type(policy).__name__}")
    return policy


def _check_env(env: Any) -> None:
    for name in ("max_steps", "n_features", "reset", "features", "step"):
        if isinstance(env, type) or not hasattr(env, name):
            raise TypeError(f"env must be an environment instance (CartPole(), Reach1D(), "
                            f"GymEnv(...), or an object with {name}), got {env!r}")


def rollout(env: Any, policy: Any, n_episodes: int,
            rng: np.random.Generator | int | None = None) -> Trajectories:
    """Run ``n_episodes`` episodes of ``env`` with ``policy`` in lock-step
    (one vectorised policy call per time step).  ``env.step`` receives the
    same Generator when it takes an ``rng``.  Actions are stored as the
    policy returns them: (E, T) for one discrete action per step (its
    integer dtype), ``(E, T, *action_shape)`` otherwise.

    Parameters
    ----------
    env : environment
        ``CartPole()``, ``Reach1D()``, ``GymEnv(...)`` or an object with
        ``max_steps``, ``n_features``, ``reset``, ``features`` and ``step``.
    policy : policy
        ``SoftmaxPolicy``, ``GaussianPolicy``, ``TorchPolicy`` or an object
        with ``sample``, ``score``, ``params`` and ``with_params``.
    n_episodes : int
        E (>= 1).
    rng : None, int, SeedSequence or Generator
        The randomness of the policy and the environment.

    Returns
    -------
    Trajectories

    Raises
    ------
    TypeError
        A policy or environment without the protocol (e.g. a class instead
        of an instance).
    ValueError
        ``n_episodes`` < 1, or a policy returning actions of the wrong shape.

    Examples
    --------
    >>> import mcscore as mc
    >>> tr = mc.rl.rollout(mc.rl.CartPole(max_steps=50), mc.rl.SoftmaxPolicy(5, 2), 8, rng=0)
    >>> tr.actions.shape, tr.actions.dtype
    ((8, 50), dtype('int64'))
    """
    _check_policy(policy)
    gen = V.as_generator(rng)
    E = V.integer("n_episodes", n_episodes, minimum=1)
    T = env.max_steps
    state = env.reset(E, gen)
    stepper = getattr(env, "stepper", None)
    step_into = stepper(state) if callable(stepper) else None
    if step_into is not None:
        return _rollout_in_place(env, policy, step_into, state, E, T, gen)
    with_rng = _step_takes_rng(env)
    F = env.n_features
    feats = np.zeros((E, T, F))
    acts = None
    rews = np.zeros((E, T))
    mask = np.zeros((E, T), dtype=bool)
    alive = np.ones(E, dtype=bool)
    for t in range(T):
        if not alive.any():
            break
        phi = env.features(state)
        a = _sampled(policy, phi, gen, E, acts, t)
        if acts is None:
            acts = np.zeros((E, T) + a.shape[1:], dtype=a.dtype)
        nxt, r, done = env.step(state, a, gen) if with_rng else env.step(state, a)
        feats[:, t] = phi
        acts[:, t] = a
        rews[:, t] = r  # the ended episodes' rewards are zeroed below, all at once
        mask[:, t] = alive
        alive = alive & ~np.asarray(done, dtype=bool)
        state = nxt
    if acts is None:
        acts = np.zeros((E, T), dtype=np.int64)
    return Trajectories(feats, acts, np.where(mask, rews, 0.0), mask)


def _sampled(policy: Any, phi: Any, gen: Any, E: Any, acts: Any, t: Any) -> Any:
    """policy.sample(phi, gen) as an array, checked against the episodes and
    the actions so far (acts: None, or (E, T, *shape) or (T, E, *shape))."""
    a = np.asarray(policy.sample(phi, gen))
    if a.ndim < 1 or a.shape[0] != E:
        raise ValueError(f"policy.sample returned shape {a.shape} for features of shape "
                         f"{np.shape(phi)}; it must return one action per episode (first "
                         f"axis {E})")
    if acts is not None and a.shape[1:] != acts.shape[2:]:
        raise ValueError(f"policy.sample returned actions of shape {a.shape[1:]} at step "
                         f"{t}, {acts.shape[2:]} before")
    return a


def _rollout_in_place(env: Any, policy: Any, step_into: Any, state: Any, E: Any, T: Any,
                      gen: Any) -> Trajectories:
    """rollout for an environment with a stepper: the features of every step
    in one time-major buffer (T + 1, E, F), each row filled first with the
    reset states' features and then stepped into by step_into; the policy's
    sampler, when it has one, draws into the actions' rows.  The numbers of
    the per-step path bit for bit."""
    phi0 = np.asarray(env.features(state), dtype=np.float64)
    FT = np.empty((T + 1,) + phi0.shape)
    FT[...] = phi0
    R = np.zeros((T, E))
    M = np.zeros((T + 1, E), dtype=bool)
    M[0] = True
    sampler = getattr(policy, "sampler", None)
    draw = sampler(E) if callable(sampler) else None
    acts: Any = np.zeros((T, E), dtype=np.int64) if draw is not None else None
    t_end = T
    for t in range(T):
        if not np.count_nonzero(M[t]):
            t_end = t
            break
        phi = FT[t]
        if draw is not None:
            a = draw(phi, gen, acts[t])
        else:
            a = _sampled(policy, phi, gen, E, None if acts is None else acts.swapaxes(0, 1), t)
            if acts is None:
                acts = np.zeros((T,) + a.shape, dtype=a.dtype)
            acts[t] = a
        r, done = step_into(phi, a, FT[t + 1], gen)
        R[t] = r
        np.greater(M[t], done, M[t + 1])  # alive and not done
    FT[t_end:] = 0.0
    M[t_end:] = False
    return Trajectories(np.ascontiguousarray(FT[:T].transpose(1, 0, 2)),
                        np.ascontiguousarray(acts.swapaxes(0, 1)),
                        np.ascontiguousarray(np.where(M[:T], R, 0.0).T),
                        np.ascontiguousarray(M[:T].T))


_docs.fill_module(globals(), **DOC_FRAGMENTS)
