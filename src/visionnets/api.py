"""The Python API: everything the command line does, in a few lines.

    >>> from visionnets import api
    >>> result = api.train("digits_convnet", ["train.epochs=1"], out="/tmp/vn-doc-run", progress=False)
    >>> sorted(result.final)[:3]
    ['best_epoch', 'epoch', 'epochs_run']
    >>> run = api.load_run(result.run_dir)
    >>> api.evaluate(run, "test")["n"]
    360
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from visionnets.data import build_augment, load_dataset
from visionnets.data.base import Dataset
from visionnets.errors import CheckpointError, ConfigError
from visionnets.models import build_model
from visionnets.objectives import build_objective
from visionnets.recipes import Recipe, load_recipe
from visionnets.train.checkpoint import atomic_write_text, load_checkpoint
from visionnets.train.trainer import Trainer, evaluate_model, resolve_device


@dataclass
class RunResult:
    """What ``train`` returns: the run directory, the best epoch's record, the trained model."""

    run_dir: Path
    final: dict[str, Any]
    model: nn.Module
    dataset: Dataset
    recipe: Recipe
    history: list[dict[str, Any]]


@dataclass
class Run:
    """A finished (or interrupted) run loaded back from its directory."""

    run_dir: Path
    recipe: dict[str, Any]
    model: nn.Module
    dataset: Dataset
    history: list[dict[str, Any]]
    objective: Any


def build_data(recipe: Recipe, data_dir: str | Path | None = None) -> Dataset:
    d = recipe.data
    return load_dataset(d.name, data_dir, val_fraction=d.val_fraction, seed=d.seed,
                        transforms=d.transforms, **d.options)


def build_for(recipe: Recipe, dataset: Dataset) -> nn.Module:
    """The recipe's model, shaped for ``dataset`` (seeded by the recipe's seed)."""
    torch.manual_seed(recipe.seed)
    if dataset.is_classification:
        n_out = dataset.num_classes
    else:
        n_out = dataset.train.y.shape[1] if dataset.train.y.ndim == 2 else 1
    return build_model(recipe.model, dataset.input_shape, n_out)


def _new_run_dir(recipe: Recipe, out: str | Path | None) -> Path:
    if out is not None:
        out = Path(out)
        if out.exists() and any(out.iterdir()):
            raise ConfigError(f"{out}: run directory exists and is not empty; "
                              f"use --resume {out} to continue it, or another --out")
        out.mkdir(parents=True, exist_ok=True)
        return out
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{recipe.name}-{stamp}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    path.mkdir(parents=True)
    return path


def train(recipe: str | Path | dict | Recipe, overrides: list[str] | tuple[str, ...] = (),
          data_dir: str | Path | None = None, out: str | Path | None = None,
          resume: str | Path | None = None, progress: bool = True, figures: bool = True,
          callbacks: tuple = ()) -> RunResult:
    """Train from a recipe (path, bundled name, dict or Recipe), or resume a run directory.

    With ``resume=RUN_DIR`` the recipe saved in RUN_DIR is used (``overrides`` still apply,
    e.g. ``train.epochs=20`` to train longer) and training continues from its last checkpoint.
    ``callbacks`` are called as ``cb(trainer, record)`` after each epoch's checkpoint.
    """
    if resume is not None:
        run_dir = Path(resume)
        saved = run_dir / "recipe.yaml"
        if not saved.is_file():
            raise CheckpointError(f"{run_dir}: not a run directory (no recipe.yaml)")
        rec = load_recipe(saved, overrides)
        if not (run_dir / "checkpoints" / "last.safetensors").is_file():
            raise CheckpointError(f"{run_dir}/checkpoints/last.safetensors: nothing to resume from")
    else:
        rec = recipe if isinstance(recipe, Recipe) and not overrides else load_recipe(recipe, overrides)
        run_dir = None
    if rec.threads is not None:
        torch.set_num_threads(rec.threads)
    dataset = build_data(rec, data_dir)
    model = build_for(rec, dataset)
    objective = build_objective(rec.objective.model_dump())
    augment = build_augment(rec.data.augment)
    if run_dir is None:
        run_dir = _new_run_dir(rec, out)
    atomic_write_text(run_dir / "recipe.yaml", yaml.safe_dump(rec.to_dict(), sort_keys=False))
    if rec.pretrain is not None and resume is None:
        from visionnets.unsupervised.pretrain import pretrain_mlp

        p = rec.pretrain
        stats = pretrain_mlp(model, dataset.train.x, method=p.method, epochs=p.epochs, lr=p.lr,
                             batch_size=p.batch_size, device=rec.device, **p.params)
        atomic_write_text(run_dir / "pretrain.json", json.dumps(stats, indent=1))
    t = rec.train
    callbacks = tuple(callbacks)
    if rec.logging == "tensorboard":
        from visionnets.viz.tensorboard import TensorBoardLogger

        tb = TensorBoardLogger(run_dir)
        callbacks += (lambda trainer, record: tb.log_epoch(record["epoch"], record, trainer.model),)
    trainer = Trainer(model, objective, dataset, epochs=t.epochs, batch_size=t.batch_size,
                      eval_batch_size=t.eval_batch_size, optimizer=t.optimizer, schedule=t.schedule,
                      early_stopping=t.early_stopping, grad_clip=t.grad_clip, augment=augment,
                      seed=rec.seed, device=rec.device, run_dir=run_dir, progress=progress,
                      max_steps_per_epoch=t.max_steps_per_epoch,
                      eval_test_each_epoch=t.eval_test_each_epoch, callbacks=callbacks)
    final = trainer.fit(resume=resume is not None)
    if figures:
        from visionnets.viz.report import finish_run

        finish_run(run_dir, trainer.model, dataset, trainer.history, rec.to_dict())
    return RunResult(run_dir, final, trainer.model, dataset, rec, trainer.history)


def load_run(run_dir: str | Path, data_dir: str | Path | None = None, which: str = "best") -> Run:
    """Load a run directory: its recipe, data, and the ``best`` (or ``last``) weights, on CPU."""
    run_dir = Path(run_dir)
    saved = run_dir / "recipe.yaml"
    if not saved.is_file():
        raise CheckpointError(f"{run_dir}: not a run directory (no recipe.yaml)")
    if which not in ("best", "last"):
        raise ConfigError(f"which: expected 'best' or 'last', got {which!r}")
    rec = load_recipe(saved)
    ckpt = run_dir / "checkpoints" / f"{which}.safetensors"
    if which == "best" and not ckpt.is_file():
        ckpt = run_dir / "checkpoints" / "last.safetensors"
    dataset = build_data(rec, data_dir)
    model = build_for(rec, dataset)
    load_checkpoint(ckpt, model)
    model.eval()
    metrics = run_dir / "metrics.jsonl"
    history = [json.loads(l) for l in metrics.read_text().splitlines() if l.strip()] if metrics.is_file() else []
    return Run(run_dir, rec.to_dict(), model, dataset, history, build_objective(rec.objective.model_dump()))


def evaluate(run: Run, split: str = "test", device: str = "auto") -> dict[str, Any]:
    """Loss and error of a loaded run on ``split``: {split, n, loss, accuracy, error}."""
    dev = resolve_device(device)
    result = evaluate_model(run.model.to(dev), run.objective, run.dataset.split(split),
                            run.dataset.is_classification, run.recipe["train"]["eval_batch_size"], dev)
    return {"split": split, **result}
