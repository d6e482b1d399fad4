"""visionnets against its peers, side by side in one run (issue 16).

The same work done by each implementation, each measurement in a fresh process (so that one
framework's thread pool never spins beside another's), the implementations alternating in a
rotated order over ``--rounds`` rounds; the table gives the median over rounds and the ratio
visionnets / peer (below 1: visionnets is faster).

- ``mlp``: MNIST 784-800-10, ReLU, SGD momentum 0.9 (lr 0.05), batch 128, cross-entropy, the
  55,000 training images of the recipes (5,000 held out), no dropout or augmentation. Seconds
  per training epoch (the median of epochs 2.., so JIT compilation and warm-up are excluded;
  the first epoch is reported too) and the test error after ``--epochs`` epochs.
  visionnets (the Trainer, as ``visionnets train`` runs it, fp32 and ``train.precision: bf16``),
  a plain PyTorch loop (``torch.nn`` modules), Keras 3 on JAX (``model.fit``) and a plain JAX
  loop (one jitted step).
- ``convnet``: the ``mnist_convnet`` network (conv 5x5 32 -> relu -> max-pool -> batch norm,
  conv 5x5 64 -> ..., 512 hidden, dropout 0.5), same optimizer, no augmentation: visionnets
  fp32, and bf16 with ``train.channels_last``; a plain PyTorch loop on the same network in
  ``torch.nn`` modules; Keras 3 on JAX.
- ``rbm``: a Bernoulli RBM, 256 hidden units, one epoch of persistent CD-1 over 10,000 MNIST
  images at batch 10, 20, 64 and 256: ``visionnets.unsupervised.RBM`` (float32, and with
  ``matmul_dtype="bfloat16"``, which its default ``"auto"`` takes on a CPU with fast bfloat16)
  against scikit-learn's ``BernoulliRBM`` (float32 input for all), with each fit's
  reconstruction error on 1,000 held-out test images.
- ``lc``: ``LocallyConnected2d`` forward + backward against ``nn.Conv2d`` of the same shape
  and JAX's ``conv_general_dilated_local``, on the three shapes of ``benchmarks/layers.py``.

Threads: each framework's default (all cores) unless ``--threads N`` (then OMP_NUM_THREADS and
XLA's flags pin every process to N). The load average before and after is recorded: quote the
ratios of a quiet run. JAX and Keras come with ``pip install -e '.[bench]'``; rows whose peer is
not installed are skipped with a note. ``--device cuda`` runs the torch and JAX rows on the GPU.

    flock /tmp/vn-heavy.lock .venv/bin/python benchmarks/peers.py                 # ~15 min, 2 cores
    .venv/bin/python benchmarks/peers.py --sections mlp --rounds 1 --epochs 2     # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import data_dir, plain_epoch, table, write_json

EPOCHS_LR, MOMENTUM, BATCH = 0.05, 0.9, 128
IMPLS = {"mlp": ["visionnets", "visionnets_bf16", "torch", "keras_jax", "jax"],
         "convnet": ["visionnets", "visionnets_bf16", "torch", "keras_jax"],
         "rbm": ["visionnets", "visionnets_bf16", "sklearn"],
         "lc": ["ours", "conv2d", "jax"]}
RBM_BATCHES = [10, 20, 64, 256]
LC_SHAPES = ["a", "b", "c"]
PEER_NEEDS = {"keras_jax": "keras", "jax": "jax"}


# ---------------------------------------------------------------------------------------------
# data, the same for every implementation
# ---------------------------------------------------------------------------------------------
def mnist(root: str):
    """The recipes' split of MNIST as float32 numpy: (x_train, y_train, x_test, y_test), x in [0, 1]."""
    from visionnets.data import load_dataset

    ds = load_dataset("mnist", root, val_fraction=0.0833333)
    return (ds.train.x.numpy(), ds.train.y.numpy(), ds.test.x.numpy(), ds.test.y.numpy())


def recipe(section: str, epochs: int, precision: str) -> dict:
    """The visionnets recipe of a row (the ``mnist_mlp800`` / ``mnist_convnet`` nets, peers' settings)."""
    model = ({"name": "mlp", "hidden": [800], "activation": "relu"} if section == "mlp" else
             {"name": "convnet", "hidden": [512], "dropout": 0.5, "stages": [
                 {"layer": "conv", "channels": c, "kernel": 5, "rectify": "relu", "pool": "max", "pool_size": 2,
                  "norm": "batch"} for c in (32, 64)]})
    return {"name": f"peers_{section}", "seed": 0, "data": {"name": "mnist", "val_fraction": 0.0833333},
            "model": model, "objective": {"name": "supervised", "loss": "cross_entropy"},
            "train": {"epochs": epochs, "batch_size": BATCH, "precision": precision,
                      "channels_last": section == "convnet" and precision == "bf16",
                      "optimizer": {"name": "sgd", "lr": EPOCHS_LR, "momentum": MOMENTUM}}}


