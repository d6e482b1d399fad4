"""MultiMNIST: two MNIST digits overlaid, the left (upper) and the right (lower) one two tasks.

As in Sabour et al. (2017) and Sener & Koltun (2018): each image of a split is paired with
another of the same split (a seeded permutation, never itself) and the two are laid on one
canvas of (28 + shift) x (28 + shift) pixels, the first at the top left, the second ``shift``
pixels lower and to the right, overlapping, the brighter pixel kept. ``y`` is (N, 2): the
left digit's class and the right digit's. Generated deterministically from the MNIST files
(``../shared/data/mnist``) each time it is loaded; nothing is downloaded or cached.

    >>> ds = load_dataset("multimnist", "/path/to/data", subsample=1000)   # doctest: +SKIP
    >>> ds.input_shape, ds.tasks                                           # doctest: +SKIP
    ((1, 36, 36), {'left': 10, 'right': 10})
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pydantic
import torch

from visionnets.data.base import Dataset, Split, carve_validation, subsample_split, to_unit_float
from visionnets.data.catalog import DATASETS
from visionnets.data.mnist import CLASS_NAMES, read_mnist

TASKS = {"left": 10, "right": 10}


def overlay_pairs(split: Split, shift: int, seed: int) -> Split:
    """Each image with a partner (a seeded derangement) on one canvas; ``y`` (N, 2) uint8 images kept."""
    n = len(split)
    g = torch.Generator().manual_seed(seed)
    partner = torch.randperm(n, generator=g)
    same = partner == torch.arange(n)
    partner[same] = (partner[same] + 1) % n              # never an image with itself
    x = split.x
    h, w = x.shape[-2:]
    canvas = torch.zeros((n, 1, h + shift, w + shift), dtype=x.dtype)
    canvas[:, :, :h, :w] = x
    lower = canvas[:, :, shift:, shift:]
    torch.maximum(lower, x[partner], out=lower)
    return Split(canvas, torch.stack([split.y, split.y[partner]], 1))


@DATASETS.register("multimnist")
def multimnist(roots: list[Path], val_fraction: float, seed: int,
               shift: Annotated[int, pydantic.Field(ge=0, le=28)] = 8,
               subsample: Annotated[int, pydantic.Field(ge=1)] | None = None) -> Dataset:
    """MultiMNIST from the MNIST files: (1, 28 + shift, 28 + shift) in [0, 1], tasks left and right.

    ``shift``: how far the second digit sits below and to the right of the first (8: a
    36x36 canvas, digits overlapping by 20x20 pixels). ``subsample``: that many training pairs
    (and at most as many test pairs).
    """
    train, test, info = read_mnist(roots)
    train = overlay_pairs(subsample_split(train, subsample, seed), shift, seed)
    test = overlay_pairs(subsample_split(test, subsample, seed + 1), shift, seed + 1)
    train, val = carve_validation(train, val_fraction, seed)
    train, test = to_unit_float(train), to_unit_float(test)
    val = None if val is None else to_unit_float(val)
    side = 28 + shift
    return Dataset("multimnist", train, val, test, (1, side, side), 10, CLASS_NAMES,
                   info={**info, "shift": shift, "subsample": subsample}, tasks=dict(TASKS))
