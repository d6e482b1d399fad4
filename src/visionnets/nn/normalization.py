"""Local contrast normalization (Jarrett, Kavukcuoglu, Ranzato, LeCun, ICCV 2009).

The tutorial's h_{i+1,x,y} = (h_{i,x,y} - m_{i,N(x,y)}) / sigma_{i,N(x,y)}, in two steps:

- subtractive: v = x - sum_{c,p,q} w_cpq x[c, i+p, j+q]
- divisive:    y = v / max(mean_ij(sigma), sigma),  sigma = sqrt(sum_{c,p,q} w_cpq v[c, i+p, j+q]^2)

with w a Gaussian window summing to 1 over the neighbourhood and all feature maps. Borders are
zero-padded and the window renormalized by its coverage, so a constant image maps to 0.
"""

from __future__ import annotations

from torch import Tensor, nn

from visionnets.errors import ConfigError
from visionnets.nn import functional as VF

__all__ = ["SubtractiveNorm2d", "DivisiveNorm2d", "LocalContrastNorm2d"]


class _Norm(nn.Module):
    def __init__(self, channels: int, kernel_size: int = 9, sigma: float | None = None,
                 eps: float | None = None):
        super().__init__()
        name = type(self).__name__
        if not (isinstance(channels, int) and channels >= 1):
            raise ConfigError(f"{name}: channels must be an int >= 1, got {channels!r}")
        if not (isinstance(kernel_size, int) and kernel_size >= 1 and kernel_size % 2 == 1):
            raise ConfigError(f"{name}: kernel_size must be an odd int >= 1, got {kernel_size!r}")
        if sigma is not None and not sigma > 0:
            raise ConfigError(f"{name}: sigma must be positive, got {sigma!r}")
        if eps is not None and not eps > 0:
            raise ConfigError(f"{name}: eps must be positive, got {eps!r}")
        self.channels, self.kernel_size, self.sigma, self.eps = channels, kernel_size, sigma, eps

    def _check(self, input: Tensor) -> None:
        if input.dim() not in (3, 4) or input.shape[-3] != self.channels:
            raise ConfigError(f"{type(self).__name__}: expected input (B, {self.channels}, H, W) or "
                              f"({self.channels}, H, W), got shape {tuple(input.shape)}")

    def extra_repr(self) -> str:
        s = f"{self.channels}, kernel_size={self.kernel_size}, sigma={self.sigma}"
        return s if self.eps is None else s + f", eps={self.eps}"


class SubtractiveNorm2d(_Norm):
    """v = x - sum_{c,p,q} w_cpq x[c, i+p, j+q] (Gaussian w, sum 1 over window and maps).

    >>> import torch
    >>> SubtractiveNorm2d(3)(torch.ones(1, 3, 12, 12)).abs().max().item() < 1e-6
    True
    """

    def __init__(self, channels: int, kernel_size: int = 9, sigma: float | None = None):
        super().__init__(channels, kernel_size, sigma)

    def forward(self, input: Tensor) -> Tensor:
        self._check(input)
        return VF.subtractive_norm2d(input, self.kernel_size, self.sigma)


class DivisiveNorm2d(_Norm):
    """y = v / max(mean_ij(sigma), sigma), sigma = sqrt(sum_{c,p,q} w_cpq v^2), floored at eps.

    >>> import torch
    >>> DivisiveNorm2d(3)(torch.randn(2, 3, 12, 12)).shape
    torch.Size([2, 3, 12, 12])
    """

    def __init__(self, channels: int, kernel_size: int = 9, sigma: float | None = None,
                 eps: float = 1e-4):
        super().__init__(channels, kernel_size, sigma, eps)

    def forward(self, input: Tensor) -> Tensor:
        self._check(input)
        return VF.divisive_norm2d(input, self.kernel_size, self.sigma, self.eps)


class LocalContrastNorm2d(_Norm):
    """Local contrast normalization = ``SubtractiveNorm2d`` then ``DivisiveNorm2d``.

    ``channels`` is the number of feature maps the window is normalized over; ``sigma`` of the
    Gaussian defaults to kernel_size / 4. Input and output (B, channels, H, W).

    >>> import torch
    >>> lcn = LocalContrastNorm2d(8, kernel_size=9)
    >>> lcn(torch.randn(2, 8, 16, 16)).shape
    torch.Size([2, 8, 16, 16])
    """

    def __init__(self, channels: int, kernel_size: int = 9, sigma: float | None = None,
                 eps: float = 1e-4):
        super().__init__(channels, kernel_size, sigma, eps)

    def forward(self, input: Tensor) -> Tensor:
        self._check(input)
        return VF.local_contrast_norm2d(input, self.kernel_size, self.sigma, self.eps)
