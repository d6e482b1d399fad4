"""The worst-classified examples: the highest cross-entropy loss ``-log p(true class | x)``.

Misclassified examples with a confident wrong answer come first.

    >>> import torch
    >>> scores = torch.tensor([[5.0, 0.0], [0.0, 5.0], [0.0, 1.0]])
    >>> w = worst_examples(scores, torch.tensor([0, 0, 1]), k=2)
    >>> w.indices.tolist(), w.y_pred.tolist()
    ([1, 2], [1, 1])
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from visionnets.viz.confusion import class_probabilities
from visionnets.viz.grid import as_images, draw_labeled_grid, new_figure, save_figure


@dataclass
class Worst:
    """The ``k`` worst examples, worst first."""

    indices: torch.Tensor   # (k,) into the split
    y_true: torch.Tensor    # (k,)
    y_pred: torch.Tensor    # (k,)
    p_true: torch.Tensor    # (k,) probability given to the true class
    p_pred: torch.Tensor    # (k,) probability given to the predicted class


def worst_examples(outputs: torch.Tensor, y: torch.Tensor, k: int = 16,
                   num_classes: int | None = None) -> Worst:
    """Rank examples by the probability the model gives their true class (lowest first)."""
    num_classes = num_classes or outputs.shape[1]
    p = class_probabilities(outputs.float().cpu(), num_classes)
    y = y.reshape(-1).long().cpu()
    p_true = p.gather(1, y[:, None])[:, 0]
    p_pred, y_pred = p.max(1)
    idx = p_true.argsort()[:k]
    return Worst(idx, y[idx], y_pred[idx], p_true[idx], p_pred[idx])


def plot_worst(x: torch.Tensor, worst: Worst, path: str | os.PathLike,
               class_names: list[str] | None = None, image_shape=None, ncols: int = 8,
               title: str | None = None) -> Path:
    """Draw the worst examples with ``true -> predicted (p)`` written under each."""
    images = as_images(x[worst.indices].float(), image_shape)
    n = len(images)
    ncols = min(ncols, max(n, 1))
    nrows = max(1, -(-n // ncols))
    fig = new_figure(1.0 * ncols, 1.45 * nrows + 0.4)
    name = (lambda c: class_names[c]) if class_names else str
    labels = [f"{name(t)} -> {name(q)}\np={p:.2f}" for t, q, p in
              zip(worst.y_true.tolist(), worst.y_pred.tolist(), worst.p_pred.tolist())]
    colors = ["firebrick" if t != q else "black" for t, q in zip(worst.y_true.tolist(), worst.y_pred.tolist())]
    draw_labeled_grid(fig.add_subplot(1, 1, 1), images, labels, ncols, colors,
                      title or f"worst {n} examples (true -> predicted, p of predicted)")
    return save_figure(fig, path)
