"""mcscore.rl: returns-to-go, policy scores, the REINFORCE estimator against
exact policy gradients, the cart-pole environment and training."""
import numpy as np
import pytest
from scipy import special

import mcscore as mc
from mcscore import rl


def test_returns_to_go_matches_definition():
    rng = np.random.default_rng(0)
    r = rng.normal(size=(4, 7))
    mask = np.arange(7)[None, :] < np.array([7, 3, 1, 5])[:, None]
    g = 0.9
    out = rl.returns_to_go(r, g, mask)
    for e in range(4):
        for t in range(7):
            exp = sum(g ** (k - t) * r[e, k] * mask[e, k] for k in range(t, 7))
            assert out[e, t] == pytest.approx(exp, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(rl.returns_to_go([1.0, 1.0, 1.0]), [3.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="gamma must be in"):
        rl.returns_to_go(r, 1.5)


def _one_state(K=4):
    rewards = np.array([0.3, 1.0, -0.5, 0.2])[:K]
    theta = np.array([[0.2, -0.1, 0.4, 0.0]])[:, :K]
    p = special.softmax(theta[0])
    exact = p * (rewards - p @ rewards)
    return rewards, theta, exact


@pytest.mark.parametrize("baseline", [None, "loo", "optimal", 0.4])
def test_softmax_one_step_equals_score_grad_from_samples(baseline):
    """A one-step episode of a softmax policy with constant features is the
    core estimator on the Categorical over the logits."""
    rewards, theta, exact = _one_state()
    pol = rl.SoftmaxPolicy(1, 4, theta)
    E = 5000
    phi = np.ones((E, 1, 1))
    a = pol.sample(phi, 1)
    r = rewards[a] + np.random.default_rng(2).normal(0, 0.1, size=a.shape)
    est = rl.policy_gradient(pol.score(phi, a), r[:, 0], baseline=baseline)
    core = mc.score_grad_from_samples(mc.Categorical(logits=theta[0]), a[:, 0], r[:, 0],
                                      baseline=baseline)
    np.testing.assert_allclose(est.grad["theta"][0], core.grad["logits"], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(est.stderr["theta"][0], core.stderr["logits"], rtol=1e-10)
    z = (est.grad["theta"][0] - exact) / est.stderr["theta"][0]
    assert np.abs(z).max() < 5


def test_multistep_returns_to_go_unbiased_and_better():
    """T independent pulls with discount: J = sum_t g^t p.r, so
    grad_theta = (sum_t g^t) p (r - p.r)."""
    rewards, theta, exact1 = _one_state()
    T, g, E = 4, 0.8, 20000
    exact = exact1 * sum(g**t for t in range(T))
    pol = rl.SoftmaxPolicy(1, 4, theta)
    phi = np.ones((E, T, 1))
    a = pol.sample(phi, 3)
    r = rewards[a] * g ** np.arange(T)[None, :]
    sc = pol.score(phi, a)
    rtg = rl.policy_gradient(sc, rl.returns_to_go(r), baseline="loo")
    tot = rl.policy_gradient(sc, r.sum(1), baseline="loo")
    for est in (rtg, tot):
        z = (est.grad["theta"][0] - exact) / est.stderr["theta"][0]
        assert np.abs(z).max() < 5, z
    assert (rtg.stderr["theta"] < tot.stderr["theta"]).all()
    assert rtg.n == E and rtg.value == pytest.approx(r.sum(1).mean())


def test_gaussian_policy_exact_gradient():
    """One step, reward -(a - c)^2, a ~ N(w, exp(s)): E = -(w - c)^2 - e^{2s},
    so dE/dw = -2 (w - c) and dE/ds = -2 e^{2s}."""
    w, s, c, E = 0.3, np.log(0.7), 1.2, 40000
    pol = rl.GaussianPolicy(1, 1, w=[[w]], log_std=[s])
    phi = np.ones((E, 1, 1))
    a = pol.sample(phi, 4)                       # (E, 1, 1)
    r = -((a[..., 0] - c) ** 2)                  # (E, 1)
    est = rl.policy_gradient(pol.score(phi, a), r, baseline="loo")
    exact = {"w": np.array([[-2 * (w - c)]]), "log_std": np.array([-2 * np.exp(2 * s)])}
    for k, v in est.z_scores(exact).items():
        assert np.abs(v).max() < 5, (k, v)


def test_loo_baseline_uses_running_episodes_only():
    sc = {"p": np.ones((3, 2, 1))}
    G = np.array([[2.0, 1.0], [4.0, 0.0], [6.0, 9.0]])
    mask = np.array([[True, True], [True, False], [True, True]])
    est = rl.policy_gradient(sc, G, mask=mask, baseline="loo")
    # step 0: baselines (5, 4, 3); step 1: episode 0 vs {2}: 9, episode 2 vs {0}: 1
    y = np.array([(2 - 5) + (1 - 9), (4 - 4), (6 - 3) + (9 - 1)])
    assert est.grad["p"][0] == pytest.approx(y.mean())


def test_cartpole_random_policy_and_physics():
    env = rl.CartPole()
    tr = rl.rollout(env, rl.SoftmaxPolicy(5, 2), 2000, rng=0)
    # a uniformly random policy keeps the pole up ~22 steps on average
    assert 18 < tr.lengths.mean() < 26
    assert tr.mask[:, 0].all() and (tr.total_returns == tr.lengths).all()
    # a pole tilted right falls right when nothing pushes back
    s = np.array([[0.0, 0.0, 0.05, 0.0]])
    for _ in range(10):
        s, _, _ = env.step(s, np.array([0]))
    assert s[0, 2] > 0.05 and s[0, 3] > 0


def test_reinforce_learns_cartpole():
    run = rl.reinforce(rl.CartPole(), rl.SoftmaxPolicy(5, 2), iterations=40, episodes=16,
                       lr=0.1, rng=1, progress=False)
    assert run.returns[-5:].mean() > 150 > run.returns[:5].mean()
    assert "ReinforceResult" in repr(run)


def _lqr_value(env):
    """Optimal expected return of Reach1D (finite-horizon LQR, Riccati):
    max E[-sum (x_{t+1}^2 + c a_t^2)] = -P_0 E[x_0^2] = -P_0 / 3."""
    P = 0.0
    for _ in range(env.max_steps):
        Q = 1.0 + P
        P = Q * env.action_cost / (env.action_cost + Q * env.dt**2)
    return -P / 3


def test_reinforce_gaussian_policy_reach():
    env = rl.Reach1D()
    run = rl.reinforce(env, rl.GaussianPolicy(2, 1), iterations=100, episodes=20, lr=0.1,
                       rng=0, progress=False)
    best = _lqr_value(env)
    assert run.returns[:3].mean() < -5 and run.returns[-10:].mean() > -1.0
    # no policy beats the LQR optimum: check the learned one on fresh episodes
    tr = rl.rollout(env, run.policy, 4000, rng=1)
    tot = tr.total_returns
    assert tot.mean() < best + 5 * tot.std(ddof=1) / np.sqrt(len(tot))
    assert run.policy.params["w"][0, 0] < -1.0  # pushes towards the origin


def test_errors():
    with pytest.raises(ValueError, match="at least 2 episodes"):
        rl.policy_gradient({"p": np.ones((1, 2))}, np.ones((1, 2)))
    with pytest.raises(ValueError, match=r"returns must have shape \(2, 3\)"):
        rl.policy_gradient({"p": np.ones((2, 3))}, np.ones((2, 4)))
    with pytest.raises(ValueError, match="'optimal' needs episode returns"):
        rl.policy_gradient({"p": np.ones((2, 3))}, np.ones((2, 3)), baseline="optimal")
    with pytest.raises(ValueError, match="features must have a last axis of 5"):
        rl.SoftmaxPolicy(5, 2).sample(np.ones((3, 4)))
    with pytest.raises(ValueError, match="n_actions must be >= 2"):
        rl.SoftmaxPolicy(5, 1)
    with pytest.raises(ValueError, match="returns must be finite"):
        rl.policy_gradient({"p": np.ones((2, 1))}, np.array([1.0, np.nan]))
