"""RBM defaults on small data: visionnets' RBM() against scikit-learn's BernoulliRBM(), both as shipped.

scikit-learn's digits (``load_digits``, pixels / 16 in [0, 1]), one stratified 80/20 split per
``--splits`` seed; each learner with its default settings (and ``random_state``) feeds a
``LogisticRegression(max_iter=2000)`` in a Pipeline, and the test accuracy is reported as mean,
min and max over ``--seeds``, with the learner's own fit time. A third row keeps visionnets' old
defaults (batches of 64, 10 epochs) for reference.

Then, so that the small-data defaults do not cost speed on MNIST, one epoch on the 60,000 MNIST
training images with ``RBM()`` (its "auto" batch size) against ``RBM(batch_size=64)`` (the old
default), alternating, best of ``--reps`` (skipped with ``--reps 0`` or without the data).

Both sides run with ``--threads`` threads (torch.set_num_threads and threadpoolctl for numpy's
BLAS; default 1: on a shared machine multi-threaded timings are noise).

    .venv/bin/python benchmarks/rbm_defaults.py [--seeds 0 1 2] [--splits 0] [--reps 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from _common import data_dir, table, write_json
from visionnets.unsupervised import RBM
from visionnets.unsupervised.rbm import auto_schedule

OLD_DEFAULTS = dict(batch_size=64, n_epochs=10)


def digits_rows(seeds: list[int], splits: list[int]) -> list[dict]:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import BernoulliRBM
    from sklearn.pipeline import Pipeline

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    learners = {"visionnets RBM()": lambda s: RBM(random_state=s),
                "sklearn BernoulliRBM()": lambda s: BernoulliRBM(random_state=s),
                "visionnets RBM(batch_size=64, n_epochs=10) (old defaults)": lambda s: RBM(random_state=s, **OLD_DEFAULTS)}
    runs = {name: [] for name in learners}
    for split in splits:
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=split, stratify=y)
        for seed in seeds:
            for name, make in learners.items():   # interleaved: a load spike hits every learner alike
                # what Pipeline([("rbm", ...), ("clf", ...)]).fit does, with the RBM's fit timed alone
                rbm = make(seed)
                t0 = time.perf_counter()
                rbm.fit(Xtr)
                fit_s = time.perf_counter() - t0
                clf = LogisticRegression(max_iter=2000).fit(rbm.transform(Xtr), ytr)
                pipe = Pipeline([("rbm", rbm), ("clf", clf)])
                runs[name].append({"split": split, "seed": seed, "accuracy": 100 * pipe.score(Xte, yte),
                                   "rbm_fit_s": fit_s})
    rows = []
    for name, rs in runs.items():
        acc = [r["accuracy"] for r in rs]
        rows.append({"learner": name, "accuracy_mean": statistics.mean(acc), "accuracy_min": min(acc),
                     "accuracy_max": max(acc), "accuracy_std": statistics.pstdev(acc),
                     "rbm_fit_s_mean": statistics.mean(r["rbm_fit_s"] for r in rs), "runs": rs})
    return rows


def mnist_epoch(root: Path, reps: int) -> dict | None:
    from visionnets.data.mnist import read_mnist_pair

    images, labels = root / "mnist" / "train-images-idx3-ubyte.gz", root / "mnist" / "train-labels-idx1-ubyte.gz"
    if reps < 1 or not images.exists():
        return None
    X = read_mnist_pair(images, labels)[0].reshape(-1, 784).astype(np.float32) / 255.0
    times = {"RBM()": [], "RBM(batch_size=64)": []}
    for rep in range(reps):
        order = list(times) if rep % 2 == 0 else list(times)[::-1]
        for name in order:
            rbm = (RBM(random_state=0) if name == "RBM()" else RBM(random_state=0, batch_size=64)).initialize(X)
            t0 = time.perf_counter()
            rbm.partial_fit(X)
            times[name].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    return {"rows": len(X), "auto_batch_size, auto_n_epochs": auto_schedule(len(X)), "epoch_s": times,
            "best_epoch_s": best, "ratio_new_over_old": best["RBM()"] / best["RBM(batch_size=64)"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--splits", type=int, nargs="+", default=[0])
    ap.add_argument("--reps", type=int, default=3, help="MNIST epochs timed per setting (0: skip)")
    ap.add_argument("--data", default=None, help="data root holding mnist/ (default: $VISIONNETS_DATA or ../shared/data)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="rbm_defaults")
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    with threadpool_limits(limits=args.threads):
        rows = digits_rows(args.seeds, args.splits)
        mnist = mnist_epoch(Path(data_dir(args.data)), args.reps)
    load_after = os.getloadavg()[0]
    cols = ["learner", "accuracy_mean", "accuracy_min", "accuracy_max", "accuracy_std", "rbm_fit_s_mean"]
    print(f"digits pipeline (RBM -> LogisticRegression), test accuracy %, seeds {args.seeds}, splits {args.splits}")
    print(table(rows, cols))
    if mnist:
        print(f"MNIST ({mnist['rows']} rows), one epoch, best of {args.reps}: "
              + ", ".join(f"{k} {v:.2f} s" for k, v in mnist["best_epoch_s"].items())
              + f"; ratio {mnist['ratio_new_over_old']:.3f}")
    path = write_json(args.out, {
        "benchmark": "rbm_defaults",
        "data": "sklearn load_digits / 16, stratified 80/20 split (random_state = split), 1,437 train / 360 test",
        "classifier": "LogisticRegression(max_iter=2000)", "seeds": args.seeds, "splits": args.splits,
        "threads": args.threads, "load_avg_1min": [load_before, load_after],
        "rows": rows, "mnist_epoch": mnist})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
