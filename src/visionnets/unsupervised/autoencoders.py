"""Auto-encoders: reconstruct the input from a code that is compact, sparse or robust to noise.

The tutorial's model (part II, "Example: Auto-Encoder"):

    code            h     = f(W_e^T x + b_e)
    reconstruction  x_hat = g(W_d h + b_d)
    loss            L(x)  = ||x_hat - x||^2 + lambda * sum_j |h_j|

- ``AutoEncoder``: a bottleneck (``n_components`` < n_features) and ``lambda = 0``;
- ``SparseAutoEncoder``: ``lambda > 0`` (the tutorial's ``L(X; W) = ||W h - X||^2 + lambda sum_j |h_j|``);
- ``DenoisingAutoEncoder``: the input is corrupted (masking or Gaussian noise) before encoding,
  and the clean input is reconstructed (Vincent et al. 2010).

Weights are *tied* (``W_d = W_e``) or untied. Following ``nn.Linear``, ``encoder_[0].weight`` is
``W_e^T`` of shape (n_components, n_features); a tied decoder reads that same tensor transposed.

The math is in pure functions (``autoencoder_forward``, ``autoencoder_loss``, ``mask_noise``,
``gaussian_noise``); the estimators only own parameters and the loop.

    >>> import numpy as np
    >>> X = np.random.RandomState(0).rand(256, 20).astype(np.float32)
    >>> ae = AutoEncoder(n_components=5, n_epochs=2, random_state=0, device="cpu").fit(X)
    >>> ae.transform(X).shape
    (256, 5)
"""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from sklearn.utils.validation import check_is_fitted
from torch import nn

from visionnets.errors import ConfigError
from visionnets.nn.activations import activation_fn, make_activation
from visionnets.nn.dense import Linear
from visionnets.unsupervised._base import TorchTransformer

ACTIVATIONS = ("sigmoid", "relu", "tanh", "linear")   # the names of nn.activations an auto-encoder takes


