"""A Downpour model replica: fetch, compute gradients on its own data, push; never wait for others.

Replica ``slot`` of R reads the examples ``slot, slot + R, slot + 2R, ...`` of the training
split (as ``DistributedSampler`` without a global shuffle) and shuffles them each local epoch
with the seed ``recipe seed + slot`` (so one replica sees exactly the batches of a
single-process :class:`~visionnets.train.Trainer`). Its steps are numbered 0, 1, ... over all
its epochs; step ``s`` is batch ``s mod nb`` of local epoch ``s div nb``. For each step:

    every n_fetch steps:  theta <- fetch() from every shard (with each shard's version)
    FPROP, BPROP:         g_s = dL/dtheta on the mini-batch (the recipe's objective)
    accumulate:           G <- G + g_s
    every n_push steps:   push G (cut per shard) to every shard; G <- 0

Between fetches the replica keeps its copy of theta: gradients are computed at stale
parameters, as in DistBelief. Pushes are sent without waiting for their answers (their
results are collected later, and at the end of each chunk). The driver hands out work in
chunks of steps ``[first, last)``; random numbers (augmentation, dropout) are seeded per
(slot, step), so a step redone after a failure draws the same numbers.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from visionnets.api import build_for
from visionnets.data import build_augment
from visionnets.data.base import Dataset, Split
from visionnets.distributed.sharding import ShardLayout
from visionnets.errors import TrainingError
from visionnets.objectives import build_objective, count_errors
from visionnets.recipes import Recipe

MAX_PENDING_PUSHES = 4  # per shard: how far a replica may run ahead of its unanswered pushes


def slot_indices(n: int, slot: int, replicas: int) -> np.ndarray:
    """The training examples of replica ``slot``: ``slot, slot + R, slot + 2R, ...``."""
    return np.arange(slot, n, replicas)


def steps_per_epoch(n_slot: int, batch_size: int, replicas: int, max_steps: int | None) -> int:
    """Batches in one local epoch of a replica with ``n_slot`` examples."""
    nb = math.ceil(n_slot / batch_size)
    return nb if max_steps is None else min(nb, math.ceil(max_steps / replicas))


def batch_sizes(n_slot: int, batch_size: int, nb: int) -> list[int]:
    """The size of each batch of a local epoch (the last may be smaller)."""
    return [min(batch_size, n_slot - i * batch_size) for i in range(nb)]


def flat_grad(params: list[nn.Parameter]) -> torch.Tensor:
    """All gradients as one vector, in ``params`` order (zeros where a parameter got none)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])


class Replica:
    """One model replica; wrapped in ``ray.remote`` by the driver (plain Python in-process)."""

    def __init__(self, slot: int, recipe: dict, train: tuple[np.ndarray, np.ndarray],
                 input_shape: tuple[int, ...], num_classes: int | None, replicas: int,
                 layout: dict, shards: list, n_fetch: int, n_push: int, threads: int = 1):
        torch.set_num_threads(max(1, threads))
        self.slot, self.rec = slot, Recipe.model_validate(recipe)
        x, y = train
        idx = slot_indices(len(x), slot, replicas)
        self.split = Split(torch.from_numpy(np.ascontiguousarray(x[idx])),
                           torch.from_numpy(np.ascontiguousarray(y[idx])))
        t = self.rec.train
        self.batch_size = t.batch_size
        self.nb = steps_per_epoch(len(self.split), t.batch_size, replicas, t.max_steps_per_epoch)
        self.classification = num_classes is not None
        fake = Dataset("replica", self.split, None, self.split, tuple(input_shape), num_classes)
        self.model = build_for(self.rec, fake)
        self.model.train()
        self.params = list(self.model.parameters())
        self.objective = build_objective(self.rec.objective.model_dump())
        self.augment = build_augment(self.rec.data.augment)
        self.layout = ShardLayout(layout["total"], tuple(tuple(tuple(r) for r in p) for p in layout["pieces"]))
        self.n_fetch, self.n_push, self.grad_clip = n_fetch, n_push, t.grad_clip
        self.set_shards(shards)
        self._order_epoch, self._order = -1, None

    def ping(self) -> int:
        return self.slot

    def set_shards(self, shards: list) -> None:
        """Use these shard handles (after a shard was restored); the next step fetches anew."""
        self.shards = list(shards)
        self.versions: list[int] | None = None

    # ---------------------------------------------------------------- data
    def _batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, i = divmod(step, self.nb)
        if epoch != self._order_epoch:  # TensorLoader's shuffle: seeded by (seed, epoch)
            g = torch.Generator().manual_seed((self.rec.seed + self.slot) * 1_000_003 + epoch)
            self._order, self._order_epoch = torch.randperm(len(self.split), generator=g), epoch
        idx = self._order[i * self.batch_size:(i + 1) * self.batch_size]
        return self.split.x[idx], self.split.y[idx]

    # ---------------------------------------------------------------- parameter server
    def _fetch(self) -> None:
        import ray

        answers = ray.get([s.fetch.remote() for s in self.shards])
        self.versions = [v for v, _ in answers]
        with torch.no_grad():
            flat = self.layout.join([theta for _, theta in answers])
            torch.nn.utils.vector_to_parameters(flat, self.params)

    def _push(self, grad: torch.Tensor, first: int, steps: int, examples: int) -> list:
        parts = self.layout.split(grad)
        return [s.push.remote(part, v, self.slot, first, steps, examples)
                for s, part, v in zip(self.shards, parts, self.versions)]

    # ---------------------------------------------------------------- the work
    def run(self, first: int, last: int) -> dict[str, Any]:
        """Steps ``first .. last - 1``; every gradient pushed and answered before returning."""
        import ray

        t0 = time.perf_counter()
        acc = None
        group_first, group_examples = first, 0
        pending: list = []
        answers: list[str] = []
        loss_sum, wrong, seen, fetches = 0.0, 0, 0, 0
        for step in range(first, last):
            if self.versions is None or step % self.n_fetch == 0:
                self._fetch()
                fetches += 1
            x, y = self._batch(step)
            seed = ((self.rec.seed * 1_000_003 + self.slot) * 1_000_003 + step) % (2**63)
            if self.augment is not None:
                x = self.augment(x, torch.Generator().manual_seed(seed))
            torch.manual_seed(seed)                                   # dropout
            loss, out = self.objective(self.model, x, y)              # FPROP
            if not torch.isfinite(loss):
                raise TrainingError(f"replica {self.slot}: loss became {loss.item()} at its step {step}")
            for p in self.params:
                p.grad = None
            loss.backward()                                           # BPROP
            if self.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.params, self.grad_clip)
            g = flat_grad(self.params)
            acc = g if acc is None else acc.add_(g)
            group_examples += len(x)
            loss_sum += loss.item() * len(x)
            seen += len(x)
            if self.classification:
                wrong += int(count_errors(out.detach(), y))
            if (step + 1) % self.n_push == 0 or step + 1 == last:
                pending += self._push(acc, group_first, step + 1 - group_first, group_examples)
                acc, group_first, group_examples = None, step + 1, 0
                limit = MAX_PENDING_PUSHES * len(self.shards)
                if len(pending) > limit:                              # back-pressure, not a barrier
                    done, pending = ray.wait(pending, num_returns=len(pending) - limit)
                    answers += ray.get(done)
        answers += ray.get(pending)
        return {"slot": self.slot, "first": first, "last": last, "examples": seen,
                "loss_sum": loss_sum, "wrong": wrong, "fetches": fetches,
                "pushes": answers.count("applied"), "duplicates": answers.count("duplicate"),
                "seconds": time.perf_counter() - t0}
