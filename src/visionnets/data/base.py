"""The in-memory dataset contract shared by every loader.

    >>> import torch
    >>> s = Split(torch.zeros(10, 3), torch.arange(10))
    >>> train, val = carve_validation(s, 0.2, seed=0)
    >>> len(train), len(val), sorted(s.fields())
    (8, 2, ['x', 'y'])
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from visionnets.errors import DataError


@dataclass
class Split:
    """One split held in memory: ``x`` float32 (N, C, H, W) or (N, D); ``y`` int64 (N,) or float32 (N, K)."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self):
        if len(self.x) != len(self.y):
            raise DataError(f"split has {len(self.x)} inputs but {len(self.y)} targets")

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, index) -> "Split":
        return Split(self.x[index], self.y[index])

    def fields(self) -> dict[str, torch.Tensor]:
        """The named tensors a :class:`~visionnets.data.batch.Batch` of this split holds."""
        return {"x": self.x, "y": self.y}


@dataclass
class Dataset:
    """Train, validation and test splits plus what a model needs to know about them."""

    name: str
    train: Split
    val: Split | None
    test: Split
    input_shape: tuple[int, ...]
    num_classes: int | None = None          # None: a regression task
    class_names: list[str] | None = None
    info: dict = field(default_factory=dict)  # provenance notes (files read, lossy copy, ...)
    transform: Callable | None = None        # fitted dataset-level transforms (apply to new inputs)

    @property
    def is_classification(self) -> bool:
        return self.num_classes is not None

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise DataError(f"unknown split {name!r}; expected train, val or test")
        s = getattr(self, name)
        if s is None:
            raise DataError(f"dataset {self.name!r} has no {name!r} split (val_fraction is 0)")
        return s

    def map(self, fn) -> "Dataset":
        """A copy with ``fn(x)`` applied to the inputs of every split."""
        return replace(self, train=Split(fn(self.train.x), self.train.y),
                       val=None if self.val is None else Split(fn(self.val.x), self.val.y),
                       test=Split(fn(self.test.x), self.test.y))


def carve_validation(train: Split, fraction: float, seed: int) -> tuple[Split, Split | None]:
    """Split ``fraction`` of ``train`` off as a validation set, with a fixed seed."""
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {fraction}")
    n_val = int(round(len(train) * fraction))
    if n_val == 0:
        return train, None
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(train), generator=g)
    return train.subset(perm[n_val:]), train.subset(perm[:n_val])


def subsample_split(split: Split, n: int | None, seed: int) -> Split:
    """At most ``n`` examples of ``split`` drawn without replacement with a fixed seed (order kept)."""
    if n is None or n >= len(split):
        return split
    if n < 1:
        raise DataError(f"subsample must be >= 1, got {n}")
    g = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(split), generator=g)[:n].sort().values
    return split.subset(index)


def to_unit_float(split: Split, scale: float = 255.0) -> Split:
    """``x / scale`` as float32 (integer pixels to [0, 1]) in one pass; ``x`` may be a strided view.

    Loaders carve and subsample the uint8 images first and convert last: four times less
    memory traffic than converting first (it matters for the 50,000 CIFAR images).
    """
    x = torch.empty(split.x.shape, dtype=torch.float32)
    x.copy_(split.x)
    return Split(x.div_(scale), split.y)
