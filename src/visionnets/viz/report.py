"""The run report: the figures of a finished run and one self-contained ``report.html``.

The Trainer calls :func:`finish_run` at the end of every run. It writes into ``RUN_DIR/figures``

* ``curves.png``     loss and error per epoch (from the history);
* ``filters.png``    the first layer with spatial weights, if the model has one (100 filters at most);
* ``confusion.png``  the confusion matrix on the test split (classifiers);
* ``worst.png``      the worst-classified test images (classifiers on images);
* ``fit.png``        prediction against truth (1-D regression, e.g. the cosine toy);

and then ``report.html``: the recipe (YAML), a metrics table, and every figure embedded as a
base64 ``data:`` URI, with inline CSS and nothing fetched from elsewhere, so the one file can be
mailed or opened offline. :func:`write_report` rebuilds the page from the files present (also
showing any other PNG in ``figures/``, such as those ``visionnets show`` writes).

    >>> import tempfile, torch
    >>> from visionnets.data.base import Dataset, Split
    >>> x, y = torch.randn(40, 1, 8, 8), torch.arange(40) % 4
    >>> ds = Dataset("toy", Split(x, y), None, Split(x, y), (1, 8, 8), num_classes=4)
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(144, 4))
    >>> hist = [{"epoch": 1, "train_loss": 1.4, "train_error": 0.7, "test_loss": 1.5, "test_error": 0.8}]
    >>> page = finish_run(tempfile.mkdtemp(), net, ds, hist, {"model": {"name": "convnet"}})
    >>> sorted(p.name for p in (page.parent / "figures").iterdir())
    ['confusion.png', 'curves.png', 'filters.png', 'worst.png']
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Mapping
from pathlib import Path

import yaml
from torch import nn

from visionnets.data.base import Dataset
from visionnets.viz.confusion import confusion_matrix, plot_confusion, predict
from visionnets.train.rundir import RunDir
from visionnets.viz.curves import plot_curves, plot_task_curves, series, task_names
from visionnets.viz.filters import first_spatial_layer, plot_filters
from visionnets.viz.fit import is_1d_regression, plot_fit
from visionnets.viz.grid import atomic_write_bytes, square_shape
from visionnets.viz.multimodal import plot_cross_modal
from visionnets.viz.worst import plot_worst, worst_examples

# The standard figures, in the order the page shows them.
FIGURES = {
    "curves.png": "Learning curves",
    "task_curves.png": "Error of each task",
    "fit.png": "Prediction against truth",
    "filters.png": "First-layer filters",
    "confusion.png": "Confusion matrix (test)",
    "worst.png": "Worst-classified test images",
    "cross_modal.png": "Each modality rebuilt from the other alone",
}
COLUMNS = ("epoch", "step", "lr", "train_loss", "train_error", "val_loss", "val_error",
           "test_loss", "test_error", "seconds", "examples_per_s")
MAX_ROWS = 100


def finish_run(run_dir: str | os.PathLike, model: nn.Module, dataset: Dataset, history: list[dict],
               recipe: Mapping) -> Path:
    """Write the run's figures and ``report.html`` into ``run_dir``; returns the page's path."""
    train = (recipe or {}).get("train") or {}
    notes = write_figures(run_dir, model, dataset, history, precision=train.get("precision", "fp32"),
                          channels_last=train.get("channels_last", False))
    return write_report(run_dir, recipe=recipe, history=history, notes=notes)


def write_figures(run_dir: str | os.PathLike, model: nn.Module, dataset: Dataset,
                  history: list[dict], split: str = "test", precision: str = "fp32",
                  channels_last: bool = False) -> list[str]:
    """Write the standard figures that apply to this run; returns notes on those that do not.
    The predictions behind them are computed as the run evaluates (``precision``, ``channels_last``)."""
    figs = Path(run_dir) / "figures"
    notes = []
    if any(series(history, f"{s}_loss")[1] for s in ("train", "val", "test")):
        plot_curves(history, figs / "curves.png")
    else:
        notes.append("no learning curves: the history holds no loss values")
    if task_names(history):
        plot_task_curves(history, figs / "task_curves.png")
    found = first_spatial_layer(model, dataset.input_shape)
    if found is not None:
        name, layer = found
        plot_filters(layer, figs / "filters.png", input_shape=dataset.input_shape, max_filters=100,
                     title=f"{name}: {type(layer).__name__} filters {tuple(layer.weight.shape)}")
    if dataset.is_classification:
        notes += _classification_figures(figs, model, dataset, split, precision, channels_last)
    if dataset.modalities and hasattr(model, "decoders"):
        plot_cross_modal(model, dataset.split(split), figs / "cross_modal.png")
    elif is_1d_regression(dataset):
        plot_fit(model, dataset, figs / "fit.png")
    return notes


def _classification_figures(figs: Path, model: nn.Module, dataset: Dataset, split: str, precision: str = "fp32",
                            channels_last: bool = False) -> list[str]:
    data = dataset.split(split)
    k = dataset.num_classes
    out = predict(model, data.x, precision=precision, channels_last=channels_last,
                  **data.extra)                         # every input of a multi-input model
    if out.ndim == 2 and out.shape[1] == k:
        pred = out.argmax(1)
    elif k == 2 and out.reshape(len(out), -1).shape[1] == 1:
        pred = (out.reshape(-1) > 0).long()
    else:
        return [f"no confusion matrix: the model outputs {tuple(out.shape[1:])} per example, "
                f"not {k} class scores (an auto-encoder?)"]
    plot_confusion(confusion_matrix(data.y, pred, k), figs / "confusion.png", dataset.class_names)
    shape = tuple(dataset.input_shape)
    if len(shape) == 3 or (len(shape) == 1 and square_shape(shape[0])):
        worst = worst_examples(out, data.y, k=16, num_classes=k)
        plot_worst(data.x, worst, figs / "worst.png", dataset.class_names,
                   image_shape=shape if len(shape) == 3 else None)
        return []
    return [f"no worst-image figure: inputs of shape {shape} are not images"]


def write_report(run_dir: str | os.PathLike, recipe: Mapping | None = None,
                 history: list[dict] | None = None, notes: list[str] | None = None) -> Path:
    """(Re)build ``run_dir/report.html`` from the run's files; returns its path.

    ``recipe`` and ``history`` default to ``recipe.yaml`` and ``metrics.jsonl`` in the run
    directory; every PNG in ``figures/`` is embedded (the standard ones first).
    """
    run_dir = Path(run_dir)
    if recipe is not None:
        recipe_text = yaml.safe_dump(_plain(recipe), sort_keys=False, allow_unicode=True)
    elif (run_dir / "recipe.yaml").is_file():
        recipe_text = (run_dir / "recipe.yaml").read_text(encoding="utf-8")
    else:
        recipe_text = None
    if history is None:
        history = RunDir(run_dir).read_metrics()
    figs = run_dir / "figures"
    present = sorted(p.name for p in figs.glob("*.png")) if figs.is_dir() else []
    ordered = [f for f in FIGURES if f in present] + [f for f in present if f not in FIGURES]
    page = render_html(run_dir.resolve().name, recipe_text, history,
                       [(FIGURES.get(f, f.removesuffix(".png").replace("_", " ")), figs / f) for f in ordered],
                       notes or [])
    return atomic_write_bytes(run_dir / "report.html", page.encode("utf-8"))


def _plain(obj):
    """A YAML-safe copy of a recipe: mappings, lists, strings, numbers, booleans, None."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "model_dump"):        # a pydantic recipe object
        return _plain(obj.model_dump())
    return str(obj)


