"""Returns-to-go, value baselines and generalised advantages
(re-exported by :mod:`mcscore.rl`)."""
from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import _docs
from .. import _validation as V
from ._fragments import DOC_FRAGMENTS


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


_docs.fill_module(globals(), **DOC_FRAGMENTS)
