"""Image grids and atomic figure files: the plumbing every viz module shares.

Figures are drawn with matplotlib's object API (``Figure`` + the Agg canvas), never pyplot, so
drawing has no global state and needs no display. Every PNG is written to a temporary file in
the target folder and renamed into place, so a reader never sees half a file.

    >>> import torch
    >>> grid = tile_grid(torch.randn(6, 1, 5, 5), ncols=3)
    >>> grid.shape  # 2 rows x 3 columns of 5x5 tiles, 1 pixel of padding around each
    (13, 19)
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from visionnets.errors import ConfigError
from visionnets.io import atomic_write_bytes  # noqa: F401 (used by the viz modules)

NORMALIZE = ("minmax", "symmetric", "none")


def new_figure(width: float, height: float) -> Figure:
    """A matplotlib Figure bound to the Agg canvas (no pyplot, no display)."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Render ``fig`` to PNG and write it atomically to ``path``; returns the path."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.05)
    return atomic_write_bytes(path, buf.getvalue())


def normalize_each(x: torch.Tensor, mode: str = "minmax") -> torch.Tensor:
    """Scale every item of ``x`` (N, ...) into [0, 1] on its own.

    ``minmax``: (x - min) / (max - min). ``symmetric``: 0.5 + x / (2 max|x|), so a zero weight
    is mid-grey (the tutorial's "missing edges have 0 weight"). ``none``: clip to [0, 1].
    A constant item maps to 0.5.
    """
    if mode not in NORMALIZE:
        raise ConfigError(f"normalize must be one of {NORMALIZE}, got {mode!r}")
    x = x.detach().to(torch.float64).cpu()
    if mode == "none":
        return x.clamp(0, 1)
    flat = x.reshape(len(x), -1)
    if mode == "minmax":
        lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
        span = hi - lo
        out = torch.where(span > 0, (flat - lo) / span.clamp_min(1e-300), torch.full_like(flat, 0.5))
    else:
        m = flat.abs().max(1, keepdim=True).values
        out = torch.where(m > 0, 0.5 + flat / (2 * m.clamp_min(1e-300)), torch.full_like(flat, 0.5))
    return out.reshape(x.shape)


def as_images(x: torch.Tensor, image_shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """View inputs as images (N, C, H, W): 4-D stays; (N, D) is reshaped to ``image_shape``
    or, without one, to (1, s, s) when D = s*s or (3, s, s) when D = 3*s*s."""
    if x.ndim == 4:
        return x
    if x.ndim == 3:
        return x.unsqueeze(1)
    if x.ndim != 2:
        raise ConfigError(f"cannot view a tensor of shape {tuple(x.shape)} as images (N, C, H, W)")
    shape = tuple(image_shape) if image_shape is not None else square_shape(x.shape[1])
    if shape is None or math.prod(shape) != x.shape[1]:
        raise ConfigError(f"cannot view vectors of length {x.shape[1]} as images of shape {shape}; "
                          f"pass input_shape=(C, H, W) with C*H*W == {x.shape[1]}")
    if len(shape) == 2:
        shape = (1, *shape)
    return x.reshape(len(x), *shape)


def square_shape(d: int) -> tuple[int, int, int] | None:
    """(1, s, s) if d = s*s, (3, s, s) if d = 3*s*s (s >= 2), else None."""
    for c in (1, 3):
        if d % c == 0:
            s = math.isqrt(d // c)
            if s >= 2 and s * s * c == d:
                return (c, s, s)
    return None


def tile_grid(images: torch.Tensor, ncols: int | None = None, pad: int = 1,
              normalize: str = "minmax", pad_value: float = 1.0, gap_below: int = 0) -> np.ndarray:
    """Tile images (N, C, h, w), C in {1, 3}, into one array: (H, W) grey or (H, W, 3) RGB.

    Each image is normalized on its own (see :func:`normalize_each`). The grid has
    ``ncols`` columns (default: about square) and ``pad`` pixels of ``pad_value`` around tiles,
    plus ``gap_below`` more under each row (room for labels).
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ConfigError(f"tile_grid expects images (N, 1 or 3, h, w), got {tuple(images.shape)}")
    n, c, h, w = images.shape
    if n == 0:
        raise ConfigError("tile_grid got no images (N = 0)")
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    imgs = normalize_each(images, normalize).numpy()
    rh = h + pad + gap_below
    grid = np.full((c, nrows * rh + pad, ncols * (w + pad) + pad), pad_value)
    for i in range(n):
        r, q = divmod(i, ncols)
        y, x = pad + r * rh, pad + q * (w + pad)
        grid[:, y:y + h, x:x + w] = imgs[i]
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def show_grid(ax, grid: np.ndarray, title: str | None = None) -> None:
    """Draw a grid from :func:`tile_grid` on ``ax`` (grey colormap, no ticks, square pixels)."""
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


@contextlib.contextmanager
def evaluating(model: torch.nn.Module):
    """Put ``model`` in eval mode for the block and restore every module's previous mode."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def draw_labeled_grid(ax, images: torch.Tensor, labels: list[str], ncols: int,
                      colors: list[str] | None = None, title: str | None = None,
                      fontsize: float = 7) -> None:
    """Draw images (N, C, h, w) as one tiled image on ``ax`` with ``labels[i]`` under tile i.

    One ``imshow`` and N texts: far faster than one axes per image.
    """
    n, _, h, w = images.shape
    gap, pad = max(2, round(0.45 * h)), max(1, h // 8)
    grid = tile_grid(images, ncols=ncols, pad=pad, normalize="minmax", gap_below=gap)
    show_grid(ax, grid, title)
    for i, label in enumerate(labels):
        r, q = divmod(i, ncols)
        x = pad + q * (w + pad) + w / 2 - 0.5
        y = pad + r * (h + pad + gap) + h
        ax.text(x, y, label, ha="center", va="top", fontsize=fontsize,
                color=colors[i] if colors else "black")
