"""Reliability tables for the names added in the third round: the new
estimators (``mvd_grad``, ``pathwise_cv_grad``, ``relax_grad`` and its
surrogates, ``tune_rebar``, ``sum_and_sample_grad``, ``unordered_set_grad``,
``enumerate_grad``, ``enumeration_advice``), the new baselines
(``ContextBaseline``, ``MovingAverageBaseline``), ``Joint``, score_grad's new
arguments (``batch_ndims``, ``sampler``, ``n_randomizations``, with
``QMCWarning``), and the new parts of the applications (``vi``'s estimator=,
schedules and data subsampling; ``rl``'s ``gae``, value baselines,
``TorchPolicy`` and ``GymEnv``; ``finance``'s grids, Heston parameter Greeks
and Sobol' sampling), and the bridges ``mcscore.torch`` / ``mcscore.jax``.

Each row is ``Call(id, thunk, expect)`` as in ``test_reliability.py``; the
estimators get the rows every estimator has (``ESTIMATOR_ROWS``): n
(negative, zero, float, NaN, string, None, huge), rng (bad types), f that
raises or returns None / a scalar / the wrong shape / complex / strings /
NaN / inf, n_threads, chunk_size, block_size and n_streams; then rows of
their own arguments.
"""
import warnings

import numpy as np
import pytest

import mcscore as mc
from mcscore import finance, rl, vi

from test_reliability import Call
from test_reliability_apps import (_bad_f_cases, _bad_grad_cases, _dist_cases, _n_cases,
                                   _positive_cases, _rows)

VE, TE = ValueError, TypeError
FPE = FloatingPointError

NORM = mc.Normal(0.5, 1.5)
BERN = mc.Bernoulli(logits=[0.3, -0.7])
CAT = mc.Categorical(logits=[0.0, 1.0, -1.0])
CAT4 = mc.Categorical(logits=[0.0, 1.0, -1.0, 0.5])


def _sq(x):
    return (np.asarray(x, float) ** 2).reshape(len(x), -1).sum(1)


def _dsq(x):
    return 2.0 * np.asarray(x, float)


def _is_estimate(r):
    assert isinstance(r, mc.GradientEstimate)
    for k in r.grad:
        assert np.isfinite(r.grad[k]).all() and np.isfinite(r.stderr[k]).all(), k


def _ok(r):
    assert r is not None


def _estimator_rows(fname, run, *, f=True, n=True, engine=True, f_ok=_is_estimate,
                    n_min=2):
    """The rows every estimator has."""
    rows = []
    if n:
        cases = _n_cases("n", minimum=n_min)
        cases["huge"] = (2**62 + 1, (VE, "n must be <="))
        rows += _rows(f"{fname}-n", lambda v: run(n=v), cases)
    if f:
        cases = _bad_f_cases("f")
        cases = {k: (v, f_ok if e == "ok" else e) for k, (v, e) in cases.items()}
        rows += _rows(f"{fname}-f", lambda v: run(f=v), cases)
    rows += _rows(f"{fname}-dist", lambda v: run(dist=v), _dist_cases("dist"))
    rows += [
        Call(f"{fname}-rng-string", lambda: run(rng="seed"), (TE, "rng")),
        Call(f"{fname}-rng-float", lambda: run(rng=1.5), (TE, "rng")),
        Call(f"{fname}-rng-list-of-str", lambda: run(rng=["a"]), (TE, "rng")),
        Call(f"{fname}-rng-negative", lambda: run(rng=-1), (VE, "rng")),
        Call(f"{fname}-rng-generator", lambda: run(rng=np.random.default_rng(1)), f_ok),
    ]
    if engine:
        rows += [
            Call(f"{fname}-n_threads-zero", lambda: run(n_threads=0), (VE, "n_threads")),
            Call(f"{fname}-n_threads-string", lambda: run(n_threads="2"), (TE, "n_threads")),
            Call(f"{fname}-n_threads-bool", lambda: run(n_threads=True), (TE, "n_threads")),
            Call(f"{fname}-n_threads-float", lambda: run(n_threads=2.0), (TE, "n_threads")),
            Call(f"{fname}-chunk_size-zero", lambda: run(chunk_size=0), (VE, "chunk_size")),
            Call(f"{fname}-chunk_size-negative", lambda: run(chunk_size=-3), (VE, "chunk_size")),
            Call(f"{fname}-chunk_size-float", lambda: run(chunk_size=2.5), (TE, "chunk_size")),
            Call(f"{fname}-chunk_size-one", lambda: run(chunk_size=1), f_ok),
            Call(f"{fname}-block_size-zero", lambda: run(block_size=0), (VE, "block_size")),
            Call(f"{fname}-block_size-float", lambda: run(block_size=16.0), (TE, "block_size")),
            Call(f"{fname}-block_size-too-large", lambda: run(block_size=2**24 + 1),
                 (VE, "block_size must be <=")),
            Call(f"{fname}-n_streams-zero", lambda: run(n_streams=0), (VE, "n_streams")),
            Call(f"{fname}-n_streams-string", lambda: run(n_streams="8"), (TE, "n_streams")),
        ]
    return rows


