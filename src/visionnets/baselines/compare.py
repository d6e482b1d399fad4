"""The tutorial's MNIST table, measured on this machine: running the methods.

``compare`` trains each scikit-learn baseline, reads (or trains) our nets, and returns one
:class:`Row` per method: the tutorial's error, the error measured here, the training time,
the test time per 1,000 images and the number of parameters.
:mod:`visionnets.baselines.table` renders the rows (the MNIST and properties tables) and
``report`` writes them as JSON with a bar chart (:mod:`visionnets.viz.compare`)::

    >>> from visionnets.baselines.compare import compare
    >>> from visionnets.baselines.table import render_table
    >>> rows = compare("digits", methods=["knn", "linear"])
    >>> [(r.method, r.n_train, r.n_test, r.error < 5) for r in rows]
    [('knn', 1437, 360, True), ('linear', 1437, 360, True)]
    >>> print(render_table(rows).splitlines()[0])
    | method | tutorial error (%) | measured error (%) | training time (s) | test time per 1,000 images (ms) | parameters | training images | test NLL / ECE (%) | protocol |

Timings are wall-clock seconds on this machine (``time.perf_counter``) around ``fit`` and
around ``predict`` on the whole test set; the JSON records the machine they ran on.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from visionnets.baselines.base import as_features, as_labels
from visionnets.baselines.methods import BASELINES
from visionnets.errors import CheckpointError, ConfigError, DataError

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
    "mnist_convnet_pretrained": "Conv. Net (pre-trained)",   # stage-wise pretrained, then fine-tuned
}
# trained beside the rows they stand against: the same nets from a random initialization
TWINS = {"mnist_convnet": "mnist_convnet_pretrained"}
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
    protocol: str = ""               # the images it learned from, validation, which model is tested


# ---------------------------------------------------------------- data

def _flat(split) -> tuple[np.ndarray, np.ndarray]:
    x = split.x.reshape(len(split.x), -1).numpy()
    return as_features(x, "dataset inputs"), as_labels(split.y.numpy(), len(x), "dataset labels")


def load_arrays(dataset: Any, data_dir: str | Path | None, subsample: int | None = None) -> tuple[str, tuple, tuple]:
    """``(name, (X_train, y_train), (X_test, y_test))`` from a dataset name or a Dataset.

    Names go through ``visionnets.data.load_dataset(name, data_dir, val_fraction=0)``, with its
    ``subsample`` option when given (a Dataset's training split is subsampled here).
    """
    if isinstance(dataset, str):
        if dataset not in DATASETS:
            raise ConfigError(f"dataset {dataset!r}: compare knows {', '.join(DATASETS)}")
        from visionnets.data import load_dataset
        options = {} if subsample is None else {"subsample": subsample}
        dataset = load_dataset(dataset, data_dir, val_fraction=0.0, **options)
    elif subsample is not None:
        from visionnets.data.base import subsample_split
        from dataclasses import replace
        dataset = replace(dataset, train=subsample_split(dataset.train, subsample, 0))
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


ECE_BINS = 15
PROB_FLOOR = 1e-12     # a probability of 0 for the true class costs -log(1e-12) = 27.6 nats, not infinity


def calibration(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> dict:
    """How well predicted probabilities ``probs`` (N, classes) model the uncertainty of labels ``y``.

    ``nll``: mean negative log-likelihood of the true class in nats (probabilities floored at
    ``PROB_FLOOR``); ``ece``: expected calibration error in percent, the confidence of the
    predicted class against its accuracy over ``bins`` equal-width confidence bins (Guo et al.
    2017); ``confidence`` and ``accuracy``: their means, in percent.

        >>> calibration(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 0]))["ece"]
        45.0
    """
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if probs.ndim != 2 or probs.shape[0] != len(y):
        raise DataError(f"probabilities: expected shape ({len(y)}, classes), got {probs.shape}")
    if len(y) and (y.min() < 0 or y.max() >= probs.shape[1]):
        raise DataError(f"labels: class indices must lie in [0, {probs.shape[1]}), got [{y.min()}, {y.max()}]")
    p_true = probs[np.arange(len(y)), y]
    conf, pred = probs.max(1), probs.argmax(1)
    right = (pred == y).astype(np.float64)
    which = np.minimum((conf * bins).astype(np.int64), bins - 1)
    gap = sum(abs(right[which == b].sum() - conf[which == b].sum()) for b in range(bins))
    return {"nll": float(-np.log(np.maximum(p_true, PROB_FLOOR)).mean()), "ece": float(100 * gap / len(y)),
            "confidence": float(100 * conf.mean()), "accuracy": float(100 * right.mean()), "bins": bins}


@contextmanager
def workers(n: int | None):
    """Run the block with ``n`` threads in every pool a method may use: BLAS/OpenMP (threadpoolctl)
    and torch's intra-op pool (None: the libraries' defaults)."""
    if n is None:
        yield
        return
    from visionnets.threads import using_threads

    with threadpool_limits(n), using_threads(n):
        yield


def parallel_speedup(name: str, train: tuple, test: tuple, options: dict | None = None,
                     n_train: int = 10000, n_test: int = 2000, repeats: int = 2, seed: int = 0,
                     counts: Sequence[int] = (1, 2)) -> dict:
    """How much the baseline ``name`` gains from more workers: the same job (fit on ``n_train``
    training images, then predict ``n_test`` test images) with ``counts[0]`` and ``counts[-1]``
    threads, the best of ``repeats`` alternating timings of each; ``speedup`` is the ratio.
    """
    if repeats < 1:
        raise ConfigError(f"repeats: expected at least 1 timing, got {repeats}")
    X, y = subsample_rows(*train, n_train, seed)
    Xt = test[0][:n_test]
    best = {n: math.inf for n in counts}
    for _ in range(repeats):
        for n in counts:
            model = BASELINES.build(name, options or {}, where=f"methods.{name}")
            with workers(n):
                t0 = time.perf_counter()
                model.fit(X, y)
                model.predict(Xt)
                best[n] = min(best[n], time.perf_counter() - t0)
    lo, hi = counts[0], counts[-1]
    return {"workers": list(counts), "seconds": [best[n] for n in counts], "speedup": best[lo] / best[hi],
            "kind": "threads", "job": "fit + predict", "n_train": len(X), "n_test": len(Xt), "repeats": repeats}


def baseline_protocol(n_train: int, n_available: int) -> str:
    """The protocol of a baseline's row: the images it learned from, no validation, its final model."""
    images = f"all {n_train:,}" if n_train >= n_available else f"{n_train:,} of {n_available:,}"
    return f"{images} training images; fixed settings, no validation; the final model"


