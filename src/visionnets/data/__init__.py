"""Datasets by name, their files, and the transforms recipes apply to them.

    >>> from visionnets.data import load_dataset
    >>> ds = load_dataset("digits", transforms=["standardize"])
    >>> ds.input_shape, ds.num_classes, len(ds.train) + len(ds.val) + len(ds.test)
    ((1, 8, 8), 10, 1797)

Datasets (``DATASETS``): ``digits`` (bundled, the default), ``mnist``, ``multimnist`` (two
overlaid digits, two tasks), ``avmnist`` (digits seen and heard: two modalities), ``cifar10``,
``faces`` (ORL), ``face_tasks`` (LFW faces against non-faces: detection and identification),
``natural``, ``cosine``; your own files: ``folder`` (images in class sub-folders) and ``arrays``
(an ``.npz``). Files are looked up under the data roots of :func:`resolve_roots`.
"""

from __future__ import annotations

import os
from typing import Any

from visionnets.data.augment import AUGMENTS, Augment
from visionnets.data.base import (UNLABELED, Dataset, Split, carve_validation, keep_labels, subsample_split,
                                  to_unit_float)
from visionnets.data.batch import Batch
from visionnets.data.catalog import DATASETS
from visionnets.data.files import KNOWN_FILES, locate, resolve_roots
from visionnets.data.specs import build_augment, build_transforms
from visionnets.data.transforms import TRANSFORMS, Compose
from visionnets.errors import ConfigError, did_you_mean

# importing a loader registers it
from visionnets.data import (avmnist, cifar10, cosine, digits, faces, facetasks, mnist, multimnist,  # noqa: E402,F401
                             natural, rarefaces, user)
from visionnets.data.natural import load_natural_images  # noqa: E402

DEFAULT_DATASET = "digits"

__all__ = [
    "AUGMENTS", "Augment", "Batch", "Compose", "DATASETS", "DEFAULT_DATASET", "Dataset", "KNOWN_FILES",
    "Split", "TRANSFORMS", "build_augment", "build_transforms",
    "UNLABELED", "carve_validation", "keep_labels", "load_dataset", "load_natural_images", "locate", "resolve_roots",
    "subsample_split", "to_unit_float",
]


def load_dataset(name: str = DEFAULT_DATASET, root: str | os.PathLike | None = None, *,
                 val_fraction: float = 0.1, seed: int = 0, transforms: Any = (),
                 labels_per_class: int | None = None, **options: Any) -> Dataset:
    """Load dataset ``name`` with train / val / test splits, transforms fitted on train.

    ``root``: a data root searched before ``$VISIONNETS_DATA`` and ``~/.cache/visionnets``.
    ``val_fraction``: the share of the training split held out for validation (seeded by
    ``seed``; 0 for none). ``transforms``: specs for :func:`build_transforms`; they are fitted
    on the training split only, applied to every split, and kept in ``Dataset.transform``.
    ``labels_per_class``: keep that many labels per class in the training split (seeded) and
    set the others to ``UNLABELED`` (-1): semi-supervised learning on the same images (a
    validation split keeps its labels: use ``val_fraction=0`` for a strict protocol).
    ``options``: the dataset's own options (``data.options`` in a recipe), validated against
    its loader's signature: a wrong one is a ConfigError naming ``data.options.<key>``.
    """
    if name not in DATASETS:
        raise ConfigError(f"data.name: unknown dataset {name!r}{did_you_mean(name, DATASETS.names())}; expected one of: "
                          f"{', '.join(DATASETS.names())}")
    if not isinstance(val_fraction, (int, float)) or not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction: expected a number in [0, 1), got {val_fraction!r}")
    if "roots" in options:
        raise ConfigError("data.options.roots: not a dataset option; pass --data-dir (root) "
                          "or set $VISIONNETS_DATA")
    pipeline = build_transforms(transforms)   # fail on a bad spec before reading any file
    ds = DATASETS.build(name, options, where="data.options", roots=resolve_roots(root),
                        val_fraction=val_fraction, seed=seed)
    if labels_per_class is not None:
        if not ds.is_classification or ds.tasks:
            raise ConfigError(f"data.labels_per_class: dataset {name!r} has no single class label per example")
        ds.train = keep_labels(ds.train, labels_per_class, seed)
        ds.info["labels_per_class"] = labels_per_class
    if pipeline is not None:
        pipeline.fit(ds.train.x)
        ds = ds.map(pipeline)
        ds.input_shape = tuple(ds.train.x.shape[1:])
        ds.transform = pipeline
        ds.info["transforms"] = repr(pipeline)
    return ds
