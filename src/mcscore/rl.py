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

import inspect
import math
from typing import Any, Callable, Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

from . import _docs, _kernels
from . import _validation as V
from .distributions import Categorical, Normal
from ._algebra import baselined_terms, check_baseline
from ._progress import simple_bar
from .result import GradientEstimate, terms_cov
from .vi import Adam, _check_lr, _lr_at

__all__ = ["returns_to_go", "SoftmaxPolicy", "GaussianPolicy", "TorchPolicy", "policy_gradient",
           "value_baseline", "LinearValue", "gae", "CartPole", "Reach1D", "GymEnv",
           "Trajectories", "rollout", "reinforce", "ReinforceResult"]


# ---------------------------------------------------------------------------
# returns
# ---------------------------------------------------------------------------

def returns_to_go(rewards: ArrayLike, gamma: float = 1.0,
                  mask: ArrayLike | None = None) -> NDArray[np.float64]:
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

    Raises
    ------
    ValueError
        Rewards without a time axis or not finite, ``gamma`` outside [0, 1],
        a mask of another shape.
    FloatingPointError
        Returns beyond the range of a double.

    Examples
    --------
    >>> import mcscore as mc
    >>> mc.rl.returns_to_go([[1.0, 1.0, 1.0]], gamma=0.5)
    array([[1.75, 1.5 , 1.  ]])
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
    out = np.zeros_like(r)
    T = r.shape[-1]
    # the returns of the steps after the last non-zero reward are 0 (the
    # padding after every episode ended): the recursion starts there
    nz: Any = np.flatnonzero(r.reshape(-1, T).any(0)) if r.size else ()
    last = int(nz[-1]) + 1 if len(nz) else 0
    with np.errstate(over="ignore"):
        if gamma == 1.0 and r.dtype == np.float64:
            # the same sums, r_t + G_{t+1}, from the end (+ 0.0: a -0.0 reward
            # at the end gives +0.0, as r + gamma * 0 does)
            out[..., :last] = np.flip(np.cumsum(np.flip(r[..., :last] + 0.0, -1), -1), -1)
        else:
            acc = np.zeros(r.shape[:-1])
            for t in range(last - 1, -1, -1):
                acc = r[..., t] + gamma * acc
                out[..., t] = acc
    if not np.isfinite(out).all():
        raise FloatingPointError("the returns-to-go overflowed (sums of rewards beyond the range "
                                 "of a double)")
    return out


def _mask(mask: Any, name: str = "mask") -> NDArray[np.bool_]:
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

def _features(phi: Any, n_features: Any) -> Any:
    phi = V.as_real_array("features", phi)
    if phi.ndim < 1 or phi.shape[-1] != n_features:
        raise ValueError(f"features must have a last axis of {n_features}, got shape {phi.shape}")
    return phi


