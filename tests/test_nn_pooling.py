"""L2 / Lp pooling against loop references, gradients at zero, gradcheck, errors."""

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from visionnets.errors import ConfigError
from visionnets.nn import AvgPool2d, L2Pool2d, LpPool2d, MaxPool2d
from visionnets.nn import functional as VF


def loop_reference(x, p, kernel, stride, padding, gaussian, eps):
    """y[b, c, i, j] = (sum_{(u,v) in window} w_uv |x[b, c, i s + u, j s + v]|^p + eps)^(1/p)."""
    (kh, kw), (sh, sw), (ph, pw) = VF.pair(kernel, "k"), VF.pair(stride, "s"), VF.pair(padding, "p", 0)
    w = VF.gaussian_window((kh, kw), dtype=x.dtype) if gaussian else torch.ones(kh, kw, dtype=x.dtype)
    xp = F.pad(x, (pw, pw, ph, ph))
    oh, ow = (x.shape[2] + 2 * ph - kh) // sh + 1, (x.shape[3] + 2 * pw - kw) // sw + 1
    y = x.new_zeros(*x.shape[:2], oh, ow)
    for i in range(oh):
        for j in range(ow):
            win = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw].abs() ** p
            y[:, :, i, j] = ((win * w).sum((2, 3)) + eps) ** (1 / p)
    return y


CASES = [  # (shape, kernel, stride, padding)
    ((2, 3, 8, 6), 2, None, 0),
    ((1, 2, 9, 7), 3, 2, 1),
    ((3, 1, 7, 10), (3, 2), (1, 2), (1, 0)),
    ((1, 4, 5, 5), 5, 1, 2),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("gaussian", [False, True])
@pytest.mark.parametrize("p", [2, 1, 3.5])
def test_lp_pool_matches_loops(case, gaussian, p):
    shape, k, s, pad = case
    x = torch.randn(shape)
    layer = L2Pool2d(k, s, pad, gaussian) if p == 2 else LpPool2d(p, k, s, pad, gaussian)
    ref = loop_reference(x.double(), p, k, k if s is None else s, pad, gaussian, 1e-6)
    torch.testing.assert_close(layer(x), ref.float(), rtol=1e-5, atol=1e-5)


def test_l2_is_lp_with_p_2_and_torch_lppool_without_eps():
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(L2Pool2d(2)(x), LpPool2d(2, 2)(x))
    torch.testing.assert_close(VF.l2_pool2d(x, 2, eps=0.0), torch.nn.LPPool2d(2, 2)(x))


def test_gradient_at_zero_is_finite():
    x = torch.zeros(2, 3, 4, 4, requires_grad=True)
    L2Pool2d(2, gaussian=True)(x).sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    x.grad = None
    LpPool2d(1, 2)(x).sum().backward()
    assert x.grad.isfinite().all()
    # torch's own LPPool2d has no eps: NaN (or 0) there
    x.grad = None
    torch.nn.LPPool2d(2, 2)(x).sum().backward()
    assert not x.grad.isfinite().all() or x.grad.abs().sum() == 0


@pytest.mark.parametrize("gaussian", [False, True])
def test_l2_pool_gradcheck_at_zero_and_random(gaussian):
    zero = torch.zeros(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda x: VF.l2_pool2d(x, 2, 1, 0, gaussian), (zero,))
    x = torch.randn(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda x: VF.l2_pool2d(x, 3, 2, 1, gaussian), (x,))


@pytest.mark.parametrize("p", [1, 3])
def test_lp_pool_gradcheck(p):
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64)
    x = (x + 0.1 * x.sign()).requires_grad_()  # keep away from the kink of |x| at 0
    assert gradcheck(lambda x: VF.lp_pool2d(x, p, (2, 3), 1, 0, True), (x,))


def test_arguments_are_checked():
    with pytest.raises(ConfigError, match="p: expected a number >= 1"):
        LpPool2d(0.5, 2)
    with pytest.raises(ConfigError, match="padding"):
        L2Pool2d(2, padding=2)
    with pytest.raises(ConfigError, match="eps"):
        L2Pool2d(2, eps=-1.0)
    with pytest.raises(ConfigError, match=r"expected input \(B, C, H, W\) or \(C, H, W\)"):
        L2Pool2d(2)(torch.randn(4, 4))


def test_reexports_are_torch_pools():
    assert MaxPool2d is torch.nn.MaxPool2d and AvgPool2d is torch.nn.AvgPool2d


def test_unbatched_input_as_torch_pooling_takes_it():
    from visionnets.nn import L2Pool2d

    x = torch.randn(3, 8, 8)
    torch.testing.assert_close(L2Pool2d(2)(x), L2Pool2d(2)(x[None])[0])
    assert L2Pool2d(2)(x).shape == torch.nn.LPPool2d(2, 2)(x).shape


def test_tiled_conv_takes_the_same_path_at_every_batch_size():
    """A model traced at batch 2 runs at batch 32: the algorithm does not depend on the batch."""
    from visionnets.nn import TiledConv2d

    layer = TiledConv2d(2, 3, 3, tile_size=6, input_size=(8, 8))     # a tile as large as the output
    traced = torch.jit.trace(layer, torch.randn(2, 2, 8, 8))
    x = torch.randn(32, 2, 8, 8)
    torch.testing.assert_close(traced(x), layer(x))
