"""Reliability tables for the public functions built on the core: the other
gradient estimators (``pathwise_grad``, ``relaxed_grad``, ``rebar_grad``,
``disarm_grad``, ``rloo_grad``, ``compare_estimators``), the relaxed
distributions, ``score_grad``'s variance-reduction arguments, and the
applications ``mcscore.finance``, ``mcscore.vi`` and ``mcscore.rl``.

What was tried (each row is one test, ``Call(id, thunk, expect)`` as in
``test_reliability.py``; ``expect`` is (exception type, regex naming the
argument) or a checker of the result):

* every numeric argument: NaN, +-inf, negative, zero, out of range,
  fractional where an integer is wanted, huge, a string, a boolean, None,
  complex, an object array, an empty and a 0-d array, a wrong shape;
* every callable argument (f, grad_f, h of a control variate, log_joint):
  None, not callable, raising, returning None / a list / the wrong shape /
  a complex or string or object dtype / NaN / inf;
* every choice argument (payoff, method, baseline, eta, estimators, ...):
  unknown names and wrong types;
* ``RISKY_APPS``: huge n / steps / episodes, run in a subprocess with an
  address-space limit: the interpreter must survive with a clear error.
"""
import textwrap

import numpy as np
import pytest

import mcscore as mc
from mcscore import finance, rl, vi

from test_reliability import Call, _run_py

VE, TE = ValueError, TypeError
FPE = FloatingPointError

NORM = mc.Normal(0.5, 1.5)
BERN = mc.Bernoulli(logits=[0.3, -0.7])
CAT = mc.Categorical(logits=[0.0, 1.0, -1.0])


def _sq(x):
    return (np.asarray(x, float) ** 2).reshape(len(x), -1).sum(1)


def _dsq(x):
    return 2.0 * np.asarray(x, float)


def _is_estimate(r):
    assert isinstance(r, mc.GradientEstimate)
    for k in r.grad:
        assert np.isfinite(r.grad[k]).all() and np.isfinite(r.stderr[k]).all(), k
    assert np.isfinite(r.value)


def _finite_greeks(r):
    assert isinstance(r, finance.Greeks)
    for k in finance.GREEKS:
        assert np.isfinite(getattr(r, k)) and np.isfinite(r.stderr[k]), k


# Bad values for the common kinds of argument: label -> (value, expected)
def _n_cases(name, minimum=2):
    return {
        "zero": (0, (VE, rf"{name} must be >= {minimum}")),
        "one": (1, (VE, rf"{name} must be >= {minimum}")) if minimum > 1 else None,
        "negative": (-5, (VE, rf"{name} must be >=")),
        "fractional": (2.5, (TE, rf"{name} must be an integer")),
        "nan": (float("nan"), (TE, rf"{name} must be an integer")),
        "inf": (float("inf"), (TE, rf"{name} must be an integer")),
        "string": ("10", (TE, rf"{name} must be an integer")),
        "bool": (True, (TE, rf"{name} must be an integer")),
        "None": (None, (TE, rf"{name} must be an integer")),
        "complex": (3 + 0j, (TE, rf"{name} must be an integer")),
        "array": (np.array([8, 8]), (TE, rf"{name} must be an integer")),
    }


def _positive_cases(name):
    return {
        "nan": (float("nan"), (VE, name)),
        "inf": (float("inf"), (VE, name)),
        "-inf": (-float("inf"), (VE, name)),
        "negative": (-1.0, (VE, name)),
        "zero": (0.0, (VE, name)),
        "string": ("1.0", (TE, name)),
        "bool": (True, (TE, name)),
        "None": (None, (TE, name)),
        "complex": (1 + 1j, (TE, name)),
        "object": (np.array([1.0], dtype=object), (TE, name)),
        "empty": (np.zeros(0), ((TE, VE), name)),
        "vector": (np.array([0.5, 0.5]), ((TE, VE), name)),
    }


def _rows(prefix, thunk_of, cases):
    """Rows ``prefix-label`` calling thunk_of(value) for each case."""
    out = []
    for label, case in cases.items():
        if case is None:
            continue
        value, expect = case
        out.append(Call(f"{prefix}-{label}", (lambda v=value: thunk_of(v)), expect))
    return out


def _bad_f_cases(name):
    """f that raises, returns None / a list / the wrong shape / wrong dtype / NaN / inf."""
    return {
        "None-callable": (None, (TE, name)),
        "not-callable": ("x**2", (TE, name)),
        "raises": (lambda x: (_ for _ in ()).throw(ArithmeticError("boom")),
                   (ArithmeticError, "boom")),
        "returns-None": (lambda x: None, (TE, f"{name} returned")),
        "returns-list": (lambda x: list(_sq(x)), "ok"),
        "returns-scalar": (lambda x: 1.0, (VE, f"{name} returned a scalar")),
        "returns-2d": (lambda x: np.stack([_sq(x), _sq(x)]), (VE, f"{name} returned shape")),
        "returns-complex": (lambda x: _sq(x) + 1j, (TE, f"{name} returned")),
        "returns-strings": (lambda x: np.array(["a"] * len(x)), (TE, f"{name} returned")),
        "returns-object-None": (lambda x: np.array([None] * len(x)), (TE, f"{name} returned")),
        "returns-nan": (lambda x: _sq(x) + np.nan, (VE, f"{name} returned")),
        "returns-inf": (lambda x: _sq(x) + np.inf, (VE, f"{name} returned")),
        "returns-bool": (lambda x: _sq(x) > 1.0, "ok"),
        "returns-float32": (lambda x: _sq(x).astype(np.float32), "ok"),
        "returns-dict": (lambda x: {"a": 1.0}, (TE, f"{name} returned")),
    }


def _bad_grad_cases(name):
    return {
        "None-callable": (None, (TE, name)),
        "not-callable": (3.0, (TE, name)),
        "raises": (lambda x: (_ for _ in ()).throw(ArithmeticError("boom")),
                   (ArithmeticError, "boom")),
        "returns-None": (lambda x: None, (TE, f"{name} returned None")),
        "returns-list": (lambda x: _dsq(x).tolist(), "ok"),
        "returns-wrong-shape": (lambda x: _dsq(x)[:, None], (VE, f"{name} returned shape")),
        "returns-scalar": (lambda x: 1.0, (VE, f"{name} returned shape")),
        "returns-complex": (lambda x: _dsq(x) + 1j, (TE, f"{name} returned dtype")),
        "returns-strings": (lambda x: np.full(np.shape(x), "a"), (TE, f"{name} returned dtype")),
        "returns-nan": (lambda x: _dsq(x) * np.nan, (VE, f"{name} returned a non-finite")),
        "returns-inf": (lambda x: _dsq(x) + np.inf, (VE, f"{name} returned a non-finite")),
        "returns-bool": (lambda x: _dsq(x) > 0, "ok"),
        "returns-object": (lambda x: np.array(_dsq(x), dtype=object), (TE, f"{name} returned dtype")),
    }


def _dist_cases(name):
    return {
        "None": (None, (TE, name)),
        "string": ("Normal", (TE, name)),
        "scipy-like": (object(), (TE, name)),
    }


# ---------------------------------------------------------------------------
# the estimators
# ---------------------------------------------------------------------------

def _pw(**kw):
    a = dict(f=_sq, dist=NORM, n=200, grad_f=_dsq, rng=0)
    a.update(kw)
    return mc.pathwise_grad(a.pop("f"), a.pop("dist"), a.pop("n"), **a)


def _rx(**kw):
    a = dict(f=_sq, dist=BERN, n=200, grad_f=_dsq, temperature=0.5, rng=0)
    a.update(kw)
    return mc.relaxed_grad(a.pop("f"), a.pop("dist"), a.pop("n"), **a)


