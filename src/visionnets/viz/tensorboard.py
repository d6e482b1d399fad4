"""Optional TensorBoard logging (``logging: tensorboard`` in a recipe): scalars per epoch,
weight histograms and the first layer's filters as an image.

TensorBoard is an extra (``pip install 'visionnets[tensorboard]'``); it is imported only when a
logger is made, and a missing package raises a MissingExtraError naming the extra. Events go
to ``RUN_DIR/tensorboard``; view them with ``tensorboard --logdir RUN_DIR``.

    >>> import tempfile, torch
    >>> with TensorBoardLogger(tempfile.mkdtemp()) as tb:                     # doctest: +SKIP
    ...     tb.log_epoch(1, {"epoch": 1, "train_loss": 0.5}, torch.nn.Conv2d(1, 4, 3))
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch import nn

from visionnets.errors import require
from visionnets.viz.filters import filter_layout, first_spatial_layer, filter_image

SPLITS = ("train", "val", "test")


def _flat(record: dict, prefix: str = ""):
    for key, value in record.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}", value


def scalar_tag(key: str) -> str:
    """``train_loss`` -> ``loss/train`` (TensorBoard groups by the part before the slash)."""
    split, _, metric = key.partition("_")
    return f"{metric}/{split}" if split in SPLITS and metric else key


class TensorBoardLogger:
    """Write one epoch's record, weight histograms and filters to TensorBoard event files.

    Args:
        run_dir: the run directory; events go to ``run_dir/subdir``.
        histograms: log a histogram of every parameter each epoch.
        filters: log the first layer's filters (see :mod:`visionnets.viz.filters`) as an image.
        input_shape: (C, H, W) of one input, so a first Linear layer can be drawn as filters.
    """

    def __init__(self, run_dir: str | os.PathLike, subdir: str = "tensorboard", histograms: bool = True,
                 filters: bool = True, input_shape=None):
        tb = require("torch.utils.tensorboard", "tensorboard")
        self.log_dir = Path(run_dir) / subdir
        self.writer = tb.SummaryWriter(log_dir=str(self.log_dir))
        self.histograms, self.filters, self.input_shape = histograms, filters, input_shape

    def log_epoch(self, epoch: int, record: dict, model: nn.Module | None = None) -> None:
        """Log the numbers of ``record`` (None, bools and ``epoch`` skipped; a nested mapping such as
        ``executor`` as ``executor/<key>``) at step ``epoch``,
        and, given the model, its weight histograms and first-layer filters."""
        for key, value in _flat(record):
            if key == "epoch" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                self.writer.add_scalar(scalar_tag(key), value, epoch)
        if model is not None and self.histograms:
            for name, p in model.named_parameters():
                self.writer.add_histogram(name, p.detach().float().cpu(), epoch)
        if model is not None and self.filters:
            found = first_spatial_layer(model, self.input_shape)
            if found is not None:
                name, layer = found
                w, ncols = filter_layout(layer, self.input_shape)
                grid = filter_image(w[:400].float().cpu(), ncols=ncols)
                self.writer.add_image(f"filters/{name or 'model'}", torch.from_numpy(grid).float(), epoch,
                                      dataformats="HW" if grid.ndim == 2 else "HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> "TensorBoardLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TensorBoardCallback:
    """An epoch callback ``cb(trainer_or_driver, record)`` for ``logging: tensorboard``.

    It can be pickled (a DDP worker receives it): the logger opens in the process that calls
    it first (rank 0), writing to ``run_dir/tensorboard``.
    """

    def __init__(self, run_dir: str | os.PathLike, input_shape=None):
        self.run_dir, self.input_shape, self._logger = str(run_dir), input_shape, None

    def __call__(self, owner, record: dict) -> None:
        if self._logger is None:
            self._logger = TensorBoardLogger(self.run_dir, input_shape=self.input_shape)
        self._logger.log_epoch(record["epoch"], record, owner.model)

    def __getstate__(self):
        return {**self.__dict__, "_logger": None}
