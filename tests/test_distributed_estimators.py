"""client= for every estimator (control variates, antithetic pairs,
pathwise, relaxed, REBAR, DisARM, RLOO, finance.greeks) on a real
multi-process Dask cluster: bit-identical to the local run, and right."""
import numpy as np
import pytest

import mcscore as mc
from mcscore import finance
from mcscore import integrands as I

distributed = pytest.importorskip("distributed")

# the module-scoped 2-process cluster and the bit-identity check of score_grad's tests
from test_distributed import _same, client  # noqa: E402, F401


def _both(client, run):
    local, remote = run(None), run(client)
    assert local.method == remote.method
    _same(local, remote)
    return remote


def sq(x):
    return (np.asarray(x, float).reshape(len(x), -1) ** 2).sum(1)


def sq_offset(x):
    return 1e9 + sq(x)


def dsq(x):
    return 2 * np.asarray(x, float)


KW = dict(rng=3, n_streams=12, block_size=250)


@pytest.mark.parametrize("f", [sq, sq_offset, I.sum_of_squares()], ids=["py", "offset", "fused"])
def test_control_variates_and_antithetic(client, f):
    q = mc.Normal([0.5, -1.0], [1.0, 2.0])
    r = _both(client, lambda c: mc.score_grad(f, q, 6000, baseline="optimal", antithetic=True,
                                              control_variates=["delta"], grad_f=dsq,
                                              client=c, **KW))
    if f is sq_offset:  # the offsets taken out per stream are merged across tasks
        return
    # d E[sum x^2] = (2 loc, 2 scale)
    assert np.all(np.abs(r.grad["loc"] - 2 * q.loc) < 5 * r.stderr["loc"])
    assert np.all(np.abs(r.grad["scale"] - 2 * q.scale) < 5 * r.stderr["scale"])


def test_pathwise_and_rloo(client):
    q = mc.Gamma([0.7, 3.0], 2.0)
    r = _both(client, lambda c: mc.pathwise_grad(sq, q, 6000, grad_f=dsq, client=c, **KW))
    # E[x^2] = a (a + 1) / b^2
    a, b = q.concentration, q.rate
    assert np.all(np.abs(r.grad["concentration"] - (2 * a + 1) / b**2)
                  < 5 * r.stderr["concentration"])
    _both(client, lambda c: mc.pathwise_grad(sq, mc.Dirichlet([1.5, 0.7, 2.0]), 3000,
                                             grad_f=dsq, client=c, **KW))
    p = mc.Poisson([1.5, 4.0])
    r = _both(client, lambda c: mc.rloo_grad(sq_offset, p, 3000, k=3, client=c, rng=4,
                                             n_streams=12))
    # E[x^2] = rate + rate^2
    assert np.all(np.abs(r.grad["rate"] - (1 + 2 * p.rate)) < 5 * r.stderr["rate"])


def test_discrete_estimators(client):
    bern = mc.Bernoulli(logits=[0.2, -1.0])
    cat = mc.Categorical(logits=[0.0, 1.0, -1.0])
    _both(client, lambda c: mc.relaxed_grad(sq, cat, 3000, grad_f=dsq, temperature=0.5,
                                            client=c, **KW))
    r = _both(client, lambda c: mc.rebar_grad(sq_offset, bern, 3000, grad_f=dsq,
                                              baseline="optimal", client=c, **KW))
    # E[sum b^2] = sum p: d / d logit = p (1 - p)
    p = bern.probs
    assert np.all(np.abs(r.grad["logits"] - p * (1 - p)) < 5 * r.stderr["logits"])
    r = _both(client, lambda c: mc.rebar_grad(sq, bern, 2000, grad_f=dsq, temperature="auto",
                                              n_pilot=256, client=c, **KW))
    assert r.info["temperature"] in mc.discrete.TEMPERATURE_GRID
    r = _both(client, lambda c: mc.disarm_grad(sq, bern, 3000, client=c, **KW))
    assert np.all(np.abs(r.grad["logits"] - p * (1 - p)) < 5 * r.stderr["logits"])


@pytest.mark.parametrize("method", ["lr", "pathwise"])
def test_greeks(client, method):
    kw = dict(spot=100.0, strike=100.0, rate=0.05, vol=0.2, maturity=1.0, n=20_000,
              method=method, **KW)
    local = finance.greeks("call", **kw)
    remote = finance.greeks("call", client=client, **kw)
    assert local.as_dict() == remote.as_dict()
    assert local.stderr == remote.stderr and local.alternatives == remote.alternatives
    exact = finance.black_scholes("call", spot=100.0, strike=100.0, rate=0.05, vol=0.2,
                                  maturity=1.0)
    for k in ("price", "delta", "vega"):
        assert abs(getattr(remote, k) - exact[k]) < 5 * remote.stderr[k]


def test_errors_on_dask(client):
    import ctypes

    from scipy import LowLevelCallable

    proto = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.POINTER(ctypes.c_double), ctypes.c_ssize_t)
    cb = LowLevelCallable(proto(lambda x, d: x[0]))
    with pytest.raises(TypeError, match="cannot be sent to Dask workers"):
        mc.score_grad(cb, mc.Normal(0.0, 1.0), 1000, antithetic=True, client=client)

    def bad(x):
        return np.where(np.asarray(x)[:, 0] > 2.5, np.nan, 1.0)

    q = mc.Normal([0.0], [1.0])
    with pytest.raises(ValueError, match="f returned nan at draw") as err:
        mc.pathwise_grad(bad, q, 4000, grad_f=dsq, client=client, **KW)
    # the draw named is one where f is NaN, although a task walks its
    # streams block by block
    i = int(str(err.value).split("at draw ")[1].split()[0])
    x = float(str(err.value).split("x = [")[1].split("]")[0])
    assert x > 2.5 and 0 <= i < 4000