def run_baseline(name: str, train: tuple, test: tuple, options: dict | None = None,
                 n_labelled: int = 1000, seed: int = 0, note: str = "", n_available: int | None = None) -> Row:
    """Fit the baseline ``name`` on ``train``, time it, and measure it on ``test``: the error, the
    times, and, for a method that predicts probabilities, their :func:`calibration`
    (``extra["uncertainty"]``). ``n_available`` is the size of the set ``train`` was drawn from
    (for the row's protocol)."""
    model = BASELINES.build(name, options or {}, where=f"methods.{name}")
    (X, y), (Xt, yt) = train, test
    t0 = time.perf_counter()
    model.fit(X, y)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = model.predict(Xt)
    test_s = time.perf_counter() - t0
    extra = {}
    est = model.estimator
    booster = est[-1] if hasattr(est, "steps") else est             # a Pipeline ends with the booster
    if hasattr(booster, "round_seconds_"):                          # boosting: the error after every round
        Z = est[:-1].transform(Xt) if hasattr(est, "steps") else Xt
        extra["error_by_round"] = [round(float(100 * np.mean(p != yt)), 3) for p in booster.staged_predict(Z)]
        extra["rounds"], extra["seconds_per_round"] = len(extra["error_by_round"]), booster.round_seconds_
    if name == "rbm_logistic" and n_labelled and n_labelled < len(X):
        extra["unlabelled_gain"] = _unlabelled_gain(model, X, y, Xt, yt, n_labelled, seed)
    probs = model.probabilities(Xt)
    if probs is None:
        extra["scores_only"] = True
    else:
        extra["uncertainty"] = calibration(_pad_classes(probs, yt), yt)
    return Row(method=name, label=model.label, kind="baseline", tutorial_name=model.tutorial_name,
               tutorial_error=model.tutorial_error, error=float(100 * np.mean(pred != yt)),
               train_seconds=train_s, test_seconds_per_1000=test_s * 1000 / len(Xt),
               n_parameters=model.n_parameters(), n_train=len(X), n_test=len(Xt),
               source="trained by compare", params=model.params, notes=note, extra=extra,
               protocol=baseline_protocol(len(X), n_available or len(X)))


