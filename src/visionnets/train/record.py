"""What an epoch of a run records, the early-stopping rule, and the best / final record.

Every executor (one process, DDP, Downpour) closes an epoch the same way, through
:class:`RunRecord`: a record with the keys of :func:`epoch_record`, early stopping on the
monitored metric, the record appended to ``metrics.jsonl``, ``checkpoints/last`` (and
``best`` when the monitored metric improved), the epoch callbacks, and one summary line.

A record holds, per epoch: ``epoch``, ``step``, ``lr``; ``train_loss``, ``train_error`` and
``train_<metric>`` for every other metric the objective names; ``train_seconds``,
``examples_per_s``; the same ``val_*`` and ``test_*`` keys (None where not measured);
``seconds``, ``wall_s`` (since the run started, across resumes), ``examples_seen`` (by all
workers), ``executor`` (``{"name": ...}`` and the executor's own statistics) and
``best_epoch``. Errors are None for regression.

    >>> early = EarlyStopping(patience=2)
    >>> [early.update({"epoch": e, "val_error": v}) for e, v in enumerate([0.3, 0.2, 0.25, 0.21], 1)]
    [(True, False), (True, False), (False, False), (False, True)]
    >>> early.best_epoch
    2
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from visionnets.objectives import Output
from visionnets.train.checkpoint import load_checkpoint, save_checkpoint
from visionnets.train.rundir import RunDir

SPLITS = ("train", "val", "test")


class Tally:
    """Sums of the loss and of an objective's metrics over batches (kept on the device until read).

    ``add(output, n)`` adds one batch of ``n`` examples; ``totals()`` gives plain numbers
    ``{name: (sum, count)}`` that can be sent elsewhere and ``merge``\\ d (Downpour replicas,
    DDP workers); ``means()`` gives ``{name: sum / count}`` (``loss`` among them).
    """

    def __init__(self):
        self.sums: dict[str, Any] = {}
        self.counts: dict[str, Any] = {}

    def _add(self, name: str, value, count) -> None:
        if name in self.sums:
            self.sums[name] = self.sums[name] + value
            self.counts[name] = self.counts[name] + count
        else:
            self.sums[name], self.counts[name] = value, count

    def add(self, out: Output, n: int) -> None:
        self._add("loss", out.loss.detach() * n, n)
        for name, (value, count) in out.metrics.items():
            self._add(name, value.detach() if isinstance(value, torch.Tensor) else value, count)

    @property
    def examples(self) -> int:
        return int(_number(self.counts.get("loss", 0)))

    def totals(self) -> dict[str, tuple[float, float]]:
        return {k: (_number(self.sums[k]), _number(self.counts[k])) for k in sorted(self.sums)}

    def merge(self, totals: dict[str, tuple[float, float]]) -> "Tally":
        for name, (value, count) in totals.items():
            self._add(name, value, count)
        return self

    def means(self) -> dict[str, float | None]:
        return {k: (s / c if c else None) for k, (s, c) in self.totals().items()}


def _number(v) -> float:
    return v.item() if isinstance(v, torch.Tensor) else float(v)


def split_record(split: str, means: dict[str, float | None] | None) -> dict[str, Any]:
    """``{split}_loss``, ``{split}_error`` (None when not measured) and ``{split}_<metric>``."""
    means = means or {}
    out = {f"{split}_loss": means.get("loss"), f"{split}_error": means.get("error")}
    out.update({f"{split}_{k}": v for k, v in means.items() if k not in ("loss", "error")})
    return out


def evaluation_record(evaluate: Callable[[str], dict], dataset, epoch: int, epochs: int,
                      test_each_epoch: bool = True, early: "EarlyStopping | None" = None) -> dict[str, Any]:
    """The ``val_*`` and ``test_*`` keys after ``epoch``: ``evaluate(split)`` gives the means.

    A split the dataset lacks is None. The test split is measured every epoch, or with
    ``test_each_epoch=False`` only where a result needs it: after the last epoch and after an
    epoch that improves ``early``'s metric, so that the epoch kept as the best always has its
    test numbers (its other epochs' test keys are None).
    """
    out = split_record("val", None if dataset.val is None else evaluate("val"))
    wanted = test_each_epoch or epoch >= epochs or (early is not None and early.improves(out))
    out.update(split_record("test", evaluate("test") if wanted and dataset.test is not None else None))
    return out


def epoch_record(*, epoch: int, step: int, lr: float, train: Tally, train_seconds: float,
                 evaluation: dict[str, Any], seconds: float, wall_s: float, examples_seen: int,
                 executor: dict[str, Any]) -> dict[str, Any]:
    """One line of ``metrics.jsonl``: the same keys for every executor (see the module docstring)."""
    seen = train.examples
    return {"epoch": epoch, "step": step, "lr": lr, **split_record("train", train.means()),
            "train_seconds": train_seconds, "examples_per_s": seen / max(train_seconds, 1e-9),
            **evaluation, "seconds": seconds, "wall_s": wall_s, "examples_seen": examples_seen,
            "executor": executor}


class EarlyStopping:
    """Keep the best epoch on ``metric`` (``val_error``; ``val_loss`` for regression); stop after
    ``patience`` epochs without an improvement larger than ``min_delta``. With no validation
    split the last epoch counts as the best."""

    def __init__(self, patience: int | None = None, metric: str | None = None, min_delta: float = 0.0,
                 classification: bool = True):
        self.patience, self.min_delta = patience, min_delta
        self.monitor = metric or ("val_error" if classification else "val_loss")
        self.best_value, self.best_epoch, self.bad_epochs = math.inf, None, 0

    @classmethod
    def from_spec(cls, spec, classification: bool) -> "EarlyStopping":
        """From a recipe's ``train.early_stopping`` section."""
        return cls(spec.patience, spec.metric, spec.min_delta, classification)

    def improves(self, record: dict[str, Any]) -> bool:
        """Whether ``record`` would become the best epoch (without counting it): False where it
        holds the metric as None (no validation split: the last epoch is kept), True where it
        lacks the metric altogether (it cannot tell yet)."""
        if self.monitor not in record:
            return True
        return record[self.monitor] is not None and self._better(record[self.monitor])

    def _better(self, value: float) -> bool:
        return value < self.best_value - self.min_delta

    def update(self, record: dict[str, Any]) -> tuple[bool, bool]:
        """``(improved, stop)`` after ``record``; sets ``record['best_epoch']``."""
        value = record.get(self.monitor)
        if value is None:           # no validation split: the last epoch is the one kept
            value = -record["epoch"]
        improved = self._better(value)
        if improved:
            self.best_value, self.best_epoch, self.bad_epochs = value, record["epoch"], 0
        else:
            self.bad_epochs += 1
        record["best_epoch"] = self.best_epoch
        return improved, self.patience is not None and self.bad_epochs >= self.patience

    def state(self) -> dict[str, Any]:
        best = None if math.isinf(self.best_value) else self.best_value
        return {"best_value": best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state(self, state: dict[str, Any]) -> None:
        best = state.get("best_value")
        self.best_value = math.inf if best is None else best
        self.best_epoch, self.bad_epochs = state.get("best_epoch"), state.get("bad_epochs", 0)


def final_record(history: list[dict[str, Any]], best_epoch: int | None) -> dict[str, Any]:
    """The best epoch's record plus ``epochs_run`` and ``train_seconds_total``."""
    if not history:
        return {}
    best = next((r for r in history if r["epoch"] == best_epoch), history[-1])
    total = sum(r["train_seconds"] for r in history)
    return {**best, "epochs_run": history[-1]["epoch"], "train_seconds_total": total}


def summary_line(r: dict[str, Any]) -> str:
    """One line per epoch: loss, errors (or losses), throughput, and Downpour's staleness."""
    parts = [f"epoch {r['epoch']:>3}", f"loss {r['train_loss']:.4f}"]
    for split in SPLITS:
        if r.get(f"{split}_error") is not None:
            parts.append(f"{split} err {100 * r[f'{split}_error']:.2f}%")
        elif split != "train" and r.get(f"{split}_loss") is not None:
            parts.append(f"{split} loss {r[f'{split}_loss']:.4g}")
    parts.append(f"{r['examples_per_s']:.0f} ex/s")
    stale = (r.get("executor") or {}).get("staleness_mean")
    if stale is not None:
        parts.append(f"staleness {stale:.2f} (p95 {r['executor']['staleness_p95']:.1f})")
    return " | ".join(parts)


class RunRecord:
    """The history of a run and the closing of each epoch (see the module docstring).

    ``run_dir`` None keeps everything in memory (a DDP worker other than rank 0, or a Trainer
    without a directory).
    """

    def __init__(self, run_dir: RunDir | None, early: EarlyStopping, *, progress: bool = False,
                 callbacks: tuple[Callable, ...] = ()):
        self.run_dir, self.early, self.progress, self.callbacks = run_dir, early, progress, tuple(callbacks)
        self.history: list[dict[str, Any]] = []

    def restore(self, state: dict[str, Any], read_from: RunDir | None = None) -> None:
        """Continue after the epoch a checkpoint's ``state`` was written at."""
        self.early.load_state(state)
        source = read_from or self.run_dir
        self.history = source.read_metrics(upto_epoch=state["epoch"]) if source is not None else []

    def close_epoch(self, owner, record: dict[str, Any], model: nn.Module,
                    optimizer: torch.optim.Optimizer | None, state: dict[str, Any]) -> bool:
        """Early stopping, ``metrics.jsonl``, checkpoints, callbacks, the summary line; True: stop."""
        improved, stop = self.early.update(record)
        self.history.append(record)
        if self.run_dir is not None:
            self.run_dir.write_metrics(self.history)
            full = self.save_last(model, optimizer, state)
            if improved:
                save_checkpoint(self.run_dir.checkpoint("best"), model, None, full)
        for cb in self.callbacks:
            cb(owner, record)
        if self.progress:
            print(summary_line(record), flush=True)
        return stop

    def save_last(self, model: nn.Module, optimizer: torch.optim.Optimizer | None,
                  state: dict[str, Any]) -> dict[str, Any]:
        """``checkpoints/last`` with the run ``state`` and early stopping's (also mid-epoch); the state saved."""
        full = {**state, **self.early.state()}
        if self.run_dir is not None:
            save_checkpoint(self.run_dir.checkpoint("last"), model, optimizer, full)
        return full

    def final(self) -> dict[str, Any]:
        return final_record(self.history, self.early.best_epoch)

    def load_best(self, model: nn.Module) -> Path | None:
        """Load the best checkpoint (when one was written) into ``model``."""
        if self.run_dir is not None and self.run_dir.checkpoint("best").is_file():
            load_checkpoint(self.run_dir.checkpoint("best"), model)
            return self.run_dir.checkpoint("best")
        return None
