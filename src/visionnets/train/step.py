"""One training step, the same for every executor: the tutorial's FPROP and BPROP.

    seeded augmentation -> FPROP (the objective's loss) -> finite-loss check -> BPROP -> clipping

The parameter update is the caller's: an optimizer step (one process, DDP workers) or a
push of the gradients to the parameter server (Downpour replicas). The random numbers of the
step (augmentation, dropout) come from ``step_seeds(seed, stream, step)``, so the same step
draws the same numbers in every executor and when it is redone.

    >>> import torch
    >>> from visionnets.data.batch import Batch
    >>> from visionnets.objectives import Supervised
    >>> net = torch.nn.Linear(3, 2)
    >>> out = train_step(net, Supervised(), Batch(x=torch.ones(4, 3), y=torch.tensor([0, 1, 0, 1])),
    ...                  seed=0, stream=0, step=0, params=list(net.parameters()))
    >>> net.weight.grad.shape
    torch.Size([2, 3])
"""

from __future__ import annotations

import functools
import warnings
from typing import Callable

import torch
from torch import nn

from visionnets.data.batch import Batch
from visionnets.device import fast_bf16
from visionnets.errors import TrainingError
from visionnets.objectives import Output
from visionnets.train.seeds import step_seeds


def seed_forward(seed: int, device: torch.device) -> None:
    """Seed the generator the forward pass draws from on ``device`` (the CPU's, and the current
    GPU's for a CUDA batch). ``torch.manual_seed`` would seed every backend: 100x slower per step."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``train.precision`` on ``device``: bfloat16 for ``bf16`` where it is
    fast (else a warning, once, and float32), None for ``fp32``."""
    if precision == "fp32":
        return None
    if not fast_bf16(device.type):
        _warn_once(f"train.precision: bf16 has no fast path on this {device.type} (no AVX-512 BF16, AMX or "
                   f"CUDA bf16); training in fp32")
        return None
    return torch.bfloat16


@functools.cache
def _warn_once(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)


class Compiled:
    """``module`` under ``torch.compile`` for the training step (``train.compile: true``), eager
    again, with a warning, if compiling fails. Attributes are the module's (its parameters,
    ``train()``, the objective's decoders): only the call is compiled."""

    def __init__(self, module: nn.Module):
        self.module, self.failed = module, False
        self.compiled = torch.compile(module)

    def __call__(self, *args, **kwargs):
        if not self.failed:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as exc:                      # noqa: BLE001 - any compiler failure: run eager
                self.failed = True
                _warn_once(f"train.compile: torch.compile failed ({type(exc).__name__}: {str(exc)[:200]}); "
                           f"training eagerly")
        return self.module(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.module, name)


def for_training(module: nn.Module, compile: bool = False):
    """What ``train_step`` calls: ``module``, or ``module`` compiled (``train.compile``)."""
    return Compiled(module) if compile else module


def in_layout(batch: Batch, channels_last: bool) -> Batch:
    """``batch`` with its image field (4-D ``x``) in NHWC memory when ``channels_last``."""
    if channels_last and "x" in batch and batch["x"].dim() == 4:
        return batch.replace(x=batch["x"].contiguous(memory_format=torch.channels_last))
    return batch


def forward_autocast(precision: str, device: torch.device):
    """The autocast context of ``train.precision`` on ``device`` (disabled for fp32 or no fast bf16):
    the training FPROP and the evaluations of a run both run under it."""
    dtype = autocast_dtype(precision, device)
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def train_step(module: nn.Module, objective: Callable, batch: Batch, *, seed: int, stream: int, step: int,
               params: list[nn.Parameter], augment: Callable | None = None, grad_clip: float | None = None,
               where: str | Callable[[], str] | None = None, precision: str = "fp32",
               channels_last: bool = False) -> Output:
    """FPROP and BPROP of ``batch`` through ``module``: gradients left in ``params``' ``.grad``.

    ``module`` is what the objective calls (the model, or its DDP wrapper, possibly
    ``for_training(..., compile=True)``); ``params`` its parameters (their gradients are reset
    first); ``augment(x, generator)`` transforms the inputs; ``grad_clip`` caps the gradients'
    global norm; ``where`` (a string, or a function making one) says where a non-finite loss
    happened; ``precision``: ``fp32``, or ``bf16`` (the FPROP under bfloat16 autocast where the
    device has fast bf16; weights, gradients and the update stay float32); ``channels_last``:
    image batches (4-D ``x``) in NHWC memory, for a model moved there (``train.channels_last``:
    oneDNN convolves NHWC without reordering; 1.25x faster fp32 and 1.7x faster bf16 steps of
    ``mnist_convnet`` on one CPU thread, by hand).
    """
    if hasattr(objective, "at_step"):
        objective.at_step(step)                                     # weight schedules
    augment_seed, forward_seed = step_seeds(seed, stream, step)
    if augment is not None:
        batch = batch.replace(x=augment(batch["x"], torch.Generator().manual_seed(augment_seed)))
    batch = in_layout(batch, channels_last)
    device = next(iter(batch.values())).device
    seed_forward(forward_seed, device)                              # dropout and the like
    with forward_autocast(precision, device):
        out = objective(module, batch)                              # FPROP
    if not torch.isfinite(out.loss):
        at = where() if callable(where) else where or f"step {step + 1}"
        raise TrainingError(f"loss became {out.loss.item()} at {at}")
    for p in params:
        p.grad = None
    out.loss.backward()                                             # BPROP
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(params, grad_clip)
    return out
