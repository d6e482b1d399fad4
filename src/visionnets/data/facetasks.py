"""Faces, two tasks: is it a face (detection), and whose (identification) — the tutorial's
multi-task example ("face detection made easier by face identification").

- Faces: the LFW faces of ``../shared/data/lfw`` (13,233 deep-funneled 64x64 grayscale crops of
  5,749 people). Identification covers the people with at least ``min_images`` images (62 people
  at 20); the other faces count for detection only (identity ``UNLABELED``).
- Non-faces, as many as faces: grayscale CIFAR-10 images (``../shared/data/cifar10``, the luma
  of LFW's conversion, ``(299 R + 587 G + 114 B) / 1000``), with ``natural_share`` of them
  64x64 crops of the natural photographs (``../shared/data/natural``).
- Every image, face or not, ends 32x32 by the same area (box) resampling — faces and crops
  from 64x64, CIFAR-10 at its own 32x32 — so that size, colour or sharpness cannot tell a
  face from a non-face.
- Splits: each identified person's images, the other faces and the CIFAR-10 images are split
  ``test_fraction`` for test with the seed (CIFAR's own test images for the test split); natural
  crops come from the left 75 % of each photograph for training and the right 25 % for test.

``y`` is (N, 2): ``face`` (1 face, 0 not) and ``identity`` (0..K-1, or UNLABELED).

    >>> ds = load_dataset("face_tasks", "/path/to/data")        # doctest: +SKIP
    >>> ds.tasks, ds.input_shape                                # doctest: +SKIP
    ({'face': 2, 'identity': 62}, (1, 32, 32))
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Annotated

import numpy as np
import pydantic
import torch
import torch.nn.functional as F

from visionnets.data.base import UNLABELED, Dataset, Split, carve_validation
from visionnets.data.catalog import DATASETS
from visionnets.data.cifar10 import NPZ, read_npz
from visionnets.data.files import KnownFile, Layout, Need, declare_files, locate
from visionnets.data.natural import read_natural_images
from visionnets.errors import DataError

LFW_FILE = "lfw_faces64.npz"
LFW_SHA256 = "872e4fa8255f5a4c6ff533c113d19fb6a8480a3b7c449942dd57bc0c8e2f9e45"
declare_files("lfw", Layout("npz", (Need((KnownFile(LFW_FILE, LFW_SHA256),)),)))
SIZE = 32


def read_lfw(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x`` uint8 (N, 64, 64), ``person`` int64 (N,), ``names`` of the LFW file, checked."""
    try:
        with np.load(path, allow_pickle=False) as z:
            x, person, names = z["x"], z["person"], z["names"]
    except KeyError as exc:
        raise DataError(f"{path}: no key {exc}; expected x, person, names") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: cannot read npz ({exc})") from None
    if x.dtype != np.uint8 or x.ndim != 3 or len(person) != len(x):
        raise DataError(f"{path}: x is {x.dtype} {x.shape} for {len(person)} people's labels; expected uint8 (N, H, W)")
    return x, person, names


def area_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, H, W) float images to (N, size, size) by area (box) resampling."""
    return F.adaptive_avg_pool2d(x[:, None], size)[:, 0] if x.shape[-1] != size else x


def luma(rgb: np.ndarray) -> torch.Tensor:
    """(N, C, H, W) or (N, H, W, C) uint8 RGB to float grayscale in 0..255, as LFW's conversion."""
    x = torch.from_numpy(np.asarray(rgb)).float()
    if x.shape[-1] != 3:
        x = x.permute(0, 2, 3, 1)
    return (x[..., 0] * 299 + x[..., 1] * 587 + x[..., 2] * 114) / 1000


def natural_crops(photos: dict[str, np.ndarray], n: int, part: str, rng: np.random.Generator) -> torch.Tensor:
    """``n`` random 64x64 grayscale crops, from the left 75 % (``train``) or the right 25 % (``test``) of each photo."""
    gray = [luma(p[None])[0] if p.ndim == 3 else torch.from_numpy(p).float() for p in photos.values()]
    out = torch.empty(n, 64, 64)
    for i in range(n):
        img = gray[rng.integers(len(gray))]
        h, w = img.shape
        cut = int(w * 0.75)
        lo, hi = (0, cut - 64) if part == "train" else (cut, w - 64)
        top, left = rng.integers(0, h - 63), rng.integers(lo, max(lo, hi) + 1)
        out[i] = img[top:top + 64, left:left + 64]
    return out


@DATASETS.register("face_tasks")
def face_tasks(roots: list[Path], val_fraction: float, seed: int,
               min_images: Annotated[int, pydantic.Field(ge=2)] = 20,
               test_fraction: Annotated[float, pydantic.Field(gt=0, lt=1)] = 0.2,
               natural_share: Annotated[float, pydantic.Field(ge=0, le=1)] = 0.1) -> Dataset:
    """LFW faces against non-faces, tasks ``face`` and ``identity`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    lfw_path = locate("lfw", roots).paths[0]
    faces, person, names = read_lfw(lfw_path)
    counts = np.bincount(person, minlength=len(names))
    kept = np.flatnonzero(counts >= min_images)
    if len(kept) < 2:
        raise DataError(f"data.options.min_images: only {len(kept)} people have {min_images} images or more")
    identity = np.full(len(person), UNLABELED)
    identity[np.isin(person, kept)] = np.searchsorted(kept, person[np.isin(person, kept)])
    test_face = np.zeros(len(person), bool)
    for group in [np.flatnonzero(person == p) for p in kept] + [np.flatnonzero(identity == UNLABELED)]:
        pick = rng.permutation(group)[:max(1, int(round(len(group) * test_fraction)))]
        test_face[pick] = True
    cifar = locate("cifar10", roots, (NPZ,))
    (ctr, _, _), (cte, _, _) = (read_npz(p) for p in cifar.paths)
    photos = read_natural_images(locate("natural", roots).paths[0])

    def split(is_test: bool, nonface_pool: np.ndarray) -> Split:
        idx = np.flatnonzero(test_face == is_test)
        f = area_resize(torch.from_numpy(faces[idx]).float(), SIZE)
        n_nat = int(round(len(idx) * natural_share))
        n_cifar = len(idx) - n_nat
        if n_cifar > len(nonface_pool):
            raise DataError(f"face_tasks: {n_cifar} CIFAR-10 non-faces needed, {len(nonface_pool)} available")
        c = luma(nonface_pool[rng.choice(len(nonface_pool), n_cifar, replace=False)])
        nat = area_resize(natural_crops(photos, n_nat, "test" if is_test else "train", rng), SIZE)
        x = torch.cat([f, c, nat]).div_(255.0).unsqueeze(1)
        y_face = torch.cat([torch.ones(len(f), dtype=torch.long), torch.zeros(n_cifar + n_nat, dtype=torch.long)])
        y_id = torch.cat([torch.from_numpy(identity[idx]), torch.full((n_cifar + n_nat,), UNLABELED)])
        order = torch.from_numpy(rng.permutation(len(x)))
        return Split(x[order], torch.stack([y_face, y_id], 1)[order])

    train, test = split(False, ctr), split(True, cte)
    train, val = carve_validation(train, val_fraction, seed)
    return Dataset("face_tasks", train, val, test, (1, SIZE, SIZE), 2, ["non-face", "face"],
                   info={"files": [str(lfw_path), *map(str, cifar.paths), "natural_images.npz"],
                         "identities": [str(names[p]) for p in kept], "min_images": min_images},
                   tasks={"face": 2, "identity": len(kept)})
