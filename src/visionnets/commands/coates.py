"""The single-layer feature pipeline of Coates, Lee & Ng (AISTATS 2011) on CIFAR-10, end to end.

    visionnets coates --data-dir DATA                                  # k-means (triangle), K=1600, full protocol
    visionnets coates --learners kmeans rbm sparse_autoencoder rica --n-features 1600
    visionnets coates --n-train 5000 --n-patches 50000 --n-features 200   # a quick look (~1 min)
    visionnets coates --learners rbm --option n_epochs=10 --C 10 100

6x6 patches -> contrast normalization + ZCA -> the feature learner (K filters) -> every 6x6
patch of every image encoded, sum-pooled over the 4 quadrants (4K features) -> standardized ->
L2-SVM, its C chosen on a held-out 10 % of the training images when --C has several values.
Prints one row per learner and writes OUT/coates.json and OUT/coates_<learner>_filters.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from visionnets.errors import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    from visionnets.unsupervised.coates import LEARNERS

    p.add_argument("--learners", nargs="+", default=["kmeans"], choices=LEARNERS, help="feature learners (default: kmeans)")
    p.add_argument("--n-features", type=int, default=1600, metavar="K", help="filters per learner (default: 1600)")
    p.add_argument("--n-train", type=int, metavar="N", help="random training images (default: all 50,000)")
    p.add_argument("--n-test", type=int, metavar="N", help="random test images (default: all 10,000)")
    p.add_argument("--n-patches", type=int, default=400_000, help="patches the learner sees (default: 400,000)")
    p.add_argument("--C", type=float, nargs="+", default=[10.0, 30.0, 100.0, 300.0, 1000.0],
                   help="the SVM's C, or several to choose from on 10%% of the training set (default: 10 30 100 300 1000)")
    p.add_argument("--classifier", choices=["l2svm", "logistic"], default="l2svm")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a hyper-parameter of the learner(s), e.g. n_epochs=10 (repeatable)")
    p.add_argument("--data-dir", help="dataset root (default: $VISIONNETS_DATA, then ~/.cache/visionnets)")
    p.add_argument("--out", default="coates", help="folder for coates.json and the filter pictures (default: coates)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--threads", type=int, metavar="N", help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)


def _options(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ConfigError(f"--option {item!r}: expected KEY=VALUE, e.g. n_epochs=10")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from visionnets.io import atomic_write_text
    from visionnets.unsupervised.coates import load_cifar10, run_coates

    if args.threads:
        torch.set_num_threads(args.threads)
    for name in ("n_features", "n_patches", "n_train", "n_test"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ConfigError(f"--{name.replace('_', '-')} {v}: expected a positive integer")
    params = _options(args.option)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = load_cifar10(args.data_dir)
    rows = []
    result = {"command": "visionnets coates " + " ".join(sys.argv[2:]), "data_source": data["source"],
              "data_lossy_jpeg": data["lossy"], "rows": rows}
    print(f"{'learner':20s} {'K':>5s} {'C':>6s} {'test %':>7s} {'train %':>8s} {'paper %':>8s} {'seconds':>8s}", flush=True)
    for name in args.learners:
        png = out / f"coates_{name}_filters.png"
        r = run_coates(name, args.n_features, data, n_patches=args.n_patches, n_train=args.n_train,
                       n_test=args.n_test, classifier=args.classifier,
                       C=args.C if len(args.C) > 1 else args.C[0], learner_params=params,
                       random_state=args.seed, device=args.device, verbose=True, filters_png=png)
        r["filters_png"] = str(png)
        rows.append(r)
        paper = r["paper_test_accuracy"]
        print(f"{name:20s} {r['n_features']:5d} {r['C']:6g} {r['test_accuracy']:7.2f} {r['train_accuracy']:8.2f} "
              f"{paper if paper else '-':>8} {r['seconds']['total']:8.0f}", flush=True)
        result["wall_seconds"] = time.perf_counter() - t0
        atomic_write_text(out / "coates.json", json.dumps(result, indent=2))
    if data["lossy"]:
        print("note: read the JPEG-decoded CIFAR-10 copy; accuracies differ slightly from the original files'")
    print(f"wrote {out / 'coates.json'}")
    return 0
