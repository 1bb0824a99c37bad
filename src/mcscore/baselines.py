"""Baselines users know from optimisation loops, as objects passed to
``score_grad(..., baseline=obj)``:

* :class:`MovingAverageBaseline`: a stateful exponential moving average of
  f's mean over the previous calls, with decay and zero-debiasing (as Adam's
  moments): call k uses b_k = m_k / (1 - decay^k), m_k = decay m_{k-1} +
  (1 - decay) mean f of call k - 1.  The baseline is fixed before the call's
  draws, so every call's estimate is unbiased; after the call the object is
  updated with the call's estimate of E[f].
* :class:`ContextBaseline`: per gradient coordinate a baseline from a user
  function of the draw's *context*: for the coordinates reading draw
  coordinate c, ``b_c = fn(x_c_resampled, c)`` where x_c_resampled is the
  draw with coordinate c replaced by an independent draw of the same
  distribution.  It cannot depend on x_c, and the score of those
  coordinates depends on x_c only, so E[b_c s] = 0: unbiased whatever fn
  is.  The default fn is f itself (f at the draw with coordinate c
  resampled), a leave-one-coordinate-out baseline.

Any caller of ``score_grad`` (``vi``, ``rl``, a user's loop) passes the
object as ``baseline=``; ``score_grad`` hands the call to the object's
``score_grad`` method.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from . import _engine as E
from . import _validation as V
from ._features import FeatureJob, run_features
from .distributions import Distribution
from .result import GradientEstimate
from .score import score_grad

__all__ = ["MovingAverageBaseline", "ContextBaseline"]


class MovingAverageBaseline:
    """Exponential moving average of E[f] over calls, with decay and
    zero-debiasing; pass it as ``score_grad(..., baseline=ma)``.

    Parameters
    ----------
    decay : float in [0, 1)
        Weight of the past: m <- decay m + (1 - decay) value.
    debias : bool
        Divide by 1 - decay^k after k updates (the average starts at 0).
    initial : float
        The baseline of the first call (before any update).

    Attributes: ``value`` (the baseline the next call uses), ``steps``.
    ``update(x)`` takes a GradientEstimate (its ``value``) or a number: a
    caller of ``score_grad_from_samples`` uses ``float(ma)`` and then
    ``ma.update(fx.mean())``.

    Raises
    ------
    ValueError
        ``decay`` outside [0, 1) or ``initial`` not finite.
    TypeError
        ``debias`` not a bool.

    Examples
    --------
    >>> import mcscore as mc
    >>> ma = mc.MovingAverageBaseline(decay=0.5)
    >>> q = mc.Normal(loc=1.0, scale=1.0)
    >>> for _ in range(3):
    ...     res = ma.score_grad(lambda x: x ** 2, q, 10_000, rng=0)
    >>> ma.steps, bool(abs(ma.value - 2.0) < 0.2)             # E[x^2] = loc^2 + scale^2 = 2
    (3, True)
    """

    def __init__(self, decay: float = 0.9, *, debias: bool = True, initial: float = 0.0) -> None:
        d = V.as_real_array("decay", decay)
        if d.ndim != 0 or not (0.0 <= float(d) < 1.0):
            raise ValueError(f"decay must be a number in [0, 1), got {decay!r}")
        if not isinstance(debias, (bool, np.bool_)):
            raise TypeError(f"debias must be True or False, got {debias!r}")
        init = V.as_real_array("initial", initial)
        if init.ndim != 0 or not np.isfinite(init):
            raise ValueError(f"initial must be a finite number, got {initial!r}")
        self.decay, self.debias, self.initial = float(d), bool(debias), float(init)
        self.steps = 0
        self._avg = 0.0

    @property
    def value(self) -> float:
        if self.steps == 0:
            return self.initial
        if not self.debias:
            return self._avg
        return self._avg / (1.0 - self.decay ** self.steps)

    def __float__(self) -> float:
        return float(self.value)

    def update(self, x: GradientEstimate | float) -> MovingAverageBaseline:
        """Fold one more value of E[f] (a GradientEstimate or a number) in.

        Parameters
        ----------
        x : GradientEstimate or float
            A result (its ``value`` is used) or a finite number.

        Returns
        -------
        MovingAverageBaseline
            ``self``, updated (``steps`` + 1).

        Raises
        ------
        ValueError
            A value that is not a finite number (NaN, infinite or not a scalar).

        Examples
        --------
        >>> import mcscore as mc
        >>> ma = mc.MovingAverageBaseline(decay=0.9)
        >>> round(ma.update(2.0).value, 12)               # debiased: the first value itself
        2.0
        """
        v = x.value if isinstance(x, GradientEstimate) else x
        v = V.as_real_array("value", v)
        if v.ndim != 0 or not np.isfinite(v):
            raise ValueError(f"MovingAverageBaseline.update needs a finite number, got {x!r}")
        if self.steps == 0 and not self.debias:
            self._avg = self.initial
        self._avg = self.decay * self._avg + (1.0 - self.decay) * float(v)
        self.steps += 1
        return self

    def score_grad(self, f: Any, dist: Distribution, n: int, **kwargs: Any) -> GradientEstimate:
        """score_grad with the current baseline, then the update.

        Parameters
        ----------
        f : callable, Integrand or LowLevelCallable
            The integrand, as in :func:`~mcscore.score_grad`.
        dist : Distribution
            The distribution.
        n : int
            Draws (>= 2).
        **kwargs
            The other keyword arguments of :func:`~mcscore.score_grad` (not
            ``baseline``: this object gives it).

        Returns
        -------
        GradientEstimate
            With ``info["moving_average_baseline"]`` the baseline used.

        Raises
        ------
        ValueError
            The errors of :func:`~mcscore.score_grad`.

        Examples
        --------
        >>> import mcscore as mc
        >>> ma = mc.MovingAverageBaseline()
        >>> res = ma.score_grad(lambda x: x, mc.Normal(0.0, 1.0), 1000, rng=0)
        >>> res.info["moving_average_baseline"], ma.steps
        (0.0, 1)
        """
        b = self.value
        res = score_grad(f, dist, n, baseline=b, **kwargs)
        res.info["moving_average_baseline"] = b
        res.baseline = b
        self.update(res)
        return res

    def __repr__(self) -> str:
        return (f"MovingAverageBaseline(decay={self.decay}, debias={self.debias}, "
                f"value={self.value:.6g}, steps={self.steps})")


class ContextBaseline:
    """Per-coordinate baselines from a user function of the draw's context.

    Parameters
    ----------
    fn : callable ``fn(x, c) -> (m,)``, optional
        ``x``: shape ``(m, *dist.draw_shape)``, the draws with flat draw
        coordinate ``c`` (an int, in C order) replaced by an independent
        draw of the same distribution; the result is the baseline of every
        gradient coordinate whose score reads x_c (for a Categorical, the K
        coordinates of unit c).  Default: f itself.

    ``score_grad(f, dist, n, baseline=ContextBaseline(fn))`` averages
    ``(f(x) - b_c) s_q(x)`` per coordinate q (c the draw coordinate q
    reads), unbiased.  Each parameter must be given at the distribution's
    batch shape (one draw coordinate per gradient coordinate).  Costs 1 + D
    evaluations (D draw coordinates) per sample; ``info["f_evals_per_sample"]``
    says so.

    Raises
    ------
    TypeError
        ``fn`` that is not callable.

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> q = mc.Bernoulli(probs=np.full(4, 0.3))
    >>> f = lambda x: x.sum(axis=-1) ** 2
    >>> res = mc.score_grad(f, q, 20_000, rng=0, baseline=mc.ContextBaseline())
    >>> exact = 1 + 2 * 3 * 0.3                           # d E[(sum x)^2] / d p_j = 1 + 2 (D - 1) p
    >>> bool(np.all(np.abs(res.grad["probs"] - exact) < 5 * res.stderr["probs"]))
    True
    """

    def __init__(self, fn: Callable[..., Any] | None = None) -> None:
        self.fn = E.check_callable("fn", fn, required=False)

    def score_grad(self, f: Callable[..., Any], dist: Distribution, n: int, *, rng: Any = None,
                   n_threads: int | None = None, chunk_size: int | None = None,
                   n_streams: int = E.DEFAULT_STREAMS, block_size: int | None = None,
                   client: Any = None, control_variates: Any = None, antithetic: bool = False,
                   grad_f: Any = None, progress: Any = False) -> GradientEstimate:
        """score_grad with this object's per-coordinate baselines (called by
        ``score_grad(..., baseline=obj)``).

        Parameters
        ----------
        f : callable
            The integrand, a Python callable of draws ``(m, *draw_shape)``.
        dist : Distribution
            A differentiable distribution with every parameter given at the
            batch shape.
        n : int
            Draws (>= 2).
        rng, n_threads, chunk_size, n_streams, block_size, client, grad_f, progress
            As in :func:`~mcscore.score_grad`.
        control_variates, antithetic
            Must be left at their defaults (not combinable).

        Returns
        -------
        GradientEstimate
            With ``info["f_evals_per_sample"] = 1 + draw_size``.

        Raises
        ------
        ValueError
            ``control_variates`` or ``antithetic`` given, a parameter
            broadcast over several draw coordinates, or ``n`` below 2.

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> q = mc.Normal(loc=np.zeros(3), scale=np.ones(3))
        >>> res = mc.ContextBaseline().score_grad(lambda x: x.sum(axis=-1), q, 5000, rng=0)
        >>> res.info["f_evals_per_sample"]
        4
        """
        if control_variates is not None or antithetic is not False:
            raise ValueError("a ContextBaseline cannot be combined with control_variates or "
                             "antithetic")
        E.check_distribution(dist)
        f = E.check_callable("f", f)
        E.check_differentiable(dist)
        job = ContextJob(f, self.fn or _f_at(f), dist)
        n = V.integer("n", n, minimum=2, maximum=2**62)
        est, plan, mag = run_features(job, dist, n, rng=rng, n_streams=n_streams,
                                 block_size=block_size, n_threads=n_threads,
                                 chunk_size=chunk_size, client=client,
                                 terms="(f - b_c) * score")
        grand, se, var, value, vse, vvar, nn, _ = est
        info = {**plan.info(), "f": "python", "baseline": "context",
                "f_evals_per_sample": 1 + dist.draw_size}
        return E.gradient_estimate(dist, grand, se, var, value, vse, vvar, nn, "score",
                                   info, batch=est.batch)

    def __repr__(self) -> str:
        return f"ContextBaseline({'f' if self.fn is None else self.fn!r})"


def _f_at(f: Callable[..., Any]) -> Callable[..., Any]:
    return lambda x, c: f(x)


class ContextJob(FeatureJob):
    """Draws x and an independent x' of the distribution; features
    (f(x) - fn(x with x_c = x'_c, c)) s_q(x) for coordinate q reading c."""

    L = 1

    def __init__(self, f: Any, fn: Any, dist: Distribution) -> None:
        self.f, self.fn, self.dist = f, fn, dist
        t_start, _, col = E.score_table(dist)[:3]
        if not (np.diff(t_start) == 1).all():
            raise ValueError(
                f"a ContextBaseline needs one draw coordinate per gradient coordinate; a "
                f"parameter of {dist!r} is broadcast over several draw coordinates: give "
                "every parameter at the batch shape (np.broadcast_to)")
        self.col = np.asarray(col, np.int64)
        self.P = len(self.col)
        self.width = dist.draw_size

    def sample(self, gen: np.random.Generator, m: int) -> dict[str, np.ndarray]:
        d = self.dist
        return {"x": d.sample(m, rng=gen).reshape(m, -1).astype(float),
                "x2": d.sample(m, rng=gen).reshape(m, -1).astype(float)}

    def features(self, mat: Any, rd: Any, chunk: Any, mag: Any) -> Any:
        d = self.dist
        x, x2 = mat["x"], mat["x2"]
        m = len(x)
        shape = (m,) + d.draw_shape
        xu = d._to_user_dtype(x.reshape(shape))
        v = mag.see(E.call_values(self.f, xu, rd, chunk))
        sc = d._score(xu)
        S = np.concatenate([sc[k].reshape(m, -1) for k in d._coord_slices], 1)
        b = np.empty((m, d.draw_size))
        xc = x.copy()
        for c in range(d.draw_size):
            xc[:, c] = x2[:, c]
            fc = lambda z, c=c: self.fn(z, c)
            b[:, c] = mag.see(E.call_values(fc, d._to_user_dtype(xc.reshape(shape)), rd, chunk,
                                            name="the baseline fn"))
            xc[:, c] = x[:, c]
        Z = ((v[:, None] - b[:, self.col]) * S)[:, :, None]
        return v, Z

