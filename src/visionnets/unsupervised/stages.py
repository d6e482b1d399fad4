"""Unsupervised training of the stages of a vision net: each stage reconstructs its own input
from a sparse pooled code (Le et al., ICML 2012; the tutorial: "trained by reconstructing the
input of each layer, sparsity on the code").

A stage is a child ``stageK`` of the model with a ``filter`` (``nn.Conv2d``, tied weights;
``LocallyConnected2d``, untied; or ``TiledConv2d``), then whatever the model puts after it
(rectify, pool, LCN: ``visionnets.models.convnet`` and ``le2012`` build them so). With
z = f(x; W_e) the filter's linear responses (no bias) and f* the adjoint of f (its transpose:
``conv_transpose2d``, ``locally_connected2d_transpose``), the stage learns W_e and a decoder
W_d of the same shape by

    L(x) = mean_b ||f*(z; W_d) - x||^2 + lambda * mean_b sum L2Pool(z)

(reconstruction ICA with the L2-pooling sparsity of Le et al.). The L2 pooling has the stage's
own pool window and stride (3x3, stride 1 where the stage does not pool); ``eps`` inside its
root keeps the gradient finite at 0. Every encoder filter (one per output unit) is kept at unit
norm (renormalized after each step, as RICA normalizes its rows), so the sparsity cannot be
dodged by shrinking the encoder; the decoder is free and starts as the
encoder's weight scaled to the input's brightness (least squares on a sample of 2,048 images). Only the
filter's weight is learned (its bias, if any, is left for fine-tuning, except in a centered
stage, where it holds -W mean).

Per stage, three options change the code and the decoder (``pretrain_stages``): ``winners: k``
decodes from only the k largest |z| at each location (a k-sparse code), ``tied`` decodes with W_e
itself, ``center`` works on the input minus its running mean (held afterwards in the filter's
bias). One winner, tied and centered, over a stage that sees its whole input, is spherical
k-means of that input: the ``le2012_faces`` recipe's top stage, where the L1 code at this scale
finds no face unit (docs/unsupervised.md).

``pretrain_stages`` trains them greedily (stage 1 to convergence, then stage 2 on the outputs
of stage 1, ...) or jointly (all stages at once, each on its current input from the stages
below, as the paper trains its three layers together); the supervised fine-tuning of the
whole stack is then the ordinary training run. Recipes ask for it with
``pretrain: {method: stages, params: {schedule: joint, sparsity: 0.1}}``.

    >>> import torch
    >>> from visionnets.models import build_model
    >>> net = build_model({"name": "le2012", "kernel": 5, "maps": 4, "stages": 2}, (1, 16, 16), 0)
    >>> stats = pretrain_stages(net, torch.rand(32, 1, 16, 16), schedule="joint", epochs=1, batch_size=16)
    >>> [(s["stage"], sorted(s["epochs"][0])) for s in stats]
    [('stage1', ['epoch', 'loss', 'reconstruction_error', 'sparsity']), ('stage2', ['epoch', 'loss', 'reconstruction_error', 'sparsity'])]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionnets.errors import ConfigError, DataError, per_stage
from visionnets.nn import functional as VF
from visionnets.nn.local import LocallyConnected2d, TiledConv2d

SCHEDULES = ("greedy", "joint")
SAMPLE = 2048           # images that start a group's decoders and means, and find its dead units each epoch


def encode(filt: nn.Module, x: Tensor, weight: Tensor | None = None) -> Tensor:
    """The filter's linear responses f(x; W) without bias (``weight`` defaults to its own)."""
    w = filt.weight if weight is None else weight
    if isinstance(filt, nn.Conv2d):
        return F.conv2d(x, w, None, filt.stride, filt.padding, filt.dilation, filt.groups)
    if isinstance(filt, LocallyConnected2d):
        return VF.locally_connected2d(x, w, None, filt.stride, filt.padding)
    if isinstance(filt, TiledConv2d):
        return VF.tiled_conv2d(x, w, None, filt.stride, filt.padding)
    raise ConfigError(f"stage filter: a {type(filt).__name__}; expected nn.Conv2d, LocallyConnected2d or TiledConv2d")


