"""Predict with a trained run: labels and probabilities for new images, folders of images or arrays.

    visionnets predict RUN_DIR photo.png more/ --json
    visionnets predict RUN_DIR inputs.npz --csv > predictions.csv

Images are decoded as the model takes them (one channel or three, resized to its input size,
scaled to [0, 1]) and prepared as the training data were (the run's fitted transforms); the
training data are not loaded. The default output is one line per input: name, label, probability.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a directory written by `visionnets train`")
    p.add_argument("inputs", nargs="+", help="image files, folders of images, .npz (key x) or .npy arrays")
    p.add_argument("--which", default="best", choices=["best", "last"], help="which checkpoint")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="one JSON list: name, label, probabilities")
    g.add_argument("--csv", action="store_true", help="CSV: name, label, then a probability per class")


def run(args: argparse.Namespace) -> int:
    from visionnets import api
    from visionnets.data.user import read_inputs
    from visionnets.train.rundir import RunDir

    dataset, _ = RunDir.open(args.run_dir).inputs()
    names, x = read_inputs(args.inputs, dataset.input_shape)
    result = api.predict(args.run_dir, x, which=args.which)
    rows = []
    if "labels" in result:                          # a classifier
        cls = result["class_names"]
        for i, name in enumerate(names):
            probs = result["probabilities"][i].tolist()
            rows.append({"input": name, "label": cls[int(result["labels"][i])],
                         "probabilities": dict(zip(cls, [round(p, 6) for p in probs]))})
    elif "scores" in result:                        # a regression
        rows = [{"input": n, "prediction": result["scores"][i].tolist()} for i, n in enumerate(names)]
    else:                                           # several tasks
        for i, name in enumerate(names):
            rows.append({"input": name, **{f"label_{task}": r["class_names"][int(r["labels"][i])]
                                           for task, r in result.items()}})
    if args.json:
        print(json.dumps(rows, indent=1))
    elif args.csv:
        keys = list(rows[0]) if rows else []
        w = csv.writer(sys.stdout)
        prob_keys = list(rows[0]["probabilities"]) if rows and "probabilities" in rows[0] else []
        w.writerow([k for k in keys if k != "probabilities"] + prob_keys)
        for r in rows:
            w.writerow([r[k] for k in keys if k != "probabilities"] + [r["probabilities"][c] for c in prob_keys])
    else:
        for r in rows:
            best = f" {r['probabilities'][r['label']]:.4f}" if "probabilities" in r else ""
            print(r["input"], *(v for k, v in r.items() if k not in ("input", "probabilities")), best.strip())
    return 0
