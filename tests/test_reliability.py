"""What a user names is what is used, runs remember their data, bad input leaves no broken run."""

import json

import pytest
import torch

from visionnets.cli import main
from test_data_idx import make_mnist

QUICK_LINEAR = ["--set", "train.epochs=1", "--set", "data.val_fraction=0.2", "--no-progress"]


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    """Twelve MNIST-shaped images in tmp/data/mnist; no $VISIONNETS_DATA to fall back on."""
    monkeypatch.delenv("VISIONNETS_DATA", raising=False)
    make_mnist(tmp_path / "data" / "mnist", n_train=40, n_test=20)
    return tmp_path / "data"


def test_a_run_remembers_its_data_root(fake_mnist, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "mnist_linear", "--data-dir", str(fake_mnist), "--out", str(out), *QUICK_LINEAR]) == 0
    assert json.loads((out / "data.json").read_text())["root"] == str(fake_mnist.resolve())
    capsys.readouterr()
    assert main(["eval", str(out), "--json"]) == 0                       # no --data-dir needed
    assert json.loads(capsys.readouterr().out)["n"] == 20
    assert main(["show", str(out)]) == 0
    assert main(["train", "--resume", str(out), "--extend", "2", "--no-progress"]) == 0
    capsys.readouterr()
    # the data moved: one line that says so; --data-dir points to the new place
    moved = tmp_path / "moved"
    fake_mnist.rename(moved)
    assert main(["eval", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "which is no longer there" in err and str(fake_mnist.resolve()) in err
    assert main(["eval", str(out), "--data-dir", str(moved)]) == 0


def test_an_explicit_incomplete_data_dir_fails_even_with_the_variable_set(fake_mnist, tmp_path, monkeypatch,
                                                                           capsys):
    make_mnist(tmp_path / "complete" / "mnist")
    monkeypatch.setenv("VISIONNETS_DATA", str(tmp_path / "complete"))
    (fake_mnist / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    assert main(["train", "mnist_linear", "--data-dir", str(fake_mnist), "--out", str(tmp_path / "run"),
                 *QUICK_LINEAR]) == 2
    err = capsys.readouterr().err
    assert "t10k-labels-idx1-ubyte" in err and str(fake_mnist) in err and str(tmp_path / "complete") not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_a_gpu_is_one_line_and_leaves_no_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "digits_convnet", "--set", "device=cuda", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "device: 'cuda' asks for CUDA but torch sees no GPU" in err[0]
    assert not out.exists()


# --------------------------------------------------------------------------- interrupted runs

def _weights(run_dir):
    from visionnets.train.checkpoint import read_checkpoint

    tensors, meta = read_checkpoint(run_dir / "checkpoints" / "last.safetensors")
    return {k: v for k, v in tensors.items() if k.startswith("model.")}, meta["state"]


# the demo convnet with dropout and augmentation (both seeded per step), 3 epochs of 41 steps
MIDEPOCH = ["train.epochs=3", "train.checkpoint_every_steps=4", "train.schedule.warmup_epochs=0.5"]


def _train_child(out, resume):
    import os

    from visionnets import api

    torch.set_num_threads(1)
    try:
        if resume:
            api.train(None, resume=out, progress=False, figures=False)
        else:
            api.train("digits_convnet", MIDEPOCH, out=out, progress=False, figures=False)
    finally:
        os._exit(0)


def test_killed_at_five_random_moments_the_resumed_run_is_bit_identical(tmp_path):
    """kill -9 at random moments (each after the next checkpoint appeared): resumed, the run
    ends with exactly the weights of a run never interrupted."""
    import multiprocessing as mp
    import os
    import random
    import signal
    import time

    from visionnets import api

    full = api.train("digits_convnet", MIDEPOCH, out=tmp_path / "full", progress=False, figures=False)
    out, rng, ctx = tmp_path / "killed", random.Random(0), mp.get_context("fork")
    last = out / "checkpoints" / "last.safetensors"
    kills, states = 0, []
    for attempt in range(5):
        seen = last.stat().st_mtime_ns if last.exists() else None
        child = ctx.Process(target=_train_child, args=(out, attempt > 0))
        child.start()
        while child.is_alive() and (not last.exists() or last.stat().st_mtime_ns == seen):
            time.sleep(0.002)                             # until the next checkpoint is written
        time.sleep(rng.uniform(0.0, 0.05))                # then a random moment: mid-step, mid-write, ...
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)
            kills += 1
        child.join()
        states.append(_weights(out)[1])
    resumed = api.train(None, resume=out, progress=False, figures=False)
    a, _ = _weights(full.run_dir)
    b, _ = _weights(resumed.run_dir)
    assert kills >= 3                                     # the run lasts long enough to be killed
    assert any("batch" in s for s in states)              # some resumed from inside an epoch
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert [r["train_loss"] for r in resumed.history] == pytest.approx([r["train_loss"] for r in full.history])
    assert not list(out.rglob(".*.tmp"))                  # a killed writer's temporary files are gone


@pytest.mark.parametrize("victim, nth", [("last.safetensors", 4), ("best.safetensors", 2), ("metrics.jsonl", 2)])
def test_a_crash_between_write_and_rename_leaves_loadable_files(tmp_path, monkeypatch, victim, nth):
    """The process dies while a file is replaced: what is on disk still loads, and resuming
    finds the last complete state and ends as a run never interrupted."""
    import os

    from visionnets import api
    from visionnets.train.checkpoint import load_checkpoint

    full = api.train("digits_convnet", MIDEPOCH, out=tmp_path / "full", progress=False, figures=False)
    real_replace, calls = os.replace, {"n": 0}

    def crashing_replace(src, dst):
        if str(dst).endswith(victim):
            calls["n"] += 1
            if calls["n"] == nth:
                raise KeyboardInterrupt("killed between write and rename")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crashing_replace)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        api.train("digits_convnet", MIDEPOCH, out=out, progress=False, figures=False)
    monkeypatch.setattr(os, "replace", real_replace)
    model = api.load_run(out, which="last").model          # whatever is there loads
    for name in ("last", "best"):
        if (out / "checkpoints" / f"{name}.safetensors").exists():
            load_checkpoint(out / "checkpoints" / f"{name}.safetensors", model)
    resumed = api.train(None, resume=out, progress=False, figures=False)
    a, _ = _weights(full.run_dir)
    b, _ = _weights(resumed.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]


# --------------------------------------------------------------------------- resume semantics

SHORT = ["model.stages=[{channels: 4, kernel: 3, padding: same}]", "model.hidden=[16]", "train.epochs=2",
         "train.schedule.warmup_epochs=0"]


def test_resume_continues_the_plan_and_extend_restarts_the_cosine(tmp_path):
    from visionnets import api
    from visionnets.errors import ConfigError

    run = api.train("digits_convnet", SHORT, out=tmp_path / "run", progress=False, figures=False)
    lr_end = run.history[-1]["lr"]
    with pytest.raises(ConfigError, match=r"--set train.epochs: a resumed run continues its own plan exactly; "
                                          r"to train it longer, use --extend EPOCHS"):
        api.train(None, ["train.epochs=4"], resume=run.run_dir)
    with pytest.raises(ConfigError, match="--set train.optimizer.lr: a resumed run continues"):
        api.train(None, ["train.optimizer.lr=0.5"], resume=run.run_dir)
    with pytest.raises(ConfigError, match="--extend 2: the run is planned for 2 epochs"):
        api.train(None, resume=run.run_dir, extend=2)
    with pytest.raises(ConfigError, match="--extend: extends a run given with --resume"):
        api.train("digits_convnet", extend=4)
    same = api.train(None, ["threads=1"], resume=run.run_dir, progress=False, figures=False)   # nothing to do
    assert [r["epoch"] for r in same.history] == [1, 2]
    longer = api.train(None, resume=run.run_dir, extend=4, progress=False, figures=False)
    assert [r["epoch"] for r in longer.history] == [1, 2, 3, 4]
    rec = api.load_run(run.run_dir).recipe
    assert rec["train"]["epochs"] == 4 and rec["train"]["schedule"]["restarts"] == [2]
    # the cosine restarted at epoch 2 (base lr, not the 0 it had decayed to) and decays to the new end
    base = rec["train"]["optimizer"]["lr"]
    assert lr_end < 0.01 * base
    assert longer.history[2]["lr"] > 0.5 * base > longer.history[3]["lr"]


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_directory(tmp_path, capsys):
    assert main(["train", "digits_convnet", "--set", "train.optimizer.lr=1e30", "--set", "train.grad_clip=null",
                 "--set", "model.dropout=0", "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "loss became" in err[0] and "epoch 1" in err[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    (["train", "digits_convnet", "--set", "train.epoch=3"],
     "--set train.epoch=3: train.epoch: unknown key (did you mean 'epochs'?)"),
    (["train", "digits_convnet", "--set", "train.optimizer.momentm=0.5"], "(did you mean 'momentum'?)"),
    (["train", "digits_convent"], "digits_convent: no such recipe file or bundled recipe (did you mean 'digits_convnet'?)"),
    (["train", "digits_convnet", "--set", "data.name=mnits"], "unknown dataset 'mnits' (did you mean 'mnist'?)"),
    (["train", "digits_convnet", "--set", "model.hiden=[3]"], "model.hiden: unknown key for model 'convnet' (did you mean 'hidden'?)"),
    (["train", "digits_convnet", "--set", "objective.name=supervise"], "unknown objective 'supervise' (did you mean 'supervised'?)"),
])
def test_mistakes_name_their_flag_and_the_nearest_valid_name(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_show_suggests_the_nearest_layer(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "digits_convnet", "--set", "train.epochs=1", "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["show", str(out), "--layer", "stage1.filtr"]) == 2
    assert "no layer named 'stage1.filtr' in the model (did you mean 'stage1.filter'?)" in capsys.readouterr().err


def test_progress_in_a_log_is_one_line_per_epoch_without_bar_frames(tmp_path, capsys):
    """stdout and stderr are not terminals under pytest: as in a CI log or `cmd > log`."""
    from visionnets.unsupervised import RBM, KMeans

    x = torch.rand(64, 10)
    RBM(n_components=4, n_epochs=3, verbose=True, random_state=0).fit(x)
    KMeans(n_clusters=3, n_epochs=2, verbose=True, random_state=0).fit(x)
    assert main(["train", "digits_convnet", "--set", "train.epochs=2", "--out", str(tmp_path / "run")]) == 0
    out, err = capsys.readouterr()
    assert "\r" not in out + err                              # no progress-bar frames
    # estimators print as scikit-learn's do: one line per iteration on stdout
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert [line.split(",")[0] for line in lines] == ["[RBM] Iteration 1", "[RBM] Iteration 2", "[RBM] Iteration 3",
                                                      "[KMeans] Iteration 1", "[KMeans] Iteration 2"]
    assert all(line.endswith("s") and "time = " in line for line in lines)
    assert sum(line.startswith("epoch ") for line in out.splitlines()) == 2     # the trainer: a line per epoch
