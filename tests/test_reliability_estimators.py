"""The same guards in every estimator, in one table.

For every estimator (score_grad with each baseline, with control variates,
with antithetic pairs; pathwise_grad; relaxed_grad; rebar_grad;
disarm_grad; rloo_grad) on the families it supports:

* offsets: f = C + g for C in {1e4, 1e8, 1e12} estimates the gradient of g
  within 5 standard errors of its closed form, and an estimator that is
  invariant to offsets (a fitted or leave-one-out baseline, differences of
  f, gradients of f) reports a standard error within a factor 4 of the one
  without the offset;
* range: f scaled to ~1e250 or ~1e-250 gives a correct result or a
  FloatingPointError, never NaN and never a zero standard error with a
  non-zero estimate;
* extreme parameters (concentrations 1e-3, logits +-700): a correct result
  or a FloatingPointError.

Exact values are closed forms written out here (moments of the family).
"""
import numpy as np
import pytest
from scipy import special

import mcscore as mc

N = 20_000
V_CAT = np.array([1.0, -2.0, 3.0])


# ---------------------------------------------------------------------------
# problems: a distribution, g, its gradient, and d E[g] / d theta in closed form
# ---------------------------------------------------------------------------

def _normal():
    mu, sd = np.array([0.5, -0.3]), np.array([1.5, 0.8])
    return (mc.Normal(mu, sd), lambda x: (x**2).sum(-1), lambda x: 2 * x,
            {"loc": 2 * mu, "scale": 2 * sd})


def _lognormal():
    mu, sd = 0.2, 0.5
    m = np.exp(mu + sd**2 / 2)
    return (mc.LogNormal(mu, sd), lambda x: x, lambda x: np.ones_like(x),
            {"loc": m, "scale": sd * m})


def _gamma():
    a, r = 2.5, 1.5
    return (mc.Gamma(a, r), lambda x: x**2, lambda x: 2 * x,
            {"concentration": (2 * a + 1) / r**2, "rate": -2 * a * (a + 1) / r**3})


def _bernoulli(logits=(0.3, -0.7), t=0.45, a=1.0):
    """g = a sum (b - t)^2 (a = 30 in the table: sd(g) ~ 2, so that an offset
    of 1e12 stays within |E f| / sd(f) <= 1e12, the promised range)."""
    th = np.asarray(logits, float)
    p = special.expit(th)
    return (mc.Bernoulli(logits=th), lambda b: a * ((b - t) ** 2).sum(-1),
            lambda b: 2 * a * (b - t), {"logits": a * p * (1 - p) * (1 - 2 * t)})


def _categorical(logits=(0.1, -0.4, 0.8)):
    th = np.asarray(logits, float)
    p = special.softmax(th)
    return (mc.Categorical(logits=th), lambda x: x @ V_CAT,
            lambda x: np.broadcast_to(V_CAT, x.shape), {"logits": p * (V_CAT - p @ V_CAT)})


PROBLEMS = {"normal": _normal, "lognormal": _lognormal, "gamma": _gamma,
            "bernoulli": lambda: _bernoulli(a=30.0), "categorical": _categorical}


# ---------------------------------------------------------------------------
# estimators: run(f, grad_f, dist) -> GradientEstimate
# ---------------------------------------------------------------------------

def _as_index_f(f, dist):
    """The score estimators get a Categorical's index, f takes one-hot vectors."""
    if isinstance(dist, mc.Categorical):
        return lambda i: f((np.asarray(i)[..., None] == np.arange(dist.n_categories)) * 1.0)
    return f


def _score(baseline):
    return lambda f, gf, d: mc.score_grad(_as_index_f(f, d), d, N, rng=1, baseline=baseline)


def _cv(baseline):
    return lambda f, gf, d: mc.score_grad(f, d, N, rng=2, baseline=baseline,
                                          control_variates=["delta"], grad_f=gf)


def _anti(baseline):
    return lambda f, gf, d: mc.score_grad(f, d, 2 * N, rng=3, baseline=baseline, antithetic=True)


def _rebar(baseline):
    return lambda f, gf, d: mc.rebar_grad(f, d, N, grad_f=gf, rng=5, baseline=baseline)


