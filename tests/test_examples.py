"""The examples run in their quick modes and reach their goals."""
import importlib.util
import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(os.path.dirname(HERE), "examples")


def _load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}",
                                                  os.path.join(EXAMPLES, f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bandit_quick(capsys):
    out = _load("bandit").main(["--quick"])
    assert out["p_best"] > 0.9
    assert out["expected_reward"] > out["best_mean"] - 0.02
    assert "best arm" in capsys.readouterr().out


def test_cartpole_quick(tmp_path, capsys):
    path = str(tmp_path / "curve.png")
    out = _load("cartpole").main(["--quick", "--plot", path])
    r = out["returns"]
    assert r[-5:].mean() > 150 > r[:5].mean()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert out["figure"] is None
    else:
        assert out["figure"] == path and os.path.getsize(path) > 1000
    assert "mean return" in capsys.readouterr().out


def test_cartpole_without_plot():
    out = _load("cartpole").main(["--quick", "--plot", ""])
    assert out["figure"] is None


@pytest.mark.parametrize("name", ["bandit", "cartpole"])
def test_examples_have_docstrings(name):
    assert _load(name).__doc__.strip()


def test_demo_applications(tmp_path, capsys):
    """`python -m mcscore demo finance vi rl figures` on small settings: every
    Greek within 5 se of its exact value, VI at its exact posterior, the
    learning curve rising; figures where matplotlib exists."""
    from mcscore import demo
    from mcscore.__main__ import main

    rows = demo.run_finance(n=50_000, seed=1, out=lambda *a: None)
    assert len(rows) == 25 and max(abs(r["z"]) for r in rows) < 5
    vi_res = demo.run_vi(seed=0, out=lambda *a: None, progress=False)
    assert max(vi_res["errors"].values()) < 0.02
    rl_res = demo.run_rl(seed=0, out=lambda *a: None, progress=False)
    assert rl_res["bandit_p_best"] > 0.9
    assert rl_res["cartpole"].returns[-5:].mean() > 150
    folder = tmp_path / "figs"
    assert main(["demo", "figures", "--figures", str(folder)]) == 0
    text = capsys.readouterr().out
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in text
    else:
        assert str(folder) in text
        assert sorted(p.name for p in folder.iterdir()) == [
            "convergence.png", "learning_curves.png", "variance.png"]


def test_demo_unknown_part():
    from mcscore.__main__ import main

    with pytest.raises(SystemExit):
        main(["demo", "poker"])
