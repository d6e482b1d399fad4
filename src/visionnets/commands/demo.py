"""The main job: a small convnet on the bundled 8x8 digits, in well under a minute on 2 CPU cores."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="write the run into this directory (default: runs/digits_convnet-<time>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the digits_convnet recipe")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from visionnets import api
    from visionnets.commands.train import report

    print("visionnets demo: a convnet (2 stages of conv -> relu -> max-pool) on scikit-learn's 8x8 digits")
    result = api.train("digits_convnet", args.overrides, out=args.out, progress=not args.no_progress)
    report(result)
    return 0
