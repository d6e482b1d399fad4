"""Root lookup, the registry front door (load_dataset) and the file-free loaders."""

import math

import numpy as np
import pytest
import torch

from visionnets.data import DATASETS, load_dataset, resolve_roots
from visionnets.data.files import DEFAULT_ROOT, locate
from visionnets.errors import ConfigError, DataError
from test_data_idx import make_mnist


def test_resolve_roots_order_and_dedup(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert resolve_roots(a, env={"VISIONNETS_DATA": str(b)}) == [a]     # an explicit root is the only one
    assert resolve_roots(None, env={"VISIONNETS_DATA": str(b)}) == [b, DEFAULT_ROOT.expanduser()]
    assert resolve_roots(None, env={}) == [DEFAULT_ROOT.expanduser()]
    assert resolve_roots(b, env={"VISIONNETS_DATA": str(b)}) == [b]


def test_explicit_root_wins_over_env(tmp_path, monkeypatch):
    make_mnist(tmp_path / "explicit" / "mnist", n_train=10)
    make_mnist(tmp_path / "env" / "mnist", n_train=20)
    monkeypatch.setenv("VISIONNETS_DATA", str(tmp_path / "env"))
    assert len(load_dataset("mnist", tmp_path / "explicit", val_fraction=0).train) == 10
    assert len(load_dataset("mnist", val_fraction=0).train) == 20                  # env next
    with pytest.raises(DataError, match="nothing"):                                 # never silently elsewhere
        load_dataset("mnist", tmp_path / "nothing", val_fraction=0)


def test_root_may_hold_the_files_directly(tmp_path):
    make_mnist(tmp_path, n_train=10)
    assert locate("mnist", [tmp_path]).folder == tmp_path
    make_mnist(tmp_path / "mnist", n_train=10)
    assert locate("mnist", [tmp_path]).folder == tmp_path / "mnist"   # the dataset folder first


def test_missing_files_error_lists_names_and_places(tmp_path, monkeypatch):
    monkeypatch.setenv("VISIONNETS_DATA", str(tmp_path / "env"))
    (tmp_path / "given" / "mnist").mkdir(parents=True)
    make_mnist(tmp_path / "given" / "mnist")
    (tmp_path / "given" / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as err:
        load_dataset("mnist", tmp_path / "given")
    msg = str(err.value)
    assert "\n" not in msg
    for name in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte or t10k-labels-idx1-ubyte.gz"):
        assert name in msg
    for place in (tmp_path / "given" / "mnist", tmp_path / "given"):
        assert str(place) in msg
    assert f"{tmp_path / 'given' / 'mnist'} (has 3 of 4" in msg
    assert str(tmp_path / "env") not in msg             # the explicit root is the only place searched
    # without an explicit root: $VISIONNETS_DATA, then the cache, each named
    with pytest.raises(DataError) as err:
        load_dataset("mnist")
    msg = str(err.value)
    for place in (tmp_path / "env" / "mnist", tmp_path / "env", DEFAULT_ROOT.expanduser() / "mnist"):
        assert str(place) in msg
    assert msg.index(str(tmp_path / "env")) < msg.index(str(DEFAULT_ROOT.expanduser()))


def test_registry_and_option_errors():
    assert {"digits", "mnist", "multimnist", "avmnist", "cifar10", "faces", "natural", "cosine"} <= set(DATASETS.names())
    with pytest.raises(ConfigError, match="data.name: unknown dataset 'nope'; expected one of: arrays, avmnist, cifar10"):
        load_dataset("nope")
    with pytest.raises(ConfigError, match=r"data.options.n_trian: unknown key for dataset 'cosine' "
                                          r"\(did you mean 'n_train'\?\); expected one of: n_train, n_test"):
        load_dataset("cosine", n_trian=5)
    with pytest.raises(ConfigError, match="data.options.n_train: .*got 'many'"):
        load_dataset("cosine", n_train="many")
    with pytest.raises(ConfigError, match="data.val_fraction"):
        load_dataset("cosine", val_fraction=1.0)


def test_reserved_option_names():
    with pytest.raises(ConfigError, match="data.options.roots: not a dataset option"):
        load_dataset("cosine", roots=[])


def test_digits_default_fixed_stratified_test():
    ds = load_dataset()
    assert ds.name == "digits" and ds.input_shape == (1, 8, 8) and ds.num_classes == 10
    assert (len(ds.train), len(ds.val), len(ds.test)) == (1293, 144, 360)
    assert ds.train.x.dtype == torch.float32 and ds.train.y.dtype == torch.int64
    assert float(ds.train.x.min()) == 0.0 and float(ds.train.x.max()) == 1.0
    counts = torch.bincount(ds.test.y, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37            # stratified: 20 % of ~180 each
    other = load_dataset(seed=5)                               # the seed moves val, never test
    assert torch.equal(other.test.x, ds.test.x) and not torch.equal(other.val.y, ds.val.y)
    from sklearn.datasets import load_digits
    assert float(ds.test.x.sum()) * 16 == pytest.approx(
        float(load_digits().images.sum()) - float(torch.cat([ds.train.x, ds.val.x]).sum()) * 16)


def test_cosine_toy():
    ds = load_dataset("cosine", n_train=200, n_test=11, low=0.0, high=math.pi, noise=0.0, seed=1)
    assert ds.num_classes is None and ds.input_shape == (1,) and not ds.is_classification
    assert ds.train.x.shape == (180, 1) and ds.train.y.shape == (180, 1)
    assert ds.train.y.dtype == torch.float32
    assert torch.allclose(ds.train.y, torch.cos(ds.train.x), atol=1e-6)
    assert ds.test.x.squeeze(1).tolist() == pytest.approx(np.linspace(0, math.pi, 11).tolist(), abs=1e-6)
    assert float(ds.train.x.min()) >= 0 and float(ds.train.x.max()) <= math.pi
    noisy = load_dataset("cosine", n_train=5000, noise=0.1, val_fraction=0)
    resid = noisy.train.y - torch.cos(noisy.train.x)
    assert float(resid.std()) == pytest.approx(0.1, rel=0.05)
    assert torch.allclose(noisy.test.y, torch.cos(noisy.test.x), atol=1e-6)   # test is noise-free
    with pytest.raises(ConfigError, match="data.options.high: must be greater than low"):
        load_dataset("cosine", low=1.0, high=0.0)


@pytest.mark.parametrize("module", ["base", "files", "idx", "safe_pickle", "transforms", "augment", "specs",
                                    "digits", "cosine", "mnist", "cifar10", "faces", "natural"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    mod = importlib.import_module(f"visionnets.data.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    if module not in ("cifar10", "faces", "natural"):     # those examples need the real files
        assert result.attempted > 0
