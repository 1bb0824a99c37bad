"""The training loops' per-step work (issue 17, target 1): vi.fit prepares
its score step once and rl.reinforce samples and scores every episode at
once in NumPy.  The faster paths must give the numbers of the general ones
bit for bit (same iterates, same returns) and keep every guard a step can
fail."""
import math

import numpy as np
import pytest

import mcscore as mc
from mcscore import rl, vi
from mcscore.distributions import Categorical, Distribution

D = 3
MU = np.array([0.5, -0.3, 1.2])
SIG = np.array([0.7, 1.1, 0.9])


def log_joint(x):
    return -0.5 * (((x - MU) / SIG) ** 2).sum(axis=1)


def log_joint_pos(x):
    return (np.log(x) - 1.5 * x).sum(1)


def log_joint_unit(x):
    return (1.5 * np.log(x) + 0.5 * np.log1p(-x)).sum(1)


def log_joint_bits(x):
    return (x * np.array([1.0, -0.5, 0.3])).sum(1).astype(float)


FITS = {
    "normal": (log_joint, lambda: mc.Normal(np.zeros(D), np.ones(D)), {}),
    "normal optimal baseline": (log_joint, lambda: mc.Normal(np.zeros(D), np.ones(D)),
                                {"baseline": "optimal"}),
    "normal no baseline, schedule": (log_joint, lambda: mc.Normal(np.zeros(D), 1.0),
                                     {"baseline": None, "lr": vi.cosine(0.1, 80)}),
    "lognormal": (log_joint_pos, lambda: mc.LogNormal(np.zeros(D), np.ones(D)), {}),
    "gamma": (log_joint_pos, lambda: mc.Gamma(np.full(D, 2.0), np.ones(D)), {}),
    "beta": (log_joint_unit, lambda: mc.Beta(np.full(D, 2.0), np.full(D, 2.0)), {}),
    "bernoulli": (log_joint_bits, lambda: mc.Bernoulli(probs=np.full(D, 0.5)), {}),
    "dirichlet": (lambda x: (np.log(x) * np.array([1.0, 2.0, 3.0])).sum(-1),
                  lambda: mc.Dirichlet(np.ones(3)), {}),
}


def _unprepared(monkeypatch):
    """Make fit take the general path at every step."""
    monkeypatch.setattr(vi._ScoreStep, "for_fit", classmethod(lambda cls, *a: None))


def _same_fit(a, b):
    assert np.array_equal(a.elbo, b.elbo) and np.array_equal(a.elbo_stderr, b.elbo_stderr)
    for q, r in ((a.q, b.q), (a.q_last, b.q_last)):
        assert q.params.keys() == r.params.keys()
        for k in q.params:
            assert np.array_equal(q.params[k], r.params[k]), k


@pytest.mark.parametrize("case", list(FITS))
def test_prepared_fit_is_the_general_path_bit_for_bit(case, monkeypatch):
    lj, make_q, kw = FITS[case]
    fast = vi.fit(lj, make_q(), steps=80, n=40, rng=7, **kw)
    _unprepared(monkeypatch)
    slow = vi.fit(lj, make_q(), steps=80, n=40, rng=7, **kw)
    _same_fit(fast, slow)


def test_prepared_fit_builds_the_kernel_once(monkeypatch):
    """Later steps renew the first q's kernel (new parameters, the same
    structure) instead of building one from scratch."""
    calls = []
    build = Distribution._build_kernel

    def counting(self):
        calls.append(type(self).__name__)
        return build(self)

    monkeypatch.setattr(Distribution, "_build_kernel", counting)
    vi.fit(log_joint, mc.Normal(np.zeros(D), np.ones(D)), steps=60, n=20, rng=1)
    assert calls == ["Normal"]


class _LaterBad:
    """log_joint that turns bad from its k-th call on."""

    def __init__(self, k, bad):
        self.k, self.bad, self.calls = k, bad, 0

    def __call__(self, x):
        self.calls += 1
        return self.bad(x) if self.calls >= self.k else log_joint(x)


@pytest.mark.parametrize("bad, err, match", [
    (lambda x: np.where(x[:, 0] > 0.5, np.nan, 0.0), ValueError, "log_joint returned nan"),
    (lambda x: np.where(x[:, 0] > 0.5, np.inf, 0.0), ValueError, "log_joint returned inf"),
    (lambda x: x, ValueError, "it must be vectorised"),
    (lambda x: np.where(x[:, 0] > 0.5, 1e308, -1e308), FloatingPointError, "overflowed"),
])
def test_prepared_fit_keeps_the_guards_of_later_steps(bad, err, match):
    lj = _LaterBad(30, bad)
    with pytest.raises(err, match=match):
        vi.fit(lj, mc.Normal(np.zeros(D), np.ones(D)), steps=60, n=20, rng=1)
    assert lj.calls == 30  # raised at the step that went bad


