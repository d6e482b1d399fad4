"""The IDX reader and the mnist loader on small generated files, corrupt ones included."""

import gzip
import struct

import numpy as np
import pytest
import torch

from visionnets.data import load_dataset
from visionnets.data.idx import parse_idx, read_idx, write_idx
from visionnets.data.mnist import read_mnist_pair
from visionnets.errors import ConfigError, DataError

NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def make_mnist(folder, n_train=12, n_test=6, gz=True, seed=0):
    """Four small valid MNIST files in ``folder``; returns the arrays written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        NAMES[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        NAMES[1]: (np.arange(n_train) % 10).astype(np.uint8),
        NAMES[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        NAMES[3]: (np.arange(n_test) % 10).astype(np.uint8),
    }
    for name, arr in arrays.items():
        write_idx(folder / (name + (".gz" if gz else "")), arr)
    return arrays


def test_write_read_roundtrip_all_types(tmp_path):
    for dtype in (np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64):
        arr = (np.arange(24) - 5).astype(dtype).reshape(2, 3, 4)
        for suffix in ("", ".gz"):
            p = tmp_path / f"a-{np.dtype(dtype).name}{suffix}"
            write_idx(p, arr)
            got = read_idx(p)
            assert got.dtype == np.dtype(dtype) and np.array_equal(got, arr)
    assert not list(tmp_path.glob(".*")), "no temporary files are left behind"


def test_header_is_big_endian_mnist_magic(tmp_path):
    p = tmp_path / "x-idx3-ubyte"
    write_idx(p, np.zeros((2, 28, 28), np.uint8))
    raw = p.read_bytes()
    assert struct.unpack(">IIII", raw[:16]) == (2051, 2, 28, 28)
    assert len(raw) == 16 + 2 * 28 * 28


def test_gzip_detected_by_content_not_name(tmp_path):
    arr = np.arange(5, dtype=np.uint8)
    p = tmp_path / "labels-idx1-ubyte"          # no .gz suffix, gzip content
    write_idx(p, arr, compress=True)
    assert p.read_bytes()[:2] == b"\x1f\x8b"
    assert np.array_equal(read_idx(p), arr)


def test_bad_magic_names_file(tmp_path):
    p = tmp_path / "bad-idx1-ubyte"
    p.write_bytes(struct.pack(">II", 0x12345678, 1) + b"\x00")
    with pytest.raises(DataError, match="bad-idx1-ubyte: bad IDX magic number 305419896"):
        read_idx(p)


def test_wrong_magic_for_role_names_file(tmp_path):
    p = tmp_path / "labels-as-images"
    write_idx(p, np.zeros(4, np.uint8))                     # magic 2049
    with pytest.raises(DataError, match=r"labels-as-images: bad IDX magic number 2049 .*expected 2051"):
        read_idx(p, expect_magic=2051)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_body_names_file(tmp_path, gz):
    raw = tmp_path / "t-idx3-ubyte"
    write_idx(raw, np.ones((3, 28, 28), np.uint8), compress=False)
    data = raw.read_bytes()[:-100]
    p = tmp_path / ("cut-idx3-ubyte" + (".gz" if gz else ""))
    p.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(DataError, match=r"cut-idx3-ubyte(\.gz)?: truncated: header says 3 x 28 x 28 "
                                        r"\(2352 data bytes\) but the file holds 2252"):
        read_idx(p)


def test_truncated_header_and_trailing_bytes(tmp_path):
    p = tmp_path / "short"
    p.write_bytes(struct.pack(">I", 2051) + b"\x00\x00")
    with pytest.raises(DataError, match="short: truncated IDX header"):
        read_idx(p)
    with pytest.raises(DataError, match="too short"):
        parse_idx(b"\x00\x00", "tiny")
    q = tmp_path / "long"
    write_idx(q, np.zeros(3, np.uint8))
    q.write_bytes(q.read_bytes() + b"\x01")
    with pytest.raises(DataError, match="long: has trailing bytes"):
        read_idx(q)


def test_broken_gzip_stream_names_file(tmp_path):
    p = tmp_path / "broken.gz"
    full = gzip.compress(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    p.write_bytes(full[: len(full) // 2])
    with pytest.raises(DataError, match="broken.gz: cannot read"):
        read_idx(p)


def test_count_mismatch_and_label_range_name_file(tmp_path):
    write_idx(tmp_path / "img", np.zeros((5, 28, 28), np.uint8))
    write_idx(tmp_path / "lab4", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match="lab4: 4 labels but img holds 5 images"):
        read_mnist_pair(tmp_path / "img", tmp_path / "lab4")
    write_idx(tmp_path / "lab-bad", np.array([0, 1, 10, 2, 3], np.uint8))
    with pytest.raises(DataError, match="lab-bad: label 10 at index 2 is out of range; expected 0..9"):
        read_mnist_pair(tmp_path / "img", tmp_path / "lab-bad")
    write_idx(tmp_path / "img27", np.zeros((5, 27, 28), np.uint8))
    with pytest.raises(DataError, match="img27: images are 27x28; expected 28x28"):
        read_mnist_pair(tmp_path / "img27", tmp_path / "lab4")


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_loader_gzip_or_raw(tmp_path, gz):
    arrays = make_mnist(tmp_path / "mnist", gz=gz)
    ds = load_dataset("mnist", tmp_path, val_fraction=0.25, seed=3)
    assert ds.train.x.shape == (9, 1, 28, 28) and ds.val.x.shape == (3, 1, 28, 28)
    assert ds.test.x.shape == (6, 1, 28, 28)
    assert ds.train.x.dtype == torch.float32 and ds.train.y.dtype == torch.int64
    assert ds.input_shape == (1, 28, 28) and ds.num_classes == 10
    # test split kept in file order, pixels scaled by 1/255
    expect = torch.from_numpy(arrays[NAMES[2]].astype(np.float32) / 255).unsqueeze(1)
    assert torch.equal(ds.test.x, expect)
    assert ds.test.y.tolist() == arrays[NAMES[3]].tolist()
    # train + val are exactly the training file, split by a fixed seed
    all_x = torch.cat([ds.train.x, ds.val.x]).flatten(1)
    want = torch.from_numpy(arrays[NAMES[0]].astype(np.float32) / 255).flatten(1)
    assert sorted(map(tuple, all_x.tolist())) == sorted(map(tuple, want.tolist()))
    again = load_dataset("mnist", tmp_path, val_fraction=0.25, seed=3)
    assert torch.equal(again.val.x, ds.val.x)


def test_mnist_mixed_gzip_and_raw(tmp_path):
    make_mnist(tmp_path, gz=True)
    (tmp_path / (NAMES[3] + ".gz")).unlink()
    write_idx(tmp_path / NAMES[3], (np.arange(6) % 10).astype(np.uint8))   # raw labels only
    ds = load_dataset("mnist", tmp_path, val_fraction=0)
    assert ds.val is None and len(ds.test) == 6


def test_mnist_corrupt_file_through_loader_names_it(tmp_path):
    make_mnist(tmp_path / "mnist")
    write_idx(tmp_path / "mnist" / (NAMES[1] + ".gz"), np.full(12, 11, np.uint8))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: label 11 at index 0"):
        load_dataset("mnist", tmp_path)


def test_mnist_subsample_option(tmp_path):
    make_mnist(tmp_path, n_train=20, n_test=10)
    ds = load_dataset("mnist", tmp_path, val_fraction=0.2, subsample=5)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (4, 1, 5)
    with pytest.raises(ConfigError, match="data.options.subsample"):
        load_dataset("mnist", tmp_path, subsample=0)
    with pytest.raises(ConfigError, match="data.options.subsampel: unknown key"):
        load_dataset("mnist", tmp_path, subsampel=5)
