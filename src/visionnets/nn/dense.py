"""A fully connected layer whose float32 CPU matmuls run where the machine is fastest.

PyTorch's CPU builds multiply float32 matrices (``F.linear``, ``mm``) with Intel MKL. On AMD
processors MKL takes its AVX2 kernels even where the CPU has AVX-512, so half the machine's
float32 throughput is left unused; oneDNN, which PyTorch also ships (it runs the convolutions),
has AVX-512 kernels for every vendor. Measured on the AMD EPYC (Zen 4) of our CI machines, one
thread, 128 x 784 @ 784 x 800: MKL 95 GFLOP/s, oneDNN 210 GFLOP/s; forward + backward of that
layer 5.7 ms -> 3.1 ms (by hand; ``benchmarks/peers.py`` times whole trainings: docs/speed.md).

``linear(x, W, b)`` equals ``F.linear`` (to float32 rounding: the sums are ordered differently)
and takes oneDNN's inner product for the forward pass and both gradients when

- the backend is ``"onednn"``, or ``"auto"`` (the default) on a CPU that is not Intel's and has
  AVX-512 (read once from ``/proc/cpuinfo``), with oneDNN in this torch build;
- and the call is plain eager float32 CPU work: no autocast (bf16 autocast already goes to
  oneDNN), no ``torch.compile`` / ``torch.export`` / ONNX export / ``jit.trace``, no
  ``torch.func`` transform, not inside ``visionnets.nn.functional.portable()``, and no graph of
  the backward is asked for (double backward runs through ``F.linear``'s own formulas).

Everything else goes to ``F.linear`` unchanged. ``set_linear_backend("aten")`` (or the
environment variable ``VISIONNETS_LINEAR=aten``) turns the oneDNN path off; ``linear_backend()``
says which one ``auto`` chose. The choice is per machine, never per run, so a seed gives the
same numbers on the same machine every time.

``Linear`` is ``torch.nn.Linear`` (same parameters, state dict, ``isinstance``) calling
``linear``; the model builders of visionnets use it. ``mm(a, b)`` is ``a @ b`` by the same rule.

    >>> import torch
    >>> layer = Linear(784, 10)
    >>> x = torch.randn(4, 784)
    >>> torch.allclose(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias), atol=1e-5)
    True
"""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionnets.device import cpu_flags, cpu_info
from visionnets.errors import ConfigError
from visionnets.nn import functional

BACKENDS = ("auto", "onednn", "aten")
_backend = os.environ.get("VISIONNETS_LINEAR", "auto")


def _cpu_prefers_onednn() -> bool:
    """True on a non-Intel x86 CPU with AVX-512 (where MKL's float32 GEMM uses AVX2 only)."""
    return "avx512f" in cpu_flags() and cpu_info().get("vendor_id", "GenuineIntel") != "GenuineIntel"


@functools.cache
def _onednn_available() -> bool:
    return bool(torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def set_linear_backend(name: str) -> None:
    """``"auto"`` (oneDNN where MKL is the slower kernel), ``"onednn"`` or ``"aten"`` (always ``F.linear``)."""
    global _backend
    if name not in BACKENDS:
        raise ConfigError(f"set_linear_backend: {name!r}; expected one of {BACKENDS}")
    _backend = name


def linear_backend() -> str:
    """The backend float32 CPU layers take on this machine: ``"onednn"`` or ``"aten"``."""
    if _backend not in BACKENDS:
        raise ConfigError(f"VISIONNETS_LINEAR={_backend!r}; expected one of {BACKENDS}")
    if _backend == "aten" or not _onednn_available():
        return "aten"
    return "onednn" if _backend == "onednn" or _cpu_prefers_onednn() else "aten"


def _plain_eager(*tensors: Tensor) -> bool:
    if not functional.plain_eager() or torch.is_autocast_enabled("cpu"):
        return False
    return all(t.device.type == "cpu" and t.dtype == torch.float32 and t.layout == torch.strided
               and t.numel() > 0 for t in tensors)


def _ip(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """``a @ b.T + bias`` by oneDNN's inner product (a (M, K), b (N, K), both made contiguous)."""
    return torch.ops.mkldnn._linear_pointwise(a.contiguous(), b.contiguous(), bias, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x2: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x2, weight)
        ctx.has_bias = bias is not None
        return _ip(x2, weight, bias)

    @staticmethod
    def backward(ctx, g: Tensor):
        x2, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        if torch.is_grad_enabled():        # a graph of the backward is wanted: differentiable aten ops
            dx = g @ weight if need_x else None
            dw = g.t() @ x2 if need_w else None
        else:
            dx = _ip(g, weight.t()) if need_x else None
            dw = _ip(g.t(), x2.t()) if need_w else None
        db = g.sum(0) if need_b and ctx.has_bias else None
        return dx, dw, db


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(input, weight, bias)``: ``input @ weight.T + bias``, by oneDNN where that is faster
    (see the module's docstring); input (..., in), weight (out, in), bias (out,) or None."""
    if (weight.dim() != 2 or input.dim() < 1 or not _plain_eager(input, weight, *(() if bias is None else (bias,)))
            or linear_backend() != "onednn"):
        return F.linear(input, weight, bias)
    if input.shape[-1] != weight.shape[1] or (bias is not None and bias.shape != weight.shape[:1]):
        return F.linear(input, weight, bias)     # let torch word the shape error
    x2 = input.reshape(-1, input.shape[-1])
    y = _OneDNNLinear.apply(x2, weight, bias)
    return y.reshape(*input.shape[:-1], weight.shape[0])


def mm(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` for 2-D ``a`` (M, K) and ``b`` (K, N), by :func:`linear`'s kernel choice
    (differentiable; the RBM's training step uses it)."""
    if a.dim() != 2 or b.dim() != 2:
        raise ConfigError(f"mm: expected 2-D tensors, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    return linear(a, b.t())


class Dropout(nn.Dropout):
    """``torch.nn.Dropout`` (same ``p``, ``inplace``, ``isinstance``) drawing its CPU masks with
    :func:`visionnets.nn.functional.dropout` (4-5x faster; ``p`` rounded to a multiple of 2^-16).
    The model builders of visionnets use it. ``inplace=True`` keeps ``F.dropout``.

    >>> import torch
    >>> Dropout(0.5).eval()(torch.ones(3)).tolist()
    [1.0, 1.0, 1.0]
    """

    def forward(self, input: Tensor) -> Tensor:
        if self.inplace:
            return F.dropout(input, self.p, self.training, inplace=True)
        return functional.dropout(input, self.p, self.training)


class Linear(nn.Linear):
    """``torch.nn.Linear`` computed by :func:`linear` (oneDNN's float32 kernels where faster)."""

    def forward(self, input: Tensor) -> Tensor:
        return linear(input, self.weight, self.bias)