def test_prepared_fit_reports_a_later_step_too_large():
    with pytest.raises(ValueError, match="Adam step 20 .* was too large"):
        vi.fit(log_joint, mc.Normal(np.zeros(D), np.ones(D)), steps=60, n=20, rng=1,
               lr=lambda t: 0.05 if t < 20 else 1e4)


def test_adam_flat_update_is_the_per_array_update():
    """Adam updates every array in one flat vector: the same numbers as
    Kingma & Ba's update array by array."""
    rng = np.random.default_rng(3)
    params = {"a": rng.normal(size=(2, 3)), "b": np.array(0.5), "c": rng.normal(size=4)}
    opt = vi.Adam(params, lr=0.1, betas=(0.8, 0.99), eps=1e-6)
    ref = {k: np.array(v, dtype=float) for k, v in params.items()}
    m1 = {k: np.zeros_like(v) for k, v in ref.items()}
    m2 = {k: np.zeros_like(v) for k, v in ref.items()}
    for t in range(1, 30):
        g = {k: rng.normal(size=np.shape(v)) * 10.0 ** rng.integers(-3, 3) for k, v in ref.items()}
        lr = 0.1 / t
        out = opt.step(g, lr)
        for k in ref:
            m1[k] = 0.8 * m1[k] + (1 - 0.8) * g[k]
            m2[k] = 0.99 * m2[k] + (1 - 0.99) * g[k] * g[k]
            mh, vh = m1[k] / (1 - 0.8**t), m2[k] / (1 - 0.99**t)
            ref[k] = ref[k] + lr * mh / (np.sqrt(vh) + 1e-6)
            assert out[k].shape == ref[k].shape and np.array_equal(out[k], ref[k])
            assert np.array_equal(opt.m1[k], m1[k]) and np.array_equal(opt.m2[k], m2[k])
    with pytest.raises(ValueError, match=r"grads\['a'\]"):
        opt.step({"a": np.full((2, 3), np.nan), "b": 0.0, "c": np.zeros(4)})


# ---------------------------------------------------------------------------
# reinforce
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("batch, n_actions", [((20,), 2), ((3, 7), 2), ((1,), 3), ((9,), 5),
                                              ((), 2), ((0,), 2)])
def test_softmax_policy_draws_the_core_categorical_draws(batch, n_actions):
    rng = np.random.default_rng(len(batch) * 10 + n_actions)
    for scale in (0.1, 1.0, 30.0):
        theta = rng.normal(size=(4, n_actions)) * scale
        pol = rl.SoftmaxPolicy(4, n_actions, theta)
        phi = rng.normal(size=batch + (4,))
        g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
        for _ in range(4):
            core = Categorical(logits=phi @ theta).sample(1, g1)[0]
            mine = pol.sample(phi, g2)
            assert mine.dtype == core.dtype and mine.shape == core.shape
            assert np.array_equal(mine, core)
        assert g1.random() == g2.random()  # the generator advanced alike


@pytest.mark.parametrize("n_actions", [2, 3])
def test_softmax_policy_scores_are_the_core_categorical_scores(n_actions):
    rng = np.random.default_rng(n_actions)
    theta = rng.normal(size=(5, n_actions)) * 3
    pol = rl.SoftmaxPolicy(5, n_actions, theta)
    phi = rng.normal(size=(6, 11, 5))
    acts = rng.integers(0, n_actions, size=(6, 11))
    core = Categorical(logits=phi @ theta).score(acts[None])["logits"][0]
    assert np.array_equal(pol.score(phi, acts)["theta"],
                          phi[..., :, None] * core[..., None, :])


def test_softmax_policy_rejects_non_finite_logits():
    pol = rl.SoftmaxPolicy(2, 2, np.array([[1e308, 0.0], [1e308, 0.0]]))
    with pytest.raises(ValueError, match="logits"):
        pol.sample(np.ones((3, 2)), 0)


def _returns_recursion(r, gamma, mask):
    r = np.where(mask, r, 0.0) if mask is not None else np.asarray(r, dtype=float)
    out, acc = np.empty_like(r), np.zeros(r.shape[:-1])
    for t in range(r.shape[-1] - 1, -1, -1):
        acc = r[..., t] + gamma * acc
        out[..., t] = acc
    return out


