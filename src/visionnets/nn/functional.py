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
======================  ===========================================================================

Only ``locally_connected2d`` has a hand-written backward (``_LocallyConnected2dFn``): autograd of
an ``unfold`` + ``einsum`` version materializes several copies of the unfolded input and is slow
(see ``benchmarks/layers.py`` and ``docs/layers.md``). Everything else is plain torch code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from visionnets.errors import ConfigError

__all__ = [
    "locally_connected2d", "tiled_conv2d", "lp_pool2d", "l2_pool2d", "gaussian_window",
    "subtractive_norm2d", "divisive_norm2d", "local_contrast_norm2d", "conv_output_size",
    "check_pool_args",
]

# Work on at most this many bytes of unfolded input at a time: the locally connected layer
# unfolds a band of output rows, multiplies it, and reuses the buffer for the next band. A band
# that stays in cache through its three matmuls is faster than one huge unfolded copy kept for
# the backward (measured, 1 thread, fwd + bwd: 4 MiB bands 1.74x / 1.33x Conv2d on the issue's
# shapes (b) / (a), 32 MiB bands 2.00x / 1.65x), and it bounds peak memory.
CHUNK_BYTES = 4 * 2**20


def _int(v):
    """A size: an int, or (under ``torch.jit.trace``, where shapes are traced) a 0-d integer tensor."""
    if isinstance(v, torch.Tensor) and v.dim() == 0 and not v.is_floating_point():
        return int(v)
    return v


def _pair(value, name: str, minimum: int = 1) -> tuple[int, int]:
    value = _int(value)
    pair = (value, value) if isinstance(value, int) else tuple(_int(v) for v in value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= minimum for v in pair):
        raise ConfigError(f"{name}: expected an int >= {minimum} or a pair of them, got {value!r}")
    return pair


def conv_output_size(size: tuple[int, int], kernel_size, stride=1, padding=0) -> tuple[int, int]:
    """Output (height, width) of a valid sliding window: ``(size + 2 padding - kernel) // stride + 1``.

    >>> conv_output_size((32, 28), 5, stride=1, padding=0)
    (28, 24)
    """
    (h, w), (kh, kw) = size, _pair(kernel_size, "kernel_size")
    (sh, sw), (ph, pw) = _pair(stride, "stride"), _pair(padding, "padding", 0)
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
        raise ConfigError(f"locally_connected2d: expected input (B, C, H, W), got shape {tuple(x.shape)}")
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
    location l the forward multiplies (B, K) @ (K, O), the backward (O, B) @ (B, K) for dW and
    (K, O) @ (O, B) for dcols; each operand is a (possibly transposed) view, never a copy.
    """

    def __init__(self, x: Tensor, weight: Tensor, stride, padding):
        self.oh, self.ow, self.o, self.c, self.kh, self.kw = weight.shape
        self.b = x.shape[0]
        self.sh, self.sw = _pair(stride, "stride")
        self.ph, self.pw = _pair(padding, "padding", 0)
        self.hp, self.wp = x.shape[2] + 2 * self.ph, x.shape[3] + 2 * self.pw
        self.k = self.c * self.kh * self.kw
        row_bytes = self.ow * self.k * self.b * x.element_size()
        self.rows = max(1, min(self.oh, CHUNK_BYTES // max(row_bytes, 1)))

    def bands(self):
        for r0 in range(0, self.oh, self.rows):
            yield r0, min(self.rows, self.oh - r0)

    def batch_last(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> zero-padded (C, Hp, Wp, B), contiguous."""
        xt = x.new_zeros(self.c, self.hp, self.wp, self.b)
        xt[:, self.ph:self.hp - self.ph, self.pw:self.wp - self.pw].copy_(x.permute(1, 2, 3, 0))
        return xt

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


