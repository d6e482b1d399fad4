"""Unsupervised training of convolutional and locally connected stages (Le et al. 2012): the
decoder is the filter's adjoint, the loss against a plain reference, gradcheck, greedy and joint."""

import json

import pytest
import torch
from torch import nn

from visionnets import api
from visionnets.errors import ConfigError
from visionnets.models import build_model
from visionnets.nn import LocallyConnected2d, TiledConv2d
from visionnets.nn import functional as VF
from visionnets.unsupervised.stages import decode, encode, pretrain_stages, stage_loss, winners_only

D64 = torch.float64


def _filters():
    torch.manual_seed(0)
    return {"conv": nn.Conv2d(2, 3, 3, stride=2, padding=1).double(),
            "local": LocallyConnected2d(2, 3, 3, stride=2, input_size=(9, 9)).double(),
            "tiled": TiledConv2d(2, 3, 3, 2, stride=2).double()}


@pytest.mark.parametrize("kind", ["conv", "local", "tiled"])
def test_decoder_is_the_adjoint_of_the_filter(kind):
    """<f(x; W), z> = <x, f*(z; W)> for every x, z (here on a 9x9 input, stride 2, odd sizes)."""
    filt = _filters()[kind]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 2, 9, 9, generator=g, dtype=D64)
    z0 = encode(filt, x)
    z = torch.randn(z0.shape, generator=g, dtype=D64)
    lhs = (z0 * z).sum()
    rhs = (x * decode(filt, z, filt.weight, (9, 9))).sum()
    assert lhs.item() == pytest.approx(rhs.item(), rel=1e-10)


def test_locally_connected_stage_loss_against_loops_and_gradcheck():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 6, 6, generator=g, dtype=D64)
    filt = LocallyConnected2d(1, 2, 3, input_size=(6, 6), bias=False).double()
    we = torch.randn(4, 4, 2, 1, 3, 3, generator=g, dtype=D64, requires_grad=True)
    wd = torch.randn(4, 4, 2, 1, 3, 3, generator=g, dtype=D64, requires_grad=True)
    parts = stage_loss(filt, x, wd, sparsity=0.3, pool_size=3, eps=1e-2, weight=we)
    rec_ref, sp_ref = 0.0, 0.0                        # plain reference: loops over locations and units
    we0, wd0 = we.detach(), wd.detach()
    for b in range(2):
        z = torch.zeros(2, 4, 4, dtype=D64)
        xh = torch.zeros(1, 6, 6, dtype=D64)
        for i in range(4):
            for j in range(4):
                for k in range(2):
                    z[k, i, j] = (we0[i, j, k] * x[b, :, i:i + 3, j:j + 3]).sum()
        for i in range(4):
            for j in range(4):
                for k in range(2):
                    xh[:, i:i + 3, j:j + 3] += wd0[i, j, k] * z[k, i, j]
        rec_ref += float(((xh - x[b]) ** 2).sum())
        zp = torch.nn.functional.pad(z, (1, 1, 1, 1))
        for k in range(2):
            for i in range(4):
                for j in range(4):
                    sp_ref += float(torch.sqrt((zp[k, i:i + 3, j:j + 3] ** 2).sum() + 1e-2))
    assert parts["reconstruction_error"].item() == pytest.approx(rec_ref / 2, rel=1e-10)
    assert parts["sparsity"].item() == pytest.approx(sp_ref / 2, rel=1e-10)
    assert torch.autograd.gradcheck(lambda a, b: stage_loss(filt, x, b, 0.3, 3, eps=1e-2, weight=a)["loss"], (we, wd))


