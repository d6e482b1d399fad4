"""Model parallelism: K spatial partitions equal the single process (forward, backward, one SGD step)."""

import json

import pytest
import torch
from torch import nn

from visionnets import partition as geo
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
    assert geo.split(7, 3) == [(0, 2), (2, 4), (4, 7)]
    assert geo.grid(4) == (2, 2) and geo.grid(6) == (2, 3) and geo.grid(5) == (1, 5)
    b = geo.blocks((7, 9), 4)
    assert b[0] == geo.Rect(0, 3, 0, 4) and b[3] == geo.Rect(3, 7, 4, 9)
    # a 3x3 window, stride 2, padding 1 over 13 rows: outputs 4:7 read rows 7..13 and pad one after
    assert geo._reach(4, 7, 3, 2, 1, 13) == (7, 13, 0, 1)
    plan = geo.exchange_plan(0, [geo.Rect(0, 4, 0, 9), geo.Rect(4, 8, 0, 9)], [geo.Rect(0, 6, 0, 9), geo.Rect(2, 8, 0, 9)])
    assert plan.sends == [(1, geo.Rect(2, 4, 0, 9))] and plan.recvs == [(1, geo.Rect(4, 6, 0, 9))]
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


# a locally connected stage (odd 5x5 filters over 8x8 digits), an LCN, a convolution stage
LOCAL = ["model.stages=[{layer: local, channels: 4, kernel: 3, padding: 1, pool: l2, pool_size: 3, pool_stride: 1, "
         "norm: lcn, norm_kernel: 3}, {channels: 4, kernel: 3, stride: 2, pool: none}]", "model.hidden=[16]",
         "model.dropout=0", "data.augment=[]", "train.batch_size=50", "train.schedule.warmup_epochs=0",
         "train.epochs=2", "train.max_steps_per_epoch=6"]


def _weights(run_dir):
    from visionnets.train.checkpoint import read_checkpoint

    tensors, _ = read_checkpoint(run_dir / "checkpoints" / "last.safetensors")
    return tensors


def test_model_parallel_training_equals_local_and_checkpoints_are_whole(tmp_path):
    from visionnets import api

    single = api.train("digits_convnet", LOCAL, out=tmp_path / "single", progress=False, figures=False)
    split = api.train("digits_convnet", LOCAL, executor="model_parallel", partitions=2, out=tmp_path / "mp",
                      progress=False, figures=False)
    a, b = _weights(single.run_dir), _weights(split.run_dir)
    assert a.keys() == b.keys()          # the whole model and its optimizer state, as a local run writes
    for k in a:
        if not k.startswith("rng."):
            torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-5, msg=k)
    for ra, rb in zip(single.history, split.history):
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], abs=1e-5)
        assert rb["test_error"] == pytest.approx(ra["test_error"], abs=1e-12)
        assert rb["executor"]["rank0_bytes_sent"] > 0
    assert json.loads((split.run_dir / "executor.json").read_text()) == {
        "executor": "model_parallel", "options": {"partitions": 2, "backend": "gloo"}}


@pytest.mark.parametrize("args, message", [
    (["--partitions", "64"], "too small for 8 x 8 blocks"),
    (["--partitions", "2", "--set", "model.stages=[{channels: 4, norm: batch}]"], "normalizes over the whole map"),
    (["--partitions", "0"], "--partitions: expected an integer >= 1"),
    (["--executor", "ddp", "--partitions", "2"], "--partitions applies to --executor model_parallel or downpour, not ddp"),
])
def test_cli_bad_partitions_are_one_line_errors(args, message, tmp_path, capsys):
    from visionnets import cli

    assert cli.main(["train", "digits_convnet", "--out", str(tmp_path / "r"), "--no-progress", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
