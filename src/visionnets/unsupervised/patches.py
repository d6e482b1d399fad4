"""Natural-image patches: sampling, contrast normalization, ZCA whitening, k-means.

The pre-processing of Coates, Lee & Ng (AISTATS 2011), each step a plain function or a
scikit-learn style estimator:

    p      = random r x r x C patch of an image                     extract_patches
    p_hat  = (p - mean(p)) / sqrt(var(p) + eps_norm)                normalize_patches
    x      = (p_hat - m) P,   P = U diag(1 / sqrt(S + eps_zca)) U^T  ZCA  (S, U: eigen of cov)
    z_k    = ||x - c_k||,  f_k = max(0, mean_k(z) - z_k)             KMeans(activation="triangle")

    >>> import torch
    >>> imgs = torch.rand(10, 3, 16, 16)
    >>> X = normalize_patches(extract_patches(imgs, 6, 500, random_state=0))
    >>> zca = ZCA(eps=0.1).fit(X); tuple(zca.transform(X).shape)
    (500, 108)
"""

from __future__ import annotations

import numbers
import time

import numpy as np
import torch
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from visionnets.errors import ConfigError, DataError
from visionnets.unsupervised._base import TorchTransformer, make_generator


def _images_tensor(images) -> torch.Tensor:
    x = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4:
        raise DataError(f"images have shape {tuple(x.shape)}; expected (N, C, H, W) or (N, H, W)")
    return x


def extract_patches(images, patch_size: int, n_patches: int, random_state=None) -> torch.Tensor:
    """``n_patches`` random ``patch_size`` x ``patch_size`` patches, flattened channel-major.

    images: (N, C, H, W) (or (N, H, W)), any numeric dtype -> (n_patches, C * r * r) float32.
    Each patch comes from a uniformly drawn image and position.
    """
    x = _images_tensor(images)
    n, c, h, w = x.shape
    r = int(patch_size)
    if r < 1 or r > h or r > w:
        raise DataError(f"patch_size={patch_size} does not fit images of size {h}x{w}")
    g = make_generator(random_state, torch.device("cpu"))
    idx = torch.randint(0, n, (n_patches,), generator=g)
    rows = torch.randint(0, h - r + 1, (n_patches,), generator=g)
    cols = torch.randint(0, w - r + 1, (n_patches,), generator=g)
    ar = torch.arange(r)
    ri = (rows[:, None] + ar[None, :])[:, :, None].expand(n_patches, r, r)   # (P, r, r)
    ci = (cols[:, None] + ar[None, :])[:, None, :].expand(n_patches, r, r)
    # gather the P x C x r x r pixels directly (never a copy of whole images per patch)
    patches = x[idx[:, None, None, None], torch.arange(c)[None, :, None, None], ri[:, None], ci[:, None]]
    return patches.to(torch.float32).reshape(n_patches, c * r * r)


def normalize_patches(patches, eps: float = 10.0):
    """Per-patch brightness and contrast normalization: ``(p - mean(p)) / sqrt(var(p) + eps)``.

    ``var`` is the unbiased variance over the patch's D values (as Coates et al.'s code);
    ``eps = 10`` suits pixel values in 0..255 (use about 0.01 for values in 0..1).
    Works on numpy arrays or tensors, (n, D) -> (n, D).
    """
    if isinstance(patches, torch.Tensor):
        mu = patches.mean(1, keepdim=True)
        return (patches - mu) / torch.sqrt(patches.var(1, keepdim=True, unbiased=True) + eps)
    p = np.asarray(patches, dtype=np.float32)
    return (p - p.mean(1, keepdims=True)) / np.sqrt(p.var(1, ddof=1, keepdims=True) + eps)


