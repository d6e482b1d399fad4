"""LocallyConnected2d and TiledConv2d against plain loop references, gradcheck, shapes, errors."""

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from visionnets.errors import ConfigError
from visionnets.nn import LocallyConnected2d, TiledConv2d
from visionnets.nn import functional as VF


# (batch, in_ch, out_ch, H, W, kernel, stride, padding): non-square inputs and kernels, strides,
# paddings and batch 1
CASES = [
    (2, 3, 4, 9, 7, 3, 1, 0),
    (1, 2, 3, 10, 8, 3, 2, 1),
    (3, 2, 2, 7, 9, (2, 3), (2, 1), (1, 0)),
    (1, 1, 5, 6, 6, 6, 1, 0),
    (2, 4, 3, 8, 11, (3, 2), 3, 2),
]


def loop_reference(x, weight_at, bias_at, kernel, stride, padding, out_hw):
    """y[b, o, i, j] = bias_at(i, j)[o] + sum_{c,p,q} weight_at(i, j)[o, c, p, q] x[b, c, i s + p, j s + q]."""
    (kh, kw), (sh, sw), (ph, pw) = VF.pair(kernel, "k"), VF.pair(stride, "s"), VF.pair(padding, "p", 0)
    xp = F.pad(x, (pw, pw, ph, ph))
    oh, ow = out_hw
    y = x.new_zeros(x.shape[0], weight_at(0, 0).shape[0], oh, ow)
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            for o in range(y.shape[1]):
                y[:, o, i, j] = (patch * weight_at(i, j)[o]).sum((1, 2, 3))
            if bias_at is not None:
                y[:, :, i, j] += bias_at(i, j)
    return y


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("chunk", [VF.CHUNK_BYTES, 1])
def test_locally_connected_matches_loops(case, chunk, monkeypatch):
    monkeypatch.setattr(VF, "CHUNK_BYTES", chunk)  # 1: one output row per band (the chunked path)
    b, c, o, h, w, k, s, p = case
    layer = LocallyConnected2d(c, o, k, s, p, input_size=(h, w))
    x = torch.randn(b, c, h, w)
    ref = loop_reference(x.double(), lambda i, j: layer.weight[i, j].double(),
                         lambda i, j: layer.bias[:, i, j].double(), k, s, p, layer.output_size)
    torch.testing.assert_close(layer(x), ref.float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES)
def test_tiled_conv_matches_loops(case):
    b, c, o, h, w, k, s, p = case
    oh, ow = VF.conv_output_size((h, w), k, s, p)
    th, tw = min(2, oh), min(3, ow)
    layer = TiledConv2d(c, o, k, tile_size=(th, tw), stride=s, padding=p)
    x = torch.randn(b, c, h, w)
    ref = loop_reference(x.double(), lambda i, j: layer.weight[i % th, j % tw].double(),
                         lambda i, j: layer.bias.double(), k, s, p, (oh, ow))
    torch.testing.assert_close(layer(x), ref.float(), rtol=1e-5, atol=1e-5)


def test_tiled_conv_large_tile_path_matches_loops():
    # th*tw copies of the input outweigh a full locally connected weight: the repeated-tile path
    layer = TiledConv2d(2, 3, 3, tile_size=(3, 4), input_size=(7, 8))
    x = torch.randn(5, 2, 7, 8)
    assert 3 * 4 * x.numel() > 5 * 6 * 3 * 2 * 3 * 3
    ref = loop_reference(x.double(), lambda i, j: layer.weight[i % 3, j % 4].double(),
                         lambda i, j: layer.bias.double(), 3, 1, 0, (5, 6))
    torch.testing.assert_close(layer(x), ref.float(), rtol=1e-5, atol=1e-5)


def test_tile_one_is_conv2d():
    conv = torch.nn.Conv2d(3, 5, (3, 2), stride=(2, 1), padding=1)
    tiled = TiledConv2d(3, 5, (3, 2), tile_size=1, stride=(2, 1), padding=1)
    with torch.no_grad():
        tiled.weight.copy_(conv.weight[None, None])
        tiled.bias.copy_(conv.bias)
    x = torch.randn(2, 3, 9, 10)
    torch.testing.assert_close(tiled(x), conv(x))


