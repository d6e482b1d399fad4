"""Higher-layer features projected into pixel space (linear approximations).

A unit of layer 2 does not see pixels; its weights combine the units of layer 1. The tutorial
("Visualizing Learned Features") draws it by projecting those weights into image space through
the layers below:

* **stacked auto-encoders** -- the reconstruction is ``W h = W1 h1 + W2 h2 + ...``: the columns
  of a decoder show what each code unit represents. A layer-2 unit k is drawn as
  ``D1 @ D2[:, k]`` (layer-1 decoder times the unit's layer-2 basis), a layer-3 unit as
  ``D1 @ D2 @ D3[:, k]``. With tied weights (or only encoders at hand) ``D_i = W_i^T``.
* **conv stacks** -- a conv2 filter's (in, kh, kw) weights weigh conv1's filters placed on the
  stride grid: ``E[k] = conv_transpose2d(w2[k], w1, stride=s)``; a pooling layer between them
  is taken as average pooling (a uniform ``p x p`` kernel, stride ``s``), and a batch norm
  scales each channel by its eval-mode gain ``gamma / sqrt(running_var + eps)``.

Computed on CPU in float64. Both are **approximations**: they ignore the non-linearities (and treat max or L2 pooling as
averaging), so they are exact only for a linear net with average pooling. They show the
pixel pattern a unit's weights are tuned to, not what the unit computes on every input; for
that see :mod:`visionnets.viz.optimal` and :mod:`visionnets.viz.top`.

    >>> import torch
    >>> D1, D2 = torch.randn(64, 20), torch.randn(20, 5)
    >>> project_through_decoders([D1, D2], input_shape=(1, 8, 8)).shape
    torch.Size([5, 1, 8, 8])
    >>> project_conv_filters(torch.randn(6, 1, 5, 5), torch.randn(16, 6, 5, 5), stride=2).shape
    torch.Size([16, 1, 13, 13])
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from visionnets.errors import ConfigError
from visionnets.viz.filters import filter_image, save_grid
from visionnets.viz.grid import as_images, square_shape


def _matrix(m) -> torch.Tensor:
    w = m.detach() if isinstance(m, torch.Tensor) else getattr(m, "weight", None)
    if not isinstance(w, torch.Tensor) or w.ndim != 2:
        raise ConfigError(f"expected a matrix or a Linear layer, got {type(m).__name__} "
                          f"{tuple(w.shape) if isinstance(w, torch.Tensor) else ''}".rstrip())
    return w.detach().cpu()


def project_through_decoders(decoders: Sequence, input_shape=None, keep: int | None = None
                             ) -> torch.Tensor:
    """Project the top layer's units to pixels through the decoders below.

    Args:
        decoders: decoder matrices from the pixels up: ``D1`` (D, h1), ``D2`` (h1, h2), ...
            (a tensor, or a decoder ``nn.Linear`` whose weight has this shape).
        input_shape: (C, H, W) to reshape each projection to (default: flat (D,), or a square
            image when D is s*s or 3*s*s).
        keep: keep only the ``keep`` largest |weights| of each unit's basis in every upper
            decoder (the rest are 0: "missing edges have 0 weight") before projecting.

    Returns:
        (h_top, *input_shape): row k is ``D1 @ D2 @ ... @ Dn[:, k]``.
    """
    mats = [_matrix(d).to(torch.float64) for d in decoders]
    if not mats:
        raise ConfigError("project_through_decoders needs at least one decoder")
    out = mats[0]
    for i, m in enumerate(mats[1:], start=2):
        if m.shape[0] != out.shape[1]:
            raise ConfigError(f"decoder {i} has shape {tuple(m.shape)} but decoder {i - 1} codes "
                              f"{out.shape[1]} units; expected ({out.shape[1]}, h{i})")
        if keep is not None:
            m = _keep_largest(m, keep)
        out = out @ m
    images = out.T.contiguous().to(torch.float32)
    if input_shape is None and square_shape(images.shape[1]) is None:
        return images
    return as_images(images, input_shape)


def project_through_encoders(encoders: Sequence, input_shape=None, keep: int | None = None
                             ) -> torch.Tensor:
    """As :func:`project_through_decoders` with tied decoders ``D_i = W_i^T`` taken from
    the encoder matrices ``W1`` (h1, D), ``W2`` (h2, h1), ... (or encoder ``nn.Linear``)."""
    return project_through_decoders([_matrix(w).T for w in encoders], input_shape, keep)


def _keep_largest(m: torch.Tensor, k: int) -> torch.Tensor:
    if k < 1:
        raise ConfigError(f"keep must be >= 1, got {k}")
    if k >= m.shape[0]:
        return m
    idx = m.abs().topk(k, dim=0).indices
    return torch.zeros_like(m).scatter(0, idx, m.gather(0, idx))


def project_conv_filters(lower: torch.Tensor, upper: torch.Tensor, stride: int | tuple = 1,
                         dilation: int | tuple = 1) -> torch.Tensor:
    """Project upper conv filters (c2, c1, k2, k2) through lower ones (c1, c0, k1, k1).

    ``E[k, c] = sum_j sum_{u,v} upper[k, j, u, v] * lower[j, c]`` shifted to (s*u, s*v): the
    linear receptive field, computed as ``conv_transpose2d(upper, lower, stride=s)``.
    Returns (c2, c0, (k2 - 1) * s + k1, ...).
    """
    lower, upper = lower.detach().cpu(), upper.detach().cpu()
    if lower.ndim != 4 or upper.ndim != 4 or upper.shape[1] != lower.shape[0]:
        raise ConfigError(f"upper filters {tuple(upper.shape)} must combine the "
                          f"{lower.shape[0] if lower.ndim else '?'} lower filters {tuple(lower.shape)}: "
                          f"expected upper (c2, c1, kh, kw) with c1 == lower.shape[0]")
    return F.conv_transpose2d(upper.double(), lower.double(), stride=stride,
                              dilation=dilation).float()


def _pool_params(module) -> tuple[tuple[int, int], tuple[int, int]] | None:
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d, nn.LPPool2d)) or (
            hasattr(module, "kernel_size") and hasattr(module, "stride")
            and not isinstance(getattr(module, "weight", None), torch.Tensor)):
        k = module.kernel_size
        s = module.stride if module.stride is not None else k
        pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
        return pair(k), pair(s)
    return None


def conv_stack(model: nn.Module, layer: str) -> list[nn.Module]:
    """The conv, batch-norm and pooling modules of ``model`` up to and including conv ``layer``, in
    ``named_modules`` order (the forward order of a Sequential-style net)."""
    stack = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d)) or _pool_params(m) is not None:
            stack.append(m)
        elif isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.ndim == 6:
            raise ConfigError(f"layer {name!r} is locally connected or tiled: its filters change "
                              f"with location, so layers above it cannot be projected to pixels")
        if name == layer:
            if not isinstance(m, nn.Conv2d):
                raise ConfigError(f"layer {layer!r} is a {type(m).__name__}, expected a Conv2d")
            return stack
    raise ConfigError(f"no layer named {layer!r} in the model; names: {_names(model)}")


def project_conv_layer(model: nn.Module, layer: str) -> torch.Tensor:
    """Project every filter of conv ``layer`` to pixel space through the conv, batch-norm and
    pooling layers below it (non-linearities and biases ignored, pooling taken as averaging).

    Returns (out_channels, C_in_pixels, K, K). For the first conv layer, its own filters.
    """
    stack = conv_stack(model, layer)
    e = stack[-1].weight.detach().cpu().double()
    for m in reversed(stack[:-1]):
        if isinstance(m, nn.Conv2d):
            if m.groups != 1:
                raise ConfigError(f"cannot project through a grouped conv (groups={m.groups})")
            e = F.conv_transpose2d(e, m.weight.detach().cpu().double(), stride=m.stride, dilation=m.dilation)
        elif isinstance(m, nn.BatchNorm2d):
            e = e * _batchnorm_scale(m)[None, :, None, None]
        else:
            (kh, kw), stride = _pool_params(m)
            c = e.shape[1]
            box = torch.full((c, 1, kh, kw), 1.0 / (kh * kw), dtype=e.dtype)
            e = F.conv_transpose2d(e, box, stride=stride, groups=c)
    return e.float()


def _batchnorm_scale(m: nn.BatchNorm2d) -> torch.Tensor:
    """The per-channel gain of a batch norm in eval mode, gamma / sqrt(running_var + eps)."""
    if m.running_var is None:
        raise ConfigError("cannot project through a BatchNorm2d without running statistics")
    gamma = m.weight.detach() if m.weight is not None else torch.ones_like(m.running_var)
    return (gamma / (m.running_var + m.eps).sqrt()).cpu().double()


def project_linear_layer(model: nn.Module, layer: str, input_shape=None, keep: int | None = None
                         ) -> torch.Tensor:
    """Project the units of Linear ``layer`` through the Linear layers below it, with tied
    decoders ``W_i^T`` (a stack of encoders, or an MLP). Returns (units, *input_shape)."""
    encoders = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            encoders.append(m)
        if name == layer:
            if not isinstance(m, nn.Linear):
                raise ConfigError(f"layer {layer!r} is a {type(m).__name__}, expected a Linear")
            return project_through_encoders(encoders, input_shape, keep)
    raise ConfigError(f"no layer named {layer!r} in the model; names: {_names(model)}")


def project_layer(model: nn.Module, layer: str, input_shape=None) -> torch.Tensor:
    """Pixel-space features of ``layer``: :func:`project_conv_layer` for a Conv2d,
    :func:`project_linear_layer` for a Linear in a stack of Linear layers."""
    modules = dict(model.named_modules())
    if layer not in modules:
        raise ConfigError(f"no layer named {layer!r} in the model; names: {_names(model)}")
    m = modules[layer]
    if isinstance(m, nn.Conv2d):
        return project_conv_layer(model, layer)
    if isinstance(m, nn.Linear):
        if any(isinstance(x, nn.Conv2d) for x in model.modules()):
            raise ConfigError(f"layer {layer!r} is a Linear layer above conv layers: project a "
                              f"conv layer instead, or use viz.optimal for this unit")
        return project_linear_layer(model, layer, input_shape)
    raise ConfigError(f"layer {layer!r} is a {type(m).__name__}; only Conv2d and Linear layers "
                      f"can be projected to pixels")


def plot_projection(model: nn.Module, layer: str, path: str | os.PathLike, input_shape=None,
                    normalize: str = "minmax", max_units: int = 400) -> Path:
    """Draw :func:`project_layer` as a filter grid (each unit normalized on its own)."""
    e = project_layer(model, layer, input_shape)
    grid = filter_image(e[:max_units], normalize=normalize)
    return save_grid(grid, path, f"{layer}: {len(e)} units projected to pixels (linear approx.)")


def _names(model: nn.Module) -> str:
    names = [n for n, _ in model.named_modules() if n]
    return ", ".join(names[:30]) + (" ..." if len(names) > 30 else "")
