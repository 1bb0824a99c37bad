"""Estimators that compete with the score function, and variance reduction.

* control variates and antithetic draws for :func:`mcscore.score_grad`
  (``control_variates=``, ``antithetic=``; implemented here);
* :func:`pathwise_grad` -- the reparameterisation estimator (Normal,
  LogNormal, Exponential, and Gamma / Beta / Dirichlet by implicit
  reparameterisation);
* :func:`relaxed_grad` -- Gumbel-softmax / Concrete relaxations (biased);
* :func:`rebar_grad` -- REBAR, unbiased, with the relaxed control variate;
* :func:`disarm_grad` -- DisARM for Bernoulli (no gradient of f needed);
* :func:`rloo_grad` -- the leave-one-out score estimator with k draws per
  point;
* :func:`compare_estimators` -- all applicable estimators on one problem.

Every function returns a :class:`~mcscore.GradientEstimate` and uses the
core's stream/block plan: block b of the draws belongs to stream
``b % n_streams``, each stream has its own PCG64 spawned from the call's
seed and walks its blocks in order, so a result is bit-identical for any
``n_threads``.  Per round of blocks the kernels of ``mcscore._vr`` draw
(and build relaxed / conditional / antithetic points), Python calls f and
grad_f on chunks, and the kernels accumulate per-stream Gram statistics of
the estimator's per-draw terms and control variates.  Coefficients that are
fitted (control-variate coefficients, REBAR's eta) are *cross-fitted*: the
coefficient used on a stream's draws is fitted on the other streams' draws,
so the estimate stays unbiased.

Every estimator goes through the same guarded algebra (``_estimate``):

* **offsets**: f's values (and a control variate's) are shifted per stream
  by a constant c before the kernels form the per-draw terms (when f's first
  value on the stream is more than ``OFFSET_RATIO`` times its spread on that
  block away from 0; otherwise f is used as it is, so offset-free inputs
  give the same numbers as before).  A term f * s is accumulated as
  (f - c) * s next to the score s itself, and c * s is added back exactly in
  the algebra after rebasing all streams to one constant, as the core does
  for ``score_grad``: estimates and standard errors stay right for
  |E f| / sd(f) up to about 1e12.
* **range**: a stream statistic that is infinite or NaN raises
  FloatingPointError naming the cause (a score or tangent at an edge draw,
  or f too large); an estimate or standard error that overflowed or
  underflowed raises as in ``score_grad`` (never NaN, never a zero standard
  error for a non-zero estimate).
* **floor**: a standard error is at least the rounding error of the
  estimate, 4 eps times the sum over features of |coefficient| x the root
  mean square of the feature in f's own units (so f's own rounding at an
  offset counts); it only matters when the terms cancel to rounding level
  (a control variate equal to f, a one-coordinate REBAR with a baseline).
"""
from __future__ import annotations

import math
import numbers
import os
import time

import numpy as np

from . import _kernels as K
from . import _validation as V
from . import _vr
from . import estimator as E
from .distributions import (
    Bernoulli, Beta, Categorical, Dirichlet, Distribution, Exponential, Gamma, LogNormal,
    Normal, Poisson, _index_map,
)

__all__ = [
    "pathwise_grad", "relaxed_grad", "rebar_grad", "disarm_grad", "rloo_grad",
    "compare_estimators", "Comparison",
]

PATHWISE_FAMILIES = (Normal, LogNormal, Exponential, Gamma, Beta, Dirichlet)
ANTITHETIC_FAMILIES = (Normal, LogNormal)


# ---------------------------------------------------------------------------
# the shared round driver
# ---------------------------------------------------------------------------

def _vr_dist(dist):
    """The core's draw parameters of `dist` as a _vr.VrDist."""
    units = int(np.prod(dist.batch_shape, dtype=np.int64))
    if isinstance(dist, Categorical):
        kk = dist.n_categories
        q, al = K.alias_table(np.ascontiguousarray(dist.probs.reshape(units, kk)))
        return _vr.VrDist(dist.family, units, kk, units, np.zeros(units), np.zeros(units),
                          q.ravel(), al.ravel())
    p0, p1 = dist._draw_params()
    return _vr.VrDist(dist.family, units, dist._n_cat(), dist.draw_size, np.ravel(p0),
                      np.ravel(p1), np.zeros(0), np.zeros(0, np.int64))


class _Round:
    """One round of blocks: indices, row counts and gather/scatter helpers."""

    def __init__(self, plan, r0, R):
        self.B = plan.block_size
        self.blocks = np.arange(r0, min(plan.n_blocks, r0 + R), dtype=np.int64)
        self.slots = self.blocks % plan.n_streams
        self.rows = [plan.block_rows(int(b)) for b in self.blocks]
        self.total = sum(self.rows)
        self.first = int(self.blocks[0]) * self.B
        self.index = np.concatenate([r * self.B + np.arange(m) for r, m in enumerate(self.rows)])

    def gather(self, buf, W, region=0):
        """(total, W) array of region `region` (W * m doubles) of each block."""
        out = np.empty((self.total, W))
        o = 0
        for r, m in enumerate(self.rows):
            out[o: o + m] = buf[r, region * W * m: (region + 1) * W * m].reshape(W, m).T
            o += m
        return out

    def scatter(self, values, width=None):
        """Values of the round's draws (total,) or (total, W) -> padded
        (R * B,) / (R * B, W) arrays indexed by r * B + i."""
        R = len(self.blocks)
        if values.ndim == 1:
            out = np.zeros(R * self.B)
        else:
            out = np.zeros((R * self.B, values.shape[1]))
        out[self.index] = values
        return out


