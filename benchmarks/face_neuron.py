"""Does a neuron of a network trained without labels respond to faces? (Le et al., ICML 2012)

The ``le2012_faces`` recipe: the le2012 network (scaled) learns, without labels, all stages
jointly (``pretrain: {method: stages}``: each stage reconstructs its own input from a sparse
L2-pooled code), on ``rare_faces`` images of which ``face_fraction`` are faces. Then every unit
of the top stage (each map at each location: the network is locally connected) is scored on a
test set of faces of people never seen in training against non-faces, by its best of 20
thresholds (evenly spaced between its smallest and largest activation) — the paper's protocol —
and, more strictly, with unit and threshold chosen on one half of the test set and the accuracy
measured on the other half (``*_heldout``). Against:

- the same network with its random initial weights (``random_weights_accuracy``);
- the best single pixel and the best first-stage unit, scored alike;
- a logistic regression on the pixels trained *with* the training labels (upper reference);
- a logistic regression on low-level statistics (mean, variance, high-frequency energy),
  trained with labels: the sanity check that faces and non-faces are not told apart by trivial
  cues (it must stay far below the best unit).

Accuracies are on the balanced test set (as many non-faces as faces) and, for the best unit, on
the paper's ratio (13,026 faces in 37,000). The best unit's top test images and its optimal
input (norm of an average test image) are saved as pictures (``--figures DIR``).

    python benchmarks/face_neuron.py --seeds 0 1 2 [--fractions 0.01 0.03 0.1] [--figures docs/images]
    python benchmarks/face_neuron.py --seeds 0 --set pretrain.epochs=1 --set data.options.n_train=2000  # quick
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from _common import RESULTS, data_dir, table, write_json
from visionnets.data.rarefaces import balanced_test
from visionnets.recipes import load_recipe
from visionnets.train.setup import build_data, build_model_for
from visionnets.unsupervised.stages import pretrain_stages

THRESHOLDS = 20


def truncated(model: nn.Module, stage: str, normalized: bool = True) -> nn.Module:
    """The model up to (and including) ``stage``, then flattened: one output per unit. With
    ``normalized=False`` the stage ends at its pooling, before its LCN across maps."""
    parts = OrderedDict()
    for name, m in model.named_children():
        parts[name] = m if normalized or name != stage else nn.Sequential(m.filter, m.pool)
        if name == stage:
            break
    parts["units"] = nn.Flatten()
    return nn.Sequential(parts).eval()


@torch.no_grad()
def unit_outputs(model: nn.Module, stage: str, x: torch.Tensor, batch: int = 500, normalized: bool = True) -> torch.Tensor:
    net = truncated(model, stage, normalized)
    return torch.cat([net(x[i:i + batch]) for i in range(0, len(x), batch)])


def threshold_accuracy(acts: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per unit (column of ``acts``): the best accuracy of "face if activation > t" over 20
    thresholds evenly spaced between the unit's min and max, and that threshold."""
    lo, hi = acts.min(0).values, acts.max(0).values
    ts = lo + (hi - lo) * torch.linspace(0, 1, THRESHOLDS + 2)[1:-1, None]      # (20, units), interior
    face = (y == 1)[:, None]
    best_acc = torch.zeros(acts.shape[1])
    best_t = torch.zeros(acts.shape[1])
    for t in ts:
        acc = ((acts > t) == face).float().mean(0)
        better = acc > best_acc
        best_acc = torch.where(better, acc, best_acc)
        best_t = torch.where(better, t, best_t)
    return best_acc, best_t


def score(acts: torch.Tensor, y: torch.Tensor, seed: int) -> dict:
    """Best unit by the paper's protocol, and with unit and threshold chosen on half the test set;
    ``every``: each unit's accuracy, best first."""
    acc, _ = threshold_accuracy(acts, y)
    best = int(acc.argmax())
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=g)
    sel, ev = perm[: len(y) // 2], perm[len(y) // 2:]
    acc_sel, t_sel = threshold_accuracy(acts[sel], y[sel])
    u = int(acc_sel.argmax())
    held = float(((acts[ev, u] > t_sel[u]) == (y[ev] == 1)).float().mean())
    return {"unit": best, "accuracy": float(acc[best]), "heldout": held, "every": acc.sort(descending=True).values}


def low_level_stats(x: torch.Tensor) -> np.ndarray:
    """Mean, variance and high-frequency energy (mean squared Laplacian) of each image."""
    lap = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3)
    hf = torch.nn.functional.conv2d(x, lap).pow(2).flatten(1).mean(1)
    return torch.stack([x.flatten(1).mean(1), x.flatten(1).var(1), hf], 1).numpy()


def logistic_accuracy(train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray, test_y: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))
    return float(clf.fit(train_f, train_y).score(test_f, test_y))


