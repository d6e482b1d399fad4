"""Subtractive, divisive and local contrast normalization against a loop reference; gradcheck."""

import pytest
import torch
from torch.autograd import gradcheck

from visionnets.errors import ConfigError
from visionnets.nn import DivisiveNorm2d, LocalContrastNorm2d, SubtractiveNorm2d
from visionnets.nn import functional as VF


def local_mean_loops(z, k, sigma):
    """m[b, i, j] = sum_{c,p,q in image} g_pq z[b,c,i+p,j+q] / C / sum_{p,q in image} g_pq."""
    b, c, h, w = z.shape
    g, r = VF.gaussian_window(k, sigma, dtype=z.dtype), k // 2
    m = z.new_zeros(b, h, w)
    for i in range(h):
        for j in range(w):
            total, coverage = z.new_zeros(b), 0.0
            for p in range(k):
                for q in range(k):
                    ii, jj = i + p - r, j + q - r
                    if 0 <= ii < h and 0 <= jj < w:
                        total += g[p, q] * z[:, :, ii, jj].sum(1) / c
                        coverage += g[p, q]
            m[:, i, j] = total / coverage
    return m


def lcn_loops(x, k, sigma, eps):
    v = x - local_mean_loops(x, k, sigma)[:, None]
    sig = local_mean_loops(v * v, k, sigma).clamp_min(eps * eps).sqrt()
    c = sig.mean((1, 2), keepdim=True)
    return v, v / torch.maximum(sig, c)[:, None]


@pytest.mark.parametrize("shape,k,sigma", [((2, 3, 8, 6), 5, None), ((1, 1, 7, 9), 3, 0.8),
                                           ((3, 4, 6, 6), 9, 2.0)])
def test_lcn_matches_loops(shape, k, sigma):
    x = torch.randn(shape) * 3 + 1
    v_ref, y_ref = lcn_loops(x.double(), k, sigma, 1e-4)
    torch.testing.assert_close(SubtractiveNorm2d(shape[1], k, sigma)(x), v_ref.float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(DivisiveNorm2d(shape[1], k, sigma)(v_ref.float()), y_ref.float(),
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(LocalContrastNorm2d(shape[1], k, sigma)(x), y_ref.float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 3, 10, 7), (1, 1, 64, 64), (3, 8, 33, 17), (1, 3, 200, 200)])
@pytest.mark.parametrize("value", [5.0, -2.0, 1e-3, 1234.5])
def test_constant_image_maps_to_zero_everywhere(shape, value):
    x = torch.full(shape, value)
    x[0] = -value                                                     # each example its own constant
    assert SubtractiveNorm2d(shape[1], 9)(x).abs().max() == 0
    assert LocalContrastNorm2d(shape[1], 9)(x).abs().max() == 0       # no rounding residue / eps
    assert LocalContrastNorm2d(shape[1], 9)(x.double()).abs().max() == 0


def test_window_is_normalized_over_maps_and_neighbourhood():
    g = VF.gaussian_window(9)
    assert abs(g.sum().item() - 1) < 1e-6 and g[4, 4] == g.max() and torch.allclose(g, g.T)
    # one bright pixel in one map lowers the other maps around it by the same mean
    x = torch.zeros(1, 2, 9, 9)
    x[0, 0, 4, 4] = 1.0
    v = SubtractiveNorm2d(2, 9)(x)
    assert torch.allclose(v[0, 1], v[0, 0] - x[0, 0], atol=1e-7)
    assert v[0, 1, 4, 4] < 0


def test_divisive_uses_mean_sigma_as_threshold():
    # a low-contrast region is divided by the map's mean sigma, not blown up
    v = torch.zeros(1, 1, 16, 16)
    v[..., :8] = torch.randn(1, 1, 16, 8) * 10
    v[..., 8:] = torch.randn(1, 1, 16, 8) * 0.01
    y = DivisiveNorm2d(1, 5)(v)
    assert y[..., 12:].abs().max() < 0.1
    assert y.isfinite().all()


@pytest.mark.parametrize("fn", [VF.subtractive_norm2d, VF.divisive_norm2d, VF.local_contrast_norm2d])
def test_gradcheck(fn):
    x = torch.randn(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda x: fn(x, 3), (x,))


def test_gradient_finite_on_constant_input():
    x = torch.ones(1, 2, 6, 6, requires_grad=True)
    LocalContrastNorm2d(2, 5)(x).sum().backward()
    assert x.grad.isfinite().all()


def test_errors():
    with pytest.raises(ConfigError, match="odd"):
        LocalContrastNorm2d(3, kernel_size=4)
    with pytest.raises(ConfigError, match=r"expected input \(B, 3, H, W\) or \(3, H, W\), got shape \(1, 2, 8, 8\)"):
        LocalContrastNorm2d(3)(torch.randn(1, 2, 8, 8))
    with pytest.raises(ConfigError, match="sigma"):
        SubtractiveNorm2d(3, sigma=0.0)


def test_symmetric_blur_is_self_adjoint_and_twice_differentiable():
    """The blur's hand-written backward equals autograd through the two 1-D convolutions."""
    from torch.autograd import gradgradcheck

    from visionnets.nn.functional import _SymmetricBlur, gaussian_window

    g = gaussian_window((7, 1), 1.3, dtype=torch.float64).view(7)
    m = torch.randn(3, 1, 9, 6, dtype=torch.float64, requires_grad=True)
    ref = torch.nn.functional.conv2d(torch.nn.functional.conv2d(m, g.view(1, 1, 7, 1), padding=(3, 0)),
                                     g.view(1, 1, 1, 7), padding=(0, 3))
    out = _SymmetricBlur.apply(m, g)
    torch.testing.assert_close(out, ref)
    w = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad(out, m, w)[0], torch.autograd.grad(ref, m, w)[0])
    assert gradcheck(lambda t: _SymmetricBlur.apply(t, g), (m,))
    assert gradgradcheck(lambda t: _SymmetricBlur.apply(t, g), (m,))
