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
shards the batches and the evaluation (each worker evaluates 1/W of val and test, the sums
are all-reduced) and lets rank 0 alone write the run directory, whose checkpoints are the
Trainer's (a DDP run can be resumed by ``--executor local`` and the other way round).

    >>> from visionnets.distributed import train_distributed
    >>> r = train_distributed("ddp", "digits_convnet", ["train.epochs=1"], workers=2,
    ...                       out="/tmp/vn-doc-ddp", progress=False)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import socket
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from visionnets.api import build_data, build_for
from visionnets.data import build_augment
from visionnets.data.base import Split
from visionnets.errors import ConfigError, TrainingError
from visionnets.objectives import build_objective
from visionnets.recipes import Recipe
from visionnets.train.checkpoint import load_checkpoint, save_checkpoint
from visionnets.train.trainer import Trainer, evaluate_model

BACKENDS = ("gloo", "nccl")


def part_bounds(n: int, workers: int, rank: int) -> tuple[int, int]:
    """``[lo, hi)`` of worker ``rank``'s part of a batch of ``n`` (sizes differ by at most one).

    >>> [part_bounds(10, 3, r) for r in range(3)]
    [(0, 4), (4, 7), (7, 10)]
    """
    q, r = divmod(n, workers)
    lo = rank * q + min(rank, r)
    return lo, lo + q + (rank < r)


class ShardedLoader:
    """The single-process :class:`~visionnets.data.TensorLoader` order, cut into W parts per batch.

    Each batch ``order[i B:(i + 1) B]`` of an epoch (``order`` seeded by ``(seed, epoch)`` as in
    the TensorLoader) is split by :func:`part_bounds`; this worker yields its part, and
    ``batch_examples`` holds the whole batch's size (for the gradient weights).
    """

    def __init__(self, split: Split, batch_size: int, seed: int, rank: int, workers: int, device):
        self.x, self.y = split.x.to(device), split.y.to(device)
        self.batch_size, self.seed, self.rank, self.workers = batch_size, seed, rank, workers
        self.epoch, self.batch_examples = 0, 0
        n = len(self.x)
        self.sizes = [min(batch_size, n - i * batch_size) for i in range(math.ceil(n / batch_size))]
        self.sizes = [s for s in self.sizes if s >= workers]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.sizes)

    def local_examples(self, batches: int) -> int:
        return sum(part_bounds(s, self.workers, self.rank)[1] - part_bounds(s, self.workers, self.rank)[0]
                   for s in self.sizes[:batches])

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.x), generator=g).to(self.x.device)
        for i, size in enumerate(self.sizes):
            lo, hi = part_bounds(size, self.workers, self.rank)
            idx = order[i * self.batch_size + lo:i * self.batch_size + hi]
            self.batch_examples = size
            yield self.x[idx], self.y[idx]


class _Weight:
    value = 1.0


def _weighted_allreduce(state, bucket):  # no annotations: DDP checks them literally
    """DDP communication hook: sum over workers of (n_w / n) x the local mean gradient."""
    buf = bucket.buffer().mul_(state.value)
    return dist.all_reduce(buf, async_op=True).get_future().then(lambda fut: fut.value()[0])


class _DDPObjective:
    """The recipe's objective; in training mode through the DDP module, with this batch's weight."""

    def __init__(self, base, ddp: DistributedDataParallel, weight: _Weight, loader: ShardedLoader,
                 workers: int):
        self.base, self.ddp, self.weight, self.loader, self.workers = base, ddp, weight, loader, workers

    def __call__(self, model, x, y):
        if model.training:
            self.weight.value = len(x) / self.loader.batch_examples
            return self.base(self.ddp, x, y)
        return self.base(model, x, y)