def decode(filt: nn.Module, z: Tensor, weight: Tensor, input_size: tuple[int, int]) -> Tensor:
    """f*(z; W): the adjoint of ``encode`` in its input, for an input of size ``input_size``."""
    if isinstance(filt, nn.Conv2d):
        (kh, kw), (sh, sw), (ph, pw) = filt.kernel_size, filt.stride, filt.padding
        if filt.groups != 1 or filt.dilation != (1, 1) or isinstance(filt.padding, str):
            raise ConfigError("stage filter: nn.Conv2d with groups, dilation or string padding has no decoder here")
        extra = (input_size[0] - ((z.shape[2] - 1) * sh - 2 * ph + kh), input_size[1] - ((z.shape[3] - 1) * sw - 2 * pw + kw))
        return F.conv_transpose2d(z, weight, None, filt.stride, filt.padding, extra)
    if isinstance(filt, LocallyConnected2d):
        return VF.locally_connected2d_transpose(z, weight, input_size, filt.stride, filt.padding)
    # tiled (and any other linear filter): the adjoint as the vector-Jacobian product at 0
    like = z.new_zeros(z.shape[0], filt.in_channels, *input_size)
    return torch.func.vjp(lambda t: encode(filt, t, weight), like)[1](z)[0]


def winners_only(z: Tensor, winners: int) -> Tensor:
    """``z`` (B, maps, H, W) with, at every location, all but the ``winners`` largest |z| across maps set to 0."""
    if winners >= z.shape[1]:
        return z
    kth = z.detach().abs().topk(winners, dim=1).values[:, -1:]
    return z * (z.detach().abs() >= kth)


