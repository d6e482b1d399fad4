"""visionnets.viz.show and `visionnets show RUN_DIR`: the figures land in RUN_DIR/figures."""

import pytest
import torch
from torch import nn

from visionnets.data.base import Dataset, Split
from visionnets.errors import ConfigError
from visionnets.viz.show import show


def toy():
    x, y = torch.rand(40, 1, 8, 8), torch.arange(40) % 4
    ds = Dataset("toy", Split(x, y), None, Split(x, y), (1, 8, 8), num_classes=4)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3),
                        nn.ReLU(), nn.Flatten(), nn.Linear(6, 4))
    return net, ds


def test_show_standard_figures(tmp_path):
    net, ds = toy()
    hist = [{"epoch": 1, "train_loss": 1.0, "test_loss": 1.1, "train_error": 0.5, "test_error": 0.6}]
    paths = show(net, ds, tmp_path, history=hist)
    assert [p.name for p in paths] == ["curves.png", "filters.png", "confusion.png", "worst.png"]
    assert all(p.parent == tmp_path / "figures" and p.stat().st_size > 0 for p in paths)


def test_show_layers_and_units(tmp_path):
    net, ds = toy()
    assert [p.name for p in show(net, ds, tmp_path, layer="0")] == ["layer_0.png"]         # filters
    assert [p.name for p in show(net, ds, tmp_path, layer="3")] == ["layer_3.png"]         # projection
    paths = show(net, ds, tmp_path, layer="3", unit=2, top=5, optimal=True, steps=5)
    assert [p.name for p in paths] == ["top_3_2.png", "optimal_3_2.png"]
    assert [p.name for p in show(net, ds, tmp_path, unit=1, top=3)] == ["top_output_1.png"]
    with pytest.raises(ConfigError, match="--optimal needs a unit"):
        show(net, ds, tmp_path, optimal=True)
    with pytest.raises(ConfigError, match="--top"):
        show(net, ds, tmp_path, layer="3", unit=0, top=0)
    with pytest.raises(ConfigError, match="no layer named 'conv1'"):
        show(net, ds, tmp_path, layer="conv1")


def test_visionnets_show_command(tmp_path, capsys):
    """End to end: train a tiny run with the API, then `visionnets show` on its directory."""
    from visionnets import api
    from visionnets.cli import main

    run_dir = tmp_path / "run"
    api.train("digits_convnet", ["train.epochs=1", "train.max_steps_per_epoch=3"], out=run_dir,
              progress=False)
    capsys.readouterr()
    assert main(["show", str(run_dir), "--layer", "stage2.filter", "--unit", "3", "--top", "8",
                 "--optimal", "--steps", "10"]) == 0
    printed = capsys.readouterr().out.split()
    figs = run_dir / "figures"
    assert printed == [str(figs / "top_stage2.filter_3.png"), str(figs / "optimal_stage2.filter_3.png"),
                       str(run_dir / "report.html")]
    assert "top stage2.filter 3" in (run_dir / "report.html").read_text()   # the report now shows it
    assert main(["show", str(run_dir), "--layer", "nope"]) == 2
    assert "error: no layer named 'nope'" in capsys.readouterr().err
