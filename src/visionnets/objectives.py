"""Objectives turn a batch into a loss, named outputs and named metrics.

The Trainer runs one loop for every kind of learning; what changes between supervised,
semi-supervised, multi-task or multi-modal learning is the objective, found by name in
``OBJECTIVES``. An objective is called as ``objective(model, batch)`` with a
:class:`~visionnets.data.batch.Batch` and returns an :class:`Output`:

- ``loss``: the scalar to minimize (a mean over the batch);
- ``outputs``: named predictions (``scores`` for a classifier);
- ``metrics``: ``{name: (sum, count)}``; the trainer sums both over an epoch (and over DDP
  workers or Downpour replicas) and records ``sum / count`` as ``train_<name>``,
  ``val_<name>`` and ``test_<name>`` in ``metrics.jsonl`` (``error`` for a classifier).

    >>> import torch
    >>> from visionnets.data.batch import Batch
    >>> obj = build_objective({"name": "supervised", "loss": "hinge"})
    >>> out = obj(torch.nn.Linear(3, 2), Batch(x=torch.ones(4, 3), y=torch.tensor([0, 1, 0, 1])))
    >>> out.outputs["scores"].shape, sorted(out.metrics)
    (torch.Size([4, 2]), ['error'])
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from visionnets.data.batch import Batch
from visionnets.errors import ConfigError
from visionnets.nn.losses import LOSSES
from visionnets.registry import Registry

OBJECTIVES = Registry("objective")


class Output(NamedTuple):
    """What an objective returns for one batch."""

    loss: torch.Tensor
    outputs: dict[str, torch.Tensor]
    metrics: dict[str, tuple[torch.Tensor | float, torch.Tensor | int]]


@OBJECTIVES.register("supervised")
class Supervised:
    """Loss between the model's output and the labels: L = loss(model(x), y).

    Integer labels make it a classifier: it also counts the misclassified examples (the
    ``error`` metric). Float targets (regression) have the loss alone.
    """

    def __init__(self, loss: str = "cross_entropy"):
        if loss not in LOSSES:
            raise ConfigError(f"objective.loss: unknown loss {loss!r}; expected one of: {', '.join(LOSSES.names())}")
        self.loss_name = loss
        self.loss = LOSSES.get(loss)

    def __call__(self, model: nn.Module, batch: Batch) -> Output:
        x, y = batch["x"], batch["y"]
        scores = model(x)
        metrics = {}
        if not y.is_floating_point():
            metrics["error"] = (count_errors(scores.detach(), y), len(y))
        return Output(self.loss(scores, y), {"scores": scores}, metrics)


def build_objective(spec: dict[str, Any]):
    """Build the objective named ``spec["name"]``; ``loss`` and ``options`` become arguments."""
    spec = dict(spec)
    name = spec.pop("name", "supervised")
    kwargs = dict(spec.pop("options", {}) or {})
    kwargs.update(spec)
    return OBJECTIVES.build(name, kwargs, where="objective")


def count_errors(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Number of misclassified examples (argmax of the scores against class ids), as a tensor."""
    if out.shape[1] == 1:  # one score: binary decision at 0
        pred = (out[:, 0] > 0).long()
    else:
        pred = out.argmax(1)
    return (pred != y).sum()
