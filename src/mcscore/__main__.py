"""Command line: ``python -m mcscore demo`` | ``python -m mcscore config``."""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m mcscore", description=__doc__)
    sub = parser.add_subparsers(dest="cmd")
    d = sub.add_parser("demo", help="show the estimators at work on built-in defaults")
    d.add_argument("parts", nargs="*", default=["all"],
                   help="parts to run: core, finance, vi, rl, figures, or all (default)")
    d.add_argument("--n", type=int, default=10**6, help="draws per estimate (default 1e6)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--figures", default="mcscore-figures",
                   help="folder for the figures (default ./mcscore-figures)")
    sub.add_parser("config", help="print the build configuration")
    args = parser.parse_args(argv)
    if args.cmd == "config":
        import mcscore

        mcscore.show_config()
        return 0
    if args.cmd != "demo":
        parser.print_help()
        return 2
    from . import demo

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