def _call(fn, defaults, positional=("f", "dist", "n")):
    def run(**kw):
        a = dict(defaults)
        a.update(kw)
        args = [a.pop(p) for p in positional if p in a]
        return fn(*args, **a)
    return run


_mvd = _call(mc.mvd_grad, dict(f=_sq, dist=NORM, n=200, rng=0))
_pcv = _call(mc.pathwise_cv_grad, dict(f=_sq, dist=NORM, n=256, grad_f=_dsq,
                                       control_variates=["delta"], rng=0, block_size=16))
_sas = _call(mc.sum_and_sample_grad, dict(f=_sq, dist=CAT4, n=200, k=2, rng=0))
_usg = _call(mc.unordered_set_grad, dict(f=_sq, dist=CAT4, n=200, k=2, rng=0))


def _surrogate():
    return mc.RebarSurrogate(_sq, _dsq)


def _rlx(**kw):
    a = dict(f=_sq, dist=BERN, n=200, rng=0, train_steps=1, train_batch=32)
    a.update(kw)
    if "surrogate" not in a:
        a["surrogate"] = _surrogate()
    return mc.relax_grad(a.pop("f"), a.pop("dist"), a.pop("n"), **a)


CALL_TABLE_NEW = []
CALL_TABLE_NEW += _estimator_rows("mvd_grad", _mvd)
CALL_TABLE_NEW += [
    Call("mvd_grad-coupling-string", lambda: _mvd(coupling="yes"), (TE, "coupling")),
    Call("mvd_grad-value-string", lambda: _mvd(value="yes"), (TE, "value")),
    Call("mvd_grad-wrt-unknown", lambda: _mvd(wrt=["mu"]), (VE, "wrt")),
    Call("mvd_grad-wrt-string", lambda: _mvd(wrt="loc"),  # one name
         lambda r: np.testing.assert_equal(sorted(r.grad), ["loc"])),
    Call("mvd_grad-wrt-string-unknown", lambda: _mvd(wrt="mu"), (VE, "wrt")),
    Call("mvd_grad-wrt-empty", lambda: _mvd(wrt=[]), (VE, "wrt")),
    Call("mvd_grad-wrt-loc", lambda: _mvd(wrt=["loc"]),
         lambda r: np.testing.assert_equal(sorted(r.grad), ["loc"])),
    Call("mvd_grad-dist-dirichlet", lambda: _mvd(dist=mc.Dirichlet([1.0, 2.0])),
         (VE, "mvd_grad")),
    Call("mvd_grad-baseline", lambda: _mvd(baseline="loo"), (TE, "baseline")),
]
CALL_TABLE_NEW += _estimator_rows("pathwise_cv_grad", _pcv)
CALL_TABLE_NEW += _rows("pathwise_cv_grad-grad_f", lambda v: _pcv(grad_f=v),
                        _bad_grad_cases("grad_f"))
