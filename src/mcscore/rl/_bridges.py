"""The bridges: a PyTorch module as a policy (TorchPolicy) and a
Gymnasium-style environment (GymEnv) (re-exported by :mod:`mcscore.rl`)."""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import _docs
from .. import _validation as V
from ..distributions import Categorical, Normal
from ._envs import _state_and_one
from ._fragments import DOC_FRAGMENTS
from ._policies import _alias_draw, _normal_draw


def _import_torch() -> Any:
    try:
        import torch
        import torch.func  # noqa: F401
    except ImportError:
        raise ImportError("mcscore.rl.TorchPolicy needs PyTorch (pip install torch); the "
                          "NumPy policies (SoftmaxPolicy, GaussianPolicy) and any object with "
                          "the policy protocol work without it") from None
    return torch


class TorchPolicy:
    """A PyTorch module as a policy (the policy protocol of this module).

    ``module`` maps features ``(M, F)`` (a tensor of the module's dtype) to
    ``(M, n_actions)``: the logits of a Categorical (``kind="categorical"``)
    or the mean of a Normal (``kind="gaussian"``, with a state-independent
    log standard deviation ``log_std``, a parameter of the adapter).

    * Actions are drawn by mcscore (``Categorical`` / ``Normal`` on the
      module's outputs) from the roll-out's Generator: reproducible.
    * ``score`` is torch autograd per step: ``torch.func.vmap`` of
      ``torch.func.grad`` of log pi(a | s) over the steps (in chunks of
      ``chunk`` steps, so memory stays at chunk x the parameter count);
      ``entropy`` likewise for the entropy bonus.
    * ``params`` are NumPy float64 copies of the module's parameters (named
      as in ``module.named_parameters()``, plus ``"log_std"``);
      ``with_params`` writes new values into the module *in place* (no
      grad) and returns this adapter, so :func:`reinforce` trains the
      module itself with mcscore's Adam.

    Parameters
    ----------
    module : torch.nn.Module
        Features ``(M, F)`` -> ``(M, n_actions)`` (logits or means).
    kind : {"categorical", "gaussian"}, default "categorical"
        The action distribution.
    n_actions : int, optional
        Checked against the module's outputs (>= 1); for ``"gaussian"`` the
        action dimension (default 1).
    log_std : float or array_like, default 0.0
        The initial log standard deviation (``"gaussian"``).
    chunk : int, default 4096
        Steps per vectorised autograd call (>= 1).

    Raises
    ------
    ImportError
        Without PyTorch (``pip install "mcscore[torch]"``).
    TypeError
        ``module`` not a ``torch.nn.Module``.
    ValueError
        An unknown ``kind``, a module without parameters, counts out of range.

    Examples
    --------
    %(torch_setup)s
    >>> sorted(pol.params)
    ['bias', 'weight']
    >>> pol.score(np.ones((3, 5)), np.array([0, 1, 0]))["weight"].shape
    (3, 2, 5)
    """

    def __init__(self, module: Any, kind: str = "categorical", *, n_actions: int | None = None,
                 log_std: float | ArrayLike = 0.0, chunk: int = 4096) -> None:
        torch = _import_torch()
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if kind not in ("categorical", "gaussian"):
            raise ValueError(f"kind must be 'categorical' or 'gaussian', got {kind!r}")
        self.module, self.kind = module, kind
        self.chunk = V.integer("chunk", chunk, minimum=1)
        self._torch = torch
        ps = dict(module.named_parameters())
        if not ps:
            raise ValueError("module has no parameters to train")
        self.dtype = next(iter(ps.values())).dtype
        if n_actions is not None:
            n_actions = V.integer("n_actions", n_actions, minimum=1)
        if kind == "gaussian":
            self.n_actions: int | None = 1 if n_actions is None else n_actions
            ls = np.broadcast_to(V.check("log_std", V.as_real_array("log_std", log_std), "real"),
                                 (self.n_actions,))
            self.log_std = torch.tensor(ls, dtype=self.dtype)
        else:
            self.n_actions = n_actions
            self.log_std = None

    def _tensor(self, a: Any) -> Any:
        return self._torch.as_tensor(np.require(a, requirements=["C", "W"]), dtype=self.dtype)

    def _outputs(self, features: Any) -> Any:
        phi = V.check("features", V.as_real_array("features", features), "real")
        with self._torch.no_grad():
            out = self.module(self._tensor(phi.reshape(-1, phi.shape[-1])))
        if self.n_actions is not None and out.shape[-1] != self.n_actions:
            raise ValueError(f"module returned {out.shape[-1]} outputs per state, but "
                             f"n_actions={self.n_actions}")
        return phi, out.double().numpy().reshape(phi.shape[:-1] + (-1,))

    @property
    def params(self) -> dict[str, NDArray[np.float64]]:
        out = {k: p.detach().cpu().double().numpy().copy()
               for k, p in self.module.named_parameters()}
        if self.log_std is not None:
            out["log_std"] = self.log_std.double().numpy().copy()
        return out

    def with_params(self, params: Mapping[str, ArrayLike]) -> TorchPolicy:
        """Write new parameter values into the module in place (no grad).

        Parameters
        ----------
        params : dict of str to array_like
            A value per name of ``params`` (the module's named parameters, and
            ``"log_std"`` for ``"gaussian"``).

        Returns
        -------
        TorchPolicy
            This adapter (the module is updated).

        Raises
        ------
        ValueError
            A value of the wrong shape.
        KeyError
            A missing name.

        Examples
        --------
        %(torch_setup)s
        >>> p = {k: np.zeros_like(v) for k, v in pol.params.items()}
        >>> float(abs(pol.with_params(p).params["weight"]).sum())
        0.0
        """
        torch = self._torch
        with torch.no_grad():
            for k, p in self.module.named_parameters():
                v = np.asarray(params[k], dtype=float)
                if v.shape != tuple(p.shape):
                    raise ValueError(f"params[{k!r}] must have shape {tuple(p.shape)}, got "
                                     f"{v.shape}")
                p.copy_(torch.as_tensor(v, dtype=p.dtype))
            if self.log_std is not None:
                self.log_std = torch.as_tensor(
                    np.asarray(params["log_std"], dtype=float), dtype=self.dtype).clone()
        return self

    def distribution(self, features: ArrayLike) -> Categorical | Normal:
        """The action distribution at each state (an mcscore Categorical or
        Normal with batch shape features.shape[:-1]).

        Parameters
        ----------
        features : array_like, shape ``(*batch, F)``
            The states' features.

        Returns
        -------
        Categorical or Normal
            With batch shape ``features.shape[:-1]`` (and the action axis for
            ``"gaussian"``).

        Raises
        ------
        ValueError
            Non-finite features, or a module returning another number of outputs
            than ``n_actions``.

        Examples
        --------
        >>> import numpy as np
        >>> import pytest
        >>> torch = pytest.importorskip("torch")
        >>> import mcscore as mc
        >>> pol = mc.rl.TorchPolicy(torch.nn.Linear(5, 3, dtype=torch.float64))
        >>> pol.distribution(np.ones((4, 5))).batch_shape
        (4,)
        """
        _, out = self._outputs(features)
        if self.kind == "categorical":
            return Categorical(logits=out)
        std = np.exp(self.log_std.double().numpy())
        return Normal(out, np.broadcast_to(std, out.shape))

    def sample(self, features: ArrayLike,
               rng: np.random.Generator | int | None = None) -> NDArray[Any]:
        """The draws of ``self.distribution(features).sample(1, rng)[0]``,
        bit for bit, without building the distribution's kernel.

        Parameters
        ----------
        features : array_like, shape ``(*batch, F)``
        rng : None, int, SeedSequence or Generator

        Returns
        -------
        numpy.ndarray
            Shape ``features.shape[:-1]`` (categorical) or with the action axis.

        %(raises_nonfinite)s

        Examples
        --------
        %(torch_setup)s
        >>> pol.sample(np.ones((4, 5)), rng=0).shape
        (4,)
        """
        d, gen = self.distribution(features), V.as_generator(rng)
        return _alias_draw(d.probs, gen) if self.kind == "categorical" else _normal_draw(d, gen)

    def _functional(self) -> Any:
        """(parameter dict, log pi(a | s) and entropy of a batch of rows as
        functions of it: phi (M, F), actions (M, K) one-hot or (M, K) real)."""
        torch = self._torch
        module = self.module
        names = [k for k, _ in module.named_parameters()]
        theta = {k: p.detach() for k, p in module.named_parameters()}
        if self.log_std is not None:
            theta["log_std"] = self.log_std.detach()

        def head(th: Any, phi: Any) -> Any:
            return torch.func.functional_call(module, {k: th[k] for k in names}, (phi,))

        if self.kind == "categorical":
            def logp(th: Any, phi: Any, onehot: Any, /) -> Any:
                return (torch.log_softmax(head(th, phi), -1) * onehot).sum(-1)

            def ent(th: Any, phi: Any) -> Any:
                lp = torch.log_softmax(head(th, phi), -1)
                return -(lp.exp() * lp).sum(-1)
        else:
            half_log_2pi = 0.5 * math.log(2 * math.pi)

            def logp(th: Any, phi: Any, a: Any, /) -> Any:
                ls = th["log_std"]
                z = (a - head(th, phi)) / ls.exp()
                return (-0.5 * z * z - ls - half_log_2pi).sum(-1)

            def ent(th: Any, phi: Any) -> Any:
                h = (th["log_std"] + 0.5 * math.log(2 * math.pi * math.e)).sum()
                return h.expand(phi.shape[0])
        return theta, logp, ent

    def _vmapped(self, fn: Any, theta: Any, batch: Any, *tensors: Any) -> Any:
        """torch.func.vmap of torch.func.grad of fn(theta, *rows) over the
        first axis of tensors, in chunks; NumPy float64 of shape batch + the
        parameter's shape."""
        torch = self._torch
        g = torch.func.vmap(torch.func.grad(fn), in_dims=(None,) + (0,) * len(tensors))
        M = tensors[0].shape[0]
        parts: dict[str, list[Any]] = {k: [] for k in theta}
        for lo in range(0, M, self.chunk):
            out = g(theta, *(t[lo:lo + self.chunk] for t in tensors))
            for k in theta:
                parts[k].append(out[k].double().numpy())
        return {k: (np.concatenate(v) if v else np.zeros((0,) + tuple(theta[k].shape)))
                .reshape(batch + tuple(theta[k].shape)) for k, v in parts.items()}

    def _rows(self, features: Any, actions: Any) -> Any:
        """Checked features and actions as tensors (M, F) and (M, K)."""
        phi = V.check("features", V.as_real_array("features", features), "real")
        batch = phi.shape[:-1]
        flat = phi.reshape(-1, phi.shape[-1])
        a = np.asarray(actions)
        if self.kind == "categorical":
            if a.shape != batch:
                raise ValueError(f"actions must have shape {batch}, got {a.shape}")
            K = self._outputs(flat[:1])[1].shape[-1]
            if a.size and (a.dtype.kind not in "iuf" or not np.isfinite(a).all()
                           or (a != np.round(a)).any() or a.min() < 0 or a.max() >= K):
                raise ValueError(f"actions must be integers in [0, {K})")
            a = np.eye(K)[a.reshape(-1).astype(np.int64)]
        else:
            if a.shape != batch + (self.n_actions,):
                raise ValueError(f"actions must have shape {batch + (self.n_actions,)}, got "
                                 f"{a.shape}")
            a = V.check("actions", V.as_real_array("actions", a), "real").reshape(
                -1, self.n_actions)
        return batch, self._tensor(flat), self._tensor(a)

    def score(self, features: ArrayLike, actions: ArrayLike) -> dict[str, NDArray[np.float64]]:
        """Per-step scores by torch autograd.

        Parameters
        ----------
        features : array_like, shape ``(*batch, F)``
        actions : array_like
            Shape ``features.shape[:-1]`` (categorical) or with the action axis.

        Returns
        -------
        dict of str to numpy.ndarray
            ``{name: (*batch, *param_shape)}``.

        Raises
        ------
        ValueError
            Shapes that do not match, or actions out of range.

        Examples
        --------
        %(torch_setup)s
        >>> pol.score(np.ones((4, 5)), np.zeros(4, dtype=int))["bias"].shape
        (4, 2)
        """
        batch, phi, a = self._rows(features, actions)
        theta, logp, _ = self._functional()
        return self._vmapped(lambda th, p, x: logp(th, p[None], x[None])[0], theta, batch,
                             phi, a)

    def entropy(self, features: ArrayLike
                ) -> tuple[NDArray[np.float64], dict[str, NDArray[np.float64]]]:
        """The entropy at each state and its gradient.

        Parameters
        ----------
        features : array_like, shape ``(*batch, F)``

        Returns
        -------
        tuple
            ``(H (*batch,), {name: (*batch, *param_shape)})``.

        %(raises_nonfinite)s

        Examples
        --------
        %(torch_setup)s
        >>> H, dH = pol.entropy(np.ones((4, 5)))
        >>> H.shape, dH["weight"].shape
        ((4,), (4, 2, 5))
        """
        phi = V.check("features", V.as_real_array("features", features), "real")
        batch = phi.shape[:-1]
        h = _entropy_of(self.distribution(phi))
        if self.kind == "gaussian":
            h = h.sum(-1)
        theta, _, ent = self._functional()
        return h, self._vmapped(lambda th, p: ent(th, p[None])[0], theta, batch,
                                self._tensor(phi.reshape(-1, phi.shape[-1])))

    def episode_grads(self, features: ArrayLike, actions: ArrayLike, weights: ArrayLike,
                      entropy_weights: ArrayLike | None = None) -> dict[str, NDArray[np.float64]]:
        """Per episode, the gradient of the surrogate sum_t weights[e, t] log
        pi(a_t | s_t) (+ entropy_weights[e, t] H(pi(. | s_t))): one
        vectorised autograd pass over the episodes instead of a score per
        step.  features (E, T, F), actions (E, T[, n_actions]), weights
        (E, T); returns ``{name: (E, *param_shape)}``.

        Parameters
        ----------
        features : array_like, shape (E, T, F)
        actions : array_like, shape (E, T) or (E, T, n_actions)
        weights : array_like, shape (E, T)
            The weight of each step's log-probability (returns-to-go or
            advantages, 0 after an episode ended).
        entropy_weights : array_like, shape (E, T), optional
            The weight of each step's entropy (an entropy bonus).

        Returns
        -------
        dict of str to numpy.ndarray
            ``{name: (E, *param_shape)}``.

        Raises
        ------
        ValueError
            Arrays whose shapes do not match.

        Examples
        --------
        %(torch_setup)s
        >>> g = pol.episode_grads(np.ones((3, 4, 5)), np.zeros((3, 4), dtype=int), np.ones((3, 4)))
        >>> g["weight"].shape
        (3, 2, 5)
        """
        torch = self._torch
        phi = V.as_real_array("features", features)
        E, T = phi.shape[:2]
        batch, ph, a = self._rows(features, actions)
        w = self._tensor(np.asarray(weights, dtype=float).reshape(E, T))
        ew = self._tensor(np.zeros((E, T)) if entropy_weights is None
                          else np.asarray(entropy_weights, dtype=float).reshape(E, T))
        theta, logp, ent = self._functional()

        def surrogate(th: Any, p: Any, x: Any, we: Any, ewe: Any) -> Any:
            out = (we * logp(th, p, x)).sum()
            return out + (ewe * ent(th, p)).sum() if entropy_weights is not None else out

        return self._vmapped(surrogate, theta, (E,), ph.reshape(E, T, -1),
                             a.reshape(E, T, -1), w, ew)


