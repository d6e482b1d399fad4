"""Draw what a trained run has learned: filters, projected features, top images, optimal inputs.

    visionnets show RUN_DIR                                  standard figures (curves, filters, ...)
    visionnets show RUN_DIR --layer features.3               that layer's features in pixel space
    visionnets show RUN_DIR --layer features.3 --unit 5 --top 16 --optimal

PNGs go to RUN_DIR/figures (their paths are printed); report.html, if present, is rebuilt
to include them.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a directory written by `visionnets train`")
    p.add_argument("--layer", help="a layer name from model.named_modules() (see the error for the list)")
    p.add_argument("--unit", type=int, help="a unit of the layer: a channel of a feature map or a "
                                            "column of a vector output (without --layer: an output unit)")
    p.add_argument("--top", type=int, default=16, help="how many top (and most negative) images (default 16)")
    p.add_argument("--optimal", action="store_true",
                   help="also the unit's optimal input (gradient ascent at the images' median norm)")
    p.add_argument("--start", default="noise", choices=["noise", "mean"],
                   help="starting point of the optimal input (default noise)")
    p.add_argument("--steps", type=int, default=200, help="gradient ascent steps (default 200)")
    p.add_argument("--blur", type=float, default=0.0,
                   help="smooth each ascent step with a Gaussian this wide, in pixels (default 0: none)")
    p.add_argument("--reduce", default="max", choices=["max", "mean"],
                   help="a feature map's unit activation: spatial max or mean (default max)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--which", default="best", choices=["best", "last"], help="which checkpoint")
    p.add_argument("--data-dir", help="dataset root (default: $VISIONNETS_DATA, then ~/.cache/visionnets)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from visionnets import api
    from visionnets.viz.report import write_report
    from visionnets.viz.show import show

    loaded = api.load_run(args.run_dir, args.data_dir, which=args.which)
    paths = show(loaded.model, loaded.dataset, args.run_dir, layer=args.layer, unit=args.unit,
                 top=args.top, optimal=args.optimal, split=args.split, reduce=args.reduce,
                 history=loaded.history, steps=args.steps, start=args.start, blur=args.blur)
    for path in paths:
        print(path)
    if (Path(args.run_dir) / "report.html").is_file():
        print(write_report(args.run_dir))
    return 0
