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
from test_reliability_apps import (_bad_f_cases, _bad_grad_cases, _dist_cases, _dsq, _n_cases,
                                   _positive_cases, _rows, _sq)

VE, TE = ValueError, TypeError
FPE = FloatingPointError

NORM = mc.Normal(0.5, 1.5)
BERN = mc.Bernoulli(logits=[0.3, -0.7])
CAT = mc.Categorical(logits=[0.0, 1.0, -1.0])
CAT4 = mc.Categorical(logits=[0.0, 1.0, -1.0, 0.5])


def _is_estimate(r):
    # (mvd_grad's value is NaN unless value=True: the gradient is checked)
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


def _est(f=_sq, dist=NORM, n=200, rng=0, **kw):
    """mc.Estimator prepared for dist's family, called on dist."""
    family = type(dist) if isinstance(dist, mc.Distribution) else dist
    return mc.Estimator(family, f, n, rng=rng, **kw)(dist)


CALL_TABLE_NEW = []
CALL_TABLE_NEW += _estimator_rows("Estimator", _est)
CALL_TABLE_NEW += [
    Call("Estimator-params-nan", lambda: mc.Estimator(mc.Normal, _sq, 200, rng=0)(
        loc=np.nan, scale=1.0), (VE, "loc")),
    Call("Estimator-params-unknown", lambda: mc.Estimator(mc.Normal, _sq, 200, rng=0)(
        mu=0.0, scale=1.0), (TE, "mu")),
    Call("Estimator-baseline-unknown", lambda: mc.Estimator(mc.Normal, _sq, 200, rng=0,
                                                            baseline="mean"), (VE, "baseline")),
    Call("Estimator-family-not-a-family", lambda: mc.Estimator(len, _sq, 200), (TE, "family")),
]
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