class SoftmaxPolicy:
    """pi(a | s) = softmax(phi(s) @ theta)[a], a in 0..n_actions-1.

    ``params = {"theta": (n_features, n_actions)}`` (zeros by default: the
    uniform policy).

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> pol = mc.rl.SoftmaxPolicy(n_features=4, n_actions=2)
    >>> s = np.ones((5, 4))                        # 5 states' features
    >>> a = pol.sample(s, np.random.default_rng(0))
    >>> a.shape, pol.score(s, a)["theta"].shape
    ((5,), (5, 4, 2))

    Parameters
    ----------
    n_features : int
        F, the length of a state's feature vector (>= 1).
    n_actions : int
        The number of actions (>= 2).
    theta : array_like, shape (n_features, n_actions), optional
        The initial parameters (finite; default zeros).

    Raises
    ------
    ValueError
        Counts out of range, or ``theta`` of the wrong shape or not finite.
    """

    def __init__(self, n_features: int, n_actions: int, theta: ArrayLike | None = None) -> None:
        self.n_features = V.integer("n_features", n_features, minimum=1)
        self.n_actions = V.integer("n_actions", n_actions, minimum=2)
        shape = (self.n_features, self.n_actions)
        theta = np.zeros(shape) if theta is None else V.as_real_array("theta", theta)
        if theta.shape != shape:
            raise ValueError(f"theta must have shape {shape}, got {theta.shape}")
        self.params = {"theta": V.check("theta", theta, "real").copy()}

    def with_params(self, params: Mapping[str, ArrayLike]) -> SoftmaxPolicy:
        """A copy with new parameters.

        Parameters
        ----------
        params : dict
            ``{"theta": array (n_features, n_actions)}``.

        Returns
        -------
        SoftmaxPolicy
            A new policy; this one is unchanged.

        Raises
        ------
        ValueError
            ``theta`` of the wrong shape or not finite.
        KeyError
            ``params`` without ``"theta"``.

        Examples
        --------
        %(softmax_setup)s
        >>> pol2 = pol.with_params({"theta": np.ones((3, 2))})
        >>> float(pol.params["theta"].sum()), float(pol2.params["theta"].sum())
        (0.0, 6.0)
        """
        return SoftmaxPolicy(self.n_features, self.n_actions, params["theta"])

    def distribution(self, features: ArrayLike) -> Categorical:
        """The action distribution: an mcscore Categorical with batch shape
        features.shape[:-1].

        Parameters
        ----------
        %(features)s

        Returns
        -------
        Categorical
            With batch shape ``features.shape[:-1]``.

        %(raises_bad_features)s

        Examples
        --------
        %(softmax_setup)s
        >>> pol.distribution(s).probs[0].tolist()            # theta = 0: uniform
        [0.5, 0.5]
        """
        phi = _features(features, self.n_features)
        return Categorical(logits=phi @ self.params["theta"])

    def sample(self, features: ArrayLike,
               rng: np.random.Generator | int | None = None) -> NDArray[Any]:
        """Actions, shape features.shape[:-1]: the draws of
        ``self.distribution(features).sample(1, rng)[0]``, bit for bit (one
        uniform per state, in order, through the same alias tables), by
        NumPy on every state at once.

        Parameters
        ----------
        %(features_rng)s

        Returns
        -------
        numpy.ndarray of int64, shape ``features.shape[:-1]``

        %(raises_bad_features)s

        Examples
        --------
        %(softmax_setup)s
        >>> pol.sample(s, rng=0).shape
        (4,)
        """
        phi = _features(features, self.n_features)
        return _draw_actions(phi @ self.params["theta"], V.as_generator(rng))

    def sampler(self, n: int) -> Callable[..., NDArray[Any]] | None:
        """The in-place form of :meth:`sample` for :func:`rollout` (the
        optional ``sampler`` of the policy protocol): ``draw(features, rng,
        out)`` writes the actions of n states' features (n, n_features) into
        ``out`` (int64, shape (n,)) and returns them (as ``out`` or an array
        equal to it), the numbers of ``sample(features, rng)`` bit for bit,
        with its work arrays allocated once here.  None when the in-place
        draw does not apply (not two actions, float64 weights, or a
        ``sample`` replaced on a subclass or the instance).

        Parameters
        ----------
        n : int
            The number of states per call (>= 1).

        Returns
        -------
        callable or None

        Raises
        ------
        ValueError
            ``n`` < 1.

        Examples
        --------
        %(softmax_setup)s
        >>> draw = pol.sampler(4)
        >>> out = np.zeros(4, dtype=np.int64)
        >>> bool((draw(s, np.random.default_rng(0), out) == pol.sample(s, 0)).all())
        True
        """
        n = V.integer("n", n, minimum=1)
        theta = self.params["theta"]
        if (self.n_actions != 2 or theta.dtype != np.float64 or "sample" in vars(self)
                or type(self).sample is not SoftmaxPolicy.sample):
            return None
        buf, zbuf, shape = _draw_buffers(n), np.empty((n, 2)), (n, self.n_features)

        def draw(features: Any, rng: Any, out: Any) -> Any:
            if features.shape != shape or features.dtype != np.float64:
                a = self.sample(features, rng)  # its checks (and errors)
            else:
                z = np.matmul(features, theta, zbuf)
                if math.isfinite(np.add.reduce(z, axis=None)):
                    a = _two_action_draw(z, rng, buf)
                else:
                    a = _draw_actions(z, rng)  # the softmax's checks and draws
            out[...] = a
            return a
        return draw

    def score(self, features: ArrayLike, actions: ArrayLike) -> dict[str, NDArray[np.float64]]:
        """Per-step scores ``{"theta": (*batch, n_features, n_actions)}``: the
        Categorical score w.r.t. the logits (one-hot action minus the
        probabilities, as the core's ``Categorical.score``), times the
        features.

        Parameters
        ----------
        %(features)s
        actions : array_like of int, shape ``features.shape[:-1]``
            Actions in ``0..n_actions-1``.

        Returns
        -------
        dict
            ``{"theta": array (*batch, n_features, n_actions)}``.

        Raises
        ------
        ValueError
            Actions of the wrong shape or not integers in range.

        Examples
        --------
        %(softmax_setup)s
        >>> g = pol.score(s, np.zeros(4, dtype=int))["theta"]
        >>> g[0].tolist()                                    # phi (onehot(a) - p)
        [[0.5, -0.5], [0.5, -0.5], [0.5, -0.5]]
        """
        phi = _features(features, self.n_features)
        V.reject_masked("actions", actions)
        a = np.asarray(actions)
        if a.shape != phi.shape[:-1]:
            raise ValueError(f"actions must have shape {phi.shape[:-1]} (features without their "
                             f"last axis), got {a.shape}")
        whole = a.dtype.kind in "iu"  # integers: finite and whole, only the range to check
        if a.dtype.kind not in "iuf" or (a.size and not (
                (whole or (np.isfinite(a).all() and (a == np.round(a)).all()))
                and a.min() >= 0 and a.max() < self.n_actions)):
            raise ValueError(f"actions must be integers in [0, {self.n_actions}), got "
                             f"{a.dtype} values {a.ravel()[:5]!r}...")
        probs = _softmax_probs(phi @ self.params["theta"])
        s = (a[..., None] == np.arange(self.n_actions)) - probs  # (*batch, A)
        out = np.empty(phi.shape + (self.n_actions,), dtype=np.result_type(phi, s))
        for k in range(self.n_actions):  # phi[..., :, None] * s[..., None, :], column by column
            np.multiply(phi, s[..., k:k + 1], out=out[..., k])
        return {"theta": out}

    def entropy(self, features: ArrayLike
                ) -> tuple[NDArray[np.float64], dict[str, NDArray[np.float64]]]:
        """(H, dH): the entropy of the action distribution at each state,
        shape features.shape[:-1], and its gradient ``{"theta": (*batch,
        n_features, n_actions)}`` (dH/dlogit_k = -p_k (log p_k + H)).

        %(entropy_io)s

        %(raises_bad_features)s

        Examples
        --------
        %(softmax_setup)s
        >>> H, dH = pol.entropy(s)
        >>> bool(np.allclose(H, np.log(2))), dH["theta"].shape
        (True, (4, 3, 2))
        """
        phi = _features(features, self.n_features)
        z = phi @ self.params["theta"]
        lp = z - np.logaddexp.reduce(z, axis=-1, keepdims=True)
        p = np.exp(lp)
        H = -(p * lp).sum(-1)
        dz = -p * (lp + H[..., None])
        return H, {"theta": phi[..., :, None] * dz[..., None, :]}


def _normal_draw(d: Any, gen: Any) -> Any:
    """One draw of the Normal d, as its kernel draws it: a standard normal z
    per unit of the batch, in order, and loc + scale * z (the kernels build
    with -ffp-contract=off: no fused multiply-add)."""
    return d.loc + d.scale * gen.standard_normal(d.batch_shape)


def _softmax_probs(z: Any) -> Any:
    """``Categorical(logits=z).probs`` (its checks and numbers): the softmax
    of z over the last axis, by SciPy's arithmetic (shift by the maximum,
    exp, divide by the sum), for two actions in NumPy column by column
    (the same numbers without the slow reduction over a length-2 axis)."""
    z = np.asarray(z, dtype=np.float64)  # the family's parameters are float64
    if not math.isfinite(np.add.reduce(z, axis=None)):  # non-finite logits: the family's error
        return Categorical(logits=z).probs
    if z.shape[-1] != 2:
        return special.softmax(z, axis=-1)
    e = np.exp(z - np.maximum(z[..., 0], z[..., 1])[..., None])
    return e / (e[..., 0] + e[..., 1])[..., None]


