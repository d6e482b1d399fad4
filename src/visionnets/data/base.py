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


UNLABELED = -1   # the class index of an example whose label is not used (semi-supervised, a task it lacks)


@dataclass
class Split:
    """One split held in memory: ``x`` float32 (N, C, H, W) or (N, D); ``y`` int64 (N,) class
    indices (``UNLABELED`` where unknown), (N, T) for T tasks, or float32 (N, K) targets;
    ``extra``: more named inputs of the same N examples (other modalities, e.g. ``audio``)."""

    x: torch.Tensor
    y: torch.Tensor
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self):
        if len(self.x) != len(self.y):
            raise DataError(f"split has {len(self.x)} inputs but {len(self.y)} targets")
        for name, value in self.extra.items():
            if name in ("x", "y") or len(value) != len(self.x):
                raise DataError(f"split field {name!r}: {len(value)} rows for {len(self.x)} examples "
                                f"(and not named x or y)")

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, index) -> "Split":
        return Split(self.x[index], self.y[index], {k: v[index] for k, v in self.extra.items()})

    def fields(self) -> dict[str, torch.Tensor]:
        """The named tensors a :class:`~visionnets.data.batch.Batch` of this split holds."""
        return {"x": self.x, "y": self.y, **self.extra}


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
    tasks: dict[str, int] | None = None      # several tasks: name -> classes; y is (N, T), in this order
    modalities: dict[str, tuple[int, ...]] | None = None   # several inputs: field -> one example's shape

    @property
    def is_classification(self) -> bool:
        return self.num_classes is not None

    @property
    def num_outputs(self) -> int:
        """The model's outputs: the classes (of every task, side by side) or the regression targets."""
        if self.tasks:
            return sum(self.tasks.values())
        if self.is_classification:
            return self.num_classes
        return self.train.y.shape[1] if self.train.y.ndim == 2 else 1

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise DataError(f"unknown split {name!r}; expected train, val or test")
        s = getattr(self, name)
        if s is None:
            raise DataError(f"dataset {self.name!r} has no {name!r} split (val_fraction is 0)")
        return s

    def map(self, fn) -> "Dataset":
        """A copy with ``fn(x)`` applied to the inputs of every split."""
        def mapped(s: Split | None) -> Split | None:
            return None if s is None else Split(fn(s.x), s.y, s.extra)

        return replace(self, train=mapped(self.train), val=mapped(self.val), test=mapped(self.test))


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


def keep_labels(split: Split, per_class: int, seed: int) -> Split:
    """``split`` with ``per_class`` labels kept in each class (drawn with ``seed``) and the others
    set to ``UNLABELED``: the examples stay, as unlabeled data (semi-supervised learning).

    >>> s = keep_labels(Split(torch.zeros(8, 2), torch.tensor([0, 0, 0, 1, 1, 1, 1, 1])), 2, seed=0)
    >>> torch.bincount(s.y[s.y >= 0]).tolist(), int((s.y == UNLABELED).sum())
    ([2, 2], 4)
    """
    if split.y.ndim != 1 or split.y.is_floating_point():
        raise DataError("labels_per_class: needs one class label per example")
    g = torch.Generator().manual_seed(seed)
    y = torch.full_like(split.y, UNLABELED)
    for c in split.y.unique():
        if c < 0:
            continue
        idx = (split.y == c).nonzero()[:, 0]
        if len(idx) < per_class:
            raise DataError(f"labels_per_class: {per_class} labels asked for class {int(c)}, which has {len(idx)}")
        keep = idx[torch.randperm(len(idx), generator=g)[:per_class]]
        y[keep] = c
    return Split(split.x, y, split.extra)
