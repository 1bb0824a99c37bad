"""Command line of mcscore.

    python -m mcscore demo [PART ...] [--n N] [--seed S] [--figures DIR]
    python -m mcscore config
    python -m mcscore --version
"""
import argparse
import math
import sys

from . import demo
from ._config import show_config
from ._version import __version__

DEMO_PARTS = ("core", "finance", "vi", "rl", "figures")


def _count(text):
    """A draw count: an integer such as 100000, 100_000 or 1e5 (a whole
    number written in exponent form), at least 2."""
    t = text.strip().replace("_", "")
    try:
        v = int(t)
    except ValueError:
        try:
            f = float(t)
        except ValueError:
            f = math.nan
        if not (math.isfinite(f) and f == int(f)):
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a whole number of draws; write it as 100000, 100_000 or 1e5"
            ) from None
        v = int(f)
    if v < 2:
        raise argparse.ArgumentTypeError(f"the number of draws must be at least 2, got {text!r}")
    return v


def _seed(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a seed; give a non-negative integer such as 0 or 12345") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"the seed must be a non-negative integer, got {v}")
    return v


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m mcscore",
        description="mcscore: fast score-function gradient estimators with honest error bars.",
        epilog="Run 'python -m mcscore demo --n 1e5' for a quick tour.")
    parser.add_argument("--version", action="version", version=f"mcscore {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND",
                                help="demo (a tour) or config (the build)")
    d = sub.add_parser("demo", help="show the estimators at work on built-in problems",
                       description="Show the estimators at work on built-in problems: "
                                   "estimates against exact values, timings against NumPy.")
    d.add_argument("parts", nargs="*", default=["all"], metavar="PART",
                   help=f"parts to run: {', '.join(DEMO_PARTS)}, or all (the default)")
    d.add_argument("--n", type=_count, default=10**6, metavar="N",
                   help="draws per estimate, e.g. 100000 or 1e5 (default 1e6)")
    d.add_argument("--seed", type=_seed, default=0, metavar="S",
                   help="seed of every estimate, a non-negative integer (default 0)")
    d.add_argument("--figures", default="mcscore-figures", metavar="DIR",
                   help="folder the figures are written to (default ./mcscore-figures)")
    sub.add_parser("config", help="print the build configuration (OpenMP, threads, versions)",
                   description="Print the build configuration (OpenMP, threads, versions).")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.cmd == "config":
        show_config()
        return 0
    if args.cmd != "demo":
        parser.print_help()
        return 2
    known = {"core": demo.run_core, "finance": demo.run_finance, "vi": demo.run_vi,
             "rl": demo.run_rl,
             "figures": lambda **kw: demo.run_figures(folder=args.figures, **kw)}
    parts = args.parts or ["all"]
    if parts == ["all"]:
        parts = list(known)
    for p in parts:
        if p not in known:
            parser.error(f"unknown demo part {p!r}; choose from {', '.join(known)} or all")
    for p in parts:
        known[p](n=args.n, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
