"""Rectification and the usual non-linearities, found by name: the one table of the library.

Models (``mlp``, ``convnet``), auto-encoders, layer-wise pretraining and the Coates pipeline
all look non-linearities up here, so a name means the same function everywhere.

Absolute-value rectification y = |x| (Jarrett et al. 2009) keeps the energy of both signs of a
filter response; it is what makes a stage's output invariant to the response's polarity.
"""

from __future__ import annotations

from torch import Tensor, nn

from visionnets.errors import ConfigError

__all__ = ["Abs", "ACTIVATIONS", "activation_fn", "activation_name", "make_activation"]


class Abs(nn.Module):
    """Absolute-value rectification: y = |x| (gradient sign(x), 0 at x = 0).

    >>> import torch
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
    "linear": nn.Identity,
}
_SHARED = {name: cls() for name, cls in ACTIVATIONS.items()}   # stateless: safe to share as functions


def _check(name: str, where: str) -> None:
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ConfigError(f"{where}: unknown name {name!r}; expected one of {', '.join(ACTIVATIONS)}")


def make_activation(name: str, where: str = "activation") -> nn.Module:
    """A new non-linearity layer by name: relu, tanh, sigmoid, abs, none / identity / linear.

    >>> make_activation("abs")
    Abs()
    """
    _check(name, where)
    return ACTIVATIONS[name]()


def activation_fn(name: str, where: str = "activation"):
    """The non-linearity ``name`` as a function of a tensor (one shared stateless module).

    >>> import torch
    >>> activation_fn("relu")(torch.tensor([-1.0, 2.0]))
    tensor([0., 2.])
    """
    _check(name, where)
    return _SHARED[name]


def activation_name(module: nn.Module) -> str | None:
    """The table's name of a non-linearity layer (``linear`` for Identity), or None.

    >>> activation_name(nn.Tanh()), activation_name(nn.Linear(2, 2))
    ('tanh', None)
    """
    if isinstance(module, nn.Identity):
        return "linear"
    return next((name for name, cls in ACTIVATIONS.items() if type(module) is cls), None)
