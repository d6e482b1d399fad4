"""Each loss against its closed form, and the tutorial's logistic-regression gradient."""

import math

import pytest
import torch

from visionnets.errors import ConfigError
from visionnets.nn.losses import LOSSES, cross_entropy_loss, hinge_loss, logistic_loss, squared_loss


def test_squared_is_half_sum_of_squares_averaged_over_batch():
    pred = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    target = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    # example 1: 1/2 (1 + 4) = 2.5 ; example 2: 1/2 (1 + 4) = 2.5
    assert squared_loss(pred, target).item() == pytest.approx(2.5)


def test_squared_with_class_ids_uses_one_hot_targets():
    pred = torch.tensor([[0.2, 0.9, 0.1]])
    expected = 0.5 * (0.2 ** 2 + 0.1 ** 2 + 0.1 ** 2)
    assert squared_loss(pred, torch.tensor([1])).item() == pytest.approx(expected)


def test_cross_entropy_is_minus_log_softmax_of_true_class():
    s = torch.tensor([[1.0, 2.0, 3.0]])
    p = torch.softmax(s, 1)[0, 2]
    assert cross_entropy_loss(s, torch.tensor([2])).item() == pytest.approx(-math.log(p.item()), rel=1e-6)


def test_hinge_one_vs_rest_closed_form():
    s = torch.tensor([[2.0, -1.0, 0.5], [0.3, 0.2, -2.0]])
    y = torch.tensor([0, 1])
    # ex1: y=(+,-,-): max(0,1-2)=0, max(0,1-1)=0, max(0,1+0.5)=1.5 -> 1.5
    # ex2: y=(-,+,-): max(0,1+0.3)=1.3, max(0,1-0.2)=0.8, max(0,1-2)=0 -> 2.1
    assert hinge_loss(s, y).item() == pytest.approx((1.5 + 2.1) / 2)


def test_binary_hinge_and_logistic_match_tutorial_formulas():
    w = torch.tensor([0.5, -1.0])
    x = torch.tensor([[1.0, 2.0], [3.0, 1.0]])
    y = torch.tensor([1, 0])  # labels +1 and -1
    margin = (x @ w) * torch.tensor([1.0, -1.0])
    scores = (x @ w).unsqueeze(1)
    assert hinge_loss(scores, y).item() == pytest.approx(torch.clamp(1 - margin, min=0).mean().item())
    assert logistic_loss(scores, y).item() == pytest.approx(torch.log1p(torch.exp(-margin)).mean().item())


def test_logistic_gradient_is_p_minus_one_times_x_for_positive_label():
    # The tutorial: L = log(1 + exp(-W^T X)) for y = 1 has dL/dW = (p - 1) X, p = sigmoid(W^T X).
    torch.manual_seed(0)
    x = torch.randn(5, dtype=torch.float64)
    w = torch.randn(5, dtype=torch.float64, requires_grad=True)
    loss = logistic_loss((x @ w).view(1, 1), torch.tensor([1]))
    loss.backward()
    p = torch.sigmoid(x @ w).detach()
    assert torch.allclose(w.grad, (p - 1) * x)


def test_logistic_is_stable_for_large_margins():
    s = torch.tensor([[-1000.0, 1000.0]])
    assert torch.isfinite(logistic_loss(s, torch.tensor([0]))).all()


@pytest.mark.parametrize("name", ["squared", "cross_entropy", "hinge", "logistic"])
def test_gradcheck_float64(name):
    fn = LOSSES.get(name)
    s = (torch.randn(4, 3, dtype=torch.float64) * 0.37).requires_grad_()
    y = torch.tensor([0, 2, 1, 2])
    # shift scores away from the hinge's kink
    assert torch.autograd.gradcheck(lambda a: fn(a, y), (s,))


def test_shape_mismatch_names_the_shapes():
    with pytest.raises(ConfigError, match=r"\(2, 3\).*\(2, 2\)"):
        squared_loss(torch.zeros(2, 2), torch.zeros(2, 3))
