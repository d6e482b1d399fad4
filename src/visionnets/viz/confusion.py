"""Predictions and the confusion matrix of a classifier.

``cm[i, j]`` counts the examples of true class i predicted as class j, so each row sums to the
number of examples of that class and the diagonal holds the correct ones.

    >>> import torch
    >>> confusion_matrix(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 2]), 3).tolist()
    [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from visionnets.errors import ConfigError
from visionnets.viz.grid import evaluating, model_device, new_figure, save_figure


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024, precision: str = "fp32",
            channels_last: bool = False, **inputs: torch.Tensor) -> torch.Tensor:
    """The model's outputs on ``x`` (and the other named ``inputs`` of a multi-input model) in
    eval mode, batch by batch, returned on CPU in float32; computed as the run trains and
    evaluates (``precision``, ``channels_last``: its ``train`` keys)."""
    from visionnets.data.batch import Batch
    from visionnets.train.step import forward_autocast, in_layout

    device = model_device(model)
    outs = []
    with evaluating(model), forward_autocast(precision, device):
        for lo in range(0, len(x), batch_size):
            first = in_layout(Batch(x=x[lo:lo + batch_size].to(device)), channels_last)["x"]
            outs.append(model(first, **{k: v[lo:lo + batch_size].to(device) for k, v in inputs.items()}).float().cpu())
    return torch.cat(outs)


def class_probabilities(outputs: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, K) class probabilities from scores: softmax of (N, K) scores, or for a binary
    model with one output (N, 1), [1 - sigmoid, sigmoid]."""
    if outputs.ndim == 2 and outputs.shape[1] == num_classes:
        return outputs.softmax(1)
    if num_classes == 2 and outputs.reshape(len(outputs), -1).shape[1] == 1:
        p = outputs.reshape(-1).sigmoid()
        return torch.stack([1 - p, p], 1)
    raise ConfigError(f"model outputs of shape {tuple(outputs.shape)} do not score "
                      f"{num_classes} classes; expected (N, {num_classes})")


def confusion_matrix(y_true: torch.Tensor, y_pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) int64 counts: row = true class, column = predicted class."""
    y_true, y_pred = y_true.reshape(-1).long().cpu(), y_pred.reshape(-1).long().cpu()
    if len(y_true) != len(y_pred):
        raise ConfigError(f"{len(y_true)} labels but {len(y_pred)} predictions")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise ConfigError(f"{name} holds classes outside [0, {num_classes})")
    return torch.bincount(y_true * num_classes + y_pred,
                          minlength=num_classes ** 2).reshape(num_classes, num_classes)


def plot_confusion(cm: torch.Tensor, path: str | os.PathLike, class_names: list[str] | None = None,
                   title: str | None = None) -> Path:
    """Draw a confusion matrix, coloured by the fraction of each true class (row), with the
    counts written in the cells when there are at most 20 classes."""
    k = cm.shape[0]
    names = class_names if class_names and len(class_names) == k else [str(i) for i in range(k)]
    rows = cm.double() / cm.sum(1, keepdim=True).clamp_min(1)
    size = min(3 + 0.35 * k, 12)
    fig = new_figure(size + 1, size)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(rows.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7,
                            color="white" if rows[i, j] > 0.5 else "black")
    ticks = range(k) if k <= 40 else range(0, k, max(1, k // 20))
    ax.set_xticks(list(ticks), [names[t] for t in ticks], rotation=90 if k > 10 else 0, fontsize=7)
    ax.set_yticks(list(ticks), [names[t] for t in ticks], fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    err = 1 - cm.diagonal().sum().item() / max(cm.sum().item(), 1)
    ax.set_title(title or f"confusion matrix ({int(cm.sum())} examples, error {err:.2%})", fontsize=10)
    return save_figure(fig, path)
