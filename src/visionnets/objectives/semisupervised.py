"""Semi-supervised learning: the supervised loss on the labeled examples plus a weighted
unsupervised loss on every example (the tutorial: Loss = supervised_error + unsupervised_error,
with "lots and lots of unlabeled data").

    L = loss(scores[labeled], y[labeled]) + lambda(step) * reconstruction cost(all examples)

The unsupervised cost is one of ``reconstruction``, ``denoising``, ``ladder`` (per-layer
denoising), ``consistency`` (the Pi-model: two perturbed views must agree),
``mean_teacher`` (the second view through the weights' moving average, ``ema_decay``) or
``pseudo_label`` (FixMatch: confident predictions on the batch become hard targets for a
strongly perturbed view, ``threshold`` and ``cutout``); see
:mod:`visionnets.models.semisup`, whose decoders the objective attaches to the recipe's model. Unlabeled examples carry the label ``UNLABELED`` (-1): a dataset gets them
from ``data.labels_per_class``; a batch may hold labeled and unlabeled examples in any
proportion, none labeled included. ``lambda`` ramps up from 0 to ``weight`` over the first
``rampup_steps`` steps (``exp(-5 (1 - t)^2)``, Laine & Aila 2017; 0: ``weight`` from the start).
The metrics: ``error`` (labeled examples), ``loss_supervised``, ``loss_unsupervised``.

    >>> import torch
    >>> from visionnets.data.base import Dataset, Split
    >>> from visionnets.data.batch import Batch
    >>> x, y = torch.rand(6, 4), torch.tensor([0, 1, -1, -1, -1, -1])
    >>> ds = Dataset("toy", Split(x, y), None, Split(x, y), (4,), 2)
    >>> obj = build_objective({"name": "semi_supervised", "options": {"unsupervised": "reconstruction"}}, ds)
    >>> net = obj.attach(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)), ds)
    >>> out = obj(net, Batch(x=x, y=y))
    >>> sorted(out.metrics), out.metrics["error"][1]
    (['error', 'loss_supervised', 'loss_unsupervised'], 2)
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field
from torch import nn

from visionnets.data.batch import Batch
from visionnets.data.specs import build_augment
from visionnets.errors import ConfigError
from visionnets.models.semisup import SemiSupervisedNet
from visionnets.objectives.core import OBJECTIVES, Output, build_objective, get_loss, labeled_loss  # noqa: F401


@OBJECTIVES.register("semi_supervised")
class SemiSupervised:
    """``loss``: the supervised loss; ``unsupervised``: reconstruction, denoising, ladder, consistency,
    mean_teacher or pseudo_label; ``ema_decay``: the mean teacher's average (per step);
    ``threshold``: the pseudo-label's confidence; ``cutout``: its strong view's square (pixels, 0: none);
    ``strong_augment``: augmentations (as in ``data.augment``, e.g. ``color_jitter``) that start
    the pseudo-label's strong view;
    ``weight`` (>= 0): lambda after the ramp-up; ``rampup_steps``; ``noise``: the corruption's
    std; ``decoder_width``: the reconstruction decoder's hidden units; ``layer_weights``: the
    ladder's per-level weights (input first); ``shift``: the consistency views' translation."""

    def __init__(self, loss: str = "cross_entropy",
                 unsupervised: Literal["reconstruction", "denoising", "ladder", "consistency",
                                       "mean_teacher", "pseudo_label"] = "denoising",
                 weight: Annotated[float, Field(ge=0)] = 1.0, rampup_steps: Annotated[int, Field(ge=0)] = 0,
                 noise: Annotated[float, Field(ge=0)] = 0.3, decoder_width: Annotated[int, Field(ge=1)] = 512,
                 layer_weights: list[Annotated[float, Field(ge=0)]] | None = None,
                 shift: Annotated[int, Field(ge=0)] = 2,
                 ema_decay: Annotated[float, Field(ge=0, lt=1)] = 0.99,
                 threshold: Annotated[float, Field(ge=0, le=1)] = 0.95,
                 cutout: Annotated[int, Field(ge=0)] = 0,
                 strong_augment: list | None = None):
        self.loss = get_loss(loss, "objective.loss")
        self.unsupervised, self.weight, self.rampup = unsupervised, weight, rampup_steps
        self.noise, self.decoder_width, self.layer_weights, self.shift = noise, decoder_width, layer_weights, shift
        self.ema_decay, self.threshold, self.cutout = ema_decay, threshold, cutout
        if strong_augment and unsupervised != "pseudo_label":
            raise ConfigError(f"objective.options.strong_augment: only pseudo_label has a strong view, "
                              f"not {unsupervised}")
        self.strong_augment = build_augment(strong_augment or [], "objective.options.strong_augment")
        self.step = None

    def bind(self, dataset) -> None:
        if not dataset.is_classification or dataset.tasks or dataset.modalities:
            raise ConfigError(f"objective.name: semi_supervised needs one class label per example; "
                              f"dataset {dataset.name!r} has not")

    def attach(self, model: nn.Module, dataset) -> SemiSupervisedNet:
        return SemiSupervisedNet(model, dataset.input_shape, self.unsupervised, self.noise, self.decoder_width,
                                 self.layer_weights, self.shift, self.ema_decay, self.threshold, self.cutout,
                                 self.strong_augment)

    def at_step(self, step: int) -> None:
        self.step = step

    def current_weight(self) -> float:
        """lambda at the current step (the full weight outside training)."""
        if not self.rampup or self.step is None or self.step >= self.rampup:
            return self.weight
        t = self.step / self.rampup
        return self.weight * math.exp(-5.0 * (1.0 - t) ** 2)

    def __call__(self, model: nn.Module, batch: Batch) -> Output:
        x, y = batch["x"], batch["y"]
        scores, cost = model(x, unsupervised=True)
        sup, wrong, n = labeled_loss(self.loss, scores, y)
        weight = self.current_weight() if model.training else self.weight
        return Output(sup + weight * cost, {"scores": scores},
                      {"error": (wrong, n), "loss_supervised": (sup.detach() * n, n),
                       "loss_unsupervised": (cost.detach() * len(x), len(x))})