@pytest.mark.parametrize("chunk", [VF.CHUNK_BYTES, 1])
def test_tile_of_output_size_is_locally_connected(chunk, monkeypatch):
    monkeypatch.setattr(VF, "CHUNK_BYTES", chunk)
    local = LocallyConnected2d(2, 4, 3, stride=2, padding=1, input_size=(9, 7))
    oh, ow = local.output_size
    tiled = TiledConv2d(2, 4, 3, tile_size=(oh, ow), stride=2, padding=1, input_size=(9, 7))
    with torch.no_grad():
        tiled.weight.copy_(local.weight)
        local.bias.copy_(tiled.bias[:, None, None].expand(4, oh, ow))
    x = torch.randn(3, 2, 9, 7)
    torch.testing.assert_close(tiled(x), local(x))


def test_parameter_counts_follow_the_formulas():
    c, o, kh, kw, th, tw = 3, 8, 5, 4, 2, 3
    local = LocallyConnected2d(c, o, (kh, kw), stride=2, padding=1, input_size=(20, 17))
    oh, ow = (20 + 2 - kh) // 2 + 1, (17 + 2 - kw) // 2 + 1
    assert local.output_size == (oh, ow)
    assert sum(p.numel() for p in local.parameters()) == oh * ow * o * (c * kh * kw + 1)
    assert local.weight.shape == (oh, ow, o, c, kh, kw) and local.bias.shape == (o, oh, ow)
    tiled = TiledConv2d(c, o, (kh, kw), tile_size=(th, tw))
    assert sum(p.numel() for p in tiled.parameters()) == th * tw * o * c * kh * kw + o
    assert sum(p.numel() for p in LocallyConnected2d(c, o, 3, bias=False, input_size=(5, 5)).parameters()) \
        == 3 * 3 * o * c * 9


def test_init_matches_conv2d_scale():
    local = LocallyConnected2d(4, 6, 3, input_size=(10, 10))
    assert local.fan_in == 4 * 9
    bound = 1 / (4 * 9) ** 0.5
    assert local.weight.abs().max() <= bound and local.weight.abs().max() > 0.9 * bound
    assert local.bias.abs().max() <= bound


@pytest.mark.parametrize("chunk", [VF.CHUNK_BYTES, 1])
def test_locally_connected_gradcheck(chunk, monkeypatch):
    monkeypatch.setattr(VF, "CHUNK_BYTES", chunk)
    x = torch.randn(2, 2, 6, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 3, 2, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda x, w, b: VF.locally_connected2d(x, w, b, stride=(2, 3), padding=(1, 0)), (x, w, b))
    # only some inputs needing a gradient (a first layer: no gradient for the image)
    assert gradcheck(lambda w: VF.locally_connected2d(x.detach(), w, None, (2, 3), (1, 0)), (w,))
    assert gradcheck(lambda x: VF.locally_connected2d(x, w.detach(), None, (2, 3), (1, 0)), (x,))


def test_locally_connected_backward_twice_with_retained_graph():
    layer = LocallyConnected2d(2, 3, 3, input_size=(6, 6))
    x = torch.randn(2, 2, 6, 6, requires_grad=True)
    y = layer(x).square().sum()
    y.backward(retain_graph=True)
    first = (x.grad.clone(), layer.weight.grad.clone())
    y.backward()
    torch.testing.assert_close(x.grad, 2 * first[0])
    torch.testing.assert_close(layer.weight.grad, 2 * first[1])


