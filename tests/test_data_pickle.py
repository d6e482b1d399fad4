"""The restricted unpickler and the cifar10 loader on generated fake batches."""

import io
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from visionnets.data import load_dataset
from visionnets.data.cifar10 import CLASS_NAMES, read_batch
from visionnets.data.safe_pickle import load_restricted, loads_restricted
from visionnets.errors import DataError


class Py2Pickler(pickle._Pickler):
    """Writes ``bytes`` as Python 2 ``str`` opcodes (BINSTRING), as the original CIFAR batches are."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def py2_dumps(obj) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    # NumPy 1.x (which wrote the real batches) named its module numpy.core, not numpy._core
    blob = buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    return blob


def test_py2_writer_emulates_the_original_batches():
    blob = py2_dumps({b"data": np.zeros((2, 3), np.uint8)})
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in blob and b"_codecs" not in blob
    assert pickle.BINSTRING in blob or pickle.SHORT_BINSTRING in blob


def fake_batch(n, seed, py2=True):
    rng = np.random.default_rng(seed)
    d = {b"batch_label": b"training batch 1 of 5",
         b"labels": [int(v) for v in rng.integers(0, 10, n)],
         b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
         b"filenames": [b"img_%d.png" % i for i in range(n)]}
    return py2_dumps(d) if py2 else pickle.dumps(d, protocol=5)


def make_cifar_pickles(folder, n=4):
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for i, name in enumerate(["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                              "data_batch_5", "test_batch"]):
        blob = fake_batch(n, i)
        (folder / name).write_bytes(blob)
        batches[name] = pickle.loads(blob, encoding="bytes")   # trusted: we just wrote it
    meta = {b"label_names": [c.encode() for c in CLASS_NAMES], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(py2_dumps(meta))
    return batches


@pytest.mark.parametrize("writer", ["py2", "p2", "p4", "p5"])
def test_plain_dict_of_arrays_and_lists_loads(writer):
    obj = {"data": np.arange(12, dtype=np.uint8).reshape(3, 4), "labels": [1, 2, 3],
           "f": np.linspace(0, 1, 5), "name": "x", "raw": b"\x00\xff", "n": None, "t": (1, 2.5)}
    blob = {"py2": lambda: py2_dumps({k.encode(): v for k, v in obj.items() if k != "raw"}),
            "p2": lambda: pickle.dumps(obj, protocol=2),
            "p4": lambda: pickle.dumps(obj, protocol=4),
            "p5": lambda: pickle.dumps(obj, protocol=5)}[writer]()
    got = loads_restricted(blob)
    assert np.array_equal(got["data"], obj["data"]) and got["data"].dtype == np.uint8
    assert np.array_equal(got["f"], obj["f"]) and got["labels"] == [1, 2, 3]
    if writer != "py2":
        assert got["raw"] == b"\x00\xff" and got["t"] == (1, 2.5)


class _Evil:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def test_refuses_code_execution_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    cmd = f"touch {marker}"
    for blob in (pickle.dumps(_Evil(cmd), protocol=2), pickle.dumps({"data": _Evil(cmd)}, protocol=5)):
        p = tmp_path / "data_batch_1"
        p.write_bytes(blob)
        with pytest.raises(DataError, match=r"data_batch_1: not a plain-data pickle \(refused global "
                                            r"(posix|os)\.system"):
            load_restricted(p)
    assert not marker.exists()


@pytest.mark.parametrize("obj,what", [
    (np.array([1, "a"], dtype=object), "holds Python objects"),
    ({1, 2}, "refused"),
    (__import__("collections").OrderedDict(a=1), "refused global collections.OrderedDict"),
    (np.ma.masked_array([1, 2]), "refused"),
])
def test_refuses_anything_else(obj, what):
    for proto in (2, 5):
        with pytest.raises(DataError, match=what):
            loads_restricted(pickle.dumps(obj, protocol=proto), "f")


def test_garbage_and_truncated_are_data_errors():
    with pytest.raises(DataError, match="junk: not a plain-data pickle"):
        loads_restricted(b"not a pickle", "junk")
    blob = pickle.dumps({"a": np.zeros(100)}, protocol=2)
    with pytest.raises(DataError, match="cut: not a plain-data pickle"):
        loads_restricted(blob[:-20], "cut")


def test_read_batch_layout_and_checks(tmp_path):
    p = tmp_path / "b"
    p.write_bytes(fake_batch(3, 0))
    x, y = read_batch(p)
    d = pickle.loads(p.read_bytes(), encoding="bytes")
    assert x.shape == (3, 3, 32, 32) and y.dtype == np.int64
    # R, G, B planes of 32x32 rows
    assert x[1, 2, 5, 7] == d[b"data"][1, 2 * 1024 + 5 * 32 + 7]
    p.write_bytes(py2_dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]}))
    with pytest.raises(DataError, match="b: 'labels' holds labels outside 0..9"):
        read_batch(p)
    p.write_bytes(py2_dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataError, match=r"b: 'data' is uint8 \(2, 100\); expected uint8 \(N, 3072\)"):
        read_batch(p)
    p.write_bytes(py2_dumps([1, 2]))
    with pytest.raises(DataError, match="b: expected a dict"):
        read_batch(p)


@pytest.mark.parametrize("sub", ["cifar10/cifar-10-batches-py", "cifar-10-batches-py", "cifar10"])
def test_cifar10_from_pickles(tmp_path, sub):
    batches = make_cifar_pickles(tmp_path / sub)
    ds = load_dataset("cifar10", tmp_path, val_fraction=0.25)
    assert ds.train.x.shape == (15, 3, 32, 32) and ds.val.x.shape == (5, 3, 32, 32)
    assert ds.test.x.shape == (4, 3, 32, 32) and ds.train.x.dtype == torch.float32
    assert ds.info["lossy"] is False and ds.class_names == CLASS_NAMES
    t = batches["test_batch"]
    want = torch.from_numpy(t[b"data"].reshape(-1, 3, 32, 32).astype(np.float32) / 255)
    assert torch.equal(ds.test.x, want) and ds.test.y.tolist() == t[b"labels"]


def test_cifar10_npz_and_format_option(tmp_path):
    folder = tmp_path / "cifar10"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train.npz", 10), ("test.npz", 5)):
        np.savez_compressed(folder / name, x=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                            y=np.arange(n, dtype=np.int64) % 10, class_names=np.array(CLASS_NAMES))
    ds = load_dataset("cifar10", tmp_path, val_fraction=0.2)
    assert ds.info["lossy"] is True and "JPEG" in ds.info["note"]      # the old copy: no orig_index
    with np.load(folder / "test.npz") as z:
        want = torch.from_numpy(z["x"].astype(np.float32) / 255).permute(0, 3, 1, 2)
    assert torch.equal(ds.test.x, want) and ds.test.x.is_contiguous()
    make_cifar_pickles(folder / "cifar-10-batches-py")
    assert load_dataset("cifar10", tmp_path).info["lossy"] is False       # pickles preferred
    assert load_dataset("cifar10", tmp_path, format="npz").info["lossy"] is True
    for name, n in (("train.npz", 10), ("test.npz", 5)):                  # the lossless copy
        np.savez_compressed(folder / name, x=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                            y=np.arange(n, dtype=np.int64) % 10, class_names=np.array(CLASS_NAMES),
                            orig_index=np.arange(n))
    lossless = load_dataset("cifar10", tmp_path, format="npz")
    assert lossless.info["lossy"] is False and "note" not in lossless.info
