"""Speed on a shared machine: visionnets' load-aware thread count against fixed counts (issue 16).

Three jobs, each timed with 1 thread, with all cores (torch's default) and with visionnets'
default (``visionnets.threads``: the cores that other processes leave free), first on a quiet
machine, then with this script's own load, one CPU-bound busy loop per core, running beside:

- ``rbm``: ``RBM(n_components=128).fit`` on scikit-learn's digits (its defaults otherwise);
- ``mlp``: one epoch of the Trainer, MLP 784-800-10, 10,000 random MNIST-shaped examples, batch 128;
- ``lc``: one epoch of the Trainer, a locally connected net (32 -> 64 maps, 5x5, 16x16 input,
  then a linear layer), 1,024 random examples, batch 64.

Rounds alternate the three settings; the median is kept. Acceptance: under load every job's
default time is at most 1.5x its 1-thread time; quiet, the default matches all cores.

    flock /tmp/vn-heavy.lock .venv/bin/python benchmarks/contention.py     # ~5 min on 2 cores
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time

import torch

from _common import table, write_json

SETTINGS = ("1 thread", "all cores", "visionnets default")


def _busy() -> None:
    n = 0
    while True:        # one core kept busy until the process is terminated
        n += 1


def _dataset(n: int, shape: tuple[int, ...]):
    from visionnets.data.base import Dataset, Split

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g)
    return Dataset("synthetic", Split(x, y), None, None, shape, 10)


def _trainer_epoch(model_fn, data, batch: int, threads: int | None) -> float:
    from visionnets.objectives import Supervised
    from visionnets.recipes import OptimizerSection
    from visionnets.train.trainer import Trainer

    torch.manual_seed(0)
    t = Trainer(model_fn(), Supervised(), data, epochs=1, batch_size=batch, progress=False, threads=threads,
                optimizer=OptimizerSection(lr=0.01, momentum=0.9), eval_test_each_epoch=False)
    t0 = time.perf_counter()
    t.fit()
    return time.perf_counter() - t0


def jobs():
    from sklearn.datasets import load_digits
    from torch import nn

    from visionnets.nn import Linear, LocallyConnected2d
    from visionnets.unsupervised import RBM

    digits = load_digits().data / 16
    mlp_data, lc_data = _dataset(10000, (1, 28, 28)), _dataset(1024, (32, 16, 16))

    def rbm(threads):
        t0 = time.perf_counter()
        RBM(n_components=128, random_state=0, device="cpu", n_threads=threads).fit(digits)
        return time.perf_counter() - t0

    def mlp(threads):
        return _trainer_epoch(lambda: nn.Sequential(nn.Flatten(), Linear(784, 800), nn.ReLU(), Linear(800, 10)),
                              mlp_data, 128, threads)

    def lc(threads):
        return _trainer_epoch(lambda: nn.Sequential(LocallyConnected2d(32, 64, 5, input_size=(16, 16)), nn.ReLU(),
                                                    nn.Flatten(), Linear(64 * 12 * 12, 10)), lc_data, 64, threads)
    return {"rbm": rbm, "mlp": mlp, "lc": lc}


def measure(job, cores: int, rounds: int) -> dict:
    counts = {"1 thread": 1, "all cores": cores, "visionnets default": None}
    job(1)                                            # warm-up: allocations, thread pools
    times: dict[str, list[float]] = {s: [] for s in SETTINGS}
    for r in range(rounds):
        for s in SETTINGS[r % 3:] + SETTINGS[:r % 3]:
            times[s].append(job(counts[s]))
    return {s: statistics.median(v) for s, v in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--load", type=int, default=None, help="busy processes (default: one per core)")
    ap.add_argument("--jobs", nargs="+", default=["rbm", "mlp", "lc"])
    args = ap.parse_args(argv)
    os.environ.pop("VISIONNETS_THREADS", None)      # the default policy, not a pinned count
    os.environ.pop("OMP_NUM_THREADS", None)
    cores = len(os.sched_getaffinity(0))
    n_load = args.load or cores
    all_jobs, rows = jobs(), []
    for loaded in (False, True):
        procs = [mp.Process(target=_busy, daemon=True) for _ in range(n_load if loaded else 0)]
        for p in procs:
            p.start()
        try:
            time.sleep(0.5 if procs else 0)
            for name in args.jobs:
                t = measure(all_jobs[name], cores, args.rounds)
                row = {"job": name, "load": n_load if loaded else 0, **{f"{s} s": v for s, v in t.items()},
                       "default / 1 thread": t["visionnets default"] / t["1 thread"],
                       "default / all cores": t["visionnets default"] / t["all cores"],
                       "all cores / 1 thread": t["all cores"] / t["1 thread"]}
                rows.append(row)
                print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.join()
    cols = ["job", "load", *[f"{s} s" for s in SETTINGS], "default / 1 thread", "default / all cores",
            "all cores / 1 thread"]
    print(table(rows, cols))
    loaded = [r for r in rows if r["load"]]
    ok = all(r["default / 1 thread"] <= 1.5 for r in loaded)
    print(f"under load, default <= 1.5x 1 thread for every job: {ok}")
    path = write_json("contention", {"benchmark": "contention", "cores": cores, "load_processes": n_load,
                                     "rounds": args.rounds, "rows": rows, "acceptance_met": ok})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
