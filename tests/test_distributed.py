"""Distributed building blocks without Ray or processes: shard layout, parameter shard, DDP parts."""

import math

import pytest
import torch

from visionnets import api
from visionnets.data.base import Split
from visionnets.train.loader import TensorLoader, part_bounds
from visionnets.distributed.ps import ParameterShard, staleness_stats
from visionnets.distributed.replica import batch_sizes, slot_indices, steps_per_epoch
from visionnets.distributed.sharding import ShardLayout
from visionnets.errors import CheckpointError, ConfigError, TrainingError
from visionnets.recipes import OptimizerSection, ScheduleSection


@pytest.mark.parametrize("sizes,shards", [([4, 100, 10], 2), ([800, 32, 25600, 64, 5120, 10], 3),
                                           ([7], 1), ([1, 1, 1, 1, 1], 5), ([1000], 4)])
def test_layout_covers_every_parameter_once_and_is_balanced(sizes, shards):
    layout = ShardLayout.plan(sizes, shards)
    total = sum(sizes)
    covered = sorted(r for p in layout.pieces for r in p)
    assert covered[0][0] == 0 and covered[-1][1] == total
    assert all(a[1] == b[0] for a, b in zip(covered, covered[1:]))      # no gap, no overlap
    assert max(layout.sizes()) <= total / shards + math.ceil(total / (4 * shards))
    assert min(layout.sizes()) > 0
    theta = torch.randn(total)
    parts = layout.split(theta)
    assert [len(p) for p in parts] == layout.sizes()
    assert torch.equal(layout.join(parts), theta)


def test_layout_splits_large_tensors_and_keeps_small_ones_whole():
    layout = ShardLayout.plan([10, 1000, 6], 2)   # limit ceil(1016 / 8) = 127
    pieces = [r for p in layout.pieces for r in p]
    assert (0, 10) in pieces and (1010, 1016) in pieces
    assert sum(1 for lo, hi in pieces if 10 <= lo < 1010) == math.ceil(1000 / 127)


def test_layout_errors_name_the_option():
    with pytest.raises(ConfigError, match="ps_shards"):
        ShardLayout.plan([3], 5)
    with pytest.raises(ConfigError, match=r"shape \(4,\)"):
        ShardLayout.plan([4], 1).split(torch.zeros(5))


def test_staleness_stats_of_a_histogram():
    s = staleness_stats({0: 90, 3: 9, 20: 1})
    values = torch.tensor([0.0] * 90 + [3.0] * 9 + [20.0])
    assert s["staleness_mean"] == pytest.approx(values.mean().item())
    assert s["staleness_p50"] == 0 and s["staleness_max"] == 20
    assert s["staleness_p95"] == pytest.approx(torch.quantile(values, 0.95).item())
    assert staleness_stats({})["staleness_mean"] is None


def _shard(theta, tmp_path=None, **kw):
    path = None if tmp_path is None else tmp_path / "shard-0.safetensors"
    spec = kw.pop("spec", OptimizerSection(lr=0.1, momentum=0.9, weight_decay=0.01))
    return ParameterShard(0, theta, spec, checkpoint=path, **kw)


def test_shard_applies_the_recipe_optimizer_like_torch():
    theta = torch.randn(6)
    shard = _shard(theta)
    ref = torch.nn.Parameter(theta.clone())
    opt = torch.optim.SGD([ref], lr=0.1, momentum=0.9, weight_decay=0.01)
    for step in range(4):
        g = torch.randn(6)
        assert shard.push(g, version=step, slot=0, first_step=step, steps=1, examples=8) == "applied"
        ref.grad = g
        opt.step()
    version, got = shard.fetch()
    assert version == 4
    torch.testing.assert_close(got, ref.detach(), rtol=0, atol=1e-7)


def test_shard_adagrad_as_in_distbelief():
    theta = torch.randn(5)
    shard = _shard(theta, spec=OptimizerSection(lr=0.3), kind="adagrad")
    h, ref = torch.zeros(5), theta.clone()
    for step in range(3):
        g = torch.randn(5)
        shard.push(g, version=step, slot=0, first_step=step, steps=1, examples=1)
        h += g * g                                   # h <- h + g^2 ; theta <- theta - eta g / sqrt(h)
        ref -= 0.3 * g / (h.sqrt() + 1e-10)
    torch.testing.assert_close(shard.fetch()[1], ref, rtol=1e-6, atol=1e-6)


