"""The estimator algebra on per-stream sums, shared by every estimator.

The kernels leave, per stream, sums of the per-draw quantities relative to
a per-stream shift (f's first value on the stream, or the constants taken
out of f by ``Offsets``).  This module merges them exactly (one common
shift, ``common_shift`` / ``shift_sums``), turns them into estimates and
standard errors (the score-function baselines of ``score_moments`` /
``baseline_algebra``; the Gram algebra of control variates, REBAR's eta and
the other estimators' features in ``gram_estimate``), and applies one set
of range checks to every result (``check_range``, ``check_stats``, the
rounding floor and the rare-category floor).  It knows nothing of drawing
or of f.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from . import _kernels as K
from .result import GradientEstimate

__all__ = [
    "RARE_EXPECTED_COUNT", "OFFSET_RATIO", "TINY_MEAN_SQUARE", "RESOLUTION", "Mag", "Offsets",
    "GramEstimate", "baselined_terms", "check_baseline", "check_range", "common_shift", "estimate",
    "finish_batched", "finish_joint", "finish_score", "gradient_estimate", "gram_estimate",
    "rare_floor", "shift_sums",
]


def check_baseline(baseline):
    if baseline is None or (isinstance(baseline, str) and baseline in ("loo", "optimal")):
        return baseline
    if isinstance(baseline, numbers.Real) and not isinstance(baseline, (bool, np.bool_)):
        b = float(baseline)
        if not np.isfinite(b):
            raise ValueError(f"baseline must be finite, got {b}")
        return b
    raise ValueError(
        f"baseline must be None, a finite number, 'loo' or 'optimal', got {baseline!r}"
    )



# ---------------------------------------------------------------------------
# merging shifted per-stream sums
# ---------------------------------------------------------------------------

def common_shift(count, shifts):
    """(c0, d): the shift of the first stream that holds draws, and each
    stream's shift relative to it (0 for a stream without draws); `shifts`
    may have trailing axes (one shift per quantity)."""
    nonempty = count > 0
    first = int(np.argmax(nonempty))
    c0 = shifts[first]
    mask = nonempty.reshape(nonempty.shape + (1,) * (np.ndim(shifts) - 1))
    return c0, np.where(mask, shifts - c0, 0.0)


def _dot(d, X):
    """sum_s d[s] X[s] (matmul for a matrix, as the callers always did)."""
    return d @ X if X.ndim <= 2 else np.tensordot(d, X, 1)


def shift_sums(d, C, G0, H0=None, *, total=False, squared=False):
    """Sums over C draws of g + d (and of (g + d)^2) from the sums G0 of g
    (and H0 of g^2): the merge of per-stream sums taken relative to
    different shifts.  `total` sums over the streams (axis 0) by dot
    products; `squared` forms d^2 before multiplying by C (the order the
    per-category and Gram sums use; C * d * d otherwise), so each caller
    keeps its rounding bit for bit."""
    if total:
        G = G0.sum(0) + _dot(d, C)
        if H0 is None:
            return G
        return G, H0.sum(0) + 2.0 * _dot(d, G0) + _dot(d * d, C)
    G = G0 + d * C
    if H0 is None:
        return G
    return G, H0 + 2 * d * G0 + (d * d * C if squared else C * d * d)


# ---------------------------------------------------------------------------
# score-function moments and baselines
# ---------------------------------------------------------------------------

def category_moments(dist, C, Gk, Hk, n, G, H):
    """The five score sums of a per-category family from its per-category
    sums: C = count, Gk = sum g, Hk = sum g^2 of the draws in category k, and
    n, G, H the totals over all draws (broadcastable).  With
    s_k = a_k [x = k] + b_k: s_k^2 = (a_k^2 + 2 a_k b_k) [x = k] + b_k^2."""
    a, b = dist._table["a"], dist._table["b"]
    hit = C > 0
    with np.errstate(invalid="ignore"):
        A2 = np.where(hit, a * a + 2 * a * b, 0.0)
        Ss = np.where(hit, a * C, 0.0) + b * n
        Ss2 = A2 * C + b * b * n
        Sgs = np.where(hit, a * Gk, 0.0) + b * G
        Sgs2 = A2 * Gk + b * b * G
        Sg2s2 = A2 * Hk + b * b * H
    return Ss, Ss2, Sgs, Sgs2, Sg2s2


def score_moments(dist, kd, stats, shifts):
    """Per-stream moments relative to one common shift c0.

    Returns (c0, count[S], G[S], H[S], (Ss, Ss2, Sgs, Sgs2, Sg2s2) each [S, P])
    with g = f - c0.
    """
    count = stats[:, 0]
    c0, d = common_shift(count, shifts)
    G, H = shift_sums(d, count, stats[:, 1], stats[:, 2])
    d2 = d[:, None]
    if kd.per_category:
        P = kd.n_units * kd.n_cat
        cat = stats[:, 3:].reshape(len(count), P, 3)
        C = cat[..., 0]
        Gk, Hk = shift_sums(d2, C, cat[..., 1], cat[..., 2], squared=True)
        mom = category_moments(dist, C, Gk, Hk, count[:, None], G[:, None], H[:, None])
        return float(c0), count, G, H, mom
    M = stats[:, 3:].reshape(len(count), kd.n_coords, 5)
    Ss, Ss2, Sgs0, Sgs20, Sg2s20 = (M[..., i] for i in range(5))
    Sgs = shift_sums(d2, Ss, Sgs0)
    Sgs2, Sg2s2 = shift_sums(d2, Ss2, Sgs20, Sg2s20, squared=True)
    return float(c0), count, G, H, (Ss, Ss2, Sgs, Sgs2, Sg2s2)


def moments_total(dist, kd, stats, shifts):
    """score_moments summed over the streams (a leading axis of length 1),
    for the baselines that need totals only (None, a number, "loo"): a few
    array operations instead of one per stream statistic."""
    if not kd.per_category:
        c0, n, Gt, Ht, M = K.stream_totals(stats, shifts, kd.n_coords)
        return c0, np.array([n]), np.array([Gt]), np.array([Ht]), tuple(M[:, None, :])
    count = stats[:, 0]
    c0, d = common_shift(count, shifts)
    Gt, Ht = shift_sums(d, count, stats[:, 1], stats[:, 2], total=True)
    # per-category sums (count, sum g, sum g^2 of the draws in category k)
    M = stats[:, 3:]
    C0 = M[:, 0::3]
    Gk, Hk = shift_sums(d, C0, M[:, 1::3], M[:, 2::3], total=True)
    n = count.sum()
    mom = category_moments(dist, C0.sum(0), Gk, Hk, n, Gt, Ht)
    P = kd.n_units * kd.n_cat
    return (float(c0), np.array([n]), np.array([Gt]), np.array([Ht]),
            tuple(np.reshape(x, (1, P)) for x in mom))


# A category expected fewer than this many times in n draws (n * p_k < 30) is
# "rare": its sample variance rests on a handful of draws, or none (a category
# never drawn has a sample variance near 0 whatever f is there), so its
# standard error is floored (see rare_floor).
RARE_EXPECTED_COUNT = 30.0


def rare_floor(dist, kd, stats, shifts, n, unit_shift=None, cat=None, totals=None):
    """For a per-category family (Categorical) with some category expected
    fewer than RARE_EXPECTED_COUNT times in the n draws: a function of the
    centre e (f - baseline = g + e, g = f - c0 as in score_moments) giving a floor
    of the per-draw variance of every score coordinate (0 for the others);
    else None.

    With s_k = a_k [x = k] + b_k and h = f - baseline, the exact per-draw
    variance of h s_k is
        p_k (a_k^2 + 2 a_k b_k) E[h^2 | k] + b_k^2 E[h^2] - (p_k a_k E[h | k] + b_k E[h])^2.
    The sample variance puts the observed frequency of category k in place of
    p_k: for a category drawn a few times, or never, it is near 0 whatever f
    is there.  The floor uses the known p_k with the observed moments of f on
    category k and overall; for a category never drawn, E[h^2 | k] is
    bounded by the farthest value f took on the drawn categories (per
    category its mean +/- its standard deviation, so a random f counts too)
    and E[h | k] taken as 0.

    Batched expectations pass ``cat`` (the per-category sums, (S, units, K,
    3)) and ``unit_shift`` (S, units: each unit's stream shift relative to
    the common one); the floor then takes per-coordinate centres and means;
    ``totals`` (their stream totals (sum g, sum g^2, count) per category,
    when the caller has merged them already) spares the merge."""
    if not kd.per_category:
        return None
    p = np.ravel(dist.probs)
    rare = n * p < RARE_EXPECTED_COUNT
    if not rare.any():
        return None
    a, b = dist._table["a"], dist._table["b"]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        count = stats[:, 0]
        if unit_shift is None:
            d = common_shift(count, shifts)[1]
            cat = stats[:, 3:].reshape(len(count), kd.n_units, kd.n_cat, 3)
            mg, sq = shift_sums(d, cat[..., 0], cat[..., 1], cat[..., 2], total=True)
        elif totals is None:
            mg, sq = (v[0] for v in _stream_total(unit_shift[..., None], cat[..., 0],
                                                  cat[..., 1], cat[..., 2]))
        else:
            mg, sq = totals[0], totals[1]
        C = cat[..., 0].sum(0) if totals is None else totals[2]
        mg, sq = mg / C, sq / C
        sd = np.sqrt(np.maximum(sq - mg * mg, 0.0))
        seen = C > 0
        hi = np.where(seen, mg + sd, -np.inf).max(-1, keepdims=True)
        lo = np.where(seen, mg - sd, np.inf).min(-1, keepdims=True)
    shape = (kd.n_units, kd.n_cat)
    lo, hi = (np.broadcast_to(v, shape).ravel() for v in (lo, hi))
    seen, mg, sq = seen.ravel(), mg.ravel(), sq.ravel()
    A2 = np.maximum(a * a + 2 * a * b, 0.0)

    def floor(e, M1g, M2g):
        """e: centre per coordinate (or scalar); M1g, M2g: mean of g and of
        g^2 over all draws."""
        with np.errstate(over="ignore", invalid="ignore"):
            m1 = np.where(seen, mg + e, 0.0)
            m2 = np.where(seen, sq + 2 * e * mg + e * e,
                          np.maximum(np.square(lo + e), np.square(hi + e)))
            M1 = M1g + e
            M2 = M2g + 2 * e * M1g + e * e
            v = p * A2 * m2 + b * b * M2 - np.square(p * a * m1 + b * M1)
        return np.where(rare, v, 0.0)

    floor.n_rare = int(np.count_nonzero(rare))
    return floor


def baseline_centre(cq, Gt, count, mom, baseline):
    """(e, factor) of a baseline: the per-draw terms are factor * (g + e) * s
    with g = f - c0, cq the c0 of each coordinate's f column and Gt the sum of
    g over all draws (per coordinate for batched expectations; e per stream
    and coordinate for "optimal")."""
    n = float(count.sum())
    Ss, Ss2, Sgs, Sgs2, _ = mom
    if baseline != "optimal":
        return simple_centre(cq, Gt, n, baseline)
    if np.count_nonzero(count) < 2:
        raise ValueError(
            "baseline='optimal' is cross-fitted across streams and needs draws in at "
            f"least 2 streams; n={int(n)} fills only one block: use a larger n, a smaller "
            "block_size, or score_grad_from_samples"
        )
    num = Sgs2.sum(0) - Sgs2
    den = Ss2.sum(0) - Ss2
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.where(den > 0, -num / den, -Gt / n)
    return e, 1.0


def simple_centre(c, G, n, baseline):
    """(e, factor) of the baselines that need the totals only: None (e = c,
    the shift), "loo" (e = -G / n, factor n / (n - 1)) or a number b
    (e = c - b); see baseline_centre."""
    if baseline is None:
        return c, 1.0
    if baseline == "loo":
        return -G / n, n / (n - 1)
    return c - baseline, 1.0


def score_stream_means(dist, kd, stats, shifts, baseline):
    """(count (S,), per-stream means (S, P) of the per-draw terms) of the
    score estimator with `baseline`: what GradientEstimate's batch-means
    covariance takes the correlations from (computed when first asked)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        c0, count, G, H, mom = score_moments(dist, kd, stats, shifts)
        e, factor = baseline_centre(c0, G.sum(), count, mom, baseline)
        Ss, Sgs = mom[0], mom[2]
        means = factor * (Sgs + e * Ss) / np.maximum(count, 1.0)[:, None]
    return count, means


