"""Pure differentiable functions for the tutorial's vision layers.

The layers of ``visionnets.nn`` are thin shells over these functions (as ``torch.nn`` over
``torch.nn.functional``):

======================  ===========================================================================
function                formula (x: input (B, C, H, W), y: output (B, O, oh, ow))
======================  ===========================================================================
locally_connected2d     y[b,o,i,j] = bias[o,i,j] + sum_{c,p,q} W[i,j,o,c,p,q] x[b,c,i s+p,j s+q]
tiled_conv2d            the same with W[i,j] = T[i mod th, j mod tw] (Le et al., NIPS 2010)
lp_pool2d               y = (sum_{(p,q) in N(i,j)} w_pq |x|^p + eps)^(1/p)
l2_pool2d               y = sqrt(sum_{(p,q) in N(i,j)} w_pq x^2 + eps)
subtractive_norm2d      v = x - sum_{c,p,q} w_cpq x[c,i+p,j+q]
divisive_norm2d         y = v / max(mean_ij(sigma), sigma),  sigma = sqrt(sum_{c,p,q} w_cpq v^2)
local_contrast_norm2d   divisive_norm2d(subtractive_norm2d(x))   (Jarrett et al., ICCV 2009)
dropout                 y = x * m / (1 - p),  m ~ Bernoulli(1 - p), p rounded to k / 2^16
======================  ===========================================================================

Only ``locally_connected2d`` has hand-written kernels (the custom ops
``visionnets::locally_connected2d`` and ``..._backward``): autograd of an ``unfold`` + ``einsum``
version materializes several copies of the unfolded input and is slow (see
``benchmarks/layers.py`` and ``docs/layers.md``). Inside those ops, float32 on AVX-512 CPUs runs
native C kernels (``_native``, compiled on first use; no unfolded copy at all), everything else
batched GEMMs over bands of the unfolded input. Everything else is plain torch code. All of
it works under ``torch.compile(fullgraph=True)``, ``torch.export`` (dynamic batch),
``torch.vmap``, ``torch.func.grad``, double backward and ``torch.jit.trace``; ``portable()``
gives graphs of standard operators only.
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from visionnets.errors import ConfigError
from visionnets.nn import _native

__all__ = [
    "locally_connected2d", "locally_connected2d_transpose", "tiled_conv2d", "lp_pool2d", "l2_pool2d", "gaussian_window",
    "subtractive_norm2d", "divisive_norm2d", "local_contrast_norm2d", "conv_output_size",
    "check_pool_args", "portable", "pair", "local_mean2d",
]

# Work on at most this many bytes of unfolded input at a time: the locally connected layer
# unfolds a band of output rows, multiplies it, and reuses the buffer for the next band. A band
# that stays in cache through its three matmuls is faster than one huge unfolded copy kept for
# the backward (measured, 1 thread, fwd + bwd: 4 MiB bands 1.74x / 1.33x Conv2d on the issue's
# shapes (b) / (a), 32 MiB bands 2.00x / 1.65x), and it bounds peak memory.
CHUNK_BYTES = 4 * 2**20

# The native kernels (``_native``, float32 on AVX-512 CPUs) take over from K = C*kh*kw numbers
# per window up. Below it the output's and its gradient's layout changes weigh more against the
# smaller products, and the gain is mixed: by hand, fwd + bwd native / torch kernels, 1 thread,
# 0.63-0.81x for K = 144-576, 0.75-1.00x for K = 27-100, 1.13-1.17x for K = 25 with one input
# channel (docs/layers.md). 128 keeps every measured shape at or below the torch kernels' time.
NATIVE_MIN_K = 128


def _int(v):
    """A size: an int, or (under ``torch.jit.trace``, where shapes are traced) a 0-d integer tensor."""
    if isinstance(v, torch.Tensor) and v.dim() == 0 and not v.is_floating_point():
        return int(v)
    return v


def pair(value, name: str, minimum: int = 1) -> tuple[int, int]:
    """``value`` (an int, or two ints, each >= ``minimum``) as a pair; a ConfigError naming
    ``name`` otherwise. ``pair(3, "kernel_size") == (3, 3)``."""
    value = _int(value)
    out = (value, value) if isinstance(value, int) else tuple(_int(v) for v in value)
    if len(out) != 2 or not all(isinstance(v, int) and v >= minimum for v in out):
        raise ConfigError(f"{name}: expected an int >= {minimum} or a pair of them, got {value!r}")
    return out


def _unbatched_ok(fn):
    """Let ``fn`` take one unbatched (C, H, W) input too, as ``nn.Conv2d`` and torch's pooling do."""
    @functools.wraps(fn)
    def wrapper(input, *args, **kwargs):
        if isinstance(input, Tensor) and input.dim() == 3:
            return fn(input[None], *args, **kwargs)[0]
        return fn(input, *args, **kwargs)
    return wrapper


def conv_output_size(size: tuple[int, int], kernel_size, stride=1, padding=0) -> tuple[int, int]:
    """Output (height, width) of a valid sliding window: ``(size + 2 padding - kernel) // stride + 1``.

    >>> conv_output_size((32, 28), 5, stride=1, padding=0)
    (28, 24)
    """
    (h, w), (kh, kw) = size, pair(kernel_size, "kernel_size")
    (sh, sw), (ph, pw) = pair(stride, "stride"), pair(padding, "padding", 0)
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if oh < 1 or ow < 1:
        raise ConfigError(f"input size {h}x{w} with padding {ph},{pw} is smaller than the "
                          f"{kh}x{kw} kernel")
    return oh, ow


# ---------------------------------------------------------------------------------------------
# Locally connected
# ---------------------------------------------------------------------------------------------

