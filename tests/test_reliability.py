"""Reliability: adversarial input, concurrency, fork/spawn, memory, numerical
extremes and interrupts, for the core public API.

What was tried (the tables below are the record; each row is one test):

* ``PARAMETER_TABLE``: every parameter of every family constructor (both the
  probs and the logits form) against ``VALUES``: NaN, +-inf, negative, zero,
  above one, fractional, huge, beyond int64, an empty array, a 0-d array,
  object / complex / string / boolean values, None, ragged and nested lists,
  a NaN inside a list, float32, and a non-contiguous read-only view.  The
  expected outcome follows from the parameter's constraint (``EXPECT``), with
  the few family-specific limits in ``OVERRIDES``.
* ``BROADCAST_TABLE``: non-broadcastable parameter shapes.
* ``CALL_TABLE``: every public function and method (``sample``, ``log_prob``,
  ``score``, ``score_grad`` with the three kinds of f, ``score_grad_from_samples``,
  every ``mcscore.integrands`` constructor and the integrand algebra,
  ``effective_n_threads``, ``show_config``) with bad and odd arguments, f
  that raises, returns None / a list / a dict / objects / the wrong shape or
  dtype / NaN / inf / changes length between chunks / re-enters mcscore.
  Each row is ``Call(id, thunk, expect)`` with ``expect`` an exception
  (type, regex) or a checker; a new public function is a few more rows.
* ``RISKY``: calls that could crash the interpreter (huge allocations,
  n beyond int32 in ``sample``, empty draws with C callbacks, NULL function
  pointers, ...) run in a subprocess with an address-space limit; the
  subprocess must exit normally with the expected exception.
* Concurrency (threads vs serial, bit for bit; first use of a shared
  distribution from many threads), fork / spawn / forkserver with a timeout,
  RSS over 10**4 calls, ``EXTREMES`` (each compared with an exact value or
  expecting a clear error), SIGINT for each kind of f.
"""
import ctypes
import gc
import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest
from scipy import LowLevelCallable, special

import mcscore as mc
from mcscore import integrands as I

from _exact import poisson_log_pmf_at_mode

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")
POSIX = sys.platform != "win32"


def _run_py(code, timeout=120, limit_gb=None, env=None):
    """Run code in a fresh interpreter that imports the mcscore under test."""
    e = dict(os.environ)
    import mcscore

    pkg_root = os.path.dirname(os.path.dirname(mcscore.__file__))
    e["PYTHONPATH"] = pkg_root + os.pathsep + HERE + os.pathsep + e.get("PYTHONPATH", "")
    e.update(env or {})
    pre = None
    if limit_gb and POSIX and "MCSCORE_SANITIZED" not in os.environ:
        import resource

        def pre():
            lim = int(limit_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (lim, lim))

    # own session: on a timeout the whole group goes, hung grandchildren included
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=e, preexec_fn=pre,
                         start_new_session=POSIX)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        if POSIX:
            os.killpg(p.pid, signal.SIGKILL)
        else:
            p.kill()
        out, err = p.communicate()
        err += f"\n[timed out after {timeout} s]"
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


# ===========================================================================
# 1. constructor parameters: one row per (family, parameter, value)
# ===========================================================================

# family label -> (constructor, valid kwargs, {parameter: constraint kind})
FAMILY_TABLE = {
    "Normal": (mc.Normal, {"loc": 0.5, "scale": 1.5}, {"loc": "real", "scale": "positive"}),
    "LogNormal": (mc.LogNormal, {"loc": 0.5, "scale": 1.5}, {"loc": "real", "scale": "positive"}),
    "Exponential": (mc.Exponential, {"rate": 2.0}, {"rate": "positive"}),
    "Gamma": (mc.Gamma, {"concentration": 2.0, "rate": 3.0},
              {"concentration": "positive", "rate": "positive"}),
    "Beta": (mc.Beta, {"concentration1": 2.0, "concentration0": 3.0},
             {"concentration1": "positive", "concentration0": "positive"}),
    "Poisson": (mc.Poisson, {"rate": 4.0}, {"rate": "positive"}),
    "Bernoulli-probs": (mc.Bernoulli, {"probs": 0.3}, {"probs": "unit"}),
    "Bernoulli-logits": (mc.Bernoulli, {"logits": -0.5}, {"logits": "real"}),
    "Binomial-probs": (mc.Binomial, {"total_count": 5, "probs": 0.3},
                       {"total_count": "count", "probs": "unit"}),
    "Binomial-logits": (mc.Binomial, {"total_count": 5, "logits": 0.2},
                        {"total_count": "count", "logits": "real"}),
    "Geometric-probs": (mc.Geometric, {"probs": 0.3}, {"probs": "unit_gt0"}),
    "Geometric-logits": (mc.Geometric, {"logits": 0.3}, {"logits": "real"}),
    "NegativeBinomial-probs": (mc.NegativeBinomial, {"total_count": 2.5, "probs": 0.3},
                               {"total_count": "positive", "probs": "unit_lt1"}),
    "NegativeBinomial-logits": (mc.NegativeBinomial, {"total_count": 2.5, "logits": -0.3},
                                {"total_count": "positive", "logits": "real"}),
    "Categorical-probs": (mc.Categorical, {"probs": [0.2, 0.3, 0.5]}, {"probs": "simplex"}),
    "Categorical-logits": (mc.Categorical, {"logits": [0.2, -0.3, 0.5]}, {"logits": "realvec"}),
    "Multinomial-probs": (mc.Multinomial, {"total_count": 4, "probs": [0.2, 0.3, 0.5]},
                          {"total_count": "count", "probs": "simplex"}),
    "Multinomial-logits": (mc.Multinomial, {"total_count": 4, "logits": [0.2, -0.3, 0.5]},
                           {"total_count": "count", "logits": "realvec"}),
    "Dirichlet": (mc.Dirichlet, {"concentration": [0.5, 1.0, 2.0]}, {"concentration": "posvec"}),
    # the families added later
    "Chi2": (mc.Chi2, {"df": 3.0}, {"df": "positive"}),
    "Gumbel": (mc.Gumbel, {"loc": 0.5, "scale": 1.5}, {"loc": "real", "scale": "positive"}),
    "HalfNormal": (mc.HalfNormal, {"scale": 1.5}, {"scale": "positive"}),
    "InverseGamma": (mc.InverseGamma, {"concentration": 3.0, "rate": 2.0},
                     {"concentration": "positive", "rate": "positive"}),
    "Laplace": (mc.Laplace, {"loc": 0.5, "scale": 1.5}, {"loc": "real", "scale": "positive"}),
    "Weibull": (mc.Weibull, {"scale": 1.5, "concentration": 2.0},
                {"scale": "positive", "concentration": "positive"}),
    "Uniform": (mc.Uniform, {"low": 0.0, "high": 3.0}, {"low": "low", "high": "high"}),
    "StudentT": (mc.StudentT, {"df": 3.0, "loc": 0.5, "scale": 1.5},
                 {"df": "positive", "loc": "real", "scale": "positive"}),
    "Cauchy": (mc.Cauchy, {"loc": 0.5, "scale": 1.5}, {"loc": "real", "scale": "positive"}),
    "HalfCauchy": (mc.HalfCauchy, {"scale": 1.5}, {"scale": "positive"}),
    "VonMises": (mc.VonMises, {"loc": 0.5, "concentration": 2.0},
                 {"loc": "real", "concentration": "nonnegative"}),
    "OneHotCategorical-probs": (mc.OneHotCategorical, {"probs": [0.2, 0.3, 0.5]},
                                {"probs": "simplex"}),
    "OneHotCategorical-logits": (mc.OneHotCategorical, {"logits": [0.2, -0.3, 0.5]},
                                 {"logits": "realvec"}),
    "MultivariateNormal-covariance": (
        mc.MultivariateNormal, {"loc": [0.5, -1.0], "covariance_matrix": [[2.0, 0.5], [0.5, 1.0]]},
        {"loc": "realvec", "covariance_matrix": "spd"}),
    "MultivariateNormal-precision": (
        mc.MultivariateNormal, {"loc": [0.5, -1.0], "precision_matrix": [[2.0, 0.5], [0.5, 1.0]]},
        {"precision_matrix": "spd"}),
    "MultivariateNormal-scale_tril": (
        mc.MultivariateNormal, {"loc": [0.5, -1.0], "scale_tril": [[2.0, 0.0], [0.5, 1.0]]},
        {"scale_tril": "tril"}),
    "LowRankMultivariateNormal": (
        mc.LowRankMultivariateNormal,
        {"loc": [0.5, -1.0, 0.0], "cov_factor": [[1.0], [0.5], [-0.5]], "cov_diag": [1.0, 2.0, 0.5]},
        {"loc": "realvec", "cov_factor": "realmat", "cov_diag": "posvec"}),
}

