"""scikit-learn's bundled 8x8 handwritten digits: the default dataset, needs no files.

1,797 images of 8x8 grey levels 0..16 (UCI optical recognition of handwritten digits), 10
classes. Images become float32 (N, 1, 8, 8) in [0, 1] (``value / 16``). The test split is a
fixed stratified 20 % (the same for every seed, so test numbers compare across runs); the
validation split is carved from the rest with ``seed``::

    >>> from visionnets.data import load_dataset
    >>> ds = load_dataset("digits")
    >>> ds.train.x.shape, ds.test.x.shape, ds.num_classes
    (torch.Size([1293, 1, 8, 8]), torch.Size([360, 1, 8, 8]), 10)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import pydantic
import torch

from visionnets.data.base import Dataset, Split, carve_validation, subsample_split
from visionnets.data.catalog import DATASETS

TEST_SEED = 0  # the test split never changes with the run's seed


def stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices with each class split in the same proportion (sorted)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=test_fraction, stratify=y, random_state=seed)
    return np.sort(tr), np.sort(te)


@DATASETS.register("digits")
def digits(roots: list[Path], val_fraction: float, seed: int,
           test_fraction: Annotated[float, pydantic.Field(gt=0, lt=1)] = 0.2,
           subsample: Annotated[int, pydantic.Field(ge=1)] | None = None) -> Dataset:
    """scikit-learn's 8x8 digits (1,797 images, bundled): (1, 8, 8) in [0, 1], 10 classes.

    ``subsample`` keeps that many training images (and at most as many test images), drawn
    with the seed, as for MNIST and CIFAR-10.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    tr, te = stratified_split(bunch.target, test_fraction, TEST_SEED)
    train = subsample_split(Split(x[tr], y[tr]), subsample, seed)
    train, val = carve_validation(train, val_fraction, seed)
    return Dataset("digits", train, val, subsample_split(Split(x[te], y[te]), subsample, seed + 1), (1, 8, 8), 10,
                   [str(i) for i in range(10)],
                   info={"source": "sklearn.datasets.load_digits", "test_fraction": test_fraction,
                         "subsample": subsample})
