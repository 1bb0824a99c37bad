"""progress=True without tqdm: plain progress lines on stderr, the same
estimate, never an ImportError (the same behaviour for every estimator and
loop that takes `progress`)."""
import sys

import numpy as np
import pytest

import mcscore as mc
from mcscore import _progress


@pytest.fixture
def no_tqdm(monkeypatch):
    # a None entry in sys.modules makes `import tqdm...` raise ImportError
    for name in ("tqdm", "tqdm.auto"):
        monkeypatch.setitem(sys.modules, name, None)


def test_score_grad_without_tqdm_prints_lines_and_keeps_the_bits(no_tqdm, capsys):
    q = mc.Normal(np.zeros(2), np.ones(2))
    f = lambda x: (x ** 2).sum(-1)  # noqa: E731
    a = mc.score_grad(f, q, 20_000, rng=1, progress=True, chunk_size=4096)
    err = capsys.readouterr().err
    assert "mcscore:" in err and "100.0%" in err and "20,000/20,000 draws" in err
    b = mc.score_grad(f, q, 20_000, rng=1, progress=False, chunk_size=4096)
    for k in a.grad:
        np.testing.assert_array_equal(a.grad[k], b.grad[k])
        np.testing.assert_array_equal(a.stderr[k], b.stderr[k])


def test_simple_bar_falls_back_to_text(no_tqdm):
    import io

    bar = _progress.simple_bar(10, True, "loop")
    assert isinstance(bar, _progress.TextBar)
    bar.stream = io.StringIO()
    for _ in range(10):
        bar.update()
    bar.set_postfix_str("loss 1.0")
    bar.close()
    bar.close()  # idempotent
    lines = bar.stream.getvalue().splitlines()
    assert lines[-1].startswith("loop: 100.0% (10/10 its") and "loss 1.0" in lines[-1]
    assert len(lines) == 1


def test_text_bar_is_rate_limited():
    import io

    bar = _progress.TextBar(1000, "x", interval=3600.0, stream=io.StringIO())
    for _ in range(1000):
        bar.update()
    assert bar.stream.getvalue() == ""
    bar.close()
    assert bar.stream.getvalue().count("\n") == 1


def test_disabled_bar_is_silent(capsys):
    bar = _progress.simple_bar(5, False, "quiet")
    bar.update()
    bar.set_postfix_str("a")
    bar.close()
    assert capsys.readouterr() == ("", "")