def _alias_draw(probs: Any, gen: Any) -> Any:
    """One draw of each Categorical of probabilities ``probs`` (*batch, K)
    (normalised rows), as the core's kernel draws it: per row, in C order,
    one uniform u of the generator, k = floor(u K), kept when u K - k is
    below the row's alias probability of k, else its alias."""
    K_ = probs.shape[-1]
    P = np.ascontiguousarray(probs.reshape(-1, K_), dtype=np.float64)
    q, alias = _kernels.alias_table(P)
    uk = gen.random(len(P))
    uk *= K_
    k = uk.astype(np.int64)
    np.minimum(k, K_ - 1, out=k)
    at = k + np.arange(0, k.size * K_, K_)  # flat index of (row, k)
    out = np.where(uk - k < q.take(at), k, alias.take(at))
    return out.reshape(probs.shape[:-1])


def _two_action_draw(z: Any, gen: Any, buf: Any = None) -> Any:
    """_alias_draw(_softmax_probs(z), gen) for logits z (E, 2), fused.

    With d = z1 - z0, the smaller probability is ps = e / (1 + e), e =
    exp(-|d|) (the softmax's own numbers: the larger logit's exp is exp(0)
    = 1), and the alias table of (p0, p1) keeps the larger action's half.
    The kernel's draw for a uniform u is then: when z1 > z0, action 1 iff
    u >= ps (= p0 < 1/2: 2u < 2 p0 is u < p0); otherwise action 1 iff u >=
    1/2 and u - 1/2 < ps (= p1: 2u - 1 < 2 p1, all exact).  The caller
    has checked that the logits sum to a finite number (else the general
    path's checks apply).  buf: optional work arrays (from _draw_buffers)
    reused across calls."""
    b = _draw_buffers(len(z)) if buf is None else buf
    d, gt, ps, s, u, w, a, a2 = b["d"], b["gt"], b["ps"], b["s"], b["u"], b["w"], b["a"], b["a2"]
    np.subtract(z[:, 1], z[:, 0], d)
    np.greater(d, b["zero"], gt)
    np.copysign(d, b["mone"], ps)  # -|d|
    np.exp(ps, ps)
    np.add(b["one"], ps, s)
    np.divide(ps, s, ps)
    gen.random(out=u)
    np.greater_equal(u, ps, a)          # z1 > z0
    np.subtract(u, b["half"], w)
    np.less(w, ps, a2)                  # otherwise
    np.greater_equal(w, b["zero"], b["a3"])
    np.logical_and(a2, b["a3"], a2)
    np.copyto(a2, a, where=gt)
    return a2.astype(np.int64) if buf is None else a2


def _draw_actions(z: Any, gen: Any) -> Any:
    """One action per row of the logits z (*batch, A), as the core's
    Categorical kernel draws them: for two actions with a finite logit sum
    the fused draw (_two_action_draw), else the softmax's checks and alias
    draw."""
    if z.shape[-1] == 2:
        z = np.asarray(z, dtype=np.float64)  # as _softmax_probs takes them
        if math.isfinite(np.add.reduce(z, axis=None)):  # else its checks and path
            return _two_action_draw(z.reshape(-1, 2), gen).reshape(z.shape[:-1])
    return _alias_draw(_softmax_probs(z), gen)


def _draw_buffers(n: Any) -> Any:
    """Work arrays of _two_action_draw for n rows."""
    b = {k: np.empty(n) for k in ("d", "ps", "s", "u", "w")}
    b.update({k: np.empty(n, dtype=bool) for k in ("gt", "a", "a2", "a3")})
    b.update(zero=np.zeros(n), one=np.ones(n), half=np.full(n, 0.5), mone=np.full(n, -1.0))
    return b


LOG_STD_MAX = 230.0  # exp(230) ~ 8e99: the Normal's scale range