@pytest.mark.parametrize("tile", [(2, 2), (3, 4)])  # grouped-conv path, repeated-tile path
def test_tiled_conv_gradcheck(tile):
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(*tile, 2, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    lc_path = tile[0] * tile[1] * x.numel() > 6 * 7 * 2 * 2 * 2 * 2
    assert lc_path == (tile == (3, 4))
    assert gradcheck(lambda x, w, b: VF.tiled_conv2d(x, w, b, stride=1, padding=1), (x, w, b))


def test_lazy_size_is_fixed_at_first_call_and_checked():
    layer = LocallyConnected2d(3, 4, 3, stride=2)
    assert layer.has_uninitialized_params() and layer.output_size is None
    y = layer(torch.randn(2, 3, 11, 9))
    assert y.shape == (2, 4, 5, 4) and layer.weight.shape == (5, 4, 4, 3, 3, 3)
    assert layer.input_size == (11, 9)
    with pytest.raises(ConfigError, match=r"11x9 inputs, got shape \(2, 3, 12, 9\)"):
        layer(torch.randn(2, 3, 12, 9))
    with pytest.raises(ConfigError, match=r"expected input \(B, 3, H, W\) or \(3, H, W\), got shape \(2, 4, 11, 9\)"):
        layer(torch.randn(2, 4, 11, 9))


def test_lazy_layer_loads_a_state_dict():
    trained = LocallyConnected2d(2, 3, 3, input_size=(6, 7))
    fresh = LocallyConnected2d(2, 3, 3)
    fresh.load_state_dict(trained.state_dict())
    x = torch.randn(1, 2, 6, 7)
    torch.testing.assert_close(fresh(x), trained(x))
    with pytest.raises(ConfigError, match="loaded weight"):
        other = LocallyConnected2d(2, 3, 3)
        other.load_state_dict(trained.state_dict())
        other(torch.randn(1, 2, 8, 8))


def test_errors_name_the_shapes():
    with pytest.raises(ConfigError, match="smaller than the 5x5 kernel"):
        LocallyConnected2d(1, 2, 5, input_size=(4, 8))
    with pytest.raises(ConfigError, match="tile_size"):
        TiledConv2d(1, 2, 3, tile_size=4, input_size=(5, 5))
    with pytest.raises(ConfigError, match="stride"):
        TiledConv2d(1, 2, 3, tile_size=2, stride=0)
    with pytest.raises(ConfigError, match=r"weight \(2, 2, 1, 1, 3, 3\) is for 2x2"):
        VF.locally_connected2d(torch.randn(1, 1, 5, 5), torch.randn(2, 2, 1, 1, 3, 3))
    with pytest.raises(ConfigError, match="out_channels"):
        LocallyConnected2d(1, 0, 3)


def test_float64_and_no_bias():
    layer = LocallyConnected2d(2, 3, 2, bias=False, input_size=(4, 5)).double()
    x = torch.randn(2, 2, 4, 5, dtype=torch.float64)
    ref = loop_reference(x, lambda i, j: layer.weight[i, j], None, 2, 1, 0, (3, 4))
    torch.testing.assert_close(layer(x), ref)


def _unfold_einsum_reference(x, weight, bias, stride, padding):
    oh, ow, o, c, kh, kw = weight.shape
    cols = torch.nn.functional.unfold(x, (kh, kw), padding=padding, stride=stride)     # (B, K, L)
    y = torch.einsum("bkl,lok->bol", cols, weight.reshape(oh * ow, o, c * kh * kw))
    return y.reshape(x.shape[0], o, oh, ow) + bias


@pytest.mark.parametrize("chunk", [VF.CHUNK_BYTES, 1])
@pytest.mark.parametrize("shape", [(3, 2, 4, 12, 11), (5, 3, 40, 11, 12)])  # K >= B, O (borrowed buffers); O > K
def test_locally_connected_gradients_match_reference_over_many_rows(shape, chunk, monkeypatch):
    """Ten output rows, each its own backward part (walked last to first, the gradient copy in
    borrowed memory when it fits): dx, dW, db equal autograd through unfold + einsum, twice."""
    monkeypatch.setattr(VF, "CHUNK_BYTES", chunk)
    b, c, o, h, w = shape
    oh, ow = h - 2, w - 2
    x = torch.randn(b, c, h, w, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(oh, ow, o, c, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(o, oh, ow, dtype=torch.float64, requires_grad=True)
    g = torch.randn(b, o, oh, ow, dtype=torch.float64)
    ref = torch.autograd.grad(_unfold_einsum_reference(x, weight, bias, 1, 0), (x, weight, bias), g)
    y = VF.locally_connected2d(x, weight, bias)
    for _ in range(2):  # the second backward through the same graph gathers again
        got = torch.autograd.grad(y, (x, weight, bias), g, retain_graph=True)
        for a, r in zip(got, ref):
            torch.testing.assert_close(a, r)


def test_jit_trace_of_every_custom_layer_matches_eager():
    from visionnets.nn import L2Pool2d, LocalContrastNorm2d, LocallyConnected2d, TiledConv2d

    for layer in (LocallyConnected2d(2, 3, 3, input_size=(8, 8)), TiledConv2d(2, 3, 3, 2, input_size=(8, 8)),
                  LocalContrastNorm2d(2, 5), L2Pool2d(2)):
        x = torch.randn(2, 2, 8, 8)
        traced = torch.jit.trace(layer, x, check_trace=False)
        torch.testing.assert_close(traced(x), layer(x), msg=type(layer).__name__)
