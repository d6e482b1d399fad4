"""The tutorial's toy regression: one input, one output, ``y = cos(x)`` on an interval.

"1 input & 1 output, 3 hidden layers, 1000 hiddens, regression of cosine" (CVPR 2012 part II,
toy example). Training inputs are drawn uniformly from ``[low, high]`` with ``seed`` and their
targets get Gaussian noise of standard deviation ``noise``; test inputs are evenly spaced over
the interval with noise-free targets, so the test error measures the fit to the true curve
and the test split plots as a line. ``x`` and ``y`` are float32 (N, 1); ``num_classes`` is None::

    >>> from visionnets.data import load_dataset
    >>> ds = load_dataset("cosine", n_train=100, n_test=5, low=0.0, high=3.1416)
    >>> [round(v, 3) for v in ds.test.y.squeeze(1).tolist()]
    [1.0, 0.707, -0.0, -0.707, -1.0]
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import pydantic
import torch

from visionnets.data.base import Dataset, Split, carve_validation
from visionnets.data.catalog import DATASETS
from visionnets.errors import ConfigError


def cosine_split(n: int, low: float, high: float, noise: float = 0.0,
                 generator: torch.Generator | None = None, grid: bool = False) -> Split:
    """``n`` pairs (x, cos x + noise * N(0, 1)): x uniform in [low, high], or evenly spaced if ``grid``."""
    if grid:
        x = torch.linspace(low, high, n, dtype=torch.float64)
    else:
        x = low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)
    y = torch.cos(x)
    if noise > 0:
        y = y + noise * torch.randn(n, generator=generator, dtype=torch.float64)
    return Split(x.float().unsqueeze(1), y.float().unsqueeze(1))


@DATASETS.register("cosine")
def cosine(roots: list[Path], val_fraction: float, seed: int,
           n_train: Annotated[int, pydantic.Field(ge=1)] = 2000,
           n_test: Annotated[int, pydantic.Field(ge=1)] = 500,
           low: float = -math.pi, high: float = math.pi,
           noise: Annotated[float, pydantic.Field(ge=0)] = 0.0) -> Dataset:
    """y = cos(x) on [low, high]: 1 input, 1 output (regression); noise is the std of N(0, 1) noise."""
    if not high > low:
        raise ConfigError(f"data.options.high: must be greater than low ({low}), got {high}")
    g = torch.Generator().manual_seed(seed)
    train, val = carve_validation(cosine_split(n_train, low, high, noise, g), val_fraction, seed)
    test = cosine_split(n_test, low, high, grid=True)
    return Dataset("cosine", train, val, test, (1,), None, None,
                   info={"function": "cos", "interval": [low, high], "noise": noise})
