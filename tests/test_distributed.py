"""score_grad(..., client=...) on a real multi-process Dask cluster: the
result is bit-identical to the local run, also when a worker dies mid-run."""
import os
import pickle

import numpy as np
import pytest

import mcscore as mc
from mcscore import integrands as I

distributed = pytest.importorskip("distributed")


def _same(a, b):
    """Bit-identical estimates (NaN-free by construction here)."""
    assert a.n == b.n
    assert a.value == b.value and a.value_stderr == b.value_stderr
    assert a.grad.keys() == b.grad.keys()
    for k in a.grad:
        np.testing.assert_array_equal(a.grad[k], b.grad[k])
        np.testing.assert_array_equal(a.stderr[k], b.stderr[k])
        np.testing.assert_array_equal(a.variance[k], b.variance[k])


def sum_sq(x):
    return (x ** 2).sum(axis=-1)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       dashboard_address=None, silence_logs=40)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def test_distributions_and_integrands_pickle_after_use():
    q = mc.Dirichlet([1.0, 2.0, 3.5])
    q.sample(3, rng=0)  # builds and caches the Cython kernel description
    q2 = pickle.loads(pickle.dumps(q))
    np.testing.assert_array_equal(q2.sample(5, rng=1), q.sample(5, rng=1))
    f = 2.0 * I.power(2) - I.sin() + 1.5
    x = np.linspace(-2, 2, 7)[:, None]
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(f))(x), f(x))


@pytest.mark.parametrize("baseline", [None, "loo", "optimal"])
def test_fused_bit_identical(client, baseline):
    q = mc.Normal(loc=np.array([0.5, -1.0]), scale=np.array([1.0, 2.0]))
    f = I.sum_of_squares() + 0.5 * I.sin()
    kw = dict(rng=11, baseline=baseline, n_streams=16, block_size=997)
    local = mc.score_grad(f, q, 40_001, **kw)
    remote = mc.score_grad(f, q, 40_001, client=client, **kw)
    _same(local, remote)
    # and the estimate is right: E[x^2] gradient is (2 loc, 2 scale) (+ sin part)
    exact_loc = 2 * q.loc + 0.5 * np.cos(q.loc) * np.exp(-q.scale ** 2 / 2)
    assert np.all(np.abs(remote.grad["loc"] - exact_loc) < 5 * remote.stderr["loc"])


@pytest.mark.parametrize("dist", [
    mc.Normal(loc=np.zeros(3), scale=np.ones(3)),
    mc.Categorical(probs=[0.2, 0.3, 0.5]),
    mc.Poisson(rate=[1.5, 4.0]),
    mc.LogNormal(loc=[0.1, -0.2], scale=0.5),
], ids=["normal", "categorical", "poisson", "lognormal"])
def test_python_f_bit_identical(client, dist):
    def f(x):
        return np.asarray(x, dtype=float).reshape(len(x), -1).sum(axis=1) ** 2

    kw = dict(rng=np.random.SeedSequence(5), n_streams=8, block_size=300, chunk_size=128)
    local = mc.score_grad(f, dist, 5_000, baseline="optimal", **kw)
    remote = mc.score_grad(f, dist, 5_000, baseline="optimal", client=client, **kw)
    _same(local, remote)


@pytest.mark.parametrize("dist", [
    mc.Categorical(logits=[[0.1, -0.4, 1.0], [0.0, 0.0, 0.5]]),
    mc.Multinomial(total_count=5, probs=[0.2, 0.5, 0.3]),
    mc.Dirichlet(concentration=[0.8, 2.0, 1.5]),
], ids=["categorical", "multinomial", "dirichlet"])
def test_fused_bit_identical_multivariate(client, dist):
    f = I.sum_of_squares() + I.linear(np.arange(dist.draw_size, dtype=float).reshape(
        dist.draw_shape))
    kw = dict(rng=3, baseline="optimal", n_streams=10, block_size=611)
    _same(mc.score_grad(f, dist, 15_000, **kw), mc.score_grad(f, dist, 15_000, client=client,
                                                               **kw))


