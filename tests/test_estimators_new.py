"""The new control variates (second-order delta, fixed coefficients,
pathwise control variates), baselines (moving average, per-coordinate
context baselines) and set estimators (unordered set, sum-and-sample):
unbiased within 5 se of exact gradients, calibrated, bit-identical over
threads; every new estimator on a real Dask cluster bit for bit; and
compare_estimators covering them."""
import math

import numpy as np
import pytest
from scipy import special

import mcscore as mc
from mcscore.baselines import ContextBaseline, MovingAverageBaseline

from _exact import assert_same_estimate

MU, SD = 0.7, 1.3


def cubic(x):
    return 1.0 + 2.0 * x - x**2 + 0.5 * x**3


def dcubic(x):
    return 2.0 - 2.0 * x + 1.5 * x**2


CUBIC_EXACT = {"loc": 2 - 2 * MU + 1.5 * (MU**2 + SD**2), "scale": -2 * SD + 3 * MU * SD}


def _within(r, exact, k=5):
    for name, v in exact.items():
        assert np.all(np.abs(r.grad[name] - v) < k * r.stderr[name]), (name, r.grad[name], v)


# ---------------------------------------------------------------------------
# control variates
# ---------------------------------------------------------------------------

def sin_sum(x):
    return np.sin(np.asarray(x, float)).reshape(len(x), -1).sum(1)


def cos_(x):
    return np.cos(np.asarray(x, float))


LAM = np.array([2.0, 3.5])
M2, S2 = np.array([0.3, -1.0]), np.array([0.5, 1.2])
A, B = np.array([2.0, 0.7]), np.array([1.0, 3.0])

DELTA2 = [
    ("normal", lambda: mc.Normal(MU, SD), cubic, dcubic, CUBIC_EXACT),
    ("normal-sin", lambda: mc.Normal(M2, S2), sin_sum, cos_,
     {"loc": np.cos(M2) * np.exp(-S2**2 / 2), "scale": -S2 * np.sin(M2) * np.exp(-S2**2 / 2)}),
    # E sin(N) = Im exp(lam (e^i - 1)): d/dlam = Im((e^i - 1) exp(lam (e^i - 1)))
    ("poisson", lambda: mc.Poisson(LAM), sin_sum, cos_,
     {"rate": np.imag((np.exp(1j) - 1) * np.exp(LAM * (np.exp(1j) - 1)))}),
    # E[x^2] = a (a + 1) / b^2
    ("gamma", lambda: mc.Gamma(A, B), lambda x: (x**2).sum(1), lambda x: 2 * x,
     {"concentration": (2 * A + 1) / B**2, "rate": -2 * A * (A + 1) / B**3}),
    ("bernoulli", lambda: mc.Bernoulli(logits=[0.3, -1.0]),
     lambda b: np.exp(b.sum(1)), lambda b: np.exp(b.sum(1))[:, None] * np.ones_like(b),
     None),
]


@pytest.mark.parametrize("name,make,f,g,exact", DELTA2, ids=[c[0] for c in DELTA2])
def test_delta2(name, make, f, g, exact):
    d = make()
    if exact is None:
        exact = mc.enumerate_grad(f, d).grad
    r = mc.score_grad(f, d, 40000, rng=3, control_variates=["delta2"], grad_f=g,
                      baseline="optimal")
    _within(r, exact)
    # and the user's Hessian: the one of the expansion point, any matrix
    D = d.draw_size
    r2 = mc.score_grad(f, d, 40000, rng=3, control_variates=[("delta2", 0.3 * np.eye(D))],
                       grad_f=g)
    _within(r2, exact)


def test_delta2_reduces_variance_on_a_quadratic():
    """f quadratic: the second-order Taylor expansion is f minus a constant,
    so the control variate and the fitted baseline remove all of f's
    variation."""
    q = mc.Normal([0.5, -1.0], [1.0, 2.0])
    f = lambda x: (x**2).sum(1) + x[:, 0] * x[:, 1]
    g = lambda x: 2 * x + x[:, ::-1]
    r1 = mc.score_grad(f, q, 20000, rng=1, control_variates=["delta"], grad_f=g,
                       baseline="optimal")
    r2 = mc.score_grad(f, q, 20000, rng=1, control_variates=["delta2"], grad_f=g,
                       baseline="optimal")
    exact = {"loc": 2 * q.loc + q.loc[::-1], "scale": 2 * q.scale}
    for k, v in exact.items():  # exact up to the Hessian's differences (1e-10)
        assert np.all(np.abs(r2.grad[k] - v) < 5 * r2.stderr[k] + 1e-10)
    assert np.all(r2.stderr["scale"] < 1e-3 * r1.stderr["scale"])


