"""The batch contract: a mini-batch is a mapping of named tensors that share their first dimension.

``x`` (inputs) and ``y`` (targets) today; the names leave room for unlabeled inputs, several
targets, several modalities and masks. Loaders yield a :class:`Batch`; an objective reads the
fields it needs and names any it misses::

    >>> import torch
    >>> b = Batch(x=torch.zeros(4, 3), y=torch.tensor([0, 1, 0, 1]))
    >>> b.size, sorted(b)
    (4, ['x', 'y'])
    >>> b.replace(x=b["x"] + 1)["x"].sum().item()
    12.0
    >>> b["u"]
    Traceback (most recent call last):
    ...
    visionnets.errors.DataError: batch has no field 'u'; it holds: x, y
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Iterator

import torch

from visionnets.errors import DataError


class Batch(Mapping):
    """Named tensors of one mini-batch; ``size`` is the number of examples (the shared first dimension)."""

    __slots__ = ("_fields", "size")

    def __init__(self, fields: Mapping[str, torch.Tensor] | None = None, /, **named: torch.Tensor):
        data = {**(fields or {}), **named}
        if not data:
            raise DataError("a batch needs at least one named tensor")
        size = None
        for key, value in data.items():
            if not isinstance(value, torch.Tensor) or value.dim() == 0:
                raise DataError(f"batch field {key!r}: expected a tensor with a batch dimension, "
                                f"got {type(value).__name__}")
            if size is None:
                size, first = value.shape[0], key
            elif value.shape[0] != size:
                raise DataError(f"batch field {key!r} has {value.shape[0]} rows but {first!r} has {size}")
        self._fields, self.size = data, size

    def __getitem__(self, key: str) -> torch.Tensor:
        try:
            return self._fields[key]
        except KeyError:
            raise DataError(f"batch has no field {key!r}; it holds: {', '.join(self._fields)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={tuple(v.shape)}" for k, v in self._fields.items())
        return f"Batch({inner})"

    def replace(self, **named: torch.Tensor) -> "Batch":
        """A copy with some fields replaced or added."""
        return Batch(self._fields, **named)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        """Every field on ``device``."""
        return Batch({k: v.to(device, non_blocking=non_blocking) for k, v in self._fields.items()})

    def select(self, index) -> "Batch":
        """The examples ``index`` (a slice or an index tensor) of every field."""
        return Batch({k: v[index] for k, v in self._fields.items()})
