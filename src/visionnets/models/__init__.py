"""Architectures found by name: ``linear``, ``mlp``, ``convnet`` (and any a user registers).

Every factory takes the library-supplied ``input_shape`` (one example, e.g. ``(1, 28, 28)``)
and ``num_outputs``, plus the keyword arguments of the recipe's ``model:`` section::

    >>> from visionnets.models import build_model
    >>> net = build_model({"name": "mlp", "hidden": [32, 32], "activation": "tanh"}, (1, 8, 8), 10)
    >>> sum(p.numel() for p in net.parameters())
    3466

Add your own with ``@MODELS.register("name")`` on a function returning an ``nn.Module``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from visionnets.errors import ConfigError
from visionnets.registry import Registry

MODELS = Registry("model")

from visionnets.models import convnet, linear, mlp  # noqa: E402,F401  (register the built-ins)


def build_model(spec: dict[str, Any], input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    """Build the model named by ``spec["name"]`` with the other keys of ``spec`` as arguments."""
    spec = dict(spec)
    if "name" not in spec:
        raise ConfigError("model.name: missing; expected one of: " + ", ".join(MODELS.names()))
    name = spec.pop("name")
    return MODELS.build(name, spec, where="model", input_shape=tuple(input_shape),
                        num_outputs=int(num_outputs))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