def test_fixed_coefficients():
    q = mc.Normal(MU, SD)
    h = lambda x: x**3
    gm = {"loc": 3 * MU**2 + 3 * SD**2, "scale": 6 * MU * SD}
    r = mc.score_grad(cubic, q, 40000, rng=2, control_variates=[(h, gm, 0.5)])
    _within(r, CUBIC_EXACT)
    # the same draws, the fixed coefficient applied exactly: f s - 0.5 (h s - gm)
    # equals the score estimator of f - 0.5 h plus 0.5 gm
    base = mc.score_grad(lambda x: cubic(x) - 0.5 * h(x), q, 40000, rng=2,
                         control_variates=[(lambda x: 0 * x, {"loc": 0, "scale": 0}, 0.0)])
    for k in gm:
        np.testing.assert_allclose(r.grad[k], base.grad[k] + 0.5 * gm[k], rtol=1e-9)
    np.testing.assert_allclose(r.info["coefficients"].ravel(), 0.5)
    per = mc.score_grad(cubic, q, 40000, rng=2,
                        control_variates=[(h, gm, {"loc": 0.5, "scale": 0.25})])
    np.testing.assert_allclose(per.info["coefficients"].ravel(), [0.5, 0.25])
    _within(per, CUBIC_EXACT)
    with pytest.raises(ValueError, match="fixed coefficient"):
        mc.score_grad(cubic, q, 1000, control_variates=[(h, gm, np.nan)])


def test_pathwise_control_variates():
    q = mc.Normal(MU, SD)
    plain = mc.pathwise_grad(cubic, q, 40000, grad_f=dcubic, rng=1)
    for cvs in (["delta"], [(lambda x: 2 * x, {"loc": 2 * MU, "scale": 2 * SD})],
                [(lambda x: 3 * x**2, {"loc": 3 * MU**2 + 3 * SD**2, "scale": 6 * MU * SD},
                  0.5)]):
        r = mc.pathwise_cv_grad(cubic, q, 40000, grad_f=dcubic, control_variates=cvs, rng=1)
        _within(r, CUBIC_EXACT)
        assert r.variance["scale"] < plain.variance["scale"]
    g = mc.Gamma(A, B)
    r = mc.pathwise_cv_grad(lambda x: (x**2).sum(1), g, 40000, grad_f=lambda x: 2 * x,
                            control_variates=["delta"], rng=2)
    _within(r, {"concentration": (2 * A + 1) / B**2, "rate": -2 * A * (A + 1) / B**3})
    with pytest.raises(ValueError, match="auxiliary"):
        mc.pathwise_cv_grad(lambda x: x, mc.Beta(2.0, 3.0), 100, grad_f=lambda x: 1 + 0 * x,
                            control_variates=[(lambda x: 0 * x, {"concentration1": 0,
                                                                  "concentration0": 0})])


# ---------------------------------------------------------------------------
# baselines
# ---------------------------------------------------------------------------

def test_moving_average_baseline():
    q = mc.Normal([0.5, -1.0], [1.0, 2.0])
    f = lambda x: (x**2).sum(1) + 100.0
    exact = {"loc": 2 * q.loc, "scale": 2 * q.scale}
    ma = MovingAverageBaseline(0.8)
    runs = [mc.score_grad(f, q, 5000, rng=i, baseline=ma) for i in range(8)]
    assert runs[0].baseline == 0.0 and ma.steps == 8
    # zero-debiased: after one update the value is exactly the first mean
    ma1 = MovingAverageBaseline(0.8).update(runs[0])
    assert ma1.value == pytest.approx(runs[0].value, rel=1e-15)
    expect = 0.0
    for k, r in enumerate(runs[:-1], 1):
        expect = 0.8 * expect + 0.2 * r.value
        assert runs[k].baseline == pytest.approx(expect / (1 - 0.8**k), rel=1e-12)
    for r in runs:
        _within(r, exact)
    assert runs[-1].variance["loc"][0] < 0.05 * runs[0].variance["loc"][0]
    raw = MovingAverageBaseline(0.5, debias=False, initial=3.0)
    raw.update(5.0)
    assert raw.value == 4.0 and float(raw) == 4.0
    with pytest.raises(ValueError, match="decay"):
        MovingAverageBaseline(1.0)


