"""visionnets.viz.projections against plain loops, and exactness on linear nets."""

import pytest
import torch
from torch import nn

from visionnets.errors import ConfigError
from visionnets.viz.projections import (conv_stack, plot_projection, project_conv_filters,
                                        project_conv_layer, project_layer, project_linear_layer,
                                        project_through_decoders, project_through_encoders)


def test_decoder_projection_is_W1_times_the_column():
    d1, d2, d3 = torch.randn(64, 20), torch.randn(20, 7), torch.randn(7, 3)
    two = project_through_decoders([d1, d2], input_shape=(1, 8, 8))
    assert two.shape == (7, 1, 8, 8)
    for k in range(7):                                     # W h = W1 h1: unit k of layer 2 is W1 @ W2[:, k]
        assert torch.allclose(two[k].reshape(-1), d1 @ d2[:, k], atol=1e-5)
    three = project_through_decoders([d1, d2, d3])
    for k in range(3):
        assert torch.allclose(three[k].reshape(-1), d1 @ (d2 @ d3[:, k]), atol=1e-5)
    assert project_through_decoders([torch.randn(10, 4)]).shape == (4, 10)      # not an image: flat


def test_decoder_modules_and_tied_encoders():
    dec1, dec2 = nn.Linear(20, 64), nn.Linear(7, 20)      # decoders map codes back down
    a = project_through_decoders([dec1, dec2])
    assert torch.allclose(a.reshape(7, -1), (dec1.weight @ dec2.weight).T.detach(), atol=1e-5)
    enc1, enc2 = nn.Linear(64, 20), nn.Linear(20, 7)
    b = project_through_encoders([enc1, enc2])
    assert torch.allclose(b.reshape(7, -1), (enc2.weight @ enc1.weight).detach(), atol=1e-5)


def test_keep_only_the_strongest_lower_units():
    d1, d2 = torch.randn(64, 20), torch.randn(20, 5)
    kept = project_through_decoders([d1, d2], keep=3)
    for k in range(5):
        idx = d2[:, k].abs().topk(3).indices
        assert torch.allclose(kept[k].reshape(-1), d1[:, idx] @ d2[idx, k], atol=1e-5)
    with pytest.raises(ConfigError):
        project_through_decoders([d1, d2], keep=0)


def test_decoder_shape_mismatch_raises():
    with pytest.raises(ConfigError, match="decoder 2 has shape"):
        project_through_decoders([torch.randn(64, 20), torch.randn(19, 5)])
    with pytest.raises(ConfigError):
        project_through_decoders([])


def _reference_conv_projection(lower, upper, s):
    c2, c1, k2, _ = upper.shape
    _, c0, k1, _ = lower.shape
    out = torch.zeros(c2, c0, (k2 - 1) * s + k1, (k2 - 1) * s + k1, dtype=torch.float64)
    for k in range(c2):
        for j in range(c1):
            for u in range(k2):
                for v in range(k2):
                    out[k, :, s * u:s * u + k1, s * v:s * v + k1] += upper[k, j, u, v] * lower[j]
    return out.float()


@pytest.mark.parametrize("stride", [1, 2])
def test_conv_filter_projection_matches_the_loop(stride):
    lower, upper = torch.randn(4, 3, 5, 5).double(), torch.randn(6, 4, 3, 3).double()
    got = project_conv_filters(lower, upper, stride=stride)
    assert got.shape == (6, 3, 2 * stride + 5, 2 * stride + 5)
    assert torch.allclose(got, _reference_conv_projection(lower, upper, stride), atol=1e-5)
    with pytest.raises(ConfigError):
        project_conv_filters(lower, torch.randn(6, 5, 3, 3))


@pytest.mark.parametrize("between", ["avgpool", "stride"])
def test_conv_projection_is_exact_for_a_linear_net(between):
    """With no non-linearity and average pooling, unit k at the top-left position computes
    exactly <E[k], x> (+ a constant from the batch norm's shift) over its receptive field."""
    torch.manual_seed(0)
    if between == "avgpool":
        bn = nn.BatchNorm2d(4, affine=True)
        with torch.no_grad():                              # eval-mode statistics and a gain
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 2.0)
        net = nn.Sequential(nn.Conv2d(2, 4, 3, bias=False), nn.AvgPool2d(2), bn,
                            nn.Conv2d(4, 5, 3, bias=False), nn.AvgPool2d(2, stride=1),
                            nn.Conv2d(5, 3, 2, bias=False)).double().eval()
    else:
        net = nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, bias=False), nn.Identity(),
                            nn.Conv2d(4, 5, 3, bias=False)).double()
    top = str(len(net) - 1)
    e = project_conv_layer(net, top).double()
    x = torch.randn(7, 2, 20, 20, dtype=torch.float64)
    k = e.shape[-1]
    want = (x[:, None, :, :k, :k] * e[None]).sum((2, 3, 4))
    want = want + net(torch.zeros_like(x))[:, :, 0, 0]     # the net is affine: the batch norm's shift
    assert torch.allclose(net(x)[:, :, 0, 0], want, atol=1e-5)
    assert len(conv_stack(net, top)) == (6 if between == "avgpool" else 2)


def test_first_conv_projects_to_its_own_filters():
    net = nn.Sequential(nn.Conv2d(1, 3, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(3, 4, 3))
    assert torch.allclose(project_conv_layer(net, "0"), net[0].weight.detach())
    assert project_layer(net, "3").shape == (4, 1, 10, 10)       # 3 -> pool (3-1)*2+2 = 6 -> conv 6+5-1


def test_linear_stack_projection_is_exact_without_nonlinearity():
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 12, bias=False), nn.Linear(12, 5, bias=False))
    proj = project_linear_layer(net, "2", input_shape=(1, 8, 8))
    x = torch.randn(9, 1, 8, 8)
    assert torch.allclose(net(x), x.reshape(9, -1) @ proj.reshape(5, -1).T, atol=1e-5)
    assert project_layer(net, "1", (1, 8, 8)).shape == (12, 1, 8, 8)


def test_projection_errors_name_the_layer():
    net = nn.Sequential(nn.Conv2d(1, 3, 5), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2))
    with pytest.raises(ConfigError, match="no layer named 'nope'"):
        project_layer(net, "nope")
    with pytest.raises(ConfigError, match="above conv layers"):
        project_layer(net, "3")
    with pytest.raises(ConfigError, match="only Conv2d and Linear"):
        project_layer(net, "1")

    class LC(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(2, 2, 3, 1, 3, 3))

    with pytest.raises(ConfigError, match="locally connected or tiled"):
        project_conv_layer(nn.Sequential(LC(), nn.Conv2d(3, 2, 3)), "1")


def test_plot_projection(tmp_path):
    net = nn.Sequential(nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 8, 3))
    path = plot_projection(net, "3", tmp_path / "p.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_l2_pooling_is_projected_as_averaging():
    from visionnets.nn.pooling import L2Pool2d

    net = nn.Sequential(nn.Conv2d(1, 3, 5), L2Pool2d(2, stride=2), nn.Conv2d(3, 4, 3))
    assert [type(m).__name__ for m in conv_stack(net, "2")] == ["Conv2d", "L2Pool2d", "Conv2d"]
    avg = nn.Sequential(nn.Conv2d(1, 3, 5), nn.AvgPool2d(2), nn.Conv2d(3, 4, 3))
    avg.load_state_dict(net.state_dict())
    assert torch.allclose(project_conv_layer(net, "2"), project_conv_layer(avg, "2"))
