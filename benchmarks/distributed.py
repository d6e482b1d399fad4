"""Downpour SGD (1, 2, 4 replicas) and synchronous DDP on MNIST: test error, speed, staleness.

Every configuration trains the same convnet recipe for the same number of epochs (examples)
and logs, per epoch, the test error against the examples seen and the wall time since the
executor started (process or actor start-up included). Throughput is the examples/s between the first and the last
epoch boundary (start-up excluded, per-epoch evaluation included); efficiency(R) = throughput(R) / (R x throughput(1)), against the one-replica
Downpour run of the same script. Staleness (shard versions behind at each push) comes from the
shards' histograms. Writes benchmarks/results/distributed.json.

    flock /tmp/vn-heavy.lock python benchmarks/distributed.py [--epochs 4] [--data-dir DIR]
    python benchmarks/distributed.py --quick      # 2,000 images, 1 epoch: a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from _common import RESULTS, data_dir, table, write_json
from visionnets import api
from visionnets.distributed.cluster import start_ray
from visionnets.models import count_parameters

# The bundled mnist_convnet with half the filters and a 128-unit hidden layer (4x fewer
# multiply-adds): what fits the CPU budget of this benchmark on a 2-core machine.
SMALLER = ["model.stages=[{layer: conv, channels: 16, kernel: 5, padding: same, rectify: relu, pool: max, pool_size: 2},"
           "{layer: conv, channels: 32, kernel: 5, padding: same, rectify: relu, pool: max, pool_size: 2}]",
           "model.hidden=[128]", "model.dropout=0.25", "train.batch_size=64"]


def summarize(name: str, executor: str, n: int, result, total_wall: float) -> dict:
    h = result.history
    wall = [r["wall_s"] for r in h]          # since the executor started its processes / actors
    seen = [r["examples_seen"] for r in h]
    # epochs after the first: no start-up; evaluation included for every executor
    throughput = (seen[-1] - seen[0]) / (wall[-1] - wall[0]) if len(h) > 1 else seen[0] / wall[0]
    last = h[-1]
    row = {"config": name, "executor": executor, "parallel": n, "epochs": last["epoch"],
           "test_error_pct": round(100 * last["test_error"], 3),
           "best_test_error_pct": round(100 * min(r["test_error"] for r in h), 3),
           "wall_s": round(total_wall, 1), "throughput_ex_s": round(throughput, 1),
           "curve": [{"epoch": r["epoch"], "examples_seen": seen[i], "wall_s": round(wall[i], 2),
                      "test_error_pct": round(100 * r["test_error"], 3), "train_loss": round(r["train_loss"], 5)}
                     for i, r in enumerate(h)]}
    if executor == "downpour":
        stats = last["executor"]
        row.update({k: stats[f"total_staleness_{k}"] for k in ("mean", "p50", "p95", "max")})
        row.update({"replica_failures": stats["replica_failures"], "shard_failures": stats["shard_failures"]})
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--replicas", type=int, nargs="+", default=[4, 1, 2])
    ap.add_argument("--ddp-workers", type=int, nargs="*", default=[2])
    ap.add_argument("--ps-shards", type=int, default=2)
    ap.add_argument("--runs", default="runs/bench-distributed")
    ap.add_argument("--quick", action="store_true", help="2,000 training images, 1 epoch (smoke test)")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--label", default="", help="appended to the config names of this invocation")
    ap.add_argument("--merge", action="store_true",
                    help="keep the rows of the existing JSON (other configs) and add this invocation's")
    args = ap.parse_args(argv)
    overrides = SMALLER + [f"train.epochs={args.epochs if not args.quick else 2}"] + args.overrides
    if args.quick:
        overrides += ["data.options={subsample: 2000}"]
    root = data_dir(args.data_dir)
    name = "distributed_quick" if args.quick else "distributed"
    # the acceptance run first; results are written after every run (a cut-short run keeps them)
    configs = [("downpour", r) for r in args.replicas] + [("ddp", w) for w in args.ddp_workers]
    rows: list[dict] = []
    previous = RESULTS / f"{name}.json"
    if args.merge and previous.is_file():
        old = json.loads(previous.read_text())
        rows = [{"overrides": old.get("overrides"), **row} for row in old["rows"]]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    ray = started = None
    for executor, n in configs:
        if executor == "downpour" and ray is None:
            ray, started = start_ray(num_cpus=max(max(args.replicas), os.cpu_count() or 1))
        if executor == "ddp" and started:
            ray.shutdown()
            started = False
        t0 = time.perf_counter()
        if executor == "downpour":
            res = api.train("mnist_convnet", overrides, executor="downpour", data_dir=root,
                            out=Path(args.runs) / f"downpour-R{n}-{stamp}", replicas=n,
                            ps_shards=args.ps_shards, n_fetch=1, n_push=1, progress=True, figures=False)
            config = f"downpour R={n} S={args.ps_shards}{args.label}"
        else:
            res = api.train("mnist_convnet", overrides, executor="ddp", data_dir=root,
                            out=Path(args.runs) / f"ddp-W{n}-{stamp}", workers=n, progress=True, figures=False)
            config = f"ddp W={n}{args.label}"
        rows = [row for row in rows if row["config"] != config]
        rows.append({**summarize(config, executor, n, res, time.perf_counter() - t0), "overrides": overrides})
        report(rows, name, overrides, count_parameters(res.model), args.ps_shards)
    if started:
        ray.shutdown()


def report(rows: list[dict], name: str, overrides: list[str], params: int, shards: int) -> None:
    base = next((row["throughput_ex_s"] for row in rows if row["executor"] == "downpour" and row["parallel"] == 1), None)
    for row in rows:
        row["efficiency"] = None if base is None else round(row["throughput_ex_s"] / (row["parallel"] * base), 3)
    cols = ["config", "epochs", "test_error_pct", "best_test_error_pct", "wall_s", "throughput_ex_s", "efficiency",
            "mean", "p50", "p95", "max"]
    print(table(rows, cols), file=sys.stderr)
    curves = [{"config": row["config"], **c} for row in rows for c in row["curve"]]
    print(table(curves, ["config", "epoch", "examples_seen", "wall_s", "test_error_pct"]), file=sys.stderr)
    path = write_json(name, {"recipe": "mnist_convnet", "overrides": rows[0]["overrides"], "parameters": params,
                             "ps_shards": shards, "n_fetch": 1, "n_push": 1, "rows": rows,
                             "note": "staleness columns (mean, p50, p95, max): shard versions behind at push "
                                     "time, over all pushes of the run; efficiency = throughput / (parallel x "
                                     "throughput of downpour R=1)"})
    print(f"wrote {path}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
