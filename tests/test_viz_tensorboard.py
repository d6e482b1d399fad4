"""visionnets.viz.tensorboard: optional TensorBoard logging behind the [tensorboard] extra."""

import sys

import pytest
from torch import nn

from visionnets.errors import MissingExtraError
from visionnets.viz.tensorboard import TensorBoardLogger, scalar_tag


def test_scalar_tags_group_by_metric():
    assert scalar_tag("train_loss") == "loss/train"
    assert scalar_tag("val_error") == "error/val"
    assert scalar_tag("examples_per_s") == "examples_per_s"
    assert scalar_tag("lr") == "lr"


def test_missing_tensorboard_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)    # import now fails
    with pytest.raises(MissingExtraError, match=r"visionnets\[tensorboard\]"):
        TensorBoardLogger(tmp_path)


def test_logs_scalars_histograms_and_filters(tmp_path):
    pytest.importorskip("tensorboard", reason="the [tensorboard] extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 2))
    with TensorBoardLogger(tmp_path) as tb:
        for epoch in (1, 2):
            tb.log_epoch(epoch, {"epoch": epoch, "train_loss": 1.0 / epoch, "val_error": None,
                                 "lr": 0.1, "best": True}, net)
    acc = EventAccumulator(str(tmp_path / "tensorboard"),
                           size_guidance={"images": 0, "histograms": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert sorted(tags["scalars"]) == ["loss/train", "lr"]               # None and bools skipped
    assert [e.value for e in acc.Scalars("loss/train")] == [1.0, 0.5]
    assert [e.step for e in acc.Scalars("loss/train")] == [1, 2]
    assert sorted(tags["histograms"]) == ["0.bias", "0.weight", "3.bias", "3.weight"]
    assert tags["images"] == ["filters/0"]
    image = acc.Images("filters/0")[-1]
    assert image.width > 0 and image.height > 0 and image.step == 2


def test_first_linear_layer_filters_need_the_input_shape(tmp_path):
    pytest.importorskip("tensorboard", reason="the [tensorboard] extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 5))
    with TensorBoardLogger(tmp_path, input_shape=(1, 8, 8), histograms=False) as tb:
        tb.log_epoch(1, {"train_loss": 0.3}, mlp)
    acc = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    acc.Reload()
    assert acc.Tags()["images"] == ["filters/1"] and acc.Tags()["histograms"] == []
