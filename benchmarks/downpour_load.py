"""Downpour on a busy machine: the same run quiet and with every core loaded by this session's processes.

CI jobs, notebooks and workstations share their cores. This script trains ``digits_convnet``
with ``--executor downpour`` (2 replicas, 2 epochs by default) once on a quiet machine and once
while one CPU-bound, normal-priority Python process per core runs, started by this script (so in
the same session, where Linux's niceness decides the shares), alternating the two conditions
``--repeats`` times, for each Ray worker niceness in ``--niceness`` (``RAY_worker_niceness``:
0 is what visionnets sets for a local Ray; 15 is Ray's own default, measured as the before). It reports the wall time of each run (``api.train`` from call to return:
Ray start-up, training, evaluation) and the ratio loaded / quiet, median over the repeats.
Writes benchmarks/results/downpour_load.json.

    python benchmarks/downpour_load.py [--repeats 2] [--epochs 2] [--replicas 2] [--niceness 15 0]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import table, write_json
from visionnets import api


def _spin() -> None:
    while True:
        pass


class Load:
    """``n`` CPU-bound processes at this process's priority, for the length of a ``with`` block."""

    def __init__(self, n: int):
        self.n, self.procs = n, []

    def __enter__(self) -> "Load":
        ctx = mp.get_context("spawn")
        self.procs = [ctx.Process(target=_spin, daemon=True) for _ in range(self.n)]
        for p in self.procs:
            p.start()
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.join()


def one_run(args, out: Path) -> dict:
    t0 = time.perf_counter()
    r = api.train("digits_convnet", [f"train.epochs={args.epochs}"], executor="downpour", replicas=args.replicas,
                  out=out, progress=False, figures=False)
    wall = time.perf_counter() - t0
    return {"wall_s": round(wall, 2), "train_wall_s": round(r.history[-1]["wall_s"], 2),
            "test_error_pct": round(100 * r.history[-1]["test_error"], 2),
            "staleness_mean": r.history[-1]["executor"]["total_staleness_mean"]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--niceness", type=int, nargs="+", default=[0], help="RAY_worker_niceness values to measure")
    ap.add_argument("--load", type=int, default=os.cpu_count() or 1, help="CPU-bound processes (default: one per core)")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for nice in args.niceness:
            os.environ["RAY_worker_niceness"] = str(nice)
            for rep in range(args.repeats):
                for loaded in (False, True):
                    out = Path(tmp) / f"{nice}-{rep}-{'loaded' if loaded else 'quiet'}"
                    if loaded:
                        with Load(args.load):
                            row = one_run(args, out)
                    else:
                        row = one_run(args, out)
                    rows.append({"worker_niceness": nice, "repeat": rep,
                                 "condition": "loaded" if loaded else "quiet", **row})
                    print(table(rows[-1:], list(rows[-1])), file=sys.stderr, flush=True)
    summary = {}
    for nice in args.niceness:
        quiet = [r["wall_s"] for r in rows if r["worker_niceness"] == nice and r["condition"] == "quiet"]
        loaded = [r["wall_s"] for r in rows if r["worker_niceness"] == nice and r["condition"] == "loaded"]
        ratios = [b / a for a, b in zip(quiet, loaded)]
        summary[f"niceness_{nice}"] = {"quiet_wall_s_median": statistics.median(quiet),
                                       "loaded_wall_s_median": statistics.median(loaded),
                                       "ratio_median": round(statistics.median(ratios), 3),
                                       "ratios": [round(x, 3) for x in ratios]}
        print(f"RAY_worker_niceness={nice}: loaded / quiet wall time: median "
              f"{summary[f'niceness_{nice}']['ratio_median']:.2f} (each: {summary[f'niceness_{nice}']['ratios']})")
    print(table(rows, ["worker_niceness", "repeat", "condition", "wall_s", "train_wall_s", "test_error_pct",
                       "staleness_mean"]))
    path = write_json("downpour_load", {"recipe": "digits_convnet", "epochs": args.epochs, "replicas": args.replicas,
                                        "load_processes": args.load, "target_ratio_at_most": 3.0, "rows": rows,
                                        "summary": summary})
    print(f"wrote {path}")

if __name__ == "__main__":
    main()