def baseline_algebra(c0, count, G, H, mom, baseline, rare=None, qcol=None):
    """Estimate, standard error and per-draw variance for each coordinate;
    `rare` (from rare_floor) floors the variance of rare categories.
    Batched expectations: c0 (nf,), G and H (S, nf) per f column and qcol
    the column of each coordinate; the value is then per column."""
    n = float(count.sum())
    Ss, Ss2, Sgs, Sgs2, Sg2s2 = mom
    if qcol is None:
        Gt, Ht, cq = G.sum(), H.sum(), c0
    else:
        Gt, Ht, cq = G.sum(0)[qcol], H.sum(0)[qcol], c0[qcol]
    e, factor = baseline_centre(cq, Gt, count, mom, baseline)
    sy = (Sgs + e * Ss).sum(0)
    sy2 = (Sg2s2 + 2 * e * Sgs2 + e * e * Ss2).sum(0)
    mean = sy / n
    var = np.maximum(sy2 - n * mean * mean, 0.0) / (n - 1)
    if rare is not None:
        # f - baseline = g + e, g = f - c0; e is per stream when cross-fitted
        e_all = (e * count[:, None]).sum(0) / n if np.ndim(e) == 2 else e
        var = np.maximum(var, rare(e_all, Gt / n, Ht / n))
    grad = factor * mean
    se = factor * np.sqrt(var / n)
    if qcol is not None:
        return (grad, se, var * factor**2) + column_values(count, None, G, H, c0=c0)
    value = c0 + G.sum() / n
    vvar = max(H.sum() - G.sum() ** 2 / n, 0.0) / (n - 1)
    return grad, se, var * factor**2, value, math.sqrt(vvar / n), vvar


