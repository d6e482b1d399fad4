"""A bundled recipe run as a user runs it, start to finish: `visionnets train RECIPE`, wall time
of the whole command (imports, data, training, evaluation, figures and report) and test error,
for several seeds (issue 16: `mnist_convnet` to <= 0.5 % test error in <= 120 s on 2 cores).

    flock /tmp/vn-heavy.lock .venv/bin/python benchmarks/recipe_budget.py mnist_convnet --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import data_dir, table, write_json


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--data", default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe overrides")
    ap.add_argument("--budget-s", type=float, default=120.0)
    ap.add_argument("--target-error", type=float, default=0.005)
    ap.add_argument("--out", default=None, help="JSON name under benchmarks/results/ (default recipe_budget_RECIPE)")
    args = ap.parse_args(argv)
    exe = Path(sys.executable).with_name("visionnets")
    rows = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run"
            cmd = [str(exe), "train", args.recipe, "--data-dir", data_dir(args.data), "--out", str(out),
                   "--set", f"seed={seed}", *[a for s in args.set for a in ("--set", s)]]
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            res = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if res.returncode != 0:
                raise SystemExit(f"recipe_budget: {' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
            hist = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
            best = min(hist, key=lambda r: (r["val_error"], r["epoch"])) if hist[0].get("val_error") is not None else hist[-1]
            rows.append({"seed": seed, "wall_s": wall, "test_error": best["test_error"], "best_epoch": best["epoch"],
                         "epochs": len(hist), "train_seconds": sum(r["train_seconds"] for r in hist),
                         "threads": hist[-1]["executor"].get("threads"), "loadavg_1min_before": load})
            print(rows[-1], flush=True)
    print(table(rows, ["seed", "wall_s", "test_error", "best_epoch", "epochs", "train_seconds", "threads"]))
    summary = {"wall_s_mean": statistics.mean(r["wall_s"] for r in rows), "wall_s_max": max(r["wall_s"] for r in rows),
               "test_error_mean": statistics.mean(r["test_error"] for r in rows),
               "test_error_max": max(r["test_error"] for r in rows)}
    summary["met"] = summary["wall_s_max"] <= args.budget_s and summary["test_error_max"] <= args.target_error
    print(summary)
    path = write_json(args.out or f"recipe_budget_{args.recipe}", {"benchmark": "recipe_budget", "recipe": args.recipe,
                                                       "overrides": args.set, "budget_s": args.budget_s,
                                                       "target_error": args.target_error, "rows": rows, **summary})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
