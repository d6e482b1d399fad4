"""Initialization: He (Kaiming) for rectifiers, Glorot (Xavier) for sigmoid/tanh, zero biases."""

from __future__ import annotations

import math

import torch
from torch import nn


def init_layer(layer: nn.Module, activation: str) -> nn.Module:
    """Initialize ``layer.weight`` for the non-linearity that follows it; biases start at 0."""
    w = getattr(layer, "weight", None)
    if w is None:
        return layer
    if w.ndim == 6:  # locally connected / tiled: (.., .., out, in, kh, kw); one unit sees in*kh*kw inputs
        fan_in = getattr(layer, "fan_in", w.shape[3] * w.shape[4] * w.shape[5])
        fan_out = w.shape[2] * w.shape[4] * w.shape[5]
        if activation in ("relu", "abs"):
            bound = math.sqrt(6.0 / fan_in)
        else:
            gain = nn.init.calculate_gain(activation) if activation in ("tanh", "sigmoid") else 1.0
            bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
        with torch.no_grad():
            w.uniform_(-bound, bound)
    elif activation in ("relu", "abs"):
        # fan_in = everything but the output-channel dims; kaiming_uniform_ computes it from
        # dim 1.. for 2-D/4-D weights, which is right for Linear and Conv2d.
        nn.init.kaiming_uniform_(w, nonlinearity="relu")
    elif activation in ("tanh", "sigmoid"):
        nn.init.xavier_uniform_(w, gain=nn.init.calculate_gain(activation))
    else:
        nn.init.xavier_uniform_(w)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)
    return layer