def _chunk(chunk_size, B, ds):
    if chunk_size is None:
        chunk_size = max(B, (1 << 18) // max(1, ds))
    return V.integer("chunk_size", chunk_size, minimum=1)


def _rounds(plan, chunk_size, ds):
    B = plan.block_size
    chunk = _chunk(chunk_size, B, ds)
    R = min(plan.n_streams, plan.n_blocks, max(plan.threads, -(-chunk // B)))
    for r0 in range(0, plan.n_blocks, R):
        yield _Round(plan, r0, R), chunk


def _call_values(fn, x, first, chunk, name="f"):
    out = np.empty(len(x))
    for c0 in range(0, len(x), chunk):
        xc = x[c0: c0 + chunk]
        try:
            out[c0: c0 + len(xc)] = E._call_f(fn, xc, first + c0)
        except (ValueError, TypeError) as exc:
            if name != "f":
                msg = str(exc).replace("f returned", f"{name} returned", 1)
                raise type(exc)(msg.replace("; f must", f"; {name} must", 1)) from None
            raise
    return out


def _call_grad(grad_f, x, first, chunk, name="grad_f"):
    """grad_f on chunks; checks shape (m, *x.shape[1:]) and finiteness."""
    m = len(x)
    ds = int(np.prod(x.shape[1:], dtype=np.int64))
    out = np.empty((m, ds))
    for c0 in range(0, m, chunk):
        xc = x[c0: c0 + chunk]
        g = grad_f(xc)
        if g is None:
            raise TypeError(f"{name} returned None; it must return an array shaped like x")
        g = np.asarray(g)
        if g.dtype.kind not in "biuf":
            raise TypeError(f"{name} returned dtype {g.dtype}; it must return real numbers")
        if g.shape != xc.shape:
            raise ValueError(f"{name} returned shape {g.shape} instead of {xc.shape} (the shape "
                             f"of its input x)")
        g = g.reshape(len(xc), ds).astype(np.float64)
        bad = ~np.isfinite(g)
        if bad.any():
            i = int(np.argmax(bad.any(axis=1)))
            raise ValueError(f"{name} returned a non-finite value at draw {first + c0 + i}; "
                             f"{name} must be finite")
        out[c0: c0 + len(xc)] = g
    return out


# ---------------------------------------------------------------------------
# estimator algebra on Gram statistics
# ---------------------------------------------------------------------------

# f's values are shifted by a per-stream constant when f's first value on a
# stream is more than this many times its spread on the stream's first block
# away from 0 (see _Offsets.shift); below it f is used as it is.
OFFSET_RATIO = 16.0
# Standard errors are floored at the rounding error of the estimate: this
# many units of double rounding times the magnitude of the per-draw terms
# (sum over features of |coefficient| x root mean square of the feature, in
# f's own units), so a cancellation to rounding level (a control variate
# equal to f, a baseline that makes every term equal) does not report a
# standard error far below the estimate's own rounding error.
_ROUNDING = 4 * np.finfo(float).eps
# |f| (or |grad_f|) from which a non-finite per-draw term is blamed on its size
_HUGE = 1e150


class _Mag:
    """The largest |value| of f and grad_f an estimator saw: error messages
    tell an overflow of f's size from an infinite score at an edge draw."""

    def __init__(self):
        self.seen = {}

    def see(self, a, name="f"):
        if a.size:
            with np.errstate(invalid="ignore"):
                m = float(np.max(np.abs(a)))
            self.seen[name] = max(self.seen.get(name, 0.0), m)
        return a

    @property
    def max(self):
        return max(self.seen.values(), default=0.0)

    def describe(self):
        return ", ".join(f"|{k}| reaches {v:.3g}" for k, v in self.seen.items())


def _check_stats(dist, stats, shifts, P, L, terms, mag):
    """FloatingPointError naming the cause when a stream's Gram statistics
    are not finite (before any algebra turns them into a NaN estimate)."""
    if np.isfinite(stats).all() and np.isfinite(shifts).all():
        return
    W = L + L * (L + 1) // 2
    first = stats[:, 3:].reshape(len(stats), P, W)[..., :L]
    big = mag is not None and mag.max > _HUGE
    size = mag.describe() if mag is not None else ""
    if not (np.isfinite(first).all() and np.isfinite(shifts[:, 1:]).all()):
        if big:
            raise FloatingPointError(
                f"the per-draw terms ({terms}) overflowed for {dist!r}: {size}; rescale f "
                "(divide it by a constant and multiply the estimate by it)")
        raise FloatingPointError(
            f"a per-draw term ({terms}) was infinite or NaN for {dist!r} although "
            f"{size or 'f is finite'}: a score or reparameterisation tangent overflowed at a "
            "draw on the edge of the support (e.g. a Gamma, Beta or Dirichlet draw that "
            "rounded to 0 or 1 for a tiny concentration); the estimate would be NaN")
    raise FloatingPointError(
        f"the estimator's sums of squares overflowed for {dist!r}: f or {terms} is too large "
        f"for double precision ({size or 'f is huge'}), so the standard errors would be "
        "inf or NaN; rescale f (divide it by a constant and multiply the estimate by it)")


def _estimate(dist, stats, shifts, P, L, coef, *, mu=None, offsets=None, terms="f * score",
              mag=None):
    """The guarded estimator algebra every estimator goes through:
    _gram_estimate on the streams' statistics, after a check that they are
    finite, with the standard errors floored at rounding level, and the
    core's range check (FloatingPointError rather than an overflowed or
    underflowed estimate or standard error)."""
    _check_stats(dist, stats, shifts, P, L, terms, mag)
    with np.errstate(over="ignore", invalid="ignore", under="ignore", divide="ignore"):
        grand, se, var, value, vse, vvar, n, w = _gram_estimate(stats, shifts, P, L, coef, mu,
                                                                offsets)
        vms = float(stats[:, 2].sum()) / n
        vm = abs(float(stats[:, 1].sum())) / n
    E._check_range(dist, grand, var, value, vvar,
                   vms < E._TINY_MEAN_SQUARE and vm > E._RESOLUTION, terms=terms)
    return grand, se, var, value, vse, vvar, n, w


class _Offsets:
    """The per-stream constants c[s, row] subtracted from the rows of f's
    values (f, and each control variate) before they reach the kernels
    (``shift``), and how they enter the features.

    Features of the form f * s are accumulated as (f - c) * s, the constant's
    part c * s being added back in the algebra (_gram_estimate):
    z_l(true) = z_l + D[s, l] z_carrier with D = c @ mult.T, where column
    ``carrier`` holds the score s itself.  c[:, 0] is also added back to the
    values of f behind E[f].  Without ``mult`` the features do not depend on
    the constants (leave-one-out differences) and only E[f] uses them."""

    def __init__(self, plan, rows, carrier=None, mult=None):
        self.c = np.zeros((plan.used, rows))
        self.n_streams = plan.n_streams
        self.carrier = carrier
        self.mult = mult  # (L, rows): D[s] = mult @ c[s]

    def shift(self, rd, arrays):
        """Subtract each stream's constants from rows 0..rows-1 of every
        array (J, R * B) of the round, in place.  A stream's constant for row
        l is set on its first block: f's first value there when that value
        is more than OFFSET_RATIO times the block's spread of f away from 0
        (an offset), else 0 (f is used as it is)."""
        B = rd.B
        rows = self.c.shape[1]
        for r, m in enumerate(rd.rows):
            s = int(rd.slots[r])
            sl = slice(r * B, r * B + m)
            if rd.blocks[r] < self.n_streams:
                for row in range(rows):
                    v = arrays[0][row, sl]
                    with np.errstate(over="ignore", invalid="ignore"):
                        spread = float(v.max() - v.min())
                    self.c[s, row] = v[0] if abs(v[0]) > OFFSET_RATIO * spread else 0.0
            c = self.c[s]
            if c.any():
                for a in arrays:
                    a[:rows, sl] -= c[:, None]

    def dshift(self):
        return None if self.mult is None else self.c @ np.asarray(self.mult, float).T


def _rebase(mean, scat, delta, car):
    """Features z_l + delta_l z_car (delta (S, L) or (L,)): their per-stream
    means (S, P, L) and scatter matrices (S, P, L, L)."""
    d = np.broadcast_to(delta, mean.shape[:1] + mean.shape[-1:])[:, None, :]
    col = scat[..., :, car]
    mean = mean + d * mean[..., car:car + 1]
    scat = (scat + d[..., :, None] * col[..., None, :] + col[..., :, None] * d[..., None, :]
            + d[..., :, None] * d[..., None, :] * scat[..., car, car][..., None, None])
    return mean, scat


def _fit(scat, coef, fit, S):
    """Cross-fitted coefficients (S, P, L): the fixed ones from coef, the
    fitted ones (mask fit) minimising the variance on the other streams."""
    P, L = coef.shape
    w = np.broadcast_to(np.nan_to_num(coef, nan=0.0), (S, P, L)).copy()
    if not fit.any():
        return w
    other = scat.sum(0)[None] - scat
    A = other[..., fit, :][..., :, fit]
    rhs = -np.einsum("spfl,spl->spf", other[..., fit, :], w)
    # standardise the fitted features; a feature with no variance (it
    # vanishes by symmetry) gets coefficient 0, collinear ones share
    # through the pseudo-inverse
    dg = np.sqrt(np.maximum(np.diagonal(A, axis1=-2, axis2=-1), 0.0))
    live = dg > 0
    inv = np.where(live, 1.0 / np.where(live, dg, 1.0), 0.0)
    As = A * inv[..., :, None] * inv[..., None, :]
    beta = np.einsum("spfk,spk->spf", np.linalg.pinv(As, rcond=1e-10, hermitian=True),
                     rhs * inv)
    w[..., fit] = beta * inv
    return w


def _gram_estimate(stats, shifts, P, L, coef, mu=None, offsets=None):
    """Estimate of E[t] with t = sum_l w_l z_l - sum_{l>=1} w_l mu_l per
    coordinate, from per-stream Gram statistics of the features z.

    coef : (L,) or (P, L) -- w_0 = 1; a number is a fixed coefficient, NaN
        a fitted one (variance-minimising, cross-fitted: the coefficients
        used on stream s are fitted on the pooled within-stream scatter of
        the other streams).
    mu : (P, L) known means of the control features (column 0 unused).
    offsets : _Offsets or None -- the constants taken out of f per stream
        (added back here exactly: the features are rebased to one common
        constant, whose part is carried by the carrier column).  A carrier
        column with a fixed coefficient 0 that no offset uses is left out,
        so offset-free inputs give the same numbers as without it.
    Returns (mean, se, per-draw variance, value, value se, value variance,
    n, coefficients (S, P, L)).
    """
    count = stats[:, 0]
    keep = count > 0
    D = offsets.dshift() if offsets is not None else None
    vshift = offsets.c[:, 0] if offsets is not None else None
    stats, shifts, cnt = stats[keep], shifts[keep], count[keep]
    S = len(cnt)
    n = float(cnt.sum())
    W = L + L * (L + 1) // 2
    blk = stats[:, 3:].reshape(S, P, W)
    Ssum = blk[..., :L]
    iu = np.triu_indices(L)
    C = np.zeros((S, P, L, L))
    C[..., iu[0], iu[1]] = blk[..., L:]
    C[..., iu[1], iu[0]] = blk[..., L:]
    a = shifts[:, 1:].reshape(S, P, L)
    coef = np.broadcast_to(np.asarray(coef, dtype=np.float64), (P, L))
    mu = np.zeros((P, L)) if mu is None else np.broadcast_to(np.asarray(mu, float), (P, L))
    car = offsets.carrier if offsets is not None else None
    if D is not None:
        D = D[keep]
    if car is not None and not np.any(D) and not np.isnan(coef[0, car]):
        # the carrier is not needed: drop it (it is the last column)
        keep_l = [i for i in range(L) if i != car]
        Ssum = np.ascontiguousarray(Ssum[..., keep_l])
        C = np.ascontiguousarray(C[..., keep_l, :][..., keep_l])
        a = np.ascontiguousarray(a[..., keep_l])
        coef, mu = coef[:, keep_l], mu[:, keep_l]
        L, car, D = L - 1, None, None
    nn = cnt[:, None, None]
    mean_s = Ssum / nn + a
    scat = C - Ssum[..., :, None] * Ssum[..., None, :] / nn[..., None]
    fit = np.isnan(coef[0])
    if fit.any() and S < 2:
        raise ValueError(
            "fitted coefficients (control variates, eta) are cross-fitted across streams "
            f"and need draws in at least 2 streams; n={int(n)} fills only one block: use a "
            "larger n or a smaller block_size")
    D0 = np.zeros(L)
    if car is None or not np.any(D):
        w = u = _fit(scat, coef, fit, S)
    else:
        # rebase every stream to the first one's constants D0: t = w . z(true)
        # = u . z' with u = w + (w . D0) e_car
        D0 = D[0]
        mean_s, scat = _rebase(mean_s, scat, D - D0, car)
        if fit[car]:  # the carrier's coefficient is free: fit u directly
            u = _fit(scat, coef, fit, S)
            w = u.copy()
            w[..., car] -= np.einsum("spl,l->sp", u, D0)
        else:
            w = _fit(_rebase(mean_s, scat, D0, car)[1], coef, fit, S)
            u = w.copy()
            u[..., car] += np.einsum("spl,l->sp", w, D0)
    const = -(w[..., 1:] * mu[None, :, 1:]).sum(-1)
    mean_t = (u * mean_s).sum(-1) + const
    within = np.einsum("spl,splk,spk->sp", u, scat, u)
    grand = (cnt[:, None] * mean_t).sum(0) / n
    ss = within.sum(0) + (cnt[:, None] * (mean_t - grand) ** 2).sum(0)
    var = np.maximum(ss, 0.0) / (n - 1)
    se = np.sqrt(var / n)
    # floating-point floor: the rounding error of the per-draw terms, from
    # the root mean square of each feature in f's own units (offsets included)
    rms = np.sqrt(np.maximum(np.diagonal(scat, axis1=-2, axis2=-1), 0.0) / nn + mean_s**2)
    if car is not None:
        rms = rms + np.abs(D0) * rms[..., car:car + 1]
    mag = (np.abs(w) * rms).sum(-1) + np.abs(const)
    floor = _ROUNDING * ((cnt[:, None] * mag).sum(0) / n)
    low = floor > se
    if low.any():
        se = np.where(low, floor, se)
        var = np.where(low, floor * floor * n, var)
    # the value E[v]
    vmean_s = stats[:, 1] / cnt + shifts[:, 0]
    v0 = 0.0
    if vshift is not None and np.any(vshift):
        vshift = vshift[keep]
        v0 = float(vshift[0])
        vmean_s = vmean_s + (vshift - v0)
    vwithin = np.maximum(stats[:, 2] - stats[:, 1] ** 2 / cnt, 0.0)
    value = float((cnt * vmean_s).sum() / n)
    vss = vwithin.sum() + (cnt * (vmean_s - value) ** 2).sum()
    vvar = max(vss, 0.0) / (n - 1)
    return grand, se, var, value + v0, math.sqrt(vvar / n), vvar, int(n), w


def _result(dist, grand, se, var, value, vse, vvar, n, method, plan, info, variance=None):
    inf = plan.info()
    inf.update(info)
    return E.GradientEstimate(
        dist._split_coords(grand), dist._split_coords(se),
        dist._split_coords(var if variance is None else variance), value, vse, n,
        baseline=info.get("baseline"), method=method, value_variance=vvar, info=inf)


def _physical_memory():
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _new_stats(plan, P, L, what):
    """Zeroed per-stream statistics, after a check that they and the
    kernels' per-thread block buffers (about (L + 2) P block_size doubles a
    thread) fit in the machine's memory: a clear MemoryError naming the size
    asked for, not a bare one from deep inside a kernel."""
    per_stream = _vr.gram_width(P, L) + 1 + P * L
    per_thread = (L + 2) * P * plan.block_size
    need = 8.0 * (plan.used * per_stream + plan.threads * per_thread)
    have = _physical_memory()
    if have is not None and need > have:
        raise MemoryError(
            f"{what} with {P} gradient coordinates and {L} feature(s) each needs about "
            f"{need / 2**30:.3g} GiB ({plan.used} streams x {per_stream} statistics + "
            f"{plan.threads} thread(s) x {per_thread} block values at block_size="
            f"{plan.block_size}), more than the machine's {have / 2**30:.3g} GiB; use fewer "
            "streams (n_streams), a smaller block_size (or n) or, for a Categorical with many "
            "categories, score_grad without control variates (per-category sums)")
    return (np.zeros((plan.used, _vr.gram_width(P, L))), np.zeros((plan.used, 1 + P * L)))


def _check_dist(dist, families, what):
    if not isinstance(dist, Distribution):
        raise TypeError(f"dist must be an mcscore distribution, got {type(dist).__name__}")
    if not isinstance(dist, families):
        names = ", ".join(f.__name__ for f in families)
        raise ValueError(f"{what} supports {names}; got {type(dist).__name__}")


def _check_callable(name, fn, required=True):
    if fn is None:
        if required:
            raise TypeError(f"{name} is required: a vectorised Python callable")
        return None
    if not callable(fn):
        raise TypeError(f"{name} must be a vectorised Python callable, got {type(fn).__name__}")
    return fn


# ---------------------------------------------------------------------------
# score function with control variates / antithetic draws
# ---------------------------------------------------------------------------

def _score_table(dist):
    """(t_start, kind, col, a, b, c) of the per-coordinate score terms."""
    dist._kernel_dist()
    t = dist._table
    if isinstance(dist, Categorical):
        kk = dist.n_categories
        P = t["n_coords"]
        q = np.arange(P)
        return (np.arange(P + 1, dtype=np.int64), np.full(P, K.SK_CATEGORY, np.intc),
                (q // kk).astype(np.int64), np.ascontiguousarray(t["a"], float),
                np.ascontiguousarray(t["b"], float), (q % kk).astype(float))
    return (np.ascontiguousarray(t["t_start"], np.int64), np.ascontiguousarray(t["kind"], np.intc),
            np.ascontiguousarray(t["col"], np.int64), np.ascontiguousarray(t["a"], float),
            np.ascontiguousarray(t["b"], float), np.ascontiguousarray(t["c"], float))


def _flat_coords(dist, grads, what):
    """A {param: array} dict -> the flat coordinate vector (score order)."""
    dist._kernel_dist()
    if not isinstance(grads, dict):
        raise TypeError(f"{what} must be a dict {{parameter name: array}}, got "
                        f"{type(grads).__name__}")
    out = np.zeros(sum(sl.stop - sl.start for sl, _ in dist._coord_slices.values()))
    unknown = set(grads) - set(dist._coord_slices)
    if unknown:
        raise ValueError(f"{what}: unknown parameter(s) {sorted(unknown)}; "
                         f"{dist!r} has {list(dist._coord_slices)}")
    for name, (sl, pshape) in dist._coord_slices.items():
        if name not in grads:
            raise ValueError(f"{what} must give the gradient for every parameter; missing {name!r}")
        g = V.check(f"{what}[{name!r}]", V.as_real_array(f"{what}[{name!r}]", grads[name]), "real")
        if g.shape != tuple(pshape):
            try:
                g = np.broadcast_to(g, pshape)
            except ValueError:
                raise ValueError(f"{what}[{name!r}] must have shape {tuple(pshape)}, got "
                                 f"{g.shape}") from None
        out[sl] = g.ravel()
    return out


def _mean_tangents(dist):
    """{param: d E[x_c] / d param, an array of draw_shape} for the delta
    control variate (the derivative of each draw coordinate's mean w.r.t.
    the parameter element it depends on)."""
    ds = dist.draw_shape
    b = lambda v: np.broadcast_to(np.asarray(v, float), ds)  # noqa: E731
    if isinstance(dist, LogNormal):
        m = np.exp(dist.loc + 0.5 * dist.scale**2)
        return {"loc": b(m), "scale": b(dist.scale * m)}
    if isinstance(dist, Normal):
        return {"loc": b(1.0), "scale": b(0.0)}
    if isinstance(dist, Exponential):
        return {"rate": b(-1.0 / dist.rate**2)}
    if isinstance(dist, Gamma):
        return {"concentration": b(1.0 / dist.rate),
                "rate": b(-dist.concentration / dist.rate**2)}
    if isinstance(dist, Beta):
        a1, a0 = dist._params["concentration1"], dist._params["concentration0"]
        return {"concentration1": b(a0 / (a1 + a0) ** 2),
                "concentration0": b(-a1 / (a1 + a0) ** 2)}
    if isinstance(dist, Poisson):
        return {"rate": b(1.0)}
    if isinstance(dist, Bernoulli):
        p, q = dist._pq()
        return {dist._which: b(p * q if dist._which == "logits" else 1.0)}
    raise ValueError(f"control variate 'delta' is not available for {type(dist).__name__}")


def _delta_cv(dist, grad_f):
    """The delta-method (first-order Taylor) control variate
    h(x) = grad_f(mu) . (x - mu), mu = E[x]; returns (h, d E[h] / d theta)
    with the expansion point held fixed."""
    if grad_f is None:
        raise TypeError("control variate 'delta' needs grad_f (the gradient of f)")
    tang = _mean_tangents(dist)
    mu = np.broadcast_to(np.asarray(dist.mean(), float), dist.draw_shape)
    g = _call_grad(grad_f, mu[None].copy(), 0, 1).reshape(dist.draw_shape)
    grads = {}
    for name, t in tang.items():
        pshape = dist._params[name].shape
        idx = _index_map(pshape, dist.draw_shape)
        size = int(np.prod(pshape, dtype=np.int64))
        grads[name] = np.bincount(idx, weights=(g * t).ravel(), minlength=size).reshape(pshape)
    gflat = g.ravel()
    muflat = mu.ravel()

    def h(x):
        return (np.asarray(x, float).reshape(len(x), -1) - muflat) @ gflat

    return h, grads


def _parse_cvs(dist, control_variates, grad_f):
    """[(h, flat d E[h] / d theta)]."""
    if control_variates is None:
        return []
    if isinstance(control_variates, (str, tuple)) or callable(control_variates):
        control_variates = [control_variates]
    if not isinstance(control_variates, (list, tuple)):
        raise TypeError("control_variates must be 'delta', a pair (h, grad_mean) or a list of "
                        f"them, got {type(control_variates).__name__}")
    out = []
    for j, cv in enumerate(control_variates):
        where = f"control_variates[{j}]"
        if isinstance(cv, str):
            if cv != "delta":
                raise ValueError(f"{where}: unknown built-in control variate {cv!r}; "
                                 "the built-in one is 'delta' (needs grad_f)")
            h, grads = _delta_cv(dist, grad_f)
        elif isinstance(cv, tuple) and len(cv) == 2:
            h, grads = cv
            if not callable(h):
                raise TypeError(f"{where}: h must be a vectorised callable, got "
                                f"{type(h).__name__}")
            if callable(grads):
                grads = grads(dist)
        else:
            raise TypeError(f"{where} must be 'delta' or a pair (h, grad_mean) with h a "
                            "vectorised callable and grad_mean the gradient of E[h] as a dict "
                            "{parameter name: array} (or a callable dist -> dict)")
        out.append((h, _flat_coords(dist, grads, f"{where} grad_mean")))
    if len(out) > 14:
        raise ValueError("at most 14 control variates")
    return out


def _mirror(dist, x):
    if isinstance(dist, LogNormal):
        return np.exp(2 * dist.loc - np.log(x))
    return 2 * dist.loc - x


def _score_vr(f, dist, n, *, rng, baseline, control_variates, antithetic, grad_f, n_threads,
              chunk_size, n_streams, block_size):
    """score_grad with control variates and/or antithetic pairs."""
    if not isinstance(antithetic, (bool, np.bool_)):
        raise TypeError(f"antithetic must be True or False, got {antithetic!r}")
    if antithetic and not isinstance(dist, ANTITHETIC_FAMILIES):
        raise ValueError("antithetic=True needs a family symmetric about a known point "
                         f"(Normal, LogNormal); got {type(dist).__name__}")
    if baseline == "loo":
        raise ValueError("baseline='loo' cannot be combined with control_variates or "
                         "antithetic; use None, a number or 'optimal'")
    grad_f = _check_callable("grad_f", grad_f, required=False)
    fkind, kf = E._kernel_func(f, dist)
    dist._check_differentiable()
    kd = dist._kernel_dist()
    cvs = _parse_cvs(dist, control_variates, grad_f)
    ds = kd.draw_size
    n = V.integer("n", n, minimum=4 if antithetic else 2, maximum=2**62)
    units = n // 2 if antithetic else n
    plan = E._Plan(units, ds, rng, n_streams, block_size, n_threads)
    table = _score_table(dist)
    P = len(table[0]) - 1
    J = 1 + len(cvs)
    add_score = baseline == "optimal"
    # column J is the score itself: the baseline's feature with "optimal",
    # and the carrier of the offsets taken out of f and the control variates
    L = J + 1
    coef = np.full(L, np.nan)
    coef[0] = 1.0
    if not add_score:
        coef[J] = 0.0
    mu = np.zeros((P, L))
    for j, (_, gm) in enumerate(cvs):
        mu[:, 1 + j] = gm
    offsets = _Offsets(plan, J, carrier=J, mult=np.eye(L, J))
    mag = _Mag()
    shift_f = float(baseline) if isinstance(baseline, float) else 0.0
    vd = _vr_dist(dist)
    stats, shifts = _new_stats(plan, P, L, "score_grad with control_variates/antithetic")
    streams = np.arange(plan.used, dtype=np.int64)
    bitgens = plan.bitgens(streams)
    B = plan.block_size
    xt = np.empty((min(plan.n_streams, plan.n_blocks), ds * B))
    xt2 = np.empty_like(xt) if antithetic else xt
    empty = np.zeros(1)

    def values(x_user, xflat, first, chunk):
        out = np.empty((J, len(x_user)))
        if fkind == "python":
            out[0] = _call_values(f, x_user, first, chunk)
        else:
            out[0] = K.eval_integrand(kf, kd, xflat)
            if not np.isfinite(out[0]).all():
                i = int(np.argmax(~np.isfinite(out[0])))
                raise ValueError(f"f returned {out[0][i]} at draw {first + i}; f must be finite")
        out[0] -= shift_f
        for j, (h, _) in enumerate(cvs):
            out[1 + j] = _call_values(h, x_user, first, chunk, name=f"control_variates[{j}]")
        return mag.see(out)

    for rd, chunk in _rounds(plan, chunk_size, ds):
        R = len(rd.blocks)
        _vr.prepare_round(vd, bitgens, rd.blocks, rd.slots, plan.n, B, plan.threads,
                          _vr.PREP_DRAW, ds, empty, xt)
        xf = rd.gather(xt, ds)
        xu = dist._to_user_dtype(xf.reshape((rd.total,) + dist.draw_shape))
        F = np.zeros((J, R * B))
        F[:, rd.index] = values(xu, xf, rd.first, chunk)
        F2 = F
        if antithetic:
            xm = _mirror(dist, xu)
            F2 = np.zeros((J, R * B))
            F2[:, rd.index] = values(xm, xm.reshape(rd.total, ds), rd.first, chunk)
            o = 0
            for r, m in enumerate(rd.rows):
                xt2[r, : ds * m] = xm.reshape(rd.total, ds)[o: o + m].T.ravel()
                o += m
        offsets.shift(rd, [F, F2] if antithetic else [F])
        _vr.acc_score(*table, rd.blocks, rd.slots, plan.n, B, plan.n_streams, plan.threads, ds,
                      xt[:R], xt2[:R], F, F2, bool(antithetic), True, 1, stats, shifts)
    grand, se, var, value, vse, vvar, nn, w = _estimate(dist, stats, shifts, P, L, coef, mu=mu,
                                                        offsets=offsets, mag=mag)
    value += shift_f
    n_draws = nn * (2 if antithetic else 1)
    info = {"f": fkind, "baseline": baseline, "antithetic": bool(antithetic),
            "control_variates": len(cvs), "samples": nn}
    if J + add_score > 1:
        info["coefficients"] = -w[..., 1: J + add_score].mean(0)
    # per-draw variance: se^2 times the draws used (a pair counts as 2)
    est = _result(dist, grand, se, var, value, vse, vvar, n_draws,
                  "score" + ("+antithetic" if antithetic else "") + ("+cv" if cvs else ""),
                  plan, info, variance=se**2 * n_draws)
    est.value_variance = est.value_stderr**2 * n_draws
    return est


# ---------------------------------------------------------------------------
# pathwise (reparameterisation)
# ---------------------------------------------------------------------------

def _pathwise_table(dist):
    ds = dist.draw_shape
    size = dist.draw_size
    b = lambda v: np.broadcast_to(np.asarray(v, float), ds).ravel()  # noqa: E731
    if isinstance(dist, LogNormal):
        spec = [("loc", _vr.TK_LNLOC, 0.0, 0.0),
                ("scale", _vr.TK_LNSCALE, b(dist.loc), b(dist.scale))]
    elif isinstance(dist, Normal):
        spec = [("loc", _vr.TK_ONE, 0.0, 0.0),
                ("scale", _vr.TK_NSCALE, b(dist.loc), b(dist.scale))]
    elif isinstance(dist, Exponential):
        spec = [("rate", _vr.TK_NEG_X_OVER, b(dist.rate), 0.0)]
    elif isinstance(dist, Gamma):
        spec = [("concentration", _vr.TK_GAMMA_CONC, b(dist.concentration), b(dist.rate)),
                ("rate", _vr.TK_NEG_X_OVER, b(dist.rate), 0.0)]
    elif isinstance(dist, Beta):
        spec = [("concentration1", _vr.TK_AUX0, 0.0, 0.0),
                ("concentration0", _vr.TK_AUX1, 0.0, 0.0)]
    else:  # Dirichlet
        kk = dist.event_shape[0]
        cols = np.arange(size)
        spec = [("concentration", _vr.TK_DIRICHLET, (cols // kk) * kk, float(kk))]
    dist._kernel_dist()
    coord, col, kind, ta, tb = [], [], [], [], []
    for name, knd, a, bb in spec:
        sl, pshape = dist._coord_slices[name]
        coord.append(sl.start + _index_map(pshape, ds))
        col.append(np.arange(size))
        kind.append(np.full(size, knd))
        ta.append(np.broadcast_to(np.asarray(a, float), (size,)))
        tb.append(np.broadcast_to(np.asarray(bb, float), (size,)))
    coord = np.concatenate(coord)
    order = np.argsort(coord, kind="stable")
    P = sum(sl.stop - sl.start for sl, _ in dist._coord_slices.values())
    t_start = np.concatenate([[0], np.cumsum(np.bincount(coord, minlength=P))]).astype(np.int64)
    return (t_start, np.concatenate(kind)[order].astype(np.intc),
            np.concatenate(col)[order].astype(np.int64),
            np.ascontiguousarray(np.concatenate(ta)[order]),
            np.ascontiguousarray(np.concatenate(tb)[order]))


def pathwise_grad(f, dist, n, *, grad_f, rng=None, n_threads=None, chunk_size=None,
                  n_streams=E.DEFAULT_STREAMS, block_size=None):
    """Pathwise (reparameterisation) estimate of grad_theta E_{x ~ dist}[f(x)].

    x = g(theta, eps) with base noise eps, and the estimate averages
    ``grad_f(x) . dx/dtheta``.  Normal, LogNormal and Exponential use the
    location-scale maps; Gamma, Beta and Dirichlet use *implicit*
    reparameterisation (dx/dalpha = -(dF/dalpha) / p(x) at the draw, Beta
    and Dirichlet through normalised Gamma variates).

    Parameters
    ----------
    f : callable
        Vectorised f, ``f(x)`` with x of shape ``(m, *dist.draw_shape)``
        returns ``(m,)``; used for ``value`` (E[f]).
    dist : Normal, LogNormal, Exponential, Gamma, Beta or Dirichlet
    n : int >= 2
    grad_f : callable
        Vectorised gradient of f: returns the shape of x.
    rng, n_threads, chunk_size, n_streams, block_size
        As in :func:`mcscore.score_grad` (bit-identical for any n_threads).
        Normal, LogNormal, Exponential and Gamma use the same draws as
        ``score_grad`` with the same seed and plan.

    Returns
    -------
    GradientEstimate (method "pathwise"); ``variance`` is the per-draw variance.
    """
    _check_dist(dist, PATHWISE_FAMILIES, "pathwise_grad")
    f = _check_callable("f", f)
    grad_f = _check_callable("grad_f", grad_f)
    kd = dist._kernel_dist()
    ds = kd.draw_size
    plan = E._Plan(n, ds, rng, n_streams, block_size, n_threads)
    table = _pathwise_table(dist)
    P = len(table[0]) - 1
    has_aux = isinstance(dist, (Beta, Dirichlet))
    mode = _vr.PREP_GAMMAS if has_aux else _vr.PREP_DRAW
    vd = _vr_dist(dist)
    B = plan.block_size
    stats, shifts = _new_stats(plan, P, 1, "pathwise_grad")
    bitgens = plan.bitgens(np.arange(plan.used, dtype=np.int64))
    buf = np.empty((min(plan.n_streams, plan.n_blocks), (3 if has_aux else 1) * ds * B))
    mag = _Mag()
    for rd, chunk in _rounds(plan, chunk_size, ds):
        R = len(rd.blocks)
        _vr.prepare_round(vd, bitgens, rd.blocks, rd.slots, plan.n, B, plan.threads, mode, ds,
                          np.zeros(1), buf)
        x = rd.gather(buf, ds).reshape((rd.total,) + dist.draw_shape)
        if has_aux and not np.isfinite(x).all():
            i = int(np.argmax(~np.isfinite(x.reshape(rd.total, -1)).all(axis=1)))
            smallest = min(float(np.min(v)) for v in dist._params.values())
            raise FloatingPointError(
                f"pathwise_grad draws {type(dist).__name__} variates as normalised Gamma "
                f"variates, and at draw {rd.first + i} all of them underflowed to 0 for "
                f"concentrations as small as {smallest:.3g}: the draw is 0/0 and its "
                "reparameterisation gradient undefined; use larger concentrations or a "
                "score-function estimator")
        fv = rd.scatter(mag.see(_call_values(f, x, rd.first, chunk)))
        G = rd.scatter(mag.see(_call_grad(grad_f, x, rd.first, chunk), "grad_f"))
        _vr.acc_pathwise(*table, rd.blocks, rd.slots, plan.n, B, plan.n_streams, plan.threads,
                         ds, has_aux, buf[:R], G, fv, stats, shifts)
    grand, se, var, value, vse, vvar, nn, _ = _estimate(
        dist, stats, shifts, P, 1, [1.0], terms="grad_f * dx/dtheta", mag=mag)
    return _result(dist, grand, se, var, value, vse, vvar, nn, "pathwise", plan, {"f": "python"})


# ---------------------------------------------------------------------------
# discrete families: relaxed, REBAR, DisARM
# ---------------------------------------------------------------------------

def _discrete_setup(dist, what):
    """(W, K, logit-space parameters, normalised probs, conv, cv, cvs)."""
    from .relaxed import RelaxedBernoulli, RelaxedOneHotCategorical

    if isinstance(dist, (RelaxedBernoulli, RelaxedOneHotCategorical)):
        dist = dist.base
    _check_dist(dist, (Bernoulli, Categorical), what)
    dist._check_differentiable()
    dist._kernel_dist()
    if isinstance(dist, Bernoulli):
        p, q = dist._pq()
        th = np.ravel(np.log(p) - np.log(q)) if dist._which == "probs" else \
            np.ravel(np.broadcast_to(dist._params["logits"], dist.batch_shape))
        pr = np.ravel(p)
        conv = 1 if dist._which == "probs" else 0
        cv = np.ravel(1.0 / (p * q)) if conv else np.ones(1)
        return dist, th.size, 1, np.ascontiguousarray(th, float), pr, conv, cv, np.ones(1)
    kk = dist.n_categories
    lp = np.ascontiguousarray(dist.logits.ravel(), float)
    pr = np.ascontiguousarray(dist.probs.ravel(), float)
    if dist._which == "probs":
        v = dist._params["probs"]
        cv = np.ravel(1.0 / v)
        cvs = np.ravel(1.0 / v.sum(-1))
        conv = 2
    else:
        cv, cvs, conv = np.ones(1), np.ones(1), 0
    return dist, lp.size, kk, lp, pr, conv, np.ascontiguousarray(cv), np.ascontiguousarray(cvs)


def _relaxed_shape(dist):
    return dist.draw_shape + ((dist.n_categories,) if isinstance(dist, Categorical) else ())


def _positive(name, v):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a positive real number, got {v!r}")
    v = float(v)
    if not (v > 0 and np.isfinite(v)):
        raise ValueError(f"{name} must be > 0 and finite, got {v}")
    return v


def relaxed_grad(f, dist, n, *, grad_f, temperature=None, straight_through=False, rng=None,
                 n_threads=None, chunk_size=None, n_streams=E.DEFAULT_STREAMS, block_size=None):
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
    rng, n_threads, chunk_size, n_streams, block_size : as in ``score_grad``.

    Returns
    -------
    GradientEstimate (method "relaxed"); ``value`` estimates E[f(z)] (E[f(b)]
    with straight_through).
    """
    from .relaxed import RelaxedBernoulli, RelaxedOneHotCategorical

    if temperature is None and isinstance(dist, (RelaxedBernoulli, RelaxedOneHotCategorical)):
        temperature = dist.temperature
    if temperature is None:
        raise TypeError("relaxed_grad needs temperature= (or a relaxed distribution)")
    tau = _positive("temperature", temperature)
    if not isinstance(straight_through, (bool, np.bool_)):
        raise TypeError(f"straight_through must be True or False, got {straight_through!r}")
    base, W, kk, th, pr, conv, cv, cvs = _discrete_setup(dist, "relaxed_grad")
    f = _check_callable("f", f)
    grad_f = _check_callable("grad_f", grad_f)
    shape = _relaxed_shape(base)
    plan = E._Plan(n, W, rng, n_streams, block_size, n_threads)
    vd = _vr_dist(base)
    B = plan.block_size
    stats, shifts = _new_stats(plan, W, 1, "relaxed_grad")
    bitgens = plan.bitgens(np.arange(plan.used, dtype=np.int64))
    buf = np.empty((min(plan.n_streams, plan.n_blocks), 2 * W * B))
    prm = np.concatenate([[tau], th])
    mode = _vr.PREP_RELAXED_BERN if kk == 1 else _vr.PREP_RELAXED_CAT
    mag = _Mag()
    for rd, chunk in _rounds(plan, chunk_size, W):
        R = len(rd.blocks)
        _vr.prepare_round(vd, bitgens, rd.blocks, rd.slots, plan.n, B, plan.threads, mode, W,
                          prm, buf)
        x = rd.gather(buf, W, 1 if straight_through else 0).reshape((rd.total,) + shape)
        fv = rd.scatter(mag.see(_call_values(f, x, rd.first, chunk)))
        G = rd.scatter(mag.see(_call_grad(grad_f, x, rd.first, chunk), "grad_f"))
        _vr.acc_relaxed(rd.blocks, rd.slots, plan.n, B, plan.n_streams, plan.threads, W, kk, tau,
                        conv, cv, cvs, buf[:R], G, fv, stats, shifts)
    grand, se, var, value, vse, vvar, nn, _ = _estimate(
        base, stats, shifts, W, 1, [1.0], terms="grad_f * dz/dtheta", mag=mag)
    return _result(base, grand, se, var, value, vse, vvar, nn,
                   "straight-through" if straight_through else "relaxed", plan,
                   {"f": "python", "temperature": tau})


def _check_eta(eta):
    if isinstance(eta, str):
        if eta != "optimal":
            raise ValueError(f"eta must be a number or 'optimal', got {eta!r}")
        return np.nan
    if isinstance(eta, (bool, np.bool_)) or not isinstance(eta, numbers.Real):
        raise TypeError(f"eta must be a real number or 'optimal', got {eta!r}")
    eta = float(eta)
    if not np.isfinite(eta):
        raise ValueError(f"eta must be finite, got {eta}")
    return eta


def _rebar_run(f, grad_f, base, W, kk, th, pr, conv, cv, cvs, lam, eta, plan, chunk_size,
               add_score):
    shape = _relaxed_shape(base)
    vd = _vr_dist(base)
    B = plan.block_size
    # column 2 is the score: the baseline's feature with add_score, and the
    # carrier of the offset taken out of f (z_0 = f(b) s, z_1 = -f(z~) s + ...)
    L = 3
    offsets = _Offsets(plan, 1, carrier=2, mult=[[1.0], [-1.0], [0.0]])
    mag = _Mag()
    stats, shifts = _new_stats(plan, W, L, "rebar_grad")
    bitgens = plan.bitgens(np.arange(plan.used, dtype=np.int64))
    buf = np.empty((min(plan.n_streams, plan.n_blocks), 4 * W * B))
    prm = np.concatenate([[lam], th])
    mode = _vr.PREP_REBAR_BERN if kk == 1 else _vr.PREP_REBAR_CAT
    for rd, chunk in _rounds(plan, chunk_size, W):
        R = len(rd.blocks)
        _vr.prepare_round(vd, bitgens, rd.blocks, rd.slots, plan.n, B, plan.threads, mode, W,
                          prm, buf)
        F = np.zeros((3, R * B))
        pts = [rd.gather(buf, W, k).reshape((rd.total,) + shape) for k in range(3)]
        for k in range(3):
            F[k, rd.index] = mag.see(_call_values(f, pts[k], rd.first, chunk))
        Gz = rd.scatter(_call_grad(grad_f, pts[1], rd.first, chunk))
        Gzt = rd.scatter(_call_grad(grad_f, pts[2], rd.first, chunk))
        offsets.shift(rd, [F[0:1], F[1:2], F[2:3]])
        _vr.acc_rebar(rd.blocks, rd.slots, plan.n, B, plan.n_streams, plan.threads, W, kk, lam,
                      pr, conv, cv, cvs, True, buf[:R], F, Gz, Gzt, stats, shifts)
    return _estimate(base, stats, shifts, W, L, [1.0, eta, np.nan if add_score else 0.0],
                     offsets=offsets, terms="the REBAR terms", mag=mag)


TEMPERATURE_GRID = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0)


def rebar_grad(f, dist, n, *, grad_f, temperature=0.5, eta="optimal", baseline=None, rng=None,
               n_pilot=None, n_threads=None, chunk_size=None, n_streams=E.DEFAULT_STREAMS,
               block_size=None):
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
    temperature : float > 0 or "auto"
        "auto" picks the temperature from a grid (``TEMPERATURE_GRID``) by
        the measured per-draw variance of a pilot run of ``n_pilot`` draws
        (default min(n, 4096)) on streams independent of the main run, so
        the estimate stays unbiased.
    eta : float or "optimal"
        "optimal" (default): per coordinate the variance-minimising eta,
        cross-fitted across streams (unbiased).
    baseline : None or "optimal"
        "optimal" also subtracts a constant baseline from f(b) in the score
        term, fitted jointly with eta (cross-fitted, unbiased).  The relaxed
        control variate alone removes little variance when f(b) has a large
        mean relative to its spread (the one-coordinate toy problem); the
        baseline takes that part.
    rng, n_threads, chunk_size, n_streams, block_size : as in ``score_grad``.

    Returns
    -------
    GradientEstimate (method "rebar"); ``info["eta"]`` holds the mean fitted
    eta per coordinate and ``info["temperature"]`` the temperature used.
    Each draw costs 3 evaluations of f and 2 of grad_f.
    """
    base, W, kk, th, pr, conv, cv, cvs = _discrete_setup(dist, "rebar_grad")
    f = _check_callable("f", f)
    grad_f = _check_callable("grad_f", grad_f)
    eta = _check_eta(eta)
    if baseline not in (None, "optimal"):
        raise ValueError(f"baseline must be None or 'optimal' for rebar_grad, got {baseline!r}")
    add_score = baseline == "optimal"
    plan = E._Plan(n, W, rng, n_streams, block_size, n_threads)
    info = {"f": "python", "baseline": baseline}
    if isinstance(temperature, str) and temperature == "auto":
        n_pilot = min(plan.n, 4096) if n_pilot is None else V.integer("n_pilot", n_pilot,
                                                                       minimum=16)
        root = plan.root
        # a child key no stream of the main run uses: independent draws
        pilot_seed = np.random.SeedSequence(root.entropy, pool_size=root.pool_size,
                                            spawn_key=tuple(root.spawn_key) + (2**40,))
        best = None
        for lam in TEMPERATURE_GRID:
            pp = E._Plan(n_pilot, W, pilot_seed, plan.n_streams, block_size, n_threads)
            r = _rebar_run(f, grad_f, base, W, kk, th, pr, conv, cv, cvs, lam, eta, pp,
                           chunk_size, add_score)
            score = float(r[2].sum())
            if best is None or score < best[0]:
                best = (score, lam)
        lam = best[1]
    else:
        lam = _positive("temperature", temperature)
    grand, se, var, value, vse, vvar, nn, w = _rebar_run(
        f, grad_f, base, W, kk, th, pr, conv, cv, cvs, lam, eta, plan, chunk_size, add_score)
    info.update({"temperature": lam, "eta": base._split_coords(w[..., 1].mean(0))})
    return _result(base, grand, se, var, value, vse, vvar, nn, "rebar", plan, info)


def disarm_grad(f, dist, n, *, rng=None, n_threads=None, chunk_size=None,
                n_streams=E.DEFAULT_STREAMS, block_size=None):
    """DisARM (Dong, Mnih & Tucker 2020) for Bernoulli: unbiased, needs only
    f (no gradient, no relaxation).

    Each sample is an antithetic pair b = [u < p], b~ = [1 - u < p] (u
    uniform per coordinate) and

        g_c = 1/2 (f(b) - f(b~)) (-1)^{b~_c} [b_c != b~_c] sigmoid(|logit_c|)

    (times d logit / d p for probs).  ``n`` is the number of pairs: f is
    evaluated 2n times.

    Parameters
    ----------
    f : callable, ``f(b)`` with b of shape ``(m, *batch_shape)`` (0/1 floats)
    dist : Bernoulli
    rng, n_threads, chunk_size, n_streams, block_size : as in ``score_grad``.
    """
    if not isinstance(dist, Bernoulli):
        _check_dist(dist, (Bernoulli,), "disarm_grad")
    base, W, kk, th, pr, conv, cv, cvs = _discrete_setup(dist, "disarm_grad")
    f = _check_callable("f", f)
    plan = E._Plan(n, W, rng, n_streams, block_size, n_threads)
    vd = _vr_dist(base)
    B = plan.block_size
    stats, shifts = _new_stats(plan, W, 1, "disarm_grad")
    bitgens = plan.bitgens(np.arange(plan.used, dtype=np.int64))
    buf = np.empty((min(plan.n_streams, plan.n_blocks), 2 * W * B))
    shape = base.draw_shape
    mag = _Mag()
    for rd, chunk in _rounds(plan, chunk_size, W):
        R = len(rd.blocks)
        _vr.prepare_round(vd, bitgens, rd.blocks, rd.slots, plan.n, B, plan.threads,
                          _vr.PREP_DISARM, W, th, buf)
        F = np.zeros((2, R * B))
        for k in range(2):
            F[k, rd.index] = mag.see(_call_values(
                f, rd.gather(buf, W, k).reshape((rd.total,) + shape), rd.first, chunk))
        _vr.acc_disarm(rd.blocks, rd.slots, plan.n, B, plan.n_streams, plan.threads, W, th,
                       conv, cv, buf[:R], F, stats, shifts)
    grand, se, var, value, vse, vvar, nn, _ = _estimate(
        base, stats, shifts, W, 1, [1.0], terms="(f(b) - f(b~)) / 2", mag=mag)
    return _result(base, grand, se, var, value, vse, vvar, nn, "disarm", plan,
                   {"f": "python", "f_evals_per_sample": 2})


def rloo_grad(f, dist, n, *, k=4, rng=None, n_threads=None, chunk_size=None,
              n_streams=E.DEFAULT_STREAMS):
    """Leave-one-out score estimator with ``k`` draws per sample (RLOO):

        g = 1/k sum_i (f(x_i) - 1/(k-1) sum_{j != i} f(x_j)) s(x_i)

    unbiased for any family, no gradient of f needed.  ``n`` is the number
    of samples (f is evaluated k n times); ``variance`` is per sample.

    Parameters
    ----------
    f : vectorised Python callable, as in ``score_grad``
    dist : any mcscore distribution
    k : int >= 2
    """
    if not isinstance(dist, Distribution):
        raise TypeError(f"dist must be an mcscore distribution, got {type(dist).__name__}")
    f = _check_callable("f", f)
    k = V.integer("k", k, minimum=2, maximum=1 << 12)
    n = V.integer("n", n, minimum=2, maximum=2**62 // k)
    dist._check_differentiable()
    kd = dist._kernel_dist()
    ds = kd.draw_size
    bs = E.default_block_size(n * k, ds, V.integer("n_streams", n_streams, minimum=1))
    bs = k * max(1, bs // k)
    plan = E._Plan(n * k, ds, rng, n_streams, bs, n_threads)
    table = _score_table(dist)
    P = len(table[0]) - 1
    vd = _vr_dist(dist)
    B = plan.block_size
    stats, shifts = _new_stats(plan, P, 1, f"rloo_grad(k={k})")
    bitgens = plan.bitgens(np.arange(plan.used, dtype=np.int64))
    xt = np.empty((min(plan.n_streams, plan.n_blocks), ds * B))
    offsets = _Offsets(plan, 1)
    mag = _Mag()
    for rd, chunk in _rounds(plan, chunk_size, ds):
        R = len(rd.blocks)
        _vr.prepare_round(vd, bitgens, rd.blocks, rd.slots, plan.n, B, plan.threads,
                          _vr.PREP_DRAW, ds, np.zeros(1), xt)
        xu = dist._to_user_dtype(rd.gather(xt, ds).reshape((rd.total,) + dist.draw_shape))
        F = np.zeros((1, R * B))
        F[0, rd.index] = mag.see(_call_values(f, xu, rd.first, chunk))
        offsets.shift(rd, [F])
        _vr.acc_score(*table, rd.blocks, rd.slots, plan.n, B, plan.n_streams, plan.threads, ds,
                      xt[:R], xt[:R], F, F, False, False, k, stats, shifts)
    grand, se, var, value, vse, vvar, nn, _ = _estimate(
        dist, stats, shifts, P, 1, [1.0], offsets=offsets, terms="(f - f_loo) * score",
        mag=mag)
    return _result(dist, grand, se, var, value, vse, vvar, nn,
                   f"rloo(k={k})", plan, {"f": "python", "f_evals_per_sample": k})


# ---------------------------------------------------------------------------
# comparison
# ---------------------------------------------------------------------------

def _one_hot(idx, kk):
    return (np.asarray(idx)[..., None] == np.arange(kk)).astype(np.float64)


class Comparison:
    """The result of :func:`compare_estimators`.

    ``rows``: one dict per estimator with keys name, estimate (dict),
    stderr (dict), variance (per-sample variance summed over the gradient's
    coordinates), f_evals (f evaluations per sample), time (seconds),
    work_variance (variance x seconds per sample = stderr^2 x time: lower
    is better at equal cost), z (max |estimate - exact| / stderr when exact
    was given), unbiased (bool) and result (the GradientEstimate).
    """

    def __init__(self, rows, exact=None):
        self.rows = rows
        self.exact = exact

    def __getitem__(self, name):
        for r in self.rows:
            if r["name"] == name:
                return r
        raise KeyError(name)

    @property
    def names(self):
        return [r["name"] for r in self.rows]

    def best(self):
        """Name of the unbiased estimator with the lowest work-normalised variance."""
        ok = [r for r in self.rows if r["unbiased"]]
        if not ok:
            raise ValueError(
                f"best() compares unbiased estimators, and none of the rows {self.names} is "
                "unbiased (the relaxed estimators are biased); compare work_variance yourself "
                "or run compare_estimators with an unbiased one")
        return min(ok, key=lambda r: r["work_variance"])["name"]

    def table(self):
        head = ["estimator", "grad[0]", "stderr[0]", "variance", "f/sample", "time s",
                "var x time"]
        if self.exact is not None:
            head.append("max|z|")
        lines = []
        for r in self.rows:
            g = np.concatenate([np.ravel(v) for v in r["estimate"].values()])
            s = np.concatenate([np.ravel(v) for v in r["stderr"].values()])
            cells = [r["name"] + ("" if r["unbiased"] else " (biased)"), f"{g[0]:.5g}",
                     f"{s[0]:.3g}", f"{r['variance']:.4g}", f"{r['f_evals']:g}",
                     f"{r['time']:.3f}", f"{r['work_variance']:.3g}"]
            if self.exact is not None:
                cells.append(f"{r['z']:.2f}")
            lines.append(cells)
        widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(head)]
        out = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
        out.append("  ".join("-" * w for w in widths))
        out += ["  ".join(c.ljust(w) for c, w in zip(cells, widths)) for cells in lines]
        return "\n".join(out)

    def __repr__(self):
        return self.table()

    def plot(self, ax=None):
        """Bar chart of the per-sample and work-normalised variances (log
        scale); needs matplotlib.  Returns the axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 3.5))
        names = self.names
        x = np.arange(len(names))
        ax.bar(x - 0.2, [r["variance"] for r in self.rows], 0.4, label="variance per sample")
        ax.bar(x + 0.2, [r["work_variance"] for r in self.rows], 0.4, label="variance x time")
        ax.set_yscale("log")
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.legend()
        ax.figure.tight_layout()
        return ax


def compare_estimators(f, dist, n, *, grad_f=None, rng=None, exact=None, temperature=0.5,
                       rloo_k=4, estimators=None, n_threads=None):
    """Run every applicable estimator on the same problem and compare them.

    Score function (plain, "loo" and "optimal" baselines, delta control
    variate when grad_f is given, antithetic for Normal / LogNormal), RLOO
    with ``rloo_k`` draws per sample, pathwise (continuous families with
    grad_f), and for Bernoulli / Categorical the relaxed estimator (biased),
    REBAR (with and without a fitted baseline; with grad_f) and DisARM
    (Bernoulli).  Every estimator gets the same seed (``rng`` is turned into
    one SeedSequence first), so estimators that draw alike share draws.

    Parameters
    ----------
    f : vectorised callable.  For Categorical f takes one-hot encodings
        ``(m, *batch_shape, K)`` (so the relaxed estimators can evaluate it
        on the simplex); the score estimators get it composed with one_hot.
    dist : mcscore distribution
    n : int, samples per estimator
    grad_f : vectorised gradient of f, optional
    exact : optional {param: array}, the true gradient (adds a z column)
    estimators : optional list of names to run (default: all applicable)

    Returns
    -------
    Comparison: a readable table (``repr``), ``rows`` as data, ``plot()``.
    """
    if not isinstance(dist, Distribution):
        raise TypeError(f"dist must be an mcscore distribution, got {type(dist).__name__}")
    f = _check_callable("f", f)
    grad_f = _check_callable("grad_f", grad_f, required=False)
    temperature = _positive("temperature", temperature)
    rloo_k = V.integer("rloo_k", rloo_k, minimum=2, maximum=1 << 12)
    if estimators is not None:
        if isinstance(estimators, str) or not isinstance(estimators, (list, tuple)):
            raise TypeError(f"estimators must be a list of estimator names, got "
                            f"{type(estimators).__name__} {estimators!r}")
        if not estimators:
            raise ValueError("estimators must name at least one estimator (or be None: all)")
    if exact is not None:
        if not isinstance(exact, dict):
            raise TypeError(f"exact must be a dict {{parameter name: array}}, got "
                            f"{type(exact).__name__}")
        dist._kernel_dist()
        unknown = set(exact) - set(dist._coord_slices)
        if unknown:
            raise ValueError(f"exact: unknown parameter(s) {sorted(unknown)}; {dist!r} has "
                             f"{list(dist._coord_slices)}")
        checked = {}
        for k, v in exact.items():
            a = V.check(f"exact[{k!r}]", V.as_real_array(f"exact[{k!r}]", v), "real")
            pshape = tuple(dist._coord_slices[k][1])
            try:
                checked[k] = np.broadcast_to(a, pshape)
            except ValueError:
                raise ValueError(f"exact[{k!r}] must have shape {pshape}, got {a.shape}") from None
        exact = checked
    is_cat = isinstance(dist, Categorical)
    fs = (lambda idx: f(_one_hot(idx, dist.n_categories))) if is_cat else f
    kw = {"rng": V.root_seed_sequence(rng), "n_threads": n_threads}
    ds = dist._kernel_dist().draw_size
    # cross-fitted estimators (fitted baselines, control variates, eta) need
    # draws in two streams: (units, draw size) of their plan
    fitted = {"score+optimal": (n, ds), "score+delta": (n, ds), "antithetic": (n, ds),
              "rebar": (n, int(np.size(dist.logits))) if is_cat else (n, ds)}
    fitted["rebar+optimal"] = fitted["rebar"]
    runs = [("score", True, 1, lambda: E.score_grad(fs, dist, n, **kw)),
            ("score+loo", True, 1, lambda: E.score_grad(fs, dist, n, baseline="loo", **kw)),
            ("score+optimal", True, 1,
             lambda: E.score_grad(fs, dist, n, baseline="optimal", **kw))]
    if grad_f is not None and not is_cat:
        try:
            _mean_tangents(dist)
            runs.append(("score+delta", True, 1, lambda: E.score_grad(
                fs, dist, n, baseline="optimal", control_variates=["delta"], grad_f=grad_f,
                **kw)))
        except ValueError:
            pass
    if isinstance(dist, ANTITHETIC_FAMILIES):
        runs.append(("antithetic", True, 1, lambda: E.score_grad(
            fs, dist, 2 * n, antithetic=True, baseline="optimal", **kw)))
    runs.append((f"rloo(k={rloo_k})", True, rloo_k,
                 lambda: rloo_grad(fs, dist, n, k=rloo_k, **kw)))
    if grad_f is not None and isinstance(dist, PATHWISE_FAMILIES):
        runs.append(("pathwise", True, 1, lambda: pathwise_grad(f, dist, n, grad_f=grad_f,
                                                                 **kw)))
    if isinstance(dist, (Bernoulli, Categorical)):
        if grad_f is not None:
            runs.append((f"relaxed(tau={temperature:g})", False, 1, lambda: relaxed_grad(
                f, dist, n, grad_f=grad_f, temperature=temperature, **kw)))
            runs.append(("rebar", True, 3, lambda: rebar_grad(
                f, dist, n, grad_f=grad_f, temperature=temperature, **kw)))
            runs.append(("rebar+optimal", True, 3, lambda: rebar_grad(
                f, dist, n, grad_f=grad_f, temperature=temperature, baseline="optimal", **kw)))
        if isinstance(dist, Bernoulli):
            runs.append(("disarm", True, 2, lambda: disarm_grad(f, dist, n, **kw)))
    if estimators is not None:
        wanted = list(estimators)
        known = [r[0] for r in runs]
        bad = [w for w in wanted if w not in known]
        if bad:
            raise ValueError(f"estimators: {bad} not applicable here; choose from {known}")
        runs = [r for r in runs if r[0] in wanted]
    n = V.integer("n", n, minimum=2, maximum=2**61)
    short = {}
    for name, *_ in runs:
        if name in fitted:
            bs = E.default_block_size(*fitted[name])
            if fitted[name][0] <= bs:
                short[name] = bs
    if short:
        raise ValueError(
            f"compare_estimators: {sorted(short)} fit coefficients cross-fitted across streams "
            f"and need draws in at least 2 streams (two blocks of draws): n > "
            f"{max(short.values())}; n={n} fills only one block. Use a larger n, or estimators= "
            "without them")
    rows = []
    for name, unbiased, evals, run in runs:
        t0 = time.perf_counter()
        res = run()
        dt = time.perf_counter() - t0
        var = float(sum(np.sum(v) for v in res.variance.values()))
        samples = res.info.get("samples", res.n)
        if name == "antithetic":  # a sample is a pair: 2 f evaluations
            var = float(sum(np.sum(s**2) for s in res.stderr.values())) * samples
            evals = 2
        se2 = float(sum(np.sum(s**2) for s in res.stderr.values()))
        row = {"name": name, "estimate": res.grad, "stderr": res.stderr, "variance": var,
               "f_evals": evals, "time": dt, "work_variance": se2 * dt, "unbiased": unbiased,
               "result": res}
        if exact is not None:
            z = []
            for k, v in exact.items():
                err = np.abs(res.grad[k] - np.asarray(v, float))
                se = res.stderr[k]
                tiny = 1e-12 * (1.0 + np.abs(np.asarray(v, float)))
                with np.errstate(divide="ignore", invalid="ignore"):
                    zk = np.where(se > 0, err / se, np.where(err <= tiny, 0.0, np.inf))
                z.append(np.max(zk))
            row["z"] = float(max(z))
        rows.append(row)
    return Comparison(rows, exact)
