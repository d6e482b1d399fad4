"""The linear SVM (one place for Coates' classifier and the linear_svm baseline)."""

import numpy as np
import pytest
import torch
from sklearn.utils.estimator_checks import check_estimator

from visionnets.errors import ConfigError
from visionnets.svm import LinearSVM, squared_hinge_loss, train_linear


def test_squared_hinge_loss_against_a_loop():
    scores = torch.tensor([[2.0, -0.5, 0.3], [0.1, 0.2, -3.0]])
    y = torch.tensor([0, 2])
    expected = 0.0
    for s, c in zip(scores.tolist(), y.tolist()):
        for k, v in enumerate(s):
            t = 1.0 if k == c else -1.0
            expected += max(0.0, 1 - t * v) ** 2
    assert squared_hinge_loss(scores, y).item() == pytest.approx(expected)


def test_solution_is_a_stationary_point_of_the_objective():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 6, generator=g, dtype=torch.float64).float()
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    C = 10.0
    W, b = train_linear(x, y, 3, C=C, max_iter=500, device="cpu")
    W64, b64 = W.double().requires_grad_(), b.double().requires_grad_()
    obj = squared_hinge_loss(x.double() @ W64.t() + b64, y) / len(x) + 0.5 / C * W64.pow(2).sum()
    obj.backward()
    assert W64.grad.abs().max() < 1e-3 and b64.grad.abs().max() < 1e-3   # float32 solve; O(1) at W = 0


def test_follows_the_scikit_learn_contract():
    check_estimator(LinearSVM(max_iter=100))


def test_warm_start_and_errors():
    x = torch.randn(50, 4)
    y = torch.arange(50) % 2
    W, b = train_linear(x, y, 2, C=1.0, device="cpu")
    report = {}
    train_linear(x, y, 2, C=1.0, device="cpu", init=(W, b), report=report)
    assert report["n_iter"] <= 2           # already at the optimum
    with pytest.raises(ConfigError, match="C=-1"):
        train_linear(x, y, 2, C=-1)
    with pytest.raises(ConfigError, match="loss='hinge3'"):
        train_linear(x, y, 2, loss="hinge3")
    with pytest.raises(ConfigError, match="init shapes"):
        train_linear(x, y, 2, init=(torch.zeros(3, 4), torch.zeros(3)))
    with pytest.raises(ConfigError, match="1 class"):
        LinearSVM().fit(np.zeros((3, 2)), [1, 1, 1])
