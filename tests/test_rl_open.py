"""Open RL (issue 14, item 4): the policy protocol (a custom policy class, a
torch module through TorchPolicy), per-step and per-state baselines, GAE,
the entropy bonus, seeded stochastic environments, the Gymnasium-style
adapter, and the rollout fix for custom discrete policies."""
import inspect

import numpy as np
import pytest
from scipy import special

import mcscore as mc
from mcscore import rl


class LogisticPolicy:
    """A custom two-action policy written against the protocol only:
    P(action 1 | s) = sigmoid(phi(s) . w)."""

    n_actions = 2

    def __init__(self, w):
        self.params = {"w": np.asarray(w, dtype=float)}

    def with_params(self, params):
        return LogisticPolicy(params["w"])

    def _p(self, phi):
        return special.expit(phi @ self.params["w"])

    def sample(self, phi, rng):
        return (rng.uniform(size=phi.shape[:-1]) < self._p(phi)).astype(np.int64)

    def score(self, phi, a):
        return {"w": (a - self._p(phi))[..., None] * phi}


# ---------------------------------------------------------------------------
# learning cart-pole
# ---------------------------------------------------------------------------

def _evaluate(env, policy, n=200):
    return rl.rollout(env, policy, n, rng=12345).total_returns.mean()


def test_custom_policy_learns_cartpole_to_195():
    """Documented: 80 iterations of 16 episodes, lr 0.1, seed 0 (the
    5-iteration average passes 195 near iteration 50)."""
    env = rl.CartPole()
    run = rl.reinforce(env, LogisticPolicy(np.zeros(5)), iterations=80, episodes=16, lr=0.1,
                       rng=0, progress=False)
    assert run.returns[:5].mean() < 50
    assert _evaluate(env, run.policy) >= 195


def test_torch_policy_learns_cartpole_to_195():
    """Documented: a 5-16-2 tanh network, 40 iterations of 16 episodes,
    lr 0.1 (mcscore's Adam), seeds 0."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny network: threads only add overhead
    try:
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(),
                                  torch.nn.Linear(16, 2))
        env = rl.CartPole()
        run = rl.reinforce(env, rl.TorchPolicy(net, "categorical"), iterations=40, episodes=16,
                           lr=0.1, rng=0, progress=False)
        assert run.returns[:3].mean() < 50
        assert _evaluate(env, run.policy) >= 195
        # the module itself was trained (with_params writes in place)
        assert run.policy.module is net
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------
# exact gradients: a one-step bandit, enumerated
# ---------------------------------------------------------------------------

def _bandit_exact(theta, rewards):
    p = special.softmax(theta[0])
    return p * (rewards - p @ rewards)


def test_custom_policy_one_step_bandit_exact():
    """Two arms, constant features: d/dw E[r] = p (1 - p) (r1 - r0) exactly."""
    w, r = 0.3, np.array([0.2, 1.0])
    pol = LogisticPolicy([w])
    E = 20_000
    phi = np.ones((E, 1, 1))
    a = pol.sample(phi, np.random.default_rng(1))
    est = rl.policy_gradient(pol.score(phi, a), r[a], baseline="loo")
    p = special.expit(w)
    exact = p * (1 - p) * (r[1] - r[0])
    assert abs(est.grad["w"][0] - exact) < 5 * est.stderr["w"][0]


def test_torch_policy_scores_equal_the_numpy_policies():
    """A bias-free linear module in float64 is SoftmaxPolicy / GaussianPolicy:
    the autograd scores, entropies and episode gradients equal theirs."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(3, 4))
    lin = torch.nn.Linear(3, 4, bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(theta.T))
    tp = rl.TorchPolicy(lin, "categorical")
    sp = rl.SoftmaxPolicy(3, 4, theta)
    phi = rng.normal(size=(5, 6, 3))
    a = sp.sample(phi, 1)
    np.testing.assert_allclose(tp.score(phi, a)["weight"],
                               np.swapaxes(sp.score(phi, a)["theta"], -1, -2), atol=1e-12)
    h1, d1 = tp.entropy(phi)
    h2, d2 = sp.entropy(phi)
    np.testing.assert_allclose(h1, h2, atol=1e-12)
    np.testing.assert_allclose(d1["weight"], np.swapaxes(d2["theta"], -1, -2), atol=1e-12)
    w = rng.normal(size=(5, 6))
    eg = tp.episode_grads(phi, a, w, 0.3 * np.ones((5, 6)))
    ref = np.einsum("etfa,et->eaf", sp.score(phi, a)["theta"], w) \
        + 0.3 * np.swapaxes(d2["theta"].sum(1), -1, -2)
    np.testing.assert_allclose(eg["weight"], ref, atol=1e-12)
    # Gaussian
    wg = rng.normal(size=(3, 2))
    lin = torch.nn.Linear(3, 2, bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(wg.T))
    tg = rl.TorchPolicy(lin, "gaussian", n_actions=2, log_std=[-0.5, 0.2])
    gp = rl.GaussianPolicy(3, 2, w=wg, log_std=[-0.5, 0.2])
    ag = gp.sample(phi, 2)
    st, sg = tg.score(phi, ag), gp.score(phi, ag)
    np.testing.assert_allclose(st["weight"], np.swapaxes(sg["w"], -1, -2), atol=1e-12)
    np.testing.assert_allclose(st["log_std"], sg["log_std"], atol=1e-12)
    assert set(tg.params) == {"weight", "log_std"}