def _all_sum(values: list[float], device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


class DDPTrainer(Trainer):
    """The Trainer on worker ``rank`` of ``workers``: sharded batches and evaluation, rank 0 writes."""

    def __init__(self, model, objective, dataset, *, rank: int, workers: int, run_dir: Path,
                 seed: int = 0, device="cpu", started: float | None = None, **kwargs):
        super().__init__(model, objective, dataset, seed=seed, device=device,
                         run_dir=run_dir if rank == 0 else None, **kwargs)
        self.rank, self.workers, self.read_dir = rank, workers, Path(run_dir)
        self.seed = seed if rank == 0 else seed + 104_729 * rank  # own dropout / augmentation draws
        self.train_loader = ShardedLoader(dataset.train, self.batch_size, seed, rank, workers, self.device)
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.ddp = DistributedDataParallel(self.model, device_ids=ids)
        self.weight = _Weight()
        self.ddp.register_comm_hook(self.weight, _weighted_allreduce)
        self.base_objective = objective
        self.objective = _DDPObjective(objective, self.ddp, self.weight, self.train_loader, workers)
        self.started = time.time() if started is None else started
        self.wall_before, self.examples_seen = 0.0, 0

    def _after_epoch(self, record: dict[str, Any]) -> bool:
        """Add the executor's keys: wall time since the launch, examples seen by all workers."""
        record["wall_s"] = self.wall_before + time.time() - self.started
        record["examples_seen"] = self.examples_seen
        return super()._after_epoch(record)

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "executor": "ddp", "workers": self.workers}

    def resume(self) -> None:
        keep, self.run_dir = self.run_dir, self.read_dir
        try:
            super().resume()
        finally:
            self.run_dir = keep
        if self.history:
            self.wall_before = self.history[-1].get("wall_s", 0.0)
            self.examples_seen = self.history[-1].get("examples_seen", 0)

    def evaluate(self, split: str = "test") -> dict[str, Any]:
        data = self.dataset.split(split)
        part = data.subset(slice(self.rank, None, self.workers))
        res = evaluate_model(self.model, self.base_objective, part, self.classification,
                             self.eval_batch_size, self.device)
        loss, wrong, n = _all_sum([res["loss"] * res["n"], res.get("error", 0.0) * res["n"], res["n"]],
                                  self.device)
        out = {"split": split, "n": round(n), "loss": loss / n}
        if self.classification:
            out["error"] = wrong / n
            out["accuracy"] = 1.0 - out["error"]
        return out

    def _train_epoch(self, bar) -> dict[str, float]:
        out = super()._train_epoch(bar)
        n_batches = len(self.train_loader) if self.max_steps is None else min(len(self.train_loader), self.max_steps)
        seen = self.train_loader.local_examples(n_batches)
        err = out["train_error"] if out["train_error"] is not None else 0.0
        loss, wrong, n = _all_sum([out["train_loss"] * seen, err * seen, seen], self.device)
        self.examples_seen += round(n)
        out["train_loss"] = loss / max(n, 1)
        if out["train_error"] is not None:
            out["train_error"] = wrong / max(n, 1)
        out["examples_per_s"] = n / max(out["train_seconds"], 1e-9)
        return out


