"""The tutorial's Extensions, measured: semi-supervised, multi-task and multi-modal learning.

Each experiment trains the bundled recipe and its comparison for several seeds (mean and
spread), and writes ``benchmarks/results/extensions_<experiment>.json`` (rows are kept across
invocations, so experiments can be run one at a time):

- ``semisup_mnist``: ``mnist_semisup100`` (100 labels, 10 per class, and every image without
  its label) against the same net and budget trained on the 100 labeled images alone
  (``objective: supervised``, with the same translations as augmentation);
- ``semisup_cifar``: ``cifar10_semisup4000`` (4,000 labels of the lossless CIFAR-10, 400 per
  class) against its supervised twin alike (translations and flips as augmentation);
- ``multitask_multimnist`` / ``multitask_faces``: the shared trunk (``multimnist_multitask``,
  ``faces_multitask``) against one net per task, each given half the epochs (the same total budget);
- ``multimodal_avmnist``: ``avmnist_multimodal``: test error from both modalities, from each
  alone (the other missing at test time), and cross-modal learning: a linear classifier
  (logistic regression) trained on the codes of one modality and tested on the codes of the other.

    python benchmarks/extensions.py semisup_mnist [--seeds 0 1 2] [--set train.epochs=2] [--data-dir DIR]
    python benchmarks/extensions.py semisup_cifar --seeds 0 --set train.epochs=24 --tag 24epochs   # a longer budget
    python benchmarks/extensions.py semisup_cifar --arms semi-supervised   # after a change the twin does not see
    python benchmarks/extensions.py multimodal_avmnist --seeds 0 --figures docs/images   # + README figure
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from _common import RESULTS, data_dir, table, write_json
from visionnets import api


def train(recipe: str, overrides: list[str], root: str, out: Path) -> tuple[api.RunResult, float]:
    t0 = time.perf_counter()
    r = api.train(recipe, overrides, data_dir=root, out=out, progress=False, figures=False)
    return r, time.perf_counter() - t0


def pct(v):
    return None if v is None else round(100 * v, 3)


def semisup(recipe: str, supervised_augment: str, seed: int, root: str, tmp: Path, extra: list[str]) -> list[dict]:
    """The semi-supervised recipe against the same net, steps and labeled examples per step with
    the supervised loss alone (its unlabeled images pass through the net but carry no loss), given
    the consistency cost's own perturbations (``supervised_augment``) as augmentation."""
    rows = []
    for arm, overrides in (("semi-supervised", []),
                           ("supervised only", ["objective={name: supervised, loss: cross_entropy}",
                                                f"data.augment={supervised_augment}"])):
        if ARMS and arm not in ARMS:
            continue
        r, wall = train(recipe, [f"seed={seed}", *overrides, *extra], root, tmp / f"{arm}-{seed}")
        rows.append({"arm": arm, "seed": seed, "test_error_pct": pct(r.history[-1]["test_error"]),
                     "labels": int((r.dataset.train.y >= 0).sum()), "epochs": r.history[-1]["epoch"],
                     "wall_s": round(wall, 1)})
    return rows


FIGURES: Path | None = None   # --figures DIR: the first seed's pictures go there (README)
ARMS: list[str] = []           # --arms: run only these arms of a comparison (the others' rows are kept)


