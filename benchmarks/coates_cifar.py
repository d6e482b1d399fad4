"""The single-layer pipeline of Coates, Lee & Ng (AISTATS 2011) on CIFAR-10, four feature learners.

patches 6x6 (stride 1) -> contrast normalization + ZCA -> learner (k-means triangle, sparse
auto-encoder, sparse RBM, RICA) with K features -> convolutional extraction with 4-quadrant sum
pooling (4K features) -> standardization -> L2-SVM (squared hinge, C = 100). Paper, K = 1600:
sparse AE 73.4 %, sparse RBM 72.4 %, k-means triangle 77.9 % (79.6 % with K = 4000).

../shared/data/cifar10 holds the lossless images (bit-exact with the original files); an earlier
copy decoded from JPEG (quality ~75) gave lower numbers (coates_cifar.json). The result JSON
records which copy was read (``data_lossy_jpeg``). Filters of K other than 1600 go to
``coates_<learner>_K<K>_filters.png``.

The default is the paper's protocol: all 50,000 training images, 400,000 patches, K = 1600,
and C of the L2-SVM chosen on a held-out 10 % of the training images from --C (then the SVM
is retrained on all 50,000). The extraction costs ~250 MFLOP per image at K = 1600 (~10 min
per learner on 2 CPU cores). The JSON is rewritten after each learner, so a partial run keeps
what finished; --cache-dir keeps each learner's features (1.5 GB at K = 1600) so that the
classifier can be re-run (--classifier-only) without the extraction.

First, a small picture: RICA (64 filters) on ZCA-whitened 8x8 grey patches of the natural
images in ../shared/data/natural -> docs/images/natural_rica_filters.png (oriented edges).

    flock /tmp/vn-heavy.lock .venv/bin/python benchmarks/coates_cifar.py --learners kmeans sparse_autoencoder rbm rica \
        --out benchmarks/results/coates_cifar_lossless.json --append
    flock /tmp/vn-heavy.lock .venv/bin/python benchmarks/coates_cifar.py --learners kmeans --n-features 4000 \
        --C 10 30 100 300 --skip-natural --out benchmarks/results/coates_cifar_lossless.json --append
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
from visionnets.unsupervised.coates import (PAPER_ACCURACY_1600, PAPER_ACCURACY_KMEANS_4000, coates_features,
                                            fit_classifier, load_cifar10)

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
    ap.add_argument("--n-train", type=int, default=50000)
    ap.add_argument("--n-test", type=int, default=None)
    ap.add_argument("--n-patches", type=int, default=400000)
    ap.add_argument("--C", type=float, nargs="+", default=[10.0, 30.0, 100.0, 300.0, 1000.0],
                    help="one value, or several to choose from on a held-out 10%% of the training set")
    ap.add_argument("--cache-dir", type=Path, default=None, help="keep/reuse the features here (not in the repo)")
    ap.add_argument("--append", action="store_true", help="keep the rows already in --out (other learners/K)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-iter", type=int, default=500)
    ap.add_argument("--tune-max-iter", type=int, default=200, help="L-BFGS iterations per C on the grid")
    ap.add_argument("--png-dir", type=Path, default=REPO / "docs" / "images")
    ap.add_argument("--skip-natural", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "coates_cifar.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data = load_cifar10(args.data)
    load_s = time.perf_counter() - t0
    rows = []
    if args.append and args.out.exists():
        old = json.loads(args.out.read_text()).get("rows", [])
        rows = [r for r in old if (r["learner"], r["n_features"]) not in {(n, args.n_features) for n in args.learners}]
    result = {"benchmark": "coates_cifar", "n_features": sorted({args.n_features, *(r["n_features"] for r in rows)}),
              "n_train": args.n_train,
              "n_test": args.n_test or len(data["x_test"]), "n_patches": args.n_patches,
              "classifier": "L2-SVM (squared hinge, one-vs-all), L-BFGS, C chosen on a held-out 10 % (each row's "
                            "validation lists its grid)",
              "data_source": data["source"], "data_lossy_jpeg": data["lossy"],
              "reduced_setting": args.n_train < 50000 or args.n_patches < 400000,
              "paper_1600": PAPER_ACCURACY_1600, "paper_kmeans_4000": PAPER_ACCURACY_KMEANS_4000,
              "threads": args.threads, "load_seconds": load_s, "rows": rows}
    if not args.skip_natural:
        result["natural_filters"] = natural_filters(args.data, args.png_dir / "natural_rica_filters.png")
        print(f"natural-image RICA filters: {result['natural_filters']['png']}", flush=True)
    print(f"{'learner':20s} {'test %':>7s} {'paper %':>8s} {'train %':>8s} {'fit s':>7s} {'extract s':>10s} {'total s':>8s}")
    for name in args.learners:
        tag = "" if args.n_features == 1600 else f"_K{args.n_features}"
        png = args.png_dir / f"coates_{name}{tag}_filters.png" if args.png_dir else None
        cache = args.cache_dir / f"{name}_K{args.n_features}_N{args.n_train}_P{args.n_patches}.pt" if args.cache_dir else None
        t1 = time.perf_counter()
        from_cache = cache is not None and cache.exists()
        if from_cache:
            f = torch.load(cache)
            print(f"{name}: features from {cache}", flush=True)
        else:
            f = coates_features(name, args.n_features, data, n_patches=args.n_patches, n_train=args.n_train,
                                n_test=args.n_test, device="cpu", verbose=True, filters_png=png)
            hist = getattr(f["learner"], "history_", None)
            f = {k: f[k] for k in ("name", "ftr", "ytr", "fte", "yte", "seconds")} | {
                "learner_history_last": hist[-1] if hist else None}
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                torch.save(f, cache)
        clf = fit_classifier(f["ftr"], f["ytr"], f["fte"], f["yte"], C=args.C if len(args.C) > 1 else args.C[0],
                             max_iter=args.max_iter, tune_max_iter=args.tune_max_iter, device="cpu")
        s = dict(f["seconds"], classifier=clf.pop("seconds"), total=time.perf_counter() - t1)
        paper = PAPER_ACCURACY_1600.get(name) if args.n_features == 1600 else (
            PAPER_ACCURACY_KMEANS_4000 if (name, args.n_features) == ("kmeans", 4000) else None)
        r = {"learner": name, "n_features": args.n_features, "n_patches": args.n_patches,
             "n_train": int(len(f["ytr"])), "n_test": int(len(f["yte"])), "feature_dim": int(f["ftr"].shape[1]),
             **clf, "paper_test_accuracy": paper, "learner_history_last": f["learner_history_last"],
             "seconds": s, "features_from_cache": from_cache, "svm_max_iter": args.max_iter,
             "svm_tune_max_iter": args.tune_max_iter if len(args.C) > 1 else None,
             "threads": args.threads,
             "filters_png": (str(png.relative_to(REPO)) if png.is_relative_to(REPO) else str(png)) if png else None}
        rows.append(r)
        print(f"{name:20s} {r['test_accuracy']:7.2f} {paper if paper else '-':>8} {r['train_accuracy']:8.2f} "
              f"{s.get('learner_fit', 0):7.1f} {s.get('feature_extraction', 0):10.1f} {s['total']:8.1f}  C={r['C']:g}",
              flush=True)
        result["wall_seconds"] = time.perf_counter() - t0
        write_json(args.out, result)
        del f
    print(f"wall {time.perf_counter() - t0:.0f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
