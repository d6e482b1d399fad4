"""Haar-like features (Viola & Jones 2001) from integral images: the input of the tutorial's
"Stumps on Haar features" row (0.9 % on MNIST; Kégl & Busa-Fekete 2009).

A feature is the difference of the pixel sums of adjacent rectangles: two rectangles side by
side (``h2``) or stacked (``v2``), three in a row (``h3``, the middle one weighted -2) or a
column (``v3``), or a 2 x 2 checkerboard (``d4``). ``HaarFeatures`` draws a fixed pool of
``n_features`` of them (type, position and size uniformly, seeded) when fitted; each is a
signed sum of at most 16 corners of the integral image ``S[y, x] = sum_{i<y, j<x} img[i, j]``,
so the whole pool is one gather of the integral images, in chunks of examples.

    >>> import numpy as np
    >>> X = np.random.default_rng(0).random((5, 64))
    >>> HaarFeatures(n_features=30, random_state=0).fit_transform(X).shape
    (5, 30)
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

TYPES = ("h2", "v2", "h3", "v3", "d4")
# per type: (cells across, cells down) and the sign of each cell, row by row
CELLS = {"h2": (2, 1, [1, -1]), "v2": (1, 2, [1, -1]), "h3": (3, 1, [1, -2, 1]),
         "v3": (1, 3, [1, -2, 1]), "d4": (2, 2, [1, -1, -1, 1])}


def integral_images(x: torch.Tensor) -> torch.Tensor:
    """(N, H, W) -> (N, H + 1, W + 1) with S[:, y, x] = sum of x[:, :y, :x] (float64)."""
    s = x.to(torch.float64).cumsum(1).cumsum(2)
    return torch.nn.functional.pad(s, (1, 0, 1, 0))


def rectangle_terms(kind: str, top: int, left: int, cell_h: int, cell_w: int, width: int) -> dict[int, float]:
    """The feature as {flat index into the (H+1) x (W+1) integral image: coefficient}."""
    across, down, signs = CELLS[kind]
    terms: dict[int, float] = {}
    for i, sign in enumerate(signs):
        y0, x0 = top + (i // across) * cell_h, left + (i % across) * cell_w
        for (y, x), c in (((y0 + cell_h, x0 + cell_w), 1), ((y0, x0 + cell_w), -1), ((y0 + cell_h, x0), -1),
                          ((y0, x0), 1)):
            k = y * (width + 1) + x
            terms[k] = terms.get(k, 0.0) + sign * c
    return {k: v for k, v in terms.items() if v != 0}


class HaarFeatures(TransformerMixin, BaseEstimator):
    """A seeded pool of ``n_features`` Haar-like features of images given as flattened rows.

    ``image_shape`` (H, W): the images' shape; None takes square images of ``n_features_in_``
    pixels (and any other length as a 1 x D strip: side-by-side features only). ``min_cell``: the smallest side of one rectangle, in pixels. Fitted: ``features_``
    (the pool: kind, top, left, cell height, cell width), ``n_features_in_``.
    """

    def __init__(self, n_features: int = 1000, image_shape=None, min_cell: int = 1, random_state=None):
        self.n_features = n_features
        self.image_shape = image_shape
        self.min_cell = min_cell
        self.random_state = random_state

    def _shape(self, d: int) -> tuple[int, int]:
        if self.image_shape is not None:
            h, w = self.image_shape
            if h * w != d:
                raise ValueError(f"image_shape {tuple(self.image_shape)} has {h * w} pixels; X has {d} features")
            return int(h), int(w)
        side = math.isqrt(d)
        return (side, side) if side * side == d else (1, d)      # not square: a 1 x D strip (a signal)

    def fit(self, X, y=None):
        if not isinstance(self.n_features, numbers.Integral) or self.n_features < 1:
            raise ValueError(f"n_features: expected an int >= 1, got {self.n_features!r}")
        X = validate_data(self, X, dtype=(np.float64, np.float32))
        h, w = self._shape(X.shape[1])
        rng = np.random.default_rng(self.random_state)
        pool, terms = [], []
        while len(pool) < self.n_features:
            kind = TYPES[rng.integers(len(TYPES))]
            across, down, _ = CELLS[kind]
            max_ch, max_cw = h // down, w // across
            if max_ch < self.min_cell or max_cw < self.min_cell:
                if not any(h // CELLS[t][1] >= self.min_cell and w // CELLS[t][0] >= self.min_cell for t in TYPES):
                    raise ValueError(f"a {h}x{w} image ({X.shape[1]} feature(s)) holds no Haar feature with cells "
                                     f"of {self.min_cell} pixels")
                continue
            ch, cw = rng.integers(self.min_cell, max_ch + 1), rng.integers(self.min_cell, max_cw + 1)
            top, left = rng.integers(0, h - ch * down + 1), rng.integers(0, w - cw * across + 1)
            pool.append((kind, int(top), int(left), int(ch), int(cw)))
            terms.append(rectangle_terms(kind, int(top), int(left), int(ch), int(cw), w))
        self.features_ = pool
        width = max(len(t) for t in terms)
        self._index = np.zeros((len(terms), width), dtype=np.int64)
        self._coef = np.zeros((len(terms), width))
        for f, t in enumerate(terms):
            self._index[f, :len(t)] = list(t)
            self._coef[f, :len(t)] = list(t.values())
        self._hw = (h, w)
        return self

    def transform(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        h, w = self._hw
        idx, coef = torch.from_numpy(self._index), torch.from_numpy(self._coef)
        out = np.empty((len(X), len(idx)), dtype=X.dtype)
        chunk = max(1, 2**24 // (idx.numel() or 1))
        for lo in range(0, len(X), chunk):
            s = integral_images(torch.from_numpy(np.ascontiguousarray(X[lo:lo + chunk])).view(-1, h, w)).flatten(1)
            out[lo:lo + chunk] = (s[:, idx] * coef).sum(2).numpy()
        return out

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self)
        return np.array([f"haar_{k}_{t}_{l}_{ch}x{cw}" for k, t, l, ch, cw in self.features_], dtype=object)