CALL_TABLE_NEW += [
    Call("pathwise_cv_grad-cv-unknown", lambda: _pcv(control_variates=["gamma"]),
         ((TE, VE), r"control_variates\[0\]")),
    Call("pathwise_cv_grad-cv-number", lambda: _pcv(control_variates=3.0),
         (TE, "control_variates")),
    Call("pathwise_cv_grad-cv-None", lambda: _pcv(control_variates=None),
         ((TE, VE), "control_variates")),
    Call("pathwise_cv_grad-cv-grad_mean-nan",
         lambda: _pcv(control_variates=[(_dsq, {"loc": np.nan, "scale": 0.0})]),
         (VE, "grad_mean")),
    Call("pathwise_cv_grad-cv-grad_h-returns-nan",
         lambda: _pcv(control_variates=[(lambda x: x * np.nan, {"loc": 1.0, "scale": 0.0})]),
         (VE, "returned a non-finite")),
    Call("pathwise_cv_grad-cv-coefficient-nan",
         lambda: _pcv(control_variates=[(_dsq, {"loc": 1.0, "scale": 0.0}, np.nan)]),
         (VE, "coefficient")),
    Call("pathwise_cv_grad-dist-bernoulli", lambda: _pcv(dist=BERN), (VE, "supports")),
]
CALL_TABLE_NEW += _estimator_rows("relax_grad", _rlx)
CALL_TABLE_NEW += [
    Call("relax_grad-surrogate-None", lambda: _rlx(surrogate=None), (TE, "surrogate")),
    Call("relax_grad-surrogate-callable", lambda: _rlx(surrogate=_sq), (TE, "surrogate")),
    Call("relax_grad-train_steps-negative", lambda: _rlx(train_steps=-1), (VE, "train_steps")),
    Call("relax_grad-train_steps-float", lambda: _rlx(train_steps=1.5), (TE, "train_steps")),
    Call("relax_grad-train_steps-zero", lambda: _rlx(train_steps=0), _is_estimate),
    Call("relax_grad-train_batch-zero", lambda: _rlx(train_batch=0), (VE, "train_batch")),
    Call("relax_grad-train_batch-string", lambda: _rlx(train_batch="8"), (TE, "train_batch")),
    Call("relax_grad-dist-normal", lambda: _rlx(dist=NORM), (VE, "relax_grad supports")),
    Call("relax_grad-categorical", lambda: _rlx(dist=CAT, surrogate=mc.RebarSurrogate(
        lambda x: (x * [1.0, -2.0, 3.0]).sum(-1), lambda x: np.broadcast_to([1.0, -2.0, 3.0],
                                                                           x.shape))),
         _is_estimate),
]
CALL_TABLE_NEW += _estimator_rows("sum_and_sample_grad", _sas)
CALL_TABLE_NEW += _rows("sum_and_sample_grad-k", lambda v: _sas(k=v),
                        {**_n_cases("k", minimum=1), "huge": (2**40, (VE, "k must be <="))})
CALL_TABLE_NEW += [
    Call("sum_and_sample_grad-dist-normal", lambda: _sas(dist=NORM), (VE, "supports")),
]
CALL_TABLE_NEW += _estimator_rows("unordered_set_grad", _usg)
CALL_TABLE_NEW += _rows("unordered_set_grad-k", lambda v: _usg(k=v),
                        {**_n_cases("k", minimum=1), "huge": (2**40, (VE, "k must be <="))})
CALL_TABLE_NEW += [
    Call("unordered_set_grad-baseline-string", lambda: _usg(baseline="loo"), (TE, "baseline")),
    Call("unordered_set_grad-baseline-false", lambda: _usg(baseline=False), _is_estimate),
    Call("unordered_set_grad-dist-normal", lambda: _usg(dist=NORM), (VE, "supports")),
]

# ---- exact sums: no n, no rng, no engine arguments --------------------------
_enum = _call(mc.enumerate_grad, dict(f=_sq, dist=CAT), positional=("f", "dist"))
CALL_TABLE_NEW += _estimator_rows("enumerate_grad", _enum, n=False, engine=False,
                                  f_ok=_is_estimate)
