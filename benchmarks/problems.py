"""Benchmark problems for mcscore and their exact ("true") gradients.

Each problem is a score-function (REINFORCE / likelihood-ratio) gradient

    grad_theta E_{x ~ p(x; theta)}[f(x)]  ~  1/n sum_i f(x_i) grad_theta log p(x_i; theta)

and this module gives, for every problem, the gradient computed *without*
Monte Carlo (closed forms, exact finite sums, or adaptive quadrature), plus
the exact per-sample standard deviation of the estimator's summands, so a
Monte Carlo estimate can be turned into a z-score.

Array conventions (the same in ``peers.py``): every gradient / standard
error is a float64 NumPy array of shape ``PROBLEMS[name].grad_shape``, laid
out as ``np.stack([grad wrt param 0, grad wrt param 1, ...])`` in the order
of ``PROBLEMS[name].param_names`` -- except for ``categorical``, whose only
parameter is the logit vector, so the gradient is that vector (shape (K,)).

    normal_sq        (2,)      [d/dloc, d/dscale]
    diag_gauss_quad  (2, 100)  [d/dloc_j, d/dscale_j]
    categorical      (1000,)   d/dlogit_k
    gamma_shape      (2,)      [d/dconcentration, d/drate]
    bs_delta         (2,)      [delta (d/dS0), vega (d/dsigma)]

A gradient given as a dict ``{param_name: array}`` is accepted by
``as_array`` / ``check`` and stacked in that order.

Public API
----------
PROBLEMS            dict name -> Problem (name, ns, params, param_names, ...)
TRUTHS              dict name -> exact gradient (np.ndarray, float64)
truth(name)         same as TRUTHS[name]
exact_sd(name)      exact std. dev. of one summand f(x) * score(x), per coordinate
as_array(name, g)   dict-or-array gradient -> array of the canonical shape
check(name, grad, stderr, truth=None, n=None) -> max |z| over coordinates
self_test()         re-derives the truths by independent routes (asserts)

Running ``python problems.py`` prints the truths and runs ``self_test``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import integrate, special, stats

__all__ = [
    "Problem",
    "PROBLEMS",
    "TRUTHS",
    "truth",
    "exact_sd",
    "as_array",
    "check",
    "self_test",
    "f_normal_sq",
    "f_diag_gauss_quad",
    "f_categorical",
    "f_gamma_shape",
    "bs_discounted_payoff",
]


# --------------------------------------------------------------------------
# Problem specs
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    name: str
    ns: tuple[int, ...]  # sample sizes to benchmark
    params: Mapping[str, Any]  # all numeric settings of the problem
    param_names: tuple[str, ...]  # differentiated parameters, canonical order
    grad_shape: tuple[int, ...]
    description: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


_D = 100
_K = 1000

PROBLEMS: dict[str, Problem] = {
    "normal_sq": Problem(
        name="normal_sq",
        ns=(1_000_000, 10_000_000),
        params={"loc": 0.5, "scale": 2.0},
        param_names=("loc", "scale"),
        grad_shape=(2,),
        description="x ~ Normal(loc=0.5, scale=2), f(x) = x^2, grad wrt (loc, scale)",
    ),
    "diag_gauss_quad": Problem(
        name="diag_gauss_quad",
        ns=(100_000,),
        params={
            "d": _D,
            "loc": np.linspace(-1.0, 1.0, _D),
            "scale": np.linspace(0.5, 1.5, _D),
            "shift": 1.0,
        },
        param_names=("loc", "scale"),
        grad_shape=(2, _D),
        description=(
            "x ~ Normal(loc=linspace(-1,1,100), scale=linspace(0.5,1.5,100)) "
            "(independent), f(x) = sum_j (x_j - 1)^2, grad wrt (loc, scale)"
        ),
    ),
    "categorical": Problem(
        name="categorical",
        ns=(1_000_000,),
        params={"K": _K, "logits": np.linspace(-2.0, 2.0, _K)},
        param_names=("logits",),
        grad_shape=(_K,),
        description=(
            "x ~ Categorical(logits=linspace(-2,2,1000)), x in {0..K-1}, "
            "f(x) = (x/K)^2, grad wrt logits"
        ),
    ),
    "gamma_shape": Problem(
        name="gamma_shape",
        ns=(1_000_000,),
        params={"concentration": 2.5, "rate": 1.5},
        param_names=("concentration", "rate"),
        grad_shape=(2,),
        description=(
            "x ~ Gamma(concentration=2.5, rate=1.5) (density b^a x^(a-1) e^(-bx)/Gamma(a)), "
            "f(x) = log(1+x), grad wrt (concentration, rate)"
        ),
    ),
    "bs_delta": Problem(
        name="bs_delta",
        ns=(1_000_000, 10_000_000),
        params={"S0": 100.0, "K": 105.0, "r": 0.02, "sigma": 0.25, "T": 1.0},
        param_names=("S0", "sigma"),
        grad_shape=(2,),
        description=(
            "Black-Scholes call, S_T = S0 exp((r - sigma^2/2)T + sigma sqrt(T) Z), "
            "payoff e^{-rT} (S_T - K)^+; likelihood-ratio delta (d/dS0) and vega (d/dsigma)"
        ),
    ),
}


# --------------------------------------------------------------------------
# Integrands (shared with peers.py so both sides use one definition)
# --------------------------------------------------------------------------


def f_normal_sq(x):
    return x * x


def f_diag_gauss_quad(x, shift=1.0):
    """x has shape (..., d); sum over the last axis."""
    return ((x - shift) ** 2).sum(-1)


def f_categorical(k, K=_K):
    return (k / K) ** 2


def f_gamma_shape(x):
    return np.log1p(x)


def bs_discounted_payoff(ST, K, r, T):
    return math.exp(-r * T) * np.maximum(ST - K, 0.0)


# --------------------------------------------------------------------------
# Helpers: Gauss-Hermite expectations under a normal
# --------------------------------------------------------------------------

_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(60)  # weight exp(-x^2/2)
_GH_W = _GH_W / math.sqrt(2.0 * math.pi)  # -> expectation under N(0,1)


def _normal_expect(fn, m, s):
    """E[fn(x)] for x ~ N(m, s^2); exact for polynomials of degree <= 119."""
    x = m + s * _GH_X
    return float(np.sum(_GH_W * fn(x)))


def _quad(fn, a, b, **kw):
    opts = dict(epsabs=1e-14, epsrel=1e-12, limit=500)
    opts.update(kw)
    val, err = integrate.quad(fn, a, b, **opts)
    return val


# --------------------------------------------------------------------------
# Exact gradients
# --------------------------------------------------------------------------


def _truth_normal_sq():
    p = PROBLEMS["normal_sq"].params
    # E x^2 = loc^2 + scale^2
    return np.array([2.0 * p["loc"], 2.0 * p["scale"]])


def _truth_diag_gauss_quad():
    p = PROBLEMS["diag_gauss_quad"].params
    # E f = sum_j (loc_j - shift)^2 + scale_j^2
    return np.stack([2.0 * (p["loc"] - p["shift"]), 2.0 * p["scale"]])


def _categorical_pf():
    p = PROBLEMS["categorical"].params
    logits = np.asarray(p["logits"], dtype=np.float64)
    z = logits - logits.max()
    prob = np.exp(z)
    prob /= prob.sum()
    fk = f_categorical(np.arange(p["K"], dtype=np.float64), p["K"])
    return prob, fk


def _truth_categorical():
    prob, fk = _categorical_pf()
    # E f = sum_k p_k f_k ; d p_j / d logit_k = p_j (delta_jk - p_k)
    ef = float(np.dot(prob, fk))
    return prob * (fk - ef)


def _gamma_logpdf(x, a, b):
    return a * math.log(b) + (a - 1.0) * math.log(x) - b * x - math.lgamma(a)


def _gamma_Ef(a, b):
    return _quad(lambda x: math.log1p(x) * math.exp(_gamma_logpdf(x, a, b)), 0.0, np.inf)


def _truth_gamma_shape():
    p = PROBLEMS["gamma_shape"].params
    a, b = p["concentration"], p["rate"]
    psi = float(special.digamma(a))

    def dens(x):
        return math.exp(_gamma_logpdf(x, a, b))

    # d/dtheta int f p = int f (d/dtheta log p) p  (differentiation under the integral)
    ga = _quad(lambda x: math.log1p(x) * (math.log(b) + math.log(x) - psi) * dens(x), 0.0, np.inf)
    gb = _quad(lambda x: math.log1p(x) * (a / b - x) * dens(x), 0.0, np.inf)
    return np.array([ga, gb])


def _bs_d1(S0, K, r, sigma, T):
    return (math.log(S0 / K) + (r + 0.5 * sigma * sigma) * T) / (sigma * math.sqrt(T))


def _truth_bs_delta():
    p = PROBLEMS["bs_delta"].params
    S0, K, r, sigma, T = p["S0"], p["K"], p["r"], p["sigma"], p["T"]
    d1 = _bs_d1(S0, K, r, sigma, T)
    delta = float(stats.norm.cdf(d1))
    vega = S0 * float(stats.norm.pdf(d1)) * math.sqrt(T)
    return np.array([delta, vega])


_TRUTH_FUNCS = {
    "normal_sq": _truth_normal_sq,
    "diag_gauss_quad": _truth_diag_gauss_quad,
    "categorical": _truth_categorical,
    "gamma_shape": _truth_gamma_shape,
    "bs_delta": _truth_bs_delta,
}

TRUTHS: dict[str, np.ndarray] = {name: fn() for name, fn in _TRUTH_FUNCS.items()}
for _v in TRUTHS.values():
    _v.setflags(write=False)


def truth(name: str) -> np.ndarray:
    return TRUTHS[name]


# --------------------------------------------------------------------------
# Exact per-sample standard deviations  sd(f(x) * score(x))
# --------------------------------------------------------------------------
# Used (a) by check() when an implementation gives no stderr, and (b) to
# sanity-check implementations' stderr: stderr ~= exact_sd / sqrt(n).


def _sd_normal_sq():
    p = PROBLEMS["normal_sq"].params
    m, s = p["loc"], p["scale"]
    e2_loc = _normal_expect(lambda x: (x * x * (x - m) / s**2) ** 2, m, s)
    e2_scale = _normal_expect(lambda x: (x * x * (((x - m) / s) ** 2 - 1.0) / s) ** 2, m, s)
    g = TRUTHS["normal_sq"]
    return np.sqrt(np.array([e2_loc, e2_scale]) - g**2)


def _sd_diag_gauss_quad():
    p = PROBLEMS["diag_gauss_quad"].params
    mu, sg, c = p["loc"], p["scale"], p["shift"]
    d = len(mu)
    # B_j = (x_j - c)^2: mean and variance
    eB = (mu - c) ** 2 + sg**2
    vB = 2.0 * sg**4 + 4.0 * (mu - c) ** 2 * sg**2
    out = np.empty((2, d))
    for k in range(d):
        m, s = mu[k], sg[k]
        # A = sum_{j != k} B_j, independent of x_k
        eA = eB.sum() - eB[k]
        eA2 = (vB.sum() - vB[k]) + eA**2
        for row, sc in enumerate(
            (lambda x: (x - m) / s**2, lambda x: (((x - m) / s) ** 2 - 1.0) / s)
        ):
            e_s2 = _normal_expect(lambda x: sc(x) ** 2, m, s)
            e_Bs2 = _normal_expect(lambda x: (x - c) ** 2 * sc(x) ** 2, m, s)
            e_B2s2 = _normal_expect(lambda x: (x - c) ** 4 * sc(x) ** 2, m, s)
            out[row, k] = eA2 * e_s2 + 2.0 * eA * e_Bs2 + e_B2s2
    return np.sqrt(out - TRUTHS["diag_gauss_quad"] ** 2)


def _sd_categorical():
    prob, fk = _categorical_pf()
    # summand_k(x=j) = f_j (1[j=k] - p_k)
    # E[summand_k^2] = sum_j p_j f_j^2 (1[j=k] - p_k)^2
    #               = p_k f_k^2 (1 - 2 p_k) + p_k^2 sum_j p_j f_j^2
    ef2 = float(np.dot(prob, fk**2))
    e2 = prob * fk**2 * (1.0 - 2.0 * prob) + prob**2 * ef2
    return np.sqrt(e2 - TRUTHS["categorical"] ** 2)


def _sd_gamma_shape():
    p = PROBLEMS["gamma_shape"].params
    a, b = p["concentration"], p["rate"]
    psi = float(special.digamma(a))

    def dens(x):
        return math.exp(_gamma_logpdf(x, a, b))

    e2a = _quad(lambda x: (math.log1p(x) * (math.log(b) + math.log(x) - psi)) ** 2 * dens(x), 0.0, np.inf)
    e2b = _quad(lambda x: (math.log1p(x) * (a / b - x)) ** 2 * dens(x), 0.0, np.inf)
    return np.sqrt(np.array([e2a, e2b]) - TRUTHS["gamma_shape"] ** 2)


# Upper limit of the Z-integrals: phi(40) ~ 1e-348, i.e. the tail beyond is
# exactly 0 in float64 (an infinite limit makes quad overflow exp()).
_BS_ZMAX = 40.0


def _bs_z_star():
    p = PROBLEMS["bs_delta"].params
    S0, K, r, sigma, T = p["S0"], p["K"], p["r"], p["sigma"], p["T"]
    return (math.log(K / S0) - (r - 0.5 * sigma**2) * T) / (sigma * math.sqrt(T))


def _bs_lr_integrands():
    """(payoff(z), delta score(z), vega score(z)) as scalar functions of Z."""
    p = PROBLEMS["bs_delta"].params
    S0, K, r, sigma, T = p["S0"], p["K"], p["r"], p["sigma"], p["T"]
    sq = math.sqrt(T)

    def payoff(z):
        ST = S0 * math.exp((r - 0.5 * sigma**2) * T + sigma * sq * z)
        return math.exp(-r * T) * max(ST - K, 0.0)

    def s_delta(z):
        return z / (S0 * sigma * sq)

    def s_vega(z):
        return (z * z - 1.0) / sigma - z * sq

    return payoff, s_delta, s_vega


def _sd_bs_delta():
    payoff, sd_, sv_ = _bs_lr_integrands()
    zs = _bs_z_star()
    phi = lambda z: math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)  # noqa: E731
    e2d = _quad(lambda z: (payoff(z) * sd_(z)) ** 2 * phi(z), zs, _BS_ZMAX)
    e2v = _quad(lambda z: (payoff(z) * sv_(z)) ** 2 * phi(z), zs, _BS_ZMAX)
    return np.sqrt(np.array([e2d, e2v]) - TRUTHS["bs_delta"] ** 2)


_SD_FUNCS = {
    "normal_sq": _sd_normal_sq,
    "diag_gauss_quad": _sd_diag_gauss_quad,
    "categorical": _sd_categorical,
    "gamma_shape": _sd_gamma_shape,
    "bs_delta": _sd_bs_delta,
}


@lru_cache(maxsize=None)
def _exact_sd_cached(name):
    out = _SD_FUNCS[name]()
    out.setflags(write=False)
    return out


def exact_sd(name: str) -> np.ndarray:
    """Exact standard deviation of one summand f(x) * d/dtheta log p(x; theta),
    per coordinate (same shape as the gradient).  The exact standard error of
    the plain n-sample average is exact_sd(name) / sqrt(n)."""
    return _exact_sd_cached(name)


# --------------------------------------------------------------------------
# Checking estimates
# --------------------------------------------------------------------------


def as_array(name: str, grad) -> np.ndarray:
    """Convert a gradient given as an array or as a dict {param_name: value}
    (keys as in PROBLEMS[name].param_names) to the canonical float64 array."""
    prob = PROBLEMS[name]
    if isinstance(grad, Mapping):
        missing = [k for k in prob.param_names if k not in grad]
        if missing:
            raise KeyError(f"{name}: gradient dict lacks {missing}; expected keys {prob.param_names}")
        parts = [np.asarray(grad[k], dtype=np.float64) for k in prob.param_names]
        arr = parts[0] if len(parts) == 1 else np.stack([np.broadcast_to(p, parts[0].shape) for p in parts])
    else:
        arr = np.asarray(grad, dtype=np.float64)
    if arr.shape != prob.grad_shape:
        arr = arr.reshape(prob.grad_shape)  # raises on a size mismatch
    return arr


def check(name: str, grad, stderr=None, truth=None, n: int | None = None) -> float:
    """Return max over coordinates of |grad - truth| / stderr.

    grad, stderr: arrays (canonical shape, or anything reshapeable to it) or
    dicts keyed by parameter name.  truth defaults to TRUTHS[name].  If
    stderr is None (an implementation that reports no standard error), the
    exact standard error exact_sd(name) / sqrt(n) is used, which needs n.
    """
    g = as_array(name, grad)
    t = TRUTHS[name] if truth is None else as_array(name, truth)
    if stderr is None:
        if n is None:
            raise ValueError("check(): stderr is None, so the sample size n is needed")
        se = exact_sd(name) / math.sqrt(n)
    else:
        se = as_array(name, stderr)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(g - t) / se
    if not np.all(np.isfinite(g)):
        return float("inf")
    z = np.where(se > 0, z, np.where(g == t, 0.0, np.inf))
    return float(np.max(z))


# --------------------------------------------------------------------------
# Independent re-derivations of the truths
# --------------------------------------------------------------------------


def self_test(verbose: bool = False) -> None:
    """Recompute each truth by a different route and assert agreement."""
    rel = lambda a, b: float(np.max(np.abs(np.asarray(a) - b) / np.maximum(np.abs(b), 1e-300)))  # noqa: E731

    # P1: score-function integral by Gauss-Hermite (exact for polynomials)
    p = PROBLEMS["normal_sq"].params
    m, s = p["loc"], p["scale"]
    g = [
        _normal_expect(lambda x: x * x * (x - m) / s**2, m, s),
        _normal_expect(lambda x: x * x * (((x - m) / s) ** 2 - 1.0) / s, m, s),
    ]
    assert rel(g, TRUTHS["normal_sq"]) < 1e-12, (g, TRUTHS["normal_sq"])

    # P2: same per coordinate (f's other coordinates contribute E[A] * E[score] = 0)
    p = PROBLEMS["diag_gauss_quad"].params
    gl = [_normal_expect(lambda x: (x - 1.0) ** 2 * (x - m_) / s_**2, m_, s_) for m_, s_ in zip(p["loc"], p["scale"])]
    gs = [
        _normal_expect(lambda x: (x - 1.0) ** 2 * (((x - m_) / s_) ** 2 - 1.0) / s_, m_, s_)
        for m_, s_ in zip(p["loc"], p["scale"])
    ]
    assert np.allclose(np.stack([gl, gs]), TRUTHS["diag_gauss_quad"], rtol=1e-12, atol=1e-12)

    # P3: central finite differences of the exact sum E f(logits)
    p = PROBLEMS["categorical"].params
    logits = np.asarray(p["logits"], dtype=np.float64)
    fk = f_categorical(np.arange(p["K"], dtype=np.float64), p["K"])

    def Ef(lg):
        w = np.exp(lg - lg.max())
        return float(np.dot(w, fk) / w.sum())

    h = 1e-5
    for k in (0, 1, 317, 500, 998, 999):
        e = np.zeros_like(logits)
        e[k] = h
        fd = (Ef(logits + e) - Ef(logits - e)) / (2 * h)
        assert abs(fd - TRUTHS["categorical"][k]) < 1e-9, (k, fd, TRUTHS["categorical"][k])
    assert abs(TRUTHS["categorical"].sum()) < 1e-15  # softmax shift-invariance

    # P4: (a) Richardson-extrapolated central differences of the quadrature of E f;
    #     (b) pathwise form of d/drate: X = G/b, G ~ Gamma(a, 1):
    #         d/db E log(1+G/b) = -E[X/(1+X)] / b
    p = PROBLEMS["gamma_shape"].params
    a, b = p["concentration"], p["rate"]

    def cdiff(fun, x0, h):
        return (fun(x0 + h) - fun(x0 - h)) / (2 * h)

    def richardson(fun, x0, h=1e-3):
        return (4.0 * cdiff(fun, x0, h / 2) - cdiff(fun, x0, h)) / 3.0

    fd_a = richardson(lambda aa: _gamma_Ef(aa, b), a)
    fd_b = richardson(lambda bb: _gamma_Ef(a, bb), b)
    path_b = -_quad(lambda x: x / (1.0 + x) * math.exp(_gamma_logpdf(x, a, b)), 0.0, np.inf) / b
    tg = TRUTHS["gamma_shape"]
    assert rel([fd_a, fd_b], tg) < 1e-8, ([fd_a, fd_b], tg)
    assert rel(path_b, tg[1]) < 1e-11, (path_b, tg[1])

    # P5: quadrature of the likelihood-ratio integrands themselves, plus
    #     finite differences of the Black-Scholes price.
    payoff, sd_, sv_ = _bs_lr_integrands()
    zs = _bs_z_star()
    phi = lambda z: math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)  # noqa: E731
    q = [_quad(lambda z: payoff(z) * sd_(z) * phi(z), zs, _BS_ZMAX), _quad(lambda z: payoff(z) * sv_(z) * phi(z), zs, _BS_ZMAX)]
    tb = TRUTHS["bs_delta"]
    assert rel(q, tb) < 1e-9, (q, tb)
    pb = PROBLEMS["bs_delta"].params

    def price(S0, sigma):
        d1 = _bs_d1(S0, pb["K"], pb["r"], sigma, pb["T"])
        d2 = d1 - sigma * math.sqrt(pb["T"])
        return S0 * stats.norm.cdf(d1) - pb["K"] * math.exp(-pb["r"] * pb["T"]) * stats.norm.cdf(d2)

    fdd = richardson(lambda S: price(S, pb["sigma"]), pb["S0"], 1e-2)
    fdv = richardson(lambda sg: price(pb["S0"], sg), pb["sigma"], 1e-4)
    assert rel([fdd, fdv], tb) < 1e-8, ([fdd, fdv], tb)

    # exact_sd: finite and positive everywhere
    for name in PROBLEMS:
        sd = exact_sd(name)
        assert sd.shape == PROBLEMS[name].grad_shape and np.all(np.isfinite(sd)) and np.all(sd > 0), name

    if verbose:
        print("self_test: all truths re-derived independently (ok)")


if __name__ == "__main__":
    np.set_printoptions(precision=12, linewidth=110)
    for name, prob in PROBLEMS.items():
        t = TRUTHS[name]
        sd = exact_sd(name)
        print(f"{name}: ns={prob.ns} grad shape={prob.grad_shape}")
        if t.size <= 4:
            print("   truth      =", t)
            print("   exact sd   =", sd)
        else:
            print(f"   truth      : min={t.min():.6g} max={t.max():.6g} first={t.ravel()[:3]}")
            print(f"   exact sd   : min={sd.min():.6g} max={sd.max():.6g}")
    self_test(verbose=True)
