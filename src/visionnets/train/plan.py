"""What a recipe's model needs, computed without allocating it (PyTorch's meta device).

For one example: the parameters and their memory, the memory of the gradients and of the
optimizer's state, the activations kept for the backward pass (every layer's output), and the
floating-point operations of the forward pass (the matrix products and convolutions, counted by
``torch.utils.flop_counter``; a training step costs about three times as much). Per layer too.

    >>> report = plan("digits_convnet")
    >>> report["input_shape"], report["parameters"] > 0, report["layers"][0]["name"]
    ([1, 8, 8], True, 'stage1.filter')
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from visionnets.data.base import Dataset, Split
from visionnets.errors import ConfigError
from visionnets.recipes import Recipe, load_recipe
from visionnets.train.setup import build_data, build_model_for

OPTIMIZER_STATES = {"sgd": 1, "adam": 2, "adamw": 2}     # tensors of state per parameter (momentum; Adam's two)


def shapes_only(input_shape: tuple[int, ...], num_outputs: int, name: str = "plan") -> Dataset:
    """A dataset with the given shapes and no examples (classification with ``num_outputs`` classes)."""
    y = torch.zeros(0, dtype=torch.long) if num_outputs > 0 else torch.zeros(0, 0)     # 0: features only
    empty = Split(torch.zeros(0, *input_shape), y)
    return Dataset(name, empty, None, empty, tuple(input_shape), num_outputs if num_outputs > 0 else None)


def _window(module) -> list[int] | None:
    """(rows of the window, row stride) of a layer that reads a spatial neighbourhood, else None."""
    k = getattr(module, "kernel_size", None)
    if k is None:
        return None
    kh = k if isinstance(k, int) else k[0]
    s = getattr(module, "stride", 1)                  # no stride (LCN): every position; None (pooling): the kernel
    s = k if s is None else s
    sh = s if isinstance(s, int) else s[0]
    return [int(kh), int(sh)]


def plan(recipe: Any, overrides: list[str] | tuple[str, ...] = (), data_dir=None,
         input_shape: tuple[int, ...] | None = None, num_outputs: int | None = None) -> dict[str, Any]:
    """The needs of ``recipe``'s model for one example (see the module docstring).

    The input shape comes from ``input_shape``, else the recipe's ``data.input_shape``, else the
    recipe's data (loaded); the outputs from ``num_outputs``, else the data, else 0 (features only).
    """
    rec = recipe if isinstance(recipe, Recipe) and not overrides else load_recipe(recipe, overrides)
    shape = input_shape or (tuple(rec.data.input_shape) if rec.data.input_shape else None)
    if shape is None or num_outputs is None:
        data = build_data(rec, data_dir) if shape is None else None
        shape = shape or data.input_shape
        if num_outputs is None:
            num_outputs = data.num_outputs if data is not None else 0
        dataset = data if data is not None and data.input_shape == tuple(shape) else shapes_only(shape, num_outputs)
    else:
        dataset = shapes_only(shape, num_outputs)
    with torch.device("meta"):
        model = build_model_for(rec, dataset)
    rows, hooks = [], []

    def record(name):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor):
                x = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
                rows.append({"name": name, "type": type(module).__name__, "output_shape": list(output.shape[1:]),
                             "input_shape": list(x.shape[1:]) if x is not None else None,
                             "window": _window(module), "activations": output[0].numel(),
                             "parameters": sum(p.numel() for p in module.parameters(recurse=False))})
        return hook

    for name, module in model.named_modules():
        if name and not list(module.children()):
            hooks.append(module.register_forward_hook(record(name)))
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.empty((1, *shape), device="meta"))
    for h in hooks:
        h.remove()
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    bytes_per = next((p.element_size() for p in model.parameters()), 4)
    states = OPTIMIZER_STATES.get(rec.train.optimizer.name, 1)
    activations = sum(r["activations"] for r in rows)
    flops = counter.get_total_flops()
    return {"recipe": rec.name, "model": rec.model.get("name"), "input_shape": list(shape), "outputs": num_outputs,
            "batch_size": rec.train.batch_size, "optimizer": rec.train.optimizer.name,
            "parameters": params, "trainable_parameters": trainable,
            "weights_bytes": params * bytes_per, "gradients_bytes": trainable * bytes_per,
            "optimizer_state_bytes": states * trainable * bytes_per,
            "activations_per_example": activations, "activations_bytes_per_example": activations * bytes_per,
            "forward_flops_per_example": flops, "training_flops_per_example": 3 * flops,
            "layers": rows}


def human(n: float, unit: str = "") -> str:
    """``1.12e9`` -> ``1.12 G``."""
    for div, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g} {prefix}{unit}"
    return f"{n:.3g} {unit}".strip()


def render(report: dict[str, Any]) -> str:
    """The report as a short table: totals, then the layers."""
    mib = lambda b: f"{b / 2**20:,.1f} MiB"  # noqa: E731
    lines = [f"{report['recipe']} ({report['model']}): input {report['input_shape']}, {report['outputs']} outputs",
             f"  parameters          {human(report['parameters'])} ({report['parameters']:,})",
             f"  weights             {mib(report['weights_bytes'])}",
             f"  gradients           {mib(report['gradients_bytes'])}",
             f"  optimizer state     {mib(report['optimizer_state_bytes'])}",
             f"  activations         {mib(report['activations_bytes_per_example'])} per example",
             f"  forward FLOPs       {human(report['forward_flops_per_example'])} per example "
             f"(training ~{human(report['training_flops_per_example'])})", "",
             f"  {'layer':<28} {'type':<22} {'output':<18} {'parameters':>14}"]
    for r in report["layers"]:
        lines.append(f"  {r['name']:<28} {r['type']:<22} {'x'.join(map(str, r['output_shape'])):<18} "
                     f"{r['parameters']:>14,}")
    return "\n".join(lines)




# ---------------------------------------------------------------------------------------------
# Capacity: M machines, R replicas of K partitions (DistBelief / Downpour)
# ---------------------------------------------------------------------------------------------

MACHINE = {"flops": 1e11, "bandwidth": 1.25e9, "memory_gb": 64.0}   # 16 cores ~100 GFLOP/s achieved, 10 GbE, 64 GB


def capacity(report: dict[str, Any], machines: int, replicas: int = 1, partitions: int = 1,
             flops: float = MACHINE["flops"], bandwidth: float = MACHINE["bandwidth"],
             memory_gb: float = MACHINE["memory_gb"], batch: int | None = None, n_fetch: int = 1,
             n_push: int = 1) -> dict[str, Any]:
    """What ``report``'s model needs on ``machines`` machines as ``replicas`` replicas of
    ``partitions`` model-parallel workers each (the rest of the machines hold the parameter
    server's shards), per training step of ``batch`` examples per replica.

    Model parallelism splits every map into ``partitions`` = a x b blocks (a the divisor nearest
    sqrt(K)): a worker holds 1/K of the weights, gradients and activations, and for each layer
    reading a neighbourhood it receives from each neighbour the ``window - stride`` input rows (or
    columns) its windows overlap, and sends back their gradients; the fully connected top gathers the last feature map. Data parallelism
    (Downpour) fetches the weights every ``n_fetch`` steps and pushes gradients every ``n_push``
    steps; with several replicas the optimizer state lives on the parameter-server machines.
    Time per step: compute (3 x forward FLOPs) / ``flops`` plus bytes / ``bandwidth`` per worker
    machine, not overlapped (an upper bound); examples/s = replicas x batch / step time.
    """
    if min(machines, replicas, partitions, n_fetch, n_push) < 1:
        raise ConfigError("--machines, --replicas, --partitions, n_fetch and n_push must be >= 1")
    workers = replicas * partitions
    if workers > machines:
        raise ConfigError(f"--machines {machines}: {replicas} replicas x {partitions} partitions need {workers}")
    spatial = [r for r in report["layers"] if r["window"] and r["input_shape"] and len(r["input_shape"]) == 3]
    grid = _grid(partitions)                            # K = a x b blocks of every map, a rows of blocks
    rows = min((r["output_shape"][1] for r in spatial), default=0)
    cols = min((r["output_shape"][2] for r in spatial), default=0)
    if partitions > 1 and (grid[0] > rows or grid[1] > cols):
        raise ConfigError(f"--partitions {partitions}: {grid[0]} x {grid[1]} blocks, but the model's smallest "
                          f"partitioned map is {rows} x {cols}")
    batch = batch or report["batch_size"]
    k, bytes_per = partitions, report["weights_bytes"] / max(report["parameters"], 1)
    ps_machines = machines - workers if replicas > 1 else 0
    state_on_workers = replicas == 1 or ps_machines == 0
    worker_memory = (report["weights_bytes"] + report["gradients_bytes"]
                     + (report["optimizer_state_bytes"] if state_on_workers else 0)) / k \
        + report["activations_bytes_per_example"] * batch / k
    halo = 0.0                                            # bytes one worker exchanges per step (in + out)
    if k > 1:
        a, b = grid
        for r in spatial:
            c, h, w = r["input_shape"]
            kh, sh = r["window"]
            border = (w / b if a > 1 else 0) + (h / a if b > 1 else 0)       # block edges that meet a neighbour
            halo += 2 * max(kh - sh, 0) * border * c * batch * bytes_per * 2   # both sides; fwd + bwd
        top = spatial[-1]["output_shape"] if spatial else None
        if top:
            halo += 2 * top[0] * top[1] * top[2] * batch * bytes_per * (k - 1) / k   # gather the top; its gradient
    sync = 0.0 if replicas == 1 else report["weights_bytes"] / k * (1 / n_fetch + 1 / n_push)
    compute_s = report["training_flops_per_example"] * batch / k / flops
    network_s = (halo + sync) / bandwidth
    step_s = compute_s + network_s
    ps_memory = ((report["weights_bytes"] + report["optimizer_state_bytes"]) / ps_machines
                 if replicas > 1 and ps_machines else 0.0)
    fits = worker_memory <= memory_gb * 2**30 and ps_memory <= memory_gb * 2**30
    return {"machines": machines, "replicas": replicas, "partitions": partitions, "grid": list(grid),
            "parameter_server_machines": ps_machines, "idle_machines": machines - workers - ps_machines,
            "batch_per_replica": batch,
            "machine": {"flops": flops, "bandwidth": bandwidth, "memory_gb": memory_gb},
            "worker_memory_bytes": worker_memory, "parameter_server_memory_bytes": ps_memory,
            "fits": fits, "halo_bytes_per_step": halo, "sync_bytes_per_step": sync,
            "compute_seconds_per_step": compute_s, "network_seconds_per_step": network_s,
            "seconds_per_step": step_s, "examples_per_second": replicas * batch / step_s}


def _grid(k: int) -> tuple[int, int]:
    """K workers as a x b blocks, a the divisor of K nearest sqrt(K) from below (square-ish blocks)."""
    a = max(d for d in range(1, int(k ** 0.5) + 1) if k % d == 0)
    return a, k // a


def render_capacity(cap: dict[str, Any]) -> str:
    gib = lambda b: f"{b / 2**30:,.2f} GiB"  # noqa: E731
    m = cap["machine"]
    return "\n".join([
        f"on {cap['machines']} machines ({human(m['flops'], 'FLOP/s')}, {human(m['bandwidth'], 'B/s')}, "
        f"{m['memory_gb']:g} GB each): {cap['replicas']} replicas x {cap['partitions']} partitions "
        f"({cap['grid'][0]} x {cap['grid'][1]} blocks), {cap['parameter_server_machines']} parameter-server "
        f"machines, {cap['idle_machines']} idle; batch {cap['batch_per_replica']} per replica",
        f"  memory per worker       {gib(cap['worker_memory_bytes'])}"
        + (f"   per parameter server {gib(cap['parameter_server_memory_bytes'])}"
           if cap["parameter_server_memory_bytes"] else ""),
        f"  fits                    {'yes' if cap['fits'] else 'NO'}",
        f"  exchanged per step      halos {human(cap['halo_bytes_per_step'], 'B')}, "
        f"fetch + push {human(cap['sync_bytes_per_step'], 'B')} per worker",
        f"  time per step           compute {cap['compute_seconds_per_step']:.3g} s + network "
        f"{cap['network_seconds_per_step']:.3g} s = {cap['seconds_per_step']:.3g} s",
        f"  throughput              {cap['examples_per_second']:,.1f} examples/s"])