def _pad_classes(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Probability columns for every class of ``y`` (a class never seen in training: 0)."""
    n = max(probs.shape[1], int(y.max()) + 1 if len(y) else 0)
    return probs if n == probs.shape[1] else np.pad(probs, ((0, 0), (0, n - probs.shape[1])))


# ---------------------------------------------------------------- our nets

def row_from_run(run_dir: str | Path, dataset: str, data_dir: str | Path | None = None,
                 repeats: int = 1) -> Row:
    """A table row for a finished run directory, measured here.

    The run's model (its best checkpoint) is loaded with ``visionnets.api.load_run`` and
    evaluated on the whole test split: that gives the error and the test time (the best of
    ``repeats`` evaluations, which tames the noise of a shared machine). The training
    time is the sum of the epochs' ``train_seconds`` in metrics.jsonl (plus the pre-training
    time recorded in pretrain.json).
    """
    from visionnets import api
    from visionnets.train.rundir import RunDir

    if repeats < 1:
        raise ConfigError(f"repeats: expected at least 1 evaluation, got {repeats}")
    rd = RunDir.open(run_dir)
    recipe = rd.recipe()
    if recipe.data.name != dataset:
        raise ConfigError(f"{rd.path}: the run trained on {recipe.data.name!r}; this table is for {dataset!r}")
    metrics = rd.read_metrics()
    if not metrics:
        raise CheckpointError(f"{rd.metrics_file}: missing or empty; expected a finished run")
    train_s = float(sum(m["train_seconds"] for m in metrics))
    pre = rd.path / "pretrain.json"
    if pre.is_file():
        train_s += float(json.loads(pre.read_text())["seconds"])
    run = api.load_run(rd.path, data_dir)
    test_s = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = api.evaluate(run, "test", device="cpu")
        test_s = min(test_s, time.perf_counter() - t0)
    n_test = int(result["n"])
    tutorial_name = TUTORIAL_NETS.get(recipe.name)
    best = rd.checkpoint("best").is_file()
    extra = {"pretrained": recipe.pretrain is not None, "test_time_repeats": repeats,
             "metrics_last_test_error": metrics[-1].get("test_error"),
             "tested_epoch": metrics[-1].get("best_epoch") if best else metrics[-1]["epoch"]}
    probs = net_probabilities(run)
    if probs is None:
        extra["scores_only"] = True
    else:
        extra["uncertainty"] = calibration(probs.numpy(), run.dataset.test.y.numpy())
    n_val = len(run.dataset.val) if run.dataset.val is not None else 0
    protocol = (f"{len(run.dataset.train):,} training images, {n_val:,} held out for validation; "
                + (f"the best-validation epoch ({extra['tested_epoch']} of {len(metrics)})" if best
                   else f"the last epoch ({len(metrics)})")
                + ("; layers pretrained without labels first" if recipe.pretrain is not None else ""))
    return Row(method=recipe.name, label=f"{recipe.name} (visionnets)", kind="net", tutorial_name=tutorial_name,
               tutorial_error=TUTORIAL_MNIST.get(tutorial_name) if dataset == "mnist" else None,
               error=100.0 * float(result["error"]), train_seconds=train_s,
               test_seconds_per_1000=test_s * 1000 / n_test,
               n_parameters=sum(p.numel() for p in run.model.parameters()),
               n_train=len(run.dataset.train), n_test=n_test, source=str(rd.path),
               params={"epochs": len(metrics), "model": recipe.model}, extra=extra, protocol=protocol)


@torch.no_grad()
def net_probabilities(run, split: str = "test") -> torch.Tensor | None:
    """Class probabilities (N, classes) of a loaded run on ``split``, in float32, computed as the
    run evaluates (its ``train.precision`` and ``channels_last``): the softmax of a net trained
    with the cross-entropy loss, the normalized sigmoids of one trained one-vs-rest with the
    logistic loss; None for a loss whose scores are margins (hinge, squared)."""
    from visionnets.viz.confusion import class_probabilities, predict

    objective = run.recipe.get("objective") or {}
    loss = objective.get("loss") if objective.get("name") == "supervised" else None
    if loss not in ("cross_entropy", "logistic"):
        return None
    train = run.recipe.get("train") or {}
    data = run.dataset.split(split)
    scores = predict(run.model, data.x, precision=train.get("precision", "fp32"),
                     channels_last=train.get("channels_last", False), **data.extra)
    if loss == "cross_entropy":
        return class_probabilities(scores, run.dataset.num_classes)
    p = scores.sigmoid()
    return p / p.sum(1, keepdim=True)


def train_net(recipe: str, dataset: str, data_dir: str | Path | None, out_dir: Path,
              overrides: Sequence[str] = (), log=None) -> Row:
    """Train the recipe ``recipe`` through ``visionnets.api.train`` under ``out_dir/runs``, then measure it.

    Re-runnable: a run of the same recipe (same overrides) already there is reused when finished
    and resumed when interrupted; a run of another recipe is left alone and this one is written
    beside it (``<name>-2``, ...).
    """
    from visionnets import api
    from visionnets.recipes import load_recipe
    from visionnets.train.rundir import RunDir

    say = log or (lambda msg: None)
    wanted = load_recipe(recipe, list(overrides)).to_dict()
    stem, k = Path(recipe).stem, 1
    while True:
        path = out_dir / "runs" / (stem if k == 1 else f"{stem}-{k}")
        rd = RunDir(path)
        if path.exists() and rd.recipe_file.is_file() and rd.recipe().to_dict() == wanted:
            if rd.checkpoint("last").is_file():
                break
            rd.remove_if_unstarted()                 # killed before its first checkpoint: start again
        if not path.exists() or not any(path.iterdir()):
            break
        k += 1
    if not path.exists() or not rd.checkpoint("last").is_file():
        say(f"{recipe}: training into {path}")
        api.train(recipe, overrides=list(overrides), data_dir=data_dir, out=path, progress=False)
        how = "trained by compare"
    elif not rd.finished():
        say(f"{recipe}: resuming {path}")
        api.train(None, resume=path, data_dir=data_dir, progress=False)
        how = "resumed by compare"
    else:
        say(f"{recipe}: reusing the finished run {path}")
        how = "reused by compare"
    row = row_from_run(path, dataset, data_dir)
    row.source = f"{how}: {path}"
    return row


def default_nets(dataset: str) -> list[str]:
    """The bundled recipes of our nets that fill the tutorial's rows for ``dataset``."""
    if dataset != "mnist":
        return []
    from visionnets.recipes import bundled_recipes

    have = bundled_recipes()
    names = [name for name in TUTORIAL_NETS if name in have]
    return names + [twin for twin, of in TWINS.items() if of in names and twin in have]


