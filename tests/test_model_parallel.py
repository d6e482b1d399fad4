"""Model parallelism: K spatial partitions equal the single process (forward, backward, one SGD step)."""

import json

import pytest
import torch
from torch import nn

from visionnets.distributed import model_parallel as mp
from visionnets.distributed.procs import free_port, join, leave, spawn
from visionnets.errors import ConfigError
from visionnets.nn import L2Pool2d, LocalContrastNorm2d, LocallyConnected2d, TiledConv2d

SHAPE = (2, 13, 11)


def stack() -> nn.Sequential:
    """Locally connected stages with odd sizes, stride and padding, every partitioned layer kind."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Sequential(LocallyConnected2d(2, 3, 3, stride=2, padding=1, input_size=(13, 11)), nn.ReLU(),
                      L2Pool2d(3, stride=1, padding=1), LocalContrastNorm2d(3, 3)),         # 7 x 6
        nn.Sequential(LocallyConnected2d(3, 4, (3, 2), stride=1, padding=1, input_size=(7, 6)),  # 7 x 7
                      nn.MaxPool2d(2, stride=1, padding=1),                                   # 8 x 8
                      TiledConv2d(4, 3, 3, tile_size=2, padding=1), nn.Tanh(),                # 8 x 8
                      nn.Conv2d(3, 3, 3), nn.AvgPool2d(3, stride=2, padding=1)),              # 6 x 6 -> 3 x 3
        nn.Sequential(nn.Flatten(), nn.Linear(27, 8), nn.ReLU(), nn.Linear(8, 5)))


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(6, *SHAPE, generator=g), torch.randint(0, 5, (6,), generator=g)


def _sgd(params):
    return torch.optim.SGD(params, lr=0.1, momentum=0.9)


def _reference():
    net = stack()
    x, y = _data()
    out = net(x)
    nn.functional.cross_entropy(out, y).backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    opt = _sgd(net.parameters())
    opt.step()
    return out.detach(), grads, {n: p.detach().clone() for n, p in net.named_parameters()}


def _worker(rank, k, port, path):
    join(rank, k, port, "gloo", threads=1)
    try:
        net = mp.PartitionedNet(stack(), SHAPE, mp.Comm(rank, k))
        x, y = _data()
        out = net(x)
        nn.functional.cross_entropy(out, y).backward()
        grads = net.gather({name: p.grad for name, (_, p) in net.layout.items()})
        shares = net.shares()
        _sgd(net.parameters()).step()
        after = net.full_state_dict()
        sent = net.comm.bytes_sent
        if rank == 0:
            ref_out, ref_grads, ref_after = _reference()
            diff = lambda a, b: max((a[n] - b[n]).abs().max().item() for n in b)  # noqa: E731
            result = {"out": (out.detach() - ref_out).abs().max().item(),
                      "grad": diff(grads, ref_grads), "step": diff(after, ref_after),
                      "names": sorted(after) == sorted(ref_after), "shares": shares, "sent": sent}
            with open(path, "w") as f:
                json.dump(result, f)
    finally:
        leave()


@pytest.mark.parametrize("k", [2, 4])
def test_partitions_equal_single_process(k, tmp_path):
    path = tmp_path / "result.json"
    spawn(_worker, k, (k, free_port(), str(path)), "model parallel test")
    r = json.loads(path.read_text())
    assert r["names"], "the gathered state has the single model's parameter names"
    assert r["out"] < 1e-5 and r["grad"] < 1e-5 and r["step"] < 1e-5, r
    # each worker holds about 1/K of the split parameters (the blocks of odd maps differ by a row)
    assert abs(sum(r["shares"]) - 1) < 1e-6 and max(r["shares"]) < 1.5 / k and min(r["shares"]) > 0.5 / k, r
    assert r["sent"] > 0


def test_geometry():
    assert mp.split(7, 3) == [(0, 2), (2, 4), (4, 7)]
    assert mp.grid(4) == (2, 2) and mp.grid(6) == (2, 3) and mp.grid(5) == (1, 5)
    b = mp.blocks((7, 9), 4)
    assert b[0] == mp.Rect(0, 3, 0, 4) and b[3] == mp.Rect(3, 7, 4, 9)
    # a 3x3 window, stride 2, padding 1 over 13 rows: outputs 4:7 read rows 7..13 and pad one after
    assert mp._reach(4, 7, 3, 2, 1, 13) == (7, 13, 0, 1)
    plan = mp.exchange_plan(0, [mp.Rect(0, 4, 0, 9), mp.Rect(4, 8, 0, 9)], [mp.Rect(0, 6, 0, 9), mp.Rect(2, 8, 0, 9)])
    assert plan.sends == [(1, mp.Rect(2, 4, 0, 9))] and plan.recvs == [(1, mp.Rect(4, 6, 0, 9))]
    assert plan.halo == 18


class _Comm(mp.Comm):
    """One worker of K, without a process group (geometry errors come before any message)."""


@pytest.mark.parametrize("model, match", [
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 6 * 6, 3)), "BatchNorm2d"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 3)), "too small"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Upsample(scale_factor=2), nn.Flatten()), "Upsample"),
    (nn.Sequential(nn.Conv2d(1, 2, 3)), "classifier"),
])
def test_unpartitionable_models_are_one_line_errors(model, match):
    k = 64 if match == "too small" else 2      # 8 x 8 blocks of a 6 x 6 map
    with pytest.raises(ConfigError, match=match):
        mp.PartitionedNet(model, (1, 8, 8), _Comm(0, k))