VECTOR_KINDS = {"simplex", "realvec", "posvec"}


def _first(valid, v):
    """The valid value with its first element replaced by v (vector kinds)
    or v itself (scalar kinds)."""
    if np.ndim(valid) == 0:
        return v
    out = np.array(valid, dtype=float)
    out[0] = v
    return out


def _noncontig_readonly(valid):
    a = np.repeat(np.atleast_1d(np.asarray(valid, float))[None], 6, axis=0)[::2]
    if np.ndim(valid) == 0:
        a = np.asarray(np.full(6, float(valid))[::2])
    a.setflags(write=False)
    assert not a.flags.c_contiguous or a.ndim == 1 and a.strides[0] != a.itemsize
    return a


# value label -> function of the valid value
VALUES = {
    "nan": lambda v: _first(v, np.nan),
    "inf": lambda v: _first(v, np.inf),
    "-inf": lambda v: _first(v, -np.inf),
    "negative": lambda v: _first(v, -1.0),
    "zero": lambda v: _first(v, 0.0),
    "above_one": lambda v: _first(v, 1.5),
    "fractional": lambda v: _first(v, 2.5),
    "huge": lambda v: _first(v, 1e300),
    "beyond_int64": lambda v: _first(v, 2.0**63),
    "empty": lambda v: np.zeros(0),
    "0d_array": lambda v: np.asarray(v, float) if np.ndim(v) == 0 else np.asarray(1.0),
    "object_array": lambda v: np.array(np.atleast_1d(v), dtype=object),
    "complex": lambda v: np.asarray(v, complex),
    "string": lambda v: "1.0",
    "bool": lambda v: True,
    "bool_array": lambda v: np.ones(np.shape(v) or (2,), dtype=bool),
    "None": lambda v: None,
    "ragged": lambda v: [[1.0], [1.0, 2.0]],
    "list": lambda v: [v, v],
    "nan_in_list": lambda v: [v, _first(v, np.nan)],
    "float32": lambda v: np.asarray(v, np.float32),
    "noncontig_readonly": _noncontig_readonly,
}

OK = "ok"
VE, TE = ValueError, TypeError

# constraint kind -> {value label: outcome}; labels missing here are OK
_ALWAYS_BAD = {"nan": VE, "inf": VE, "-inf": VE, "nan_in_list": VE, "object_array": TE,
               "complex": TE, "string": TE, "bool": TE, "bool_array": TE, "None": TE,
               "ragged": TE}
EXPECT = {
    "real": dict(_ALWAYS_BAD),
    "positive": {**_ALWAYS_BAD, "negative": VE, "zero": VE},
    "unit": {**_ALWAYS_BAD, "negative": VE, "above_one": VE, "fractional": VE, "huge": VE,
             "beyond_int64": VE},
    "unit_gt0": {**_ALWAYS_BAD, "negative": VE, "zero": VE, "above_one": VE, "fractional": VE,
                 "huge": VE, "beyond_int64": VE},
    "unit_lt1": {**_ALWAYS_BAD, "negative": VE, "above_one": VE, "fractional": VE, "huge": VE,
                 "beyond_int64": VE},
    "count": {**_ALWAYS_BAD, "negative": VE, "above_one": VE, "fractional": VE, "huge": VE,
              "beyond_int64": VE},
    "simplex": {**_ALWAYS_BAD, "negative": VE, "empty": VE, "0d_array": VE},
    "realvec": {**_ALWAYS_BAD, "empty": VE, "0d_array": VE},
    "posvec": {**_ALWAYS_BAD, "negative": VE, "zero": VE, "empty": VE, "0d_array": VE},
    "nonnegative": {**_ALWAYS_BAD, "negative": VE},
    # Uniform(low, high) with valid low=0, high=3: low < high is the constraint
    "low": {**_ALWAYS_BAD, "fractional": OK, "huge": VE, "beyond_int64": VE},
    "high": {**_ALWAYS_BAD, "negative": VE, "zero": VE},
    # matrices: a replaced first row breaks symmetry / definiteness / triangularity
    "spd": {**_ALWAYS_BAD, "negative": VE, "zero": VE, "above_one": VE, "fractional": VE,
            "huge": VE, "beyond_int64": VE, "empty": VE, "0d_array": VE},
    "tril": {**_ALWAYS_BAD, "negative": VE, "zero": VE, "above_one": VE, "fractional": VE,
             "huge": VE, "beyond_int64": VE, "empty": VE, "0d_array": VE},
    "realmat": {**_ALWAYS_BAD, "empty": VE, "0d_array": VE},
}
# family-specific limits (draws must fit in int64, see the constructors)
OVERRIDES = {
    ("Poisson", "rate", "huge"): VE,
    ("Poisson", "rate", "beyond_int64"): VE,
    ("NegativeBinomial-probs", "total_count", "huge"): VE,
    ("NegativeBinomial-logits", "total_count", "huge"): VE,
    ("NegativeBinomial-logits", "total_count", "beyond_int64"): VE,
    ("NegativeBinomial-logits", "logits", "huge"): VE,
    ("NegativeBinomial-logits", "logits", "beyond_int64"): VE,
    # probs/logits=None means "not given": exactly one of them is required
    ("Bernoulli-probs", "probs", "None"): VE, ("Bernoulli-logits", "logits", "None"): VE,
    ("Binomial-probs", "probs", "None"): VE, ("Binomial-logits", "logits", "None"): VE,
    ("Geometric-probs", "probs", "None"): VE, ("Geometric-logits", "logits", "None"): VE,
    ("NegativeBinomial-probs", "probs", "None"): VE,
    ("NegativeBinomial-logits", "logits", "None"): VE,
    ("Categorical-probs", "probs", "None"): VE, ("Categorical-logits", "logits", "None"): VE,
    ("Multinomial-probs", "probs", "None"): VE, ("Multinomial-logits", "logits", "None"): VE,
    # a Dirichlet needs two categories; a list of two 3-vectors is a batch of 2
    ("Dirichlet", "concentration", "ragged"): TE,
    ("OneHotCategorical-probs", "probs", "None"): VE,
    ("OneHotCategorical-logits", "logits", "None"): VE,
    # the matrices of the multivariate normals take no batch axes: a stack is a wrong shape
    **{(fam, p, label): VE
       for fam, p in (("MultivariateNormal-covariance", "covariance_matrix"),
                      ("MultivariateNormal-precision", "precision_matrix"),
                      ("MultivariateNormal-scale_tril", "scale_tril"),
                      ("LowRankMultivariateNormal", "cov_factor"),
                      ("LowRankMultivariateNormal", "cov_diag"))
       for label in ("None", "list", "noncontig_readonly")},
    ("LowRankMultivariateNormal", "cov_factor", "None"): TE,
    # cov_factor @ cov_factor.T is not representable (1e600): log_prob was -inf
    ("LowRankMultivariateNormal", "cov_factor", "huge"): VE,
    ("LowRankMultivariateNormal", "cov_diag", "None"): TE,
}


def _parameter_rows():
    rows = []
    for fam, (cls, valid, kinds) in FAMILY_TABLE.items():
        for pname, kind in kinds.items():
            for label in VALUES:
                exp = OVERRIDES.get((fam, pname, label), EXPECT[kind].get(label, OK))
                rows.append(pytest.param(fam, pname, label, exp, id=f"{fam}-{pname}-{label}"))
    return rows


PARAMETER_TABLE = _parameter_rows()


@pytest.mark.parametrize("fam, pname, label, expected", PARAMETER_TABLE)
def test_parameter_table(fam, pname, label, expected):
    cls, valid, _ = FAMILY_TABLE[fam]
    kw = dict(valid)
    kw[pname] = VALUES[label](valid[pname])
    if expected is not OK:
        with pytest.raises(expected) as info:
            cls(**kw)
        msg = str(info.value)
        # the message names the family or the argument
        assert cls.__name__ in msg or pname in msg or "probs or logits" in msg, msg
        return
    d = cls(**kw)
    x = d.sample(4, rng=0)
    assert x.shape == (4,) + d.draw_shape
    # draws are never NaN (LogNormal(loc=1e300) rightly overflows to inf)
    assert not np.isnan(np.asarray(x, float)).any()
    lp = d.log_prob(x)
    assert lp.shape == (4,) + tuple(d.batch_shape)
    assert not np.isnan(lp).any()
    if label == "noncontig_readonly":
        kw[pname] = np.ascontiguousarray(kw[pname])
        assert np.array_equal(cls(**kw).sample(4, rng=0), x)


