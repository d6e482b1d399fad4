"""visionnets.viz.top and visionnets.viz.optimal: unit activations, top images, optimal inputs."""

import pytest
import torch
from torch import nn

from visionnets.data import load_dataset
from visionnets.errors import ConfigError
from visionnets.viz.optimal import activation_at_norm, optimal_input, plot_optimal
from visionnets.viz.top import layer_output, plot_top, top_images, unit_activation, unit_activations


def small_convnet():
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(256, 32), nn.ReLU(), nn.Linear(32, 10))


@pytest.fixture(scope="module")
def trained():
    """A small convnet trained for 3 epochs on the bundled 8x8 digits (about 10 % test error)."""
    torch.manual_seed(0)
    ds = load_dataset("digits", None, val_fraction=0.1, seed=0)
    net = small_convnet()
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(3):
        perm = torch.randperm(len(ds.train.x))
        for i in range(0, len(perm), 64):
            b = perm[i:i + 64]
            loss = nn.functional.cross_entropy(net(ds.train.x[b]), ds.train.y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        assert (net(ds.test.x).argmax(1) != ds.test.y).float().mean() < 0.3
    return net, ds


def test_unit_activations_match_the_direct_computation():
    net = small_convnet()
    x = torch.randn(37, 1, 8, 8)
    with torch.no_grad():
        conv = net[:4](x)                                  # layer '3': conv2, before its ReLU
        hidden = net[:7](x)                                # layer '6': the Linear
    assert torch.allclose(unit_activations(net, "3", 5, x, batch_size=10), conv[:, 5].amax((1, 2)))
    assert torch.allclose(unit_activations(net, "3", 5, x, reduce="mean"), conv[:, 5].mean((1, 2)), atol=1e-6)
    assert torch.allclose(unit_activations(net, "6", 7, x), hidden[:, 7])
    assert torch.allclose(unit_activations(net, "", 2, x), net(x)[:, 2].detach())   # "" = the output


def test_forward_stops_at_the_layer_and_hooks_are_removed():
    class Boom(nn.Module):
        def forward(self, x):
            raise AssertionError("the forward pass went past the hooked layer")

    net = nn.Sequential(nn.Conv2d(1, 2, 3), Boom())
    out = layer_output(net, "0", torch.randn(2, 1, 5, 5))
    assert out.shape == (2, 2, 3, 3)
    assert not net[0]._forward_hooks
    with pytest.raises(RuntimeError):                      # wrong input: the hook is still removed
        layer_output(net, "0", torch.randn(2, 3, 5, 5))
    assert not net[0]._forward_hooks
    with pytest.raises(ConfigError, match="unit 9 out of range: the layer has 2 channels"):
        unit_activation(out, 9)


def test_eval_mode_during_and_training_mode_restored():
    net = nn.Sequential(nn.Linear(4, 50), nn.Dropout(0.5))
    net.train()
    x = torch.randn(20, 4)
    a, b = unit_activations(net, "1", 3, x), unit_activations(net, "1", 3, x)
    assert torch.equal(a, b)                               # dropout off: deterministic
    assert net.training and net[1].training


def test_top_images_ordering():
    net = small_convnet()
    x = torch.randn(60, 1, 8, 8)
    acts = unit_activations(net, "3", 2, x)
    top = top_images(net, "3", 2, x, k=10)
    assert torch.all(top.activations[:-1] >= top.activations[1:])
    assert torch.equal(top.activations, acts[top.indices])
    assert top.activations[-1] >= acts.sort(descending=True).values[9]
    neg = top_images(net, "3", 2, x, k=10, negative=True)
    assert torch.all(neg.activations[:-1] <= neg.activations[1:])
    assert neg.activations[0] == acts.min()
    assert len(top_images(net, "3", 2, x[:4], k=10).indices) == 4


def test_unit_errors():
    net = small_convnet()
    x = torch.randn(3, 1, 8, 8)
    with pytest.raises(ConfigError, match="no layer named 'conv9'"):
        unit_activations(net, "conv9", 0, x)
    with pytest.raises(ConfigError, match="unit 16 out of range"):
        unit_activations(net, "3", 16, x)
    with pytest.raises(ConfigError, match="reduce"):
        unit_activations(net, "3", 1, x, reduce="median")
    with pytest.raises(ConfigError, match="empty"):
        unit_activations(net, "3", 1, x[:0])


def test_optimal_input_beats_every_dataset_image_of_the_same_norm(trained):
    """The acceptance test of issue 5 (Le et al. 2012): max f(x) s.t. ||x||_2 = r."""
    net, ds = trained
    x = torch.cat([ds.train.x, ds.val.x, ds.test.x])
    r = x.reshape(len(x), -1).norm(dim=1).median().item()
    mean = ds.train.x.mean(0)
    for layer, unit, start in (("0", 3, "noise"), ("3", 5, "noise"), ("6", 4, "mean"), ("8", 7, "noise")):
        best = optimal_input(net, layer, unit, (1, 8, 8), norm=r, steps=100, start=start, mean_image=mean)
        data = activation_at_norm(net, layer, unit, x, r)
        assert best.x.norm().item() == pytest.approx(r, rel=1e-5)
        assert best.activation > data.max().item(), (layer, unit)
        again = unit_activations(net, layer, unit, best.x[None])
        assert again.item() == pytest.approx(best.activation, rel=1e-5, abs=1e-6)
        assert all(a <= b for a, b in zip(best.history, best.history[1:]))


def test_optimal_input_of_a_linear_unit_is_its_normalized_weight():
    net = nn.Sequential(nn.Flatten(), nn.Linear(25, 4))
    best = optimal_input(net, "1", 2, (1, 5, 5), norm=3.0, steps=60)
    w = net[1].weight.detach()[2]
    assert best.activation == pytest.approx((3.0 * w.norm() + net[1].bias[2]).item(), abs=1e-4)
    assert torch.nn.functional.cosine_similarity(best.x.reshape(-1), w, dim=0) > 0.9999


def test_optimal_input_arguments():
    net = nn.Sequential(nn.Flatten(), nn.Linear(25, 4))
    with pytest.raises(ConfigError, match="mean_image"):
        optimal_input(net, "1", 0, (1, 5, 5), norm=1.0, start="mean")
    with pytest.raises(ConfigError, match="all zeros"):
        optimal_input(net, "1", 0, (1, 5, 5), norm=1.0, start="mean", mean_image=torch.zeros(1, 5, 5))
    with pytest.raises(ConfigError, match="norm"):
        optimal_input(net, "1", 0, (1, 5, 5), norm=0.0)
    with pytest.raises(ConfigError, match="start"):
        optimal_input(net, "1", 0, (1, 5, 5), norm=1.0, start="zeros")
    with pytest.raises(ConfigError, match="shape"):
        optimal_input(net, "1", 0, (1, 5, 5), norm=1.0, start=torch.ones(3, 3))
    from_image = optimal_input(net, "1", 0, (1, 5, 5), norm=1.0, start=torch.ones(1, 5, 5), steps=1)
    assert from_image.history[0] >= unit_activations(net, "1", 0, torch.ones(1, 1, 5, 5) / 5).item() - 1e-6


def test_plots(tmp_path, trained):
    net, ds = trained
    top = plot_top(net, "3", 1, ds.test.x, tmp_path / "top.png", k=8)
    best = optimal_input(net, "3", 1, (1, 8, 8), norm=3.0, steps=5)
    opt = plot_optimal(best, tmp_path / "opt.png", "conv2 unit 1")
    assert top.read_bytes()[:4] == opt.read_bytes()[:4] == b"\x89PNG"


def test_blurred_ascent_stays_smooth_and_still_climbs():
    """With ``blur`` each step is smoothed: from a flat start the optimal input of a unit whose
    weight is a checkerboard plus a smooth ramp follows the ramp, not the checkerboard."""
    from visionnets.viz.optimal import _blur

    i, j = torch.meshgrid(torch.arange(12.0), torch.arange(12.0), indexing="ij")
    w = ((-1.0) ** (i + j) + (i - 5.5) / 5.5).reshape(1, 144)
    net = nn.Sequential(nn.Flatten(), nn.Linear(144, 1, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(w)
    flat = torch.ones(1, 12, 12)
    sharp = optimal_input(net, "1", 0, (1, 12, 12), norm=12.0, steps=50, start=flat, restarts=1)
    smooth = optimal_input(net, "1", 0, (1, 12, 12), norm=12.0, steps=50, start=flat, restarts=1, blur=2.0)
    board = ((-1.0) ** (i + j)).reshape(-1)
    assert abs(float(smooth.x.reshape(-1) @ board)) < 0.1 * abs(float(sharp.x.reshape(-1) @ board))
    assert smooth.activation > float(net(flat[None] * 12.0 / flat.norm()).detach()) + 1.0
    torch.testing.assert_close(_blur(torch.ones(2, 3, 7, 9), 1.5), torch.ones(2, 3, 7, 9))     # flat stays flat
    with pytest.raises(ConfigError, match=r"blur: a width >= 0 for image inputs \(C, H, W\)"):
        optimal_input(net, "1", 0, (144,), norm=1.0, blur=1.0)