ESTIMATORS = {
    # name: (run, problems, invariant to offsets of f, unbiased)
    "score": (_score(None), ("normal", "gamma", "bernoulli", "categorical"), False, True),
    "score+loo": (_score("loo"), ("normal", "gamma", "bernoulli", "categorical"), True, True),
    "score+optimal": (_score("optimal"), ("normal", "gamma", "bernoulli", "categorical"), True,
                      True),
    "cv": (_cv(None), ("normal", "gamma"), False, True),
    "cv+optimal": (_cv("optimal"), ("normal", "gamma"), True, True),
    "antithetic": (_anti(None), ("normal", "lognormal"), False, True),
    "antithetic+optimal": (_anti("optimal"), ("normal", "lognormal"), True, True),
    "pathwise": (lambda f, gf, d: mc.pathwise_grad(f, d, N, grad_f=gf, rng=4),
                 ("normal", "lognormal", "gamma"), True, True),
    "relaxed": (lambda f, gf, d: mc.relaxed_grad(f, d, N, grad_f=gf, temperature=0.5, rng=6),
                ("bernoulli", "categorical"), True, False),
    "rebar": (_rebar(None), ("bernoulli", "categorical"), True, True),
    "rebar+optimal": (_rebar("optimal"), ("bernoulli", "categorical"), True, True),
    "disarm": (lambda f, gf, d: mc.disarm_grad(f, d, N, rng=7), ("bernoulli",), True, True),
    "rloo": (lambda f, gf, d: mc.rloo_grad(_as_index_f(f, d), d, N, k=4, rng=8),
             ("normal", "gamma", "bernoulli", "categorical"), True, True),
}

TABLE = [(e, p) for e, spec in ESTIMATORS.items() for p in spec[1]]


def _flat(d):
    return np.concatenate([np.ravel(d[k]) for k in sorted(d)])


def _assert_sane(res, exact, scale=1.0, unbiased=True):
    """Finite estimate and standard errors, no zero standard error for a
    non-zero estimate, and (unbiased) within 5 se of scale * exact."""
    g, se = _flat(res.grad), _flat(res.stderr)
    assert np.isfinite(g).all() and np.isfinite(se).all(), (g, se)
    assert np.isfinite(res.value) and np.isfinite(res.value_stderr)
    assert not ((se == 0) & (np.abs(g) > 1e-290)).any(), (g, se)
    if unbiased:
        err = np.abs(g - scale * _flat(exact))
        assert (err <= 5 * se + 1e-290).all(), (g, scale * _flat(exact), se)


# ---------------------------------------------------------------------------
# offsets
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("est,prob", TABLE)
def test_offsets_give_the_same_gradient(est, prob):
    run, _, invariant, unbiased = ESTIMATORS[est]
    dist, g, gg, exact = PROBLEMS[prob]()
    base = run(g, gg, dist)
    _assert_sane(base, exact, unbiased=unbiased)
    for C in (1e4, 1e8, 1e12):
        res = run(lambda x, C=C: C + g(x), gg, dist)
        _assert_sane(res, exact, unbiased=unbiased)
        assert abs(res.value - C - base.value) <= 5 * base.value_stderr + 1e-15 * C
        if invariant:
            ratio = _flat(res.stderr) / _flat(base.stderr)
            assert ((ratio > 0.25) & (ratio < 4)).all(), (C, ratio)
        if not unbiased:  # relaxed: grad_f only, the offset changes nothing
            np.testing.assert_allclose(_flat(res.grad), _flat(base.grad), rtol=1e-12)


def test_antithetic_pairs_are_not_snapped_with_an_offset():
    """Issue 12 item 2: a pair mean below 1e-11 of the block's mean |term|
    was set to 0, so 1e12 + x**2 gave loc 0.157 +/- 0.008 (exact 1)."""
    d = mc.Normal(0.5, 1.5)
    for f, scale in ((lambda x: 1e12 + x**2, 1.0), (lambda x: 1 + 1e-12 * x**2, 1e-12)):
        r = mc.score_grad(f, d, 40_000, rng=1, antithetic=True)
        assert abs(r.grad["loc"] - 2 * 0.5 * scale) < 5 * r.stderr["loc"]
        assert r.stderr["loc"] < 0.05 * scale