def column_values(count, shifts, G, H, c0=None):
    """(value, value se, value variance) of each of the nf columns of f
    from per-stream sums G, H (S, nf) of f - shift; shifts (S, nf), or
    c0 (the common shift they are already relative to)."""
    if c0 is None:
        c0, d = common_shift(count, shifts)
        G, H = shift_sums(d, count[:, None], G, H)
    n = float(count.sum())
    Gt = G.sum(0)
    vvar = np.maximum(H.sum(0) - Gt ** 2 / n, 0.0) / (n - 1)
    return c0 + Gt / n, np.sqrt(vvar / n), vvar


# Mean squares below this are at the edge of the normal double range: the
# sums of squares behind the standard errors have underflowed.  Estimates
# below RESOLUTION are zero at double resolution (e.g. gradients of order
# e**-700 for logits at +-700) and are returned as they are.
TINY_MEAN_SQUARE = 1e-300


RESOLUTION = 1e-290


def check_range(dist, grad, var, value, vvar, f_underflow, terms="f * score"):
    """Raise FloatingPointError instead of returning an estimate or standard
    error that overflowed (inf/NaN) or underflowed (a zero standard error for
    an estimate that is not itself zero at double resolution).  Every
    estimator goes through it; `terms` names its per-draw terms."""
    if not (np.isfinite(grad).all() and np.isfinite(var).all() and np.isfinite(value)
            and np.isfinite(vvar)):
        raise FloatingPointError(
            f"the estimator's sums overflowed for {dist!r}: f or {terms} is too large for "
            f"double precision (E[f] ~ {value:.3g}); rescale f (e.g. divide it by a constant, "
            "or subtract a baseline)"
        )
    with np.errstate(over="ignore", under="ignore"):
        under = (var + np.square(grad) < TINY_MEAN_SQUARE) & (np.abs(grad) > RESOLUTION)
    if under.any() or f_underflow:
        raise FloatingPointError(
            f"the estimator's sums of squares underflowed for {dist!r}: |{terms}| is below "
            "about 1e-150, so the standard errors would be 0; rescale f (multiply it by a "
            "constant and divide the estimate by it)"
        )