@pytest.mark.parametrize("make,f", [
    (lambda: mc.Normal([0.5, -1.0, 0.2], [1.0, 2.0, 0.5]), lambda x: (x**2).sum(1) + 10),
    (lambda: mc.Categorical(logits=[[0.1, 0.5, -1.0], [0.0, 0.0, 2.0]]),
     lambda k: np.cos(k).sum(1) + k[:, 0] * k[:, 1]),
    (lambda: mc.Bernoulli(logits=[0.3, -1.0, 2.0]), lambda b: np.exp(b.sum(1))),
], ids=["normal", "categorical", "bernoulli"])
def test_context_baseline(make, f):
    d = make()
    if isinstance(d, mc.Normal):
        exact = {"loc": 2 * d.loc, "scale": 2 * d.scale}
    else:
        exact = mc.enumerate_grad(f, d).grad
    r = mc.score_grad(f, d, 30000, rng=4, baseline=ContextBaseline())
    _within(r, exact)
    assert r.info["f_evals_per_sample"] == 1 + d.draw_size
    plain = mc.score_grad(f, d, 30000, rng=4)
    tot = lambda x: sum(float(np.sum(v)) for v in x.variance.values())
    assert tot(r) < tot(plain)
    # a user function of the context: any fn keeps it unbiased
    r = mc.score_grad(f, d, 30000, rng=4,
                      baseline=ContextBaseline(lambda x, c: np.full(len(x), 3.0 + c)))
    _within(r, exact)


def test_context_baseline_needs_one_column_per_coordinate():
    with pytest.raises(ValueError, match="broadcast"):
        mc.score_grad(lambda x: x.sum(1), mc.Normal([0.0, 1.0], 1.0), 100,
                      baseline=ContextBaseline())


# ---------------------------------------------------------------------------
# unordered set and sum-and-sample
# ---------------------------------------------------------------------------

KC = 6
LG = np.random.default_rng(7).normal(size=KC)
FV = np.sin(np.arange(KC) * 1.3) + np.arange(KC) * 0.2


def fcat(k):
    return FV[np.asarray(k)]


@pytest.mark.parametrize("which", ["logits", "probs"])
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_set_estimators_unbiased(which, k):
    d = mc.Categorical(logits=LG) if which == "logits" else mc.Categorical(probs=np.exp(LG))
    e = mc.enumerate_grad(fcat, d)
    for r in (mc.unordered_set_grad(fcat, d, 20000, k=k, rng=1),
              mc.unordered_set_grad(fcat, d, 20000, k=k, rng=1, baseline=False),
              mc.sum_and_sample_grad(fcat, d, 20000, k=k, rng=1)):
        _within(r, e.grad)
        assert abs(r.value - e.value) < 5 * r.value_stderr
        assert r.info["f_evals_per_sample"] == k


def test_set_estimators_whole_domain_exact():
    """k = K: the set is the whole domain; the estimate is the enumeration
    to rounding."""
    d = mc.Categorical(logits=LG)
    e = mc.enumerate_grad(fcat, d)
    for r in (mc.unordered_set_grad(fcat, d, 500, k=KC, rng=1),
              mc.sum_and_sample_grad(fcat, d, 500, k=KC, rng=1)):
        np.testing.assert_allclose(r.grad["logits"], e.grad["logits"], atol=1e-14)


def test_set_estimators_variance_falls_with_k():
    d = mc.Categorical(logits=LG)
    v = [float(mc.unordered_set_grad(fcat, d, 20000, k=k, rng=2).variance["logits"].sum())
         for k in (1, 2, 4)]
    assert v[0] > v[1] > v[2]


