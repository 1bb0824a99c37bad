"""The command line: --version, help text, and how draw counts are written."""
import re
import subprocess
import sys

import pytest

import mcscore
from mcscore.__main__ import _count, build_parser, main


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"mcscore {mcscore.__version__}"


def test_version_as_a_module():
    out = subprocess.run([sys.executable, "-m", "mcscore", "--version"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"mcscore {mcscore.__version__}"


@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"], ["config", "--help"]])
def test_help_is_plain_text_and_every_option_is_explained(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    text = capsys.readouterr().out
    # no reStructuredText markup
    assert "``" not in text and ":func:" not in text and ".. " not in text
    parser = build_parser()
    subparsers = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    for p in [parser] + list(subparsers[0].choices.values()):
        for action in p._actions:
            assert action.help, f"option {action.option_strings or action.dest} has no help"


@pytest.mark.parametrize("text, value", [("100000", 100000), ("100_000", 100000),
                                         ("1e5", 100000), ("2.5e3", 2500), (" 1E6 ", 10**6)])
def test_draw_counts_accepted(text, value):
    assert _count(text) == value


@pytest.mark.parametrize("text, says", [("1.5", "whole number"), ("abc", "1e5"),
                                        ("inf", "whole number"), ("nan", "whole number"),
                                        ("1", "at least 2"), ("-5", "at least 2")])
def test_draw_counts_rejected_with_a_message_that_says_how(text, says, capsys):
    with pytest.raises(SystemExit) as e:
        main(["demo", "core", "--n", text])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--n" in err and says in err


def test_bad_seed_message(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "core", "--seed", "x"])
    assert re.search(r"--seed.*non-negative integer", capsys.readouterr().err)


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out