# ---------------------------------------------------------------------------------------------
# the workers: one measurement each, in its own process; they print one JSON line
# ---------------------------------------------------------------------------------------------
def net_visionnets(section: str, epochs: int, root: str, precision: str, device: str) -> dict:
    from visionnets import api

    rec = recipe(section, epochs, precision)
    rec["device"] = device
    with tempfile.TemporaryDirectory() as out:
        res = api.train(rec, data_dir=root, out=out, progress=False, figures=False)
        hist = res.history
    return {"epoch_s": [h["train_seconds"] for h in hist], "test_error": hist[-1]["test_error"]}


def net_torch(section: str, epochs: int, root: str, device: str) -> dict:
    """A plain PyTorch loop: the same network in ``torch.nn`` modules, tensors in memory, randperm batches."""
    import torch
    from torch import nn

    xtr, ytr, xte, yte = (torch.as_tensor(a).to(device) for a in mnist(root))
    torch.manual_seed(0)
    if section == "mlp":
        layers = [nn.Flatten(), nn.Linear(784, 800), nn.ReLU(), nn.Linear(800, 10)]
    else:
        layers = []
        for cin, cout in ((1, 32), (32, 64)):
            layers += [nn.Conv2d(cin, cout, 5), nn.ReLU(), nn.MaxPool2d(2), nn.BatchNorm2d(cout)]
        layers += [nn.Flatten(), nn.Linear(64 * 4 * 4, 512), nn.ReLU(), nn.Dropout(0.5), nn.Linear(512, 10)]
    model = nn.Sequential(*layers).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=EPOCHS_LR, momentum=MOMENTUM)
    times = []
    for epoch in range(epochs):
        sync(device)
        t = time.perf_counter()
        plain_epoch(model, opt, xtr, ytr, torch.randperm(len(xtr), device=device), BATCH)
        sync(device)
        times.append(time.perf_counter() - t)
    model.eval()
    with torch.no_grad():
        wrong = sum(int((model(xte[lo:lo + 1000]).argmax(1) != yte[lo:lo + 1000]).sum()) for lo in range(0, len(xte), 1000))
    return {"epoch_s": times, "test_error": wrong / len(xte)}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def net_keras(section: str, epochs: int, root: str) -> dict:
    os.environ["KERAS_BACKEND"] = "jax"
    import keras
    import numpy as np

    xtr, ytr, xte, yte = mnist(root)
    keras.utils.set_random_seed(0)
    L = keras.layers
    if section == "mlp":
        xtr, xte = xtr.reshape(len(xtr), -1), xte.reshape(len(xte), -1)
        layers = [keras.Input((784,)), L.Dense(800, activation="relu"), L.Dense(10)]
    else:  # channels-last, the same stages as visionnets' convnet (conv -> relu -> pool -> batch norm)
        xtr, xte = xtr.transpose(0, 2, 3, 1), xte.transpose(0, 2, 3, 1)
        layers = [keras.Input((28, 28, 1))]
        for c in (32, 64):
            layers += [L.Conv2D(c, 5, activation="relu"), L.MaxPooling2D(2), L.BatchNormalization()]
        layers += [L.Flatten(), L.Dense(512, activation="relu"), L.Dropout(0.5), L.Dense(10)]
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.SGD(EPOCHS_LR, momentum=MOMENTUM),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    model.fit(xtr, ytr.astype("int32"), batch_size=BATCH, epochs=epochs, shuffle=True, verbose=0, callbacks=[Timer()])
    pred = model.predict(xte, batch_size=1000, verbose=0).argmax(1)
    return {"epoch_s": times, "test_error": float(np.mean(pred != yte))}