# ---------------------------------------------------------------------------------------------
# pure functions
# ---------------------------------------------------------------------------------------------
def autoencoder_forward(x: torch.Tensor, w_enc: torch.Tensor, b_enc: torch.Tensor,
                        w_dec: torch.Tensor, b_dec: torch.Tensor | None,
                        activation: str = "sigmoid", decoder_activation: str = "linear"
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Code and reconstruction: ``h = f(x W_e + b_e)``, ``x_hat = g(h W_d^T + b_d)``.

    Shapes: x (B, D); w_enc (K, D) (= W_e^T, as ``nn.Linear``); b_enc (K,); w_dec (D, K);
    b_dec (D,) or None. Returns h (B, K) and x_hat (B, D). A tied auto-encoder passes
    ``w_dec = w_enc.t()``.
    """
    h = activation_fn(activation)(F.linear(x, w_enc, b_enc))
    x_hat = activation_fn(decoder_activation)(F.linear(h, w_dec, b_dec))
    return h, x_hat


def reconstruction_error(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``mean_n ||x_hat_n - x_n||^2``: squared error summed over features, averaged over the batch."""
    return (x_hat - x).pow(2).sum(dim=1).mean()


def sparsity_penalty(h: torch.Tensor) -> torch.Tensor:
    """``mean_n sum_j |h_nj|``: the L1 norm of the code, averaged over the batch."""
    return h.abs().sum(dim=1).mean()


def autoencoder_loss(x: torch.Tensor, w_enc: torch.Tensor, b_enc: torch.Tensor,
                     w_dec: torch.Tensor, b_dec: torch.Tensor | None, sparsity: float = 0.0,
                     activation: str = "sigmoid", decoder_activation: str = "linear",
                     x_input: torch.Tensor | None = None) -> torch.Tensor:
    """``mean_n ||g(W_d h_n + b_d) - x_n||^2 + lambda * sum_j |h_nj|`` with ``h_n = f(W_e^T x~_n + b_e)``.

    ``x_input`` is the (possibly corrupted) input fed to the encoder; the target is always the
    clean ``x``. With ``sparsity = lambda = 0`` this is the plain auto-encoder loss.

    >>> x = torch.rand(4, 6, dtype=torch.float64)
    >>> w = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    >>> loss = autoencoder_loss(x, w, torch.zeros(3, dtype=torch.float64), w.t(), None, sparsity=0.1)
    >>> loss.backward(); w.grad.shape
    torch.Size([3, 6])
    """
    h, x_hat = autoencoder_forward(x if x_input is None else x_input, w_enc, b_enc, w_dec, b_dec,
                                   activation, decoder_activation)
    loss = reconstruction_error(x_hat, x)
    if sparsity:
        loss = loss + sparsity * sparsity_penalty(h)
    return loss


def mask_noise(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Masking corruption: each input set to 0 with probability ``p``."""
    keep = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) >= p
    return x * keep


def gaussian_noise(x: torch.Tensor, std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Additive isotropic Gaussian corruption ``x + std * N(0, I)``."""
    return x + std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


# ---------------------------------------------------------------------------------------------
# torch modules (what gets stacked into nets)
# ---------------------------------------------------------------------------------------------
class TiedLinear(nn.Module):
    """The transpose of another ``nn.Linear``: ``y = h W + b``, sharing ``W`` (no copy)."""

    def __init__(self, linear: nn.Linear, bias: bool = True):
        super().__init__()
        self.linear = linear  # registered, so the shared weight is one parameter
        self.bias = nn.Parameter(torch.zeros(linear.in_features, device=linear.weight.device)) if bias else None

    @property
    def weight(self) -> torch.Tensor:
        """The decoder matrix W_d (n_features, n_components), i.e. the encoder's weight transposed."""
        return self.linear.weight.t()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.linear.weight.t(), self.bias)


class AutoEncoderModule(nn.Module):
    """``encoder`` then ``decoder``; ``forward`` returns ``(code, reconstruction)``."""

    def __init__(self, encoder: nn.Sequential, decoder: nn.Sequential):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return h, self.decoder(h)


# ---------------------------------------------------------------------------------------------
# estimators
# ---------------------------------------------------------------------------------------------
class AutoEncoder(TorchTransformer):
    """An auto-encoder trained by mini-batch back-propagation of ``||x_hat - x||^2``.

    Parameters
    ----------
    n_components : int            size of the code (a bottleneck when < n_features)
    activation : str              encoder non-linearity f: sigmoid, relu, tanh or linear
    decoder_activation : str      g: linear (real-valued data) or sigmoid (data in [0, 1])
    tied : bool                   W_d = W_e (one matrix) or two independent matrices
    learning_rate, optimizer      Adam (default) or SGD with momentum 0.9
    weight_decay : float          L2 penalty on the weights
    batch_size, n_epochs          mini-batch size and passes over the data in ``fit``
    device : str                  "auto" (CUDA when present), "cpu" or "cuda"
    random_state : int | None     seeds initialization, shuffling and noise
    verbose : bool                a tqdm bar with the epoch's loss

    Fitted attributes: ``encoder_`` (nn.Sequential(Linear, act)), ``decoder_``, ``module_``,
    ``components_`` (n_components, n_features) = encoder weights, ``history_`` (per-epoch
    loss), ``n_iter_``, ``n_features_in_``.
    """

    _sparsity_default = 0.0

    def __init__(self, n_components: int = 64, activation: str = "sigmoid",
                 decoder_activation: str = "linear", tied: bool = True, learning_rate: float = 1e-3,
                 optimizer: str = "adam", weight_decay: float = 0.0, batch_size: int = 128,
                 n_epochs: int = 10, device: str = "auto", random_state=None, verbose: bool = False,
                 n_threads: int | None = None):
        self.n_components = n_components
        self.activation = activation
        self.decoder_activation = decoder_activation
        self.tied = tied
        self.learning_rate = learning_rate
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.n_threads = n_threads

    # ---- what subclasses change -------------------------------------------------------------
    def _sparsity(self) -> float:
        return 0.0

    def _corrupt(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return x

    # ---- hooks ------------------------------------------------------------------------------
    def _check_params(self) -> None:
        super()._check_params()
        name = type(self).__name__
        if not isinstance(self.n_components, numbers.Integral) or self.n_components < 1:
            raise ConfigError(f"{name}: n_components={self.n_components!r}; expected an int >= 1")
        for key in ("activation", "decoder_activation"):
            if getattr(self, key) not in ACTIVATIONS:
                raise ConfigError(f"{name}: {key}={getattr(self, key)!r}; expected one of {ACTIVATIONS}")
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"{name}: optimizer={self.optimizer!r}; expected 'adam' or 'sgd'")

    def _init_state(self, n_features: int, generator: torch.Generator, x: torch.Tensor) -> None:
        k, dev = self.n_components, self.device_
        enc = Linear(n_features, k, device=dev)
        bound = (6.0 / (n_features + k)) ** 0.5  # Glorot uniform
        if self.activation == "sigmoid":
            bound *= 4.0
        with torch.no_grad():
            enc.weight.copy_((torch.rand(k, n_features, generator=generator, device=dev) * 2 - 1) * bound)
            enc.bias.zero_()
        self.encoder_ = nn.Sequential(enc, make_activation(self.activation))
        if self.tied:
            dec = TiedLinear(enc)
        else:
            dec = Linear(k, n_features, device=dev)
            with torch.no_grad():
                dec.weight.copy_(enc.weight.t())
                dec.bias.zero_()
        self.decoder_ = nn.Sequential(dec, make_activation(self.decoder_activation))
        self.module_ = AutoEncoderModule(self.encoder_, self.decoder_)
        self._optim = self._new_optimizer()

    def _new_optimizer(self) -> torch.optim.Optimizer:
        params = list(self.module_.parameters())
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.learning_rate, weight_decay=self.weight_decay)
        return torch.optim.SGD(params, lr=self.learning_rate, momentum=0.9, weight_decay=self.weight_decay)

    def _weights(self):
        enc = self.encoder_[0]
        dec = self.decoder_[0]
        w_dec = enc.weight.t() if self.tied else dec.weight
        return enc.weight, enc.bias, w_dec, dec.bias

    def _train_batch(self, xb: torch.Tensor, generator: torch.Generator) -> dict:
        w_e, b_e, w_d, b_d = self._weights()
        x_in = self._corrupt(xb, generator)
        h, x_hat = autoencoder_forward(x_in, w_e, b_e, w_d, b_d, self.activation, self.decoder_activation)
        rec = reconstruction_error(x_hat, xb)
        lam = self._sparsity()
        loss = rec + lam * sparsity_penalty(h) if lam else rec
        self._optim.zero_grad(set_to_none=True)
        loss.backward()
        self._optim.step()
        self._after_step()
        return {"loss": loss.detach(), "reconstruction_error": rec.detach()}

    def _after_step(self) -> None:
        """Hook: projections after an update (the sparse auto-encoder bounds decoder columns)."""

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder_(x)

    # ---- public helpers ---------------------------------------------------------------------
    @property
    def components_(self) -> torch.Tensor:
        """The encoder filters W_e^T, (n_components, n_features), detached on the learner's device."""
        return self.encoder_[0].weight.detach()

    def reconstruct(self, X):
        """``x_hat = g(W_d f(W_e^T x + b_e) + b_d)`` for each row of ``X``."""
        check_is_fitted(self, "n_iter_")
        x, was_tensor = self._to_tensor(X, reset=False)
        out = self._batched(lambda t: self.module_(t)[1], x)
        return out if was_tensor else out.cpu().numpy()

    def score(self, X, y=None) -> float:
        """Minus the mean squared reconstruction error (higher is better, as scikit-learn expects)."""
        x, _ = self._to_tensor(X, reset=False)
        x_hat = self.reconstruct(x)
        return -float(reconstruction_error(x_hat, x))


