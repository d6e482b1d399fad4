"""The estimator shell every unsupervised learner shares.

A learner is a scikit-learn transformer (``__init__`` only stores hyper-parameters, ``fit``
returns ``self``, fitted state ends in ``_``) whose numbers live in torch and are trained by
mini-batch on CPU or GPU. Subclasses write three hooks:

- ``_init_state(n_features, generator)``: create the fitted torch state (``encoder_`` ...);
- ``_train_batch(xb, generator) -> dict``: one update on one mini-batch, returns its stats;
- ``_encode(x) -> Tensor``: the features of a float tensor already on ``device_``.

Inputs may be numpy arrays (validated as scikit-learn does; the output is numpy float32) or
torch tensors (the output is a tensor on the device the learner lives on).
"""

from __future__ import annotations

import contextlib
import math
import numbers
import sys
import time

import numpy as np
import torch
from scipy import sparse
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from visionnets.device import resolve_device
from visionnets.errors import ConfigError, DataError, TrainingError
from visionnets.threads import using_threads



def make_generator(random_state, device: torch.device) -> torch.Generator:
    """A torch generator seeded from an int, a numpy RandomState / Generator, or None (fresh entropy)."""
    if random_state is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    elif isinstance(random_state, numbers.Integral):
        seed = int(random_state)
    elif isinstance(random_state, np.random.RandomState):
        seed = int(random_state.randint(0, 2**31 - 1))
    elif isinstance(random_state, np.random.Generator):
        seed = int(random_state.integers(0, 2**31 - 1))
    else:
        raise ConfigError(f"random_state={random_state!r}; expected None, an int or a numpy RandomState")
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def progress(iterable, enabled: bool, desc: str, total: int | None = None):
    """Wrap ``iterable`` in a tqdm bar when ``enabled`` and stderr is a terminal (a log file gets
    no bar frames: :func:`log_line` writes one line per epoch there instead)."""
    if not enabled or not sys.stderr.isatty():
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False)


def log_line(enabled: bool, text: str) -> None:
    """One progress line on stderr when ``enabled`` and stderr is not a terminal (a bar shows it there)."""
    if enabled and not sys.stderr.isatty():
        print(text, file=sys.stderr, flush=True)


class TorchTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Base class: mini-batch training loop, validation, transform in batches, history.

    Subclasses must have the hyper-parameters ``batch_size``, ``n_epochs``, ``device``,
    ``random_state``, ``verbose`` and ``n_threads`` among their ``__init__`` arguments.
    ``n_threads``: CPU threads of ``fit`` / ``partial_fit``; None (the default) takes the cores
    that other processes leave free, decided at each call (:mod:`visionnets.threads`), so that
    a fit on a shared machine does not collapse; the count is restored afterwards. The fitted
    attribute ``n_threads_`` says what the last ``fit`` / ``partial_fit`` used (None on a GPU).
    """

    #: which of ``batch_size`` / ``n_epochs`` may be "auto": the subclass then resolves them from
    #: the data in ``_init_state`` (as ``batch_size_`` / ``n_epochs_``)
    _auto_params: tuple[str, ...] = ()

    # ---- input handling -------------------------------------------------------------------
    def _check_params(self) -> None:
        n_threads = getattr(self, "n_threads", None)
        if n_threads is not None and (not isinstance(n_threads, numbers.Integral) or isinstance(n_threads, bool)
                                      or n_threads < 1):
            raise ConfigError(f"{type(self).__name__}: n_threads={n_threads!r}; expected None or an int >= 1")
        for name in ("batch_size", "n_epochs"):
            v = getattr(self, name)
            auto = name in self._auto_params
            if auto and isinstance(v, str) and v == "auto":
                continue
            if not isinstance(v, numbers.Integral) or v < 1:
                raise ConfigError(f"{type(self).__name__}: {name}={v!r}; expected an int >= 1"
                                  + (" or 'auto'" if auto else ""))

    def _batch_size(self) -> int:
        """Rows per update: ``batch_size``, or its resolved value when it is "auto"."""
        return self.batch_size_ if self.batch_size == "auto" else self.batch_size

    def _n_epochs(self) -> int:
        """Passes ``fit`` makes: ``n_epochs``, or its resolved value when it is "auto"."""
        return self.n_epochs_ if self.n_epochs == "auto" else self.n_epochs

    @property
    def _n_features_out(self) -> int:
        """How many features ``transform`` gives (names: ``<class name lowercase><i>``)."""
        return getattr(self, "n_components", None) or self.n_clusters

    def _to_tensor(self, X, reset: bool) -> tuple[torch.Tensor, bool]:
        """Validate ``X`` (dense or sparse, any numeric dtype) and return it as a float32 tensor on
        ``device_``, and whether it was a tensor; remembers a NumPy input's dtype (``transform``
        answers in float64 for float64 or integer input, as scikit-learn's transformers do)."""
        if isinstance(X, torch.Tensor):
            if X.ndim != 2:
                raise DataError(f"{type(self).__name__}: X has shape {tuple(X.shape)}; expected a 2-D (n_samples, n_features) tensor")
            if X.shape[0] < 1:
                raise DataError(f"{type(self).__name__}: X has 0 samples; expected at least 1")
            if not torch.isfinite(X).all():
                raise DataError(f"{type(self).__name__}: X contains NaN or infinity")
            if reset:
                self.n_features_in_ = X.shape[1]
            elif X.shape[1] != self.n_features_in_:
                raise DataError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                                f"{self.n_features_in_} features as input")
            return X.to(self.device_, torch.float32), True
        arr = validate_data(self, X, reset=reset, dtype=(np.float64, np.float32), ensure_min_samples=1,
                            accept_sparse=("csr", "csc"))
        self._out_dtype = arr.dtype
        if sparse.issparse(arr):
            arr = arr.toarray()
        return torch.as_tensor(np.ascontiguousarray(arr, dtype=np.float32), device=self.device_), False

    # ---- fitting --------------------------------------------------------------------------
    def fit(self, X, y=None):
        """Initialize the learner on ``X`` (n_samples, n_features) and train it ``n_epochs`` epochs."""
        x = self._start(X)
        self._run_epochs(x, self._n_epochs())
        return self

    def partial_fit(self, X, y=None):
        """One pass over ``X`` in mini-batches; the first call initializes the learner."""
        if not hasattr(self, "n_iter_"):
            x = self._start(X)
        else:
            x, _ = self._to_tensor(X, reset=False)
        self._run_epochs(x, 1)
        return self

    def initialize(self, X):
        """Check the hyper-parameters and create the untrained state from ``X``; returns self.

        What ``fit`` does before its first epoch: then ``partial_fit`` trains one epoch at a time
        (layer-wise pretraining measures the untrained reconstruction error this way).
        """
        self._start(X)
        return self

    def _start(self, X) -> torch.Tensor:
        """``initialize``, returning X as a tensor on the learner's device."""
        self._check_params()
        self.device_ = resolve_device(self.device)
        x, _ = self._to_tensor(X, reset=True)
        self._generator = make_generator(self.random_state, self.device_)
        self._init_state(x.shape[1], self._generator, x)
        self.history_ = []
        self.n_iter_ = 0
        return x

    def _threads(self):
        """The CPU threads of a fit: ``n_threads``, or the cores other processes leave free
        (:func:`visionnets.threads.using_threads`); nothing changes on a GPU."""
        if self.device_.type != "cpu":
            return contextlib.nullcontext()
        return using_threads(getattr(self, "n_threads", None))

    def _run_epochs(self, x: torch.Tensor, n_epochs: int) -> None:
        with self._threads() as n:
            self.n_threads_ = n          # the CPU threads this fit used (None on a GPU)
            self._epochs(x, n_epochs)

    def _epochs(self, x: torch.Tensor, n_epochs: int) -> None:
        n = x.shape[0]
        bs = min(self._batch_size(), n)
        n_batches = math.ceil(n / bs)
        for _ in range(n_epochs):
            t_epoch = time.perf_counter()
            order = torch.randperm(n, generator=self._generator, device=self.device_)
            totals: dict[str, float] = {}
            for i in range(n_batches):
                # index_select: several times faster than x[idx] for a batch of rows on CPU
                stats = self._train_batch(x.index_select(0, order[i * bs:(i + 1) * bs]), self._generator)
                for k, v in stats.items():
                    totals[k] = totals.get(k, 0.0) + float(v)
            self.n_iter_ += 1
            record = {"epoch": self.n_iter_, **{k: v / n_batches for k, v in totals.items()}}
            self._end_epoch(x, record)
            self.history_.append(record)
            self._report(record, t_epoch)
            for k, v in record.items():
                if isinstance(v, float) and not math.isfinite(v):
                    raise TrainingError(f"{type(self).__name__}: {k} became {v} at epoch {self.n_iter_}; "
                                        f"lower learning_rate")

    def _report(self, record: dict, started: float) -> None:
        """With ``verbose``, one line per iteration on stdout, as scikit-learn's estimators print."""
        if self.verbose:
            numbers = [f"{k.replace('_', '-')} = {v:.2f}" for k, v in record.items() if k != "epoch"]
            print(", ".join([f"[{type(self).__name__}] Iteration {self.n_iter_}", *numbers,
                             f"time = {time.perf_counter() - started:.2f}s"]), flush=True)

    def _end_epoch(self, x: torch.Tensor, record: dict) -> None:
        """Hook: add monitoring numbers to ``record`` after each epoch."""

    # ---- transforming ---------------------------------------------------------------------
    def transform(self, X):
        """The code of each row of ``X``: (n_samples, n_features) -> (n_samples, n_components)."""
        check_is_fitted(self, "n_iter_")
        x, was_tensor = self._to_tensor(X, reset=False)
        out = self._batched(self._encode, x)
        return out if was_tensor else out.cpu().numpy().astype(self._out_dtype, copy=False)

    @torch.no_grad()
    def _batched(self, fn, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        return torch.cat([fn(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        if tags.transformer_tags is not None:
            tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.input_tags.sparse = True
        tags.non_deterministic = self.random_state is None if hasattr(self, "random_state") else False
        return tags

    def __getstate__(self):
        """Picklable: the generator as its state, the optimizer as its state dict (rebuilt on loading,
        so ``partial_fit`` continues after a round trip)."""
        state = self.__dict__.copy()
        g = state.pop("_generator", None)
        if g is not None:
            state["_generator_state"] = (str(g.device), g.get_state())
        opt = state.pop("_optim", None)
        if opt is not None:
            state["_optim_state"] = opt.state_dict()
        return state

    def __setstate__(self, state):
        saved = state.pop("_generator_state", None)
        optim = state.pop("_optim_state", None)
        self.__dict__.update(state)
        if saved is not None:
            g = torch.Generator(device=saved[0])
            g.set_state(saved[1])
            self._generator = g
        if optim is not None:
            self._optim = self._new_optimizer()
            self._optim.load_state_dict(optim)
