"""The command line end to end on the bundled digits: train, eval --json, demo, recipes, errors."""

import json
import os
import subprocess
import sys

import pytest

from visionnets.cli import main

QUICK = ["--set", "train.epochs=1", "--set", "model.hidden=[16]",
         "--set", "model.stages=[{channels: 4, kernel: 3, padding: same}]", "--no-progress"]


def _cli(*args, check=True):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.run([sys.executable, "-m", "visionnets", *args], capture_output=True, text=True, env=env,
                       timeout=300)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and "visionnets 0." in capsys.readouterr().out
    p = _cli("--help")
    for cmd in ("demo", "train", "eval", "recipes"):
        assert cmd in p.stdout


def test_train_then_eval_json(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "digits_convnet", *QUICK, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"run directory: {out}" in text and "test error:" in text
    for f in ("recipe.yaml", "metrics.jsonl", "checkpoints/last.safetensors", "checkpoints/best.safetensors"):
        assert (out / f).is_file(), f
    assert main(["eval", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["split"] == "test" and res["n"] == 360
    assert 0 <= res["error"] <= 1 and res["accuracy"] == pytest.approx(1 - res["error"])
    assert res["loss"] > 0


@pytest.mark.parametrize("args, message", [
    (["train", "digits_convnet", "--set", "train.epochz=1"], "train.epochz: unknown key"),
    (["train", "nope.yaml"], "nope.yaml: no such recipe"),
    (["train"], "give a RECIPE"),
    (["eval", "/nonexistent/run"], "not a run directory"),
    (["train", "digits_convnet", "--set", "model.stages.0.pool=median"], "model.stages.0.pool"),
])
def test_errors_are_one_line_exit_2(args, message, capsys):
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_an_error_in_a_real_process_is_one_line_and_exit_2():
    p = _cli("train", "digits_convnet", "--set", "train.epochz=1", check=False)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == "error: " + lines[0][7:] and "train.epochz: unknown key" in lines[0], p.stderr


def test_recipes_lists_and_prints(capsys):
    assert main(["recipes"]) == 0
    listing = capsys.readouterr().out
    assert "mnist_mlp800" in listing and "digits_convnet" in listing
    assert main(["recipes", "cosine"]) == 0
    assert "name: cosine" in capsys.readouterr().out


def test_demo_runs_and_reports(tmp_path):
    p = _cli("demo", "--out", str(tmp_path / "demo"), "--set", "train.epochs=2", "--no-progress")
    assert "test error:" in p.stdout and "figures:" in p.stdout
    assert (tmp_path / "demo" / "report.html").is_file()


def test_a_command_imports_only_its_own_module():
    """`visionnets train` must not wait for `compare`'s scikit-learn import (3.3 s of every start)."""
    code = ("import sys; from visionnets.cli import build_parser; from visionnets.commands import COMMANDS; "
            "p = build_parser('train'); "
            "print('sklearn' in sys.modules, sorted(p._subparsers._group_actions[0].choices) == sorted(COMMANDS))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["False", "True"]        # every command still listed
    with pytest.raises(SystemExit):
        main(["--version"])