def test_convolutional_stage_loss_is_the_locally_connected_one_with_tied_weights():
    """A convolution is a locally connected layer with the same filter everywhere: same loss."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 2, 7, 7, generator=g, dtype=D64)
    conv = nn.Conv2d(2, 3, 3, bias=False).double()
    local = LocallyConnected2d(2, 3, 3, bias=False, input_size=(7, 7)).double()
    we = torch.randn(3, 2, 3, 3, generator=g, dtype=D64, requires_grad=True)
    wd = torch.randn(3, 2, 3, 3, generator=g, dtype=D64, requires_grad=True)
    tile = lambda w: w.expand(5, 5, *w.shape)   # noqa: E731
    got = stage_loss(conv, x, wd, 0.2, 3, weight=we)
    want = stage_loss(local, x, tile(wd), 0.2, 3, weight=tile(we))
    for k in got:
        torch.testing.assert_close(got[k], want[k])
    assert torch.autograd.gradcheck(lambda a, b: stage_loss(conv, x, b, 0.2, 3, weight=a)["loss"], (we, wd))


def _bars(n=96, size=12):
    """Images of random horizontal and vertical bars: structure to learn."""
    g = torch.Generator().manual_seed(3)
    x = torch.zeros(n, 1, size, size)
    for i in range(n):
        r, c = torch.randint(0, size, (2,), generator=g).tolist()
        if i % 2:
            x[i, 0, r, :] = 1.0
        else:
            x[i, 0, :, c] = 1.0
    return x + 0.05 * torch.randn(x.shape, generator=g)


@pytest.mark.parametrize("schedule", ["greedy", "joint"])
@pytest.mark.parametrize("spec", [
    {"name": "le2012", "kernel": 4, "maps": 3, "stages": 2, "pool": 3, "lcn": 3},
    {"name": "convnet", "stages": [{"layer": "conv", "channels": 4, "kernel": 3, "padding": "same"},
                                   {"layer": "tiled", "channels": 4, "kernel": 3, "tile": 2, "pool": "l2"}]},
], ids=["le2012_local", "convnet_conv_tiled"])
def test_greedy_and_joint_training_lower_every_stage_loss(spec, schedule):
    torch.manual_seed(0)
    net = build_model(spec, (1, 12, 12), 5)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    stats = pretrain_stages(net, _bars(), schedule=schedule, epochs=6, lr=1e-2, batch_size=32, sparsity=0.05)
    assert [s["stage"] for s in stats] == ["stage1", "stage2"]
    for s in stats:
        assert len(s["epochs"]) == 6 and s["schedule"] == schedule
        assert s["epochs"][-1]["loss"] < 0.8 * s["epochs"][0]["loss"], s
    changed = {n for n, p in net.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"stage1.filter.weight", "stage2.filter.weight"}     # biases and classifier: fine-tuning's
    assert net.training


def test_errors_name_the_key():
    with pytest.raises(ConfigError, match="schedule"):
        pretrain_stages(build_model({"name": "le2012", "kernel": 3, "maps": 2, "stages": 1}, (1, 8, 8), 0),
                        torch.rand(4, 1, 8, 8), schedule="both")
    with pytest.raises(ConfigError, match="needs a model of stages"):
        pretrain_stages(nn.Sequential(nn.Flatten(), nn.Linear(64, 2)), torch.rand(4, 1, 8, 8))
    with pytest.raises(ConfigError, match=r"--set pretrain.params.shedule=joint: pretrain: params.shedule: unknown"
                                          r".*schedule"):
        api.train("digits_convnet", ["pretrain.method=stages", "pretrain.params.shedule=joint"])


def test_a_recipe_pretrains_its_stages_then_fine_tunes(tmp_path):
    r = api.train("digits_convnet", ["pretrain.method=stages", "pretrain.epochs=1", "pretrain.params.schedule=greedy",
                                     "train.epochs=1"], out=tmp_path / "run", progress=False, figures=False)
    record = json.loads((r.run_dir / "pretrain.json").read_text())
    assert record["method"] == "stages" and [s["stage"] for s in record["layers"]] == ["stage1", "stage2"]
    assert r.history[-1]["epoch"] == 1


def test_transpose_of_locally_connected_is_differentiable_twice():
    g = torch.Generator().manual_seed(4)
    z = torch.randn(2, 3, 4, 4, generator=g, dtype=D64, requires_grad=True)
    w = torch.randn(4, 4, 3, 2, 3, 3, generator=g, dtype=D64, requires_grad=True)
    f = lambda a, b: VF.locally_connected2d_transpose(a, b, (9, 9), stride=2)   # noqa: E731
    assert torch.autograd.gradcheck(f, (z, w)) and torch.autograd.gradgradcheck(f, (z, w), fast_mode=True)


def test_winners_keep_the_k_largest_responses_at_each_location():
    z = torch.tensor([[3.0, -5.0, 1.0, 0.5], [0.1, 0.2, -0.3, 4.0]]).T.reshape(1, 4, 1, 2)   # 4 maps, 2 locations
    assert winners_only(z, 1)[0, :, 0].tolist() == [[0.0, 0.0], [-5.0, 0.0], [0.0, 0.0], [0.0, 4.0]]
    assert (winners_only(z, 2) != 0).sum(1).flatten().tolist() == [2, 2]
    assert winners_only(z, 4) is z


def test_winner_code_against_a_plain_reference_and_gradcheck():
    """A one-location stage with one winner and the decoder tied: each example is rebuilt by its
    best-matching filter alone, ||x - (w_j . x) w_j||^2, j = argmax_j |w_j . x| (gain-shape VQ)."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 2, 5, 5, generator=g, dtype=D64)
    filt = LocallyConnected2d(2, 3, 5, input_size=(5, 5), bias=False).double()
    we = torch.randn(1, 1, 3, 2, 5, 5, generator=g, dtype=D64, requires_grad=True)
    parts = stage_loss(filt, x, we, sparsity=0.0, pool_size=1, weight=we, winners=1)
    w = we.detach().reshape(3, -1)
    ref = 0.0
    for b in range(4):
        v = x[b].flatten()
        j = int((w @ v).abs().argmax())
        ref += float(((v - (w[j] @ v) * w[j]) ** 2).sum())
    assert parts["reconstruction_error"].item() == pytest.approx(ref / 4, rel=1e-10)
    wd = torch.randn(1, 1, 3, 2, 5, 5, generator=g, dtype=D64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: stage_loss(filt, x, b, 0.1, 1, weight=a, winners=2)["loss"], (we, wd))


