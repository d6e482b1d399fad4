"""The dataset registry: every loader registers itself here by name.

A loader is a function ``(roots, val_fraction, seed, **options) -> Dataset``; the three first
arguments are supplied by :func:`visionnets.data.load_dataset`, the options come from the
recipe (``data.options``) and are validated against the loader's signature and type hints.
"""

from visionnets.registry import Registry

DATASETS = Registry("dataset")
