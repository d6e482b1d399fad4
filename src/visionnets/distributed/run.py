"""What every executor shares: the run directory, its records, and the end of a run.

A distributed run writes the same directory as a single process (``recipe.yaml``,
``metrics.jsonl``, ``checkpoints/last|best.safetensors``, ``figures/``, ``report.html``) plus
``executor.json`` naming the executor and its options, so ``visionnets eval RUN_DIR`` and
``--resume RUN_DIR`` work on it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from visionnets.api import RunResult, _new_run_dir, build_data
from visionnets.data.base import Dataset
from visionnets.errors import CheckpointError, ConfigError
from visionnets.io import atomic_write_text
from visionnets.recipes import Recipe, load_recipe

# runs of these executors can continue one another: DDP keeps the Trainer's checkpoint format
COMPATIBLE = {"local": {"local", "ddp"}, "ddp": {"local", "ddp"}, "downpour": {"downpour"}}


def saved_executor(run_dir: Path) -> dict[str, Any]:
    """The executor record of a run directory (``local`` for runs written by ``api.train``)."""
    path = run_dir / "executor.json"
    if not path.is_file():
        return {"executor": "local", "options": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc.msg})") from None


def check_resumable(run_dir: Path, executor: str) -> dict[str, Any]:
    """The run's executor record, if ``executor`` can continue it (else a ConfigError)."""
    saved = saved_executor(run_dir)
    if executor not in COMPATIBLE.get(saved["executor"], ()):
        raise ConfigError(f"{run_dir}: a {saved['executor']} run cannot be resumed with --executor "
                          f"{executor}; use --executor {saved['executor']}")
    return saved


def prepare(executor: str, recipe, overrides, data_dir, out, resume) -> tuple[Recipe, Dataset, Path, dict]:
    """Load the recipe (or the resumed run's), the data, and make the run directory.

    Returns ``(recipe, dataset, run_dir, saved)`` where ``saved`` is the resumed run's executor
    record (``{}`` for a new run).
    """
    saved: dict[str, Any] = {}
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "recipe.yaml").is_file():
            raise CheckpointError(f"{run_dir}: not a run directory (no recipe.yaml)")
        if not (run_dir / "checkpoints" / "last.safetensors").is_file():
            raise CheckpointError(f"{run_dir}/checkpoints/last.safetensors: nothing to resume from")
        saved = check_resumable(run_dir, executor)
        rec = load_recipe(run_dir / "recipe.yaml", overrides)
    else:
        rec = recipe if isinstance(recipe, Recipe) and not overrides else load_recipe(recipe, overrides)
        run_dir = None
    dataset = build_data(rec, data_dir)
    if run_dir is None:
        run_dir = _new_run_dir(rec, out)
    atomic_write_text(run_dir / "recipe.yaml", yaml.safe_dump(rec.to_dict(), sort_keys=False))
    return rec, dataset, run_dir, saved


def write_executor(run_dir: Path, executor: str, options: dict[str, Any]) -> None:
    atomic_write_text(run_dir / "executor.json", json.dumps({"executor": executor, "options": options}, indent=1))


def write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))


def read_history(run_dir: Path, last_epoch: int) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["epoch"] <= last_epoch]


def final_record(history: list[dict[str, Any]], best_epoch: int | None) -> dict[str, Any]:
    """The best epoch's record plus ``epochs_run`` and ``train_seconds_total`` (as the Trainer)."""
    if not history:
        return {}
    best = next((r for r in history if r["epoch"] == best_epoch), history[-1])
    total = sum(r["train_seconds"] for r in history)
    return {**best, "epochs_run": history[-1]["epoch"], "train_seconds_total": total}


def finish(run_dir: Path, model: nn.Module, dataset: Dataset, rec: Recipe, history: list[dict],
           final: dict, figures: bool) -> RunResult:
    if figures:
        from visionnets.viz.report import finish_run

        finish_run(run_dir, model, dataset, history, rec.to_dict())
    return RunResult(run_dir, final, model, dataset, rec, history)


class EarlyStop:
    """The Trainer's rule: keep the best epoch on the monitored metric; stop after ``patience``."""

    def __init__(self, rec: Recipe, classification: bool, state: dict[str, Any] | None = None):
        e = rec.train.early_stopping
        self.patience, self.min_delta = e.patience, e.min_delta
        self.monitor = e.metric or ("val_error" if classification else "val_loss")
        state = state or {}
        best = state.get("best_value")
        self.best_value = math.inf if best is None else best
        self.best_epoch, self.bad_epochs = state.get("best_epoch"), state.get("bad_epochs", 0)

    def update(self, record: dict[str, Any]) -> tuple[bool, bool]:
        """(improved, stop) after ``record``; sets ``record['best_epoch']``."""
        value = record.get(self.monitor)
        if value is None:
            value = -record["epoch"]
        improved = value < self.best_value - self.min_delta
        if improved:
            self.best_value, self.best_epoch, self.bad_epochs = value, record["epoch"], 0
        else:
            self.bad_epochs += 1
        record["best_epoch"] = self.best_epoch
        return improved, self.patience is not None and self.bad_epochs >= self.patience

    def state(self) -> dict[str, Any]:
        best = None if math.isinf(self.best_value) else self.best_value
        return {"best_value": best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}


def pretrain_if_asked(rec: Recipe, model: nn.Module, train_x, run_dir: Path) -> None:
    """The recipe's greedy layer-wise pretraining, run here before the model is distributed."""
    if rec.pretrain is None:
        return
    from visionnets.unsupervised.pretrain import pretrain_mlp

    p = rec.pretrain
    stats = pretrain_mlp(model, train_x, method=p.method, epochs=p.epochs, lr=p.lr,
                         batch_size=p.batch_size, device=rec.device, **p.params)
    atomic_write_text(run_dir / "pretrain.json", json.dumps(stats, indent=1))


def tensorboard_callback(rec: Recipe, run_dir: Path) -> tuple:
    if rec.logging != "tensorboard":
        return ()
    from visionnets.viz.tensorboard import TensorBoardLogger

    tb = TensorBoardLogger(run_dir)
    return (lambda ex, record: tb.log_epoch(record["epoch"], record, ex.model),)
