"""Models by name: shapes, parameter counts, initialization, errors."""

import math

import pytest
import torch

from visionnets.errors import ConfigError
from visionnets.models import MODELS, build_model, count_parameters


def test_registry_lists_builtins():
    assert {"linear", "mlp", "convnet"} <= set(MODELS.names())


def test_linear_parameter_count_and_zero_init():
    net = build_model({"name": "linear"}, (1, 28, 28), 10)
    assert count_parameters(net) == 784 * 10 + 10
    assert net(torch.rand(3, 1, 28, 28)).abs().sum() == 0  # W = 0 at the start: a convex problem


@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid"])
def test_mlp_depth_width_and_count(act):
    net = build_model({"name": "mlp", "hidden": [800], "activation": act}, (1, 28, 28), 10)
    assert count_parameters(net) == 784 * 800 + 800 + 800 * 10 + 10
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    deep = build_model({"name": "mlp", "hidden": [1000, 1000, 1000], "activation": act}, (1,), 1)
    assert [m.out_features for m in deep if isinstance(m, torch.nn.Linear)] == [1000, 1000, 1000, 1]


def test_mlp_init_keeps_activations_in_range():
    net = build_model({"name": "mlp", "hidden": [512, 512, 512]}, (1, 28, 28), 10)
    h = torch.randn(256, 1, 28, 28)
    out = net(h)
    assert 0.1 < out.std().item() < 10  # He init: neither vanishing nor exploding through depth


def test_convnet_shapes_and_names():
    spec = {"name": "convnet", "hidden": [64], "stages": [
        {"channels": 6, "kernel": 5, "pool": "max"},
        {"channels": 16, "kernel": 5, "pool": "avg", "rectify": "tanh"}]}
    net = build_model(spec, (1, 28, 28), 10)
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    names = dict(net.named_modules())
    assert {"stage1.filter", "stage1.pool", "stage2.filter", "classifier.fc1", "classifier.out"} <= set(names)
    # LeNet-style count: conv1 1*6*25+6, conv2 6*16*25+16, fc 16*4*4*64+64, out 64*10+10
    assert count_parameters(net) == 156 + 2416 + 256 * 64 + 64 + 650


def test_convnet_errors_name_the_stage():
    with pytest.raises(ConfigError, match=r"model\.stages\.1\.kernel: 13 is larger"):
        build_model({"name": "convnet", "stages": [{"channels": 4, "kernel": 5},
                                                   {"channels": 4, "kernel": 13}]}, (1, 28, 28), 10)
    with pytest.raises(ConfigError, match=r"model\.stages\.0\.pool: "):
        build_model({"name": "convnet", "stages": [{"channels": 4, "pool": "median"}]}, (1, 28, 28), 10)
    with pytest.raises(ConfigError, match=r"model\.stages\.0\.colour: "):
        build_model({"name": "convnet", "stages": [{"channels": 4, "colour": 1}]}, (1, 28, 28), 10)
    with pytest.raises(ConfigError, match="image inputs"):
        build_model({"name": "convnet", "stages": [{"channels": 4}]}, (64,), 10)


def test_unknown_model_and_key():
    with pytest.raises(ConfigError, match="unknown model 'resnet'"):
        build_model({"name": "resnet"}, (1, 8, 8), 10)
    with pytest.raises(ConfigError, match=r"model\.hiden: unknown key"):
        build_model({"name": "mlp", "hiden": [3]}, (1, 8, 8), 10)
    with pytest.raises(ConfigError, match=r"model\.name: missing"):
        build_model({}, (1, 8, 8), 10)


def test_user_can_register_a_model():
    @MODELS.register("tiny_test_model")
    def tiny(input_shape, num_outputs, width: int = 4):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(math.prod(input_shape), num_outputs))

    assert count_parameters(build_model({"name": "tiny_test_model"}, (1, 2, 2), 3)) == 15


@pytest.mark.parametrize("layer", ["local", "tiled"])
def test_local_and_tiled_stages_get_he_init_over_their_true_fan_in(layer):
    net = build_model({"name": "convnet", "stages": [{"layer": layer, "channels": 8, "kernel": 5, "tile": 2,
                                                      "pool": "none"}]}, (3, 16, 16), 10)
    w = net.stage1.filter.weight                      # (.., .., out, in, kh, kw); fan-in = 3 * 5 * 5
    bound = math.sqrt(6.0 / 75)
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    conv = build_model({"name": "convnet", "stages": [{"channels": 8, "kernel": 5, "pool": "none"}]}, (3, 16, 16), 10)
    assert w.std().item() == pytest.approx(conv.stage1.filter.weight.std().item(), rel=0.15)


def test_le2012_sizes_per_stage_and_a_whole_image_top_stage():
    net = build_model({"name": "le2012", "stages": 3, "kernel": [5, 5, 8], "maps": [4, 4, 16], "pool": [3, 3, 1],
                       "lcn": 3}, (1, 16, 16), 0)
    assert [tuple(net[i].filter.output_size) for i in range(3)] == [(12, 12), (8, 8), (1, 1)]
    assert net[2].filter.weight.shape[-4:] == (16, 4, 8, 8)              # each top unit sees the whole 8x8 map
    assert net(torch.rand(2, 1, 16, 16)).shape == (2, 16, 1, 1)
    with pytest.raises(ConfigError, match=r"model.maps: expected one int >= 1 or one per stage \(3\), got \[4, 4\]"):
        build_model({"name": "le2012", "stages": 3, "kernel": 3, "maps": [4, 4]}, (1, 16, 16), 0)
    with pytest.raises(ConfigError, match=r"model.kernel: 9 is larger than the 8x8 input of stage 3"):
        build_model({"name": "le2012", "stages": 3, "kernel": [5, 5, 9]}, (1, 16, 16), 0)
