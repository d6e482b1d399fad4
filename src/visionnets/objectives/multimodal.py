"""Multi-modal learning: several inputs fused into one code, trained with modalities dropped.

The tutorial's extension (audio and video; Ngiam et al., ICML 2011, the bimodal deep
auto-encoder): the model (``bimodal``, :mod:`visionnets.models.bimodal`) encodes each modality,
fuses them into one shared code, rebuilds every modality from it and classifies it. In training
each example's modalities are dropped at random (each with probability ``drop``, one always
kept), and the loss is

    L = loss(scores, y) + recon_weight * sum_m mean((x^_m - x_m)^2)

over every modality, the dropped ones too: rebuilding a modality from the others is what
makes the code shared (cross-modal reconstruction). Metrics: ``error`` (all modalities given),
``error_only_<m>`` (modality m alone: what the model knows when the others are missing),
``loss_recon``. ``modalities`` restricts the inputs used (default: every one of the dataset).

    >>> import torch
    >>> from visionnets.data.base import Dataset, Split
    >>> from visionnets.data.batch import Batch
    >>> from visionnets.models.bimodal import bimodal
    >>> shapes = {"x": (1, 4, 4), "audio": (1, 2, 5)}
    >>> s = Split(torch.rand(6, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2]), {"audio": torch.rand(6, 1, 2, 5)})
    >>> ds = Dataset("toy", s, None, s, (1, 4, 4), 3, modalities=shapes)
    >>> obj = build_objective({"name": "multi_modal"}, ds)
    >>> out = obj(bimodal((1, 4, 4), 3, modalities=shapes, hidden=(8,), code=6).eval(), Batch(s.fields()))
    >>> sorted(out.metrics)
    ['error', 'error_only_audio', 'error_only_x', 'loss_recon']
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from visionnets.data.batch import Batch
from visionnets.errors import ConfigError, did_you_mean
from visionnets.objectives.core import OBJECTIVES, Output, build_objective, get_loss, labeled_loss  # noqa: F401


def drop_mask(batch_size: int, modalities: int, drop: float, device) -> torch.Tensor:
    """(B, M) 0/1: each modality kept with probability 1 - ``drop``; an example with none kept keeps one at random."""
    keep = (torch.rand(batch_size, modalities, device=device) >= drop).float()
    empty = keep.sum(1) == 0
    if bool(empty.any()):
        pick = torch.randint(modalities, (int(empty.sum()),), device=device)
        keep[empty.nonzero()[:, 0], pick] = 1.0
    return keep


@OBJECTIVES.register("multi_modal")
class MultiModal:
    """``loss``: the classifier's; ``drop``: each modality's drop probability in training;
    ``recon_weight``: the reconstruction term's weight; ``modalities``: the inputs used."""

    def __init__(self, loss: str = "cross_entropy", drop: Annotated[float, Field(ge=0, lt=1)] = 0.3,
                 recon_weight: Annotated[float, Field(ge=0)] = 1.0, modalities: list[str] | None = None):
        self.loss = get_loss(loss, "objective.loss")
        self.drop, self.recon_weight, self.wanted = drop, recon_weight, modalities
        self.names: list[str] = []

    def bind(self, dataset) -> None:
        if not dataset.modalities or len(dataset.modalities) < 2:
            raise ConfigError(f"objective.name: multi_modal needs a dataset with several inputs; "
                              f"{dataset.name!r} has one")
        for m in self.wanted or ():
            if m not in dataset.modalities:
                raise ConfigError(f"objective.options.modalities: {m!r} is not an input of dataset "
                                  f"{dataset.name!r}{did_you_mean(m, dataset.modalities)}; it has: "
                                  f"{', '.join(dataset.modalities)}")
        self.names = list(self.wanted or dataset.modalities)

    def __call__(self, model: nn.Module, batch: Batch) -> Output:
        if not self.names:
            raise ConfigError("multi_modal: the objective was not bound to a dataset (build_objective(spec, dataset))")
        y = batch["y"]
        inputs = {m: batch[m] for m in self.names}
        n = len(y)
        present = drop_mask(n, len(self.names), self.drop, y.device) if model.training else None
        all_names = getattr(model, "module", model).names
        if present is not None:     # the model's own order of modalities; those not used are absent
            full = y.new_zeros((n, len(all_names)), dtype=present.dtype)
            for i, m in enumerate(self.names):
                full[:, all_names.index(m)] = present[:, i]
            present = full
        scores, recon, _ = model(present=present, reconstruct=True, **inputs)
        sup, wrong, labeled = labeled_loss(self.loss, scores, y)
        rec = sum((recon[m] - inputs[m]).pow(2).flatten(1).mean(1).mean() for m in self.names)
        metrics = {"error": (wrong, labeled), "loss_recon": (rec.detach() * n, n)}
        if not model.training:           # what each modality alone tells (the others missing)
            with torch.no_grad():
                for m in self.names:
                    alone = model(**{m: inputs[m]})
                    metrics[f"error_only_{m}"] = labeled_loss(self.loss, alone, y)[1:]
        return Output(sup + self.recon_weight * rec, {"scores": scores, **{f"recon_{m}": recon[m] for m in recon}},
                      metrics)
