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
                rows.append({"name": name, "type": type(module).__name__, "output_shape": list(output.shape[1:]),
                             "activations": output[0].numel(),
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