def test_shard_follows_the_schedule_by_steps():
    shard = _shard(torch.zeros(2), spec=OptimizerSection(lr=1.0, momentum=0.0),
                   schedule=ScheduleSection(name="step", step_size=1, gamma=0.5), steps_per_epoch=2, epochs=3)
    lrs = []
    for step in range(5):
        shard.push(torch.zeros(2), version=step, slot=0, first_step=step, steps=1, examples=1)
        lrs.append(shard.lr())
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25]


def test_shard_ledger_drops_duplicates_refuses_gaps_and_counts_staleness():
    shard = _shard(torch.zeros(3))
    assert shard.push(torch.ones(3), 0, slot=1, first_step=0, steps=2, examples=4) == "applied"
    assert shard.push(torch.ones(3), 0, slot=0, first_step=0, steps=2, examples=4) == "applied"
    before = shard.fetch()
    assert shard.push(torch.ones(3), 0, slot=1, first_step=0, steps=2, examples=4) == "duplicate"
    assert torch.equal(shard.fetch()[1], before[1])
    with pytest.raises(TrainingError, match="slot 1, which has only 2 steps"):
        shard.push(torch.ones(3), 2, slot=1, first_step=4, steps=2, examples=4)
    stats = shard.take_stats()
    assert stats["staleness"] == {0: 1, 1: 1} and stats["ledger"] == {1: 2, 0: 2} and stats["dropped"] == 1
    assert shard.take_stats()["staleness"] == {}


def test_shard_checkpoint_restores_theta_optimizer_version_and_ledger(tmp_path):
    shard = _shard(torch.randn(4), tmp_path, checkpoint_every=3)
    for step in range(3):  # the third update writes the checkpoint
        shard.push(torch.randn(4), step, slot=0, first_step=step, steps=1, examples=2)
    saved = shard.fetch()
    g = torch.randn(4)
    shard.push(g, 3, slot=0, first_step=3, steps=1, examples=2)
    back = _shard(torch.zeros(4), tmp_path, restore=True)
    assert back.version == 3 and back.ledger == {0: 3}
    torch.testing.assert_close(back.fetch()[1], saved[1])
    back.push(g, 3, slot=0, first_step=3, steps=1, examples=2)      # same momentum state: same result
    torch.testing.assert_close(back.fetch()[1], shard.fetch()[1])
    with pytest.raises(CheckpointError, match="no checkpoint to restore"):
        _shard(torch.zeros(4), tmp_path / "none", restore=True)


def test_replica_data_plan():
    assert list(slot_indices(10, 1, 3)) == [1, 4, 7]
    assert steps_per_epoch(10, 4, 1, None) == 3 and steps_per_epoch(10, 4, 2, 2) == 1
    assert batch_sizes(10, 4, 3) == [4, 4, 2]


def test_part_bounds_cover_the_batch():
    for n in (2, 5, 32, 33):
        for w in (1, 2, 3):
            if n < w:
                continue
            parts = [part_bounds(n, w, r) for r in range(w)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            assert max(h - l for l, h in parts) - min(h - l for l, h in parts) <= 1


def test_sharded_loader_parts_make_the_single_process_batches():
    split = Split(torch.arange(23.0)[:, None], torch.arange(23))
    single = [b["y"] for b in TensorLoader(split, 5, shuffle=True, seed=3)]
    loaders = [TensorLoader(split, 5, shuffle=True, seed=3, rank=r, workers=2) for r in range(2)]
    for i, parts in enumerate(zip(*loaders)):
        assert torch.equal(torch.cat([b["y"] for b in parts]), single[i])
        assert loaders[0].batch_examples == len(single[i])
    assert loaders[0].local_examples(len(loaders[0])) + loaders[1].local_examples(len(loaders[1])) == 23


def test_train_rejects_unknown_executor_and_options(tmp_path):
    with pytest.raises(ConfigError, match="unknown executor 'horovod'; expected one of: ddp, downpour, local"):
        api.train("digits_convnet", executor="horovod", out=tmp_path / "a")
    with pytest.raises(ConfigError, match="--executor ddp: unknown option 'replicas'"):
        api.train("digits_convnet", executor="ddp", replicas=2, out=tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()   # nothing written


def test_without_ray_the_error_names_the_extra(monkeypatch):
    import sys

    from visionnets.distributed.cluster import import_ray
    from visionnets.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "ray", None)   # as if it were not installed
    with pytest.raises(MissingExtraError, match=r"visionnets\[distributed\]"):
        import_ray()
