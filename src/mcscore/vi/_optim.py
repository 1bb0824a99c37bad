"""The optimiser of :func:`fit` (and of :func:`mcscore.rl.reinforce`): Adam
on a dict of arrays held as one flat vector, and the step-size schedules."""
from __future__ import annotations

import math
import numbers
from typing import Any, Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import _validation as V


# ---------------------------------------------------------------------------
# step-size schedules
# ---------------------------------------------------------------------------

class inverse_time:
    """The step size ``lr / (1 + t / scale) ** power`` at step t = 1, 2, ...
    (Robbins-Monro for 0.5 < power <= 1).

    Parameters
    ----------
    lr : float
        The step size at t = 0 (> 0).
    scale : float, default 100.0
        The steps over which it halves (power 1) (> 0).
    power : float, default 1.0
        The decay exponent (> 0).

    Raises
    ------
    ValueError
        An argument that is not positive and finite.

    Examples
    --------
    >>> import mcscore as mc
    >>> sched = mc.vi.inverse_time(0.1, scale=10.0)
    >>> sched(10)                                            # 0.1 / (1 + 10 / 10)
    0.05
    """

    def __init__(self, lr: float, scale: float = 100.0, power: float = 1.0) -> None:
        self.lr = V.scalar("lr", lr, "positive")
        self.scale = V.scalar("scale", scale, "positive")
        self.power = V.scalar("power", power, "positive")

    def __call__(self, t: int) -> float:
        return self.lr / (1.0 + t / self.scale) ** self.power

    def __repr__(self) -> str:
        return f"inverse_time(lr={self.lr:g}, scale={self.scale:g}, power={self.power:g})"


class cosine:
    """Cosine annealing from ``lr`` at step 1 to ``final`` at step ``steps``
    (``final`` afterwards).

    Parameters
    ----------
    lr : float
        The step size at step 1 (> 0).
    steps : int
        The step at which it reaches ``final`` (>= 1).
    final : float, default 0.0
        The last step size (>= 0).

    Raises
    ------
    ValueError
        An argument outside its range.

    Examples
    --------
    >>> import mcscore as mc
    >>> sched = mc.vi.cosine(0.1, steps=101)
    >>> sched(1), round(sched(51), 12), sched(101)
    (0.1, 0.05, 0.0)
    """

    def __init__(self, lr: float, steps: int, final: float = 0.0) -> None:
        self.lr = V.scalar("lr", lr, "positive")
        self.steps = V.integer("steps", steps, minimum=1)
        self.final = V.scalar("final", final, "nonnegative")

    def __call__(self, t: int) -> float:
        frac = min(max(t - 1, 0), self.steps - 1) / max(self.steps - 1, 1)
        return self.final + 0.5 * (self.lr - self.final) * (1.0 + math.cos(math.pi * frac))

    def __repr__(self) -> str:
        return f"cosine(lr={self.lr:g}, steps={self.steps}, final={self.final:g})"


def _check_lr(lr: Any) -> Any:
    """A positive number, or a schedule (a callable of the step)."""
    if callable(lr) and not isinstance(lr, numbers.Real):
        return lr
    return V.scalar("lr", lr, "positive")


def _lr_at(lr: Any, t: Any) -> Any:
    if not callable(lr):
        return lr
    try:
        v = lr(t)
    except Exception as exc:
        if hasattr(exc, "add_note"):
            exc.add_note(f"(raised by the lr schedule at step {t})")
        raise
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Real, np.floating,
                                                              np.integer)):
        raise TypeError(f"the lr schedule returned {v!r} at step {t}; it must return a "
                        "real number >= 0")
    v = float(v)
    if not (v >= 0 and math.isfinite(v)):
        raise ValueError(f"the lr schedule returned {v} at step {t}; it must return a "
                         "finite step size >= 0")
    return v


