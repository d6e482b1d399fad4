"""Linear classifier (W^T X + b): a linear SVM with the ``hinge`` loss, logistic regression with
``logistic`` (or ``cross_entropy`` for its multinomial form)."""

from __future__ import annotations

import math
from collections import OrderedDict

from torch import nn

from visionnets.models.catalog import MODELS
from visionnets.nn.dense import Linear


@MODELS.register("linear")
def linear(input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    """Flatten, then one affine map to ``num_outputs`` scores.

    >>> linear((1, 8, 8), 10)
    Sequential(
      (flatten): Flatten(start_dim=1, end_dim=-1)
      (out): Linear(in_features=64, out_features=10, bias=True)
    )
    """
    out = Linear(math.prod(input_shape), num_outputs)
    nn.init.zeros_(out.weight)  # a convex problem: start at W = 0, as the tutorial's SVM
    nn.init.zeros_(out.bias)
    return nn.Sequential(OrderedDict(flatten=nn.Flatten(), out=out))