def test_offset_standard_errors_of_the_issue():
    """Issue 12 item 3: control variates, antithetic + 'optimal' and REBAR
    reported zero or far too small standard errors with an offset."""
    d = mc.Normal(0.5, 1.5)
    kw = dict(rng=1, baseline="optimal", control_variates=["delta"],
              grad_f=lambda x: 2e-4 * x)
    a = mc.score_grad(lambda x: 1e-4 * x**2, d, 40_000, **kw)
    b = mc.score_grad(lambda x: 1e4 + 1e-4 * x**2, d, 40_000, **kw)
    np.testing.assert_allclose(b.stderr["scale"], a.stderr["scale"], rtol=1e-3)
    a = mc.score_grad(lambda x: x**2, d, 40_000, rng=1, antithetic=True, baseline="optimal")
    b = mc.score_grad(lambda x: 1e8 + x**2, d, 40_000, rng=1, antithetic=True,
                      baseline="optimal")
    np.testing.assert_allclose(b.stderr["scale"], a.stderr["scale"], rtol=1e-3)
    dist, g, gg, exact = _bernoulli()
    r = mc.rebar_grad(lambda x: 1e8 + g(x), dist, 20_000, grad_f=gg, rng=1)
    assert (r.stderr["logits"] > 3e-4).all()
    assert (np.abs(r.grad["logits"] - exact["logits"]) < 5 * r.stderr["logits"]).all()


# ---------------------------------------------------------------------------
# range: f near 1e250 and 1e-250
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [1e250, 1e-250])
@pytest.mark.parametrize("est,prob", TABLE)
def test_huge_and_tiny_f_give_a_result_or_a_clear_error(est, prob, scale):
    run, _, _, unbiased = ESTIMATORS[est]
    dist, g, gg, exact = PROBLEMS[prob]()
    try:
        res = run(lambda x: scale * g(x), lambda x: scale * gg(x), dist)
    except FloatingPointError as exc:
        assert "rescale f" in str(exc)
        return
    _assert_sane(res, exact, scale, unbiased)


# ---------------------------------------------------------------------------
# extreme parameters
# ---------------------------------------------------------------------------

def _tiny(family):
    a = 1e-3
    if family == "gamma":
        return mc.Gamma(a, 1.0), lambda x: x, {"concentration": 1.0, "rate": -a}
    if family == "beta":
        return (mc.Beta(a, a), lambda x: x,
                {"concentration1": 1 / (4 * a), "concentration0": -1 / (4 * a)})
    s = 3 * a
    return (mc.Dirichlet([a] * 3), lambda x: x[..., 0],
            {"concentration": np.array([s - a, -a, -a]) / s**2})


EXTREME_CONTINUOUS = [(e, fam) for fam in ("gamma", "beta", "dirichlet")
                      for e in ("score", "score+optimal", "rloo", "pathwise", "cv-user")]


@pytest.mark.parametrize("est,family", EXTREME_CONTINUOUS)
def test_tiny_concentrations_give_a_result_or_a_clear_error(est, family):
    dist, g, exact = _tiny(family)
    zero = {k: np.zeros(np.shape(v)) for k, v in exact.items()}

    def grad_g(x):
        return np.eye(3)[0] * np.ones_like(x) if family == "dirichlet" else np.ones_like(x)

    runs = {
        "score": lambda: mc.score_grad(g, dist, N, rng=1),
        "score+optimal": lambda: mc.score_grad(g, dist, N, rng=1, baseline="optimal"),
        "rloo": lambda: mc.rloo_grad(g, dist, N, rng=1),
        "pathwise": lambda: mc.pathwise_grad(g, dist, N, rng=1, grad_f=grad_g),
        # a control variate with a known mean gradient: h = g, E[h] = E[g]
        "cv-user": lambda: mc.score_grad(g, dist, N, rng=1,
                                         control_variates=[(lambda x: 0.5 * g(x), zero)]),
    }
    try:
        res = runs[est]()
    except FloatingPointError as exc:
        assert any(w in str(exc) for w in ("edge of the support", "overflowed", "underflowed"))
        return
    # the control variate's mean gradient is deliberately wrong (0): only sanity
    _assert_sane(res, exact, unbiased=est != "cv-user")


