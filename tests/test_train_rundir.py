"""The run directory: one reader and writer of a run's files."""

import json

import pytest

from visionnets.errors import CheckpointError, ConfigError
from visionnets.recipes import load_recipe
from visionnets.train.rundir import RunDir, read_metrics


def test_read_metrics_names_the_file_and_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"epoch": 1, "train_loss": 0.5}) + "\n\n" +
                    json.dumps({"epoch": 2, "train_loss": 0.25}) + "\n")
    assert [r["train_loss"] for r in read_metrics(path)] == [0.5, 0.25]
    path.write_text('{"epoch": 1}\n{"epoch": 2,\n')
    with pytest.raises(CheckpointError, match=r"metrics.jsonl:2: not valid JSON"):
        read_metrics(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(CheckpointError, match=r"metrics.jsonl:1: expected a JSON object"):
        read_metrics(path)
    with pytest.raises(CheckpointError, match="nothing.jsonl: cannot read"):
        read_metrics(tmp_path / "nothing.jsonl")


def test_create_open_and_round_trips(tmp_path):
    rd = RunDir.create(tmp_path / "run", "demo")
    with pytest.raises(CheckpointError, match="not a run directory"):
        RunDir.open(rd.path)
    rec = load_recipe("digits_convnet", ["train.epochs=2"])
    rd.write_recipe(rec)
    assert RunDir.open(rd.path).recipe().train.epochs == 2
    assert rd.recipe(["train.epochs=5"]).train.epochs == 5
    assert rd.executor() == {"executor": "local", "options": {}}
    rd.write_executor("downpour", {"replicas": 2}, layout_sizes=[3, 4])
    assert rd.executor() == {"executor": "downpour", "options": {"replicas": 2}, "layout_sizes": [3, 4]}
    assert rd.read_metrics() == []
    rd.write_metrics([{"epoch": 1}, {"epoch": 2}])
    assert rd.read_metrics(upto_epoch=1) == [{"epoch": 1}]
    with pytest.raises(CheckpointError, match="last.safetensors: checkpoint not found"):
        rd.weights("best")
    with pytest.raises(ConfigError, match="expected 'best' or 'last'"):
        rd.weights("middle")
    with pytest.raises(ConfigError, match="exists and is not empty"):
        RunDir.create(rd.path, "demo")
    assert not list(rd.path.glob(".*.tmp"))          # every write went through a rename


def test_new_run_directories_do_not_collide(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, b = RunDir.create(None, "demo"), RunDir.create(None, "demo")
    assert a.path != b.path and a.path.parent == b.path.parent == tmp_path.joinpath("runs").relative_to(tmp_path)
