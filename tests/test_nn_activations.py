"""Abs rectification and activations by name."""

import pytest
import torch
from torch.autograd import gradcheck

from visionnets.errors import ConfigError
from visionnets.nn import Abs, make_activation


def test_abs_and_its_gradient():
    x = torch.tensor([-2.0, 0.0, 3.0], requires_grad=True)
    y = Abs()(x)
    assert torch.equal(y, torch.tensor([2.0, 0.0, 3.0]))
    y.sum().backward()
    assert torch.equal(x.grad, torch.tensor([-1.0, 0.0, 1.0]))
    z = torch.randn(3, 4, dtype=torch.float64)
    assert gradcheck(Abs(), ((z + 0.1 * z.sign()).requires_grad_(),))


@pytest.mark.parametrize("name,ref", [("relu", torch.relu), ("tanh", torch.tanh), ("sigmoid", torch.sigmoid),
                                      ("abs", torch.abs), ("none", lambda t: t), ("identity", lambda t: t)])
def test_make_activation(name, ref):
    x = torch.randn(5)
    assert torch.equal(make_activation(name)(x), ref(x))
    assert make_activation(name) is not make_activation(name)  # a fresh module each time


def test_unknown_name():
    with pytest.raises(ConfigError, match="unknown name 'gelu'.*relu, tanh, sigmoid, abs, none, identity"):
        make_activation("gelu")