CALIBRATION = [
    ("unordered-set", lambda i: mc.unordered_set_grad(fcat, mc.Categorical(logits=LG), 400,
                                                      k=2, rng=i),
     lambda: mc.enumerate_grad(fcat, mc.Categorical(logits=LG)).grad),
    ("sum-and-sample", lambda i: mc.sum_and_sample_grad(fcat, mc.Categorical(logits=LG), 400,
                                                        k=3, rng=i),
     lambda: mc.enumerate_grad(fcat, mc.Categorical(logits=LG)).grad),
    ("delta2", lambda i: mc.score_grad(cubic, mc.Normal(MU, SD), 2000, rng=i, grad_f=dcubic,
                                       control_variates=["delta2"], block_size=200),
     lambda: CUBIC_EXACT),
    ("fixed-coefficient", lambda i: mc.score_grad(
        cubic, mc.Normal(MU, SD), 400, rng=i,
        control_variates=[(lambda x: x**3, {"loc": 3 * MU**2 + 3 * SD**2, "scale": 6 * MU * SD},
                           0.5)]),
     lambda: CUBIC_EXACT),
    ("pathwise-cv", lambda i: mc.pathwise_cv_grad(cubic, mc.Normal(MU, SD), 2000, rng=i,
                                                  grad_f=dcubic, control_variates=["delta"],
                                                  block_size=200),
     lambda: CUBIC_EXACT),
    ("context", lambda i: mc.score_grad(lambda x: (x**2).sum(1),
                                        mc.Normal([0.5, -1.0], [1.0, 2.0]), 400, rng=i,
                                        baseline=ContextBaseline()),
     lambda: {"loc": np.array([1.0, -2.0]), "scale": np.array([2.0, 4.0])}),
]


@pytest.mark.parametrize("name,run,exact", CALIBRATION, ids=[c[0] for c in CALIBRATION])
def test_calibration(name, run, exact):
    """mean z^2 over R repeats within 5 sqrt(2/R) of 1 (the mean over a
    repeat's coordinates first: its variance is at most 2 / R)."""
    ex = exact()
    R = 100
    z2 = []
    for i in range(R):
        r = run(1000 + i)
        z2.append(np.mean(np.concatenate([np.ravel((r.grad[k] - v) / r.stderr[k]) ** 2
                                          for k, v in ex.items()])))
    assert abs(np.mean(z2) - 1) < 5 * math.sqrt(2 / R), np.mean(z2)


def test_set_errors():
    with pytest.raises(ValueError, match="one Categorical"):
        mc.unordered_set_grad(fcat, mc.Categorical(logits=np.zeros((2, 3))), 100)
    with pytest.raises(ValueError, match="k must"):
        mc.unordered_set_grad(fcat, mc.Categorical(logits=LG), 100, k=8)


# ---------------------------------------------------------------------------
# bit-identity over threads
# ---------------------------------------------------------------------------

def test_bit_identical_over_threads():
    q = mc.Normal(MU, SD)
    d = mc.Categorical(logits=LG)
    runs = {
        "pathwise_cv": lambda t: mc.pathwise_cv_grad(cubic, q, 5000, grad_f=dcubic,
                                                     control_variates=["delta"], rng=1,
                                                     n_threads=t, block_size=256),
        "delta2": lambda t: mc.score_grad(cubic, q, 5000, rng=1, grad_f=dcubic,
                                          control_variates=["delta2"], n_threads=t,
                                          block_size=256),
        "context": lambda t: mc.score_grad(cubic, q, 5000, rng=1, n_threads=t, block_size=256,
                                           baseline=ContextBaseline()),
        "set": lambda t: mc.unordered_set_grad(fcat, d, 5000, k=3, rng=1, n_threads=t,
                                               block_size=256),
        "sum-and-sample": lambda t: mc.sum_and_sample_grad(fcat, d, 5000, k=3, rng=1,
                                                           n_threads=t, block_size=256),
    }
    for name, run in runs.items():
        assert_same_estimate(run(1), run(2))


# ---------------------------------------------------------------------------
# compare_estimators
# ---------------------------------------------------------------------------