def _fmt(v) -> str:
    if v is None:
        return "&mdash;"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:d}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return html.escape(str(v))
        return f"{v:.4g}"
    return html.escape(str(v))


def _best_summary(history: list[dict]) -> str:
    if not history:
        return "<p>No epochs recorded.</p>"
    last = history[-1]
    items = [f"{len(history)} epochs"]
    _, val = series(history, "val_error")
    if val:
        best = min((r for r in history if isinstance(r.get("val_error"), (int, float))),
                   key=lambda r: r["val_error"])
        items.append(f"best val error {best['val_error']:.2%} at epoch {best.get('epoch', '?')}")
        if isinstance(best.get("test_error"), (int, float)):
            items.append(f"test error there {best['test_error']:.2%}")
    for key, label in (("test_error", "final test error"), ("test_loss", "final test loss")):
        v = last.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            items.append(f"{label} {v:.2%}" if key.endswith("error") else f"{label} {v:.4g}")
            break
    secs = sum(r["seconds"] for r in history if isinstance(r.get("seconds"), (int, float)))
    if secs:
        items.append(f"{secs:.1f} s of training")
    return "<p class=summary>" + " &middot; ".join(html.escape(i) for i in items) + "</p>"


def _table(history: list[dict]) -> str:
    if not history:
        return ""
    keys = [c for c in COLUMNS if any(c in r for r in history)]
    keys += sorted({k for r in history for k in r} - set(keys))
    rows = history[-MAX_ROWS:]
    note = (f"<p class=note>Showing the last {MAX_ROWS} of {len(history)} epochs; all are in "
            f"metrics.jsonl.</p>") if len(history) > MAX_ROWS else ""
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "\n".join("<tr>" + "".join(f"<td>{_fmt(r.get(k))}</td>" for k in keys) + "</tr>" for r in rows)
    return f"{note}<div class=scroll><table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table></div>"


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:72rem;
padding:0 1rem;color:#1d1d1f;background:#fff;line-height:1.45}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd;
padding-bottom:.2rem}pre{background:#f5f5f7;padding:.8rem;overflow:auto;font-size:.8rem;border-radius:6px}
table{border-collapse:collapse;font-size:.8rem;font-variant-numeric:tabular-nums}
th,td{padding:.2rem .55rem;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
th{background:#f5f5f7;position:sticky;top:0}.scroll{max-height:28rem;overflow:auto}
figure{margin:1rem 0}img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85rem;color:#555}.summary{font-weight:600}.note{color:#777;font-size:.85rem}
"""


def render_html(name: str, recipe_text: str | None, history: list[dict],
                figures: list[tuple[str, Path]], notes: list[str]) -> str:
    """The report page as one string: CSS inline, images as base64 data URIs."""
    parts = [f"<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
             f"<meta name=viewport content='width=device-width,initial-scale=1'>"
             f"<title>visionnets run {html.escape(name)}</title><style>{CSS}</style></head><body>",
             f"<h1>visionnets run <code>{html.escape(name)}</code></h1>", _best_summary(history)]
    if recipe_text is not None:
        parts += ["<h2>Recipe</h2>", f"<details><summary>recipe.yaml</summary>"
                  f"<pre>{html.escape(recipe_text)}</pre></details>"]
    if history:
        parts += ["<h2>Metrics</h2>", _table(history)]
    for caption, path in figures:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(f"<h2>{html.escape(caption)}</h2><figure><img src='data:image/png;base64,{data}' "
                     f"alt='{html.escape(caption, quote=True)}'><figcaption>figures/"
                     f"{html.escape(path.name)}</figcaption></figure>")
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
