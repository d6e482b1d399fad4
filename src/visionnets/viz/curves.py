"""Learning curves: loss and error per epoch, from a run's history (``metrics.jsonl``, read with
:func:`visionnets.train.rundir.read_metrics`).

Each record is one epoch (keys epoch, step, lr, train_loss, train_error, val_loss, val_error,
test_loss, test_error, seconds, examples_per_s; errors are None for regression). Missing keys
and None values are skipped, so curves for a run without a validation split just lack it.

    >>> history = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e} for e in range(1, 6)]
    >>> import tempfile, pathlib
    >>> plot_curves(history, pathlib.Path(tempfile.mkdtemp()) / "curves.png").name
    'curves.png'
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from matplotlib.ticker import MaxNLocator

from visionnets.errors import DataError
from visionnets.viz.grid import new_figure, save_figure

SPLITS = ("train", "val", "test")


def series(history: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of ``key`` over the records that have a finite number for it."""
    xs, ys = [], []
    for i, rec in enumerate(history):
        v = rec.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            xs.append(rec.get("epoch", i + 1))
            ys.append(float(v))
    return xs, ys


def plot_curves(history: list[dict], path: str | os.PathLike, title: str | None = None,
                log: bool | None = None) -> Path:
    """Loss (and, when recorded, error) per epoch for the train, val and test splits.

    ``log``: log scales; by default a panel gets one when its values are all positive and span
    more than a factor of 20.
    """
    losses = {s: series(history, f"{s}_loss") for s in SPLITS}
    errors = {s: series(history, f"{s}_error") for s in SPLITS}
    if not any(ys for _, ys in losses.values()):
        raise DataError("no loss values to plot: the history has no train_loss, val_loss or test_loss")
    has_error = any(ys for _, ys in errors.values())
    fig = new_figure(9 if has_error else 5, 3.4)
    panels = [("loss", losses)] + ([("error", errors)] if has_error else [])
    for i, (name, data) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for split, (xs, ys) in data.items():
            if ys:
                ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=split)
        ys_all = [y for _, ys in data.values() for y in ys]
        if log if log is not None else (min(ys_all) > 0 and max(ys_all) / min(ys_all) > 20):
            ax.set_yscale("log")
        _epoch_axes(ax, name)
    return _finish(fig, title, path)


def _epoch_axes(ax, ylabel: str) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _finish(fig, title: str | None, path: str | os.PathLike) -> Path:
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def task_names(history: list[dict]) -> list[str]:
    """The tasks a multi-task run recorded (``train_error_<task>`` keys), in order."""
    names: list[str] = []
    for rec in history:
        for key in rec:
            if key.startswith("train_error_") and key[12:] not in names:
                names.append(key[12:])
    return names


def plot_task_curves(history: list[dict], path: str | os.PathLike, title: str | None = None) -> Path:
    """Error per epoch of each task of a multi-task run, one panel per task (train, val, test)."""
    tasks = task_names(history)
    if not tasks:
        raise DataError("no per-task errors to plot: the history has no train_error_<task> keys")
    fig = new_figure(3.6 * len(tasks) + 0.6, 3.4)
    for i, task in enumerate(tasks):
        ax = fig.add_subplot(1, len(tasks), i + 1)
        for split in SPLITS:
            xs, ys = series(history, f"{split}_error_{task}")
            if ys:
                ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=split)
        _epoch_axes(ax, "error")
        ax.set_title(f"task {task}", fontsize=10)
    return _finish(fig, title, path)