class _LocallyConnected2dFn(torch.autograd.Function):
    """y = W @ unfold(x) location by location, in bands of output rows; see ``locally_connected2d``.

    Forward and backward each unfold one band at a time into a reused buffer of at most
    ``CHUNK_BYTES`` (when the whole unfolded input fits in one band it is kept for the backward
    instead of unfolded again). Per location l the backward computes
    dW[l] = g[l] @ cols[l]^T and dcols[l] = W[l]^T @ g[l], and adds dcols back onto the input
    windows (``scatter_add``) instead of ``F.fold``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, stride, padding):
        geo = _Geometry(x, weight, stride, padding)
        xt = geo.batch_last(x)
        w = weight.reshape(geo.oh * geo.ow, geo.o, geo.k)
        n = geo.oh * geo.ow
        y = x.new_empty(geo.b, geo.o, geo.oh, geo.ow)
        y_flat = y.view(geo.b, geo.o, n)
        buf = x.new_empty(geo.rows * geo.ow, geo.k, geo.b)
        out = x.new_empty(geo.rows * geo.ow, geo.b, geo.o)  # one band's (L, B, O) result
        for r0, rows in geo.bands():
            l0, l1 = r0 * geo.ow, (r0 + rows) * geo.ow
            cols = geo.gather(xt, r0, rows, buf)
            band = out[: l1 - l0]
            torch.bmm(cols.transpose(1, 2), w[l0:l1].transpose(1, 2), out=band)  # (B,K)@(K,O)
            y_flat[:, :, l0:l1].copy_(band.permute(1, 2, 0))
        del out
        if bias is not None:
            y += bias
        ctx.geo, ctx.has_bias = geo, bias is not None
        # one band: keep it for dW instead of unfolding again; then the backward needs no xt
        # (x itself is saved, free, for a second backward through the same graph)
        keep = geo.rows == geo.oh and ctx.needs_input_grad[1]
        ctx.cols, ctx.saved_x = (buf if keep else None), keep
        ctx.save_for_backward(x if keep else xt, weight)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y: Tensor):
        geo: _Geometry = ctx.geo
        xt, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        n = geo.oh * geo.ow
        g_flat = grad_y.reshape(geo.b, geo.o, n)
        w = weight.reshape(n, geo.o, geo.k)
        grad_x = grad_w = grad_b = None
        if need_w:
            grad_w = weight.new_empty(n, geo.o, geo.k)
        gxt = weight.new_zeros(geo.c, geo.hp, geo.wp, geo.b) if need_x else None
        kept, ctx.cols = ctx.cols, None  # reused (overwritten) below; a second backward unfolds again
        if kept is None and ctx.saved_x:
            xt = geo.batch_last(xt)  # the saved x: a second backward through the same graph
        if kept is None:
            buf, rows_per_band = weight.new_empty(geo.rows * geo.ow, geo.k, geo.b), geo.rows
        else:  # the forward's single band, walked a row (>= 8 locations) at a time so that the
            buf, rows_per_band = kept, -(-8 // geo.ow)  # (L, B, O) copy of the gradient stays small
        starts = list(range(0, geo.oh, rows_per_band))
        part = rows_per_band * geo.ow * geo.b * geo.o          # numbers in one part's (L, B, O) gradient
        # With the band kept, the parts go last to first and the gradient copy needs no memory of
        # its own: it lives in grad_w's first part (written last) and, for that last step, in the
        # kept band's second part (consumed by then), where these are large enough.
        borrow = (kept is not None and need_w and need_x and len(starts) > 1
                  and rows_per_band * geo.ow * geo.o * geo.k >= part and rows_per_band * geo.ow * geo.k * geo.b >= part)
        if borrow:
            starts.reverse()
            gt_bufs = (grad_w[: rows_per_band * geo.ow].view(-1)[:part],
                       kept[rows_per_band * geo.ow: 2 * rows_per_band * geo.ow].view(-1)[:part])
        else:
            gt_bufs = (weight.new_empty(part),) * 2
        for r0 in starts:
            rows = min(rows_per_band, geo.oh - r0)
            l0, l1 = r0 * geo.ow, (r0 + rows) * geo.ow
            cols = buf[l0:l1] if kept is not None else buf[: l1 - l0]
            gt = gt_bufs[r0 == 0][: (l1 - l0) * geo.b * geo.o].view(l1 - l0, geo.b, geo.o)
            gt.copy_(g_flat[:, :, l0:l1].permute(2, 0, 1))  # (L, B, O)
            if need_w:
                if kept is None:
                    geo.gather(xt, r0, rows, buf)
                torch.bmm(gt.transpose(1, 2), cols.transpose(1, 2), out=grad_w[l0:l1])
            if need_x:
                torch.bmm(w[l0:l1].transpose(1, 2), gt.transpose(1, 2), out=cols)
                geo.scatter_add(gxt, cols, r0, rows)
        del buf, kept, cols, gt, gt_bufs
        if need_x:
            core = gxt[:, geo.ph:geo.hp - geo.ph, geo.pw:geo.wp - geo.pw]
            grad_x = core.permute(3, 0, 1, 2).contiguous()
            del gxt
        if need_w:
            grad_w = grad_w.view(weight.shape)
        if need_b and ctx.has_bias:
            grad_b = grad_y.sum(0)
        return grad_x, grad_w, grad_b, None, None


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
    return _LocallyConnected2dFn.apply(input, weight, bias, stride, padding)


# ---------------------------------------------------------------------------------------------
# Tiled convolution
# ---------------------------------------------------------------------------------------------

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
        raise ConfigError(f"tiled_conv2d: expected input (B, C, H, W) and weight (th, tw, O, C, kh, kw), "
                          f"got {tuple(input.shape)} and {tuple(weight.shape)}")
    th, tw, o, c, kh, kw = weight.shape
    if input.shape[1] != c:
        raise ConfigError(f"tiled_conv2d: input has {input.shape[1]} channels (shape "
                          f"{tuple(input.shape)}), weight {tuple(weight.shape)} expects {c}")
    if bias is not None and tuple(bias.shape) != (o,):
        raise ConfigError(f"tiled_conv2d: expected bias of shape {(o,)}, got {tuple(bias.shape)}")
    (sh, sw), (ph, pw) = _pair(stride, "stride"), _pair(padding, "padding", 0)
    oh, ow = conv_output_size(tuple(input.shape[2:]), (kh, kw), stride, padding)
    if th * tw == 1:
        return F.conv2d(input, weight[0, 0], bias, (sh, sw), (ph, pw))
    b, _, h, w = input.shape
    if th * tw * input[0].numel() > oh * ow * o * c * kh * kw:   # per example: the same path at every batch size
        rows = torch.arange(oh, device=weight.device) % th
        cols = torch.arange(ow, device=weight.device) % tw
        full = weight[rows[:, None], cols[None, :]]
        y = locally_connected2d(input, full, None, stride, padding)
        return y if bias is None else y + bias.view(1, o, 1, 1)
    mh, mw = -(-oh // th), -(-ow // tw)  # outputs per sub-grid (the last ones may be cropped)
    sub_h, sub_w = (mh - 1) * th * sh + kh, (mw - 1) * tw * sw + kw
    need_h, need_w = (th - 1) * sh + sub_h, (tw - 1) * sw + sub_w
    xp = F.pad(input, (pw, max(need_w - w - pw, pw), ph, max(need_h - h - ph, ph)))
    shifted = [xp[:, :, a * sh:a * sh + sub_h, e * sw:e * sw + sub_w] for a in range(th) for e in range(tw)]
    y = F.conv2d(torch.cat(shifted, 1), weight.reshape(th * tw * o, c, kh, kw),
                 None, (th * sh, tw * sw), groups=th * tw)
    y = y.view(b, th, tw, o, mh, mw).permute(0, 3, 4, 1, 5, 2).reshape(b, o, mh * th, mw * tw)
    y = y[:, :, :oh, :ow]
    return y if bias is None else y + bias.view(1, o, 1, 1)


# ---------------------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------------------

def gaussian_window(kernel_size, sigma: float | None = None, *, dtype=torch.float32,
                    device=None) -> Tensor:
    """A (kh, kw) Gaussian window normalized to sum 1; ``sigma`` defaults to kernel_size / 4.

    >>> gaussian_window(3, 1.0).sum().item()
    1.0
    """
    kh, kw = _pair(kernel_size, "kernel_size")
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
    k, pad = _pair(kernel_size, "kernel_size"), _pair(padding, "padding", 0)
    if stride is not None:
        _pair(stride, "stride")
    if pad[0] > k[0] // 2 or pad[1] > k[1] // 2:
        raise ConfigError(f"padding: {pad} should be at most half the kernel size {k}")


def _window_sum(x: Tensor, kernel_size, stride, padding, gaussian: bool) -> Tensor:
    """sum_{(p,q) in N(i,j)} w_pq x over each window, per channel, zero padding."""
    k, s, p = _pair(kernel_size, "kernel_size"), _pair(stride, "stride"), _pair(padding, "padding", 0)
    conv_output_size(tuple(x.shape[2:]), k, s, p)
    if not gaussian:
        return F.avg_pool2d(x, k, s, p, count_include_pad=True) * (k[0] * k[1])
    c = x.shape[1]
    win = gaussian_window(k, dtype=x.dtype, device=x.device).expand(c, 1, *k)
    return F.conv2d(x, win, None, s, p, groups=c)


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
    if input.dim() == 3:                    # one unbatched (C, H, W) input, as torch's pooling takes it
        return lp_pool2d(input[None], p, kernel_size, stride, padding, gaussian, eps)[0]
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
        raise ConfigError(f"{where}: expected input (B, C, H, W), got shape {tuple(x.shape)}")
    if not (isinstance(kernel_size, int) and kernel_size >= 1 and kernel_size % 2 == 1):
        raise ConfigError(f"{where}: kernel_size must be an odd int >= 1 (the window is centred), "
                          f"got {kernel_size!r}")


class _SymmetricBlur(torch.autograd.Function):
    """Separable blur of (B, 1, H, W) maps by a symmetric 1-D kernel g, zero padding ("same" size).

    The operator is self-adjoint (a correlation with zero padding is adjoint to the correlation
    with the flipped kernel, and g is symmetric), so the backward is the same two forward
    passes: on CPU, the backward of a 1-channel ``conv2d`` costs about 10x its forward.
    """

    @staticmethod
    def forward(ctx, m: Tensor, g: Tensor) -> Tensor:
        ctx.save_for_backward(g)
        k = g.numel()
        r = k // 2
        return F.conv2d(F.conv2d(m, g.view(1, 1, k, 1), padding=(r, 0)), g.view(1, 1, 1, k), padding=(0, r))

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
    m = _SymmetricBlur.apply(x.mean(1, keepdim=True), g)
    h, w = x.shape[2:]
    cov_h = F.conv1d(x.new_ones(1, 1, h), g.view(1, 1, kernel_size), padding=r).view(h, 1)  # coverage
    cov_w = F.conv1d(x.new_ones(1, 1, w), g.view(1, 1, kernel_size), padding=r).view(1, w)
    return m / (cov_h * cov_w)


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

