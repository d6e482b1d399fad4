"""The simple functions: vision layers (locally connected, tiled, L2 pooling, local contrast
normalization, rectification) and the tutorial's losses. Pure math in ``functional``."""

from visionnets.nn import functional
from visionnets.nn.activations import ACTIVATIONS, Abs, make_activation
from visionnets.nn.dense import Dropout, Linear, linear, linear_backend, set_linear_backend
from visionnets.nn.local import LocallyConnected2d, TiledConv2d
from visionnets.nn.losses import LOSSES, cross_entropy_loss, hinge_loss, logistic_loss, squared_loss
from visionnets.nn.normalization import DivisiveNorm2d, LocalContrastNorm2d, SubtractiveNorm2d
from visionnets.nn.pooling import AvgPool2d, L2Pool2d, LpPool2d, MaxPool2d

__all__ = [
    "functional", "Dropout", "Linear", "linear", "linear_backend", "set_linear_backend", "Abs", "ACTIVATIONS", "make_activation", "LocallyConnected2d", "TiledConv2d",
    "L2Pool2d", "LpPool2d", "MaxPool2d", "AvgPool2d", "SubtractiveNorm2d", "DivisiveNorm2d",
    "LocalContrastNorm2d", "LOSSES", "squared_loss", "cross_entropy_loss", "hinge_loss",
    "logistic_loss",
]