# Below this magnitude of the score sums, the shift and f's sums, the
# totals' algebra (_finish_totals) cannot overflow (products stay below
# 1e120, n * mean**2 below 1e260 for n <= 2**62): every output is finite and
# the range checks need only their cheap test.
_SAFE_MAGNITUDE = 1e60


class _MomentsBatch:
    """Per-stream means of the score terms of a batched or Joint call, for the
    batch-means covariance: moments() gives the per-stream moments (c0,
    count, G, H, mom, qcol) of the call's copied statistics, and the
    baseline's centre is the one baseline_algebra used."""

    __slots__ = ("moments", "baseline")

    def __init__(self, moments, baseline):
        self.moments, self.baseline = moments, baseline

    def __call__(self):
        c0, count, G, H, mom, qcol = self.moments()
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if qcol is None:
                Gt, cq = G.sum(), c0
            else:
                Gt, cq = G.sum(0)[qcol], c0[qcol]
            e, factor = baseline_centre(cq, Gt, count, mom, self.baseline)
            means = factor * (mom[2] + e * mom[0]) / np.maximum(count, 1.0)[:, None]
        return count, means


class _ScoreBatch:
    """score_stream_means of a call, computed when first called (the
    per-stream statistics are kept, S rows, nothing per draw)."""

    __slots__ = ("args",)

    def __init__(self, dist, kd, stats, shifts, baseline):
        # copies: embedded callers may reuse their statistics arrays
        self.args = (dist, kd, np.array(stats), np.array(shifts), baseline)

    def __call__(self):
        return score_stream_means(*self.args)