# enumerate_grad has no rng: the rng rows are replaced below
CALL_TABLE_NEW = [c for c in CALL_TABLE_NEW if not c.id.startswith("enumerate_grad-rng")]
CALL_TABLE_NEW += [
    Call("enumerate_grad-rng", lambda: _enum(rng=0), (TE, "rng")),
    Call("enumerate_grad-max_support-zero", lambda: _enum(max_support=0), (VE, "max_support")),
    Call("enumerate_grad-max_support-float", lambda: _enum(max_support=2.5),
         (TE, "max_support")),
    Call("enumerate_grad-max_support-too-small", lambda: _enum(max_support=2),
         (VE, "max_support")),
    Call("enumerate_grad-chunk_size-zero", lambda: _enum(chunk_size=0), (VE, "chunk_size")),
    Call("enumerate_grad-chunk_size-float", lambda: _enum(chunk_size=2.5), (TE, "chunk_size")),
    Call("enumerate_grad-chunk_size-one", lambda: _enum(chunk_size=1), _is_estimate),
    Call("enumerate_grad-tol-negative", lambda: _enum(dist=mc.Poisson(2.0), tol=-1.0,
                                                      f_bound=1.0), (VE, "tol")),
    Call("enumerate_grad-tol-nan", lambda: _enum(dist=mc.Poisson(2.0), tol=np.nan,
                                                 f_bound=1.0), (VE, "tol")),
    Call("enumerate_grad-f_bound-nan", lambda: _enum(dist=mc.Poisson(2.0), tol=1e-6,
                                                     f_bound=np.nan), (VE, "f_bound")),
    Call("enumerate_grad-f_bound-string", lambda: _enum(dist=mc.Poisson(2.0), tol=1e-6,
                                                        f_bound="1"), (TE, "f_bound")),
    Call("enumerate_grad-dist-normal", lambda: _enum(dist=NORM), (VE, "enumerate")),
]
_adv = _call(mc.enumeration_advice, dict(f=_sq, dist=CAT, target_se=0.01, rng=0),
             positional=("f", "dist", "target_se"))
CALL_TABLE_NEW += _rows("enumeration_advice-target_se", lambda v: _adv(target_se=v),
                        {k: v for k, v in _positive_cases("target_se").items()
                         if k not in ("empty", "vector")})
CALL_TABLE_NEW += _rows("enumeration_advice-f", lambda v: _adv(f=v),
                        {k: v for k, v in _bad_f_cases("f").items() if v[1] != "ok"})
CALL_TABLE_NEW += _rows("enumeration_advice-pilot", lambda v: _adv(pilot=v),
                        _n_cases("pilot", minimum=4))
CALL_TABLE_NEW += [
    Call("enumeration_advice-rng-string", lambda: _adv(rng="x"), (TE, "rng")),
    Call("enumeration_advice-dist-None", lambda: _adv(dist=None), (TE, "dist")),
    Call("enumeration_advice-ok", lambda: _adv(), _ok),
]

# ---- tune_rebar and the surrogates ----------------------------------------
_tr = _call(mc.tune_rebar, dict(f=_sq, dist=BERN, grad_f=_dsq, steps=3, batch=16, rng=0),
            positional=("f", "dist"))
CALL_TABLE_NEW += _rows("tune_rebar-f", lambda v: _tr(f=v),
                        {k: v for k, v in _bad_f_cases("f").items() if v[1] != "ok"})
CALL_TABLE_NEW += _rows("tune_rebar-grad_f", lambda v: _tr(grad_f=v),
                        {k: v for k, v in _bad_grad_cases("grad_f").items() if v[1] != "ok"})
CALL_TABLE_NEW += _rows("tune_rebar-steps", lambda v: _tr(steps=v), _n_cases("steps", 1))
CALL_TABLE_NEW += _rows("tune_rebar-batch", lambda v: _tr(batch=v), _n_cases("batch"))
CALL_TABLE_NEW += _rows("tune_rebar-lr", lambda v: _tr(lr=v),
                        {k: v for k, v in _positive_cases("lr").items()
                         if k not in ("empty", "vector", "object")})
CALL_TABLE_NEW += _rows("tune_rebar-temperature", lambda v: _tr(temperature=v),
                        {k: v for k, v in _positive_cases("temperature").items()
                         if k not in ("empty", "vector", "object")})
