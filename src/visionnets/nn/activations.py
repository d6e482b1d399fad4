"""Rectification and the usual non-linearities as layers, found by name.

Absolute-value rectification y = |x| (Jarrett et al. 2009) keeps the energy of both signs of a
filter response; it is what makes a stage's output invariant to the response's polarity.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from visionnets.errors import ConfigError

__all__ = ["Abs", "ACTIVATIONS", "make_activation"]


class Abs(nn.Module):
    """Absolute-value rectification: y = |x| (gradient sign(x), 0 at x = 0).

    >>> Abs()(torch.tensor([-2.0, 0.0, 3.0]))
    tensor([2., 0., 3.])
    """

    def forward(self, input: Tensor) -> Tensor:
        return input.abs()


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "abs": Abs,
    "none": nn.Identity,
    "identity": nn.Identity,
}


def make_activation(name: str) -> nn.Module:
    """A new non-linearity layer by name: relu, tanh, sigmoid, abs, none / identity.

    >>> make_activation("abs")
    Abs()
    """
    try:
        return ACTIVATIONS[name]()
    except (KeyError, TypeError):
        raise ConfigError(f"activation: unknown name {name!r}; expected one of "
                          f"{', '.join(ACTIVATIONS)}") from None