@pytest.mark.parametrize("gamma", [1.0, 0.97, 0.0])
def test_returns_to_go_is_the_backward_recursion(gamma):
    rng = np.random.default_rng(11)
    for shape in ((20, 200), (7,), (2, 3, 40)):
        r = rng.normal(size=shape) * 1e3
        r[..., shape[-1] // 3:] = -0.0  # padding after the episodes (signed zeros too)
        for mask in (None, rng.random(shape) < 0.8):
            got, ref = rl.returns_to_go(r, gamma, mask), _returns_recursion(r, gamma, mask)
            assert got.tobytes() == ref.tobytes()


def _cartpole_reference(env, states, actions):
    """The classic cart-pole Euler step, written out column by column."""
    x, xd, th, thd = states.T
    f = np.where(actions == 1, env.force, -env.force)
    total, pml = env.m_cart + env.m_pole, env.m_pole * env.half_len
    c, s = np.cos(th), np.sin(th)
    temp = (f + pml * thd * thd * s) / total
    thacc = (env.gravity * s - c * temp) / (
        env.half_len * (4.0 / 3.0 - env.m_pole * c * c / total))
    xacc = temp - pml * thacc * c / total
    new = np.stack([x + env.tau * xd, xd + env.tau * xacc, th + env.tau * thd,
                    thd + env.tau * thacc], axis=1)
    return new, (np.abs(new[:, 0]) > env.x_limit) | (np.abs(new[:, 2]) > env.theta_limit)


def test_cartpole_step_is_the_classic_step():
    env = rl.CartPole()
    rng = np.random.default_rng(2)
    states = rng.normal(size=(50, 4)) * np.array([1.5, 1.0, 0.2, 1.0])
    actions = rng.integers(0, 2, size=50)
    new, r, done = env.step(states, actions)
    ref_new, ref_done = _cartpole_reference(env, states, actions)
    assert np.array_equal(new, ref_new) and np.array_equal(done, ref_done)
    assert done.any() and not done.all() and np.array_equal(r, np.ones(50))


def test_reinforce_builds_no_distribution_kernel_per_step(monkeypatch):
    """SoftmaxPolicy draws and scores by NumPy on every episode at once: no
    Categorical kernel (alias tables, score table) is built per step."""
    calls = []
    build = Categorical._build_kernel
    monkeypatch.setattr(Categorical, "_build_kernel",
                        lambda self: calls.append(1) or build(self))
    res = rl.reinforce(rl.CartPole(), rl.SoftmaxPolicy(5, 2), iterations=3, episodes=10,
                       rng=0)
    assert calls == [] and res.returns.shape == (3,)


def test_reinforce_still_refuses_nan_rewards():
    class NaNLater(rl.CartPole):
        calls = 0

        def step(self, states, actions, rng=None):
            new, r, done = super().step(states, actions, rng)
            self.calls += 1
            if self.calls >= 12:
                r = r.copy()
                r[0] = np.nan
            return new, r, done

    with pytest.raises(ValueError, match="rewards must be finite"):
        rl.reinforce(NaNLater(max_steps=20), rl.SoftmaxPolicy(5, 2), iterations=5,
                     episodes=4, rng=0)


def test_reinforce_learns_cartpole_with_the_fast_paths():
    """The learning curve still rises (the same algorithm): mean return of
    the last 5 iterations above the first 5 by more than 5 standard errors."""
    res = rl.reinforce(rl.CartPole(), rl.SoftmaxPolicy(5, 2), iterations=40, episodes=20,
                       lr=0.05, rng=0)
    first, last = res.returns[:5], res.returns[-5:]
    se = math.sqrt((res.returns_stderr[:5] ** 2).sum() / 25
                   + (res.returns_stderr[-5:] ** 2).sum() / 25)
    assert last.mean() - first.mean() > 5 * se


def test_gaussian_policy_draws_the_core_normal_draws():
    rng = np.random.default_rng(4)
    for batch, n_actions in (((20,), 1), ((3, 5), 2), ((0,), 1)):
        pol = rl.GaussianPolicy(3, n_actions, w=rng.normal(size=(3, n_actions)) * 5,
                                log_std=rng.normal(size=n_actions))
        phi = rng.normal(size=batch + (3,))
        g1, g2 = np.random.default_rng(9), np.random.default_rng(9)
        for _ in range(4):
            core = pol.distribution(phi).sample(1, g1)[0]
            assert np.array_equal(pol.sample(phi, g2), core)
        assert g1.random() == g2.random()


def test_cartpole_step_of_float32_states_is_the_classic_step():
    env = rl.CartPole()
    states = np.random.default_rng(6).normal(size=(30, 4)).astype(np.float32)
    actions = np.arange(30) % 2
    new, _, done = env.step(states, actions)
    ref_new, ref_done = _cartpole_reference(env, states, actions)
    assert new.dtype == ref_new.dtype and np.array_equal(new, ref_new)
    assert np.array_equal(done, ref_done)


def test_softmax_policy_of_float32_features_and_weights_is_the_core_categorical():
    rng = np.random.default_rng(8)
    theta = rng.normal(size=(4, 2)).astype(np.float32)
    pol = rl.SoftmaxPolicy(4, 2, theta)
    phi = rng.normal(size=(25, 4)).astype(np.float32)
    g1, g2 = np.random.default_rng(1), np.random.default_rng(1)
    z = phi @ pol.params["theta"]
    assert np.array_equal(pol.sample(phi, g2), Categorical(logits=z).sample(1, g1)[0])
    acts = rng.integers(0, 2, size=25)
    core = Categorical(logits=z).score(acts[None])["logits"][0]
    assert np.array_equal(pol.score(phi, acts)["theta"], phi[..., :, None] * core[..., None, :])


@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_torch_policy_draws_the_core_draws(kind):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = torch.nn.Linear(4, 3, dtype=torch.float64)
    pol = rl.TorchPolicy(module, kind, n_actions=3, log_std=[0.1, -0.5, 1.0])
    phi = np.random.default_rng(2).normal(size=(7, 4))
    g1, g2 = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(3):
        core = pol.distribution(phi).sample(1, g1)[0]
        mine = pol.sample(phi, g2)
        assert mine.dtype == core.dtype and np.array_equal(mine, core)
    assert g1.random() == g2.random()


# ---------------------------------------------------------------------------
# the fused two-action draw and the CartPole roll-out in place
# ---------------------------------------------------------------------------

class _Uniforms:
    """A stand-in Generator whose uniforms are given (random(n) and
    random(out=...) both hand out the next ones in order)."""

    def __init__(self, u):
        self.u, self.i = np.asarray(u, dtype=float), 0

    def random(self, size=None, out=None):
        n = len(out) if out is not None else size
        v = self.u[self.i:self.i + n]
        self.i += n
        if out is not None:
            out[...] = v
            return out
        return v.copy()


def _boundary_case():
    """Logits with ties, signed zeros, differences below an ulp and beyond
    exp's range, and for each row uniforms at the edges of its decision
    (0, 1/2, each probability and their neighbours, 1/2 + p1, 1 - 2^-53)."""
    rng = np.random.default_rng(12)
    d = np.concatenate([[0.0, -0.0, 1e-17, -1e-17, 5e-324, 800.0, -800.0, 1e300, -1e300],
                        rng.normal(size=60) * 10.0 ** rng.integers(-8, 3, size=60)])
    z0 = rng.normal(size=d.size) * 10.0 ** rng.integers(-3, 3, size=d.size)
    z = np.stack([z0, z0 + d], axis=1)
    z[1] = [0.0, -0.0]
    probs = rl._softmax_probs(z)
    rows, us = [], []
    for i, (p0, p1) in enumerate(probs):
        for u in (0.0, 0.5, np.nextafter(0.5, 0), 1 - 2.0 ** -53, p0, p1, 0.5 + p1, 0.5 + p0):
            for v in (u, np.nextafter(u, 0), np.nextafter(u, 1)):
                if 0.0 <= v < 1.0:
                    rows.append(i)
                    us.append(v)
    return z[rows], np.array(us)


def test_two_action_draw_is_the_alias_draw_bit_for_bit():
    z, u = _boundary_case()
    ref = rl._alias_draw(rl._softmax_probs(z), _Uniforms(u))
    got = rl._two_action_draw(z, _Uniforms(u))
    assert got.dtype == ref.dtype and np.array_equal(got, ref)
    assert 0 < ref.mean() < 1  # both actions drawn
    rng = np.random.default_rng(13)  # and at random logits and uniforms
    z = rng.normal(size=(100_000, 2)) * 10.0 ** rng.integers(-12, 3, size=(100_000, 1))
    g1, g2 = np.random.default_rng(4), np.random.default_rng(4)
    assert np.array_equal(rl._two_action_draw(z, g1), rl._alias_draw(rl._softmax_probs(z), g2))


def test_two_action_sample_keeps_the_general_checks():
    pol = rl.SoftmaxPolicy(2, 2, np.array([[1e308, 0.0], [1e308, 0.0]]))
    with pytest.raises(ValueError, match="logits"):
        pol.sample(np.ones((3, 2)), 0)
    with pytest.raises(ValueError, match="features"):
        pol.sample(np.ones((3, 3)), 0)


class _GeneralCartPole(rl.CartPole):
    """A CartPole subclass: rollout takes the general per-step path."""


def _same_trajectories(a, b):
    for k in ("features", "actions", "rewards", "mask", "lengths"):
        x, y = getattr(a, k), getattr(b, k)
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), k


