"""The one training loop: mini-batch SGD as in the tutorial.

For each mini-batch: FPROP (compute the loss), BPROP (gradients w.r.t. the parameters),
PARAMETER UPDATE (theta <- theta - eta dL/dtheta, through the optimizer). After each epoch:
evaluation on validation and test, metrics to ``metrics.jsonl``, a checkpoint, early stopping.

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

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from visionnets.data.base import Dataset, TensorLoader
from visionnets.errors import CheckpointError, TrainingError
from visionnets.objectives import count_errors
from visionnets.recipes import EarlyStoppingSection, OptimizerSection, ScheduleSection
from visionnets.train.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from visionnets.train.optim import build_optimizer, lr_factor, set_lr


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` is CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@torch.no_grad()
def evaluate_model(model: nn.Module, objective: Callable, data, classification: bool,
                   batch_size: int = 1000, device: torch.device | str = "cpu") -> dict[str, Any]:
    """{n, loss, [error, accuracy]} of ``model`` on a Split, in eval mode, without gradients."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device)
    wrong = torch.zeros((), device=device, dtype=torch.long)
    for x, y in TensorLoader(data, batch_size, device=device):
        loss, out = objective(model, x, y)
        loss_sum += loss * len(x)
        if classification:
            wrong += count_errors(out, y)
    model.train(was_training)
    n = len(data)
    result = {"n": n, "loss": loss_sum.item() / n}
    if classification:
        result["error"] = wrong.item() / n
        result["accuracy"] = 1.0 - result["error"]
    return result


