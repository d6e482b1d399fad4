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
from visionnets.partition import border_traffic, grid, sum_bytes, sum_messages, window_of
from visionnets.recipes import Recipe, load_recipe
from visionnets.train.setup import build_data, build_model_for

OPTIMIZER_STATES = {"sgd": 1, "adam": 2, "adamw": 2}     # tensors of state per parameter (momentum; Adam's two)


def shapes_only(input_shape: tuple[int, ...], num_outputs: int, name: str = "plan") -> Dataset:
    """A dataset with the given shapes and no examples (classification with ``num_outputs`` classes)."""
    y = torch.zeros(0, dtype=torch.long) if num_outputs > 0 else torch.zeros(0, 0)     # 0: features only
    empty = Split(torch.zeros(0, *input_shape), y)
    return Dataset(name, empty, None, empty, tuple(input_shape), num_outputs if num_outputs > 0 else None)


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
                             "window": window_of(module), "activations": output[0].numel(),
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

MACHINE = {"flops": 1e11, "bandwidth": 1.25e9, "memory_gb": 64.0,   # 16 cores ~100 GFLOP/s achieved, 10 GbE,
           "latency": 5e-5}                                         # 64 GB, 50 us per round of messages


def capacity(report: dict[str, Any], machines: int, replicas: int = 1, partitions: int = 1,
             flops: float = MACHINE["flops"], bandwidth: float = MACHINE["bandwidth"],
             memory_gb: float = MACHINE["memory_gb"], batch: int | None = None, n_fetch: int = 1,
             n_push: int = 1, latency: float = MACHINE["latency"]) -> dict[str, Any]:
    """What ``report``'s model needs on ``machines`` machines as ``replicas`` replicas of
    ``partitions`` model-parallel workers each (the rest of the machines hold the parameter
    server's shards), per training step of ``batch`` examples per replica.

    Model parallelism splits every map into ``partitions`` = a x b blocks (a the divisor nearest
    sqrt(K)), exactly as :mod:`visionnets.distributed.model_parallel` does (the same geometry,
    :mod:`visionnets.partition`): a worker holds 1/K of the weights, gradients and activations;
    before each layer reading a neighbourhood it receives the borders of its neighbours' blocks
    its windows reach, and sends back their gradients; the first fully connected layer's partial
    products and local contrast normalization's mean are summed over the workers
    (:func:`visionnets.partition.sum_bytes`). Data parallelism (Downpour) fetches the weights every ``n_fetch`` steps and
    pushes gradients every ``n_push`` steps; with several replicas the optimizer state lives on
    the parameter-server machines. Time per step: compute (3 x forward FLOPs) / ``flops``, plus
    the bytes the busiest worker sends / ``bandwidth`` (links are full duplex: receiving runs
    alongside) and ``latency`` per round of messages (an exchange with the neighbours, a sum: the
    messages of one round travel at once; the latency of a round between computing workers, not
    a ping-pong's), not overlapped (an upper bound); examples/s =
    replicas x batch / step time.
    """
    if min(machines, replicas, partitions, n_fetch, n_push) < 1:
        raise ConfigError("--machines, --replicas, --partitions, n_fetch and n_push must be >= 1")
    workers = replicas * partitions
    if workers > machines:
        raise ConfigError(f"--machines {machines}: {replicas} replicas x {partitions} partitions need {workers}")
    spatial = [r for r in report["layers"] if r["window"] and r["input_shape"] and len(r["input_shape"]) == 3]
    a, b = grid(partitions)
    rows = min((r["output_shape"][1] for r in spatial), default=0)
    cols = min((r["output_shape"][2] for r in spatial), default=0)
    if partitions > 1 and (a > rows or b > cols):
        raise ConfigError(f"--partitions {partitions}: {a} x {b} blocks, but the model's smallest "
                          f"partitioned map is {rows} x {cols}")
    batch = batch or report["batch_size"]
    k, bytes_per = partitions, report["weights_bytes"] / max(report["parameters"], 1)
    ps_machines = machines - workers if replicas > 1 else 0
    state_on_workers = replicas == 1 or ps_machines == 0
    worker_memory = (report["weights_bytes"] + report["gradients_bytes"]
                     + (report["optimizer_state_bytes"] if state_on_workers else 0)) / k \
        + report["activations_bytes_per_example"] * batch / k
    halo, messages, rounds = 0.0, 0, 0       # what the busiest worker sends per step; rounds: its synchronizations
    if k > 1:
        layers = [(r["input_shape"][0], tuple(r["input_shape"][1:]), tuple(r["output_shape"][1:]), r["window"])
                  for r in spatial]
        busiest = max(border_traffic(layers, k), key=lambda t: (t["values"], t["rounds"]))
        halo, messages, rounds = busiest["values"] * batch * bytes_per, busiest["messages"], busiest["rounds"]
        after = report["layers"][report["layers"].index(spatial[-1]) + 1:] if spatial else []
        fc = next((r for r in after if r["type"] == "Linear"), None)
        sums = [fc["output_shape"][0]] if fc else []                          # partial products, forward
        sums += [1, 1] * sum(r["type"] == "LocalContrastNorm2d" for r in spatial)   # mean(sigma): fwd, bwd
        halo += sum(sum_bytes(int(n * batch * bytes_per), k) for n in sums)
        messages += sum_messages(k)[0] * len(sums)
        rounds += sum_messages(k)[1] * len(sums)
    sync = 0.0 if replicas == 1 else report["weights_bytes"] / k * (1 / n_fetch + 1 / n_push)
    compute_s = report["training_flops_per_example"] * batch / k / flops
    network_s = (halo + sync) / bandwidth + rounds * latency
    step_s = compute_s + network_s
    ps_memory = ((report["weights_bytes"] + report["optimizer_state_bytes"]) / ps_machines
                 if replicas > 1 and ps_machines else 0.0)
    fits = worker_memory <= memory_gb * 2**30 and ps_memory <= memory_gb * 2**30
    return {"machines": machines, "replicas": replicas, "partitions": partitions, "grid": [a, b],
            "parameter_server_machines": ps_machines, "idle_machines": machines - workers - ps_machines,
            "batch_per_replica": batch,
            "machine": {"flops": flops, "bandwidth": bandwidth, "memory_gb": memory_gb, "latency": latency},
            "worker_memory_bytes": worker_memory, "parameter_server_memory_bytes": ps_memory,
            "fits": fits, "halo_bytes_per_step": halo, "messages_per_step": messages, "rounds_per_step": rounds,
            "sync_bytes_per_step": sync,
            "compute_seconds_per_step": compute_s, "network_seconds_per_step": network_s,
            "seconds_per_step": step_s, "examples_per_second": replicas * batch / step_s}


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
        f"  sent per step           borders and sums {human(cap['halo_bytes_per_step'], 'B')} in "
        f"{cap['messages_per_step']} messages ({cap['rounds_per_step']} rounds), "
        f"fetch + push {human(cap['sync_bytes_per_step'], 'B')} per worker",
        f"  time per step           compute {cap['compute_seconds_per_step']:.3g} s + network "
        f"{cap['network_seconds_per_step']:.3g} s = {cap['seconds_per_step']:.3g} s",
        f"  throughput              {cap['examples_per_second']:,.1f} examples/s"])
