"""Checkpoints: one safetensors file holding the model, the optimizer and the RNG state.

Tensors are stored under ``model.<name>``, ``optim.<param index>.<key>`` and ``rng.<name>``;
everything else (epoch, step, optimizer hyper-parameters, best metric, recipe) is JSON in the
file's metadata. Files are written to a temporary name and renamed, so a checkpoint is either
whole or absent. Nothing is ever unpickled: loading a checkpoint someone sent you runs no code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from visionnets.errors import CheckpointError
from visionnets.io import atomic_write, atomic_write_bytes, atomic_write_text  # noqa: F401 (re-exported)

FORMAT = "visionnets-checkpoint-1"


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors, plain = {}, {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"optim.{idx}.{key}"] = val.detach().cpu().contiguous()
            else:
                plain.setdefault(str(idx), {})[key] = val
    return tensors, {"param_groups": sd["param_groups"], "plain_state": plain}


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    state: dict[str, Any] | None = None) -> Path:
    """Save model (+ optimizer, RNG, ``state``) atomically to ``path``."""
    path = Path(path)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta: dict[str, Any] = {"format": FORMAT, "state": state or {}}
    if optimizer is not None:
        t, meta["optim"] = _optimizer_tensors(optimizer)
        tensors.update(t)
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda{i}"] = s
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"visionnets": json.dumps(meta)}))


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and metadata of a checkpoint file, checked for format."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), "pt") as fh:
            raw = (fh.metadata() or {}).get("visionnets")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({exc})") from None
    if raw is None:
        raise CheckpointError(f"{path}: safetensors file without visionnets metadata")
    meta = json.loads(raw)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unknown checkpoint format {meta.get('format')!r}; expected {FORMAT}")
    return tensors, meta


def load_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    restore_rng: bool = False) -> dict[str, Any]:
    """Load weights (and optimizer / RNG state) from ``path`` into ``model``; return the JSON state."""
    tensors, meta = read_checkpoint(path)
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(f"{path}: weights do not fit the model: {' '.join(first[1:3]) or first[0]}") from None
    if optimizer is not None:
        if "optim" not in meta:
            raise CheckpointError(f"{path}: holds no optimizer state to resume from")
        state: dict[int, dict] = {}
        for key, val in tensors.items():
            if key.startswith("optim."):
                _, idx, name = key.split(".", 2)
                state.setdefault(int(idx), {})[name] = val
        for idx, plain in meta["optim"]["plain_state"].items():
            state.setdefault(int(idx), {}).update(plain)
        optimizer.load_state_dict({"state": state, "param_groups": meta["optim"]["param_groups"]})
    if restore_rng:
        torch.set_rng_state(tensors["rng.torch"])
        if torch.cuda.is_available():
            cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda")]
            if len(cuda) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(cuda)
    return meta["state"]