BROADCAST_TABLE = [
    (mc.Normal, {"loc": np.zeros(3), "scale": np.ones(2)}),
    (mc.LogNormal, {"loc": np.zeros((2, 3)), "scale": np.ones((3, 2))}),
    (mc.Gamma, {"concentration": np.ones(4), "rate": np.ones(3)}),
    (mc.Beta, {"concentration1": np.ones(2), "concentration0": np.ones(5)}),
    (mc.Binomial, {"total_count": [1, 2, 3], "probs": [0.5, 0.5]}),
    (mc.NegativeBinomial, {"total_count": [1.0, 2.0, 3.0], "logits": [0.5, 0.5]}),
    (mc.Multinomial, {"total_count": [1, 2, 3], "probs": np.full((2, 4), 0.25)}),
]


@pytest.mark.parametrize("cls, kw", BROADCAST_TABLE, ids=[c.__name__ for c, _ in BROADCAST_TABLE])
def test_non_broadcastable_parameters(cls, kw):
    with pytest.raises(ValueError, match="broadcast"):
        cls(**kw)


# ===========================================================================
# 2. calls of the public functions
# ===========================================================================

@dataclass
class Call:
    id: str
    thunk: Callable[[], Any]
    expect: Any  # (exception type, regex) or a checker(result) -> None

    def param(self):
        return pytest.param(self, id=self.id)


N = mc.Normal(0.5, 1.5)
N3 = mc.Normal(np.zeros(3), 1.0)
CAT = mc.Categorical(logits=[0.0, 1.0, -1.0])
DIR = mc.Dirichlet([1.0, 2.0, 3.0])
X = N.sample(200, rng=1)
FX = X**2


def _sq(x):
    return x * x


def _is_estimate(r):
    assert isinstance(r, mc.GradientEstimate)
    for k in r.grad:
        assert np.isfinite(r.grad[k]).all() and np.isfinite(r.stderr[k]).all()


def _same_as(reference_thunk):
    def check(r):
        ref = reference_thunk()
        for k in ref.grad:
            assert np.array_equal(r.grad[k], ref.grad[k]), k
            assert np.array_equal(r.stderr[k], ref.stderr[k]), k
        assert r.value == ref.value
    return check


def _shape(*shape):
    def check(r):
        assert np.shape(r) == shape, np.shape(r)
    return check


def _equals(v):
    def check(r):
        assert r == v, r
    return check


def _sg(f, dist=N, n=2000, **kw):
    kw.setdefault("rng", 0)
    return lambda: mc.score_grad(f, dist, n, **kw)


def _ref_sq(**kw):
    return _sg(_sq, **kw)


