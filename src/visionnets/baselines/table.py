"""The comparison's tables: the tutorial's MNIST table and its properties table, from rows.

``render_table`` and ``render_properties`` give markdown; ``write_json`` the rows, the
properties and the machine; ``report`` writes ``<stem>.json`` and the bar chart
``<stem>.png`` (:func:`visionnets.viz.compare.plot_comparison`) and returns both tables.
"""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from visionnets.baselines.compare import Row
from visionnets.errors import ConfigError
from visionnets.io import atomic_write


PRETRAINED, FROM_SCRATCH = "_pretrained", "_random"   # a pre-trained net and its twin from random init

FAMILIES = {  # column of the properties table each method belongs to
    "boosted_stumps": "Boosting", "boosted_stumps_samme": "Boosting", "haar_stumps": "Boosting", "product_stumps": "Boosting", "boosted_trees": "Boosting", "rbm_logistic": "Probab. models",
    "knn": "k-NN", "svm_rbf": "SVM", "linear": "Linear", "linear_svm": "Linear",
}
FAMILY_ORDER = ["Deep nets", "Boosting", "Probab. models", "SVM", "k-NN", "Linear"]


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
                 "test time per 1,000 images (ms)", "parameters", "training images",
                 "test NLL / ECE (%)", "protocol"]


def _uncertainty_cell(r: Row) -> str:
    u = r.extra.get("uncertainty")
    if u:
        return f"{u['nll']:.3f} / {u['ece']:.2f}"
    return "scores only" if r.extra.get("scores_only") else "not measured"


def render_table(rows: Sequence[Row]) -> str:
    """The comparison as a markdown table, one line per row, in the order given."""
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    for r in rows:
        method = r.label + (f" [{r.tutorial_name}]" if r.tutorial_name and r.kind == "net" else "")
        cells = [method, _fmt(r.tutorial_error, ".1f"), _fmt(r.error, ".2f"), _fmt(r.train_seconds, ".1f"),
                 _fmt(None if r.test_seconds_per_1000 is None else 1000 * r.test_seconds_per_1000, ".1f",
                      "not measured"),
                 _fmt_count(r.n_parameters), f"{r.n_train:,}" if r.n_train else "—",
                 _uncertainty_cell(r), r.protocol or "—"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


PROPERTIES = ["Adaptive features", "Hierarchical features", "End-to-end learning",
              "Leverage unlab. data", "Models uncertainty", "Easy to parallelize", "Fast training",
              "Fast at test time"]

# What each family is by construction (a fact of the algorithm as built here, not a measurement).
_DESIGN = {
    "Deep nets": {"Adaptive features": "yes (every layer is learned)",
                  "Hierarchical features": "yes (layers of learned features)",
                  "End-to-end learning": "yes (one gradient through all layers)"},
    "Boosting": {"Adaptive features": "no (thresholds on fixed pixels)",
                 "Hierarchical features": "no (a shallow sum of weak learners)",
                 "End-to-end learning": "no (greedy, one learner at a time)",
                 "Leverage unlab. data": "no (every learner needs labels)",
                 "Models uncertainty": "no (AdaBoost.MH: a weighted vote, not a probability)"},
    "Probab. models": {"Adaptive features": "yes (RBM weights are learned)",
                       "Hierarchical features": "no here (one RBM layer)",
                       "End-to-end learning": "no (RBM, then classifier, trained apart)"},
    "SVM": {"Adaptive features": "no (a fixed Gaussian kernel)", "Hierarchical features": "no",
            "Models uncertainty": "no (a margin, not a probability; Platt scaling not fitted here)",
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
        unc = [(r.method, r.extra["uncertainty"]) for r in rs if "uncertainty" in r.extra]
        if unc:
            scores_only = [r.method for r in rs if r.extra.get("scores_only")]
            if len(unc) == 1:
                m, u = unc[0]
                text = f"{m}: test NLL {u['nll']:.3g} nats, ECE {u['ece']:.2f} %"
            else:
                nll, ece = [u["nll"] for _, u in unc], [u["ece"] for _, u in unc]
                text = (f"test NLL {min(nll):.3g}–{max(nll):.3g} nats, ECE {min(ece):.2f}–{max(ece):.2f} % "
                        f"({', '.join(m for m, _ in unc)})")
            if scores_only:
                text += f"; {', '.join(scores_only)}: scores, not probabilities"
            cells["Models uncertainty"] = text + " [measured]"
        speedups = [(r.method, r.extra["parallel"]) for r in rs if "parallel" in r.extra]
        if speedups:
            n = speedups[0][1]["n_train"]
            cells["Easy to parallelize"] = (
                "; ".join(f"{m}: {p['speedup']:.2f}x" for m, p in speedups)
                + f" with {speedups[0][1]['workers'][-1]} threads over 1 (fit + predict, {n:,} images) [measured]")
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


def report(rows: Sequence[Row], out_dir: str | Path, stem: str = "compare", meta: dict | None = None,
           measured: dict | None = None) -> str:
    """Write ``out_dir/<stem>.json`` and ``out_dir/<stem>.png`` (and ``<stem>_rounds.png``, the
    error-vs-rounds curves of the boosting rows); return both markdown tables."""
    from visionnets.viz.compare import plot_comparison

    out_dir = Path(out_dir)
    write_json(out_dir / f"{stem}.json", rows, meta, measured)
    plot_comparison(out_dir / f"{stem}.png", rows, title=f"{(meta or {}).get('dataset', '')} test error".strip())
    if any("error_by_round" in r.extra for r in rows):
        from visionnets.viz.compare import plot_error_by_round

        plot_error_by_round(out_dir / f"{stem}_rounds.png", rows)
    return render_table(rows) + "\n\n" + render_properties(properties(rows, measured))
