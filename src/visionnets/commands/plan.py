"""What a recipe's model needs: parameters, memory and FLOPs per example, without allocating it,
and (with --machines) on M machines as R replicas of K model-parallel partitions.

    visionnets plan le2012                  # the 1-billion-parameter network of Le et al. (2012)
    visionnets plan mnist_convnet --json
    visionnets plan my.yaml --input-shape 3 64 64 --outputs 10
    visionnets plan le2012 --machines 1000 --replicas 5 --partitions 160   # what it needs on 1,000 machines

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
    g = p.add_argument_group("capacity (with --machines): R replicas of K model-parallel partitions")
    g.add_argument("--machines", type=int, metavar="M", help="machines available")
    g.add_argument("--replicas", type=int, default=1, metavar="R", help="data-parallel replicas (Downpour)")
    g.add_argument("--partitions", type=int, default=1, metavar="K", help="model-parallel workers per replica")
    g.add_argument("--flops", type=float, default=1e11, metavar="F", help="FLOP/s one machine achieves (1e11)")
    g.add_argument("--bandwidth", type=float, default=1.25e9, metavar="B", help="bytes/s of its network (1.25e9)")
    g.add_argument("--memory", type=float, default=64.0, metavar="GB", help="its memory in GB (64)")
    g.add_argument("--latency", type=float, default=5e-5, metavar="S", help="seconds per round of messages between computing workers (5e-5)")
    g.add_argument("--batch", type=int, help="examples per replica and step (default: the recipe's)")


def run(args: argparse.Namespace) -> int:
    from visionnets.train.plan import plan, render

    report = plan(args.recipe, args.overrides, data_dir=args.data_dir,
                  input_shape=tuple(args.input_shape) if args.input_shape else None, num_outputs=args.outputs)
    if args.machines is not None:
        from visionnets.train.plan import capacity, render_capacity

        report["capacity"] = capacity(report, args.machines, args.replicas, args.partitions, args.flops,
                                      args.bandwidth, args.memory, args.batch, latency=args.latency)
    print(json.dumps(report, indent=1) if args.json else render(report)
          + ("\n\n" + render_capacity(report["capacity"]) if "capacity" in report else ""))
    return 0