CALL_TABLE_NEW += [
    Call("tune_rebar-eta-nan", lambda: _tr(eta=np.nan), (VE, "eta")),
    Call("tune_rebar-eta-string", lambda: _tr(eta="x"), ((TE, VE), "eta")),
    Call("tune_rebar-rng-string", lambda: _tr(rng="x"), (TE, "rng")),
    Call("tune_rebar-dist-normal", lambda: _tr(dist=NORM), (VE, "supports")),
    Call("tune_rebar-ok", lambda: _tr(), _ok),
]
CALL_TABLE_NEW += [
    Call("RebarSurrogate-f-None", lambda: mc.RebarSurrogate(None, _dsq), (TE, "f")),
    Call("RebarSurrogate-grad_f-string", lambda: mc.RebarSurrogate(_sq, "g"), (TE, "grad_f")),
    Call("RebarSurrogate-temperature-zero", lambda: mc.RebarSurrogate(_sq, _dsq, temperature=0.0),
         (VE, "temperature")),
    Call("RebarSurrogate-temperature-nan",
         lambda: mc.RebarSurrogate(_sq, _dsq, temperature=np.nan), (VE, "temperature")),
    Call("RebarSurrogate-eta-inf", lambda: mc.RebarSurrogate(_sq, _dsq, eta=np.inf), (VE, "eta")),
    Call("RebarSurrogate-lr-negative", lambda: mc.RebarSurrogate(_sq, _dsq, lr=-1.0), (VE, "lr")),
    Call("RebarSurrogate-lr-string", lambda: mc.RebarSurrogate(_sq, _dsq, lr="1"), (TE, "lr")),
]


def _ns(**kw):
    a = dict(value=lambda z, phi: (z * phi[0]).reshape(len(z), -1).sum(1),
             grad_z=lambda z, phi: np.full(np.shape(z), phi[0]),
             grad_phi=lambda z, phi: z.reshape(len(z), -1).sum(1)[:, None],
             phi=np.array([0.5]))
    a.update(kw)
    return mc.NumpySurrogate(a.pop("value"), a.pop("grad_z"), a.pop("grad_phi"), a.pop("phi"),
                             **a)


CALL_TABLE_NEW += [
    Call("NumpySurrogate-value-None", lambda: _ns(value=None), (TE, "value")),
    Call("NumpySurrogate-grad_z-string", lambda: _ns(grad_z="g"), (TE, "grad_z")),
    Call("NumpySurrogate-grad_phi-number", lambda: _ns(grad_phi=1.0), (TE, "grad_phi")),
    Call("NumpySurrogate-phi-nan", lambda: _ns(phi=np.array([np.nan])), (VE, "phi")),
    Call("NumpySurrogate-phi-string", lambda: _ns(phi="a"), (TE, "phi")),
    Call("NumpySurrogate-phi-2d", lambda: _ns(phi=np.ones((2, 2))), (VE, "phi")),
    Call("NumpySurrogate-lr-zero", lambda: _ns(lr=0.0), (VE, "lr")),
    Call("NumpySurrogate-fd_step-nan", lambda: _ns(fd_step=np.nan), (VE, "fd_step")),
    Call("NumpySurrogate-in-relax_grad", lambda: _rlx(surrogate=_ns()), _is_estimate),
    Call("NumpySurrogate-value-returns-nan",
         lambda: _rlx(surrogate=_ns(value=lambda z, phi: np.full(len(z), np.nan))),
         (VE, "the surrogate returned nan")),
    Call("NumpySurrogate-grad_z-wrong-shape",
         lambda: _rlx(surrogate=_ns(grad_z=lambda z, phi: np.ones(len(z)))),
         (VE, "the surrogate's grad returned shape")),
    # the training steps (after the estimate) check the surrogate's callables too
    Call("NumpySurrogate-training-value-returns-nan",
         lambda: mc.relax.train_surrogate(_sq, BERN, _ns(
             value=lambda z, phi: np.full(len(z), np.nan)), steps=1, batch=8, rng=0),
         (VE, "value returned nan")),
    Call("NumpySurrogate-training-grad_z-returns-inf",
         lambda: mc.relax.train_surrogate(_sq, BERN, _ns(
             grad_z=lambda z, phi: np.full(np.shape(z), np.inf)), steps=1, batch=8, rng=0),
         (VE, "grad_z returned a non-finite")),
    Call("NumpySurrogate-training-grad_phi-wrong-shape",
         lambda: mc.relax.train_surrogate(_sq, BERN, _ns(
             grad_phi=lambda z, phi: np.ones((len(z), 3))), steps=1, batch=8, rng=0),
         (VE, "grad_phi returned shape")),
    Call("NumpySurrogate-training-grad_phi-nan",
         lambda: mc.relax.train_surrogate(_sq, BERN, _ns(
             grad_phi=lambda z, phi: np.full((len(z), 1), np.nan)), steps=1, batch=8, rng=0),
         (VE, "grad_phi")),
    Call("NumpySurrogate-training-diverges",
         lambda: mc.relax.train_surrogate(lambda x: 1e200 * _sq(x), BERN, _ns(lr=1e300),
                                          steps=3, batch=8, rng=0),
         (FPE, "overflowed")),
]


