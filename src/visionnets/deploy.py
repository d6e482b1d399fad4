"""A trained run as a model to use elsewhere: rebuilt without its training data, or exported.

``load_model(run_dir)`` rebuilds the run's model (its best checkpoint) with what the run
recorded of its inputs (``inputs.safetensors``: shapes, classes, the transforms fitted on the
training data), without loading the training data. ``export_model`` writes it as an ONNX or
TorchScript file whose input is the raw input (images in [0, 1], (N, C, H, W)) and whose output
is the class scores: the run's input transforms are part of the exported graph, and a JSON file
beside it describes the input and the output (shape, scale, class names). The graph holds only
standard operators (``visionnets.nn.functional.portable``): onnxruntime, or ``torch.jit.load``
where visionnets is not installed, runs it.

    >>> path, about = export_model("runs/digits", "onnx")           # doctest: +SKIP
    >>> import onnxruntime; onnxruntime.InferenceSession(str(path))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visionnets.errors import ConfigError, require
from visionnets.io import atomic_write, atomic_write_text
from visionnets.nn.functional import portable
from visionnets.train.checkpoint import load_checkpoint
from visionnets.train.rundir import RunDir
from visionnets.train.setup import build_model_for

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}


def load_model(run_dir: str | os.PathLike, which: str = "best"):
    """``(model, dataset, transform)``: the run's model on CPU in eval mode, a dataset with its
    shapes and classes and no examples, and the fitted input transforms (or None)."""
    rd = RunDir.open(run_dir)
    weights = rd.weights(which)
    dataset, transform = rd.inputs()
    model = build_model_for(rd.recipe(), dataset)
    load_checkpoint(weights, model)
    return model.eval(), dataset, transform


class Deployed(nn.Module):
    """The run's input transforms, then its model: raw inputs in, class scores out."""

    def __init__(self, model: nn.Module, transform=None):
        super().__init__()
        self.model, self.transform = model, transform

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.transform(x) if self.transform is not None else x)


def describe(dataset, fmt: str, dynamic_batch: bool, run_dir: Path) -> dict[str, Any]:
    """What the exported file takes and gives."""
    shape = list(dataset.input_shape)
    image = len(shape) == 3 and shape[0] in (1, 3)
    return {"format": fmt, "run": str(run_dir),
            "input": {"name": "input", "shape": [None if dynamic_batch else 1, *shape], "dtype": "float32",
                      "meaning": ("images (N, C, H, W) scaled to [0, 1], " + ("grayscale" if shape[0] == 1 else "RGB"))
                      if image else "the training data's features, unscaled"},
            "output": {"name": "scores", "meaning": "class scores: softmax gives probabilities"
                       if dataset.is_classification else "the regression's predictions"},
            "class_names": dataset.class_names, "tasks": dataset.tasks}


def export_model(run_dir: str | os.PathLike, fmt: str = "onnx", out: str | os.PathLike | None = None,
                 dynamic_batch: bool = True, which: str = "best") -> tuple[Path, dict[str, Any]]:
    """Write the run's model (transforms included) as ``fmt`` to ``out`` (default
    ``RUN_DIR/model.onnx`` or ``model.pt``) and ``<out>.json`` describing it; returns both."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format: {fmt!r}; expected one of {', '.join(FORMATS)}")
    model, dataset, transform = load_model(run_dir, which)
    if dataset.modalities:
        raise ConfigError(f"{run_dir}: a model of several inputs ({', '.join(dataset.modalities)}) cannot be "
                          f"exported with one input")
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / f"model{FORMATS[fmt]}"
    deployed = Deployed(model, transform).eval()
    example = torch.rand(2, *dataset.input_shape)
    with warnings.catch_warnings(), portable():     # plain aten ops: the file runs without visionnets
        warnings.simplefilter("ignore")
        if fmt == "onnx":
            require("onnxscript", "export")          # the ONNX exporter's dependency
            dynamic = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
            program = torch.onnx.export(deployed, (example,), dynamo=True, dynamic_shapes=dynamic,
                                        input_names=["input"], output_names=["scores"], verbose=False)
            atomic_write(out, lambda tmp: program.save(tmp))
        else:
            traced = torch.jit.trace(deployed, example)
            atomic_write(out, lambda tmp: traced.save(tmp))
    about = describe(dataset, fmt, dynamic_batch, run_dir)
    atomic_write_text(out.with_suffix(out.suffix + ".json"), json.dumps(about, indent=1))
    return out, about
