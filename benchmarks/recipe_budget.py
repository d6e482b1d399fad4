"""A bundled recipe run as a user runs it, start to finish: `visionnets train RECIPE`, wall time
of the whole command (imports, data, training, evaluation, figures and report) and test error,
for several seeds (issue 16: `mnist_convnet` to <= 0.5 % test error in <= 120 s on 2 cores).

``--versus KEY=VALUE ...`` also runs every seed with those overrides added, alternating which
variant goes first from seed to seed, so that the two can be compared on a machine whose speed
drifts (the rows and a summary per variant; ``wall_ratio`` = versus / base, seed by seed).

    flock /tmp/vn-heavy.lock .venv/bin/python benchmarks/recipe_budget.py mnist_convnet --seeds 0 1 2
    flock /tmp/vn-heavy.lock .venv/bin/python benchmarks/recipe_budget.py mnist_convnet \\
        --versus train.eval_batch_size=256 train.eval_test_each_epoch=false --out recipe_budget_eval_ab
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


def run_once(exe: Path, recipe: str, seed: int, overrides: list[str], data: str) -> dict:
    """``visionnets train`` in a fresh process: its wall time and its best-validation epoch."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [str(exe), "train", recipe, "--data-dir", data, "--out", str(out),
               "--set", f"seed={seed}", *[a for s in overrides for a in ("--set", s)]]
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if res.returncode != 0:
            raise SystemExit(f"recipe_budget: {' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
        hist = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    best = min(hist, key=lambda r: (r["val_error"], r["epoch"])) if hist[0].get("val_error") is not None else hist[-1]
    return {"seed": seed, "wall_s": wall, "test_error": best["test_error"], "best_epoch": best["epoch"],
            "epochs": len(hist), "train_seconds": sum(r["train_seconds"] for r in hist),
            "threads": hist[-1]["executor"].get("threads"), "loadavg_1min_before": load}


def summarize(rows: list[dict], budget_s: float, target: float) -> dict:
    out = {"wall_s_mean": statistics.mean(r["wall_s"] for r in rows), "wall_s_max": max(r["wall_s"] for r in rows),
           "test_error_mean": statistics.mean(r["test_error"] for r in rows),
           "test_error_max": max(r["test_error"] for r in rows)}
    out["met"] = out["wall_s_max"] <= budget_s and out["test_error_max"] <= target
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--data", default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe overrides")
    ap.add_argument("--versus", nargs="+", default=None, metavar="KEY=VALUE",
                    help="also run every seed with these overrides added, alternating the order")
    ap.add_argument("--budget-s", type=float, default=120.0)
    ap.add_argument("--target-error", type=float, default=0.005)
    ap.add_argument("--out", default=None, help="JSON name under benchmarks/results/ (default recipe_budget_RECIPE)")
    args = ap.parse_args(argv)
    exe = Path(sys.executable).with_name("visionnets")
    variants = {"base": args.set, **({"versus": args.set + args.versus} if args.versus else {})}
    rows: dict[str, list[dict]] = {name: [] for name in variants}
    for i, seed in enumerate(args.seeds):
        names = list(variants) if i % 2 == 0 else list(variants)[::-1]
        for name in names:
            rows[name].append({"variant": name, **run_once(exe, args.recipe, seed, variants[name], data_dir(args.data))})
            print(rows[name][-1], flush=True)
    cols = ["variant", "seed", "wall_s", "test_error", "best_epoch", "epochs", "train_seconds", "threads"]
    print(table([r for name in variants for r in rows[name]], cols))
    payload = {"benchmark": "recipe_budget", "recipe": args.recipe, "overrides": args.set, "budget_s": args.budget_s,
               "target_error": args.target_error, "rows": rows["base"], **summarize(rows["base"], args.budget_s,
                                                                                     args.target_error)}
    if args.versus:
        payload["versus"] = {"overrides": args.versus, "rows": rows["versus"],
                             **summarize(rows["versus"], args.budget_s, args.target_error),
                             "wall_ratio": [v["wall_s"] / b["wall_s"] for b, v in zip(rows["base"], rows["versus"])]}
    print({k: v for k, v in payload.items() if k != "rows" and k != "versus"})
    if args.versus:
        print({k: v for k, v in payload["versus"].items() if k != "rows"})
    path = write_json(args.out or f"recipe_budget_{args.recipe}", payload)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
