"""Roll-outs in place: CartPole's ``stepper`` and SoftmaxPolicy's ``sampler``
(the optional in-place parts of the environment and policy protocols) give
the numbers of ``step`` and ``sample`` bit for bit, and ``rollout`` with them
the trajectories of its per-step path."""
import pickle

import numpy as np
import pytest

from mcscore import rl


class PerStep(rl.CartPole):
    """A CartPole without the in-place stepper: rollout's per-step path."""
    stepper = None


class OwnSample(rl.SoftmaxPolicy):
    def sample(self, features, rng=None):
        return super().sample(features, rng)


class Duck:
    """A policy with the protocol and no sampler (int32 actions)."""

    def __init__(self, theta):
        self.params = {"theta": theta}

    def sample(self, phi, rng):
        z = phi @ self.params["theta"]
        return (rng.random(len(phi)) < 1 / (1 + np.exp(z[:, 0] - z[:, 1]))).astype(np.int32)

    def score(self, phi, a):
        raise NotImplementedError

    def with_params(self, params):
        return Duck(params["theta"])


def _same(a, b):
    for k in ("features", "actions", "rewards", "mask", "lengths"):
        x, y = getattr(a, k), getattr(b, k)
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), k


def _reference(env, states, actions, rng):
    """The classic cart-pole Euler step, written out column by column."""
    x, xd, th, thd = states.T
    f = np.where(np.asarray(actions) == 1, env.force, -env.force)
    if env.force_noise > 0:
        f = f * (1.0 + env.force_noise * rng.standard_normal(len(states)))
    total, pml = env.m_cart + env.m_pole, env.m_pole * env.half_len
    c, s = np.cos(th), np.sin(th)
    temp = (f + pml * thd * thd * s) / total
    thacc = (env.gravity * s - c * temp) / (
        env.half_len * (4.0 / 3.0 - env.m_pole * c * c / total))
    xacc = temp - pml * thacc * c / total
    new = np.stack([x + env.tau * xd, xd + env.tau * xacc, th + env.tau * thd,
                    thd + env.tau * thacc], axis=1)
    return new, (np.abs(new[:, 0]) > env.x_limit) | (np.abs(new[:, 2]) > env.theta_limit)


def _states(n, seed):
    return np.random.default_rng(seed).normal(size=(n, 4)) * np.array([1.5, 1.0, 0.2, 1.0])


@pytest.mark.parametrize("attrs", [{}, {"force_noise": 0.3}, {"force": 0.0}, {"force": -3.0},
                                   {"force": 1e308}, {"gravity": 20.0, "tau": 0.05}])
def test_stepper_is_step_bit_for_bit(attrs):
    env = rl.CartPole()
    env.__dict__.update(attrs)
    s = _states(40, 1)
    acts = np.random.default_rng(2).integers(0, 2, size=40)
    for a in (acts, acts == 1, acts.astype(float)):
        phi = env.features(s)
        out = phi.copy()
        g1, g2, g3 = (np.random.default_rng(3) for _ in range(3))
        with np.errstate(all="ignore"):
            r, done = env.stepper(s)(phi, a, out, g1)
            new, r2, done2 = env.step(s, a, g2)
            ref, done3 = _reference(env, s, a, g3)
        assert out[:, :4].tobytes() == new.tobytes() == ref.tobytes()
        assert np.array_equal(out[:, 4], np.ones(40)) and np.array_equal(r, np.ones(40))
        assert r.tobytes() == r2.tobytes() and done.tobytes() == done2.tobytes() == done3.tobytes()
        assert done.any() and not done.all()
        assert g1.random() == g2.random() == g3.random()


def test_step_out_writes_the_next_states():
    env = rl.CartPole()
    s, a = _states(9, 4), np.arange(9) % 2
    out = np.full((9, 4), np.nan)
    new, r, done = env.step(s, a, out=out)
    ref, r2, done2 = env.step(s, a)
    assert new is out and out.tobytes() == ref.tobytes() and np.array_equal(done, done2)
    out32 = np.empty((9, 4), dtype=np.float32)  # the general path's numbers, cast into out
    new, _, _ = env.step(s.astype(np.float32), a, out=out32)
    ref = env.step(s.astype(np.float32), a)[0].astype(np.float32)
    assert new is out32 and out32.tobytes() == ref.tobytes()


