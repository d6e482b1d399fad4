"""The tutorial's MNIST table on full MNIST, every row measured here.

    flock /tmp/vn-heavy.lock .venv/bin/python benchmarks/compare_mnist.py [--data-dir DIR]
        [--runs RUN_DIR ...] [--resume] [--methods NAME ...]

    # add (or refresh) our nets without retraining the baselines, and refresh docs/compare.md:
    flock /tmp/vn-heavy.lock .venv/bin/python benchmarks/compare_mnist.py --resume \\
        --find-runs runs/bench --pretrain-json benchmarks/results/mnist_pretrain.json \\
        --distributed-json benchmarks/results/distributed.json --docs docs/compare.md

Trains every scikit-learn baseline on the 60,000 training images, tests on the 10,000 test
images, measures our nets from finished run directories (``--runs``; they are not retrained
here), and writes benchmarks/results/compare_mnist.json and compare_mnist.png. The JSON is
rewritten after each row, and ``--resume`` keeps the rows already there (so a later run can
add the nets without retraining the baselines). Timings are wall-clock on this machine; a
fixed reference workload (a float32 matrix product) is timed in the same process at the start
and the end so the times can be read as ratios (``train_ratio`` = training time / reference).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np

from visionnets.baselines import BASELINES
from visionnets.baselines.compare import (TUTORIAL_MNIST, TUTORIAL_NETS, TWINS, Row, baseline_protocol, load_arrays,
                                          parallel_speedup, row_from_run, run_baseline, subsample_rows)
from visionnets.baselines.table import properties, render_properties, render_table, report

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
STEM = "compare_mnist"

# Per-method settings for full MNIST on 2 shared cores (each documented in docs/compare.md):
# the factories' defaults, except where the time budget of this benchmark asks for less.
OPTIONS = {                         # cheapest first
    "linear": {},
    "knn": {"k": 3},
    "rbm_logistic": {},
    "boosted_stumps": {"n_rounds": 5000},       # AdaBoost.MH: 0.063 s a round on full MNIST, 2 cores
    "haar_stumps": {"n_features": 2000, "n_rounds": 1000},
    "product_stumps": {"n_rounds": 300, "product_size": 3},   # 3-4 histogram passes a round
    "boosted_trees": {"max_iter": 100},
    "svm_rbf": {},
}
MAX_TRAIN: dict[str, int] = {}      # a method -> cap on its training images (none: all 60,000)
# The "Easy to parallelize" job (fit + predict with 1, then 2 threads, on --parallel images):
# the same settings, fewer boosting rounds (the time per round is what parallelizes).
PARALLEL_OPTIONS = {"boosted_stumps": {"n_rounds": 50}, "haar_stumps": {"n_features": 2000, "n_rounds": 50},
                    "product_stumps": {"n_rounds": 20, "product_size": 3}}


def reference_seconds(repeats: int = 5) -> float:
    """Best of ``repeats`` timings of a fixed workload: a 1024x1024 float32 matrix product, 10 times."""
    a = np.random.default_rng(0).random((1024, 1024), dtype=np.float32)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(10):
            a @ a
        best = min(best, time.perf_counter() - t0)
    return best


def finished_runs(root: Path) -> list[Path]:
    """The newest finished run directory under ``root`` of each recipe in TUTORIAL_NETS or TWINS.

    A run is finished when its metrics.jsonl reaches the recipe's ``train.epochs`` (or it stopped
    early: best_epoch recorded with patience exhausted) and its last checkpoint exists.
    """
    import yaml

    newest: dict[str, tuple[float, Path]] = {}
    for recipe_path in root.glob("*/recipe.yaml"):
        run = recipe_path.parent
        rec = yaml.safe_load(recipe_path.read_text()) or {}
        name = rec.get("name")
        metrics = run / "metrics.jsonl"
        if name not in TUTORIAL_NETS and name not in TWINS or not metrics.is_file():
            continue
        lines = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        epochs = (rec.get("train") or {}).get("epochs")
        patience = ((rec.get("train") or {}).get("early_stopping") or {}).get("patience")
        stopped = bool(lines) and patience is not None and lines[-1].get("bad_epochs", 0) >= patience
        done = bool(lines) and (lines[-1].get("epoch") == epochs or stopped)
        if done and (run / "checkpoints" / "last.safetensors").is_file():
            mtime = metrics.stat().st_mtime
            if name not in newest or mtime > newest[name][0]:
                newest[name] = (mtime, run)
    return [run for _, run in sorted(newest.values())]


def rows_from_pretrain_json(path: Path, data_dir: str | None) -> list[Row]:
    """Rows for the 4-layer nets of benchmarks/mnist_pretrain.py, read from its JSON.

    That benchmark trains in a temporary directory and keeps no weights, so: the error and the
    training time (pre-training included) are the ones it measured on this machine; the number
    of parameters is counted on the recipe's model, built here; the test time is measured here
    on that architecture (the time of a forward pass does not depend on the weights' values).
    """
    import torch

    from visionnets.models import count_parameters
    from visionnets.objectives import build_objective
    from visionnets.recipes import load_recipe
    from visionnets.train.setup import build_data, build_model_for
    from visionnets.train.trainer import evaluate_model

    data = json.loads(path.read_text())
    rows = []
    seeds: dict[str, list[dict]] = {}                  # one row per recipe: the mean over its seeds
    for r in data["rows"]:
        seeds.setdefault(r["recipe"]["name"], []).append(r)
    for runs in seeds.values():
        r = runs[0]
        each = ", ".join(f"{x['test_error_percent']:.2f}" for x in runs)
        rec = load_recipe(r["recipe"])
        dataset = build_data(rec, data_dir)
        model = build_model_for(rec, dataset)
        objective = build_objective(rec.objective.model_dump())
        with torch.no_grad():
            t0 = time.perf_counter()
            result = evaluate_model(model, objective, dataset.test, rec.train.eval_batch_size, "cpu")
            test_s = time.perf_counter() - t0
            for _ in range(2):                    # best of 3, as for the runs
                t0 = time.perf_counter()
                evaluate_model(model, objective, dataset.test, rec.train.eval_batch_size, "cpu")
                test_s = min(test_s, time.perf_counter() - t0)
        name = rec.name
        tutorial_name = TUTORIAL_NETS.get(name)
        rows.append(Row(
            method=name, label=f"{name} (visionnets)", kind="net", tutorial_name=tutorial_name,
            tutorial_error=TUTORIAL_MNIST.get(tutorial_name),
            error=float(np.mean([x["test_error_percent"] for x in runs])),
            train_seconds=float(np.mean([x["total_seconds"] for x in runs])), test_seconds_per_1000=test_s * 1000 / result["n"],
            n_parameters=count_parameters(model), n_train=len(dataset.train), n_test=int(result["n"]),
            source=str(path.relative_to(HERE.parent) if path.is_relative_to(HERE.parent) else path),
            params={"epochs": r["epochs"], "model": rec.model, "pretrain": r["recipe"].get("pretrain")},
            notes=f"mean of {len(runs)} seeds ({each} %); "
                  "error and training time from benchmarks/mnist_pretrain.py (weights not kept); "
                  "test time measured here on the same architecture",
            protocol=(f"all {len(dataset.train):,} training images, no validation; the last epoch ({r['epochs']})"
                      + ("; layers pretrained without labels first" if rec.pretrain is not None else "")),
            extra={"pretrained": rec.pretrain is not None, "pretrain_seconds": r.get("pretrain_seconds")}))
    return rows


def update_docs(path: Path, tables: str) -> None:
    """Replace the block between ``<!-- RESULTS -->`` and ``<!-- /RESULTS -->`` in ``path`` with ``tables``."""
    start, end = "<!-- RESULTS -->", "<!-- /RESULTS -->"
    doc = path.read_text()
    if start not in doc or end not in doc:
        raise SystemExit(f"{path}: no {start} ... {end} block to fill")
    i, j = doc.index(start), doc.index(end) + len(end)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(doc[:i] + f"{start}\n\n{tables}\n\n{end}" + doc[j:])
    os.replace(tmp, path)


def parallel_speedups(path: Path) -> str:
    """The "Easy to parallelize" cell of our nets, from benchmarks/distributed.py's JSON.

    Training throughput (examples/s) of each parallel configuration over one Downpour replica.
    """
    data = json.loads(path.read_text())
    one = [r for r in data["rows"] if r["executor"] == "downpour" and r["parallel"] == 1]
    if not one:
        raise SystemExit(f"{path}: no one-replica Downpour row to measure speed-ups against")
    base = one[0]["throughput_ex_s"]
    parts = [f"{r['config']}: {r['throughput_ex_s'] / base:.2f}x ({r['test_error_pct']:.2f}% error)"
             for r in sorted(data["rows"], key=lambda r: (r["executor"], r["parallel"])) if r["parallel"] > 1]
    return (f"training throughput over 1 Downpour replica on {data['machine']['cpu_count']} cores: "
            + "; ".join(parts) + f" ({path.name})")


def _default_data_dir() -> str | None:
    env = os.environ.get("VISIONNETS_DATA")
    if env:
        return env
    shared = HERE.parent.parent / "shared" / "data"
    return str(shared) if shared.is_dir() else None


def replace_row(rows: list[Row], row: Row) -> list[Row]:
    """``rows`` with ``row`` where the row of the same method was (a refreshed row keeps its
    place in the table), or at the end when the method is new."""
    at = [r.method for r in rows]
    if row.method not in at:
        return rows + [row]
    i = at.index(row.method)
    return rows[:i] + [row] + rows[i + 1:]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--data-dir", default=_default_data_dir())
    p.add_argument("--methods", nargs="+", default=list(OPTIONS), choices=BASELINES.names())
    p.add_argument("--runs", nargs="+", default=[], help="finished MNIST run directories of our nets")
    p.add_argument("--find-runs", metavar="DIR", default=None,
                   help="also measure the newest finished run of each tutorial recipe under DIR "
                        "(e.g. runs/bench, where benchmarks/mnist_supervised.py writes them)")
    p.add_argument("--pretrain-json", metavar="PATH", default=None,
                   help="also add the 4-layer nets measured by benchmarks/mnist_pretrain.py "
                        "(e.g. benchmarks/results/mnist_pretrain.json)")
    p.add_argument("--distributed-json", metavar="PATH", default=None,
                   help="fill our nets' 'Easy to parallelize' from benchmarks/distributed.py's JSON "
                        "(e.g. benchmarks/results/distributed.json)")
    p.add_argument("--docs", metavar="MD", default=None,
                   help="rewrite the tables between <!-- RESULTS --> markers of MD (e.g. docs/compare.md)")
    p.add_argument("--resume", action="store_true", help="keep the rows already in the JSON")
    p.add_argument("--rows-json", nargs="+", default=[], metavar="PATH",
                   help="take these methods' rows from a `visionnets compare` JSON instead of training them "
                        "(e.g. benchmarks/results/boosting_mnist.json, AdaBoost.MH's 5,000 rounds)")
    p.add_argument("--threads", type=int, default=None, help="cap BLAS/OpenMP threads (default: all)")
    p.add_argument("--parallel", type=int, default=10000, metavar="N",
                   help="time each baseline's fit + predict on N training images with 1 and 2 threads "
                        "(the 'Easy to parallelize' cells; 0: skip)")
    p.add_argument("--parallel-repeats", type=int, default=3, metavar="R",
                   help="alternating timings of each thread count; the best is kept (default 3)")
    p.add_argument("--remeasure-parallel", action="store_true",
                   help="with --resume: time the kept baselines' 'Easy to parallelize' job again")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--dataset", default="mnist", choices=["mnist", "digits"],
                   help="digits: a smoke test of this script in seconds")
    args = p.parse_args(argv)

    out = Path(args.out)
    stem = STEM if args.dataset == "mnist" else f"compare_{args.dataset}"
    path = out / f"{stem}.json"
    rows: list[Row] = []
    ref = [reference_seconds()]
    from threadpoolctl import threadpool_limits

    _, train, test = load_arrays(args.dataset, args.data_dir)
    names = {f.name for f in fields(Row)}
    if args.resume and path.is_file():
        old = json.loads(path.read_text())
        rows = [Row(**{k: v for k, v in r.items() if k in names}) for r in old["rows"]]
        ref = old.get("reference_seconds", []) + ref
    for extra_json in args.rows_json:                  # baselines measured by `visionnets compare` elsewhere
        got = json.loads(Path(extra_json).read_text())
        if got.get("dataset") != args.dataset:
            raise SystemExit(f"{extra_json}: rows measured on {got.get('dataset')!r}; this table is for {args.dataset!r}")
        for r in got["rows"]:
            if r["kind"] == "baseline" and r["method"] in args.methods and r["method"] not in {x.method for x in rows}:
                row = Row(**{k: v for k, v in r.items() if k in names})
                row.source = f"{Path(extra_json).name}: {row.source}"
                rows.append(row)
    if args.remeasure_parallel:
        for r in rows:
            r.extra.pop("parallel", None)
    for r in rows:                                     # rows measured before the protocol and uncertainty columns
        if r.kind == "baseline" and not r.protocol:
            r.protocol = baseline_protocol(r.n_train, len(train[0]))
        if r.kind == "baseline" and "uncertainty" not in r.extra and not BASELINES.build(r.method, {}).gives_probabilities:
            r.extra["scores_only"] = True
    done = {r.method for r in rows}
    measured = {}
    if args.distributed_json:
        measured["Deep nets"] = {"Easy to parallelize": parallel_speedups(Path(args.distributed_json))}

    def save() -> str:
        meta = {"dataset": args.dataset, "benchmark": "benchmarks/compare_mnist.py",
                "reference": "10 float32 1024x1024 matrix products (best of 5), seconds",
                "reference_seconds": ref, "threads": args.threads,
                "options": OPTIONS, "max_train": MAX_TRAIN, "parallel_options": PARALLEL_OPTIONS,
                "parallel_images": args.parallel, "parallel_repeats": args.parallel_repeats}
        for r in rows:
            if r.train_seconds is not None:
                r.extra["train_ratio"] = r.train_seconds / min(ref)
        return report(rows, out, stem=stem, meta=meta, measured=measured)

    for name in args.methods:
        if name in done:
            row = next(r for r in rows if r.method == name)
            if args.parallel and "parallel" not in row.extra:
                X, y = subsample_rows(*train, MAX_TRAIN.get(name), seed=0)
                row.extra["parallel"] = parallel_speedup(name, (X, y), test, PARALLEL_OPTIONS.get(name, OPTIONS[name]),
                                                         n_train=args.parallel, repeats=args.parallel_repeats)
                print(f"{name}: {row.extra['parallel']['speedup']:.2f}x with 2 threads", file=sys.stderr, flush=True)
                save()
            print(f"{name}: kept ({row.source})", file=sys.stderr)
            continue
        X, y = subsample_rows(*train, MAX_TRAIN.get(name), seed=0)
        note = f"trained on {len(X):,} of {len(train[0]):,} training images" if len(X) < len(train[0]) else ""
        print(f"{name}: training on {len(X):,} images with {OPTIONS[name]}", file=sys.stderr, flush=True)
        before = reference_seconds(repeats=3)
        with threadpool_limits(args.threads):
            row = run_baseline(name, (X, y), test, OPTIONS[name], note=note, n_available=len(train[0]))
        row.extra["reference_seconds_before"] = before
        row.extra["threads"] = args.threads
        if args.parallel:
            row.extra["parallel"] = parallel_speedup(name, (X, y), test, PARALLEL_OPTIONS.get(name, OPTIONS[name]),
                                                     n_train=args.parallel, repeats=args.parallel_repeats)
        if args.dataset != "mnist":
            row.tutorial_error = None            # the tutorial's numbers are for MNIST
        rows.append(row)
        print(f"{name}: error {row.error:.2f}% train {row.train_seconds:.1f}s "
              f"test {1000 * row.test_seconds_per_1000:.1f} ms/1000"
              + (f"; {row.extra['parallel']['speedup']:.2f}x with 2 threads" if args.parallel else ""),
              file=sys.stderr, flush=True)
        save()
    run_dirs = [Path(r) for r in args.runs]
    if args.find_runs:
        run_dirs += [r for r in finished_runs(Path(args.find_runs)) if r not in run_dirs]
    for run_dir in run_dirs:
        before = reference_seconds(repeats=3)
        row = row_from_run(run_dir, args.dataset, args.data_dir, repeats=3)
        row.extra["reference_seconds_before"] = before
        rows = replace_row(rows, row)
        print(f"{row.method}: error {row.error:.2f}% (from {run_dir})", file=sys.stderr, flush=True)
        save()
    if args.pretrain_json:
        for row in rows_from_pretrain_json(Path(args.pretrain_json), args.data_dir):
            rows = replace_row(rows, row)
            print(f"{row.method}: error {row.error:.2f}% (from {args.pretrain_json})", file=sys.stderr, flush=True)
        save()
    ref.append(reference_seconds())
    save()
    tables = render_table(rows) + "\n\n" + render_properties(properties(rows, measured))
    print(tables)
    if args.docs:
        update_docs(Path(args.docs), tables)
    print(f"\nreference workload: {min(ref):.3f} s (runs: {', '.join(f'{s:.3f}' for s in ref)})")
    print(f"wrote {path} and {out / (stem + '.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
