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


def test_locally_connected_flops_are_counted():
    report = plan("digits_convnet", ["model={name: le2012, stages: 1, kernel: 3, maps: 2, pool: 1, lcn: 1}"],
                  input_shape=(1, 10, 10), num_outputs=0)
    lc = 2 * 8 * 8 * 2 * 1 * 3 * 3                                   # one multiply-add per weight
    assert lc <= report["forward_flops_per_example"] <= 1.3 * lc        # plus LCN's small convolutions
    big = plan("le2012")
    assert 2 * big["parameters"] <= big["forward_flops_per_example"] <= 2.05 * big["parameters"]


def test_capacity_memory_halos_and_time_by_hand():
    from visionnets.train.plan import capacity

    over = ["model={name: le2012, stages: 1, kernel: 3, maps: 2, pool: 1, lcn: 5}", "train.batch_size=4"]
    report = plan("digits_convnet", over, input_shape=(1, 10, 10), num_outputs=0)
    one = capacity(report, machines=1, flops=1e9, bandwidth=1e6, memory_gb=1)
    assert one["halo_bytes_per_step"] == 0 and one["sync_bytes_per_step"] == 0
    assert one["worker_memory_bytes"] == (report["weights_bytes"] + report["gradients_bytes"]
                                          + report["optimizer_state_bytes"] + 4 * report["activations_bytes_per_example"])
    assert one["seconds_per_step"] == pytest.approx(4 * report["training_flops_per_example"] / 1e9)
    two = capacity(report, machines=2, partitions=2, flops=1e9, bandwidth=1e6, memory_gb=1)
    assert two["grid"] == [1, 2] and two["worker_memory_bytes"] == pytest.approx(one["worker_memory_bytes"] / 2)
    # borders, by hand: 1 x 2 blocks (columns 0:4 and 4:8 of the 8 x 8 maps). The filter reads the
    # input (every worker has it); the 1x1 pooling reads nothing beyond its block; LCN 5x5 reads
    # two windows of radius 2 in turn, so 4 columns of the neighbour's block (8 rows, 2 maps):
    # sent forward, and their gradients backward, for 4 float32 examples; then mean(sigma) summed
    # (one number per example, forward and backward, sent to the other worker)
    lcn = (4 * 8 * 2) * 2 * 4 * 4
    sums = 2 * (4 * 4)
    assert two["halo_bytes_per_step"] == pytest.approx(lcn + sums)
    assert two["messages_per_step"] == 2 + 2 and two["rounds_per_step"] == 2 + 2
    assert two["network_seconds_per_step"] == pytest.approx((lcn + sums) / 1e6 + 4 * 5e-5)
    dp = capacity(report, machines=5, replicas=2, partitions=2, n_fetch=1, n_push=2)
    assert dp["parameter_server_machines"] == 1 and dp["idle_machines"] == 0
    assert dp["sync_bytes_per_step"] == pytest.approx(report["weights_bytes"] / 2 * 1.5)
    assert dp["parameter_server_memory_bytes"] == report["weights_bytes"] + report["optimizer_state_bytes"]
    assert dp["examples_per_second"] == pytest.approx(2 * 4 / dp["seconds_per_step"])


def test_capacity_of_the_published_network_and_bad_input(capsys):
    assert main(["plan", "le2012", "--machines", "1000", "--replicas", "5", "--partitions", "160", "--json"]) == 0
    cap = json.loads(capsys.readouterr().out)["capacity"]
    assert cap["fits"] and cap["grid"] == [10, 16] and cap["parameter_server_machines"] == 200
    assert cap["halo_bytes_per_step"] > 0 and cap["examples_per_second"] > 0
    assert main(["plan", "le2012", "--machines", "10", "--replicas", "5", "--partitions", "4"]) == 2
    assert "5 replicas x 4 partitions need 20" in capsys.readouterr().err
    assert main(["plan", "le2012", "--machines", "100000", "--partitions", "40000"]) == 2
    assert "smallest partitioned map is 149 x 149" in capsys.readouterr().err
