"""Top images of a unit: the dataset images that excite it most (and least).

A unit is a layer name (as in ``model.named_modules()``; ``""`` is the model's output) and an
index: a column of a (N, D) output, or a channel of a (N, C, H, W) feature map, reduced over
space by its maximum (``reduce="max"``: the unit fires somewhere in the image) or its mean.
Activations are read with a forward hook; the forward pass stops at the layer.

    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU())
    >>> x = torch.randn(50, 1, 8, 8)
    >>> top = top_images(net, "0", unit=2, x=x, k=5)
    >>> bool((top.activations[:-1] >= top.activations[1:]).all())
    True
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from visionnets.errors import ConfigError, did_you_mean
from visionnets.viz.grid import as_images, draw_labeled_grid, evaluating, model_device, new_figure, save_figure

REDUCE = ("max", "mean")


class _Stop(Exception):
    """Raised by the hook to end the forward pass once the layer's output is captured."""


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The module called ``name`` in ``model.named_modules()`` (``""`` is the model)."""
    modules = dict(model.named_modules())
    if name not in modules:
        names = [n for n in modules if n]
        raise ConfigError(f"no layer named {name!r} in the model{did_you_mean(name, names)}; names: "
                          f"{', '.join(names[:30])}{' ...' if len(names) > 30 else ''}")
    return modules[name]


def layer_output(model: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    """The output of ``layer`` on input ``x`` (gradients flow if enabled); the rest of the
    forward pass is skipped."""
    module = find_layer(model, layer)
    captured = []

    def hook(_module, _inputs, output):
        if not isinstance(output, torch.Tensor):
            raise ConfigError(f"layer {layer!r} returns {type(output).__name__}, expected a tensor")
        captured.append(output)
        raise _Stop

    handle = module.register_forward_hook(hook)
    try:
        model(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    if not captured:
        raise ConfigError(f"layer {layer!r} was not called by the model's forward pass")
    return captured[0]


def unit_activation(output: torch.Tensor, unit: int, reduce: str = "max") -> torch.Tensor:
    """One unit's activation per example (N,) from a layer output (N, D) or (N, C, ...)."""
    if reduce not in REDUCE:
        raise ConfigError(f"reduce must be one of {REDUCE}, got {reduce!r}")
    if output.ndim < 2:
        raise ConfigError(f"layer output of shape {tuple(output.shape)} has no unit axis; "
                          f"expected (N, D) or (N, C, H, W)")
    if not 0 <= unit < output.shape[1]:
        raise ConfigError(f"unit {unit} out of range: the layer has {output.shape[1]} "
                          f"{'channels' if output.ndim > 2 else 'units'}")
    a = output[:, unit]
    if a.ndim == 1:
        return a
    a = a.reshape(len(a), -1)
    return a.amax(1) if reduce == "max" else a.mean(1)


@torch.no_grad()
def unit_activations(model: nn.Module, layer: str, unit: int, x: torch.Tensor,
                     reduce: str = "max", batch_size: int = 512) -> torch.Tensor:
    """The activation of one unit on every example of ``x``: (N,) float32 on CPU.
    The model runs in eval mode (restored afterwards), on its own device."""
    device = model_device(model)
    out = []
    with evaluating(model):
        for lo in range(0, len(x), batch_size):
            y = layer_output(model, layer, x[lo:lo + batch_size].to(device))
            out.append(unit_activation(y, unit, reduce).float().cpu())
    if not out:
        raise ConfigError("no examples to compute activations on (x is empty)")
    return torch.cat(out)


@dataclass
class TopImages:
    """The ``k`` examples with the highest (or lowest) activation, best first."""

    indices: torch.Tensor       # (k,) int64 into x
    activations: torch.Tensor   # (k,) float32, sorted: descending, or ascending if negative


def top_images(model: nn.Module, layer: str, unit: int, x: torch.Tensor, k: int = 16,
               reduce: str = "max", negative: bool = False, batch_size: int = 512) -> TopImages:
    """The ``k`` examples of ``x`` that activate the unit most (``negative=True``: least)."""
    acts = unit_activations(model, layer, unit, x, reduce, batch_size)
    k = min(k, len(acts))
    values, idx = acts.topk(k, largest=not negative)
    return TopImages(idx, values)


def plot_top_images(x: torch.Tensor, tops: list[tuple[str, TopImages]], path: str | os.PathLike,
                    title: str | None = None, image_shape=None, ncols: int = 8) -> Path:
    """Draw groups of examples (a heading and a :class:`TopImages` each), each image normalized
    on its own with its activation written under it; write the PNG atomically to ``path``."""
    rows = [max(1, -(-len(t.indices) // ncols)) for _, t in tops]
    fig = new_figure(0.95 * ncols, 1.3 * sum(rows) + 0.45 * len(tops) + 0.3)
    gs = fig.add_gridspec(len(tops), 1, height_ratios=rows)
    for i, (heading, top) in enumerate(tops):
        images = as_images(x[top.indices].float(), image_shape)
        draw_labeled_grid(fig.add_subplot(gs[i]), images,
                          [f"{a:.3g}" for a in top.activations.tolist()], ncols, title=heading)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def plot_top(model: nn.Module, layer: str, unit: int, x: torch.Tensor, path: str | os.PathLike,
             k: int = 16, reduce: str = "max", image_shape=None, batch_size: int = 512) -> Path:
    """Top-``k`` and most negative ``k`` examples of one unit, activations written under each."""
    acts = unit_activations(model, layer, unit, x, reduce, batch_size)
    k = min(k, len(acts))
    pos, neg = acts.topk(k), acts.topk(k, largest=False)
    tops = [(f"top {k}", TopImages(pos.indices, pos.values)),
            (f"most negative {k}", TopImages(neg.indices, neg.values))]
    title = f"layer {layer!r} unit {unit} ({reduce} over space)" if layer else f"output unit {unit}"
    return plot_top_images(x, tops, path, title, image_shape, ncols=min(8, k))