EXTREME_DISCRETE = [(e, p) for e, spec in ESTIMATORS.items() for p in spec[1]
                    if p in ("bernoulli", "categorical")]


@pytest.mark.parametrize("est,prob", EXTREME_DISCRETE)
def test_logits_at_700_give_a_result_or_a_clear_error(est, prob):
    run, _, _, unbiased = ESTIMATORS[est]
    if prob == "bernoulli":
        dist, g, gg, exact = _bernoulli((700.0, -700.0))
    else:
        dist, g, gg, exact = _categorical((700.0, 0.0, -700.0))
    try:
        res = run(g, gg, dist)
    except FloatingPointError as exc:
        assert "edge of the support" in str(exc) or "overflowed" in str(exc)
        return
    _assert_sane(res, exact, unbiased=unbiased)


def test_rebar_categorical_with_an_underflowed_probability_is_not_nan():
    """Issue 12 item 4: logits [700, 0, -700] gave NaN (exact ~0)."""
    dist, g, gg, exact = _categorical((700.0, 0.0, -700.0))
    r = mc.rebar_grad(g, dist, 4000, grad_f=gg, rng=1)
    assert np.isfinite(r.grad["logits"]).all() and np.isfinite(r.stderr["logits"]).all()
    assert np.abs(r.grad["logits"]).max() < 1e-290


@pytest.mark.parametrize("dist", [mc.Gamma(1e-3, 1.0), mc.Beta(1e-3, 1e-3),
                                  mc.Dirichlet([1e-3] * 3)])
def test_edge_draws_raise_in_rloo_and_control_variates(dist):
    """Issue 12 item 4: these returned NaN where score_grad raises."""
    def f(x):
        return np.asarray(x, float).reshape(len(x), -1).sum(-1)

    zero = {k: np.zeros(np.shape(v)) for k, v in dist._params.items()}
    for run in (lambda: mc.rloo_grad(f, dist, N, rng=1),
                lambda: mc.score_grad(f, dist, N, rng=1, control_variates=[(f, zero)])):
        with pytest.raises(FloatingPointError, match="edge of the support"):
            run()


# ---------------------------------------------------------------------------
# floors, sizes, comparison
# ---------------------------------------------------------------------------

def test_standard_error_has_a_rounding_floor():
    """A control variate equal to f cancels it to rounding level: the
    standard error is at least the rounding error of the estimate."""
    d = mc.Normal(0.5, 1.5)

    def h(x):
        return x**2

    r = mc.score_grad(h, d, N, rng=1, control_variates=[(h, {"loc": 1.0, "scale": 3.0})])
    eps = np.finfo(float).eps
    for k, exact in (("loc", 1.0), ("scale", 3.0)):
        assert r.stderr[k] >= eps * abs(exact)
        assert abs(r.grad[k] - exact) <= 5 * r.stderr[k]


@pytest.mark.parametrize("which", ["rloo", "cv"])
def test_memory_error_names_the_size(which):
    d = mc.Categorical(logits=np.zeros(10**6))

    def f(i):
        return np.asarray(i, float)

    with pytest.raises(MemoryError, match=r"1000000 gradient coordinates.*GiB"):
        if which == "rloo":
            mc.rloo_grad(f, d, 10**6, rng=1)
        else:
            mc.score_grad(f, d, 10**6, rng=1,
                          control_variates=[(f, {"logits": np.zeros(10**6)})])


def test_compare_estimators_with_a_tiny_n_says_what_n_it_needs():
    """Issue 12 item 9: n=2 complained about baseline='optimal' only."""
    d = mc.Normal(0.5, 1.5)
    with pytest.raises(ValueError, match=r"'score\+delta'.*'score\+optimal'.*n > 256; n=2"):
        mc.compare_estimators(lambda x: x**2, d, 2, rng=1, grad_f=lambda x: 2 * x)
    c = mc.compare_estimators(lambda x: x**2, d, 2, rng=1, grad_f=lambda x: 2 * x,
                              estimators=["score", "score+loo", "pathwise"])
    assert c.names == ["score", "score+loo", "pathwise"]


