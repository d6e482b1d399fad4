"""Model parallelism of locally connected nets (DistBelief, Dean et al., NIPS 2012).

The tutorial's "Our Solution": every layer of a locally connected network is split across
machines, so that only the activations at partition borders travel. Here K workers (processes
of one ``torch.distributed`` group: gloo on CPU, NCCL when every worker has a GPU) split every
feature map into the same grid of a x b blocks (a the divisor of K nearest sqrt(K), as in
``visionnets plan --partitions K``). Worker w:

- owns block w of every layer's output, and of every parameter that lives at a location (the
  filters of a locally connected layer at its block's positions): about 1/K of them;
- before each layer that reads a neighbourhood (a filter, a pooling window, a normalization
  window), receives from its neighbours the border rows and columns its windows need — only
  the intersections of their blocks with its window's reach, corners included — and, in the
  backward pass, sends back the gradients of exactly those borders (:class:`Exchange`);
- shares the weights of tied layers (convolution, tiled convolution), whose gradients are summed
  over the workers in the backward pass;
- multiplies its block of the top feature map by its columns of the first fully connected
  layer, and the workers sum the partial products (one all-reduce of a (batch, units) matrix),
  after which the rest of the classifier and the loss are the same on every worker.

Local contrast normalization divides by max(sigma, mean(sigma)), a mean over the whole map: the
workers sum their blocks' parts (an all-reduce of one number per example). Everything else is
exact: K workers compute the single process's outputs and gradients, up to the order of float
additions. Batch normalization and anything that is not a chain of layers cannot be split (a
one-line error names the layer).

    >>> from visionnets.partition import blocks
    >>> blocks((7, 9), 4)[3]          # worker 3 of 4 (a 2 x 2 grid) owns rows 3:7, columns 4:9
    Rect(r0=3, r1=7, c0=4, c1=9)

Train with ``visionnets train RECIPE --executor model_parallel --partitions K`` (the
Trainer's loop in every worker; :func:`fit_model_parallel`).
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from visionnets.distributed.procs import choose_backend, free_port, run_worker, spawn
from visionnets.errors import ConfigError
from visionnets.partition import (DIRECT_SUM_WORKERS, ExchangePlan, Rect, blocks, exchange_plan, grid, needed_rects,
                                  sum_bytes, sum_messages, window_of)
from visionnets.recipes import Recipe
from visionnets.train.checkpoint import load_checkpoint
from visionnets.train.record import final_record
from visionnets.train.rundir import RunDir
from visionnets.train.setup import EXECUTORS, Setup, objective_for
from visionnets.train.trainer import Trainer, trainer_options
from visionnets.nn import functional as VF
from visionnets.nn.activations import ACTIVATIONS
from visionnets.nn.local import LocallyConnected2d, TiledConv2d
from visionnets.nn.normalization import LocalContrastNorm2d
from visionnets.nn.pooling import LpPool2d


# ---------------------------------------------------------------------------------------------
# Communication (autograd-aware)
# ---------------------------------------------------------------------------------------------

class Comm:
    """The K workers of one model replica: their global ranks in ``group`` and the bytes this
    worker has sent (forward and backward exchanges, all-reduces)."""

    def __init__(self, rank: int, k: int, group=None, ranks: list[int] | None = None):
        self.rank, self.k, self.group = rank, k, group
        self.ranks = ranks or list(range(k))
        self.bytes_sent = 0
        self.messages = 0

    def exchange(self, sends: list[tuple[int, Tensor]], recvs: list[tuple[int, Tensor]]) -> None:
        """Send and receive these tensors with the workers named (indices within the replica)."""
        ops = [dist.P2POp(dist.isend, t.contiguous(), self.ranks[w], self.group) for w, t in sends]
        ops += [dist.P2POp(dist.irecv, t, self.ranks[w], self.group) for w, t in recvs]
        if ops:
            for req in dist.batch_isend_irecv(ops):
                req.wait()
        self.bytes_sent += sum(t.numel() * t.element_size() for _, t in sends)
        self.messages += len(sends)

    def all_reduce(self, t: Tensor) -> Tensor:
        """The sum of every worker's ``t``, the same bits on every worker. Up to
        ``DIRECT_SUM_WORKERS`` workers, each sends its tensor to every other and adds them in rank
        order (gloo's all_reduce of a few numbers takes about 2 ms on a 2-core VM, a message 0.1 ms);
        beyond, ``torch.distributed.all_reduce`` (counted as halving-doubling: ``partition.sum_bytes``)."""
        t = t.contiguous()
        if self.k == 1:
            return t.clone()
        if self.k > DIRECT_SUM_WORKERS:
            out = t.clone()
            dist.all_reduce(out, group=self.group)
            self.bytes_sent += sum_bytes(t.numel() * t.element_size(), self.k)
            self.messages += sum_messages(self.k)[0]
            return out
        others = [w for w in range(self.k) if w != self.rank]
        got = {w: torch.empty_like(t) for w in others}
        self.exchange([(w, t) for w in others], list(got.items()))
        got[self.rank] = t
        out = got[0].clone()
        for w in range(1, self.k):
            out += got[w]
        return out


class Exchange(torch.autograd.Function):
    """Owned block -> the region a window needs (own part + neighbours' borders); backward: the
    region's gradient split back, each border's gradient returned to its owner and added."""

    @staticmethod
    def forward(ctx, owned: Tensor, plan: "ExchangePlan", comm: Comm) -> Tensor:
        ctx.plan, ctx.comm = plan, comm
        region = owned.new_zeros(*owned.shape[:-2], *plan.region_shape)
        recvs = [(w, owned.new_empty(*owned.shape[:-2], dst.r1 - dst.r0, dst.c1 - dst.c0)) for w, dst in plan.recvs]
        comm.exchange([(w, owned[src.index]) for w, src in plan.sends], recvs)
        if plan.own is not None:
            region[plan.own[1].index] = owned[plan.own[0].index]
        for (_, dst), (_, t) in zip(plan.recvs, recvs):
            region[dst.index] = t
        return region

    @staticmethod
    def backward(ctx, grad: Tensor):
        plan, comm = ctx.plan, ctx.comm
        out = grad.new_zeros(*grad.shape[:-2], *plan.owned_shape)
        back = [(w, grad.new_empty(*grad.shape[:-2], src.r1 - src.r0, src.c1 - src.c0)) for w, src in plan.sends]
        comm.exchange([(w, grad[dst.index]) for w, dst in plan.recvs], back)
        if plan.own is not None:
            out[plan.own[0].index] += grad[plan.own[1].index]
        for (_, src), (_, t) in zip(plan.sends, back):
            out[src.index] += t
        return out, None, None


class _SumPartials(torch.autograd.Function):
    """Forward: the sum over workers. Backward: the gradient as is (what follows is the same on
    every worker, so each already holds the whole gradient)."""

    @staticmethod
    def forward(ctx, t: Tensor, comm: Comm) -> Tensor:
        return comm.all_reduce(t)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad, None


class _SumBoth(torch.autograd.Function):
    """Forward and backward: the sum over workers (a total used by every worker's own block)."""

    @staticmethod
    def forward(ctx, t: Tensor, comm: Comm) -> Tensor:
        ctx.comm = comm
        return comm.all_reduce(t)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return ctx.comm.all_reduce(grad), None


class _Shared(torch.autograd.Function):
    """Forward: a weight every worker holds (tied layers). Backward: its gradient summed over
    the workers, so every copy takes the same step."""

    @staticmethod
    def forward(ctx, w: Tensor, comm: Comm) -> Tensor:
        ctx.comm = comm
        return w.view_as(w)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return ctx.comm.all_reduce(grad), None


# ---------------------------------------------------------------------------------------------
# Partitioned layers
# ---------------------------------------------------------------------------------------------

_POINTWISE = (*set(ACTIVATIONS.values()), nn.LeakyReLU, nn.ELU, nn.GELU, nn.Softplus, nn.Dropout)


class _Spatial(nn.Module):
    """A layer that reads windows (k, s, p) per axis: its blocks' reach into its input."""

    pad_value = 0.0

    def setup(self, name: str, window, in_size: tuple[int, int], out_size: tuple[int, int], k: int,
              rank: int) -> None:
        self.name, self.window, self.in_size, self.out_size = name, window, in_size, out_size
        self.out_blocks = blocks(out_size, k)
        if any(r.area == 0 for r in self.out_blocks):
            a, b = grid(k)
            raise ConfigError(f"--partitions {k}: layer {name!r} has a {out_size[0]}x{out_size[1]} output, "
                              f"too small for {a} x {b} blocks; use fewer partitions")
        self.needed, self.pads = needed_rects(window, in_size, self.out_blocks)
        self.rank, self.block = rank, self.out_blocks[rank]

    def take(self, layer: nn.Module) -> None:
        """Copy this worker's part of ``layer``'s parameters (layers without located weights keep
        the layer itself, whole)."""

    def padded(self, region: Tensor) -> Tensor:
        pad = self.pads[self.rank]
        return F.pad(region, pad, value=self.pad_value) if any(pad) else region


class _LocalPart(_Spatial):
    """A locally connected layer's block: the filters at this worker's output positions."""

    def __init__(self, layer: LocallyConnected2d):
        super().__init__()
        self.stride = layer.stride
        self.has_bias = layer.bias is not None

    def take(self, layer: LocallyConnected2d) -> None:
        b = self.block
        self.weight = nn.Parameter(layer.weight.detach()[b.r0:b.r1, b.c0:b.c1].clone())
        self.bias = nn.Parameter(layer.bias.detach()[:, b.r0:b.r1, b.c0:b.c1].clone()) if self.has_bias else None

    def forward(self, region: Tensor) -> Tensor:
        return VF.locally_connected2d(self.padded(region), self.weight, self.bias, self.stride, 0)


class _TiedPart(_Spatial):
    """A convolution or tiled convolution: every worker holds the whole (tied) filter bank."""

    def __init__(self, layer: nn.Module, comm: Comm):
        super().__init__()
        self.layer, self.comm = layer, comm
        if isinstance(layer, nn.Conv2d) and (layer.dilation != (1, 1) or layer.padding_mode != "zeros"):
            raise ConfigError(f"--partitions: Conv2d with dilation {layer.dilation} or padding mode "
                              f"{layer.padding_mode!r} cannot be partitioned (only dilation 1, zero padding)")

    def forward(self, region: Tensor) -> Tensor:
        x, lay = self.padded(region), self.layer
        w = _Shared.apply(lay.weight, self.comm)
        b = _Shared.apply(lay.bias, self.comm) if lay.bias is not None else None
        if isinstance(lay, nn.Conv2d):
            return F.conv2d(x, w, b, lay.stride, 0, 1, lay.groups)
        th, tw = w.shape[:2]                           # tiled: the tile that starts at this block
        w = torch.roll(w, (-(self.block.r0 % th), -(self.block.c0 % tw)), (0, 1))
        return VF.tiled_conv2d(x, w, b, lay.stride, 0)


class _PoolPart(_Spatial):
    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer
        if isinstance(layer, nn.MaxPool2d):
            if layer.ceil_mode or VF.pair(layer.dilation, "dilation") != (1, 1):
                raise ConfigError("--partitions: MaxPool2d with ceil_mode or dilation cannot be partitioned")
            self.pad_value = float("-inf")
        if isinstance(layer, nn.AvgPool2d) and (not layer.count_include_pad or layer.ceil_mode
                                                 or layer.divisor_override):
            raise ConfigError("--partitions: AvgPool2d needs count_include_pad=True, ceil_mode=False and no "
                              "divisor_override to be partitioned")

    def forward(self, region: Tensor) -> Tensor:
        x, lay = self.padded(region), self.layer
        k = VF.pair(lay.kernel_size, "kernel_size")
        s = k if lay.stride is None else VF.pair(lay.stride, "stride")
        if isinstance(lay, nn.MaxPool2d):
            return F.max_pool2d(x, k, s)
        if isinstance(lay, nn.AvgPool2d):
            return F.avg_pool2d(x, k, s)
        return VF.lp_pool2d(x, lay.p, k, s, 0, lay.gaussian, lay.eps)


class _NormPart(_Spatial):
    """Local contrast normalization of a block: the subtractive step on the block and a border of
    r = kernel // 2, the divisive step on the block; mean(sigma) summed over the workers."""

    def __init__(self, layer: LocalContrastNorm2d, comm: Comm):
        super().__init__()
        self.layer, self.comm = layer, comm

    def forward(self, region: Tensor) -> Tensor:
        lay, need, b = self.layer, self.needed[self.rank], self.block
        r = lay.kernel_size // 2
        h, w = self.in_size
        mid = Rect(max(b.r0 - r, 0), min(b.r1 + r, h), max(b.c0 - r, 0), min(b.c1 + r, w))
        v = (region - VF.local_mean2d(region, lay.kernel_size, lay.sigma))[mid.shift(need).index]
        var = VF.local_mean2d(v * v, lay.kernel_size, lay.sigma)[b.shift(mid).index]
        sig = var.clamp_min(lay.eps * lay.eps).sqrt()
        mean = _SumBoth.apply(sig.sum((2, 3), keepdim=True), self.comm) / (h * w)
        return v[b.shift(mid).index] / torch.maximum(sig, mean)


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers of a chain (nested ``nn.Sequential``) in order; anything else is an error."""
    out: list[tuple[str, nn.Module]] = []

    def walk(prefix: str, m: nn.Module) -> None:
        if isinstance(m, nn.Sequential):
            for name, child in m.named_children():
                walk(f"{prefix}.{name}" if prefix else name, child)
        elif list(m.children()):
            raise ConfigError(f"--partitions: layer {prefix or 'model'!r} ({type(m).__name__}) is not a chain of "
                              f"layers; model parallelism splits nn.Sequential stacks")
        else:
            out.append((prefix, m))

    walk("", model)
    return out


class PartitionedNet(nn.Module):
    """Worker ``comm.rank``'s part of a chain of layers split into K = ``comm.k`` spatial blocks.

    ``forward(x)`` takes the whole batch of images (every worker reads its own window of them)
    and returns the whole output (the same on every worker), so the loss, the metrics and the
    optimizer are those of the single process. ``full_state_dict()`` gathers the whole model's
    weights (a collective: every worker calls it); ``load_full(state)`` takes this worker's part.
    """

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...], comm: Comm):
        super().__init__()
        self.comm, k = comm, comm.k
        layers = _leaves(model)
        if len(input_shape) != 3:
            raise ConfigError(f"--partitions: model parallelism needs image inputs (C, H, W), got {input_shape}")
        x = torch.zeros(1, *input_shape)
        self.parts = nn.ModuleList()
        self.kinds: list[str] = []
        self.layout: dict[str, tuple[str, Any]] = {}       # full parameter name -> (how split, its part)
        self.plans: list[ExchangePlan | None] = []
        self.input_rect: Rect | None = None
        owned_prev: list[Rect] | None = None              # blocks of the current map (None: the input)
        i = 0
        self.head_start = len(layers)
        while i < len(layers):
            name, lay = layers[i]
            if isinstance(lay, nn.Flatten):
                self.head_start = i
                break
            if isinstance(lay, (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)):
                raise ConfigError(f"--partitions: layer {name!r} ({type(lay).__name__}) normalizes over the whole "
                                  f"map and batch and cannot be partitioned; use norm: lcn or none")
            with torch.no_grad():
                y = lay.eval()(x)
            lay.train()
            if isinstance(lay, _POINTWISE):
                self.parts.append(lay)
                self.kinds.append("pointwise")
                self.plans.append(None)
                x = y
                i += 1
                continue
            if isinstance(lay, LocallyConnected2d):
                part = _LocalPart(lay)
            elif isinstance(lay, (nn.Conv2d, TiledConv2d)):
                part = _TiedPart(lay, comm)
            elif isinstance(lay, (nn.MaxPool2d, nn.AvgPool2d, LpPool2d)):
                part = _PoolPart(lay)
            elif isinstance(lay, LocalContrastNorm2d):
                part = _NormPart(lay, comm)
            else:
                raise ConfigError(f"--partitions: layer {name!r} ({type(lay).__name__}) cannot be partitioned "
                                  f"(supported: locally connected, tiled and convolution layers, max/avg/L2 "
                                  f"pooling, local contrast normalization, activations, then Flatten and Linear)")
            part.setup(name, window_of(lay), tuple(x.shape[2:]), tuple(y.shape[2:]), k, comm.rank)
            part.take(lay)
            if owned_prev is None:
                self.input_rect = part.needed[comm.rank]
                self.plans.append(None)
            else:
                self.plans.append(exchange_plan(comm.rank, owned_prev, part.needed))
            owned_prev = part.out_blocks
            self._record_layout(name, lay, part)
            self.parts.append(part)
            self.kinds.append("spatial")
            x = y
            i += 1
        if owned_prev is None:
            raise ConfigError("--partitions: the model has no spatial layer to partition")
        self.top = owned_prev[comm.rank]
        self.top_shape = tuple(x.shape[1:])
        head = layers[self.head_start:]
        if len(head) < 2 or not isinstance(head[1][1], nn.Linear):
            raise ConfigError("--partitions: the model must end in a classifier (Flatten, then Linear) read "
                              "from the partitioned maps")
        fc_name, fc = head[1]
        c, h, w = self.top_shape
        idx = torch.arange(c * h * w).view(c, h, w)[:, self.top.r0:self.top.r1, self.top.c0:self.top.c1].reshape(-1)
        self.register_buffer("columns", idx, persistent=False)
        self.fc_weight = nn.Parameter(fc.weight.detach()[:, idx].clone())
        self.fc_bias = nn.Parameter(fc.bias.detach().clone()) if fc.bias is not None else None
        self.layout[f"{fc_name}.weight"] = ("columns", self.fc_weight)
        if fc.bias is not None:
            self.layout[f"{fc_name}.bias"] = ("replicated", self.fc_bias)
        self.rest = nn.Sequential()
        for name, lay in head[2:]:
            self.rest.add_module(name.replace(".", "_"), lay)
            for pname, p in lay.named_parameters():
                self.layout[f"{name}.{pname}"] = ("replicated", p)
        self.names = [n for n, _ in model.named_parameters()]        # the whole model's order
        if set(self.names) != set(self.layout) or len(list(self.parameters())) != len(self.layout):
            raise ConfigError(f"--partitions: parameters {sorted(set(self.names) ^ set(self.layout))} of the "
                              f"model cannot be partitioned")
        self.name_of = {id(p): name for name, (_, p) in self.layout.items()}

    def _record_layout(self, name: str, lay: nn.Module, part: nn.Module) -> None:
        if isinstance(part, _LocalPart):
            self.layout[f"{name}.weight"] = ("location", part.weight)
            if part.bias is not None:
                self.layout[f"{name}.bias"] = ("location_bias", part.bias)
        else:
            for pname, p in lay.named_parameters():
                self.layout[f"{name}.{pname}"] = ("replicated", p)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ConfigError(f"model parallel: expected images (B, C, H, W), got shape {tuple(x.shape)}")
        h = x[self.input_rect.index]
        for part, kind, plan in zip(self.parts, self.kinds, self.plans):
            if kind == "spatial" and plan is not None:
                h = Exchange.apply(h, plan, self.comm)
            h = part(h)
        partial = h.reshape(h.shape[0], -1) @ self.fc_weight.t()
        y = _SumPartials.apply(partial, self.comm)
        if self.fc_bias is not None:
            y = y + self.fc_bias
        return self.rest(y)

    # --------------------------------------------------------------- whole-model state
    def local_part(self, name: str, full: Tensor) -> Tensor:
        """This worker's part of the whole model's tensor ``name`` (a weight or its optimizer state)."""
        kind, p = self.layout[name]
        if kind == "columns":
            return full[:, self.columns]
        if kind in ("location", "location_bias"):
            part = next(q for q in self.parts if isinstance(q, _LocalPart) and (q.weight is p or q.bias is p))
            b = part.block
            return full[b.r0:b.r1, b.c0:b.c1] if kind == "location" else full[:, b.r0:b.r1, b.c0:b.c1]
        return full

    def load_full(self, state: dict[str, Tensor]) -> None:
        """Copy this worker's part of the whole model's ``state`` into its parameters."""
        with torch.no_grad():
            for name, (_, p) in self.layout.items():
                if name not in state:
                    raise ConfigError(f"model parallel: the state has no {name!r}")
                p.copy_(self.local_part(name, state[name]))

    def full_state_dict(self) -> dict[str, Tensor]:
        """The whole model's parameters (every worker calls it; every worker gets them)."""
        full = self.gather({name: p for name, (_, p) in self.layout.items()})
        return {name: full[name] for name in self.names}

    def gather(self, local: dict[str, Tensor]) -> dict[str, Tensor]:
        """Whole tensors from every worker's parts (a collective). ``local`` maps a parameter's
        name, or ``name|anything`` for a tensor split like it (its gradient, its optimizer
        state), to this worker's part; a tensor of another shape (a step count) is rank 0's."""
        mine = {key: t.detach().cpu() for key, t in local.items()}
        every: list[Any] = [None] * self.comm.k
        dist.all_gather_object(every, (self.comm.rank, mine), group=self.comm.group)
        return self.assemble(dict(every))

    def assemble(self, parts: dict[int, dict[str, Tensor]]) -> dict[str, Tensor]:
        """Whole tensors from every worker's parts (``parts[rank]``: name or ``name|key`` -> that
        worker's part; a replicated tensor, or one of another shape, is taken from rank 0).
        Pure: any worker's PartitionedNet knows every worker's blocks."""
        full: dict[str, Tensor] = {}
        for key, t in parts[0].items():
            name = key.split("|", 1)[0]
            kind, p = self.layout[name]
            if kind == "replicated" or t.shape != p.shape:
                full[key] = t.clone()
            else:
                full[key] = self._assemble(kind, name, {rank: state[key] for rank, state in parts.items()})
        return full

    def owned(self) -> list[tuple[str, nn.Parameter]]:
        """The parameters this worker keeps on a parameter server, in order: its split ones and,
        on worker 0, the replicated ones too (the other workers receive those from worker 0)."""
        return [(n, p) for n, (kind, p) in self.layout.items() if kind != "replicated" or self.comm.rank == 0]

    def replicated(self) -> list[nn.Parameter]:
        """The parameters every worker holds whole (tied filters, the classifier after the sum)."""
        return [p for kind, p in self.layout.values() if kind == "replicated"]

    def _assemble(self, kind: str, name: str, parts: dict[int, Tensor]) -> Tensor:
        k = self.comm.k
        if kind == "columns":
            c, h, w = self.top_shape
            out = parts[0].new_zeros(parts[0].shape[0], c * h * w)
            grid_idx = torch.arange(c * h * w).view(c, h, w)
            tops = blocks((h, w), k)
            for rank in range(k):
                t = tops[rank]
                out[:, grid_idx[:, t.r0:t.r1, t.c0:t.c1].reshape(-1)] = parts[rank]
            return out
        part = next(q for q in self.parts if isinstance(q, _LocalPart) and name.startswith(q.name + "."))
        oh, ow = part.out_size
        first = parts[0]
        if kind == "location":
            out = first.new_zeros(oh, ow, *first.shape[2:])
            for rank in range(k):
                b = part.out_blocks[rank]
                out[b.r0:b.r1, b.c0:b.c1] = parts[rank]
        else:
            out = first.new_zeros(first.shape[0], oh, ow)
            for rank in range(k):
                b = part.out_blocks[rank]
                out[:, b.r0:b.r1, b.c0:b.c1] = parts[rank]
        return out

    def shares(self) -> list[float]:
        """Every worker's share of the parameters that are split (located filters, classifier
        columns): about 1/K each, exactly its blocks' share of the maps (a collective)."""
        every = torch.zeros(self.comm.k)
        every[self.comm.rank] = sum(p.numel() for kind, p in self.layout.values() if kind != "replicated")
        dist.all_reduce(every, group=self.comm.group)
        return (every / every.sum()).tolist()


# ---------------------------------------------------------------------------------------------
# The whole model and optimizer, seen from a worker (what checkpoints save and load)
# ---------------------------------------------------------------------------------------------

class WholeModel:
    """``state_dict()``: the whole model's weights as gathered by the last :meth:`refresh` (a
    collective); ``load_state_dict(state)``: this worker's part of a whole model's weights."""

    def __init__(self, net: PartitionedNet):
        self.net, self.state = net, None

    def refresh(self) -> None:
        self.state = self.net.full_state_dict()

    def state_dict(self) -> dict[str, Tensor]:
        return self.state

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        extra = sorted(set(state) - set(self.net.names))
        if extra:
            raise RuntimeError(f"unexpected keys\n  {', '.join(extra)}\n")
        self.net.load_full(state)


class WholeOptimizer:
    """The whole model's optimizer state, gathered from the workers' optimizers over their parts
    (indexed like an optimizer over the whole model's parameters), and scattered back on load."""

    def __init__(self, net: PartitionedNet, optimizer: torch.optim.Optimizer):
        if len(optimizer.param_groups) != 1:
            raise ConfigError("model parallel: expected an optimizer with one parameter group")
        self.net, self.optimizer, self.state = net, optimizer, None
        self.local_names = [net.name_of[id(p)] for p in optimizer.param_groups[0]["params"]]

    def refresh(self) -> None:
        sd = self.optimizer.state_dict()
        local, plain = {}, {}
        for i, st in sd["state"].items():
            for key, val in st.items():
                if torch.is_tensor(val):
                    local[f"{self.local_names[i]}|{key}"] = val
                else:
                    plain[(self.local_names[i], key)] = val
        full = self.net.gather(local)
        index = {name: j for j, name in enumerate(self.net.names)}
        state: dict[int, dict] = {}
        for key, val in full.items():
            name, sub = key.split("|", 1)
            state.setdefault(index[name], {})[sub] = val
        for (name, sub), val in plain.items():
            state.setdefault(index[name], {})[sub] = val
        group = {**sd["param_groups"][0], "params": list(range(len(self.net.names)))}
        self.state = {"state": state, "param_groups": [group]}

    def state_dict(self) -> dict[str, Any]:
        return self.state

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        index = {name: j for j, name in enumerate(self.net.names)}
        state = {}
        for i, name in enumerate(self.local_names):
            full = sd["state"].get(index[name])
            if full is None:
                continue
            kind, p = self.net.layout[name]
            state[i] = {key: self.net.local_part(name, v) if torch.is_tensor(v) and kind != "replicated"
                        and v.dim() == p.dim() else v for key, v in full.items()}
        group = {**sd["param_groups"][0], "params": list(range(len(self.local_names)))}
        self.optimizer.load_state_dict({"state": state, "param_groups": [group]})


# ---------------------------------------------------------------------------------------------
# The executor: the Trainer's loop in every worker
# ---------------------------------------------------------------------------------------------

class ModelParallelTrainer(Trainer):
    """The Trainer on worker ``rank`` of a model split into K parts: every worker runs the same
    batches (its window of them), the same loss and the same epoch record; rank 0 writes the run
    directory, whose checkpoints hold the whole model (gathered at each save), so ``local`` and
    ``ddp`` can continue a model-parallel run and the other way round."""

    def __init__(self, net: PartitionedNet, objective, dataset, *, rank: int, **kwargs):
        super().__init__(net, objective, dataset, writer=rank == 0, **kwargs)
        self.rank, self.sent_before = rank, 0
        self.whole, self.whole_optimizer = WholeModel(net), WholeOptimizer(net, self.optimizer)

    def checkpointed(self):
        self.whole.refresh()
        self.whole_optimizer.refresh()
        return self.whole, self.whole_optimizer

    def executor_stats(self) -> dict[str, Any]:
        """Also the bytes worker 0 sent since the last record (borders and sums, training and evaluation)."""
        sent, self.sent_before = self.model.comm.bytes_sent - self.sent_before, self.model.comm.bytes_sent
        return {"name": "model_parallel", "partitions": self.model.comm.k, "rank0_bytes_sent": sent,
                "threads": torch.get_num_threads()}


def _worker(rank: int, k: int, port: int, backend: str, device_type: str, recipe: dict, dataset, weights: dict,
            run_dir: str, resume: bool, progress: bool, threads: int, callbacks: tuple, started: float) -> None:
    def body(rec: Recipe, model: nn.Module, device: torch.device) -> None:
        net = PartitionedNet(model, dataset.input_shape, Comm(rank, k))
        del model                                # the whole model's weights: this worker keeps its block
        ModelParallelTrainer(net, objective_for(rec, dataset), dataset, rank=rank, run_dir=RunDir(run_dir),
                             started=started, progress=progress and rank == 0, callbacks=callbacks if rank == 0 else (),
                             **{**trainer_options(rec), "device": device, "threads": threads}).fit(resume=resume)

    run_worker(rank, k, port, backend, device_type, threads, recipe, dataset, weights, body)


@EXECUTORS.register("model_parallel")
def fit_model_parallel(setup: Setup, *, progress: bool = True, callbacks: tuple = (), partitions: int = 2,
                       backend: str | None = None, threads: int | None = None) -> tuple[dict, list]:
    """The ``model_parallel`` executor: the model split into ``partitions`` spatial blocks, one
    process each (``threads`` torch threads each; default the cores shared out); ``backend`` gloo
    or nccl (default: NCCL when every worker has a GPU). The model is checked before any process
    starts: a layer that cannot be split, or blocks larger than a map, is a one-line error."""
    rec, run_dir = setup.recipe, setup.run_dir
    if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
        raise ConfigError(f"--partitions: expected an integer >= 1, got {partitions!r}")
    if rec.train.freeze:
        raise ConfigError("train.freeze: the model-parallel blocks train every parameter they hold; train frozen "
                          "modules with --executor local or ddp")
    if rec.train.compile:
        raise ConfigError("train.compile: the model-parallel step exchanges borders inside autograd and is not "
                          "compiled; set train.compile=false")
    PartitionedNet(setup.model, setup.dataset.input_shape, Comm(0, partitions))     # the checks, in this process
    backend, device_type = choose_backend(rec, partitions, backend, "model parallel")
    threads = threads or max(1, (os.cpu_count() or 1) // partitions)
    run_dir.write_executor("model_parallel", {"partitions": partitions, "backend": backend})
    weights = {k: v.detach().cpu() for k, v in setup.model.state_dict().items()}
    spawn(_worker, partitions, (partitions, free_port(), backend, device_type, rec.to_dict(), setup.dataset, weights,
                                str(run_dir.path), setup.resume, progress, threads, tuple(callbacks), setup.started),
          "model parallel")
    load_checkpoint(run_dir.weights("best"), setup.model)
    history = run_dir.read_metrics()
    return final_record(history, history[-1].get("best_epoch") if history else None), history
