"""mcscore.torch: expectation() inside autograd.

A 2-layer policy network over state features with categorical actions is
trained with expectation(); at several steps its parameter gradients are
checked against the exact gradient (the actions enumerated: E[f] =
mean_s sum_a softmax(logits_s)_a R[s, a], differentiated by autograd)
within 5 standard errors propagated by the chain rule: the weights'
gradient is J^T g with J the Jacobian of the logits w.r.t. the weights, and
its covariance J^T cov J (``result.linear(J.T)``).
"""
from __future__ import annotations


import numpy as np
import pytest

from _bridges import assert_missing_framework_names_the_extra

S, F, A, H = 24, 5, 3, 6  # states, features, actions, hidden units
N = 20000


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(S, F))
    R = rng.normal(size=(S, A)) + np.linspace(-1, 1, A)  # rewards per (state, action)
    return X, R


def reward_fn(R):
    rows = np.arange(R.shape[0])

    def f(actions):  # actions (m, S) -> mean reward over the states (m,)
        return R[rows, actions].mean(1)

    return f


def test_missing_torch_names_the_extra(monkeypatch):
    """Without torch, importing mcscore.torch says which extra to install."""
    assert_missing_framework_names_the_extra(monkeypatch, "torch")


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


@pytest.fixture
def mct(torch):
    import mcscore.torch as mct
    return mct


def _flat_jacobian(torch, net, X):
    """J (P_logits, P_weights): d logits / d weights, weights flattened in
    the order of net.parameters()."""
    params = list(net.parameters())
    names = [n for n, _ in net.named_parameters()]

    def logits_of(*ps):
        return torch.func.functional_call(net, dict(zip(names, ps)), (X,))

    jac = torch.autograd.functional.jacobian(logits_of, tuple(p.detach() for p in params))
    return torch.cat([j.reshape(S * A, -1) for j in jac], dim=1).numpy()


def _exact_grad(torch, net, X, Rt):
    ex = (torch.softmax(net(X), -1) * Rt).sum(1).mean()
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(ex, list(net.parameters()))])


@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
def test_policy_gradient_matches_exact(torch, mct, dtype_name):
    dtype = getattr(torch, dtype_name)
    torch.manual_seed(0)
    Xn, Rn = _problem()
    X = torch.tensor(Xn, dtype=dtype)
    Rt = torch.tensor(Rn, dtype=dtype)
    net = torch.nn.Sequential(torch.nn.Linear(F, H), torch.nn.Tanh(),
                              torch.nn.Linear(H, A)).to(dtype)
    f = reward_fn(Rn)
    gen = np.random.default_rng(42)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    with torch.no_grad():
        start = float((torch.softmax(net(X), -1) * Rt).sum(1).mean())
    checked = 0
    for step in range(40):
        opt.zero_grad()
        logits = net(X)
        value, res = mct.expectation(f, "Categorical", N, logits=logits, rng=gen,
                                     return_result=True)
        assert value.dtype == dtype and value.shape == ()
        (-value).backward()
        if step % 13 == 0:
            got = -torch.cat([p.grad.reshape(-1) for p in net.parameters()]).double().numpy()
            exact = _exact_grad(torch, net, X, Rt).double().numpy()
            J = _flat_jacobian(torch, net, X).astype(np.float64)
            lin = res.linear(J.T)  # chain rule: d E / d w = J^T d E / d logits
            np.testing.assert_allclose(lin.estimate, got, rtol=1e-4 if dtype_name == "float32"
                                       else 1e-10, atol=1e-6 if dtype_name == "float32" else 0)
            z = (got - exact) / lin.stderr
            assert np.all(np.abs(z) < 5), (step, z)
            if step == 0:  # the error bars are narrow enough to tell the gradient from 0
                assert np.max(np.abs(exact) / lin.stderr) > 10
            # the value's error bar is beside it
            ev = float((torch.softmax(logits.detach(), -1) * Rt).sum(1).mean())
            assert abs(value.item() - ev) < 5 * res.value_stderr
            checked += 1
        opt.step()
    assert checked == 4
    with torch.no_grad():
        end = float((torch.softmax(net(X), -1) * Rt).sum(1).mean())
    best = float(Rt.max(1).values.mean())
    assert end > start + 0.5 * (best - start)  # it learns


