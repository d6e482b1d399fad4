"""The tutorial's MNIST table and properties table, measured on this machine.

``compare`` trains each scikit-learn baseline, reads (or trains) our nets, and returns one
:class:`Row` per method: the tutorial's error, the error measured here, the training time,
the test time per 1,000 images and the number of parameters. ``report`` writes the rows as
JSON (atomically), a bar chart of measured against tutorial error, and returns the markdown
tables::

    >>> from visionnets.baselines.compare import compare, render_table
    >>> rows = compare("digits", methods=["knn", "linear"])
    >>> [(r.method, r.n_train, r.n_test, r.error < 5) for r in rows]
    [('knn', 1437, 360, True), ('linear', 1437, 360, True)]
    >>> print(render_table(rows).splitlines()[0])
    | method | tutorial error (%) | measured error (%) | training time (s) | test time per 1,000 images (ms) | parameters | training images |

Timings are wall-clock seconds on this machine (``time.perf_counter``) around ``fit`` and
around ``predict`` on the whole test set; the JSON records the machine they ran on.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from visionnets.baselines.base import as_features, as_labels
from visionnets.baselines.methods import BASELINES
from visionnets.errors import CheckpointError, ConfigError, DataError
from visionnets.io import atomic_write

# The tutorial's MNIST table ("Comparison to other methods"; numbers from LeCun's MNIST page).
TUTORIAL_MNIST = {
    "Linear Classifier": 12.0,
    "Boosted stumps": 7.7,
    "Product of boosted stumps": 1.3,
    "Boosted trees": 1.5,
    "Stumps on Haar features": 0.9,
    "K-NN": 5.0,
    "SVM Gaussian kernel": 1.4,
    "2 layer nnet 800 hiddens": 1.6,
    "4 layer nnet (pre-trained)": 1.0,
    "Conv. Net (pre-trained)": 0.6,
}

# Our bundled MNIST recipes and the tutorial row each one reproduces.
TUTORIAL_NETS = {
    "mnist_linear": "Linear Classifier",
    "mnist_logistic": "Linear Classifier",
    "mnist_mlp800": "2 layer nnet 800 hiddens",
    "mnist_mlp4_pretrained": "4 layer nnet (pre-trained)",   # benchmarks/mnist_pretrain.py
    "mnist_convnet": "Conv. Net (pre-trained)",
}
PRETRAINED, FROM_SCRATCH = "_pretrained", "_random"   # a pre-trained net and its twin from random init

FAMILIES = {  # column of the properties table each method belongs to
    "boosted_stumps": "Boosting", "boosted_trees": "Boosting", "rbm_logistic": "Probab. models",
    "knn": "k-NN", "svm_rbf": "SVM", "linear": "Linear", "linear_svm": "Linear",
}
FAMILY_ORDER = ["Deep nets", "Boosting", "Probab. models", "SVM", "k-NN", "Linear"]
DATASETS = ("mnist", "digits")


@dataclass
class Row:
    """One line of the comparison table; errors in percent, times in seconds."""

    method: str                      # baseline name or recipe name
    label: str                       # what the table prints
    kind: str                        # "baseline" or "net"
    tutorial_name: str | None
    tutorial_error: float | None
    error: float | None              # measured test error (%)
    train_seconds: float | None
    test_seconds_per_1000: float | None
    n_parameters: int | None
    n_train: int
    n_test: int
    source: str                      # "trained by compare" or the run directory read
    params: dict = field(default_factory=dict)
    notes: str = ""
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------- data

def _flat(split) -> tuple[np.ndarray, np.ndarray]:
    x = split.x.reshape(len(split.x), -1).numpy()
    return as_features(x, "dataset inputs"), as_labels(split.y.numpy(), len(x), "dataset labels")


def load_arrays(dataset: Any, data_dir: str | Path | None) -> tuple[str, tuple, tuple]:
    """``(name, (X_train, y_train), (X_test, y_test))`` from a dataset name or a Dataset.

    Names go through ``visionnets.data.load_dataset(name, data_dir, val_fraction=0)``.
    """
    if isinstance(dataset, str):
        if dataset not in DATASETS:
            raise ConfigError(f"dataset {dataset!r}: compare knows {', '.join(DATASETS)}")
        from visionnets.data import load_dataset
        dataset = load_dataset(dataset, data_dir, val_fraction=0.0)
    if not getattr(dataset, "is_classification", False):
        raise DataError(f"dataset {getattr(dataset, 'name', dataset)!r}: compare needs a classification dataset")
    return dataset.name, _flat(dataset.train), _flat(dataset.test)


def subsample_rows(X: np.ndarray, y: np.ndarray, n: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows drawn without replacement with a fixed seed (all rows when ``n`` is None)."""
    if n is None or n >= len(X):
        return X, y
    if n < 1:
        raise ConfigError(f"subsample: expected a positive number of training examples, got {n}")
    idx = np.sort(np.random.default_rng(seed).choice(len(X), size=n, replace=False))
    return X[idx], y[idx]