def stage_loss(filt: nn.Module, x: Tensor, decoder: Tensor, sparsity: float = 0.1, pool_size: int = 3,
               pool_stride: int = 1, eps: float = 1e-2, weight: Tensor | None = None,
               winners: int = 0) -> dict[str, Tensor]:
    """``mean_b ||f*(c; W_d) - x||^2 + sparsity * mean_b sum L2Pool(z)``, z = f(x; W_e), the code c = z
    or, with ``winners`` = k > 0, z with only its k largest responses at each location kept: the parts and the total."""
    z = encode(filt, x, weight)
    x_hat = decode(filt, winners_only(z, winners) if winners else z, decoder, tuple(x.shape[2:]))
    pooled = VF.l2_pool2d(z, pool_size, pool_stride, pool_size // 2 if pool_stride == 1 else 0, eps=eps)
    rec = (x_hat - x).pow(2).flatten(1).sum(1).mean()
    sp = pooled.flatten(1).sum(1).mean()
    return {"loss": rec + sparsity * sp, "reconstruction_error": rec, "sparsity": sp}


def find_stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's children ``stage1``, ``stage2``, ... that have a ``filter``, in order."""
    stages = [(n, m) for n, m in model.named_children() if n.startswith("stage") and hasattr(m, "filter")]
    if not stages:
        raise ConfigError(f"pretrain: method 'stages' needs a model of stages (stage1.filter, ...: "
                          f"convnet or le2012); this {type(model).__name__} has none")
    return stages


def _pool_of(stage: nn.Module) -> tuple[int, int]:
    """The (size, stride) of the stage's own pooling, for the sparsity's L2 pool; 3, 1 without one."""
    pool = getattr(stage, "pool", None)
    if pool is None:
        return 3, 1
    size = VF.pair(pool.kernel_size, "kernel_size")[0]
    stride = VF.pair(pool.stride if pool.stride is not None else pool.kernel_size, "stride")[0]
    return (size, stride) if size % 2 == 1 or stride > 1 else (size + 1, 1)


@torch.no_grad()
def _unit_norm_(w: Tensor) -> None:
    """Each filter of a conv (O, C, kh, kw), locally connected or tiled (..., O, C, kh, kw) weight to norm 1."""
    w.div_(w.flatten(-3).norm(dim=-1).clamp_min(1e-12)[..., None, None, None])


@torch.no_grad()
def _start_group(stages, decoders: list[Tensor], group: list[int], h: Tensor, means: list, wins: list[int],
                 gen: torch.Generator) -> None:
    """Before a group of stages trains, on one sample ``h`` of images: each centered stage's input
    mean starts as the sample's; a stage with a code of winners starts its filters from the sample's
    patches (k-means' start from data); each untied decoder starts at the encoder's weight times
    the least-squares scale c = <x_hat, x> / <x_hat, x_hat> (x_hat the tied reconstruction), so
    that the first steps fit the filters rather than the overall gain (an unscaled transpose of 32
    5x5 filters rebuilds MNIST digits 30x too bright)."""
    h = h.to(torch.get_default_dtype())
    for i, (_, stage) in enumerate(stages[:group[-1] + 1]):
        if i in group:
            if means[i] is not None:
                means[i].copy_(h.mean(0))
            hc = h if means[i] is None else h - means[i]
            if wins[i]:
                _reseed_(stage.filter, hc, wins[i], gen, every=True)
            if means[i] is not None:
                _center_bias_(stage.filter, means[i])
            if decoders[i] is not stage.filter.weight:
                x_hat = decode(stage.filter, encode(stage.filter, hc), stage.filter.weight, tuple(h.shape[2:]))
                scale = (x_hat * hc).sum() / (x_hat * x_hat).sum().clamp_min(1e-12)
                decoders[i].copy_(stage.filter.weight * scale.clamp_min(0.0))
        h = stage(h)


@torch.no_grad()
def _center_bias_(filt: nn.Module, mean: Tensor) -> None:
    """The filter's bias set to -f(mean; W): the filter then responds to its input minus ``mean``."""
    filt.bias.copy_(-encode(filt, mean[None])[0])


@torch.no_grad()
def _reseed_(filt: nn.Module, h: Tensor, winners: int, gen: torch.Generator, every: bool = False) -> int:
    """Units that are among the ``winners`` largest responses for none of the examples ``h`` (at
    their location; anywhere for a convolution) take the input patch of a random example of ``h``,
    at unit norm, as k-means re-seeds its empty clusters (``every``: all units, the start from
    data). Returns how many units were re-seeded."""
    z = encode(filt, h).abs()
    dead = ~(z >= z.topk(winners, dim=1).values[:, -1:]).any(0)                   # (O, oh, ow)
    if isinstance(filt, nn.Conv2d):
        dead = dead.all(2).all(1)[:, None, None]
    if every:
        dead = torch.ones_like(dead)
    where = dead.nonzero()
    if not len(where):
        return 0
    o, i, j = where.unbind(1)
    patches = F.unfold(h, filt.kernel_size, dilation=1, padding=filt.padding, stride=filt.stride)   # (B, C*kh*kw, L)
    n, (oh, ow) = len(where), z.shape[2:]
    if isinstance(filt, nn.Conv2d):                                                # a random location each
        i = torch.randint(oh, (n,), generator=gen)
        j = torch.randint(ow, (n,), generator=gen)
    b = torch.randint(len(h), (n,), generator=gen)
    new = F.normalize(patches[b, :, i * ow + j], dim=1).view(n, *filt.weight.shape[-3:]).to(filt.weight.dtype)
    if isinstance(filt, nn.Conv2d):
        filt.weight[o] = new
    else:
        filt.weight[i, j, o] = new
    return n


def _check_center(stages) -> None:
    for name, stage in stages:
        if not isinstance(stage.filter, LocallyConnected2d) or stage.filter.bias is None:
            raise ConfigError(f"pretrain.params.center: {name}.filter must be locally connected with a bias (its "
                              f"bias holds -W mean); le2012 with model.bias: true builds such stages")


def _reseed_stages(stages, group: list[int], wins: list[int], means: list, x: Tensor, gen: torch.Generator,
                   device) -> dict[int, int]:
    """``_reseed_`` every stage of ``group`` with a code of winners, on a sample of its inputs
    (centered where the stage is); then the centered stages' biases follow their new filters."""
    if not any(wins[i] for i in group):
        return {}
    out = {}
    with torch.no_grad():
        h = x[torch.randperm(len(x), generator=gen)[:SAMPLE]].to(device, torch.get_default_dtype())
        for i, (_, stage) in enumerate(stages[:group[-1] + 1]):
            if i in group and wins[i]:
                out[i] = _reseed_(stage.filter, h if means[i] is None else h - means[i], wins[i], gen)
                if means[i] is not None:
                    _center_bias_(stage.filter, means[i])
            h = stage(h)
    return out


def pretrain_stages(model: nn.Module, x: Tensor, schedule: str = "greedy", epochs: int = 5, lr: float = 1e-3,
                    batch_size: int = 64, sparsity: float = 0.1, eps: float = 1e-2, seed: int = 0,
                    winners: int | list[int] = 0, tied: bool | list[bool] = False,
                    center: bool | list[bool] = False,
                    device: str | torch.device = "cpu", verbose: bool = False) -> list[dict]:
    """Train every stage's filter of ``model`` (in place) to reconstruct its own input; see the module.

    ``x``: the training images (N, C, H, W), labels not needed. ``schedule``: ``greedy`` (each
    stage ``epochs`` epochs on the outputs of the trained stages below) or ``joint`` (all stages
    together, ``epochs`` epochs). Adam with ``lr``. ``winners``: 0, or k > 0 to decode from only
    the k largest responses at each location (with k = 1, ``tied`` and ``center`` a stage learns
    spherical k-means of its input). ``tied``: the decoder is the encoder's weight (as in RICA)
    instead of a weight of its own (suited to stages whose locations do not overlap: where they
    do, unit-norm filters rebuild each pixel once per location that covers it, too bright, and only
    a decoder of its own can scale down). ``center``: the stage works on its input minus the input's
    running mean, which its filter's bias then subtracts (locally connected stages with a bias).
    ``winners``, ``tied`` and ``center`` are one value for every stage or a list of one per stage.
    With winners, the filters start from patches of the images and units that win no image of a
    sample are re-seeded after each epoch, as k-means re-seeds empty clusters. Returns per stage
    its name and per-epoch means of the loss, the reconstruction error and the sparsity term
    (and, with winners, how many units were re-seeded), and the schedule.
    """
    from visionnets.unsupervised._base import log_line, progress

    if schedule not in SCHEDULES:
        raise ConfigError(f"pretrain.params.schedule: {schedule!r}; expected one of {', '.join(SCHEDULES)}")
    if not (isinstance(sparsity, (int, float)) and sparsity >= 0):
        raise ConfigError(f"pretrain.params.sparsity: expected a number >= 0, got {sparsity!r}")
    if x.dim() != 4:
        raise DataError(f"pretrain: method 'stages' needs images (N, C, H, W); got shape {tuple(x.shape)}")
    stages = find_stages(model)
    wins, ties, centers = (per_stage(v, len(stages), f"pretrain.params.{n}", k) for n, v, k in
                           (("winners", winners, int), ("tied", tied, bool), ("center", center, bool)))
    _check_center([s for s, c in zip(stages, centers) if c])
    for (name, stage), k in zip(stages, wins):
        if k and not isinstance(stage.filter, (nn.Conv2d, LocallyConnected2d)):
            raise ConfigError(f"pretrain.params.winners: {name}.filter is a {type(stage.filter).__name__}; a code of "
                              f"winners needs a convolutional or locally connected filter")
    device = torch.device(device)
    model.to(device)
    was_training = model.training
    model.eval()                                    # dropout off, batch norm frozen, while codes are computed
    decoders = [s.filter.weight if t else s.filter.weight.detach().clone().requires_grad_()
                for (_, s), t in zip(stages, ties)]
    means = [None] * len(stages)                    # the centered stages' input means, of the input's shape
    if any(centers):
        with torch.no_grad():
            h = x[:1].to(device, torch.get_default_dtype())
            for i, (_, stage) in enumerate(stages):
                means[i], h = torch.zeros_like(h[0]) if centers[i] else None, stage(h)
    gen = torch.Generator().manual_seed(seed)
    groups = [[i] for i in range(len(stages))] if schedule == "greedy" else [list(range(len(stages)))]
    stats = [{"stage": n, "schedule": schedule, "epochs": []} for n, _ in stages]
    for group in groups:
        params = [p for i in group for p in dict.fromkeys((stages[i][1].filter.weight, decoders[i]))]
        opt = torch.optim.Adam(params, lr=lr)
        for i in group:
            _unit_norm_(stages[i][1].filter.weight)
        _start_group(stages, decoders, group, x[torch.randperm(len(x), generator=gen)[:SAMPLE]].to(device), means, wins,
                     gen)
        for epoch in progress(range(epochs), verbose, f"pretrain {'+'.join(stages[i][0] for i in group)}"):
            order = torch.randperm(len(x), generator=gen)
            sums = {i: {} for i in group}
            n = 0
            for lo in range(0, len(x), batch_size):
                h = x[order[lo:lo + batch_size]].to(device, torch.get_default_dtype())
                total = 0.0
                for i, (_, stage) in enumerate(stages[:group[-1] + 1]):
                    if i in group:
                        pool, stride = _pool_of(stage)
                        if means[i] is not None:
                            means[i].lerp_(h.mean(0), 0.01)          # the running mean of the stage's input
                        hc = h if means[i] is None else h - means[i]
                        parts = stage_loss(stage.filter, hc, decoders[i], sparsity, pool, stride, eps, winners=wins[i])
                        total = total + parts["loss"]
                        for k, v in parts.items():
                            sums[i][k] = sums[i].get(k, 0.0) + float(v.detach())
                    if i < group[-1]:
                        with torch.no_grad():
                            h = stage(h)          # the next stage's input, never differentiated
                opt.zero_grad(set_to_none=True)
                total.backward()
                opt.step()
                for i in group:
                    _unit_norm_(stages[i][1].filter.weight)
                    if means[i] is not None:
                        _center_bias_(stages[i][1].filter, means[i])
                n += 1
            reseeded = _reseed_stages(stages, group, wins, means, x, gen, device)
            for i in group:
                row = {"epoch": epoch + 1, **{k: v / n for k, v in sums[i].items()}}
                if wins[i]:
                    row["reseeded"] = reseeded[i]
                stats[i]["epochs"].append(row)
                log_line(verbose, f"pretrain {stages[i][0]} epoch {epoch + 1}: "
                                  + " ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch"))
    model.train(was_training)
    return stats