def multitask(recipe: str, seed: int, root: str, tmp: Path, extra: list[str]) -> list[dict]:
    from visionnets.recipes import load_recipe

    rec = load_recipe(recipe, extra)
    tasks = list(rec.objective.options["tasks"])
    half = max(1, rec.train.epochs // 2)
    arms = [("shared trunk", [])] + [(f"{t} alone", [f"objective.options.tasks={{{t}: {{weight: 1.0}}}}",
                                                     f"train.epochs={half}"]) for t in tasks]
    rows = []
    for arm, overrides in arms:
        r, wall = train(recipe, [f"seed={seed}", *extra, *overrides], root, tmp / f"{arm}-{seed}".replace(" ", "_"))
        last = r.history[-1]
        if FIGURES is not None and arm == "shared trunk":
            from visionnets.viz.curves import plot_task_curves

            print("wrote", plot_task_curves(r.history, FIGURES / f"{recipe}_task_curves.png",
                                            title=f"{recipe}: per-task test error, shared trunk"), file=sys.stderr)
        rows.append({"arm": arm, "seed": seed, "epochs": last["epoch"], "wall_s": round(wall, 1),
                     **{f"test_error_{t}_pct": pct(last.get(f"test_error_{t}")) for t in tasks}})
    return rows


@torch.no_grad()
def codes(model, split, modality: str) -> torch.Tensor:
    """The shared codes of ``split`` inferred from ``modality`` alone."""
    model.eval()
    data = split.fields()[modality]
    return torch.cat([model.encode({modality: data[i:i + 1000]}) for i in range(0, len(data), 1000)])


def multimodal_avmnist(seed: int, root: str, tmp: Path, extra: list[str]) -> list[dict]:
    from sklearn.linear_model import LogisticRegression

    r, wall = train("avmnist_multimodal", [f"seed={seed}", *extra], root, tmp / f"av-{seed}")
    last = r.history[-1]
    row = {"arm": "bimodal", "seed": seed, "epochs": last["epoch"], "wall_s": round(wall, 1),
           "test_error_both_pct": pct(last["test_error"]), "test_error_image_only_pct": pct(last["test_error_only_x"]),
           "test_error_audio_only_pct": pct(last["test_error_only_audio"])}
    model, ds = r.model, r.dataset
    if FIGURES is not None:
        from visionnets.viz.multimodal import plot_cross_modal

        print("wrote", plot_cross_modal(model, ds.test, FIGURES / "avmnist_cross_modal.png"), file=sys.stderr)
    for train_m, test_m in (("x", "audio"), ("audio", "x")):
        clf = LogisticRegression(max_iter=500).fit(codes(model, ds.train, train_m).numpy(), ds.train.y.numpy())
        err = 1 - clf.score(codes(model, ds.test, test_m).numpy(), ds.test.y.numpy())
        row[f"cross_modal_{train_m}_to_{test_m}_error_pct"] = pct(err)
    return [row]


EXPERIMENTS = {
    "semisup_mnist": lambda s, r, t, e: semisup("mnist_semisup100", "[{name: translate, max_shift: 2}]", s, r, t, e),
    "semisup_cifar": lambda s, r, t, e: semisup("cifar10_semisup4000", "[{name: translate, max_shift: 2}, hflip]",
                                                s, r, t, e),
    "multitask_multimnist": lambda s, r, t, e: multitask("multimnist_multitask", s, r, t, e),
    "multitask_faces": lambda s, r, t, e: multitask("faces_multitask", s, r, t, e),
    "multimodal_avmnist": multimodal_avmnist,
}


def merge_rows(rows: list[dict], new: list[dict]) -> list[dict]:
    """``rows`` with each new row in the place of the old one of its seed and arm (else appended)."""
    index = {(n["seed"], n["arm"]): n for n in new}
    out = [index.pop((r["seed"], r["arm"]), r) for r in rows]
    return out + [n for n in new if (n["seed"], n["arm"]) in index]


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and spread (min, max) of every number per arm, over the seeds."""
    out = []
    for arm in dict.fromkeys(r["arm"] for r in rows):
        mine = [r for r in rows if r["arm"] == arm]
        s = {"arm": arm, "seeds": len(mine)}
        for key in mine[0]:
            vals = [r[key] for r in mine if isinstance(r.get(key), (int, float))]
            if key not in ("seed", "arm") and vals and len(vals) == len(mine):
                s[key] = round(statistics.mean(vals), 3)
                if key.endswith("_pct"):
                    s[key.replace("_pct", "_range")] = f"{min(vals):.2f}-{max(vals):.2f}"
        out.append(s)
    return out


def _cell(s: dict, key: str) -> str:
    """'mean (min-max)' of a summary's ``key`` (a percentage), or an em dash."""
    if key not in s:
        return "—"
    return f"{s[key]:.2f} ({s[key.replace('_pct', '_range')].replace('-', '–')})"


def _label(key: str) -> str:
    """test_error_left_pct -> 'left'; test_error_pct -> 'all'; cross_modal_x_to_audio_error_pct -> 'cross-modal x → audio'."""
    key = key.removesuffix("_pct")
    if key.startswith("cross_modal_"):
        return "cross-modal " + key.removeprefix("cross_modal_").removesuffix("_error").replace("_to_", " → ")
    return key.removeprefix("test_error").strip("_").replace("_", " ") or "all"


README_LONGER = {"semisup_cifar": "48epochs"}   # tagged runs that the README's table also shows


def readme_table() -> str:
    """The README's table, from the committed JSON of every experiment run so far."""
    lines = ["| experiment | arm | seeds | test error (%): mean (min–max) | wall time per run (s) |",
             "|---|---|---|---|---|"]
    for exp in EXPERIMENTS:
        for tag in ["", *([README_LONGER[exp]] if exp in README_LONGER else [])]:
            path = RESULTS / (f"extensions_{exp}_{tag}.json" if tag else f"extensions_{exp}.json")
            if not path.exists():
                continue
            name = f"{exp} ({tag.replace('epochs', ' epochs')})" if tag else exp
            for s in json.loads(path.read_text())["summary"]:
                errors = [f"{_label(k)}: {_cell(s, k)}" for k in s
                          if k.startswith(("test_error", "cross_modal")) and k.endswith("_pct")]
                lines.append(f"| {name} | {s['arm']} | {s['seeds']} | {'; '.join(errors)} | "
                             f"{round(s.get('wall_s', 0))} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    if argv is None and sys.argv[1:] == ["--readme"]:
        print(readme_table())
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] + " (--readme: print the README's table)")
    ap.add_argument("experiment", choices=sorted(EXPERIMENTS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="a recipe override for every run")
    ap.add_argument("--tag", default="with_overrides",
                    help="with --set: write results/extensions_<experiment>_<tag>.json (e.g. 24epochs)")
    ap.add_argument("--arms", nargs="+", default=[],
                    help="run only these arms (e.g. 'semi-supervised' after a change that leaves the "
                         "supervised twin as it was); the JSON keeps the other arms' rows")
    ap.add_argument("--data-dir")
    ap.add_argument("--figures", type=Path, help="save the first seed's figures (task curves, cross-modal "
                                                 "reconstructions) in this folder, e.g. docs/images")
    args = ap.parse_args(argv)
    # runs with overrides (quick looks) never mix their rows into the committed results
    name = f"extensions_{args.experiment}" + (f"_{args.tag}" if args.overrides else "")
    prev = RESULTS / f"{name}.json"
    rows = json.loads(prev.read_text())["rows"] if prev.exists() else []
    global FIGURES, ARMS
    ARMS = args.arms
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            FIGURES = args.figures if seed == args.seeds[0] else None
            new = EXPERIMENTS[args.experiment](seed, data_dir(args.data_dir), Path(tmp), args.overrides)
            rows = merge_rows(rows, new)
            summary = summarize(rows)
            print(table(summary, list(summary[0])), file=sys.stderr, flush=True)
            write_json(name, {"experiment": args.experiment, "overrides": args.overrides, "rows": rows,
                              "summary": summary})
    print(f"wrote {RESULTS / (name + '.json')}")


if __name__ == "__main__":
    main()