def _finish_totals(dist, kd, stats, shifts, baseline, info, split=None, owned=False):
    """finish_score for a family without per-category sums and a baseline
    that needs the totals only (None, a number, "loo"): the arithmetic of
    moments_total and baseline_algebra, operation for operation, on 1-d
    arrays and scalars (the totals' length-1 stream axis dropped: its sums
    are exact copies, since the kernels' totals start from +0.0), with the
    range checks done by one cheap test first: the sums, the algebra and
    the tests' reductions in one C call (K.score_totals), as small calls
    would otherwise spend their time in array overhead here.  Returns None
    when a sum is not finite (finish_score then raises the error naming the
    cause).

    split: dist._split_coords, or an equivalent precomputed for the shape
    (a prepared call); owned: stats and shifts are the caller's to give
    away (fresh arrays no one writes again), kept by the result's
    covariance without a copy, and info a dict of the caller's own."""
    # stream_totals and baseline_algebra on the totals, operation for
    # operation, with the range tests' reductions: one C call
    mode, b = ((0, 0.0) if baseline is None else (1, 0.0) if baseline == "loo"
               else (2, baseline))
    P = kd.n_coords
    c0, n, Gt, Ht, big, grad, se, var, value, vvar, qmin, qmax = K.score_totals(
        stats, shifts, P, mode, b)
    if not (math.isfinite(Gt) and math.isfinite(Ht) and math.isfinite(big)):
        return None
    safe = max(big, abs(c0), abs(Gt), abs(Ht), abs(c0 - baseline) if isinstance(baseline, float)
               else 0.0) <= _SAFE_MAGNITUDE
    n_all = max(1.0, n)
    f_underflow = Ht / n_all < TINY_MEAN_SQUARE and abs(Gt) / n_all > RESOLUTION
    if f_underflow or not P or not (qmin >= TINY_MEAN_SQUARE and (
            safe or (math.isfinite(value) and math.isfinite(vvar) and qmax < math.inf))):
        check_range(dist, grad, var, value, vvar, f_underflow)
    if owned:
        batch = _ScoreBatch.__new__(_ScoreBatch)
        batch.args = (dist, kd, stats, shifts, baseline)
        return GradientEstimate._of_score(split(grad), split(se), split(var), value,
                                          math.sqrt(vvar / n), int(n), baseline, vvar, info,
                                          batch)
    split = dist._split_coords
    return GradientEstimate(split(grad), split(se), split(var), value, math.sqrt(vvar / n),
                            int(n), baseline=baseline, method="score", value_variance=vvar,
                            info=info, batch=_ScoreBatch(dist, kd, stats, shifts, baseline))


def finish_score_owned(dist, kd, stats, shifts, baseline, info, split):
    """finish_score for a caller that gives its statistics away (see
    _finish_totals' owned) with dist's coordinates split by `split`; the
    same result, bit for bit."""
    if not kd.per_category and baseline != "optimal":
        out = _finish_totals(dist, kd, stats, shifts, baseline, info, split, True)
        if out is not None:
            return out
    return finish_score(dist, kd, stats, shifts, baseline, info)


def finish_score(dist, kd, stats, shifts, baseline, info):
    """The score-function estimate (with `baseline`) from the core kernels'
    per-stream statistics, range-checked; `info` goes into the result."""
    if not kd.per_category and baseline != "optimal":
        out = _finish_totals(dist, kd, stats, shifts, baseline, info)
        if out is not None:
            return out
    with np.errstate(over="ignore", invalid="ignore"):
        if baseline != "optimal":
            c0, count, G, H, mom = moments_total(dist, kd, stats, shifts)
        else:
            c0, count, G, H, mom = score_moments(dist, kd, stats, shifts)
    return _finish_moments(dist, c0, count, G, H, mom, baseline, info,
                           lambda: rare_floor(dist, kd, stats, shifts, float(count.sum())),
                           batch=_ScoreBatch(dist, kd, stats, shifts, baseline))


def _finish_moments(dist, c0, count, G, H, mom, baseline, info, rare_fn, qcol=None,
                    bshape=None, batch=None):
    """finish_score from the merged moments: the checks, the baseline
    algebra, the range check and the result; rare_fn() gives the rare
    category floor.  Batched expectations: qcol (the f column of each
    coordinate) and bshape (the value's shape).  batch: the per-stream
    means for the result's covariance (_ScoreBatch or _MomentsBatch)."""
    if not (np.isfinite(mom[0]).all() and np.isfinite(mom[1]).all()):
        raise FloatingPointError(
            f"the score of {dist!r} overflowed on some draws (a draw at the edge of the "
            "support, e.g. a Gamma or Beta draw that rounded to 0 or 1 for a tiny "
            "concentration, or a NaN draw); the estimate would be NaN"
        )
    if not all(np.isfinite(m).all() for m in mom) or not (np.isfinite(G).all()
                                                          and np.isfinite(H).all()):
        raise FloatingPointError(
            f"the estimator's sums overflowed for {dist!r}: f - f(first draw) or f * score is "
            "too large for double precision; rescale f (e.g. divide it by a constant)"
        )
    rare = rare_fn()
    with np.errstate(over="ignore", invalid="ignore"):
        grad, se, var, value, vse, vvar = baseline_algebra(c0, count, G, H, mom, baseline, rare,
                                                           qcol)
    n_all = max(1.0, float(count.sum()))
    if qcol is None:
        check_range(dist, grad, var, value, vvar,
                     float(H.sum()) / n_all < TINY_MEAN_SQUARE
                     and abs(float(G.sum())) / n_all > RESOLUTION)
    else:
        check_range(dist, grad, var, float(np.abs(value).max()), float(vvar.max()),
                    bool(((H.sum(0) / n_all < TINY_MEAN_SQUARE)
                          & (np.abs(G.sum(0)) / n_all > RESOLUTION)).any()))
        value, vse, vvar = (np.reshape(v, bshape) for v in (value, vse, vvar))
    info = dict(info)
    if rare is not None:
        info["rare_categories"] = rare.n_rare
    return GradientEstimate(
        dist._split_coords(grad), dist._split_coords(se), dist._split_coords(var),
        value, vse, int(count.sum()), baseline=baseline, method="score", value_variance=vvar,
        info=info, batch=batch,
    )


