"""The local stage of Le et al. 2012: decoder is the adjoint, loss vs reference and gradcheck, training."""

import pytest
import torch

from visionnets.nn import functional as VF
from visionnets.unsupervised.local_stage import LocalStage, local_decode, local_stage_loss, train_local_stage

D64 = torch.float64


def test_decoder_is_the_adjoint_of_local_filtering():
    """<W x, z> = <x, W^T z> for every x, z: local_decode with the encoder's weight is its transpose."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4, 4, 3, 2, 3, 3, generator=g, dtype=D64)        # 9x9 input, kernel 3, stride 2 -> 4x4
    x = torch.randn(2, 2, 9, 9, generator=g, dtype=D64)
    z = torch.randn(2, 3, 4, 4, generator=g, dtype=D64)
    lhs = (VF.locally_connected2d(x, w, None, 2, 0) * z).sum()
    rhs = (x * local_decode(z, w, (9, 9), 2, 0)).sum()
    assert lhs.item() == pytest.approx(rhs.item(), rel=1e-12)


def test_local_stage_loss_reference_and_gradcheck():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 6, 6, generator=g, dtype=D64)
    we = torch.randn(4, 4, 2, 1, 3, 3, generator=g, dtype=D64, requires_grad=True)
    wd = torch.randn(4, 4, 2, 1, 3, 3, generator=g, dtype=D64, requires_grad=True)
    parts = local_stage_loss(x, we, wd, sparsity=0.3, pool_size=3, eps=1e-2)
    # plain reference: loops over locations and units
    rec_ref, sp_ref = 0.0, 0.0
    we0, wd0 = we.detach(), wd.detach()
    for b in range(2):
        z = torch.zeros(2, 4, 4, dtype=D64)
        xh = torch.zeros(1, 6, 6, dtype=D64)
        for i in range(4):
            for j in range(4):
                patch = x[b, :, i:i + 3, j:j + 3]
                for k in range(2):
                    z[k, i, j] = (we0[i, j, k] * patch).sum()
        for i in range(4):
            for j in range(4):
                for k in range(2):
                    xh[:, i:i + 3, j:j + 3] += wd0[i, j, k] * z[k, i, j]
        rec_ref += float(((xh - x[b]) ** 2).sum())
        zp = torch.nn.functional.pad(z, (1, 1, 1, 1))
        for k in range(2):
            for i in range(4):
                for j in range(4):
                    sp_ref += float(torch.sqrt((zp[k, i:i + 3, j:j + 3] ** 2).sum() + 1e-2))
    assert parts["reconstruction_error"].item() == pytest.approx(rec_ref / 2, rel=1e-10)
    assert parts["sparsity"].item() == pytest.approx(sp_ref / 2, rel=1e-10)
    assert torch.autograd.gradcheck(lambda a, b: local_stage_loss(x, a, b, 0.3, 3, eps=1e-2)["loss"], (we, wd))


def test_local_stage_trains_and_keeps_shapes():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(2)
    # images made of a few oriented bars: there is structure to learn
    x = torch.zeros(128, 1, 10, 10)
    for n in range(128):
        r, c = torch.randint(0, 10, (2,), generator=g).tolist()
        if n % 2:
            x[n, 0, r, :] = 1.0
        else:
            x[n, 0, :, c] = 1.0
    x = x + 0.05 * torch.randn(x.shape, generator=g)
    stage = LocalStage(1, 4, kernel_size=4, input_size=(10, 10), pool_size=3, lcn_size=3)
    before = float(stage.loss(x, 0.05)["loss"])
    hist = train_local_stage(stage, x, epochs=15, lr=1e-2, batch_size=32, sparsity=0.05)
    assert hist[-1]["loss"] < 0.5 * before
    assert float(stage.loss(x, 0.05)["reconstruction_error"]) < float((x ** 2).flatten(1).sum(1).mean())
    out = stage(x[:3])
    assert out.shape == (3, 4, 7, 7) and torch.isfinite(out).all()
    assert stage.code(x[:3]).min() > 0          # L2 pooling with eps: strictly positive
    norms = stage.decoder_weight.flatten(3).norm(dim=3)
    assert norms.max() <= 1.0 + 1e-5
