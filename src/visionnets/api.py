"""The Python API: everything the command line does, in a few lines.

    >>> from visionnets import api
    >>> result = api.train("digits_convnet", ["train.epochs=1"], out="/tmp/vn-doc-run", progress=False)
    >>> sorted(result.final)[:3]
    ['best_epoch', 'epoch', 'epochs_run']
    >>> run = api.load_run(result.run_dir)
    >>> api.evaluate(run, "test")["n"]
    360

``train`` runs a recipe with any executor: ``local`` (one process, the default),
``downpour`` (asynchronous SGD against a sharded parameter server on Ray) or ``ddp``
(synchronous data parallel with torch.distributed); see :mod:`visionnets.distributed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import visionnets.distributed  # noqa: F401  (registers the ddp and downpour executors)
from visionnets.data.base import Dataset
from visionnets.deploy import export_model, load_model
from visionnets.errors import ConfigError
from visionnets.device import resolve_device
from visionnets.recipes import Recipe
from visionnets.train.checkpoint import load_checkpoint
from visionnets.train.rundir import RunDir
from visionnets.train.setup import EXECUTORS, build_data, build_model_for, objective_for, prepare
from visionnets.train.trainer import evaluate_model

__all__ = ["Run", "RunResult", "activations", "evaluate", "export_model", "load_model", "load_run", "predict",
           "train"]


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


def train(recipe: str | Path | dict | Recipe | None = None, overrides: list[str] | tuple[str, ...] = (),
          data_dir: str | Path | None = None, out: str | Path | None = None,
          resume: str | Path | None = None, progress: bool = True, figures: bool = True,
          callbacks: tuple = (), executor: str | None = None, extend: int | None = None,
          **options: Any) -> RunResult:
    """Train from a recipe (path, bundled name, dict or Recipe), or resume a run directory.

    With ``resume=RUN_DIR`` training continues from the run's last checkpoint, with its own
    recipe, executor and options, exactly as planned (``overrides`` may change only what does
    not change the computation, e.g. ``threads``); ``extend=EPOCHS`` trains it on to that many
    epochs in all (the schedule rule: :func:`visionnets.train.setup.resumed_recipe`). ``executor``: ``local`` (default), ``ddp`` or
    ``downpour``; ``options`` are that executor's (see :mod:`visionnets.distributed`).
    ``callbacks`` are called as ``cb(trainer_or_driver, record)`` after each epoch's checkpoint
    (DDP runs them on rank 0, so they must be picklable there).
    """
    setup = prepare(recipe, overrides, data_dir, out, resume, executor, options, extend)
    callbacks = tuple(callbacks)
    if setup.recipe.logging == "tensorboard":
        from visionnets.viz.tensorboard import TensorBoardCallback

        callbacks += (TensorBoardCallback(setup.run_dir.path, input_shape=setup.dataset.input_shape),)
    fit = EXECUTORS.get(setup.executor)
    try:
        final, history = fit(setup, progress=progress, callbacks=callbacks, **setup.options)
    except BaseException:
        if not setup.resume:        # a new run that failed before its first checkpoint leaves nothing behind
            setup.run_dir.remove_if_unstarted()
        raise
    if figures:
        from visionnets.viz.report import finish_run

        finish_run(setup.run_dir.path, setup.model, setup.dataset, history, setup.recipe.to_dict())
    return RunResult(setup.run_dir.path, final, setup.model, setup.dataset, setup.recipe, history)


def load_run(run_dir: str | Path, data_dir: str | Path | None = None, which: str = "best") -> Run:
    """Load a run directory: its recipe, data, and the ``best`` (or ``last``) weights, on CPU.

    The data come from ``data_dir`` when given, else from the root the run was trained on.
    """
    rd = RunDir.open(run_dir)
    weights = rd.weights(which)
    rec = rd.recipe()
    dataset = build_data(rec, rd.data_root(data_dir))
    model = build_model_for(rec, dataset)
    load_checkpoint(weights, model)
    model.eval()
    return Run(rd.path, rec.to_dict(), model, dataset, rd.read_metrics(), objective_for(rec, dataset))


def evaluate(run: Run, split: str = "test", device: str = "auto") -> dict[str, Any]:
    """Loss and error of a loaded run on ``split``: {split, n, loss, error, accuracy}."""
    dev = resolve_device(device)
    t = run.recipe["train"]
    result = evaluate_model(run.model.to(dev), run.objective, run.dataset.split(split), t["eval_batch_size"], dev,
                            t.get("precision", "fp32"), t.get("channels_last", False))
    return {"split": split, **result}


@torch.no_grad()
def predict(run_dir: str | Path, x: torch.Tensor, which: str = "best", batch_size: int = 512) -> dict[str, Any]:
    """The run's predictions for inputs ``x`` (N, *input_shape), prepared as its training data were
    (the fitted transforms applied here): ``{"scores", "labels", "probabilities", "class_names"}``
    for a classifier (a multi-task model: per task), ``{"scores"}`` for a regression."""
    model, dataset, transform = load_model(run_dir, which)
    if dataset.modalities:
        raise ConfigError(f"{run_dir}: a model of several inputs ({', '.join(dataset.modalities)}); predict takes "
                          f"one input")
    if tuple(x.shape[1:]) != tuple(dataset.input_shape):
        raise ConfigError(f"inputs of shape {tuple(x.shape[1:])}; the run's model takes {tuple(dataset.input_shape)}")
    if transform is not None:
        x = transform(x)
    scores = torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    if not dataset.is_classification:
        return {"scores": scores}
    heads = {name: n for name, n in (dataset.tasks or {"": dataset.num_outputs}).items()}
    out: dict[str, Any] = {}
    start = 0
    for name, n in heads.items():
        s = scores[:, start:start + n]
        start += n
        probs = s.softmax(1) if s.shape[1] > 1 else torch.cat([1 - s.sigmoid(), s.sigmoid()], 1)
        names = dataset.class_names if not dataset.tasks else [str(i) for i in range(probs.shape[1])]
        out[name] = {"scores": s, "probabilities": probs, "labels": probs.argmax(1), "class_names": names}
    return out[""] if "" in out else out


@torch.no_grad()
def activations(run: Run, x: torch.Tensor, layer: str | None = None, batch_size: int = 512) -> torch.Tensor:
    """The activations (N, units) of ``layer`` (a name of ``run.model.named_modules()``; default: the
    top, the model's last layer) for inputs ``x`` prepared as the run's data (e.g. a split's ``x``),
    flattened per example, on CPU: the features a trained net computes, for analysis elsewhere."""
    from visionnets.viz.top import layer_output

    model = run.model.eval()
    if layer is None:
        layer = [name for name, m in model.named_modules() if name and not list(m.children())][-1]
    device = next(model.parameters()).device
    return torch.cat([layer_output(model, layer, x[i:i + batch_size].to(device)).flatten(1).cpu()
                      for i in range(0, len(x), batch_size)])
