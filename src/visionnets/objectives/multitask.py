"""Multi-task learning: one shared trunk, a head per task, the tasks' losses weighted and summed.

The tutorial: it is "easy to add many error terms to the loss function", and "joint learning of
related tasks yields better representations". The model is the recipe's model with one output
per class of every task, side by side in the dataset's task order: each task's head is its
slice of the last layer, on the shared representation below it. For a batch,

    L = sum_t w_t loss_t(scores[:, slice_t], y[:, t])     (examples lacking task t's label skipped)

and the metrics are each task's error and loss (``error_<task>``, ``loss_<task>``) and the error
over all of them (``error``), recorded for every split in ``metrics.jsonl``, the report and
``eval --json``.

    >>> import torch
    >>> from visionnets.data.base import Dataset, Split
    >>> from visionnets.data.batch import Batch
    >>> y = torch.tensor([[0, 1], [1, -1]])                         # -1: no label for that task
    >>> ds = Dataset("toy", Split(torch.zeros(2, 3), y), None, Split(torch.zeros(2, 3), y), (3,), 2,
    ...              tasks={"a": 2, "b": 3})
    >>> mt = build_objective({"name": "multi_task", "options": {"tasks": {"a": {}, "b": {"weight": 0.5}}}}, ds)
    >>> out = mt(torch.nn.Linear(3, 5), Batch(x=torch.ones(2, 3), y=y))
    >>> sorted(out.metrics)
    ['error', 'error_a', 'error_b', 'loss_a', 'loss_b']
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from visionnets.data.batch import Batch
from visionnets.errors import ConfigError, did_you_mean
from visionnets.objectives.core import OBJECTIVES, Output, build_objective, get_loss, labeled_loss  # noqa: F401


class TaskSpec(BaseModel):
    """One task of a ``multi_task`` objective: its weight in the sum and its loss (default: the objective's)."""

    model_config = ConfigDict(extra="forbid")
    weight: Annotated[float, Field(ge=0)] = 1.0
    loss: str | None = None


@OBJECTIVES.register("multi_task")
class MultiTask:
    """``tasks``: ``{name: {weight, loss}}`` (default: every task of the dataset, weight 1);
    ``loss``: the tasks' loss unless a task names its own. A task left out is not trained."""

    def __init__(self, tasks: dict[str, TaskSpec] | None = None, loss: str = "cross_entropy"):
        self.specs = None if tasks is None else {k: TaskSpec.model_validate(v) for k, v in tasks.items()}
        self.default_loss = loss
        get_loss(loss, "objective.loss")
        for name, spec in (self.specs or {}).items():
            if spec.loss is not None:
                get_loss(spec.loss, f"objective.options.tasks.{name}.loss")
        self.heads: list[tuple[str, int, slice, float, object]] = []

    def bind(self, dataset) -> None:
        """Find each task's column of ``y`` and slice of the outputs in the dataset's task order."""
        if not dataset.tasks:
            raise ConfigError(f"objective.name: multi_task needs a dataset with several tasks; "
                              f"{dataset.name!r} has one label per example")
        specs = self.specs if self.specs is not None else {name: TaskSpec() for name in dataset.tasks}
        if not specs:
            raise ConfigError("objective.options.tasks: no task to train")
        for name in specs:
            if name not in dataset.tasks:
                raise ConfigError(f"objective.options.tasks.{name}: unknown task{did_you_mean(name, dataset.tasks)}; "
                                  f"dataset {dataset.name!r} has the tasks: {', '.join(dataset.tasks)}")
        self.heads, start = [], 0
        for column, (name, classes) in enumerate(dataset.tasks.items()):
            if name in specs:
                spec = specs[name]
                self.heads.append((name, column, slice(start, start + classes), spec.weight,
                                   get_loss(spec.loss or self.default_loss, f"objective.options.tasks.{name}.loss")))
            start += classes

    def __call__(self, model: nn.Module, batch: Batch) -> Output:
        if not self.heads:
            raise ConfigError("multi_task: the objective was not bound to a dataset (build_objective(spec, dataset))")
        scores, y = model(batch["x"]), batch["y"]
        total, metrics, outputs, wrong_all, n_all = 0.0, {}, {}, 0, 0
        for name, column, cut, weight, loss in self.heads:
            s = scores[:, cut]
            loss_t, wrong, n = labeled_loss(loss, s, y[:, column])
            total = total + weight * loss_t
            outputs[f"scores_{name}"] = s
            metrics[f"error_{name}"] = (wrong, n)
            metrics[f"loss_{name}"] = (loss_t.detach() * n, n)
            wrong_all, n_all = wrong_all + wrong, n_all + n
        metrics["error"] = (wrong_all, n_all)
        return Output(total, outputs, metrics)
