"""Natural photographs for patch sampling (the scikit-image sample images).

:func:`load_natural_images` returns the images of ``natural_images.npz`` by name (uint8,
(H, W) grey or (H, W, 3) colour), for unsupervised learning on patches (auto-encoders, RICA,
sparse coding). The ``natural`` dataset cuts them into labelled patches: each patch's label is
the image it came from (a texture/scene recognition task); training patches come from the top
of every image and test patches from the bottom ``test_fraction`` of its rows, so the two never
overlap::

    >>> images = load_natural_images("/path/to/data")   # doctest: +SKIP
    >>> sorted(images)[:3], images["camera"].shape                       # doctest: +SKIP
    (['astronaut', 'brick', 'camera'], (512, 512))
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Annotated

import numpy as np
import pydantic
import torch

from visionnets.data.base import Dataset, Split, carve_validation
from visionnets.data.catalog import DATASETS
from visionnets.data.files import KnownFile, Layout, Need, declare_files, locate, resolve_roots
from visionnets.errors import DataError

FILE = "natural_images.npz"
SHA256 = "5184821a005a9482fb54d2c3ba8d639559953b729c8c1823614bf1405dab152c"
declare_files("natural", Layout("npz", (Need((KnownFile(FILE, SHA256),)),)))

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601


def load_natural_images(root: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """The natural images by name: uint8 (H, W) or (H, W, 3), from the data roots (see resolve_roots)."""
    return read_natural_images(locate("natural", resolve_roots(root)).paths[0])


def read_natural_images(path: Path) -> dict[str, np.ndarray]:
    """The images of one ``natural_images.npz`` file by name, checked."""
    try:
        with np.load(path, allow_pickle=False) as z:
            images = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: cannot read npz ({exc})") from None
    for k, im in images.items():
        if im.dtype != np.uint8 or not (im.ndim == 2 or (im.ndim == 3 and im.shape[2] == 3)):
            raise DataError(f"{path}: image {k!r} is {im.dtype} {im.shape}; "
                            f"expected uint8 (H, W) or (H, W, 3)")
    return images


def to_chw(image: np.ndarray, grayscale: bool) -> torch.Tensor:
    """uint8 (H, W) or (H, W, 3) -> float32 (C, H, W) in [0, 1]: C = 1 (BT.601 luma) or 3."""
    im = torch.from_numpy(image.astype(np.float32) / 255.0)
    if im.ndim == 2:
        im = im.unsqueeze(0)
        return im if grayscale else im.expand(3, -1, -1).contiguous()
    im = im.permute(2, 0, 1)
    if grayscale:
        return torch.einsum("chw,c->hw", im, torch.from_numpy(_LUMA)).unsqueeze(0)
    return im.contiguous()


def sample_patches(image: torch.Tensor, size: int, n: int, generator: torch.Generator,
                   rows: tuple[int, int] | None = None) -> torch.Tensor:
    """``n`` random ``size`` x ``size`` patches of a (C, H, W) image -> (n, C, size, size).

    ``rows = (lo, hi)`` restricts patches to lie entirely within rows lo..hi-1.
    """
    c, h, w = image.shape
    lo, hi = rows if rows is not None else (0, h)
    if hi - lo < size or w < size:
        raise DataError(f"image rows {lo}..{hi} x {w} columns are too small for {size}x{size} patches")
    top = torch.randint(lo, hi - size + 1, (n,), generator=generator)
    left = torch.randint(0, w - size + 1, (n,), generator=generator)
    r = top[:, None] + torch.arange(size)          # (n, size)
    q = left[:, None] + torch.arange(size)
    return image[:, r[:, :, None], q[:, None, :]].permute(1, 0, 2, 3).contiguous()


@DATASETS.register("natural")
def natural(roots: list[Path], val_fraction: float, seed: int,
            patch_size: Annotated[int, pydantic.Field(ge=2)] = 16,
            n_train: Annotated[int, pydantic.Field(ge=1)] = 10000,
            n_test: Annotated[int, pydantic.Field(ge=1)] = 2000,
            grayscale: bool = True,
            test_fraction: Annotated[float, pydantic.Field(gt=0, lt=1)] = 0.25) -> Dataset:
    """Patches of the natural images, labelled by source image; test patches from the bottom rows."""
    path = locate("natural", roots).paths[0]
    images = read_natural_images(path)
    names = sorted(images)
    g = torch.Generator().manual_seed(seed)
    xs: dict[str, list] = {"train": [], "test": []}
    ys: dict[str, list] = {"train": [], "test": []}
    for label, name in enumerate(names):
        im = to_chw(images[name], grayscale)
        cut = int(round(im.shape[1] * (1 - test_fraction)))
        for split, n, rows in (("train", n_train, (0, cut)), ("test", n_test, (cut, im.shape[1]))):
            k = n // len(names) + (label < n % len(names))
            xs[split].append(sample_patches(im, patch_size, k, g, rows))
            ys[split].append(torch.full((k,), label, dtype=torch.int64))
    train = Split(torch.cat(xs["train"]), torch.cat(ys["train"]))
    test = Split(torch.cat(xs["test"]), torch.cat(ys["test"]))
    train, val = carve_validation(train, val_fraction, seed)
    c = 1 if grayscale else 3
    return Dataset("natural", train, val, test, (c, patch_size, patch_size), len(names), names,
                   info={"files": [str(path)], "test_rows": f"bottom {test_fraction:.0%} of each image"})