def _rb(**kw):
    a = dict(f=_sq, dist=BERN, n=200, grad_f=_dsq, rng=0, block_size=16)
    a.update(kw)
    return mc.rebar_grad(a.pop("f"), a.pop("dist"), a.pop("n"), **a)


def _da(**kw):
    a = dict(f=_sq, dist=BERN, n=200, rng=0)
    a.update(kw)
    return mc.disarm_grad(a.pop("f"), a.pop("dist"), a.pop("n"), **a)


def _rl(**kw):
    a = dict(f=_sq, dist=NORM, n=200, rng=0)
    a.update(kw)
    return mc.rloo_grad(a.pop("f"), a.pop("dist"), a.pop("n"), **a)


def _cmp(**kw):
    a = dict(f=_sq, dist=NORM, n=2048, grad_f=_dsq, rng=0)
    a.update(kw)
    return mc.compare_estimators(a.pop("f"), a.pop("dist"), a.pop("n"), **a)


def _sgvr(**kw):
    a = dict(f=_sq, dist=NORM, n=200, rng=0, control_variates=["delta"], grad_f=_dsq,
             baseline="optimal", block_size=16)
    a.update(kw)
    return mc.score_grad(a.pop("f"), a.pop("dist"), a.pop("n"), **a)


def _common_rows(fname, run, *, grad=True, temperature=False):
    rows = []
    rows += _rows(f"{fname}-n", lambda v: run(n=v), _n_cases("n"))
    rows += _rows(f"{fname}-f", lambda v: run(f=v), _bad_f_cases("f"))
    rows += _rows(f"{fname}-dist", lambda v: run(dist=v), _dist_cases("dist"))
    if grad:
        rows += _rows(f"{fname}-grad_f", lambda v: run(grad_f=v), _bad_grad_cases("grad_f"))
    if temperature:
        rows += _rows(f"{fname}-temperature", lambda v: run(temperature=v),
                      _positive_cases("temperature"))
    rows += [
        Call(f"{fname}-n-beyond-2**62", lambda: run(n=2**62 + 1), (VE, "n must be <=")),
        Call(f"{fname}-rng-string", lambda: run(rng="seed"), (TE, "rng")),
        Call(f"{fname}-rng-negative", lambda: run(rng=-1), (VE, "")),
        Call(f"{fname}-rng-generator", lambda: run(rng=np.random.default_rng(1)), _is_estimate),
        Call(f"{fname}-n_threads-zero", lambda: run(n_threads=0), (VE, "n_threads")),
        Call(f"{fname}-n_threads-string", lambda: run(n_threads="2"), (TE, "n_threads")),
        Call(f"{fname}-chunk_size-zero", lambda: run(chunk_size=0), (VE, "chunk_size")),
        Call(f"{fname}-chunk_size-one", lambda: run(chunk_size=1), _is_estimate),
        Call(f"{fname}-n_streams-zero", lambda: run(n_streams=0), (VE, "n_streams")),
    ]
    return rows


CALL_TABLE_APPS = []
CALL_TABLE_APPS += _common_rows("pathwise_grad", _pw)
CALL_TABLE_APPS += [
    Call("pathwise_grad-dist-bernoulli", lambda: _pw(dist=BERN), (VE, "pathwise_grad supports")),
    Call("pathwise_grad-dist-poisson", lambda: _pw(dist=mc.Poisson(3.0)),
         (VE, "pathwise_grad supports")),
    Call("pathwise_grad-block_size-zero", lambda: _pw(block_size=0), (VE, "block_size")),
    Call("pathwise_grad-vector-normal", lambda: _pw(dist=mc.Normal(np.zeros(3), 1.0)),
         _is_estimate),
    Call("pathwise_grad-empty-batch", lambda: _pw(dist=mc.Normal(np.zeros(0), 1.0)),
         lambda r: np.testing.assert_equal(r.grad["loc"].shape, (0,))),
    Call("pathwise_grad-dirichlet", lambda: _pw(dist=mc.Dirichlet([1.0, 2.0, 3.0])),
         _is_estimate),
    Call("pathwise_grad-gamma", lambda: _pw(dist=mc.Gamma(2.0, 3.0)), _is_estimate),
]
CALL_TABLE_APPS += _common_rows("relaxed_grad", _rx, temperature=True)
CALL_TABLE_APPS += [
    Call("relaxed_grad-dist-normal", lambda: _rx(dist=NORM), (VE, "relaxed_grad supports")),
    Call("relaxed_grad-temperature-missing", lambda: _rx(temperature=None), (TE, "temperature")),
    Call("relaxed_grad-temperature-from-dist",
         lambda: _rx(temperature=None, dist=mc.RelaxedBernoulli(0.5, logits=[0.3, -0.7])),
         _is_estimate),
    Call("relaxed_grad-temperature-huge", lambda: _rx(temperature=1e300), _is_estimate),
    Call("relaxed_grad-temperature-tiny", lambda: _rx(temperature=1e-300), _is_estimate),
    Call("relaxed_grad-straight_through-string", lambda: _rx(straight_through="yes"),
         (TE, "straight_through")),
    Call("relaxed_grad-straight_through", lambda: _rx(straight_through=True), _is_estimate),
    Call("relaxed_grad-categorical", lambda: _rx(dist=CAT), _is_estimate),
    Call("relaxed_grad-categorical-probs", lambda: _rx(dist=mc.Categorical(probs=[0.2, 0.8])),
         _is_estimate),
    Call("relaxed_grad-bernoulli-probs", lambda: _rx(dist=mc.Bernoulli(probs=0.3)),
         _is_estimate),
    Call("relaxed_grad-bernoulli-probs-zero", lambda: _rx(dist=mc.Bernoulli(probs=0.0)),
         (VE, "probs")),
]
CALL_TABLE_APPS += _common_rows("rebar_grad", _rb, temperature=True)
CALL_TABLE_APPS += [
    Call("rebar_grad-dist-normal", lambda: _rb(dist=NORM), (VE, "rebar_grad supports")),
    Call("rebar_grad-eta-nan", lambda: _rb(eta=float("nan")), (VE, "eta must be finite")),
    Call("rebar_grad-eta-inf", lambda: _rb(eta=float("inf")), (VE, "eta must be finite")),
    Call("rebar_grad-eta-string", lambda: _rb(eta="best"), (VE, "eta must be")),
    Call("rebar_grad-eta-bool", lambda: _rb(eta=True), (TE, "eta must be")),
    Call("rebar_grad-eta-None", lambda: _rb(eta=None), (TE, "eta must be")),
    Call("rebar_grad-eta-complex", lambda: _rb(eta=1j), (TE, "eta must be")),
    Call("rebar_grad-eta-zero", lambda: _rb(eta=0.0), _is_estimate),
    Call("rebar_grad-eta-negative", lambda: _rb(eta=-1.0), _is_estimate),
    Call("rebar_grad-baseline-loo", lambda: _rb(baseline="loo"), (VE, "baseline must be")),
    Call("rebar_grad-baseline-float", lambda: _rb(baseline=1.0), (VE, "baseline must be")),
    Call("rebar_grad-baseline-list", lambda: _rb(baseline=[1.0]), ((VE, TE), "baseline must be")),
    Call("rebar_grad-baseline-optimal", lambda: _rb(baseline="optimal"), _is_estimate),
    Call("rebar_grad-temperature-auto", lambda: _rb(temperature="auto", n_pilot=64),
         _is_estimate),
    Call("rebar_grad-temperature-other-string", lambda: _rb(temperature="hot"),
         (TE, "temperature")),
    Call("rebar_grad-n_pilot-zero", lambda: _rb(temperature="auto", n_pilot=0), (VE, "n_pilot")),
    Call("rebar_grad-n_pilot-string", lambda: _rb(temperature="auto", n_pilot="64"),
         (TE, "n_pilot")),
    Call("rebar_grad-categorical", lambda: _rb(dist=CAT), _is_estimate),
    Call("rebar_grad-relaxed-dist", lambda: _rb(dist=mc.RelaxedOneHotCategorical(0.5, logits=[0.0, 1.0])),
         _is_estimate),
]
CALL_TABLE_APPS += _common_rows("disarm_grad", _da, grad=False)
CALL_TABLE_APPS += [
    Call("disarm_grad-dist-categorical", lambda: _da(dist=CAT), (VE, "disarm_grad supports")),
    Call("disarm_grad-dist-normal", lambda: _da(dist=NORM), (VE, "disarm_grad supports")),
    Call("disarm_grad-probs", lambda: _da(dist=mc.Bernoulli(probs=[0.2, 0.9])), _is_estimate),
    Call("disarm_grad-logits-700", lambda: _da(dist=mc.Bernoulli(logits=[700.0, -700.0])),
         _is_estimate),
    Call("disarm_grad-block_size-zero", lambda: _da(block_size=0), (VE, "block_size")),
]
CALL_TABLE_APPS += _common_rows("rloo_grad", _rl, grad=False)
CALL_TABLE_APPS += _rows("rloo_grad-k", lambda v: _rl(k=v), {
    **{k: v for k, v in _n_cases("k").items()},
    "huge": (2**20, (VE, "k must be <=")),
})
CALL_TABLE_APPS += [
    Call("rloo_grad-n-beyond-2**62-over-k", lambda: _rl(n=2**61), (VE, "n must be <=")),
    Call("rloo_grad-categorical", lambda: _rl(f=lambda x: (x == 1) * 1.0, dist=CAT),
         _is_estimate),
    Call("rloo_grad-k-2", lambda: _rl(k=2), _is_estimate),
]
CALL_TABLE_APPS += _common_rows("compare_estimators", _cmp)
# grad_f is optional for compare_estimators: None runs the estimators that need no gradient
CALL_TABLE_APPS = [c if c.id != "compare_estimators-grad_f-None-callable" else
                   Call(c.id, c.thunk, lambda r: _is_comparison(r)) for c in CALL_TABLE_APPS]