def test_compare_covers_the_new_estimators():
    q = mc.Normal(MU, SD)
    cmp = mc.compare_estimators(cubic, q, 20000, grad_f=dcubic, rng=1, exact=CUBIC_EXACT)
    for name in ("mvd", "mvd(uncoupled)", "score+delta2", "pathwise+cv", "score+context"):
        assert name in cmp.names
        assert cmp[name]["z"] < 5
    assert cmp["mvd"]["f_evals"] == 4
    assert cmp["mvd"]["eval_variance"] < cmp["score"]["eval_variance"]
    t = 0.45
    th = np.linspace(-1.5, 1.5, 4)
    d = mc.Bernoulli(logits=th)
    p = special.expit(th)
    cmp = mc.compare_estimators(lambda b: ((b - t) ** 2).sum(-1), d, 20000,
                                grad_f=lambda b: 2 * (b - t), rng=1,
                                exact={"logits": p * (1 - p) * (1 - 2 * t)})
    for name in ("mvd", "relax", "enumeration", "score+context"):
        assert name in cmp.names
    assert cmp["enumeration"]["z"] == 0.0 and cmp["enumeration"]["f_evals"] == 16
    for r in cmp.rows:
        if r["unbiased"]:
            assert r["z"] < 5, r["name"]
    dc = mc.Categorical(logits=LG)
    onehot = lambda z: z @ FV
    cmp = mc.compare_estimators(onehot, dc, 20000, rng=1)
    for name in ("mvd", "unordered-set(k=2)", "sum-and-sample(k=2)", "enumeration", "relax"):
        assert name in cmp.names


# ---------------------------------------------------------------------------
# Dask: every new estimator through mcscore.distributed, bit for bit
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       dashboard_address=None, silence_logs=40)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def _sq(x):
    return (np.asarray(x, float).reshape(len(x), -1) ** 2).sum(1)


def _sq_offset(x):
    return 1e6 + _sq(x)


def _dsq(x):
    return 2 * np.asarray(x, float)


def _lin_value(z, phi):
    return phi[0] + (z.reshape(len(z), -1) * phi[1:]).sum(1)


def _lin_grad_z(z, phi):
    return np.broadcast_to(phi[1:].reshape(z.shape[1:]), z.shape).copy()


def _lin_grad_phi(z, phi):
    return np.concatenate([np.ones((len(z), 1)), z.reshape(len(z), -1)], 1)


def _cat_onehot(z):
    return z @ FV


KW = dict(rng=3, n_streams=12, block_size=250)


def test_dask_bit_identical(client):
    q = mc.Normal([0.5, -1.0], [1.0, 2.0])
    b = mc.Bernoulli(logits=[0.3, -1.0])
    d = mc.Categorical(logits=LG)
    sur = mc.NumpySurrogate(_lin_value, _lin_grad_z, _lin_grad_phi, np.array([0.1, 0.2, -0.3]))
    runs = {
        "mvd": lambda c: mc.mvd_grad(_sq, q, 3000, value=True, client=c, **KW),
        "mvd-uncoupled": lambda c: mc.mvd_grad(_sq_offset, q, 3000, value=True, coupling=False,
                                               client=c, **KW),
        "mvd-cat": lambda c: mc.mvd_grad(fcat, d, 3000, value=True, client=c, **KW),
        "relax": lambda c: mc.relax_grad(_sq, b, 3000, surrogate=sur, train_steps=0, client=c,
                                         **KW),
        "pathwise_cv": lambda c: mc.pathwise_cv_grad(_sq, q, 3000, grad_f=_dsq,
                                                     control_variates=["delta"], client=c, **KW),
        "delta2": lambda c: mc.score_grad(_sq_offset, q, 3000, grad_f=_dsq,
                                          control_variates=["delta2"], client=c, **KW),
        "context": lambda c: mc.score_grad(_sq, q, 3000, baseline=ContextBaseline(), client=c,
                                           **KW),
        "unordered-set": lambda c: mc.unordered_set_grad(fcat, d, 3000, k=3, client=c, **KW),
        "sum-and-sample": lambda c: mc.sum_and_sample_grad(fcat, d, 3000, k=2, client=c, **KW),
    }
    for name, run in runs.items():
        local, remote = run(None), run(client)
        assert_same_estimate(local, remote)
        assert local.method == remote.method
    # and right on the cluster
    r = mc.mvd_grad(_sq, q, 6000, client=client, **KW)
    _within(r, {"loc": 2 * q.loc, "scale": 2 * q.scale})