def _check_betas(betas: Any) -> Any:
    """Adam's moment decays (beta1, beta2), each in [0, 1)."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    b1, b2 = (V.scalar(f"betas[{i}]", b, "real") for i, b in enumerate(betas))
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise ValueError(f"betas must be in [0, 1), got {betas!r}")
    return b1, b2


class Adam:
    """Adam (Kingma & Ba 2015) for *ascent* on a dict of arrays.

    ``opt = Adam(params, lr=0.05); params = opt.step(grads)`` moves each
    array along its bias-corrected first moment over the root of its second
    moment; ``opt.step(grads, lr=...)`` overrides the step size for that step
    (a schedule).  Used by :func:`fit` and :func:`mcscore.rl.reinforce`.

    Parameters
    ----------
    params : dict of str to array_like
        The starting point (finite arrays).
    lr : float, default 0.05
        The step size (> 0).
    betas : pair of float, default (0.9, 0.999)
        The moments' decays, each in [0, 1).
    eps : float, default 1e-8
        Added to the root of the second moment (> 0).

    Raises
    ------
    TypeError
        ``params`` not a dict, ``betas`` not a pair.
    ValueError
        Non-finite parameters, a non-positive ``lr`` or ``eps``, ``betas``
        outside [0, 1).

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> params = {"x": np.array([0.0])}
    >>> opt = mc.vi.Adam(params, lr=0.1)
    >>> for _ in range(200):                       # ascend -(x - 3)^2
    ...     params = opt.step({"x": -2 * (params["x"] - 3.0)})
    >>> bool(abs(params["x"][0] - 3.0) < 0.05)
    True
    """

    def __init__(self, params: dict[str, Any], *, lr: float = 0.05,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        if not isinstance(params, dict):
            raise TypeError(f"params must be a dict {{name: array}}, got {type(params).__name__}")
        params = {k: np.array(V.check(f"params[{k!r}]", V.as_real_array(
            f"params[{k!r}]", v), "real"), dtype=float) for k, v in params.items()}
        lr = V.positive_real("lr", lr)
        betas = _check_betas(betas)
        eps = V.positive_real("eps", eps)
        self.lr, self.b1, self.b2, self.eps = float(lr), float(betas[0]), float(betas[1]), eps
        # the parameters and moments of every array in one flat vector each
        # (the update is elementwise: the same numbers as array by array)
        self._layout = _Layout({k: v.shape for k, v in params.items()})
        self._p = self._layout.flat(params)
        self._m1 = np.zeros_like(self._p)
        self._m2 = np.zeros_like(self._p)
        self.t = 0

    @property
    def params(self) -> dict[str, NDArray[np.float64]]:
        """The current parameters {name: array}."""
        return self._layout.split(self._p)

    @property
    def m1(self) -> dict[str, NDArray[np.float64]]:
        return self._layout.split(self._m1)

    @property
    def m2(self) -> dict[str, NDArray[np.float64]]:
        return self._layout.split(self._m2)

    def step(self, grads: Mapping[str, ArrayLike],
             lr: float | None = None) -> dict[str, NDArray[np.float64]]:
        """One ascent step with the gradients ``grads`` (same keys/shapes);
        returns the updated parameters (new arrays).

        Parameters
        ----------
        grads : dict of str to array_like
            A finite gradient per parameter, same shapes.
        lr : float, optional
            The step size of this step (default the optimizer's ``lr``).

        Returns
        -------
        dict of str to numpy.ndarray

        Raises
        ------
        ValueError
            A missing key, a gradient of another shape or not finite.

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> opt = mc.vi.Adam({"x": np.zeros(2)}, lr=0.1)
        >>> opt.step({"x": np.array([1.0, -3.0])})["x"]            # the first step has size lr
        array([ 0.1, -0.1])
        """
        self.t += 1
        checked = []
        for k, shape in self._layout.shapes.items():
            if k not in grads:
                raise ValueError(f"grads has no entry {k!r} (the parameters are "
                                 f"{sorted(self._layout.shapes)})")
            g = V.check(f"grads[{k!r}]", V.as_real_array(f"grads[{k!r}]", grads[k]), "real")
            if g.shape != shape:
                raise ValueError(f"grads[{k!r}] has shape {g.shape}, the parameter {shape}")
            checked.append(g.ravel())
        self._update(np.concatenate(checked) if checked else np.zeros(0), lr)
        return self._layout.split(self._p)

    def _step_flat(self, g: Any, lr: Any) -> Any:
        """step() with the gradient as one flat vector in the parameters'
        order, already checked finite; returns the new flat parameters."""
        self.t += 1
        self._update(g, lr)
        return self._p

    def _update(self, g: Any, lr: Any) -> None:
        lr = self.lr if lr is None else float(lr)
        b1, b2 = self.b1, self.b2
        # the operations of m1 = b1 m1 + (1 - b1) g, m2 = b2 m2 + (1 - b2) g g,
        # p = p + lr (m1 / c1) / (sqrt(m2 / c2) + eps) in their order; the
        # intermediates in one scratch buffer, the new m1, m2, p new arrays
        tmp = self.__dict__.get("_tmp")
        if tmp is None or tmp.shape != g.shape:
            tmp = self._tmp = np.empty(g.shape)
        m1 = b1 * self._m1
        m1 += np.multiply(1 - b1, g, out=tmp)
        m2 = b2 * self._m2
        np.multiply(1 - b2, g, out=tmp)
        m2 += np.multiply(tmp, g, out=tmp)
        self._m1, self._m2 = m1, m2
        step = np.divide(m2, 1 - b2**self.t, out=tmp)
        np.sqrt(step, out=step)
        step += self.eps
        mh = m1 / (1 - b1**self.t)
        mh *= lr
        mh /= step
        self._p = self._p + mh


class _Layout:
    """Arrays of the shapes {name: shape} as one flat float vector (in the
    dict's order) and back."""

    def __init__(self, shapes: Any) -> None:
        self.shapes = {k: tuple(shp) for k, shp in shapes.items()}
        self.slices, o = {}, 0
        for k, shp in self.shapes.items():
            size = int(np.prod(shp, dtype=np.int64))
            self.slices[k] = slice(o, o + size)
            o += size
        self.size = o

    def flat(self, arrays: Any) -> Any:
        return np.concatenate([np.ravel(np.asarray(arrays[k], dtype=float))
                               for k in self.shapes]) if self.shapes else np.zeros(0)

    def split(self, vec: Any) -> Any:
        return {k: vec[self.slices[k]].reshape(shp) for k, shp in self.shapes.items()}
