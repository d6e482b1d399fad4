"""visionnets plan: a recipe's needs, computed on the meta device."""

import json
import resource

import pytest
import torch

from visionnets.cli import main
from visionnets.models import build_model
from visionnets.train.plan import plan


def test_the_published_le2012_network_is_about_a_billion_parameters_and_allocates_nothing(capsys):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert main(["plan", "le2012", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert 0.8e9 <= report["parameters"] <= 1.3e9
    assert report["weights_bytes"] == 4 * report["parameters"]
    assert grown_mib < 500            # 4.3 GiB of weights were never allocated (meta device)
    names = [r["name"] for r in report["layers"]]
    assert names[:3] == ["stage1.filter", "stage1.pool", "stage1.norm"] and len(names) == 9
    assert report["layers"][0]["output_shape"] == [8, 183, 183]


def test_plan_counts_match_the_real_model():
    report = plan("mnist_mlp800", input_shape=(1, 28, 28), num_outputs=10)
    real = build_model({"name": "mlp", "hidden": [800], "activation": "relu"}, (1, 28, 28), 10)
    assert report["parameters"] == sum(p.numel() for p in real.parameters())
    assert report["forward_flops_per_example"] == 2 * (784 * 800 + 800 * 10)       # the two matrix products
    assert report["optimizer_state_bytes"] == report["gradients_bytes"]            # SGD momentum: one tensor
    digits = plan("digits_convnet")                                                 # shapes from the data
    assert digits["input_shape"] == [1, 8, 8] and digits["outputs"] == 10


def test_a_scaled_le2012_trains_and_a_wrong_input_shape_is_named(tmp_path, capsys):
    from visionnets import api

    r = api.train("digits_convnet", ["model={name: le2012, stages: 2, kernel: 3, maps: 4}", "train.epochs=1"],
                  out=tmp_path / "run", progress=False, figures=False)
    assert r.history[-1]["test_error"] < 1
    with torch.device("meta"):
        assert plan("digits_convnet", ["model={name: le2012, stages: 2, kernel: 3, maps: 4}"])["parameters"] > 0
    assert main(["train", "digits_convnet", "--set", "data.input_shape=[1, 9, 9]", "--out", str(tmp_path / "x")]) == 2
    assert "data.input_shape: [1, 9, 9], but dataset 'digits' gives inputs of shape [1, 8, 8]" in capsys.readouterr().err


def test_activations_of_a_named_layer_and_a_bad_name(tmp_path):
    from visionnets import api
    from visionnets.errors import ConfigError

    r = api.train("digits_convnet", ["train.epochs=1"], out=tmp_path / "run", progress=False, figures=False)
    run = api.load_run(r.run_dir)
    x = run.dataset.test.x[:5]
    assert api.activations(run, x).shape == (5, 10)                          # the top: the class scores
    assert api.activations(run, x, "stage1.filter").shape == (5, 32 * 8 * 8)
    with pytest.raises(ConfigError, match="no layer named 'stage1.filtr' in the model \\(did you mean 'stage1.filter'"):
        api.activations(run, x, "stage1.filtr")
