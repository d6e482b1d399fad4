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

from typing import Callable

import torch
from torch import nn

from visionnets.data.batch import Batch
from visionnets.errors import TrainingError
from visionnets.objectives import Output
from visionnets.train.seeds import step_seeds


def seed_forward(seed: int, device: torch.device) -> None:
    """Seed the generator the forward pass draws from on ``device`` (the CPU's, and the current
    GPU's for a CUDA batch). ``torch.manual_seed`` would seed every backend: 100x slower per step."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)


def train_step(module: nn.Module, objective: Callable, batch: Batch, *, seed: int, stream: int, step: int,
               params: list[nn.Parameter], augment: Callable | None = None, grad_clip: float | None = None,
               where: str | Callable[[], str] | None = None) -> Output:
    """FPROP and BPROP of ``batch`` through ``module``: gradients left in ``params``' ``.grad``.

    ``module`` is what the objective calls (the model, or its DDP wrapper); ``params`` its
    parameters (their gradients are reset first); ``augment(x, generator)`` transforms the
    inputs; ``grad_clip`` caps the gradients' global norm; ``where`` (a string, or a function
    making one) says where a non-finite loss happened.
    """
    if hasattr(objective, "at_step"):
        objective.at_step(step)                                     # weight schedules
    augment_seed, forward_seed = step_seeds(seed, stream, step)
    if augment is not None:
        batch = batch.replace(x=augment(batch["x"], torch.Generator().manual_seed(augment_seed)))
    seed_forward(forward_seed, next(iter(batch.values())).device)   # dropout and the like
    out = objective(module, batch)                                  # FPROP
    if not torch.isfinite(out.loss):
        at = where() if callable(where) else where or f"step {step + 1}"
        raise TrainingError(f"loss became {out.loss.item()} at {at}")
    for p in params:
        p.grad = None
    out.loss.backward()                                             # BPROP
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(params, grad_clip)
    return out