class SparseAutoEncoder(AutoEncoder):
    """The tutorial's sparse auto-encoder: ``L(X; W) = ||W h - X||^2 + lambda * sum_j |h_j|``.

    ``h = sigmoid(W_e^T X + b_e)`` (``activation="sigmoid"``) or rectified (``"relu"``). Code may
    be over-complete (``n_components`` > n_features): sparsity, not the bottleneck, keeps it
    from copying the input. With untied weights each decoder column is projected back to norm
    <= 1 after every step, so the penalty cannot be dodged by shrinking the code and growing W_d.

    Extra parameter: ``sparsity`` (lambda, default 0.1).

    >>> import numpy as np
    >>> X = np.random.RandomState(0).randn(300, 16).astype(np.float32)
    >>> sae = SparseAutoEncoder(n_components=32, sparsity=0.5, activation="relu", n_epochs=3,
    ...                         random_state=0, device="cpu").fit(X)
    >>> sae.transform(X).shape
    (300, 32)
    """

    def __init__(self, n_components: int = 64, sparsity: float = 0.1, activation: str = "sigmoid",
                 decoder_activation: str = "linear", tied: bool = True, learning_rate: float = 1e-3,
                 optimizer: str = "adam", weight_decay: float = 0.0, batch_size: int = 128,
                 n_epochs: int = 10, device: str = "auto", random_state=None, verbose: bool = False,
                 n_threads: int | None = None):
        super().__init__(n_components=n_components, activation=activation,
                         decoder_activation=decoder_activation, tied=tied, learning_rate=learning_rate,
                         optimizer=optimizer, weight_decay=weight_decay, batch_size=batch_size,
                         n_epochs=n_epochs, device=device, random_state=random_state, verbose=verbose, n_threads=n_threads)
        self.sparsity = sparsity

    def _check_params(self) -> None:
        super()._check_params()
        if not isinstance(self.sparsity, numbers.Real) or self.sparsity < 0:
            raise ConfigError(f"SparseAutoEncoder: sparsity={self.sparsity!r}; expected a float >= 0")

    def _sparsity(self) -> float:
        return float(self.sparsity)

    def _after_step(self) -> None:
        if not self.tied:
            with torch.no_grad():
                w = self.decoder_[0].weight  # (D, K): columns are dictionary elements
                w.div_(w.norm(dim=0, keepdim=True).clamp_min(1.0))