class ZCA(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """ZCA whitening: ``x -> (x - mean_) @ whitening_``, ``whitening_ = U diag(1/sqrt(S + eps)) U^T``.

    The whitening matrix is symmetric, so whitened patches stay as close as possible to the
    originals (edges stay edges), which is what makes filter pictures readable. ``eps``
    regularizes small eigenvalues (0.1 for contrast-normalized pixels as Coates et al.; the
    whitened covariance is ``S / (S + eps)``, close to I for the directions with S >> eps).

    Fitted: ``mean_`` (D,), ``whitening_`` (D, D), ``dewhitening_`` (D, D) its inverse,
    ``eigenvalues_`` (D,), ``n_features_in_``. Computed in float64 on the CPU. Its output
    features are its input features whitened: ``get_feature_names_out`` passes the names through.
    """

    def __init__(self, eps: float = 0.1):
        self.eps = eps

    def fit(self, X, y=None):
        if not isinstance(self.eps, numbers.Real) or self.eps < 0:
            raise ConfigError(f"ZCA: eps={self.eps!r}; expected a float >= 0")
        x = self._check(X, reset=True).astype(np.float64)
        self.mean_ = x.mean(0)
        xc = x - self.mean_
        cov = xc.T @ xc / max(x.shape[0] - 1, 1)
        s, u = np.linalg.eigh(cov)
        s = np.clip(s, 0.0, None)
        if self.eps == 0 and (s <= 1e-12).any():
            raise DataError("ZCA: covariance is singular; set eps > 0")
        self.eigenvalues_ = s
        self.whitening_ = (u * (1.0 / np.sqrt(s + self.eps))) @ u.T
        self.dewhitening_ = (u * np.sqrt(s + self.eps)) @ u.T
        return self

    def _check(self, X, reset):
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        return validate_data(self, X, reset=reset, dtype=(np.float64, np.float32), ensure_min_samples=1)

    def transform(self, X):
        """Whitened rows, same type (numpy/tensor) and dtype family as the input."""
        check_is_fitted(self, "whitening_")
        if isinstance(X, torch.Tensor):
            if X.shape[-1] != self.n_features_in_:
                raise DataError(f"X has {X.shape[-1]} features, but ZCA is expecting {self.n_features_in_} features as input")
            m = torch.as_tensor(self.mean_, dtype=X.dtype, device=X.device)
            p = torch.as_tensor(self.whitening_, dtype=X.dtype, device=X.device)
            return (X - m) @ p
        x = self._check(X, reset=False)
        return ((x - self.mean_) @ self.whitening_).astype(x.dtype)

    def inverse_transform(self, X):
        """Undo the whitening: ``x @ dewhitening_ + mean_``."""
        check_is_fitted(self, "whitening_")
        if isinstance(X, torch.Tensor):
            d = torch.as_tensor(self.dewhitening_, dtype=X.dtype, device=X.device)
            return X @ d + torch.as_tensor(self.mean_, dtype=X.dtype, device=X.device)
        x = np.asarray(X)
        return (x @ self.dewhitening_ + self.mean_).astype(x.dtype)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


# ---------------------------------------------------------------------------------------------
# k-means with the triangle activation
# ---------------------------------------------------------------------------------------------
def squared_distances(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``||x_n - c_k||^2`` for x (N, D), c (K, D) -> (N, K), clamped at 0."""
    return (x.pow(2).sum(1, keepdim=True) - 2 * x @ c.t() + c.pow(2).sum(1)).clamp_min_(0)


def triangle_activation(d2: torch.Tensor) -> torch.Tensor:
    """Coates et al.'s "k-means (triangle)": ``f_k = max(0, mean_j(z_j) - z_k)``, ``z = sqrt(d2)``."""
    z = d2.sqrt()
    return (z.mean(1, keepdim=True) - z).clamp_min_(0)


@torch.no_grad()
def kmeans_plusplus(x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """k-means++ seeding: each next center drawn with probability proportional to D(x)^2. x (N, D) -> (k, D)."""
    n = x.shape[0]
    first = torch.randint(0, n, (1,), generator=generator, device=x.device)
    centers = [x[first]]
    d2 = squared_distances(x, centers[0])[:, 0]
    for _ in range(1, k):
        total = d2.sum()
        if total <= 0:  # fewer distinct points than centers: repeat random rows
            idx = torch.randint(0, n, (1,), generator=generator, device=x.device)
        else:
            idx = torch.multinomial(d2 / total, 1, generator=generator)
        centers.append(x[idx])
        d2 = torch.minimum(d2, squared_distances(x, x[idx])[:, 0])
    return torch.cat(centers).clone()


class KMeans(TorchTransformer):
    """k-means on torch (CPU or GPU) as Coates et al.'s reference feature learner.

    ``fit``: Lloyd iterations over all of X, computed in mini-batches of ``batch_size`` rows
    (exact, not an approximation). ``partial_fit``: one mini-batch k-means sweep (Sculley
    2010; per-center learning rate 1/count). Empty clusters keep their previous center.

    ``spherical=True`` is gain-shape k-means (Coates & Ng 2012): unit-norm centers, assignment
    by the largest ``|c_k . x|``, center = normalized sum of ``(c_k . x) x``.

    ``activation``: "triangle" (``max(0, mean(z) - z_k)``), "hard" (one-hot of the nearest),
    or "linear" (``c_k . x``). Initial centers: "k-means++" (Arthur & Vassilvitskii 2007, run
    on a random subset of ``max(1000, 10 K)`` rows; the default), random rows of X ("sample"),
    or ``0.1 * N(0, I)`` as the paper's code ("randn").

    Fitted: ``cluster_centers_`` (K, D), ``counts_`` (K,), ``inertia_``, ``n_iter_``,
    ``history_``; ``encoder_`` is a module mapping x -> activation.
    """

    def __init__(self, n_clusters: int = 64, n_epochs: int = 10, spherical: bool = False,
                 activation: str = "triangle", init: str = "k-means++", batch_size: int = 4096,
                 device: str = "auto", random_state=None, verbose: bool = False,
                 n_threads: int | None = None):
        self.n_clusters = n_clusters
        self.n_epochs = n_epochs
        self.spherical = spherical
        self.activation = activation
        self.init = init
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.n_threads = n_threads

    def _check_params(self) -> None:
        super()._check_params()
        if not isinstance(self.n_clusters, numbers.Integral) or self.n_clusters < 1:
            raise ConfigError(f"KMeans: n_clusters={self.n_clusters!r}; expected an int >= 1")
        if self.activation not in ("triangle", "hard", "linear"):
            raise ConfigError(f"KMeans: activation={self.activation!r}; expected triangle, hard or linear")
        if self.init not in ("k-means++", "sample", "randn"):
            raise ConfigError(f"KMeans: init={self.init!r}; expected 'k-means++', 'sample' or 'randn'")

    def _init_state(self, n_features, generator, x) -> None:
        K = self.n_clusters
        if self.init == "randn" or x.shape[0] < K:
            c = 0.1 * torch.randn(K, n_features, generator=generator, device=self.device_)
        elif self.init == "sample":
            c = x[torch.randperm(x.shape[0], generator=generator, device=self.device_)[:K]].clone()
        else:
            m = min(x.shape[0], max(1000, 10 * K))
            sub = x[torch.randperm(x.shape[0], generator=generator, device=self.device_)[:m]]
            c = kmeans_plusplus(sub, K, generator)
        if self.spherical:
            c = c / c.norm(dim=1, keepdim=True).clamp_min(1e-8)
        self.cluster_centers_ = c
        self.counts_ = torch.zeros(K, device=self.device_)
        self.encoder_ = _KMeansEncoder(self)

    # fit = full Lloyd iterations (overrides the mini-batch loop)
    def fit(self, X, y=None):
        x = self._start(X)
        with self._threads():
            self._lloyd(x)
        return self

    def _lloyd(self, x) -> None:
        for _ in range(self.n_epochs):
            started = time.perf_counter()
            sums = torch.zeros_like(self.cluster_centers_)
            counts = torch.zeros_like(self.counts_)
            inertia = 0.0
            for lo in range(0, x.shape[0], self.batch_size):
                xb = x[lo:lo + self.batch_size]
                labels, score = self._assign(xb)
                w = score if self.spherical else torch.ones_like(score)
                sums.index_add_(0, labels, xb * w[:, None])
                counts.index_add_(0, labels, torch.ones_like(score))
                inertia += float(self._inertia(xb, labels, score))
            self._update_from_sums(sums, counts)
            self.counts_ = counts
            self.n_iter_ += 1
            self.inertia_ = inertia
            self.history_.append({"epoch": self.n_iter_, "inertia": inertia / x.shape[0],
                                  "empty_clusters": int((counts == 0).sum())})
            self._report(self.history_[-1], started)

    def _update_from_sums(self, sums, counts) -> None:
        nz = counts > 0
        if self.spherical:
            norms = sums.norm(dim=1, keepdim=True)
            nz = nz & (norms[:, 0] > 0)
            self.cluster_centers_[nz] = sums[nz] / norms[nz]
        else:
            self.cluster_centers_[nz] = sums[nz] / counts[nz, None]

    @torch.no_grad()
    def _assign(self, xb):
        if self.spherical:
            dots = xb @ self.cluster_centers_.t()
            labels = dots.abs().argmax(1)
            return labels, dots.gather(1, labels[:, None])[:, 0]
        d2 = squared_distances(xb, self.cluster_centers_)
        labels = d2.argmin(1)
        return labels, d2.gather(1, labels[:, None])[:, 0]

    def _inertia(self, xb, labels, score):
        if self.spherical:  # residual of the rank-1 fit x ~ s c
            return (xb.pow(2).sum(1) - score.pow(2)).sum()
        return score.sum()

    @torch.no_grad()
    def _train_batch(self, xb, generator) -> dict:
        """Mini-batch k-means step (Sculley 2010): c_k += (x - c_k) / count_k for each x in the batch."""
        labels, score = self._assign(xb)
        ones = torch.ones_like(score)
        bcount = torch.zeros_like(self.counts_).index_add_(0, labels, ones)
        target = xb * score[:, None] if self.spherical else xb
        bsum = torch.zeros_like(self.cluster_centers_).index_add_(0, labels, target)
        self.counts_ += bcount
        nz = bcount > 0
        eta = (bcount[nz] / self.counts_[nz])[:, None]
        mean = bsum[nz] / bcount[nz, None]
        c = self.cluster_centers_[nz] * (1 - eta) + eta * mean
        if self.spherical:
            c = c / c.norm(dim=1, keepdim=True).clamp_min(1e-8)
        self.cluster_centers_[nz] = c
        return {"inertia": self._inertia(xb, labels, score) / xb.shape[0]}

    @torch.no_grad()
    def _encode(self, x):
        if self.activation == "linear":
            return x @ self.cluster_centers_.t()
        if self.activation == "hard":
            labels, _ = self._assign(x)
            return torch.nn.functional.one_hot(labels, self.n_clusters).to(x.dtype)
        return triangle_activation(squared_distances(x, self.cluster_centers_))

    def predict(self, X):
        """Index of the nearest center for each row."""
        check_is_fitted(self, "n_iter_")
        x, was_tensor = self._to_tensor(X, reset=False)
        labels = self._batched(lambda t: self._assign(t)[0], x)
        return labels if was_tensor else labels.cpu().numpy()


class _KMeansEncoder(torch.nn.Module):
    """Module view of a fitted KMeans: x (B, D) -> activation (B, K). Holds the centers as a buffer."""

    def __init__(self, km: KMeans):
        super().__init__()
        self.km = [km]  # a list: not a sub-module, not a parameter

    def forward(self, x):
        return self.km[0]._encode(x)
