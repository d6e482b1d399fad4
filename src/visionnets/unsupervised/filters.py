"""PNG grids of learned filters (one tile per filter), written atomically.

    >>> import torch, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "w.png")
    >>> grid = save_filter_grid(torch.randn(16, 1 * 5 * 5), path, shape=(1, 5, 5))
    >>> grid.shape
    (25, 25, 3)
"""

from __future__ import annotations

import io
import math
import os

import numpy as np
import torch

from visionnets.errors import ConfigError
from visionnets.io import atomic_write_bytes


def filter_tiles(weights, shape: tuple[int, int, int], ncols: int | None = None, pad: int = 1,
                 scale: float = 1.0) -> np.ndarray:
    """Arrange ``weights`` (K, C*H*W) as an (rows*(H+pad)+pad, cols*(W+pad)+pad, 3) float RGB image.

    Each filter is contrast-stretched on its own to [0, 1] around 0.5 (``0.5 + w / (2 max|w|)``),
    so the sign of a weight reads as lighter/darker than grey. C must be 1 or 3.
    """
    w = weights.detach().cpu().numpy() if isinstance(weights, torch.Tensor) else np.asarray(weights)
    c, h, wd = shape
    if c not in (1, 3) or w.ndim != 2 or w.shape[1] != c * h * wd:
        raise ConfigError(f"filter_tiles: weights of shape {w.shape} do not fit tiles of shape {shape} (C must be 1 or 3)")
    k = w.shape[0]
    ncols = ncols or int(math.ceil(math.sqrt(k)))
    nrows = int(math.ceil(k / ncols))
    img = np.ones((nrows * (h + pad) + pad, ncols * (wd + pad) + pad, 3), dtype=np.float64)
    for i in range(k):
        f = w[i].reshape(c, h, wd).astype(np.float64)
        f = f - f.mean()
        m = np.abs(f).max() or 1.0
        f = np.clip(0.5 + scale * f / (2 * m), 0, 1).transpose(1, 2, 0)
        r, q = divmod(i, ncols)
        y0, x0 = pad + r * (h + pad), pad + q * (wd + pad)
        img[y0:y0 + h, x0:x0 + wd] = f if c == 3 else np.repeat(f, 3, axis=2)
    return img


def save_filter_grid(weights, path: str | os.PathLike, shape: tuple[int, int, int],
                     ncols: int | None = None, zoom: int = 1) -> np.ndarray:
    """Write a PNG grid of ``weights`` (K, C*H*W) to ``path`` (temporary file + rename).

    ``zoom`` repeats each pixel (nearest neighbour) so small filters stay visible. Returns the
    image array that was written.
    """
    from matplotlib.image import imsave

    img = filter_tiles(weights, shape, ncols=ncols)
    if zoom > 1:
        img = img.repeat(zoom, axis=0).repeat(zoom, axis=1)
    buf = io.BytesIO()
    imsave(buf, img, format="png")
    atomic_write_bytes(path, buf.getvalue())
    return img
