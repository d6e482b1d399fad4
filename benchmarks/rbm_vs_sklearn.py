"""RBM training speed: visionnets.unsupervised.RBM against scikit-learn's BernoulliRBM.

Same data (MNIST training images scaled to [0, 1]), same hyper-parameters (n_components,
learning_rate, batch_size, epochs; both persistent CD-1), one process, CPU. Quality is the
exact pseudo-log-likelihood sum_i log p(v_i | v_-i) on held-out MNIST test images, computed by
the same function (visionnets.unsupervised.pseudo_likelihood, float64) on both fitted models.

scikit-learn keeps the input's dtype: it is timed on float64 input (what ``X / 255.0`` gives,
its usual use) and on float32 input. visionnets trains in float32 whatever the input, with its
matmuls in float32 or (``matmul_dtype="bfloat16"``) on bfloat16 inputs; both are timed. The
Bernoulli samples are drawn by ``sample_bernoulli`` (16-bit uniforms, four cut from each 64-bit
random number): torch's CPU ``bernoulli`` cost as much as the matmuls.
Two comparisons: (1) the same number of epochs for both; (2) time to quality: visionnets
is trained a quarter epoch at a time (``partial_fit`` on quarter-epoch chunks; evaluation
not timed) until its test pseudo-likelihood is at least scikit-learn's after all its epochs,
and the speed-up is scikit-learn's full time over that time. (Part of visionnets' head start
comes from initializing the visible biases at the data's log-odds, as Hinton's practical
guide advises; scikit-learn starts them at 0.)

Both sides run with the same number of threads (torch.set_num_threads and threadpoolctl for
numpy's BLAS; default 1: on a shared, busy machine multi-threaded timings are noise).

    flock /tmp/vn-heavy.lock .venv/bin/python benchmarks/rbm_vs_sklearn.py [--n-train 20000] [--epochs 3]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from visionnets.io import atomic_write_text
from visionnets.unsupervised import RBM, pseudo_likelihood

REPO = Path(__file__).resolve().parents[1]


def load_mnist_images(root: Path, split: str) -> np.ndarray:
    name = {"train": "train-images-idx3-ubyte.gz", "test": "t10k-images-idx3-ubyte.gz"}[split]
    raw = gzip.open(root / "mnist" / name).read()
    return np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 784)


def pl64(w, b_v, b_h, x) -> float:
    t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64))
    return float(pseudo_likelihood(t(x), t(w), t(b_v), t(b_h)).mean())


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("VISIONNETS_DATA", REPO.parent / "shared" / "data")))
    ap.add_argument("--n-train", type=int, default=20000)
    ap.add_argument("--n-eval", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--n-components", type=int, default=256)
    ap.add_argument("--learning-rate", type=float, default=0.05)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "rbm_vs_sklearn.json")
    args = ap.parse_args(argv)
    from sklearn.neural_network import BernoulliRBM

    x64 = load_mnist_images(args.data, "train")[: args.n_train] / 255.0
    x_eval = load_mnist_images(args.data, "test")[: args.n_eval] / 255.0
    hp = dict(n_components=args.n_components, learning_rate=args.learning_rate,
              batch_size=args.batch_size)
    rows = []

    def run_sklearn(dtype):
        X = x64.astype(dtype)
        t0 = time.perf_counter()
        m = BernoulliRBM(n_iter=args.epochs, random_state=0, **hp).fit(X)
        sec = time.perf_counter() - t0
        return {"impl": f"sklearn BernoulliRBM ({np.dtype(dtype).name} input)", "seconds": sec,
                "pseudo_likelihood_test": pl64(m.components_, m.intercept_visible_, m.intercept_hidden_, x_eval)}

    def run_ours(bias_init="data", matmul_dtype="float32"):
        t0 = time.perf_counter()
        m = RBM(n_epochs=args.epochs, persistent=True, k=1, random_state=0, device="cpu",
                visible_bias_init=bias_init, matmul_dtype=matmul_dtype, **hp).fit(x64)
        sec = time.perf_counter() - t0
        impl = (f"visionnets RBM ({'float32' if matmul_dtype == 'float32' else 'bfloat16 matmuls'}, torch CPU)"
                + ("" if bias_init == "data" else ", visible biases at 0"))
        return {"impl": impl, "seconds": sec,
                "pseudo_likelihood_test": pl64(m.components_, m.intercept_visible_, m.intercept_hidden_, x_eval)}

    def time_to_quality(target: float, matmul_dtype: str):
        """Train visionnets a quarter epoch at a time until its test PL >= target."""
        m = RBM(n_epochs=1, persistent=True, k=1, random_state=0, device="cpu", matmul_dtype=matmul_dtype, **hp)
        x32 = x64.astype(np.float32)
        chunks = np.array_split(np.arange(len(x32)), 4)
        spent, trace = 0.0, []
        for q in range(4 * args.epochs * 2):
            t0 = time.perf_counter()
            m.partial_fit(x32[chunks[q % 4]])
            spent += time.perf_counter() - t0
            pl = pl64(m.components_, m.intercept_visible_, m.intercept_hidden_, x_eval)
            trace.append({"epochs": (q + 1) / 4, "seconds": spent, "pseudo_likelihood_test": pl})
            if pl >= target:
                return trace
        return trace

    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads):
        ours = run_ours()
        ours_bf16 = run_ours(matmul_dtype="bfloat16")
        ablation = run_ours("zero")
        rows.append(run_sklearn(np.float64))
        rows.append(run_sklearn(np.float32))
        ttq = {}
        for r in rows:
            for dt in ("float32", "bfloat16"):
                tr = time_to_quality(r["pseudo_likelihood_test"], dt)
                reached = tr[-1]["pseudo_likelihood_test"] >= r["pseudo_likelihood_test"]
                ttq[f"{r['impl']} / visionnets {dt} matmuls"] = {
                    "target_pseudo_likelihood": r["pseudo_likelihood_test"], "reached": reached,
                    "visionnets_epochs": tr[-1]["epochs"], "visionnets_seconds": tr[-1]["seconds"],
                    "speedup": r["seconds"] / tr[-1]["seconds"] if reached else None, "trace": tr}
    rows += [ablation, ours, ours_bf16]
    for r in rows:
        r["speedup_of_visionnets"] = r["seconds"] / ours["seconds"]
    print(f"(1) same epochs ({args.epochs})")
    print(f"{'implementation':56s} {'seconds':>9s} {'PL(test)':>10s} {'ours x faster':>14s}")
    for r in rows:
        print(f"{r['impl']:56s} {r['seconds']:9.2f} {r['pseudo_likelihood_test']:10.2f} {r['speedup_of_visionnets']:14.2f}")
    print("(2) time for visionnets to reach the same test pseudo-likelihood")
    print(f"{'against':90s} {'target PL':>10s} {'our epochs':>10s} {'our s':>8s} {'x faster':>9s}")
    for name, t in ttq.items():
        sp = f"{t['speedup']:9.2f}" if t["speedup"] else "  not met"
        print(f"{name:90s} {t['target_pseudo_likelihood']:10.2f} {t['visionnets_epochs']:10.2f} "
              f"{t['visionnets_seconds']:8.2f} {sp}")
    result = {"benchmark": "rbm_vs_sklearn", "data": f"MNIST train[:{args.n_train}] / 255, PL on test[:{args.n_eval}]",
              "hyper_parameters": {**hp, "epochs": args.epochs, "cd": "persistent CD-1 (both)"},
              "rows": rows, "time_to_quality": ttq, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "python": sys.version.split()[0], "machine": platform.processor() or platform.machine(),
              "note": "single run each, same process, shared 2-core CPU",
              "cpu_has_avx512_bf16": "avx512_bf16" in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else None}
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
