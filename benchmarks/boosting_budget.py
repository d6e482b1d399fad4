"""AdaBoost.MH rows of the MNIST table on a time budget: as many rounds as fit, their curves.

For each method (``boosted_stumps``, ``product_stumps``, ``haar_stumps`` of
``visionnets.baselines``), a short fit of ``--calibrate`` rounds measures the seconds per round
on this machine (CUDA when present: the estimators run their histograms on the GPU); the
method then trains for as many rounds as ``--budget`` seconds allow (at most ``--max-rounds``),
through the comparison's own code (:func:`visionnets.baselines.compare.run_baseline`), which
records the test error after every round. From the last half of each curve a power law
(error ~ c rounds^b, least squares in log-log) gives the rounds the tutorial's error would
need. Writes benchmarks/results/<--out>.json and the curves as <--out>_rounds.png.

    python benchmarks/boosting_budget.py --data-dir ../shared/data --budget 120
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from _common import RESULTS, data_dir, table, write_json
from visionnets.baselines.compare import load_arrays, run_baseline
from visionnets.baselines.methods import BASELINES
from visionnets.viz.compare import plot_error_by_round


def extrapolate(curve: list[float], target: float) -> dict:
    """Power law through the last half of the curve; the rounds where it reaches ``target``."""
    t = np.arange(1, len(curve) + 1)
    half = slice(len(curve) // 2, None)
    b, log_c = np.polyfit(np.log(t[half]), np.log(np.maximum(curve, 1e-9)[half]), 1)
    reached = next((int(i + 1) for i, e in enumerate(curve) if e <= target), None)
    rounds = reached or (math.exp((math.log(target) - log_c) / b) if b < 0 else None)
    return {"slope": float(b), "rounds_to_tutorial": rounds, "reached": reached is not None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir")
    p.add_argument("--methods", nargs="+", default=["boosted_stumps", "product_stumps", "haar_stumps"])
    p.add_argument("--budget", type=float, default=120.0, help="seconds of training per method")
    p.add_argument("--calibrate", type=int, default=10, help="rounds of the timing fits (c and 2c rounds)")
    p.add_argument("--rounds", action="append", default=[], metavar="METHOD=N",
                   help="train METHOD for N rounds (no timing fit; repeatable)")
    p.add_argument("--keep", action="store_true",
                   help="keep the rows of other methods already in the output JSON")
    p.add_argument("--max-rounds", type=int, default=20000)
    p.add_argument("--subsample", type=int, help="training images (default all)")
    p.add_argument("--out", default="boosting_budget")
    a = p.parse_args()
    _, train, test = load_arrays("mnist", data_dir(a.data_dir), a.subsample)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    rows, out_rows = [], []
    fixed = {k: int(v) for k, v in (item.split("=", 1) for item in a.rounds)}
    for name in a.methods:
        if name in fixed:
            rounds, per_round, setup = fixed[name], None, None
        else:
            seconds = []
            for n in (a.calibrate, 2 * a.calibrate):        # the difference: per round, warm-up and setup excluded
                t0 = time.perf_counter()
                BASELINES.build(name, {"n_rounds": n}, where=name).fit(*train)
                seconds.append(time.perf_counter() - t0)
            per_round = max((seconds[1] - seconds[0]) / a.calibrate, 1e-6)
            setup = seconds[0] - per_round * a.calibrate
            rounds = max(a.calibrate, min(a.max_rounds, int(a.budget / per_round)))
        row = run_baseline(name, train, test, {"n_rounds": rounds})
        curve = row.extra["error_by_round"]
        fit = extrapolate(curve, row.tutorial_error)
        rows.append(row)
        out_rows.append({"method": name, "label": row.label, "rounds": len(curve), "error": row.error,
                         "tutorial_error": row.tutorial_error, "train_seconds": row.train_seconds,
                         "seconds_per_round": row.extra["seconds_per_round"], "setup_seconds": setup,
                         "budget_seconds": None if name in fixed else a.budget,
                         "error_at": {str(r): curve[r - 1] for r in (10, 100, 1000, 5000, 10000, 20000)
                                      if r <= len(curve)},
                         **fit, "error_by_round": curve, "params": row.params})
        print(f"{name}: {len(curve)} rounds, {row.error:.2f} % in {row.train_seconds:.0f} s", flush=True)
    print(f"device: {device}")
    print(table(out_rows, ["method", "rounds", "error", "tutorial_error", "train_seconds", "seconds_per_round",
                           "slope", "rounds_to_tutorial"]))
    if a.keep and (RESULTS / f"{a.out}.json").is_file():
        import json
        from types import SimpleNamespace

        old = json.loads((RESULTS / f"{a.out}.json").read_text())["rows"]
        kept = [r for r in old if r["method"] not in a.methods]
        out_rows = kept + out_rows
        rows = [SimpleNamespace(label=r["label"], tutorial_error=r["tutorial_error"],      # what the plot reads
                                extra={"error_by_round": r["error_by_round"]}) for r in kept] + rows
    path = write_json(a.out, {"device": device, "n_train": len(train[0]), "rows": out_rows,
                              "command": "python benchmarks/boosting_budget.py " + " ".join(__import__("sys").argv[1:])})
    plot_error_by_round(RESULTS / f"{a.out}_rounds.png", rows)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
