"""One shard of the parameter server (DistBelief's Downpour SGD, Dean et al. 2012).

A shard owns a slice theta_k of the parameters (see :mod:`visionnets.distributed.sharding`)
and its own optimizer. Replicas *fetch* theta_k (with its version, the number of updates
applied so far) and *push* gradients; the shard applies each push at once:

    SGD with momentum:  v <- mu v + g + lambda theta;   theta <- theta - eta v
    Adagrad (DistBelief): h <- h + g^2;                  theta <- theta - eta g / (sqrt(h) + eps)

with the learning rate eta = lr x lr_factor(schedule, steps applied / steps per epoch), the
Trainer's schedule (a step is one replica mini-batch; an epoch is the steps of all replicas). A push
carries the version its gradient was computed at; ``version_now - version_then`` is its
staleness, counted in a histogram. Pushes are keyed by (replica slot, step range): a push whose
steps this shard has already applied is dropped (so a replica replaced after a crash can redo
steps without applying them twice), and one that skips steps is refused.

The shard checkpoints itself (theta, optimizer state, version, ledger) into one safetensors
file, atomically, every ``checkpoint_every`` updates and when asked; a shard created with
``restore=True`` starts from that file. The class is plain Python: Downpour wraps it in
``ray.remote``; it runs in-process too::

    >>> import torch
    >>> from visionnets.recipes import OptimizerSection
    >>> s = ParameterShard(0, torch.zeros(3), OptimizerSection(lr=0.5, momentum=0.0))
    >>> s.push(torch.ones(3), version=0, slot=0, first_step=0, steps=1, examples=2)
    'applied'
    >>> s.fetch()
    (1, tensor([-0.5000, -0.5000, -0.5000]))
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visionnets.errors import CheckpointError, ConfigError, TrainingError
from visionnets.recipes import OptimizerSection, ScheduleSection
from visionnets.train.checkpoint import load_checkpoint, save_checkpoint
from visionnets.train.optim import build_optimizer, lr_factor, set_lr

PS_OPTIMIZERS = ("recipe", "adagrad")


class _Slice(nn.Module):
    """The shard's parameters as one module, so the standard checkpoint format applies."""

    def __init__(self, theta: torch.Tensor):
        super().__init__()
        self.theta = nn.Parameter(theta.detach().clone().float())


def build_shard_optimizer(params, spec: OptimizerSection, kind: str = "recipe") -> torch.optim.Optimizer:
    """The recipe's optimizer, or Adagrad with the recipe's lr and weight decay (``kind='adagrad'``)."""
    if kind == "recipe":
        return build_optimizer(params, spec)
    if kind == "adagrad":
        return torch.optim.Adagrad(params, lr=spec.lr, weight_decay=spec.weight_decay, eps=1e-10)
    raise ConfigError(f"ps_optimizer: expected one of {', '.join(PS_OPTIMIZERS)}, got {kind!r}")


def staleness_stats(counts: dict[int, int] | Counter) -> dict[str, float | None]:
    """Mean, median, 95th percentile and max of a histogram {staleness: count}.

    >>> staleness_stats({0: 5, 1: 4, 7: 1})
    {'staleness_mean': 1.1, 'staleness_p50': 0.5, 'staleness_p95': 4.3, 'staleness_max': 7}
    """
    items = sorted((int(k), int(v)) for k, v in counts.items() if v > 0)
    n = sum(v for _, v in items)
    if n == 0:
        return {"staleness_mean": None, "staleness_p50": None, "staleness_p95": None, "staleness_max": None}
    values = torch.tensor([k for k, v in items for _ in range(v)], dtype=torch.float64)
    return {"staleness_mean": round(values.mean().item(), 4),
            "staleness_p50": torch.quantile(values, 0.5).item(),
            "staleness_p95": round(torch.quantile(values, 0.95).item(), 4),
            "staleness_max": items[-1][0]}


