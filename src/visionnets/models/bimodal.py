"""A bimodal (multi-modal) deep auto-encoder with a classifier on its shared code (Ngiam et al., ICML 2011).

Each modality (a named input, e.g. ``x`` and ``audio``) has its own fully connected encoder; the
encoders' outputs meet in one shared layer, the *code*, from which a decoder per modality
rebuilds every modality and a linear classifier predicts the class:

    h_m = f(E_m x_m) * present_m          code = f(W [h_1, ..., h_M] + b)
    x^_m = D_m(code)                      scores = C code

A modality that is absent (``None``, or ``present_m = 0`` for an example) contributes nothing to
the code: the model classifies and reconstructs from any subset of its inputs, and
reconstructing a missing modality from the others is cross-modal reconstruction. The
``multi_modal`` objective trains it with modalities dropped at random.

    >>> import torch
    >>> net = bimodal((1, 4, 4), 3, modalities={"x": (1, 4, 4), "audio": (1, 2, 5)}, hidden=(8,), code=6)
    >>> net(torch.rand(2, 1, 4, 4)).shape                                   # from the image alone
    torch.Size([2, 3])
    >>> scores, recon, code = net(audio=torch.rand(2, 1, 2, 5), reconstruct=True)
    >>> recon["x"].shape, code.shape                                        # the image, from the sound
    (torch.Size([2, 1, 4, 4]), torch.Size([2, 6]))
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from visionnets.errors import ConfigError
from visionnets.models.catalog import MODELS
from visionnets.models.init import init_layer
from visionnets.nn.activations import make_activation
from visionnets.nn.dense import Linear


def _mlp(widths: list[int], activation: str, last_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        last = i == len(widths) - 2
        layers.append(init_layer(Linear(a, b), activation if not last or last_activation else "linear"))
        if not last or last_activation:
            layers.append(make_activation(activation))
    return nn.Sequential(*layers)


class BimodalNet(nn.Module):
    """Encoders and decoders per modality around one shared code, and a classifier on the code."""

    def __init__(self, modalities: dict[str, tuple[int, ...]], num_outputs: int, hidden: tuple[int, ...] = (512,),
                 code: int = 256, activation: str = "relu"):
        super().__init__()
        if len(modalities) < 2:
            raise ConfigError(f"model: bimodal needs two inputs or more, the dataset has {list(modalities)}")
        self.shapes = {name: tuple(shape) for name, shape in modalities.items()}
        self.names = list(self.shapes)
        self.encoders = nn.ModuleDict({m: _mlp([math.prod(s), *hidden], activation, True) for m, s in self.shapes.items()})
        self.shared = nn.Sequential(init_layer(Linear(len(self.names) * hidden[-1], code), activation),
                                    make_activation(activation))
        self.decoders = nn.ModuleDict({m: _mlp([code, *reversed(hidden), math.prod(s)], activation, False)
                                       for m, s in self.shapes.items()})
        self.classifier = init_layer(Linear(code, num_outputs), "linear")

    def encode(self, inputs: dict[str, torch.Tensor | None], present: torch.Tensor | None = None) -> torch.Tensor:
        """The shared code from the given modalities (``present``: (B, M) 0/1 per example and modality)."""
        given = [m for m in self.names if inputs.get(m) is not None]
        if not given:
            raise ConfigError(f"bimodal: no input given; expected any of {', '.join(self.names)}")
        ref = inputs[given[0]]
        parts = []
        for i, m in enumerate(self.names):
            x = inputs.get(m)
            if x is None:
                x = ref.new_zeros((len(ref), *self.shapes[m]))
                keep = ref.new_zeros(len(ref), 1)
            else:
                keep = ref.new_ones(len(ref), 1) if present is None else present[:, i:i + 1].to(ref.dtype)
            parts.append(self.encoders[m](x.flatten(1)) * keep)
        return self.shared(torch.cat(parts, 1))

    def forward(self, x: torch.Tensor | None = None, present: torch.Tensor | None = None, reconstruct: bool = False,
                **inputs: torch.Tensor | None):
        code = self.encode({"x": x, **inputs}, present)
        scores = self.classifier(code)
        if not reconstruct:
            return scores
        recon = {m: self.decoders[m](code).view(-1, *self.shapes[m]) for m in self.names}
        return scores, recon, code


@MODELS.register("bimodal")
def bimodal(input_shape: tuple[int, ...], num_outputs: int, modalities: dict[str, tuple[int, ...]] | None = None,
            hidden: tuple[Annotated[int, Field(ge=1)], ...] = (512,), code: Annotated[int, Field(ge=1)] = 256,
            activation: str = "relu") -> BimodalNet:
    """A bimodal deep auto-encoder with a classifier (see the module docstring); ``modalities``
    (field name -> one example's shape) comes from the dataset."""
    if modalities is None:
        raise ConfigError("model.name: bimodal needs a dataset with several inputs (e.g. avmnist)")
    return BimodalNet(modalities, num_outputs, tuple(hidden), code, activation)
