"""Multi-layer perceptron: h_{j+1} = sigma(W_{j+1}^T h_j + b_{j+1}), then a linear output."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Annotated, Literal

from pydantic import Field
from torch import nn

from visionnets.models.catalog import MODELS
from visionnets.models.init import init_layer
from visionnets.nn.activations import make_activation
from visionnets.nn.dense import Dropout, Linear

Activation = Literal["relu", "tanh", "sigmoid"]


@MODELS.register("mlp")
def mlp(input_shape: tuple[int, ...], num_outputs: int,
        hidden: tuple[Annotated[int, Field(ge=1)], ...] = (800,),
        activation: Activation = "relu",
        dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0) -> nn.Module:
    """A stack of fully connected layers of widths ``hidden`` with ``activation`` between them.

    Layers are named ``fc1, act1, [drop1,] fc2, ..., out`` so they can be addressed
    (``model.fc1``) by visualization and layer-wise pretraining.

    >>> mlp((1,), 1, hidden=[1000, 1000, 1000], activation="tanh")[-1]   # the tutorial's cosine toy
    Linear(in_features=1000, out_features=1, bias=True)
    """
    return nn.Sequential(fully_connected(math.prod(input_shape), num_outputs, hidden, activation, dropout))


def fully_connected(width: int, num_outputs: int, hidden=(), activation: str = "relu",
                    dropout: float = 0.0) -> OrderedDict[str, nn.Module]:
    """``flatten, fc1, act1, [drop1,] ..., out``: the layers of an MLP (and of a convnet's classifier)."""
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    for i, h in enumerate(hidden, 1):
        layers[f"fc{i}"] = init_layer(Linear(width, h), activation)
        layers[f"act{i}"] = make_activation(activation)
        if dropout > 0:
            layers[f"drop{i}"] = Dropout(dropout)
        width = h
    layers["out"] = init_layer(Linear(width, num_outputs), "linear")
    return layers
