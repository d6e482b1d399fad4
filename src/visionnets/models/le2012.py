"""The network of Le et al. (ICML 2012), "Building high-level features using large scale
unsupervised learning": the tutorial's 1-billion-parameter example.

Three stages, each (tutorial, "Unsupervised Learning With 1B Parameters"):

    local filtering (locally connected: every location its own 18x18 filters, 8 per location,
    over all input maps) -> L2 pooling over 5x5 neighbourhoods (overlapping, stride 1)
    -> local contrast normalization over 5x5 neighbourhoods

At the published size (200x200 grayscale input) the three filter banks hold about 1.1 billion
parameters (183x183, 166x166 and 149x149 locations). Every size is an option, so the same
family trains at the size this machine affords; ``visionnets plan`` reports any size without
allocating it (PyTorch's meta device). With ``num_outputs > 0`` a linear classifier reads the
top stage (supervised fine-tuning); with 0 the network ends at its features.

    >>> import torch
    >>> with torch.device("meta"):
    ...     net = le2012((1, 200, 200), 0)
    >>> round(sum(p.numel() for p in net.parameters()) / 1e9, 2)
    1.12
    >>> small = le2012((1, 32, 32), 10, kernel=5, maps=4)
    >>> small(torch.rand(2, 1, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Annotated

from pydantic import Field
from torch import nn

from visionnets.errors import ConfigError, per_stage
from visionnets.models.catalog import MODELS
from visionnets.models.init import init_layer
from visionnets.nn.dense import Linear
from visionnets.nn.local import LocallyConnected2d
from visionnets.nn.normalization import LocalContrastNorm2d
from visionnets.nn.pooling import L2Pool2d

PosInt = Annotated[int, Field(ge=1)]


PerStage = PosInt | list[PosInt]


@MODELS.register("le2012")
def le2012(input_shape: tuple[int, ...], num_outputs: int, stages: PosInt = 3, kernel: PerStage = 18,
           maps: PerStage = 8, stride: PosInt = 1, pool: PerStage = 5, lcn: PerStage = 5,
           bias: bool | list[bool] = False) -> nn.Sequential:
    """``stages`` x (LocallyConnected2d(kernel, ``maps`` per location, stride) -> L2Pool2d(pool,
    stride 1, same size) -> LocalContrastNorm2d(lcn)), then a linear classifier when
    ``num_outputs > 0``. Stages are named ``stage1``.. with parts ``filter``, ``pool``, ``norm``.

    ``kernel``, ``maps``, ``pool``, ``lcn`` and ``bias`` are one value for every stage or a list with one
    per stage: ``kernel: [7, 7, 20], maps: [8, 8, 128]`` on 32x32 ends in 128 units that each see
    the whole 20x20 map below (a kernel as large as its input: one location)."""
    if len(input_shape) != 3:
        raise ConfigError(f"model: le2012 needs image inputs (C, H, W), got input shape {input_shape}")
    kernels, maps_, pools, lcns = (per_stage(v, stages, f"model.{n}", int, 1) for n, v in (
        ("kernel", kernel), ("maps", maps), ("pool", pool), ("lcn", lcn)))
    biases = per_stage(bias, stages, "model.bias", bool)
    if any(p % 2 != 1 for p in pools + lcns):
        raise ConfigError(f"model.pool, model.lcn: odd sizes keep the maps' size; got {pool} and {lcn}")
    channels, h, w = input_shape
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i, (k, m, p, n, b) in enumerate(zip(kernels, maps_, pools, lcns, biases), 1):
        if min(h, w) < k:
            raise ConfigError(f"model.kernel: {k} is larger than the {h}x{w} input of stage {i}; "
                              f"use fewer stages or a smaller kernel")
        filt = LocallyConnected2d(channels, m, k, stride=stride, bias=b, input_size=(h, w))
        init_layer(filt, "linear")
        h, w = filt.output_size
        layers[f"stage{i}"] = nn.Sequential(OrderedDict(
            filter=filt, pool=L2Pool2d(p, stride=1, padding=p // 2), norm=LocalContrastNorm2d(m, n)))
        channels = m
    if num_outputs > 0:
        layers["flatten"] = nn.Flatten()
        layers["out"] = init_layer(Linear(channels * h * w, num_outputs), "linear")
    return nn.Sequential(layers)
