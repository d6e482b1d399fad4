"""The tutorial's losses, as plain functions of (scores, targets), averaged over the batch.

=================  ==========================================================  ===========
name               per-example loss                                            targets
=================  ==========================================================  ===========
``squared``        1/2 sum_i (y_i - yhat_i)^2                                   float (N, K), or class ids (one-hot)
``cross_entropy``  -sum_i y_i log yhat_i,  yhat = softmax(scores)               class ids (N,)
``hinge``          sum_k max(0, 1 - y_k s_k),  y_k = +1 for the true class,    class ids (N,)
                   -1 otherwise (one-vs-rest linear SVM)
``logistic``       sum_k log(1 + exp(-y_k s_k)),  y_k as for ``hinge``          class ids (N,)
=================  ==========================================================  ===========

The regularizer 1/2 ||W||^2 of the tutorial's SVM and logistic regression,
L = 1/2 ||W||^2 + lambda * data_term, is the optimizer's weight decay: minimizing
data_term + (1 / (2 lambda)) ||W||^2 has the same solution, so ``weight_decay = 1 / lambda``
divided by the number of training examples when the data term is a mean.

For binary problems (K = 1 score, targets in {0, 1} or {-1, +1}) ``hinge`` and ``logistic``
reduce exactly to the tutorial's max(0, 1 - y W^T X) and log(1 + exp(-y W^T X)); the gradient
of the logistic loss for y = 1 is dL/dW = (p - 1) X with p = sigmoid(W^T X).

    >>> import torch
    >>> s = torch.tensor([[2.0, -1.0, 0.5]]); y = torch.tensor([0])
    >>> round(hinge_loss(s, y).item(), 4)   # 0 + 0 + max(0, 1 + 0.5)
    1.5
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from visionnets.errors import ConfigError
from visionnets.registry import Registry

LOSSES = Registry("loss")


def _signs(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """+1 / -1 labels shaped like ``scores`` from class ids (or binary labels when K == 1)."""
    if target.dtype.is_floating_point:
        if target.shape != scores.shape:
            raise ConfigError(f"targets of shape {tuple(target.shape)} do not match scores {tuple(scores.shape)}")
        return torch.where(target > 0, 1.0, -1.0).to(scores.dtype)
    if scores.ndim != 2:
        raise ConfigError(f"scores must be (N, K), got shape {tuple(scores.shape)}")
    if scores.shape[1] == 1:  # binary: label 1 -> +1, 0 or -1 -> -1
        return torch.where(target.view(-1, 1) == 1, 1.0, -1.0).to(scores.dtype)
    return F.one_hot(target, scores.shape[1]).to(scores.dtype) * 2 - 1


@LOSSES.register("hinge")
def hinge_loss(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Linear-SVM hinge loss, one-vs-rest: mean over examples of sum_k max(0, 1 - y_k s_k)."""
    return F.relu(1 - _signs(scores, target) * scores).sum(1).mean()


@LOSSES.register("logistic")
def logistic_loss(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Logistic (log) loss, one-vs-rest: mean of sum_k log(1 + exp(-y_k s_k)), computed stably."""
    return F.softplus(-_signs(scores, target) * scores).sum(1).mean()


@LOSSES.register("cross_entropy")
def cross_entropy_loss(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy -sum_i y_i log softmax(s)_i; ``target`` class ids or a distribution (N, K)."""
    return F.cross_entropy(scores, target)


@LOSSES.register("squared")
def squared_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distance 1/2 sum_i (y_i - yhat_i)^2, averaged over the batch.

    Class-id targets are turned into one-hot vectors, so a classifier can be trained with it.
    """
    if not target.dtype.is_floating_point:
        target = F.one_hot(target, pred.shape[1]).to(pred.dtype)
    if target.shape != pred.shape:
        raise ConfigError(f"targets of shape {tuple(target.shape)} do not match predictions {tuple(pred.shape)}")
    return 0.5 * (pred - target).pow(2).sum() / pred.shape[0]


def get_loss(name: str):
    """The loss function registered as ``name``."""
    return LOSSES.get(name)
