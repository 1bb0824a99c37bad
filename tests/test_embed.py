"""The C-level API: build examples/embed (a Cython extension that cimports
mcscore/_kernels.pxd from the installed package and runs its own OpenMP
loop over mc_run_block) and check it against score_grad."""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mcscore as mc
import mcscore.embed as E

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "embed"


def test_pxd_is_installed_with_the_package():
    inc = Path(E.get_include())
    assert (inc / "mcscore" / "_kernels.pxd").is_file()
    assert (inc / "mcscore" / "__init__.py").is_file()
    assert Path(mc.__file__).resolve().parent == (inc / "mcscore").resolve()


@pytest.fixture(scope="module")
def mcembed(tmp_path_factory):
    pytest.importorskip("Cython", reason="building the example needs Cython")
    pytest.importorskip("setuptools", reason="building the example needs setuptools")
    if not EXAMPLE.is_dir():
        pytest.skip("examples/embed is not next to the tests")
    work = tmp_path_factory.mktemp("embed")
    for name in ("mcembed.pyx", "setup.py"):
        shutil.copy(EXAMPLE / name, work / name)
    env = dict(os.environ)
    # the installed (or in-tree) mcscore must be importable by the build
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(E.get_include()))] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace", "-q"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    so = [p for p in work.iterdir() if p.name.startswith("mcembed.") and
          p.suffix in (".so", ".pyd")]
    assert so, list(work.iterdir())
    spec = importlib.util.spec_from_file_location("mcembed", so[0])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _same(a, b):
    assert a.n == b.n and a.value == b.value and a.value_stderr == b.value_stderr
    for k in a.grad:
        np.testing.assert_array_equal(a.grad[k], b.grad[k])
        np.testing.assert_array_equal(a.stderr[k], b.stderr[k])


@pytest.mark.parametrize("baseline", [None, "optimal"])
def test_embedded_loop_matches_score_grad(mcembed, baseline):
    loc = np.array([0.5, -1.0, 0.2])
    scale = np.array([1.0, 2.0, 0.5])
    q = mc.Normal(loc, scale)
    n = 100_003
    ours = mcembed.score_grad_square_of_sum(q, n, rng=4, n_threads=2, baseline=baseline)
    # the same C function through score_grad's own driver, other thread count
    ref = mc.score_grad(mcembed.lowlevel_callable(), q, n, rng=4, n_threads=1,
                        baseline=baseline)
    _same(ours, ref)
    # and it is right: E[(sum x)^2] = (sum loc)^2 + sum scale^2
    exact = {"loc": np.full(3, 2 * loc.sum()), "scale": 2 * scale}
    for k, v in exact.items():
        assert np.all(np.abs(ours.grad[k] - v) < 5 * ours.stderr[k]), (k, ours.grad[k], v)
    assert abs(ours.value - (loc.sum() ** 2 + (scale ** 2).sum())) < 5 * ours.value_stderr


def test_embedded_loop_other_families(mcembed):
    for q in (mc.Poisson(rate=[2.0, 0.5]), mc.Gamma(concentration=1.5, rate=[1.0, 3.0]),
              mc.Bernoulli(logits=[0.3, -1.0, 2.0]), mc.Categorical(probs=[0.1, 0.6, 0.3]),
              mc.Dirichlet(concentration=[1.0, 2.0, 0.5])):
        ours = mcembed.score_grad_square_of_sum(q, 20_000, rng=9, n_streams=16,
                                                block_size=512, n_threads=2)
        ref = mc.score_grad(mcembed.lowlevel_callable(), q, 20_000, rng=9, n_streams=16,
                            block_size=512)
        _same(ours, ref)


def test_c_accessor_checks_its_argument(mcembed):
    with pytest.raises(TypeError, match="expected a KernelDist"):
        mcembed.run_streams(object(), [], 10, 1, 10, 1)


def test_embed_helpers_validate():
    q = mc.Normal(0.0, 1.0)
    p = E.plan(q, 1000, rng=1, n_streams=4, block_size=100)
    assert (p.used, p.n_blocks, p.block_rows(9)) == (4, 10, 100)
    assert len(p.bit_generators()) == 4
    kd = E.kernel_dist(q)
    with pytest.raises(ValueError, match=r"stats must have shape \(streams, %d\)" % kd.stats_len):
        E.estimate(q, np.zeros((4, 3)), np.zeros(4))
    with pytest.raises(ValueError, match="shifts must have shape"):
        E.estimate(q, np.zeros((4, kd.stats_len)), np.zeros(3))
    with pytest.raises(TypeError, match="dist must be an mcscore distribution"):
        E.kernel_dist("normal")
