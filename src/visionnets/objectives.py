"""Objectives turn a batch into a loss (and the counts behind the metrics).

The Trainer runs one loop for every kind of learning; what changes between supervised,
semi-supervised, multi-task or multi-modal learning is the objective, found by name in
``OBJECTIVES``. An objective is called as ``objective(model, x, y)`` and returns
``(loss, outputs)``, where ``outputs`` are the model's predictions used for the error rate.

    >>> import torch
    >>> obj = build_objective({"name": "supervised", "loss": "hinge"})
    >>> loss, scores = obj(torch.nn.Linear(3, 2), torch.ones(4, 3), torch.tensor([0, 1, 0, 1]))
    >>> scores.shape
    torch.Size([4, 2])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from visionnets.errors import ConfigError
from visionnets.nn.losses import LOSSES
from visionnets.registry import Registry

OBJECTIVES = Registry("objective")


@OBJECTIVES.register("supervised")
class Supervised:
    """Loss between the model's output and the labels: L = loss(model(x), y)."""

    def __init__(self, loss: str = "cross_entropy"):
        if loss not in LOSSES:
            raise ConfigError(f"objective.loss: unknown loss {loss!r}; expected one of: {', '.join(LOSSES.names())}")
        self.loss_name = loss
        self.loss = LOSSES.get(loss)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        out = model(x)
        return self.loss(out, y), out


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
