"""DDP (torch.distributed, gloo on CPU): 2 workers equal single-process training; CLI round trip."""

import json

import pytest
import torch

from visionnets import api, cli
from visionnets.train.checkpoint import read_checkpoint

# batch 50 does not split the 1,293 training digits evenly: the last batch (43) has unequal parts
TINY = ["model.stages=[{channels: 4, kernel: 3, padding: same}]", "model.hidden=[16]", "model.dropout=0",
        "data.augment=[]", "train.batch_size=50", "train.schedule.warmup_epochs=0", "train.epochs=2"]


def _weights(run_dir):
    tensors, _ = read_checkpoint(run_dir / "checkpoints" / "last.safetensors")
    return {k: v for k, v in tensors.items() if k.startswith("model.")}


def test_two_workers_equal_single_process_full_batch_training(tmp_path):
    single = api.train("digits_convnet", TINY, out=tmp_path / "single", progress=False, figures=False)
    ddp = api.train("digits_convnet", TINY, executor="ddp", out=tmp_path / "ddp", workers=2,
                            progress=False, figures=False)
    a, b = _weights(single.run_dir), _weights(ddp.run_dir)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-5, msg=k)
    for ra, rb in zip(single.history, ddp.history):
        for key in ("train_loss", "val_loss", "test_loss"):
            assert rb[key] == pytest.approx(ra[key], abs=1e-5), key
        for key in ("step", "train_error", "val_error", "test_error"):
            assert rb[key] == pytest.approx(ra[key], abs=1e-12), key
    assert json.loads((ddp.run_dir / "executor.json").read_text()) == {
        "executor": "ddp", "options": {"workers": 2, "backend": "gloo"}}


def test_cli_ddp_run_then_eval_and_wrong_flags(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["train", "digits_convnet", "--executor", "ddp", "--workers", "2", "--out", str(out),
                     "--no-progress"] + [a for s in TINY[:-1] + ["train.epochs=1"] for a in ("--set", s)])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"run directory: {out}" in printed and (out / "report.html").is_file()
    assert cli.main(["eval", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n"] == 360 and 0 <= res["error"] <= 1
    assert cli.main(["train", "digits_convnet", "--executor", "ddp", "--replicas", "2"]) == 2
    assert "--replicas applies to --executor downpour, not ddp" in capsys.readouterr().err
    assert cli.main(["train", "--resume", str(out), "--executor", "downpour"]) == 2
    assert "a ddp run cannot be resumed with --executor downpour" in capsys.readouterr().err
    # DDP writes the Trainer's checkpoints: one process can continue the run
    assert cli.main(["train", "--resume", str(out), "--executor", "local", "--extend", "2", "--no-progress"]) == 0
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert [r["executor"]["name"] for r in rows] == ["ddp", "local"] and rows[1]["wall_s"] > rows[0]["wall_s"]


def test_a_local_run_stopped_inside_an_epoch_is_continued_by_ddp(tmp_path, monkeypatch):
    """Mid-epoch checkpoints are the single process's: two DDP workers take the run up at the
    saved batch and end where the uninterrupted run ends."""
    from visionnets.train.trainer import Trainer

    steps = TINY + ["train.checkpoint_every_steps=5"]
    full = api.train("digits_convnet", steps, out=tmp_path / "full", progress=False, figures=False)
    save = Trainer.save_progress

    def save_then_stop(self, batches, *args):
        save(self, batches, *args)
        if self.step == 30:                      # epoch 2, batch 4 of 26
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "save_progress", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        api.train("digits_convnet", steps, out=tmp_path / "part", progress=False, figures=False)
    monkeypatch.undo()
    state = read_checkpoint(tmp_path / "part" / "checkpoints" / "last.safetensors")[1]["state"]
    assert state["epoch"] == 1 and state["batch"] == 4
    ddp = api.train(None, resume=tmp_path / "part", executor="ddp", workers=2, progress=False, figures=False)
    a, b = _weights(full.run_dir), _weights(ddp.run_dir)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-5, msg=k)
    assert ddp.history[-1]["train_loss"] == pytest.approx(full.history[-1]["train_loss"], abs=1e-5)
