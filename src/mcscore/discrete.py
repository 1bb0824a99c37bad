"""Estimators for discrete families (Bernoulli, Categorical):
:func:`relaxed_grad` (Gumbel-softmax / Concrete, biased), :func:`rebar_grad`
(REBAR, unbiased, with the relaxed control variate) and :func:`disarm_grad`
(DisARM for Bernoulli, needs only f).

A family that has a relaxation declares it (``has_relaxation`` and
``relaxation()``: its logit-space parameters, see ``mcscore.distributions``);
per round the ``_vr`` kernels draw the discrete and relaxed points, the
engine calls f and grad_f on them, and the kernels accumulate the
estimator's per-draw terms.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from . import _engine as E
from . import _validation as V
from . import _vr
from .distributions import FAMILIES
from .relax import tune_rebar
from .relaxed import RelaxedBernoulli, RelaxedOneHotCategorical
from .result import GradientEstimate

if TYPE_CHECKING:
    from .distributions import Distribution

__all__ = ["relaxed_grad", "rebar_grad", "disarm_grad", "TEMPERATURE_GRID"]


def _discrete_setup(dist: Any, what: str, capability: str = "has_relaxation") -> Any:
    """(the discrete family, W, K, logit-space parameters, normalised
    probs, conv, cv, cvs): the family's relaxation (a relaxed distribution
    stands for its discrete base)."""
    if isinstance(dist, (RelaxedBernoulli, RelaxedOneHotCategorical)):
        dist = dist.base
    E.check_distribution(dist)
    if not getattr(dist, capability):
        names = ", ".join(c.__name__ for c in FAMILIES if getattr(c, capability))
        raise ValueError(f"{what} supports {names}; got {type(dist).__name__}")
    dist._check_differentiable()
    dist._kernel_dist()
    return (dist,) + dist.relaxation()


class _DiscreteJob(E.Job):
    """The draws of the discrete estimators: the _vr kernels' `mode` with
    parameters `prm` into `regions` regions of W values per draw."""

    def __init__(self, f: Any, grad_f: Any, base: Any, W: int, mode: int, prm: Any,
                 regions: int) -> None:
        self.f, self.grad_f, self.dist = f, grad_f, base
        self.width = self.P = W
        self.mode, self.prm, self.regions = mode, prm, regions
        self.shape = base.relaxed_shape()

    def buffers(self, R: int, B: int) -> Any:
        return np.empty((R, self.regions * self.width * B))

    def draw(self, rd: Any, bitgens: Any, threads: Any, buf: Any, shared: bool = False) -> None:
        self.prepare(rd, bitgens, threads, buf, self.mode, self.prm)

    def points(self, rd: Any, buf: Any, region: int) -> Any:
        return self.gathered(rd, buf, self.width, region).reshape((rd.total,) + self.shape)


def relaxed_grad(f: Callable[..., Any],
                 dist: Distribution | RelaxedBernoulli | RelaxedOneHotCategorical, n: int, *,
                 grad_f: Callable[..., Any], temperature: float | None = None,
                 straight_through: bool = False, rng: Any = None, n_threads: int | None = None,
                 chunk_size: int | None = None, n_streams: int = E.DEFAULT_STREAMS,
                 block_size: int | None = None, client: Any = None) -> GradientEstimate:
    """Gumbel-softmax / Concrete estimate for Bernoulli and Categorical.

    The discrete draw is replaced by a continuous relaxation at
    ``temperature`` tau (Bernoulli: z = sigmoid((logit + logistic noise) /
    tau); Categorical: z = softmax((log pi + Gumbel noise) / tau)), and the
    estimate is the pathwise gradient ``grad_f(z) . dz/dtheta``.  It
    estimates the gradient of E[f(z)] under the relaxation, **not** of
    E[f(b)]: it is biased, and the bias shrinks as tau -> 0 (while the
    variance grows).  With ``straight_through=True`` f and grad_f are
    evaluated at the hard sample b = H(z) (Bernoulli) / one_hot(argmax z),
    and the relaxed Jacobian is used in the backward pass (also biased).

    Parameters
    ----------
    f, grad_f : callables on relaxed points: x of shape ``(m, *batch_shape)``
        for Bernoulli and ``(m, *batch_shape, K)`` (points of the simplex /
        one-hot vectors) for Categorical; f returns ``(m,)``, grad_f the
        shape of x.
    dist : Bernoulli, Categorical, RelaxedBernoulli or RelaxedOneHotCategorical
    n : int >= 2
    temperature : float > 0 (taken from a relaxed distribution when omitted)
    straight_through : bool
    rng, n_threads, chunk_size, n_streams, block_size, client : as in ``score_grad``
        (``client``: on Dask, bit-identical to the local run).

    Returns
    -------
    GradientEstimate (method "relaxed"); ``value`` estimates E[f(z)] (E[f(b)]
    with straight_through).

    Raises
    ------
    TypeError
        ``grad_f`` missing, or no ``temperature`` for a discrete family.
    ValueError
        A family other than those above, a temperature that is not positive
        and finite, or f / grad_f returning the wrong shape or non-finite
        values.

    Examples
    --------
    The estimate is of the relaxed objective (biased for E[f(b)]):

    >>> import numpy as np
    >>> import mcscore as mc
    >>> q = mc.Bernoulli(probs=np.array([0.3, 0.6]))
    >>> f = lambda b: ((b - 0.45) ** 2).sum(axis=-1)     # d E[f] / d p = 0.1 per coordinate
    >>> res = mc.relaxed_grad(f, q, 1000, grad_f=lambda z: 2 * (z - 0.45), temperature=0.5,
    ...                       rng=0)
    >>> res.method, res.grad["probs"].shape
    ('relaxed', (2,))
    """
    if temperature is None and isinstance(dist, (RelaxedBernoulli, RelaxedOneHotCategorical)):
        temperature = dist.temperature
    if temperature is None:
        raise TypeError("relaxed_grad needs temperature= (or a relaxed distribution)")
    tau = V.positive_real("temperature", temperature)
    if not isinstance(straight_through, (bool, np.bool_)):
        raise TypeError(f"straight_through must be True or False, got {straight_through!r}")
    base, W, kk, th, pr, conv, cv, cvs = _discrete_setup(dist, "relaxed_grad")
    f = E.check_callable("f", f)
    grad_f = E.check_callable("grad_f", grad_f)
    plan = E.Plan(n, W, rng, n_streams, block_size, n_threads)
    job = RelaxedJob(f, grad_f, base, W, kk, tau, th, conv, cv, cvs, straight_through)
    stats, shifts, _, mag = E.run(job, plan, chunk_size=chunk_size, client=client,
                                  n_threads=n_threads)
    grand, se, var, value, vse, vvar, nn, _ = est = E.estimate(
        base, stats, shifts, W, 1, [1.0], terms="grad_f * dz/dtheta", mag=mag)
    return E.gradient_estimate(base, grand, se, var, value, vse, vvar, nn,
                               "straight-through" if straight_through else "relaxed",
                               {**plan.info(), "f": "python", "temperature": tau},
                               batch=est.batch)


class RelaxedJob(_DiscreteJob):
    """Relaxed draws z (and their hard points b); f and grad_f at z (at b
    with straight-through); the kernel's sums of grad_f . dz/dtheta."""

    what = "relaxed_grad"

    def __init__(self, f: Any, grad_f: Any, base: Any, W: int, kk: int, tau: float, th: Any,
                 conv: Any, cv: Any, cvs: Any, straight_through: bool) -> None:
        mode = _vr.PREP_RELAXED_BERN if kk == 1 else _vr.PREP_RELAXED_CAT
        super().__init__(f, grad_f, base, W, mode, np.concatenate([[tau], th]), 2)
        self.kk, self.tau, self.conv, self.cv, self.cvs = kk, tau, conv, cv, cvs
        self.straight_through = straight_through

    def evaluate(self, rd: Any, buf: Any, chunk: Any, mag: Any) -> Any:
        x = self.points(rd, buf, 1 if self.straight_through else 0)
        return E.values_and_grads(self.f, self.grad_f, x, rd, chunk, mag), ()

    def accumulate(self, rd: Any, buf: Any, values: Any, threads: Any, stats: Any,
                   shifts: Any) -> None:
        fv, G = values
        _vr.acc_relaxed(rd.blocks, rd.slots, rd.n, rd.B, rd.n_streams, threads, self.width,
                        self.kk, self.tau, self.conv, self.cv, self.cvs, buf[:len(rd.blocks)],
                        G, fv, stats, shifts)


