"""Convolutional nets as a list of stages, then a fully connected classifier.

One stage (the tutorial's "one stage (zoom)"; Jarrett et al. 2009; Le et al. 2012) is::

    filter (conv | local | tiled) -> rectify (relu | abs | tanh | none) -> pool (max | avg | l2 | none)
           -> norm (lcn | batch | none) -> dropout

``conv`` shares one filter bank across locations, ``local`` (locally connected) has its own
filters at every output location, ``tiled`` shares weights between units ``tile`` steps apart.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Annotated, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from visionnets.errors import ConfigError
from visionnets.models.catalog import MODELS
from visionnets.models.init import init_layer
from visionnets.models.mlp import fully_connected
from visionnets.nn.activations import make_activation
from visionnets.nn.dense import Dropout

PosInt = Annotated[int, Field(ge=1)]


class Stage(BaseModel):
    """One stage of a convnet, as written in a recipe."""

    model_config = ConfigDict(extra="forbid")
    layer: Literal["conv", "local", "tiled"] = "conv"
    channels: PosInt
    kernel: PosInt = 5
    stride: PosInt = 1
    padding: Annotated[int, Field(ge=0)] | Literal["same"] = 0
    tile: PosInt = 2
    rectify: Literal["relu", "abs", "tanh", "sigmoid", "none"] = "relu"
    pool: Literal["max", "avg", "l2", "none"] = "max"
    pool_size: PosInt = 2
    pool_stride: PosInt | None = None
    norm: Literal["lcn", "batch", "none"] = "none"
    norm_kernel: PosInt = 9
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0


def _filter(st: Stage, in_ch: int, hw: tuple[int, int]) -> nn.Module:
    pad = st.kernel // 2 if st.padding == "same" else st.padding
    if st.layer == "conv":
        return nn.Conv2d(in_ch, st.channels, st.kernel, st.stride, pad)
    from visionnets.nn import LocallyConnected2d, TiledConv2d

    if st.layer == "local":
        return LocallyConnected2d(in_ch, st.channels, st.kernel, st.stride, pad, input_size=hw)
    return TiledConv2d(in_ch, st.channels, st.kernel, st.tile, st.stride, pad, input_size=hw)


def _pool(st: Stage) -> nn.Module | None:
    stride = st.pool_stride or st.pool_size
    if st.pool == "max":
        return nn.MaxPool2d(st.pool_size, stride)
    if st.pool == "avg":
        return nn.AvgPool2d(st.pool_size, stride)
    if st.pool == "l2":
        from visionnets.nn import L2Pool2d

        return L2Pool2d(st.pool_size, stride)
    return None


def _norm(st: Stage) -> nn.Module | None:
    if st.norm == "lcn":
        from visionnets.nn import LocalContrastNorm2d

        return LocalContrastNorm2d(st.channels, kernel_size=st.norm_kernel)
    if st.norm == "batch":
        return nn.BatchNorm2d(st.channels)
    return None


@MODELS.register("convnet")
def convnet(input_shape: tuple[int, ...], num_outputs: int, stages: list[Stage],
            hidden: tuple[PosInt, ...] = (), activation: Literal["relu", "tanh", "sigmoid"] = "relu",
            dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0) -> nn.Module:
    """Stages (filter, rectify, pool, norm) then ``hidden`` fully connected layers and the output.

    Modules are named ``stage1.filter``, ``stage1.rectify``, ``stage1.pool``, ``stage1.norm``, ...,
    ``classifier.fc1``, ..., ``classifier.out``.

    >>> net = convnet((1, 8, 8), 10, stages=[Stage(channels=8, kernel=3, padding="same")])
    >>> net(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """
    if len(input_shape) != 3:
        raise ConfigError(f"model: convnet needs image inputs (C, H, W), got input shape {input_shape}")
    if not stages:
        raise ConfigError("model.stages: expected at least one stage")
    stages = [s if isinstance(s, Stage) else Stage(**s) for s in stages]
    x = torch.zeros(1, *input_shape)
    body = nn.Sequential()
    for i, st in enumerate(stages, 1):
        in_ch, hw = x.shape[1], (x.shape[2], x.shape[3])
        if min(hw) < st.kernel and st.padding == 0:
            raise ConfigError(f"model.stages.{i - 1}.kernel: {st.kernel} is larger than the "
                              f"{hw[0]}x{hw[1]} input of stage {i}")
        parts: OrderedDict[str, nn.Module] = OrderedDict()
        parts["filter"] = init_layer(_filter(st, in_ch, hw), st.rectify)
        for name, mod in (("rectify", None if st.rectify == "none" else make_activation(st.rectify)), ("pool", _pool(st)), ("norm", _norm(st))):
            if mod is not None:
                parts[name] = mod
        if st.dropout > 0:
            parts["dropout"] = Dropout(st.dropout)
        stage = nn.Sequential(parts)
        with torch.no_grad():
            x = stage.eval()(x)
        if x.shape[2] < 1 or x.shape[3] < 1:
            raise ConfigError(f"model.stages.{i - 1}: the feature map vanished (shape {tuple(x.shape[1:])})")
        body.add_module(f"stage{i}", stage.train())
    head = fully_connected(x[0].numel(), num_outputs, hidden, activation, dropout)
    body.add_module("classifier", nn.Sequential(head))
    return body