def _loopback_interface() -> str | None:
    return next((name for _, name in socket.if_nameindex() if name.startswith("lo")), None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def choose_backend(rec: Recipe, workers: int, backend: str | None) -> tuple[str, str]:
    """(backend, device type): NCCL on CUDA when every worker gets a GPU, else gloo on CPU."""
    if backend is not None and backend not in BACKENDS:
        raise ConfigError(f"ddp: backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    wants_cuda = rec.device.startswith("cuda")
    if wants_cuda and gpus < workers:
        raise ConfigError(f"device: {rec.device!r} with {workers} DDP workers needs {workers} GPUs, found {gpus}")
    on_gpu = (wants_cuda or rec.device == "auto") and gpus >= workers
    backend = backend or ("nccl" if on_gpu else "gloo")
    if backend == "nccl" and not on_gpu:
        raise ConfigError(f"ddp: backend nccl needs {workers} GPUs and device cuda or auto; found {gpus} GPUs, "
                          f"device {rec.device!r}")
    return backend, "cuda" if on_gpu else "cpu"


def _worker(rank: int, workers: int, port: int, backend: str, device_type: str, recipe: dict,
            data_dir, run_dir: str, resume: bool, progress: bool, threads: int, callbacks: tuple,
            started: float) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    lo = _loopback_interface()
    if lo is not None:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", lo)
        os.environ.setdefault("NCCL_SOCKET_IFNAME", lo)
    torch.set_num_threads(threads)
    device = torch.device(f"cuda:{rank}" if device_type == "cuda" else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method="env://", rank=rank, world_size=workers)
    try:
        rec = Recipe.model_validate(recipe)
        dataset = build_data(rec, data_dir)
        model = build_for(rec, dataset)
        pretrained = Path(run_dir) / "checkpoints" / "pretrained.safetensors"
        if pretrained.is_file() and not resume:
            load_checkpoint(pretrained, model)
        t = rec.train
        if rank == 0 and rec.logging == "tensorboard":
            from visionnets.distributed.run import tensorboard_callback

            callbacks = tuple(callbacks) + tensorboard_callback(rec, Path(run_dir))
        trainer = DDPTrainer(model, build_objective(rec.objective.model_dump()), dataset, rank=rank,
                             workers=workers, run_dir=Path(run_dir), seed=rec.seed, device=device, started=started,
                             epochs=t.epochs, batch_size=t.batch_size, eval_batch_size=t.eval_batch_size,
                             optimizer=t.optimizer, schedule=t.schedule, early_stopping=t.early_stopping,
                             grad_clip=t.grad_clip, augment=build_augment(rec.data.augment),
                             progress=progress and rank == 0, max_steps_per_epoch=t.max_steps_per_epoch,
                             eval_test_each_epoch=t.eval_test_each_epoch,
                             callbacks=tuple(callbacks) if rank == 0 else ())
        trainer.fit(resume=resume)
        # every rank past its last collective before any tears the group down: without it a rank
        # still inside one when its peer exits can abort in gloo ("terminate called without an
        # active exception", seen on a loaded 2-core machine)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run_ddp(recipe, overrides, data_dir, out, resume, progress, figures, callbacks, *,
            workers: int = 2, backend: str | None = None, threads: int | None = None):
    """``train_distributed('ddp', ...)``: spawn W workers; rank 0 writes the run directory."""
    import json

    import torch.multiprocessing as mp

    from visionnets.distributed.run import final_record, finish, prepare, pretrain_if_asked, write_executor

    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"ddp: workers must be an integer >= 1, got {workers!r}")
    rec, dataset, run_dir, _ = prepare("ddp", recipe, overrides, data_dir, out, resume)
    backend, device_type = choose_backend(rec, workers, backend)
    if rec.train.batch_size < workers:
        raise ConfigError(f"train.batch_size: {rec.train.batch_size} is smaller than the {workers} DDP workers "
                          f"(each worker takes a part of every batch)")
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    write_executor(run_dir, "ddp", {"workers": workers, "backend": backend})
    if resume is None and rec.pretrain is not None:
        model = build_for(rec, dataset)
        pretrain_if_asked(rec, model, dataset.train.x, run_dir)
        save_checkpoint(run_dir / "checkpoints" / "pretrained.safetensors", model)
    try:
        mp.spawn(_worker, args=(workers, free_port(), backend, device_type, rec.to_dict(), data_dir,
                                str(run_dir), resume is not None, progress, threads, tuple(callbacks), time.time()),
                 nprocs=workers, join=True)
    except mp.ProcessRaisedException as exc:
        last = [line for line in str(exc).strip().splitlines() if line.strip()][-1]
        raise TrainingError(f"ddp: a worker failed: {last}") from None
    except mp.ProcessExitedException as exc:
        raise TrainingError(f"ddp: worker {exc.error_index} exited with code {exc.exit_code}") from None
    model = build_for(rec, dataset)
    ckpt = run_dir / "checkpoints" / "best.safetensors"
    load_checkpoint(ckpt if ckpt.is_file() else run_dir / "checkpoints" / "last.safetensors", model)
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    final = final_record(history, history[-1].get("best_epoch") if history else None)
    return finish(run_dir, model, dataset, rec, history, final, figures)
