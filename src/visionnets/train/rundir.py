"""The run directory: the files of one training run, read and written in one place.

    RUN_DIR/
      recipe.yaml                      the validated recipe (with every --set applied)
      executor.json                    {"executor": "local" | "ddp" | "downpour", "options": {...}}
      data.json                        the data root the run was trained on, and the files read
      inputs.safetensors               the inputs' shapes, classes and fitted transforms (predict, export)
      metrics.jsonl                    one JSON record per epoch (see visionnets.train.record)
      checkpoints/last.safetensors     model, optimizer, RNG and run state after the last epoch
      checkpoints/best.safetensors     the weights of the best epoch
      events.jsonl                     faults and what was done about them (Downpour)
      pretrain.json                    layer-wise pretraining statistics (when the recipe asks)
      ps/shard-K.safetensors           parameter-server shards (Downpour)
      figures/*.png, report.html       written after training (visionnets.viz)

Every file is written atomically (a temporary file, then one rename)::

    >>> import tempfile, pathlib
    >>> rd = RunDir.create(pathlib.Path(tempfile.mkdtemp()) / "run", "demo")
    >>> rd.write_metrics([{"epoch": 1, "train_loss": 0.5}, {"epoch": 2, "train_loss": 0.25}])
    >>> [r["epoch"] for r in rd.read_metrics(upto_epoch=1)]
    [1]
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from visionnets.errors import CheckpointError, ConfigError, DataError
from visionnets.io import atomic_write, atomic_write_text
from visionnets.recipes import Recipe, load_recipe


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file; a bad line is a CheckpointError naming file and line."""
    path = Path(path)
    records = []
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CheckpointError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
                if not isinstance(rec, dict):
                    raise CheckpointError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
                records.append(rec)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror})") from None
    return records


def write_jsonl(path: str | os.PathLike, records: list[dict[str, Any]]) -> None:
    """``records`` as one JSON object per line, atomically."""
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))


