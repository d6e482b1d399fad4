"""The model registry and factory (the package's face, ``visionnets.models``, re-exports them)."""

from __future__ import annotations

from typing import Any

from torch import nn

from visionnets.errors import ConfigError
from visionnets.registry import Registry

MODELS = Registry("model")


def build_model(spec: dict[str, Any], input_shape: tuple[int, ...], num_outputs: int, **inputs: Any) -> nn.Module:
    """Build the model named by ``spec["name"]`` with the other keys of ``spec`` as arguments
    (``inputs``: what a model of several inputs is told of them, e.g. ``modalities``)."""
    spec = dict(spec)
    if "name" not in spec:
        raise ConfigError("model.name: missing; expected one of: " + ", ".join(MODELS.names()))
    name = spec.pop("name")
    return MODELS.build(name, spec, where="model", input_shape=tuple(input_shape),
                        num_outputs=int(num_outputs), **inputs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
