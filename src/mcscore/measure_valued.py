"""Measure-valued derivatives (weak derivatives): :func:`mvd_grad`.

For a parameter theta of one coordinate's density p(x; theta), the
derivative is written as a difference of two densities,

    d p(x; theta) / d theta = c_theta (p+(x) - p-(x)),

so that d E[f] / d theta = c_theta (E_{p+}[f] - E_{p-}[f]) (Pflug 1996;
Mohamed et al. 2019, "Monte Carlo gradient estimation in machine
learning", section 6).  Each coordinate's term costs two f evaluations:
f at the draw with that coordinate replaced by a draw of p+, and by a draw
of p-; the other coordinates come from one draw of the distribution.  With
``coupling=True`` the two replacement draws share their random numbers
(common random numbers), which is where the estimator's low variance comes
from; with ``coupling=False`` they (and the other coordinates) are drawn
independently.

The decompositions, per family and parameter: c_theta; p+; p- (the
coupled draw of p- in brackets):

* Normal loc: 1 / (scale sqrt(2 pi)); loc + scale R with R ~ Rayleigh(1)
  (= Weibull(2, sqrt 2)); loc - scale R (the same R).
* Normal scale: 1 / scale; loc + scale M with M double-sided Maxwell;
  Normal(loc, scale) (loc + scale M U, U ~ U(0, 1): M U ~ N(0, 1)).
* LogNormal loc, scale: as Normal, on log x.
* Exponential rate: 1 / rate; Exp(rate) = E1 / rate; Gamma(2, rate)
  ((E1 + E2) / rate).
* Gamma rate: concentration / rate; Gamma(a, rate) = G / rate;
  Gamma(a + 1, rate) ((G + E) / rate).
* Poisson rate: 1; N + 1 with N ~ Poisson(rate); Poisson(rate) (N).
* Bernoulli probs: 1; 1; 0.  Bernoulli logits: p (1 - p); 1; 0.
* Categorical logits_j: pi_j (1 - pi_j); j; pi conditioned on != j.
  Categorical (unnormalised) probs_j: (1 - pi_j) / sum(v); j; the same.

Derivations (the weights are the Hahn-Jordan decomposition where noted):

* Normal loc: dp/dloc = p(x) (x - loc) / scale^2, positive for x > loc;
  its positive part integrates to 1 / (scale sqrt(2 pi)) and, normalised,
  is the law of loc + scale R with R of density t exp(-t^2/2) (Rayleigh).
* Normal scale: dp/dscale = (1/scale) (z^2 phi(z) - phi(z)) / scale: z^2
  phi(z) is the double-sided Maxwell density (it integrates to E[z^2] = 1).
  If M is Maxwell and U uniform, M U has density int_{|v|}^inf phi(m) m dm
  = phi(v): the standard normal, which couples the two parts.
* Exponential: dp/drate = e^(-rate x) - rate x e^(-rate x) = (1/rate)
  (Exp(rate) - Gamma(2, rate) densities).
* Gamma rate: dp/drate = p (a / rate - x) = (a / rate) (p - (rate / a) x p),
  and (rate / a) x p is the Gamma(a + 1, rate) density.  The concentration
  has no such decomposition here (a ValueError names it; estimate it with
  ``wrt=`` leaving it out, or with score_grad / pathwise_grad).
* Poisson: dP(k)/drate = P(k - 1) - P(k).
* Bernoulli: dP(x)/dp = [x = 1] - [x = 0]; for logits times dp/dlogit = p q.
* Categorical: d pi_k / d logit_j = pi_j ([k = j] - pi_k) = pi_j (1 - pi_j)
  ([k = j] - pi_k [k != j] / (1 - pi_j)) (the Hahn-Jordan split); for
  unnormalised probs v, d pi_k / d v_j = ([k = j] - pi_k) / sum(v).

The per-draw term of a coordinate is c_theta (f(x+) - f(x-)), its average the
estimate; per-stream sums, Dask, seeding and standard errors are the
engine's (``mcscore._features``).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from . import _engine as E
from . import _validation as V
from ._features import FeatureJob, run_features
from .distributions import (Bernoulli, Categorical, Exponential, Gamma, LogNormal, Normal,
                            Poisson, index_map)
from .result import GradientEstimate

if TYPE_CHECKING:
    from .distributions import Distribution

__all__ = ["mvd_grad", "MVD_FAMILIES"]

MVD_FAMILIES = ("Normal", "LogNormal", "Exponential", "Gamma (rate)", "Poisson", "Bernoulli",
                "Categorical")

_SQRT2 = math.sqrt(2.0)
_CANCEL = "c (|f(x+)| + |f(x-)|)"
_ROUNDING = 4 * np.finfo(float).eps


def _b(dist: Any, v: Any) -> Any:
    """A parameter broadcast to the draw coordinates, flat."""
    return np.broadcast_to(np.asarray(v, float), dist.draw_shape).ravel()


# ---------------------------------------------------------------------------
# the decompositions: per family, its base draw and each parameter's
# (c, pair sampler) on the draw coordinates
# ---------------------------------------------------------------------------

class _Family:
    """The measure-valued decomposition of a univariate family: every
    parameter element reaches the draw coordinates it broadcasts onto."""

    def __init__(self, dist: Any) -> None:
        self.dist = dist
        self.D = dist.draw_size

    def weight(self, name: str) -> Any:
        raise NotImplementedError

    def terms(self, wrt: Any) -> Any:
        """(coordinate q, draw column col, c) of every term, and the
        parameter of each, for the parameters in wrt."""
        dist = self.dist
        q, col, c, which = [], [], [], []
        for name, (sl, pshape) in dist._coord_slices.items():
            if name not in wrt:
                continue
            q.append(sl.start + index_map(pshape, dist.draw_shape))
            col.append(np.arange(self.D))
            c.append(self.weight(name))
            which += [name] * self.D
        return np.concatenate(q), np.concatenate(col), np.concatenate(c), which


class _Normal(_Family):
    def __init__(self, dist: Any) -> None:
        super().__init__(dist)
        self.mu, self.s = _b(dist, dist.loc), _b(dist, dist.scale)
        self.log = isinstance(dist, LogNormal)

    def weight(self, name: str) -> Any:
        return 1.0 / (self.s * math.sqrt(2 * math.pi)) if name == "loc" else 1.0 / self.s

    def out(self, z: Any) -> Any:
        return np.exp(z) if self.log else z

    def base(self, gen: Any, m: int) -> Any:
        return self.out(self.mu + self.s * gen.standard_normal((m, self.D)))

    def pair(self, gen: Any, m: int, name: str, coupling: bool) -> Any:
        mu, s = self.mu, self.s
        if name == "loc":
            r = gen.weibull(2.0, (m, self.D)) * _SQRT2
            r2 = r if coupling else gen.weibull(2.0, (m, self.D)) * _SQRT2
            return self.out(mu + s * r), self.out(mu - s * r2)
        sign = np.where(gen.random((m, self.D)) < 0.5, -1.0, 1.0)
        mx = sign * np.sqrt(gen.chisquare(3.0, (m, self.D)))
        other = mx * gen.random((m, self.D)) if coupling else gen.standard_normal((m, self.D))
        return self.out(mu + s * mx), self.out(mu + s * other)


class _Exponential(_Family):
    def __init__(self, dist: Any) -> None:
        super().__init__(dist)
        self.rate = _b(dist, dist.rate)

    def weight(self, name: str) -> Any:
        return 1.0 / self.rate

    def base(self, gen: Any, m: int) -> Any:
        return gen.standard_exponential((m, self.D)) / self.rate

    def pair(self, gen: Any, m: int, name: str, coupling: bool) -> Any:
        e1 = gen.standard_exponential((m, self.D))
        minus = (e1 + gen.standard_exponential((m, self.D)) if coupling
                 else gen.standard_gamma(2.0, (m, self.D)))
        return e1 / self.rate, minus / self.rate


class _Gamma(_Family):
    def __init__(self, dist: Any) -> None:
        super().__init__(dist)
        self.a, self.rate = _b(dist, dist.concentration), _b(dist, dist.rate)

    def weight(self, name: str) -> Any:
        if name != "rate":
            raise ValueError(
                "mvd_grad: Gamma's concentration has no measure-valued decomposition here (only "
                "the rate: Gamma(a, rate) - Gamma(a + 1, rate)); pass wrt=['rate'], or use "
                "score_grad / pathwise_grad for the concentration")
        return self.a / self.rate

    def base(self, gen: Any, m: int) -> Any:
        return gen.standard_gamma(self.a, (m, self.D)) / self.rate

    def pair(self, gen: Any, m: int, name: str, coupling: bool) -> Any:
        g = gen.standard_gamma(self.a, (m, self.D))
        minus = (g + gen.standard_exponential((m, self.D)) if coupling
                 else gen.standard_gamma(self.a + 1.0, (m, self.D)))
        return g / self.rate, minus / self.rate


class _Poisson(_Family):
    def __init__(self, dist: Any) -> None:
        super().__init__(dist)
        self.rate = _b(dist, dist.rate)

    def weight(self, name: str) -> Any:
        return np.ones(self.D)

    def base(self, gen: Any, m: int) -> Any:
        return gen.poisson(self.rate, (m, self.D)).astype(float)

    def pair(self, gen: Any, m: int, name: str, coupling: bool) -> Any:
        k = gen.poisson(self.rate, (m, self.D)).astype(float)
        minus = k if coupling else gen.poisson(self.rate, (m, self.D)).astype(float)
        return k + 1.0, minus


class _Bernoulli(_Family):
    def __init__(self, dist: Any) -> None:
        super().__init__(dist)
        p, q = dist._pq()
        self.p, self.q = _b(dist, p), _b(dist, q)

    def weight(self, name: str) -> Any:
        return self.p * self.q if name == "logits" else np.ones(self.D)

    def base(self, gen: Any, m: int) -> Any:
        return (gen.random((m, self.D)) < self.p).astype(float)

    def pair(self, gen: Any, m: int, name: str, coupling: bool) -> Any:
        return np.ones((m, self.D)), np.zeros((m, self.D))


class _Categorical(_Family):
    """Categorical: the terms are (unit u, category j): x_u+ = j and x_u- a
    draw of pi_u conditioned on != j (by inversion of one uniform)."""

    def __init__(self, dist: Any) -> None:
        self.dist = dist
        self.K = K = dist.n_categories
        self.D = dist.draw_size
        self.pi = dist.probs.reshape(self.D, K)
        self.cum = np.cumsum(self.pi, -1)
        drop = self.pi[:, None, :] * (1 - np.eye(K))[None]  # (u, j, k): pi_k [k != j]
        self.cum_drop = np.cumsum(drop, -1)

    def terms(self, wrt: Any) -> Any:
        name = self.dist._which
        K, D = self.K, self.D
        pj = self.pi.ravel()
        if name == "logits":
            c = pj * (1 - pj)
        else:
            v = self.dist._params["probs"].reshape(D, K)
            c = ((1 - self.pi) / v.sum(-1, keepdims=True)).ravel()
        qq = np.arange(D * K)
        return qq, qq // K, c, [name] * (D * K)

    def base(self, gen: Any, m: int) -> Any:
        u = gen.random((m, self.D))
        return np.minimum((u[..., None] >= self.cum).sum(-1), self.K - 1).astype(float)

    def pair(self, gen: Any, m: int, name: str, coupling: bool) -> Any:
        D, K = self.D, self.K
        plus = np.broadcast_to(np.tile(np.arange(K, dtype=float), D), (m, D * K))
        u = gen.random((m, D, K)) * self.cum_drop[None, :, :, -1]
        minus = (u[..., None] >= self.cum_drop[None]).sum(-1)
        # a category j of probability 1 has no other: its term has c = 0
        minus = np.where(self.cum_drop[None, :, :, -1] > 0, np.minimum(minus, K - 1),
                         np.arange(K)[None, None, :])
        return plus, minus.reshape(m, D * K).astype(float)


_FAMILY_OF = ((LogNormal, _Normal), (Normal, _Normal), (Exponential, _Exponential),
              (Gamma, _Gamma), (Poisson, _Poisson), (Bernoulli, _Bernoulli),
              (Categorical, _Categorical))


def _family(dist: Any) -> Any:
    for cls, fam in _FAMILY_OF:
        if type(dist) is cls:
            return fam(dist)
    raise ValueError(f"mvd_grad supports {', '.join(MVD_FAMILIES)}; got {type(dist).__name__}")


# ---------------------------------------------------------------------------
# the job
# ---------------------------------------------------------------------------

class MvdJob(FeatureJob):
    """Per draw: a base draw of the distribution (and, without coupling, a
    second one for the negative parts), and for each term (coordinate q,
    column col) a pair (x+, x-) of replacement values; features
    c (f(x with x_col = x+) - f(x with x_col = x-)) summed into coordinate q."""

    def __init__(self, f: Any, dist: Any, wrt: Any, coupling: bool, value: bool) -> None:
        self.f, self.dist, self.coupling, self.value = f, dist, coupling, value
        self.fam = _family(dist)
        self.q, self.col, self.c, which = self.fam.terms(wrt)
        self.names = sorted(set(which), key=which.index)
        self.which = np.array([self.names.index(w) for w in which])
        self.P = sum(dist._coord_slices[k][0].stop - dist._coord_slices[k][0].start
                     for k in dist._coord_slices)
        self.L = 1
        self.width = max(1, len(self.q))

    def sample(self, gen: Any, m: int) -> dict[str, Any]:
        fam = self.fam
        mat = {"x": fam.base(gen, m)}
        if not self.coupling:
            mat["x2"] = fam.base(gen, m)
        plus, minus = [], []
        for name in self.names:
            xp, xm = fam.pair(gen, m, name, self.coupling)
            plus.append(xp)
            minus.append(xm)
        mat["plus"] = np.concatenate(plus, 1)
        mat["minus"] = np.concatenate(minus, 1)
        return mat

    def _f(self, x: Any, rd: Any, chunk: Any, mag: Any) -> Any:
        dist = self.dist
        xu = dist._to_user_dtype(x.reshape((len(x),) + dist.draw_shape))
        return mag.see(E.call_values(self.f, xu, rd, chunk))

    def features(self, mat: Any, rd: Any, chunk: Any, mag: Any) -> Any:
        x = mat["x"]
        x2 = mat.get("x2", x)
        m = len(x)
        Z = np.zeros((m, self.P, 1))
        v = self._f(x, rd, chunk, mag) if self.value else np.zeros(m)
        xp, xm = x.copy(), x2.copy()
        for t in range(len(self.q)):
            c = int(self.col[t])
            xp[:, c] = mat["plus"][:, t]
            xm[:, c] = mat["minus"][:, t]
            fp, fm = self._f(xp, rd, chunk, mag), self._f(xm, rd, chunk, mag)
            Z[:, self.q[t], 0] += self.c[t] * (fp - fm)
            # the difference's rounding error is relative to |f|, not to it
            mag.see(abs(self.c[t]) * (np.abs(fp) + np.abs(fm)), _CANCEL)
            xp[:, c] = x[:, c]
            xm[:, c] = x2[:, c]
        return v, Z


def mvd_grad(f: Callable[..., Any], dist: Distribution, n: int, *, coupling: bool = True,
             wrt: Sequence[str] | None = None, value: bool = False, rng: Any = None,
             n_threads: int | None = None, chunk_size: int | None = None,
             n_streams: int = E.DEFAULT_STREAMS, block_size: int | None = None,
             client: Any = None) -> GradientEstimate:
    """Measure-valued (weak-derivative) estimate of grad_theta E_{x ~ dist}[f(x)].

    Parameters
    ----------
    f : vectorised Python callable, as in ``score_grad`` (x of shape
        ``(m, *dist.draw_shape)``; Categorical draws are integer indices).
        f need not be differentiable, nor even continuous.
    dist : Normal, LogNormal, Exponential, Gamma (rate only), Poisson,
        Bernoulli or Categorical (any batch shape; parameters may broadcast).
    n : int >= 2, samples (each costs 2 f evaluations per term: per
        parameter element and draw coordinate it reaches).
    coupling : bool
        Common random numbers between the positive and negative parts
        (see the table in the module docstring); False draws them, and the
        other coordinates, independently.
    wrt : list of parameter names, optional
        The parameters to differentiate (default all); the result's dicts
        hold these only.
    value : bool
        Also estimate E[f] from f at the base draw (one more f evaluation
        per sample); otherwise ``value`` and ``value_stderr`` are NaN.
    rng, n_threads, chunk_size, n_streams, block_size, client : as in
        ``score_grad``: the result is a function of (f, dist, n, rng,
        n_streams, block_size), bit-identical for any n_threads and on Dask.

    Returns
    -------
    GradientEstimate (method "mvd" / "mvd(uncoupled)"); ``variance`` is per
    sample; ``info["f_evals_per_sample"]`` is the f evaluations per sample.

    Raises
    ------
    ValueError
        A family without a measure-valued derivative here (the list above),
        an unknown ``wrt``, or f returning the wrong shape or a non-finite
        value.

    Examples
    --------
    >>> import mcscore as mc
    >>> q = mc.Poisson(rate=3.0)
    >>> res = mc.mvd_grad(lambda x: x ** 2, q, 1000, rng=0)   # d (rate + rate^2) / d rate = 7
    >>> bool(abs(res.grad["rate"] - 7.0) < 5 * res.stderr["rate"])
    True
    """
    E.check_distribution(dist)
    f = E.check_callable("f", f)
    if not isinstance(coupling, (bool, np.bool_)):
        raise TypeError(f"coupling must be True or False, got {coupling!r}")
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"value must be True or False, got {value!r}")
    dist._kernel_dist()
    names = list(dist._coord_slices)
    if wrt is None:
        wrt = names
    else:
        if isinstance(wrt, str):
            wrt = [wrt]
        bad = [w for w in wrt if w not in names]
        if bad or not wrt:
            raise ValueError(f"wrt must name parameters of {dist!r} ({names}); got {list(wrt)}")
    E.check_differentiable(dist)
    job = MvdJob(f, dist, set(wrt), bool(coupling), bool(value))
    n = V.integer("n", n, minimum=2, maximum=2**62)
    est, plan, mag = run_features(job, dist, n, rng=rng, n_streams=n_streams, block_size=block_size,
                             n_threads=n_threads, chunk_size=chunk_size, client=client,
                             terms="c * (f(x+) - f(x-))")
    grand, se, var, value_, vse, vvar, nn, _ = est
    # standard errors floored at the rounding error of c (f(x+) - f(x-)),
    # which cancels when f(x+) and f(x-) are close (an exact estimator)
    floor = _ROUNDING * mag.seen.get(_CANCEL, 0.0)
    low = se < floor
    if low.any():
        se = np.where(low, floor, se)
        var = np.where(low, floor * floor * nn, var)
    evals = 2 * len(job.q) + (1 if value else 0)
    info = {**plan.info(), "f": "python", "coupling": bool(coupling),
            "f_evals_per_sample": evals, "f_evals": evals * nn}
    keep = np.zeros(job.P, bool)
    for k in wrt:
        keep[dist._coord_slices[k][0]] = True
    batch = est.batch
    if not keep.all() and batch is not None:  # the covariance of the coordinates kept
        count, means = batch() if callable(batch) else batch
        batch = (count, np.asarray(means).reshape(len(count), -1)[:, keep])
    res = E.gradient_estimate(dist, grand, se, var, value_, vse, vvar, nn,
                              "mvd" if coupling else "mvd(uncoupled)", info, batch=batch)
    for d in (res.grad, res.stderr, res.variance):
        for k in [k for k in d if k not in wrt]:
            del d[k]
    if not value:
        res.value = res.value_stderr = res.value_variance = float("nan")
    return res
