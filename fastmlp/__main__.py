"""The ``fastmlp`` command (also ``python -m fastmlp``)."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fastmlp", description="fastmlp command line")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train a small network on generated data")
    demo.add_argument("--samples", type=int, default=20000)
    demo.add_argument("--epochs", type=int, default=5)
    demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "demo":
        from fastmlp.demo import run
        if args.samples < 10 or args.epochs < 1:
            parser.error("--samples must be >= 10 and --epochs >= 1")
        run(args.samples, args.epochs, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