CALL_TABLE_APPS = [c for c in CALL_TABLE_APPS
                   if not c.id.startswith(("compare_estimators-chunk_size",
                                           "compare_estimators-n_streams",
                                           "compare_estimators-rng-generator"))]


def _is_comparison(r):
    assert isinstance(r, mc.Comparison)
    assert len(r.rows) >= 1
    for row in r.rows:
        assert np.isfinite(row["variance"])
    assert isinstance(repr(r), str)


CALL_TABLE_APPS += [
    Call("compare_estimators-rng-generator", lambda: _cmp(rng=np.random.default_rng(1)),
         _is_comparison),
    Call("compare_estimators-n-one-block", lambda: _cmp(n=200), (VE, "at least 2 streams")),
    Call("compare_estimators-grad_f-None", lambda: _cmp(grad_f=None), _is_comparison),
    Call("compare_estimators-bernoulli", lambda: _cmp(dist=BERN), _is_comparison),
    Call("compare_estimators-categorical", lambda: _cmp(dist=CAT), _is_comparison),
    Call("compare_estimators-estimators-unknown", lambda: _cmp(estimators=["magic"]),
         (VE, "estimators")),
    Call("compare_estimators-estimators-string", lambda: _cmp(estimators="score"),
         (TE, "estimators")),
    Call("compare_estimators-estimators-empty", lambda: _cmp(estimators=[]), (VE, "estimators")),
    Call("compare_estimators-estimators-None-item", lambda: _cmp(estimators=[None]),
         ((VE, TE), "estimators")),
    Call("compare_estimators-estimators-one", lambda: _cmp(estimators=["score"]),
         lambda r: np.testing.assert_equal(r.names, ["score"])),
    Call("compare_estimators-exact-list", lambda: _cmp(exact=[1.0, 0.0]), (TE, "exact")),
    Call("compare_estimators-exact-unknown-key", lambda: _cmp(exact={"mu": 1.0}), (VE, "exact")),
    Call("compare_estimators-exact-nan", lambda: _cmp(exact={"loc": np.nan, "scale": 0.0}),
         (VE, "exact")),
    Call("compare_estimators-exact-string", lambda: _cmp(exact={"loc": "1", "scale": 0.0}),
         (TE, "exact")),
    Call("compare_estimators-exact-wrong-shape",
         lambda: _cmp(exact={"loc": [1.0, 2.0], "scale": 0.0}), (VE, "exact")),
    Call("compare_estimators-exact-ok", lambda: _cmp(exact={"loc": 1.0, "scale": 3.0}),
         lambda r: [np.testing.assert_equal(np.isfinite(row["z"]), True) for row in r.rows]),
    Call("compare_estimators-temperature-string", lambda: _cmp(dist=BERN, temperature="hot"),
         (TE, "temperature")),
    Call("compare_estimators-temperature-zero", lambda: _cmp(dist=BERN, temperature=0.0),
         (VE, "temperature")),
    Call("compare_estimators-temperature-nan", lambda: _cmp(dist=BERN, temperature=np.nan),
         (VE, "temperature")),
    Call("compare_estimators-rloo_k-one", lambda: _cmp(rloo_k=1), (VE, "rloo_k")),
    Call("compare_estimators-rloo_k-string", lambda: _cmp(rloo_k="4"), (TE, "rloo_k")),
    Call("compare_estimators-rloo_k-float", lambda: _cmp(rloo_k=4.0), (TE, "rloo_k")),
]


# score_grad's variance-reduction arguments
CALL_TABLE_APPS += _rows("score_grad_vr-grad_f", lambda v: _sgvr(grad_f=v),
                         {k: v for k, v in _bad_grad_cases("grad_f").items()
                          if k != "None-callable"})
CALL_TABLE_APPS += _rows(
    "score_grad_vr-h", lambda v: _sgvr(control_variates=[(v, {"loc": 1.0, "scale": 0.0})]),
    {k: v for k, v in _bad_f_cases(r"control_variates\[0\]").items()
     if k not in ("None-callable", "not-callable")})
