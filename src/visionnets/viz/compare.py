"""The comparison's bar chart: measured test error against the tutorial's, one bar pair per method.

    >>> import tempfile, pathlib
    >>> from visionnets.baselines.compare import Row
    >>> row = Row("knn", "k-NN", "baseline", "K-NN", 5.0, 3.1, 1.0, 2.0, 100, 1000, 100, "here")
    >>> plot_comparison(pathlib.Path(tempfile.mkdtemp()) / "cmp.png", [row]).name
    'cmp.png'
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from visionnets.io import atomic_write


def plot_comparison(path: str | Path, rows: Sequence, title: str = "") -> Path:
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




def plot_error_by_round(path: str | Path, rows: Sequence) -> Path:
    """Test error after each boosting round (the rows with ``extra["error_by_round"]``), log-log,
    with the tutorial's error as a dashed line where it has one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for r in rows:
        curve = r.extra.get("error_by_round")
        if not curve:
            continue
        line, = ax.plot(np.arange(1, len(curve) + 1), curve, label=f"{r.label}: {curve[-1]:.2f}% after {len(curve)}")
        if r.tutorial_error is not None:
            ax.axhline(r.tutorial_error, ls="--", color=line.get_color(), lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("boosting rounds")
    ax.set_ylabel("test error (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return path
