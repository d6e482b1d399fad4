"""Restricted Boltzmann machines: a model whose distribution normalizes to 1.

Energy of a visible/hidden configuration (W: (K, D), b_v: (D,), b_h: (K,)):

    Bernoulli-Bernoulli   E(v, h) = - b_v.v - b_h.h - h.W v                     v in {0,1}^D
    Gaussian-Bernoulli    E(v, h) = ||v - b_v||^2 / (2 s^2) - b_h.h - h.W v / s   v in R^D

so that (the tutorial's "Probabilistic Model (Gaussian RBM)")

    E[h | v] = sigmoid(W v / s + b_h)       E[v | h] = b_v + s W^T h   (Gaussian)
                                            p(v=1 | h) = sigmoid(W^T h + b_v)  (Bernoulli)

and the free energy ``F(v) = -log sum_h exp(-E(v, h))`` is

    Bernoulli  F(v) = - b_v.v - sum_j softplus(W_j v + b_h_j)
    Gaussian   F(v) = ||v - b_v||^2 / (2 s^2) - sum_j softplus(W_j v / s + b_h_j)

Training follows the log-likelihood gradient approximated by contrastive divergence (CD-k:
negative samples from k Gibbs steps started at the data) or persistent CD (PCD, Tieleman
2008: the chains carry over between updates). Monitoring: reconstruction error and the
pseudo-likelihood ``sum_i log p(v_i | v_-i)``.

    >>> import numpy as np
    >>> X = (np.random.RandomState(0).rand(200, 12) > 0.5).astype(np.float32)
    >>> rbm = RBM(n_components=8, n_epochs=2, random_state=0, device="cpu").fit(X)
    >>> rbm.transform(X).shape
    (200, 8)
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted
from torch import nn

from visionnets.device import fast_bf16
from visionnets.errors import ConfigError, TrainingError
from visionnets.nn.dense import Linear, mm
from visionnets.nn.functional import uniform16
from visionnets.unsupervised._base import TorchTransformer


# ---------------------------------------------------------------------------------------------
# pure functions
# ---------------------------------------------------------------------------------------------
def energy(v: torch.Tensor, h: torch.Tensor, w: torch.Tensor, b_v: torch.Tensor, b_h: torch.Tensor,
           visible: str = "bernoulli", sigma: float = 1.0) -> torch.Tensor:
    """E(v, h) for each row: v (B, D), h (B, K), w (K, D) -> (B,)."""
    if visible == "bernoulli":
        return -(v @ b_v) - (h @ b_h) - ((h @ w) * v).sum(1)
    return ((v - b_v) ** 2).sum(1) / (2 * sigma**2) - (h @ b_h) - ((h @ w) * v).sum(1) / sigma


def free_energy(v: torch.Tensor, w: torch.Tensor, b_v: torch.Tensor, b_h: torch.Tensor,
                visible: str = "bernoulli", sigma: float = 1.0) -> torch.Tensor:
    """F(v) = -log sum_h exp(-E(v, h)) for each row of v (B, D) -> (B,). See the module docstring.

    >>> w = torch.zeros(2, 3); F_ = free_energy(torch.ones(1, 3), w, torch.zeros(3), torch.zeros(2))
    >>> round(float(F_), 4) == round(-2 * float(torch.log(torch.tensor(2.0))), 4)
    True
    """
    if visible == "bernoulli":
        return -(v @ b_v) - F.softplus(F.linear(v, w, b_h)).sum(1)
    return ((v - b_v) ** 2).sum(1) / (2 * sigma**2) - F.softplus(F.linear(v / sigma, w, b_h)).sum(1)


def hidden_probs(v, w, b_h, visible: str = "bernoulli", sigma: float = 1.0) -> torch.Tensor:
    """E[h | v] = sigmoid(W v / s + b_h): (B, D) -> (B, K)."""
    return torch.sigmoid(F.linear(v if visible == "bernoulli" else v / sigma, w, b_h))


def visible_mean(h, w, b_v, visible: str = "bernoulli", sigma: float = 1.0) -> torch.Tensor:
    """E[v | h]: sigmoid(W^T h + b_v) (Bernoulli) or b_v + s W^T h (Gaussian): (B, K) -> (B, D)."""
    if visible == "bernoulli":
        return torch.sigmoid(torch.addmm(b_v, h, w))
    return torch.addmm(b_v, h, w, alpha=sigma)


def sample_bernoulli(p: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """0/1 samples with probabilities ``p`` (same shape and dtype as ``p``).

    ``u < p * 2**16 - 2**15`` for u uniform on the integers -2**15 .. 2**15 - 1, four of them cut
    from each 64-bit random number: the same distribution as ``torch.bernoulli`` up to rounding
    p to a multiple of 2**-16 (a bias below 2e-5 in each probability, far under the sampling
    noise of a Gibbs chain), and on CPU about 8x faster for 256 x 784 samples (torch's CPU
    ``bernoulli`` draws each number separately; here one draw serves four units, from
    :func:`visionnets.nn.functional.uniform16`, and the comparison is one subtraction and a
    sign). An RBM step draws B * (D + K) of them, which cost as much as its matmuls with
    ``torch.bernoulli``.
    """
    u = uniform16(p.shape, p.device, generator).to(p.dtype)
    # sign(p * 2^16 - 2^15 - u) is 1 where u < p * 2^16 - 2^15, else 0 or -1 (clamped to 0)
    return (p * 65536.0).sub_(32768.0).sub_(u).sign_().clamp_(min=0.0)


# Below this many multiply-adds a product is too small for oneDNN's or bfloat16's fixed costs
# (measured: a 20 x 64 x 256 product takes 10 us through torch.mm, 50-75 us through oneDNN's
# inner product, 25 us in bfloat16 with its conversions; at 128 x 784 x 256 both win).
_BIG_PRODUCT = 1 << 20


def _mm(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """``a @ b`` in float32, or with its inputs rounded to ``dtype`` (bfloat16) and the result
    rounded to bfloat16 too, then widened to float32. In float32, oneDNN's inner product
    (:func:`visionnets.nn.dense.mm`) takes large products whose operands need no copy; transposed
    views (``torch.mm``'s GEMM reads them in place, where oneDNN would copy them first, which
    costs as much as the product at these sizes) and small products go to ``torch.mm``."""
    if dtype is None or dtype == a.dtype == b.dtype:
        if a.is_contiguous() and b.t().is_contiguous() and a.shape[0] * a.shape[1] * b.shape[1] >= _BIG_PRODUCT:
            return mm(a, b)
        return torch.mm(a, b)
    return (a.to(dtype) @ b.to(dtype)).float()


def gibbs_step(v, w, b_v, b_h, visible="bernoulli", sigma=1.0, generator=None):
    """One block Gibbs sweep v -> h ~ p(h|v) -> v' ~ p(v|h). Returns (v', p(h|v), h)."""
    ph = hidden_probs(v, w, b_h, visible, sigma)
    h = sample_bernoulli(ph, generator)
    mv = visible_mean(h, w, b_v, visible, sigma)
    if visible == "bernoulli":
        v2 = sample_bernoulli(mv, generator)
    else:
        v2 = mv + sigma * torch.randn(mv.shape, generator=generator, device=mv.device, dtype=mv.dtype)
    return v2, ph, h


def pseudo_likelihood(v: torch.Tensor, w: torch.Tensor, b_v: torch.Tensor, b_h: torch.Tensor,
                      chunk: int = 64) -> torch.Tensor:
    """Exact pseudo-log-likelihood ``sum_i log p(v_i | v_-i)`` of each row (Bernoulli visibles).

    ``log p(v_i | v_-i) = log sigmoid(F(v with v_i flipped) - F(v))``, flipping ``v_i -> 1 - v_i``
    (as scikit-learn's ``BernoulliRBM.score_samples``, which samples one i per row and scales by
    D; this sums all D terms, so it is deterministic). Cost O(B D K), computed ``chunk`` rows at
    a time. v (B, D) -> (B,).
    """
    out = []
    for lo in range(0, v.shape[0], chunk):
        vb = v[lo:lo + chunk]
        a = F.linear(vb, w, b_h)                          # (b, K)
        delta = 1.0 - 2.0 * vb                            # v_i' - v_i
        fe = -(vb @ b_v) - F.softplus(a).sum(1)           # (b,)
        a_flip = a.unsqueeze(1) + delta.unsqueeze(2) * w.t().unsqueeze(0)   # (b, D, K)
        fe_flip = -(vb @ b_v).unsqueeze(1) - delta * b_v - F.softplus(a_flip).sum(2)  # (b, D)
        out.append(F.logsigmoid(fe_flip - fe.unsqueeze(1)).sum(1))
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------
# estimator
# ---------------------------------------------------------------------------------------------
def auto_schedule(n_samples: int) -> tuple[int, int]:
    """``(batch_size, n_epochs)`` that ``"auto"`` gives for ``n_samples`` training rows.

    Batch: ``n_samples // 200`` within [10, 64], so an epoch makes at least about 200 updates
    (10 rows, as scikit-learn's BernoulliRBM, below 2,000 rows; 64 from 12,800 rows on).
    Epochs: ``30,000 / n_samples`` rounded up, within [10, 100], so training sees at least
    30,000 rows (10 epochs from 3,000 rows on). Why: what an RBM learns depends on how many
    updates it makes, not on how many epochs. On the 1,437 training digits of scikit-learn's
    ``load_digits``, batches of 64 for 10 epochs (the old defaults) make 230 updates, and a
    logistic regression on the codes scored 79.9 % against 87.4 % on BernoulliRBM's (batches
    of 10, 10 epochs: 1,440 updates); batches of 10 for 21 epochs make 3,000 updates and score
    89.9 %. A larger learning rate instead of more
    updates did not do it (0.5 with batches of 64: 81 %), and batches below 10 or a rate of 0.2
    hurt on small MNIST subsets. On MNIST (60,000 rows) the schedule is 64 and 10, as before:
    an epoch is as fast as it was (benchmarks/rbm_defaults.py).

    >>> auto_schedule(1437), auto_schedule(5000), auto_schedule(60000)
    ((10, 21), (25, 10), (64, 10))
    """
    return min(64, max(10, n_samples // 200)), min(100, max(10, math.ceil(30_000 / n_samples)))


def _bernoulli(est) -> bool:
    return est.visible == "bernoulli"


class RBM(TorchTransformer):
    """Restricted Boltzmann machine (Bernoulli or Gaussian visibles, Bernoulli hiddens).

    Parameters
    ----------
    n_components : int       number of hidden units K
    visible : str            "bernoulli" (data in [0, 1]) or "gaussian" (real data, ideally standardized)
    sigma : float            standard deviation of Gaussian visibles (fixed)
    k : int                  Gibbs steps per update (CD-k / PCD-k)
    persistent : bool        persistent chains (PCD) instead of chains restarted at the data (CD)
    learning_rate : float    step on the (per-example averaged) log-likelihood gradient
    momentum : float         classical momentum on the updates
    weight_decay : float     L2 penalty on W
    sparsity_target, sparsity_cost   the "sparse RBM" of Lee et al. 2008: push the mean hidden
                             probability toward ``sparsity_target`` (None: off)
    batch_size : int or "auto"   rows per update; "auto": ``n_samples // 200`` within [10, 64]
    n_epochs : int or "auto"     passes over the data; "auto": ``30,000 / n_samples`` within
                             [10, 100]. Both "auto" (:func:`auto_schedule`, which says why):
                             batches of 10 for 21 epochs on the 1,437 training digits of
                             ``load_digits``, 64 and 10 on MNIST's 60,000. Resolved from the rows
                             given to ``fit`` (or to the first ``partial_fit``) as ``batch_size_``
                             and ``n_epochs_``
    device, random_state, verbose   as every learner
    visible_bias_init : str  "data": log(p / (1 - p)) of each unit's mean (Bernoulli) or the mean
                             (Gaussian), as Hinton's practical guide advises; "zero": 0 (as scikit-learn)
    monitor : bool           record reconstruction error (and pseudo-likelihood for Bernoulli
                             visibles, on at most 1000 rows) in ``history_`` after each epoch
    matmul_dtype : str       "auto" (the default), "float32" or "bfloat16": with "bfloat16" the
                             training step's three matmuls take bfloat16 inputs and round their
                             results to bfloat16 (parameters, updates and sampling stay
                             float32): 2-3x faster matmuls on CPUs with AVX512-BF16 or AMX and
                             on GPUs, and the CD gradient's own sampling noise dwarfs the
                             rounding (the held-out reconstruction error is the same to 1 %:
                             benchmarks/results/peers_rbm*.json). "auto" takes bfloat16 where the
                             device computes it fast (``visionnets.device.fast_bf16``) and a
                             batch's products reach 2**20 multiply-adds (batch x features x
                             units: MNIST at any batch, not the 8x8 digits), float32 elsewhere, as
                             PyTorch takes TF32 for GPU convolutions by default; the choice is in
                             ``matmul_dtype_``. Results then differ
                             between machines with and without fast bfloat16 (as they do with
                             thread counts); pass "float32" for float32 everywhere

    Fitted attributes: ``components_`` (K, D) = W, ``intercept_visible_`` (D,),
    ``intercept_hidden_`` (K,), ``encoder_`` (nn.Sequential(Linear, Sigmoid): v -> E[h|v]),
    ``decoder_`` (h -> E[v|h]), ``persistent_chain_``, ``history_``, ``n_iter_``,
    ``batch_size_``, ``n_epochs_``, ``matmul_dtype_``.

    The defaults (256 units, learning rate 0.1, persistent CD-1, no momentum) are scikit-learn's,
    but for the visible biases' start (``visible_bias_init``) and the batch size and epochs,
    which adapt to the data. In a scikit-learn pipeline with a logistic
    regression on ``load_digits`` (1,437 training rows, 360 test rows, 3 seeds) they give
    89.9 % (89.2-90.3) against 87.4 % (86.9-87.8) for ``BernoulliRBM()``, in two to three times
    its fit time (twice the updates, each bound by torch's per-operation overhead at these tiny
    sizes; benchmarks/results/rbm_defaults.json). On MNIST an epoch is 1.5-2.3x faster than
    ``BernoulliRBM``'s (docs/speed.md).
    """

    _auto_params = ("batch_size", "n_epochs")

    def __init__(self, n_components: int = 256, visible: str = "bernoulli", sigma: float = 1.0,
                 k: int = 1, persistent: bool = True, learning_rate: float = 0.1,
                 momentum: float = 0.0, weight_decay: float = 0.0, sparsity_target: float | None = None,
                 sparsity_cost: float = 0.0, batch_size: int | str = "auto", n_epochs: int | str = "auto",
                 device: str = "auto", random_state=None, verbose: bool = False, monitor: bool = False,
                 visible_bias_init: str = "data", matmul_dtype: str = "auto",
                 n_threads: int | None = None):
        self.n_components = n_components
        self.visible = visible
        self.sigma = sigma
        self.k = k
        self.persistent = persistent
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.sparsity_target = sparsity_target
        self.sparsity_cost = sparsity_cost
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.n_threads = n_threads
        self.monitor = monitor
        self.visible_bias_init = visible_bias_init
        self.matmul_dtype = matmul_dtype

    def _check_params(self) -> None:
        super()._check_params()
        if not isinstance(self.n_components, numbers.Integral) or self.n_components < 1:
            raise ConfigError(f"RBM: n_components={self.n_components!r}; expected an int >= 1")
        if self.visible not in ("bernoulli", "gaussian"):
            raise ConfigError(f"RBM: visible={self.visible!r}; expected 'bernoulli' or 'gaussian'")
        if not isinstance(self.k, numbers.Integral) or self.k < 1:
            raise ConfigError(f"RBM: k={self.k!r}; expected an int >= 1")
        if self.sigma <= 0:
            raise ConfigError(f"RBM: sigma={self.sigma!r}; expected > 0")
        if self.visible_bias_init not in ("data", "zero"):
            raise ConfigError(f"RBM: visible_bias_init={self.visible_bias_init!r}; expected 'data' or 'zero'")
        if self.matmul_dtype not in ("auto", "float32", "bfloat16"):
            raise ConfigError(f"RBM: matmul_dtype={self.matmul_dtype!r}; expected 'auto', 'float32' or 'bfloat16'")
        if self.sparsity_target is not None and not 0 < self.sparsity_target < 1:
            raise ConfigError(f"RBM: sparsity_target={self.sparsity_target!r}; expected None or in (0, 1)")

    def _init_state(self, n_features, generator, x) -> None:
        K, D, dev = self.n_components, n_features, self.device_
        self.batch_size_, self.n_epochs_ = auto_schedule(x.shape[0])
        if self.batch_size != "auto":
            self.batch_size_ = self.batch_size
        if self.n_epochs != "auto":
            self.n_epochs_ = self.n_epochs
        self.matmul_dtype_ = self.matmul_dtype
        if self.matmul_dtype == "auto":     # bfloat16 where it is fast and the products are big enough
            big = min(self.batch_size_, x.shape[0]) * D * K >= _BIG_PRODUCT
            self.matmul_dtype_ = "bfloat16" if fast_bf16(dev.type) and big else "float32"
        self.components_ = 0.01 * torch.randn(K, D, generator=generator, device=dev)
        self.intercept_hidden_ = torch.zeros(K, device=dev)
        # visible biases start at the data's statistics (Hinton's practical guide):
        # log(p / (1 - p)) of each unit's mean for Bernoulli units, the mean for Gaussian ones
        mean = x.mean(0)
        if self.visible_bias_init == "zero":
            self.intercept_visible_ = torch.zeros(D, device=dev)
        elif self.visible == "bernoulli":
            mean = mean.clamp(1e-3, 1 - 1e-3)
            self.intercept_visible_ = torch.log(mean / (1 - mean))
        else:
            self.intercept_visible_ = mean.clone()
        self._velocity = [torch.zeros_like(self.components_), torch.zeros_like(self.intercept_hidden_),
                          torch.zeros_like(self.intercept_visible_)]
        bs = min(self.batch_size_, x.shape[0])
        # PCD chains start from hidden states of zero (as scikit-learn) -> first v_neg = E[v|0]
        self.persistent_chain_ = torch.zeros(bs, K, device=dev)
        self._build_modules()

    def _build_modules(self) -> None:
        """``encoder_``/``decoder_`` share storage with the fitted tensors (no copy)."""
        K, D = self.components_.shape
        enc = Linear(D, K, device=self.device_)
        dec = Linear(K, D, device=self.device_)
        scale = 1.0 if self.visible == "bernoulli" else 1.0 / self.sigma
        with torch.no_grad():
            enc.weight.data = self.components_ if scale == 1.0 else self.components_ * scale
            enc.bias.data = self.intercept_hidden_
            dec.weight.data = self.components_.t() if scale == 1.0 else self.components_.t() * self.sigma
            dec.bias.data = self.intercept_visible_
        self.encoder_ = nn.Sequential(enc, nn.Sigmoid())
        self.decoder_ = nn.Sequential(dec, nn.Sigmoid() if self.visible == "bernoulli" else nn.Identity())

    def _params(self):
        return self.components_, self.intercept_visible_, self.intercept_hidden_

    @torch.no_grad()
    def _train_batch(self, v_pos: torch.Tensor, generator: torch.Generator) -> dict:
        w, b_v, b_h = self._params()
        vis, s, B = self.visible, self.sigma, v_pos.shape[0]
        dt = torch.bfloat16 if self.matmul_dtype_ == "bfloat16" else None
        wc = w if dt is None else w.to(dt)   # rounded once per step

        def hid(v):    # E[h | v]
            return torch.sigmoid(_mm(v if vis == "bernoulli" else v / s, wc.t(), dt).add_(b_h))

        def vis_sample(h):    # v ~ p(v | h)
            m = _mm(h, wc, dt)
            if vis == "bernoulli":
                return sample_bernoulli(torch.sigmoid(m.add_(b_v)), generator)
            return m.mul_(s).add_(b_v).add_(torch.randn(m.shape, generator=generator, device=m.device), alpha=s)

        # negative phase: k Gibbs sweeps from the persistent chain or from the data
        if self.persistent:
            if self.persistent_chain_.shape[0] < B:  # a later partial_fit with larger batches
                grow = torch.zeros(B - self.persistent_chain_.shape[0], w.shape[0], device=w.device)
                self.persistent_chain_ = torch.cat([self.persistent_chain_, grow])
            chain = self.persistent_chain_[:B]   # the last, smaller batch uses the first B chains
            v_neg = vis_sample(sample_bernoulli(chain, generator))
            for _ in range(self.k - 1):
                v_neg = vis_sample(sample_bernoulli(hid(v_neg), generator))
            # the chains do not depend on the data: both phases' hiddens in one matmul
            v_both = torch.cat([v_pos, v_neg])
            h_both = hid(v_both)
            self.persistent_chain_[:B] = h_both[B:]   # probabilities; sampled at the next step
        else:
            h_pos = hid(v_pos)
            v_neg = vis_sample(sample_bernoulli(h_pos, generator))
            for _ in range(self.k - 1):
                v_neg = vis_sample(sample_bernoulli(hid(v_neg), generator))
            v_both = torch.cat([v_pos, v_neg])
            h_both = torch.cat([h_pos, hid(v_neg)])
        # gradient of the mean log-likelihood (CD approximation):
        # dW = (h_pos^T v_pos - h_neg^T v_neg) / B, as one matmul over the stacked phases
        lr, mom = self.learning_rate, self.momentum
        if vis == "gaussian":
            v_both = v_both / s
        h_both[B:].neg_()                  # the negative phase's sign, in place (the chain holds a copy)
        dw = _mm(h_both.t(), v_both, dt).div_(B)
        if self.weight_decay:
            dw.add_(w, alpha=-self.weight_decay)
        dbh = h_both.sum(0).div_(B)
        dbv = (v_pos.sum(0) - v_neg.sum(0)).div_(B if vis == "bernoulli" else B * s * s)
        if self.sparsity_target is not None and self.sparsity_cost:   # h_both[:B] is h_pos, unsigned
            dbh.add_(self.sparsity_target - h_both[:B].mean(0), alpha=self.sparsity_cost)
        for p, g, vel in zip((w, b_h, b_v), (dw, dbh, dbv), self._velocity):
            if mom:
                vel.mul_(mom).add_(g, alpha=lr)
                p.add_(vel)
            else:
                p.add_(g, alpha=lr)
        if self.visible == "gaussian" and self.sigma != 1.0:
            self._sync_modules()
        return {}

    def _sample_v(self, h, generator):
        w, b_v, _ = self._params()
        mv = visible_mean(h, w, b_v, self.visible, self.sigma)
        if self.visible == "bernoulli":
            return sample_bernoulli(mv, generator)
        return mv + self.sigma * torch.randn(mv.shape, generator=generator, device=mv.device)

    def _sync_modules(self) -> None:
        if self.visible == "gaussian":
            with torch.no_grad():
                self.encoder_[0].weight.copy_(self.components_ / self.sigma)
                self.decoder_[0].weight.copy_(self.components_.t() * self.sigma)

    @torch.no_grad()
    def _end_epoch(self, x, record) -> None:
        """The epoch's mean pseudo-log-likelihood (Bernoulli visibles; with ``monitor`` or, as
        scikit-learn's RBM reports it, ``verbose``) and reconstruction error (``monitor``), on up to
        1,000 rows. Weights that became NaN or infinite stop the fit here (checked once an epoch:
        a check every step would cost a synchronizing reduction per step)."""
        if not torch.isfinite(self.components_.sum()):   # NaN/inf anywhere reach the sum
            raise TrainingError(f"RBM: weights became NaN or infinite in epoch {self.n_iter_}; lower "
                                f"learning_rate (now {self.learning_rate}) or momentum (now {self.momentum})")
        sub = x[:1000]
        if self.visible == "bernoulli" and (self.monitor or self.verbose):
            w, b_v, b_h = self._params()
            record["pseudo_likelihood"] = float(pseudo_likelihood(sub, w, b_v, b_h).mean())
        if self.monitor:
            record["reconstruction_error"] = float(self.reconstruction_error(sub).mean())

    def _encode(self, x):
        w, _, b_h = self._params()
        return hidden_probs(x, w, b_h, self.visible, self.sigma)

    # ---- public -----------------------------------------------------------------------------
    def _fitted_tensor(self, X):
        check_is_fitted(self, "n_iter_")
        return self._to_tensor(X, reset=False)

    @torch.no_grad()
    def free_energy(self, X):
        """F(v) for each row of X (n_samples,)."""
        x, was_tensor = self._fitted_tensor(X)
        w, b_v, b_h = self._params()
        out = self._batched(lambda t: free_energy(t, w, b_v, b_h, self.visible, self.sigma), x)
        return out if was_tensor else out.cpu().numpy()

    @torch.no_grad()
    def reconstruction_error(self, X):
        """``||v - E[v | E[h | v]]||^2`` for each row (n_samples,): the mean-field reconstruction."""
        x, was_tensor = self._fitted_tensor(X)
        w, b_v, b_h = self._params()

        def rec(t):
            mv = visible_mean(hidden_probs(t, w, b_h, self.visible, self.sigma), w, b_v, self.visible, self.sigma)
            return (mv - t).pow(2).sum(1)

        out = self._batched(rec, x)
        return out if was_tensor else out.cpu().numpy()

    @available_if(_bernoulli)
    @torch.no_grad()
    def score_samples(self, X):
        """Exact pseudo-log-likelihood ``sum_i log p(v_i | v_-i)`` of each row (Bernoulli visibles only:
        an RBM with Gaussian visibles has no such method)."""
        x, was_tensor = self._fitted_tensor(X)
        w, b_v, b_h = (t.double() for t in self._params())   # float64: a row's score must not
        out = pseudo_likelihood(x.double(), w, b_v, b_h)      # depend on the batch around it
        return out if was_tensor else out.cpu().numpy().astype(self._out_dtype, copy=False)

    def score(self, X, y=None) -> float:
        """Mean pseudo-log-likelihood (Bernoulli) or minus mean reconstruction error (Gaussian)."""
        if self.visible == "bernoulli":
            return float(self.score_samples(X).mean())
        return -float(self.reconstruction_error(X).mean())

    @torch.no_grad()
    def gibbs(self, X, n_steps: int = 1):
        """Run ``n_steps`` block Gibbs sweeps from each row of X; returns the visible samples."""
        x, was_tensor = self._fitted_tensor(X)
        w, b_v, b_h = self._params()
        for _ in range(n_steps):
            x, _, _ = gibbs_step(x, w, b_v, b_h, self.visible, self.sigma, self._generator)
        return x if was_tensor else x.cpu().numpy()

    @torch.no_grad()
    def sample(self, n_samples: int, n_steps: int = 1000, mean: bool = True) -> torch.Tensor:
        """Draw ``n_samples`` fantasies: Gibbs chains of ``n_steps`` from uniform random visibles.

        Returns E[v | h] of the last step when ``mean`` (smoother pictures), else the sample.
        """
        check_is_fitted(self, "n_iter_")
        w, b_v, b_h = self._params()
        g = self._generator
        v = torch.rand(n_samples, w.shape[1], generator=g, device=self.device_)
        if self.visible == "gaussian":
            v = torch.randn(n_samples, w.shape[1], generator=g, device=self.device_) * self.sigma + b_v
        for _ in range(n_steps - 1):
            v, _, _ = gibbs_step(v, w, b_v, b_h, self.visible, self.sigma, g)
        h = sample_bernoulli(hidden_probs(v, w, b_h, self.visible, self.sigma), g)
        mv = visible_mean(h, w, b_v, self.visible, self.sigma)
        return mv if mean else self._sample_v(h, g)
