"""Dataset-level transforms: fitted on the training split only, then applied to every split.

A transform follows scikit-learn's contract: ``__init__`` stores options, ``fit(x)`` learns
statistics (attributes ending in ``_``) and returns self, ``transform(x)`` (or calling it)
maps inputs. Recipes name them in a list; each entry is a name or a dict with ``name`` and
options::

    >>> import torch
    >>> t = Compose([ContrastNormalize(), Standardize(per="pixel")])   # or build_transforms([...]) by name
    >>> x = torch.rand(100, 1, 8, 8)
    >>> y = t.fit(x)(x)
    >>> bool(y.mean(0).abs().max() < 1e-5)
    True

- ``standardize`` (per ``channel`` or ``pixel``): ``x' = (x - mu) / sigma`` with mu and sigma of
  the training split per channel (over examples and positions) or per pixel/feature; a
  sigma below ``eps`` (a constant input) is replaced by 1, as scikit-learn's StandardScaler does.
- ``contrast_normalize``: per image, ``x' = (x - mean(x)) / max(std(x), min_std)`` (global
  contrast normalization; the floor keeps flat images from being blown up).
- ``flatten``: (N, C, H, W) -> (N, C*H*W), for fully connected models.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Literal

import torch

from visionnets.errors import ConfigError, DataError
from visionnets.registry import Registry

TRANSFORMS = Registry("transform")

# --------------------------------------------------------------------------- functional core


def standardize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(x - mean) / std``, broadcasting the statistics over the batch dimension."""
    return (x - mean) / std


def contrast_normalize(x: torch.Tensor, min_std: float = 1e-2) -> torch.Tensor:
    """Per example: ``(x - mean(x)) / max(std(x), min_std)`` over all non-batch dimensions.

    ``x``: (N, ...) float. Population std (divide by the number of values).
    """
    dims = tuple(range(1, x.dim()))
    if not dims:
        raise DataError(f"contrast_normalize needs (N, ...) inputs, got shape {tuple(x.shape)}")
    mean = x.mean(dim=dims, keepdim=True)
    centred = x - mean
    std = centred.square().mean(dim=dims, keepdim=True).sqrt()
    return centred / std.clamp_min(min_std)


def moments(x: torch.Tensor, dims: tuple[int, ...], chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population variance of ``x`` over ``dims`` (which include 0), kept as size-1 dims.

    Accumulated in float64 over chunks of examples: exact enough and light on memory for
    50,000 CIFAR images.
    """
    n = 0
    total = None
    for part in x.split(chunk):
        s = part.double().sum(dim=dims, keepdim=True)
        total = s if total is None else total + s
        n += part.numel() // max(1, s.numel())
    mean = total / n
    sq = None
    for part in x.split(chunk):
        s = (part.double() - mean).square().sum(dim=dims, keepdim=True)
        sq = s if sq is None else sq + s
    return mean, sq / n

# --------------------------------------------------------------------------- estimators


class Transform(ABC):
    """Base class: ``fit(x)`` returns self; ``transform(x)`` and ``__call__(x)`` map inputs."""

    def fit(self, x: torch.Tensor) -> "Transform":
        return self

    @abstractmethod
    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Map a batch of inputs (each subclass defines how)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.transform(x)

    def get_params(self) -> dict[str, Any]:
        return {}

    def state(self) -> dict[str, torch.Tensor]:
        """The fitted state as named tensors (saved with a run, so new inputs are prepared alike)."""
        return {}

    def load_state(self, state: dict[str, torch.Tensor]) -> "Transform":
        """Restore what :meth:`state` gave; returns self."""
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


class Standardize(Transform):
    """Zero mean, unit variance per channel (images) or per pixel / feature, from the train split.

    ``x' = (x - mean_) / std_``; for (N, D) vectors both modes are per feature. Fitted
    attributes: ``mean_``, ``std_`` (float32, shaped to broadcast against one batch).
    """

    def __init__(self, per: Literal["channel", "pixel"] = "channel", eps: float = 1e-6):
        if per not in ("channel", "pixel"):
            raise ConfigError(f"per: expected 'channel' or 'pixel', got {per!r}")
        self.per, self.eps = per, eps

    def get_params(self) -> dict[str, Any]:
        return {"per": self.per, "eps": self.eps}

    def fit(self, x: torch.Tensor) -> "Standardize":
        if x.dim() < 2 or len(x) == 0:
            raise DataError(f"standardize needs a non-empty (N, ...) input, got shape {tuple(x.shape)}")
        dims = (0, 2, 3) if self.per == "channel" and x.dim() == 4 else (0,)
        mean, var = moments(x, dims)
        std = var.sqrt()
        std = torch.where(std < self.eps, torch.ones_like(std), std)
        self.mean_, self.std_ = mean.float(), std.float()
        self.input_shape_ = tuple(x.shape[1:])
        return self

    def state(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean_, "std": self.std_, "input_shape": torch.tensor(self.input_shape_)}

    def load_state(self, state: dict[str, torch.Tensor]) -> "Standardize":
        self.mean_, self.std_ = state["mean"], state["std"]
        self.input_shape_ = tuple(state["input_shape"].tolist())
        return self

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(self, "mean_"):
            raise DataError("standardize: call fit(train_x) before transform")
        if tuple(x.shape[1:]) != self.input_shape_:
            raise DataError(f"standardize was fitted on inputs of shape {self.input_shape_}, "
                            f"got {tuple(x.shape[1:])}")
        return standardize(x, self.mean_.to(x.device), self.std_.to(x.device))


class ContrastNormalize(Transform):
    """Per-image global contrast normalization: ``(x - mean(x)) / max(std(x), min_std)``."""

    def __init__(self, min_std: float = 1e-2):
        self.min_std = min_std

    def get_params(self) -> dict[str, Any]:
        return {"min_std": self.min_std}

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return contrast_normalize(x, self.min_std)


class Flatten(Transform):
    """(N, C, H, W) -> (N, C*H*W)."""

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), -1)


class Compose(Transform):
    """Transforms applied in order; ``fit`` fits each on the output of the previous ones."""

    def __init__(self, transforms: list[Transform]):
        self.transforms = list(transforms)

    def get_params(self) -> dict[str, Any]:
        return {"transforms": self.transforms}

    def __len__(self) -> int:
        return len(self.transforms)

    def fit(self, x: torch.Tensor) -> "Compose":
        for i, t in enumerate(self.transforms):
            t.fit(x)
            if i + 1 < len(self.transforms):
                x = t(x)
        return self

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        for t in self.transforms:
            x = t(x)
        return x

    def state(self) -> dict[str, torch.Tensor]:
        return {f"{i}.{k}": v for i, t in enumerate(self.transforms) for k, v in t.state().items()}

    def load_state(self, state: dict[str, torch.Tensor]) -> "Compose":
        for i, t in enumerate(self.transforms):
            t.load_state({k.split(".", 1)[1]: v for k, v in state.items() if k.split(".", 1)[0] == str(i)})
        return self

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


@TRANSFORMS.register("standardize")
def _standardize(per: Literal["channel", "pixel"] = "channel", eps: float = 1e-6) -> Standardize:
    return Standardize(per, eps)


@TRANSFORMS.register("contrast_normalize")
def _contrast_normalize(min_std: float = 1e-2) -> ContrastNormalize:
    return ContrastNormalize(min_std)


@TRANSFORMS.register("flatten")
def _flatten() -> Flatten:
    return Flatten()