def _check_local(x: Tensor, weight: Tensor, bias: Tensor | None, stride, padding):
    if x.dim() != 4:
        raise ConfigError(f"locally_connected2d: expected input (B, C, H, W) or (C, H, W), got shape {tuple(x.shape)}")
    if weight.dim() != 6:
        raise ConfigError("locally_connected2d: expected weight (out_h, out_w, out_channels, "
                          f"in_channels, kh, kw), got shape {tuple(weight.shape)}")
    oh, ow, o, c, kh, kw = weight.shape
    if x.shape[1] != c:
        raise ConfigError(f"locally_connected2d: input has {x.shape[1]} channels "
                          f"(shape {tuple(x.shape)}), weight {tuple(weight.shape)} expects {c}")
    out = conv_output_size(tuple(x.shape[2:]), (kh, kw), stride, padding)
    if out != (oh, ow):
        raise ConfigError(f"locally_connected2d: input {tuple(x.shape)} gives a {out[0]}x{out[1]} "
                          f"output but weight {tuple(weight.shape)} is for {oh}x{ow}")
    if bias is not None and tuple(bias.shape) != (o, oh, ow):
        raise ConfigError(f"locally_connected2d: expected bias of shape {(o, oh, ow)}, "
                          f"got {tuple(bias.shape)}")


