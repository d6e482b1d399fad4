"""Filter grids: what each unit of a layer with spatial weights looks for in its input.

"Columns of W show what each code unit represents": a unit's incoming weights, laid out on the
pixel grid they touch, are drawn as a small image, each normalized on its own.

Weight layouts understood (a module's ``.weight`` or a raw tensor; any 6-D weight is read as
locally connected):

=======================  ===================================  ===============================
layer                    weight                               filters drawn (N, C, kh, kw)
=======================  ===================================  ===============================
``nn.Conv2d``            (out_c, in_c, kh, kw)                all of them
locally connected        (out_h, out_w, out_c, in_c, kh, kw)  at one ``location`` (default the
                                                              centre), or one ``channel`` at
                                                              every location (a grid over the
                                                              output map)
tiled convolution        (tile_h, tile_w, out_c, in_c, kh, kw)  every tile (one row per tile)
``nn.Linear``            (out, C*H*W)                         reshaped to (out, C, H, W) with
                                                              the ``input_shape`` (auto-encoder
                                                              encoders, a first MLP layer)
=======================  ===================================  ===============================

Filters with 3 input channels are drawn in colour; with 1, in grey; with any other number, as
one row per filter and one grey tile per input channel.

    >>> import torch
    >>> filter_weights(torch.nn.Conv2d(3, 8, 5)).shape
    torch.Size([8, 3, 5, 5])
    >>> filter_weights(torch.nn.Linear(64, 10), input_shape=(1, 8, 8)).shape
    torch.Size([10, 1, 8, 8])
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parameter import is_lazy

from visionnets.errors import ConfigError
from visionnets.nn.local import TiledConv2d
from visionnets.viz.grid import new_figure, normalize_each, save_figure, show_grid, square_shape, tile_grid


def _weight(layer) -> torch.Tensor:
    if isinstance(layer, torch.Tensor):
        return layer.detach()
    w = getattr(layer, "weight", None)
    if not isinstance(w, torch.Tensor):
        raise ConfigError(f"{type(layer).__name__} has no weight tensor to draw as filters")
    if is_lazy(w):
        raise ConfigError(f"{type(layer).__name__} has no weights yet (created lazily): run one "
                          f"forward pass, or give input_size, before drawing its filters")
    return w.detach()


def _image_shape(in_features: int, input_shape) -> tuple[int, int, int]:
    if input_shape is not None:
        shape = tuple(int(s) for s in input_shape)
        if len(shape) == 1:
            shape = square_shape(shape[0]) or shape
        if len(shape) == 2:
            shape = (1, *shape)
    else:
        shape = square_shape(in_features)
    if shape is None or len(shape) != 3 or math.prod(shape) != in_features:
        raise ConfigError(f"a Linear layer with in_features={in_features} cannot be drawn as filters "
                          f"of input_shape {input_shape}; pass input_shape=(C, H, W) with "
                          f"C*H*W == {in_features}")
    return shape


def filter_layout(layer, input_shape=None, location=None, channel: int | None = None
                  ) -> tuple[torch.Tensor, int | None]:
    """The filters of ``layer`` as (N, C, kh, kw) and the number of grid columns that shows
    their structure (None: about square). See :func:`filter_weights` for the arguments."""
    w = _weight(layer)
    if w.ndim == 4:
        return w, None
    if w.ndim == 2:
        return w.reshape(w.shape[0], *_image_shape(w.shape[1], input_shape)), None
    if w.ndim != 6:
        raise ConfigError(f"cannot draw filters from a weight of shape {tuple(w.shape)}; expected "
                          f"(out, in, kh, kw), (out_h, out_w, out, in, kh, kw) or (out, C*H*W)")
    p, q, o = w.shape[:3]
    if location is not None and channel is not None:
        raise ConfigError("pass either location= or channel=, not both")
    if channel is not None:
        if not 0 <= channel < o:
            raise ConfigError(f"channel {channel} out of range: the layer has {o} output channels")
        return w[:, :, channel].reshape(p * q, *w.shape[3:]), q
    if location is None:
        location = "all" if isinstance(layer, TiledConv2d) else "center"
    if location == "all":
        return w.reshape(p * q * o, *w.shape[3:]), o
    if location == "center":
        location = (p // 2, q // 2)
    try:
        i, j = (int(v) for v in location)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"location must be (row, col), 'center' or 'all', got {location!r}") from exc
    if not (0 <= i < p and 0 <= j < q):
        raise ConfigError(f"location {(i, j)} outside the {p}x{q} grid of locations")
    return w[i, j], None


def filter_weights(layer, input_shape=None, location=None, channel: int | None = None) -> torch.Tensor:
    """The filters of ``layer`` (a module with ``.weight`` or a weight tensor) as (N, C, kh, kw).

    Args:
        input_shape: (C, H, W) of the input, for a Linear layer (default: square grey or RGB).
        location: for 6-D weights, (row, col) of one output location or tile, ``"center"``
            or ``"all"`` (every location/tile, location-major). Default: ``"all"`` for a
            TiledConv2d, ``"center"`` otherwise.
        channel: for 6-D weights, draw this output channel at every location instead.
    """
    return filter_layout(layer, input_shape, location, channel)[0]


def filter_image(weights: torch.Tensor, ncols: int | None = None, normalize: str = "minmax",
                 rgb: bool | None = None, pad: int = 1) -> np.ndarray:
    """Tile filters (N, C, kh, kw) into one image in [0, 1], each filter normalized on its own.

    C = 3 (or ``rgb=True``) gives an (H, W, 3) colour grid; C = 1 a grey grid; any other C a
    grey grid with one row per filter and one column per input channel.
    """
    if weights.ndim != 4:
        raise ConfigError(f"filter_image expects filters (N, C, kh, kw), got {tuple(weights.shape)}")
    n, c, kh, kw = weights.shape
    rgb = (c == 3) if rgb is None else rgb
    if rgb and c != 3:
        raise ConfigError(f"rgb=True needs 3 input channels, the filters have {c}")
    if c == 1 or rgb:
        return tile_grid(weights, ncols=ncols, pad=pad, normalize=normalize)
    scaled = normalize_each(weights, normalize)            # jointly over each filter's channels
    return tile_grid(scaled.reshape(n * c, 1, kh, kw), ncols=c, pad=pad, normalize="none")


def plot_filters(layer, path: str | os.PathLike, input_shape=None, location=None,
                 channel: int | None = None, normalize: str = "minmax", ncols: int | None = None,
                 title: str | None = None, max_filters: int = 400) -> Path:
    """Draw the filters of ``layer`` as a grid and write the PNG atomically to ``path``.

    At most ``max_filters`` filters are drawn (the first ones), so a huge layer stays readable.
    """
    w, layout_cols = filter_layout(layer, input_shape, location, channel)
    total = len(w)
    w = w[:max_filters]
    grid = filter_image(w, ncols=ncols or layout_cols, normalize=normalize)
    if title is None:
        title = f"{type(layer).__name__} filters {tuple(_weight(layer).shape)}"
    if total > len(w):
        title += f" (first {len(w)} of {total})"
    return save_grid(grid, path, title)


def save_grid(grid: np.ndarray, path, title: str | None = None, pixels_per_cell: float = 4.0,
              max_inches: float = 10.0, dpi: int = 100) -> Path:
    """Write one tiled grid as a PNG: each grid pixel ``pixels_per_cell`` screen pixels wide,
    the longer side at most ``max_inches``, the shorter at least 2.5 inches."""
    h, w = grid.shape[:2]
    inches = min(pixels_per_cell / dpi, max_inches / max(h, w))     # per grid pixel
    fig = new_figure(max(w * inches, 2.5), max(h * inches, 2.5) * (1.08 if title else 1.0))
    show_grid(fig.add_subplot(1, 1, 1), grid, title)
    return save_figure(fig, path, dpi=dpi)


def has_spatial_weights(module: nn.Module, input_shape=None) -> bool:
    """True for a conv layer, a 6-D (locally connected / tiled) layer, or a Linear layer whose
    inputs are the images of ``input_shape`` (C, H, W)."""
    w = getattr(module, "weight", None)
    if not isinstance(w, torch.Tensor) or is_lazy(w):
        return False
    if isinstance(module, nn.Conv2d) or w.ndim == 6:
        return True
    if isinstance(module, nn.Linear) and input_shape is not None:
        shape = tuple(input_shape)
        image_like = (len(shape) == 3 and shape[1] > 1 and shape[2] > 1) or \
            (len(shape) == 1 and square_shape(shape[0]) is not None)
        return image_like and math.prod(shape) == module.in_features
    return False


def first_spatial_layer(model: nn.Module, input_shape=None) -> tuple[str, nn.Module] | None:
    """The first layer (in ``named_modules`` order) that sees pixels and has spatial weights.

    The search stops at the first layer with a matrix of weights: a layer behind it does not
    see pixels. Per-channel parameters (a normalization's scale) are passed over.
    Returns ``(name, module)`` or None.
    """
    for name, module in model.named_modules():
        if has_spatial_weights(module, input_shape):
            return name, module
        w = getattr(module, "weight", None)
        if isinstance(w, torch.Tensor) and w.ndim >= 2:
            return None
    return None
