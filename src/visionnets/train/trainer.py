"""The one training loop: mini-batch SGD as in the tutorial.

For each mini-batch: FPROP (compute the loss), BPROP (gradients w.r.t. the parameters) — the
shared :func:`~visionnets.train.step.train_step` — then the PARAMETER UPDATE (theta <- theta -
eta dL/dtheta, through the optimizer). After each epoch: evaluation on validation and test,
and the epoch closed by :class:`~visionnets.train.record.RunRecord` (``metrics.jsonl``,
checkpoints, early stopping, callbacks). DDP workers run this same loop
(:mod:`visionnets.distributed.ddp` only shards the batches and sums across workers).

    >>> import torch
    >>> from visionnets.data.base import Dataset, Split
    >>> from visionnets.objectives import Supervised
    >>> from visionnets.recipes import OptimizerSection
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(200, 2, generator=g); y = (x[:, 0] > 0).long()
    >>> ds = Dataset("toy", Split(x[:150], y[:150]), None, Split(x[150:], y[150:]), (2,), 2)
    >>> opt = OptimizerSection(lr=0.5)
    >>> t = Trainer(torch.nn.Linear(2, 2), Supervised(), ds, epochs=3, optimizer=opt, progress=False)
    >>> t.fit()["test_error"] < 0.1
    True
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from visionnets.data.base import Dataset, Split
from visionnets.data.batch import Batch
from visionnets.data.specs import build_augment
from visionnets.device import resolve_device
from visionnets.errors import CheckpointError
from visionnets.objectives import Output
from visionnets.recipes import EarlyStoppingSection, OptimizerSection, Recipe, ScheduleSection
from visionnets.train.checkpoint import load_checkpoint
from visionnets.train.loader import TensorLoader
from visionnets.train.optim import build_optimizer, lr_factor, set_lr
from visionnets.train.record import EarlyStopping, RunRecord, Tally, epoch_record, evaluation_record
from visionnets.train.rundir import RunDir
from visionnets.train.setup import EXECUTORS, Setup, objective_for
from visionnets.threads import auto_threads
from visionnets.train.step import for_training, forward_autocast, in_layout, train_step


@torch.no_grad()
def tally_split(model: nn.Module, objective: Callable, data: Split, batch_size: int = 1000,
                device: torch.device | str = "cpu", precision: str = "fp32", channels_last: bool = False) -> Tally:
    """The objective's loss and metrics summed over ``data``, in eval mode, without gradients
    (under the run's ``precision`` and memory layout, as its training steps)."""
    was_training = model.training
    model.eval()
    tally = Tally()
    device = torch.device(device)
    try:
        for batch in TensorLoader(data, batch_size, device=device):
            with forward_autocast(precision, device):
                out = objective(model, in_layout(batch, channels_last))
            tally.add(out, batch.size)
    finally:
        model.train(was_training)
    return tally


def evaluate_model(model: nn.Module, objective: Callable, data: Split, batch_size: int = 1000,
                   device: torch.device | str = "cpu", precision: str = "fp32",
                   channels_last: bool = False) -> dict[str, Any]:
    """``{n, loss, error, accuracy, ...}`` of ``model`` on a Split (error and accuracy for a classifier)."""
    means = tally_split(model, objective, data, batch_size, device, precision, channels_last).means()
    out: dict[str, Any] = {"n": len(data), **means}
    if out.get("error") is not None:
        out["accuracy"] = 1.0 - out["error"]
    return out


def trainer_options(rec: Recipe) -> dict[str, Any]:
    """The :class:`Trainer` keyword arguments a recipe sets (its ``train`` section, seed, device, augmentation)."""
    t = rec.train
    return dict(epochs=t.epochs, batch_size=t.batch_size, eval_batch_size=t.eval_batch_size,
                optimizer=t.optimizer, schedule=t.schedule, early_stopping=t.early_stopping,
                grad_clip=t.grad_clip, augment=build_augment(rec.data.augment), seed=rec.seed,
                precision=t.precision, compile=t.compile, channels_last=t.channels_last, threads=rec.threads,
                device=rec.device, max_steps_per_epoch=t.max_steps_per_epoch,
                eval_test_each_epoch=t.eval_test_each_epoch, checkpoint_every_steps=t.checkpoint_every_steps,
                labeled_per_batch=t.labeled_per_batch)


class Trainer:
    """Fits ``model`` to ``dataset`` with ``objective``; writes a run directory when given one.

    ``started``: the wall-clock time (``time.time()``) the run was launched, for the records'
    ``wall_s`` (default: when ``fit`` starts). ``writer=False``: read the run directory (to
    resume) but write nothing to it (DDP workers other than rank 0). ``checkpoint_every_steps``:
    also write ``checkpoints/last`` inside an epoch every this many steps (with the position in
    the epoch and its partial sums), so a run killed at any moment loses at most that many steps
    and, resumed, ends bit-identical to one never interrupted. ``labeled_per_batch``: add that
    many labeled examples to every training batch (semi-supervised learning).
    """

    def __init__(self, model: nn.Module, objective: Callable, dataset: Dataset, *,
                 epochs: int = 10, batch_size: int = 64, eval_batch_size: int = 1000,
                 optimizer: OptimizerSection | None = None, schedule: ScheduleSection | None = None,
                 early_stopping: EarlyStoppingSection | None = None, grad_clip: float | None = None,
                 augment: Callable | None = None, seed: int = 0, device: str | torch.device = "auto",
                 run_dir: str | Path | RunDir | None = None, progress: bool = True,
                 max_steps_per_epoch: int | None = None, eval_test_each_epoch: bool = True,
                 callbacks: tuple[Callable, ...] = (), started: float | None = None, writer: bool = True,
                 checkpoint_every_steps: int | None = None, labeled_per_batch: int | None = None,
                 precision: str = "fp32", compile: bool = False, channels_last: bool = False,
                 threads: int | None = None):
        self.device = resolve_device(device)
        self.threads = threads              # CPU threads; None: chosen before each epoch (visionnets.threads)
        self.channels_last = channels_last  # image batches and the model's conv weights in NHWC memory
        self.model = (model.to(self.device, memory_format=torch.channels_last) if channels_last
                      else model.to(self.device))
        self.objective, self.dataset = objective, dataset
        self.epochs, self.batch_size, self.eval_batch_size = epochs, batch_size, eval_batch_size
        self.opt_spec = optimizer or OptimizerSection()
        self.schedule = schedule or ScheduleSection()
        self.grad_clip, self.augment, self.seed = grad_clip, augment, seed
        self.run_dir = run_dir if run_dir is None or isinstance(run_dir, RunDir) else RunDir(run_dir)
        self.progress, self.max_steps = progress, max_steps_per_epoch
        self.eval_test_each_epoch, self.checkpoint_every = eval_test_each_epoch, checkpoint_every_steps
        self.optimizer = build_optimizer([p for p in self.model.parameters() if p.requires_grad], self.opt_spec)
        self.classification = dataset.is_classification
        early = EarlyStopping.from_spec(early_stopping or EarlyStoppingSection(), self.classification)
        self.record = RunRecord(self.run_dir if writer else None, early, progress=progress,
                                callbacks=callbacks)
        self.epoch, self.step = 0, 0
        self.resume_at: tuple[int, Tally, float] | None = None   # mid-epoch: (batch, partial sums, seconds)
        self.wall_before, self.examples_seen, self.started = 0.0, 0, started
        self.stream = 0                        # the seed stream of this process (a DDP worker's rank)
        self.precision, self.compile = precision, compile
        self.step_module = for_training(self.model, compile)   # what the objective calls (DDP: its wrapper)
        self.params = list(self.model.parameters())
        self.labeled_per_batch = labeled_per_batch
        self.train_loader = TensorLoader(dataset.train, batch_size, shuffle=True, seed=seed, device=self.device,
                                         labeled_per_batch=labeled_per_batch)

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.record.history

    @property
    def best_epoch(self) -> int | None:
        return self.record.early.best_epoch

    # ----------------------------------------------------------------- evaluation
    def evaluate(self, split: str = "test") -> dict[str, Any]:
        """Mean loss and error rate of the model on ``split`` (train, val or test)."""
        return {"split": split, **evaluate_model(self.model, self.objective, self.dataset.split(split),
                                                 self.eval_batch_size, self.device, self.precision,
                                                 self.channels_last)}

    def split_means(self, split: str) -> dict[str, float | None]:
        """The objective's loss and metrics on ``split`` (DDP: summed over the workers' parts)."""
        return tally_split(self.model, self.objective, self.dataset.split(split), self.eval_batch_size,
                           self.device, self.precision, self.channels_last).means()

    def reduce(self, tally: Tally) -> Tally:
        """The epoch's training sums of every worker (one process: its own)."""
        return tally

    def executor_stats(self) -> dict[str, Any]:
        return {"name": "local", "threads": torch.get_num_threads()}

    def checkpointed(self) -> tuple[Any, Any]:
        """What checkpoints save and load: the model and the optimizer (a model-parallel worker:
        views of the whole model, gathered from every worker, so checkpoints are the same files)."""
        return self.model, self.optimizer

    # ----------------------------------------------------------------- checkpoints
    def state(self, wall_s: float) -> dict[str, Any]:
        """The run state saved with each checkpoint (early stopping's is added by the record)."""
        return {"epoch": self.epoch, "step": self.step, "seed": self.seed, "executor": self.executor_stats()["name"],
                "wall_s": wall_s, "examples_seen": self.examples_seen}

    def resume(self) -> None:
        """Continue from ``run_dir/checkpoints/last.safetensors`` exactly where it stopped."""
        if self.run_dir is None:
            raise CheckpointError("resume needs a run directory")
        state = load_checkpoint(self.run_dir.checkpoint("last"), *self.checkpointed(), restore_rng=True)
        self.epoch, self.step = state["epoch"], state["step"]
        self.wall_before, self.examples_seen = state.get("wall_s", 0.0), state.get("examples_seen", 0)
        self.record.restore(state, read_from=self.run_dir)
        if "batch" in state:          # written inside an epoch: continue it at that batch
            partial = Tally().merge(state["partial"]) if self.record.run_dir is not None else Tally()
            self.resume_at = (state["batch"], partial, state["partial_seconds"])

    # ----------------------------------------------------------------- the loop
    def n_batches(self) -> int:
        n = len(self.train_loader)
        return n if self.max_steps is None else min(n, self.max_steps)

    def where(self) -> str:
        """Where training is (for the error of a non-finite loss), and the last good checkpoint."""
        last = self.run_dir.checkpoint("last") if self.run_dir is not None else None
        kept = f"; the last good checkpoint is {last}" if last is not None and last.exists() else ""
        return f"epoch {self.epoch + 1}, step {self.step + 1}{kept}"

    def train_step(self, batch: Batch) -> Output:
        """FPROP and BPROP of one batch (the shared step), gradients left in the parameters."""
        return train_step(self.step_module, self.objective, batch, seed=self.seed, stream=self.stream,
                          step=self.step, params=self.params, augment=self.augment, grad_clip=self.grad_clip,
                          where=self.where, precision=self.precision, channels_last=self.channels_last)

    def save_progress(self, batches: int, tally: Tally, seconds: float, wall_s: float) -> None:
        """A checkpoint inside an epoch: the run state, the batch to continue at, the partial sums."""
        partial = self.reduce(tally)      # DDP: summed over the workers (every rank takes part)
        state = {**self.state(wall_s), "batch": batches, "partial": partial.totals(), "partial_seconds": seconds}
        self.record.save_last(*self.checkpointed(), state)

    def _train_epoch(self, bar, started: float) -> tuple[Tally, float, float]:
        self.model.train()
        n_batches = self.n_batches()
        start, tally, before = self.resume_at or (0, Tally(), 0.0)
        self.resume_at = None
        lr, t0 = self.opt_spec.lr, time.perf_counter() - before
        if bar is not None:
            bar.update(start)
        for i, batch in enumerate(self.train_loader.iterate(self.epoch, start), start):
            if i >= n_batches:
                break
            factor = lr_factor(self.schedule, self.epoch + i / n_batches, self.epochs)
            lr = set_lr(self.optimizer, self.opt_spec.lr, factor, self.schedule.min_lr)
            out = self.train_step(batch)
            self.optimizer.step()                                   # PARAMETER UPDATE
            self.step += 1
            tally.add(out, batch.size)
            if self.checkpoint_every and self.step % self.checkpoint_every == 0 and i + 1 < n_batches:
                self.save_progress(i + 1, tally, time.perf_counter() - t0, self.wall_before + time.time() - started)
            if bar is not None:
                bar.update(1)
                if i % 20 == 0 or i == n_batches - 1:
                    means = tally.means()
                    post = {"loss": f"{means['loss']:.4f}"}
                    if means.get("error") is not None:
                        post["acc"] = f"{1 - means['error']:.4f}"
                    post["ex/s"] = f"{tally.examples / (time.perf_counter() - t0):.0f}"
                    bar.set_postfix(post, refresh=False)
        return tally, lr, time.perf_counter() - t0

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train for ``epochs`` (or until early stopping); return the record of the best epoch."""
        if resume:
            self.resume()
        started = self.started if self.started is not None else time.time()
        bar_cls = None
        if self.progress:
            from tqdm.auto import tqdm as bar_cls
        while self.epoch < self.epochs:
            if self.device.type == "cpu":
                n = auto_threads(self.threads)
                if n != torch.get_num_threads():
                    torch.set_num_threads(n)
            bar = bar_cls(total=self.n_batches(), desc=f"epoch {self.epoch + 1}/{self.epochs}", unit="batch",
                          leave=False, dynamic_ncols=True, disable=None) if bar_cls else None  # terminals only
            t0 = time.perf_counter()
            try:
                tally, lr, train_seconds = self._train_epoch(bar, started)
            finally:
                if bar is not None:
                    bar.close()
            self.epoch += 1
            tally = self.reduce(tally)
            self.examples_seen += tally.examples
            evaluation = evaluation_record(self.split_means, self.dataset, self.epoch, self.epochs,
                                           self.eval_test_each_epoch, self.record.early)
            wall_s = self.wall_before + time.time() - started
            record = epoch_record(epoch=self.epoch, step=self.step, lr=lr, train=tally,
                                  train_seconds=train_seconds, evaluation=evaluation,
                                  seconds=time.perf_counter() - t0, wall_s=wall_s,
                                  examples_seen=self.examples_seen, executor=self.executor_stats())
            if self.record.close_epoch(self, record, *self.checkpointed(), self.state(wall_s)):
                break
        self.record.load_best(self.checkpointed()[0])
        return self.final()

    def final(self) -> dict[str, Any]:
        """The record of the best epoch (on validation; the last epoch when there is none)."""
        return self.record.final()


@EXECUTORS.register("local")
def fit_local(setup: Setup, *, progress: bool = True, callbacks: tuple = ()) -> tuple[dict, list]:
    """The ``local`` executor: one process, the :class:`Trainer`."""
    rec = setup.recipe
    trainer = Trainer(setup.model, objective_for(rec, setup.dataset), setup.dataset,
                      run_dir=setup.run_dir, progress=progress, callbacks=callbacks, started=setup.started,
                      **trainer_options(rec))
    setup.run_dir.write_executor("local", {})
    final = trainer.fit(resume=setup.resume)
    return final, trainer.history
