"""From a recipe to a run that an executor can train: data, model, run directory, pretraining.

:func:`prepare` does, for every executor, what comes before the first step:

1. a new run: load and validate the recipe (``--set`` overrides applied); a resumed run: open
   its directory, read its recipe (overrides applied: e.g. more epochs) and its executor, and
   check the executor asked for can continue it;
2. the recipe's CPU threads, and its device checked (a bad one fails before any file exists);
3. the data and the model (initialized from the recipe's seed);
4. a new run only: the run directory with ``recipe.yaml`` and ``data.json`` (the data root
   it is trained on: a resumed run, ``eval`` and ``show`` load their data from there unless
   told otherwise), then the recipe's greedy layer-wise pretraining (``pretrain.json``).

Executors are registered in ``EXECUTORS`` (``local`` in :mod:`visionnets.train.trainer`,
``ddp`` and ``downpour`` in :mod:`visionnets.distributed`) as
``fit(setup, *, progress, callbacks, **options) -> (final record, history)``; they train
``setup.model`` in place.
"""

from __future__ import annotations

import inspect
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visionnets.data import load_dataset
from visionnets.data.base import Dataset
from visionnets.data.files import ENV_VAR
from visionnets.device import resolve_device
from visionnets.errors import CheckpointError, ConfigError
from visionnets.models import MODELS, build_model
from visionnets.objectives import build_objective
from visionnets.recipes import Recipe, load_recipe, validate
from visionnets.registry import Registry
from visionnets.train.rundir import RunDir

EXECUTORS = Registry("executor")
# runs of these executors can continue one another (DDP writes the single process's checkpoints)
# (as do model-parallel workers: they save and load the whole model's weights and optimizer state)
_WHOLE = {"local", "ddp", "model_parallel"}
COMPATIBLE = {"local": _WHOLE, "ddp": _WHOLE, "model_parallel": _WHOLE, "downpour": {"downpour"}}


def build_data(recipe: Recipe, data_dir: str | Path | None = None) -> Dataset:
    """The recipe's dataset, with its transforms fitted on the training split."""
    d = recipe.data
    return load_dataset(d.name, data_dir, val_fraction=d.val_fraction, seed=d.seed,
                        transforms=d.transforms, labels_per_class=d.labels_per_class, **d.options)


def objective_for(recipe: Recipe, dataset: Dataset):
    """The recipe's objective, checked against ``dataset``."""
    return build_objective(recipe.objective.model_dump(), dataset)


def build_model_for(recipe: Recipe, dataset: Dataset) -> nn.Module:
    """The recipe's model, shaped for ``dataset`` (its initial weights seeded by the recipe's seed),
    with what the objective trains beside it (``attach``: decoders)."""
    torch.manual_seed(recipe.seed)
    extra = {}
    if dataset.modalities:
        name = recipe.model.get("name")
        if name in MODELS and "modalities" not in inspect.signature(MODELS.get(name)).parameters:
            raise ConfigError(f"model.name: {name!r} takes one input, but dataset {dataset.name!r} has the inputs "
                              f"{', '.join(dataset.modalities)}; use a model for several inputs (bimodal)")
        extra["modalities"] = dict(dataset.modalities)
    model = build_model(recipe.model, dataset.input_shape, dataset.num_outputs, **extra)
    objective = objective_for(recipe, dataset)
    model = objective.attach(model, dataset) if hasattr(objective, "attach") else model
    return freeze(model, recipe.train.freeze)


def freeze(model: nn.Module, names: list[str]) -> nn.Module:
    """Leave the parameters of the modules ``names`` (``model.named_modules()`` names, e.g. the
    pretrained ``stage1``, ``stage2`` under a linear classifier) out of training: ``requires_grad``
    off, so no gradient, optimizer state or weight decay reaches them. The recipe's pretraining still
    trains them (:func:`pretrain`). Batch-norm running statistics inside them still update in
    training mode. Returns ``model``."""
    modules = dict(model.named_modules())
    for name in names:
        if name not in modules or not name:
            top = ", ".join(n for n, _ in model.named_children())
            raise ConfigError(f"train.freeze: the model has no module {name!r}; its top-level modules are {top}")
        for p in modules[name].parameters():
            p.requires_grad_(False)
    if names and not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"train.freeze: {', '.join(names)} leave no parameter to train")
    return model


@dataclass
class Setup:
    """A run ready to train: what :func:`prepare` returns and every executor takes."""

    recipe: Recipe
    dataset: Dataset
    model: nn.Module
    run_dir: RunDir
    executor: str
    options: dict[str, Any] = field(default_factory=dict)   # the executor's options
    resume: bool = False
    started: float = field(default_factory=time.time)        # wall-clock time of the launch


def check_options(executor: str, options: dict[str, Any]) -> None:
    """An unknown executor or option is a ConfigError naming it (before anything is written)."""
    fit = EXECUTORS.get(executor)
    known = [name for name, p in inspect.signature(fit).parameters.items()
             if p.kind is p.KEYWORD_ONLY and name not in ("progress", "callbacks")]
    for key in options:
        if key not in known:
            raise ConfigError(f"--executor {executor}: unknown option {key!r} (options: {', '.join(known) or 'none'})")


# what --set may change on --resume: nothing that changes the computation of the plan
RESUME_SETTABLE = ("description", "threads", "device", "logging", "train.eval_batch_size",
                   "train.checkpoint_every_steps")


