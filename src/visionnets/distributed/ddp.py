"""Synchronous data parallel SGD with torch.distributed (DistributedDataParallel).

W worker processes (``torch.multiprocessing.spawn``, rendezvous on 127.0.0.1 at a free port;
gloo on CPU, NCCL when each worker has a GPU) each hold the whole model. Every mini-batch of
the recipe (``train.batch_size`` examples, in the single-process order) is cut into W parts;
worker w computes the gradient g_w of the mean loss on its n_w examples, and the workers sum
the weighted gradients, so that each one applies exactly the full batch's gradient:

    g = sum_w (n_w / n) g_w          (= the plain average when the parts are equal)

and then the same update. With the same seed, W workers follow the single-process
:class:`~visionnets.train.Trainer` step for step (up to the order of float additions); a batch
with fewer examples than workers is skipped. The loop *is* the Trainer's: a subclass only
shards the batches (:class:`~visionnets.train.loader.TensorLoader` with ``rank``/``workers``)
and the evaluation, sums the epoch's numbers over the workers, and lets rank 0 alone write the
run directory, whose checkpoints are the Trainer's (a DDP run can be resumed by ``--executor
local`` and the other way round). The workers receive the prepared data and the initial
(possibly pretrained) weights from the launching process.

    >>> from visionnets import api
    >>> r = api.train("digits_convnet", ["train.epochs=1"], executor="ddp", workers=2,
    ...               out="/tmp/vn-doc-ddp", progress=False)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from visionnets.distributed.procs import choose_backend, free_port, run_worker, spawn
from visionnets.errors import ConfigError
from visionnets.recipes import Recipe
from visionnets.train.checkpoint import load_checkpoint
from visionnets.train.loader import TensorLoader
from visionnets.train.record import Tally, final_record
from visionnets.train.rundir import RunDir
from visionnets.train.setup import EXECUTORS, Setup, objective_for
from visionnets.train.step import for_training
from visionnets.train.trainer import Trainer, tally_split, trainer_options



class _Weight:
    value = 1.0


def _weighted_allreduce(state, bucket):  # no annotations: DDP checks them literally
    """DDP communication hook: sum over workers of (n_w / n) x the local mean gradient."""
    buf = bucket.buffer().mul_(state.value)
    return dist.all_reduce(buf, async_op=True).get_future().then(lambda fut: fut.value()[0])


def all_reduce_tally(tally: Tally, device) -> Tally:
    """The sums of every worker's ``tally`` (every worker has the same metric names)."""
    totals = tally.totals()
    flat = torch.tensor([v for pair in totals.values() for v in pair], dtype=torch.float64, device=device)
    dist.all_reduce(flat)
    values = flat.tolist()
    return Tally().merge({k: (values[2 * i], values[2 * i + 1]) for i, k in enumerate(totals)})


class DDPTrainer(Trainer):
    """The Trainer on worker ``rank`` of ``workers``: its part of each batch and of each evaluated split."""

    def __init__(self, model, objective, dataset, *, rank: int, workers: int, **kwargs):
        super().__init__(model, objective, dataset, writer=rank == 0, **kwargs)
        self.rank, self.workers, self.stream = rank, workers, rank
        self.train_loader = TensorLoader(dataset.train, self.batch_size, shuffle=True, seed=self.seed,
                                         device=self.device, rank=rank, workers=workers,
                                         labeled_per_batch=self.labeled_per_batch)
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.ddp = DistributedDataParallel(self.model, device_ids=ids)
        self.step_module = for_training(self.ddp, self.compile)
        self.weight = _Weight()
        self.ddp.register_comm_hook(self.weight, _weighted_allreduce)

    def train_step(self, batch):
        self.weight.value = batch.size / self.train_loader.batch_examples
        return super().train_step(batch)

    def reduce(self, tally: Tally) -> Tally:
        return all_reduce_tally(tally, self.device)

    def split_means(self, split: str) -> dict[str, float | None]:
        part = self.dataset.split(split).subset(slice(self.rank, None, self.workers))
        tally = tally_split(self.model, self.objective, part, self.eval_batch_size, self.device, self.precision,
                            self.channels_last)
        return all_reduce_tally(tally, self.device).means()

    def executor_stats(self) -> dict[str, Any]:
        return {"name": "ddp", "workers": self.workers, "threads": torch.get_num_threads()}


def _worker(rank: int, workers: int, port: int, backend: str, device_type: str, recipe: dict, dataset,
            weights: dict, run_dir: str, resume: bool, progress: bool, threads: int, callbacks: tuple,
            started: float) -> None:
    def body(rec: Recipe, model: nn.Module, device: torch.device) -> None:
        DDPTrainer(model, objective_for(rec, dataset), dataset, rank=rank, workers=workers, run_dir=RunDir(run_dir),
                   started=started, progress=progress and rank == 0, callbacks=callbacks if rank == 0 else (),
                   **{**trainer_options(rec), "device": device, "threads": threads}).fit(resume=resume)

    run_worker(rank, workers, port, backend, device_type, threads, recipe, dataset, weights, body)


@EXECUTORS.register("ddp")
def fit_ddp(setup: Setup, *, progress: bool = True, callbacks: tuple = (), workers: int = 2,
            backend: str | None = None, threads: int | None = None) -> tuple[dict, list]:
    """The ``ddp`` executor: spawn ``workers`` processes (``threads`` torch threads each; default
    the cores shared out); ``backend`` gloo or nccl (default: NCCL when every worker has a GPU)."""
    rec, run_dir = setup.recipe, setup.run_dir
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"ddp: workers must be an integer >= 1, got {workers!r}")
    backend, device_type = choose_backend(rec, workers, backend, "ddp")
    if rec.train.batch_size < workers:
        raise ConfigError(f"train.batch_size: {rec.train.batch_size} is smaller than the {workers} DDP workers "
                          f"(each worker takes a part of every batch)")
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    run_dir.write_executor("ddp", {"workers": workers, "backend": backend})
    weights = {k: v.detach().cpu() for k, v in setup.model.state_dict().items()}
    spawn(_worker, workers, (workers, free_port(), backend, device_type, rec.to_dict(), setup.dataset, weights,
                             str(run_dir.path), setup.resume, progress, threads, tuple(callbacks), setup.started),
          "ddp")
    load_checkpoint(run_dir.weights("best"), setup.model)
    history = run_dir.read_metrics()
    return final_record(history, history[-1].get("best_epoch") if history else None), history