def test_stepper_declines_what_it_cannot_stand_in_for():
    env = rl.CartPole()
    assert env.stepper(env.reset(3, rng=0)) is not None
    assert env.stepper(env.reset(3, rng=0).astype(np.float32)) is None
    assert env.stepper(np.zeros((3, 5))) is None
    assert PerStep().stepper is None

    class OwnStep(rl.CartPole):
        def step(self, states, actions, rng=None):
            return super().step(states, actions, rng)

    class OwnFeatures(rl.CartPole):
        @staticmethod
        def features(states):
            return rl.CartPole.features(2 * states)

    for e in (OwnStep(), OwnFeatures()):
        assert e.stepper(e.reset(3, rng=0)) is None
    inst = rl.CartPole()
    inst.step = lambda s, a, rng=None: rl.CartPole.step(inst, s, a, rng)
    assert inst.stepper(inst.reset(3, rng=0)) is None


def test_sampler_is_sample_bit_for_bit():
    rng = np.random.default_rng(5)
    pol = rl.SoftmaxPolicy(5, 2, rng.normal(size=(5, 2)) * 3)
    phi = rng.normal(size=(30, 5))
    draw = pol.sampler(30)
    g1, g2 = np.random.default_rng(6), np.random.default_rng(6)
    out = np.full(30, -1, dtype=np.int64)
    for _ in range(3):
        a = draw(phi, g1, out)
        ref = pol.sample(phi, g2)
        assert np.array_equal(a, ref) and out.tobytes() == ref.tobytes()
    assert g1.random() == g2.random()
    with pytest.raises(ValueError, match="features must have a last axis of 5"):
        draw(np.ones((30, 4)), g1, out)
    assert rl.SoftmaxPolicy(5, 3).sampler(4) is None
    pol32 = rl.SoftmaxPolicy(5, 2)
    pol32.params["theta"] = np.ones((5, 2), dtype=np.float32)
    assert pol32.sampler(4) is None
    assert OwnSample(5, 2).sampler(4) is None
    with pytest.raises(ValueError, match="n must be"):
        pol.sampler(0)


def _policies():
    rng = np.random.default_rng(7)
    for scale in (0.0, 0.3, 3.0, 30.0):
        yield rl.SoftmaxPolicy(5, 2, rng.normal(size=(5, 2)) * scale)
    yield rl.SoftmaxPolicy(5, 3, rng.normal(size=(5, 3)))
    yield OwnSample(5, 2, rng.normal(size=(5, 2)))
    yield Duck(rng.normal(size=(5, 2)))


@pytest.mark.parametrize("kw", [{}, {"force_noise": 0.4}, {"max_steps": 3}, {"max_steps": 1}])
@pytest.mark.parametrize("E", [1, 7, 20])
def test_rollout_in_place_is_the_per_step_rollout(kw, E):
    for pol in _policies():
        g1, g2 = np.random.default_rng(E), np.random.default_rng(E)
        for _ in range(2):
            _same(rl.rollout(rl.CartPole(**kw), pol, E, g1), rl.rollout(PerStep(**kw), pol, E, g2))
        assert g1.random() == g2.random()


def test_rollout_with_a_force_whose_double_overflows():
    """force = 1e308: 2 force is inf, so +-force cannot be 2 force a - force;
    the in-place step takes step's np.where (the CartPole roll-out used to
    give NaN states and fail on the logits)."""
    envs = [rl.CartPole(), PerStep()]
    for env in envs:
        env.force = 1e308
    pol = rl.SoftmaxPolicy(5, 2, np.random.default_rng(0).normal(size=(5, 2)))
    with np.errstate(all="ignore"):
        fast, slow = rl.rollout(envs[0], pol, 9, rng=3), rl.rollout(envs[1], pol, 9, rng=3)
    _same(fast, slow)
    assert not np.isnan(fast.features).any()


