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
import os
import sys
import time
from pathlib import Path

from _common import data_dir, table, write_json
from visionnets.distributed import train_distributed
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
        row.update({k: last[f"total_staleness_{k}"] for k in ("mean", "p50", "p95", "max")})
        row.update({"replica_failures": last["replica_failures"], "shard_failures": last["shard_failures"]})
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--ddp-workers", type=int, nargs="+", default=[2])
    ap.add_argument("--ps-shards", type=int, default=2)
    ap.add_argument("--runs", default="runs/bench-distributed")
    ap.add_argument("--quick", action="store_true", help="2,000 training images, 1 epoch (smoke test)")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args(argv)
    overrides = SMALLER + [f"train.epochs={args.epochs if not args.quick else 2}"] + args.overrides
    if args.quick:
        overrides += ["data.options={subsample: 2000}"]
    root = data_dir(args.data_dir)
    ray, started = start_ray(num_cpus=max(max(args.replicas), os.cpu_count() or 1))
    rows = []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        for r in args.replicas:
            t0 = time.perf_counter()
            res = train_distributed("downpour", "mnist_convnet", overrides, data_dir=root,
                                    out=Path(args.runs) / f"downpour-R{r}-{stamp}", replicas=r,
                                    ps_shards=args.ps_shards, n_fetch=1, n_push=1, progress=True, figures=False)
            rows.append(summarize(f"downpour R={r} S={args.ps_shards}", "downpour", r, res, time.perf_counter() - t0))
            params = count_parameters(res.model)
            print(table(rows[-1:], ["config", "test_error_pct", "wall_s", "throughput_ex_s", "mean", "p95", "max"]),
                  file=sys.stderr, flush=True)
    finally:
        if started:
            ray.shutdown()
    for w in args.ddp_workers:
        t0 = time.perf_counter()
        res = train_distributed("ddp", "mnist_convnet", overrides, data_dir=root,
                                out=Path(args.runs) / f"ddp-W{w}-{stamp}", workers=w, progress=True, figures=False)
        rows.append(summarize(f"ddp W={w}", "ddp", w, res, time.perf_counter() - t0))
    base = next((row["throughput_ex_s"] for row in rows if row["executor"] == "downpour" and row["parallel"] == 1), None)
    for row in rows:
        row["efficiency"] = None if base is None else round(row["throughput_ex_s"] / (row["parallel"] * base), 3)
    cols = ["config", "epochs", "test_error_pct", "best_test_error_pct", "wall_s", "throughput_ex_s", "efficiency",
            "mean", "p50", "p95", "max"]
    print(table(rows, cols), file=sys.stderr)
    curves = [{"config": row["config"], **c} for row in rows for c in row["curve"]]
    print(table(curves, ["config", "epoch", "examples_seen", "wall_s", "test_error_pct"]), file=sys.stderr)
    name = "distributed_quick" if args.quick else "distributed"
    path = write_json(name, {"recipe": "mnist_convnet", "overrides": overrides, "parameters": params,
                             "ps_shards": args.ps_shards, "n_fetch": 1, "n_push": 1, "rows": rows,
                             "note": "staleness columns: shard versions behind at push time, over all pushes"})
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
