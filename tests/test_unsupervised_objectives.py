"""Each unsupervised objective against a plain reference, finite differences and gradcheck (float64)."""

import itertools
import math

import numpy as np
import pytest
import torch

from visionnets.unsupervised import autoencoders as ae
from visionnets.unsupervised import rbm as rbm_mod
from visionnets.unsupervised import rica as rica_mod
from visionnets.unsupervised.patches import squared_distances, triangle_activation

D64 = torch.float64


def _finite_difference(f, x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    g = torch.zeros_like(x)
    flat = x.view(-1)
    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + eps
        hi = f().item()
        flat[i] = old - eps
        lo = f().item()
        flat[i] = old
        g.view(-1)[i] = (hi - lo) / (2 * eps)
    return g


# ---- auto-encoders ----------------------------------------------------------------------------
@pytest.mark.parametrize("activation,decoder,sparsity", [("sigmoid", "linear", 0.0), ("sigmoid", "sigmoid", 0.3),
                                                         ("relu", "linear", 0.5), ("tanh", "linear", 0.1)])
def test_autoencoder_loss_matches_reference_and_gradcheck(activation, decoder, sparsity):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 7, generator=g, dtype=D64)
    we = torch.randn(4, 7, generator=g, dtype=D64, requires_grad=True)
    be = torch.randn(4, generator=g, dtype=D64, requires_grad=True)
    wd = torch.randn(7, 4, generator=g, dtype=D64, requires_grad=True)
    bd = torch.randn(7, generator=g, dtype=D64, requires_grad=True)
    # plain reference, one example at a time, with numpy
    act = {"sigmoid": lambda t: 1 / (1 + np.exp(-t)), "relu": lambda t: np.maximum(t, 0), "tanh": np.tanh,
           "linear": lambda t: t}
    ref = 0.0
    for n in range(5):
        h = act[activation](we.detach().numpy() @ x[n].numpy() + be.detach().numpy())
        xh = act[decoder](wd.detach().numpy() @ h + bd.detach().numpy())
        ref += ((xh - x[n].numpy()) ** 2).sum() + sparsity * np.abs(h).sum()
    got = ae.autoencoder_loss(x, we, be, wd, bd, sparsity, activation, decoder)
    assert got.item() == pytest.approx(ref / 5, rel=1e-10)
    # relu's kink: gradcheck needs inputs away from 0, which random normals give almost surely
    assert torch.autograd.gradcheck(
        lambda a, b, c, d: ae.autoencoder_loss(x, a, b, c, d, sparsity, activation, decoder), (we, be, wd, bd))


