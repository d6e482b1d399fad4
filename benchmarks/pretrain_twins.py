"""A pretrained net against its twin from random initialization: the same recipe, net, data and
fine-tuning, with and without its ``pretrain:`` section (the tutorial's "(pre-trained)" rows).

Default pair: ``mnist_convnet_pretrained`` (both convolutional stages first trained without
labels, each reconstructing its own input from a sparse L2-pooled code, greedily) against
``mnist_convnet`` (the same recipe, random initialization). Each seed trains both through
``visionnets.api.train`` and records the test error of the last epoch, the pretraining and
fine-tuning seconds; rows accumulate in ``benchmarks/results/pretrain_twins_<recipe>.json``
across invocations (seeds can be run one at a time), with mean and range per arm.

``--frozen MODULE ...`` adds a third arm, Le et al.'s (2012) linear classifier on the frozen
unsupervised features: the same pretraining, then ``train.freeze`` on those modules, so that only
the classifier on top trains (their ImageNet row: 15.8 % from unsupervised init, 13.6 % from
random, 13.1 % for the linear classifier on the features).

    python benchmarks/pretrain_twins.py --seeds 0 1 2 [--recipe mnist_convnet_pretrained] [--data-dir DIR]
    python benchmarks/pretrain_twins.py --recipe le2012_cifar --frozen stage1 stage2 stage3 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import RESULTS, data_dir, table, write_json
from visionnets import api


def run(recipe: str, overrides: list[str], root: str, out: Path) -> dict:
    t0 = time.perf_counter()
    r = api.train(recipe, overrides, data_dir=root, out=out, progress=False, figures=False)
    wall = time.perf_counter() - t0
    pre = out / "pretrain.json"
    pre_s = json.loads(pre.read_text())["seconds"] if pre.exists() else 0.0
    return {"test_error_pct": round(100 * r.history[-1]["test_error"], 3), "epochs": r.history[-1]["epoch"],
            "pretrain_s": round(pre_s, 1), "wall_s": round(wall, 1)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="mnist_convnet_pretrained", help="a recipe with a pretrain: section")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="a recipe override for both arms")
    ap.add_argument("--frozen", nargs="+", metavar="MODULE", default=[],
                    help="add the arm of a linear classifier on these frozen, pretrained modules")
    ap.add_argument("--data-dir")
    args = ap.parse_args(argv)
    arms = [("pretrained", []), ("random init", ["pretrain=null"])]
    if args.frozen:
        arms.append(("frozen features", [f"train.freeze=[{', '.join(args.frozen)}]"]))
    name = f"pretrain_twins_{args.recipe}" + ("_with_overrides" if args.overrides else "")
    prev = RESULTS / f"{name}.json"
    rows = json.loads(prev.read_text())["rows"] if prev.exists() else []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for arm, extra in arms:
                row = {"arm": arm, "seed": seed, **run(args.recipe, [f"seed={seed}", *args.overrides, *extra],
                                                       data_dir(args.data_dir), Path(tmp) / f"{arm}-{seed}")}
                rows = [r for r in rows if (r["arm"], r["seed"]) != (arm, seed)] + [row]
                summary = []
                for a, _ in arms:
                    errs = [r["test_error_pct"] for r in rows if r["arm"] == a]
                    if errs:
                        summary.append({"arm": a, "seeds": len(errs), "test_error_pct": round(statistics.mean(errs), 3),
                                        "test_error_range": f"{min(errs):.2f}-{max(errs):.2f}"})
                print(table(summary, list(summary[0])), file=sys.stderr, flush=True)
                write_json(name, {"recipe": args.recipe, "overrides": args.overrides, "rows": rows, "summary": summary})
    print(f"wrote {RESULTS / (name + '.json')}")


if __name__ == "__main__":
    main()