class _LenChanger:
    """Returns the right shape on the first call, one value short later."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return x[: len(x) - (self.calls > 1)] * 1.0


def _reentrant(x):
    inner = mc.score_grad(I.power(2), mc.Normal(0.0, 1.0), 1000, rng=1)
    return x * 0 + inner.value


class _CallableObject:
    def __call__(self, x):
        return x * x


CB_T = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.POINTER(ctypes.c_double), ctypes.c_ssize_t)


@CB_T
def _cb_first_squared(x, d):
    return x[0] * x[0]


@CB_T
def _cb_nan(x, d):
    return float("nan") if x[0] > 2.0 else 1.0


@CB_T
def _cb_mutating(x, d):
    v = x[0] * x[0]
    for c in range(d):
        x[c] = 1e300  # vandalise the draw it was given
    return v


CB = LowLevelCallable(_cb_first_squared, signature="double (double *, intptr_t)")
CB_MUTATING = LowLevelCallable(_cb_mutating, signature="double (double *, intptr_t)")
CB_NAN = LowLevelCallable(_cb_nan, signature="double (double *, intptr_t)")

CALL_TABLE = [
    # -- Distribution.sample -------------------------------------------------
    Call("sample-n-negative", lambda: N.sample(-1), (VE, "n must be >= 0")),
    Call("sample-n-float", lambda: N.sample(3.0), (TE, "n must be an integer")),
    Call("sample-n-string", lambda: N.sample("3"), (TE, "n must be an integer")),
    Call("sample-n-None", lambda: N.sample(None), (TE, "n must be an integer")),
    Call("sample-n-bool", lambda: N.sample(True), (TE, "n must be an integer")),
    Call("sample-n-beyond-int64", lambda: N.sample(2**63), (VE, "n must be <=")),
    Call("sample-n-zero", lambda: N.sample(0, rng=0), _shape(0)),
    Call("sample-n-zero-vector", lambda: DIR.sample(0, rng=0), _shape(0, 3)),
    Call("sample-n-numpy-uint", lambda: N.sample(np.uint8(3), rng=0), _shape(3)),
    Call("sample-rng-negative", lambda: N.sample(3, rng=-1), (VE, "rng")),
    Call("sample-rng-float", lambda: N.sample(3, rng=1.5), (TE, "rng")),
    Call("sample-rng-string", lambda: N.sample(3, rng="0"), (TE, "rng")),
    Call("sample-rng-bitgenerator", lambda: N.sample(3, rng=np.random.PCG64(0)), _shape(3)),
    Call("sample-rng-seedsequence", lambda: N.sample(3, rng=np.random.SeedSequence(0)),
         _shape(3)),
    Call("sample-rng-huge-int", lambda: N.sample(3, rng=2**200), _shape(3)),
    Call("sample-empty-batch", lambda: mc.Normal(np.zeros((0, 2)), 1.0).sample(3, rng=0),
         _shape(3, 0, 2)),
    # -- log_prob / score: x ----------------------------------------------------
    Call("log_prob-x-string", lambda: N.log_prob("a"), (TE, "x must be real numbers")),
    Call("log_prob-x-object", lambda: N.log_prob(np.array([1.0, None])), (TE, "x must be real")),
    Call("log_prob-x-complex", lambda: N.log_prob(np.ones(2, complex)), (TE, "x must be real")),
    Call("log_prob-x-wrong-shape", lambda: N3.log_prob(np.ones((4, 2))), (VE, "x must have shape")),
    Call("log_prob-x-wrong-ndim", lambda: N3.log_prob(np.ones((2, 2, 3))),
         (VE, "x must have shape")),
    Call("log_prob-x-empty", lambda: N3.log_prob(np.ones((0, 3))), _shape(0, 3)),
    Call("log_prob-x-0d", lambda: N.log_prob(np.asarray(0.3)), _shape(1)),
    Call("log_prob-x-one-draw", lambda: N3.log_prob(np.zeros(3)), _shape(1, 3)),
    Call("log_prob-x-bool", lambda: mc.Bernoulli(probs=0.3).log_prob(np.array([True, False])),
         lambda r: np.testing.assert_allclose(r, np.log([0.3, 0.7]))),
    Call("log_prob-x-nan-inf", lambda: mc.Poisson(2.0).log_prob(np.array([np.nan, np.inf, -1.0])),
         lambda r: (np.testing.assert_equal(r, [np.nan, -np.inf, -np.inf]))),
    Call("log_prob-x-inf-dirichlet",
         lambda: DIR.log_prob(np.array([[np.inf, 0.0, 0.0], [np.nan, 0.5, 0.5]])),
         lambda r: np.testing.assert_equal(r, [-np.inf, np.nan])),
    Call("log_prob-x-noncontig-readonly",
         lambda: N3.log_prob(_readonly(np.asfortranarray(np.ones((6, 3)))[::2])),
         lambda r: np.testing.assert_allclose(r, N3.log_prob(np.ones((3, 3))))),
    Call("score-x-empty", lambda: N3.score(np.ones((0, 3))),
         lambda r: (np.testing.assert_equal(r["loc"].shape, (0, 3)),
                    np.testing.assert_equal(r["scale"].shape, (0,)))),
    Call("score-x-empty-categorical", lambda: CAT.score(np.zeros(0)),
         lambda r: np.testing.assert_equal(r["logits"].shape, (0, 3))),
    Call("score-x-string", lambda: CAT.score(np.array(["a"])), (TE, "x must be real")),
    Call("score-x-wrong-shape", lambda: DIR.score(np.ones((2, 4))), (VE, "x must have shape")),
    Call("score-probs-at-boundary", lambda: mc.Bernoulli(probs=1.0).score(np.ones(2)),
         (VE, r"probs must be in \(0, 1\) to estimate gradients")),
    Call("score-normal-scale-too-large", lambda: mc.Normal(0.0, 1e120).score(np.ones(2)),
         (VE, r"Normal: scale must be in \[1e-100, 1e\+100\]")),
    Call("score-normal-unresolvable", lambda: mc.Normal(1e10, 1e-10).score(np.ones(2)),
         (VE, "too small for loc")),
    # -- score_grad: f -------------------------------------------------------------
    Call("f-None", _sg(None), (TE, "f must be a vectorised Python callable")),
    Call("f-string", _sg("x**2"), (TE, "f must be")),
    Call("f-callable-object", _sg(_CallableObject()), _same_as(_ref_sq())),
    Call("f-returns-object-None", _sg(lambda x: np.array([None] * len(x))),
         (TE, "object array holding NoneType")),
    Call("f-returns-dict", _sg(lambda x: {"a": 1}), (TE, "f returned")),
    Call("f-returns-object-floats", _sg(lambda x: (x * x).astype(object)), _same_as(_ref_sq())),
    Call("f-returns-float32", _sg(lambda x: (x * x).astype(np.float32)), _is_estimate),
    Call("f-returns-bool", _sg(lambda x: x > 0), _is_estimate),
    Call("f-returns-0d", _sg(lambda x: np.asarray(1.0)), (VE, r"shape \(\) instead of")),
    Call("f-returns-2d", _sg(lambda x: np.stack([x, x])), (VE, r"shape \(2, \d+\) instead of")),
    Call("f-returns-generator", _sg(lambda x: (v for v in x)), (TE, "f returned")),
    Call("f-changes-length", _sg(_LenChanger(), chunk_size=500), (VE, "instead of")),
    Call("f-returns-huge-int", _sg(lambda x: np.full(len(x), 2**80)), _is_estimate),
    Call("f-returns-1e308", _sg(lambda x: 1e308 + x), (FloatingPointError, "overflowed")),
    Call("f-returns-1e200-noise", _sg(lambda x: 1e200 * x), (FloatingPointError, "overflowed")),
    Call("f-returns-1e-200-noise", _sg(lambda x: 1e-200 * x), (FloatingPointError, "underflowed")),
    Call("f-raises-keyerror", _sg(lambda x: {}["missing"]), (KeyError, "missing")),
    Call("f-reenters-mcscore", _sg(_reentrant, n=3000), _is_estimate),
    Call("f-integrand-overflow", _sg(I.exp(), dist=mc.Normal(0.0, 300.0)),
         (VE, "non-finite value")),
    Call("f-callback", _sg(CB, n_threads=2), _same_as(_ref_sq())),
    Call("f-callback-mutates-its-input", _sg(CB_MUTATING, n_threads=2), _same_as(_ref_sq())),
    Call("f-callback-nan", _sg(CB_NAN), (VE, r"non-finite value \(nan or inf\) at draw \d+")),
    Call("f-callback-wrong-signature",
         _sg(LowLevelCallable(_cb_first_squared, signature="double (double)")),
         (TE, "signature")),
    # -- score_grad: the other arguments -------------------------------------------------
    Call("dist-class-not-instance", lambda: mc.score_grad(_sq, mc.Normal, 100),
         (TE, "dist must be an mcscore distribution")),
    Call("dist-None", lambda: mc.score_grad(_sq, None, 100), (TE, "dist must be")),
    Call("n-numpy-uint64", _sg(_sq, n=np.uint64(2000)), _same_as(_ref_sq())),
    Call("n-numpy-int32", _sg(_sq, n=np.int32(2000)), _same_as(_ref_sq())),
    Call("n-beyond-2**62", _sg(_sq, n=2**62 + 1), (VE, "n must be <=")),
    Call("n-nan", _sg(_sq, n=float("nan")), (TE, "n must be an integer")),
    Call("rng-bitgenerator", _sg(_sq, rng=np.random.PCG64(3)), _is_estimate),
    Call("rng-generator", _sg(_sq, rng=np.random.default_rng(3)), _is_estimate),
    Call("baseline-wrong-case", _sg(_sq, baseline="LOO"), (VE, "baseline must be")),
    Call("baseline-numpy-float", _sg(_sq, baseline=np.float64(1.0)),
         _same_as(_sg(_sq, baseline=1.0))),
    Call("baseline-complex", _sg(_sq, baseline=1j), (VE, "baseline must be")),
    Call("n_threads-minus-one", _sg(_sq, n_threads=-1), _same_as(_ref_sq())),
    Call("n_threads-very-negative", _sg(_sq, n_threads=-10**6), _same_as(_ref_sq())),
    Call("n_threads-very-large", _sg(_sq, n_threads=10**6), _same_as(_ref_sq())),
    Call("n_threads-numpy-int", _sg(_sq, n_threads=np.int64(2)), _same_as(_ref_sq())),
    Call("n_threads-bool", _sg(_sq, n_threads=True), (TE, "n_threads")),
    Call("chunk_size-one", _sg(_sq, n=300, chunk_size=1), _same_as(_sg(_sq, n=300))),
    Call("chunk_size-float", _sg(_sq, chunk_size=2.5), (TE, "chunk_size")),
    Call("n_streams-too-many", _sg(_sq, n_streams=2**20 + 1), (VE, "n_streams must be <=")),
    Call("n_streams-one", _sg(_sq, n_streams=1), _is_estimate),
    Call("block_size-too-large", _sg(_sq, block_size=2**24 + 1), (VE, "block_size must be <=")),
    Call("block_size-one", _sg(_sq, n=300, block_size=1), _is_estimate),
    Call("empty-batch-python-f", _sg(lambda x: np.zeros(len(x)), dist=mc.Normal(np.zeros(0), 1.0)),
         lambda r: np.testing.assert_equal(r.grad["loc"].shape, (0,))),
    Call("empty-batch-fused-f", _sg(I.linear(), dist=mc.Categorical(logits=np.zeros((0, 3)))),
         lambda r: np.testing.assert_equal(r.grad["logits"].shape, (0, 3))),
    # -- score_grad_from_samples ----------------------------------------------------------------
    Call("from_samples-dist-None", lambda: mc.score_grad_from_samples(None, X, FX),
         (TE, "dist must be")),
    Call("from_samples-x-nan", lambda: mc.score_grad_from_samples(N, _first(X, np.nan), FX),
         (VE, r"x\[0\] is outside the support")),
    Call("from_samples-x-string", lambda: mc.score_grad_from_samples(N, X.astype(str), FX),
         (TE, "x must be real")),
    Call("from_samples-x-empty", lambda: mc.score_grad_from_samples(N, X[:0], FX[:0]),
         (VE, "at least 2 draws")),
    Call("from_samples-x-0d", lambda: mc.score_grad_from_samples(N, X[0], FX[:1]),
         (VE, "at least 2 draws")),
    Call("from_samples-fx-complex", lambda: mc.score_grad_from_samples(N, X, FX + 0j),
         (TE, "fx must be an array of real numbers")),
    Call("from_samples-fx-string", lambda: mc.score_grad_from_samples(N, X, FX.astype(str)),
         (TE, "fx must be")),
    Call("from_samples-fx-2d", lambda: mc.score_grad_from_samples(N, X, FX[:, None]),
         (VE, r"fx must have shape \(200,\)")),
    Call("from_samples-fx-inf", lambda: mc.score_grad_from_samples(N, X, _first(FX, np.inf)),
         (VE, r"fx\[0\] = inf is not finite")),
    Call("from_samples-fx-list", lambda: mc.score_grad_from_samples(N, X, list(FX)),
         _same_as(lambda: mc.score_grad_from_samples(N, X, FX))),
    Call("from_samples-noncontig-readonly",
         lambda: mc.score_grad_from_samples(N, _readonly(np.repeat(X, 2)[::2]),
                                            _readonly(np.repeat(FX, 2)[::2])),
         _same_as(lambda: mc.score_grad_from_samples(N, X, FX))),
    Call("from_samples-fx-tiny", lambda: mc.score_grad_from_samples(N, X, 1e-200 * X),
         (FloatingPointError, "underflowed")),
    Call("from_samples-fx-huge", lambda: mc.score_grad_from_samples(N, X, 1e300 * X),
         (FloatingPointError, "overflowed")),
    # -- mcscore.integrands ---------------------------------------------------------------------
    Call("polynomial-empty", lambda: I.polynomial([]), (VE, "non-empty 1-d")),
    Call("polynomial-2d", lambda: I.polynomial([[1.0]]), (VE, "non-empty 1-d")),
    Call("polynomial-nan", lambda: I.polynomial([1.0, np.nan]), (VE, "coeffs must be")),
    Call("polynomial-string", lambda: I.polynomial("12"), (TE, "coeffs")),
    Call("polynomial-coord-negative", lambda: I.polynomial([1.0], coord=-1), (VE, "coord")),
    Call("polynomial-coord-float", lambda: I.polynomial([1.0], coord=0.5), (TE, "coord")),
    Call("power-negative", lambda: I.power(-1), (VE, "p must be >= 0")),
    Call("power-too-large", lambda: I.power(65), (VE, "p must be <= 64")),
    Call("power-bool", lambda: I.power(True), (TE, "p must be an integer")),
    Call("linear-weights-inf", lambda: I.linear([1.0, np.inf]), (VE, "weights")),
    Call("linear-weights-object", lambda: I.linear(np.array([1.0], dtype=object)), (TE, "weights")),
    Call("linear-c-nan", lambda: I.linear(1.0, c=np.nan), (VE, "c must be finite")),
    Call("linear-c-string", lambda: I.linear(1.0, c="1"), (TE, "c must be a real number")),
    Call("sum_of_squares-center-nan", lambda: I.sum_of_squares(center=np.nan), (VE, "center")),
    Call("quadratic-not-square", lambda: I.quadratic(np.ones((2, 3))), (VE, "square matrix")),
    Call("quadratic-nan", lambda: I.quadratic([[1.0, np.nan], [0.0, 1.0]]), (VE, "A must be")),
    Call("quadratic-wrong-size-at-run", _sg(I.quadratic([[1.0, 0.5], [0.5, 1.0]]), dist=N3),
         (VE, r"A must have shape \(3, 3\)")),
    Call("sin-weights-complex", lambda: I.sin(1j), (TE, "weights")),
    Call("cos-weights-bool", lambda: I.cos(True), (TE, "weights")),
    Call("exp-weights-nan", lambda: I.exp(np.nan), (VE, "weights")),
    Call("log1p-weights-shape-at-run", _sg(I.log1p([1.0, 1.0]), dist=mc.Gamma(np.ones(3), 1.0)),
         (VE, "does not broadcast to the draw shape")),
    Call("indicator-nan", lambda: I.indicator(np.nan, 1.0), (VE, "must not be NaN")),
    Call("indicator-reversed", lambda: I.indicator(2.0, 1.0), (VE, "low <= high")),
    Call("indicator-None", lambda: I.indicator(None, 1.0), (TE, "")),
    Call("indicator-infinite", _sg(I.indicator(-np.inf, np.inf), baseline="loo"),
         lambda r: (np.testing.assert_equal(r.value, 1.0),
                    np.testing.assert_equal(r.grad["loc"], 0.0))),
    Call("call-strike-inf", lambda: I.call(np.inf), (VE, "strike must be finite")),
    Call("put-strike-None", lambda: I.put(None), (TE, "strike")),
    Call("digital_call-coord-string", lambda: I.digital_call(1.0, coord="0"), (TE, "coord")),
    Call("digital_put-ok", _sg(I.digital_put(0.5)), _is_estimate),
    Call("constant-nan", lambda: I.constant(np.nan), (VE, "c must be finite")),
    Call("constant-string", lambda: I.constant("1"), (TE, "c must be a real")),
    Call("integrand-times-nan", lambda: I.power(2) * np.nan, (VE, "finite number")),
    Call("integrand-times-string", lambda: I.power(2) * "a", (TE, "")),
    Call("integrand-plus-list", lambda: I.power(2) + [1.0], (TE, "")),
    Call("integrand-plus-bool", lambda: I.power(2) + True, (TE, "")),
    Call("integrand-called-on-0d", lambda: I.power(2)(np.asarray(1.0)), (VE, "leading batch axis")),
    Call("integrand-called-on-empty", lambda: I.power(2)(np.zeros(0)), _shape(0)),
    # -- configuration ------------------------------------------------------------------------------
    Call("effective_n_threads-zero", lambda: mc.effective_n_threads(0), (VE, "not 0")),
    Call("effective_n_threads-float", lambda: mc.effective_n_threads(1.5), (TE, "n_threads")),
    Call("effective_n_threads-string", lambda: mc.effective_n_threads("2"), (TE, "n_threads")),
    Call("effective_n_threads-bool", lambda: mc.effective_n_threads(True), (TE, "n_threads")),
    Call("effective_n_threads-very-negative", lambda: mc.effective_n_threads(-10**9), _equals(1)),
    Call("effective_n_threads-capped-by-work", lambda: mc.effective_n_threads(8, work_items=3),
         lambda r: np.testing.assert_array_less(r, 4)),
    Call("show_config-file-string", lambda: mc.show_config(file="out.txt"),
         (TE, "file must have a write method")),
    Call("show_config-file-stringio", lambda: mc.show_config(file=io.StringIO()),
         lambda r: (np.testing.assert_equal(isinstance(r, dict), True),
                    np.testing.assert_equal(r["openmp"] in (True, False), True))),
]


def _readonly(a):
    a = np.asarray(a)
    a.setflags(write=False)
    return a


@pytest.mark.parametrize("call", [c.param() for c in CALL_TABLE])
def test_call_table(call):
    if isinstance(call.expect, tuple):
        exc, match = call.expect
        with pytest.raises(exc, match=match) if match else pytest.raises(exc):
            call.thunk()
    else:
        call.expect(call.thunk())


def test_call_table_ids_are_unique():
    ids = [c.id for c in CALL_TABLE]
    assert len(ids) == len(set(ids))


CORE_PUBLIC = {
    "Normal", "LogNormal", "Exponential", "Gamma", "Beta", "Poisson", "Bernoulli", "Binomial",
    "Geometric", "NegativeBinomial", "Categorical", "Multinomial", "Dirichlet", "score_grad",
    "score_grad_from_samples", "effective_n_threads", "show_config",
}


def test_tables_cover_the_core_public_api():
    covered = {cls.__name__ for cls, _, _ in FAMILY_TABLE.values()}
    for c in CALL_TABLE:
        head = c.id.split("-")[0]
        covered.add({"f": "score_grad", "n": "score_grad", "rng": "score_grad",
                     "dist": "score_grad", "baseline": "score_grad", "n_threads": "score_grad",
                     "chunk_size": "score_grad", "n_streams": "score_grad",
                     "block_size": "score_grad", "empty": "score_grad",
                     "from_samples": "score_grad_from_samples"}.get(head, head))
    assert CORE_PUBLIC <= covered, CORE_PUBLIC - covered
    integrand_names = set(I.__all__) - {"Integrand"}
    assert integrand_names <= covered | {"sum_of_squares", "put", "digital_put"}, \
        integrand_names - covered
    # every other public name is in a table: a name added to the public API
    # fails here until its rows are written
    new = set(mc.__all__) - CORE_PUBLIC - {"Distribution", "FAMILIES", "GradientEstimate",
                                           "CALLBACK_SIGNATURES", "default_block_size",
                                           "integrands"}
    # the estimators, relaxed distributions and applications: test_reliability_apps.py
    from test_reliability_apps import APPS_COVERED
    # the third round's families, estimators, baselines, surrogates and bridges:
    # test_reliability_round3.py (which checks that each has rows)
    from test_reliability_round3 import ROUND3_COVERED

    new -= APPS_COVERED | ROUND3_COVERED
    assert not new, f"public names not in the reliability tables: {sorted(new)}"


# ===========================================================================
# 3. risky calls, each in a subprocess with an address-space limit
# ===========================================================================

RISKY = {
    # label: (code whose last line prints the outcome, expected output)
    "sample-n-beyond-int32": (
        "mc.Bernoulli(logits=0.0).sample(2**31 + 1, rng=0)", "MemoryError"),
    "sample-huge-batch": ("mc.Normal(np.zeros(2**33), 1.0)", "MemoryError"),
    # the fused kernels work through a block in cache-sized chunks: a huge
    # block size needs no huge buffer
    "huge-block-fused": (
        "r = mc.score_grad(I.linear(), mc.Normal(np.zeros(10**4), 1.0), 100, block_size=2**24)\n"
        "print('ok', r.n)", "ok 100"),
    "python-f-buffers-too-large": (
        "mc.score_grad(lambda x: x.sum(-1), mc.Normal(np.zeros(10**4), 1.0), 100, "
        "block_size=2**24)", "MemoryError"),
    "null-callback": (
        "import ctypes\nfrom scipy import LowLevelCallable\n"
        "T = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.POINTER(ctypes.c_double), ctypes.c_ssize_t)\n"
        "mc.score_grad(LowLevelCallable(T(), signature='double (double *, intptr_t)'), "
        "mc.Normal(0.0, 1.0), 100)", "TypeError"),  # scipy refuses a NULL pointer
    "callback-raising-python-exception": (
        "import ctypes\nfrom scipy import LowLevelCallable\n"
        "T = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.POINTER(ctypes.c_double), ctypes.c_ssize_t)\n"
        "def g(x, d):\n    raise RuntimeError('boom')\n"
        "cb = T(g)\n"
        "r = mc.score_grad(LowLevelCallable(cb, signature='double (double *, intptr_t)'), "
        "mc.Normal(0.0, 1.0), 1000, rng=0, n_threads=2)\n"
        # ctypes prints and ignores the exception and returns an undefined
        # value (0.0 in a normal build, garbage under ASan): no crash, but
        # such a callback must not raise (documented)
        "print('finished', r.n)", "finished 1000"),
    "callback-on-empty-draws": (
        "import ctypes\nfrom scipy import LowLevelCallable\n"
        "T = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.POINTER(ctypes.c_double), ctypes.c_ssize_t)\n"
        "cb = T(lambda x, d: float(d))\n"
        "r = mc.score_grad(LowLevelCallable(cb, signature='double (double *, intptr_t)'), "
        "mc.Normal(np.zeros((4, 0)), 1.0), 1000, rng=0, n_threads=2)\n"
        "print('finished', r.value, r.grad['loc'].shape)", "finished 0.0 (4, 0)"),
    "many-categories": (
        "r = mc.score_grad(I.linear(), mc.Categorical(logits=np.zeros(10**6)), 1000, rng=0)\n"
        "print('finished', r.grad['logits'].shape)", "finished (1000000,)"),
    "huge-n-python-f-interrupted-by-error": (
        "c = [0]\n"
        "def f(x):\n    c[0] += 1\n    if c[0] == 3: raise OverflowError('stop')\n    return x\n"
        "mc.score_grad(f, mc.Normal(0.0, 1.0), 10**15, rng=0, chunk_size=10**4)",
        "OverflowError"),
}


@pytest.mark.parametrize("label", sorted(RISKY))
def test_risky_calls_do_not_crash_the_interpreter(label):
    body, expected = RISKY[label]
    code = ("import numpy as np, mcscore as mc\nfrom mcscore import integrands as I\n"
            "try:\n" + textwrap.indent(body, "    ") +
            "\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
    p = _run_py(code, timeout=120, limit_gb=6)
    assert p.returncode == 0, f"exit code {p.returncode}\n{p.stdout}\n{p.stderr[-3000:]}"
    assert expected in p.stdout, p.stdout + p.stderr[-3000:]


# ===========================================================================
# 4. concurrency
# ===========================================================================

def _jobs():
    def numba_free_callback():
        return CB

    return [
        (lambda x: (x**2).sum(axis=-1), mc.Normal(np.zeros(3), [1.0, 2.0, 0.5]), None),
        (I.linear([1.0, -1.0]), mc.Gamma([2.0, 0.5], 1.5), "loo"),
        (I.power(1), mc.Bernoulli(logits=[0.2, -1.0, 3.0]), "optimal"),
        (lambda x: (x == 2).astype(float), mc.Categorical(logits=np.zeros(4)), None),
        (numba_free_callback(), mc.Poisson(3.0), 1.0),
        (lambda x: x[:, 0] * 1.0, mc.Dirichlet([1.0, 2.0, 0.5]), "loo"),
        (I.sum_of_squares(), mc.Multinomial(5, logits=[0.0, 1.0, 2.0]), None),
        (lambda x: np.log1p(x), mc.Beta(2.0, 3.0), "optimal"),
    ]


def _result_key(r):
    return tuple(np.asarray(r.grad[k]).tobytes() + np.asarray(r.stderr[k]).tobytes()
                 for k in sorted(r.grad)) + (r.value, r.value_stderr, r.n)


def test_many_threads_give_the_serial_results_bit_for_bit():
    jobs = _jobs()
    serial = [_result_key(mc.score_grad(f, d, 30_000, rng=7 + i, baseline=b))
              for i, (f, d, b) in enumerate(jobs)]
    n_threads = 16
    results = [None] * n_threads
    errors = []
    barrier = threading.Barrier(n_threads)

    def worker(t):
        try:
            barrier.wait()
            out = []
            for j in range(len(jobs)):
                i = (j + t) % len(jobs)  # every thread walks the jobs in its own order
                f, d, b = jobs[i]
                out.append((i, _result_key(mc.score_grad(f, d, 30_000, rng=7 + i, baseline=b,
                                                         n_threads=1 + t % 2))))
            results[t] = out
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    for out in results:
        assert out is not None
        for i, key in out:
            assert key == serial[i]


def test_first_use_of_a_shared_distribution_from_many_threads():
    # Regression: the lazy build of a distribution's score table raced, and a
    # thread could see a partly built table (score() missing a parameter).
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for trial in range(60):
            d = mc.Normal(np.zeros((5, 3)), np.ones(3))
            x = np.zeros((2, 5, 3))
            barrier = threading.Barrier(8)
            seen, errors = [], []

            def use():
                try:
                    barrier.wait()
                    seen.append(tuple(sorted(d.score(x))))
                except BaseException as exc:  # noqa: BLE001
                    errors.append(repr(exc))

            ts = [threading.Thread(target=use) for _ in range(8)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            assert not errors, errors
            assert seen == [("loc", "scale")] * 8, (trial, seen)
    finally:
        sys.setswitchinterval(old)


def test_threads_sharing_one_generator_get_distinct_reproducible_streams():
    g = np.random.default_rng(123)
    d = mc.Normal(0.0, 1.0)
    out = []
    lock = threading.Lock()

    def run():
        r = mc.score_grad(I.power(2), d, 5000, rng=g)
        with lock:
            out.append(r.grad["loc"].item())

    ts = [threading.Thread(target=run) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(set(out)) == 8  # each call spawned its own child seed sequence


# ===========================================================================
# 5. fork / spawn / forkserver after the kernels ran
# ===========================================================================

FORK_SCRIPT = """
import multiprocessing as mp, os, sys
import numpy as np, mcscore as mc
from mcscore import integrands as I