def test_sparse_autoencoder_tutorial_loss_finite_differences():
    """L(X; W) = ||W h - X||^2 + lambda sum_j |h_j|, h = sigmoid(W^T X + b), tied W."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 5, generator=g, dtype=D64)
    w = torch.randn(3, 5, generator=g, dtype=D64)
    b = torch.randn(3, generator=g, dtype=D64)
    f = lambda: ae.autoencoder_loss(x, w, b, w.t(), None, 0.2, "sigmoid", "linear")
    wg = w.clone().requires_grad_(True)
    ae.autoencoder_loss(x, wg, b, wg.t(), None, 0.2, "sigmoid", "linear").backward()
    torch.testing.assert_close(wg.grad, _finite_difference(f, w), rtol=1e-6, atol=1e-7)


def test_tied_decoder_is_encoder_transpose():
    X = np.random.RandomState(0).rand(64, 10).astype(np.float32)
    model = ae.AutoEncoder(n_components=4, tied=True, n_epochs=2, batch_size=16, random_state=0, device="cpu").fit(X)
    dec = model.decoder_[0]
    assert isinstance(dec, ae.TiedLinear)
    assert dec.weight.data_ptr() == model.encoder_[0].weight.data_ptr()     # shared storage, not a copy
    torch.testing.assert_close(dec.weight, model.encoder_[0].weight.t())
    # one parameter object: the tied matrix is trained once, not twice
    ids = [id(p) for p in model.module_.parameters()]
    assert len(ids) == len(set(ids)) == 3                                   # W, b_e, b_d
    untied = ae.AutoEncoder(n_components=4, tied=False, n_epochs=2, batch_size=16, random_state=0,
                            device="cpu").fit(X)
    assert not torch.equal(untied.decoder_[0].weight, untied.encoder_[0].weight.t())


def test_corruptions():
    g = torch.Generator().manual_seed(0)
    x = torch.ones(2000, 50)
    m = ae.mask_noise(x, 0.3, g)
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    assert abs((m == 0).float().mean().item() - 0.3) < 0.01
    n = ae.gaussian_noise(torch.zeros(2000, 50), 0.5, g)
    assert abs(n.std().item() - 0.5) < 0.01


# ---- RBM ------------------------------------------------------------------------------------------
def _states(n):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=D64)


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_rbm_free_energy_brute_force(visible):
    """F(v) = -log sum_h exp(-E(v, h)), enumerating all 2^K hidden states."""
    g = torch.Generator().manual_seed(2)
    K, D, s = 4, 3, 0.7
    w = torch.randn(K, D, generator=g, dtype=D64)
    bv = torch.randn(D, generator=g, dtype=D64)
    bh = torch.randn(K, generator=g, dtype=D64)
    v = _states(D) if visible == "bernoulli" else torch.randn(5, D, generator=g, dtype=D64)
    H = _states(K)
    ref = []
    for vi in v:
        e = rbm_mod.energy(vi.expand(len(H), D), H, w, bv, bh, visible, s)
        ref.append(-torch.logsumexp(-e, 0))
    torch.testing.assert_close(rbm_mod.free_energy(v, w, bv, bh, visible, s), torch.stack(ref))


def test_rbm_bernoulli_distribution_normalizes_and_conditionals_match():
    """p(v) = exp(-F(v)) / Z sums to 1; p(h|v), p(v|h) match the enumerated joint."""
    g = torch.Generator().manual_seed(3)
    K, D = 3, 4
    w = torch.randn(K, D, generator=g, dtype=D64)
    bv, bh = torch.randn(D, generator=g, dtype=D64), torch.randn(K, generator=g, dtype=D64)
    V, H = _states(D), _states(K)
    E = torch.stack([rbm_mod.energy(V, h.expand(len(V), K), w, bv, bh) for h in H], 1)  # (2^D, 2^K)
    logZ = torch.logsumexp(-E.reshape(-1), 0)
    p_v = torch.exp(-rbm_mod.free_energy(V, w, bv, bh) - logZ)
    assert p_v.sum().item() == pytest.approx(1.0, abs=1e-12)
    p_joint = torch.exp(-E - logZ)
    ph_ref = (p_joint @ H) / p_v[:, None]              # E[h | v]
    torch.testing.assert_close(rbm_mod.hidden_probs(V, w, bh), ph_ref)
    p_h = p_joint.sum(0)
    pv_ref = (p_joint.t() @ V) / p_h[:, None]          # E[v | h]
    torch.testing.assert_close(rbm_mod.visible_mean(H, w, bv), pv_ref)


def test_rbm_free_energy_gradcheck_and_cd_gradient():
    """dF/dW is -E[h|v] v^T: the positive-phase statistic the CD update uses."""
    g = torch.Generator().manual_seed(4)
    w = torch.randn(3, 5, generator=g, dtype=D64, requires_grad=True)
    bv = torch.randn(5, generator=g, dtype=D64, requires_grad=True)
    bh = torch.randn(3, generator=g, dtype=D64, requires_grad=True)
    v = torch.rand(4, 5, generator=g, dtype=D64)
    for vis in ("bernoulli", "gaussian"):
        assert torch.autograd.gradcheck(lambda a, b, c: rbm_mod.free_energy(v, a, b, c, vis, 0.8).sum(), (w, bv, bh))
    rbm_mod.free_energy(v, w, bv, bh).sum().backward()
    torch.testing.assert_close(w.grad, -(rbm_mod.hidden_probs(v, w, bh).t() @ v))


def test_pseudo_likelihood_matches_brute_force_conditionals():
    g = torch.Generator().manual_seed(5)
    K, D = 3, 4
    w = torch.randn(K, D, generator=g, dtype=D64)
    bv, bh = torch.randn(D, generator=g, dtype=D64), torch.randn(K, generator=g, dtype=D64)
    V = _states(D)
    pf = torch.exp(-rbm_mod.free_energy(V, w, bv, bh))   # unnormalized p(v)
    ref = []
    for i, v in enumerate(V):
        total = 0.0
        for j in range(D):
            flip = v.clone(); flip[j] = 1 - flip[j]
            k = int((flip * 2 ** torch.arange(D - 1, -1, -1, dtype=D64)).sum())
            total += math.log(pf[i] / (pf[i] + pf[k]))
        ref.append(total)
    torch.testing.assert_close(rbm_mod.pseudo_likelihood(V, w, bv, bh, chunk=5), torch.tensor(ref, dtype=D64))


# ---- RICA -------------------------------------------------------------------------------------------
def test_rica_loss_reference_finite_differences_and_gradcheck():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(7, 4, generator=g, dtype=D64)
    w = torch.randn(6, 4, generator=g, dtype=D64)
    lam, eps = 0.3, 1e-2
    wn = w / torch.sqrt((w * w).sum(1, keepdim=True) + 1e-8)
    ref = sum(float(((wn.t() @ wn @ xi - xi) ** 2).sum() + lam * torch.sqrt((wn @ xi) ** 2 + eps).sum()) for xi in x) / 7
    assert rica_mod.rica_loss(w, x, lam, eps).item() == pytest.approx(ref, rel=1e-10)
    wg = w.clone().requires_grad_(True)
    rica_mod.rica_loss(wg, x, lam, eps).backward()
    torch.testing.assert_close(wg.grad, _finite_difference(lambda: rica_mod.rica_loss(w, x, lam, eps), w),
                               rtol=1e-6, atol=1e-7)
    assert torch.autograd.gradcheck(lambda a: rica_mod.rica_loss(a, x, lam, eps, normalize=False),
                                    (w.clone().requires_grad_(True),))
    # the smooth L1 has a finite gradient at 0
    z = torch.zeros(3, dtype=D64, requires_grad=True)
    rica_mod.smooth_l1(z).sum().backward()
    assert torch.isfinite(z.grad).all() and (z.grad == 0).all()


# ---- k-means triangle ------------------------------------------------------------------------------
def test_triangle_activation_reference():
    g = torch.Generator().manual_seed(7)
    x, c = torch.randn(5, 3, generator=g, dtype=D64), torch.randn(4, 3, generator=g, dtype=D64)
    d2 = squared_distances(x, c)
    torch.testing.assert_close(d2, torch.cdist(x, c) ** 2)
    z = torch.cdist(x, c)
    torch.testing.assert_close(triangle_activation(d2), torch.clamp(z.mean(1, keepdim=True) - z, min=0))
