"""mcscore.jax: expectation() under jax.jit and jax.grad.

A linear policy over state features with categorical actions is trained
under jit with expectation(); its gradient is checked against the exact
one (actions enumerated) within 5 standard errors propagated by the chain
rule (J^T cov J, cov returned beside the value).
"""
from __future__ import annotations


import numpy as np
import pytest

from _bridges import assert_missing_framework_names_the_extra

S, F, A = 24, 5, 3
N = 50000


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(S, F))
    R = rng.normal(size=(S, A)) + np.linspace(-1, 1, A)
    return X, R


def test_missing_jax_names_the_extra(monkeypatch):
    assert_missing_framework_names_the_extra(monkeypatch, "jax")


@pytest.fixture
def jax():
    return pytest.importorskip("jax")


@pytest.fixture
def mcj(jax):
    import mcscore.jax as mcj
    return mcj


def test_policy_gradient_under_jit(jax, mcj):
    jnp = jax.numpy
    Xn, Rn = _problem()
    X = jnp.asarray(Xn, dtype=jnp.float32)
    rows = np.arange(S)

    def f(actions):  # (m, S) actions -> mean reward (m,)
        return Rn[rows, actions].mean(1)

    def objective(w, key):
        value, aux = mcj.expectation(f, "Categorical", N, logits=X @ w, rng=key,
                                     return_result=True, cov=True)
        return value, aux

    step = jax.jit(jax.value_and_grad(objective, has_aux=True))

    def exact(w):
        return (jax.nn.softmax(X @ w) * jnp.asarray(Rn, jnp.float32)).sum(1).mean()

    exact_grad = jax.jit(jax.grad(exact))
    # J: d logits / d w, flattened (S * A, F * A)
    jac = jax.jit(jax.jacobian(lambda w: (X @ w).reshape(-1)))
    w = jnp.zeros((F, A), jnp.float32)
    key = jax.random.key(0)
    start = float(exact(w))
    seen = []
    for it in range(30):
        key, sub = jax.random.split(key)
        (value, aux), g = step(w, sub)
        if it % 10 == 0:
            J = np.asarray(jac(w), np.float64).reshape(S * A, F * A)
            C = np.asarray(aux["cov"], np.float64)
            se = np.sqrt(np.diag(J.T @ C @ J))
            gv = np.asarray(g, np.float64).ravel()
            ex = np.asarray(exact_grad(w), np.float64).ravel()
            z = (gv - ex) / se
            assert np.all(np.abs(z) < 5), (it, z)
            if it == 0:
                assert np.max(np.abs(ex) / se) > 10  # could tell a wrong gradient
            assert abs(float(value) - float(exact(w))) < 5 * float(aux["value_stderr"])
            seen.append(gv)
        w = w + 0.5 * g
    assert len(seen) == 3
    # fresh keys give fresh draws under jit; the same key the same draws
    (v1, _), _ = step(w, jax.random.key(7))
    (v2, _), _ = step(w, jax.random.key(7))
    (v3, _), _ = step(w, jax.random.key(8))
    assert float(v1) == float(v2) and float(v1) != float(v3)
    best = float(Rn.max(1).mean())
    assert float(exact(w)) > start + 0.5 * (best - start)  # it learns


def test_grad_and_value_float64(jax, mcj):
    """x64: a Normal's loc through jax.grad; value E[x^2] and d/dloc = 2 loc."""
    from jax import config
    jnp = jax.numpy
    prev = config.jax_enable_x64
    config.update("jax_enable_x64", True)
    try:
        loc = jnp.array([0.3, -0.7])

        def value(loc):
            return mcj.expectation(lambda x: (x * x).sum(1), "Normal", 40000, loc=loc,
                                   scale=np.array([1.0, 0.5]), rng=jax.random.PRNGKey(1))

        v = value(loc)
        assert v.dtype == jnp.float64
        _, aux = mcj.expectation(lambda x: (x * x).sum(1), "Normal", 40000, loc=loc,
                                 scale=np.array([1.0, 0.5]), rng=jax.random.PRNGKey(1),
                                 return_result=True)
        g = jax.grad(value)(loc)
        z = (np.asarray(g) - 2 * np.asarray(loc)) / np.asarray(aux["stderr"]["loc"])
        assert np.all(np.abs(z) < 5)
        ev = float((loc**2).sum()) + 1.25
        assert abs(float(v) - ev) < 5 * float(aux["value_stderr"])
        # the cotangent scales the gradient (same key: same draws)
        g3 = jax.grad(lambda l: 3.0 * value(l))(loc)
        np.testing.assert_allclose(np.asarray(g3), 3 * np.asarray(g), rtol=1e-12)
    finally:
        config.update("jax_enable_x64", prev)


def test_vmap_over_keys(jax, mcj):
    """vmap over a batch of keys: one host call per key, each its own
    draws (the same as the unbatched call with that key)."""
    jnp = jax.numpy
    loc = jnp.array(0.5, jnp.float32)

    def value(key):
        return mcj.expectation(lambda x: x * x, "Normal", 2000, loc=loc, scale=1.0, rng=key)

    keys = jax.random.split(jax.random.key(4), 3)
    vs = jax.jit(jax.vmap(value))(keys)
    assert vs.shape == (3,) and len(set(np.asarray(vs).tolist())) == 3
    np.testing.assert_allclose(np.asarray(vs), [float(value(k)) for k in keys], rtol=1e-6)
    gs = jax.vmap(jax.grad(lambda l, k: mcj.expectation(lambda x: x * x, "Normal", 2000,
                                                        loc=l, scale=1.0, rng=k)),
                  in_axes=(None, 0))(loc, keys)
    assert gs.shape == (3,)


def test_bad_rng(jax, mcj):
    with pytest.raises(TypeError, match="PRNG key"):
        mcj.expectation(lambda x: x, "Normal", 100, loc=jax.numpy.zeros(()), scale=1.0,
                        rng=jax.numpy.zeros(3))


def test_batched_under_jit(jax, mcj):
    """batch_ndims=1 under jit: one expectation per state; the gradient
    w.r.t. the logits, each state weighted, within 5 standard errors."""
    from mcscore._bridge import score_grad_has_batch_ndims
    if not score_grad_has_batch_ndims():
        pytest.skip("score_grad has no batch_ndims parameter yet (batched expectations are "
                    "being added on another branch)")
    jnp = jax.numpy
    Xn, Rn = _problem(1)
    logits = jnp.asarray(Xn @ np.full((F, A), 0.1), jnp.float32)
    rows = np.arange(S)
    wts = jnp.linspace(0.5, 2.0, S, dtype=jnp.float32)

    def f(actions):  # (m, S) -> (m, S)
        return Rn[rows, actions]

    def objective(lg, key):
        v, aux = mcj.expectation(f, "Categorical", N, logits=lg, rng=key, batch_ndims=1,
                                 return_result=True)
        return (v * wts).sum(), (v, aux)

    (_, (v, aux)), g = jax.jit(jax.value_and_grad(objective, has_aux=True))(
        logits, jax.random.key(3))
    assert v.shape == (S,)
    ex = jax.grad(lambda lg: ((jax.nn.softmax(lg) * jnp.asarray(Rn, jnp.float32)).sum(1)
                              * wts).sum())(logits)
    se = np.asarray(aux["stderr"]["logits"], np.float64) * np.asarray(wts, np.float64)[:, None]
    z = (np.asarray(g, np.float64) - np.asarray(ex, np.float64)) / se
    assert np.all(np.abs(z) < 5), z
