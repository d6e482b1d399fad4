"""Your own data: a folder of images (one sub-folder per class) or arrays in an ``.npz`` file.

On the command line ``--data folder:PATH`` or ``--data arrays:FILE.npz`` replaces the recipe's
data with yours; in a recipe, ``data: {name: folder, options: {path: PATH, size: 32}}``.

``folder``: ``PATH/<class>/<image>`` (PNG, JPEG, BMP, GIF, TIFF, WebP, decoded with Pillow), the
classes being the sub-folders' names in sorted order; or ``PATH/train/<class>/...`` and
``PATH/test/<class>/...`` for a test split of your own (else ``test_fraction`` of each class,
drawn with the seed). ``size`` resizes every image to ``size`` x ``size`` (area resampling),
``grayscale`` keeps one channel; without ``size`` every image must have the first one's size.
The decoded images are cached (``~/.cache/visionnets/folder-<hash>.safetensors``, keyed by the
files' names, sizes and times and the options), so a second run does not decode them again.

``arrays``: an ``.npz`` with ``x`` (N, H, W), (N, H, W, C), (N, C, H, W) or (N, D) — uint8 images
are scaled to [0, 1] — and ``y``: integer class labels (a classification; ``class_names`` if the
file has them) or floats (a regression); a test split from ``test`` (another ``.npz``) or
``test_fraction``.

    >>> ds = load_dataset("folder", path="photos/", size=64)     # doctest: +SKIP
    >>> ds.class_names                                           # doctest: +SKIP
    ['cats', 'dogs']
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Annotated

import numpy as np
import pydantic
import torch

from visionnets.data.base import Dataset, Split, carve_validation
from visionnets.data.catalog import DATASETS
from visionnets.data.files import DEFAULT_ROOT
from visionnets.errors import DataError
from visionnets.io import atomic_write

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
Fraction = Annotated[float, pydantic.Field(gt=0, lt=1)]


def _existing(path: str, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"data.options.path: {p} does not exist ({what}; a relative path is read from {Path.cwd()})")
    return p.resolve()


def split_by_class(y: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and test indices with ``fraction`` of each class (at least one) in test, drawn with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    test = []
    for c in y.unique():
        idx = (y == c).nonzero()[:, 0]
        take = max(1, int(round(len(idx) * fraction))) if len(idx) > 1 else 0
        test.append(idx[torch.randperm(len(idx), generator=g)[:take]])
    test_idx = torch.cat(test).sort().values
    keep = torch.ones(len(y), dtype=torch.bool)
    keep[test_idx] = False
    return keep.nonzero()[:, 0], test_idx


# ------------------------------------------------------------------------------------------ folder

def list_images(root: Path) -> tuple[list[Path], list[int], list[str]]:
    """The images under ``root/<class>/`` (sorted), their class indices and the class names."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class sub-folders; expected {root}/<class>/<image>")
    files, labels = [], []
    for c, name in enumerate(classes):
        found = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not found:
            raise DataError(f"{root / name}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        files += found
        labels += [c] * len(found)
    return files, labels, classes


def decode_images(files: list[Path], size: int | tuple[int, int] | None, grayscale: bool) -> torch.Tensor:
    """uint8 (N, C, H, W): each file decoded with Pillow, as L or RGB, resized to ``size``
    (``(H, W)``, or an int for a square) when given: area resampling down, bilinear up."""
    from PIL import Image, UnidentifiedImageError

    wh = None if size is None else ((size, size) if isinstance(size, int) else (size[1], size[0]))
    out, shape = [], None
    for f in files:
        try:
            with Image.open(f) as im:
                im = im.convert("L" if grayscale else "RGB")
                if wh is not None and im.size != wh:
                    im = im.resize(wh, Image.Resampling.BOX if im.size[0] >= wh[0] and im.size[1] >= wh[1]
                                   else Image.Resampling.BILINEAR)
                a = np.asarray(im)
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{f}: not a readable image ({exc})") from None
        if shape is None:
            shape = a.shape
        elif a.shape != shape:
            raise DataError(f"{f}: {a.shape[1]}x{a.shape[0]} pixels, the first image {shape[1]}x{shape[0]}; "
                            f"give data.options.size to resize them all")
        out.append(a)
    x = torch.from_numpy(np.stack(out))
    return x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()


def _cached(files: list[Path], size: int | None, grayscale: bool) -> torch.Tensor:
    """``decode_images``, through a safetensors cache keyed by the files and the options."""
    from safetensors.torch import load_file, save_file

    key = hashlib.sha256(json.dumps([size, grayscale] + [[str(f), f.stat().st_size, f.stat().st_mtime_ns]
                                                         for f in files]).encode()).hexdigest()[:24]
    cache = Path(os.environ.get("VISIONNETS_CACHE", DEFAULT_ROOT)).expanduser() / f"folder-{key}.safetensors"
    if cache.is_file():
        try:
            return load_file(str(cache))["x"]
        except Exception:              # a damaged cache is decoded again  # noqa: BLE001
            cache.unlink(missing_ok=True)
    x = decode_images(files, size, grayscale)
    try:
        atomic_write(cache, lambda tmp: save_file({"x": x}, tmp))
    except OSError:                     # a read-only home: no cache, same data
        pass
    return x


@DATASETS.register("folder")
def folder(roots: list[Path], val_fraction: float, seed: int, path: str,
           size: Annotated[int, pydantic.Field(ge=1)] | None = None, grayscale: bool = False,
           test_fraction: Fraction = 0.2) -> Dataset:
    """Images in class sub-folders (see the module docstring)."""
    root = _existing(path, "a folder of class sub-folders")
    if (root / "train").is_dir() and (root / "test").is_dir():
        tr_files, tr_y, classes = list_images(root / "train")
        te_files, te_y, te_classes = list_images(root / "test")
        if te_classes != classes:
            raise DataError(f"{root / 'test'}: classes {te_classes} differ from {root / 'train'}'s {classes}")
        x = _cached(tr_files + te_files, size, grayscale)
        y = torch.tensor(tr_y + te_y)
        train_idx, test_idx = torch.arange(len(tr_y)), torch.arange(len(tr_y), len(y))
    else:
        files, labels, classes = list_images(root)
        x, y = _cached(files, size, grayscale), torch.tensor(labels)
        train_idx, test_idx = split_by_class(y, test_fraction, seed)
    x = x.float().div_(255.0)
    train, val = carve_validation(Split(x[train_idx], y[train_idx]), val_fraction, seed)
    return Dataset("folder", train, val, Split(x[test_idx], y[test_idx]), tuple(x.shape[1:]), len(classes), classes,
                   info={"path": str(root), "images": len(y), "size": size, "grayscale": grayscale})


# ------------------------------------------------------------------------------------------ arrays

def prepare_x(x: np.ndarray, path: Path) -> torch.Tensor:
    """Inputs as float (N, C, H, W) or (N, D): uint8 scaled to [0, 1], a channel axis added or moved first."""
    t = torch.from_numpy(np.ascontiguousarray(x))
    t = t.float().div_(255.0) if x.dtype == np.uint8 else t.float()
    if t.ndim == 3:
        return t[:, None]
    if t.ndim == 4 and t.shape[-1] in (1, 3) and t.shape[1] not in (1, 3):
        return t.permute(0, 3, 1, 2).contiguous()
    if t.ndim not in (2, 4):
        raise DataError(f"{path}: x has shape {x.shape}; expected (N, D), (N, H, W) or images with channels")
    return t


def read_arrays(path: Path) -> tuple[torch.Tensor, torch.Tensor, list[str] | None]:
    """``x`` as float (N, C, H, W) or (N, D), ``y``, and the class names of one ``.npz``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "x" not in z.files or "y" not in z.files:
                raise DataError(f"{path}: keys {z.files}; expected 'x' and 'y'")
            x, y = z["x"], z["y"]
            names = [str(n) for n in z["class_names"]] if "class_names" in z.files else None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: cannot read npz ({exc})") from None
    if len(x) != len(y):
        raise DataError(f"{path}: {len(x)} inputs but {len(y)} targets")
    t = prepare_x(x, path)
    if np.issubdtype(y.dtype, np.integer):
        labels = torch.from_numpy(y.astype(np.int64))
        if labels.ndim != 1 or (len(labels) and labels.min() < 0):
            raise DataError(f"{path}: integer y must be class indices (N,) >= 0, got shape {y.shape}")
    else:
        labels = torch.from_numpy(y.astype(np.float32))
    return t, labels, names


@DATASETS.register("arrays")
def arrays(roots: list[Path], val_fraction: float, seed: int, path: str, test: str | None = None,
           test_fraction: Fraction = 0.2) -> Dataset:
    """Arrays of an ``.npz`` file (see the module docstring)."""
    x, y, names = read_arrays(_existing(path, "an .npz file with x and y"))
    if test is not None:
        xt, yt, _ = read_arrays(_existing(test, "the test .npz"))
        if xt.shape[1:] != x.shape[1:]:
            raise DataError(f"{test}: x is {tuple(xt.shape[1:])} per example, {path}'s {tuple(x.shape[1:])}")
        train = Split(x, y)
        test_split = Split(xt, yt)
    elif y.is_floating_point():
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
        n_test = max(1, int(round(len(y) * test_fraction)))
        train, test_split = Split(x[perm[n_test:]], y[perm[n_test:]]), Split(x[perm[:n_test]], y[perm[:n_test]])
    else:
        tr, te = split_by_class(y, test_fraction, seed)
        train, test_split = Split(x[tr], y[tr]), Split(x[te], y[te])
    train, val = carve_validation(train, val_fraction, seed)
    classes = None if y.is_floating_point() else int(max(y.max(), test_split.y.max())) + 1
    if names is not None and classes is not None and len(names) < classes:
        raise DataError(f"{path}: {len(names)} class_names for {classes} classes")
    return Dataset("arrays", train, val, test_split, tuple(x.shape[1:]), classes,
                   names or (None if classes is None else [str(i) for i in range(classes)]),
                   info={"path": str(Path(path).resolve()), "test": test})


# ------------------------------------------------------------------------------------------ new inputs

def read_inputs(paths: list[str | Path], input_shape: tuple[int, ...]) -> tuple[list[str], torch.Tensor]:
    """New inputs for a model of ``input_shape``: image files and folders of images (decoded as
    the shape says: one channel or three, resized to its height and width, scaled to [0, 1]),
    and ``.npz`` (``x``) or ``.npy`` arrays (prepared as the ``arrays`` dataset prepares them).
    Returns a name per input (``file`` or ``file[i]``) and the float tensor (N, *input_shape)."""
    names, parts = [], []
    for entry in paths:
        p = Path(entry).expanduser()
        if not p.exists():
            raise DataError(f"{p}: no such file or folder")
        if p.suffix.lower() in (".npz", ".npy"):
            x = _array_inputs(p)
            names += [f"{p}[{i}]" for i in range(len(x))]
        else:
            files = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES) if p.is_dir() else [p]
            if not files:
                raise DataError(f"{p}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
            if len(input_shape) != 3 or input_shape[0] not in (1, 3):
                raise DataError(f"{p}: the model takes inputs of shape {tuple(input_shape)}, not images; "
                                f"give an .npz or .npy array")
            x = decode_images(files, tuple(input_shape[1:]), input_shape[0] == 1).float().div_(255.0)
            names += [str(f) for f in files]
        if tuple(x.shape[1:]) != tuple(input_shape):
            raise DataError(f"{p}: inputs of shape {tuple(x.shape[1:])}; the model takes {tuple(input_shape)}")
        parts.append(x)
    return names, torch.cat(parts)


def _array_inputs(path: Path) -> torch.Tensor:
    try:
        if path.suffix.lower() == ".npy":
            return prepare_x(np.load(path, allow_pickle=False), path)
        with np.load(path, allow_pickle=False) as z:
            if "x" not in z.files:
                raise DataError(f"{path}: keys {z.files}; expected 'x'")
            return prepare_x(z["x"], path)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: cannot read the array ({exc})") from None
