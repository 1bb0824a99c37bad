"""Independent reference values for the mcscore test suite.

Nothing here imports mcscore.  Everything is computed from scipy.stats
densities, scipy quadrature, exact sums / enumerations and closed forms, so
that Monte Carlo estimates of ``grad_theta E_{p(x; theta)}[f(x)]`` produced by
the library can be checked against values that do not share its code.

Families and parameter names follow ``torch.distributions``:

==================  =============================================  ==========
family              parameters (dict keys)                         support
==================  =============================================  ==========
Normal              loc, scale                                     real
LogNormal           loc, scale  (of log x)                         x > 0
Exponential         rate                                           x > 0
Gamma               concentration, rate                            x > 0
Beta                concentration1 (a, exponent of x),             (0, 1)
                    concentration0 (b, exponent of 1 - x)
Poisson             rate                                           0, 1, ...
Bernoulli           probs | logits                                 {0, 1}
Binomial            total_count (fixed int), probs | logits        0..N
Geometric           probs | logits   (failures before 1st success) 0, 1, ...
NegativeBinomial    total_count r (fixed), probs | logits          0, 1, ...
                    (k = successes before r failures,
                    P(k) = C(k+r-1, k) (1-p)^r p^k)
Categorical         probs (unnormalised ok) | logits, shape (K,)   0..K-1
Multinomial         total_count N (fixed), probs | logits, (K,)    counts
Dirichlet           concentration, shape (K,)                      simplex
==================  =============================================  ==========

``total_count`` is never differentiated.  Gradients / scores are returned as
``{name: value}`` dicts over the differentiable parameters (floats, or 1-d
arrays for the vector parameters of Categorical / Multinomial / Dirichlet).

Public API
----------
log_prob(family, params, x)
score_fd(family, params, x, h=1e-6)
expectation(family, params, f, points=None, detect_jumps=True)
exact_grad(family, params, f, h=None, levels=4, return_error=False,
           points=None, detect_jumps=True)
gaussian_moment(m), normal_moment(k, loc, scale)
normal_poly_grad(coeffs, loc, scale)
normal_poly_score_moments(coeffs, loc, scale, baseline=0.0)
optimal_baseline_normal_poly(coeffs, loc, scale)
gamma_moment / gamma_moment_grad, exponential_moment / exponential_moment_grad,
poisson_moment / poisson_moment_grad, bernoulli_grad, categorical_grad,
dirichlet_moment / dirichlet_moment_grad
"""

import itertools
import math
import warnings

import numpy as np
from numpy.polynomial import Polynomial
from scipy import integrate, special, stats

__all__ = [
    "FAMILIES",
    "log_prob",
    "score_fd",
    "expectation",
    "exact_grad",
    "gaussian_moment",
    "normal_moment",
    "normal_poly_grad",
    "normal_poly_score_moments",
    "optimal_baseline_normal_poly",
    "gamma_moment",
    "gamma_moment_grad",
    "exponential_moment",
    "exponential_moment_grad",
    "poisson_moment",
    "poisson_moment_grad",
    "bernoulli_grad",
    "categorical_grad",
    "dirichlet_moment",
    "dirichlet_moment_grad",
]

# ---------------------------------------------------------------------------
# family table and parameter parsing
# ---------------------------------------------------------------------------

# name -> (fixed parameter names, differentiable parameter names or None when
# the family takes exactly one of probs / logits)
_TABLE = {
    "Normal": ((), ("loc", "scale")),
    "LogNormal": ((), ("loc", "scale")),
    "Exponential": ((), ("rate",)),
    "Gamma": ((), ("concentration", "rate")),
    "Beta": ((), ("concentration1", "concentration0")),
    "Poisson": ((), ("rate",)),
    "Bernoulli": ((), None),
    "Binomial": (("total_count",), None),
    "Geometric": ((), None),
    "NegativeBinomial": (("total_count",), None),
    "Categorical": ((), None),
    "Multinomial": (("total_count",), None),
    "Dirichlet": ((), ("concentration",)),
}
FAMILIES = tuple(_TABLE)

_CONTINUOUS = ("Normal", "LogNormal", "Exponential", "Gamma", "Beta")
_DISCRETE_SCALAR = ("Poisson", "Bernoulli", "Binomial", "Geometric",
                    "NegativeBinomial")
_VECTOR = ("Categorical", "Multinomial", "Dirichlet")

_ALIASES = {name.lower(): name for name in FAMILIES}
_ALIASES.update({"lognormal": "LogNormal", "negbinomial": "NegativeBinomial",
                 "nbinom": "NegativeBinomial", "gaussian": "Normal"})