class ParameterShard:
    """Owns theta_k and its optimizer; serves fetches, applies pushes, checkpoints itself."""

    def __init__(self, index: int, theta: torch.Tensor, optimizer: OptimizerSection | dict,
                 *, kind: str = "recipe", schedule: ScheduleSection | dict | None = None,
                 steps_per_epoch: int = 1, epochs: int = 1, checkpoint: str | Path | None = None,
                 checkpoint_every: int = 0, restore: bool = False):
        torch.set_num_threads(1)
        self.index, self.kind = index, kind
        self.spec = OptimizerSection.model_validate(optimizer) if isinstance(optimizer, dict) else optimizer
        sched = schedule or ScheduleSection()
        self.schedule = ScheduleSection.model_validate(sched) if isinstance(sched, dict) else sched
        self.steps_per_epoch, self.epochs = max(int(steps_per_epoch), 1), epochs
        self.path = Path(checkpoint) if checkpoint is not None else None
        self.every = checkpoint_every
        self.slice = _Slice(theta)
        self.optimizer = build_shard_optimizer(self.slice.parameters(), self.spec, kind)
        self.version, self.examples, self.steps = 0, 0, 0
        self.ledger: dict[int, int] = {}          # slot -> number of its steps applied here
        self.staleness: Counter = Counter()       # since the last take_stats()
        self.dropped = 0                          # duplicate pushes dropped
        self.restored_from: int | None = None
        if restore:
            self._restore()

    # ---------------------------------------------------------------- serving
    def ping(self) -> int:
        return self.version

    def fetch(self) -> tuple[int, torch.Tensor]:
        """(version, theta_k): the current slice and how many updates it has seen."""
        return self.version, self.slice.theta.detach().clone()

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def push(self, grad: torch.Tensor, version: int, slot: int, first_step: int, steps: int,
             examples: int) -> str:
        """Apply the gradient of ``steps`` steps of replica ``slot`` computed at ``version``.

        Returns ``'applied'`` or ``'duplicate'`` (steps already applied here: dropped).
        """
        done = self.ledger.get(slot, 0)
        if first_step + steps <= done:
            self.dropped += 1
            return "duplicate"
        if first_step != done:
            raise TrainingError(f"shard {self.index}: push of steps {first_step}..{first_step + steps - 1} "
                                f"from replica slot {slot}, which has only {done} steps applied here")
        if grad.shape != self.slice.theta.shape:
            raise TrainingError(f"shard {self.index}: gradient of shape {tuple(grad.shape)}, "
                                f"expected {tuple(self.slice.theta.shape)}")
        factor = lr_factor(self.schedule, self.steps / self.steps_per_epoch, self.epochs)
        set_lr(self.optimizer, self.spec.lr, factor, self.schedule.min_lr)
        self.slice.theta.grad = grad.to(self.slice.theta.dtype)
        self.optimizer.step()
        self.slice.theta.grad = None
        self.staleness[self.version - version] += 1
        self.version += 1
        self.examples += examples
        self.steps += steps
        self.ledger[slot] = done + steps
        if self.every and self.version % self.every == 0:
            self.checkpoint()
        return "applied"

    # ---------------------------------------------------------------- bookkeeping
    def take_stats(self) -> dict[str, Any]:
        """Staleness histogram since the last call (then reset), version, ledger, drops."""
        counts, self.staleness = dict(self.staleness), Counter()
        return {"staleness": counts, "version": self.version, "examples": self.examples,
                "ledger": dict(self.ledger), "dropped": self.dropped, "lr": self.lr()}

    def ledger_view(self) -> dict[int, int]:
        return dict(self.ledger)

    def checkpoint(self) -> dict[str, Any]:
        """Write theta_k, the optimizer state and the ledger to this shard's file (atomically)."""
        if self.path is None:
            raise CheckpointError(f"shard {self.index}: no checkpoint path was given")
        state = {"shard": self.index, "version": self.version, "examples": self.examples, "steps": self.steps,
                 "ledger": {str(k): v for k, v in self.ledger.items()}, "kind": self.kind,
                 "size": self.slice.theta.numel()}
        save_checkpoint(self.path, self.slice, self.optimizer, state)
        return {"version": self.version, "ledger": dict(self.ledger)}

    def _restore(self) -> None:
        if self.path is None or not self.path.is_file():
            raise CheckpointError(f"shard {self.index}: no checkpoint to restore from at {self.path}")
        state = load_checkpoint(self.path, self.slice, self.optimizer)
        if state.get("shard") != self.index or state.get("kind") != self.kind:
            raise CheckpointError(f"{self.path}: holds shard {state.get('shard')} ({state.get('kind')}), "
                                  f"expected shard {self.index} ({self.kind})")
        self.version, self.examples, self.steps = state["version"], state["examples"], state["steps"]
        self.ledger = {int(k): v for k, v in state["ledger"].items()}
        self.restored_from = self.version
