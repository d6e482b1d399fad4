"""Evaluate a run directory's best (or last) weights on a split."""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a directory written by `visionnets train`")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--which", default="best", choices=["best", "last"], help="which checkpoint")
    p.add_argument("--data-dir", help="dataset root (default: $VISIONNETS_DATA, then ~/.cache/visionnets)")
    p.add_argument("--json", action="store_true", help="print one JSON object (split, n, loss, accuracy, error)")


def run(args: argparse.Namespace) -> int:
    from visionnets import api

    res = api.evaluate(api.load_run(args.run_dir, args.data_dir, which=args.which), args.split)
    if args.json:
        print(json.dumps(res))
    elif "error" in res:
        print(f"{args.split}: n={res['n']} loss={res['loss']:.4f} error={100 * res['error']:.2f}% "
              f"accuracy={100 * res['accuracy']:.2f}%")
    else:
        print(f"{args.split}: n={res['n']} loss={res['loss']:.6g}")
    return 0
