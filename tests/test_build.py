"""The installed build: OpenMP, configuration, thread counts."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mcscore as mc
from mcscore import _kernels


@pytest.mark.skipif(os.environ.get("MCSCORE_ALLOW_SERIAL") == "1",
                    reason="MCSCORE_ALLOW_SERIAL=1: a serial build is accepted")
def test_installed_build_has_openmp():
    # Set MCSCORE_ALLOW_SERIAL=1 to accept a build without OpenMP.
    assert _kernels.HAVE_OPENMP, "mcscore was built without OpenMP (see setup.py's warning)"


def test_show_config_reports_openmp_and_threads(capsys):
    cfg = mc.show_config()
    out = capsys.readouterr().out
    assert "openmp" in out and "threads" in out
    assert cfg["openmp"] == bool(_kernels.HAVE_OPENMP)
    assert cfg["threads"] >= 1


def test_thread_count_rules():
    full = _kernels.omp_max_threads()
    assert mc.effective_n_threads(None) == full
    assert mc.effective_n_threads(-1) == full
    assert mc.effective_n_threads(-2) == max(1, full - 1)
    assert mc.effective_n_threads(-1000) == 1
    assert mc.effective_n_threads(3) == 3
    assert mc.effective_n_threads(8, work_items=2) == 2
    with pytest.raises(ValueError, match="n_threads"):
        mc.effective_n_threads(0)
    with pytest.raises(TypeError, match="n_threads"):
        mc.effective_n_threads(1.5)


def _run(code, env=None):
    e = dict(os.environ)
    e.update(env or {})
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, env=e, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.skipif(not _kernels.HAVE_OPENMP, reason="serial build")
def test_omp_num_threads_is_honoured():
    out = _run("import mcscore as mc; print(mc.effective_n_threads())",
               env={"OMP_NUM_THREADS": "1"})
    assert out == "1"
    out = _run("import mcscore as mc; print(mc.effective_n_threads())",
               env={"OMP_NUM_THREADS": "3"})
    assert out == "3"


@pytest.mark.skipif(not _kernels.HAVE_OPENMP, reason="serial build")
def test_threadpoolctl_limits_are_respected():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert mc.effective_n_threads() == 1
        r = mc.score_grad(mc.integrands.power(2), mc.Normal(0.0, 1.0), 10**5, rng=0)
        assert r.info["threads"] == 1
    assert mc.effective_n_threads() == _kernels.omp_max_threads()


def test_demo_runs(capsys, tmp_path):
    from mcscore.__main__ import main

    assert main(["demo", "--n", "20000", "--figures", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for fam in ("Normal", "Gamma", "Poisson", "Bernoulli", "Categorical", "Dirichlet"):
        assert fam in out
    assert "speed-up" in out


def test_pxd_is_installed():
    import mcscore

    here = os.path.dirname(mcscore.__file__)
    assert os.path.exists(os.path.join(here, "_kernels.pxd"))
    assert np.__version__  # numpy importable next to it
