"""The fit of a 1-D regression (the tutorial's cosine toy): prediction against truth.

    >>> import torch
    >>> from visionnets.data.base import Dataset, Split
    >>> x = torch.linspace(-3, 3, 40)[:, None]
    >>> ds = Dataset("toy", Split(x, x.cos()), None, Split(x, x.cos()), (1,))
    >>> is_1d_regression(ds)
    True
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from visionnets.data.base import Dataset
from visionnets.errors import ConfigError
from visionnets.viz.confusion import predict
from visionnets.viz.grid import new_figure, save_figure


def is_1d_regression(dataset: Dataset) -> bool:
    """True for a regression dataset with one input and one target per example."""
    y = dataset.train.y
    return (not dataset.is_classification and tuple(dataset.input_shape) == (1,)
            and (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)))


def plot_fit(model: nn.Module, dataset: Dataset, path: str | os.PathLike, points: int = 400,
             title: str | None = None) -> Path:
    """Scatter the training and test targets and draw the model's prediction on a dense grid
    spanning the inputs."""
    if not is_1d_regression(dataset):
        raise ConfigError(f"plot_fit needs a 1-D regression dataset (input_shape (1,), one "
                          f"target); {dataset.name!r} has input_shape {tuple(dataset.input_shape)}")
    xs = torch.cat([dataset.train.x, dataset.test.x]).reshape(-1)
    grid = torch.linspace(xs.min().item(), xs.max().item(), points)[:, None]
    pred = predict(model, grid).reshape(-1)
    fig = new_figure(6, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(dataset.train.x.reshape(-1).numpy(), dataset.train.y.reshape(-1).numpy(), s=6, alpha=0.4,
               color="tab:gray", label="train")
    order = dataset.test.x.reshape(-1).argsort()
    ax.plot(dataset.test.x.reshape(-1)[order].numpy(), dataset.test.y.reshape(-1)[order].numpy(),
            color="tab:blue", lw=1.5, label="test (truth)")
    ax.plot(grid.reshape(-1).numpy(), pred.numpy(), color="tab:red", lw=2, label="prediction")
    test_mse = ((predict(model, dataset.test.x).reshape(-1) - dataset.test.y.reshape(-1)) ** 2).mean()
    ax.set_title(title or f"{dataset.name}: prediction vs truth (test MSE {test_mse:.4g})", fontsize=10)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