# ---------------------------------------------------------------- the comparison

QUICK_IMAGES, QUICK_EPOCHS = 2000, 2


def compare(dataset: Any = "mnist", methods: Sequence[str] | None = None, subsample: int | None = None,
            data_dir: str | Path | None = None, out_dir: str | Path | None = None,
            nets: Sequence[str] = (), runs: Sequence[str | Path] = (), options: dict | None = None,
            max_train: dict[str, int] | None = None, net_overrides: Sequence[str] = (),
            n_labelled: int = 1000, seed: int = 0, threads: int | None = None, log=None,
            quick: bool = False, parallel: int | None = None) -> list[Row]:
    """Train and measure each baseline in ``methods`` (all when None) and add our nets.

    ``subsample`` keeps that many training images (and at most as many test images, the
    dataset's ``subsample`` option) for the baselines and the nets alike, so every row is
    measured on the same test images; ``quick`` is ``subsample=2000`` and the nets trained for
    2 epochs. ``max_train[name]`` caps one baseline's training set further (noted in its row).
    ``nets`` are recipe names trained through ``visionnets.api.train`` (runs under
    ``out_dir/runs``, reused or resumed when compare runs again); ``runs`` are finished run
    directories read as they are. ``threads`` caps the BLAS/OpenMP threads of the baselines
    (None: the libraries' default); ``n_labelled`` is the number of labels in the RBM row's
    measurement of the gain from unlabelled data. ``parallel``: also time each baseline's fit
    and predict on that many training images with 1 and 2 threads (:func:`parallel_speedup`,
    ``extra["parallel"]``), the "Easy to parallelize" cell of the properties table.
    """
    if quick:
        subsample = subsample or QUICK_IMAGES
        net_overrides = [f"train.epochs={QUICK_EPOCHS}", *net_overrides]
    if subsample is not None:
        if subsample < 1:
            raise ConfigError(f"subsample: expected a positive number of training images, got {subsample}")
        net_overrides = [f"data.options.subsample={subsample}", *net_overrides]
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
    ds_name, (X, y), test = load_arrays(dataset, data_dir, subsample)
    rows = []
    for name in names:
        Xm, ym = subsample_rows(X, y, max_train.get(name), seed)
        note = f"trained on {len(Xm):,} of {len(X):,} training images" if len(Xm) < len(X) else ""
        say(f"{name}: training on {len(Xm):,} images")
        with threadpool_limits(threads):
            row = run_baseline(name, (Xm, ym), test, options.get(name), n_labelled=n_labelled,
                               seed=seed, note=note, n_available=len(X))
        row.extra["threads"] = threads
        if parallel:
            row.extra["parallel"] = parallel_speedup(name, (Xm, ym), test, options.get(name), n_train=parallel,
                                                     seed=seed)
            say(f"{name}: {row.extra['parallel']['speedup']:.2f}x with 2 threads")
        if ds_name != "mnist":
            row.tutorial_error = None                # the tutorial's numbers are for MNIST
        say(f"{name}: error {row.error:.2f}% in {row.train_seconds:.1f}s")
        rows.append(row)
    for run_dir in runs:
        say(f"{run_dir}: measuring the run")
        rows.append(row_from_run(run_dir, ds_name, data_dir))
    for recipe in nets:
        say(f"{recipe}: training through visionnets.api")
        rows.append(train_net(recipe, ds_name, data_dir, Path(out_dir), net_overrides, log=say))
    return rows