def _torch_surrogate(**kw):
    pytest.importorskip("torch")
    return mc.TorchSurrogate(**kw)


CALL_TABLE_NEW += [
    Call("TorchSurrogate-input_size-zero", lambda: _torch_surrogate(input_size=0),
         (VE, "input_size")),
    Call("TorchSurrogate-input_size-float", lambda: _torch_surrogate(input_size=2.5),
         (TE, "input_size")),
    Call("TorchSurrogate-hidden-zero", lambda: _torch_surrogate(input_size=2, hidden=0),
         (VE, "hidden")),
    Call("TorchSurrogate-lr-nan", lambda: _torch_surrogate(input_size=2, lr=np.nan), (VE, "lr")),
    Call("TorchSurrogate-module-string", lambda: _torch_surrogate(input_size=2, module="mlp"),
         (TE, "module")),
    Call("TorchSurrogate-in-relax_grad", lambda: _rlx(surrogate=_torch_surrogate(input_size=2)),
         _is_estimate),
]

# ---- baselines -----------------------------------------------------------------
_sg = _call(mc.score_grad, dict(f=_sq, dist=mc.Normal([0.5, -0.2], [1.5, 1.5]), n=200, rng=0))
CALL_TABLE_NEW += [
    Call("MovingAverageBaseline-decay-one", lambda: mc.MovingAverageBaseline(1.0), (VE, "decay")),
    Call("MovingAverageBaseline-decay-negative", lambda: mc.MovingAverageBaseline(-0.1),
         (VE, "decay")),
    Call("MovingAverageBaseline-decay-nan", lambda: mc.MovingAverageBaseline(np.nan),
         (VE, "decay")),
    Call("MovingAverageBaseline-decay-string", lambda: mc.MovingAverageBaseline("0.9"),
         (TE, "decay")),
    Call("MovingAverageBaseline-debias-string", lambda: mc.MovingAverageBaseline(debias="no"),
         (TE, "debias")),
    Call("MovingAverageBaseline-initial-nan", lambda: mc.MovingAverageBaseline(initial=np.nan),
         (VE, "initial")),
    Call("MovingAverageBaseline-initial-string",
         lambda: mc.MovingAverageBaseline(initial="0"), (TE, "initial")),
    Call("MovingAverageBaseline-update-nan", lambda: mc.MovingAverageBaseline().update(np.nan),
         (VE, "")),
    Call("MovingAverageBaseline-update-string", lambda: mc.MovingAverageBaseline().update("1"),
         (TE, "")),
    Call("MovingAverageBaseline-in-score_grad",
         lambda: _sg(baseline=mc.MovingAverageBaseline(initial=1.0)), _is_estimate),
    Call("ContextBaseline-fn-string", lambda: mc.ContextBaseline("f"), (TE, "fn")),
    Call("ContextBaseline-in-score_grad", lambda: _sg(baseline=mc.ContextBaseline()),
         _is_estimate),
    Call("ContextBaseline-fn-returns-nan",
         lambda: _sg(baseline=mc.ContextBaseline(lambda x, c: np.full(len(x), np.nan))),
         (VE, "returned")),
    Call("ContextBaseline-fn-returns-wrong-shape",
         lambda: _sg(baseline=mc.ContextBaseline(lambda x, c: np.ones((len(x), 2)))),
         (VE, "returned shape")),
    Call("ContextBaseline-fn-returns-None",
         lambda: _sg(baseline=mc.ContextBaseline(lambda x, c: None)), (TE, "returned None")),
    Call("ContextBaseline-fn-raises",
         lambda: _sg(baseline=mc.ContextBaseline(lambda x, c: {}["k"])), (KeyError, "k")),
]
# the baseline argument of score_grad itself
CALL_TABLE_NEW += _rows("score_grad-baseline", lambda v: _sg(baseline=v), {
    "nan": (np.nan, (VE, "baseline")),
    "inf": (np.inf, (VE, "baseline")),
    "string": ("best", (VE, "baseline")),
    "list": ([1.0], ((TE, VE), "baseline")),
    "bool": (True, ((TE, VE), "baseline")),
    "object": (object(), ((TE, VE), "baseline")),
})