CALL_TABLE_APPS += [
    Call("score_grad_vr-h-None", lambda: _sgvr(control_variates=[(None, {"loc": 1.0})]),
         (TE, r"control_variates\[0\]: h must be")),
    Call("score_grad_vr-h-not-callable", lambda: _sgvr(control_variates=[("x", {"loc": 1.0})]),
         (TE, r"control_variates\[0\]: h must be")),
    Call("score_grad_vr-one-block", lambda: _sgvr(block_size=None),
         (VE, "at least 2 streams")),
]
CALL_TABLE_APPS += [
    Call("score_grad_vr-delta-without-grad_f", lambda: _sgvr(grad_f=None), (TE, "grad_f")),
    Call("score_grad_vr-cv-unknown-string", lambda: _sgvr(control_variates=["gamma"]),
         (VE, "control_variates")),
    Call("score_grad_vr-cv-number", lambda: _sgvr(control_variates=[3.0]),
         (TE, "control_variates")),
    Call("score_grad_vr-cv-not-a-list", lambda: _sgvr(control_variates=3.0),
         (TE, "control_variates")),
    Call("score_grad_vr-cv-empty-list", lambda: _sgvr(control_variates=[], grad_f=None),
         _is_estimate),
    Call("score_grad_vr-cv-grad_mean-list",
         lambda: _sgvr(control_variates=[(_sq, [1.0, 0.0])]), (TE, "grad_mean")),
    Call("score_grad_vr-cv-grad_mean-missing",
         lambda: _sgvr(control_variates=[(_sq, {"loc": 1.0})]), (VE, "grad_mean")),
    Call("score_grad_vr-cv-grad_mean-unknown",
         lambda: _sgvr(control_variates=[(_sq, {"loc": 1.0, "scale": 0.0, "mu": 0.0})]),
         (VE, "grad_mean")),
    Call("score_grad_vr-cv-grad_mean-nan",
         lambda: _sgvr(control_variates=[(_sq, {"loc": np.nan, "scale": 0.0})]),
         (VE, "grad_mean")),
    Call("score_grad_vr-cv-grad_mean-string",
         lambda: _sgvr(control_variates=[(_sq, {"loc": "1", "scale": 0.0})]),
         (TE, "grad_mean")),
    Call("score_grad_vr-cv-grad_mean-wrong-shape",
         lambda: _sgvr(control_variates=[(_sq, {"loc": [1.0, 2.0], "scale": 0.0})]),
         (VE, "grad_mean")),
    Call("score_grad_vr-cv-grad_mean-callable",
         lambda: _sgvr(control_variates=[(_sq, lambda d: {"loc": 2 * d.loc,
                                                          "scale": 2 * d.scale})]),
         _is_estimate),
    Call("score_grad_vr-cv-triple", lambda: _sgvr(control_variates=[(_sq, {}, 1)]),
         (TE, "control_variates")),
    Call("score_grad_vr-cv-15", lambda: _sgvr(control_variates=["delta"] * 15),
         (VE, "at most 14 control variates")),
    Call("score_grad_vr-delta-categorical",
         lambda: _sgvr(dist=CAT, f=lambda x: x * 1.0, grad_f=lambda x: np.ones(np.shape(x))),
         (VE, "delta")),
    Call("score_grad_vr-baseline-loo", lambda: _sgvr(baseline="loo"), (VE, "baseline")),
    Call("score_grad_vr-antithetic-string", lambda: _sgvr(antithetic="yes"), (TE, "antithetic")),
    Call("score_grad_vr-antithetic-None", lambda: _sgvr(antithetic=None), (TE, "antithetic")),
    Call("score_grad_vr-antithetic-1", lambda: _sgvr(antithetic=1), (TE, "antithetic")),
    Call("score_grad_vr-antithetic-gamma",
         lambda: _sgvr(antithetic=True, control_variates=None, dist=mc.Gamma(2.0, 1.0)),
         (VE, "antithetic")),
    Call("score_grad_vr-antithetic-n-3", lambda: _sgvr(antithetic=True, n=3), (VE, "n must be")),
    Call("score_grad_vr-antithetic", lambda: _sgvr(antithetic=True), _is_estimate),
    Call("score_grad_vr-antithetic-lognormal",
         lambda: _sgvr(antithetic=True, dist=mc.LogNormal(0.0, 0.5)), _is_estimate),
    Call("score_grad_vr-grad_f-without-cv",
         lambda: _sgvr(control_variates=None, antithetic=True, grad_f="x"), (TE, "grad_f")),
    Call("score_grad_vr-n-zero", lambda: _sgvr(n=0), (VE, "n must be")),
    # grad_f is only used by the 'delta' control variate, but a non-callable is an error
    Call("score_grad-grad_f-not-callable-alone",
         lambda: mc.score_grad(_sq, NORM, 200, grad_f="x", rng=0), (TE, "grad_f")),
    Call("score_grad-grad_f-callable-alone",
         lambda: mc.score_grad(_sq, NORM, 200, grad_f=_dsq, rng=0), _is_estimate),
]


# ---------------------------------------------------------------------------
# relaxed distributions
# ---------------------------------------------------------------------------

def _relaxed_ok(r):
    x = r.sample(5, rng=0)
    assert x.shape == (5,) + r.draw_shape
    assert np.isfinite(x).all()
    lp = r.log_prob(x)
    assert not np.isnan(lp).any()


for _cls, _valid in ((mc.RelaxedBernoulli, {"logits": [0.3, -0.7]}),
                     (mc.RelaxedOneHotCategorical, {"logits": [0.0, 1.0, -1.0]})):
    _nm = _cls.__name__
    CALL_TABLE_APPS += _rows(f"{_nm}-temperature",
                             lambda v, c=_cls, kw=_valid: c(v, **kw),
                             {**_positive_cases("temperature"),
                              "0d_array": (np.asarray(0.5), _relaxed_ok),
                              "huge": (1e300, _relaxed_ok),
                              "tiny": (1e-300, _relaxed_ok)})
    CALL_TABLE_APPS += _rows(f"{_nm}-logits", lambda v, c=_cls: c(0.5, logits=v), {
        "nan": ([0.0, np.nan], (VE, "logits")),
        "inf": ([0.0, np.inf], (VE, "logits")),
        "string": ("0.0", (TE, "logits")),
        "bool": (True, (TE, "logits")),
        "complex": ([1j, 0.0], (TE, "logits")),
        "object": (np.array([0.0, 1.0], dtype=object), (TE, "logits")),
        "ragged": ([[1.0], [1.0, 2.0]], (TE, "logits")),
    })
    CALL_TABLE_APPS += _rows(f"{_nm}-probs", lambda v, c=_cls: c(0.5, probs=v), {
        "nan": ([0.5, np.nan], (VE, "probs")),
        "negative": ([-0.5, 1.5], (VE, "probs")),
        "string": ("0.5", (TE, "probs")),
        "ok": ([0.25, 0.75], _relaxed_ok),
    })
    CALL_TABLE_APPS += [
        Call(f"{_nm}-both-probs-and-logits",
             lambda c=_cls: c(0.5, probs=[0.5, 0.5], logits=[0.0, 0.0]), (VE, "probs or logits")),
        Call(f"{_nm}-neither", lambda c=_cls: c(0.5), (VE, "probs or logits")),
        Call(f"{_nm}-sample-n-negative", lambda c=_cls, kw=_valid: c(0.5, **kw).sample(-1),
             (VE, "n must be")),
        Call(f"{_nm}-sample-n-zero", lambda c=_cls, kw=_valid: c(0.5, **kw).sample(0, rng=0),
             lambda x: np.testing.assert_equal(x.shape[0], 0)),
        Call(f"{_nm}-sample-n-string", lambda c=_cls, kw=_valid: c(0.5, **kw).sample("3"),
             (TE, "n must be")),
        Call(f"{_nm}-sample-rng-string", lambda c=_cls, kw=_valid: c(0.5, **kw).sample(3, "x"),
             (TE, "rng")),
        Call(f"{_nm}-log_prob-wrong-shape",
             lambda c=_cls, kw=_valid: c(0.5, **kw).log_prob(np.full((3, 7), 0.5)),
             (VE, "x must have shape")),
        Call(f"{_nm}-log_prob-strings",
             lambda c=_cls, kw=_valid: c(0.5, **kw).log_prob(np.full((3, 2), "a")),
             ((VE, TE), "x")),
        Call(f"{_nm}-log_prob-nan",
             lambda c=_cls, kw=_valid: c(0.5, **kw).log_prob(np.full((1,) + c(0.5, **kw).draw_shape, np.nan)),
             lambda lp: np.testing.assert_equal(np.isneginf(lp).all(), True)),
        Call(f"{_nm}-log_prob-empty",
             lambda c=_cls, kw=_valid: c(0.5, **kw).log_prob(np.zeros((0,) + c(0.5, **kw).draw_shape)),
             lambda lp: np.testing.assert_equal(lp.shape[0], 0)),
    ]


# ---------------------------------------------------------------------------
# finance.greeks
# ---------------------------------------------------------------------------

GK = dict(spot=100.0, strike=100.0, rate=0.05, vol=0.2, maturity=1.0, n=256, rng=0)


def _gk(payoff="call", **kw):
    a = dict(GK)
    a.update(kw)
    return finance.greeks(payoff, **a)