def finish_batched(dist, kd, stats, shifts, baseline, fcol, bshape, info):
    """finish_score for batched expectations (K.accumulate_round_batched's
    rows: [count, (sum g_k, sum g_k^2) per column k, then the per-coordinate
    or per-category sums], shifts (S, nf)): every baseline within each
    batch element; value, value_stderr of shape bshape."""
    c0, count, G, H, mom, qcol, rare_fn = batched_moments(dist, kd, stats, shifts, fcol,
                                                          total=baseline != "optimal")
    st, sh = np.array(stats), np.array(shifts)  # copies: callers may reuse theirs
    batch = _MomentsBatch(lambda: batched_moments(dist, kd, st, sh, fcol)[:6], baseline)
    return _finish_moments(dist, c0, count, G, H, mom, baseline, info, rare_fn, qcol, bshape,
                           batch=batch)


def _stream_total(d, C, G0, H0=None):
    """shift_sums summed over the streams (axis 0) by contractions: sum_s
    (G0 + d C) (and sum_s (H0 + 2 d G0 + d^2 C)), d (S, ...) broadcast
    against C (S, ...); a leading axis of length 1 is kept."""
    def dot(a, b):
        return np.einsum("s...,s...->...", *np.broadcast_arrays(a, b))[None]
    G = G0.sum(0, keepdims=True) + dot(d, C)
    if H0 is None:
        return G
    return G, H0.sum(0, keepdims=True) + 2 * dot(d, G0) + dot(d * d, C)


def batched_moments(dist, kd, stats, shifts, fcol, total=False):
    """The merged moments of batched rows (see finish_batched): (c0 (nf,),
    count, G, H (S, nf), the five score sums (S, P), each coordinate's
    column, the rare-category floor's maker).  total: the sums over the
    streams only (a leading axis of length 1), for the baselines that need
    no per-stream sums (all but "optimal")."""
    nf = shifts.shape[1]
    count = stats[:, 0]
    S = len(count)
    if total and kd.per_category and nf >= 2:
        return _category_totals(dist, kd, stats, shifts, fcol)
    merge = _stream_total if total else shift_sums
    with np.errstate(over="ignore", invalid="ignore"):
        c0, d = common_shift(count, shifts)
        C1 = count[:, None]
        G, H = merge(d, C1, stats[:, 1:1 + 2 * nf:2], stats[:, 2:2 + 2 * nf:2])
        rest = stats[:, 1 + 2 * nf:]
        n_out = np.array([count.sum()]) if total else count
        if kd.per_category:
            K_ = kd.n_cat
            cat = rest.reshape(S, kd.n_units, K_, 3)
            du = d[:, fcol]
            C = cat[..., 0]
            Gk, Hk = (merge(du[..., None], C, cat[..., 1], cat[..., 2]) if total else
                      shift_sums(du[..., None], C, cat[..., 1], cat[..., 2], squared=True))
            qcol = np.repeat(fcol, K_)
            P = kd.n_units * K_
            Cm = C.sum(0, keepdims=True) if total else C
            mom = category_moments(dist, Cm.reshape(-1, P), Gk.reshape(-1, P),
                                   Hk.reshape(-1, P), n_out[:, None], G[:, qcol], H[:, qcol])

            def rare_fn():
                return rare_floor(dist, kd, stats, shifts, float(count.sum()), du, cat)
        else:
            qcol = fcol
            M = rest.reshape(S, kd.n_coords, 5)
            Ss, Ss2, Sgs0, Sgs20, Sg2s20 = (M[..., i] for i in range(5))
            dq = d[:, qcol]
            if total:
                Sgs = merge(dq, Ss, Sgs0)
                Sgs2, Sg2s2 = merge(dq, Ss2, Sgs20, Sg2s20)
                Ss, Ss2 = Ss.sum(0, keepdims=True), Ss2.sum(0, keepdims=True)
            else:
                Sgs = shift_sums(dq, Ss, Sgs0)
                Sgs2, Sg2s2 = shift_sums(dq, Ss2, Sgs20, Sg2s20, squared=True)
            mom = (Ss, Ss2, Sgs, Sgs2, Sg2s2)

            def rare_fn():
                return None
    return c0, n_out, G, H, mom, qcol, rare_fn


