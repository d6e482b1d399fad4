"""Compare our nets with scikit-learn baselines on MNIST (or digits): the tutorial's table, measured.

    visionnets compare mnist --data-dir DATA                       # every baseline + the bundled nets
    visionnets compare digits --methods knn svm_rbf                # a quick look, seconds
    visionnets compare mnist --runs runs/mnist_convnet-2026...     # read finished runs, don't retrain
    visionnets compare mnist --max-train svm_rbf=20000 --option svm_rbf.C=10
    visionnets compare mnist --quick                               # every row on 2,000 images, nets 2 epochs
    visionnets compare digits --methods knn svm_rbf --parallel 1000 # + speed-up of 2 threads over 1

Re-runnable in the same --out: a net's finished run there is reused, an interrupted one resumed.

Prints the comparison table (error, times, parameters, images, test NLL / ECE of the predicted
probabilities, protocol) and the properties table (markdown), and writes
OUT/compare_<dataset>.json and OUT/compare_<dataset>.png.
"""

from __future__ import annotations

import argparse
import sys

from visionnets.errors import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    from visionnets.baselines import BASELINES
    from visionnets.baselines.compare import DATASETS

    p.add_argument("dataset", choices=DATASETS, help="the dataset to compare on")
    p.add_argument("--methods", nargs="+", metavar="NAME",
                   help=f"baselines to train (default: all of {', '.join(BASELINES.names())}); "
                        "'none' trains no baseline")
    p.add_argument("--nets", nargs="+", metavar="RECIPE", default=None,
                   help="recipes of our nets to train through visionnets.api (default: the bundled "
                        "MNIST recipes of the tutorial's rows unless --runs is given; 'none' for no net)")
    p.add_argument("--runs", nargs="+", metavar="RUN_DIR", default=[],
                   help="finished run directories to measure instead of training nets")
    p.add_argument("--subsample", type=int, metavar="N",
                   help="N training images (and at most N test images) for the baselines and the nets alike")
    p.add_argument("--quick", action="store_true",
                   help="a quick table: --subsample 2000 (unless given) and the nets trained for 2 epochs")
    p.add_argument("--max-train", action="append", default=[], metavar="METHOD=N",
                   help="cap one baseline's training images, e.g. svm_rbf=20000 (repeatable)")
    p.add_argument("--option", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="a baseline hyper-parameter, e.g. knn.k=1 (repeatable)")
    p.add_argument("--set", dest="net_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of every net's recipe, e.g. train.epochs=2 (repeatable)")
    p.add_argument("--data-dir", help="dataset root (default: $VISIONNETS_DATA, then ~/.cache/visionnets)")
    p.add_argument("--out", default="compare", help="folder for the JSON, the chart and net runs (default: compare)")
    p.add_argument("--threads", type=int, metavar="N", help="cap the baselines' BLAS/OpenMP threads")
    p.add_argument("--seed", type=int, default=0, help="seed of the subsampling (default: 0)")
    p.add_argument("--parallel", type=int, metavar="N",
                   help="also time each baseline's fit + predict on N training images with 1 and 2 threads "
                        "(the 'Easy to parallelize' cells)")


def _max_train(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not value.isdigit() or int(value) < 1:
            raise ConfigError(f"--max-train {item!r}: expected METHOD=N with N a positive integer")
        out[name] = int(value)
    return out


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from visionnets.baselines.compare import compare, default_nets, parse_options
    from visionnets.baselines.table import report

    methods = args.methods
    if methods == ["none"]:
        methods = []
    if args.nets is None:
        nets = [] if args.runs else default_nets(args.dataset)
    else:
        nets = [] if args.nets == ["none"] else args.nets
    out = Path(args.out)
    rows = compare(args.dataset, methods=methods, subsample=args.subsample, data_dir=args.data_dir,
                   out_dir=out, nets=nets, runs=args.runs, options=parse_options(args.option),
                   max_train=_max_train(args.max_train), net_overrides=args.net_overrides,
                   seed=args.seed, threads=args.threads, log=lambda msg: print(msg, file=sys.stderr, flush=True),
                   quick=args.quick, parallel=args.parallel)
    if not rows:
        raise ConfigError("compare: nothing to compare (no method, net or run selected)")
    stem = f"compare_{args.dataset}"
    meta = {"dataset": args.dataset, "subsample": args.subsample, "quick": args.quick, "threads": args.threads,
            "command": "visionnets compare " + " ".join(sys.argv[2:])}
    tables = report(rows, out, stem=stem, meta=meta)
    print(tables)
    print(f"\nwrote {out / (stem + '.json')} and {out / (stem + '.png')}")
    return 0
