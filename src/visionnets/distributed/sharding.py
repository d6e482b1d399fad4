"""How the parameters of a model are cut into parameter-server shards.

All parameters, flattened in ``model.parameters()`` order and concatenated, form one vector
theta of length P. A shard owns a list of contiguous pieces ``[start, end)`` of theta. A tensor
is kept whole when it is small; a tensor larger than ``ceil(P / (4 S))`` elements is cut into
pieces of at most that size, so that one big fully connected matrix does not land on a single
shard. Pieces are then given, largest first, to the shard holding the fewest elements (the
LPT rule): no shard holds more than ``P / S + ceil(P / (4 S))`` elements.

    >>> layout = ShardLayout.plan([4, 100, 10], shards=2)
    >>> layout.sizes()
    [59, 55]
    >>> theta = torch.arange(114.)
    >>> parts = layout.split(theta)
    >>> bool(torch.equal(layout.join(parts), theta))
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from visionnets.errors import ConfigError


@dataclass(frozen=True)
class ShardLayout:
    """``pieces[k]``: the ``(start, end)`` ranges of theta that shard ``k`` owns, in order."""

    total: int
    pieces: tuple[tuple[tuple[int, int], ...], ...]

    @classmethod
    def plan(cls, tensor_sizes: list[int], shards: int) -> "ShardLayout":
        """Cut tensors of ``tensor_sizes`` elements (theta's order) into ``shards`` shards."""
        if shards < 1:
            raise ConfigError(f"ps_shards: expected >= 1, got {shards}")
        total = sum(tensor_sizes)
        if total < shards:
            raise ConfigError(f"ps_shards: {shards} shards for only {total} parameters; use fewer shards")
        limit = max(1, math.ceil(total / (4 * shards)))
        pieces, start = [], 0
        for size in tensor_sizes:
            for lo in range(start, start + size, limit):
                pieces.append((lo, min(lo + limit, start + size)))
            start += size
        load = [0] * shards
        owned: list[list[tuple[int, int]]] = [[] for _ in range(shards)]
        for lo, hi in sorted(pieces, key=lambda p: (p[0] - p[1], p[0])):  # largest first
            k = min(range(shards), key=lambda j: (load[j], j))
            owned[k].append((lo, hi))
            load[k] += hi - lo
        return cls(total, tuple(tuple(sorted(o)) for o in owned))

    @property
    def shards(self) -> int:
        return len(self.pieces)

    def sizes(self) -> list[int]:
        """Number of elements each shard owns."""
        return [sum(hi - lo for lo, hi in p) for p in self.pieces]

    def split(self, theta: torch.Tensor) -> list[torch.Tensor]:
        """The per-shard vectors of a full vector (P,) (parameters or gradients)."""
        if theta.shape != (self.total,):
            raise ConfigError(f"shard layout: expected a vector of shape ({self.total},), got {tuple(theta.shape)}")
        return [torch.cat([theta[lo:hi] for lo, hi in p]) for p in self.pieces]

    def join(self, parts: list[torch.Tensor], out: torch.Tensor | None = None) -> torch.Tensor:
        """The full vector (P,) from the per-shard vectors (inverse of :meth:`split`)."""
        if len(parts) != self.shards:
            raise ConfigError(f"shard layout: expected {self.shards} shard vectors, got {len(parts)}")
        out = torch.empty(self.total, dtype=parts[0].dtype) if out is None else out
        for part, p in zip(parts, self.pieces):
            at = 0
            for lo, hi in p:
                out[lo:hi] = part[at:at + hi - lo]
                at += hi - lo
        return out

    def to_dict(self) -> dict:
        return {"total": self.total, "pieces": [[list(r) for r in p] for p in self.pieces]}
