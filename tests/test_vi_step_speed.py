"""vi.fit's per-step work: a Normal / LogNormal q of the prepared score step
is rebuilt by lean renewal (prepared.lean_dist: its checks and kernel in one
C pass), the gradient stays one vector through the chain rule, log_joint's
plain float64 output is checked only when the step's sum is not finite, and
q's rebuild looks its family up once.  Each faster path must give the
general path's numbers bit for bit and raise its errors; how fast it is is
measured (benchmarks/small_calls.py), not asserted here."""
import numpy as np
import pytest

import mcscore as mc
from mcscore import prepared as PR
from mcscore import vi
from mcscore.distributions import Distribution
from mcscore.vi import _fit, _q

D = 4
MU = np.array([0.5, -0.3, 1.2, 2.0])
SIG = np.array([0.7, 1.1, 0.9, 0.4])


def log_joint(x):
    return -0.5 * (((x - MU) / SIG) ** 2).sum(axis=1)


def log_joint_pos(x):
    return (np.log(x) - 1.5 * x).sum(1)


def _general(monkeypatch):
    """Make fit take the general path at every step."""
    monkeypatch.setattr(vi._ScoreStep, "for_fit", classmethod(lambda cls, *a: None))


def _no_lean(monkeypatch):
    """Keep the prepared step but rebuild q by the general path."""
    monkeypatch.setattr(_fit, "_lean", lambda q, kinds: False)