def work(q):
    r = mc.score_grad(I.power(2), mc.Normal(0.0, 1.0), 400_000, rng=0, n_threads=2)
    r2 = mc.score_grad(lambda x: x * x, mc.Normal(0.0, 1.0), 100_000, rng=1)
    q.put((r.grad["loc"].item(), r2.grad["loc"].item(), mc.effective_n_threads(2),
           mc.show_config(file=open(os.devnull, "w"))["serial_after_fork"]))

if __name__ == "__main__":
    method = sys.argv[1]
    # the parent uses the OpenMP thread pool first
    r = mc.score_grad(I.power(2), mc.Normal(0.0, 1.0), 400_000, rng=0, n_threads=2)
    r2 = mc.score_grad(lambda x: x * x, mc.Normal(0.0, 1.0), 100_000, rng=1)
    if method == "os.fork":
        rd, wr = os.pipe()
        pid = os.fork()
        if pid == 0:
            class Q:
                def put(self, v):
                    os.write(wr, repr(v).encode())
            work(Q())
            os._exit(0)
        os.waitpid(pid, 0)
        got = eval(os.read(rd, 1000).decode())
    else:
        ctx = mp.get_context(method)
        q = ctx.Queue()
        p = ctx.Process(target=work, args=(q,))
        p.start()
        got = q.get(timeout=60)
        p.join(60)
    assert got[0] == r.grad["loc"].item() and got[1] == r2.grad["loc"].item(), got
    print("child ok", got[2], got[3])