def test_torch_policy_one_step_bandit_exact_gradient():
    """The gradient of a torch network's expected reward, against the exact
    gradient by enumerating the actions (autograd of sum_a p_a r_a)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(),
                              torch.nn.Linear(8, 3)).double()
    rewards = np.array([0.3, 1.0, -0.5])
    states = np.array([[0.5, 1.0], [-1.0, 1.0]])
    exact_loss = (torch.softmax(net(torch.as_tensor(states)), -1)
                  @ torch.as_tensor(rewards)).mean()
    exact = torch.autograd.grad(exact_loss, list(net.parameters()))
    pol = rl.TorchPolicy(net, "categorical")
    E = 20_000
    gen = np.random.default_rng(4)
    phi = states[gen.integers(0, 2, E)][:, None, :]
    a = pol.sample(phi, gen)
    est = rl.policy_gradient(pol.score(phi, a), rewards[a], baseline="loo")
    for (name, _), g in zip(net.named_parameters(), exact):
        z = (est.grad[name] - g.numpy()) / est.stderr[name]
        assert np.abs(z).max() < 5, (name, z)


def test_torch_gaussian_policy_trains_like_gaussian_policy():
    """A zero-initialised bias-free float64 linear module is GaussianPolicy:
    reinforce (episode_grads, mcscore's Adam, the same draws) follows the
    same learning curve on Reach1D, to rounding."""
    torch = pytest.importorskip("torch")
    net = torch.nn.Linear(2, 1, bias=False).double()
    torch.nn.init.zeros_(net.weight)
    env = rl.Reach1D()
    kw = dict(iterations=30, episodes=20, lr=0.1, rng=0, progress=False)
    run = rl.reinforce(env, rl.TorchPolicy(net, "gaussian"), **kw)
    ref = rl.reinforce(env, rl.GaussianPolicy(2, 1), **kw)
    np.testing.assert_allclose(run.returns, ref.returns, rtol=1e-9)
    np.testing.assert_allclose(net.weight.detach().numpy().T, ref.policy.params["w"], rtol=1e-9)
    np.testing.assert_allclose(run.policy.params["log_std"], ref.policy.params["log_std"],
                               rtol=1e-9)
    assert run.returns[-5:].mean() > run.returns[:3].mean() + 5


# ---------------------------------------------------------------------------
# the rollout fix
# ---------------------------------------------------------------------------

class RecordingPolicy(LogisticPolicy):
    """Records the actions it samples."""

    def __init__(self, w, log):
        super().__init__(w)
        self.log = log

    def sample(self, phi, rng):
        a = super().sample(phi, rng)
        self.log.append(a.copy())
        return a


def test_rollout_stores_custom_discrete_actions_as_sampled():
    """Before the fix a policy other than SoftmaxPolicy got an (E, T,
    n_actions) float buffer: with E == n_actions each step's E actions were
    broadcast across the last axis (every row the same vector), silently."""
    log = []
    E = RecordingPolicy.n_actions  # E == n_actions: the silent case
    env = rl.CartPole(max_steps=30)
    tr = rl.rollout(env, RecordingPolicy(np.array([0.0, 0.0, 1.0, 0.5, 0.0]), log), E, rng=3)
    sampled = np.stack(log, axis=1)  # (E, steps)
    assert tr.actions.shape == (E, env.max_steps)
    assert tr.actions.dtype.kind == "i"
    np.testing.assert_array_equal(tr.actions[:, :sampled.shape[1]], sampled)
    # the stored actions score like the sampled ones
    pol = LogisticPolicy(np.zeros(5))
    sc = pol.score(tr.features, tr.actions)["w"]
    assert sc.shape == (E, env.max_steps, 5)


def test_rollout_continuous_actions_keep_their_shape():
    tr = rl.rollout(rl.Reach1D(max_steps=4), rl.GaussianPolicy(2, 1), 3, rng=0)
    assert tr.actions.shape == (3, 4, 1) and tr.actions.dtype == np.float64


# ---------------------------------------------------------------------------
# baselines and advantages
# ---------------------------------------------------------------------------

class ContextBandit:
    """T independent pulls; each step's context s is drawn by step() from the
    rng it is given (a seeded stochastic environment); reward R[s, a]: a
    large part 2 s that depends on the context only, and the actions' part."""

    S = np.array([-1.0, 0.5, 1.0])
    R = 2 * S[:, None] + np.array([[1.0, 0.0, 0.2], [0.0, 0.5, 0.3], [-0.5, 0.2, 1.5]])
    n_features = 2
    n_actions = 3

    def __init__(self, T=4):
        self.max_steps = T

    def reset(self, n, rng=None):
        return np.random.default_rng(rng).integers(0, 3, size=(n, 1)).astype(float)

    def features(self, states):
        return np.concatenate([self.S[states.astype(int)], np.ones_like(states)], axis=1)

    def step(self, states, actions, rng):
        r = self.R[states[:, 0].astype(int), actions]
        return rng.integers(0, 3, size=(len(states), 1)).astype(float), r, \
            np.zeros(len(states), dtype=bool)

    def exact_gradient(self, theta):
        """d/dtheta E[sum_t r_t] = T * mean_s phi(s) (x) p_s (R_s - p_s . R_s)."""
        g = np.zeros_like(theta)
        for s in range(3):
            phi = np.array([self.S[s], 1.0])
            p = special.softmax(phi @ theta)
            g += np.outer(phi, p * (self.R[s] - p @ self.R[s])) / 3
        return self.max_steps * g


@pytest.fixture(scope="module")
def bandit_batch():
    env = ContextBandit()
    theta = np.array([[0.3, -0.2, 0.5], [0.1, 0.0, -0.3]])
    pol = rl.SoftmaxPolicy(2, 3, theta)
    tr = rl.rollout(env, pol, 20_000, rng=7)
    G = rl.returns_to_go(tr.rewards, 1.0, tr.mask)
    return env, pol, tr, G, env.exact_gradient(theta)


@pytest.mark.parametrize("baseline", ["loo", "value", "array-T", "array-ET", None])
def test_baselines_unbiased_on_context_bandit(bandit_batch, baseline):
    env, pol, tr, G, exact = bandit_batch
    sc = pol.score(tr.features, tr.actions)
    if baseline == "array-T":
        b = np.array([2.0, 1.5, 1.0, 0.5])
    elif baseline == "array-ET":
        b = np.broadcast_to(np.array([2.0, 1.5, 1.0, 0.5]), G.shape) + 0.1
    else:
        b = baseline
    est = rl.policy_gradient(sc, G, mask=tr.mask, baseline=b, features=tr.features)
    z = (est.grad["theta"] - exact) / est.stderr["theta"]
    assert np.abs(z).max() < 5, z


def test_value_baseline_reduces_variance_against_loo(bandit_batch):
    """The reward depends on the context, which the per-state value function
    sees and the per-step leave-one-out mean does not."""
    env, pol, tr, G, _ = bandit_batch
    sc = pol.score(tr.features, tr.actions)
    loo = rl.policy_gradient(sc, G, mask=tr.mask, baseline="loo")
    val = rl.policy_gradient(sc, G, mask=tr.mask, baseline="value", features=tr.features)
    assert val.variance["theta"].sum() < 0.9 * loo.variance["theta"].sum()


def test_value_baseline_with_history_reduces_cartpole_variance():
    """Cart-pole, the uniform policy, batches of 16 episodes: the per-state
    value baseline fed the earlier batches (as reinforce runs it) has a
    smaller gradient variance than "loo" (measured, averaged over 40
    batches after 10 to warm the history; README: about 0.66 of it)."""
    env = rl.CartPole()
    pol = rl.SoftmaxPolicy(5, 2)
    gen = np.random.default_rng(9)
    hist = rl.LinearValue(0.8)
    v = {"loo": [], "value": []}
    for rep in range(50):
        tr = rl.rollout(env, pol, 16, rng=gen)
        G = rl.returns_to_go(tr.rewards, 1.0, tr.mask)
        sc = pol.score(tr.features, tr.actions)
        b = rl.value_baseline(tr.features, G, tr.mask, history=hist)
        if rep >= 10:
            v["loo"].append(rl.policy_gradient(sc, G, mask=tr.mask).variance["theta"].sum())
            v["value"].append(rl.policy_gradient(sc, G, mask=tr.mask,
                                                 baseline=b).variance["theta"].sum())
    assert np.mean(v["value"]) < 0.85 * np.mean(v["loo"])


def test_value_baseline_leaves_the_episode_out():
    rng = np.random.default_rng(0)
    E, T, F = 12, 5, 3
    phi = rng.normal(size=(E, T, F))
    G = rng.normal(size=(E, T))
    mask = np.ones((E, T), dtype=bool)
    mask[3, 2:] = False
    b = rl.value_baseline(phi, G, mask)
    G2 = G.copy()
    G2[0] += 10.0
    b2 = rl.value_baseline(phi, G2, mask)
    np.testing.assert_allclose(b2[0], b[0], rtol=1e-10)  # its own returns do not enter
    assert not np.allclose(b2[1], b[1])
    assert (b[3, 2:] == 0).all()
    # the fit on the other episodes, by lstsq, for episode 5
    X = np.concatenate([phi, phi**2, np.broadcast_to(np.stack(
        [np.ones(T), 1 - np.arange(T) / T, (1 - np.arange(T) / T) ** 2,
         (1 - np.arange(T) / T) ** 3], 1), (E, T, 4))], axis=2)
    keep = mask.copy()
    keep[5] = False
    w = np.linalg.lstsq(X[keep], G[keep], rcond=None)[0]
    np.testing.assert_allclose(b[5], X[5] @ w, rtol=1e-6, atol=1e-8)


def test_gae():
    rng = np.random.default_rng(1)
    E, T, g = 3, 6, 0.9
    r, v = rng.normal(size=(E, T)), rng.normal(size=(E, T))
    mask = np.arange(T)[None, :] < np.array([6, 4, 1])[:, None]
    G = rl.returns_to_go(r, g, mask)
    # lambda = 1: returns-to-go minus the value
    np.testing.assert_allclose(rl.gae(r, v, mask, gamma=g, lam=1.0), np.where(mask, G - v, 0),
                               atol=1e-12)
    # lambda = 0: the one-step TD errors
    vm = np.where(mask, v, 0.0)
    nxt = np.concatenate([vm[:, 1:], np.zeros((E, 1))], 1)
    np.testing.assert_allclose(rl.gae(r, v, mask, gamma=g, lam=0.0),
                               np.where(mask, r + g * nxt - vm, 0), atol=1e-12)
    # by definition for lambda = 0.7
    lam = 0.7
    d = np.where(mask, r + g * nxt - vm, 0)
    ref = np.array([[sum((g * lam) ** (k - t) * d[e, k] for k in range(t, T))
                     for t in range(T)] for e in range(E)])
    np.testing.assert_allclose(rl.gae(r, v, mask, gamma=g, lam=lam), ref, atol=1e-12)


def test_reinforce_with_value_gae_entropy_runs_and_learns():
    env = ContextBandit()
    pol = rl.SoftmaxPolicy(2, 3)
    for kw in ({"baseline": "value"}, {"gae_lambda": 0.9}, {"entropy_coef": 0.01}):
        run = rl.reinforce(env, pol, iterations=60, episodes=32, lr=0.1, rng=0, progress=False,
                           **kw)
        # the best policy earns T * mean_s max_a R = 4 * (-1 + 1.5 + 3.5) / 3 = 16 / 3,
        # the uniform one 4 * mean R = 2.76
        assert run.returns[:5].mean() < 3.5 and run.returns[-10:].mean() > 16 / 3 - 0.6, kw


# ---------------------------------------------------------------------------
# the entropy bonus
# ---------------------------------------------------------------------------

def test_entropy_gradients_by_finite_differences():
    rng = np.random.default_rng(2)
    theta = rng.normal(size=(2, 3))
    phi = rng.normal(size=(4, 2))
    H, dH = rl.SoftmaxPolicy(2, 3, theta).entropy(phi)
    h = 1e-6
    for i in np.ndindex(theta.shape):
        tp, tm = theta.copy(), theta.copy()
        tp[i] += h
        tm[i] -= h
        fd = (rl.SoftmaxPolicy(2, 3, tp).entropy(phi)[0]
              - rl.SoftmaxPolicy(2, 3, tm).entropy(phi)[0]) / (2 * h)
        np.testing.assert_allclose(dH["theta"][(slice(None),) + i], fd, rtol=1e-6, atol=1e-9)
    p = special.softmax(phi @ theta, axis=-1)
    np.testing.assert_allclose(H, -(p * np.log(p)).sum(-1), rtol=1e-12)
    Hg, dHg = rl.GaussianPolicy(2, 2, log_std=[0.1, -0.4]).entropy(phi)
    np.testing.assert_allclose(Hg, 0.1 - 0.4 + np.log(2 * np.pi * np.e), rtol=1e-12)
    assert (dHg["log_std"] == 1).all() and (dHg["w"] == 0).all()


def test_entropy_bonus_adds_its_exact_gradient(bandit_batch):
    env, pol, tr, G, exact = bandit_batch
    sc = pol.score(tr.features, tr.actions)
    _, dH = pol.entropy(tr.features)
    plain = rl.policy_gradient(sc, G, mask=tr.mask, baseline="loo")
    bon = rl.policy_gradient(sc, G, mask=tr.mask, baseline="loo",
                             bonus={"theta": 0.5 * dH["theta"]})
    np.testing.assert_allclose(bon.grad["theta"] - plain.grad["theta"],
                               0.5 * dH["theta"].sum(1).mean(0), atol=1e-12)


def test_entropy_bonus_needs_entropy():
    with pytest.raises(TypeError, match="entropy_coef > 0 needs policy.entropy"):
        rl.reinforce(rl.CartPole(max_steps=5), LogisticPolicy(np.zeros(5)), iterations=1,
                     episodes=2, entropy_coef=0.1, progress=False)


# ---------------------------------------------------------------------------
# seeded stochastic environments
# ---------------------------------------------------------------------------

def test_stochastic_cartpole_is_seeded():
    pol = rl.SoftmaxPolicy(5, 2)
    env = rl.CartPole(force_noise=0.3)
    a = rl.rollout(env, pol, 50, rng=1)
    b = rl.rollout(env, pol, 50, rng=1)
    c = rl.rollout(env, pol, 50, rng=2)
    np.testing.assert_array_equal(a.features, b.features)
    assert not np.array_equal(a.features, c.features)
    # the noise enters: same actions, other forces than the deterministic task
    d = rl.rollout(rl.CartPole(), pol, 50, rng=1)
    assert not np.array_equal(a.features[:, 2], d.features[:, 2])
    np.testing.assert_array_equal(a.features[:, 0], d.features[:, 0])
    assert "rng" in inspect.signature(rl.Reach1D.step).parameters
    r1 = rl.rollout(rl.Reach1D(noise=0.5), rl.GaussianPolicy(2), 10, rng=3)
    r2 = rl.rollout(rl.Reach1D(noise=0.5), rl.GaussianPolicy(2), 10, rng=3)
    np.testing.assert_array_equal(r1.rewards, r2.rewards)


class OldStyleEnv:
    """An environment written before step received the rng."""

    max_steps, n_features = 3, 2

    def reset(self, n, rng=None):
        return np.zeros((n, 1))

    features = staticmethod(lambda s: np.concatenate([s, np.ones_like(s)], axis=1))

    def step(self, states, actions):
        return states + 1, np.asarray(actions, dtype=float), np.zeros(len(states), dtype=bool)


def test_old_style_environment_still_works():
    tr = rl.rollout(OldStyleEnv(), rl.SoftmaxPolicy(2, 2), 4, rng=0)
    np.testing.assert_array_equal(tr.rewards, tr.actions)
    assert tr.mask.all()


# ---------------------------------------------------------------------------
# the Gymnasium-style adapter
# ---------------------------------------------------------------------------

class Corridor:
    """A Gymnasium-style environment: walk right from 0 to 4 (action 1 right,
    0 left; with probability 0.1 the step slips the other way, from the
    environment's own seeded generator); reward -1 per step; terminated at
    4, truncated after 12 steps."""

    class spec:
        max_episode_steps = 12

    def reset(self, seed=None, options=None):
        self.rng = np.random.default_rng(seed)
        self.pos, self.t = 0, 0
        return np.array([0.0]), {}

    def step(self, action):
        move = 1 if action == 1 else -1
        if self.rng.uniform() < 0.1:
            move = -move
        self.pos = max(0, self.pos + move)
        self.t += 1
        terminated = self.pos == 4
        truncated = self.t >= 12 and not terminated
        return np.array([float(self.pos)]), -1.0, terminated, truncated, {}


def test_gym_adapter_rollout():
    env = rl.GymEnv(Corridor)
    assert env.max_steps == 12 and env.n_features == 2
    right = rl.SoftmaxPolicy(2, 2, np.array([[0.0, 0.0], [-20.0, 20.0]]))
    tr = rl.rollout(env, right, 40, rng=0)
    # always right: 4 steps unless a slip (a slip costs 1 or 2 more steps)
    assert tr.lengths.min() == 4 and (tr.lengths == 4).mean() > 0.5
    np.testing.assert_array_equal(tr.total_returns, -tr.lengths)
    last = tr.features[np.arange(40), tr.lengths - 1, 0]
    assert ((last == 3) | (tr.lengths == 12)).all()  # the last step starts next to the goal
    tr2 = rl.rollout(env, right, 40, rng=0)  # reproducible from the seed
    np.testing.assert_array_equal(tr.lengths, tr2.lengths)
    left = rl.SoftmaxPolicy(2, 2, np.array([[0.0, 0.0], [20.0, -20.0]]))
    assert (rl.rollout(env, left, 10, rng=0).lengths == 12).all()  # truncated


def test_gym_adapter_learns():
    env = rl.GymEnv(Corridor)
    run = rl.reinforce(env, rl.SoftmaxPolicy(2, 2), iterations=40, episodes=16, lr=0.2, rng=0,
                       progress=False)
    assert run.returns[0] < -9 and run.returns[-5:].mean() > -6


def test_gym_adapter_with_gymnasium():
    gym = pytest.importorskip("gymnasium")
    env = rl.GymEnv("CartPole-v1", max_steps=50)
    tr = rl.rollout(env, rl.SoftmaxPolicy(env.n_features, 2), 8, rng=0)
    assert tr.mask[:, 0].all() and (tr.total_returns == tr.lengths).all()
    assert gym is not None


def test_gym_adapter_errors():
    with pytest.raises(TypeError, match="make must be a callable"):
        rl.GymEnv(3)

    class NoSpec(Corridor):
        spec = None

    with pytest.raises(ValueError, match="max_steps is needed"):
        rl.GymEnv(NoSpec)
    assert rl.GymEnv(NoSpec, max_steps=5).max_steps == 5


# ---------------------------------------------------------------------------
# protocol errors
# ---------------------------------------------------------------------------

def test_policy_protocol_errors():
    class NoScore:
        params = {}

        def sample(self, phi, rng):
            return np.zeros(len(phi), dtype=int)

    with pytest.raises(TypeError, match="policy must provide the policy protocol"):
        rl.reinforce(rl.CartPole(), NoScore(), iterations=1, episodes=2, progress=False)
    with pytest.raises(TypeError, match="policy must provide"):
        rl.rollout(rl.CartPole(), rl.SoftmaxPolicy, 2)

    class BadSample(LogisticPolicy):
        def sample(self, phi, rng):
            return np.zeros(3, dtype=int)

    with pytest.raises(ValueError, match="one action per episode"):
        rl.rollout(rl.CartPole(), BadSample(np.zeros(5)), 5, rng=0)
    with pytest.raises(ValueError, match="needs the step features"):
        rl.policy_gradient({"p": np.ones((2, 3))}, np.ones((2, 3)), baseline="value")
    with pytest.raises(ValueError, match=r"array baseline must have shape \(2, 3\) or \(3,\)"):
        rl.policy_gradient({"p": np.ones((2, 3))}, np.ones((2, 3)), baseline=np.ones(4))


@pytest.mark.parametrize("kw, exc, match", [
    ({"entropy_coef": -0.1}, ValueError, "entropy_coef must be"),
    ({"gae_lambda": 1.5}, ValueError, "gae_lambda must be"),
    ({"baseline": np.ones(3)}, ValueError, "baseline"),
    ({"lr": lambda t: float("nan")}, ValueError, "lr schedule returned nan at step 1"),
])
def test_reinforce_argument_errors(kw, exc, match):
    with pytest.raises(exc, match=match):
        rl.reinforce(rl.CartPole(max_steps=5), rl.SoftmaxPolicy(5, 2), iterations=2, episodes=2,
                     rng=0, progress=False, **kw)


def test_reinforce_lr_schedule():
    kw = dict(iterations=5, episodes=4, rng=0, progress=False)
    a = rl.reinforce(rl.CartPole(max_steps=20), rl.SoftmaxPolicy(5, 2), lr=0.1, **kw)
    b = rl.reinforce(rl.CartPole(max_steps=20), rl.SoftmaxPolicy(5, 2), lr=lambda t: 0.1, **kw)
    np.testing.assert_array_equal(a.policy.params["theta"], b.policy.params["theta"])


def test_torch_policy_without_torch(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match="TorchPolicy needs PyTorch"):
        rl.TorchPolicy(object())


# ---------------------------------------------------------------------------
# the example
# ---------------------------------------------------------------------------

def test_cartpole_torch_example_quick(capsys):
    import importlib.util
    import os

    torch = pytest.importorskip("torch")
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "examples", "cartpole_torch.py")
    spec = importlib.util.spec_from_file_location("example_cartpole_torch", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    threads = torch.get_num_threads()
    try:
        out = mod.main(["--quick"])
    finally:
        torch.set_num_threads(threads)
    assert out["returns"][-3:].mean() > out["returns"][:3].mean()
    assert "trained network on 100 fresh episodes" in capsys.readouterr().out


def test_policy_gradient_covariance(bandit_batch):
    """The estimate's covariance is the per-episode sample covariance: its
    diagonal is stderr^2, with every baseline and through episode_grads."""
    env, pol, tr, G, _ = bandit_batch
    sc = pol.score(tr.features, tr.actions)
    for b in ("loo", "value", None):
        est = rl.policy_gradient(sc, G, mask=tr.mask, baseline=b, features=tr.features)
        np.testing.assert_allclose(np.diag(est.cov), est.stderr["theta"].ravel() ** 2,
                                   rtol=1e-10)