def _leaves(d: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b": value}`` for every leaf of nested mappings (lists are leaves)."""
    if not isinstance(d, dict) or not d:
        return {prefix: d}
    out: dict[str, Any] = {}
    for key, val in d.items():
        out.update(_leaves(val, f"{prefix}.{key}" if prefix else key))
    return out


def resumed_recipe(run_dir: RunDir, overrides: list[str] | tuple[str, ...], extend: int | None) -> Recipe:
    """The recipe a resumed run continues: its own, exactly (``--set`` may change only
    ``RESUME_SETTABLE``), or extended to ``extend`` epochs.

    Extending keeps every learning rate the run has used and plans the added epochs: the
    ``step``, ``multistep`` and ``none`` schedules simply continue (their epochs are absolute);
    ``cosine`` starts a new cycle (an SGDR warm restart, recorded in ``train.schedule.restarts``)
    from the base learning rate at the end of the original plan, decaying to the new end.
    """
    saved = run_dir.recipe()
    rec = run_dir.recipe(overrides)
    before, after = _leaves(saved.to_dict()), _leaves(rec.to_dict())
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key) and key not in RESUME_SETTABLE:
            hint = " to train it longer, use --extend EPOCHS;" if key == "train.epochs" else ""
            raise ConfigError(f"--set {key}: a resumed run continues its own plan exactly;{hint} "
                              f"on --resume only {', '.join(RESUME_SETTABLE)} can be set")
    if extend is None:
        return rec
    planned = rec.train.epochs
    if not isinstance(extend, int) or extend <= planned:
        raise ConfigError(f"--extend {extend}: the run is planned for {planned} epochs; give a larger total")
    raw = rec.to_dict()
    raw["train"]["epochs"] = extend
    if rec.train.schedule.name == "cosine":
        raw["train"]["schedule"]["restarts"] = [*rec.train.schedule.restarts, planned]
    return validate(raw, str(run_dir.recipe_file))


def prepare(recipe: Any = None, overrides: list[str] | tuple[str, ...] = (), data_dir: str | Path | None = None,
            out: str | Path | None = None, resume: str | Path | None = None, executor: str | None = None,
            options: dict[str, Any] | None = None, extend: int | None = None) -> Setup:
    """Everything before the first step (see the module docstring).

    ``executor`` None: ``local`` for a new run, the run's own for a resumed one. A resumed
    run keeps the options it was started with unless ``options`` change them, and continues its
    plan exactly unless ``extend`` gives a new total of epochs (see :func:`resumed_recipe`).
    """
    options = dict(options or {})
    if extend is not None and resume is None:
        raise ConfigError("--extend: extends a run given with --resume RUN_DIR")
    if resume is not None:
        run_dir = RunDir.open(resume)
        run_dir.remove_partial_writes()
        saved = run_dir.executor()
        executor = executor or saved["executor"]
        if executor not in COMPATIBLE.get(saved["executor"], ()):
            raise ConfigError(f"{run_dir.path}: a {saved['executor']} run cannot be resumed with --executor "
                              f"{executor}; use --executor {saved['executor']}")
        if executor == saved["executor"]:
            options = {**saved.get("options", {}), **options}
        rec = resumed_recipe(run_dir, overrides, extend)
        if not run_dir.checkpoint("last").is_file():
            raise CheckpointError(f"{run_dir.checkpoint('last')}: nothing to resume from (the run stopped before "
                                  f"its first checkpoint); start it again with another --out, or delete {run_dir.path}")
    else:
        executor = executor or "local"
        rec = recipe if isinstance(recipe, Recipe) and not overrides else load_recipe(recipe, overrides)
        run_dir = None
    check_options(executor, options)
    if rec.threads is not None:
        torch.set_num_threads(rec.threads)
    resolve_device(rec.device)
    if run_dir is not None:
        data_dir = run_dir.data_root(data_dir)
    dataset = build_data(rec, data_dir)
    if rec.data.input_shape is not None and tuple(rec.data.input_shape) != tuple(dataset.input_shape):
        raise ConfigError(f"data.input_shape: {rec.data.input_shape}, but dataset {dataset.name!r} gives inputs of "
                          f"shape {list(dataset.input_shape)}")
    model = build_model_for(rec, dataset)
    if run_dir is None:
        run_dir = RunDir.create(out, rec.name)
        run_dir.write_recipe(rec)
        run_dir.write_data(data_dir if data_dir is not None else os.environ.get(ENV_VAR) or None,
                           dataset.info.get("files", []))
        run_dir.write_inputs(rec, dataset)
        pretrain(rec, model, dataset, run_dir)
    else:
        run_dir.write_recipe(rec)
    return Setup(rec, dataset, model, run_dir, executor, options, resume=resume is not None)


def pretrain(rec: Recipe, model: nn.Module, dataset: Dataset, run_dir: RunDir) -> None:
    """The recipe's greedy layer-wise pretraining of ``model``, in place; ``pretrain.json``."""
    if rec.pretrain is None:
        return
    from visionnets.unsupervised.pretrain import pretrain_mlp
    from visionnets.unsupervised.stages import pretrain_stages

    p = rec.pretrain
    t0 = time.perf_counter()
    frozen = [q for q in model.parameters() if not q.requires_grad]
    for q in frozen:                        # train.freeze is about the supervised training, not this
        q.requires_grad_(True)
    try:
        if p.method == "stages":
            layers = pretrain_stages(model, dataset.train.x, epochs=p.epochs, lr=p.lr, batch_size=p.batch_size,
                                     seed=rec.seed, device=resolve_device(rec.device), **p.params)
        else:
            layers = pretrain_mlp(model, dataset.train.x, method=p.method, epochs=p.epochs, lr=p.lr,
                                  batch_size=p.batch_size, device=rec.device, **p.params)
    finally:
        for q in frozen:
            q.requires_grad_(False)
    run_dir.write_json("pretrain.json", {"method": p.method, "seconds": time.perf_counter() - t0,
                                         "layers": layers})