CALL_TABLE_APPS += _rows("greeks-payoff", lambda v: _gk(v), {
    "unknown": ("straddle", (VE, "payoff must be one of")),
    "None": (None, (VE, "payoff must be one of")),
    "number": (3, (VE, "payoff must be one of")),
    "upper-case": ("CALL", (VE, "payoff must be one of")),
})
for _p in finance.PAYOFFS:
    CALL_TABLE_APPS.append(Call(f"greeks-payoff-{_p}", lambda p=_p: _gk(
        p, steps=4, barrier=150.0 if p == "up_and_out_call" else None), _finite_greeks))
for _arg in ("spot", "strike", "vol", "maturity"):
    CALL_TABLE_APPS += _rows(f"greeks-{_arg}", lambda v, a=_arg: _gk(**{a: v}),
                             _positive_cases(_arg))
CALL_TABLE_APPS += _rows("greeks-rate", lambda v: _gk(rate=v), {
    "nan": (np.nan, (VE, "rate")), "inf": (np.inf, (VE, "rate")),
    "-inf": (-np.inf, (VE, "rate")), "string": ("0.05", (TE, "rate")),
    "bool": (True, (TE, "rate")), "None": (None, (TE, "rate")), "complex": (1j, (TE, "rate")),
    "vector": ([0.01, 0.02], ((TE, VE), "rate")), "empty": (np.zeros(0), ((TE, VE), "rate")),
    "negative": (-0.05, _finite_greeks), "zero": (0.0, _finite_greeks),
    "0d_array": (np.asarray(0.05), _finite_greeks),
})
CALL_TABLE_APPS += _rows("greeks-n", lambda v: _gk(n=v), _n_cases("n"))
CALL_TABLE_APPS += _rows("greeks-steps", lambda v: _gk(steps=v), {
    **{k: v for k, v in _n_cases("steps", minimum=1).items()},
    "huge": (10**7, (VE, "steps must be <=")),
})
CALL_TABLE_APPS += _rows("greeks-barrier", lambda v: _gk("up_and_out_call", steps=4, barrier=v), {
    "None": (None, (VE, "barrier is required")),
    "below-spot": (90.0, (VE, "barrier must be > spot")),
    "equal-spot": (100.0, (VE, "barrier must be > spot")),
    "nan": (np.nan, (VE, "barrier")),
    "inf": (np.inf, (VE, "barrier")),
    "negative": (-1.0, (VE, "barrier")),
    "string": ("150", (TE, "barrier")),
    "bool": (True, (TE, "barrier")),
    "complex": (150j, (TE, "barrier")),
    "vector": ([150.0, 160.0], ((TE, VE), "barrier")),
})
CALL_TABLE_APPS += [
    Call("greeks-barrier-on-a-call", lambda: _gk(barrier=150.0), (VE, "barrier applies only")),
    Call("greeks-method-unknown", lambda: _gk(method="fd"), (VE, "method must be")),
    Call("greeks-method-None", lambda: _gk(method=None), (VE, "method must be")),
    Call("greeks-method-pathwise", lambda: _gk(method="pathwise"), _finite_greeks),
    Call("greeks-method-pathwise-digital", lambda: _gk("digital_call", method="pathwise"),
         (VE, "method='pathwise' does not apply")),
    Call("greeks-rng-string", lambda: _gk(rng="x"), (TE, "rng")),
    Call("greeks-rng-generator", lambda: _gk(rng=np.random.default_rng(1)), _finite_greeks),
    Call("greeks-rng-seedsequence", lambda: _gk(rng=np.random.SeedSequence(1)), _finite_greeks),
    Call("greeks-n_threads-zero", lambda: _gk(n_threads=0), (VE, "n_threads")),
    Call("greeks-n_streams-zero", lambda: _gk(n_streams=0), (VE, "n_streams")),
    Call("greeks-block_size-zero", lambda: _gk(block_size=0), (VE, "block_size")),
    Call("greeks-block_size-huge", lambda: _gk(block_size=2**25), (VE, "block_size must be <=")),
    Call("greeks-n-beyond-2**62", lambda: _gk(n=2**62 + 1), (VE, "n must be <=")),
    Call("greeks-n_threads-string", lambda: _gk(n_threads="2"), (TE, "n_threads")),
    Call("greeks-n_threads-two", lambda: _gk(n_threads=2), _finite_greeks),
    Call("greeks-missing-keyword", lambda: finance.greeks("call", spot=1.0), (TE, "strike")),
    Call("greeks-positional-spot", lambda: finance.greeks("call", 100.0), (TE, "positional")),
    # prices that overflow a double: a clear error, never inf / NaN estimates
    Call("greeks-vol-huge", lambda: _gk(vol=1e3), _finite_greeks),  # S_T underflows to 0: finite
    Call("greeks-spot-huge", lambda: _gk(spot=1e307, strike=1e307), (FPE, "overflowed")),
    Call("greeks-rate-huge", lambda: _gk(rate=1e4), (FPE, "overflowed")),
    Call("greeks-spot-tiny", lambda: _gk(spot=1e-100, strike=1e-100), _finite_greeks),
    # gamma ~ 1 / spot: beyond a double at spot 1e-300, a clear error
    Call("greeks-spot-1e-300", lambda: _gk(spot=1e-300, strike=1e-300), (FPE, "overflowed")),
    Call("greeks-maturity-tiny", lambda: _gk(maturity=1e-12), _finite_greeks),
]


# ---------------------------------------------------------------------------
# vi.elbo_grad, vi.fit
# ---------------------------------------------------------------------------

Q = mc.Normal(0.0, 1.0)


def _lj(x):
    return -0.5 * (x - 1.0) ** 2


def _eg(**kw):
    a = dict(log_joint=_lj, q=Q, n=64, rng=0)
    a.update(kw)
    return vi.elbo_grad(a.pop("log_joint"), a.pop("q"), a.pop("n"), **a)


def _fit(**kw):
    a = dict(log_joint=_lj, q=Q, steps=3, n=16, rng=0, progress=False)
    a.update(kw)
    return vi.fit(a.pop("log_joint"), a.pop("q"), **a)


def _is_vi(r):
    assert isinstance(r, vi.VIResult)
    assert np.isfinite(r.elbo).all()
    for v in r.q.params.values():
        assert np.isfinite(v).all()


def _lj_cases():
    c = _bad_f_cases("log_joint")
    c["None-callable"] = (None, (TE, "log_joint must be callable"))
    c["not-callable"] = ("x", (TE, "log_joint must be callable"))
    c["returns-scalar"] = (lambda x: 1.0, (VE, r"log_joint returned shape \(\) instead of"))
    return c