class GaussianPolicy:
    """a ~ Normal(phi(s) @ w, exp(log_std)), actions of dimension n_actions.

    ``params = {"w": (n_features, n_actions), "log_std": (n_actions,)}``.

    Parameters
    ----------
    n_features : int
        F (>= 1).
    n_actions : int, default 1
        The action dimension (>= 1).
    w : array_like, shape (n_features, n_actions), optional
        The mean's weights (finite; default zeros).
    log_std : float or array_like, shape (n_actions,), optional
        log standard deviations in [-230, 230] (default 0).

    Raises
    ------
    ValueError
        Counts out of range, ``w`` or ``log_std`` of the wrong shape, not
        finite or out of range.

    Examples
    --------
    %(gaussian_setup)s
    >>> pol.sample(s, rng=0).shape, pol.score(s, np.zeros((4, 2)))["w"].shape
    ((4, 2), (4, 3, 2))
    """

    def __init__(self, n_features: int, n_actions: int = 1, w: ArrayLike | None = None,
                 log_std: ArrayLike | None = None) -> None:
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

    def with_params(self, params: Mapping[str, ArrayLike]) -> GaussianPolicy:
        """A new policy with the given parameters.

        Parameters
        ----------
        params : dict
            ``{"w": (n_features, n_actions), "log_std": (n_actions,)}``.

        Returns
        -------
        GaussianPolicy
            A new policy; this one is unchanged.

        Raises
        ------
        ValueError
            Arrays of the wrong shape, not finite or out of range.
        KeyError
            A missing key.

        Examples
        --------
        %(gaussian_setup)s
        >>> pol.with_params({"w": np.ones((3, 2)), "log_std": [0.0, 0.0]}).params["w"].sum()
        np.float64(6.0)
        """
        return GaussianPolicy(self.n_features, self.n_actions, params["w"], params["log_std"])

    def distribution(self, features: ArrayLike) -> Normal:
        """An mcscore Normal with batch shape features.shape[:-1] + (n_actions,).

        Parameters
        ----------
        %(features)s

        Returns
        -------
        Normal
            With batch shape ``features.shape[:-1] + (n_actions,)``.

        %(raises_bad_features)s

        Examples
        --------
        %(gaussian_setup)s
        >>> d = pol.distribution(s)
        >>> d.batch_shape, bool(np.allclose(d.scale, np.exp(-1.0)))
        ((4, 2), True)
        """
        phi = _features(features, self.n_features)
        mean = phi @ self.params["w"]
        return Normal(mean, np.broadcast_to(np.exp(self.params["log_std"]), mean.shape))

    def sample(self, features: ArrayLike,
               rng: np.random.Generator | int | None = None) -> NDArray[Any]:
        """Actions, shape features.shape[:-1] + (n_actions,): the draws of
        ``self.distribution(features).sample(1, rng)[0]``, bit for bit (a
        standard normal z per state and action, in order, and mean + std *
        z), without building the distribution's kernel.

        Parameters
        ----------
        %(features_rng)s

        Returns
        -------
        numpy.ndarray
            Shape ``features.shape[:-1] + (n_actions,)``.

        %(raises_bad_features)s

        Examples
        --------
        %(gaussian_setup)s
        >>> pol.sample(s, rng=0).shape
        (4, 2)
        """
        return _normal_draw(self.distribution(features), V.as_generator(rng))

    def score(self, features: ArrayLike, actions: ArrayLike) -> dict[str, NDArray[np.float64]]:
        """Per-step scores ``{"w": (*batch, n_features, n_actions),
        "log_std": (*batch, n_actions)}`` from the core's Normal score.

        Parameters
        ----------
        %(features)s
        actions : array_like, shape ``features.shape[:-1] + (n_actions,)``
            Finite actions.

        Returns
        -------
        dict
            ``{"w": (*batch, n_features, n_actions), "log_std": (*batch, n_actions)}``.

        Raises
        ------
        ValueError
            Actions of the wrong shape or not finite.

        Examples
        --------
        %(gaussian_setup)s
        >>> sc = pol.score(s, np.zeros((4, 2)))              # actions at the mean
        >>> bool(np.allclose(sc["w"], 0.0)), bool(np.allclose(sc["log_std"], -1.0))
        (True, True)
        """
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

    def entropy(self, features: ArrayLike
                ) -> tuple[NDArray[np.float64], dict[str, NDArray[np.float64]]]:
        """(H, dH): the entropy sum_k (log_std_k + log(2 pi e) / 2) at each
        state, and its gradient (w: 0, log_std: 1).

        %(entropy_io)s

        Raises
        ------
        ValueError
            Features of the wrong length.

        Examples
        --------
        %(gaussian_setup)s
        >>> H, dH = pol.entropy(s)
        >>> bool(np.allclose(H, 2 * (-1.0 + 0.5 * np.log(2 * np.pi * np.e)))), dH["log_std"].shape
        (True, (4, 2))
        """
        phi = _features(features, self.n_features)
        batch = phi.shape[:-1]
        ls = self.params["log_std"]
        H = np.full(batch, float((ls + 0.5 * math.log(2 * math.pi * math.e)).sum()))
        return H, {"w": np.zeros(batch + self.params["w"].shape),
                   "log_std": np.ones(batch + ls.shape)}


# ---------------------------------------------------------------------------
# value functions and advantages
# ---------------------------------------------------------------------------

def _value_design(features: Any, mask: Any) -> Any:
    """The regressors of the linear value function: the step features, their
    squares, a constant, and powers of the fraction of the horizon left."""
    E, T = mask.shape
    u = 2.0 * (1.0 - np.arange(T) / T) - 1.0  # tau mapped to [-1, 1]
    # 1, tau, tau^2, tau^3 spanned by Legendre polynomials (better conditioned)
    poly = np.stack([np.ones(T), u, 1.5 * u * u - 0.5, 2.5 * u**3 - 1.5 * u], axis=1)
    return np.concatenate([features, features * features, np.broadcast_to(poly, (E, T, 4))],
                          axis=2)


def value_baseline(features: ArrayLike, returns: ArrayLike, mask: ArrayLike | None = None, *,
                   ridge: float = 1e-10,
                   history: LinearValue | None = None) -> NDArray[np.float64]:
    """Per-state baselines b_{i,t} = V_{-i}(s_{i,t}, t) from a linear value
    function fitted by least squares on the *other* episodes.

    V(s, t) = w . (phi(s), phi(s)^2, 1, tau, tau^2, tau^3) (the squares
    elementwise: a value symmetric in the state, as cart-pole's, is then
    within reach) with tau = 1 - t / T the fraction of the horizon left (as Legendre polynomials of 2 tau - 1, the
    same span, better conditioned); w minimises the squared error to the
    returns-to-go over the running steps of every episode but i (exact
    leave-one-episode-out: the normal equations downdated by episode i's
    rows), plus ``ridge`` times the mean diagonal of the normal matrix (a
    guard against collinear features).  b_{i,t} does not depend on episode
    i's actions, so the policy gradient stays unbiased.

    Parameters
    ----------
    features : array (E, T, F)
    returns : array (E, T)
        Returns-to-go.
    mask : bool array (E, T), optional
    history : LinearValue, optional
        Normal equations of earlier, independent batches (earlier
        iterations of :func:`reinforce`), added to every fit; the history is
        then updated with this batch.  More data for the fit, at the price
        of returns from earlier policies.

    Returns
    -------
    ndarray (E, T): the baselines (0 after an episode ended).

    Raises
    ------
    ValueError
        Shapes that do not match, or non-finite values.

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> rng = np.random.default_rng(0)
    >>> features = rng.normal(size=(8, 5, 2))
    >>> G = features[..., 0] + 1.0                       # a value linear in the state
    >>> b = mc.rl.value_baseline(features, G)
    >>> b.shape, bool(np.allclose(b, G, atol=1e-6))
    ((8, 5), True)
    """
    phi = V.check("features", V.as_real_array("features", features), "real")
    G = V.check("returns", V.as_real_array("returns", returns), "real")
    ridge = V.scalar("ridge", ridge, "nonnegative")
    if G.ndim != 2 or phi.ndim != 3 or phi.shape[:2] != G.shape:
        raise ValueError(f"features must have shape (E, T, F) and returns (E, T) with the same "
                         f"E and T, got {phi.shape} and {G.shape}")
    E, T = G.shape
    if E < 2:
        raise ValueError(f"value_baseline needs at least 2 episodes, got {E}")
    mask = np.ones((E, T), dtype=bool) if mask is None else _mask(mask)
    if mask.shape != (E, T):
        raise ValueError(f"mask must have shape ({E}, {T}), got {mask.shape}")
    X = _value_design(phi, mask) * mask[..., None]
    y = np.where(mask, G, 0.0)
    A_e = np.einsum("etp,etq->epq", X, X)
    c_e = np.einsum("etp,et->ep", X, y)
    A, c = A_e.sum(0), c_e.sum(0)
    if history is not None:
        if not isinstance(history, LinearValue):
            raise TypeError(f"history must be a LinearValue, got {type(history).__name__}")
        A0, c0 = history.sums(A.shape[0])
        history.update(A, c)
        A, c = A + A0, c + c0
    P = A.shape[0]
    lam = ridge * max(float(np.trace(A)) / P, 1e-300)
    out = np.empty((E, T))
    for e in range(E):
        w = np.linalg.solve(A - A_e[e] + lam * np.eye(P), c - c_e[e])
        out[e] = X[e] @ w
    return np.where(mask, out, 0.0)


