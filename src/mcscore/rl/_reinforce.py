"""The policy-gradient estimate and the REINFORCE training loop
(re-exported by :mod:`mcscore.rl`)."""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import _docs
from .. import _validation as V
from .._algebra import baselined_terms, check_baseline
from .._progress import simple_bar
from ..result import GradientEstimate, terms_cov
from ..vi import Adam, _check_lr, _lr_at
from ._baselines import LinearValue, _mask, gae, returns_to_go, value_baseline
from ._fragments import DOC_FRAGMENTS
from ._rollout import _check_env, _check_policy, rollout


def _is_array_baseline(baseline: Any) -> bool:
    return isinstance(baseline, (np.ndarray, list, tuple))


def _per_step_baseline(baseline: Any, G: Any, mask: Any, features: Any) -> Any:
    """The (E, T) baselines b of returns-to-go G: None, a number, "loo",
    "value" or an array of per-step baselines ((E, T) or (T,))."""
    E, T = G.shape
    Gm = np.where(mask, G, 0.0)
    if baseline is None:
        return np.zeros_like(Gm)
    if isinstance(baseline, str) and baseline == "value":
        if features is None:
            raise ValueError("baseline='value' needs the step features: pass features= "
                             "(shape (E, T, F))")
        return value_baseline(features, G, mask)
    if _is_array_baseline(baseline):
        b = V.as_real_array("baseline", baseline)
        if b.shape not in ((E, T), (T,)):
            raise ValueError(f"an array baseline must have shape ({E}, {T}) or ({T},) (per "
                             f"episode and step, or per step), got {b.shape}")
        if not np.isfinite(b).all():
            raise ValueError("baseline must be finite")
        return np.broadcast_to(b, (E, T))
    if baseline == "loo":
        cnt = mask.sum(0)[None, :] - mask
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(cnt > 0, (Gm.sum(0)[None, :] - Gm) / cnt, 0.0)
    return np.full_like(Gm, baseline)


def _check_scores(scores: Any, E: Any, what: str = "scores") -> Any:
    if not isinstance(scores, dict):
        raise TypeError(f"{what} must be a dict {{parameter name: array (E, T, ...)}}, got "
                        f"{type(scores).__name__}")
    if not scores:
        raise ValueError(f"{what} must hold at least one parameter's scores")
    S = {}
    T = None
    for k in scores:
        s = V.check(f"{what}[{k!r}]", V.as_real_array(f"{what}[{k!r}]", scores[k]), "real")
        if s.ndim < 2 or s.shape[0] != E:
            raise ValueError(f"{what}[{k!r}] must have shape (E={E}, T, ...), got {s.shape}")
        if T is None:
            T = s.shape[1]
        elif s.shape[1] != T:
            raise ValueError(f"{what} have different numbers of steps: {T} and {s.shape[1]}")
        S[k] = s
    return S, T


def _flat(S: Any, mask: Any, E: Any, T: Any) -> Any:
    parts = [(S[k] * mask.reshape(E, T, *([1] * (S[k].ndim - 2)))).reshape(E, T, -1) for k in S]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=2)  # (E, T, P)


