"""MNIST from the four original IDX files (gzip-compressed or raw).

60,000 training and 10,000 test images of handwritten digits, 28x28 grey levels, labels 0-9
(LeCun, Bottou, Bengio, Haffner 1998). Images become float32 (N, 1, 28, 28) in [0, 1]
(``pixel / 255``) and labels int64 (N,). A validation split is carved from train with a
fixed seed. Every file is checked: magic number (2051 images, 2049 labels), 28x28 images,
header count against the bytes present, images against labels, labels in 0..9::

    >>> from visionnets.data import load_dataset
    >>> ds = load_dataset("mnist", "/path/to/data", subsample=1000)     # doctest: +SKIP
    >>> ds.train.x.shape, ds.test.x.shape                                 # doctest: +SKIP
    (torch.Size([900, 1, 28, 28]), torch.Size([1000, 1, 28, 28]))
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import pydantic
import torch

from visionnets.data.base import Dataset, Split, carve_validation, subsample_split, to_unit_float
from visionnets.data.files import KnownFile, Layout, Need, declare_files, locate
from visionnets.data.idx import read_idx
from visionnets.data.catalog import DATASETS
from visionnets.errors import DataError

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049

# (base name, sha256 of the .gz file, sha256 of the decompressed file); the gzip sums are those
# of ../shared/data/mnist/README.md, the raw ones were computed from those canonical files.
_SUMS = {
    "train-images-idx3-ubyte": ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train-labels-idx1-ubyte": ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "t10k-images-idx3-ubyte": ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                               "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "t10k-labels-idx1-ubyte": ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                               "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}
# raw first: it reads faster when both are present
LAYOUT = Layout("IDX (gzip or raw)", tuple(
    Need((KnownFile(name, raw), KnownFile(name + ".gz", gz))) for name, (gz, raw) in _SUMS.items()))
declare_files("mnist", LAYOUT)

CLASS_NAMES = [str(i) for i in range(10)]


def read_mnist_pair(images_path: Path, labels_path: Path, rows: int = 28, cols: int = 28,
                    num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Read and cross-check one images/labels pair: uint8 (N, rows, cols) and uint8 (N,)."""
    images = read_idx(images_path, expect_magic=IMAGES_MAGIC)
    labels = read_idx(labels_path, expect_magic=LABELS_MAGIC)
    if images.ndim != 3 or images.shape[1:] != (rows, cols):
        raise DataError(f"{images_path}: images are {'x'.join(map(str, images.shape[1:]))}; "
                        f"expected {rows}x{cols}")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: labels have {labels.ndim} dimensions; expected 1")
    if len(images) != len(labels):
        raise DataError(f"{labels_path}: {len(labels)} labels but {images_path.name} holds "
                        f"{len(images)} images")
    if len(labels) and labels.max() >= num_classes:
        bad = int(np.argmax(labels >= num_classes))
        raise DataError(f"{labels_path}: label {int(labels[bad])} at index {bad} is out of "
                        f"range; expected 0..{num_classes - 1}")
    return images, labels


def _to_split(images: np.ndarray, labels: np.ndarray) -> Split:
    """uint8 images stay uint8 (N, 1, 28, 28) here; to_unit_float converts after carving."""
    return Split(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))


@DATASETS.register("mnist")
def mnist(roots: list[Path], val_fraction: float, seed: int,
          subsample: Annotated[int, pydantic.Field(ge=1)] | None = None) -> Dataset:
    """MNIST handwritten digits: 60,000 train / 10,000 test, (1, 28, 28) in [0, 1], 10 classes.

    ``subsample`` keeps that many training images (and at most as many test images), drawn
    with ``seed``, for quick runs.
    """
    train, test, info = read_mnist(roots)
    train = subsample_split(train, subsample, seed)
    test = subsample_split(test, subsample, seed + 1)
    train, val = carve_validation(train, val_fraction, seed)
    train, test = to_unit_float(train), to_unit_float(test)
    val = None if val is None else to_unit_float(val)
    return Dataset("mnist", train, val, test, (1, 28, 28), 10, CLASS_NAMES, info={**info, "subsample": subsample})


def read_mnist(roots: list[Path]) -> tuple[Split, Split, dict]:
    """The MNIST files under ``roots`` as uint8 splits (N, 1, 28, 28) with int64 labels, and the files read."""
    found = locate("mnist", roots)
    p = dict(zip(_SUMS, found.paths))
    train = _to_split(*read_mnist_pair(p["train-images-idx3-ubyte"], p["train-labels-idx1-ubyte"]))
    test = _to_split(*read_mnist_pair(p["t10k-images-idx3-ubyte"], p["t10k-labels-idx1-ubyte"]))
    return train, test, {"files": [str(x) for x in found.paths]}