def _check_eta(eta: Any) -> float:
    if isinstance(eta, str):
        if eta != "optimal":
            raise ValueError(f"eta must be a number or 'optimal', got {eta!r}")
        return np.nan
    return V.finite_real("eta", eta, "a real number or 'optimal'")


class RebarJob(_DiscreteJob):
    """REBAR: per draw the discrete b, the relaxed z and the conditional
    relaxation z~; f at all three (shifted per stream), grad_f at z and z~;
    the kernel's Gram sums of f(b) s, the relaxed control variate and s."""

    # column 2 is the score: the baseline's feature with a fitted baseline,
    # and the carrier of the offset taken out of f (z_0 = f(b) s, z_1 =
    # -f(z~) s + ...)
    what = "rebar_grad"
    L = 3
    offset_rows = 1
    carrier = 2
    mult = ((1.0,), (-1.0,), (0.0,))

    def __init__(self, f: Any, grad_f: Any, base: Any, W: int, kk: int, lam: float, th: Any,
                 pr: Any, conv: Any, cv: Any, cvs: Any) -> None:
        mode = _vr.PREP_REBAR_BERN if kk == 1 else _vr.PREP_REBAR_CAT
        super().__init__(f, grad_f, base, W, mode, np.concatenate([[lam], th]), 4)
        self.kk, self.lam, self.pr, self.conv, self.cv, self.cvs = kk, lam, pr, conv, cv, cvs

    def evaluate(self, rd: Any, buf: Any, chunk: Any, mag: Any) -> Any:
        F = self.padded("F", 3, rd)
        pts = [self.points(rd, buf, k) for k in range(3)]
        for k in range(3):
            F[k, rd.index] = mag.see(E.call_values(self.f, pts[k], rd, chunk))
        Gz = rd.scatter(E.call_grad(self.grad_f, pts[1], rd, chunk))
        Gzt = rd.scatter(E.call_grad(self.grad_f, pts[2], rd, chunk))
        return (F, Gz, Gzt), [F[0:1], F[1:2], F[2:3]]

    def accumulate(self, rd: Any, buf: Any, values: Any, threads: Any, stats: Any,
                   shifts: Any) -> None:
        F, Gz, Gzt = values
        _vr.acc_rebar(rd.blocks, rd.slots, rd.n, rd.B, rd.n_streams, threads, self.width,
                      self.kk, self.lam, self.pr, self.conv, self.cv, self.cvs, True,
                      buf[:len(rd.blocks)], F, Gz, Gzt, stats, shifts)