class _Geometry:
    """Index arithmetic of one call: sizes, strides and the row bands worked on at a time.

    Internally the input is kept batch-last, ``xt`` of shape (C, Hp, Wp, B), so that the unfolded
    band ``cols`` of shape (rows * ow, C*kh*kw, B) is gathered, and scattered back, in runs of
    ``kw * B`` contiguous numbers. K = C*kh*kw runs in the weight's own (c, p, q) order. At each
    location l the forward multiplies W[l] (O, K) @ cols[l] (K, B) into an (O, B) block, the
    backward g[l] (O, B) @ cols[l]^T (B, K) for dW and W[l]^T (K, O) @ g[l] (O, B) for dcols; each
    operand is a (possibly transposed) view, never a copy. (The (O, B) orientation matters: MKL
    takes 110 ms for shape (c)'s forward that way against 410 ms for (B, K) @ (K, O).)
    """

    def __init__(self, x: Tensor, weight: Tensor, stride, padding):
        self.oh, self.ow, self.o, self.c, self.kh, self.kw = weight.shape
        self.b = x.shape[0]
        self.sh, self.sw = pair(stride, "stride")
        self.ph, self.pw = pair(padding, "padding", 0)
        self.hp, self.wp = x.shape[2] + 2 * self.ph, x.shape[3] + 2 * self.pw
        self.k = self.c * self.kh * self.kw
        row_bytes = self.ow * self.k * self.b * x.element_size()
        self.rows = max(1, min(self.oh, CHUNK_BYTES // max(row_bytes, 1)))

    def offsets(self) -> tuple[Tensor, Tensor]:
        """Offsets into the batch-last input (see :meth:`batch_last`), for the native kernels:
        ``loff[l]`` of location l's window origin, ``koff[k]`` of k = (c, p, q) within a window."""
        ar = functools.partial(torch.arange, dtype=torch.int64)
        loff = (ar(self.oh)[:, None] * (self.sh * self.wp) + ar(self.ow)[None, :] * self.sw) * self.b
        koff = ((ar(self.c)[:, None, None] * self.hp + ar(self.kh)[None, :, None]) * self.wp
                + ar(self.kw)[None, None, :]) * self.b
        return loff.reshape(-1), koff.reshape(-1)

    def native(self, *tensors: Tensor) -> bool:
        """Whether this call runs on the native kernels: K >= ``NATIVE_MIN_K`` and
        ``_native.available`` (float32, CPU, AVX-512, the library built)."""
        return self.k >= NATIVE_MIN_K and _native.available(*tensors)

    def bands(self):
        for r0 in range(0, self.oh, self.rows):
            yield r0, min(self.rows, self.oh - r0)

    def batch_last(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> zero-padded (C, Hp, Wp, B), contiguous (by a 2-D transpose, which torch
        blocks for the cache: 3-6x faster than one copy through the permuted view)."""
        flat = x.reshape(self.b, -1).t()
        if not (self.ph or self.pw):
            return flat.contiguous().view(self.c, self.hp, self.wp, self.b)
        xt = x.new_zeros(self.c, self.hp, self.wp, self.b)
        xt[:, self.ph:self.hp - self.ph, self.pw:self.wp - self.pw].copy_(
            flat.contiguous().view(self.c, x.shape[2], x.shape[3], self.b))
        return xt

    def batch_first(self, gxt: Tensor) -> Tensor:
        """The inverse of :meth:`batch_last`: (C, Hp, Wp, B) -> (B, C, H, W), padding cut off."""
        inner = gxt[:, self.ph:self.hp - self.ph, self.pw:self.wp - self.pw].contiguous()
        return inner.view(-1, self.b).t().contiguous().view(self.b, self.c, *inner.shape[1:3])

    def window_view(self, xt: Tensor, r0: int, rows: int, step_h: int = 1, step_w: int = 1,
                    offset_h: int = 0, offset_w: int = 0) -> Tensor:
        """View (rows', ow', C, kh, kw, B) of ``xt``: the windows of output rows r0 + offset_h +
        step_h * m and columns offset_w + step_w * n. Non-overlapping when the steps cover a kernel."""
        sb = 1
        sq, sp, sc = self.b, self.wp * self.b, self.hp * self.wp * self.b
        nh = len(range(offset_h, rows, step_h))
        nw = len(range(offset_w, self.ow, step_w))
        start = (r0 + offset_h) * self.sh * sp + offset_w * self.sw * sq
        return xt.as_strided((nh, nw, self.c, self.kh, self.kw, self.b),
                             (step_h * self.sh * sp, step_w * self.sw * sq, sc, sp, sq, sb),
                             xt.storage_offset() + start)

    def gather(self, xt: Tensor, r0: int, rows: int, out: Tensor) -> Tensor:
        """The band's unfolded input, (rows * ow, K, B), written into ``out``."""
        cols = out[: rows * self.ow]
        cols.view(rows, self.ow, self.c, self.kh, self.kw, self.b).copy_(self.window_view(xt, r0, rows))
        return cols

    def scatter_add(self, gxt: Tensor, cols: Tensor, r0: int, rows: int) -> None:
        """gxt[window(l)] += cols[l] for the band's locations (the adjoint of ``gather``).

        Windows overlap, so locations go in groups whose windows do not: rows ``qh`` apart and
        columns ``qw`` apart, where ``q * stride >= kernel``.
        """
        qh, qw = -(-self.kh // self.sh), -(-self.kw // self.sw)
        src = cols.view(rows, self.ow, self.c, self.kh, self.kw, self.b)
        for t in range(min(qh, rows)):
            for u in range(min(qw, self.ow)):
                self.window_view(gxt, r0, rows, qh, qw, t, u).add_(src[t::qh, u::qw])


# The locally connected layer is a pair of custom operators (``torch.library.custom_op``) so that
# PyTorch's tools see it as one opaque, well-described op: ``torch.compile(fullgraph=True)`` and
# ``torch.export`` (with a dynamic batch) through its fake (meta) kernel, ``torch.func.grad`` and
# double backward through its registered autograd, whose backward is itself a differentiable op
# (the adjoints of a bilinear map are again the map and its adjoints), and ``torch.vmap`` through
# a rule that folds the vmapped dimension into the batch (or, when weights are vmapped too,
# loops). ``jit.trace`` records the op by name. ``portable()`` swaps in plain aten code where a
# graph must run without visionnets (ONNX, TorchScript files).

def _band_to_output(band: Tensor, y: Tensor, scratch: Tensor) -> None:
    """y (B, O, n) = band (n, O, B) with its axes reversed, as a 2-D transpose (n, O*B) -> (O*B, n)
    into ``scratch`` then runs of n numbers: torch's blocked 2-D transpose is 4-6x faster than one
    copy through the reversed view (6.8 ms against 1.7 ms for shape (a)'s output, by hand)."""
    n, o, b = band.shape
    t = scratch[: n * o * b].view(o * b, n)
    t.copy_(band.view(n, o * b).t())
    y.copy_(t.view(o, b, n).permute(1, 0, 2))


def _output_to_band(g: Tensor, band: Tensor, scratch: Tensor) -> None:
    """The inverse of :func:`_band_to_output`: band (n, O, B) = g (B, O, n) with axes reversed."""
    b, o, n = g.shape
    t = scratch[: n * o * b].view(o, b, n)
    t.copy_(g.permute(1, 0, 2))
    band.view(n, o * b).copy_(t.view(o * b, n).t())


def _lc_native_forward(x: Tensor, weight: Tensor, geo: _Geometry) -> Tensor:
    """y = locally_connected2d(x, W) (no bias) by the native kernel: no unfolded copy."""
    n = geo.oh * geo.ow
    xt, w = geo.batch_last(x), weight.contiguous()
    loff, koff = geo.offsets()
    yt = x.new_empty(n, geo.o, geo.b)
    _native.run("vn_lc_fwd", _native.threads(n), n, geo.o, geo.b, geo.k, w.data_ptr(), xt.data_ptr(),
                loff.data_ptr(), koff.data_ptr(), yt.data_ptr())
    y = x.new_empty(geo.b, geo.o, geo.oh, geo.ow)
    _band_to_output(yt, y.view(geo.b, geo.o, n), x.new_empty(yt.numel()))
    return y


def _lc_native_backward(grad_y: Tensor, x: Tensor, weight: Tensor, geo: _Geometry,
                        need_x: bool, need_w: bool) -> tuple[Tensor, Tensor]:
    """(dx, dW) by the native kernels; dx is summed from one buffer per thread (windows overlap)."""
    n = geo.oh * geo.ow
    g_flat = grad_y.reshape(geo.b, geo.o, n)
    loff, koff = geo.offsets()
    threads = _native.threads(n)
    grad_x, grad_w = x.new_empty(0), weight.new_empty(0)
    if need_w:
        xt = geo.batch_last(x)
        gt = g_flat.reshape(geo.b * geo.o, n).t().contiguous()  # (L, B, O), by torch's blocked 2-D transpose
        grad_w = weight.new_empty(weight.shape)
        _native.run("vn_lc_bwd_w", threads, n, geo.o, geo.b, geo.k, xt.data_ptr(), gt.data_ptr(),
                    loff.data_ptr(), koff.data_ptr(), grad_w.data_ptr())
        del xt, gt
    if need_x:
        g = x.new_empty(n, geo.o, geo.b)
        _output_to_band(g_flat, g, x.new_empty(g.numel()))
        w = weight.contiguous()
        gxt = x.new_zeros(threads, geo.c, geo.hp, geo.wp, geo.b)
        _native.run("vn_lc_bwd_x", threads, n, geo.o, geo.b, geo.k, w.data_ptr(), g.data_ptr(),
                    loff.data_ptr(), koff.data_ptr(), gxt.data_ptr(), gxt[0].numel())
        grad_x = geo.batch_first(gxt[0] if threads == 1 else gxt.sum(0))
    return grad_x, grad_w


def _lc_kernel(x: Tensor, weight: Tensor, bias: Tensor | None, stride, padding) -> Tensor:
    geo = _Geometry(x, weight, stride, padding)
    y = _lc_native_forward(x, weight, geo) if geo.native(x, weight) else _lc_bands_forward(x, weight, geo)
    if bias is not None:
        y += bias
    return y


def _lc_bands_forward(x: Tensor, weight: Tensor, geo: _Geometry) -> Tensor:
    """y = locally_connected2d(x, W) (no bias) by the torch kernels: batched GEMMs over bands."""
    xt = geo.batch_last(x)
    w = weight.reshape(geo.oh * geo.ow, geo.o, geo.k)
    n = geo.oh * geo.ow
    y = x.new_empty(geo.b, geo.o, geo.oh, geo.ow)
    y_flat = y.view(geo.b, geo.o, n)
    buf = x.new_empty(geo.rows * geo.ow, geo.k, geo.b)
    out = x.new_empty(geo.rows * geo.ow, geo.o, geo.b)  # one band's (L, O, B) result
    turned = x.new_empty(geo.rows * geo.ow * geo.o * geo.b)
    for r0, rows in geo.bands():
        l0, l1 = r0 * geo.ow, (r0 + rows) * geo.ow
        cols = geo.gather(xt, r0, rows, buf)
        band = out[: l1 - l0]
        torch.bmm(w[l0:l1], cols, out=band)  # (O,K)@(K,B)
        _band_to_output(band, y_flat[:, :, l0:l1], turned)
    return y


def _lc_backward_kernel(grad_y: Tensor, x: Tensor, weight: Tensor, stride, padding,
                        need_x: bool, need_w: bool) -> tuple[Tensor, Tensor]:
    """(dx, dW) of y = locally_connected2d(x, W) for the output gradient ``grad_y``; an empty
    tensor stands for a gradient not asked for. Per location l: dW[l] = g[l] @ cols[l]^T and
    dcols[l] = W[l]^T @ g[l], the latter added back onto the input windows (``scatter_add``,
    the adjoint of the unfold) instead of ``F.fold``."""
    geo = _Geometry(x, weight, stride, padding)
    if geo.native(grad_y, x, weight):
        return _lc_native_backward(grad_y, x, weight, geo, need_x, need_w)
    n = geo.oh * geo.ow
    g_flat = grad_y.reshape(geo.b, geo.o, n)
    w = weight.reshape(n, geo.o, geo.k)
    xt = geo.batch_last(x) if need_w else None
    grad_w = weight.new_empty(n, geo.o, geo.k) if need_w else weight.new_empty(0)
    gxt = x.new_zeros(geo.c, geo.hp, geo.wp, geo.b) if need_x else None
    buf = x.new_empty(geo.rows * geo.ow, geo.k, geo.b)
    gt_buf = x.new_empty(geo.rows * geo.ow * geo.b * geo.o)
    turned = x.new_empty(geo.rows * geo.ow * geo.b * geo.o)
    for r0, rows in geo.bands():
        l0, l1 = r0 * geo.ow, (r0 + rows) * geo.ow
        gt = gt_buf[: (l1 - l0) * geo.b * geo.o].view(l1 - l0, geo.o, geo.b)
        _output_to_band(g_flat[:, :, l0:l1], gt, turned)  # (L, O, B)
        cols = buf[: l1 - l0]
        if need_w:
            geo.gather(xt, r0, rows, buf)
            torch.bmm(gt, cols.transpose(1, 2), out=grad_w[l0:l1])
        if need_x:
            torch.bmm(w[l0:l1].transpose(1, 2), gt, out=cols)
            geo.scatter_add(gxt, cols, r0, rows)
    del buf, gt_buf, turned
    grad_x = x.new_empty(0)
    if need_x:
        grad_x = geo.batch_first(gxt)
    return grad_x, grad_w.view(weight.shape) if need_w else grad_w


@torch.library.custom_op("visionnets::locally_connected2d", mutates_args=())
def _lc_op(x: Tensor, weight: Tensor, bias: Tensor | None, stride: list[int], padding: list[int]) -> Tensor:
    return _lc_kernel(x, weight, bias, stride, padding)


@torch.library.custom_op("visionnets::locally_connected2d_backward", mutates_args=())
def _lc_backward_op(grad_y: Tensor, x: Tensor, weight: Tensor, stride: list[int], padding: list[int],
                    need_x: bool, need_w: bool) -> tuple[Tensor, Tensor]:
    return _lc_backward_kernel(grad_y, x, weight, stride, padding, need_x, need_w)


@_lc_op.register_fake
def _(x, weight, bias, stride, padding):
    oh, ow, o = weight.shape[:3]
    return x.new_empty(x.shape[0], o, oh, ow)


@_lc_backward_op.register_fake
def _(grad_y, x, weight, stride, padding, need_x, need_w):
    return (x.new_empty(x.shape) if need_x else x.new_empty(0),
            weight.new_empty(weight.shape) if need_w else weight.new_empty(0))


@register_flop_formula(torch.ops.visionnets.locally_connected2d)
def _lc_flops(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    """2 B oh ow O C kh kw: one multiply-add per weight per example (``torch.utils.flop_counter``)."""
    return 2 * x_shape[0] * math.prod(w_shape)


@register_flop_formula(torch.ops.visionnets.locally_connected2d_backward)
def _lc_backward_flops(g_shape, x_shape, w_shape, stride, padding, need_x, need_w, out_shape=None, **kwargs) -> int:
    return 2 * x_shape[0] * math.prod(w_shape) * (int(need_x) + int(need_w))


class _LocallyConnected2dFn(torch.autograd.Function):
    """Autograd of ``visionnets::locally_connected2d`` (``setup_context`` style, with a ``vmap``
    rule, so that ``torch.func`` transforms work too); its backward is ``_LocallyConnected2dBackward``,
    itself differentiable."""

    @staticmethod
    def forward(x, weight, bias, stride, padding):
        return _lc_op(x, weight, bias, stride, padding)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias, stride, padding = inputs
        ctx.save_for_backward(x, weight)
        ctx.has_bias, ctx.stride, ctx.padding = bias is not None, stride, padding

    @staticmethod
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gx = gw = gb = None
        if need_x or need_w:
            gx, gw = _LocallyConnected2dBackward.apply(grad_y, x, weight, ctx.stride, ctx.padding, need_x, need_w)
        if need_b and ctx.has_bias:
            gb = grad_y.sum(0)
        return gx if need_x else None, gw if need_w else None, gb, None, None

    @staticmethod
    def vmap(info, in_dims, x, weight, bias, stride, padding):
        x_dim, w_dim, b_dim = in_dims[:3]
        if x_dim is not None and w_dim is None and b_dim is None:   # the common case: fold into the batch
            y = _lc_op(_fold(x, x_dim), weight, bias, stride, padding)
            return y.unflatten(0, (info.batch_size, -1)), 0
        return _vmap_loop(_lc_op, info.batch_size, in_dims, (x, weight, bias, stride, padding))


class _LocallyConnected2dBackward(torch.autograd.Function):
    """(dx, dW) = ``visionnets::locally_connected2d_backward``, differentiable again.

    dx = A_W^T g and dW = B_x^T g are linear in g, W and x, so for cotangents (u, v) of (dx, dW):
    d/dg = lc(u, W) + lc(x, v), d/dW = B_u^T g, d/dx = A_v^T g: the forward and this op again.
    """

    @staticmethod
    def forward(grad_y, x, weight, stride, padding, need_x, need_w):
        return _lc_backward_op(grad_y, x, weight, stride, padding, need_x, need_w)

    @staticmethod
    def setup_context(ctx, inputs, output):
        grad_y, x, weight, stride, padding, need_x, need_w = inputs
        ctx.save_for_backward(grad_y, x, weight)
        ctx.stride, ctx.padding, ctx.need = stride, padding, (need_x, need_w)

    @staticmethod
    def backward(ctx, gg_x, gg_w):
        grad_y, x, weight = ctx.saved_tensors
        (need_x, need_w), s, p = ctx.need, ctx.stride, ctx.padding
        want_g, want_x, want_w = ctx.needs_input_grad[:3]
        u = gg_x if need_x and gg_x is not None else None
        v = gg_w if need_w and gg_w is not None else None
        d_g = d_x = d_w = None
        if want_g and (u is not None or v is not None):
            parts = ([_LocallyConnected2dFn.apply(u, weight, None, s, p)] if u is not None else []) + \
                    ([_LocallyConnected2dFn.apply(x, v, None, s, p)] if v is not None else [])
            d_g = parts[0] if len(parts) == 1 else parts[0] + parts[1]
        if want_w and u is not None:
            d_w = _LocallyConnected2dBackward.apply(grad_y, u, weight, s, p, False, True)[1]
        if want_x and v is not None:
            d_x = _LocallyConnected2dBackward.apply(grad_y, x, v, s, p, True, False)[0]
        return d_g, d_x, d_w, None, None, None, None

    @staticmethod
    def vmap(info, in_dims, grad_y, x, weight, stride, padding, need_x, need_w):
        g_dim, x_dim, w_dim = in_dims[:3]
        if g_dim is not None and w_dim is None and not need_w:      # dx only: fold into the batch
            x = x.expand(info.batch_size, *x.shape) if x_dim is None else x.movedim(x_dim, 0)
            gx, gw = _lc_backward_op(_fold(grad_y, g_dim), x.flatten(0, 1), weight, stride, padding, need_x, False)
            return (gx.unflatten(0, (info.batch_size, -1)), gw), (0, None)
        return _vmap_loop(_lc_backward_op, info.batch_size, in_dims,
                          (grad_y, x, weight, stride, padding, need_x, need_w))


def _vmap_loop(op, batch_size: int, in_dims, args):
    """Apply ``op`` to each slice of the vmapped arguments and stack the results (dim 0)."""
    outs = [op(*[a.select(d, i) if isinstance(a, Tensor) and d is not None else a for a, d in zip(args, in_dims)])
            for i in range(batch_size)]
    if isinstance(outs[0], tuple):
        return tuple(torch.stack(o) for o in zip(*outs)), (0,) * len(outs[0])
    return torch.stack(outs), 0


def _fold(t: Tensor, dim: int) -> Tensor:
    return t.movedim(dim, 0).flatten(0, 1)


@_unbatched_ok
def locally_connected2d(input: Tensor, weight: Tensor, bias: Tensor | None = None,
                        stride=1, padding=0) -> Tensor:
    """Locally connected layer: a convolution with a different filter at every output location.

    y[b, o, i, j] = bias[o, i, j] + sum_{c, p, q} weight[i, j, o, c, p, q] x[b, c, i*s + p, j*s + q]

    over the zero-padded input. Shapes: input (B, C, H, W), weight (oh, ow, O, C, kh, kw),
    bias (O, oh, ow) or None, output (B, O, oh, ow) with oh = (H + 2 ph - kh) // sh + 1.

    >>> x = torch.randn(2, 3, 8, 8)
    >>> w = torch.randn(6, 6, 4, 3, 3, 3)
    >>> locally_connected2d(x, w).shape
    torch.Size([2, 4, 6, 6])
    """
    _check_local(input, weight, bias, stride, padding)
    s, p = list(pair(stride, "stride")), list(pair(padding, "padding", 0))
    y = _lc_reference(input, weight, bias, s, p) if _PORTABLE else _LocallyConnected2dFn.apply(input, weight, bias, s, p)
    return _format_like(y, input)


def locally_connected2d_transpose(input: Tensor, weight: Tensor, input_size, stride=1, padding=0) -> Tensor:
    """The adjoint of ``locally_connected2d`` in its input (as ``conv_transpose2d`` is of ``conv2d``):
    every location's ``weight[i, j]^T input[:, :, i, j]`` added back onto its window.

    input (B, O, oh, ow), weight (oh, ow, O, C, kh, kw), ``input_size`` the (H, W) of the
    layer's input -> (B, C, H, W). Differentiable in ``input`` and ``weight`` (any order).
    A decoder of a locally connected encoder (``visionnets.unsupervised.stages``).

    >>> x, w, z = torch.randn(2, 3, 8, 8), torch.randn(6, 6, 4, 3, 3, 3), torch.randn(2, 4, 6, 6)
    >>> lhs = (locally_connected2d(x, w) * z).sum()
    >>> rhs = (x * locally_connected2d_transpose(z, w, (8, 8))).sum()
    >>> torch.allclose(lhs, rhs, rtol=1e-4)
    True
    """
    oh, ow, o, c, kh, kw = weight.shape if weight.dim() == 6 else (None,) * 6
    h, w = pair(input_size, "input_size")
    if input.dim() != 4 or weight.dim() != 6 or tuple(input.shape[1:]) != (o, oh, ow):
        raise ConfigError(f"locally_connected2d_transpose: expected input (B, O, oh, ow) matching weight "
                          f"(oh, ow, O, C, kh, kw), got {tuple(input.shape)} and {tuple(weight.shape)}")
    like = input.new_zeros(()).expand(input.shape[0], c, h, w)      # the layer's input: its shape only
    _check_local(like, weight, None, stride, padding)
    s, p = list(pair(stride, "stride")), list(pair(padding, "padding", 0))
    if _PORTABLE:
        return torch.func.vjp(lambda t: _lc_reference(t, weight, None, s, p), like)[1](input)[0]
    return _LocallyConnected2dBackward.apply(input, like, weight, s, p, True, False)[0]


def _lc_reference(x: Tensor, weight: Tensor, bias: Tensor | None, stride, padding) -> Tensor:
    """``locally_connected2d`` in plain aten ops (``F.unfold`` + ``einsum``): slower and heavier
    (see ``benchmarks/layers.py``), but any exporter and runtime knows them (``portable()``)."""
    oh, ow, o, c, kh, kw = weight.shape
    cols = F.unfold(x, (kh, kw), padding=padding, stride=stride)          # (B, C*kh*kw, L)
    y = torch.einsum("bkl,lok->bol", cols, weight.reshape(oh * ow, o, c * kh * kw))
    y = y.reshape(x.shape[0], o, oh, ow)
    return y if bias is None else y + bias


_PORTABLE = False


@contextlib.contextmanager
def portable():
    """Within this block ``locally_connected2d`` runs as plain aten ops instead of the
    ``visionnets::locally_connected2d`` custom op (and local contrast normalization without its
    autograd.Function), so that a traced or exported graph (ONNX,
    a TorchScript file) runs where visionnets is not installed. ``visionnets export`` uses it.

    >>> x, w = torch.randn(2, 3, 8, 8), torch.randn(6, 6, 4, 3, 3, 3)
    >>> with portable():
    ...     y = locally_connected2d(x, w)
    >>> torch.allclose(y, locally_connected2d(x, w), atol=1e-5)
    True
    """
    global _PORTABLE
    before, _PORTABLE = _PORTABLE, True
    try:
        yield
    finally:
        _PORTABLE = before


def _format_like(y: Tensor, x: Tensor) -> Tensor:
    """``y`` in ``x``'s memory format: channels_last in, channels_last out (as ``nn.Conv2d``)."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return y.contiguous(memory_format=torch.channels_last)
    return y


# ---------------------------------------------------------------------------------------------
# Tiled convolution
# ---------------------------------------------------------------------------------------------

@_unbatched_ok
def tiled_conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1,
                 padding=0) -> Tensor:
    """Tiled convolution (Le et al., NIPS 2010): units ``tile`` steps apart share their weights.

    y[b, o, i, j] = bias[o] + sum_{c,p,q} weight[i mod th, j mod tw, o, c, p, q] x[b, c, i*s+p, j*s+q]

    Shapes: input (B, C, H, W), weight (th, tw, O, C, kh, kw), bias (O,) or None, output
    (B, O, oh, ow). A 1x1 tile is a convolution; a tile the size of the output is a locally
    connected layer. Computed as one grouped convolution over the th*tw shifted sub-grids
    (each sub-grid is a convolution of stride th*s, tw*s), or, when the tile is so large that
    the th*tw shifted copies of one example outweigh a full locally connected weight, as
    ``locally_connected2d`` with the tiles repeated. The choice does not depend on the batch
    size, so a model traced or exported at one batch size runs at any other.

    >>> x = torch.randn(2, 3, 9, 9)
    >>> w = torch.randn(2, 2, 4, 3, 3, 3)
    >>> tiled_conv2d(x, w).shape
    torch.Size([2, 4, 7, 7])
    """
    if input.dim() != 4 or weight.dim() != 6:
        raise ConfigError(f"tiled_conv2d: expected input (B, C, H, W) or (C, H, W) and weight (th, tw, O, C, kh, kw), "
                          f"got {tuple(input.shape)} and {tuple(weight.shape)}")
    th, tw, o, c, kh, kw = weight.shape
    if input.shape[1] != c:
        raise ConfigError(f"tiled_conv2d: input has {input.shape[1]} channels (shape "
                          f"{tuple(input.shape)}), weight {tuple(weight.shape)} expects {c}")
    if bias is not None and tuple(bias.shape) != (o,):
        raise ConfigError(f"tiled_conv2d: expected bias of shape {(o,)}, got {tuple(bias.shape)}")
    (sh, sw), (ph, pw) = pair(stride, "stride"), pair(padding, "padding", 0)
    oh, ow = conv_output_size(tuple(input.shape[2:]), (kh, kw), stride, padding)
    if th * tw == 1:
        return F.conv2d(input, weight[0, 0], bias, (sh, sw), (ph, pw))
    b, _, h, w = input.shape
    if th * tw * input[0].numel() > oh * ow * o * c * kh * kw:   # per example: the same path at every batch size
        rows = torch.arange(oh, device=weight.device) % th
        cols = torch.arange(ow, device=weight.device) % tw
        full = weight[rows[:, None], cols[None, :]]
        y = locally_connected2d(input, full, None, stride, padding)
        return _format_like(y if bias is None else y + bias.view(1, o, 1, 1), input)
    mh, mw = -(-oh // th), -(-ow // tw)  # outputs per sub-grid (the last ones may be cropped)
    sub_h, sub_w = (mh - 1) * th * sh + kh, (mw - 1) * tw * sw + kw
    need_h, need_w = (th - 1) * sh + sub_h, (tw - 1) * sw + sub_w
    xp = F.pad(input, (pw, max(need_w - w - pw, pw), ph, max(need_h - h - ph, ph)))
    shifted = [xp[:, :, a * sh:a * sh + sub_h, e * sw:e * sw + sub_w] for a in range(th) for e in range(tw)]
    y = F.conv2d(torch.cat(shifted, 1), weight.reshape(th * tw * o, c, kh, kw),
                 None, (th * sh, tw * sw), groups=th * tw)
    y = y.view(b, th, tw, o, mh, mw).permute(0, 3, 4, 1, 5, 2).reshape(b, o, mh * th, mw * tw)
    y = y[:, :, :oh, :ow]
    return _format_like(y if bias is None else y + bias.view(1, o, 1, 1), input)


# ---------------------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------------------

def gaussian_window(kernel_size, sigma: float | None = None, *, dtype=torch.float32,
                    device=None) -> Tensor:
    """A (kh, kw) Gaussian window normalized to sum 1; ``sigma`` defaults to kernel_size / 4.

    >>> gaussian_window(3, 1.0).sum().item()
    1.0
    """
    kh, kw = pair(kernel_size, "kernel_size")
    if sigma is not None and not sigma > 0:
        raise ConfigError(f"sigma: expected a positive number, got {sigma!r}")
    parts = []
    for k in (kh, kw):
        s = sigma if sigma is not None else k / 4
        t = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
        g = torch.exp(-t**2 / (2 * s * s))
        parts.append(g / g.sum())
    return torch.outer(*parts).to(dtype=dtype, device=device)


def check_pool_args(p: float, kernel_size, stride=None, padding=0, eps: float = 0.0) -> None:
    """Raise a ConfigError naming the argument unless p >= 1, eps >= 0 and padding <= kernel / 2."""
    if isinstance(p, bool) or not (isinstance(p, (int, float)) and p >= 1):
        raise ConfigError(f"p: expected a number >= 1, got {p!r}")
    if not (isinstance(eps, (int, float)) and eps >= 0):
        raise ConfigError(f"eps: expected a number >= 0, got {eps!r}")
    k, pad = pair(kernel_size, "kernel_size"), pair(padding, "padding", 0)
    if stride is not None:
        pair(stride, "stride")
    if pad[0] > k[0] // 2 or pad[1] > k[1] // 2:
        raise ConfigError(f"padding: {pad} should be at most half the kernel size {k}")


def _window_sum(x: Tensor, kernel_size, stride, padding, gaussian: bool) -> Tensor:
    """sum_{(p,q) in N(i,j)} w_pq x over each window, per channel, zero padding."""
    k, s, p = pair(kernel_size, "kernel_size"), pair(stride, "stride"), pair(padding, "padding", 0)
    conv_output_size(tuple(x.shape[2:]), k, s, p)
    if not gaussian:
        return F.avg_pool2d(x, k, s, p, count_include_pad=True) * (k[0] * k[1])
    c = x.shape[1]
    win = gaussian_window(k, dtype=x.dtype, device=x.device).expand(c, 1, *k)
    return F.conv2d(x, win, None, s, p, groups=c)


@_unbatched_ok
def lp_pool2d(input: Tensor, p: float, kernel_size, stride=None, padding=0, gaussian: bool = False,
              eps: float = 1e-6) -> Tensor:
    """Lp pooling: y = (sum_{(i,j) in N} w_ij |x_ij|^p + eps)^(1/p), for p >= 1.

    ``w`` is 1 (a plain sum, the tutorial's formula) or, with ``gaussian=True``, a Gaussian
    window of sigma kernel_size / 4 normalized to sum 1 (Kavukcuoglu et al., CVPR 2009).
    ``eps`` inside the root keeps the gradient finite at an all-zero window (where
    ``torch.nn.LPPool2d`` gives NaN). ``stride`` defaults to ``kernel_size``.

    >>> lp_pool2d(torch.ones(1, 1, 4, 4), 2, 2, eps=0.0)
    tensor([[[[2., 2.],
              [2., 2.]]]])
    """
    stride = kernel_size if stride is None else stride
    check_pool_args(p, kernel_size, stride, padding, eps)
    if input.dim() != 4:
        raise ConfigError(f"lp_pool2d: expected input (B, C, H, W) or (C, H, W), got shape {tuple(input.shape)}")
    powered = input * input if p == 2 else input.abs().pow(p)
    total = _window_sum(powered, kernel_size, stride, padding, gaussian)
    return (total + eps).sqrt() if p == 2 else (total + eps).pow(1.0 / p)


def l2_pool2d(input: Tensor, kernel_size, stride=None, padding=0, gaussian: bool = False,
              eps: float = 1e-6) -> Tensor:
    """L2 pooling (tutorial): y = sqrt(sum_{(i,j) in N} w_ij x_ij^2 + eps); see ``lp_pool2d``.

    The gradient at x = 0 is 0 (not NaN): dy/dx = w x / y with y >= sqrt(eps) > 0.

    >>> x = torch.zeros(1, 1, 2, 2, requires_grad=True)
    >>> l2_pool2d(x, 2).sum().backward(); x.grad.abs().sum().item()
    0.0
    """
    return lp_pool2d(input, 2, kernel_size, stride, padding, gaussian, eps)


# ---------------------------------------------------------------------------------------------
# Local contrast normalization (Jarrett, Kavukcuoglu, Ranzato, LeCun, ICCV 2009)
# ---------------------------------------------------------------------------------------------

def _check_norm(x: Tensor, kernel_size: int, where: str) -> None:
    if x.dim() != 4:
        raise ConfigError(f"{where}: expected input (B, C, H, W) or (C, H, W), got shape {tuple(x.shape)}")
    if not (isinstance(kernel_size, int) and kernel_size >= 1 and kernel_size % 2 == 1):
        raise ConfigError(f"{where}: kernel_size must be an odd int >= 1 (the window is centred), "
                          f"got {kernel_size!r}")


class _SymmetricBlur(torch.autograd.Function):
    """Separable blur of (B, 1, H, W) maps by a symmetric 1-D kernel g, zero padding ("same" size).

    The operator is self-adjoint (a correlation with zero padding is adjoint to the correlation
    with the flipped kernel, and g is symmetric), so the backward is the same two forward
    passes: on CPU, the backward of a 1-channel ``conv2d`` costs about 10x its forward.
    (``setup_context`` style with a generated vmap rule, so ``torch.func`` transforms work.)
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(m: Tensor, g: Tensor) -> Tensor:
        k = g.numel()
        r = k // 2
        return F.conv2d(F.conv2d(m, g.view(1, 1, k, 1), padding=(r, 0)), g.view(1, 1, 1, k), padding=(0, r))

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[1])

    @staticmethod
    def backward(ctx, grad: Tensor):
        (g,) = ctx.saved_tensors
        return _SymmetricBlur.apply(grad, g), None   # differentiable again: double backward works


def _local_mean(x: Tensor, kernel_size: int, sigma: float | None) -> Tensor:
    """sum_{c,p,q} w_cpq x[b,c,i+p,j+q] with w_cpq = g_pq / C, g a Gaussian summing to 1.

    Zero padding; each value is divided by the window's coverage sum_{(p,q) in image} g_pq, so a
    constant image has a constant local mean (no darkening at the borders). Returns (B, 1, H, W).
    The Gaussian is separable: two 1-D passes over the channel mean (``_SymmetricBlur``).
    """
    g = gaussian_window((kernel_size, 1), sigma, dtype=x.dtype, device=x.device).view(kernel_size)
    r = kernel_size // 2
    m = x.mean(1, keepdim=True)
    m = _SymmetricBlur.forward(m, g) if _PORTABLE else _SymmetricBlur.apply(m, g)
    h, w = x.shape[2:]
    cov_h = F.conv1d(x.new_ones(1, 1, h), g.view(1, 1, kernel_size), padding=r).view(h, 1)  # coverage
    cov_w = F.conv1d(x.new_ones(1, 1, w), g.view(1, 1, kernel_size), padding=r).view(1, w)
    return m / (cov_h * cov_w)


def local_mean2d(input: Tensor, kernel_size: int, sigma: float | None = None) -> Tensor:
    """The (B, 1, H, W) Gaussian-weighted mean over a kernel_size neighbourhood and all maps, zero
    padded and renormalized by the window's coverage at the borders (what LCN subtracts; see
    ``subtractive_norm2d``). On a crop of a bigger map it is exact at least kernel_size // 2
    positions from the crop's edges that are not the map's (model parallelism relies on it)."""
    _check_norm(input, kernel_size, "local_mean2d")
    return _local_mean(input, kernel_size, sigma)


@_unbatched_ok
def subtractive_norm2d(input: Tensor, kernel_size: int = 9, sigma: float | None = None) -> Tensor:
    """Subtractive normalization: v[b,c,i,j] = x[b,c,i,j] - sum_{c',p,q} w_c'pq x[b,c',i+p,j+q].

    ``w`` is a Gaussian window (sigma defaults to kernel_size / 4) normalized so that it sums to 1
    over the neighbourhood and all C feature maps. Zero padding at the borders with the window
    renormalized by its coverage, so a constant image maps to 0 everywhere. Each example is first
    shifted by one of its own values (which changes nothing in exact arithmetic: the window's
    weights sum to 1), so a constant image maps to exactly 0 in floating point too, at any size
    and scale.

    >>> subtractive_norm2d(torch.full((1, 2, 5, 5), 3.0)).abs().max().item()
    0.0
    """
    _check_norm(input, kernel_size, "subtractive_norm2d")
    centered = input - input[:, :1, :1, :1].detach()     # v does not depend on the shift
    return centered - _local_mean(centered, kernel_size, sigma)


@_unbatched_ok
def divisive_norm2d(input: Tensor, kernel_size: int = 9, sigma: float | None = None,
                    eps: float = 1e-4) -> Tensor:
    """Divisive normalization: y = v / max(mean_ij(sigma), sigma), sigma = sqrt(sum_{c,p,q} w_cpq v^2).

    ``w`` as in ``subtractive_norm2d``; the mean of sigma is over the spatial map of each example.
    sigma is floored at ``eps`` (sigma = sqrt(max(sum w v^2, eps^2))) so a flat region divides by
    eps, not 0, and the gradient stays finite.

    >>> v = torch.randn(2, 3, 8, 8)
    >>> divisive_norm2d(v).shape
    torch.Size([2, 3, 8, 8])
    """
    _check_norm(input, kernel_size, "divisive_norm2d")
    if not eps > 0:
        raise ConfigError(f"eps: expected a positive number, got {eps!r}")
    var = _local_mean(input * input, kernel_size, sigma)
    sig = var.clamp_min(eps * eps).sqrt()
    return input / torch.maximum(sig, sig.mean((2, 3), keepdim=True))


@_unbatched_ok
def local_contrast_norm2d(input: Tensor, kernel_size: int = 9, sigma: float | None = None,
                          eps: float = 1e-4) -> Tensor:
    """Local contrast normalization (Jarrett et al. 2009): subtractive, then divisive.

    The tutorial's h_{i+1} = (h_i - m_N) / sigma_N, with the Gaussian-weighted mean m and
    deviation sigma taken over a kernel_size x kernel_size neighbourhood and all feature maps,
    and sigma replaced by max(mean(sigma), sigma). Input and output (B, C, H, W).

    >>> y = local_contrast_norm2d(torch.randn(2, 4, 16, 16))
    >>> y.shape
    torch.Size([2, 4, 16, 16])
    """
    return divisive_norm2d(subtractive_norm2d(input, kernel_size, sigma), kernel_size, sigma, eps)


# ---------------------------------------------------------------------------------------------
# Random masks
# ---------------------------------------------------------------------------------------------

def uniform16(shape, device=None, generator: torch.Generator | None = None) -> Tensor:
    """Integers uniform on -2^15 .. 2^15 - 1 (int16) of ``shape``, four cut from each 64-bit draw
    of ``generator`` (the default one when None). Torch's CPU ``bernoulli`` draws one random
    number per element; masks compared against these cost a quarter of the draws and no
    floating-point conversion (``dropout`` below, the RBM's ``sample_bernoulli``)."""
    n = math.prod(shape)
    r = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-2**63, 2**63 - 1,
                                                                              generator=generator)
    return r.view(torch.int16)[:n].view(shape)


def plain_eager() -> bool:
    """True when nothing records this call: no TorchScript, ``jit.trace``, ``torch.compile``,
    ONNX export or ``torch.func`` transform, and not inside :func:`portable`. The one condition
    under which visionnets swaps a torch kernel for a faster one of its own (``dropout`` here,
    ``visionnets.nn.dense.linear``); everywhere else the standard operator runs."""
    if torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False
    if torch.onnx.is_in_onnx_export() or torch._C._are_functorch_transforms_active():
        return False
    return not _PORTABLE


def dropout(input: Tensor, p: float = 0.5, training: bool = True,
            generator: torch.Generator | None = None) -> Tensor:
    """``F.dropout`` (inverted dropout: each element zeroed with probability ``p``, the others
    scaled by 1 / (1 - p)), 4-5x faster on CPU: the mask comes from :func:`uniform16`, so ``p``
    is rounded to a multiple of 2^-16 (0.5, 0.25, ... exactly; the scale uses the rounded value,
    so the expectation is exactly the input). Measured by hand, 128 x 512 bfloat16 on 2 threads:
    169 us against ``F.dropout``'s 795 us. Elsewhere (GPU, or not :func:`plain_eager`: compile,
    export, tracing, ``torch.func``, ``portable()``) it is ``F.dropout``.

    >>> x = torch.ones(4, 1000)
    >>> y = dropout(x, 0.5)
    >>> sorted(set(y.flatten().tolist()))
    [0.0, 2.0]
    """
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"dropout: p must be in [0, 1], got {p!r}")
    if not training or p == 0.0:
        return input
    if not (plain_eager() and input.device.type == "cpu" and input.is_floating_point()
            and input.layout == torch.strided):
        return F.dropout(input, p, training)
    k = round(p * 65536)                    # u >= k - 2^15 keeps (65536 - k) of the 65536 values
    if k >= 65536:
        return input * 0.0
    keep = uniform16(input.shape, input.device, generator) >= k - 32768
    return input * keep.to(input.dtype).mul_(65536.0 / (65536 - k))
