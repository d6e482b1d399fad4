"""Unlabeled images in which faces are rare, for the face-neuron experiment of Le et al. (ICML 2012).

Le et al. trained on 10 million YouTube frames, about 3 % of them faces, without labels, then
asked whether any neuron of the top layer responds to faces. At this machine's scale:

- train: ``n_train`` images of which ``face_fraction`` (default 3 %) are LFW faces
  (``../shared/data/lfw``) of the *training people*, the rest non-faces: grayscale CIFAR-10
  training images and, for ``natural_share`` of them, 64x64 crops of the left 75 % of the natural
  photographs. ``y`` (1 face, 0 not) is kept for analysis only: the network never sees it.
- test: faces of *held-out people* (``test_people`` of the people, chosen with the seed, none in
  train), and non-faces from CIFAR-10's test images and crops of the photographs' right 25 %.
  There are ``1.84`` non-faces per face, the paper's ratio (13,026 faces in 37,000 images); its
  balanced subset is the first ``n_faces`` non-faces (``balanced_test``).
- Every image, face or not, is grayscale (LFW's luma conversion) and brought to 32x32 by the same
  area resampling (faces and crops from 64x64, CIFAR-10 at its own size), so that colour, size or
  sharpness cannot tell a face from a non-face (``benchmarks/face_neuron.py`` checks this with a
  logistic regression on low-level statistics).

    >>> ds = load_dataset("rare_faces", "/path/to/data")       # doctest: +SKIP
    >>> ds.input_shape, float(ds.train.y.float().mean())       # doctest: +SKIP
    ((1, 32, 32), 0.03)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import pydantic
import torch

from visionnets.data.base import Dataset, Split
from visionnets.data.catalog import DATASETS
from visionnets.data.cifar10 import NPZ, read_npz
from visionnets.data.facetasks import SIZE, area_resize, luma, natural_crops, read_lfw
from visionnets.data.files import locate
from visionnets.data.natural import read_natural_images
from visionnets.errors import DataError

PAPER_NONFACES_PER_FACE = (37000 - 13026) / 13026      # 1.84: Le et al.'s test set


def balanced_test(split: Split) -> Split:
    """The balanced part of a ``rare_faces`` test split: every face and as many non-faces."""
    faces = torch.nonzero(split.y == 1).flatten()
    others = torch.nonzero(split.y == 0).flatten()[:len(faces)]
    keep = torch.cat([faces, others]).sort().values
    return Split(split.x[keep], split.y[keep])


@DATASETS.register("rare_faces")
def rare_faces(roots: list[Path], val_fraction: float, seed: int,
               n_train: Annotated[int, pydantic.Field(ge=100)] = 20000,
               face_fraction: Annotated[float, pydantic.Field(gt=0, lt=1)] = 0.03,
               test_people: Annotated[float, pydantic.Field(gt=0, lt=1)] = 0.3,
               n_test_faces: Annotated[int, pydantic.Field(ge=10)] = 2000,
               natural_share: Annotated[float, pydantic.Field(ge=0, le=1)] = 0.1) -> Dataset:
    """Unlabeled training images with rare faces, and a face / non-face test set (module docstring)."""
    if val_fraction:
        raise DataError("data.val_fraction: rare_faces has no validation split (the training is unsupervised); "
                        "set it to 0")
    rng = np.random.default_rng(seed)
    lfw_path = locate("lfw", roots).paths[0]
    faces, person, _ = read_lfw(lfw_path)
    people = rng.permutation(int(person.max()) + 1)
    held_out = np.isin(person, people[:int(round(len(people) * test_people))])
    train_pool, test_pool = np.flatnonzero(~held_out), np.flatnonzero(held_out)
    n_faces = int(round(n_train * face_fraction))
    if n_faces > len(train_pool) or n_test_faces > len(test_pool):
        raise DataError(f"rare_faces: {n_faces} training and {n_test_faces} test faces asked; LFW's split by "
                        f"people has {len(train_pool)} and {len(test_pool)} (data.options.n_train, n_test_faces)")
    cifar = locate("cifar10", roots, (NPZ,))
    (ctr, _, _), (cte, _, _) = (read_npz(p) for p in cifar.paths)
    photos = read_natural_images(locate("natural", roots).paths[0])

    def split(pool: np.ndarray, n_f: int, n_non: int, cifar_x: np.ndarray, part: str) -> Split:
        f = area_resize(torch.from_numpy(faces[rng.choice(pool, n_f, replace=False)]).float(), SIZE)
        n_nat = int(round(n_non * natural_share))
        if n_non - n_nat > len(cifar_x):
            raise DataError(f"rare_faces: {n_non - n_nat} CIFAR-10 non-faces needed, {len(cifar_x)} available")
        c = luma(cifar_x[rng.choice(len(cifar_x), n_non - n_nat, replace=False)])
        nat = area_resize(natural_crops(photos, n_nat, part, rng), SIZE)
        x = torch.cat([f, c, nat]).div_(255.0).unsqueeze(1)
        y = torch.cat([torch.ones(n_f, dtype=torch.long), torch.zeros(n_non, dtype=torch.long)])
        return Split(x, y)

    train = split(train_pool, n_faces, n_train - n_faces, ctr, "train")
    order = torch.from_numpy(rng.permutation(n_train))
    train = Split(train.x[order], train.y[order])
    n_test_non = int(round(n_test_faces * PAPER_NONFACES_PER_FACE))
    test = split(test_pool, n_test_faces, n_test_non, cte, "test")
    return Dataset("rare_faces", train, None, test, (1, SIZE, SIZE), 2, ["non-face", "face"],
                   info={"files": [str(lfw_path), *map(str, cifar.paths), "natural_images.npz"],
                         "face_fraction": face_fraction, "test_people_held_out": True})
