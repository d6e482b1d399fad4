"""Reconstruction ICA (Le, Karpenko, Ngiam, Ng, NIPS 2011).

ICA's hard orthonormality constraint ``W W^T = I`` is replaced by a soft reconstruction cost:

    min_W  (1/N) sum_n [ ||W^T W x_n - x_n||^2 + lambda * sum_k g(W_k x_n) ],   g(u) = sqrt(u^2 + eps)

W is (K, D), with K possibly > D (over-complete). As in the paper's code, each row of W is
scaled to unit norm inside the objective (``W <- W / ||W_k||``), so the sparsity term cannot be
lowered by shrinking W; ``components_`` holds the normalized rows. The data should be
whitened (see ``patches.ZCA``). Optimized by L-BFGS on mini-batches (the paper's choice) or by
Adam.

    >>> import numpy as np
    >>> X = np.random.RandomState(0).laplace(size=(500, 8)).astype(np.float32)
    >>> rica = RICA(n_components=8, n_epochs=2, random_state=0, device="cpu").fit(X)
    >>> rica.transform(X).shape
    (500, 8)
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from torch import nn

from visionnets.errors import ConfigError
from visionnets.nn.dense import Linear
from visionnets.unsupervised._base import TorchTransformer


def smooth_l1(u: torch.Tensor, eps: float = 1e-2) -> torch.Tensor:
    """g(u) = sqrt(u^2 + eps), elementwise: a smooth |u| with a finite gradient at 0."""
    return torch.sqrt(u * u + eps)


def normalize_rows(w: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``W_k / sqrt(||W_k||^2 + eps)`` for each row k (differentiable)."""
    return w / torch.sqrt((w * w).sum(1, keepdim=True) + eps)


def rica_loss(w: torch.Tensor, x: torch.Tensor, sparsity: float = 0.1, eps: float = 1e-2,
              normalize: bool = True) -> torch.Tensor:
    """``(1/N) sum_n ||W^T W x_n - x_n||^2 + lambda * g(W x_n)``; w (K, D), x (N, D) -> scalar.

    >>> w = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    >>> rica_loss(w, torch.randn(10, 4, dtype=torch.float64)).backward(); w.grad.shape
    torch.Size([6, 4])
    """
    if normalize:
        w = normalize_rows(w)
    z = x @ w.t()                       # (N, K) = W x
    rec = z @ w                         # (N, D) = W^T W x
    n = x.shape[0]
    return ((rec - x) ** 2).sum() / n + sparsity * smooth_l1(z, eps).sum() / n


class RICA(TorchTransformer):
    """Reconstruction ICA filters; ``transform`` returns the linear responses ``W x``.

    Parameters
    ----------
    n_components : int      K filters (may exceed n_features: over-complete)
    sparsity : float        lambda
    epsilon : float         eps of the smooth L1 ``sqrt(u^2 + eps)``
    optimizer : str         "lbfgs" (``max_iter`` L-BFGS steps on each mini-batch) or "adam"
    learning_rate : float   Adam's step (L-BFGS uses a strong-Wolfe line search)
    max_iter : int          L-BFGS iterations per mini-batch
    batch_size, n_epochs, device, random_state, verbose   as every learner

    Fitted: ``components_`` (K, D) unit-norm rows, ``encoder_`` (nn.Linear without bias, the
    same matrix), ``decoder_`` (its transpose), ``history_``, ``n_iter_``. ``encode_smooth(X)``
    gives ``g(W x)``, the non-negative sparse code the objective penalizes.
    """

    def __init__(self, n_components: int = 64, sparsity: float = 0.1, epsilon: float = 1e-2,
                 optimizer: str = "lbfgs", learning_rate: float = 1e-2, max_iter: int = 20,
                 batch_size: int = 10000, n_epochs: int = 5, device: str = "auto",
                 random_state=None, verbose: bool = False,
                 n_threads: int | None = None):
        self.n_components = n_components
        self.sparsity = sparsity
        self.epsilon = epsilon
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.n_threads = n_threads

    def _check_params(self) -> None:
        super()._check_params()
        if not isinstance(self.n_components, numbers.Integral) or self.n_components < 1:
            raise ConfigError(f"RICA: n_components={self.n_components!r}; expected an int >= 1")
        if self.optimizer not in ("lbfgs", "adam"):
            raise ConfigError(f"RICA: optimizer={self.optimizer!r}; expected 'lbfgs' or 'adam'")
        if self.epsilon <= 0 or self.sparsity < 0:
            raise ConfigError(f"RICA: epsilon={self.epsilon!r}, sparsity={self.sparsity!r}; expected > 0 and >= 0")

    def _init_state(self, n_features, generator, x) -> None:
        w = torch.randn(self.n_components, n_features, generator=generator, device=self.device_)
        self._w = nn.Parameter(normalize_rows(w))
        self._optim = self._new_optimizer()
        self._refresh()

    def _new_optimizer(self) -> torch.optim.Optimizer:
        if self.optimizer == "lbfgs":
            return torch.optim.LBFGS([self._w], lr=1.0, max_iter=self.max_iter, history_size=20,
                                     line_search_fn="strong_wolfe")
        return torch.optim.Adam([self._w], lr=self.learning_rate)

    def _refresh(self) -> None:
        with torch.no_grad():
            self.components_ = normalize_rows(self._w.detach()).clone()
        K, D = self.components_.shape
        enc = Linear(D, K, bias=False, device=self.device_)
        dec = Linear(K, D, bias=False, device=self.device_)
        enc.weight.data = self.components_
        dec.weight.data = self.components_.t()
        self.encoder_, self.decoder_ = enc, dec

    def _train_batch(self, xb, generator) -> dict:
        def closure():
            self._optim.zero_grad(set_to_none=True)
            loss = rica_loss(self._w, xb, self.sparsity, self.epsilon)
            loss.backward()
            return loss

        if self.optimizer == "lbfgs":
            self._optim.step(closure)
            with torch.no_grad():
                loss = rica_loss(self._w, xb, self.sparsity, self.epsilon)
        else:
            loss = closure().detach()
            self._optim.step()
        return {"loss": loss}

    def _end_epoch(self, x, record) -> None:
        self._refresh()

    def _encode(self, x):
        return x @ self.components_.t()

    def encode_smooth(self, X):
        """``g(W x) = sqrt((W x)^2 + eps)`` for each row: RICA's sparse non-negative code."""
        z = self.transform(X)
        if isinstance(z, torch.Tensor):
            return smooth_l1(z, self.epsilon)
        return np.sqrt(z * z + self.epsilon).astype(np.float32)