@np.errstate(over="ignore", invalid="ignore")  # an overflow is reported below, clearly
def policy_gradient(scores: Mapping[str, ArrayLike], returns: ArrayLike, *,
                    mask: ArrayLike | None = None, baseline: Any = "loo",
                    features: ArrayLike | None = None,
                    bonus: Mapping[str, ArrayLike] | None = None) -> GradientEstimate:
    """REINFORCE estimate of grad E[return] and its standard error.

    Parameters
    ----------
    scores : dict[str, array]
        Per-step scores of the policy, each of shape ``(E, T, *param_shape)``
        (E episodes, T steps), e.g. ``policy.score(features, actions)``.
    returns : array, shape (E, T) or (E,)
        (E, T): the returns-to-go G_t (:func:`returns_to_go`) or advantages
        (:func:`gae`, with ``baseline=None``), weighting each step's score;
        (E,): one return per episode, weighting the episode's summed score
        (the plain estimator, higher variance).
    mask : bool array (E, T), optional
        False after an episode ended (those steps are ignored).
    baseline : None, float, "loo", "value", array, or "optimal"
        "loo": b_{i,t} = the mean of G_t over the *other* episodes still
        running at t (unbiased: it does not depend on episode i).
        "value" (needs ``features``): per state, :func:`value_baseline`.
        An array of shape (E, T) or (T,): per-step baselines (the caller
        keeps them independent of each episode's own actions).
        "optimal" (episode returns only): per coordinate
        sum_{j != i} G_j S_j^2 / sum_{j != i} S_j^2, leave-one-out.
    features : array (E, T, F), optional
        The step features, for ``baseline="value"``.
    bonus : dict[str, array], optional
        Per-step terms added to each episode's gradient term (shape like
        ``scores``, masked the same way), e.g. an entropy bonus
        ``entropy_coef * dH``.

    Returns
    -------
    GradientEstimate
        ``grad`` / ``stderr`` per parameter (episodes are the independent
        draws: ``n`` = E); ``value`` = mean return of the episodes.

    Raises
    ------
    ValueError
        Fewer than 2 episodes, shapes that do not match, non-finite returns,
        or a baseline that does not fit the returns' shape.

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> env, pol = mc.rl.Reach1D(max_steps=5), mc.rl.GaussianPolicy(n_features=2)
    >>> tr = mc.rl.rollout(env, pol, 50, rng=0)
    >>> G = mc.rl.returns_to_go(tr.rewards, mask=tr.mask)
    >>> res = mc.rl.policy_gradient(pol.score(tr.features, tr.actions), G, mask=tr.mask)
    >>> sorted(res.grad), res.n
    (['log_std', 'w'], 50)
    """
    if not (_is_array_baseline(baseline) or (isinstance(baseline, str) and baseline == "value")):
        baseline = check_baseline(baseline)
    G = V.as_real_array("returns", returns)
    if not np.isfinite(G).all():
        raise ValueError("returns must be finite")
    if G.ndim not in (1, 2):
        raise ValueError(f"returns must have shape (E, T) or (E,), got {G.shape}")
    E = G.shape[0]
    if E < 2:
        raise ValueError(f"returns must hold at least 2 episodes, got {E}")
    S, T = _check_scores(scores, E)
    names = list(S)
    if mask is None:
        mask = np.ones((E, T), dtype=bool)
    else:
        mask = _mask(mask)
        if mask.shape != (E, T):
            raise ValueError(f"mask must have shape ({E}, {T}), got {mask.shape}")
    flat = _flat(S, mask, E, T)
    if G.ndim == 2:
        if G.shape != (E, T):
            raise ValueError(f"returns must have shape ({E}, {T}) to match the scores, got "
                             f"{G.shape}")
        if isinstance(baseline, str) and baseline == "optimal":
            raise ValueError("baseline='optimal' needs episode returns of shape (E,); with "
                             "returns-to-go use 'loo' or 'value'")
        Gm = np.where(mask, G, 0.0)
        b = _per_step_baseline(baseline, G, mask, features)
        y = np.einsum("etp,et->ep", flat, Gm - b)
        value_per_episode = Gm[:, 0]
    else:
        if G.shape != (E,):
            raise ValueError(f"returns must have shape ({E},), got {G.shape}")
        if _is_array_baseline(baseline) or baseline == "value":
            raise ValueError("per-step baselines (an array or 'value') need returns-to-go of "
                             "shape (E, T)")
        y = baselined_terms(G, flat.sum(1), baseline)  # scores summed over steps
        value_per_episode = G
    if bonus is not None:
        Bn, Tb = _check_scores(bonus, E, "bonus")
        if Tb != T or any(Bn[k].shape != S.get(k, np.empty(0)).shape for k in Bn) \
                or set(Bn) != set(S):
            raise ValueError("bonus must have the keys and shapes of scores")
        y = y + _flat({k: Bn[k] for k in names}, mask, E, T).sum(1)
    if _is_array_baseline(baseline):
        baseline = "array"
    return _estimate(y, {k: S[k].shape[2:] for k in names}, value_per_episode, baseline, T)


def _estimate(y: Any, shapes: Any, value_per_episode: Any, baseline: Any, T: Any) -> Any:
    """The GradientEstimate from the per-episode terms y (E, P)."""
    E = y.shape[0]
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
        for k, shp in shapes.items():
            size = int(np.prod(shp, dtype=np.int64))
            d[k] = part[o:o + size].reshape(shp)
            o += size
        out.append(d)
    vvar = float(value_per_episode.var(ddof=1))
    return GradientEstimate(out[0], out[1], out[2], float(value_per_episode.mean()),
                            math.sqrt(vvar / E), E, baseline=baseline, method="reinforce",
                            value_variance=vvar, info={"steps": T}, cov=terms_cov(y))