def test_gradient_flows_to_tensor_params_only(torch, mct):
    """Normal with a tensor loc and a constant scale: the gradient reaches
    loc (through the network-free chain loc = 2 * theta) and the value is
    E[x^2] = loc^2 + scale^2 within its error bar."""
    theta = torch.tensor([0.3, -0.5], dtype=torch.float64, requires_grad=True)
    loc = 2 * theta
    scale = np.array([1.0, 0.5])
    value, res = mct.expectation(lambda x: (x * x).sum(1), "Normal", 40000, loc=loc,
                                 scale=scale, rng=3, return_result=True)
    value.backward()
    exact_value = float((loc.detach() ** 2).sum()) + float((scale**2).sum())
    assert abs(value.item() - exact_value) < 5 * res.value_stderr
    # d/dtheta = 2 * d/dloc, exact d/dloc = 2 loc
    se = 2 * res.stderr["loc"]
    z = (theta.grad.numpy() - 2 * 2 * loc.detach().numpy()) / se
    assert np.all(np.abs(z) < 5)
    assert set(res.grad) == {"loc", "scale"}


def test_incoming_gradient_scales(torch, mct):
    """backward multiplies the incoming gradient: d(3 v)/d loc = 3 dv/dloc
    with the same draws."""
    out = []
    for c in (1.0, 3.0):
        loc = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
        v = mct.expectation(lambda x: x**3, "Normal", 5000, loc=loc, scale=1.0, rng=9)
        (c * v).backward()
        out.append(float(loc.grad))
    assert out[1] == pytest.approx(3 * out[0], rel=1e-12)


def test_bad_input(torch, mct):
    loc = torch.tensor(0.0, requires_grad=True)
    with pytest.raises(ValueError, match="not an mcscore family"):
        mct.expectation(lambda x: x, "Normel", 100, loc=loc, scale=1.0)
    with pytest.raises(ValueError, match="at least one parameter given as a tensor"):
        mct.expectation(lambda x: x, "Normal", 100, loc=0.0, scale=1.0)
    with pytest.raises(ValueError, match="batch_ndims must be an int >= 0"):
        mct.expectation(lambda x: x, "Normal", 100, loc=loc, scale=1.0, batch_ndims=-1)
    with pytest.raises(TypeError, match="must be real"):
        mct.expectation(lambda x: x, "Normal", 100, loc=torch.tensor(1j), scale=1.0)


def test_batched_policy_gradient(torch, mct):
    """batch_ndims=1: one expectation per state; the loss weights them,
    backward applies each state's weight to its own gradient (checked per
    logit against the exact gradient within 5 of its standard errors), and
    autograd carries it on to the network's weights."""
    from mcscore._bridge import score_grad_has_batch_ndims
    if not score_grad_has_batch_ndims():
        pytest.skip("score_grad has no batch_ndims parameter yet (batched expectations are "
                    "being added on another branch)")
    Xn, Rn = _problem(1)
    X = torch.tensor(Xn)
    Rt = torch.tensor(Rn)
    torch.manual_seed(1)
    net = torch.nn.Linear(F, A).double()
    wts = torch.linspace(0.5, 2.0, S, dtype=torch.float64)
    rows = np.arange(S)

    def f(actions):  # (m, S) -> (m, S): each state's own reward
        return Rn[rows, actions]

    logits = net(X)
    logits.retain_grad()
    value, res = mct.expectation(f, "Categorical", N, logits=logits, rng=5, batch_ndims=1,
                                 return_result=True)
    assert value.shape == (S,)
    ev = (torch.softmax(logits.detach(), -1) * Rt).sum(1).numpy()
    assert np.all(np.abs(value.detach().numpy() - ev) < 5 * np.asarray(res.value_stderr))
    (value * wts).sum().backward()
    lg = logits.detach().requires_grad_()
    exact = torch.autograd.grad(((torch.softmax(lg, -1) * Rt).sum(1) * wts).sum(), lg)[0]
    se = res.stderr["logits"] * wts.numpy()[:, None]
    z = (logits.grad.numpy() - exact.numpy()) / se
    assert np.all(np.abs(z) < 5), z
    # autograd's chain rule from the logits to the weights
    J = _flat_jacobian(torch, net, X)
    got = torch.cat([p.grad.reshape(-1) for p in net.parameters()]).numpy()
    np.testing.assert_allclose(got, J.T @ logits.grad.numpy().ravel(), rtol=1e-10, atol=1e-14)