# ---------------------------------------------------------------- baselines

def parse_options(items: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``["svm_rbf.C=10", "knn.k=1"]`` -> ``{"svm_rbf": {"C": 10}, "knn": {"k": 1}}`` (values read as YAML)."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, name = key.partition(".")
        if not sep or not dot or not method or not name:
            raise ConfigError(f"option {item!r}: expected METHOD.KEY=VALUE, e.g. svm_rbf.C=10")
        BASELINES.get(method)
        out.setdefault(method, {})[name] = yaml.safe_load(value)
    return out


def _unlabelled_gain(model, X, y, Xt, yt, n_labelled: int, seed: int) -> dict:
    """Error of a linear classifier on ``n_labelled`` labelled images: on pixels vs on RBM features.

    The RBM inside ``model`` was fitted on every training image without their labels, so the
    difference is what the unlabelled images bought when labels are scarce.
    """
    from sklearn.linear_model import LogisticRegression

    Xl, yl = subsample_rows(X, y, n_labelled, seed + 1)
    rbm = model.estimator.named_steps["rbm"]
    C = model.estimator.named_steps["classifier"].C
    pix = LogisticRegression(C=C, max_iter=1000).fit(Xl, yl)
    feat = LogisticRegression(C=C, max_iter=1000).fit(rbm.transform(Xl), yl)
    e_pix = float(100 * np.mean(pix.predict(Xt) != yt))
    e_rbm = float(100 * np.mean(feat.predict(rbm.transform(Xt)) != yt))
    return {"n_labelled": len(Xl), "n_unlabelled": len(X), "error_pixels": e_pix,
            "error_rbm_features": e_rbm, "gain": e_pix - e_rbm}


def run_baseline(name: str, train: tuple, test: tuple, options: dict | None = None,
                 n_labelled: int = 1000, seed: int = 0, note: str = "") -> Row:
    """Fit the baseline ``name`` on ``train``, time it, and measure it on ``test``."""
    model = BASELINES.build(name, options or {}, where=f"methods.{name}")
    (X, y), (Xt, yt) = train, test
    t0 = time.perf_counter()
    model.fit(X, y)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = model.predict(Xt)
    test_s = time.perf_counter() - t0
    extra = {}
    if name == "rbm_logistic" and n_labelled and n_labelled < len(X):
        extra["unlabelled_gain"] = _unlabelled_gain(model, X, y, Xt, yt, n_labelled, seed)
    return Row(method=name, label=model.label, kind="baseline", tutorial_name=model.tutorial_name,
               tutorial_error=model.tutorial_error, error=float(100 * np.mean(pred != yt)),
               train_seconds=train_s, test_seconds_per_1000=test_s * 1000 / len(Xt),
               n_parameters=model.n_parameters(), n_train=len(X), n_test=len(Xt),
               source="trained by compare", params=model.params, notes=note, extra=extra)


# ---------------------------------------------------------------- our nets

def _read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; expected a finished run directory with metrics.jsonl")
    lines = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise CheckpointError(f"{path}:{i}: not JSON ({exc.msg})") from None
    if not lines:
        raise CheckpointError(f"{path}: empty; expected one JSON object per epoch")
    return lines


def row_from_run(run_dir: str | Path, dataset: str, data_dir: str | Path | None = None,
                 repeats: int = 1) -> Row:
    """A table row for a finished run directory, measured here.

    The run's model (its best checkpoint) is loaded with ``visionnets.api.load_run`` and
    evaluated on the whole test split: that gives the error and the test time (the best of
    ``repeats`` evaluations, which tames the noise of a shared machine). The training
    time is the sum of the epochs' ``train_seconds`` in metrics.jsonl (plus the pre-training
    time when pretrain.json records one).
    """
    import yaml

    from visionnets import api

    run_dir = Path(run_dir)
    recipe_path = run_dir / "recipe.yaml"
    if not recipe_path.is_file():
        raise CheckpointError(f"{recipe_path}: missing; expected a run directory written by visionnets train")
    recipe = yaml.safe_load(recipe_path.read_text()) or {}
    name = recipe.get("name", run_dir.name)
    data_name = (recipe.get("data") or {}).get("name")
    if data_name != dataset:
        raise ConfigError(f"{run_dir}: the run trained on {data_name!r}; this table is for {dataset!r}")
    metrics = _read_metrics(run_dir)
    if not all("train_seconds" in m for m in metrics):
        raise CheckpointError(f"{run_dir / 'metrics.jsonl'}: an epoch has no train_seconds")
    train_s = float(sum(m["train_seconds"] for m in metrics))
    notes = []
    pre = run_dir / "pretrain.json"
    if pre.is_file():
        seconds = json.loads(pre.read_text()).get("seconds")
        if seconds is None:
            notes.append("pre-training time not recorded in pretrain.json")
        else:
            train_s += float(seconds)
    run = api.load_run(run_dir, data_dir)
    if repeats < 1:
        raise ConfigError(f"repeats: expected at least 1 evaluation, got {repeats}")
    test_s = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = api.evaluate(run, "test", device="cpu")
        test_s = min(test_s, time.perf_counter() - t0)
    n_test = int(result["n"])
    tutorial_name = TUTORIAL_NETS.get(name)
    return Row(method=name, label=f"{name} (visionnets)", kind="net", tutorial_name=tutorial_name,
               tutorial_error=TUTORIAL_MNIST.get(tutorial_name) if dataset == "mnist" else None,
               error=100.0 * float(result["error"]), train_seconds=train_s,
               test_seconds_per_1000=test_s * 1000 / n_test,
               n_parameters=sum(p.numel() for p in run.model.parameters()),
               n_train=len(run.dataset.train), n_test=n_test, source=str(run_dir),
               params={"epochs": len(metrics), "model": recipe.get("model")}, notes="; ".join(notes),
               extra={"pretrained": recipe.get("pretrain") is not None, "test_time_repeats": repeats,
                      "metrics_last_test_error": metrics[-1].get("test_error")})


def train_net(recipe: str, dataset: str, data_dir: str | Path | None, out_dir: Path,
              overrides: Sequence[str] = ()) -> Row:
    """Train the recipe ``recipe`` through ``visionnets.api.train``, then measure its run."""
    from visionnets import api

    result = api.train(recipe, overrides=list(overrides), data_dir=data_dir,
                       out=out_dir / "runs" / Path(recipe).stem, progress=False)
    row = row_from_run(result.run_dir, dataset, data_dir)
    row.source = f"trained by compare: {result.run_dir}"
    return row


def default_nets(dataset: str) -> list[str]:
    """The bundled recipes of our nets that fill the tutorial's rows for ``dataset``."""
    if dataset != "mnist":
        return []
    from visionnets.recipes import bundled_recipes

    have = bundled_recipes()
    return [name for name in TUTORIAL_NETS if name in have]


# ---------------------------------------------------------------- the comparison

def compare(dataset: Any = "mnist", methods: Sequence[str] | None = None, subsample: int | None = None,
            data_dir: str | Path | None = None, out_dir: str | Path | None = None,
            nets: Sequence[str] = (), runs: Sequence[str | Path] = (), options: dict | None = None,
            max_train: dict[str, int] | None = None, net_overrides: Sequence[str] = (),
            n_labelled: int = 1000, seed: int = 0, threads: int | None = None, log=None) -> list[Row]:
    """Train and measure each baseline in ``methods`` (all when None) and add our nets.

    ``subsample`` draws that many training examples (seeded) for every baseline;
    ``max_train[name]`` caps one baseline's training set further (noted in its row).
    ``nets`` are recipe names trained through ``visionnets.api.train`` (runs under
    ``out_dir/runs``); ``runs`` are finished run directories read as they are.
    The test split is always used whole. ``threads`` caps the BLAS/OpenMP threads of the
    baselines (None: the libraries' default); ``n_labelled`` is the number of labels in the
    RBM row's measurement of the gain from unlabelled data.
    """
    names = list(BASELINES.names() if methods is None else methods)
    for name in names:
        BASELINES.get(name)                              # unknown -> ConfigError naming it
    options = dict(options or {})
    max_train = dict(max_train or {})
    for where, table in (("options", options), ("max_train", max_train)):
        for name in table:
            if name not in names:
                raise ConfigError(f"{where}.{name}: not among the selected methods ({', '.join(names)})")
    if nets and out_dir is None:
        raise ConfigError("out_dir: needed to train nets (their runs go under out_dir/runs)")
    say = log or (lambda msg: None)
    ds_name, train, test = load_arrays(dataset, data_dir)
    X, y = subsample_rows(*train, subsample, seed)
    rows = []
    for name in names:
        Xm, ym = subsample_rows(X, y, max_train.get(name), seed)
        note = (f"trained on {len(Xm):,} of {len(train[0]):,} training images"
                if len(Xm) < len(train[0]) else "")
        say(f"{name}: training on {len(Xm):,} images")
        with threadpool_limits(threads):
            row = run_baseline(name, (Xm, ym), test, options.get(name), n_labelled=n_labelled,
                               seed=seed, note=note)
        row.extra["threads"] = threads
        if ds_name != "mnist":
            row.tutorial_error = None                # the tutorial's numbers are for MNIST
        say(f"{name}: error {row.error:.2f}% in {row.train_seconds:.1f}s")
        rows.append(row)
    for run_dir in runs:
        say(f"{run_dir}: measuring the run")
        rows.append(row_from_run(run_dir, ds_name, data_dir))
    for recipe in nets:
        say(f"{recipe}: training through visionnets.api")
        rows.append(train_net(recipe, ds_name, data_dir, Path(out_dir), net_overrides))
    return rows


# ---------------------------------------------------------------- rendering

def _fmt(value, spec: str, missing: str = "—") -> str:
    return missing if value is None else format(value, spec)


def _fmt_count(n: int | None) -> str:
    if n is None:
        return "—"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(n)


TABLE_COLUMNS = ["method", "tutorial error (%)", "measured error (%)", "training time (s)",
                 "test time per 1,000 images (ms)", "parameters", "training images"]


def render_table(rows: Sequence[Row]) -> str:
    """The comparison as a markdown table, one line per row, in the order given."""
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    for r in rows:
        method = r.label + (f" [{r.tutorial_name}]" if r.tutorial_name and r.kind == "net" else "")
        cells = [method, _fmt(r.tutorial_error, ".1f"), _fmt(r.error, ".2f"), _fmt(r.train_seconds, ".1f"),
                 _fmt(None if r.test_seconds_per_1000 is None else 1000 * r.test_seconds_per_1000, ".1f",
                      "not measured"),
                 _fmt_count(r.n_parameters), f"{r.n_train:,}" if r.n_train else "—"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


PROPERTIES = ["Adaptive features", "Hierarchical features", "End-to-end learning",
              "Leverage unlab. data", "Easy to parallelize", "Fast training", "Fast at test time"]

# What each family is by construction (a fact of the algorithm as built here, not a measurement).
_DESIGN = {
    "Deep nets": {"Adaptive features": "yes (every layer is learned)",
                  "Hierarchical features": "yes (layers of learned features)",
                  "End-to-end learning": "yes (one gradient through all layers)"},
    "Boosting": {"Adaptive features": "no (thresholds on fixed pixels)",
                 "Hierarchical features": "no (a shallow sum of weak learners)",
                 "End-to-end learning": "no (greedy, one learner at a time)",
                 "Leverage unlab. data": "no (every learner needs labels)"},
    "Probab. models": {"Adaptive features": "yes (RBM weights are learned)",
                       "Hierarchical features": "no here (one RBM layer)",
                       "End-to-end learning": "no (RBM, then classifier, trained apart)"},
    "SVM": {"Adaptive features": "no (a fixed Gaussian kernel)", "Hierarchical features": "no",
            "End-to-end learning": "no (features fixed by the kernel)",
            "Leverage unlab. data": "no (needs labels)"},
    "k-NN": {"Adaptive features": "no (raw pixels)", "Hierarchical features": "no",
             "End-to-end learning": "no (nothing is learned)", "Leverage unlab. data": "no (needs labels)"},
    "Linear": {"Adaptive features": "no (raw pixels)", "Hierarchical features": "no",
               "End-to-end learning": "yes (a single layer)", "Leverage unlab. data": "no (needs labels)"},
}
NOT_MEASURED = "not measured yet"


def _num(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def _span(values: list[float], unit: str) -> str:
    lo, hi = min(values), max(values)
    return f"{_num(lo)} {unit}" if math.isclose(lo, hi, rel_tol=0.05) else f"{_num(lo)}–{_num(hi)} {unit}"


def family(row: Row) -> str:
    """The properties-table column of a row: our nets are "Deep nets" unless their model is linear."""
    if row.kind == "net":
        model = row.params.get("model") or {}
        return "Linear" if isinstance(model, dict) and model.get("name") == "linear" else "Deep nets"
    return FAMILIES.get(row.method, row.method)


def _pretraining_gains(rows: Sequence[Row]) -> list[tuple[str, float, float, float]]:
    """``(name, gain, error from random init, error pre-trained)`` for each net measured both ways."""
    by_name = {r.method: r for r in rows if r.error is not None}
    out = []
    for name, r in by_name.items():
        if name.endswith(PRETRAINED):
            twin = by_name.get(name[: -len(PRETRAINED)] + FROM_SCRATCH)
            if twin is not None:
                out.append((name[: -len(PRETRAINED)], twin.error - r.error, twin.error, r.error))
    return out


def properties(rows: Sequence[Row], measured: dict[str, dict[str, str]] | None = None
               ) -> dict[str, dict[str, str]]:
    """The tutorial's properties table: ``{family: {property: cell}}`` for the families present.

    Training and test time come from the rows; the gain from unlabelled data from the RBM
    row's measurement, or, for our nets, from a pre-trained net (``<name>_pretrained``) against
    the same net from random init (``<name>_random``); ``measured[family][property]`` adds
    cells measured elsewhere (e.g. the speed-up of parallel workers); the rest is what the method is by construction (marked so) or
    "not measured yet".
    """
    fams: dict[str, list[Row]] = {}
    for r in rows:
        fams.setdefault(family(r), []).append(r)
    out = {}
    for fam in [f for f in FAMILY_ORDER if f in fams] + [f for f in fams if f not in FAMILY_ORDER]:
        rs, cells = fams[fam], {}
        for prop in PROPERTIES:
            design = _DESIGN.get(fam, {}).get(prop)
            cells[prop] = f"{design} [by construction]" if design else NOT_MEASURED
        times = [r.train_seconds for r in rs if r.train_seconds is not None]
        if times:
            cells["Fast training"] = _span(times, "s to train") + " [measured]"
        tests = [1000 * r.test_seconds_per_1000 for r in rs if r.test_seconds_per_1000 is not None]
        if tests:
            cells["Fast at test time"] = _span(tests, "ms / 1,000 images") + " [measured]"
        gains = [r.extra["unlabelled_gain"] for r in rs if "unlabelled_gain" in r.extra]
        if gains:
            g = gains[0]
            verdict = "helps" if g["gain"] > 0 else "no gain here"
            cells["Leverage unlab. data"] = (
                f"{verdict}: {g['gain']:+.1f} points with {g['n_labelled']:,} labels "
                f"({g['error_pixels']:.1f}% on pixels, {g['error_rbm_features']:.1f}% on RBM features "
                f"learned from {g['n_unlabelled']:,} unlabelled images) [measured]")
        twins = _pretraining_gains(rs)
        if twins:
            cells["Leverage unlab. data"] = "; ".join(
                f"{'helps' if g > 0 else 'no gain here'}: {g:+.2f} points from unsupervised pre-training "
                f"({name}: {e0:.2f}% from random init, {e1:.2f}% pre-trained)" for name, g, e0, e1 in twins
            ) + " [measured]"
        for prop, text in (measured or {}).get(fam, {}).items():
            if prop not in PROPERTIES:
                raise ConfigError(f"measured.{fam}.{prop}: not a property; expected one of {', '.join(PROPERTIES)}")
            cells[prop] = f"{text} [measured]"
        out[fam] = cells
    return out


def render_properties(props: dict[str, dict[str, str]]) -> str:
    """The properties table as markdown: one line per property, one column per family."""
    fams = list(props)
    lines = ["| property | " + " | ".join(fams) + " |", "|---|" + "---|" * len(fams)]
    for prop in PROPERTIES:
        lines.append(f"| {prop} | " + " | ".join(props[f][prop] for f in fams) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- files

def machine() -> dict:
    """Where the timings were taken."""
    import sklearn
    import torch

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "sklearn": sklearn.__version__, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads()}


def write_json(path: str | Path, rows: Sequence[Row], meta: dict | None = None,
               measured: dict | None = None) -> Path:
    """Rows, the properties table and the machine, as one JSON file written atomically."""
    path = Path(path)
    payload = {**(meta or {}), "machine": machine(), "rows": [asdict(r) for r in rows],
               "properties": properties(rows, measured), "measured_properties": measured or {}}
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(payload, indent=2) + "\n"))
    return path


def plot(path: str | Path, rows: Sequence[Row], title: str = "") -> Path:
    """A bar chart of measured against tutorial error per row (log scale), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    rows = [r for r in rows if r.error is not None]
    idx = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(rows) + 2), 4.5))
    measured = [max(r.error, 0.05) for r in rows]
    have = [i for i, r in enumerate(rows) if r.tutorial_error is not None]
    ax.bar(idx - 0.2, measured, 0.4, label="measured here", color="tab:blue")
    ax.bar(idx[have] + 0.2, [rows[i].tutorial_error for i in have], 0.4, label="tutorial", color="tab:gray")
    for i, r in enumerate(rows):
        ax.text(i - 0.2, measured[i], f"{r.error:.2f}", ha="center", va="bottom", fontsize=7)
        if r.tutorial_error is None:
            ax.text(i + 0.2, min(measured), "no row", ha="center", va="bottom", fontsize=7,
                    color="gray", rotation=90)
    ax.set_yscale("log")
    ax.set_ylabel("test error (%)")
    ax.set_xticks(idx, [r.method for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_title(title or "test error: measured vs the tutorial's table")
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    return path


def report(rows: Sequence[Row], out_dir: str | Path, stem: str = "compare", meta: dict | None = None,
           measured: dict | None = None) -> str:
    """Write ``out_dir/<stem>.json`` and ``out_dir/<stem>.png``; return both markdown tables."""
    out_dir = Path(out_dir)
    write_json(out_dir / f"{stem}.json", rows, meta, measured)
    plot(out_dir / f"{stem}.png", rows, title=f"{(meta or {}).get('dataset', '')} test error".strip())
    return render_table(rows) + "\n\n" + render_properties(properties(rows, measured))