def _rebar_run(f: Any, grad_f: Any, base: Any, W: int, kk: int, th: Any, pr: Any, conv: Any,
               cv: Any, cvs: Any, lam: float, eta: float, plan: Any, chunk_size: Any,
               add_score: bool, client: Any, n_threads: Any) -> Any:
    job = RebarJob(f, grad_f, base, W, kk, lam, th, pr, conv, cv, cvs)
    stats, shifts, offsets, mag = E.run(job, plan, chunk_size=chunk_size, client=client,
                                        n_threads=n_threads)
    return E.estimate(base, stats, shifts, W, job.L, [1.0, eta, np.nan if add_score else 0.0],
                      offsets=offsets, terms="the REBAR terms", mag=mag)


TEMPERATURE_GRID = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0)


def rebar_grad(f: Callable[..., Any],
               dist: Distribution | RelaxedBernoulli | RelaxedOneHotCategorical, n: int, *,
               grad_f: Callable[..., Any], temperature: float | str = 0.5,
               eta: float | str = "optimal", baseline: str | None = None, rng: Any = None,
               n_pilot: int | None = None, n_threads: int | None = None,
               chunk_size: int | None = None, n_streams: int = E.DEFAULT_STREAMS,
               block_size: int | None = None, client: Any = None) -> GradientEstimate:
    """REBAR (Tucker et al. 2017): unbiased, low-variance gradients for
    Bernoulli (any batch of independent coordinates) and Categorical.

    Per draw (u, v uniform): z = logit-space relaxation with b = H(z) the
    discrete sample, z~ ~ p(z | b) its conditional relaxation, sigma_tau the
    tempered sigmoid / softmax, and

        g = f(b) s(b) + eta [ -f(sigma(z~)) s(b) + d/dtheta f(sigma(z))
                              - d/dtheta f(sigma(z~)) ]

    with s the score of b.  The bracket has mean zero for every eta and
    temperature, so g is unbiased.

    Parameters
    ----------
    f, grad_f : callables on points x of shape ``(m, *batch_shape)``
        (Bernoulli: 0/1 and relaxed values in (0, 1)) or ``(m, *batch_shape,
        K)`` (Categorical: one-hot vectors and points of the simplex); f must
        accept both the discrete and the relaxed points.
    dist : Bernoulli or Categorical (probs or logits)
    n : int >= 2
    temperature : float > 0, "auto" or "gradient"
        "auto" picks the temperature from a grid (``TEMPERATURE_GRID``) by
        the measured per-draw variance of a pilot run of ``n_pilot`` draws
        (default min(n, 4096)) on streams independent of the main run, so
        the estimate stays unbiased.  "gradient" tunes it by gradient
        descent on the variance (``mcscore.relax.tune_rebar``, from 0.5, on
        the same independent pilot draws in batches of 256).
    eta : float or "optimal"
        "optimal" (default): per coordinate the variance-minimising eta,
        cross-fitted across streams (unbiased).
    baseline : None or "optimal"
        "optimal" also subtracts a constant baseline from f(b) in the score
        term, fitted jointly with eta (cross-fitted, unbiased).  The relaxed
        control variate alone removes little variance when f(b) has a large
        mean relative to its spread (the one-coordinate toy problem); the
        baseline takes that part.
    rng, n_threads, chunk_size, n_streams, block_size, client : as in ``score_grad``
        (``client``: on Dask, bit-identical to the local run).

    Returns
    -------
    GradientEstimate (method "rebar"); ``info["eta"]`` holds the mean fitted
    eta per coordinate and ``info["temperature"]`` the temperature used.
    Each draw costs 3 evaluations of f and 2 of grad_f.

    Raises
    ------
    TypeError
        ``grad_f`` missing.
    ValueError
        A family other than Bernoulli / Categorical, a temperature that is not
        positive and finite (or an unknown mode), or f / grad_f returning the
        wrong shape or non-finite values.

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> logits = np.array([-0.5, 0.5])
    >>> res = mc.rebar_grad(lambda b: b.sum(axis=-1) ** 2, mc.Bernoulli(logits=logits), 1000,
    ...                     grad_f=lambda b: 2 * b.sum(axis=-1, keepdims=True) * np.ones_like(b),
    ...                     rng=0)
    >>> p = 1 / (1 + np.exp(-logits))                 # E[(b0 + b1)^2] = p0 + p1 + 2 p0 p1
    >>> exact = p * (1 - p) * (1 + 2 * p[::-1])
    >>> bool(np.all(np.abs(res.grad["logits"] - exact) < 5 * res.stderr["logits"]))
    True
    """
    base, W, kk, th, pr, conv, cv, cvs = _discrete_setup(dist, "rebar_grad")
    f = E.check_callable("f", f)
    grad_f = E.check_callable("grad_f", grad_f)
    eta = _check_eta(eta)
    if baseline not in (None, "optimal"):
        raise ValueError(f"baseline must be None or 'optimal' for rebar_grad, got {baseline!r}")
    add_score = baseline == "optimal"
    plan = E.Plan(n, W, rng, n_streams, block_size, n_threads)
    info = {"f": "python", "baseline": baseline}
    if isinstance(temperature, str) and temperature in ("auto", "gradient"):
        n_pilot = min(plan.n, 4096) if n_pilot is None else V.integer("n_pilot", n_pilot,
                                                                       minimum=16)
        root = plan.root
        # a child key no stream of the main run uses: independent draws
        pilot_seed = np.random.SeedSequence(root.entropy, pool_size=root.pool_size,
                                            spawn_key=tuple(root.spawn_key) + (2**40,))
    if isinstance(temperature, str) and temperature == "gradient":
        # gradient descent on the variance (REBAR paper): n_pilot draws in
        # batches of 256 on the independent pilot seed
        assert n_pilot is not None
        steps = max(1, n_pilot // 256)
        tuned = tune_rebar(f, base, grad_f=grad_f, steps=steps, batch=min(256, n_pilot),
                           rng=pilot_seed)
        lam = tuned["temperature"]
        info["tuning_loss"] = tuned["loss"]
    elif isinstance(temperature, str) and temperature == "auto":
        best = None
        for lam in TEMPERATURE_GRID:
            pp = E.Plan(n_pilot, W, pilot_seed, plan.n_streams, block_size, n_threads)
            r = _rebar_run(f, grad_f, base, W, kk, th, pr, conv, cv, cvs, lam, eta, pp,
                           chunk_size, add_score, client, n_threads)
            score = float(r[2].sum())
            if best is None or score < best[0]:
                best = (score, lam)
        assert best is not None
        lam = best[1]
    else:
        lam = V.positive_real("temperature", temperature)
    grand, se, var, value, vse, vvar, nn, w = est = _rebar_run(
        f, grad_f, base, W, kk, th, pr, conv, cv, cvs, lam, eta, plan, chunk_size, add_score,
        client, n_threads)
    info.update({"temperature": lam, "eta": base._split_coords(w[..., 1].mean(0))})
    return E.gradient_estimate(base, grand, se, var, value, vse, vvar, nn, "rebar",
                               {**plan.info(), **info}, batch=est.batch)


def disarm_grad(f: Callable[..., Any], dist: Distribution | RelaxedBernoulli, n: int, *,
                rng: Any = None, n_threads: int | None = None, chunk_size: int | None = None,
                n_streams: int = E.DEFAULT_STREAMS, block_size: int | None = None,
                client: Any = None) -> GradientEstimate:
    """DisARM (Dong, Mnih & Tucker 2020) for Bernoulli: unbiased, needs only
    f (no gradient, no relaxation).

    Each sample is an antithetic pair b = [u < p], b~ = [1 - u < p] (u
    uniform per coordinate) and ::

        g_c = 1/2 (f(b) - f(b~)) (-1)^{b~_c} [b_c != b~_c] sigmoid(|logit_c|)

    (times d logit / d p for probs).  ``n`` is the number of pairs: f is
    evaluated 2n times.

    Parameters
    ----------
    f : callable, ``f(b)`` with b of shape ``(m, *batch_shape)`` (0/1 floats)
    dist : Bernoulli
    rng, n_threads, chunk_size, n_streams, block_size, client : as in ``score_grad``
        (``client``: on Dask, bit-identical to the local run).

    Returns
    -------
    GradientEstimate
        Method ``"disarm"``; ``n`` pairs.

    Raises
    ------
    ValueError
        A family other than Bernoulli, or f returning the wrong shape or a
        non-finite value.

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> q = mc.Bernoulli(probs=np.array([0.3, 0.6]))
    >>> f = lambda b: ((b - 0.45) ** 2).sum(axis=-1)     # d E[f] / d p = 0.1 per coordinate
    >>> res = mc.disarm_grad(f, q, 1000, rng=0)
    >>> bool(np.all(np.abs(res.grad["probs"] - 0.1) < 5 * res.stderr["probs"]))
    True
    """
    E.check_distribution(dist)
    base, W, kk, th, pr, conv, cv, cvs = _discrete_setup(dist, "disarm_grad",
                                                         "has_binary_relaxation")
    f = E.check_callable("f", f)
    plan = E.Plan(n, W, rng, n_streams, block_size, n_threads)
    job = DisarmJob(f, base, W, th, conv, cv)
    stats, shifts, _, mag = E.run(job, plan, chunk_size=chunk_size, client=client,
                                  n_threads=n_threads)
    grand, se, var, value, vse, vvar, nn, _ = est = E.estimate(
        base, stats, shifts, W, 1, [1.0], terms="(f(b) - f(b~)) / 2", mag=mag)
    return E.gradient_estimate(base, grand, se, var, value, vse, vvar, nn, "disarm",
                               {**plan.info(), "f": "python", "f_evals_per_sample": 2},
                               batch=est.batch)


class DisarmJob(_DiscreteJob):
    """Antithetic pairs (b, b~) of binary draws; f at both; the kernel's
    sums of the DisARM terms."""

    what = "disarm_grad"

    def __init__(self, f: Any, base: Any, W: int, th: Any, conv: Any, cv: Any) -> None:
        super().__init__(f, None, base, W, _vr.PREP_DISARM, th, 2)
        self.th, self.conv, self.cv = th, conv, cv

    def evaluate(self, rd: Any, buf: Any, chunk: Any, mag: Any) -> Any:
        F = self.padded("F", 2, rd)
        for k in range(2):
            F[k, rd.index] = mag.see(E.call_values(self.f, self.points(rd, buf, k), rd, chunk))
        return F, ()

    def accumulate(self, rd: Any, buf: Any, F: Any, threads: Any, stats: Any,
                   shifts: Any) -> None:
        _vr.acc_disarm(rd.blocks, rd.slots, rd.n, rd.B, rd.n_streams, threads, self.width,
                       self.th, self.conv, self.cv, buf[:len(rd.blocks)], F, stats, shifts)
