"""What a recipe's model needs: parameters, memory and FLOPs per example, without allocating it.

    visionnets plan le2012                  # the 1-billion-parameter network of Le et al. (2012)
    visionnets plan mnist_convnet --json
    visionnets plan my.yaml --input-shape 3 64 64 --outputs 10

The input shape comes from --input-shape, the recipe's data.input_shape, or its data (loaded).
"""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe file or bundled recipe name")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key (repeatable)")
    p.add_argument("--input-shape", type=int, nargs="+", metavar="N", help="one input's shape, e.g. 1 200 200")
    p.add_argument("--outputs", type=int, metavar="K", help="the model's outputs (classes); default: the data's")
    p.add_argument("--data-dir", help="dataset root, when the data must be loaded for its shape")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from visionnets.train.plan import plan, render

    report = plan(args.recipe, args.overrides, data_dir=args.data_dir,
                  input_shape=tuple(args.input_shape) if args.input_shape else None, num_outputs=args.outputs)
    print(json.dumps(report, indent=1) if args.json else render(report))
    return 0
