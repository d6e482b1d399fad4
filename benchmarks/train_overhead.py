"""Training-loop overhead: the visionnets Trainer against a minimal hand-written PyTorch loop.

Same model (an MLP with 800 hidden units, as mnist_mlp800), same data (MNIST-shaped tensors),
same batch size, same optimizer, same number of steps, in one process; the order of the two
runs alternates over repeats and the median ratio is reported. The Trainer runs as users run it:
progress bar on, metrics, a checkpoint written each epoch, test evaluation each epoch (the
plain loop evaluates too, so both do the same work apart from the loop's bookkeeping).
Both wall time and process CPU time are recorded; on a shared machine the CPU-time ratio is the
robust one (other processes inflate wall time, not this process's CPU time), so the verdict
uses the median CPU-time ratio.

    python benchmarks/train_overhead.py [--repeats 5] [--n 20000] [--epochs 2]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time

import torch

from _common import plain_epoch, table, write_json
from visionnets.data.base import Dataset, Split
from visionnets.models import build_model
from visionnets.objectives import Supervised
from visionnets.recipes import OptimizerSection
from visionnets.train.trainer import Trainer


def plain_loop(model, x, y, xt, yt, epochs, bs, lr):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for epoch in range(epochs):
        g = torch.Generator().manual_seed(epoch)
        plain_epoch(model, opt, x, y, torch.randperm(len(x), generator=g), bs)
        model.eval()
        with torch.no_grad():
            err = sum((model(xt[i:i + 1000]).argmax(1) != yt[i:i + 1000]).sum().item() for i in range(0, len(xt), 1000))
    return err / len(xt)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args(argv)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.n, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (args.n,), generator=g)
    xt, yt = x[:2000].clone(), y[:2000].clone()
    ds = Dataset("synthetic-mnist-shaped", Split(x, y), None, Split(xt, yt), (1, 28, 28), 10)
    torch.manual_seed(0)
    base = build_model({"name": "mlp", "hidden": [800]}, (1, 28, 28), 10)
    rows, ratios = [], []
    for rep in range(args.repeats):
        times, cpu = {}, {}
        for which in (("plain", "trainer") if rep % 2 == 0 else ("trainer", "plain")):
            model = copy.deepcopy(base)
            t0, c0 = time.perf_counter(), time.process_time()
            if which == "plain":
                plain_loop(model, x, y, xt, yt, args.epochs, args.batch_size, 0.05)
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    Trainer(model, Supervised(), ds, epochs=args.epochs, batch_size=args.batch_size,
                            optimizer=OptimizerSection(lr=0.05, momentum=0.9), run_dir=tmp,
                            progress=True).fit()
            times[which] = time.perf_counter() - t0
            cpu[which] = time.process_time() - c0
        ratios.append(cpu["trainer"] / cpu["plain"])
        rows.append({"repeat": rep, "plain_wall_s": times["plain"], "trainer_wall_s": times["trainer"],
                     "wall_ratio": times["trainer"] / times["plain"], "plain_cpu_s": cpu["plain"],
                     "trainer_cpu_s": cpu["trainer"], "cpu_ratio": ratios[-1]})
    print(table(rows, list(rows[0])), file=sys.stderr)
    med = statistics.median(ratios)
    med_wall = statistics.median(r["wall_ratio"] for r in rows)
    print(f"median Trainer / plain CPU time: {med:.3f} (target <= 1.05); wall: {med_wall:.3f}", file=sys.stderr)
    path = write_json("train_overhead", {"config": vars(args), "model": "mlp 784-800-10", "rows": rows,
                                         "median_cpu_ratio": med, "median_wall_ratio": med_wall,
                                         "target": 1.05, "pass": med <= 1.05})
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