def net_jax(section: str, epochs: int, root: str) -> dict:
    """A plain JAX loop for the MLP: one jitted step (forward, grad, momentum update) on device arrays."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    if section != "mlp":
        raise SystemExit("the plain JAX loop covers the MLP only")
    xtr, ytr, xte, yte = mnist(root)
    x, y = jnp.asarray(xtr.reshape(len(xtr), -1)), jnp.asarray(ytr.astype(np.int32))
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    bound = lambda fan_in: 1.0 / np.sqrt(fan_in)   # torch's nn.Linear initialization
    params = [jax.random.uniform(k1, (784, 800), minval=-bound(784), maxval=bound(784)), jnp.zeros(800),
              jax.random.uniform(k2, (800, 10), minval=-bound(800), maxval=bound(800)), jnp.zeros(10)]
    moms = [jnp.zeros_like(p) for p in params]

    def forward(p, xb):
        return jax.nn.relu(xb @ p[0] + p[1]) @ p[2] + p[3]

    def loss(p, xb, yb):
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(forward(p, xb)), yb[:, None], 1))

    @jax.jit
    def step(p, m, idx):
        g = jax.grad(loss)(p, x[idx], y[idx])
        m = [MOMENTUM * mi + gi for mi, gi in zip(m, g)]
        return [pi - EPOCHS_LR * mi for pi, mi in zip(p, m)], m

    rng = np.random.default_rng(0)
    times = []
    n = len(xtr) - len(xtr) % BATCH          # full batches: one compiled shape
    for _ in range(epochs):
        t = time.perf_counter()
        perm = jnp.asarray(rng.permutation(len(xtr))[:n].reshape(-1, BATCH))
        for i in range(perm.shape[0]):
            params, moms = step(params, moms, perm[i])
        jax.block_until_ready(params)
        times.append(time.perf_counter() - t)
    pred = np.asarray(forward(params, jnp.asarray(xte.reshape(len(xte), -1))).argmax(1))
    return {"epoch_s": times, "test_error": float(np.mean(pred != yte))}


def rbm_worker(impl: str, batch: int, root: str, n: int = 10000) -> dict:
    """One timed epoch, then the mean squared reconstruction error ||v - E[v | E[h | v]]||^2 / D
    of 1,000 held-out test images, from the fitted weights (the same formula for both)."""
    import numpy as np

    x_train, _, x_test, _ = mnist(root)
    x, held = x_train[:n].reshape(n, -1).astype(np.float32), x_test[:1000].reshape(1000, -1).astype(np.float64)
    kw = dict(n_components=256, learning_rate=0.05, batch_size=batch, random_state=0)
    if impl == "sklearn":
        from sklearn.neural_network import BernoulliRBM

        est = BernoulliRBM(n_iter=1, **kw)
    else:
        from visionnets.unsupervised import RBM

        est = RBM(n_epochs=1, persistent=True, device="cpu",
                  matmul_dtype="bfloat16" if impl.endswith("bf16") else "float32", **kw)
    est.fit(x[:batch * 2])            # warm-up: allocations, thread pools (not timed)
    t = time.perf_counter()
    est.fit(x)
    seconds = time.perf_counter() - t
    w, bh, bv = (np.asarray(a, dtype=np.float64) for a in (est.components_, est.intercept_hidden_,
                                                           est.intercept_visible_))
    sig = lambda z: 1 / (1 + np.exp(-z))
    recon = sig(sig(held @ w.T + bh) @ w + bv)
    return {"epoch_s": [seconds], "recon_error": float(((held - recon) ** 2).mean()),
            "threads": getattr(est, "n_threads_", None), "matmul_dtype": getattr(est, "matmul_dtype_", None)}


def lc_worker(impl: str, shape: str, rounds: int = 5) -> dict:
    import torch

    from layers import _setup_local, _time

    step = _setup_local(shape, {"ours": "ours", "conv2d": "conv2d", "jax": "jax"}[impl], torch)[0]
    return {"epoch_s": [_time({"s": step}, rounds if shape != "c" else 2)["s"]]}


def worker(args) -> dict:
    section, impl = args.worker
    if section in ("mlp", "convnet"):
        if impl.startswith("visionnets"):
            return net_visionnets(section, args.epochs, args.data, "bf16" if impl.endswith("bf16") else "fp32",
                                  args.device)
        return {"torch": lambda: net_torch(section, args.epochs, args.data, args.device),
                "keras_jax": lambda: net_keras(section, args.epochs, args.data),
                "jax": lambda: net_jax(section, args.epochs, args.data)}[impl]()
    if section == "rbm":
        return rbm_worker(impl, int(args.case), args.data)
    return lc_worker(impl, args.case)


# ---------------------------------------------------------------------------------------------
# the driver
# ---------------------------------------------------------------------------------------------
def run_one(section: str, impl: str, case, args) -> dict:
    env = dict(os.environ)
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
                   XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
                   if args.threads == 1 else "")
    if args.device == "cpu":
        env["JAX_PLATFORMS"] = "cpu"
    cmd = [sys.executable, __file__, "--worker", section, impl, "--epochs", str(args.epochs), "--data", args.data,
           "--device", args.device] + (["--case", str(case)] if case is not None else [])
    t = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"peers: {section}/{impl} {case or ''} failed:\n{res.stderr[-3000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["process_s"] = time.perf_counter() - t
    return out


def available(impl: str) -> str | None:
    import importlib.util

    mod = PEER_NEEDS.get(impl) or ({"sklearn": "sklearn"}.get(impl))
    if mod and importlib.util.find_spec(mod) is None:
        return f"{impl}: {mod} is not installed (pip install -e '.[bench]')"
    return None


def summarize(runs: list[dict]) -> dict:
    """Median over rounds of each run's steady epoch time (its epochs after the first)."""
    steady = [statistics.median(r["epoch_s"][1:] or r["epoch_s"]) for r in runs]
    out = {"seconds": statistics.median(steady), "seconds_rounds": steady,
           "first_epoch_s": statistics.median(r["epoch_s"][0] for r in runs),
           "process_s": statistics.median(r["process_s"] for r in runs)}
    for key in ("test_error", "recon_error"):
        if key in runs[0]:
            out[key] = statistics.median(r[key] for r in runs)
    if runs[0].get("threads") is not None:
        out["threads_rounds"] = [r["threads"] for r in runs]   # the thread count each of our fits chose
    if "matmul_dtype" in runs[0]:
        out["matmul_dtype"] = runs[0]["matmul_dtype"]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", nargs="+", default=list(IMPLS), choices=list(IMPLS))
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (the median is reported)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs of the MLP and convnet rows")
    ap.add_argument("--threads", type=int, default=None, help="pin every process to N threads (default: each one's own)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (torch and JAX rows)")
    ap.add_argument("--data", default=None, help="folder with mnist/ (default $VISIONNETS_DATA or ../shared/data)")
    ap.add_argument("--out", default="peers", help="JSON name under benchmarks/results/")
    ap.add_argument("--worker", nargs=2, metavar=("SECTION", "IMPL"), help=argparse.SUPPRESS)
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.data = data_dir(args.data)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    if not (Path(args.data) / "mnist").is_dir():
        raise SystemExit(f"peers: no MNIST under {args.data}/mnist (set --data or VISIONNETS_DATA)")
    load_before, t0 = os.getloadavg(), time.time()
    notes, rows = [], []
    for section in args.sections:
        impls = [i for i in IMPLS[section] if not (available(i) and notes.append(available(i)) is None)]
        cases = {"rbm": RBM_BATCHES, "lc": LC_SHAPES}.get(section, [None])
        for case in cases:
            runs: dict[str, list] = {i: [] for i in impls}
            for r in range(args.rounds):
                for impl in impls[r % len(impls):] + impls[:r % len(impls)]:
                    runs[impl].append(run_one(section, impl, case, args))
            sums = {i: summarize(runs[i]) for i in impls}
            fp32 = sums[impls[0]]["seconds"]                               # visionnets, fp32 / ours
            bf16 = sums["visionnets_bf16"]["seconds"] if "visionnets_bf16" in sums else None
            for impl, s in sums.items():
                rows.append({"section": section, "case": case, "impl": impl, **s, "ours_over_this": fp32 / s["seconds"],
                             "ours_bf16_over_this": None if bf16 is None else bf16 / s["seconds"]})
                print(f"{section:8s} {str(case or ''):4s} {impl:16s} {s['seconds']:9.4f} s  ours/this {fp32 / s['seconds']:.2f}"
                      + ("" if bf16 is None else f"  ours-bf16/this {bf16 / s['seconds']:.2f}")
                      + (f"  test error {100 * s['test_error']:.2f} %" if "test_error" in s else "")
                      + (f"  reconstruction error {s['recon_error']:.4f}" if "recon_error" in s else ""), flush=True)
    cols = ["section", "case", "impl", "seconds", "first_epoch_s", "ours_over_this", "ours_bf16_over_this", "test_error",
            "recon_error"]
    print(table(rows, cols))
    path = write_json(args.out, {"benchmark": "peers", "sections": args.sections, "rounds": args.rounds,
                                 "epochs": args.epochs, "threads": args.threads, "device": args.device,
                                 "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                                 "minutes": (time.time() - t0) / 60, "notes": notes,
                                 "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
