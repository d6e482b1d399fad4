"""visionnets.viz.filters: which filters are drawn, their layout and normalization."""

import numpy as np
import pytest
import torch
from torch import nn

from visionnets.errors import ConfigError
from visionnets.nn.local import LocallyConnected2d, TiledConv2d
from visionnets.viz.filters import (filter_image, filter_layout, filter_weights, first_spatial_layer,
                                    has_spatial_weights, plot_filters)
from visionnets.viz.grid import as_images, normalize_each, tile_grid

PNG = b"\x89PNG\r\n\x1a\n"


class LocallyConnected(nn.Module):
    """Any module with a 6-D weight (out_h, out_w, out_c, in_c, kh, kw) is read as locally connected."""

    def __init__(self, shape=(3, 4, 5, 2, 3, 3)):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(shape))


def test_conv_filters_are_the_weight():
    conv = nn.Conv2d(3, 8, 5)
    assert torch.equal(filter_weights(conv), conv.weight.detach())


def test_linear_filters_reshape_to_the_input_shape():
    lin = nn.Linear(3 * 8 * 8, 10)
    w = filter_weights(lin, input_shape=(3, 8, 8))
    assert w.shape == (10, 3, 8, 8)
    assert torch.equal(w[4, 2], lin.weight.detach()[4].reshape(3, 8, 8)[2])
    assert filter_weights(nn.Linear(64, 5)).shape == (5, 1, 8, 8)          # square grey guessed
    assert filter_weights(nn.Linear(192, 5)).shape == (5, 3, 8, 8)         # 3*s*s guessed RGB
    assert filter_weights(nn.Linear(64, 5), input_shape=(64,)).shape == (5, 1, 8, 8)
    with pytest.raises(ConfigError, match="in_features=50"):
        filter_weights(nn.Linear(50, 5))
    with pytest.raises(ConfigError, match=r"C\*H\*W == 64"):
        filter_weights(nn.Linear(64, 5), input_shape=(1, 7, 7))


def test_locally_connected_location_channel_and_all():
    lc = LocallyConnected((3, 4, 5, 2, 3, 3))
    w = lc.weight.detach()
    assert torch.equal(filter_weights(lc), w[1, 2])                       # centre location
    assert torch.equal(filter_weights(lc, location=(0, 3)), w[0, 3])
    by_loc, ncols = filter_layout(lc, channel=4)
    assert by_loc.shape == (12, 2, 3, 3) and ncols == 4                    # grid over the 3x4 map
    assert torch.equal(by_loc[1 * 4 + 3], w[1, 3, 4])
    every, ncols = filter_layout(lc, location="all")
    assert every.shape == (60, 2, 3, 3) and ncols == 5
    assert torch.equal(every[(2 * 4 + 1) * 5 + 3], w[2, 1, 3])
    for bad in ({"location": (3, 0)}, {"channel": 5}, {"location": (0, 0), "channel": 1},
                {"location": "middle"}):
        with pytest.raises(ConfigError):
            filter_weights(lc, **bad)


def test_tiled_layers_show_every_tile_by_default():
    tiled = TiledConv2d(1, 3, 5, tile_size=2)
    w, ncols = filter_layout(tiled)
    assert w.shape == (12, 1, 5, 5) and ncols == 3                         # one row per tile
    assert torch.equal(w[1 * 3 + 2], tiled.weight.detach()[0, 1, 2])


def test_real_locally_connected_layer():
    lc = LocallyConnected2d(3, 4, 5, input_size=(9, 11))                   # 5 x 7 locations
    w = lc.weight.detach()
    assert torch.equal(filter_weights(lc), w[2, 3])
    by_loc, ncols = filter_layout(lc, channel=1)
    assert by_loc.shape == (35, 3, 5, 5) and ncols == 7
    assert filter_image(by_loc, ncols=ncols).shape == (5 * 6 + 1, 7 * 6 + 1, 3)   # RGB
    net = nn.Sequential(LocallyConnected2d(1, 2, 3), nn.ReLU())             # lazy: no weights yet
    assert first_spatial_layer(net, (1, 8, 8)) is None
    with pytest.raises(ConfigError, match="lazily"):
        filter_weights(net[0])
    net(torch.randn(1, 1, 8, 8))
    assert first_spatial_layer(net, (1, 8, 8))[1] is net[0]


def test_bad_weights_raise():
    with pytest.raises(ConfigError, match="weight of shape"):
        filter_weights(torch.randn(2, 3, 4))
    with pytest.raises(ConfigError, match="no weight"):
        filter_weights(nn.ReLU())