class DenoisingAutoEncoder(AutoEncoder):
    """Reconstruct the clean ``x`` from a corrupted ``x~``: ``L = ||g(W_d f(W_e^T x~ + b_e) + b_d) - x||^2``.

    Extra parameters: ``noise`` ("mask": each input zeroed with probability ``noise_level``;
    "gaussian": ``x + noise_level * N(0, I)``) and ``noise_level`` (default 0.25).
    ``transform`` encodes the clean input.
    """

    def __init__(self, n_components: int = 64, noise: str = "mask", noise_level: float = 0.25,
                 activation: str = "sigmoid", decoder_activation: str = "linear", tied: bool = True,
                 learning_rate: float = 1e-3, optimizer: str = "adam", weight_decay: float = 0.0,
                 batch_size: int = 128, n_epochs: int = 10, device: str = "auto", random_state=None,
                 verbose: bool = False,
                 n_threads: int | None = None):
        super().__init__(n_components=n_components, activation=activation,
                         decoder_activation=decoder_activation, tied=tied, learning_rate=learning_rate,
                         optimizer=optimizer, weight_decay=weight_decay, batch_size=batch_size,
                         n_epochs=n_epochs, device=device, random_state=random_state, verbose=verbose, n_threads=n_threads)
        self.noise = noise
        self.noise_level = noise_level

    def _check_params(self) -> None:
        super()._check_params()
        if self.noise not in ("mask", "gaussian"):
            raise ConfigError(f"DenoisingAutoEncoder: noise={self.noise!r}; expected 'mask' or 'gaussian'")
        if not isinstance(self.noise_level, numbers.Real) or self.noise_level < 0 or (
                self.noise == "mask" and self.noise_level >= 1):
            raise ConfigError(f"DenoisingAutoEncoder: noise_level={self.noise_level!r}; expected >= 0 "
                              f"(and < 1 for masking)")

    def _corrupt(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.noise == "mask":
            return mask_noise(x, self.noise_level, generator)
        return gaussian_noise(x, self.noise_level, generator)