def test_task_count_does_not_matter(client):
    from mcscore import distributed as D
    from mcscore._rounds import Plan as _Plan

    q = mc.Gamma(concentration=[0.7, 3.0], rate=2.0)
    f = I.linear([1.0, -2.0])
    local = mc.score_grad(f, q, 20_000, rng=2, n_streams=12, block_size=500)
    kd = q._kernel_dist()
    for tasks in (1, 5, 12):
        plan = _Plan(20_000, kd.draw_size, 2, 12, 500, None)
        s, sh = D.run_on_dask(client, f, "integrand", q, kd, plan, n_tasks=tasks)
        ref_plan = _Plan(20_000, kd.draw_size, 2, 12, 500, None)
        from mcscore._rounds import run_fused as _run_fused

        s0, sh0 = _run_fused(f._kernel_func(q.draw_shape), "integrand", q, kd, ref_plan)
        np.testing.assert_array_equal(s, s0)
        np.testing.assert_array_equal(sh, sh0)
    remote = mc.score_grad(f, q, 20_000, rng=2, n_streams=12, block_size=500, client=client)
    _same(local, remote)


def _first_time(flag):
    """True for exactly one caller across processes (atomic create)."""
    try:
        os.close(os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def _make_killer(flag, parent_pid):
    def f(x):
        # Kill the worker process the first time f runs on a worker.
        if os.getpid() != parent_pid and _first_time(flag):
            os._exit(1)
        return sum_sq(x)
    return f


def test_worker_death_python_f_is_retried(client, tmp_path):
    q = mc.Normal(loc=np.zeros(2), scale=np.ones(2))
    flag = str(tmp_path / "killed")
    kw = dict(rng=7, n_streams=8, block_size=1000)
    local = mc.score_grad(sum_sq, q, 20_000, **kw)
    remote = mc.score_grad(_make_killer(flag, os.getpid()), q, 20_000, client=client, **kw)
    assert os.path.exists(flag), "no worker was killed: the test did not test anything"
    _same(local, remote)
    client.wait_for_workers(2, timeout=60)


class _KillOnce(distributed.WorkerPlugin):
    """Exit the worker process when it starts an mcscore task, once."""

    name = "mcscore-kill-once"

    def __init__(self, flag):
        self.flag = flag

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing" and "mcscore-" in str(key) and _first_time(self.flag):
            os._exit(1)


def test_worker_death_fused_is_retried(client, tmp_path):
    q = mc.Beta(concentration1=[0.5, 2.0], concentration0=3.0)
    f = I.power(2) + I.call(0.3)
    flag = str(tmp_path / "killed")
    kw = dict(rng=8, n_streams=8, block_size=1500, baseline="loo")
    local = mc.score_grad(f, q, 30_000, **kw)
    register = getattr(client, "register_plugin", None) or client.register_worker_plugin
    register(_KillOnce(flag))
    try:
        remote = mc.score_grad(f, q, 30_000, client=client, **kw)
    finally:
        client.unregister_worker_plugin(_KillOnce.name)
    assert os.path.exists(flag), "no worker was killed: the test did not test anything"
    _same(local, remote)
    client.wait_for_workers(2, timeout=60)


def test_errors(client):
    q = mc.Normal(0.0, 1.0)
    with pytest.raises(TypeError, match="client must be a dask"):
        mc.score_grad(I.power(2), q, 1000, client=object())
    ctypes = pytest.importorskip("ctypes")
    from scipy import LowLevelCallable

    proto = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.POINTER(ctypes.c_double), ctypes.c_ssize_t)
    cb = proto(lambda x, d: x[0])
    with pytest.raises(TypeError, match="LowLevelCallable .*cannot be sent to Dask"):
        mc.score_grad(LowLevelCallable(cb, signature="double (double *, intptr_t)"), q, 1000,
                      client=client)
    # an error raised by f on a worker reaches the caller with its message
    with pytest.raises(ValueError, match="f returned nan"):
        mc.score_grad(lambda x: np.where(x > 2.0, np.nan, x), q, 20_000, rng=0, client=client)
    # a fused integrand that goes non-finite on a worker
    with pytest.raises(ValueError, match="non-finite value .* at draw"):
        mc.score_grad(I.log1p(), q, 20_000, rng=0, client=client)


def test_progress_bar_on_dask(client, capsys):
    pytest.importorskip("tqdm")
    q = mc.Exponential(rate=[0.5, 2.0])
    kw = dict(rng=4, n_streams=6, block_size=700)
    local = mc.score_grad(I.sum_of_squares(), q, 9_000, **kw)
    remote = mc.score_grad(I.sum_of_squares(), q, 9_000, client=client, progress=True, **kw)
    _same(local, remote)
    err = capsys.readouterr().err
    assert f"blocks {-(-9000 // 700)}/{-(-9000 // 700)}" in err