CALL_TABLE_APPS += _rows("elbo_grad-log_joint", lambda v: _eg(log_joint=v), _lj_cases())
CALL_TABLE_APPS += _rows("fit-log_joint", lambda v: _fit(log_joint=v), _lj_cases())
CALL_TABLE_APPS += _rows("elbo_grad-n", lambda v: _eg(n=v), _n_cases("n"))
CALL_TABLE_APPS += _rows("elbo_grad-q", lambda v: _eg(q=v), _dist_cases("q"))
CALL_TABLE_APPS += _rows("elbo_grad-baseline", lambda v: _eg(baseline=v), {
    "nan": (np.nan, (VE, "baseline")), "string": ("best", (VE, "baseline")),
    "bool": (True, (VE, "baseline")), "list": ([1.0], (VE, "baseline")),
    "None": (None, _is_estimate), "optimal": ("optimal", _is_estimate),
    "float": (0.5, _is_estimate),
})
CALL_TABLE_APPS += [
    Call("elbo_grad-rng-string", lambda: _eg(rng="x"), (TE, "rng")),
    Call("elbo_grad-q-vector", lambda: _eg(q=mc.Normal(np.zeros(3), 1.0),
                                          log_joint=lambda x: -0.5 * (x**2).sum(1)),
         _is_estimate),
    Call("elbo_grad-q-categorical", lambda: _eg(q=CAT, log_joint=lambda x: x * 1.0),
         _is_estimate),
    Call("elbo_grad-q-relaxed", lambda: _eg(q=mc.RelaxedBernoulli(0.5, logits=0.0)), (TE, "q")),
    Call("elbo_grad-log_joint-neg-inf-outside-support",
         lambda: _eg(q=mc.Exponential(1.0), log_joint=lambda x: np.where(x > 1, -np.inf, -x)),
         (VE, "log_joint returned -inf")),
]
CALL_TABLE_APPS += _rows("fit-steps", lambda v: _fit(steps=v), _n_cases("steps", minimum=1))
CALL_TABLE_APPS += _rows("fit-n", lambda v: _fit(n=v), _n_cases("n"))
CALL_TABLE_APPS += _rows("fit-q", lambda v: _fit(q=v), _dist_cases("q"))
CALL_TABLE_APPS += _rows("fit-lr", lambda v: _fit(lr=v), _positive_cases("lr"))
CALL_TABLE_APPS += _rows("fit-average", lambda v: _fit(average=v), {
    "nan": (np.nan, (VE, "average")), "one": (1.0, (VE, "average")),
    "negative": (-0.1, (VE, "average")), "string": ("0.5", (TE, "average")),
    "None": (None, (TE, "average")), "zero": (0.0, _is_vi),
})
CALL_TABLE_APPS += _rows("fit-betas", lambda v: _fit(betas=v), {
    "one": ((1.0, 0.9), (VE, "betas")), "nan": ((np.nan, 0.9), (VE, "betas")),
    "negative": ((-0.1, 0.9), (VE, "betas")), "None": (None, (TE, "betas")),
    "strings": (("a", "b"), (TE, "betas")), "three": ((0.9, 0.9, 0.9), ((VE, TE), "betas")),
    "scalar": (0.9, (TE, "betas")),
})
CALL_TABLE_APPS += _rows("fit-eps", lambda v: _fit(eps=v), {
    **_positive_cases("eps"), "tiny": (1e-300, _is_vi),
})
CALL_TABLE_APPS += _rows("fit-baseline", lambda v: _fit(baseline=v), {
    "string": ("best", (VE, "baseline")), "nan": (np.nan, (VE, "baseline")),
})
CALL_TABLE_APPS += [
    Call("fit-progress-string", lambda: _fit(progress="yes"), (TE, "progress")),
    Call("fit-rng-string", lambda: _fit(rng="x"), (TE, "rng")),
    Call("fit-one-step", lambda: _fit(steps=1), _is_vi),
    Call("fit-gamma", lambda: _fit(q=mc.Gamma(2.0, 1.0), log_joint=lambda x: -x), _is_vi),
    Call("fit-bernoulli-probs", lambda: _fit(q=mc.Bernoulli(probs=0.3), log_joint=lambda x: x * 1.0),
         _is_vi),
    # a huge lr drives q out of range: a clear error, never a NaN ELBO
    Call("fit-lr-huge", lambda: _fit(lr=1e6, steps=5, q=mc.Gamma(2.0, 1.0),
                                     log_joint=lambda x: -x), (VE, "fit: Adam step .* smaller lr")),
]


# ---------------------------------------------------------------------------
# rl
# ---------------------------------------------------------------------------

R3 = np.array([[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]])
CALL_TABLE_APPS += _rows("returns_to_go-rewards", lambda v: rl.returns_to_go(v), {
    "nan": ([1.0, np.nan], (VE, "rewards must be finite")),
    "inf": ([1.0, np.inf], (VE, "rewards must be finite")),
    "string": ("1.0", (TE, "rewards")), "bool": ([True, False], (TE, "rewards")),
    "None": (None, (TE, "rewards")), "complex": ([1j], (TE, "rewards")),
    "object": (np.array([1.0, None], dtype=object), (TE, "rewards")),
    "ragged": ([[1.0], [1.0, 2.0]], (TE, "rewards")),
    "scalar": (1.0, (VE, "rewards must have a time axis")),
    "0d_array": (np.asarray(1.0), (VE, "rewards must have a time axis")),
    "empty": (np.zeros(0), lambda r: np.testing.assert_equal(r.shape, (0,))),
    "empty-episodes": (np.zeros((0, 4)), lambda r: np.testing.assert_equal(r.shape, (0, 4))),
    "ints": ([1, 2, 3], lambda r: np.testing.assert_array_equal(r, [6.0, 5.0, 3.0])),
    "huge": ([1e308, 1e308], (FPE, "overflow")),
})
CALL_TABLE_APPS += _rows("returns_to_go-gamma", lambda v: rl.returns_to_go(R3, gamma=v), {
    "nan": (np.nan, (VE, "gamma")), "negative": (-0.1, (VE, "gamma")),
    "above-one": (1.5, (VE, "gamma")), "string": ("0.9", (TE, "gamma")),
    "None": (None, (TE, "gamma")), "bool": (True, (TE, "gamma")),
    "vector": ([0.9, 0.9], ((TE, VE), "gamma")), "zero": (0.0,
                                                          lambda r: np.testing.assert_array_equal(r, R3)),
})
CALL_TABLE_APPS += _rows("returns_to_go-mask", lambda v: rl.returns_to_go(R3, mask=v), {
    "wrong-shape": (np.ones((2, 2), bool), (VE, "mask must have the shape")),
    "strings": (np.full(R3.shape, "a"), ((TE, VE), "mask")),
    "floats": (np.full(R3.shape, 0.5), ((TE, VE), "mask")),
    "None-items": (np.full(R3.shape, None, dtype=object), ((TE, VE), "mask")),
    "bool": (np.array([[True, True, False], [True, False, False]]),
             lambda r: np.testing.assert_array_equal(r, [[3.0, 2.0, 0.0], [0.5, 0.0, 0.0]])),
})

# policies' constructors
CALL_TABLE_APPS += _rows("SoftmaxPolicy-n_features", lambda v: rl.SoftmaxPolicy(v, 2),
                         _n_cases("n_features", minimum=1))
CALL_TABLE_APPS += _rows("SoftmaxPolicy-n_actions", lambda v: rl.SoftmaxPolicy(3, v),
                         _n_cases("n_actions", minimum=2))
CALL_TABLE_APPS += _rows("SoftmaxPolicy-theta", lambda v: rl.SoftmaxPolicy(2, 2, v), {
    "nan": (np.full((2, 2), np.nan), (VE, "theta")),
    "inf": (np.full((2, 2), np.inf), (VE, "theta")),
    "wrong-shape": (np.zeros((2, 3)), (VE, "theta must have shape")),
    "string": ("0", (TE, "theta")), "bool": (np.ones((2, 2), bool), (TE, "theta")),
    "complex": (np.zeros((2, 2), complex), (TE, "theta")),
    "object": (np.zeros((2, 2), object), (TE, "theta")),
    "empty": (np.zeros(0), (VE, "theta must have shape")),
    "0d_array": (np.asarray(0.0), (VE, "theta must have shape")),
})
CALL_TABLE_APPS += _rows("GaussianPolicy-n_features", lambda v: rl.GaussianPolicy(v),
                         _n_cases("n_features", minimum=1))
CALL_TABLE_APPS += _rows("GaussianPolicy-n_actions", lambda v: rl.GaussianPolicy(2, v),
                         _n_cases("n_actions", minimum=1))