"""


@pytest.mark.skipif(not POSIX, reason="fork is POSIX only")
@pytest.mark.parametrize("method", ["fork", "os.fork", "spawn", "forkserver"])
def test_process_started_after_the_kernels_ran_works_and_never_hangs(method, tmp_path):
    # A child forked after the parent used libgomp's pool used to hang in its
    # first parallel region; now it runs serially (documented), spawn and
    # forkserver children keep their threads.  Results are identical.
    script = tmp_path / "fork_after_kernels.py"
    script.write_text(FORK_SCRIPT)
    p = _run_py(f"import runpy, sys; sys.argv = ['x', {method!r}]; "
                f"runpy.run_path({str(script)!r}, run_name='__main__')",
                timeout=90, env={"OMP_NUM_THREADS": "2"})
    assert p.returncode == 0, p.stderr[-3000:]
    forked = method in ("fork", "os.fork")
    threads = 1 if forked or not mc._kernels.HAVE_OPENMP else 2
    assert f"child ok {threads} {forked}" in p.stdout, p.stdout


# ===========================================================================
# 6. memory: RSS stays flat over 10**4 calls
# ===========================================================================

def _rss_bytes():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
@pytest.mark.skipif("MCSCORE_SANITIZED" in os.environ, reason="ASan's allocator holds memory")
def test_rss_stays_flat_over_ten_thousand_calls():
    d = mc.Normal([0.0, 1.0], 2.0)
    cat = mc.Categorical(logits=[0.0, 1.0, 2.0])
    fused = I.sum_of_squares()
    x = d.sample(64, rng=0)
    fx = x.sum(1)

    def one(i):
        k = i % 10
        if k == 0:
            mc.score_grad(fused, d, 512, rng=i, n_threads=2)
        elif k == 1:
            mc.score_grad(lambda z: z[:, 0], d, 512, rng=i, baseline="loo", n_threads=2)
        elif k in (2, 3):
            mc.score_grad(CB, cat, 512, rng=i, n_threads=1)
        elif k == 4:
            mc.score_grad(fused, cat, 512, rng=i, n_threads=1, baseline="optimal",
                          block_size=64)
        elif k == 5:
            mc.score_grad(lambda z: z[:, 1], d, 512, rng=i, n_threads=1)
        elif k == 6:
            mc.score_grad_from_samples(d, x, fx, baseline="optimal")
        elif k == 7:
            d.score(d.sample(16, rng=i))
            d.log_prob(x)
        elif k == 8:
            try:
                mc.score_grad(lambda z: np.full(len(z), np.nan), d, 512, rng=i, n_threads=1)
            except ValueError:
                pass
        else:
            try:
                mc.score_grad(I.log1p(), d, 512, rng=i, n_threads=1)
            except ValueError:
                pass

    for i in range(1000):   # warm up caches, allocator pools, lazy imports
        one(i)
    gc.collect()
    before = _rss_bytes()
    for i in range(10_000):
        one(i)
    gc.collect()
    grown = _rss_bytes() - before
    # a leak of one block buffer (>= 4 KiB) per call would add >= 40 MB
    assert grown < 8 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB over 10**4 calls"


# ===========================================================================
# 7. numerical extremes: an exact value or a clear error
# ===========================================================================

@dataclass
class Extreme:
    id: str
    f: Any
    dist: Callable[[], Any]
    exact: Any            # dict of exact gradients, or an exception type
    n: int = 20_000
    baseline: Any = None
    match: str = ""
    atol: float = 0.0     # absolute slack (for gradients of order e**-700)


def _sig(v):
    return special.expit(v)


EXTREMES = [
    # scales from 1e-300 to 1e300: f = x / s has d/dloc E = 1/s, d/dscale E = 0
    *[Extreme(f"normal-scale-{s:g}", lambda x, s=s: x / s, lambda s=s: mc.Normal(0.0, s),
              {"loc": 1 / s, "scale": 0.0}) for s in (1e-100, 1e-30, 1e30, 1e100)],
    *[Extreme(f"normal-scale-{s:g}", lambda x, s=s: x / s, lambda s=s: mc.Normal(0.0, s),
              ValueError, match=r"scale must be in \[1e-100, 1e\+100\]")
      for s in (1e-300, 1e-150, 1e150, 1e300)],
    Extreme("lognormal-scale-1e-300", lambda x: np.log(x), lambda: mc.LogNormal(0.0, 1e-300),
            ValueError, match="scale must be in"),
    Extreme("lognormal-scale-1e-20", lambda x: np.log(x), lambda: mc.LogNormal(0.0, 1e-20),
            ValueError, match="too small for loc"),
    Extreme("normal-unresolvable", I.linear(), lambda: mc.Normal(1e10, 1e-10), ValueError,
            match="too small for loc"),
    # rates from 1e-300 to 1e300: E[c x] = c / rate, so d/drate = -c / rate**2 = -1/rate
    *[Extreme(f"exponential-rate-{r:g}", lambda x, r=r: x * r, lambda r=r: mc.Exponential(r),
              {"rate": -1 / r}) for r in (1e-140, 1e-30, 1e30, 1e140)],
    Extreme("exponential-rate-1e-300", lambda x: x * 1e-300, lambda: mc.Exponential(1e-300),
            FloatingPointError, match="overflowed"),
    # the estimator's squares underflow (|f * score| ~ 1e-200): a clear error ...
    Extreme("exponential-rate-1e200", lambda x: x * 1e200, lambda: mc.Exponential(1e200),
            FloatingPointError, match="underflowed"),
    Extreme("gamma-rate-1e200", lambda x: x * 1e200, lambda: mc.Gamma(2.0, 1e200),
            FloatingPointError, match="underflowed"),
    # ... unless the gradient itself is zero at double resolution (< 1e-290)
    Extreme("exponential-rate-1e300", lambda x: x * 1e300, lambda: mc.Exponential(1e300),
            {"rate": -1e-300}, atol=1e-301),
    Extreme("gamma-rate-1e300", lambda x: x * 1e300, lambda: mc.Gamma(2.0, 1e300),
            {"concentration": 1.0, "rate": -2e-300}, atol=1e-301),
    # logits at +-700: E[x] = sigmoid(l) etc.; the gradients are ~e**-700
    *[Extreme(f"bernoulli-logits{l:+g}", I.linear(), lambda l=l: mc.Bernoulli(logits=l),
              {"logits": _sig(l) * _sig(-l)}, atol=1e-300) for l in (-700.0, 700.0)],
    *[Extreme(f"binomial-logits{l:+g}", I.linear(), lambda l=l: mc.Binomial(10, logits=l),
              {"logits": 10 * _sig(l) * _sig(-l)}, atol=1e-300) for l in (-700.0, 700.0)],
    Extreme("categorical-logits+-700", I.linear(),
            lambda: mc.Categorical(logits=[-700.0, 0.0, 700.0]),
            {"logits": np.array([0.0, 0.0, 0.0])}, atol=1e-300),
    Extreme("multinomial-logits+-700", I.linear([0.0, 1.0, 2.0]),
            lambda: mc.Multinomial(4, logits=[-700.0, 0.0, 700.0]),
            {"logits": np.array([0.0, 0.0, 0.0])}, atol=1e-290),
    Extreme("geometric-logits+700", I.linear(), lambda: mc.Geometric(logits=700.0),
            {"logits": -_sig(-700.0)}, atol=1e-300),
    Extreme("geometric-logits-700", I.linear(), lambda: mc.Geometric(logits=-700.0),
            ValueError, match="logits must be >="),
    Extreme("negbinomial-logits-700", I.linear(), lambda: mc.NegativeBinomial(3.0, logits=-700.0),
            {"logits": 3 * _sig(-700.0)}, atol=1e-300),
    Extreme("negbinomial-logits+700", I.linear(), lambda: mc.NegativeBinomial(3.0, logits=700.0),
            ValueError, match="overflow int64"),
    # Poisson rate 1e9: d/drate E[x] = 1
    Extreme("poisson-rate-1e9", I.linear(), lambda: mc.Poisson(1e9), {"rate": 1.0},
            baseline="loo"),
    Extreme("poisson-rate-1e9-plain", I.linear(), lambda: mc.Poisson(1e9), {"rate": 1.0}),
    Extreme("poisson-rate-1e19", I.linear(), lambda: mc.Poisson(1e19), ValueError,
            match="rate must be <="),
    # Gamma concentration 1e-3 (half the draws round to 0: a clear error) and 1e6
    Extreme("gamma-concentration-1e-3", I.linear(), lambda: mc.Gamma(1e-3, 1.0),
            FloatingPointError, match="score of Gamma.*overflowed"),
    Extreme("gamma-concentration-1e6", I.linear(), lambda: mc.Gamma(1e6, 2.0),
            {"concentration": 0.5, "rate": -1e6 / 4}, baseline="loo"),
    # Beta near 0 (draws round to 0 or 1: a clear error) and huge
    Extreme("beta-1e-3", I.linear(), lambda: mc.Beta(1e-3, 1e-3), FloatingPointError,
            match="score of Beta.*overflowed"),
    Extreme("beta-1e6", I.linear(), lambda: mc.Beta(1e6, 3e6),
            {"concentration1": 3e6 / 16e12, "concentration0": -1e6 / 16e12}, baseline="loo"),
    Extreme("beta-1e9-1", I.linear(), lambda: mc.Beta(1e9, 1.0),
            {"concentration1": 1.0 / (1e9 + 1) ** 2, "concentration0": -1e9 / (1e9 + 1) ** 2},
            baseline="optimal"),
    # Binomial total_count 1e9: d/dprobs E[x] = n
    Extreme("binomial-n-1e9", I.linear(), lambda: mc.Binomial(10**9, probs=0.3),
            {"probs": 1e9}, baseline="loo"),
    Extreme("binomial-n-1e9-logits", I.linear(), lambda: mc.Binomial(10**9, logits=-1.0),
            {"logits": 1e9 * _sig(-1.0) * _sig(1.0)}, baseline="optimal"),
    # f = 1e12 + noise, every kind of f and baseline
    *[Extreme(f"f-1e12-plus-noise-{kind}-{b}", f, lambda: mc.Normal(0.3, 1.0),
              {"loc": 1.0, "scale": 0.0}, baseline=b, n=50_000)
      for kind, f in (("fused", I.linear() + 1e12), ("python", lambda x: x + 1e12),
                      ("callback", None))
      for b in (None, "loo", "optimal", 1e12)],
    # Dirichlet with tiny concentrations: the kernel normalises 0/0 (see xfail below)
    Extreme("dirichlet-1e-3", I.linear([1.0, 0.0, 0.0]), lambda: mc.Dirichlet([1e-3] * 3),
            (FloatingPointError, ValueError), match="NaN|nan"),
]

CB_PLUS_1E12 = None


def _cb_1e12():
    global CB_PLUS_1E12
    if CB_PLUS_1E12 is None:
        @CB_T
        def plus(x, d):
            return x[0] + 1e12

        CB_PLUS_1E12 = (plus, LowLevelCallable(plus, signature="double (double *, intptr_t)"))
    return CB_PLUS_1E12[1]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in EXTREMES])
def test_numerical_extremes(case):
    f = case.f if case.f is not None else _cb_1e12()
    if isinstance(case.exact, type) or isinstance(case.exact, tuple):
        with pytest.raises(case.exact, match=case.match):
            mc.score_grad(f, case.dist(), case.n, rng=0, baseline=case.baseline)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow / invalid warnings either
        r = mc.score_grad(f, case.dist(), case.n, rng=0, baseline=case.baseline)
    for k, ex in case.exact.items():
        g, se = r.grad[k], r.stderr[k]
        assert np.isfinite(g).all() and np.isfinite(se).all()
        assert (np.abs(g - ex) <= 5 * se + case.atol + 1e-12 * np.abs(ex)).all(), (k, g, ex, se)
    if str(case.id).startswith("f-1e12") and case.baseline is not None:
        # a baseline near E[f] removes the 1e12: the error bars must show it
        assert r.stderr["loc"] < 0.05 and r.stderr["scale"] < 0.05


def test_f_1e12_from_samples_loses_no_precision():
    d = mc.Normal(0.3, 1.0)
    x = d.sample(50_000, rng=0)
    for b in ("loo", "optimal", 1e12):
        r = mc.score_grad_from_samples(d, x, x + 1e12, baseline=b)
        assert abs(r.grad["loc"] - 1.0) <= 5 * r.stderr["loc"] and r.stderr["loc"] < 0.05
        assert abs(r.grad["scale"]) <= 5 * r.stderr["scale"]


def test_log_prob_at_extreme_parameters_against_exact_values():
    # Poisson(1e9) at its mode: exact by Stirling's series
    lam = 1e9
    assert abs(mc.Poisson(lam).log_prob(np.array([lam]))[0] - poisson_log_pmf_at_mode(lam)) < 1e-5
    # Binomial(n, 1/2) at its mode: log C(n, n/2) - n log 2 by Stirling's series;
    # (the textbook gammaln form loses everything at n = 2**61: it gave +5888)
    for n in (10**9, 2**40, 2**61):
        exact = -0.5 * np.log(np.pi * n / 2) - 1 / (4 * n)
        got = mc.Binomial(n, probs=0.5).log_prob(np.array([n / 2]))[0]
        assert abs(got - exact) < 1e-9, (n, got, exact)
    # Poisson and NegativeBinomial at huge means
    for lam in (1e12, 1e18):
        got = mc.Poisson(lam).log_prob(np.array([lam]))[0]
        assert abs(got - poisson_log_pmf_at_mode(lam)) < 1e-9, (lam, got)
    # NB(r, 1/2) at k = r: C(2r - 1, r) 2**-2r = C(2r, r) 2**-2r / 2
    r = 2.0**40
    exact = -0.5 * np.log(np.pi * r) - 1 / (8 * r) - np.log(2)
    got = mc.NegativeBinomial(r, probs=0.5).log_prob(np.array([r]))[0]
    assert abs(got - exact) < 1e-9, (got, exact)
    # logits at +-700: log-probabilities stay finite and exact
    lp = mc.Bernoulli(logits=[-700.0, 700.0]).log_prob(np.array([[1.0, 0.0]]))
    np.testing.assert_allclose(lp, [[-700.0, -700.0]], rtol=1e-12)
    lp = mc.Categorical(logits=[-700.0, 0.0, 700.0]).log_prob(np.array([0, 2]))
    np.testing.assert_allclose(lp, [-1400.0, 0.0], atol=1e-12)
    # huge and tiny scales
    for s in (1e-300, 1e300):
        np.testing.assert_allclose(mc.Normal(0.0, s).log_prob(np.array([s]))[0],
                                   -0.5 - np.log(s) - 0.5 * np.log(2 * np.pi), rtol=1e-14)


def test_dirichlet_tiny_concentrations_draw_valid_points_of_the_simplex():
    x = mc.Dirichlet([1e-3, 1e-3, 1e-3])._kernel_dist()
    from mcscore import _kernels as K

    draws = K.draw(x, np.random.PCG64(0), 10_000)
    assert np.isfinite(draws).all()
    np.testing.assert_allclose(draws.sum(axis=1), 1.0, rtol=1e-12)


def test_dirichlet_small_concentrations_have_the_right_moments_and_gradients():
    # small concentrations, against the exact mean E[x_k] = a_k / A and
    # d E[x_0] / d a = ((A - a_0), -a_0, ...) / A^2
    a = np.array([0.3, 0.2, 0.15])
    A = a.sum()
    d = mc.Dirichlet(a)
    x = d.sample(200_000, rng=3)
    se = x.std(0, ddof=1) / np.sqrt(len(x))
    assert np.all(np.abs(x.mean(0) - a / A) < 5 * se)
    r = mc.score_grad(I.linear([1.0, 0.0, 0.0]), d, 400_000, rng=4, baseline="optimal")
    exact = np.array([A - a[0], -a[0], -a[0]]) / A**2
    assert np.all(np.abs(r.grad["concentration"] - exact) < 5 * r.stderr["concentration"])


@pytest.mark.slow
def test_n_beyond_int32_with_a_fused_integrand():
    # n = 2**31 + 1 draws: counts, block indices and draw indices stay 64-bit.
    n = 2**31 + 1
    r = mc.score_grad(I.linear(), mc.Bernoulli(logits=0.0), n, rng=0)
    assert r.n == n
    assert r.info["streams_used"] == 64
    assert abs(r.grad["logits"] - 0.25) <= 5 * r.stderr["logits"]
    assert abs(r.value - 0.5) <= 5 * r.value_stderr


# ===========================================================================
# 8. interrupts
# ===========================================================================

INTERRUPT_SCRIPT = """
import sys, time
import numpy as np, mcscore as mc
from mcscore import integrands as I
kind = KIND
if kind == "callback":
    from numba import cfunc, types
    @cfunc(types.double(types.CPointer(types.double), types.intp))
    def g(x, d):
        return x[0] * x[0]
    from scipy import LowLevelCallable
    f = LowLevelCallable(g.ctypes)