def test_a_tied_centered_one_winner_stage_learns_the_clusters_of_its_input():
    """Spherical k-means as a stage: three clusters around an offset mean, one unit each (aligned
    with its cluster's mean less the data's mean); the filter's bias then subtracts the input's mean."""
    g = torch.Generator().manual_seed(6)
    dirs = torch.nn.functional.normalize(torch.randn(3, 36, generator=g), dim=1)
    label = torch.arange(600) % 3
    x = (2.0 + dirs[label] * (1 + torch.rand(600, 1, generator=g)) + 0.05 * torch.randn(600, 36, generator=g))
    x = x.view(600, 1, 6, 6)
    torch.manual_seed(0)
    net = build_model({"name": "le2012", "stages": 1, "kernel": 6, "maps": 3, "pool": 1, "lcn": 1, "bias": True},
                      (1, 6, 6), 0)
    pretrain_stages(net, x, epochs=15, lr=0.02, batch_size=32, sparsity=0.0, winners=1, tied=True, center=True)
    w = net.stage1.filter.weight.detach().reshape(3, 36)
    flat = x.flatten(1)
    centers = torch.stack([flat[label == k].mean(0) for k in range(3)]) - flat.mean(0)
    cos = (torch.nn.functional.normalize(w, dim=1) @ torch.nn.functional.normalize(centers, dim=1).T).abs()
    assert cos.max(1).values.min() > 0.95 and sorted(cos.argmax(1).tolist()) == [0, 1, 2]     # one unit per cluster
    with torch.no_grad():
        got = net.stage1.filter(x[:5])
        want = encode(net.stage1.filter, x[:5] - x.mean(0))
    torch.testing.assert_close(got, want, atol=0.1, rtol=0.05)          # the running mean is close to the data's


def test_per_stage_options_are_checked():
    net = build_model({"name": "le2012", "kernel": [3, 4], "maps": 2, "stages": 2, "bias": [False, True]}, (1, 8, 8), 0)
    with pytest.raises(ConfigError, match=r"pretrain.params.winners: expected one int >= 0 or one per stage \(2\)"):
        pretrain_stages(net, torch.rand(4, 1, 8, 8), winners=[1])
    with pytest.raises(ConfigError, match=r"pretrain.params.center: stage1.filter must be locally connected with a bias"):
        pretrain_stages(net, torch.rand(4, 1, 8, 8), center=True)
    with pytest.raises(ConfigError, match=r"params.tied: expected true or false or a list of one per stage"):
        api.train("digits_convnet", ["pretrain.method=stages", "pretrain.params.tied=2"])
    pretrain_stages(net, torch.rand(8, 1, 8, 8), epochs=1, batch_size=4, center=[False, True], tied=[False, True],
                    winners=[0, 1])


@pytest.mark.parametrize("kind", ["local", "conv"])
def test_a_unit_that_never_wins_is_reseeded_with_an_input_patch(kind):
    """As k-means re-seeds an empty cluster: a unit among the winners for no example takes the
    (unit-norm) patch of a random example at its location."""
    from visionnets.unsupervised.stages import _reseed_

    g = torch.Generator().manual_seed(7)
    h = torch.zeros(6, 1, 4, 4)
    h[:, 0, :2] = torch.randn(6, 2, 4, generator=g)            # the data live in the top half only
    filt = (LocallyConnected2d(1, 3, 4, input_size=(4, 4), bias=False) if kind == "local"
            else nn.Conv2d(1, 3, 4, bias=False))
    with torch.no_grad():
        filt.weight.zero_()
        w = filt.weight.view(3, 16)
        w[0, 0], w[1, 1], w[2, 15] = 1.0, 1.0, 1.0              # unit 2 sees only the empty bottom corner
    assert _reseed_(filt, h, 1, g) == 1
    new = filt.weight.detach().reshape(3, 16)
    assert torch.equal(new[:2], torch.eye(16)[:2])            # the winning units are left alone
    patches = torch.nn.functional.normalize(h.reshape(6, 16), dim=1)
    assert torch.isclose(patches @ new[2], torch.tensor(1.0)).any()        # one example's patch, at unit norm
    assert _reseed_(filt, h, 1, g, every=True) == 3


def test_winners_need_a_convolutional_or_locally_connected_filter():
    net = build_model({"name": "convnet", "stages": [{"layer": "tiled", "channels": 2, "kernel": 3, "tile": 2}]},
                      (1, 8, 8), 2)
    with pytest.raises(ConfigError, match=r"winners: stage1.filter is a TiledConv2d"):
        pretrain_stages(net, torch.rand(4, 1, 8, 8), winners=1)
