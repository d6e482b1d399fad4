"""Supervised learning: the loss between the model's output and the labels.

    >>> import torch
    >>> from visionnets.data.batch import Batch
    >>> obj = build_objective({"name": "supervised", "loss": "hinge"})
    >>> out = obj(torch.nn.Linear(3, 2), Batch(x=torch.ones(4, 3), y=torch.tensor([0, 1, 0, 1])))
    >>> out.outputs["scores"].shape, sorted(out.metrics)
    (torch.Size([4, 2]), ['error'])
"""

from __future__ import annotations

from torch import nn

from visionnets.data.batch import Batch
from visionnets.objectives.core import OBJECTIVES, Output, build_objective, get_loss, labeled_loss  # noqa: F401


@OBJECTIVES.register("supervised")
class Supervised:
    """Loss between the model's output and the labels: L = loss(model(x), y).

    Integer labels make it a classifier: it also counts the misclassified examples (the
    ``error`` metric); examples labeled ``UNLABELED`` (-1) are left out of both. Float targets
    (regression) have the loss alone.
    """

    def __init__(self, loss: str = "cross_entropy"):
        self.loss_name = loss
        self.loss = get_loss(loss, "objective.loss")

    def __call__(self, model: nn.Module, batch: Batch) -> Output:
        x, y = batch["x"], batch["y"]
        scores = model(x)
        if y.is_floating_point():                       # regression
            return Output(self.loss(scores, y), {"scores": scores}, {})
        loss, wrong, n = labeled_loss(self.loss, scores, y)
        return Output(loss, {"scores": scores}, {"error": (wrong, n)})
