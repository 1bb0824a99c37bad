"""Property-based tests (hypothesis) for every family over random valid
parameters (random shapes that broadcast, probs or logits):

* ``score`` agrees with central finite differences of ``log_prob``;
* ``log_prob`` agrees with ``scipy.stats`` (torch parameterisations mapped);
* the mean of the score is zero and the sample mean and variance match the
  closed forms, within 5 standard errors;
* ``score_grad`` recovers the gradient of exact expectations (E[w.x] fused,
  E[w.x^2] as a Python f, any baseline) within 5 standard errors.

References live in ``tests/_exact.py``.  Runs are deterministic
(``derandomize=True``) and the Monte Carlo checks use fixed seeds.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from _exact import FAMILIES, exact_grad_of_expectation, finite_difference
from mcscore import integrands as I
import mcscore as mc

SETTINGS = settings(max_examples=12, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

BATCHES = st.sampled_from([(), (2,), (3, 1), (2, 2)])


def _arr(shape, lo, hi):
    return hnp.arrays(np.float64, shape, elements=st.floats(lo, hi, allow_nan=False,
                                                            allow_infinity=False))


def _ints(shape, lo, hi):
    return hnp.arrays(np.int64, shape, elements=st.integers(lo, hi))


@st.composite
def _shape_of(draw, batch):
    """A parameter shape that broadcasts to batch: () or batch or batch with
    ones."""
    if not batch:
        return ()
    choice = draw(st.sampled_from(["scalar", "full", "ones"]))
    if choice == "scalar":
        return ()
    if choice == "full":
        return batch
    return tuple(1 if i == 0 else b for i, b in enumerate(batch))


@st.composite
def _binary(draw, batch, plo, phi, llo, lhi):
    if draw(st.booleans()):
        return {"probs": draw(_arr(draw(_shape_of(batch)), plo, phi))}
    return {"logits": draw(_arr(draw(_shape_of(batch)), llo, lhi))}


@st.composite
def _categorical(draw, batch):
    k = draw(st.integers(2, 4))
    if draw(st.booleans()):
        return {"probs": draw(_arr(batch + (k,), 0.15, 1.0))}
    return {"logits": draw(_arr(batch + (k,), -1.5, 1.5))}


@st.composite
def family_params(draw, name):
    """(params, fixed) of valid, moderate parameters for one family."""
    b = draw(BATCHES)
    sh = lambda: draw(_shape_of(b))  # noqa: E731
    if name in ("Normal", "LogNormal", "Laplace"):
        hi = 0.6 if name == "LogNormal" else 2.5
        return {"loc": draw(_arr(sh(), -2.0, 2.0)), "scale": draw(_arr(sh(), 0.3, hi))}, {}
    if name == "Exponential":
        return {"rate": draw(_arr(b, 0.3, 3.0))}, {}
    if name == "Gamma":
        return {"concentration": draw(_arr(sh(), 0.7, 6.0)), "rate": draw(_arr(sh(), 0.3, 3.0))}, {}
    if name == "Beta":
        return {"concentration1": draw(_arr(sh(), 0.7, 5.0)),
                "concentration0": draw(_arr(sh(), 0.7, 5.0))}, {}
    if name == "Poisson":
        return {"rate": draw(_arr(b, 0.3, 25.0))}, {}
    if name == "Bernoulli":
        return draw(_binary(b, 0.1, 0.9, -2.5, 2.5)), {}
    if name == "Binomial":
        return draw(_binary(b, 0.1, 0.9, -2.0, 2.0)), {"total_count": draw(_ints(sh(), 1, 25))}
    if name == "Geometric":
        return draw(_binary(b, 0.2, 0.9, -1.5, 2.0)), {}
    if name == "NegativeBinomial":
        return (draw(_binary(b, 0.1, 0.75, -2.0, 1.0)),
                {"total_count": draw(_arr(sh(), 0.5, 8.0))})
    if name == "Categorical":
        return draw(_categorical(b)), {}
    if name == "Multinomial":
        p = draw(_categorical(b))
        return p, {"total_count": draw(_ints(draw(_shape_of(b)), 1, 12))}
    if name == "Dirichlet":
        k = draw(st.integers(2, 4))
        return {"concentration": draw(_arr(b + (k,), 0.7, 5.0))}, {}
    raise KeyError(name)


NAMES = sorted(FAMILIES)


def _build(name, data):
    params, fixed = data.draw(family_params(name), label="params")
    fam = FAMILIES[name]
    return fam, params, fixed, fam.make(params, fixed)


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(data=st.data())
def test_score_matches_finite_differences_of_log_prob(name, data):
    fam, params, fixed, d = _build(name, data)
    x = d.sample(5, rng=data.draw(st.integers(0, 2**32 - 1), label="seed"))
    scores = d.score(x)
    assert set(scores) == set(params)

    def total_log_prob(p):
        return fam.make(p, fixed).log_prob(x).reshape(len(x), -1).sum(axis=1)

    fd = finite_difference(total_log_prob, params, rel=1e-6)
    for k in params:
        assert scores[k].shape == (len(x),) + np.shape(params[k])
        np.testing.assert_allclose(scores[k], fd[k], rtol=2e-5, atol=2e-5, err_msg=k)


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(data=st.data())
def test_log_prob_matches_scipy(name, data):
    fam, params, fixed, d = _build(name, data)
    x = d.sample(12, rng=data.draw(st.integers(0, 2**32 - 1), label="seed"))
    ours = d.log_prob(x)
    assert ours.shape == (len(x),) + tuple(d.batch_shape)
    ref = np.broadcast_to(fam.logpdf(params, fixed, x), ours.shape)
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-9)


def _assert_within(est, exact, se, what, slack=1e-9):
    est, exact, se = np.broadcast_arrays(np.asarray(est, float), np.asarray(exact, float),
                                         np.asarray(se, float))
    err = np.abs(est - exact)
    ok = err <= 5 * se + slack * (1 + np.abs(exact))
    assert ok.all(), f"{what}: estimate {est[~ok]} vs exact {exact[~ok]} (se {se[~ok]})"


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(data=st.data())
def test_score_has_mean_zero_and_moments_match(name, data):
    fam, params, fixed, d = _build(name, data)
    m = 20_000
    x = d.sample(m, rng=data.draw(st.integers(0, 2**32 - 1), label="seed"))
    for k, s in d.score(x).items():
        _assert_within(s.mean(0), 0.0, s.std(0) / np.sqrt(m), f"mean score {k}", slack=1e-12)
    mean, var = fam.moments(params, fixed)
    xf = x.astype(float)
    _assert_within(xf.mean(0), mean, np.sqrt(var / m), "sample mean")
    dev = xf - xf.mean(0)
    s2 = (dev**2).mean(0)
    m4 = (dev**4).mean(0)
    _assert_within(s2, var, np.sqrt(np.maximum(m4 - s2**2, 0) / m), "sample variance")


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(data=st.data())
def test_score_grad_recovers_exact_gradients(name, data):
    fam, params, fixed, d = _build(name, data)
    # weights 0 or of order 1 (|f| ~ 1e-190 rightly raises: its squares underflow)
    w = data.draw(hnp.arrays(np.float64, d.draw_shape, elements=st.one_of(
        st.just(0.0), st.floats(0.1, 1.0), st.floats(-1.0, -0.1))), label="weights")
    power = data.draw(st.sampled_from([1, 2]), label="power")
    baseline = data.draw(st.sampled_from([None, "loo", "optimal", 0.5]), label="baseline")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    if power == 1:
        f = I.linear(w)                         # fused into the kernel
    else:
        def f(x):                               # a vectorised Python callable
            return (w * np.asarray(x, float) ** 2).reshape(len(x), -1).sum(axis=1)
    r = mc.score_grad(f, d, 40_000, rng=seed, baseline=baseline)
    exact = exact_grad_of_expectation(fam, params, fixed, w, power=power)
    assert set(r.grad) == set(exact)
    for k in exact:
        assert r.grad[k].shape == np.shape(params[k])
        _assert_within(r.grad[k], exact[k], r.stderr[k], f"grad {k} (power {power}, {baseline})",
                       slack=1e-6)
