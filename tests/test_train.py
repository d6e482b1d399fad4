"""The Trainer: learning, exact resume, determinism, NaN handling, early stopping, checkpoints."""

import json

import pytest
import torch

from visionnets import api
from visionnets.data.base import Dataset, Split
from visionnets.errors import CheckpointError, ConfigError, TrainingError
from visionnets.objectives import OBJECTIVES, Supervised
from visionnets.recipes import EarlyStoppingSection, OptimizerSection, ScheduleSection
from visionnets.train.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from visionnets.train.optim import lr_factor
from visionnets.train.trainer import Trainer

# a small, fast net that still exercises dropout and augmentation randomness
SMALL = ["model.stages=[{channels: 8, kernel: 3, padding: same}]", "model.hidden=[32]",
         "train.batch_size=32", "train.schedule.warmup_epochs=0"]


def _weights(run_dir):
    tensors, _ = read_checkpoint(run_dir / "checkpoints" / "last.safetensors")
    return {k: v for k, v in tensors.items() if k.startswith("model.")}


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path):
    full = api.train("digits_convnet", SMALL + ["train.epochs=3"], out=tmp_path / "full",
                     progress=False, figures=False)

    def interrupt(trainer, record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        api.train("digits_convnet", SMALL + ["train.epochs=3"], out=tmp_path / "part", progress=False,
                  figures=False, callbacks=(interrupt,))
    resumed = api.train(None, resume=tmp_path / "part", progress=False, figures=False)
    a, b = _weights(full.run_dir), _weights(resumed.run_dir)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows = [json.loads(l) for l in (resumed.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[-1]["test_error"] == full.history[-1]["test_error"]


def test_training_learns_and_is_deterministic(tmp_path):
    r1 = api.train("digits_convnet", SMALL + ["train.epochs=4"], out=tmp_path / "a", progress=False, figures=False)
    r2 = api.train("digits_convnet", SMALL + ["train.epochs=4"], out=tmp_path / "b", progress=False, figures=False)
    assert r1.final["test_error"] < 0.3  # chance is 0.9; 4 short epochs of a tiny net
    assert [h["train_loss"] for h in r1.history] == [h["train_loss"] for h in r2.history]
    for key in ("epoch", "step", "lr", "train_loss", "train_error", "val_loss", "val_error",
                "test_loss", "test_error", "seconds", "examples_per_s"):
        assert key in r1.history[0]


@OBJECTIVES.register("nan_after_3_steps_test")
class _NanAfter:
    def __init__(self):
        self.calls, self.inner = 0, Supervised()

    def __call__(self, model, batch):
        out = self.inner(model, batch)
        if model.training:
            self.calls += 1
            if self.calls > 3:
                return out._replace(loss=out.loss * float("nan"))
        return out


def _toy(n=256):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return Dataset("toy", Split(x[: n // 2], y[: n // 2]), Split(x[n // 2: 3 * n // 4], y[n // 2: 3 * n // 4]),
                   Split(x[3 * n // 4:], y[3 * n // 4:]), (4,), 2)


def test_nan_loss_stops_with_epoch_and_step_and_keeps_checkpoint(tmp_path):
    t = Trainer(torch.nn.Linear(4, 2), _NanAfter(), _toy(), epochs=5, batch_size=64, run_dir=tmp_path,
                progress=False)
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 2, step 4; the last good checkpoint is .*last"):
        t.fit()
    assert load_checkpoint(tmp_path / "checkpoints" / "last.safetensors", torch.nn.Linear(4, 2))["epoch"] == 1


def test_early_stopping_and_best_checkpoint(tmp_path):
    t = Trainer(torch.nn.Linear(4, 2), Supervised(), _toy(), epochs=20, run_dir=tmp_path, progress=False,
                optimizer=OptimizerSection(lr=1e-9, momentum=0.0),
                early_stopping=EarlyStoppingSection(patience=2))
    final = t.fit()
    assert final["epochs_run"] == 3 and final["best_epoch"] == 1
    assert (tmp_path / "checkpoints" / "best.safetensors").is_file()


def test_schedules():
    cos = ScheduleSection(name="cosine")
    assert lr_factor(cos, 0, 10) == 1.0 and lr_factor(cos, 5, 10) == pytest.approx(0.5)
    assert lr_factor(cos, 10, 10) == pytest.approx(0.0, abs=1e-12)
    warm = ScheduleSection(name="cosine", warmup_epochs=2)
    assert lr_factor(warm, 1, 10) == pytest.approx(0.5, abs=1e-3)
    assert lr_factor(ScheduleSection(name="multistep", milestones=[2, 4], gamma=0.1), 4.5, 10) == pytest.approx(0.01)


def test_adam_and_adamw_train():
    # 20 epochs of 2 steps: every initialization (seeds 0-9 checked) reaches <= 6 % test error
    for name in ("adam", "adamw"):
        t = Trainer(torch.nn.Linear(4, 2), Supervised(), _toy(), epochs=20, progress=False,
                    optimizer=OptimizerSection(name=name, lr=0.05))
        assert t.fit()["test_error"] < 0.15


def test_checkpoint_roundtrip_with_optimizer_and_errors(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Linear(5, 2))
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 3)).sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "c.safetensors", model, opt, {"epoch": 7})
    m2 = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Linear(5, 2))
    o2 = torch.optim.Adam(m2.parameters())
    assert load_checkpoint(path, m2, o2)["epoch"] == 7
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), m2.state_dict().values()))
    assert torch.equal(opt.state_dict()["state"][0]["exp_avg"], o2.state_dict()["state"][0]["exp_avg"])
    with pytest.raises(CheckpointError, match="do not fit the model"):
        load_checkpoint(path, torch.nn.Linear(3, 2))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="bad.safetensors: not a readable"):
        load_checkpoint(bad, model)
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_out_dir_not_empty_is_refused(tmp_path):
    (tmp_path / "x").write_text("")
    with pytest.raises(ConfigError, match="not empty"):
        api.train("digits_convnet", SMALL + ["train.epochs=1"], out=tmp_path, progress=False)


def test_cosine_regression_fits(tmp_path):
    r = api.train("cosine", ["model.hidden=[64, 64]", "train.epochs=15", "train.optimizer.lr=0.005",
                             "data.options.n_train=512"], out=tmp_path / "cos", progress=False, figures=False)
    assert r.final["test_loss"] < 0.01  # 1/2 (y - yhat)^2 averaged: cos(x) itself has 1/2 E[y^2] ~ 0.25
