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
    assert main(["train", "--resume", str(out), "--set", "train.epochs=2", "--no-progress"]) == 0
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