@pytest.mark.parametrize("scale, E, kw", [(0.0, 20, {}), (0.3, 20, {}), (3.0, 7, {}),
                                          (30.0, 1, {}), (0.3, 33, {"force_noise": 0.4}),
                                          (1.0, 5, {"max_steps": 3}),
                                          (1.0, 4, {"max_steps": 1})])
def test_cartpole_rollout_in_place_is_the_general_rollout(scale, E, kw):
    """The same states (also after an episode ended), draws, actions,
    rewards and padding, bit for bit; the generator advanced alike."""
    theta = np.random.default_rng(E).normal(size=(5, 2)) * scale
    pol = rl.SoftmaxPolicy(5, 2, theta)
    g1, g2 = np.random.default_rng(E + 1), np.random.default_rng(E + 1)
    for _ in range(3):
        fast = rl.rollout(rl.CartPole(**kw), pol, E, g1)
        slow = rl.rollout(_GeneralCartPole(**kw), pol, E, g2)
        _same_trajectories(fast, slow)
    assert g1.random() == g2.random()


def test_cartpole_rollout_in_place_with_changed_constants():
    """Constants set on the instance (a zero force: -0.0 for action 0)."""
    for attrs in ({"force": 0.0}, {"force": -3.0, "gravity": 20.0, "tau": 0.05},
                  {"m_pole": 0.5, "half_len": 1.5, "x_limit": 0.1}):
        envs = [rl.CartPole(), _GeneralCartPole()]
        for env in envs:
            env.__dict__.update(attrs)
        pol = rl.SoftmaxPolicy(5, 2, np.random.default_rng(0).normal(size=(5, 2)))
        _same_trajectories(rl.rollout(envs[0], pol, 9, rng=3), rl.rollout(envs[1], pol, 9, rng=3))