class Trainer:
    """Fits ``model`` to ``dataset`` with ``objective``; writes a run directory when given one."""

    def __init__(self, model: nn.Module, objective: Callable, dataset: Dataset, *,
                 epochs: int = 10, batch_size: int = 64, eval_batch_size: int = 1000,
                 optimizer: OptimizerSection | None = None, schedule: ScheduleSection | None = None,
                 early_stopping: EarlyStoppingSection | None = None, grad_clip: float | None = None,
                 augment: Callable | None = None, seed: int = 0, device: str | torch.device = "auto",
                 run_dir: str | Path | None = None, progress: bool = True,
                 max_steps_per_epoch: int | None = None, eval_test_each_epoch: bool = True,
                 callbacks: tuple[Callable, ...] = ()):
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.model = model.to(self.device)
        self.objective, self.dataset = objective, dataset
        self.epochs, self.batch_size, self.eval_batch_size = epochs, batch_size, eval_batch_size
        self.opt_spec = optimizer or OptimizerSection()
        self.schedule = schedule or ScheduleSection()
        self.early = early_stopping or EarlyStoppingSection()
        self.grad_clip, self.augment, self.seed = grad_clip, augment, seed
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.progress, self.max_steps = progress, max_steps_per_epoch
        self.eval_test_each_epoch, self.callbacks = eval_test_each_epoch, callbacks
        self.optimizer = build_optimizer(self.model.parameters(), self.opt_spec)
        self.classification = dataset.is_classification
        self.monitor = self.early.metric or ("val_error" if self.classification else "val_loss")
        self.history: list[dict[str, Any]] = []
        self.epoch, self.step = 0, 0
        self.best_value, self.best_epoch, self.bad_epochs = math.inf, None, 0
        self.train_loader = TensorLoader(dataset.train, batch_size, shuffle=True, seed=seed,
                                         device=self.device)

    # ----------------------------------------------------------------- evaluation
    def evaluate(self, split: str = "test") -> dict[str, Any]:
        """Mean loss and error rate of the model on ``split`` (train, val or test)."""
        return {"split": split, **evaluate_model(self.model, self.objective, self.dataset.split(split),
                                                 self.classification, self.eval_batch_size, self.device)}

    # ----------------------------------------------------------------- checkpoints
    def _state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step, "best_value": self.best_value,
                "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs, "seed": self.seed}

    def _ckpt(self, name: str) -> Path:
        assert self.run_dir is not None
        return self.run_dir / "checkpoints" / f"{name}.safetensors"

    def resume(self) -> None:
        """Continue from ``run_dir/checkpoints/last.safetensors`` exactly where it stopped."""
        if self.run_dir is None:
            raise CheckpointError("resume needs a run directory")
        state = load_checkpoint(self._ckpt("last"), self.model, self.optimizer, restore_rng=True)
        self.epoch, self.step = state["epoch"], state["step"]
        self.best_value = state["best_value"] if state["best_value"] is not None else math.inf
        self.best_epoch, self.bad_epochs = state["best_epoch"], state["bad_epochs"]
        metrics = self.run_dir / "metrics.jsonl"
        if metrics.is_file():
            rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
            self.history = [r for r in rows if r["epoch"] <= self.epoch]

    def _write_metrics(self) -> None:
        if self.run_dir is not None:
            atomic_write_text(self.run_dir / "metrics.jsonl",
                              "".join(json.dumps(r) + "\n" for r in self.history))

    # ----------------------------------------------------------------- the loop
    def _train_epoch(self, bar) -> dict[str, float]:
        model, opt, objective = self.model, self.optimizer, self.objective
        model.train()
        loader = self.train_loader
        loader.set_epoch(self.epoch)
        n_batches = len(loader) if self.max_steps is None else min(len(loader), self.max_steps)
        gen = torch.Generator(device="cpu").manual_seed(self.seed * 7_919 + self.epoch)
        loss_sum = torch.zeros((), device=self.device)
        wrong = torch.zeros((), device=self.device, dtype=torch.long)
        seen, t0 = 0, time.perf_counter()
        base_lr = self.opt_spec.lr
        lr = base_lr
        for i, (x, y) in enumerate(loader):
            if i >= n_batches:
                break
            lr = set_lr(opt, base_lr, lr_factor(self.schedule, self.epoch + i / n_batches, self.epochs),
                        self.schedule.min_lr)
            if self.augment is not None:
                x = self.augment(x, gen)
            loss, out = objective(model, x, y)                      # FPROP
            if not torch.isfinite(loss):
                last = self._ckpt("last") if self.run_dir else None
                kept = f"; the last good checkpoint is {last}" if last and last.exists() else ""
                raise TrainingError(f"loss became {loss.item()} at epoch {self.epoch + 1}, "
                                    f"step {self.step + 1}{kept}")
            opt.zero_grad(set_to_none=True)
            loss.backward()                                         # BPROP
            if self.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
            opt.step()                                              # PARAMETER UPDATE
            self.step += 1
            seen += len(x)
            loss_sum += loss.detach() * len(x)
            if self.classification:
                wrong += count_errors(out.detach(), y)
            if bar is not None:
                bar.update(1)
                if i % 20 == 0 or i == n_batches - 1:
                    post = {"loss": f"{loss_sum.item() / seen:.4f}"}
                    if self.classification:
                        post["acc"] = f"{1 - wrong.item() / seen:.4f}"
                    post["ex/s"] = f"{seen / (time.perf_counter() - t0):.0f}"
                    bar.set_postfix(post, refresh=False)
        seconds = time.perf_counter() - t0
        out = {"lr": lr, "train_loss": loss_sum.item() / max(seen, 1), "train_seconds": seconds,
               "examples_per_s": seen / max(seconds, 1e-9)}
        out["train_error"] = wrong.item() / max(seen, 1) if self.classification else None
        return out

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train for ``epochs`` (or until early stopping); return the record of the best epoch."""
        if resume:
            self.resume()
        bar_cls = None
        if self.progress:
            from tqdm.auto import tqdm as bar_cls
        while self.epoch < self.epochs:
            torch.manual_seed(self.seed * 1_000_003 + self.epoch)  # dropout etc.: exact on resume
            n_batches = len(self.train_loader) if self.max_steps is None else min(len(self.train_loader), self.max_steps)
            bar = bar_cls(total=n_batches, desc=f"epoch {self.epoch + 1}/{self.epochs}",
                          unit="batch", leave=False, dynamic_ncols=True,
                          disable=None) if bar_cls else None  # no bar when not on a terminal
            t0 = time.perf_counter()
            try:
                record = {"epoch": self.epoch + 1, **self._train_epoch(bar)}
            finally:
                if bar is not None:
                    bar.close()
            self.epoch += 1
            record["step"] = self.step
            for split in ("val", "test"):
                if getattr(self.dataset, split) is None or (split == "test" and not self.eval_test_each_epoch
                                                            and self.epoch < self.epochs):
                    record[f"{split}_loss"] = record[f"{split}_error"] = None
                    continue
                ev = self.evaluate(split)
                record[f"{split}_loss"], record[f"{split}_error"] = ev["loss"], ev.get("error")
            record["seconds"] = time.perf_counter() - t0
            stop = self._after_epoch(record)
            for cb in self.callbacks:
                cb(self, record)
            if self.progress:
                print(_summary(record), flush=True)
            if stop:
                break
        if self.run_dir is not None and self._ckpt("best").exists():
            load_checkpoint(self._ckpt("best"), self.model)
        return self.final()

    def _after_epoch(self, record: dict[str, Any]) -> bool:
        value = record.get(self.monitor)
        if value is None:  # no validation split: the last epoch is the one kept
            value = -record["epoch"]
        improved = value < self.best_value - self.early.min_delta
        if improved:
            self.best_value, self.best_epoch, self.bad_epochs = value, record["epoch"], 0
        else:
            self.bad_epochs += 1
        record["best_epoch"] = self.best_epoch
        self.history.append(record)
        if self.run_dir is not None:
            self._write_metrics()
            save_checkpoint(self._ckpt("last"), self.model, self.optimizer, self._state())
            if improved:
                save_checkpoint(self._ckpt("best"), self.model, None, self._state())
        return self.early.patience is not None and self.bad_epochs >= self.early.patience

    def final(self) -> dict[str, Any]:
        """The record of the best epoch (on validation; the last epoch when there is none)."""
        if not self.history:
            return {}
        best = next((r for r in self.history if r["epoch"] == self.best_epoch), self.history[-1])
        total = sum(r["train_seconds"] for r in self.history)
        return {**best, "epochs_run": self.history[-1]["epoch"], "train_seconds_total": total}


def _summary(r: dict[str, Any]) -> str:
    parts = [f"epoch {r['epoch']:>3}", f"loss {r['train_loss']:.4f}"]
    for key in ("train_error", "val_error", "test_error"):
        if r.get(key) is not None:
            parts.append(f"{key.replace('_error', '')} err {100 * r[key]:.2f}%")
    if r.get("val_error") is None and r.get("val_loss") is not None:
        parts.append(f"val loss {r['val_loss']:.4g}")
    if r.get("test_error") is None and r.get("test_loss") is not None:
        parts.append(f"test loss {r['test_loss']:.4g}")
    parts.append(f"{r['examples_per_s']:.0f} ex/s")
    return " | ".join(parts)
