"""Locally connected and tiled convolution layers (Module shells over ``visionnets.nn.functional``).

The tutorial's progression: a locally connected net connects each hidden unit to a small patch
of the input with its own filter ("1000x1000 image, 1M hidden units, 10x10 filters: 10M
parameters"); a convolutional net shares one filter bank across locations (10K parameters);
a tiled convolution (Le et al., NIPS 2010) sits between: units ``tile_size`` steps apart share.

A locally connected layer's weights depend on its output size, so it needs the input size:
give ``input_size=(H, W)`` at construction, or leave it out and the first call fixes it (the
parameters are then created lazily, as in ``torch.nn.LazyConv2d``). A later input of another
size is an error naming both sizes. A tiled convolution's weights do not depend on the input
size; it takes any input whose output holds at least one tile.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedParameter

from visionnets.errors import ConfigError
from visionnets.nn import functional as VF

__all__ = ["LocallyConnected2d", "TiledConv2d"]


class _LocalBase(nn.Module):
    """Shared shell: hyperparameters and Conv2d-style initialization."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0):
        super().__init__()
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not (isinstance(v, int) and v >= 1):
                raise ConfigError(f"{type(self).__name__}: {name} must be an int >= 1, got {v!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = VF.pair(kernel_size, "kernel_size")
        self.stride = VF.pair(stride, "stride")
        self.padding = VF.pair(padding, "padding", 0)

    @property
    def fan_in(self) -> int:
        """Inputs of one unit: in_channels * kh * kw. (``nn.init.kaiming_*`` would read the 6-D
        weight's dims 1: as the fan-in, which is wrong here; initialize from this instead.)"""
        return self.in_channels * self.kernel_size[0] * self.kernel_size[1]

    def reset_parameters(self) -> None:
        """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias, fan_in = in_channels*kh*kw
        (what ``torch.nn.Conv2d`` gives with its default kaiming_uniform_(a=sqrt(5)))."""
        bound = 1.0 / math.sqrt(self.fan_in)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def _check_channels(self, input: Tensor) -> None:
        if input.dim() not in (3, 4) or input.shape[-3] != self.in_channels:
            raise ConfigError(f"{type(self).__name__}: expected input (B, {self.in_channels}, H, W) or "
                              f"({self.in_channels}, H, W), got shape {tuple(input.shape)}")

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}, padding={self.padding}")
        if isinstance(self, TiledConv2d):
            s += f", tile_size={self.tile_size}"
        return s + f", bias={self.bias is not None}, input_size={self.input_size}"


class LocallyConnected2d(LazyModuleMixin, _LocalBase):
    """A separate filter bank at every output location (no weight sharing).

    y[b, o, i, j] = bias[o, i, j] + sum_{c,p,q} weight[i, j, o, c, p, q] x[b, c, i*s + p, j*s + q]

    Parameters: ``weight`` (out_h, out_w, out_channels, in_channels, kh, kw) and ``bias``
    (out_channels, out_h, out_w): out_h*out_w*out_channels*(in_channels*kh*kw + 1) numbers.
    Input (B, in_channels, H, W) -> output (B, out_channels, out_h, out_w) with
    out_h = (H + 2 padding - kh) // stride + 1. Without ``input_size`` the parameters are created
    at the first call (``torch.nn.LazyConv2d`` style); any other input size later is an error.

    >>> layer = LocallyConnected2d(3, 8, 5, input_size=(32, 32))
    >>> layer(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 8, 28, 28])
    >>> layer.weight.shape
    torch.Size([28, 28, 8, 3, 5, 5])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = True, input_size=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding)
        self.input_size: tuple[int, int] | None = None
        self.weight = UninitializedParameter()
        self.bias = UninitializedParameter() if bias else None
        if input_size is not None:
            self._fix_size(VF.pair(input_size, "input_size"))

    @property
    def output_size(self) -> tuple[int, int] | None:
        """(out_h, out_w), or None before the input size is known."""
        if self.input_size is None:
            return None
        return VF.conv_output_size(self.input_size, self.kernel_size, self.stride, self.padding)

    def _fix_size(self, size: tuple[int, int]) -> None:
        self.input_size = size
        (oh, ow), (kh, kw) = self.output_size, self.kernel_size
        shape = (oh, ow, self.out_channels, self.in_channels, kh, kw)
        with torch.no_grad():
            if isinstance(self.weight, UninitializedParameter):
                self.weight.materialize(shape)
                if self.bias is not None:
                    self.bias.materialize((self.out_channels, oh, ow))
                self.reset_parameters()
            elif tuple(self.weight.shape) != shape:  # loaded from a state dict before the first call
                raise ConfigError(f"LocallyConnected2d: input size {size[0]}x{size[1]} needs weight "
                                  f"{shape}, the loaded weight is {tuple(self.weight.shape)}")

    def initialize_parameters(self, input: Tensor) -> None:
        """LazyModuleMixin hook: fix the input size (and create the parameters) at the first call."""
        self._check_channels(input)
        if self.input_size is None:
            self._fix_size(tuple(input.shape[-2:]))

    def forward(self, input: Tensor) -> Tensor:
        self._check_channels(input)
        if tuple(input.shape[-2:]) != self.input_size:
            h, w = self.input_size
            raise ConfigError(f"LocallyConnected2d: built for {h}x{w} inputs, got shape "
                              f"{tuple(input.shape)}; make a new layer for another input size")
        return VF.locally_connected2d(input, self.weight, self.bias, self.stride, self.padding)


class TiledConv2d(_LocalBase):
    """Tiled convolution (Le et al., NIPS 2010): units ``tile_size`` steps apart share weights.

    y[b, o, i, j] = bias[o] + sum_{c,p,q} weight[i mod th, j mod tw, o, c, p, q] x[b, c, i*s+p, j*s+q]

    Parameters: ``weight`` (tile_h, tile_w, out_channels, in_channels, kh, kw) and ``bias``
    (out_channels,): tile_h*tile_w*out_channels*in_channels*kh*kw + out_channels numbers.
    tile_size 1 is ``nn.Conv2d``; tile_size equal to the output size is ``LocallyConnected2d``
    (with one bias per channel). The weights do not depend on the input size, so any input whose
    output is at least one tile large works; ``input_size``, when given, is checked up front.

    >>> layer = TiledConv2d(3, 8, 5, tile_size=2, input_size=(32, 32))
    >>> layer(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 8, 28, 28])
    >>> layer.weight.shape
    torch.Size([2, 2, 8, 3, 5, 5])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, tile_size, stride=1,
                 padding=0, bias: bool = True, input_size=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding)
        self.tile_size = VF.pair(tile_size, "tile_size")
        self.input_size = None if input_size is None else VF.pair(input_size, "input_size")
        if self.input_size is not None:
            self._check_tile(self.input_size)
        (th, tw), (kh, kw) = self.tile_size, self.kernel_size
        self.weight = nn.Parameter(torch.empty(th, tw, out_channels, in_channels, kh, kw))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def _check_tile(self, size: tuple[int, int]) -> None:
        oh, ow = VF.conv_output_size(size, self.kernel_size, self.stride, self.padding)
        if self.tile_size[0] > oh or self.tile_size[1] > ow:
            raise ConfigError(f"TiledConv2d: tile_size {self.tile_size} is larger than the {oh}x{ow} "
                              f"output of a {size[0]}x{size[1]} input")

    def forward(self, input: Tensor) -> Tensor:
        self._check_channels(input)
        self._check_tile(tuple(input.shape[-2:]))
        return VF.tiled_conv2d(input, self.weight, self.bias, self.stride, self.padding)
