"""Mini-batches from in-memory tensors, as :class:`~visionnets.data.batch.Batch` objects.

Far cheaper per batch than ``torch.utils.data.DataLoader`` for data that fits in memory. With
``shuffle=True``, epoch ``e``'s order is a permutation seeded by ``shuffle_seed(seed, e)``
alone, so it does not depend on what ran before (an exact resume), and batch ``i`` of any
epoch can be had directly (``batch_at``), as a Downpour replica or a resumed run needs.

With ``workers=W`` and ``rank=r`` (synchronous data parallel) each batch ``order[iB:(i+1)B]``
of the single-process order is cut into W parts whose sizes differ by at most one
(:func:`part_bounds`), and this loader yields part r; ``batch_examples`` is the size of the
whole batch last yielded (for the gradient weights). A batch with fewer examples than workers
is skipped by every worker. ``labeled_per_batch=k`` adds to every batch k labeled examples
(``y >= 0``) drawn with replacement (seeded by epoch and batch): semi-supervised learning with a
few labels among many unlabeled images.

    >>> import torch
    >>> from visionnets.data.base import Split
    >>> s = Split(torch.zeros(10, 3), torch.zeros(10, dtype=torch.long))
    >>> [b.size for b in TensorLoader(s, batch_size=4)]
    [4, 4, 2]
    >>> [b.size for b in TensorLoader(s, batch_size=4, shuffle=True, workers=3, rank=0)]
    [2, 2]
"""

from __future__ import annotations

import math
from typing import Iterator

import torch

from visionnets.data.base import Split
from visionnets.data.batch import Batch
from visionnets.errors import DataError
from visionnets.train.seeds import labeled_draw_seed, shuffle_seed


def part_bounds(n: int, workers: int, rank: int) -> tuple[int, int]:
    """``[lo, hi)`` of worker ``rank``'s part of a batch of ``n`` (sizes differ by at most one).

    >>> [part_bounds(10, 3, r) for r in range(3)]
    [(0, 4), (4, 7), (7, 10)]
    """
    q, r = divmod(n, workers)
    lo = rank * q + min(rank, r)
    return lo, lo + q + (rank < r)


class TensorLoader:
    """Batches of ``split`` (see the module docstring)."""

    def __init__(self, split: Split, batch_size: int, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, device: torch.device | str | None = None,
                 rank: int = 0, workers: int = 1, labeled_per_batch: int | None = None):
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < workers:
            raise DataError(f"rank {rank} is not one of {workers} workers")
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.rank, self.workers, self.epoch, self.batch_examples = rank, workers, 0, 0
        self.fields = {k: v if device is None else v.to(device) for k, v in split.fields().items()}
        n = len(split)
        self.n = n
        self.extra = 0
        if labeled_per_batch:
            y = split.y
            self.labeled = (y >= 0).nonzero()[:, 0] if y.ndim == 1 and not y.is_floating_point() else y[:0].long()
            if len(self.labeled) == 0:
                raise DataError("train.labeled_per_batch: the training split has no labeled example")
            self.labeled, self.extra = self.labeled.to(next(iter(self.fields.values())).device), labeled_per_batch
        sizes = [min(batch_size, n - i * batch_size) for i in range(math.ceil(n / batch_size))]
        if drop_last and sizes and sizes[-1] < batch_size:
            sizes.pop()
        self.starts = [i * batch_size for i, s in enumerate(sizes) if s + self.extra >= workers]
        self.sizes = [s + self.extra for s in sizes if s + self.extra >= workers]
        self._order_epoch, self._order = None, None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.sizes)

    def local_examples(self, batches: int) -> int:
        """Examples of this worker's parts of the first ``batches`` batches."""
        return sum(hi - lo for lo, hi in (part_bounds(s, self.workers, self.rank) for s in self.sizes[:batches]))

    def order(self, epoch: int) -> torch.Tensor | None:
        """The example order of ``epoch`` (None: unshuffled)."""
        if not self.shuffle:
            return None
        if self._order_epoch != epoch:
            g = torch.Generator().manual_seed(shuffle_seed(self.seed, epoch))
            device = next(iter(self.fields.values())).device
            self._order, self._order_epoch = torch.randperm(self.n, generator=g).to(device), epoch
        return self._order

    def batch_at(self, epoch: int, i: int) -> Batch:
        """Batch ``i`` of ``epoch`` (this worker's part of it)."""
        size, start = self.sizes[i], self.starts[i]
        lo, hi = part_bounds(size, self.workers, self.rank)
        self.batch_examples = size
        order = self.order(epoch)
        if order is None and not self.extra:
            return Batch({k: v[start + lo:start + hi] for k, v in self.fields.items()})
        base = size - self.extra
        idx = order[start:start + base] if order is not None else torch.arange(start, start + base)
        if self.extra:             # the labeled examples added to this batch, drawn with replacement
            g = torch.Generator().manual_seed(labeled_draw_seed(self.seed, epoch, i))
            drawn = torch.randint(len(self.labeled), (self.extra,), generator=g).to(self.labeled.device)
            idx = torch.cat([idx.to(self.labeled.device), self.labeled[drawn]])
        idx = idx[lo:hi]
        # index_select: the same rows as v[idx], 3x faster on the CPU for a batch of images
        return Batch({k: v.index_select(0, idx.to(v.device)) for k, v in self.fields.items()})

    def iterate(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of ``epoch`` from batch ``start`` on."""
        for i in range(start, len(self.sizes)):
            yield self.batch_at(epoch, i)

    def __iter__(self) -> Iterator[Batch]:
        return self.iterate(self.epoch)
