"""The vector families' kernels call BLAS from mcscore's threads: BLAS runs
on one thread while they do, and the user's setting is restored after
(results unchanged)."""
import numpy as np
import pytest
from threadpoolctl import ThreadpoolController, threadpool_info

import mcscore as mc
from mcscore import _config


def _blas_threads():
    return sorted(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")


def test_limit_applies_only_to_blas_families_and_is_restored():
    before = _blas_threads()
    q = mc.MultivariateNormal(np.zeros(3), scale_tril=np.eye(3))
    seen = {}

    def f(x):  # f runs outside the window: the user's BLAS setting
        seen["f"] = _blas_threads()
        return (x ** 2).sum(-1)

    with _config.blas_single_threaded(q):
        inside = _blas_threads()
    assert all(t == 1 for t in inside)
    assert _blas_threads() == before
    with _config.blas_single_threaded(mc.Normal(0.0, 1.0)):
        assert _blas_threads() == before
    mc.score_grad(f, q, 4096, rng=0)
    assert seen["f"] == before and _blas_threads() == before


@pytest.mark.parametrize("threads", [1, 2])
def test_results_do_not_depend_on_the_blas_thread_count(threads):
    rng = np.random.default_rng(1)
    A = rng.normal(size=(6, 6))
    q = mc.MultivariateNormal(rng.normal(size=6), scale_tril=np.tril(A) * 0.2 + np.eye(6))
    f = lambda x: np.sin(x).sum(-1)  # noqa: E731
    a = mc.score_grad(f, q, 20_000, rng=3, baseline="loo", n_threads=2)
    with ThreadpoolController().limit(limits=threads, user_api="blas"):
        b = mc.score_grad(f, q, 20_000, rng=3, baseline="loo", n_threads=2)
    for k in a.grad:
        np.testing.assert_array_equal(a.grad[k], b.grad[k])
        np.testing.assert_array_equal(a.stderr[k], b.stderr[k])
