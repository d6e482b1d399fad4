"""The optimal input of a unit: the image of fixed norm that activates it most.

As for the face neuron of Le et al. (ICML 2012), solve

    x* = argmax_x  f_unit(x)   subject to  ||x||_2 = r

by projected gradient ascent: step along the normalized gradient, then project back onto the
sphere, ``x <- r (x + eta_t r g/||g||) / ||x + eta_t r g/||g||||``, with a cosine-decayed step
``eta_t``. Several starts run as one batch (the model is in eval mode, so examples do not
interact); the best input seen is returned. Starting points: Gaussian noise, the dataset's mean
image, or any tensor, each scaled to norm ``r``.

Pixel-level gradient ascent through contrast-normalizing layers tends to end in high-frequency
patterns no image has; ``blur=sigma`` smooths each step with a Gaussian of that width in pixels
(a smoothness prior on the ascent, as Yosinski et al. 2015 blur their images), so the result
stays among images whose detail grows from the start's.

The constraint matters: without it a ReLU or linear unit grows without bound with ``||x||``.
Compare the result with dataset images scaled to the same norm (:func:`activation_at_norm`).

    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    >>> best = optimal_input(net, "1", unit=0, input_shape=(1, 4, 4), norm=1.0, steps=50)
    >>> w = net[1].weight[0]
    >>> abs(best.activation - (w.norm() + net[1].bias[0]).item()) < 1e-4  # x* = r w / ||w||
    True
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from visionnets.errors import ConfigError
from visionnets.nn import functional as VF
from visionnets.viz.filters import save_grid
from visionnets.viz.grid import as_images, evaluating, model_device, tile_grid
from visionnets.viz.top import layer_output, unit_activation, unit_activations

START = ("noise", "mean")


@dataclass
class OptimalInput:
    """The best input found (``input_shape``, norm ``r``) and its activation."""

    x: torch.Tensor
    activation: float
    history: list[float] = field(default_factory=list)   # best activation over starts, per step


def _project(x: torch.Tensor, norm: float) -> torch.Tensor:
    n = x.reshape(len(x), -1).norm(dim=1).clamp_min(1e-12)
    return x * (norm / n).reshape(-1, *[1] * (x.ndim - 1))


def optimal_input(model: nn.Module, layer: str, unit: int, input_shape, norm: float,
                  steps: int = 200, lr: float = 0.5, start="noise", mean_image: torch.Tensor | None = None,
                  restarts: int = 4, reduce: str = "max", seed: int = 0, blur: float = 0.0) -> OptimalInput:
    """Maximize one unit's activation over inputs of L2 norm ``norm``.

    Args:
        layer, unit, reduce: the unit (see :mod:`visionnets.viz.top`).
        input_shape: the shape of one input, e.g. (1, 28, 28).
        norm: the radius ``r`` of the constraint ``||x||_2 = r``.
        steps: ascent steps; lr: the first step's length as a fraction of ``r``.
        start: ``"noise"``, ``"mean"`` (needs ``mean_image``: the first start is the mean
            image, the others add noise to it) or a tensor of ``input_shape``.
        restarts: starts optimized together; the best is kept.
        blur: the width (pixels) of a Gaussian that smooths every step; 0 (default): none.
    """
    if norm <= 0 or not math.isfinite(norm):
        raise ConfigError(f"norm must be a positive number, got {norm}")
    if steps < 1 or restarts < 1:
        raise ConfigError(f"steps and restarts must be >= 1, got {steps} and {restarts}")
    shape = tuple(int(s) for s in input_shape)
    if not (blur >= 0 and math.isfinite(blur)) or (blur > 0 and len(shape) != 3):
        raise ConfigError(f"blur: a width >= 0 for image inputs (C, H, W); got {blur} for input shape {shape}")
    device = model_device(model)
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn((restarts, *shape), generator=g)
    if isinstance(start, torch.Tensor) or start == "mean":
        if not isinstance(start, torch.Tensor) and mean_image is None:
            raise ConfigError("start='mean' needs mean_image (the dataset's mean input)")
        base = start if isinstance(start, torch.Tensor) else mean_image
        m = _start_from(base, shape, "start" if base is start else "mean_image")
        if m.norm() == 0:
            raise ConfigError("the starting image is all zeros (centred data?): use start='noise'")
        x0 = m + 0.25 * _project(noise, m.norm().item())     # the first start is the image itself
        x0[0] = m
    elif start == "noise":
        x0 = noise
    else:
        raise ConfigError(f"start must be one of {START} or a tensor, got {start!r}")
    x = _project(x0.float(), norm).to(device)
    best_x, best_a, history = x[0].clone(), -math.inf, []
    with evaluating(model), torch.enable_grad():
        for t in range(steps + 1):
            x.requires_grad_(True)
            a = unit_activation(layer_output(model, layer, x), unit, reduce)
            (grad,) = torch.autograd.grad(a.sum(), x)
            a = a.detach()
            i = int(a.argmax())
            if a[i].item() > best_a:
                best_a, best_x = a[i].item(), x[i].detach().clone()
            history.append(best_a)
            if t == steps:
                break
            eta = lr * norm * 0.5 * (1 + math.cos(math.pi * t / steps))
            if blur > 0:
                grad = _blur(grad, blur)
            gn = grad.reshape(len(grad), -1).norm(dim=1).clamp_min(1e-30).reshape(-1, *[1] * len(shape))
            x = _project(x.detach() + eta * grad / gn, norm)
    return OptimalInput(best_x.cpu(), best_a, history)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Each map of ``x`` (N, C, H, W) convolved with a Gaussian of width ``sigma`` (reflected borders)."""
    r = max(1, min(int(math.ceil(3 * sigma)), min(x.shape[-2:]) - 1))
    k = VF.gaussian_window((2 * r + 1, 1), sigma, dtype=x.dtype, device=x.device).view(1, 1, -1, 1)
    k = k.expand(x.shape[1], 1, -1, 1)
    x = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (r, r, r, r), mode="reflect"), k, groups=x.shape[1])
    return torch.nn.functional.conv2d(x, k.transpose(2, 3), groups=x.shape[1])


def _start_from(t: torch.Tensor, shape, what: str) -> torch.Tensor:
    if t.numel() != math.prod(shape):
        raise ConfigError(f"{what} has shape {tuple(t.shape)}, expected {shape}")
    return t.detach().reshape(shape).float().cpu()


def activation_at_norm(model: nn.Module, layer: str, unit: int, x: torch.Tensor, norm: float,
                       reduce: str = "max") -> torch.Tensor:
    """The unit's activation on every example of ``x`` scaled to L2 norm ``norm``: (N,)."""
    return unit_activations(model, layer, unit, _project(x.float(), norm), reduce)


def plot_optimal(result: OptimalInput, path: str | os.PathLike, title: str | None = None,
                 image_shape=None) -> Path:
    """Draw an optimal input (normalized to [0, 1]) with its activation in the title."""
    img = as_images(result.x.reshape(1, -1) if result.x.ndim == 1 else result.x[None], image_shape)
    grid = tile_grid(img, ncols=1, pad=0)
    head = f"{title}: " if title else ""
    return save_grid(grid, path, f"{head}activation {result.activation:.4g}", pixels_per_cell=12)
