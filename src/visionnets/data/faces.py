"""The AT&T / ORL faces: 400 grey images of 40 subjects (10 each), 112x92 (Samaria & Harter 1994).

Read from ``orl_faces.npz`` (``x`` uint8 (400, 112, 92), ``y`` subject 0..39, ``image_index``
1..10). Images become float32 (N, 1, 112, 92) in [0, 1]. The test split is by image index
within each subject: images ``1..train_per_subject`` of every subject train, the rest test, so
every subject is seen in training and tested on unseen pictures; validation is carved from
train with ``seed``::

    >>> ds = load_dataset("faces", "/path/to/data")   # doctest: +SKIP
    >>> len(ds.train) + len(ds.val), len(ds.test), ds.input_shape        # doctest: +SKIP
    (280, 120, (1, 112, 92))
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Annotated

import numpy as np
import pydantic
import torch

from visionnets.data.base import Dataset, Split, carve_validation
from visionnets.data.catalog import DATASETS
from visionnets.data.files import KnownFile, Layout, Need, declare_files, locate
from visionnets.errors import DataError

FILE = "orl_faces.npz"
SHA256 = "cd0d8cd4335dea8c3b2721cb3a98809667d85bb76f0cfcf08c65b39bd28d3346"
declare_files("faces", Layout("npz", (Need((KnownFile(FILE, SHA256),)),)))


def read_faces(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 images (N, 112, 92), int64 subject ids (N,) and int64 image indices (N,), checked."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = {"x", "y", "image_index"} - set(z.files)
            if missing:
                raise DataError(f"{path}: missing keys {sorted(missing)}; found {z.files}")
            x, y, idx = z["x"], z["y"].astype(np.int64), z["image_index"].astype(np.int64)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: cannot read npz ({exc})") from None
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (112, 92):
        raise DataError(f"{path}: 'x' is {x.dtype} {x.shape}; expected uint8 (N, 112, 92)")
    if y.shape != (len(x),) or idx.shape != (len(x),):
        raise DataError(f"{path}: 'y' {y.shape} and 'image_index' {idx.shape}; expected ({len(x)},)")
    if len(y) and (y.min() < 0 or idx.min() < 1):
        raise DataError(f"{path}: subject ids must be >= 0 and image indices >= 1")
    return x, y, idx


@DATASETS.register("faces")
def faces(roots: list[Path], val_fraction: float, seed: int,
          train_per_subject: Annotated[int, pydantic.Field(ge=1, le=9)] = 7) -> Dataset:
    """ORL faces: 40 subjects x 10 images, (1, 112, 92) in [0, 1]; images 1..k of each subject train."""
    found = locate("faces", roots)
    x, y, idx = read_faces(found.paths[0])
    num_classes = int(y.max()) + 1
    xt = torch.from_numpy(x).unsqueeze(1).float().div_(255.0)
    yt = torch.from_numpy(y)
    is_train = torch.from_numpy(idx <= train_per_subject)
    train, val = carve_validation(Split(xt[is_train], yt[is_train]), val_fraction, seed)
    test = Split(xt[~is_train], yt[~is_train])
    if len(test) == 0:
        raise DataError(f"{found.paths[0]}: no image has an index above {train_per_subject}; "
                        f"the test split is empty")
    return Dataset("faces", train, val, test, (1, 112, 92), num_classes,
                   [f"s{i + 1}" for i in range(num_classes)],
                   info={"files": [str(found.paths[0])], "train_per_subject": train_per_subject})
