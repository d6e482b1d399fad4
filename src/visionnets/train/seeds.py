"""Every seed a training run derives, in one place: executors must agree on them bit for bit.

A run has one recipe ``seed``. From it:

- the order of the training examples in epoch ``e``: ``shuffle_seed(seed, e)`` (a permutation
  of the split; DDP workers share it and each takes its part of every batch);
- the data of Downpour replica ``slot``: its own examples, shuffled with ``replica_data_seed``
  (slot 0 of one replica shuffles exactly as a single process does);
- the labeled examples added to batch ``i`` of epoch ``e`` (``train.labeled_per_batch``):
  ``labeled_draw_seed(seed, e, i)``;
- the random numbers of one step: ``step_seeds(seed, stream, step)`` gives the seed of the
  data augmentation and the seed of everything else drawn in the forward pass (dropout).
  ``stream`` is 0 for one process, the rank of a DDP worker, or the slot of a Downpour
  replica; ``step`` counts that stream's steps from the start of the run. A step redone
  (after a failure, or a resume in the middle of an epoch) draws the same numbers.

    >>> shuffle_seed(0, 3), replica_data_seed(7, 2)
    (3, 9)
    >>> a, d = step_seeds(0, 0, 5); a != d and step_seeds(0, 0, 5) == (a, d)
    True
"""

from __future__ import annotations

_P = 1_000_003          # a prime: distinct (seed, epoch) and (seed, stream, step) give distinct seeds
_MASK = 2**63           # torch seeds are 64-bit


def shuffle_seed(seed: int, epoch: int) -> int:
    """Seed of the permutation of the training examples in ``epoch`` (0-based)."""
    return seed * _P + epoch


def replica_data_seed(seed: int, slot: int) -> int:
    """The shuffle seed of Downpour replica ``slot``'s own examples (slot 0: the run's seed)."""
    return seed + slot


def labeled_draw_seed(seed: int, epoch: int, batch: int) -> int:
    """Seed of the labeled examples drawn into batch ``batch`` of ``epoch``."""
    return ((seed * _P + epoch) * _P + batch) * 2 % _MASK + 1


def step_seeds(seed: int, stream: int, step: int) -> tuple[int, int]:
    """``(augmentation seed, forward-pass seed)`` of step ``step`` of ``stream``."""
    base = ((seed * _P + stream) * _P + step) * 2 % _MASK
    return base, base + 1
