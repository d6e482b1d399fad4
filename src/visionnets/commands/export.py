"""Export a trained run: an ONNX or TorchScript file (the run's input transforms inside) and a JSON
file describing its input and output.

    visionnets export RUN_DIR                       # RUN_DIR/model.onnx, any batch size
    visionnets export RUN_DIR --format torchscript --out model.pt

The exported model takes raw inputs (images (N, C, H, W) in [0, 1]) and gives class scores.
ONNX needs the ``export`` extra: ``pip install 'visionnets[export]'``.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a directory written by `visionnets train`")
    p.add_argument("--format", default="onnx", choices=["onnx", "torchscript"])
    p.add_argument("--out", help="the file to write (default RUN_DIR/model.onnx or model.pt)")
    p.add_argument("--static-batch", action="store_true", help="a fixed batch of 1 instead of any batch size")
    p.add_argument("--which", default="best", choices=["best", "last"], help="which checkpoint")


def run(args: argparse.Namespace) -> int:
    from visionnets.deploy import export_model

    path, about = export_model(args.run_dir, args.format, args.out, dynamic_batch=not args.static_batch,
                               which=args.which)
    print(f"wrote {path} (input {about['input']['shape']}: {about['input']['meaning']}) and {path}.json")
    return 0