def _canon(family):
    key = str(family).replace("_", "").replace(" ", "").lower()
    try:
        return _ALIASES[key]
    except KeyError:
        raise ValueError(f"unknown family {family!r}; expected one of "
                         f"{', '.join(FAMILIES)}") from None


def _parse(family, params):
    """Return (family, values) with values an ordered dict: differentiable
    parameters first (floats / float arrays), then total_count (int)."""
    fam = _canon(family)
    fixed, diff = _TABLE[fam]
    params = dict(params)
    if diff is None:
        given = [k for k in ("probs", "logits") if k in params]
        if len(given) != 1:
            raise ValueError(f"{fam} needs exactly one of probs / logits, "
                             f"got {sorted(params)}")
        diff = tuple(given)
    allowed = set(diff) | set(fixed)
    unknown = set(params) - allowed
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)} for {fam}")
    vals = {}
    for name in diff:
        if name not in params:
            raise ValueError(f"{fam} needs parameter {name!r}")
        if fam in _VECTOR:
            v = np.array(params[name], dtype=float)
            if v.ndim != 1:
                raise ValueError(f"{fam}.{name} must be a 1-d array")
        else:
            v = float(np.asarray(params[name], dtype=float))
        vals[name] = v
    if "total_count" in fixed:
        if "total_count" in params:
            n = params["total_count"]
            if float(n) != int(n) or int(n) < 0:
                raise ValueError("total_count must be a non-negative integer")
            vals["total_count"] = int(n)
        elif fam == "NegativeBinomial":
            raise ValueError("NegativeBinomial needs total_count")
        else:                                   # torch default
            vals["total_count"] = 1
    return fam, vals


def _diff_names(vals):
    return [k for k in vals if k != "total_count"]


def _bin_probs(vals):
    """(p, q = 1 - p), both to full relative precision for logits."""
    if "logits" in vals:
        lg = vals["logits"]
        return float(special.expit(lg)), float(special.expit(-lg))
    p = vals["probs"]
    return p, 1.0 - p


def _cat_probs(vals):
    """Normalised probabilities (probs / sum, or softmax of logits)."""
    if "logits" in vals:
        return special.softmax(vals["logits"])
    pr = vals["probs"]
    return pr / pr.sum()


def _cat_logprobs(vals):
    if "logits" in vals:
        return special.log_softmax(vals["logits"])
    pr = vals["probs"]
    with np.errstate(divide="ignore"):
        return np.log(pr) - math.log(pr.sum())


# ---------------------------------------------------------------------------
# 1. log_prob (scipy.stats)
# ---------------------------------------------------------------------------


def _continuous_dist(fam, v):
    """Frozen scipy.stats distribution with torch's parameterisation."""
    if fam == "Normal":
        return stats.norm(loc=v["loc"], scale=v["scale"])
    if fam == "LogNormal":
        return stats.lognorm(s=v["scale"], scale=math.exp(v["loc"]))
    if fam == "Exponential":
        return stats.expon(scale=1.0 / v["rate"])
    if fam == "Gamma":
        return stats.gamma(a=v["concentration"], scale=1.0 / v["rate"])
    if fam == "Beta":
        return stats.beta(a=v["concentration1"], b=v["concentration0"])
    raise AssertionError(fam)


def _discrete_logpmf(fam, v, k):
    """log P(X = k) for the scalar discrete families, k an int array."""
    k = np.asarray(k)
    if fam == "Poisson":
        return stats.poisson.logpmf(k, v["rate"])
    p, q = _bin_probs(v)
    if fam == "Bernoulli":
        # use the symmetry X -> 1 - X so that scipy only ever forms 1 - (small)
        if p <= 0.5:
            return stats.bernoulli.logpmf(k, p)
        return stats.bernoulli.logpmf(1 - k, q)
    if fam == "Binomial":
        n = v["total_count"]
        if p <= 0.5:
            return stats.binom.logpmf(k, n, p)
        return stats.binom.logpmf(n - k, n, q)
    if fam == "Geometric":
        # scipy's geom counts trials (support 1, 2, ...); torch counts failures
        return stats.geom.logpmf(k + 1, p)
    if fam == "NegativeBinomial":
        # scipy's nbinom(n, p') counts failures before n successes, success
        # prob p'.  torch counts successes (prob p) before r failures, i.e.
        # the roles swap: torch NB(r, p) == scipy nbinom(r, 1 - p).
        return stats.nbinom.logpmf(k, v["total_count"], q)
    raise AssertionError(fam)