class RunDir:
    """The directory of one run (see the module docstring)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------------ making and opening
    @classmethod
    def create(cls, out: str | os.PathLike | None, name: str) -> "RunDir":
        """``out`` (which must be absent or empty), or a new ``runs/<name>-<time>`` directory."""
        if out is not None:
            out = Path(out)
            if out.exists() and any(out.iterdir()):
                raise ConfigError(f"{out}: run directory exists and is not empty; "
                                  f"use --resume {out} to continue it, or another --out")
            out.mkdir(parents=True, exist_ok=True)
            return cls(out)
        base = Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        path, k = base, 1
        while path.exists():
            k += 1
            path = base.with_name(f"{base.name}-{k}")
        path.mkdir(parents=True)
        return cls(path)

    @classmethod
    def open(cls, path: str | os.PathLike) -> "RunDir":
        """An existing run directory (it holds ``recipe.yaml``)."""
        rd = cls(path)
        if not rd.recipe_file.is_file():
            raise CheckpointError(f"{rd.path}: not a run directory (no recipe.yaml)")
        return rd

    def remove_partial_writes(self) -> list[Path]:
        """Delete the temporary files a killed writer left (the files they were to replace are whole)."""
        found = [p for folder in (self.path, self.path / "checkpoints", self.ps_dir) if folder.is_dir()
                 for p in folder.glob(".*.tmp")]
        for p in found:
            p.unlink(missing_ok=True)
        return found

    def remove_if_unstarted(self) -> bool:
        """Delete this directory if no checkpoint was written in it yet (a run that failed at once)."""
        if (self.path / "checkpoints").exists():
            return False
        shutil.rmtree(self.path, ignore_errors=True)
        return True

    # ------------------------------------------------------------------ files
    @property
    def recipe_file(self) -> Path:
        return self.path / "recipe.yaml"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def ps_dir(self) -> Path:
        return self.path / "ps"

    def checkpoint(self, name: str = "last") -> Path:
        """``checkpoints/<name>.safetensors`` (``last`` or ``best``)."""
        return self.path / "checkpoints" / f"{name}.safetensors"

    def weights(self, which: str = "best") -> Path:
        """The checkpoint to load for ``which`` (``best``, falling back to ``last``; or ``last``)."""
        if which not in ("best", "last"):
            raise ConfigError(f"which: expected 'best' or 'last', got {which!r}")
        path = self.checkpoint(which)
        if which == "best" and not path.is_file():
            path = self.checkpoint("last")
        if not path.is_file():
            raise CheckpointError(f"{path}: checkpoint not found (the run wrote none yet)")
        return path

    def state(self) -> dict[str, Any] | None:
        """The run state saved with ``checkpoints/last`` (None before the first checkpoint)."""
        from visionnets.train.checkpoint import read_checkpoint

        last = self.checkpoint("last")
        return read_checkpoint(last)[1]["state"] if last.is_file() else None

    def finished(self) -> bool:
        """Whether the run has trained its plan to the end (or stopped early by its rule)."""
        state, rec = self.state(), self.recipe()
        if state is None or "batch" in state:
            return False
        patience = rec.train.early_stopping.patience
        return state["epoch"] >= rec.train.epochs or (patience is not None and state.get("bad_epochs", 0) >= patience)

    # ------------------------------------------------------------------ contents
    def write_recipe(self, recipe: Recipe) -> None:
        atomic_write_text(self.recipe_file, yaml.safe_dump(recipe.to_dict(), sort_keys=False))

    def recipe(self, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
        """The run's recipe (with ``overrides`` applied)."""
        return load_recipe(self.recipe_file, overrides)

    def write_executor(self, name: str, options: dict[str, Any], **info: Any) -> None:
        """``executor.json``: the executor, the options it was started with, and facts (``info``)."""
        atomic_write_text(self.path / "executor.json",
                          json.dumps({"executor": name, "options": options, **info}, indent=1))

    def executor(self) -> dict[str, Any]:
        """The executor record (``local`` for a run that has none)."""
        path = self.path / "executor.json"
        if not path.is_file():
            return {"executor": "local", "options": {}}
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: not valid JSON ({exc.msg})") from None

    def write_data(self, root: str | os.PathLike | None, files: list[str] = ()) -> None:
        """``data.json``: the data root the run is trained on (None: the default roots) and the files read."""
        self.write_json("data.json", {"root": None if root is None else str(Path(root).expanduser().resolve()),
                                      "files": [str(Path(f).resolve()) for f in files]})

    def data_root(self, given: str | os.PathLike | None = None) -> Path | None:
        """The data root to load this run's data from: ``given`` when not None, else the root the
        run was trained on (None: the default roots). A recorded root that is gone is a DataError
        saying so."""
        if given is not None:
            return Path(given)
        path = self.path / "data.json"
        if not path.is_file():
            return None
        try:
            root = json.loads(path.read_text())["root"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise CheckpointError(f"{path}: not a data record (expected JSON with a 'root' key)") from None
        if root is not None and not Path(root).is_dir():
            raise DataError(f"{self.path}: trained on data under {root}, which is no longer there; "
                            f"pass --data-dir with the data's new place")
        return None if root is None else Path(root)

    def write_inputs(self, recipe: Recipe, dataset) -> None:
        """``inputs.safetensors``: what the model takes and gives (shapes, classes, tasks, modalities)
        and the input transforms fitted on the training data, so the run can prepare new inputs
        and be rebuilt without loading its training data (``predict``, ``export``)."""
        from safetensors.torch import save_file

        meta = {"dataset": dataset.name, "input_shape": list(dataset.input_shape), "num_outputs": dataset.num_outputs,
                "num_classes": dataset.num_classes, "class_names": dataset.class_names, "tasks": dataset.tasks,
                "modalities": None if not dataset.modalities else {k: list(v) for k, v in dataset.modalities.items()},
                "transforms": recipe.data.transforms}
        tensors = {k: v.detach().cpu().contiguous() for k, v in
                   (dataset.transform.state() if dataset.transform is not None else {}).items()}
        atomic_write(self.path / "inputs.safetensors",
                     lambda tmp: save_file(tensors, tmp, metadata={"visionnets": json.dumps(meta)}))

    def inputs(self):
        """``(dataset, transform)``: a dataset with the run's shapes and classes and no examples, and
        the fitted input transforms (None when the recipe has none)."""
        import torch
        from safetensors import safe_open
        from safetensors.torch import load_file

        from visionnets.data.base import Dataset, Split
        from visionnets.data.specs import build_transforms

        path = self.path / "inputs.safetensors"
        if not path.is_file():
            raise CheckpointError(f"{path}: missing; this run was made before runs recorded their inputs: "
                                  f"train it again to predict with it")
        with safe_open(str(path), "pt") as fh:
            meta = json.loads((fh.metadata() or {})["visionnets"])
        shape = tuple(meta["input_shape"])
        n_out = meta["num_outputs"]
        empty = Split(torch.zeros(0, *shape), torch.zeros(0, dtype=torch.long) if meta["num_classes"] is not None
                      else torch.zeros(0, n_out))
        modalities = None if meta["modalities"] is None else {k: tuple(v) for k, v in meta["modalities"].items()}
        dataset = Dataset(meta["dataset"], empty, None, empty, shape, meta["num_classes"], meta["class_names"],
                          tasks=meta["tasks"], modalities=modalities)
        transform = build_transforms(meta["transforms"])
        if transform is not None:
            transform.load_state(load_file(str(path)))
        return dataset, transform

    def read_metrics(self, upto_epoch: int | None = None) -> list[dict[str, Any]]:
        """The per-epoch records (up to ``upto_epoch``); none when the file is absent."""
        if not self.metrics_file.is_file():
            return []
        rows = read_metrics(self.metrics_file)
        return rows if upto_epoch is None else [r for r in rows if r["epoch"] <= upto_epoch]

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        write_jsonl(self.metrics_file, history)

    def write_events(self, events: list[dict[str, Any]]) -> None:
        write_jsonl(self.path / "events.jsonl", events)

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_text(self.path / name, json.dumps(obj, indent=1))