# ---- score_grad's new arguments ---------------------------------------------------
CALL_TABLE_NEW += _rows("score_grad-batch_ndims", lambda v: _sg(batch_ndims=v), {
    "negative": (-1, (VE, "batch_ndims")),
    "float": (1.0, (TE, "batch_ndims")),
    "string": ("1", (TE, "batch_ndims")),
    "None": (None, (TE, "batch_ndims")),
    "bool": (True, (TE, "batch_ndims")),
    "too-many": (2, (VE, "batch_ndims")),
})
CALL_TABLE_NEW += [
    Call("score_grad-batch_ndims-one",
         lambda: _sg(f=lambda x: x ** 2, batch_ndims=1),
         lambda r: np.testing.assert_equal(np.shape(r.value), (2,))),
    Call("score_grad-batch_ndims-f-wrong-shape",
         lambda: _sg(f=lambda x: x[:, 0], batch_ndims=1), (VE, "f must return shape")),
]
CALL_TABLE_NEW += _rows("score_grad-sampler", lambda v: _sg(sampler=v), {
    "unknown": ("halton", (VE, "sampler")),
    "None": (None, ((TE, VE), "sampler")),
    "number": (1, ((TE, VE), "sampler")),
    "upper": ("SOBOL", (VE, "sampler")),
})
_qmc = _call(mc.score_grad, dict(f=_sq, dist=mc.Normal([0.5, -0.2], 1.5), n=256, rng=0,
                                 sampler="sobol"))
CALL_TABLE_NEW += _rows("score_grad-n_randomizations", lambda v: _qmc(n_randomizations=v), {
    **_n_cases("n_randomizations"),
    "None": (None, _is_estimate),  # None: the default count
    "huge": (2**40, (VE, "n_randomizations")),
})
CALL_TABLE_NEW += [
    Call("score_grad-n_randomizations-without-sobol", lambda: _sg(n_randomizations=8),
         ((VE, TE), "n_randomizations")),
    Call("score_grad-sobol", lambda: _qmc(), _is_estimate),
    Call("QMCWarning-n-not-power-of-two", lambda: _qmc(n=300), "warns"),
    Call("score_grad-sobol-discrete", lambda: _qmc(dist=BERN, f=_sq), _is_estimate),
    Call("score_grad-sobol-f-nan", lambda: _qmc(f=lambda x: _sq(x) * np.nan), (VE, "f returned")),
    Call("score_grad-sobol-antithetic", lambda: _qmc(antithetic=True), _is_estimate),
    Call("score_grad-sobol-antithetic-string", lambda: _qmc(antithetic="yes"),
         (TE, "antithetic")),
]

# ---- Joint -----------------------------------------------------------------------
JOINT = mc.Joint(z=mc.Bernoulli(logits=0.3), w=mc.Normal(0.0, 1.0))
CALL_TABLE_NEW += [
    Call("Joint-empty", lambda: mc.Joint(), (VE, "Joint")),
    Call("Joint-component-int", lambda: mc.Joint(a=3), (TE, "component 'a'")),
    Call("Joint-component-None", lambda: mc.Joint(a=None), (TE, "component 'a'")),
    Call("Joint-component-class", lambda: mc.Joint(a=mc.Normal), (TE, "component 'a'")),
    Call("Joint-nested", lambda: mc.Joint(a=JOINT), (TE, "Joint")),
    Call("Joint-positional-not-mapping", lambda: mc.Joint([mc.Normal(0.0, 1.0)]), (TE, "Joint")),
    Call("Joint-both-forms", lambda: mc.Joint({"a": mc.Normal(0.0, 1.0)}, b=mc.Normal(0.0, 1.0)),
         lambda r: np.testing.assert_equal(r.sample(3, rng=0)["b"].shape, (3,))),
    Call("Joint-same-name-twice",
         lambda: mc.Joint({"a": mc.Normal(0.0, 1.0)}, a=mc.Normal(0.0, 1.0)), ((TE, VE), "'a'")),
    Call("Joint-sample-n-negative", lambda: JOINT.sample(-1), (VE, "n must be >= 0")),
    Call("Joint-score_grad", lambda: mc.score_grad(lambda x: x["z"] + x["w"] ** 2, JOINT, 500,
                                                   rng=0), _is_estimate),
    Call("Joint-score_grad-f-nan",
         lambda: mc.score_grad(lambda x: x["w"] * np.nan, JOINT, 500, rng=0), (VE, "f returned")),
    Call("Joint-score_grad-f-wrong-shape",
         lambda: mc.score_grad(lambda x: np.stack([x["w"], x["w"]]), JOINT, 500, rng=0),
         (VE, "f returned shape")),
]

