"""A Downpour model replica: fetch, compute gradients on its own data, push; never wait for others.

Replica ``slot`` of R reads the examples ``slot, slot + R, slot + 2R, ...`` of the training
split (as ``DistributedSampler`` without a global shuffle) and shuffles them each local epoch
with ``replica_data_seed(seed, slot)`` (so one replica sees exactly the batches of a
single-process :class:`~visionnets.train.Trainer`). Its steps are numbered 0, 1, ... over all
its epochs; step ``s`` is batch ``s mod nb`` of local epoch ``s div nb``. For each step:

    every n_fetch steps:  theta <- fetch() from every shard (with each shard's version)
    FPROP, BPROP:         g_s = dL/dtheta on the mini-batch (the shared train_step)
    accumulate:           G <- G + g_s
    every n_push steps:   push G (cut per shard) to every shard; G <- 0

Between fetches the replica keeps its copy of theta: gradients are computed at stale
parameters, as in DistBelief. Pushes are sent without waiting for their answers (their
results are collected later, and at the end of each chunk). The driver hands out work in
chunks of steps ``[first, last)``; the step's random numbers (augmentation, dropout) come from
``step_seeds(seed, slot, step)``, so a step redone after a failure draws the same numbers.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from visionnets.data.base import Dataset, Split
from visionnets.data.specs import build_augment
from visionnets.distributed.sharding import ShardLayout
from visionnets.recipes import Recipe
from visionnets.train.loader import TensorLoader
from visionnets.train.record import Tally
from visionnets.train.seeds import replica_data_seed
from visionnets.train.setup import build_model_for, objective_for
from visionnets.train.step import for_training, train_step

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

    def __init__(self, slot: int, recipe: dict, train: dict[str, np.ndarray], about: dict,
                 replicas: int, layout: dict, shards: list, n_fetch: int, n_push: int, threads: int = 1,
                 partition: tuple[int, int] = (0, 1), shard_ids: list[int] | None = None):
        """``train``: the training split's fields as arrays; ``about``: what the model and the
        objective are told of the dataset (input_shape, num_classes, tasks, modalities).
        ``partition`` (w, K): this actor is worker w of a replica split into K spatial blocks
        (:mod:`~visionnets.distributed.model_parallel`); it fetches and pushes only the shards
        ``shard_ids`` (its own parameters, ``layout``), and the K workers must :meth:`join`
        before the first step."""
        torch.set_num_threads(max(1, threads))
        self.slot, self.rec = slot, Recipe.model_validate(recipe)
        self.partition, self.shard_ids = tuple(partition), shard_ids
        idx = slot_indices(len(train["x"]), slot, replicas)
        mine = {k: torch.from_numpy(np.ascontiguousarray(v[idx])) for k, v in train.items()}
        split = Split(mine.pop("x"), mine.pop("y"), mine)
        t = self.rec.train
        self.loader = TensorLoader(split, t.batch_size, shuffle=True, seed=replica_data_seed(self.rec.seed, slot),
                                   labeled_per_batch=t.labeled_per_batch)
        self.nb = steps_per_epoch(len(split), t.batch_size, replicas, t.max_steps_per_epoch)
        self.dataset = Dataset("replica", split, None, split, tuple(about["input_shape"]), about["num_classes"],
                               tasks=about["tasks"], modalities=about["modalities"])
        self.objective = objective_for(self.rec, self.dataset)
        self.augment = build_augment(self.rec.data.augment)
        self.layout = ShardLayout(layout["total"], tuple(tuple(tuple(r) for r in p) for p in layout["pieces"]))
        self.n_fetch, self.n_push, self.grad_clip = n_fetch, n_push, t.grad_clip
        self.shared: list[nn.Parameter] = []
        self.set_shards(shards)
        if self.partition[1] == 1:
            self._build(build_model_for(self.rec, self.dataset))

    def _build(self, model: nn.Module) -> None:
        self.model = model.to(memory_format=torch.channels_last) if self.rec.train.channels_last else model
        self.model.train()
        self.step_module = for_training(self.model, self.rec.train.compile)
        self.params = self.all_params = list(self.model.parameters())

    def rendezvous(self) -> tuple[str, int]:
        """Where this replica's workers meet (worker 0's node address and a free port there)."""
        import ray

        from visionnets.distributed.procs import free_port

        return ray.util.get_node_ip_address(), free_port()

    def join(self, address: str, port: int) -> int:
        """Join the replica's K workers (a torch.distributed group at ``address:port``) and build
        this worker's part of the model; returns the number of parameters it keeps."""
        from datetime import timedelta

        import torch.distributed as dist

        from visionnets.distributed.model_parallel import Comm, PartitionedNet

        w, k = self.partition
        os.environ.update(MASTER_ADDR=address, MASTER_PORT=str(port))
        dist.init_process_group("gloo", init_method="env://", rank=w, world_size=k, timeout=timedelta(seconds=120))
        whole = build_model_for(self.rec, self.dataset)
        net = PartitionedNet(whole, self.dataset.input_shape, Comm(w, k))
        self._build(net)
        self.params = [p for _, p in net.owned()]      # what this worker fetches and pushes
        self.shared = net.replicated()                 # worker 0 fetches these; the others receive them
        return sum(p.numel() for p in self.params)

    def ping(self) -> int:
        return self.slot

    def set_shards(self, shards: list) -> None:
        """Use these shard handles (after a shard was restored); the next step fetches anew."""
        self.shards = list(shards) if self.shard_ids is None else [shards[i] for i in self.shard_ids]
        self.versions: list[int] | None = None

    # ---------------------------------------------------------------- parameter server
    def _fetch(self) -> None:
        import ray

        answers = ray.get([s.fetch.remote() for s in self.shards])
        self.versions = [v for v, _ in answers]
        with torch.no_grad():
            flat = self.layout.join([theta for _, theta in answers])
            torch.nn.utils.vector_to_parameters(flat, self.params)
            if self.shared:                            # a split replica: worker 0's copies to the others
                import torch.distributed as dist

                for p in self.shared:
                    dist.broadcast(p.data, src=0)

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
        tally, fetches = Tally(), 0
        for step in range(first, last):
            if self.versions is None or step % self.n_fetch == 0:
                self._fetch()
                fetches += 1
            batch = self.loader.batch_at(*divmod(step, self.nb))
            out = train_step(self.step_module, self.objective, batch, seed=self.rec.seed, stream=self.slot, step=step,
                             params=self.all_params, augment=self.augment, grad_clip=self.grad_clip,
                             where=f"replica {self.slot}, its step {step}", precision=self.rec.train.precision,
                             channels_last=self.rec.train.channels_last)
            g = flat_grad(self.params)
            acc = g if acc is None else acc.add_(g)
            group_examples += batch.size
            tally.add(out, batch.size)
            if (step + 1) % self.n_push == 0 or step + 1 == last:
                pending += self._push(acc, group_first, step + 1 - group_first, group_examples)
                acc, group_first, group_examples = None, step + 1, 0
                limit = MAX_PENDING_PUSHES * len(self.shards)
                if len(pending) > limit:                              # back-pressure, not a barrier
                    done, pending = ray.wait(pending, num_returns=len(pending) - limit)
                    answers += ray.get(done)
        answers += ray.get(pending)
        return {"slot": self.slot, "first": first, "last": last, "totals": tally.totals(), "fetches": fetches,
                "pushes": answers.count("applied"), "duplicates": answers.count("duplicate"),
                "seconds": time.perf_counter() - t0}
