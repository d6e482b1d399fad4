"""Pooling layers: L2 and Lp pooling with a safe gradient at zero; max and average re-exported.

By pooling filter responses at different locations "we gain robustness to the exact spatial
location of features" (tutorial). L2 pooling, y = sqrt(sum_N x^2), pools the energy of a
neighbourhood; ``torch.nn.LPPool2d`` has no epsilon and answers NaN or 0 as the gradient at an
all-zero window, these layers put ``eps`` inside the root.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import AvgPool2d, MaxPool2d

from visionnets.nn import functional as VF

__all__ = ["L2Pool2d", "LpPool2d", "MaxPool2d", "AvgPool2d"]


class LpPool2d(nn.Module):
    """Lp pooling: y = (sum_{(i,j) in N} w_ij |x_ij|^p + eps)^(1/p), p >= 1.

    ``w`` is 1 (plain sum) or, with ``gaussian=True``, a Gaussian window (sigma kernel_size / 4)
    summing to 1. p = 1 pools |x|, p = 2 is L2 pooling, large p tends to max pooling of |x|.
    Input (B, C, H, W) -> (B, C, oh, ow), oh = (H + 2 padding - k) // stride + 1; stride
    defaults to kernel_size.

    >>> import torch
    >>> LpPool2d(3, 2)(torch.randn(1, 4, 8, 8)).shape
    torch.Size([1, 4, 4, 4])
    """

    def __init__(self, p: float, kernel_size, stride=None, padding=0, gaussian: bool = False,
                 eps: float = 1e-6):
        super().__init__()
        self.p, self.kernel_size, self.stride, self.padding = p, kernel_size, stride, padding
        self.gaussian, self.eps = gaussian, eps
        VF.check_pool_args(p, kernel_size, stride, padding, eps)

    def forward(self, input: Tensor) -> Tensor:
        return VF.lp_pool2d(input, self.p, self.kernel_size, self.stride, self.padding,
                            self.gaussian, self.eps)

    def extra_repr(self) -> str:
        return (f"p={self.p}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, gaussian={self.gaussian}, eps={self.eps}")


class L2Pool2d(LpPool2d):
    """L2 pooling (tutorial): y = sqrt(sum_{(i,j) in N} w_ij x_ij^2 + eps); see ``LpPool2d``.

    >>> import torch
    >>> x = torch.zeros(1, 1, 4, 4, requires_grad=True)
    >>> L2Pool2d(2)(x).sum().backward()
    >>> bool(x.grad.isfinite().all())
    True
    """

    def __init__(self, kernel_size, stride=None, padding=0, gaussian: bool = False, eps: float = 1e-6):
        super().__init__(2, kernel_size, stride, padding, gaussian, eps)

    def extra_repr(self) -> str:
        return super().extra_repr().split(", ", 1)[1]