# ---- families: the multivariate normals with a genuine non-contiguous matrix -------
_COV = np.array([[2.0, 0.5], [0.5, 1.0]])


def _noncontig(a):
    b = np.repeat(np.asarray(a, float), 2, axis=1)[:, ::2]
    b.setflags(write=False)
    assert not b.flags.c_contiguous
    return b


CALL_TABLE_NEW += [
    Call("MultivariateNormal-noncontig-readonly",
         lambda: mc.MultivariateNormal([0.5, -1.0], _noncontig(_COV)).sample(4, rng=0),
         lambda r: np.testing.assert_array_equal(
             r, mc.MultivariateNormal([0.5, -1.0], _COV).sample(4, rng=0))),
    Call("MultivariateNormal-two-matrices",
         lambda: mc.MultivariateNormal([0.0, 0.0], _COV, precision_matrix=_COV),
         (VE, "exactly one")),
    Call("MultivariateNormal-loc-wrong-size", lambda: mc.MultivariateNormal([0.0] * 3, _COV),
         (VE, "MultivariateNormal")),
    Call("MultivariateNormal-score_grad", lambda: mc.score_grad(
        _sq, mc.MultivariateNormal([0.5, -1.0], _COV), 500, rng=0), _is_estimate),
    Call("LowRankMultivariateNormal-score_grad", lambda: mc.score_grad(
        _sq, mc.LowRankMultivariateNormal([0.0, 1.0], [[1.0], [0.5]], [1.0, 2.0]), 500, rng=0),
        _is_estimate),
    Call("OneHotCategorical-score_grad", lambda: mc.score_grad(
        _sq, mc.OneHotCategorical(logits=[0.0, 1.0]), 500, rng=0), _is_estimate),
]


def _run_row(call):
    if call.expect == "warns":
        with pytest.warns(mc.QMCWarning):
            call.thunk()
    elif isinstance(call.expect, tuple):
        exc, match = call.expect
        with pytest.raises(exc, match=match) if match else pytest.raises(exc):
            call.thunk()
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", mc.QMCWarning)
            r = call.thunk()
        (_is_estimate if call.expect == "ok" else call.expect)(r)


@pytest.mark.parametrize("call", [c.param() for c in CALL_TABLE_NEW])
def test_call_table_new(call):
    _run_row(call)


ROUND3_COVERED = {
    "Chi2", "Gumbel", "HalfNormal", "InverseGamma", "Joint", "Laplace", "Weibull", "Uniform",
    "StudentT", "Cauchy", "HalfCauchy", "VonMises", "OneHotCategorical", "MultivariateNormal",
    "LowRankMultivariateNormal", "ContextBaseline", "MovingAverageBaseline", "enumerate_grad",
    "enumeration_advice", "mvd_grad", "pathwise_cv_grad", "relax_grad", "tune_rebar",
    "sum_and_sample_grad", "unordered_set_grad", "NumpySurrogate", "RebarSurrogate",
    "TorchSurrogate", "QMCWarning",
}


def test_round3_table_covers_its_names():
    heads = {c.id.split("-")[0] for c in CALL_TABLE_NEW}
    from test_reliability import FAMILY_TABLE

    families = {cls.__name__ for cls, _, _ in FAMILY_TABLE.values()}
    for name in ROUND3_COVERED:
        assert name in heads or name in families, name


def test_round3_ids_are_unique():
    ids = [c.id for c in CALL_TABLE_NEW]
    assert len(ids) == len(set(ids)), [i for i in ids if ids.count(i) > 1]
