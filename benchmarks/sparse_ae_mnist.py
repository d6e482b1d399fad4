"""The tutorial's sparse auto-encoder on MNIST: ||W h - X||^2 + lambda sum_j |h_j|, then its filters.

Trains ``SparseAutoEncoder`` (rectified code, untied decoder with unit-norm columns) on MNIST
training digits and saves the decoder's columns -- "columns of W show what each code unit
represents" -- as docs/images/mnist_sparse_ae_filters.png; writes reconstruction error and code
sparsity to benchmarks/results/sparse_ae_mnist.json.

    python benchmarks/sparse_ae_mnist.py [--n 10000] [--epochs 20] [--sparsity 0.5] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from _common import data_dir, table, write_json
from visionnets.data import load_dataset
from visionnets.unsupervised import SparseAutoEncoder
from visionnets.unsupervised.filters import save_filter_grid


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--components", type=int, default=196)
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ds = load_dataset("mnist", data_dir(args.data_dir), val_fraction=0.0, subsample=args.n)
    x = ds.train.x.flatten(1).numpy()
    xt = ds.test.x.flatten(1).numpy()
    t0 = time.perf_counter()
    sae = SparseAutoEncoder(n_components=args.components, sparsity=args.sparsity, activation="relu",
                            tied=False, n_epochs=args.epochs, batch_size=128, learning_rate=1e-3,
                            random_state=0, device="cpu").fit(x)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        h = torch.as_tensor(sae.transform(xt))
        w = sae.decoder_[0].weight.detach().cpu()            # (784, K): dictionary elements
        rec = h @ w.T + sae.decoder_[0].bias.detach().cpu()
        err = ((rec - torch.as_tensor(xt)) ** 2).sum(1).mean().item()
    row = {"n_train": len(x), "components": args.components, "sparsity": args.sparsity, "epochs": args.epochs,
           "test_sq_error_per_image": err, "test_pixel_energy_per_image": float((xt ** 2).sum(1).mean()),
           "active_code_fraction": (h > 0).float().mean().item(), "train_seconds": round(seconds, 1)}
    print(table([row], list(row)), file=sys.stderr)
    out = Path(__file__).resolve().parents[1] / "docs" / "images" / "mnist_sparse_ae_filters.png"
    save_filter_grid(w.T.numpy(), out, (1, 28, 28), ncols=14)
    print(f"wrote {out} and {write_json('sparse_ae_mnist', {'row': row})}", file=sys.stderr)


if __name__ == "__main__":
    main()
