"""Your own data: a folder of images per class and arrays in an .npz, from the command line to eval."""

import importlib.util
import json

import numpy as np
import pytest
import torch
from PIL import Image

from visionnets.cli import main
from visionnets.data import load_dataset
from visionnets.data.user import read_inputs
from visionnets.errors import DataError


def make_folder(root, n=12, size=(12, 12), layout="flat"):
    """Two classes of RGB images: bright squares and dark rings, with noise."""
    rng = np.random.default_rng(0)
    for cls in ("rings", "squares"):
        for i in range(n):
            a = rng.integers(0, 60, (*size[::-1], 3), dtype=np.uint8)
            if cls == "squares":
                a[3:-3, 3:-3] = 230
            else:
                a[2:-2, 2:4] = a[2:-2, -4:-2] = 200
            part = "" if layout == "flat" else ("test/" if i < 3 else "train/")
            path = root / part / cls / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(a).save(path)
    return root


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VISIONNETS_CACHE", str(tmp_path / "cache"))


def test_folder_dataset_classes_splits_and_cache(tmp_path):
    root = make_folder(tmp_path / "images")
    ds = load_dataset("folder", path=str(root), val_fraction=0.25, test_fraction=0.25)
    assert ds.class_names == ["rings", "squares"] and ds.input_shape == (3, 12, 12)
    assert len(ds.test) == 6 and len(ds.train) + len(ds.val) == 18
    assert torch.bincount(ds.test.y).tolist() == [3, 3]                     # per class
    assert list((tmp_path / "cache").glob("folder-*.safetensors"))            # decoded once, cached
    again = load_dataset("folder", path=str(root), val_fraction=0.25, test_fraction=0.25)
    assert torch.equal(again.train.x, ds.train.x)
    gray = load_dataset("folder", path=str(root), size=8, grayscale=True)
    assert gray.input_shape == (1, 8, 8)
    split = load_dataset("folder", path=str(make_folder(tmp_path / "split", layout="split")), val_fraction=0)
    assert len(split.test) == 6 and len(split.train) == 18