def _category_totals(dist, kd, stats, shifts, fcol):
    """batched_moments(total=True) of a per-category family, its stream merge
    in one kernel pass (K.batched_category_totals: the same sums in the same
    order as _stream_total's, bit for bit, when f has two or more columns:
    with one column, NumPy sums over the streams in another order); the rare
    floor reuses the merged per-category sums."""
    count = stats[:, 0]
    K_ = kd.n_cat
    st = np.ascontiguousarray(stats)
    c0, d, G, H, Ck, Gk, Hk = K.batched_category_totals(
        st, np.ascontiguousarray(shifts), np.ascontiguousarray(fcol, np.int64), kd.n_units, K_)
    G, H = G[None], H[None]
    n_out = np.array([count.sum()])
    qcol = np.repeat(fcol, K_)
    P = kd.n_units * K_
    with np.errstate(over="ignore", invalid="ignore"):
        mom = category_moments(dist, Ck.reshape(-1, P), Gk.reshape(-1, P), Hk.reshape(-1, P),
                               n_out[:, None], G[:, qcol], H[:, qcol])

    def rare_fn():
        cat = st[:, 1 + 2 * shifts.shape[1]:].reshape(len(count), kd.n_units, K_, 3)
        return rare_floor(dist, kd, stats, shifts, float(count.sum()), d[:, fcol], cat,
                          totals=(Gk, Hk, Ck))
    return c0, n_out, G, H, mom, qcol, rare_fn


def _joint_moments(dist, parts, stats, shifts, bshape, total):
    """The components' moments side by side (see finish_joint): (c0, count,
    G, H, mom, qcol or None, the components' rare floors, their sizes);
    total: sums over the streams only (batched, baselines without
    per-stream sums)."""
    head = 3 if bshape is None else 1 + 2 * shifts.shape[1]
    moms, qcols, floors = [], [], []
    off = head
    for comp, kd, fcol in parts:
        w = kd.stats_len - 3
        st = np.concatenate([stats[:, :head], stats[:, off:off + w]], axis=1)
        off += w
        with np.errstate(over="ignore", invalid="ignore"):
            if bshape is None:
                c0, count, G, H, mom = score_moments(comp, kd, st, shifts)
                floors.append(rare_floor(comp, kd, st, shifts, float(count.sum())))
            else:
                c0, count, G, H, mom, qcol, rare_fn = batched_moments(
                    comp, kd, st, shifts, fcol, total=total)
                qcols.append(qcol)
                floors.append(rare_fn())
        moms.append(mom)
    sizes = [m[0].shape[-1] for m in moms]
    mom = tuple(np.concatenate([m[i] for m in moms], axis=-1) for i in range(5))
    return c0, count, G, H, mom, np.concatenate(qcols) if qcols else None, floors, sizes


def finish_joint(dist, parts, stats, shifts, baseline, info, bshape=None):
    """finish_score for a Joint: parts = [(component, its KernelDist, its
    f column of each coordinate or unit (batched) or None)], stats rows
    [head, then each component's own sums] (head: count, sum g, sum g^2, or
    the batched columns); the components' moments side by side, one
    baseline algebra."""
    c0, count, G, H, mom, qcol, floors, sizes = _joint_moments(
        dist, parts, stats, shifts, bshape, total=baseline != "optimal")
    rare = None
    if any(fl is not None for fl in floors):
        def rare(e, M1g, M2g):
            out, o = [], 0
            for fl, size in zip(floors, sizes):
                sl = slice(o, o + size)
                o += size
                if fl is None:
                    out.append(np.zeros(size))
                else:
                    out.append(fl(*(v[sl] if np.ndim(v) else v for v in (e, M1g, M2g))))
            return np.concatenate(out)
        rare.n_rare = sum(fl.n_rare for fl in floors if fl is not None)
    st, sh = np.array(stats), np.array(shifts)  # copies: callers may reuse theirs
    batch = _MomentsBatch(lambda: _joint_moments(dist, parts, st, sh, bshape, False)[:6],
                          baseline)
    return _finish_moments(dist, c0, count, G, H, mom, baseline, info, lambda: rare, qcol,
                           bshape, batch=batch)


def baselined_terms(fx, S, baseline):
    """Per-sample terms (f_i - b_i) * S_i of the score-function estimator on
    m independent samples: fx (m,) or (m, P), S (m, P) scores; baseline None, a number,
    "loo" (b_i = mean of the other f) or "optimal" (per coordinate the exact
    leave-one-out E[f s^2] / E[s^2]).  Their mean is the unbiased estimate."""
    m = len(fx)
    f = fx[:, None] if fx.ndim == 1 else fx  # batched: fx (m, P), each coordinate's own f
    if baseline is None:
        return f * S
    loo = (fx.sum(0) - f) / (m - 1)
    if baseline == "loo":
        return (f - loo) * S
    if baseline == "optimal":
        s2 = S * S
        num = (f * s2).sum(0) - f * s2
        den = s2.sum(0) - s2
        with np.errstate(divide="ignore", invalid="ignore"):
            b = np.where(den > 0, num / den, loo)
        return (f - b) * S
    return (f - baseline) * S



# ---------------------------------------------------------------------------
# Gram algebra: control variates, fitted coefficients, offsets
# ---------------------------------------------------------------------------