ROUND3_COVERED = {
    "Chi2", "Gumbel", "HalfNormal", "InverseGamma", "Joint", "Laplace", "Weibull", "Uniform",
    "StudentT", "Cauchy", "HalfCauchy", "VonMises", "OneHotCategorical", "MultivariateNormal",
    "LowRankMultivariateNormal", "ContextBaseline", "MovingAverageBaseline", "enumerate_grad",
    "enumeration_advice", "mvd_grad", "pathwise_cv_grad", "relax_grad", "tune_rebar",
    "sum_and_sample_grad", "unordered_set_grad", "NumpySurrogate", "RebarSurrogate",
    "TorchSurrogate", "QMCWarning", "Estimator",
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


# ===========================================================================
# the applications' new parts: vi, rl, finance; the torch / jax bridges
# ===========================================================================

Q = mc.Normal(0.0, 1.0)


def _lj(x):
    x = np.asarray(x, float)
    return -0.5 * (x - 1.0) ** 2


def _glj(x):
    return -(np.asarray(x, float) - 1.0)


def _is_vi_estimate(r):
    _is_estimate(r)
    assert np.isfinite(r.value)


_eg = _call(vi.elbo_grad, dict(log_joint=_lj, q=Q, n=64, rng=0), positional=("log_joint", "q", "n"))
_fit = _call(vi.fit, dict(log_joint=_lj, q=Q, steps=3, n=16, rng=0, progress=False),
             positional=("log_joint", "q"))
DATA = np.linspace(-1.0, 3.0, 40)


def _lj_data(x, idx):
    x = np.asarray(x, float)
    return -0.5 * ((x[:, None] - DATA[np.asarray(idx)][None, :]) ** 2).sum(1)


def _lp(x):
    return -0.5 * np.asarray(x, float) ** 2


_sub = _call(vi.elbo_grad, dict(log_joint=_lj_data, q=Q, n=64, rng=0, data_size=40, batch_size=8,
                                log_prior=_lp), positional=("log_joint", "q", "n"))

CALL_TABLE_NEW += _rows("elbo_grad-estimator", lambda v: _eg(estimator=v, grad_log_joint=_glj), {
    "unknown": ("reinforce", (VE, "estimator")),
    "upper": ("SCORE", (VE, "estimator")),
    "None": (None, ((TE, VE), "estimator")),
    "number": (1, ((TE, VE), "estimator")),
    "pathwise": ("pathwise", _is_vi_estimate),
    "mixed": ("mixed", _is_vi_estimate),
})
CALL_TABLE_NEW += [
    Call("elbo_grad-pathwise-without-grad_log_joint", lambda: _eg(estimator="pathwise"),
         (TE, "grad_log_joint")),
    Call("elbo_grad-pathwise-q-bernoulli",
         lambda: _eg(estimator="pathwise", grad_log_joint=_glj, q=mc.Bernoulli(logits=0.0)),
         (VE, "pathwise")),
]
CALL_TABLE_NEW += _rows("elbo_grad-grad_log_joint",
                        lambda v: _eg(estimator="pathwise", grad_log_joint=v),
                        {k: (v, _is_vi_estimate if e == "ok" else (e[0], "grad_log_joint"))
                         for k, (v, e) in _bad_grad_cases("grad_log_joint").items()
                         if k not in ("returns-bool", "raises")})
CALL_TABLE_NEW += _rows("elbo_grad-data_size", lambda v: _sub(data_size=v),
                        {**_n_cases("data_size", minimum=1),
                         "None": (None, (VE, "data_size")),  # batch_size needs it
                         "below-batch_size": (4, (VE, "batch_size"))})
CALL_TABLE_NEW += _rows("elbo_grad-batch_size", lambda v: _sub(batch_size=v), {
    **_n_cases("batch_size", minimum=1), "None": (None, _is_vi_estimate)})
CALL_TABLE_NEW += _rows("elbo_grad-log_prior", lambda v: _sub(log_prior=v),
                        {k: (v, _is_vi_estimate if e == "ok" else (e[0], "log_prior"))
                         for k, (v, e) in _bad_f_cases("log_prior").items()
                         if k not in ("None-callable", "raises")})
CALL_TABLE_NEW += [
    Call("elbo_grad-subsampled", lambda: _sub(), _is_vi_estimate),
    Call("elbo_grad-batch_size-without-data_size", lambda: _eg(batch_size=8),
         ((TE, VE), "data_size")),
    Call("elbo_grad-subsampled-log_joint-returns-nan",
         lambda: _sub(log_joint=lambda x, idx: _lj_data(x, idx) * np.nan), (VE, "log_joint")),
    Call("elbo_grad-subsampled-log_joint-one-argument", lambda: _sub(log_joint=_lj),
         (TE, "positional argument")),
    Call("elbo_grad-sampler-unknown", lambda: _eg(sampler="halton"), (VE, "sampler")),
    Call("elbo_grad-sobol", lambda: _eg(sampler="sobol", n=64), _is_vi_estimate),
    Call("elbo_grad-n_randomizations-zero", lambda: _eg(sampler="sobol", n_randomizations=0),
         (VE, "n_randomizations")),
    Call("elbo_grad-sobol-with-pathwise",
         lambda: _eg(sampler="sobol", estimator="pathwise", grad_log_joint=_glj),
         ((VE, TE), "sampler")),
]
CALL_TABLE_NEW += _rows("fit-estimator", lambda v: _fit(estimator=v, grad_log_joint=_glj), {
    "unknown": ("reinforce", (VE, "estimator")),
    "None": (None, ((TE, VE), "estimator")),
    "pathwise": ("pathwise", _ok),
})
CALL_TABLE_NEW += _rows("fit-lr-schedule", lambda v: _fit(lr=v), {
    "returns-nan": (lambda t: np.nan, (VE, "lr")),
    "returns-negative": (lambda t: -1.0, (VE, "lr")),
    "returns-string": (lambda t: "0.1", (TE, "lr")),
    "returns-None": (lambda t: None, (TE, "lr")),
    "raises": (lambda t: {}["k"], (KeyError, "k")),
    "inverse_time": (vi.inverse_time(0.1), _ok),
    "cosine": (vi.cosine(0.1, 3), _ok),
})
CALL_TABLE_NEW += _rows("inverse_time-lr", lambda v: vi.inverse_time(v),
                        {k: v for k, v in _positive_cases("lr").items()
                         if k not in ("empty", "vector", "object")})
CALL_TABLE_NEW += _rows("inverse_time-scale", lambda v: vi.inverse_time(0.1, scale=v),
                        {k: v for k, v in _positive_cases("scale").items()
                         if k not in ("empty", "vector", "object")})
CALL_TABLE_NEW += [
    Call("inverse_time-power-nan", lambda: vi.inverse_time(0.1, power=np.nan), (VE, "power")),
    Call("inverse_time-power-negative", lambda: vi.inverse_time(0.1, power=-1.0), (VE, "power")),
    Call("inverse_time-power-string", lambda: vi.inverse_time(0.1, power="1"), (TE, "power")),
    Call("inverse_time-t-zero", lambda: vi.inverse_time(0.1)(0), _ok),
]
CALL_TABLE_NEW += _rows("cosine-lr", lambda v: vi.cosine(v, 10),
                        {k: v for k, v in _positive_cases("lr").items()
                         if k not in ("empty", "vector", "object")})
CALL_TABLE_NEW += _rows("cosine-steps", lambda v: vi.cosine(0.1, v), _n_cases("steps", 1))
CALL_TABLE_NEW += [
    Call("cosine-final-nan", lambda: vi.cosine(0.1, 10, final=np.nan), (VE, "final")),
    Call("cosine-final-negative", lambda: vi.cosine(0.1, 10, final=-1.0), (VE, "final")),
    Call("cosine-final-string", lambda: vi.cosine(0.1, 10, final="0"), (TE, "final")),
    Call("cosine-after-the-end", lambda: vi.cosine(0.1, 10, final=0.01)(50),
         lambda r: np.testing.assert_allclose(r, 0.01)),
]

# ---- rl ----------------------------------------------------------------------------
R = np.array([[1.0, 0.0, 2.0], [0.5, 1.0, 0.0]])
V3 = np.array([[0.5, 0.2, 1.0], [0.1, 0.3, 0.0]])
CALL_TABLE_NEW += _rows("gae-rewards", lambda v: rl.gae(v, V3), {
    "nan": (R * np.nan, (VE, "rewards")),
    "inf": (R + np.inf, (VE, "rewards")),
    "string": (R.astype(str), (TE, "rewards")),
    "None": (None, (TE, "rewards")),
    "1d": (R[0], (VE, "rewards")),
    "wrong-shape": (R[:, :2], (VE, "shape")),
    "complex": (R + 0j, (TE, "rewards")),
})
CALL_TABLE_NEW += _rows("gae-values", lambda v: rl.gae(R, v), {
    "nan": (V3 * np.nan, (VE, "values")),
    "string": (V3.astype(str), (TE, "values")),
    "None": (None, (TE, "values")),
    "wrong-shape": (V3[:1], (VE, "shape")),
})
CALL_TABLE_NEW += _rows("gae-gamma", lambda v: rl.gae(R, V3, gamma=v), {
    "nan": (np.nan, (VE, "gamma")), "above-one": (1.5, (VE, "gamma")),
    "negative": (-0.1, (VE, "gamma")), "string": ("1", (TE, "gamma")),
    "None": (None, (TE, "gamma")),
})
CALL_TABLE_NEW += _rows("gae-lam", lambda v: rl.gae(R, V3, lam=v), {
    "nan": (np.nan, (VE, "lam")), "above-one": (1.5, (VE, "lam")),
    "negative": (-0.1, (VE, "lam")), "string": ("1", (TE, "lam")),
    "one": (1.0, lambda r: np.testing.assert_allclose(r, rl.returns_to_go(R) - V3)),
})
CALL_TABLE_NEW += _rows("gae-mask", lambda v: rl.gae(R, V3, mask=v), {
    "float": (np.ones_like(R), (TE, "mask")),
    "wrong-shape": (np.ones((2, 2), bool), (VE, "mask")),
})
FEAT = np.random.default_rng(0).normal(size=(6, 4, 2))
RET = rl.returns_to_go(np.random.default_rng(1).normal(size=(6, 4)))
CALL_TABLE_NEW += _rows("value_baseline-features", lambda v: rl.value_baseline(v, RET), {
    "nan": (FEAT * np.nan, (VE, "features")),
    "string": (FEAT.astype(str), (TE, "features")),
    "2d": (FEAT[:, :, 0], (VE, "features")),
    "wrong-shape": (FEAT[:5], (VE, "shape")),
    "None": (None, (TE, "features")),
})
CALL_TABLE_NEW += _rows("value_baseline-returns", lambda v: rl.value_baseline(FEAT, v), {
    "nan": (RET * np.nan, (VE, "returns")),
    "inf": (RET + np.inf, (VE, "returns")),
    "wrong-shape": (RET[:, :3], (VE, "shape")),
})
CALL_TABLE_NEW += _rows("value_baseline-ridge", lambda v: rl.value_baseline(FEAT, RET, ridge=v), {
    "nan": (np.nan, (VE, "ridge")), "negative": (-1.0, (VE, "ridge")),
    "string": ("0", (TE, "ridge")), "inf": (np.inf, (VE, "ridge")),
})
CALL_TABLE_NEW += [
    Call("value_baseline-one-episode", lambda: rl.value_baseline(FEAT[:1], RET[:1]),
         (VE, "episodes")),
    Call("value_baseline-history-wrong-type",
         lambda: rl.value_baseline(FEAT, RET, history={"a": 1}), (TE, "history")),
    Call("value_baseline-with-history",
         lambda: rl.value_baseline(FEAT, RET, history=rl.LinearValue()),
         lambda r: np.testing.assert_equal(np.isfinite(r).all(), True)),
]
CALL_TABLE_NEW += _rows("LinearValue-decay", lambda v: rl.LinearValue(v), {
    "nan": (np.nan, (VE, "decay")), "above-one": (1.5, (VE, "decay")),
    "negative": (-0.5, (VE, "decay")), "string": ("0.8", (TE, "decay")),
    "None": (None, (TE, "decay")),
})


def _rf(**kw):
    a = dict(env=rl.CartPole(max_steps=10), policy=rl.SoftmaxPolicy(5, 2), iterations=2,
             episodes=4, rng=0, progress=False)
    a.update(kw)
    return rl.reinforce(a.pop("env"), a.pop("policy"), **a)


CALL_TABLE_NEW += _rows("reinforce-gae_lambda", lambda v: _rf(gae_lambda=v), {
    "nan": (np.nan, (VE, "gae_lambda")), "above-one": (1.5, (VE, "gae_lambda")),
    "negative": (-0.5, (VE, "gae_lambda")), "string": ("0.9", (TE, "gae_lambda")),
    "ok": (0.9, _ok),
})
CALL_TABLE_NEW += _rows("reinforce-entropy_coef", lambda v: _rf(entropy_coef=v), {
    "nan": (np.nan, (VE, "entropy_coef")), "inf": (np.inf, (VE, "entropy_coef")),
    "string": ("0.1", (TE, "entropy_coef")), "ok": (0.01, _ok),
})
CALL_TABLE_NEW += [
    Call("reinforce-baseline-value", lambda: _rf(baseline="value"), _ok),
    Call("reinforce-baseline-unknown", lambda: _rf(baseline="critic"), (VE, "baseline")),
]


class _FakeGym:
    """The Gymnasium API on a 1-d random walk (no gymnasium needed)."""

    class spec:
        max_episode_steps = 5

    def __init__(self, reward=1.0, obs=None):
        self.reward, self.obs, self.s = reward, obs, 0.0

    def reset(self, seed=None):
        self.s = 0.0
        return np.array([self.s]), {}

    def step(self, action):
        self.s += 1.0 if int(action) == 1 else -1.0
        obs = np.array([self.s]) if self.obs is None else self.obs
        return obs, self.reward, abs(self.s) > 3, False, {}


def _gym_rf(make, **kw):
    env = rl.GymEnv(make, **kw)
    return rl.reinforce(env, rl.SoftmaxPolicy(env.n_features, 2), iterations=1, episodes=3,
                        rng=0, progress=False)


CALL_TABLE_NEW += [
    Call("GymEnv-make-None", lambda: rl.GymEnv(None), (TE, "make")),
    Call("GymEnv-make-number", lambda: rl.GymEnv(3), (TE, "make")),
    Call("GymEnv-max_steps-zero", lambda: rl.GymEnv(_FakeGym, max_steps=0), (VE, "max_steps")),
    Call("GymEnv-max_steps-float", lambda: rl.GymEnv(_FakeGym, max_steps=2.5),
         (TE, "max_steps")),
    Call("GymEnv-features-not-callable", lambda: rl.GymEnv(_FakeGym, features=3),
         (TE, "features")),
    Call("GymEnv-ok", lambda: _gym_rf(_FakeGym), _ok),
    Call("GymEnv-make-returns-object", lambda: _gym_rf(lambda: object()),
         ((TE, AttributeError), "reset|make")),
    Call("GymEnv-reward-nan", lambda: _gym_rf(lambda: _FakeGym(reward=np.nan)),
         (VE, "reward")),
    Call("GymEnv-reward-string", lambda: _gym_rf(lambda: _FakeGym(reward="1")),
         (TE, "reward")),
    Call("GymEnv-observation-nan", lambda: _gym_rf(lambda: _FakeGym(obs=np.array([np.nan]))),
         (VE, "non-finite observation")),
    Call("GymEnv-observation-wrong-size",
         lambda: _gym_rf(lambda: _FakeGym(obs=np.array([1.0, 2.0]))),
         (VE, "observation of shape")),
]


def _linear(a, b):
    torch = pytest.importorskip("torch")
    return torch.nn.Linear(a, b, dtype=torch.float64)


def _torch_policy(**kw):
    torch = pytest.importorskip("torch")
    a = dict(module=torch.nn.Linear(5, 2, dtype=torch.float64))
    a.update(kw)
    return rl.TorchPolicy(a.pop("module"), **a)


CALL_TABLE_NEW += [
    Call("TorchPolicy-module-None", lambda: _torch_policy(module=None), (TE, "module")),
    Call("TorchPolicy-module-function", lambda: _torch_policy(module=lambda x: x),
         (TE, "module")),
    Call("TorchPolicy-kind-unknown", lambda: _torch_policy(kind="beta"), (VE, "kind")),
    Call("TorchPolicy-log_std-nan", lambda: _torch_policy(kind="gaussian", log_std=np.nan),
         (VE, "log_std")),
    Call("TorchPolicy-chunk-zero", lambda: _torch_policy(chunk=0), (VE, "chunk")),
    Call("TorchPolicy-n_actions-zero", lambda: _torch_policy(n_actions=0), (VE, "n_actions")),
    Call("TorchPolicy-reinforce", lambda: _rf(policy=_torch_policy()), _ok),
    Call("TorchPolicy-wrong-output-width",
         lambda: _rf(policy=_torch_policy(module=_linear(5, 3), n_actions=2)),
         (VE, "n_actions|shape|output")),
]

# ---- finance -------------------------------------------------------------------------
GK = dict(spot=100.0, rate=0.05, vol=0.2, maturity=1.0, n=256, rng=0)


def _gk(payoff="call", **kw):
    a = dict(GK)
    a.update(kw)
    if "strikes" not in a and "strike" not in a:
        a["strike"] = 100.0
    return finance.greeks(payoff, **a)


def _grid_ok(r):
    assert np.isfinite(np.asarray(r.values["delta"] if isinstance(r.values, dict)
                                  else getattr(r, "delta"))).all()


CALL_TABLE_NEW += _rows("greeks-strikes", lambda v: _gk(strikes=v), {
    "nan": (np.array([90.0, np.nan]), (VE, "strike")),
    "inf": (np.array([90.0, np.inf]), (VE, "strike")),
    "negative": (np.array([90.0, -1.0]), (VE, "strike")),
    "empty": (np.zeros(0), (VE, "strikes")),
    "2d": (np.ones((2, 2)) * 100.0, (VE, "strikes")),
    "scalar": (100.0, (VE, "strikes")),
    "string": (np.array(["90"]), (TE, "strike")),
    "object": (np.array([90.0], dtype=object), ((TE, VE), "strike")),
    "ok": (np.array([90.0, 100.0, 110.0]), _ok),
})
CALL_TABLE_NEW += [
    Call("greeks-strikes-and-strike", lambda: _gk(strike=100.0, strikes=[90.0, 110.0]),
         (VE, "not both")),
    Call("greeks-strikes-custom-payoff",
         lambda: _gk(payoff=finance.Payoff(lambda s: np.maximum(s[..., -1, 0] - 100.0, 0.0)),
                     strikes=[90.0, 110.0]), (VE, "strikes")),
    Call("greeks-strikes-with-sobol", lambda: _gk(strikes=[90.0, 110.0], sampler="sobol"),
         (VE, "sampler")),
]
CALL_TABLE_NEW += _rows("greeks-expiries", lambda v: _gk(expiries=v, steps=4), {
    "nan": (np.array([0.5, np.nan]), (VE, "expiries")),
    "negative": (np.array([-0.5, 1.0]), (VE, "expiries")),
    "zero": (np.array([0.0, 1.0]), (VE, "expiries")),
    "beyond-maturity": (np.array([0.5, 2.0]), (VE, "expiries")),
    "empty": (np.zeros(0), (VE, "expiries")),
    "string": (np.array(["1"]), (TE, "expiries")),
    "ok": (np.array([0.5, 1.0]), _ok),
})
HESTON = dict(v0=0.04, kappa=1.5, theta=0.04, xi=0.5, rho=-0.7)


def _heston(**kw):
    a = dict(HESTON)
    a.update(kw)
    return finance.Heston(**a)


CALL_TABLE_NEW += [
    Call("Heston-rho-above-one", lambda: _heston(rho=1.5), (VE, "rho")),
    Call("Heston-rho-nan", lambda: _heston(rho=np.nan), (VE, "rho")),
    Call("Heston-v0-negative", lambda: _heston(v0=-0.1), (VE, "v0")),
    Call("Heston-kappa-zero", lambda: _heston(kappa=0.0), (VE, "kappa")),
    Call("Heston-theta-inf", lambda: _heston(theta=np.inf), (VE, "theta")),
    Call("Heston-xi-string", lambda: _heston(xi="0.5"), (TE, "xi")),
    Call("Heston-param_greeks-string", lambda: _heston(param_greeks="yes"), (TE, "param_greeks")),
    Call("Heston-param_greeks",
         lambda: _gk(model=_heston(param_greeks=True), steps=8, vol=None), _ok),
    Call("Heston-missing-argument", lambda: finance.Heston(v0=0.04), (TE, "")),
]
CALL_TABLE_NEW += _rows("greeks-sampler", lambda v: _gk(sampler=v), {
    "unknown": ("halton", (VE, "sampler")),
    "None": (None, ((TE, VE), "sampler")),
    "sobol": ("sobol", _ok),
})
CALL_TABLE_NEW += _rows("greeks-n_randomizations",
                        lambda v: _gk(sampler="sobol", n_randomizations=v), {
    **_n_cases("n_randomizations"), "None": (None, _ok)})
CALL_TABLE_NEW += [
    Call("greeks-n_randomizations-without-sobol", lambda: _gk(n_randomizations=8),
         ((VE, TE), "n_randomizations")),
]

# ---- the torch and jax bridges ------------------------------------------------------------


def _torch_exp(**kw):
    torch = pytest.importorskip("torch")
    from mcscore import torch as mt

    a = dict(f=_sq, family="Normal", n=256, rng=0,
             loc=torch.tensor(0.5, dtype=torch.float64, requires_grad=True), scale=1.5)
    a.update(kw)
    return mt.expectation(a.pop("f"), a.pop("family"), a.pop("n"), **a)


def _jax_exp(**kw):
    pytest.importorskip("jax")
    import jax.numpy as jnp
    from mcscore import jax as mj

    a = dict(f=_sq, family="Normal", n=256, rng=0, loc=jnp.asarray(0.5), scale=1.5)
    a.update(kw)
    return mj.expectation(a.pop("f"), a.pop("family"), a.pop("n"), **a)


def _bridge_value(r):
    assert np.isfinite(float(r))


for _name, _run in (("torch.expectation", _torch_exp), ("jax.expectation", _jax_exp)):
    CALL_TABLE_NEW += _rows(f"{_name}-n", lambda v, run=_run: run(n=v), _n_cases("n"))
    CALL_TABLE_NEW += _rows(f"{_name}-f", lambda v, run=_run: run(f=v),
                            {k: (v, _bridge_value if e == "ok" else e)
                             for k, (v, e) in _bad_f_cases("f").items()})
    CALL_TABLE_NEW += [
        Call(f"{_name}-family-unknown", lambda run=_run: run(family="Gauss"), (VE, "family")),
        Call(f"{_name}-family-number", lambda run=_run: run(family=3), (TE, "family")),
        Call(f"{_name}-family-instance", lambda run=_run: run(family=NORM), (TE, "family")),
        Call(f"{_name}-param-unknown", lambda run=_run: run(mu=1.0), (TE, "mu")),
        Call(f"{_name}-param-nan", lambda run=_run: run(scale=np.nan), (VE, "scale")),
        Call(f"{_name}-rng-string", lambda run=_run: run(rng="x"), (TE, "rng")),
        Call(f"{_name}-baseline-unknown", lambda run=_run: run(baseline="best"), (VE, "baseline")),
        Call(f"{_name}-batch_ndims-negative", lambda run=_run: run(batch_ndims=-1),
             (VE, "batch_ndims")),
        Call(f"{_name}-options-unknown", lambda run=_run: run(options={"speed": 2}),
             (TE, "speed")),
        Call(f"{_name}-options-not-dict", lambda run=_run: run(options=3), (TE, "options")),
        Call(f"{_name}-return_result-string", lambda run=_run: run(return_result="yes"),
             (TE, "return_result")),
        Call(f"{_name}-ok", lambda run=_run: run(), _bridge_value),
    ]
CALL_TABLE_NEW += [
    Call("torch.expectation-param-complex",
         lambda: _torch_exp(loc=pytest.importorskip("torch").tensor(0.5 + 1j)), (TE, "loc")),
]

NEW_MODULE_HEADS = {"elbo_grad", "fit", "inverse_time", "cosine", "gae", "value_baseline",
                    "LinearValue", "reinforce", "GymEnv", "TorchPolicy", "greeks", "Heston",
                    "torch.expectation", "jax.expectation"}


def test_round3_apps_rows_cover_the_new_module_parts():
    heads = {c.id.split("-")[0] for c in CALL_TABLE_NEW}
    assert NEW_MODULE_HEADS <= heads, NEW_MODULE_HEADS - heads


@pytest.mark.parametrize("estimator", ["pathwise", "mixed"])
def test_elbo_pathwise_and_mixed_with_a_scalar_q(estimator):
    # q = Normal(mu, s) with scalar parameters (these estimators crashed on
    # a 0-d parameter); log p = -(x - 1)^2 / 2: ELBO = -((mu - 1)^2 + s^2) / 2
    # + log s + const, so d/dmu = 1 - mu and d/ds = 1/s - s.
    mu, s = 0.3, 0.7
    r = vi.elbo_grad(_lj, mc.Normal(mu, s), 20_000, rng=0, estimator=estimator,
                     grad_log_joint=_glj)
    assert abs(r.grad["loc"] - (1 - mu)) <= 5 * r.stderr["loc"] + 1e-12
    assert abs(r.grad["scale"] - (1 / s - s)) <= 5 * r.stderr["scale"] + 1e-12
    assert r.stderr["loc"] < 0.05 and r.stderr["scale"] < 0.05


# ---- the rest of the applications' public names ----------------------------------------
BS = dict(spot=100.0, strike=100.0, rate=0.05, vol=0.2, maturity=1.0)


def _bs(**kw):
    a = dict(BS)
    a.update(kw)
    return finance.black_scholes(a.pop("payoff", "call"), **a)


def _ref(**kw):
    a = dict(BS, steps=4)
    a.update(kw)
    return finance.reference(a.pop("payoff", "call"), **a)


def _hc(**kw):
    a = dict(spot=100.0, strike=100.0, rate=0.05, maturity=1.0, model=_heston())
    a.update(kw)
    return finance.heston_call(**a)


def _finite_value(r):
    v = r if np.ndim(r) == 0 and not isinstance(r, dict) else (
        r["price"] if isinstance(r, dict) and "price" in r else next(iter(np.atleast_1d(r))))
    assert np.isfinite(float(np.asarray(v).ravel()[0] if np.ndim(v) else v))


for _fname, _fn in (("black_scholes", _bs), ("reference", _ref), ("heston_call", _hc)):
    for _arg in ("spot", "strike", "rate", "maturity") + (("vol",) if _fname != "heston_call"
                                                         else ()):
        CALL_TABLE_NEW += _rows(f"{_fname}-{_arg}", lambda v, fn=_fn, arg=_arg: fn(**{arg: v}), {
            "nan": (np.nan, (VE, _arg)),
            "inf": (np.inf, (VE, _arg)),
            "string": ("1", (TE, _arg)),
            "None": (None, (TE, _arg)),
        })
    CALL_TABLE_NEW += [Call(f"{_fname}-ok", lambda fn=_fn: fn(), _ok)]
CALL_TABLE_NEW += [
    Call("black_scholes-payoff-unknown", lambda: _bs(payoff="butterfly"), (VE, "payoff")),
    Call("black_scholes-vol-zero", lambda: _bs(vol=0.0), (VE, "vol")),
    Call("reference-steps-zero", lambda: _ref(steps=0), (VE, "steps")),
    Call("heston_call-model-None", lambda: _hc(model=None), (TE, "model")),
    Call("heston_call-dividend-nan", lambda: _hc(dividend=np.nan), (VE, "dividend")),
    Call("geometric_asian_call-steps-zero", lambda: finance.geometric_asian_call(
        **BS, steps=0), (VE, "steps")),
    Call("geometric_asian_call-vol-nan", lambda: finance.geometric_asian_call(
        **{**BS, "vol": np.nan}, steps=4), (VE, "vol")),
    Call("geometric_asian_call-greeks-string", lambda: finance.geometric_asian_call(
        **BS, steps=4, greeks="yes"), (TE, "greeks")),
]
_W2 = [0.5, 0.5]
for _pname, _make in (("basket_call", lambda k, w=_W2: finance.basket_call(k, w)),
                      ("basket_put", lambda k, w=_W2: finance.basket_put(k, w)),
                      ("geometric_basket_call",
                       lambda k, w=_W2: finance.geometric_basket_call(k, w)),
                      ("spread_call", lambda k, w=None: finance.spread_call(k)),
                      ("best_of_call", lambda k, w=None: finance.best_of_call(k)),
                      ("worst_of_call", lambda k, w=None: finance.worst_of_call(k))):
    CALL_TABLE_NEW += _rows(f"{_pname}-strike", lambda v, mk=_make: mk(v), {
        "nan": (np.nan, (VE, "strike")),
        "inf": (np.inf, (VE, "strike")),
        "string": ("1", (TE, "strike")),
        "None": (None, (TE, "strike")),
    })
    if _pname.startswith(("basket", "geometric")):
        CALL_TABLE_NEW += _rows(f"{_pname}-weights", lambda v, mk=_make: mk(100.0, v), {
            "nan": ([0.5, np.nan], (VE, "weights")),
            "empty": ([], (VE, "weights")),
            "2d": ([[0.5, 0.5]], (VE, "weights")),
            "string": (["a", "b"], (TE, "weights")),
        })
CALL_TABLE_NEW += [
    Call("exchange-ok", lambda: finance.exchange(), _ok),
    Call("basket_call-in-greeks", lambda: finance.greeks(
        finance.basket_call(100.0, _W2), spot=[100.0, 100.0], rate=0.05, vol=[0.2, 0.3],
        maturity=1.0, correlation=[[1.0, 0.5], [0.5, 1.0]], n=256, rng=0), _ok),
    Call("basket_call-wrong-asset-count", lambda: finance.greeks(
        finance.basket_call(100.0, [0.3, 0.3, 0.4]), spot=[100.0, 100.0], rate=0.05,
        vol=[0.2, 0.3], maturity=1.0, correlation=[[1.0, 0.5], [0.5, 1.0]], n=256, rng=0),
         (VE, "asset")),
]
_EURO = finance.Payoff(lambda s: np.maximum(s[:, -1, 0] - 100.0, 0.0), name="euro")
CALL_TABLE_NEW += [
    Call("Payoff-fn-None", lambda: finance.Payoff(None), (TE, "fn")),
    Call("Payoff-grad-string", lambda: finance.Payoff(lambda s: s[:, -1, 0], grad="g"),
         (TE, "grad")),
    Call("Payoff-assets-zero", lambda: finance.Payoff(lambda s: s[:, -1, 0], assets=0),
         (VE, "assets")),
    Call("Payoff-grid-string", lambda: finance.Payoff(lambda s: s[:, -1, 0], grid="a"),
         (VE, "grid")),
    Call("Payoff-grid-zero", lambda: finance.Payoff(lambda s: s[:, -1, 0], grid=(0,)),
         (VE, "grid")),
    Call("Payoff-terminal-string", lambda: finance.Payoff(lambda s: s[:, -1, 0],
                                                          terminal="yes"), (TE, "terminal")),
    Call("Payoff-fn-returns-nan", lambda: _gk(payoff=finance.Payoff(
        lambda s: s[:, -1, 0] * np.nan)), (VE, "returned")),
    Call("Payoff-fn-wrong-shape", lambda: _gk(payoff=finance.Payoff(
        lambda s: s[:, -1, :])), (VE, "shape")),
    Call("Diffusion-drift-None", lambda: finance.Diffusion(None, lambda t, x: 0.2 * x),
         (TE, "drift")),
    Call("Diffusion-diffusion-string", lambda: finance.Diffusion(lambda t, x: 0.05 * x, "b"),
         (TE, "diffusion")),
    Call("Diffusion-params-not-dict", lambda: finance.Diffusion(
        lambda t, x: 0.05 * x, lambda t, x: 0.2 * x, params=[1.0]), (TE, "params")),
    Call("Diffusion-params-nan", lambda: finance.Diffusion(
        lambda t, x, a: a * x, lambda t, x, a: 0.2 * x, params={"a": np.nan}), (VE, "a")),
    Call("Diffusion-negative-diffusion", lambda: _gk(payoff=_EURO, model=finance.Diffusion(
        lambda t, x: 0.05 * x, lambda t, x: -0.2 * x), vol=None, steps=4),
         (VE, "diffusion")),
    Call("Diffusion-drift-returns-nan", lambda: _gk(payoff=_EURO, model=finance.Diffusion(
        lambda t, x: x * np.nan, lambda t, x: 0.2 * x), vol=None, steps=4), (VE, "drift")),
    Call("Diffusion-ok", lambda: _gk(payoff=_EURO, model=finance.Diffusion(
        lambda t, x: 0.05 * x, lambda t, x: 0.2 * x), vol=None, steps=4), _ok),
]
CALL_TABLE_NEW += [
    Call("Adam-params-not-dict", lambda: vi.Adam([1.0]), (TE, "params")),
    Call("Adam-params-nan", lambda: vi.Adam({"a": np.nan}), (VE, "params")),
    Call("Adam-lr-zero", lambda: vi.Adam({"a": 1.0}, lr=0.0), (VE, "lr")),
    Call("Adam-betas-above-one", lambda: vi.Adam({"a": 1.0}, betas=(0.9, 1.5)), (VE, "betas")),
    Call("Adam-eps-nan", lambda: vi.Adam({"a": 1.0}, eps=np.nan), (VE, "eps")),
    Call("Adam-step-grads-nan", lambda: vi.Adam({"a": np.ones(2)}).step({"a": np.array(
        [1.0, np.nan])}), (VE, "grad")),
    Call("Adam-step-grads-missing-key", lambda: vi.Adam({"a": np.ones(2)}).step({"b": 1.0}),
         ((KeyError, VE), "a")),
    Call("Adam-step-grads-wrong-shape", lambda: vi.Adam({"a": np.ones(2)}).step(
        {"a": np.ones(3)}), (VE, "shape")),
    Call("transforms-q-None", lambda: vi.transforms(None), (TE, "q")),
    Call("transforms-ok", lambda: vi.transforms(Q), lambda r: np.testing.assert_equal(
        sorted(r), ["loc", "scale"])),
    Call("Trajectories-from-rollout", lambda: rl.rollout(rl.CartPole(max_steps=5),
                                                        rl.SoftmaxPolicy(5, 2), 3, rng=0),
         lambda r: np.testing.assert_equal(r.features.shape[:2], r.mask.shape)),
    Call("rollout-n_episodes-zero", lambda: rl.rollout(rl.CartPole(max_steps=5),
                                                      rl.SoftmaxPolicy(5, 2), 0, rng=0),
         (VE, "n_episodes|n must")),
]

# outputs and constants: nothing to call with bad input
MODULE_NAMES_WITHOUT_ROWS = {"ESTIMATORS", "VIResult", "ReinforceResult", "GREEKS", "Greeks",
                             "METHODS", "PATH_GREEKS", "PAYOFFS", "PathGreeks", "SpotGreeks"}


def test_round3_tables_cover_the_modules_public_names():
    from test_reliability_apps import CALL_TABLE_APPS

    heads = {c.id.split("-")[0] for c in CALL_TABLE_APPS + CALL_TABLE_NEW}
    for m in (vi, rl, finance):
        missing = set(m.__all__) - heads - MODULE_NAMES_WITHOUT_ROWS
        assert not missing, (m.__name__, sorted(missing))


# ---- score_grad's other paths get every estimator's rows too ---------------------------
NB = mc.Normal([0.5, -0.2], [1.5, 1.5])


def _sq_rows(x):
    return np.asarray(x, float) ** 2


_sg_sobol = _call(mc.score_grad, dict(f=_sq, dist=NB, n=256, rng=0, sampler="sobol"))
_sg_batched = _call(mc.score_grad, dict(f=_sq_rows, dist=NB, n=256, rng=0, batch_ndims=1))
_sg_joint = _call(mc.score_grad, dict(f=lambda x: x["z"] + x["w"] ** 2, dist=JOINT, n=256,
                                      rng=0))
_sg_ctx = _call(mc.score_grad, dict(f=_sq, dist=NB, n=256, rng=0,
                                    baseline=mc.ContextBaseline()))
_sg_ma = _call(mc.score_grad, dict(f=_sq, dist=NB, n=256, rng=0,
                                   baseline=mc.MovingAverageBaseline(initial=4.0)))
for _name, _run, _kw in (("score_grad_sobol", _sg_sobol, {}),
                         ("score_grad_batched", _sg_batched, dict(f=False)),
                         ("score_grad_joint", _sg_joint, dict(f=False)),
                         ("score_grad_ContextBaseline", _sg_ctx, {}),
                         ("score_grad_MovingAverageBaseline", _sg_ma, {})):
    CALL_TABLE_NEW += _estimator_rows(_name, _run, **_kw)
# f of a batched call returns (m, *batch); f of a Joint takes a dict of draws
_BAD_F_OUT = {
    "returns-None": (lambda y: None, (TE, "f|None")),
    "returns-nan": (lambda y: y * np.nan, (VE, "f returned")),
    "returns-inf": (lambda y: y + np.inf, (VE, "f returned")),
    "returns-complex": (lambda y: y + 1j, (TE, "f returned")),
    "returns-strings": (lambda y: np.full(np.shape(y), "a"), (TE, "f returned")),
    "returns-object-None": (lambda y: np.full(np.shape(y), None), (TE, "f returned")),
    "returns-wrong-shape": (lambda y: np.stack([y, y]), (VE, "shape")),
    "returns-scalar": (lambda y: 1.0, (VE, "shape|scalar")),
    "returns-float32": (lambda y: np.asarray(y, np.float32), _is_estimate),
    "raises": (lambda y: {}["k"], (KeyError, "k")),
}
# (a batched f returning None is a ValueError naming the shape it must have: test_batched.py)
CALL_TABLE_NEW += _rows("score_grad_batched-f", lambda v: _sg_batched(f=lambda x: v(x ** 2)),
                        {**_BAD_F_OUT, "returns-None": (lambda y: None, (VE, "got None"))})
CALL_TABLE_NEW += _rows("score_grad_joint-f",
                        lambda v: _sg_joint(f=lambda x: v(x["z"] + x["w"] ** 2)), _BAD_F_OUT)
CALL_TABLE_NEW += [
    Call("score_grad_sobol-progress-string", lambda: _sg_sobol(progress="yes"), (TE, "progress")),
    Call("greeks-sobol-n_streams-zero", lambda: _gk(sampler="sobol", n_streams=0),
         (VE, "n_streams")),
    Call("greeks-sobol-block_size-float", lambda: _gk(sampler="sobol", block_size=2.5),
         (TE, "block_size")),
]


SOBOL_INTERRUPT = """
import time
import mcscore as mc
from mcscore import integrands as I
mc.score_grad(I.power(2), mc.Normal(0.0, 1.0), 1024, rng=0, sampler="sobol", n_threads=2)
print("ready", flush=True)
try:
    mc.score_grad(I.power(2), mc.Normal(0.0, 1.0), 2**62, rng=0, sampler="sobol", n_threads=2)
except KeyboardInterrupt:
    print("interrupted", repr(time.time()), flush=True)
"""


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGKILL"), reason="POSIX signals")
def test_sigint_stops_a_parallel_sobol_call_within_a_second():
    # The threads of a sampler='sobol' call on an integrand each ran a whole
    # randomisation: after Ctrl-C the call waited for them (for ever with a
    # huge n).  They now stop at their next chunk of points.
    import os
    from test_reliability import interrupt_script

    sent, line = interrupt_script(SOBOL_INTERRUPT, 1.0, 30)
    assert float(line[0].split()[1]) - sent < 1.0


CALL_TABLE_NEW += [
    Call("enumerate_grad-max_support-huge-40-coordinates",
         lambda: mc.enumerate_grad(_sq, mc.Bernoulli(logits=np.zeros(40)), max_support=2**62),
         (MemoryError, "")),
]


def test_enumerate_more_than_32_coordinates_against_the_exact_sum():
    # numpy's meshgrid stops at 32 arrays: enumerate_grad raised "this
    # function only supports up to 32 dimensions" for 33 coordinates even
    # when their support is small.  E[x^2] = n p (1 - p) + n^2 p^2.
    n = np.array([0] * 31 + [1, 2])
    p = 0.3
    r = mc.enumerate_grad(lambda x: (x * x).sum(-1) * 1.0,
                          mc.Binomial(total_count=n, probs=np.full(33, p)))
    assert abs(r.value - (n * p * (1 - p) + n * n * p * p).sum()) < 1e-12
    np.testing.assert_allclose(r.grad["probs"], n * (1 - 2 * p) + 2 * n * n * p, atol=1e-12)


# last in the file: every row above is in the table
@pytest.mark.parametrize("call", [c.param() for c in CALL_TABLE_NEW])
def test_call_table_new(call):
    _run_row(call)