def test_folder_errors_name_the_file(tmp_path):
    root = make_folder(tmp_path / "images")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "rings" / "big.png")
    with pytest.raises(DataError, match=r"big.png: 20x20 pixels, the first image 12x12; give data.options.size"):
        load_dataset("folder", path=str(root))
    (root / "rings" / "big.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="big.png: not a readable image"):
        load_dataset("folder", path=str(root), size=12)
    with pytest.raises(DataError, match="nowhere does not exist"):
        load_dataset("folder", path=str(tmp_path / "nowhere"))


def test_arrays_dataset(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", x=x, y=np.arange(40) % 4, class_names=np.array(["a", "b", "c", "d"]))
    ds = load_dataset("arrays", path=str(tmp_path / "a.npz"), val_fraction=0)
    assert ds.input_shape == (1, 8, 8) and ds.class_names == ["a", "b", "c", "d"] and len(ds.test) == 8
    assert float(ds.train.x.max()) <= 1.0
    np.savez(tmp_path / "r.npz", x=rng.normal(size=(30, 5)).astype(np.float32), y=rng.normal(size=30))
    reg = load_dataset("arrays", path=str(tmp_path / "r.npz"), val_fraction=0)
    assert not reg.is_classification and len(reg.test) == 6
    np.savez(tmp_path / "bad.npz", x=x)
    with pytest.raises(DataError, match=r"bad.npz: keys \['x'\]; expected 'x' and 'y'"):
        load_dataset("arrays", path=str(tmp_path / "bad.npz"))


def test_train_eval_show_and_resume_on_your_own_images(tmp_path, capsys, monkeypatch):
    root = make_folder(tmp_path / "images", n=20)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    quick = ["--set", "train.epochs=2", "--set", "model.stages=[{channels: 4, kernel: 3, padding: same}]",
             "--set", "model.hidden=[8]", "--no-progress"]
    assert main(["train", "digits_convnet", "--data", "folder:images", "--out", str(out), *quick]) == 0
    assert f"path: {root}" in (out / "recipe.yaml").read_text()                # absolute: the run can move
    capsys.readouterr()
    monkeypatch.chdir(tmp_path / "images")                                    # another working directory
    assert main(["eval", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 8
    assert main(["show", str(out)]) == 0
    assert main(["train", "--resume", str(out), "--extend", "3", "--no-progress"]) == 0
    assert main(["train", "digits_convnet", "--data", "pictures:x"]) == 2
    assert "--data 'pictures:x': expected folder:DIR or arrays:FILE.npz" in capsys.readouterr().err


def test_predict_new_images_with_the_runs_own_preprocessing(tmp_path, capsys, monkeypatch):
    """The run standardizes its inputs (fitted on its training images); predict applies the same,
    without loading the training data, and agrees with evaluating the model on the test split."""
    from visionnets import api

    root = make_folder(tmp_path / "images", n=20)
    out = tmp_path / "run"
    assert main(["train", "digits_convnet", "--data", f"folder:{root}", "--out", str(out), "--no-progress",
                 "--set", "train.epochs=3", "--set", "data.transforms=[standardize]",
                 "--set", "model.stages=[{channels: 4, kernel: 3, padding: same}]", "--set", "model.hidden=[8]"]) == 0
    capsys.readouterr()
    files = sorted((root / "squares").glob("*.png"))[:3]
    assert main(["predict", str(out), *map(str, files), str(root / "rings"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3 + 20 and rows[0]["input"] == str(files[0])
    assert set(rows[0]["probabilities"]) == {"rings", "squares"}
    assert sum(rows[0]["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    # the same numbers as the model on the loaded, transformed data
    run = api.load_run(out)
    names, raw = read_inputs(files, (3, 12, 12))
    expected = run.model(run.dataset.transform(raw)).softmax(1)
    got = api.predict(out, raw)["probabilities"]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    monkeypatch.setenv("VISIONNETS_DATA", str(tmp_path / "nothing"))
    root.rename(tmp_path / "gone")                      # no training data needed to predict
    assert main(["predict", str(out), str(tmp_path / "gone" / "rings" / "0.png"), "--csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "input,label,rings,squares" and len(lines) == 2


@pytest.mark.parametrize("stages", [
    "[{channels: 4, kernel: 3, padding: same}]",
    "[{layer: local, channels: 3, kernel: 3, padding: same, pool: l2, norm: lcn, norm_kernel: 5},"
    " {layer: tiled, channels: 4, kernel: 3, tile: 2}]",
], ids=["conv", "local_lcn_tiled"])
def test_export_onnx_runs_in_onnxruntime_at_two_batch_sizes(tmp_path, capsys, stages):
    """A folder of PNGs trained, then exported: onnxruntime (a real client) on raw images gives
    the scores predict gives, at batch 1 and 7 from one export; TorchScript as well. The custom
    layers (locally connected, tiled, LCN, L2 pooling) export as standard operators."""
    import os

    if importlib.util.find_spec("onnxruntime") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("onnxruntime is not installed; CI=true: the export extra must be installed")
        pytest.skip("onnxruntime is not installed (pip install 'visionnets[export]')")
    import onnxruntime

    from visionnets import api

    root = make_folder(tmp_path / "images", n=10)
    out = tmp_path / "run"
    assert main(["train", "digits_convnet", "--data", f"folder:{root}", "--out", str(out), "--no-progress",
                 "--set", "train.epochs=1", "--set", "data.transforms=[standardize]",
                 "--set", f"model.stages={stages}", "--set", "model.hidden=[8]"]) == 0
    assert main(["export", str(out)]) == 0
    about = json.loads((out / "model.onnx.json").read_text())
    assert about["input"]["shape"] == [None, 3, 12, 12] and about["class_names"] == ["rings", "squares"]
    session = onnxruntime.InferenceSession(str(out / "model.onnx"))
    _, raw = read_inputs([root], (3, 12, 12))
    for n in (1, 7):
        got = session.run(None, {"input": raw[:n].numpy()})[0]
        want = api.predict(out, raw[:n])["scores"]
        np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=0)
    assert main(["export", str(out), "--format", "torchscript", "--out", str(tmp_path / "m.pt")]) == 0
    scripted = torch.jit.load(str(tmp_path / "m.pt"))
    torch.testing.assert_close(scripted(raw[:7]), api.predict(out, raw[:7])["scores"], atol=1e-5, rtol=0)
