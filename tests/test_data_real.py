"""The loaders and ``visionnets data check`` on the real files (skipped where they are absent)."""

import argparse
import gzip
import hashlib

import numpy as np
import pytest
import torch

from conftest import need_data
from visionnets.commands import data as data_cmd
from visionnets.data import load_dataset, load_natural_images
from visionnets.data.cifar10 import read_npz
from visionnets.data.mnist import LAYOUT as MNIST_LAYOUT
from visionnets.errors import DataError

# from ../shared/data/mnist/README.md
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def run_cmd(argv):
    parser = argparse.ArgumentParser(prog="visionnets data")
    data_cmd.add_arguments(parser)
    return data_cmd.run(parser.parse_args(argv))


def test_mnist_real():
    root = need_data("mnist")
    ds = load_dataset("mnist", root, val_fraction=0.1, seed=0)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (54000, 6000, 10000)
    assert ds.train.x.shape[1:] == (1, 28, 28) and ds.train.x.dtype == torch.float32
    assert float(ds.train.x.min()) == 0.0 and float(ds.train.x.max()) == 1.0
    assert torch.bincount(ds.test.y, minlength=10).tolist() == MNIST_TEST_COUNTS
    train_y = torch.cat([ds.train.y, ds.val.y])
    assert torch.bincount(train_y, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    # the canonical mean pixel of MNIST's training set is 0.1307
    assert float(torch.cat([ds.train.x, ds.val.x]).mean()) == pytest.approx(0.1307, abs=1e-4)


def test_faces_real():
    root = need_data("faces")
    ds = load_dataset("faces", root, val_fraction=0.0)
    assert (len(ds.train), len(ds.test)) == (280, 120) and ds.input_shape == (1, 112, 92)
    assert ds.num_classes == 40 and ds.class_names[0] == "s1" and ds.class_names[-1] == "s40"
    assert torch.bincount(ds.test.y).tolist() == [3] * 40
    assert torch.bincount(ds.train.y).tolist() == [7] * 40
    assert 0.0 <= float(ds.train.x.min()) and float(ds.train.x.max()) <= 1.0


def test_natural_real():
    root = need_data("natural")
    images = load_natural_images(root)
    assert images["camera"].shape == (512, 512) and images["coffee"].shape == (400, 600, 3)
    assert images["chelsea"].shape == (300, 451, 3) and len(images) == 7
    ds = load_dataset("natural", root, n_train=700, n_test=70, patch_size=8, val_fraction=0)
    assert ds.train.x.shape == (700, 1, 8, 8) and ds.test.x.shape == (70, 1, 8, 8)
    assert ds.class_names == sorted(images) and torch.bincount(ds.train.y).tolist() == [100] * 7
    # patch 0 of class 'astronaut' is a real window of its luma image
    luma = (images["astronaut"].astype(np.float32) / 255) @ np.array([0.299, 0.587, 0.114], np.float32)
    patch = ds.train.x[ds.train.y == 0][0, 0].numpy()
    windows = np.lib.stride_tricks.sliding_window_view(luma, (8, 8))
    assert np.isclose(windows, patch, atol=1e-5).all(axis=(2, 3)).any()


def test_cifar10_real_test_split():
    root = need_data("cifar10")
    x, y, lossy = read_npz(root / "cifar10" / "test.npz")
    assert x.shape == (10000, 3, 32, 32) and np.bincount(y).tolist() == [1000] * 10 and not lossy
    means = x.reshape(10000, 3, -1).mean(axis=(0, 2)) / 255
    assert means == pytest.approx([0.4941, 0.4851, 0.4504], abs=2e-4)    # README's numbers


def test_data_check_real(capsys):
    root = need_data("mnist", "faces", "natural", "cifar10")
    assert run_cmd(["check", "mnist", "--data-dir", str(root)]) == 0
    assert run_cmd(["check", "faces", "--data-dir", str(root)]) == 0
    assert run_cmd(["check", "cifar10", "--data-dir", str(root)]) == 0      # the lossless copy's sums
    out = capsys.readouterr().out
    assert out.count(" ok ") == 7 and "0 mismatched" in out


def test_data_check_accepts_raw_mnist(tmp_path, capsys):
    root = need_data("mnist")
    for need in MNIST_LAYOUT.needs:
        raw, gz = need.choices
        data = gzip.decompress((root / "mnist" / gz.name).read_bytes())
        assert hashlib.sha256(data).hexdigest() == raw.digest          # our published raw sums
        (tmp_path / raw.name).write_bytes(data)
    assert run_cmd(["check", "mnist", "--data-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.count(" ok ") == 4


def test_data_check_mismatch_and_missing(tmp_path, capsys, monkeypatch):
    # only --data-dir may be searched: no $VISIONNETS_DATA (CI sets it), no ~/.cache/visionnets
    monkeypatch.delenv("VISIONNETS_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    folder = tmp_path / "faces"
    folder.mkdir()
    (folder / "orl_faces.npz").write_bytes(b"not the real file")
    assert run_cmd(["check", "--data-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "expected cd0d8cd4335dea8c" in out and "1 mismatched" in out
    with pytest.raises(DataError, match="dataset 'cifar10' not found"):
        run_cmd(["check", "cifar10", "--data-dir", str(tmp_path / "empty")])
    with pytest.raises(DataError, match="dataset 'digits' has no files to check"):
        run_cmd(["check", "digits"])


def test_data_list(tmp_path, capsys):
    assert run_cmd(["list", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "digits (default)" in out and "subsample=None" in out and str(tmp_path) in out


@pytest.mark.slow
def test_cifar10_real_full_load():
    root = need_data("cifar10")
    ds = load_dataset("cifar10", root, val_fraction=0.1)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (45000, 5000, 10000)
    assert ds.train.x.shape[1:] == (3, 32, 32) and ds.train.x.dtype == torch.float32
    assert torch.bincount(torch.cat([ds.train.y, ds.val.y])).tolist() == [5000] * 10
    assert ds.info["lossy"] is False and float(ds.train.x.max()) <= 1.0    # the lossless copy


def test_face_tasks_real():
    """Faces against non-faces of the same size and tone; identities only on faces, in both splits."""
    root = need_data("lfw", "cifar10", "natural")
    ds = load_dataset("face_tasks", root, val_fraction=0.0)
    assert ds.tasks == {"face": 2, "identity": 62} and ds.input_shape == (1, 32, 32)
    for split in (ds.train, ds.test):
        face, ident = split.y[:, 0], split.y[:, 1]
        assert face.float().mean().item() == pytest.approx(0.5, abs=0.01)          # balanced
        assert (ident[face == 0] == -1).all() and (ident[face == 1] >= -1).all()
        # faces and non-faces have the same range of brightness: no trivial cue
        m_face, m_non = split.x[face == 1].mean().item(), split.x[face == 0].mean().item()
        assert abs(m_face - m_non) < 0.1 and split.x.min() >= 0 and split.x.max() <= 1
    assert set(ds.test.y[:, 1].unique().tolist()) - {-1} <= set(ds.train.y[:, 1].unique().tolist())
    assert len(set(ds.test.y[:, 1].tolist()) - {-1}) == 62                       # every person tested


def test_rare_faces_real():
    """Faces rare in training (3 %), test faces of held-out people at the paper's ratio, same tone."""
    from visionnets.data.rarefaces import PAPER_NONFACES_PER_FACE, balanced_test

    root = need_data("lfw", "cifar10", "natural")
    ds = load_dataset("rare_faces", root, val_fraction=0.0, n_train=3000, face_fraction=0.03, n_test_faces=300)
    assert ds.input_shape == (1, 32, 32) and ds.val is None and len(ds.train) == 3000
    assert int(ds.train.y.sum()) == 90 and int(ds.test.y.sum()) == 300
    assert int((ds.test.y == 0).sum()) == round(300 * PAPER_NONFACES_PER_FACE)
    bal = balanced_test(ds.test)
    assert len(bal) == 600 and bal.y.float().mean().item() == 0.5
    train_faces = {bytes(x.numpy().tobytes()) for x in ds.train.x[ds.train.y == 1]}
    assert not any(bytes(x.numpy().tobytes()) in train_faces for x in ds.test.x[ds.test.y == 1])
    for split in (ds.train, bal):
        m_face, m_non = split.x[split.y == 1].mean().item(), split.x[split.y == 0].mean().item()
        assert abs(m_face - m_non) < 0.1 and split.x.min() >= 0 and split.x.max() <= 1
    with pytest.raises(DataError, match="val_fraction"):
        load_dataset("rare_faces", root, val_fraction=0.1)


def test_the_face_neuron_recipe_pretrains_its_k_means_top_and_trains(tmp_path):
    """``le2012_faces`` as bundled, on 800 images for one epoch: stage 1 with the L1 code, the
    whole-image top stage as k-means (data-started, re-seeded, its bias holding -W mean)."""
    import json

    from visionnets import api

    root = need_data("lfw", "cifar10", "natural")
    r = api.train("le2012_faces", ["data.options.n_train=800", "data.options.n_test_faces=40", "pretrain.epochs=1",
                                   "train.epochs=1"], data_dir=root, out=tmp_path / "run", progress=False, figures=False)
    layers = json.loads((r.run_dir / "pretrain.json").read_text())["layers"]
    assert [s["stage"] for s in layers] == ["stage1", "stage2"]
    assert "reseeded" in layers[1]["epochs"][0] and "reseeded" not in layers[0]["epochs"][0]
    top = api.load_run(r.run_dir, root).model.stage2.filter
    assert top.weight.shape == (1, 1, 32, 8, 26, 26) and top.bias.shape == (32, 1, 1)
    assert r.history[-1]["epoch"] == 1