def experiment(seed: int, fraction: float, root: str, overrides: list[str], figures) -> dict:
    rec = load_recipe("le2012_faces", [*overrides, f"seed={seed}", f"data.options.face_fraction={fraction}"])
    torch.manual_seed(seed)
    ds = build_data(rec, root)
    net = build_model_for(rec, ds)
    random_net = copy.deepcopy(net)
    p = rec.pretrain
    t0 = time.perf_counter()
    stats = pretrain_stages(net, ds.train.x, epochs=p.epochs, lr=p.lr, batch_size=p.batch_size, seed=seed,
                            **p.params)
    seconds = time.perf_counter() - t0
    top = [n for n, _ in net.named_children() if n.startswith("stage")][-1]
    test, full = balanced_test(ds.test), ds.test
    y = test.y
    trained = unit_outputs(net, top, test.x)
    best = score(trained, y, seed)
    full_acts = unit_outputs(net, top, full.x)[:, best["unit"]]
    paper_ratio = float(threshold_accuracy(full_acts[:, None], full.y)[0][0])
    row = {
        "seed": seed, "face_fraction": fraction, "n_train": len(ds.train),
        "n_test_faces": int((y == 1).sum()), "n_test_nonfaces": int((y == 0).sum()),
        "best_unit": best["unit"], "best_unit_accuracy": best["accuracy"],
        "best_unit_heldout_accuracy": best["heldout"], "best_unit_paper_ratio_accuracy": paper_ratio,
        "top5_unit_accuracies": [round(float(a), 4) for a in best["every"][:5]],   # is the face one unit or several?
        "units_above_80pct": int((best["every"] > 0.8).sum()),
        "random_weights_accuracy": score(unit_outputs(random_net, top, test.x), y, seed)["accuracy"],
        "best_pixel_accuracy": score(test.x.flatten(1), y, seed)["accuracy"],
        "best_first_stage_accuracy": score(unit_outputs(net, "stage1", test.x), y, seed)["accuracy"],
        "logistic_pixels_accuracy": logistic_accuracy(ds.train.x.flatten(1).numpy(), ds.train.y.numpy(),
                                                      test.x.flatten(1).numpy(), y.numpy()),
        "low_level_stats_accuracy": logistic_accuracy(low_level_stats(ds.train.x), ds.train.y.numpy(),
                                                      low_level_stats(test.x), y.numpy()),
        "pretrain_seconds": round(seconds, 1),
        "final_losses": {s["stage"]: round(s["epochs"][-1]["loss"], 4) for s in stats},
    }
    if figures is not None:
        row["optimal_over_best_test_image"] = round(save_figures(net, top, best["unit"], test, figures, fraction), 2)
    return row


def save_figures(net: nn.Module, top: str, unit: int, test, folder, fraction: float) -> float:
    """The unit's top test images, and its optimal input; returns that input's pooled response
    over the best test image's. The optimal input is sought for the unit's pooled response:
    after the LCN across M maps one unit cannot exceed sqrt(M - 1), a bound any input that makes
    it the largest reaches, so that maximum says nothing. ``blur`` 1 keeps the ascent smooth."""
    from visionnets.viz.optimal import optimal_input, plot_optimal
    from visionnets.viz.top import plot_top

    folder.mkdir(parents=True, exist_ok=True)
    tag = f"face_neuron_{int(round(fraction * 100))}pct"
    print("wrote", plot_top(truncated(net, top), "", unit, test.x, folder / f"{tag}_top.png", k=24), file=sys.stderr)
    pooled = truncated(net, top, normalized=False)
    norm = float(test.x.flatten(1).norm(dim=1).mean())
    best = optimal_input(pooled, "", unit, tuple(test.x.shape[1:]), norm, steps=300, mean_image=test.x.mean(0),
                         start="mean", blur=1.0)
    print("wrote", plot_optimal(best, folder / f"{tag}_optimal.png",
                                title=f"unit {unit} before LCN, ||x|| = {norm:.1f}"), file=sys.stderr)
    return best.activation / float(unit_outputs(net, top, test.x, normalized=False).max(0).values[unit])


def summarize(rows: list[dict]) -> list[dict]:
    out = []
    for frac in sorted({r["face_fraction"] for r in rows}):
        mine = [r for r in rows if r["face_fraction"] == frac]
        s = {"face_fraction": frac, "seeds": len(mine)}
        for key, v in mine[0].items():
            if key.endswith("accuracy"):
                vals = [r[key] for r in mine]
                s[key] = round(statistics.mean(vals), 4)
                s[key.replace("accuracy", "range")] = f"{min(vals):.3f}-{max(vals):.3f}"
        out.append(s)
    return out


def main(argv=None) -> None:
    from pathlib import Path

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.03],
                    help="face fractions of the training images (the paper: about 3 %%)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="a recipe override")
    ap.add_argument("--figures", type=Path, help="the first seed's top images and optimal input go here")
    ap.add_argument("--data-dir")
    args = ap.parse_args(argv)
    name = "face_neuron" + ("_with_overrides" if args.overrides else "")
    prev = RESULTS / f"{name}.json"
    rows = json.loads(prev.read_text())["rows"] if prev.exists() else []
    rec = load_recipe("le2012_faces", args.overrides)              # recorded beside the rows
    for frac in args.fractions:
        for seed in args.seeds:
            row = experiment(seed, frac, data_dir(args.data_dir), args.overrides,
                             args.figures if seed == args.seeds[0] else None)
            rows = [r for r in rows if (r["seed"], r["face_fraction"]) != (seed, frac)] + [row]
            summary = summarize(rows)
            print(table([row], [k for k in row if k != "final_losses"]), file=sys.stderr, flush=True)
            write_json(name, {"recipe": "le2012_faces", "overrides": args.overrides, "thresholds": THRESHOLDS,
                              "model": rec.model,
                              "pretrain": rec.pretrain.model_dump(),
                              "rows": rows, "summary": summary})
    print(table(summary, list(summary[0])))
    print(f"wrote {RESULTS / (name + '.json')}")


if __name__ == "__main__":
    main()