def test_normalize_each_per_item():
    x = torch.tensor([[0.0, 2.0, 4.0], [-1.0, 0.0, 3.0], [5.0, 5.0, 5.0]])
    mm = normalize_each(x, "minmax")
    assert torch.allclose(mm[0], torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    assert torch.allclose(mm[1], torch.tensor([0.0, 0.25, 1.0], dtype=torch.float64))
    assert torch.all(mm[2] == 0.5)                                          # constant: mid-grey
    sym = normalize_each(x, "symmetric")
    assert sym[1, 1] == 0.5 and sym[1, 2] == 1.0 and sym[1, 0] == pytest.approx(0.5 - 1 / 6)
    with pytest.raises(ConfigError):
        normalize_each(x, "zscore")


def _tiles(grid, n, h, w, ncols, pad=1):
    out = []
    for i in range(n):
        r, q = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        out.append(grid[y:y + h, x:x + w])
    return out


def test_filter_image_grey_each_filter_normalized():
    w = torch.randn(6, 1, 4, 5) * torch.arange(1, 7).reshape(6, 1, 1, 1)   # very different scales
    grid = filter_image(w, ncols=3)
    assert grid.shape == (2 * 5 + 1, 3 * 6 + 1)
    for i, tile in enumerate(_tiles(grid, 6, 4, 5, 3)):
        assert tile.min() == 0 and tile.max() == 1
        ref = (w[i, 0] - w[i, 0].min()) / (w[i, 0].max() - w[i, 0].min())
        assert np.allclose(tile, ref.numpy(), atol=1e-6)


def test_filter_image_rgb_and_many_channels():
    rgb = filter_image(torch.randn(4, 3, 5, 5))
    assert rgb.shape == (2 * 6 + 1, 2 * 6 + 1, 3)
    multi = filter_image(torch.randn(3, 4, 2, 2))                           # 4 channels: grey, row per filter
    assert multi.shape == (3 * 3 + 1, 4 * 3 + 1)
    w = torch.randn(3, 4, 2, 2)
    tiles = _tiles(filter_image(w), 12, 2, 2, 4)
    for f in range(3):                                                       # normalized jointly per filter
        joint = np.stack(tiles[f * 4:(f + 1) * 4])
        assert joint.min() == 0 and joint.max() == 1
    with pytest.raises(ConfigError):
        filter_image(torch.randn(2, 2, 3, 3), rgb=True)


def test_tile_grid_and_as_images():
    assert tile_grid(torch.rand(5, 1, 3, 3), ncols=5, pad=0).shape == (3, 15)
    assert tile_grid(torch.rand(5, 1, 3, 3), ncols=2, pad=1, gap_below=2).shape == (3 * 6 + 1, 2 * 4 + 1)
    assert as_images(torch.rand(4, 64)).shape == (4, 1, 8, 8)
    assert as_images(torch.rand(4, 12), (3, 2, 2)).shape == (4, 3, 2, 2)
    with pytest.raises(ConfigError):
        as_images(torch.rand(4, 10))
    with pytest.raises(ConfigError):
        tile_grid(torch.rand(2, 2, 3, 3))


def test_first_spatial_layer():
    conv = nn.Sequential(nn.BatchNorm2d(1), nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))
    assert first_spatial_layer(conv, (1, 8, 8)) == ("1", conv[1])
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.ReLU(), nn.Linear(10, 2))
    assert first_spatial_layer(mlp, (1, 8, 8)) == ("1", mlp[1])
    assert first_spatial_layer(mlp, (64,)) == ("1", mlp[1])
    toy = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))        # cosine regression
    assert first_spatial_layer(toy, (1,)) is None
    lc = nn.Sequential(LocallyConnected())
    assert first_spatial_layer(lc, (2, 5, 6))[1] is lc[0]
    assert has_spatial_weights(nn.Conv2d(1, 1, 1)) and not has_spatial_weights(nn.Linear(64, 2))


def test_plot_filters_writes_a_png_atomically(tmp_path):
    path = plot_filters(nn.Conv2d(3, 16, 5), tmp_path / "sub" / "f.png")
    assert path.read_bytes()[:8] == PNG
    assert [p.name for p in path.parent.iterdir()] == ["f.png"]              # no temporary left
    p2 = plot_filters(LocallyConnected(), tmp_path / "lc.png", channel=1)
    p3 = plot_filters(nn.Linear(784, 500), tmp_path / "ae.png", max_filters=100)
    assert p2.stat().st_size > 0 and p3.read_bytes()[:8] == PNG