def test_bad_input_names_the_argument():
    q = mc.Normal(MU, SD)
    b = mc.Bernoulli(logits=[0.3, -1.0])
    with pytest.raises(ValueError, match="Hessian"):
        mc.score_grad(cubic, q, 1000, grad_f=dcubic, control_variates=[("delta2", np.eye(3))])
    with pytest.raises(TypeError, match="'delta2' needs grad_f"):
        mc.score_grad(cubic, q, 1000, control_variates=["delta2"])
    with pytest.raises(ValueError, match="variance tangents"):
        mc.score_grad(lambda x: x.sum(1), mc.Beta([2.0], [3.0]), 1000,
                      grad_f=lambda x: np.ones_like(x), control_variates=["delta2"])
    with pytest.raises(TypeError, match="control_variates"):
        mc.pathwise_cv_grad(cubic, q, 1000, grad_f=dcubic, control_variates=[3])
    with pytest.raises(TypeError, match="fn must"):
        ContextBaseline(3)
    ma = MovingAverageBaseline()
    with pytest.raises(ValueError, match="finite"):
        ma.update(np.nan)
    with pytest.raises(TypeError, match="debias"):
        MovingAverageBaseline(debias=1)
    with pytest.raises(ValueError, match="phi"):
        mc.NumpySurrogate(_lin_value, _lin_grad_z, _lin_grad_phi, [np.nan])
    bad = mc.NumpySurrogate(lambda z, phi: np.full(len(z), np.nan), _lin_grad_z, _lin_grad_phi,
                            np.zeros(3))
    with pytest.raises(ValueError, match="the surrogate returned nan"):
        mc.relax_grad(lambda x: x.sum(1), b, 1000, surrogate=bad)
    with pytest.raises(ValueError, match="f_bound"):
        mc.enumerate_grad(lambda x: x.sum(1), mc.Poisson([1.0]), f_bound=-1.0, tol=1e-6)
    with pytest.raises(ValueError, match="target_se"):
        mc.enumeration_advice(lambda x: x.sum(1), b, 0.0)
    with pytest.raises(ValueError, match="f returned"):
        mc.mvd_grad(lambda x: np.full(len(x), np.inf), q, 1000)
    with pytest.raises(ValueError, match="f returned shape"):
        mc.unordered_set_grad(lambda k: np.zeros((len(k), 2)), mc.Categorical(logits=LG), 100)


def test_covariance_by_batch_means():
    """The new estimators give GradientEstimate.cov (batch means over the
    streams, as every engine estimator): P x P, symmetric, its diagonal
    close to stderr^2 (a variance from about 40 batch means: within a
    factor 3)."""
    q = mc.Normal([0.5, -1.0], [1.0, 2.0])
    d = mc.Categorical(logits=LG)
    sur = mc.NumpySurrogate(_lin_value, _lin_grad_z, _lin_grad_phi, np.array([0.1, 0.2, -0.3]))
    runs = [mc.mvd_grad(_sq, q, 20000, rng=1), mc.mvd_grad(_sq, q, 20000, rng=1, wrt=["scale"]),
            mc.relax_grad(_sq, mc.Bernoulli(logits=[0.3, -1.0]), 20000, surrogate=sur,
                          train_steps=0, rng=1),
            mc.pathwise_cv_grad(_sq, q, 20000, grad_f=_dsq, control_variates=["delta"], rng=1),
            mc.score_grad(_sq, q, 20000, baseline=ContextBaseline(), rng=1),
            mc.unordered_set_grad(fcat, d, 20000, k=2, rng=1)]
    for r in runs:
        se2 = np.concatenate([np.ravel(v) for v in r.stderr.values()]) ** 2
        C = r.cov
        assert C.shape == (len(se2), len(se2))
        np.testing.assert_allclose(C, C.T)
        ratio = np.diag(C) / se2
        assert np.all((ratio > 1 / 3) & (ratio < 3)), (r.method, ratio)
