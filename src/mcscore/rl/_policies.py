"""The NumPy policies (SoftmaxPolicy, GaussianPolicy) and their draws
(re-exported by :mod:`mcscore.rl`)."""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

from .. import _docs, _kernels
from .. import _validation as V
from ..distributions import Categorical, Normal
from ._fragments import DOC_FRAGMENTS


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


_docs.fill_module(globals(), **DOC_FRAGMENTS)
