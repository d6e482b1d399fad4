"""MNIST, the tutorial's "4 layer nnet (pre-trained)" row (1.0 % test error), beside the same net from random init.

784-800-800-800-10 ReLU MLP (``visionnets.models.mlp``). Pretrained: greedy layer-wise
denoising auto-encoders (``pretrain_mlp``, the recipe's ``pretrain:`` section), each layer on
the codes of the layers below, then the whole net fine-tuned. Random: the same recipe without
``pretrain:``. Both fine-tune with the same recipe through ``visionnets.api.train``: SGD with
Nesterov momentum, cosine schedule, random translations of up to 2 pixels, all 60,000 training
images, the 10,000 test images evaluated once at the end.

Each of the two is run for every seed in ``--seeds`` (initialization, pretraining and batch
order change with the seed).

Also writes docs/images/mnist_rbm_filters.png: the 100 filters of a Bernoulli RBM trained on
20,000 MNIST digits (stroke detectors).

    flock /tmp/vn-heavy.lock .venv/bin/python benchmarks/mnist_pretrain.py [--epochs 12]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from visionnets.io import atomic_write_text

REPO = Path(__file__).resolve().parents[1]


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=float))


def recipe(args, pretrain: bool, seed: int = 0) -> dict:
    r = {"name": "mnist_mlp4_" + ("pretrained" if pretrain else "random"), "seed": seed, "device": "cpu",
         "data": {"name": "mnist", "val_fraction": 0.0, "augment": [{"name": "translate", "max_shift": 2}]},
         "model": {"name": "mlp", "hidden": [args.width] * 3, "activation": "relu", "dropout": args.dropout},
         "objective": {"name": "supervised", "loss": "cross_entropy"},
         "train": {"epochs": args.epochs, "batch_size": 128, "eval_test_each_epoch": False,
                   "optimizer": {"name": "sgd", "lr": args.lr, "momentum": 0.9, "nesterov": True,
                                 "weight_decay": 1e-4},
                   "schedule": {"name": "cosine", "warmup_epochs": 0}}}
    if pretrain:
        r["pretrain"] = {"method": "denoising", "epochs": args.pretrain_epochs, "lr": 1e-3, "batch_size": 128,
                         "params": {"noise": "mask", "noise_level": 0.2, "random_state": seed}}
    return r


def stroke_filters(data_dir: Path, png: Path) -> dict:
    from visionnets.data import load_dataset
    from visionnets.unsupervised import RBM, save_filter_grid

    x = load_dataset("mnist", data_dir, val_fraction=0.0).train.x[:20000].reshape(20000, -1)
    t0 = time.perf_counter()
    rbm = RBM(n_components=100, learning_rate=0.05, weight_decay=1e-4, batch_size=64, n_epochs=10,
              device="cpu", random_state=0).fit(x)
    save_filter_grid(rbm.components_, png, shape=(1, 28, 28), ncols=10, zoom=2)
    return {"png": str(png.relative_to(REPO)) if png.is_relative_to(REPO) else str(png),
            "learner": "RBM(n_components=100, learning_rate=0.05, weight_decay=1e-4, n_epochs=10) on 20,000 digits",
            "seconds": time.perf_counter() - t0,
            "reconstruction_error": float(rbm.reconstruction_error(x[:2000]).mean())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("VISIONNETS_DATA", REPO.parent / "shared" / "data")))
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--pretrain-epochs", type=int, default=2)
    ap.add_argument("--width", type=int, default=800)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--only", choices=["pretrained", "random"], default=None)
    ap.add_argument("--filters-only", action="store_true",
                    help="only redraw the stroke-detector picture and update its entry in --out")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "mnist_pretrain.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from visionnets.api import train

    png = REPO / "docs" / "images" / "mnist_rbm_filters.png"
    if args.filters_only:
        result = json.loads(args.out.read_text())
        result["stroke_filters"] = stroke_filters(args.data, png) | {"note": "redrawn alone with --filters-only"}
        write_json(args.out, result)
        print(f"wrote {png} and updated {args.out}")
        return 0

    t_all = time.perf_counter()
    result = {"benchmark": "mnist_pretrain", "tutorial_row": "4 layer nnet (pre-trained): 1.0 %",
              "settings": vars(args) | {"data": str(args.data), "out": str(args.out)}, "rows": []}
    result["stroke_filters"] = stroke_filters(args.data, png)
    kinds = [args.only] if args.only else ["pretrained", "random"]
    print(f"{'init':12s} {'seed':>4s} {'test error %':>12s} {'train error %':>13s} {'pretrain s':>10s} {'total s':>8s}")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for kind in kinds:
                rec = recipe(args, kind == "pretrained", seed)
                t0 = time.perf_counter()
                run = train(rec, data_dir=args.data, out=Path(tmp) / f"{kind}{seed}", progress=False, figures=False)
                total = time.perf_counter() - t0
                pre_path = Path(run.run_dir) / "pretrain.json"
                pre = json.loads(pre_path.read_text())["layers"] if pre_path.exists() else None
                for layer in pre or []:
                    layer.pop("history", None)
                pre_s = sum(p["seconds"] for p in pre) if pre else 0.0
                tr = run.final.get("train_error")
                row = {"init": kind, "seed": seed, "test_error_percent": 100 * run.final["test_error"],
                       "train_error_percent": 100 * tr if tr is not None else None,
                       "epochs": run.final["epochs_run"], "pretrain_seconds": pre_s, "total_seconds": total,
                       "pretrain_layers": pre, "recipe": rec}
                result["rows"].append(row)
                print(f"{kind:12s} {seed:4d} {row['test_error_percent']:12.2f} "
                      f"{row['train_error_percent'] if tr is not None else float('nan'):13.2f} "
                      f"{pre_s:10.1f} {total:8.1f}", flush=True)
                result["wall_seconds"] = time.perf_counter() - t_all
                write_json(args.out, result)
    result["mean_test_error_percent"] = {
        k: sum(r["test_error_percent"] for r in result["rows"] if r["init"] == k) / len(args.seeds) for k in kinds}
    print("mean test error %:", {k: round(v, 3) for k, v in result["mean_test_error_percent"].items()})
    write_json(args.out, result)
    print(f"wall {time.perf_counter() - t_all:.0f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