# f's values are shifted by a per-stream constant when f's first value on a
# stream is more than this many times its spread on the stream's first block
# away from 0 (see Offsets.shift); below it f is used as it is.
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


class Mag:
    """The largest |value| of f and grad_f an estimator saw: error messages
    tell an overflow of f's size from an infinite score at an edge draw."""

    def __init__(self):
        self.seen = {}

    def see(self, a, name="f"):
        if a.size:  # max |a| without an |a| temporary
            m = float(max(a.max(), -a.min()))
            self.seen[name] = max(self.seen.get(name, 0.0), m)
        return a

    @property
    def max(self):
        return max(self.seen.values(), default=0.0)

    def describe(self):
        return ", ".join(f"|{k}| reaches {v:.3g}" for k, v in self.seen.items())


def check_stats(dist, stats, shifts, P, L, terms, mag):
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


def estimate(dist, stats, shifts, P, L, coef, *, mu=None, offsets=None, terms="f * score",
              mag=None):
    """The guarded estimator algebra every estimator goes through:
    gram_estimate on the streams' statistics, after a check that they are
    finite, with the standard errors floored at rounding level, and the
    core's range check (FloatingPointError rather than an overflowed or
    underflowed estimate or standard error)."""
    check_stats(dist, stats, shifts, P, L, terms, mag)
    with np.errstate(over="ignore", invalid="ignore", under="ignore", divide="ignore"):
        out = gram_estimate(stats, shifts, P, L, coef, mu, offsets)
        grand, se, var, value, vse, vvar, n, w = out
        vms = float(stats[:, 2].sum()) / n
        vm = abs(float(stats[:, 1].sum())) / n
    check_range(dist, grand, var, value, vvar,
                   vms < TINY_MEAN_SQUARE and vm > RESOLUTION, terms=terms)
    return out


class Offsets:
    """The per-stream constants c[s, row] subtracted from the rows of f's
    values (f, and each control variate) before they reach the kernels
    (``shift``), and how they enter the features.

    Features of the form f * s are accumulated as (f - c) * s, the constant's
    part c * s being added back in the algebra (gram_estimate):
    z_l(true) = z_l + D[s, l] z_carrier with D = c @ mult.T, where column
    ``carrier`` holds the score s itself.  c[:, 0] is also added back to the
    values of f behind E[f].  Without ``mult`` the features do not depend on
    the constants (leave-one-out differences) and only E[f] uses them."""

    def __init__(self, streams, n_streams, rows, carrier=None, mult=None):
        self.c = np.zeros((streams, rows))  # streams: rows of stats this run holds
        self.n_streams = n_streams
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


class GramEstimate(tuple):
    """gram_estimate's 8-tuple (it unpacks as before) with ``batch``: the
    streams' draw counts (S,) and per-stream means (S, P) of the estimator's
    per-draw terms, from which GradientEstimate takes the correlations of
    its batch-means covariance (pass ``batch=est.batch`` to
    gradient_estimate)."""

    batch = None

    def __new__(cls, values, batch):
        self = super().__new__(cls, values)
        self.batch = batch
        return self


def gram_estimate(stats, shifts, P, L, coef, mu=None, offsets=None):
    """Estimate of E[t] with t = sum_l w_l z_l - sum_{l>=1} w_l mu_l per
    coordinate, from per-stream Gram statistics of the features z.

    coef : (L,) or (P, L) -- w_0 = 1; a number is a fixed coefficient, NaN
        a fitted one (variance-minimising, cross-fitted: the coefficients
        used on stream s are fitted on the pooled within-stream scatter of
        the other streams).
    mu : (P, L) known means of the control features (column 0 unused).
    offsets : Offsets or None -- the constants taken out of f per stream
        (added back here exactly: the features are rebased to one common
        constant, whose part is carried by the carrier column).  A carrier
        column with a fixed coefficient 0 that no offset uses is left out,
        so offset-free inputs give the same numbers as without it.
    Returns (mean, se, per-draw variance, value, value se, value variance,
    n, coefficients (S, P, L)) as a GramEstimate (its ``batch``: the
    streams' counts and per-stream means of t).
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
    return GramEstimate((grand, se, var, value + v0, math.sqrt(vvar / n), vvar, int(n), w),
                        (cnt, mean_t))



def gradient_estimate(dist, grand, se, var, value, vse, vvar, n, method, info, variance=None,
                      batch=None):
    """The GradientEstimate of a Gram-algebra estimator (split per parameter);
    `batch` (GramEstimate.batch) gives it its covariance."""
    return GradientEstimate(
        dist._split_coords(grand), dist._split_coords(se),
        dist._split_coords(var if variance is None else variance), value, vse, n,
        baseline=info.get("baseline"), method=method, value_variance=vvar, info=info,
        batch=batch)
