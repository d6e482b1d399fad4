"""Speed and memory of the vision layers against their references (issue 3).

Forward + backward, float32, CPU, on the issue's shapes:

- (a) B=64, 3->32 channels, 32x32 input, 5x5 filters
- (b) B=64, 32->64, 16x16, 5x5
- (c) the stage of Le et al. 2012: B=32, 8->8, 64x64, 18x18

``LocallyConnected2d`` is timed against ``nn.Conv2d`` of the same shape, against the
straightforward ``F.unfold`` + ``torch.einsum`` version, and against JAX's
``jax.lax.conv_general_dilated_local`` (skipped with a note when JAX is not installed);
``LocalContrastNorm2d`` against a 3x3 ``nn.Conv2d`` with the same channels, ``L2Pool2d`` against
``nn.MaxPool2d``. Times are the minimum over interleaved rounds in one process, so the ratios
compare runs under the same load. Each thread count runs in its own process (JAX's thread
count is fixed at import). Peak memory is measured per (shape, implementation) in a fresh
process as the rise of the peak resident set (VmHWM, reset before the step) over the resident
set once inputs, weights and the output gradient exist, with glibc told to return big blocks
to the system at once (MALLOC_MMAP_THRESHOLD_; only in the memory processes, since the page
faults of fresh mappings would distort the timings), and compared with one unfolded copy of the
input plus the step's outputs (y, dx, dW, db).

    flock /tmp/vn-heavy.lock .venv/bin/python benchmarks/layers.py            # ~5 min on 2 cores
    .venv/bin/python benchmarks/layers.py --shapes a --threads 1 --rounds 3   # quick look
    .venv/bin/python benchmarks/layers.py --baseline HEAD~1 --no-memory        # before/after a change
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SHAPES = {  # name: (B, C_in, C_out, H, W, k)
    "a": (64, 3, 32, 32, 32, 5),
    "b": (64, 32, 64, 16, 16, 5),
    "c": (32, 8, 8, 64, 64, 18),
}
LCN_SHAPES = {  # name: (B, C, H, W): the maps after stages (a), (b), (c)
    "a": (64, 32, 28, 28),
    "b": (64, 64, 12, 12),
    "c": (32, 8, 47, 47),
}
LOCAL_IMPLS = ["conv2d", "ours", "unfold_einsum", "jax"]


def _xla_flags(threads: int) -> str:
    return ("--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
            if threads == 1 else "")


def _setup_local(name: str, impl: str, torch, seed: int = 0):
    """Tensors and a fwd+bwd closure for one implementation on one shape."""
    import torch.nn.functional as F

    from visionnets.nn import LocallyConnected2d

    b, c, o, h, w, k = SHAPES[name]
    oh, ow = h - k + 1, w - k + 1
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h, w, generator=gen)
    g = torch.randn(b, o, oh, ow, generator=gen)
    if impl == "conv2d":
        conv = torch.nn.Conv2d(c, o, k)
        xg = x.requires_grad_()

        def step():
            conv(xg).backward(g)
        return step, {"x": xg, "module": conv}
    if impl == "ours":
        layer = LocallyConnected2d(c, o, k, input_size=(h, w))
        xg = x.requires_grad_()

        def step():
            layer(xg).backward(g)
        return step, {"x": xg, "module": layer}
    if impl == "baseline":   # the same layer through another revision's functional.py (--baseline)
        layer, base = LocallyConnected2d(c, o, k, input_size=(h, w)), _baseline_module()
        xg = x.requires_grad_()

        def step():
            base.locally_connected2d(xg, layer.weight, layer.bias).backward(g)
        return step, {"x": xg, "module": layer}
    if impl == "unfold_einsum":
        weight = (torch.randn(oh * ow, o, c * k * k, generator=gen) * 0.05).requires_grad_()
        bias = torch.zeros(o, oh, ow, requires_grad=True)
        xg = x.requires_grad_()

        def step():
            cols = F.unfold(xg, k)                                   # (B, C*k*k, L)
            y = torch.einsum("bkl,lok->bol", cols, weight).view(b, o, oh, ow) + bias
            y.backward(g)
        return step, {"x": xg, "weight": weight, "bias": bias}
    if impl == "jax":
        import jax
        import jax.numpy as jnp
        import numpy as np

        jx = jnp.asarray(x.numpy())
        jw = jnp.asarray(np.random.default_rng(seed).standard_normal((o, c * k * k, oh, ow), np.float32) * 0.05)
        jb = jnp.zeros((o, oh, ow), jnp.float32)
        jg = jnp.asarray(g.numpy())

        def loss(x_, w_, b_):
            y = jax.lax.conv_general_dilated_local(x_, w_, (1, 1), "VALID", (k, k),
                                                   dimension_numbers=("NCHW", "OIHW", "NCHW"))
            return jnp.vdot(y + b_, jg)
        grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))

        def step():
            jax.block_until_ready(grad(jx, jw, jb))
        return step, {}
    raise ValueError(f"unknown implementation {impl!r}")


def _baseline_module():
    """``visionnets/nn/functional.py`` as of the ``--baseline`` revision (a file path in
    VN_BASELINE), loaded beside today's, so before and after run in one process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("baseline_functional", os.environ["VN_BASELINE"])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _time(fns: dict, rounds: int) -> dict:
    """Minimum seconds per call of each closure over ``rounds`` interleaved rounds (1 warm-up)."""
    for f in fns.values():
        f()
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - t)
    return best