def test_best_without_an_unbiased_row_explains():
    dist, g, gg, _ = _bernoulli()
    c = mc.compare_estimators(g, dist, 500, rng=1, grad_f=gg, estimators=["relaxed(tau=0.5)"])
    with pytest.raises(ValueError, match="none of the rows"):
        c.best()


def test_a_control_variate_with_an_offset_is_shifted_too():
    """A cousin: the control variate's own values carry an offset (h = C + x)."""
    d = mc.Normal(0.5, 1.5)
    kw = dict(rng=1, baseline="optimal")
    a = mc.score_grad(lambda x: x**2, d, 40_000, control_variates=[
        (lambda x: x, {"loc": 1.0, "scale": 0.0})], **kw)
    for C in (1e8, 1e12):
        b = mc.score_grad(lambda x: x**2, d, 40_000, control_variates=[
            (lambda x, C=C: C + x, {"loc": 1.0, "scale": 0.0})], **kw)
        for k, exact in (("loc", 1.0), ("scale", 3.0)):
            assert abs(b.grad[k] - exact) < 5 * b.stderr[k]
            np.testing.assert_allclose(b.stderr[k], a.stderr[k], rtol=1e-3)


def test_offset_results_do_not_depend_on_threads():
    """The per-stream constants come from each stream's first block: the
    result is bit-identical for any thread count."""
    dn, gn, ggn, _ = _normal()
    db, gb, ggb, _ = _bernoulli()
    runs = [
        lambda t: mc.score_grad(lambda x: 1e8 + gn(x), dn, 40_000, rng=1, antithetic=True,
                                baseline="optimal", n_threads=t),
        lambda t: mc.score_grad(lambda x: 1e8 + gn(x), dn, 40_000, rng=1, n_threads=t,
                                control_variates=["delta"], grad_f=ggn),
        lambda t: mc.rebar_grad(lambda x: 1e8 + gb(x), db, 40_000, grad_f=ggb, rng=1,
                                n_threads=t),
        lambda t: mc.rloo_grad(lambda x: 1e8 + gn(x), dn, 10_000, rng=1, n_threads=t),
    ]
    for run in runs:
        a, b = run(1), run(2)
        for k in a.grad:
            assert np.array_equal(a.grad[k], b.grad[k])
            assert np.array_equal(a.stderr[k], b.stderr[k])


@pytest.mark.parametrize("est,prob", [("antithetic+optimal", "normal"), ("cv+optimal", "normal"),
                                      ("rebar", "bernoulli"), ("rebar+optimal", "bernoulli")])
def test_standard_errors_with_an_offset_are_calibrated_over_seeds(est, prob):
    """Over 24 seeds, (estimate - exact) / stderr at an offset of 1e12 has
    mean ~0 and spread ~1: the standard errors are honest, not just finite."""
    dist, g, gg, exact = PROBLEMS[prob]()
    ex = _flat(exact)
    z = []
    for seed in range(24):
        kw = dict(rng=100 + seed)
        f = (lambda x: 1e12 + g(x))
        if est == "antithetic+optimal":
            r = mc.score_grad(f, dist, 8000, antithetic=True, baseline="optimal", **kw)
        elif est == "cv+optimal":
            r = mc.score_grad(f, dist, 4000, baseline="optimal", control_variates=["delta"],
                              grad_f=gg, **kw)
        else:
            r = mc.rebar_grad(f, dist, 4000, grad_f=gg,
                              baseline="optimal" if est == "rebar+optimal" else None, **kw)
        z.append((_flat(r.grad) - ex) / _flat(r.stderr))
    z = np.array(z)
    assert (np.abs(z.mean(0)) < 0.8).all(), z.mean(0)
    assert ((z.std(0) > 0.6) & (z.std(0) < 1.5)).all(), z.std(0)