class LinearValue:
    """The normal equations (X'X, X'G) of :func:`value_baseline`'s
    regression accumulated over batches, each earlier batch's weight
    multiplied by ``decay`` per batch (so the fit follows a changing
    policy).  :func:`reinforce` keeps one for ``baseline="value"`` and GAE.

    Parameters
    ----------
    decay : float, default 0.8
        The weight of the past per batch, in [0, 1].

    Raises
    ------
    ValueError
        ``decay`` outside [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> h = mc.rl.LinearValue(decay=0.5)
    >>> h.update(np.eye(2), np.ones(2))
    >>> h.update(np.eye(2), np.ones(2))
    >>> h.sums(2)[0].tolist()
    [[1.5, 0.0], [0.0, 1.5]]
    """

    def __init__(self, decay: float = 0.8) -> None:
        self.decay = V.scalar("decay", decay, "unit_interval")
        self.A = self.c = None

    def sums(self, P: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """The accumulated normal equations ``(A, c)`` for P regressors (zeros
        when none, or when the number of regressors changed).

        Parameters
        ----------
        P : int
            The number of regressors.

        Returns
        -------
        tuple of numpy.ndarray
            ``(A (P, P), c (P,))``.

        Raises
        ------
        TypeError
            ``P`` not an integer.

        Examples
        --------
        >>> import mcscore as mc
        >>> A, c = mc.rl.LinearValue().sums(2)
        >>> A.tolist(), c.tolist()
        ([[0.0, 0.0], [0.0, 0.0]], [0.0, 0.0])
        """
        if self.A is None or self.A.shape[0] != P:
            return np.zeros((P, P)), np.zeros(P)
        return self.A, self.c

    def update(self, A: NDArray[np.float64], c: NDArray[np.float64]) -> None:
        """Fold one batch's normal equations in (the earlier ones weighted by
        ``decay``).

        Parameters
        ----------
        A : numpy.ndarray, shape (P, P)
        c : numpy.ndarray, shape (P,)

        Returns
        -------
        None

        Raises
        ------
        AttributeError
            Arguments that are not arrays.

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> h = mc.rl.LinearValue(decay=0.0)
        >>> h.update(np.eye(1), np.ones(1))
        >>> h.sums(1)[1].tolist()
        [1.0]
        """
        if self.A is None or self.A.shape != A.shape:
            self.A, self.c = A.copy(), c.copy()
        else:
            self.A = self.decay * self.A + A
            self.c = self.decay * self.c + c





def gae(rewards: ArrayLike, values: ArrayLike, mask: ArrayLike | None = None, *,
        gamma: float = 1.0, lam: float = 0.95) -> NDArray[np.float64]:
    """Generalised advantage estimates (Schulman et al. 2016):

        delta_t = r_t + gamma V_{t+1} - V_t,   A_t = sum_k (gamma lam)^k delta_{t+k},

    with V = 0 after an episode ends (and after the last step T).  lam = 1
    gives exactly G_t - V_t (returns-to-go minus the value baseline).

    Parameters
    ----------
    rewards, values : arrays (E, T)
    mask : bool array (E, T), optional
    gamma, lam : float in [0, 1]

    Returns
    -------
    ndarray (E, T)

    Raises
    ------
    ValueError
        Arrays of different shapes or not 2-d, ``gamma`` or ``lam`` outside
        [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> r = np.array([[1.0, 1.0, 1.0]])
    >>> v = np.array([[0.5, 0.5, 0.5]])
    >>> A = mc.rl.gae(r, v, lam=1.0)                     # lam = 1: G_t - V_t
    >>> bool(np.allclose(A, mc.rl.returns_to_go(r) - v))
    True
    """
    r = V.as_real_array("rewards", rewards)
    v = V.as_real_array("values", values)
    if r.ndim != 2 or v.shape != r.shape:
        raise ValueError(f"rewards and values must have the same shape (E, T), got {r.shape} "
                         f"and {v.shape}")
    gamma = V.scalar("gamma", gamma, "unit_interval")
    lam = V.scalar("lam", lam, "unit_interval")
    mask = np.ones(r.shape, dtype=bool) if mask is None else _mask(mask)
    if mask.shape != r.shape:
        raise ValueError(f"mask must have the shape of rewards {r.shape}, got {mask.shape}")
    r, v = np.where(mask, r, 0.0), np.where(mask, v, 0.0)
    if not (np.isfinite(r).all() and np.isfinite(v).all()):
        raise ValueError("rewards and values must be finite")
    nxt = np.concatenate([v[:, 1:], np.zeros((r.shape[0], 1))], axis=1)
    delta = r + gamma * nxt - v
    out = np.empty_like(r)
    acc = np.zeros(r.shape[0])
    for t in range(r.shape[1] - 1, -1, -1):
        acc = delta[:, t] + gamma * lam * acc
        out[:, t] = acc
    return np.where(mask, out, 0.0)


# ---------------------------------------------------------------------------
# the estimator
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# a PyTorch policy
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# an environment, roll-outs and training
# ---------------------------------------------------------------------------

def _state_and_one(states: Any) -> Any:
    """Policy features of the built-in environments: the state and a constant 1.

    Parameters
    ----------
    states : numpy.ndarray, shape (n, d)
        States.

    Returns
    -------
    numpy.ndarray, shape (n, d + 1)

    Raises
    ------
    ValueError
        A scalar ``states``.

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> mc.rl.CartPole.features(np.zeros((1, 4)))
    array([[0., 0., 0., 0., 1.]])
    """
    out = np.ones(states.shape[:-1] + (states.shape[-1] + 1,))
    out[..., :-1] = states
    return out


class CartPole:
    """The classic cart-pole balancing task (Barto, Sutton & Anderson 1983)
    with the usual constants (pole half-length 0.5 m, force 10 N, 50 Hz Euler
    steps), vectorised over a batch of episodes.

    State (x, x_dot, theta, theta_dot); actions 0 (push left) and 1 (push
    right); reward 1 for every step taken; an episode ends when ``|x| > 2.4``,
    ``|theta| > 12`` degrees or after ``max_steps`` steps.  ``force_noise`` > 0
    makes it stochastic: the applied force is ``force * (1 + force_noise *
    N(0, 1))``, drawn from the ``rng`` that :func:`rollout` passes to
    ``step`` (0, the default, is the deterministic classic task).

    Parameters
    ----------
    max_steps : int, default 200
        The horizon (>= 1).
    force_noise : float, default 0.0
        The relative standard deviation of the applied force (>= 0).

    Raises
    ------
    ValueError
        ``max_steps`` < 1 or a negative ``force_noise``.

    Examples
    --------
    >>> import mcscore as mc
    >>> tr = mc.rl.rollout(mc.rl.CartPole(), mc.rl.SoftmaxPolicy(5, 2), 10, rng=0)
    >>> tr.features.shape, bool((tr.lengths >= 1).all())
    ((10, 200, 5), True)
    """

    n_actions = 2
    n_features = 5  # the state and a constant

    def __init__(self, max_steps: int = 200, force_noise: float = 0.0) -> None:
        self.max_steps = V.integer("max_steps", max_steps, minimum=1)
        self.force_noise = V.scalar("force_noise", force_noise, "nonnegative")
        self.gravity, self.m_cart, self.m_pole, self.half_len = 9.8, 1.0, 0.1, 0.5
        self.force, self.tau = 10.0, 0.02
        self.x_limit, self.theta_limit = 2.4, 12 * 2 * math.pi / 360

    def reset(self, n: int, rng: np.random.Generator | int | None = None) -> NDArray[Any]:
        """Initial states of n episodes, shape (n, 4), uniform in [-0.05, 0.05]^4.

        %(env_reset)s

        Examples
        --------
        >>> import mcscore as mc
        >>> mc.rl.CartPole().reset(3, rng=0).shape
        (3, 4)
        """
        return V.as_generator(rng).uniform(-0.05, 0.05, size=(V.integer("n", n, minimum=1), 4))

    features = staticmethod(_state_and_one)

    def step(self, states: NDArray[Any], actions: ArrayLike,
             rng: np.random.Generator | int | None = None, *,
             out: NDArray[Any] | None = None
             ) -> tuple[NDArray[Any], NDArray[np.float64], NDArray[Any]]:
        """(next states, rewards, done) for a batch; ``rng`` draws the force
        noise (needed only when ``force_noise`` > 0).

        Parameters
        ----------
        states : numpy.ndarray, shape (n, 4)
            The current states.
        actions : array_like of int, shape (n,)
            0 or 1.
        rng : None, int, SeedSequence or Generator
            Draws the force noise.
        out : numpy.ndarray, shape (n, 4), optional
            Where to write the next states (not overlapping ``states``); it
            is returned as the first item.

        Returns
        -------
        tuple
            ``(states (n, 4), rewards (n,), done (n,) bool)``.

        Raises
        ------
        ValueError
            ``states`` not of shape (n, 4).

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> env = mc.rl.CartPole()
        >>> s, r, done = env.step(env.reset(2, rng=0), np.array([0, 1]))
        >>> s.shape, r.tolist(), done.tolist()
        ((2, 4), [1.0, 1.0], [False, False])
        """
        x, xd, th, thd = states.T
        n = len(states)
        if (states.dtype == np.float64 and states.shape == (n, 4)
                and np.shape(actions) == (n,)):
            new = np.empty((n, 4)) if out is None else out
            return new, np.ones(n), _cartpole_kernel(self, n, 4)(states, np.asarray(actions),
                                                                 new, rng)
        # other dtypes and shapes
        f = np.where(np.asarray(actions) == 1, self.force, -self.force)
        if self.force_noise > 0:
            f = f * (1.0 + self.force_noise * V.as_generator(rng).standard_normal(len(states)))
        total = self.m_cart + self.m_pole
        pml = self.m_pole * self.half_len
        c, s = np.cos(th), np.sin(th)
        temp = (f + pml * thd * thd * s) / total
        thacc = (self.gravity * s - c * temp) / (
            self.half_len * (4.0 / 3.0 - self.m_pole * c * c / total))
        xacc = temp - pml * thacc * c / total
        if states.dtype == np.float64:  # (x, xd, th, thd) + tau (xd, xacc, thd, thacc)
            rate = states[:, [1, 1, 3, 3]]
            rate[:, 1] = xacc
            rate[:, 3] = thacc
            new = states + self.tau * rate
        else:  # column by column, each with its own dtype promotion
            new = np.stack([x + self.tau * xd, xd + self.tau * xacc,
                            th + self.tau * thd, thd + self.tau * thacc], axis=1)
        dist = np.abs(new[:, ::2])
        done = (dist[:, 0] > self.x_limit) | (dist[:, 1] > self.theta_limit)
        if out is not None:
            out[...] = new
            new = out
        return new, np.ones(len(states)), done

    def stepper(self, states: NDArray[Any]) -> Callable[..., Any] | None:
        """The in-place form of :meth:`step` for :func:`rollout` (the
        optional ``stepper`` of the environment protocol), for a batch that
        starts at ``states`` (the states of :meth:`reset`).

        ``step_into(features, actions, out, rng)`` takes the *features* of
        the current states (n, 5), writes the features of the next states
        into ``out`` (n, 5) and returns ``(rewards, done)``: the numbers of
        ``step`` bit for bit, with every work array (and the returned
        ``rewards`` and ``done``, overwritten by the next call) allocated
        once here.  Only the state's columns of ``out`` are written: the
        constant column must hold 1 already (:func:`rollout` fills its
        feature rows with the reset states' features first).  None when it
        does not apply: states that are not float64 (n, 4), or ``step``,
        ``features`` or ``n_features`` replaced on a subclass or the
        instance.

        Parameters
        ----------
        states : numpy.ndarray, shape (n, 4)
            The reset states.

        Returns
        -------
        callable or None

        Raises
        ------
        Nothing itself
            States it cannot step in place give None (the per-step path).

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> env = mc.rl.CartPole()
        >>> s0 = env.reset(3, rng=0)
        >>> phi = env.features(s0)
        >>> nxt = phi.copy()
        >>> r, done = env.stepper(s0)(phi, np.array([0, 1, 1]), nxt, None)
        >>> bool((nxt[:, :4] == env.step(s0, np.array([0, 1, 1]))[0]).all())
        True
        """
        cls = type(self)
        if (not isinstance(states, np.ndarray) or states.dtype != np.float64
                or states.ndim != 2 or states.shape[1:] != (4,)
                or {"step", "features", "n_features"} & vars(self).keys()
                or cls.step is not CartPole.step or cls.features is not _state_and_one
                or self.n_features != CartPole.n_features):
            return None
        n = len(states)
        kernel, ones, shape = _cartpole_kernel(self, n, 5), np.ones(n), (n,)

        def step_into(features: Any, actions: Any, out: Any, rng: Any) -> Any:
            if type(actions) is not np.ndarray or actions.shape != shape:
                new, r, done = self.step(features[:, :4], actions, rng)  # its path and errors
                out[:, :4] = new
                return r, done
            return ones, kernel(features, actions, out, rng)
        return step_into


def _cartpole_kernel(env: Any, n: Any, width: Any) -> Any:
    """CartPole.step's arithmetic for n float64 states, operation by
    operation, on work arrays allocated once: ``kernel(states, actions, out,
    rng)`` for states (n, width) (width 4: the states; 5: their features,
    whose last column is carried over unchanged, plus 0.0) and actions an
    array (n,), writes the next states into ``out`` (same shape, not
    overlapping ``states``) and returns ``done`` (a work array).  f = +-force (for a
    zero or non-finite force as step's np.where has it: -0.0 for action
    0), times (1 + force_noise N(0, 1)) when force_noise > 0; then the
    Euler step of the state."""
    full = {k: np.full(n, float(v)) for k, v in (
        ("pml", env.m_pole * env.half_len), ("total", env.m_cart + env.m_pole),
        ("grav", env.gravity), ("mpole", env.m_pole), ("fourthirds", 4.0 / 3.0),
        ("hl", env.half_len), ("twoforce", 2.0 * env.force), ("force", env.force))}
    tau4 = np.zeros((n, width))  # the state's columns tau, the feature's constant 0
    tau4[:, :4] = float(env.tau)
    lim2 = np.empty((n, 2))
    lim2[:, 0], lim2[:, 1] = env.x_limit, env.theta_limit
    noise = env.force_noise
    exact_pm = math.isfinite(2.0 * env.force) and env.force != 0
    pml, total, grav, mpole, fourthirds, hl, twoforce, force = full.values()
    c, sn, f, temp, b1, b2, b3 = (np.empty(n) for _ in range(7))
    rate = np.zeros((n, width))
    xacc, thacc, rate_even = rate[:, 1], rate[:, 3], rate[:, 0:4:2]  # (xd, xacc, thd, thacc)
    dist, far = np.empty((n, 2)), np.empty((n, 2), dtype=bool)
    far_x, far_th = far[:, 0], far[:, 1]
    done, one = np.empty(n, dtype=bool), np.empty(n, dtype=bool)

    def kernel(states: Any, actions: Any, out: Any, rng: Any) -> Any:
        a = actions if actions.dtype == np.bool_ else np.equal(actions, 1, one)
        if exact_pm:  # 2 force a - force: +-force exactly
            np.multiply(a, twoforce, f)
            np.subtract(f, force, f)
            g = f
        else:  # a zero (-0.0 for action 0) or non-finite force: as step has it
            g = np.where(a, env.force, -env.force)
        if noise > 0:
            g = g * (1.0 + noise * V.as_generator(rng).standard_normal(n))
        th, thd = states[:, 2], states[:, 3]
        np.cos(th, c)
        np.sin(th, sn)
        np.multiply(pml, thd, b1)  # temp = (f + pml thd thd s) / total
        np.multiply(b1, thd, b1)
        np.multiply(b1, sn, b1)
        np.add(g, b1, b1)
        np.divide(b1, total, temp)
        np.multiply(grav, sn, b2)  # thacc = (g s - c temp) / (hl (4/3 - mp c c / total))
        np.multiply(c, temp, b1)
        np.subtract(b2, b1, b2)
        np.multiply(mpole, c, b3)
        np.multiply(b3, c, b3)
        np.divide(b3, total, b3)
        np.subtract(fourthirds, b3, b3)
        np.multiply(hl, b3, b3)
        np.divide(b2, b3, thacc)
        np.multiply(pml, thacc, b1)  # xacc = temp - pml thacc c / total
        np.multiply(b1, c, b1)
        np.divide(b1, total, b1)
        np.subtract(temp, b1, xacc)
        rate_even[...] = states[:, 1:4:2]  # (x, xd, th, thd) + tau (xd, xacc, thd, thacc)
        np.multiply(tau4, rate, rate)
        np.add(states, rate, out)
        np.abs(out[:, 0:4:2], dist)
        np.greater(dist, lim2, far)
        np.logical_or(far_x, far_th, done)
        return done
    return kernel


class Reach1D:
    """Reach the origin on a line: a continuous-action task for
    :class:`GaussianPolicy`.

    State x (start uniform in [-1, 1]); action a (real, clipped to
    [-max_action, max_action]); x <- x + dt * a (+ noise * sqrt(dt) * N(0, 1)
    when ``noise`` > 0, from the rng passed to ``step``); reward -(x^2 + c
    a^2) per step; ``max_steps`` steps, no early end.  Features (x, 1).

    Parameters
    ----------
    max_steps : int, default 20
        The horizon (>= 1).
    dt : float, default 0.2
        The time step (> 0).
    action_cost : float, default 0.01
        c, the weight of a^2 in the cost (>= 0).
    max_action : float, default 5.0
        The clip of the actions (> 0).
    noise : float, default 0.0
        The diffusion coefficient (>= 0).

    Raises
    ------
    ValueError
        ``max_steps`` below 1, ``dt`` or ``max_action`` not positive, or
        ``action_cost`` or ``noise`` negative.

    Examples
    --------
    >>> import mcscore as mc
    >>> tr = mc.rl.rollout(mc.rl.Reach1D(max_steps=5), mc.rl.GaussianPolicy(2), 4, rng=0)
    >>> tr.rewards.shape, bool((tr.rewards <= 0).all())
    ((4, 5), True)
    """

    n_features = 2

    def __init__(self, max_steps: int = 20, dt: float = 0.2, action_cost: float = 0.01,
                 max_action: float = 5.0, noise: float = 0.0) -> None:
        self.max_steps = V.integer("max_steps", max_steps, minimum=1)
        self.dt = V.scalar("dt", dt, "positive")
        self.action_cost = V.scalar("action_cost", action_cost, "nonnegative")
        self.max_action = V.scalar("max_action", max_action, "positive")
        self.noise = V.scalar("noise", noise, "nonnegative")

    def reset(self, n: int, rng: np.random.Generator | int | None = None) -> NDArray[Any]:
        """Initial positions of n episodes, shape (n, 1).

        %(env_reset)s

        Examples
        --------
        >>> import mcscore as mc
        >>> x = mc.rl.Reach1D().reset(3, rng=0)
        >>> x.shape, bool((abs(x) <= 1).all())
        ((3, 1), True)
        """
        return V.as_generator(rng).uniform(-1.0, 1.0, size=(V.integer("n", n, minimum=1), 1))

    features = staticmethod(_state_and_one)

    def step(self, states: NDArray[Any], actions: ArrayLike,
             rng: np.random.Generator | int | None = None
             ) -> tuple[NDArray[Any], NDArray[np.float64], NDArray[Any]]:
        """Advance a batch of states by one step.

        Parameters
        ----------
        states : numpy.ndarray, shape (n, 1)
        actions : array_like, n actions
            Clipped to [-max_action, max_action].
        rng : None, int, SeedSequence or Generator
            Draws the noise (when ``noise`` > 0).

        Returns
        -------
        tuple
            ``(states (n, 1), rewards (n,), done (n,) bool)``; done is always False.

        Raises
        ------
        ValueError
            Actions that do not reshape to the states' shape.

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> s, r, done = mc.rl.Reach1D(dt=0.5).step(np.array([[1.0]]), np.array([-2.0]))
        >>> s.tolist(), r.tolist()
        ([[0.0]], [-0.04])
        """
        a = np.clip(np.asarray(actions, dtype=float).reshape(states.shape), -self.max_action,
                    self.max_action)
        new = states + self.dt * a
        if self.noise > 0:
            new = new + self.noise * math.sqrt(self.dt) * V.as_generator(rng).standard_normal(
                states.shape)
        r = -(new[:, 0] ** 2 + self.action_cost * a[:, 0] ** 2)
        return new, r, np.zeros(len(states), dtype=bool)


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


# The fragments the docstrings above name by %(name)s (see mcscore._docs), filled in
# once, when the module is imported.
_DOC_FRAGMENTS = {
    "features": """\
features : array_like, shape ``(*batch, n_features)``
    The states' features.""",
    "bad_features": """\
ValueError
    Features of the wrong length or not finite.""",
    "rng_spec7": """\
rng : None, int, SeedSequence or Generator
    The randomness (SPEC 7).""",
    "h_dh": """\
tuple
    ``(H, dH)``: H of shape ``features.shape[:-1]``, dH a dict like
    :meth:`score`'s.""",
    "softmax_setup": """\
>>> import numpy as np
>>> import mcscore as mc
>>> pol = mc.rl.SoftmaxPolicy(n_features=3, n_actions=2)
>>> s = np.ones((4, 3))""",
    "gaussian_setup": """\
>>> import numpy as np
>>> import mcscore as mc
>>> pol = mc.rl.GaussianPolicy(n_features=3, n_actions=2, log_std=-1.0)
>>> s = np.ones((4, 3))""",
    "torch_setup": """\
%(torch_import)s
>>> pol = mc.rl.TorchPolicy(torch.nn.Linear(5, 2, dtype=torch.float64))""",
    "nonfinite_features": """\
ValueError
    Non-finite features.""",
    "gym_setup": """\
>>> import numpy as np
>>> import mcscore as mc
>>> class Still:
...     def reset(self, seed=None):
...         return np.zeros(2), {}
...     def step(self, action):""",
    "env_reset": """\
Parameters
----------
n : int
    The number of episodes (>= 1).
rng : None, int, SeedSequence or Generator
    The randomness.

Returns
-------
numpy.ndarray
    The initial states, one row an episode (the shape above).

Raises
------
ValueError
    ``n`` < 1.""",
    "entropy_io": """\
Parameters
----------
%(features)s

Returns
-------
%(h_dh)s""",
    "raises_bad_features": """\
Raises
------
%(bad_features)s""",
    "features_rng": """\
%(features)s
%(rng_spec7)s""",
    "raises_nonfinite": """\
Raises
------
%(nonfinite_features)s""",
}
_docs.fill_module(globals(), **_DOC_FRAGMENTS)
