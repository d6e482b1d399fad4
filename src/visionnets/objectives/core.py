"""The objective contract, the registry, and what every objective shares.

An objective is called as ``objective(model, batch)`` with a :class:`~visionnets.data.batch.Batch`
and returns an :class:`Output`:

- ``loss``: the scalar to minimize (a mean over the batch);
- ``outputs``: named predictions (``scores`` for a classifier);
- ``metrics``: ``{name: (sum, count)}``; the trainer sums both over an epoch (and over DDP
  workers or Downpour replicas) and records ``sum / count`` as ``train_<name>``,
  ``val_<name>`` and ``test_<name>`` in ``metrics.jsonl`` (``error`` for a classifier).

An objective may also have:

- ``bind(dataset)``: check itself against the dataset (tasks, modalities) before anything runs;
  a mistake is a ConfigError naming the recipe key (``build_objective(spec, dataset)`` calls it);
- ``attach(model, dataset) -> nn.Module``: the recipe's model with the parts the objective
  trains beside it (decoders); the run's checkpoints hold them;
- ``at_step(step)``: told each training step's number first (for weight schedules; the same
  number in every executor and after a resume).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from visionnets.errors import ConfigError, did_you_mean
from visionnets.nn.losses import LOSSES
from visionnets.registry import Registry

OBJECTIVES = Registry("objective")


class Output(NamedTuple):
    """What an objective returns for one batch."""

    loss: torch.Tensor
    outputs: dict[str, torch.Tensor]
    metrics: dict[str, tuple[torch.Tensor | float, torch.Tensor | int]]


def build_objective(spec: dict[str, Any], dataset=None):
    """Build the objective named ``spec["name"]`` (``loss`` and ``options`` become arguments)
    and, given the dataset, check it against it (``bind``)."""
    spec = dict(spec)
    name = spec.pop("name", "supervised")
    kwargs = dict(spec.pop("options", {}) or {})
    kwargs.update(spec)
    objective = OBJECTIVES.build(name, kwargs, where="objective")
    if dataset is not None and hasattr(objective, "bind"):
        objective.bind(dataset)
    return objective


def get_loss(name: str, where: str):
    """The loss registered as ``name``; an unknown one is a ConfigError naming ``where``."""
    if name not in LOSSES:
        raise ConfigError(f"{where}: unknown loss {name!r}{did_you_mean(name, LOSSES.names())}; "
                          f"expected one of: {', '.join(LOSSES.names())}")
    return LOSSES.get(name)


def labeled_loss(loss, scores: torch.Tensor, y: torch.Tensor):
    """``(loss, errors, n)`` over the examples whose label is known (``y >= 0``; ``UNLABELED`` is
    skipped): the mean loss (0, with a graph, when none is labeled), the misclassified count and
    the labeled count."""
    labeled = y >= 0
    if bool(labeled.all()):
        return loss(scores, y), count_errors(scores.detach(), y), len(y)
    n = int(labeled.sum())
    if n == 0:
        return scores.sum() * 0.0, torch.zeros((), dtype=torch.long, device=y.device), 0
    s, t = scores[labeled], y[labeled]
    return loss(s, t), count_errors(s.detach(), t), n


def count_errors(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Number of misclassified examples (argmax of the scores against class ids), as a tensor."""
    if out.shape[1] == 1:  # one score: binary decision at 0
        pred = (out[:, 0] > 0).long()
    else:
        pred = out.argmax(1)
    return (pred != y).sum()