def _check_same(torch) -> float:
    """Max |ours - unfold+einsum| on a small random case (a sanity check that both compute one thing)."""
    import torch.nn.functional as F

    from visionnets.nn import LocallyConnected2d

    layer = LocallyConnected2d(3, 4, 5, input_size=(12, 10))
    x = torch.randn(2, 3, 12, 10)
    ref = torch.einsum("bkl,lok->bol", F.unfold(x, 5), layer.weight.reshape(8 * 6, 4, -1)).view(2, 4, 8, 6)
    return float((layer(x) - ref - layer.bias).abs().max())


def worker(threads: int, shapes: list[str], rounds: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    try:
        import jax  # noqa: F401
        jax_note = None
    except ImportError as exc:
        jax_note = f"JAX not installed ({exc}); pip install 'jax[cpu]' to include it"
    out = {"threads": threads, "jax_note": jax_note, "max_abs_diff_vs_einsum": _check_same(torch),
           "local": [], "lcn": [], "l2pool": []}
    for name in shapes:
        fns = {}
        for impl in LOCAL_IMPLS + (["baseline"] if os.environ.get("VN_BASELINE") else []):
            if impl == "jax" and jax_note:
                continue
            fns[impl] = _setup_local(name, impl, torch)[0]
        secs = _time(fns, rounds if name != "c" else max(2, rounds // 2))
        out["local"].append({"shape": name, "dims": SHAPES[name], **{f"{k}_ms": v * 1e3 for k, v in secs.items()}})
        del fns
        out["lcn"].append(_lcn_row(name, torch, rounds))
    return out


def _lcn_row(name: str, torch, rounds: int) -> dict:
    from visionnets.nn import L2Pool2d, LocalContrastNorm2d

    b, c, h, w = LCN_SHAPES[name]
    x = torch.randn(b, c, h, w, requires_grad=True)
    g = torch.randn(b, c, h, w)
    gp = torch.randn(b, c, h // 2, w // 2)
    lcn, conv = LocalContrastNorm2d(c, 9), torch.nn.Conv2d(c, c, 3, padding=1)
    l2, mx = L2Pool2d(2), torch.nn.MaxPool2d(2)
    fns = {"lcn": lambda: lcn(x).backward(g), "conv3x3": lambda: conv(x).backward(g),
           "l2pool": lambda: l2(x).backward(gp), "maxpool": lambda: mx(x).backward(gp)}
    if os.environ.get("VN_BASELINE"):
        base = _baseline_module()
        fns["lcn_baseline"] = lambda: base.local_contrast_norm2d(x, 9).backward(g)
    secs = _time(fns, rounds)
    return {"shape": name, "dims": LCN_SHAPES[name], **{f"{k}_ms": v * 1e3 for k, v in secs.items()}}


def memory_worker(name: str, impl: str) -> dict:
    """Peak resident memory of one fwd+bwd step above the resident set before it, in MiB."""
    import gc

    import torch

    torch.set_num_threads(1)

    def status(key: str) -> int:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(key + ":"))

    step, held = _setup_local(name, impl, torch)
    step()  # warm-up: libraries, jit compilation
    for t in [held.get("x"), held.get("weight"), held.get("bias"),
              *(held["module"].parameters() if "module" in held else [])]:
        if t is not None:
            t.grad = None
    gc.collect()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM to the current resident set
    base = status("VmRSS")
    step()
    peak = status("VmHWM")
    return {"shape": name, "impl": impl, "extra_mib": (peak - base) / 2**20}


def _sizes_mib(name: str) -> dict:
    b, c, o, h, w, k = SHAPES[name]
    oh, ow = h - k + 1, w - k + 1
    mib = 4 / 2**20
    unfolded = b * c * k * k * oh * ow * mib
    outputs = (b * o * oh * ow + b * c * h * w + oh * ow * o * c * k * k + o * oh * ow) * mib  # y, dx, dW, db
    return {"unfolded_mib": unfolded, "outputs_mib": outputs, "allowed_mib": unfolded + outputs}


def _run(args: list[str], threads: int, memory: bool = False) -> dict:
    env = dict(os.environ, XLA_FLAGS=_xla_flags(threads), OMP_NUM_THREADS=str(threads))
    if memory:  # only where the resident set is measured: it makes every big block a fresh mmap,
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"  # whose page faults would distort the timings
    else:
        env.pop("MALLOC_MMAP_THRESHOLD_", None)
    res = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"benchmark worker {args} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--memory-impls", nargs="+", default=LOCAL_IMPLS, choices=LOCAL_IMPLS,
                    help="implementations whose peak memory is measured (JAX on (c) takes minutes)")
    ap.add_argument("--no-timing", action="store_true", help="only measure memory")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--out", default="layers", help="results/<out>.json")
    ap.add_argument("--append", action="store_true",
                    help="keep the rows of results/<out>.json for other shapes / thread counts")
    ap.add_argument("--baseline", metavar="REV",
                    help="also time the layers of git revision REV (its nn/functional.py, in the same "
                         "process): before/after ratios of a change")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--memory", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker is not None:
        print(json.dumps(worker(a.worker, a.shapes, a.rounds)))
        return
    if a.memory:
        print(json.dumps(memory_worker(*a.memory)))
        return

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _common import table, write_json

    if a.baseline:
        import tempfile

        src = subprocess.run(["git", "show", f"{a.baseline}:src/visionnets/nn/functional.py"], check=True,
                             capture_output=True, text=True, cwd=os.path.dirname(os.path.abspath(__file__))).stdout
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
            fh.write(src.replace('"visionnets::', '"visionnets_baseline::')  # its custom ops apart from ours
                     .replace("torch.ops.visionnets.", "torch.ops.visionnets_baseline."))
        os.environ["VN_BASELINE"] = fh.name
        rev = subprocess.run(["git", "rev-parse", "--short", a.baseline], capture_output=True, text=True,
                             cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    runs = [] if a.no_timing else [_run(["--worker", str(t), "--shapes", *a.shapes, "--rounds", str(a.rounds)], t)
                                   for t in a.threads]
    try:
        import jax  # noqa: F401
        jax_note = None
    except ImportError as exc:
        jax_note = f"JAX not installed ({exc}); pip install 'jax[cpu]' to include it"
    local_rows, lcn_rows = [], []
    if jax_note:
        print("note:", jax_note)
    for run in runs:
        for r in run["local"]:
            row = {"threads": run["threads"], "shape": r["shape"], **{k: r[k] for k in r if k.endswith("_ms")}}
            row["ours/conv2d"] = r["ours_ms"] / r["conv2d_ms"]
            row["ours/einsum"] = r["ours_ms"] / r["unfold_einsum_ms"]
            if "jax_ms" in r:
                row["ours/jax"] = r["ours_ms"] / r["jax_ms"]
            if "baseline_ms" in r:
                row["ours/baseline"] = r["ours_ms"] / r["baseline_ms"]
            local_rows.append(row)
        for r in run["lcn"]:
            lcn_rows.append({"threads": run["threads"], "shape": r["shape"], **{k: r[k] for k in r if k.endswith("_ms")},
                             "lcn/conv3x3": r["lcn_ms"] / r["conv3x3_ms"], "l2/max": r["l2pool_ms"] / r["maxpool_ms"],
                             **({"lcn/baseline": r["lcn_ms"] / r["lcn_baseline_ms"]} if "lcn_baseline_ms" in r else {})})
    memory = []
    if not a.no_memory:
        for name in a.shapes:
            for impl in a.memory_impls:
                if impl == "jax" and jax_note:
                    continue
                memory.append({**_run(["--memory", name, impl], 1, memory=True), **_sizes_mib(name)})
    load = os.getloadavg()[0]
    for row in local_rows + lcn_rows:
        row["load_avg_1min"] = load  # the machine is shared: the load the rows were measured under
    for row in memory:
        row["load_avg_1min"] = load
    if a.append:
        from _common import RESULTS

        old = json.loads((RESULTS / f"{a.out}.json").read_text())
        mine = lambda r: r["shape"] in a.shapes and r.get("threads", 1) in a.threads
        if runs:
            local_rows = [r for r in old["local"] if not mine(r)] + local_rows
            lcn_rows = [r for r in old["lcn_l2pool"] if not mine(r)] + lcn_rows
        else:
            local_rows, lcn_rows = old["local"], old["lcn_l2pool"]
        measured = {(r["shape"], r["impl"]) for r in memory}
        memory = [r for r in old["memory"] if (r["shape"], r["impl"]) not in measured] + memory
        diffs = [old["max_abs_diff_vs_einsum"]]
    else:
        diffs = []
    diffs += [r["max_abs_diff_vs_einsum"] for r in runs]
    path = write_json(a.out, {"shapes": {k: dict(zip("B C_in C_out H W k".split(), v)) for k, v in SHAPES.items()},
                              "local": local_rows, "lcn_l2pool": lcn_rows, "memory": memory,
                              "max_abs_diff_vs_einsum": max(diffs) if diffs else None,
                              "jax_note": jax_note, "baseline": rev if a.baseline else None})
    cols = ["threads", "shape", "conv2d_ms", "ours_ms", "unfold_einsum_ms", "jax_ms", "ours/conv2d", "ours/einsum", "ours/jax"]
    if a.baseline:
        cols += ["baseline_ms", "ours/baseline"]
    if local_rows:
        print("LocallyConnected2d, forward + backward, float32 CPU (ms, min over rounds)")
        print(table(local_rows, cols))
        print("\nLocalContrastNorm2d(9x9) vs Conv2d 3x3 same channels; L2Pool2d(2) vs MaxPool2d(2)")
        print(table(lcn_rows, ["threads", "shape", "lcn_ms", "conv3x3_ms", "lcn/conv3x3", "l2pool_ms", "maxpool_ms", "l2/max"]
                    + (["lcn_baseline_ms", "lcn/baseline"] if a.baseline else [])))
    if memory:
        print("\nPeak memory of one step above inputs + weights + grad_y (MiB); allowed = one unfolded copy + outputs")
        print(table(memory, ["shape", "impl", "extra_mib", "unfolded_mib", "outputs_mib", "allowed_mib"]))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