class ReinforceResult:
    """The result of :func:`reinforce`: ``policy`` (trained), ``returns``
    (mean episode return per iteration), ``returns_stderr``, ``grad_norm``.

    Parameters
    ----------
    policy : policy
        The trained policy.
    returns, returns_stderr, grad_norm : numpy.ndarray, shape (iterations,)
        Per iteration: the mean episode return, its standard error and the
        norm of the gradient estimate.

    Raises
    ------
    TypeError
        ``returns`` without a length (the ``repr`` needs one).

    Examples
    --------
    >>> import mcscore as mc
    >>> res = mc.rl.reinforce(mc.rl.Reach1D(max_steps=5), mc.rl.GaussianPolicy(2),
    ...                       iterations=3, episodes=8, rng=0)
    >>> type(res).__name__, res.returns.shape
    ('ReinforceResult', (3,))
    """

    def __init__(self, policy: Any, returns: NDArray[np.float64],
                 returns_stderr: NDArray[np.float64], grad_norm: NDArray[np.float64]) -> None:
        self.policy = policy
        self.returns = returns
        self.returns_stderr = returns_stderr
        self.grad_norm = grad_norm

    def __repr__(self) -> str:
        k = max(1, len(self.returns) // 10)
        return (f"ReinforceResult(iterations={len(self.returns)}, first {k}: "
                f"{self.returns[:k].mean():.4g}, last {k}: {self.returns[-k:].mean():.4g})")


def _reinforce_baseline(baseline: Any) -> Any:
    if isinstance(baseline, str) and baseline == "value":
        return baseline
    baseline = check_baseline(baseline)
    if isinstance(baseline, str) and baseline == "optimal":
        raise ValueError("baseline='optimal' needs episode returns; reinforce uses "
                         "returns-to-go: use 'loo' or 'value'")
    return baseline


def _iteration_gradient(policy: Any, tr: Any, G: Any, gamma: Any, baseline: Any, gae_lambda: Any,
                        entropy_coef: Any, history: Any) -> Any:
    """One iteration's policy gradient: baselined returns-to-go (or GAE
    advantages), the entropy bonus, and the policy's ``episode_grads`` when
    it has one (one autograd pass), else its per-step scores."""
    if gae_lambda is not None:
        vals = value_baseline(tr.features, G, tr.mask, history=history)
        G, baseline = gae(tr.rewards, vals, tr.mask, gamma=gamma, lam=gae_lambda), None
    elif isinstance(baseline, str) and baseline == "value":
        baseline = value_baseline(tr.features, G, tr.mask, history=history)
    episode_grads = getattr(policy, "episode_grads", None)
    if episode_grads is None:
        sc = policy.score(tr.features, tr.actions)
        bonus = None
        if entropy_coef > 0:
            _, dH = policy.entropy(tr.features)
            bonus = {k: entropy_coef * np.asarray(v, dtype=float) for k, v in dH.items()}
        return policy_gradient(sc, G, mask=tr.mask, baseline=baseline, features=tr.features,
                               bonus=bonus)
    mask = tr.mask
    E, T = mask.shape
    b = _per_step_baseline(baseline, G, mask, tr.features)
    w = np.where(mask, G - b, 0.0)
    terms = episode_grads(tr.features, tr.actions, w,
                          entropy_coef * mask if entropy_coef > 0 else None)
    y = np.concatenate([np.asarray(v, dtype=float).reshape(E, -1) for v in terms.values()],
                       axis=1)
    return _estimate(y, {k: np.shape(v)[1:] for k, v in terms.items()},
                     np.where(mask, G, 0.0)[:, 0], baseline, T)


def reinforce(env: Any, policy: Any, *, iterations: int = 100, episodes: int = 20, lr: Any = 0.05,
              gamma: float = 1.0, baseline: Any = "loo", gae_lambda: float | None = None,
              entropy_coef: float = 0.0, rng: np.random.Generator | int | None = None,
              progress: bool = False) -> ReinforceResult:
    """Train ``policy`` on ``env`` with REINFORCE and Adam.

    Each iteration rolls out ``episodes`` episodes, forms the returns-to-go
    (discount ``gamma``), the policy gradient with the ``baseline``
    (:func:`policy_gradient`), and takes an Adam ascent step of size ``lr``
    on ``policy.params`` (``policy.with_params`` gives the next policy).

    Parameters
    ----------
    env : an environment (see the module notes)
    policy : any object with the policy protocol (see the module notes)
    iterations, episodes : int
    lr : float > 0, or a schedule (a callable of the iteration 1, 2, ...)
    gamma : float in [0, 1]
    baseline : None, float, "loo" or "value"
        "value": :func:`value_baseline`, its regression also fed the
        earlier iterations' episodes (a :class:`LinearValue` history with
        decay 0.8 per iteration).
    gae_lambda : float in [0, 1], optional
        Use generalised advantages (:func:`gae`) with the leave-one-out
        value function of ``"value"`` instead of baselined returns-to-go
        (``baseline`` is then ignored).
    entropy_coef : float >= 0
        Weight of the entropy bonus (needs ``policy.entropy``).
    rng, progress

    Returns
    -------
    ReinforceResult
        ``.policy`` and the learning curve ``.returns`` (undiscounted mean
        return of each iteration's episodes).

    Raises
    ------
    TypeError
        ``policy`` without the policy protocol, or ``env`` without the
        environment protocol.
    ValueError
        An option outside its range (``iterations`` < 1, ``episodes`` < 2,
        an unknown ``baseline``, ...).

    Examples
    --------
    >>> import mcscore as mc
    >>> env = mc.rl.CartPole()
    >>> pol = mc.rl.SoftmaxPolicy(n_features=env.n_features, n_actions=env.n_actions)
    >>> run = mc.rl.reinforce(env, pol, iterations=30, episodes=20, rng=0, progress=False)
    >>> run.returns.shape
    (30,)
    >>> bool(run.returns[-5:].mean() > run.returns[:5].mean())    # it learns
    True
    """
    _check_env(env)
    _check_policy(policy)
    iterations = V.integer("iterations", iterations, minimum=1, maximum=2**40)
    episodes = V.integer("episodes", episodes, minimum=2, maximum=2**24)
    lr = _check_lr(lr)
    gamma = V.scalar("gamma", gamma, "unit_interval")
    baseline = _reinforce_baseline(baseline)
    if gae_lambda is not None:
        gae_lambda = V.scalar("gae_lambda", gae_lambda, "unit_interval")
    entropy_coef = V.scalar("entropy_coef", entropy_coef, "nonnegative")
    if entropy_coef > 0 and not callable(getattr(policy, "entropy", None)):
        raise TypeError(f"entropy_coef > 0 needs policy.entropy(features) -> (H, dH); "
                        f"{type(policy).__name__} has none")
    progress = V.flag("progress", progress)
    gen = V.as_generator(rng)
    opt = Adam(policy.params, lr=lr if not callable(lr) else 1.0)
    history = LinearValue(decay=0.8)
    curve = np.empty(iterations)
    curve_se = np.empty(iterations)
    gnorm = np.empty(iterations)
    bar = simple_bar(iterations, progress, "REINFORCE")
    try:
        for it in range(iterations):
            tr = rollout(env, policy, episodes, gen)
            G = returns_to_go(tr.rewards, gamma, tr.mask)
            est = _iteration_gradient(policy, tr, G, gamma, baseline, gae_lambda, entropy_coef,
                                      history)
            tot = tr.total_returns
            curve[it] = tot.mean()
            curve_se[it] = tot.std(ddof=1) / math.sqrt(episodes)
            gnorm[it] = math.sqrt(sum(float((g * g).sum()) for g in est.grad.values()))
            lr_it = _lr_at(lr, it + 1)
            try:
                policy = policy.with_params(opt.step(est.grad, lr_it))
            except ValueError as exc:
                raise ValueError(f"reinforce: Adam step {it + 1} (lr={lr_it}) moved the policy "
                                 f"out of its parameter range: {exc}; use a smaller lr") from None
            bar.update(1)
            bar.set_postfix_str(f"return {curve[it]:.1f}")
    finally:
        bar.close()
    return ReinforceResult(policy, curve, curve_se, gnorm)


_docs.fill_module(globals(), **DOC_FRAGMENTS)
