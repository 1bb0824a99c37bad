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


def _signature_default(fn, name="progress"):
    import inspect

    return inspect.signature(fn).parameters[name].default


def test_every_progress_option_defaults_to_false():
    from mcscore import finance, rl, vi

    for fn in (mc.score_grad, vi.fit, rl.reinforce, finance.greeks):
        assert _signature_default(fn) is False, fn.__qualname__


def test_vi_fit_and_reinforce_without_tqdm_print_lines(no_tqdm, capsys):
    from mcscore import rl, vi

    q = mc.Normal(np.zeros(2), np.ones(2))
    a = vi.fit(lambda x: -0.5 * (x ** 2).sum(-1), q, steps=5, n=20, rng=0, progress=True)
    err = capsys.readouterr().err
    assert "VI (Adam): 100.0% (5/5 its" in err
    b = vi.fit(lambda x: -0.5 * (x ** 2).sum(-1), q, steps=5, n=20, rng=0)
    np.testing.assert_array_equal(a.elbo, b.elbo)
    rl.reinforce(rl.CartPole(), rl.SoftmaxPolicy(5, 2), iterations=2, episodes=4, rng=0,
                 progress=True)
    assert "REINFORCE: 100.0% (2/2 its" in capsys.readouterr().err


@pytest.mark.parametrize("payoff", ["call", "path"])
def test_greeks_accepts_progress_and_keeps_the_bits(no_tqdm, capsys, payoff):
    from mcscore import finance

    kw = dict(spot=100.0, strike=100.0, rate=0.05, vol=0.2, maturity=1.0, n=20_000, rng=3)
    if payoff == "path":
        p = finance.Payoff(lambda s: np.maximum(s[:, -1, 0] - 100.0, 0.0))
        kw.update(steps=4)
    else:
        p = "call"
    a = finance.greeks(p, progress=True, **kw)
    err = capsys.readouterr().err
    assert "greeks: 100.0% (20,000/20,000 its" in err
    b = finance.greeks(p, **kw)
    assert a.price == b.price and a.delta == b.delta and a.stderr == b.stderr
    with pytest.raises(TypeError, match="progress"):
        finance.greeks(p, progress="yes", **kw)