CALL_TABLE_APPS += _rows("GaussianPolicy-w", lambda v: rl.GaussianPolicy(2, 1, w=v), {
    "nan": (np.full((2, 1), np.nan), (VE, "w")),
    "wrong-shape": (np.zeros((1, 2)), (VE, "w must have shape")),
    "string": ("0", (TE, "w")), "complex": (np.zeros((2, 1), complex), (TE, "w")),
    "None": (None, lambda p: np.testing.assert_equal(p.params["w"].shape, (2, 1))),
})
CALL_TABLE_APPS += _rows("GaussianPolicy-log_std", lambda v: rl.GaussianPolicy(2, 2, log_std=v), {
    "nan": (np.nan, (VE, "log_std")), "inf": (np.inf, (VE, "log_std")),
    "huge": (1e3, (VE, "log_std")), "very-negative": (-1e3, (VE, "log_std")),
    "wrong-shape": (np.zeros(3), (VE, "log_std")),
    "string": ("0", (TE, "log_std")), "bool": (True, (TE, "log_std")),
    "vector": (np.array([0.0, -1.0]),
               lambda p: np.testing.assert_array_equal(p.params["log_std"], [0.0, -1.0])),
})
SP = rl.SoftmaxPolicy(2, 3)
GP = rl.GaussianPolicy(2, 1)
CALL_TABLE_APPS += [
    Call("SoftmaxPolicy-distribution-wrong-features", lambda: SP.distribution(np.zeros((4, 3))),
         (VE, "features must have a last axis")),
    Call("SoftmaxPolicy-distribution-nan-features",
         lambda: SP.distribution(np.full((4, 2), np.nan)), (VE, "")),
    Call("SoftmaxPolicy-score-action-out-of-range",
         lambda: SP.score(np.zeros((4, 2)), np.array([0, 1, 2, 3])), (VE, "")),
    Call("SoftmaxPolicy-score-action-fractional",
         lambda: SP.score(np.zeros((4, 2)), np.array([0.5, 1, 2, 0])), (VE, "")),
    Call("SoftmaxPolicy-score-wrong-actions-shape",
         lambda: SP.score(np.zeros((4, 2)), np.array([0, 1])), (VE, "")),
    Call("SoftmaxPolicy-sample-wrong-features", lambda: SP.sample(np.zeros((4, 5)), rng=0),
         (VE, "features must have a last axis")),
    Call("SoftmaxPolicy-sample", lambda: SP.sample(np.zeros((4, 2)), rng=0),
         lambda a: np.testing.assert_equal(a.shape, (4,))),
    Call("GaussianPolicy-sample-string-features", lambda: GP.sample(np.full((4, 2), "a"), rng=0),
         (TE, "features")),
    Call("GaussianPolicy-score", lambda: GP.score(np.zeros((4, 2)), np.zeros((4, 1))),
         lambda s: np.testing.assert_equal(s["w"].shape, (4, 2, 1))),
    Call("SoftmaxPolicy-with_params-wrong-shape",
         lambda: SP.with_params({"theta": np.zeros((3, 3))}), (VE, "theta")),
    Call("SoftmaxPolicy-with_params-missing",
         lambda: SP.with_params({}), ((KeyError, TE, VE), "theta")),
    Call("GaussianPolicy-score-nan-actions",
         lambda: GP.score(np.zeros((4, 2)), np.full((4, 1), np.nan)), (VE, "")),
    Call("GaussianPolicy-score-wrong-actions-shape",
         lambda: GP.score(np.zeros((4, 2)), np.zeros((4, 3))), (VE, "")),
]


# policy_gradient
def _pg(**kw):
    E, T = 4, 3
    rng = np.random.default_rng(0)
    a = dict(scores={"theta": rng.normal(size=(E, T, 2, 2))}, returns=rng.normal(size=(E, T)))
    a.update(kw)
    return rl.policy_gradient(a.pop("scores"), a.pop("returns"), **a)


CALL_TABLE_APPS += _rows("policy_gradient-returns", lambda v: _pg(returns=v), {
    "nan": (np.full((4, 3), np.nan), (VE, "returns must be finite")),
    "inf": (np.full((4, 3), np.inf), (VE, "returns must be finite")),
    "string": ("1", (TE, "returns")), "None": (None, (TE, "returns")),
    "bool": (np.ones((4, 3), bool), (TE, "returns")),
    "complex": (np.ones((4, 3), complex), (TE, "returns")),
    "scalar": (1.0, (VE, "returns must have shape")),
    "3d": (np.ones((4, 3, 1)), (VE, "returns must have shape")),
    "wrong-E": (np.ones((5, 3)), (VE, "")),
    "wrong-T": (np.ones((4, 2)), (VE, "returns must have shape")),
    "one-episode": (np.ones((1, 3)), (VE, "at least 2 episodes")),
    "empty": (np.zeros((0, 3)), (VE, "at least 2 episodes")),
    "episode-returns": (np.arange(4.0), _is_estimate),
    "huge": (np.full((4, 3), 1e308), (FPE, "overflow")),
})
CALL_TABLE_APPS += _rows("policy_gradient-scores", lambda v: _pg(scores=v), {
    "None": (None, (TE, "scores")),
    "list": ([np.zeros((4, 3, 2))], (TE, "scores")),
    "empty-dict": ({}, (VE, "scores")),
    "nan": ({"theta": np.full((4, 3, 2), np.nan)}, (VE, "scores")),
    "strings": ({"theta": np.full((4, 3, 2), "a")}, ((TE, VE), "scores")),
    "complex": ({"theta": np.zeros((4, 3, 2), complex)}, (TE, "scores")),
    "1d": ({"theta": np.zeros(4)}, (VE, "scores")),
    "wrong-E": ({"theta": np.zeros((5, 3))}, (VE, "scores")),
    "mismatched-T": ({"a": np.zeros((4, 3)), "b": np.zeros((4, 2))}, (VE, "scores")),
    "no-param-axes": ({"theta": np.ones((4, 3))},
                      lambda r: np.testing.assert_equal(r.grad["theta"].shape, ())),
})
CALL_TABLE_APPS += _rows("policy_gradient-mask", lambda v: _pg(mask=v), {
    "wrong-shape": (np.ones((4, 2), bool), (VE, "mask must have shape")),
    "strings": (np.full((4, 3), "a"), ((TE, VE), "mask")),
    "floats": (np.full((4, 3), 0.5), ((TE, VE), "mask")),
    "all-false": (np.zeros((4, 3), bool), _is_estimate),
})
CALL_TABLE_APPS += _rows("policy_gradient-baseline", lambda v: _pg(baseline=v), {
    "unknown": ("best", (VE, "baseline")), "nan": (np.nan, (VE, "baseline")),
    "bool": (True, (VE, "baseline")),
    "optimal-with-returns-to-go": ("optimal", (VE, "baseline='optimal' needs")),
    "None": (None, _is_estimate), "float": (0.5, _is_estimate),
})
CALL_TABLE_APPS += [
    Call("policy_gradient-optimal-episode-returns",
         lambda: _pg(returns=np.arange(4.0), baseline="optimal"), _is_estimate),
]


# reinforce
def _rf(**kw):
    a = dict(env=rl.Reach1D(max_steps=5), policy=rl.GaussianPolicy(2, 1), iterations=2,
             episodes=4, rng=0, progress=False)
    a.update(kw)
    return rl.reinforce(a.pop("env"), a.pop("policy"), **a)


def _is_reinforce(r):
    assert isinstance(r, rl.ReinforceResult)
    assert np.isfinite(r.returns).all() and np.isfinite(r.grad_norm).all()


try:
    _F_REACH = rl.Reach1D().n_features
except Exception:  # pragma: no cover
    _F_REACH = 3

CALL_TABLE_APPS += _rows("reinforce-iterations", lambda v: _rf(iterations=v),
                         _n_cases("iterations", minimum=1))
