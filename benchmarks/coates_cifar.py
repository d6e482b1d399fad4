"""The single-layer pipeline of Coates, Lee & Ng (AISTATS 2011) on CIFAR-10, four feature learners.

patches 6x6 (stride 1) -> contrast normalization + ZCA -> learner (k-means triangle, sparse
auto-encoder, sparse RBM, RICA) with K features -> convolutional extraction with 4-quadrant sum
pooling (4K features) -> standardization -> L2-SVM (squared hinge, C = 100). Paper, K = 1600:
sparse AE 73.4 %, sparse RBM 72.4 %, k-means triangle 77.9 % (79.6 % with K = 4000).

The data in ../shared/data/cifar10 is decoded from JPEG (quality ~75): numbers are close to,
not equal to, numbers on the original files. The result JSON records which copy was read.

Full protocol: --n-train 50000 --n-patches 400000. On a busy 2-core CPU the extraction alone
costs ~15 ms per image per learner (252 MFLOP at K = 1600), so the default is a documented
reduced setting: 10,000 random training images, the full 10,000 test images, 100,000 patches.
The JSON is rewritten after each learner, so a partial run keeps what finished.

First, a small picture: RICA (64 filters) on ZCA-whitened 8x8 grey patches of the natural
images in ../shared/data/natural -> docs/images/natural_rica_filters.png (oriented edges).

    flock /tmp/vn-heavy.lock .venv/bin/python benchmarks/coates_cifar.py --learners kmeans sparse_autoencoder rbm rica
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from visionnets.io import atomic_write_text
from visionnets.unsupervised.coates import PAPER_ACCURACY_1600, PAPER_ACCURACY_KMEANS_4000, load_cifar10, run_coates

REPO = Path(__file__).resolve().parents[1]


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2))


def natural_filters(data_dir: Path, png: Path) -> dict:
    """RICA on whitened 8x8 grey natural-image patches: localized, oriented edge filters."""
    from visionnets.data.natural import load_natural_images, to_chw
    from visionnets.unsupervised import RICA, ZCA, extract_patches, normalize_patches, save_filter_grid

    t0 = time.perf_counter()
    images = load_natural_images(data_dir)
    p = torch.cat([extract_patches(to_chw(im, True)[None], 8, 20000, random_state=i)
                   for i, im in enumerate(images.values())])
    white = ZCA(eps=0.01).fit_transform(normalize_patches(p, eps=0.01).numpy())
    rica = RICA(n_components=64, sparsity=0.1, epsilon=1e-2, optimizer="lbfgs", max_iter=30, batch_size=20000,
                n_epochs=3, device="cpu", random_state=0).fit(white)
    save_filter_grid(rica.components_, png, shape=(1, 8, 8), ncols=8, zoom=4)
    return {"png": str(png.relative_to(REPO)) if png.is_relative_to(REPO) else str(png), "n_patches": int(p.shape[0]), "images": sorted(images),
            "final_loss": rica.history_[-1]["loss"], "seconds": time.perf_counter() - t0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("VISIONNETS_DATA", REPO.parent / "shared" / "data")))
    ap.add_argument("--learners", nargs="+", default=["kmeans", "sparse_autoencoder", "rbm", "rica"])
    ap.add_argument("--n-features", type=int, default=1600)
    ap.add_argument("--n-train", type=int, default=10000)
    ap.add_argument("--n-test", type=int, default=None)
    ap.add_argument("--n-patches", type=int, default=100000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-iter", type=int, default=500)
    ap.add_argument("--png-dir", type=Path, default=REPO / "docs" / "images")
    ap.add_argument("--skip-natural", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "coates_cifar.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data = load_cifar10(args.data)
    load_s = time.perf_counter() - t0
    rows = []
    result = {"benchmark": "coates_cifar", "n_features": args.n_features, "n_train": args.n_train,
              "n_test": args.n_test or len(data["x_test"]), "n_patches": args.n_patches,
              "classifier": "L2-SVM (squared hinge, one-vs-all), C=100, L-BFGS",
              "data_source": data["source"], "data_lossy_jpeg": data["lossy"],
              "reduced_setting": args.n_train < 50000 or args.n_patches < 400000,
              "paper_1600": PAPER_ACCURACY_1600, "paper_kmeans_4000": PAPER_ACCURACY_KMEANS_4000,
              "threads": args.threads, "load_seconds": load_s, "rows": rows}
    if not args.skip_natural:
        result["natural_filters"] = natural_filters(args.data, args.png_dir / "natural_rica_filters.png")
        print(f"natural-image RICA filters: {result['natural_filters']['png']}", flush=True)
    print(f"{'learner':20s} {'test %':>7s} {'paper %':>8s} {'train %':>8s} {'fit s':>7s} {'extract s':>10s} {'total s':>8s}")
    for name in args.learners:
        png = args.png_dir / f"coates_{name}_filters.png" if args.png_dir else None
        r = run_coates(name, args.n_features, data, n_patches=args.n_patches, n_train=args.n_train,
                       n_test=args.n_test, max_iter=args.max_iter, device="cpu", filters_png=png)
        r["filters_png"] = (str(png.relative_to(REPO)) if png.is_relative_to(REPO) else str(png)) if png else None
        rows.append(r)
        s = r["seconds"]
        paper = r["paper_test_accuracy"]
        print(f"{name:20s} {r['test_accuracy']:7.2f} {paper if paper else '-':>8} {r['train_accuracy']:8.2f} "
              f"{s['learner_fit']:7.1f} {s['feature_extraction']:10.1f} {s['total']:8.1f}", flush=True)
        result["wall_seconds"] = time.perf_counter() - t0
        write_json(args.out, result)
    print(f"wall {time.perf_counter() - t0:.0f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