elif kind == "slow-python":
    def f(x):
        time.sleep(0.3)
        return x * x
elif kind == "python":
    f = lambda x: x * x
else:
    f = I.power(2)
mc.score_grad(I.power(2), mc.Normal(0.0, 1.0), 10**5, rng=0)
print("ready", flush=True)
try:
    mc.score_grad(f, mc.Normal(0.0, 1.0), 10**13, rng=0, n_threads=2)
except KeyboardInterrupt:
    t = time.time()
    r = mc.score_grad(I.power(2), mc.Normal(0.0, 1.0), 10**4, rng=0)
    print("interrupted", repr(t), r.n, flush=True)
"""


def interrupt_script(code, settle, timeout):
    """Run `code` in a fresh interpreter (this checkout's mcscore), wait for
    its "ready" line and `settle` seconds, send SIGINT; returns (the time the
    signal was sent, the script's output lines starting "interrupted")."""
    import mcscore

    e = dict(os.environ)
    e["PYTHONPATH"] = os.path.dirname(os.path.dirname(mcscore.__file__))
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=e)
    try:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
        time.sleep(settle)
        sent = time.time()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=timeout)
    finally:
        p.kill()
    line = [w for w in out.splitlines() if w.startswith("interrupted")]
    assert line, out + err[-2000:]
    return sent, line


@pytest.mark.skipif(not POSIX, reason="POSIX signals")
@pytest.mark.parametrize("kind", ["integrand", "callback", "python", "slow-python"])
def test_sigint_raises_keyboardinterrupt_within_a_second(kind):
    if kind == "callback":
        pytest.importorskip("numba")
    sent, line = interrupt_script(INTERRUPT_SCRIPT.replace("KIND", repr(kind)), 0.7, 60)
    _, caught, n = line[0].split()
    assert n == "10000"  # the next call works
    latency = float(caught) - sent
    assert latency < 1.0, f"KeyboardInterrupt after {latency:.2f} s"