def test_rollout_in_place_raises_as_the_per_step_path():
    for pol, match in ((rl.SoftmaxPolicy(4, 2), "features must have a last axis of 4"),
                       (Duck(np.zeros((5, 3))), None)):
        for env in (rl.CartPole(), PerStep()):
            if match is None:  # a policy returning one action too many
                class Bad(Duck):
                    def sample(self, phi, rng):
                        return np.zeros(len(phi) + 1, dtype=int)
                with pytest.raises(ValueError, match="one action per episode"):
                    rl.rollout(env, Bad(np.zeros((5, 2))), 4, rng=0)
            else:
                with pytest.raises(ValueError, match=match):
                    rl.rollout(env, pol, 4, rng=0)


def test_an_environment_of_its_own_with_a_stepper():
    """The protocol for any environment: a random walk x <- x + a - 1/2 whose
    features are (x, 1); its stepper writes only the state's column."""
    class Walk:
        max_steps, n_features = 6, 2
        calls = 0

        def reset(self, n, rng):
            return rng.normal(size=(n, 1))

        features = staticmethod(rl.CartPole.features)

        def step(self, states, actions):
            new = states + (actions[:, None] - 0.5)
            return new, -np.abs(new[:, 0]), np.abs(new[:, 0]) > 2

        def stepper(self, states):
            def step_into(features, actions, out, rng):
                Walk.calls += 1
                np.add(features[:, :1], actions[:, None] - 0.5, out[:, :1])
                return -np.abs(out[:, 0]), np.abs(out[:, 0]) > 2
            return step_into

    class WalkPerStep(Walk):
        stepper = None

    pol = rl.SoftmaxPolicy(2, 2, np.array([[0.3, -0.2], [0.1, 0.4]]))
    _same(rl.rollout(Walk(), pol, 11, rng=2), rl.rollout(WalkPerStep(), pol, 11, rng=2))
    assert Walk.calls > 0


def test_rollout_keeps_no_work_arrays_on_the_env_or_policy():
    env, pol = rl.CartPole(), rl.SoftmaxPolicy(5, 2)
    before = pickle.dumps(env), pickle.dumps(pol)
    rl.rollout(env, pol, 5, rng=0)
    assert (pickle.dumps(env), pickle.dumps(pol)) == before


def test_torch_policy_in_place_is_the_per_step_rollout():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    pol = rl.TorchPolicy(torch.nn.Linear(5, 2, dtype=torch.float64))
    _same(rl.rollout(rl.CartPole(), pol, 9, rng=1), rl.rollout(PerStep(), pol, 9, rng=1))


def test_public_objects_pickle_under_mcscore_rl():
    """The package's modules are private: pickles name mcscore.rl.<class>
    and give back the same objects' numbers."""
    objs = [rl.CartPole(force_noise=0.1), rl.Reach1D(), rl.SoftmaxPolicy(5, 2, np.ones((5, 2))),
            rl.GaussianPolicy(2), rl.LinearValue(),
            rl.rollout(rl.CartPole(max_steps=5), rl.SoftmaxPolicy(5, 2), 3, rng=0),
            rl.reinforce(rl.Reach1D(max_steps=3), rl.GaussianPolicy(2), iterations=2, episodes=4,
                         rng=0)]
    for obj in objs:
        blob = pickle.dumps(obj)
        assert b"mcscore.rl\x94" in blob and b"mcscore.rl._" not in blob
        back = pickle.loads(blob)
        assert type(back) is type(obj) and pickle.dumps(back) == blob
    env, pol = pickle.loads(pickle.dumps(objs[0])), pickle.loads(pickle.dumps(objs[2]))
    _same(rl.rollout(env, pol, 6, rng=2), rl.rollout(objs[0], objs[2], 6, rng=2))