def test_cartpole_rollout_in_place_raises_as_the_general_path():
    """Logits that overflow: the policy's error; logits whose sum overflows:
    the general softmax path's draws."""
    theta = np.zeros((5, 2))
    theta[[0, 4], 0] = 1.79e308
    pol = rl.SoftmaxPolicy(5, 2, theta)
    for env in (rl.CartPole(), _GeneralCartPole()):
        with pytest.raises(ValueError, match="logits"), np.errstate(over="ignore"):
            rl.rollout(env, pol, 20, rng=0)
    theta = np.zeros((5, 2))
    theta[4] = 1e308
    pol = rl.SoftmaxPolicy(5, 2, theta)
    with np.errstate(over="ignore"):
        _same_trajectories(rl.rollout(rl.CartPole(), pol, 8, rng=1),
                           rl.rollout(_GeneralCartPole(), pol, 8, rng=1))


def test_cartpole_rollout_uses_an_instance_step():
    env = rl.CartPole(max_steps=5)
    calls = []
    step = env.step
    env.step = lambda s, a, rng=None: calls.append(1) or step(s, a, rng)
    rl.rollout(env, rl.SoftmaxPolicy(5, 2), 3, rng=0)
    assert calls


@pytest.mark.parametrize("kw", [{}, {"baseline": None}, {"baseline": "value"},
                                {"gae_lambda": 0.9, "gamma": 0.99}, {"entropy_coef": 0.05},
                                {"lr": vi.cosine(0.1, 6)}])
def test_reinforce_on_cartpole_is_the_general_path_bit_for_bit(kw):
    runs = [rl.reinforce(env, rl.SoftmaxPolicy(5, 2), iterations=6, episodes=12, rng=5, **kw)
            for env in (rl.CartPole(force_noise=0.1), _GeneralCartPole(force_noise=0.1))]
    a, b = runs
    for k in ("returns", "returns_stderr", "grad_norm"):
        assert getattr(a, k).tobytes() == getattr(b, k).tobytes(), k
    assert a.policy.params["theta"].tobytes() == b.policy.params["theta"].tobytes()