CALL_TABLE_APPS += _rows("reinforce-episodes", lambda v: _rf(episodes=v), _n_cases("episodes"))
CALL_TABLE_APPS += _rows("reinforce-lr", lambda v: _rf(lr=v), _positive_cases("lr"))
CALL_TABLE_APPS += _rows("reinforce-gamma", lambda v: _rf(gamma=v), {
    "nan": (np.nan, (VE, "gamma")), "negative": (-0.5, (VE, "gamma")),
    "above-one": (2.0, (VE, "gamma")), "string": ("1", (TE, "gamma")),
    "None": (None, (TE, "gamma")), "zero": (0.0, _is_reinforce),
})
CALL_TABLE_APPS += _rows("reinforce-baseline", lambda v: _rf(baseline=v), {
    "unknown": ("best", (VE, "baseline")), "nan": (np.nan, (VE, "baseline")),
    "optimal": ("optimal", (VE, "baseline")), "None": (None, _is_reinforce),
})
CALL_TABLE_APPS += _rows("reinforce-env", lambda v: _rf(env=v), {
    "None": (None, (TE, "env")), "string": ("CartPole", (TE, "env")),
    "class-not-instance": (rl.Reach1D, (TE, "env")),
})
CALL_TABLE_APPS += _rows("reinforce-policy", lambda v: _rf(policy=v), {
    "None": (None, (TE, "policy")), "string": ("gauss", (TE, "policy")),
    "wrong-features": (rl.GaussianPolicy(7, 1), (VE, "features")),
})
CALL_TABLE_APPS += [
    Call("reinforce-rng-string", lambda: _rf(rng="x"), (TE, "rng")),
    Call("reinforce-progress-string", lambda: _rf(progress="yes"), (TE, "progress")),
    Call("reinforce-cartpole-softmax",
         lambda: _rf(env=rl.CartPole(max_steps=5), policy=rl.SoftmaxPolicy(rl.CartPole().n_features, 2)),
         _is_reinforce),
    Call("reinforce-lr-huge", lambda: _rf(lr=1e300, iterations=3),
         (VE, "reinforce: Adam step .* smaller lr")),
]
CALL_TABLE_APPS += _rows("CartPole-max_steps", lambda v: rl.CartPole(max_steps=v),
                         _n_cases("max_steps", minimum=1))
CALL_TABLE_APPS += _rows("Reach1D-max_steps", lambda v: rl.Reach1D(max_steps=v),
                         _n_cases("max_steps", minimum=1))
CALL_TABLE_APPS += _rows("Reach1D-dt", lambda v: rl.Reach1D(dt=v), _positive_cases("dt"))
CALL_TABLE_APPS += _rows("rollout-n_episodes", lambda v: rl.rollout(rl.Reach1D(), rl.GaussianPolicy(_F_REACH), v, rng=0),
                         _n_cases("n_episodes", minimum=1))


@pytest.mark.parametrize("call", [c.param() for c in CALL_TABLE_APPS])
def test_call_table_apps(call):
    if isinstance(call.expect, tuple):
        exc, match = call.expect
        with pytest.raises(exc, match=match) if match else pytest.raises(exc):
            call.thunk()
    elif call.expect == "ok":
        call.thunk()
    else:
        call.expect(call.thunk())


def test_call_table_apps_ids_are_unique():
    ids = [c.id for c in CALL_TABLE_APPS]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    assert not dup, dup


# ---------------------------------------------------------------------------
# risky calls in a subprocess
# ---------------------------------------------------------------------------

RISKY_APPS = {
    "pathwise_grad-huge-n-raising-f": (
        "c = [0]\n"
        "def f(x):\n    c[0] += 1\n    if c[0] == 2: raise OverflowError('stop')\n"
        "    return x * 0.0\n"
        "mc.pathwise_grad(f, mc.Normal(0.0, 1.0), 10**15, grad_f=lambda x: x, rng=0, "
        "chunk_size=10**4)", "OverflowError stop"),
    **{f"{name}-huge-n-raising-f": (
        "c = [0]\n"
        "def f(x):\n    c[0] += 1\n    if c[0] == 2: raise OverflowError('stop')\n"
        "    return np.asarray(x, float).reshape(len(x), -1).sum(1) * 0.0\n"
        f"mc.{name}(f, {dist}, 10**15, rng=0, chunk_size=10**4{extra})", "OverflowError stop")
       for name, dist, extra in (
           ("relaxed_grad", "mc.Bernoulli(logits=0.0)", ", grad_f=lambda x: x, temperature=0.5"),
           ("rebar_grad", "mc.Bernoulli(logits=0.0)", ", grad_f=lambda x: x"),
           ("disarm_grad", "mc.Bernoulli(logits=0.0)", ""),
           ("rloo_grad", "mc.Normal(0.0, 1.0)", ""))},
    "score_grad-cv-huge-n-raising-h": (
        "c = [0]\n"
        "def h(x):\n    c[0] += 1\n    if c[0] == 2: raise OverflowError('stop')\n"
        "    return x\n"
        "mc.score_grad(lambda x: x * x, mc.Normal(0.0, 1.0), 10**15, rng=0, chunk_size=10**4, "
        "control_variates=[(h, {'loc': 1.0, 'scale': 0.0})])", "OverflowError stop"),
    # the path kernels simulate paths in chunks of about 2**16 normals (at
    # least one path), no longer block_size * steps at once: 10 paths of
    # 10**6 steps need 8 MB and run
    "greeks-n-huge-steps-huge": (
        "mc.finance.greeks('asian_call', spot=1.0, strike=1.0, rate=0.0, vol=0.2, maturity=1.0, "
        "n=10, steps=10**6, block_size=2**24)", "finished"),
    "elbo_grad-n-huge": (
        "mc.vi.elbo_grad(lambda x: -x**2, mc.Normal(0.0, 1.0), 2**40)", "MemoryError"),
    "fit-steps-huge": (
        "mc.vi.fit(lambda x: -x**2, mc.Normal(0.0, 1.0), steps=2**62, n=4, progress=False)",
        "steps must be <="),
    "reinforce-episodes-huge": (
        "mc.rl.reinforce(mc.rl.Reach1D(), mc.rl.GaussianPolicy(mc.rl.Reach1D().n_features), "
        "iterations=1, episodes=2**40, progress=False)", "episodes must be <="),
    "reinforce-iterations-huge": (
        "mc.rl.reinforce(mc.rl.Reach1D(), mc.rl.GaussianPolicy(mc.rl.Reach1D().n_features), "
        "iterations=2**62, episodes=2, progress=False)", "iterations must be <="),
    "relaxed-sample-huge": (
        "mc.RelaxedBernoulli(0.5, logits=0.0).sample(2**40)", "MemoryError"),
}


@pytest.mark.parametrize("label", sorted(RISKY_APPS))
def test_risky_app_calls_do_not_crash_the_interpreter(label):
    body, expected = RISKY_APPS[label]
    code = ("import numpy as np, mcscore as mc\n"
            "try:\n" + textwrap.indent(body, "    ") +
            "\n    print('finished')\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
    p = _run_py(code, timeout=60, limit_gb=4)
    assert p.returncode == 0, f"exit code {p.returncode}\n{p.stdout}\n{p.stderr[-3000:]}"
    assert expected in p.stdout, p.stdout + p.stderr[-3000:]


# names this file covers (read by test_reliability's coverage test)
APPS_COVERED = {"pathwise_grad", "relaxed_grad", "rebar_grad", "disarm_grad", "rloo_grad",
                "compare_estimators", "Comparison", "RelaxedBernoulli",
                "RelaxedOneHotCategorical", "finance", "vi", "rl"}


def test_apps_tables_cover_their_names():
    heads = {c.id.split("-")[0] for c in CALL_TABLE_APPS}
    for name in APPS_COVERED - {"Comparison", "finance", "vi", "rl"}:
        assert name in heads, name
    assert {"greeks", "elbo_grad", "fit", "returns_to_go", "policy_gradient", "SoftmaxPolicy",
            "GaussianPolicy", "reinforce"} <= heads
    assert any(c.expect is _is_comparison for c in CALL_TABLE_APPS)
