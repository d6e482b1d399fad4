"""CIFAR-10: 50,000 train / 10,000 test colour images, 32x32, 10 classes (Krizhevsky 2009).

Two on-disk layouts are read:

- the original ``cifar-10-batches-py`` pickles (``data_batch_1`` .. ``data_batch_5``,
  ``test_batch``, ``batches.meta``), loaded with a restricted unpickler that never executes
  code (:mod:`visionnets.data.safe_pickle`); each batch is a dict with ``data`` uint8
  (10000, 3072) laid out R, G, B planes of 32x32 rows, and ``labels`` a list of ints;
- ``train.npz`` / ``test.npz`` as in ``../shared/data/cifar10``: ``x`` uint8 (N, 32, 32, 3) HWC,
  ``y`` int64, ``class_names`` and ``orig_index`` (each image's place in the official order),
  sorted by class. That copy is lossless (bit-exact pixels; its README gives the checks). An
  earlier copy with the same keys but no ``orig_index`` was decoded from JPEG (quality about
  75): it is still read, and ``Dataset.info["lossy"]`` is True for it.

The pickles are preferred when a folder holds both. Images become float32 (N, 3, 32, 32)
in [0, 1]::

    >>> ds = load_dataset("cifar10", "/path/to/data")   # doctest: +SKIP
    >>> ds.train.x.shape, ds.info["lossy"]                               # doctest: +SKIP
    (torch.Size([45000, 3, 32, 32]), False)
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pydantic
import torch

from visionnets.data.base import Dataset, Split, carve_validation, subsample_split, to_unit_float
from visionnets.data.catalog import DATASETS
from visionnets.data.files import KnownFile, Layout, Need, declare_files, locate
from visionnets.data.safe_pickle import load_restricted
from visionnets.errors import DataError

CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck"]

# MD5 sums of the original batches (as published with the dataset and listed by torchvision).
_BATCH_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
# SHA-256 sums of the lossless copy, from ../shared/data/cifar10/README.md.
_NPZ_SHA256 = {
    "train.npz": "8a99b0a8b2ed25ba7169e415fe8216ab6143a099f078e58a92f0724cc46a1d64",
    "test.npz": "9d6980e3cc5ac55effbd3104991909c7d47aa37e733a157642f5cbef01ca8153",
}
PICKLES = Layout("cifar-10-batches-py pickles", tuple(
    Need((KnownFile(n, d, "md5"),)) for n, d in _BATCH_MD5.items()), subdir="cifar-10-batches-py")
PICKLES_HERE = Layout("cifar-10-batches-py pickles", PICKLES.needs)
NPZ = Layout("npz", tuple(
    Need((KnownFile(n, d),)) for n, d in _NPZ_SHA256.items()))
declare_files("cifar10", PICKLES, PICKLES_HERE, NPZ)

LOSSY_NOTE = ("decoded from a JPEG (quality ~75) copy of CIFAR-10: pixels differ from the "
              "original by JPEG error and the order is sorted by class")


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One ``cifar-10-batches-py`` batch: uint8 (N, 3, 32, 32) and int64 (N,), checked."""
    d = load_restricted(path)
    if not isinstance(d, dict):
        raise DataError(f"{path}: expected a dict, got {type(d).__name__}")
    d = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}
    for key in ("data", "labels"):
        if key not in d:
            raise DataError(f"{path}: missing key {key!r}; found {sorted(map(str, d))}")
    data = d["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32:
        what = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' is {what}; expected uint8 (N, 3072)")
    try:
        labels = np.asarray(d["labels"], dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: 'labels' is not a list of integers ({exc})") from None
    return data.reshape(-1, 3, 32, 32), _check_labels(labels, len(data), path, "labels")


def _check_labels(labels: np.ndarray, n: int, path: Path, key: str) -> np.ndarray:
    if labels.shape != (n,):
        raise DataError(f"{path}: {key!r} has shape {labels.shape}; expected ({n},)")
    if n and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{path}: {key!r} holds labels outside 0..9")
    return labels


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, bool]:
    """One npz file of the shared layout: uint8 (N, 3, 32, 32), int64 (N,), checked, and whether
    it is the JPEG-decoded copy (no ``orig_index`` key)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "x" not in z.files or "y" not in z.files:
                raise DataError(f"{path}: keys {z.files}; expected 'x' and 'y'")
            x, y, lossy = z["x"], z["y"], "orig_index" not in z.files
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: cannot read npz ({exc})") from None
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3):
        raise DataError(f"{path}: 'x' is {x.dtype} {x.shape}; expected uint8 (N, 32, 32, 3)")
    return x.transpose(0, 3, 1, 2), _check_labels(y.astype(np.int64), len(x), path, "y"), lossy


def _split(x: np.ndarray, y: np.ndarray) -> Split:
    """uint8 images (a strided view is fine) stay uint8 here; to_unit_float converts after carving."""
    return Split(torch.from_numpy(x), torch.from_numpy(y))


@DATASETS.register("cifar10")
def cifar10(roots: list[Path], val_fraction: float, seed: int,
            format: Literal["auto", "pickle", "npz"] = "auto",
            subsample: Annotated[int, pydantic.Field(ge=1)] | None = None) -> Dataset:
    """CIFAR-10 colour images: 50,000 train / 10,000 test, (3, 32, 32) in [0, 1], 10 classes.

    ``format``: ``auto`` takes the original pickles when present, else the npz copy.
    ``subsample`` keeps that many training images (and at most as many test images).
    """
    layouts = {"auto": (PICKLES, PICKLES_HERE, NPZ), "pickle": (PICKLES, PICKLES_HERE),
               "npz": (NPZ,)}[format]
    found = locate("cifar10", roots, layouts)
    if found.layout is NPZ:
        (xtr, ytr, lossy_tr), (xte, yte, lossy_te) = (read_npz(p) for p in found.paths)
        train, test, lossy = _split(xtr, ytr), _split(xte, yte), lossy_tr or lossy_te
    else:
        parts = [read_batch(p) for p in found.paths[:5]]
        train = _split(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        test = _split(*read_batch(found.paths[5]))
        lossy = False
    train = subsample_split(train, subsample, seed)
    test = subsample_split(test, subsample, seed + 1)
    train, val = carve_validation(train, val_fraction, seed)
    train, test = to_unit_float(train), to_unit_float(test)
    val = None if val is None else to_unit_float(val)
    info = {"files": [str(p) for p in found.paths], "format": found.layout.label,
            "lossy": lossy, "subsample": subsample}
    if lossy:
        info["note"] = LOSSY_NOTE
    return Dataset("cifar10", train, val, test, (3, 32, 32), 10, list(CLASS_NAMES), info=info)