def _logprob_parsed(fam, v, x):
    if fam in _CONTINUOUS:
        return float(_continuous_dist(fam, v).logpdf(float(x)))
    if fam in _DISCRETE_SCALAR:
        xf = float(x)
        if xf != math.floor(xf):
            return -math.inf
        return float(_discrete_logpmf(fam, v, int(xf)))
    if fam == "Categorical":
        lp = _cat_logprobs(v)
        xf = float(np.asarray(x))
        if xf != math.floor(xf) or not 0 <= xf < lp.size:
            return -math.inf
        return float(lp[int(xf)])
    if fam == "Multinomial":
        x = np.asarray(x, dtype=float)
        p = _cat_probs(v)
        if x.shape != p.shape:
            raise ValueError(f"Multinomial draw must have shape {p.shape}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return float(stats.multinomial.logpmf(x, v["total_count"], p))
    if fam == "Dirichlet":
        x = np.asarray(x, dtype=float)
        a = v["concentration"]
        if x.shape != a.shape:
            raise ValueError(f"Dirichlet draw must have shape {a.shape}")
        return float(stats.dirichlet.logpdf(x, a))
    raise AssertionError(fam)


def log_prob(family, params, x):
    """log density / mass of one draw ``x`` (scalar, or 1-d array for
    Multinomial / Dirichlet; an integer index for Categorical)."""
    fam, v = _parse(family, params)
    return _logprob_parsed(fam, v, x)


# ---------------------------------------------------------------------------
# finite-difference machinery shared by score_fd and exact_grad
# ---------------------------------------------------------------------------


def _natural_scale(fam, v, name, i=None):
    """Length scale on which the parameter (component) can move: steps are a
    small multiple of it and never leave the parameter domain."""
    val = v[name] if i is None else v[name][i]
    if name == "loc":
        return v["scale"]
    if name == "logits":
        return 1.0
    if name == "probs":
        if fam in ("Categorical", "Multinomial"):     # unnormalised, > 0
            return val
        return min(val, 1.0 - val) if val < 1.0 else val   # (0, 1)
    return val                                  # positive parameters


def _with(v, name, i, value):
    w = dict(v)
    if i is None:
        w[name] = value
    else:
        arr = np.array(v[name], dtype=float)
        arr[i] = value
        w[name] = arr
    return w


def _components(v, name):
    return [None] if np.ndim(v[name]) == 0 else list(range(len(v[name])))


def _central(fun, v, name, i, h):
    x0 = v[name] if i is None else v[name][i]
    return (fun(_with(v, name, i, x0 + h)) - fun(_with(v, name, i, x0 - h))) \
        / (2.0 * h)


def _richardson(fun, v, name, i, h, levels):
    """Central differences at h, h/2, ..., refined by Richardson
    extrapolation (error expansion in h^2, h^4, ...).  Returns (value, err)."""
    table = []
    for lev in range(levels):
        row = [_central(fun, v, name, i, h / 2.0 ** lev)]
        for j in range(1, lev + 1):
            prev = table[lev - 1][j - 1]
            row.append(row[j - 1] + (row[j - 1] - prev) / (4.0 ** j - 1.0))
        table.append(row)
    best = table[-1][-1]
    err = abs(best - table[-2][-2]) if levels > 1 else math.nan
    return best, err


# ---------------------------------------------------------------------------
# 2. score by finite differences of log_prob
# ---------------------------------------------------------------------------


def score_fd(family, params, x, h=1e-6):
    """d log p(x) / d theta by central finite differences of ``log_prob``.

    The step is ``h * max(1, |theta|)`` (shrunk if needed to stay inside the
    parameter domain).  Vector parameters are perturbed one component at a
    time; for unnormalised Categorical / Multinomial probs the derivative is
    w.r.t. the raw value passed (normalisation happens inside)."""
    fam, v = _parse(family, params)

    def fun(w):
        return _logprob_parsed(fam, w, x)

    out = {}
    for name in _diff_names(v):
        comps = _components(v, name)
        res = []
        for i in comps:
            val = v[name] if i is None else v[name][i]
            step = h * max(1.0, abs(val))
            if name not in ("loc", "logits"):
                step = min(step, 0.5 * _natural_scale(fam, v, name, i))
            res.append(_central(fun, v, name, i, step))
        out[name] = res[0] if comps == [None] else np.array(res)
    return out


# ---------------------------------------------------------------------------
# 3. expectations
# ---------------------------------------------------------------------------

_QUAD_EPSREL = 1e-13
_TAIL_Q = (1e-300, 1e-100, 1e-40, 1e-16, 1e-8, 1e-4, 1e-2, 0.1, 0.3)


def _breakpoints(dist, lo, hi, extra):
    """Quantiles from 1e-300 to 1 - 1e-300 plus mode / mean, inside (lo, hi)."""
    qs = np.array(_TAIL_Q)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        # boost's beta ppf may complain at 1e-300; these are only breakpoints
        warnings.simplefilter("ignore", RuntimeWarning)
        pts = np.concatenate([dist.ppf(qs), dist.isf(qs), [dist.median()],
                              np.asarray(extra, float)])
    pts = np.unique(pts[np.isfinite(pts) & (pts > lo) & (pts < hi)])
    keep = [float(pts[0])] if pts.size else []
    for p in pts[1:]:                      # drop near-duplicate breakpoints
        if p - keep[-1] > 1e-13 * max(abs(p), abs(keep[-1])):
            keep.append(float(p))
    return keep


def _segments(dist, f, lo, hi, extra=(), log=False):
    """Pieces (integrand, a, b, mass) whose integrals sum to
    int_lo^hi f(x) pdf(x) dx, split at quantiles of dist (and at ``extra``).

    With ``log=True`` (lo = 0) the pieces are integrals over u = log x of
    f(e^u) pdf(e^u) e^u: a power-law end x^(alpha - 1) becomes a smooth
    exponential e^(alpha u), so QUADPACK never has to extrapolate towards an
    endpoint singularity (its extrapolation silently integrates from 0 when a
    piece starts at a tiny positive x)."""
    edges = [lo] + _breakpoints(dist, lo, hi, extra) + [hi]
    logpdf = dist.logpdf
    cdf = dist.cdf

    def g(x):
        w = math.exp(float(logpdf(x)))
        return 0.0 if w == 0.0 else float(f(x)) * w

    def g_log(u):
        x = math.exp(u)
        if x == 0.0 or x == math.inf:
            return 0.0
        w = math.exp(float(logpdf(x)) + u)
        return 0.0 if w == 0.0 else float(f(x)) * w

    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        mass = float(cdf(b) - cdf(a))
        if log:
            la = math.log(a) if a > 0.0 else -math.inf
            out.append((g_log, la, math.log(b), mass))
        else:
            out.append((g, a, b, mass))
    return out


def _support(fam):
    if fam == "Normal":
        return -math.inf, math.inf
    if fam == "Beta":
        return 0.0, 1.0
    return 0.0, math.inf


def _find_jumps(fam, v, f, n=2401, max_jumps=256):
    """Locations of jump discontinuities of f, found by scanning f on a grid
    that is uniform in normal scores (x = F^-1(Phi(t)), |t| <= 9) and
    bisecting every isolated spike of |f(x_{i+1}) - f(x_i)| down to adjacent
    floats.  Adaptive Gauss-Kronrod can accept a piece that contains a jump
    with an error estimate that is far too small (seen: 4e-6 absolute for an
    indicator), so jumps must be breakpoints.  Steep but smooth features may
    also be flagged; an extra breakpoint is harmless.  Jumps beyond
    |t| = 9 sit where the tail mass is < 1e-19 and are ignored."""
    dist = _continuous_dist(fam, v)
    lo, hi = _support(fam)
    t = np.linspace(-9.0, 9.0, n)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        xs = np.concatenate([dist.ppf(special.ndtr(t[t <= 0])),
                             dist.isf(special.ndtr(-t[t > 0]))])
    xs = np.unique(xs[np.isfinite(xs) & (xs > lo) & (xs < hi)])
    if xs.size < 3:
        return []

    def safe(x):        # the scan reaches far into the tails: f may overflow
        try:
            with np.errstate(all="ignore"):
                return float(f(float(x)))
        except (ArithmeticError, ValueError):
            return math.nan

    fv = np.array([safe(x) for x in xs])
    ok = np.isfinite(fv)
    xs, fv = xs[ok], fv[ok]
    if xs.size < 3:
        return []
    with np.errstate(all="ignore"):
        d = np.abs(np.diff(fv))
        nb = np.maximum(np.r_[d[1:], 0.0], np.r_[0.0, d[:-1]])
        tiny = 1e-14 * max(float(np.abs(fv).max()), 1e-300)
        cand = np.nonzero((d > 8.0 * nb) & (d > tiny))[0]
    if cand.size > max_jumps:           # rough everywhere: no useful split
        return []
    out = []
    for i in cand:
        a, b = float(xs[i]), float(xs[i + 1])
        fa, fb = fv[i], fv[i + 1]
        for _ in range(200):
            m = a + 0.5 * (b - a)
            if not a < m < b:
                break
            fm = safe(m)
            if not math.isfinite(fm):
                break
            if abs(fm - fa) >= abs(fb - fm):
                b, fb = m, fm
            else:
                a, fa = m, fm
        out.append(a + 0.5 * (b - a))
    return out


def _quad_expect(fam, v, f, points=None, detect_jumps=True):
    """E[f] by quadrature; ``points`` are extra breakpoints (x-locations
    where f jumps or kinks); jumps are also searched for automatically."""
    dist = _continuous_dist(fam, v)
    pts = [float(p) for p in (points if points is not None else ())]
    if detect_jumps:
        pts += _find_jumps(fam, v, f)
    if fam == "Normal":
        segs = _segments(dist, f, -math.inf, math.inf, [v["loc"]] + pts)
    elif fam == "LogNormal":
        m, s = v["loc"], v["scale"]
        segs = _segments(dist, f, 0.0, math.inf,
                         [math.exp(m - s * s), math.exp(m + s * s / 2)] + pts,
                         log=True)
    elif fam == "Exponential":
        segs = _segments(dist, f, 0.0, math.inf, [1.0 / v["rate"]] + pts,
                         log=True)
    elif fam == "Gamma":
        a, r = v["concentration"], v["rate"]
        segs = _segments(dist, f, 0.0, math.inf,
                         [max(a - 1.0, 0.0) / r, a / r] + pts, log=True)
    elif fam == "Beta":
        # [0, 1/2] directly; [1/2, 1] through the mirror y = 1 - x ~ Beta(b, a)
        # so that the (1 - x)^(b - 1) end is resolved in y, where it is exact.
        a, b = v["concentration1"], v["concentration0"]
        pts = pts + [a / (a + b)] + ([(a - 1) / (a + b - 2)]
                                     if a > 1 and b > 1 else [])
        mirror = stats.beta(a=b, b=a)
        segs = (_segments(dist, f, 0.0, 0.5, pts, log=True)
                + _segments(mirror, lambda y: f(1.0 - y), 0.0, 0.5,
                            [1.0 - p for p in pts], log=True))
    else:
        raise AssertionError(fam)
    # integrate the bulk first, so that the far-tail pieces can use an
    # absolute tolerance relative to the size of the answer
    segs.sort(key=lambda s: -s[3])
    parts, scale = [], 0.0
    for g, a, b, _mass in segs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", integrate.IntegrationWarning)
            val, _err = integrate.quad(g, a, b, epsabs=1e-17 * scale,
                                       epsrel=_QUAD_EPSREL, limit=400)
        parts.append(val)
        scale = max(scale, abs(val))
    return math.fsum(parts)


def _discrete_expect(fam, v, f):
    if fam == "Bernoulli":
        ks = np.arange(2)
    elif fam == "Binomial":
        ks = np.arange(v["total_count"] + 1)
    else:
        ks = None
    if ks is not None:
        pm = np.exp(_discrete_logpmf(fam, v, ks))
        return math.fsum(float(f(int(k))) * float(pk) for k, pk in zip(ks, pm))
    # unbounded support: sum up to the 1e-16 upper quantile, then keep going
    # in chunks while the chunks still matter relative to the running sum
    if fam == "Poisson":
        dist = stats.poisson(v["rate"])
    elif fam == "Geometric":
        dist = stats.geom(_bin_probs(v)[0], loc=-1)
    else:
        dist = stats.nbinom(v["total_count"], _bin_probs(v)[1])
    kmax = int(dist.isf(1e-16)) + 10
    terms, absum, start = [], 0.0, 0
    end = max(kmax, 20)
    while True:
        ks = np.arange(start, end)
        pm = np.exp(_discrete_logpmf(fam, v, ks))
        chunk = [float(f(int(k))) * float(pk) for k, pk in zip(ks, pm)]
        terms.extend(chunk)
        cabs = math.fsum(abs(t) for t in chunk)
        absum += cabs
        if start >= kmax and (cabs <= 1e-18 * absum or absum == 0.0):
            break
        if end > 50_000_000:
            raise RuntimeError("expectation sum does not converge")
        start, end = end, end + max(20, end // 4)
    return math.fsum(terms)


def _compositions(n, k):
    """All length-k non-negative integer vectors summing to n (stars and
    bars), as an (m, k) int array."""
    rows = []
    for bars in itertools.combinations(range(n + k - 1), k - 1):
        prev, row = -1, []
        for b in bars:
            row.append(b - prev - 1)
            prev = b
        row.append(n + k - 2 - prev)
        rows.append(row)
    return np.array(rows, dtype=np.int64).reshape(-1, k)


def _parse_monomials(f):
    """Dirichlet f spec -> list of (coef, powers)."""
    if isinstance(f, dict):
        return [(float(f.get("coef", 1.0)), np.asarray(f["powers"], float))]
    return [(float(c), np.asarray(p, float)) for c, p in f]


def _dirichlet_expect(v, f, points=None, detect_jumps=True):
    a = v["concentration"]
    if callable(f):
        if a.size != 2:
            raise NotImplementedError(
                "Dirichlet expectations of a callable f are only supported "
                "for K = 2 (via Beta quadrature); pass {'powers': [...]} or "
                "[(coef, powers), ...] for K > 2")
        bv = {"concentration1": float(a[0]), "concentration0": float(a[1])}
        return _quad_expect("Beta", bv, lambda t: f(np.array([t, 1.0 - t])),
                            points, detect_jumps)
    return math.fsum(c * dirichlet_moment(a, p) for c, p in _parse_monomials(f))


def _expect_parsed(fam, v, f, points=None, detect_jumps=True):
    if fam in _CONTINUOUS:
        return _quad_expect(fam, v, f, points, detect_jumps)
    if fam in _DISCRETE_SCALAR:
        return _discrete_expect(fam, v, f)
    if fam == "Categorical":
        p = _cat_probs(v)
        return math.fsum(float(f(k)) * float(p[k]) for k in range(p.size))
    if fam == "Multinomial":
        p = _cat_probs(v)
        xs = _compositions(v["total_count"], p.size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            pm = stats.multinomial.pmf(xs, v["total_count"], p)
        pm = np.atleast_1d(pm)
        return math.fsum(float(f(x.astype(float))) * float(q)
                         for x, q in zip(xs, pm))
    if fam == "Dirichlet":
        return _dirichlet_expect(v, f, points, detect_jumps)
    raise AssertionError(fam)


def expectation(family, params, f, points=None, detect_jumps=True):
    """E[f(x)] to ~1e-12 relative accuracy (w.r.t. E|f|).

    ``f`` is a plain Python function of one draw: a float for the continuous
    families, a Python int for the scalar discrete ones and for Categorical
    (the category index), a 1-d float array of counts for Multinomial.  For
    Dirichlet, f is ``{"powers": [...]}`` (optionally with "coef"), or a list
    of ``(coef, powers)`` pairs (closed form, any K), or -- only for K = 2 --
    a function of the 1-d draw (Beta quadrature).

    Continuous families (and Dirichlet K = 2, in terms of x[0]): ``points``
    are x-locations where f is not smooth, used as quadrature breakpoints.
    Jumps of f are also located automatically (``detect_jumps``) by scanning
    f on a grid and bisecting; kinks are harmless for the quadrature.
    Discrete families ignore both."""
    fam, v = _parse(family, params)
    return _expect_parsed(fam, v, f, points, detect_jumps)


# ---------------------------------------------------------------------------
# 4. exact gradients by Richardson-extrapolated central differences
# ---------------------------------------------------------------------------


def exact_grad(family, params, f, h=None, levels=4, return_error=False,
               points=None, detect_jumps=True):
    """d E[f] / d theta for every differentiable parameter.

    Central differences of ``expectation`` at steps h, h/2, ..., h/2^(levels-1)
    with Richardson extrapolation.  The default base step is 1e-2 times the
    parameter's natural length scale (scale for loc, 1 for logits, theta for
    positive parameters, min(p, 1-p) for probabilities), which keeps the
    quadrature noise (~1e-13) well below the target accuracy (~1e-9
    relative).  ``h`` (absolute) overrides the base step for every
    parameter.  With ``return_error=True`` also returns a dict of error
    estimates (difference of the last two Richardson diagonals).
    ``points`` / ``detect_jumps`` as for ``expectation``; the jump search is
    done once, at the unperturbed parameters, and reused for every step."""
    fam, v = _parse(family, params)
    pts = [] if points is None else [float(p) for p in points]
    if detect_jumps and (fam in _CONTINUOUS
                         or (fam == "Dirichlet" and callable(f))):
        if fam == "Dirichlet":
            a = v["concentration"]
            if a.size == 2:
                pts += _find_jumps(
                    "Beta", {"concentration1": float(a[0]),
                             "concentration0": float(a[1])},
                    lambda t: f(np.array([t, 1.0 - t])))
        else:
            pts += _find_jumps(fam, v, f)

    def fun(w):
        return _expect_parsed(fam, w, f, pts, False)

    grads, errs = {}, {}
    for name in _diff_names(v):
        comps = _components(v, name)
        gs, es = [], []
        for i in comps:
            step = 1e-2 * _natural_scale(fam, v, name, i) if h is None else h
            g, e = _richardson(fun, v, name, i, step, levels)
            gs.append(g)
            es.append(e)
        if comps == [None]:
            grads[name], errs[name] = gs[0], es[0]
        else:
            grads[name], errs[name] = np.array(gs), np.array(es)
    return (grads, errs) if return_error else grads


# ---------------------------------------------------------------------------
# closed forms
# ---------------------------------------------------------------------------


def gaussian_moment(m):
    """E[z^m] for z ~ N(0, 1): (m-1)!! for even m, 0 for odd m."""
    m = int(m)
    if m < 0:
        raise ValueError("m must be >= 0")
    if m % 2:
        return 0.0
    out = 1
    for j in range(m - 1, 0, -2):
        out *= j
    return float(out)


def _gauss_expect(poly):
    """E[poly(z)], z ~ N(0, 1), poly a numpy Polynomial in z."""
    return math.fsum(float(c) * gaussian_moment(j)
                     for j, c in enumerate(poly.coef))


def _poly_in_z(coeffs, loc, scale):
    """f(loc + scale z) as a Polynomial in z (coeffs increasing in x)."""
    return Polynomial(np.asarray(coeffs, float))(Polynomial([loc, scale]))


def normal_moment(k, loc, scale):
    """E[x^k] for x ~ N(loc, scale)."""
    return _gauss_expect(_poly_in_z([0.0] * int(k) + [1.0], loc, scale))


def normal_poly_grad(coeffs, loc, scale):
    """(dE/dloc, dE/dscale) of E[sum_k coeffs[k] x^k], x ~ N(loc, scale).

    dE/dloc = E[f'(x)], dE/dscale = E[f'(x) z] (reparameterisation), both
    exact Gaussian moment sums."""
    fz = _poly_in_z(coeffs, loc, scale)
    # d/dz f(loc + scale z) = scale f'(x)
    dfz = fz.deriv() / scale
    z = Polynomial([0.0, 1.0])
    return _gauss_expect(dfz), _gauss_expect(dfz * z)


def _normal_scores(scale):
    return {"loc": Polynomial([0.0, 1.0 / scale]),
            "scale": Polynomial([-1.0 / scale, 0.0, 1.0 / scale])}


def normal_poly_score_moments(coeffs, loc, scale, baseline=0.0):
    """Exact per-sample moments of the score-function estimator for
    x ~ N(loc, scale), f(x) = sum_k coeffs[k] x^k, constant baseline b.

    With z = (x - loc) / scale, score_loc = z / scale and
    score_scale = (z^2 - 1) / scale.  Returns::

        {"value": E[f], "var_f": Var[f],
         "grad": {"loc": E[(f - b) s_loc], "scale": E[(f - b) s_scale]},
         "var":  {"loc": Var[(f - b) s_loc], "scale": Var[(f - b) s_scale]}}
    """
    fz = _poly_in_z(coeffs, loc, scale)
    value = _gauss_expect(fz)
    var_f = _gauss_expect((fz - value) ** 2)
    grad, var = {}, {}
    for name, s in _normal_scores(scale).items():
        g = (fz - float(baseline)) * s
        m = _gauss_expect(g)
        grad[name] = m
        var[name] = _gauss_expect((g - m) ** 2)
    return {"value": value, "var_f": var_f, "grad": grad, "var": var}


def optimal_baseline_normal_poly(coeffs, loc, scale):
    """Variance-minimising constant baseline per parameter,
    b* = E[f s^2] / E[s^2], and the resulting Var[(f - b*) s].

    Returns ``{"baseline": {"loc": b, "scale": b}, "var": {"loc": v,
    "scale": v}}``."""
    fz = _poly_in_z(coeffs, loc, scale)
    base, var = {}, {}
    for name, s in _normal_scores(scale).items():
        s2 = s * s
        b = _gauss_expect(fz * s2) / _gauss_expect(s2)
        g = (fz - b) * s
        m = _gauss_expect(g)
        base[name] = b
        var[name] = _gauss_expect((g - m) ** 2)
    return {"baseline": base, "var": var}


def gamma_moment(k, concentration, rate):
    """E[x^k] = Gamma(a + k) / (Gamma(a) rate^k), real k > -a."""
    a, r = float(concentration), float(rate)
    return math.exp(special.gammaln(a + k) - special.gammaln(a)
                    - k * math.log(r))


def gamma_moment_grad(k, concentration, rate):
    """{"concentration": dE[x^k]/da, "rate": dE[x^k]/drate}."""
    a, r = float(concentration), float(rate)
    m = gamma_moment(k, a, r)
    return {"concentration": m * (special.digamma(a + k) - special.digamma(a)),
            "rate": -k * m / r}


def exponential_moment(k, rate):
    """E[x^k] = Gamma(k + 1) / rate^k."""
    return gamma_moment(k, 1.0, rate)


def exponential_moment_grad(k, rate):
    """{"rate": -k Gamma(k + 1) / rate^(k + 1)}."""
    return {"rate": gamma_moment_grad(k, 1.0, rate)["rate"]}


def _stirling2_row(k):
    """[S(k, 0), ..., S(k, k)], Stirling numbers of the second kind."""
    row = [1]
    for n in range(1, k + 1):
        new = [0] * (n + 1)
        for j in range(1, n + 1):
            new[j] = j * (row[j] if j < len(row) else 0) + row[j - 1]
        row = new
    return row


def poisson_moment(k, rate):
    """E[x^k] = sum_j S(k, j) rate^j (Touchard polynomial), integer k."""
    return math.fsum(s * rate ** j for j, s in enumerate(_stirling2_row(int(k))))


def poisson_moment_grad(k, rate):
    """{"rate": sum_j j S(k, j) rate^(j-1)}."""
    return {"rate": math.fsum(j * s * rate ** (j - 1)
                              for j, s in enumerate(_stirling2_row(int(k)))
                              if j > 0)}


def bernoulli_grad(f0, f1, probs=None, logits=None):
    """d E[f] for Bernoulli: (f(1) - f(0)) dp/dtheta.

    Returns {"probs": f1 - f0} or {"logits": (f1 - f0) p (1 - p)}."""
    if (probs is None) == (logits is None):
        raise ValueError("give exactly one of probs / logits")
    if probs is not None:
        return {"probs": float(f1) - float(f0)}
    p, q = special.expit(logits), special.expit(-logits)
    return {"logits": (float(f1) - float(f0)) * float(p * q)}


def categorical_grad(fvals, probs=None, logits=None):
    """d E[f] for Categorical with f(k) = fvals[k].

    logits: p_k (f_k - E f).  Unnormalised probs with sum S:
    (f_k - E f) / S."""
    if (probs is None) == (logits is None):
        raise ValueError("give exactly one of probs / logits")
    fv = np.asarray(fvals, float)
    if logits is not None:
        p = special.softmax(np.asarray(logits, float))
        return {"logits": p * (fv - p @ fv)}
    pr = np.asarray(probs, float)
    s = pr.sum()
    p = pr / s
    return {"probs": (fv - p @ fv) / s}


def dirichlet_moment(alpha, powers):
    """E[prod_k x_k^{p_k}] = Gamma(A)/Gamma(A + P) prod Gamma(a_k + p_k) /
    Gamma(a_k), A = sum a, P = sum p (real powers with a_k + p_k > 0)."""
    a = np.asarray(alpha, float)
    p = np.asarray(powers, float)
    if a.shape != p.shape:
        raise ValueError("alpha and powers must have the same shape")
    if np.any(a + p <= 0):
        raise ValueError("moment does not exist (need alpha + powers > 0)")
    A, P = a.sum(), p.sum()
    return math.exp(special.gammaln(A) - special.gammaln(A + P)
                    + math.fsum(special.gammaln(a + p) - special.gammaln(a)))


def dirichlet_moment_grad(alpha, powers):
    """{"concentration": d dirichlet_moment / d alpha_j} =
    M (psi(A) - psi(A + P) + psi(a_j + p_j) - psi(a_j))."""
    a = np.asarray(alpha, float)
    p = np.asarray(powers, float)
    m = dirichlet_moment(a, p)
    A, P = a.sum(), p.sum()
    return {"concentration": m * (special.digamma(A) - special.digamma(A + P)
                                  + special.digamma(a + p)
                                  - special.digamma(a))}
