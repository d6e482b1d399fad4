"""One stage of the network of Le et al. (ICML 2012): local filtering -> L2 pooling -> LCN.

"Each stage consists of local filtering, L2 pooling, LCN ... trained by reconstructing the
input of each layer, sparsity on the code" (tutorial, "Unsupervised Learning With 1B
Parameters"). With z = W_e x the responses of a locally connected filter bank (no weight
sharing), p = sqrt(H z^2 + eps) their L2 pooling over a spatial neighbourhood, and W_d a
decoder of the same locally connected shape, the stage minimizes (RICA-style)

    L(x) = ||W_d^T z - x||^2 + lambda * sum p,        z = W_e x,   p = L2Pool(z)

where ``W_d^T z`` puts every location's reconstruction ``W_d[i, j]^T z[:, i, j]`` back at its
patch and sums the overlaps (``F.fold``). The trained stage's output is ``LCN(p)``.

    >>> import torch
    >>> stage = LocalStage(1, 4, kernel_size=5, input_size=(12, 12), pool_size=3, lcn_size=3)
    >>> stage(torch.randn(2, 1, 12, 12)).shape
    torch.Size([2, 4, 8, 8])
    >>> hist = train_local_stage(stage, torch.randn(16, 1, 12, 12), epochs=1, batch_size=8)
    >>> sorted(hist[0])
    ['epoch', 'loss', 'reconstruction_error', 'sparsity']
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from visionnets.errors import ConfigError, DataError
from visionnets.nn import functional as VF
from visionnets.nn.local import LocallyConnected2d
from visionnets.nn.normalization import LocalContrastNorm2d
from visionnets.nn.pooling import L2Pool2d


def local_decode(z: torch.Tensor, w_dec: torch.Tensor, input_size: tuple[int, int], stride=1,
                 padding=0) -> torch.Tensor:
    """``W_d^T z``: every location's ``w_dec[i, j]^T z[:, :, i, j]`` summed back into the image.

    z (B, K, oh, ow); w_dec (oh, ow, K, C, kh, kw) (a LocallyConnected2d weight) -> (B, C, H, W).
    The adjoint of ``locally_connected2d`` when ``w_dec`` equals the encoder's weight.
    """
    oh, ow, k, c, kh, kw = w_dec.shape
    if z.shape[1:] != (k, oh, ow):
        raise DataError(f"local_decode: code has shape {tuple(z.shape)}; expected (B, {k}, {oh}, {ow})")
    cols = torch.einsum("bkl,lkd->bdl", z.flatten(2), w_dec.reshape(oh * ow, k, c * kh * kw))
    return F.fold(cols, input_size, (kh, kw), stride=VF._pair(stride, "stride"),
                  padding=VF._pair(padding, "padding", 0))


def local_stage_loss(x: torch.Tensor, w_enc: torch.Tensor, w_dec: torch.Tensor, sparsity: float = 0.1,
                     pool_size: int = 3, stride=1, padding=0, eps: float = 1e-2) -> dict[str, torch.Tensor]:
    """``mean_b ||W_d^T (W_e x) - x||^2 + lambda * mean_b sum L2Pool(W_e x)``; returns the parts and the total.

    The pooling is over ``pool_size`` x ``pool_size`` neighbourhoods of each map, stride 1, padded
    to keep the size; ``eps`` inside its root keeps the gradient finite at 0.
    """
    z = VF.locally_connected2d(x, w_enc, None, stride, padding)
    x_hat = local_decode(z, w_dec, tuple(x.shape[2:]), stride, padding)
    pooled = VF.l2_pool2d(z, pool_size, 1, pool_size // 2, eps=eps)
    rec = (x_hat - x).pow(2).flatten(1).sum(1).mean()
    sp = pooled.flatten(1).sum(1).mean()
    return {"loss": rec + sparsity * sp, "reconstruction_error": rec, "sparsity": sp}


class LocalStage(nn.Module):
    """Local filtering -> L2 pooling -> LCN, with a locally connected decoder for training.

    ``filter`` is ``LocallyConnected2d(in_channels, out_channels, kernel_size, stride,
    input_size=input_size, bias=False)``; ``pool`` is ``L2Pool2d(pool_size, stride=1,
    padding=pool_size // 2)`` (keeps the map size); ``lcn`` is ``LocalContrastNorm2d(out_channels,
    lcn_size)``; ``decoder_weight`` has the filter's weight shape. ``forward`` gives the stage's
    output (B, out_channels, oh, ow); ``code`` the pooled code before LCN; ``reconstruct`` the
    input rebuilt from the filter responses.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, input_size: tuple[int, int],
                 stride: int = 1, pool_size: int = 5, lcn_size: int = 5, eps: float = 1e-2):
        super().__init__()
        if pool_size % 2 != 1:
            raise ConfigError(f"LocalStage: pool_size={pool_size}; expected an odd size (the map keeps its size)")
        self.filter = LocallyConnected2d(in_channels, out_channels, kernel_size, stride=stride, bias=False,
                                         input_size=input_size)
        self.pool = L2Pool2d(pool_size, stride=1, padding=pool_size // 2, eps=eps)
        self.lcn = LocalContrastNorm2d(out_channels, kernel_size=lcn_size)
        self.decoder_weight = nn.Parameter(self.filter.weight.detach().clone())
        self.input_size, self.stride, self.pool_size, self.eps = tuple(input_size), stride, pool_size, eps

    def code(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.filter(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lcn(self.code(x))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return local_decode(self.filter(x), self.decoder_weight, self.input_size, self.stride)

    def loss(self, x: torch.Tensor, sparsity: float = 0.1) -> dict[str, torch.Tensor]:
        return local_stage_loss(x, self.filter.weight, self.decoder_weight, sparsity, self.pool_size,
                                self.stride, 0, self.eps)


def train_local_stage(stage: LocalStage, x: torch.Tensor, epochs: int = 5, lr: float = 1e-3,
                      batch_size: int = 64, sparsity: float = 0.1, seed: int = 0,
                      verbose: bool = False) -> list[dict]:
    """Train ``stage`` (encoder and decoder) by Adam on ``local_stage_loss``; returns per-epoch means.

    x: (N, C, H, W) on the stage's device. After each step every decoder filter (one per output
    unit) is projected to norm <= 1, so the penalty cannot be dodged by a small encoder and a
    large decoder.
    """
    if x.dim() != 4 or tuple(x.shape[2:]) != stage.input_size:
        raise DataError(f"train_local_stage: x has shape {tuple(x.shape)}; expected (N, C, {stage.input_size[0]}, "
                        f"{stage.input_size[1]})")
    from visionnets.unsupervised._base import log_line, progress

    params = [stage.filter.weight, stage.decoder_weight]
    opt = torch.optim.Adam(params, lr=lr)
    g = torch.Generator(device=x.device).manual_seed(seed)
    history = []
    for epoch in progress(range(epochs), verbose, "LocalStage"):
        order = torch.randperm(x.shape[0], generator=g, device=x.device)
        sums, n = {}, 0
        for lo in range(0, x.shape[0], batch_size):
            parts = stage.loss(x[order[lo:lo + batch_size]], sparsity)
            opt.zero_grad(set_to_none=True)
            parts["loss"].backward()
            opt.step()
            with torch.no_grad():
                w = stage.decoder_weight
                norms = w.flatten(3).norm(dim=3)[..., None, None, None]   # (oh, ow, K, 1, 1, 1)
                w.div_(norms.clamp_min(1.0))
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            n += 1
        history.append({"epoch": epoch + 1, **{k: v / n for k, v in sums.items()}})
        log_line(verbose, f"LocalStage epoch {epoch + 1}: " + " ".join(f"{k} {v / n:.4g}" for k, v in sums.items()))
    return history
