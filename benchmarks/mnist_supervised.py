"""The tutorial's supervised MNIST rows, trained from the bundled recipes on full MNIST.

For each recipe: test error (of the best-validation epoch), wall time, examples/s on this
machine, parameter count, the date of the run; side by side with the tutorial's number. Writes
benchmarks/results/mnist_supervised.json (merging with earlier rows of other recipes, each
row keeping its own date).

    python benchmarks/mnist_supervised.py [--recipes mnist_linear mnist_mlp800 ...] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _common import RESULTS, data_dir, table, write_json
from visionnets import api
from visionnets.models import count_parameters

TUTORIAL = {"mnist_linear": 12.0, "mnist_logistic": 12.0, "mnist_mlp800": 1.6, "mnist_convnet": 0.6,
            "mnist_lc": None, "cosine": None}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", nargs="+", default=["mnist_linear", "mnist_logistic", "mnist_mlp800", "mnist_convnet"])
    ap.add_argument("--data-dir")
    ap.add_argument("--runs", default="runs/bench", help="where the run directories go")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args(argv)
    prev = RESULTS / "mnist_supervised.json"
    rows = {r["recipe"]: r for r in json.loads(prev.read_text())["rows"]} if prev.exists() else {}
    for name in args.recipes:
        out = Path(args.runs) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        t0 = time.perf_counter()
        res = api.train(name, args.overrides, data_dir=data_dir(args.data_dir), out=out)
        wall = time.perf_counter() - t0
        f = res.final
        n_train = len(res.dataset.train)
        rows[name] = {
            "recipe": name, "tutorial_error_pct": TUTORIAL.get(name),
            "test_error_pct": None if f.get("test_error") is None else round(100 * f["test_error"], 3),
            "test_loss": f.get("test_loss"), "best_epoch": f["best_epoch"], "epochs_run": f["epochs_run"],
            "wall_s": round(wall, 1), "train_s": round(f["train_seconds_total"], 1),
            "examples_per_s": round(n_train * f["epochs_run"] / f["train_seconds_total"], 1),
            "parameters": count_parameters(res.model), "overrides": args.overrides,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),    # rows of other recipes are kept from earlier runs
            "history": res.history,
        }
    cols = ["recipe", "tutorial_error_pct", "test_error_pct", "best_epoch", "epochs_run", "wall_s",
            "examples_per_s", "parameters", "date"]
    ordered = list(rows.values())
    print(table(ordered, cols), file=sys.stderr)
    print(f"wrote {write_json('mnist_supervised', {'rows': ordered})}", file=sys.stderr)


if __name__ == "__main__":
    main()