def _same_fit(a, b):
    for name in ("elbo", "elbo_stderr", "lr"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    for q, r in ((a.q, b.q), (a.q_last, b.q_last)):
        assert type(q) is type(r) and q.params.keys() == r.params.keys()
        for k in q.params:
            assert q.params[k].shape == r.params[k].shape
            assert q.params[k].tobytes() == r.params[k].tobytes(), k


def _outcome(run):
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 - the error is the outcome compared
        return (type(exc), str(exc))


FITS = {
    "normal": (log_joint, lambda: mc.Normal(np.zeros(D), np.ones(D)), {}),
    "normal 2-d": (lambda x: -0.5 * ((x - 1.0) ** 2).sum((1, 2)),
                   lambda: mc.Normal(np.zeros((2, 3)), np.ones((2, 3))), {}),
    "normal scalar": (lambda x: -0.5 * (x - 1.0) ** 2, lambda: mc.Normal(0.0, 1.0), {"n": 7}),
    "normal broadcast scale": (log_joint, lambda: mc.Normal(np.zeros(D), 1.5), {}),
    "normal optimal, schedule": (log_joint, lambda: mc.Normal(np.zeros(D), np.ones(D)),
                                 {"baseline": "optimal", "lr": vi.cosine(0.2, 50)}),
    "normal no baseline": (log_joint, lambda: mc.Normal(np.zeros(D), np.ones(D)),
                           {"baseline": None, "n": 2}),
    "lognormal": (log_joint_pos, lambda: mc.LogNormal(np.zeros(D), np.ones(D)), {}),
    "gamma": (log_joint_pos, lambda: mc.Gamma(np.full(D, 2.0), np.ones(D)), {}),
    "float32 log_joint": (lambda x: log_joint(x).astype(np.float32),
                          lambda: mc.Normal(np.zeros(D), np.ones(D)), {}),
    "int log_joint": (lambda x: np.round(log_joint(x)).astype(np.int64),
                      lambda: mc.Normal(np.zeros(D), np.ones(D)), {}),
    "list log_joint": (lambda x: list(log_joint(x)),
                       lambda: mc.Normal(np.zeros(D), np.ones(D)), {}),
    "subsampling": (lambda x, idx: -0.5 * ((x[:, :1] - np.linspace(0, 1, 20)[idx]) ** 2).sum(1)
                    + 0.0 * x[:, 1:].sum(1),
                    lambda: mc.Normal(np.zeros(2), np.ones(2)),
                    {"data_size": 20, "batch_size": 5, "log_prior": lambda x: -0.5 * (x**2).sum(1)}),
}


@pytest.mark.parametrize("case", list(FITS))
@pytest.mark.parametrize("seed", [0, 5])
def test_fit_is_the_general_path_bit_for_bit(case, seed, monkeypatch):
    lj, make_q, kw = FITS[case]
    kw = {"steps": 50, "n": 30, "rng": seed, **kw}
    fast = vi.fit(lj, make_q(), **kw)
    with monkeypatch.context() as m:
        _no_lean(m)
        prepared_only = vi.fit(lj, make_q(), **kw)
    _general(monkeypatch)
    general = vi.fit(lj, make_q(), **kw)
    _same_fit(fast, prepared_only)
    _same_fit(fast, general)


@pytest.mark.parametrize("family", [mc.Normal, mc.LogNormal])
def test_a_normal_fit_rebuilds_q_by_lean_renewal(family, monkeypatch):
    """Every q after the first step's is built by lean_dist, which returns
    it with its kernel (checked on the way): none is built by the general
    path."""
    calls = {"lean": 0, "built": 0}
    lean = PR.lean_dist
    init = Distribution.__init__

    def counting_lean(*a):
        calls["lean"] += 1
        got = lean(*a)
        assert got is not None and got[0]._kernel is not None
        return got

    def counting_init(self, *a, **k):
        calls["built"] += 1
        init(self, *a, **k)

    monkeypatch.setattr(PR, "lean_dist", counting_lean)
    lj = log_joint if family is mc.Normal else log_joint_pos
    q = family(np.zeros(D), np.ones(D))
    monkeypatch.setattr(Distribution, "__init__", counting_init)
    res = vi.fit(lj, q, steps=40, n=20, rng=2, average=0.0)
    assert calls["lean"] == 40  # the q of every step after the first, and the last
    assert calls["built"] == 1  # the returned average only
    assert type(res.q_last) is family


def _later_bad(k, bad):
    calls = [0]

    def lj(x):
        calls[0] += 1
        return bad(x) if calls[0] >= k else log_joint(x)
    return lj, calls


@pytest.mark.parametrize("bad", [
    lambda x: np.where(x[:, 0] > 0.5, np.nan, 0.0),
    lambda x: np.where(x[:, 0] > 0.5, -np.inf, 0.0),
    lambda x: np.where(x[:, 0] > 0.5, np.inf, -np.inf),
    lambda x: np.where(x[:, 0] > 0.5, 1e308, -1e308),
    lambda x: x[:, 0] * 1e306,
    lambda x: x,
    lambda x: np.ma.masked_array(log_joint(x)),
    lambda x: np.array(["a"] * len(x)),
    lambda x: np.where(x[:, 0] > 0.5, np.nan, 0.0).astype(np.float32),
])
def test_a_bad_log_joint_at_a_later_step_raises_the_general_paths_error(bad, monkeypatch):
    def run():
        lj, calls = _later_bad(20, bad)
        return _outcome(lambda: (vi.fit(lj, mc.Normal(np.zeros(D), np.ones(D)), steps=40,
                                        n=20, rng=1), calls[0]))[:2]
    fast = run()
    _general(monkeypatch)
    general = run()
    assert isinstance(fast[0], type) and issubclass(fast[0], Exception)
    assert fast == general


def test_a_later_step_too_large_raises_the_general_paths_error(monkeypatch):
    def run():
        return _outcome(lambda: vi.fit(log_joint, mc.Normal(np.zeros(D), np.ones(D)), steps=60,
                                       n=20, rng=1, lr=lambda t: 0.05 if t < 20 else 1e4))
    fast = run()
    assert fast[0] is ValueError and "Adam step 20" in fast[1]
    with monkeypatch.context() as m:
        _no_lean(m)
        assert run() == fast
    _general(monkeypatch)
    assert run() == fast


def test_the_replacer_is_replace():
    q = mc.StudentT(3.0, np.zeros(2), np.ones(2)) if hasattr(mc, "StudentT") else \
        mc.Normal(np.zeros(2), np.ones(2))
    new = {"loc": np.array([0.5, -1.0])}
    a, b = _q._replace(q, new), _q._replacer(q)(new)
    assert type(a) is type(b)
    assert a._all_params().keys() == b._all_params().keys()
    for k, v in a._all_params().items():
        assert np.array_equal(v, b._all_params()[k])


def test_adam_scratch_update_is_kingma_and_ba_bit_for_bit():
    """The update with its intermediates in a scratch buffer: the same
    numbers as the formula, and the moments and parameters handed out
    before a step do not change with it."""
    rng = np.random.default_rng(11)
    opt = vi.Adam({"a": np.zeros(3), "b": np.ones((2, 2))}, lr=0.2, betas=(0.7, 0.95), eps=1e-5)
    p = {"a": np.zeros(3), "b": np.ones((2, 2))}
    m1 = {k: np.zeros_like(v) for k, v in p.items()}
    m2 = {k: np.zeros_like(v) for k, v in p.items()}
    for t in range(1, 25):
        g = {k: rng.normal(size=v.shape) * 10.0 ** rng.integers(-4, 4) for k, v in p.items()}
        before = (opt.params, opt.m1, opt.m2)
        kept = tuple({k: v.copy() for k, v in d.items()} for d in before)
        out = opt.step(g)
        for d, c in zip(before, kept):
            assert all(np.array_equal(d[k], c[k]) for k in d)
        for k in p:
            m1[k] = 0.7 * m1[k] + (1 - 0.7) * g[k]
            m2[k] = 0.95 * m2[k] + (1 - 0.95) * g[k] * g[k]
            p[k] = p[k] + 0.2 * (m1[k] / (1 - 0.7**t)) / (np.sqrt(m2[k] / (1 - 0.95**t)) + 1e-5)
            assert out[k].tobytes() == p[k].tobytes()
            assert opt.m1[k].tobytes() == m1[k].tobytes()
            assert opt.m2[k].tobytes() == m2[k].tobytes()


def test_a_pickled_adam_steps_on():
    import pickle

    opt = vi.Adam({"x": np.zeros(2)}, lr=0.1)
    opt.step({"x": np.array([1.0, -2.0])})
    twin = pickle.loads(pickle.dumps(opt))
    g = {"x": np.array([0.3, 0.4])}
    assert np.array_equal(opt.step(g)["x"], twin.step(g)["x"])


def test_a_lean_fit_is_accurate():
    """The fitted Normal against the exact posterior (the target itself is a
    Normal): within a few Monte Carlo standard deviations of the averaged
    iterates."""
    res = vi.fit(log_joint, mc.Normal(np.zeros(D), np.ones(D)), steps=1500, n=100, rng=4,
                 lr=0.05)
    assert np.all(np.abs(res.q.loc - MU) < 0.05 * SIG + 0.02)
    assert np.all(np.abs(res.q.scale / SIG - 1.0) < 0.08)
