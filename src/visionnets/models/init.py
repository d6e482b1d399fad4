"""Initialization: He (Kaiming) for rectifiers, Glorot (Xavier) for sigmoid/tanh, zero biases."""

from __future__ import annotations

from torch import nn


def init_layer(layer: nn.Module, activation: str) -> nn.Module:
    """Initialize ``layer.weight`` for the non-linearity that follows it; biases start at 0."""
    w = getattr(layer, "weight", None)
    if w is None:
        return layer
    if activation in ("relu", "abs"):
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