def _entropy_of(d: Any) -> Any:
    """Entropy of an mcscore Categorical or Normal, per batch element."""
    if isinstance(d, Categorical):
        lp = d.logits - np.logaddexp.reduce(d.logits, axis=-1, keepdims=True)
        return -(np.exp(lp) * lp).sum(-1)
    return np.log(d.scale) + 0.5 * math.log(2 * math.pi * math.e)


class GymEnv:
    """A Gymnasium-style environment as an mcscore environment.

    ``make`` is a callable returning a new environment with the Gymnasium
    API -- ``reset(seed=int)`` -> ``(observation, info)`` and
    ``step(action)`` -> ``(observation, reward, terminated, truncated,
    info)`` -- or a Gymnasium id such as ``"CartPole-v1"`` (gymnasium is
    imported then, and only then).  :func:`rollout` runs ``n`` copies in
    lock-step: ``reset(n, rng)`` seeds each copy from the roll-out's
    Generator (reproducible); ``step`` steps every copy whose episode still
    runs; an episode ends when it is terminated *or* truncated (a truncated
    episode's return is not bootstrapped: include the time in the features,
    or use a value baseline, which has it).

    Parameters
    ----------
    make : callable or str
    max_steps : int, optional
        The horizon T of the roll-outs; default the environment's
        ``spec.max_episode_steps`` (required when it has none).
    features : callable, optional
        ``features(observations (n, ...))`` -> (n, F); default the flattened
        observation and a constant 1.

    Raises
    ------
    TypeError
        ``make`` not callable (nor a str), an environment without ``reset``
        and ``step``, or ``features`` not callable.
    ImportError
        A Gymnasium id without gymnasium installed.
    ValueError
        No ``max_steps`` and no ``spec.max_episode_steps``.

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> class Coin:                                       # the Gymnasium API, without gymnasium
    ...     def reset(self, seed=None):
    ...         self.t = 0
    ...         return np.zeros(1), {}
    ...     def step(self, action):
    ...         self.t += 1
    ...         return np.zeros(1), float(action), self.t >= 3, False, {}
    >>> env = mc.rl.GymEnv(Coin, max_steps=3)
    >>> tr = mc.rl.rollout(env, mc.rl.SoftmaxPolicy(env.n_features, 2), 4, rng=0)
    >>> tr.rewards.shape, tr.lengths.tolist()
    ((4, 3), [3, 3, 3, 3])
    """

    def __init__(self, make: Callable[[], Any], *, max_steps: int | None = None,
                 features: Callable[[Any], ArrayLike] | None = None) -> None:
        if isinstance(make, str):
            try:
                import gymnasium
            except ImportError:
                raise ImportError(f"GymEnv({make!r}) needs gymnasium (pip install gymnasium); "
                                  "or pass a callable that builds the environment") from None
            env_id = make
            make = lambda: gymnasium.make(env_id)  # noqa: E731
        if not callable(make):
            raise TypeError(f"make must be a callable returning an environment or a Gymnasium "
                            f"id, got {type(make).__name__}")
        self.make = make
        probe = make()
        for name in ("reset", "step"):
            if not callable(getattr(probe, name, None)):
                raise TypeError(f"make() must return an environment with reset and step, got "
                                f"{type(probe).__name__}")
        if max_steps is None:
            max_steps = getattr(getattr(probe, "spec", None), "max_episode_steps", None)
            if max_steps is None:
                raise ValueError("max_steps is needed: the environment has no "
                                 "spec.max_episode_steps")
        self.max_steps = V.integer("max_steps", max_steps, minimum=1)
        if features is not None and not callable(features):
            raise TypeError(f"features must be a callable (observations -> (n, F)), got "
                            f"{type(features).__name__}")
        self._features = features
        obs, _ = probe.reset(seed=0)
        self.n_features = int(self.features(np.asarray(obs, dtype=float)[None]).shape[-1])
        self.obs_shape = np.shape(obs)
        self._envs = [probe]
        self._done = np.zeros(0, dtype=bool)

    def features(self, states: ArrayLike) -> NDArray[np.float64]:
        """The policy features of a batch of observations.

        Parameters
        ----------
        states : array_like, shape ``(n, *observation_shape)``

        Returns
        -------
        numpy.ndarray, shape (n, F)
            ``features(states)``, default the flattened observation and a 1.

        Raises
        ------
        ValueError
            Observations that do not convert to floats.

        Examples
        --------
        %(gym_setup)s
        ...         return np.zeros(2), 0.0, True, False, {}
        >>> mc.rl.GymEnv(Still, max_steps=1).features(np.ones((1, 2)))
        array([[1., 1., 1.]])
        """
        s = np.asarray(states, dtype=float)
        if self._features is not None:
            return np.asarray(self._features(s), dtype=float)
        return _state_and_one(s.reshape(len(s), -1))

    def reset(self, n: int, rng: np.random.Generator | int | None = None) -> NDArray[Any]:
        """Reset n copies of the environment, each seeded from ``rng``.

        Parameters
        ----------
        %(n_episodes_param)s
        %(rng)s

        Returns
        -------
        numpy.ndarray, shape ``(n, *observation_shape)``

        Raises
        ------
        ValueError
            ``n`` < 1, or observations of another shape or not finite.

        Examples
        --------
        %(gym_setup)s
        ...         return np.zeros(2), 0.0, True, False, {}
        >>> mc.rl.GymEnv(Still, max_steps=1).reset(3, rng=0).shape
        (3, 2)
        """
        n = V.integer("n", n, minimum=1)
        gen = V.as_generator(rng)
        while len(self._envs) < n:
            self._envs.append(self.make())
        seeds = gen.integers(0, 2**31 - 1, size=n)
        obs = [env.reset(seed=int(s))[0] for env, s in zip(self._envs, seeds)]
        self._done = np.zeros(n, dtype=bool)
        return np.stack([self._observation(o) for o in obs])

    def _observation(self, obs: Any) -> Any:
        """An observation as floats, checked: the shape of the first one, finite."""
        o = np.asarray(obs, dtype=float)
        return V.shaped_finite(
            o, self.obs_shape,
            f"GymEnv: the environment returned an observation of shape {o.shape}, its first "
            f"had shape {self.obs_shape}",
            f"GymEnv: the environment returned a non-finite observation {o}")

    def step(self, states: NDArray[Any], actions: ArrayLike,
             rng: np.random.Generator | int | None = None
             ) -> tuple[NDArray[Any], NDArray[np.float64], NDArray[Any]]:
        """Step every copy whose episode still runs.

        Parameters
        ----------
        states : numpy.ndarray, shape ``(n, *observation_shape)``
        actions : array_like, n actions
        rng : None, optional
            Unused (the copies were seeded at reset).

        Returns
        -------
        tuple
            ``(states, rewards (n,), done (n,) bool)``.

        Raises
        ------
        ValueError
            A number of states other than at the reset, or invalid observations.
        TypeError
            A reward that is not a number.

        Examples
        --------
        %(gym_setup)s
        ...         return np.zeros(2), 1.0, True, False, {}
        >>> env = mc.rl.GymEnv(Still, max_steps=1)
        >>> s, r, done = env.step(env.reset(2, rng=0), np.array([0, 1]))
        >>> r.tolist(), done.tolist()
        ([1.0, 1.0], [True, True])
        """
        n = len(states)
        if n != len(self._done):
            raise ValueError(f"GymEnv.step got {n} states after reset({len(self._done)})")
        new = np.array(states, dtype=float, copy=True)
        rewards = np.zeros(n)
        acts = np.asarray(actions)
        for i in np.flatnonzero(~self._done):
            a = acts[i]
            a = int(a) if acts.dtype.kind in "iub" else a
            obs, r, terminated, truncated, _ = self._envs[i].step(a)
            new[i] = self._observation(obs)
            if isinstance(r, (str, bytes)):
                raise TypeError(f"GymEnv: the environment's step returned the reward {r!r}; "
                                "a reward must be a real number")
            rewards[i] = float(r)
            self._done[i] = bool(terminated) or bool(truncated)
        return new, rewards, self._done.copy()


_docs.fill_module(globals(), **DOC_FRAGMENTS)
