"""The built-in environments (CartPole, Reach1D) and CartPole's in-place
step (re-exported by :mod:`mcscore.rl`)."""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import _docs
from .. import _validation as V
from ._fragments import DOC_FRAGMENTS


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


_docs.fill_module(globals(), **DOC_FRAGMENTS)
