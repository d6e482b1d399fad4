"""Random augmentations of training batches, vectorized and reproducible from a generator.

Each augmentation maps a batch ``x`` (B, C, H, W) and a :class:`torch.Generator` to a batch of
the same shape. Random numbers are drawn on the generator's device (a CPU generator works
for batches on any device), so a seeded generator gives the same result on every run.
Recipes name them in a list (``data.augment``), each a name or a dict with ``name`` and
options::

    >>> import torch
    >>> from visionnets.data.specs import build_augment
    >>> aug = build_augment([{"name": "translate", "max_shift": 2}, "hflip"])
    >>> x = torch.rand(4, 1, 8, 8)
    >>> a = aug(x, torch.Generator().manual_seed(0))
    >>> b = aug(x, torch.Generator().manual_seed(0))
    >>> a.shape, bool((a == b).all())
    (torch.Size([4, 1, 8, 8]), True)

- ``translate(max_shift)``: each image shifted by (dy, dx) drawn uniformly from
  ``{-max_shift..max_shift}``^2, zero fill.
- ``random_crop(size, padding)``: zero-pad by ``padding`` on each side, then take a
  ``size`` x ``size`` crop at a uniform random position (``size`` defaults to the image size,
  which is the only size allowed: training and evaluation inputs must have the same shape).
- ``hflip(p)``: each image mirrored left-right with probability ``p``.
- ``cutout(size)``: a ``size`` x ``size`` square of each image set to 0, centred at a uniform
  random pixel and clipped at the borders (DeVries & Taylor 2017).
- ``color_jitter(brightness, contrast, saturation)``: per image, the channels pulled toward or
  pushed from their per-pixel mean by a factor in ``[1 - saturation, 1 + saturation]``, the
  deviations from the image's mean scaled by one in ``[1 - contrast, 1 + contrast]``, then an
  offset in ``[-brightness, brightness]`` added (in the input's units: after standardization,
  standard deviations).
"""

from __future__ import annotations

from typing import Annotated, Callable

import pydantic
import torch
import torch.nn.functional as F

from visionnets.errors import DataError
from visionnets.registry import Registry

AUGMENTS = Registry("augmentation")

AugmentFn = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _check_batch(x: torch.Tensor, what: str) -> None:
    if x.dim() != 4:
        raise DataError(f"{what} needs image batches (B, C, H, W), got shape {tuple(x.shape)}")


def crop_batch(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Per-example crops: ``out[b] = x[b, :, top[b]:top[b]+h, left[b]:left[b]+w]``.

    A strided view of every (h, w) window (no copy), then one index on (example, top, left):
    several times faster than a loop over the examples of a CPU batch. ``x`` may be any view.
    """
    b, c, hp, wp = x.shape
    s = x.stride()
    windows = x.as_strided((b, hp - h + 1, wp - w + 1, c, h, w),
                           (s[0], s[2], s[3], s[1], s[2], s[3]), x.storage_offset())
    return windows[torch.arange(b, device=x.device), top.to(x.device), left.to(x.device)]


def translate(x: torch.Tensor, generator: torch.Generator, max_shift: int) -> torch.Tensor:
    """Shift each image by a uniform random (dy, dx) in [-max_shift, max_shift]^2, filling with 0."""
    _check_batch(x, "translate")
    if max_shift == 0:
        return x
    b, _, h, w = x.shape
    dev = generator.device
    top = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator, device=dev)
    left = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator, device=dev)
    padded = F.pad(x, (max_shift,) * 4)
    return crop_batch(padded, top, left, h, w)


def random_crop(x: torch.Tensor, generator: torch.Generator, size: int | None = None,
                padding: int = 0) -> torch.Tensor:
    """Zero-pad by ``padding`` then crop ``size`` x ``size`` at a uniform random position per image."""
    _check_batch(x, "random_crop")
    b, _, h, w = x.shape
    size_h, size_w = (h, w) if size is None else (size, size)
    if (size_h, size_w) != (h, w):
        raise DataError(f"random_crop size {size} differs from the image size {h}x{w}; training "
                        f"and evaluation inputs must have the same shape (use padding to shift)")
    ph, pw = h + 2 * padding, w + 2 * padding
    dev = generator.device
    top = torch.randint(0, ph - size_h + 1, (b,), generator=generator, device=dev)
    left = torch.randint(0, pw - size_w + 1, (b,), generator=generator, device=dev)
    padded = F.pad(x, (padding,) * 4) if padding else x
    return crop_batch(padded, top, left, size_h, size_w)


def hflip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``."""
    _check_batch(x, "hflip")
    flip = torch.rand(len(x), generator=generator, device=generator.device) < p
    return torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)


def cutout(x: torch.Tensor, generator: torch.Generator, size: int = 8) -> torch.Tensor:
    """Set a ``size`` x ``size`` square of each image to 0 (DeVries & Taylor 2017), centred at a
    uniform random pixel, clipped at the borders (so near an edge less is covered)."""
    _check_batch(x, "cutout")
    b, _, h, w = x.shape
    dev = generator.device
    cy = torch.randint(0, h, (b, 1), generator=generator, device=dev).to(x.device)
    cx = torch.randint(0, w, (b, 1), generator=generator, device=dev).to(x.device)
    lo = size // 2
    rows = torch.arange(h, device=x.device) - cy + lo            # in [0, size) inside the square
    cols = torch.arange(w, device=x.device) - cx + lo
    inside = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]
    return x.masked_fill(inside[:, None], 0.0)


def color_jitter(x: torch.Tensor, generator: torch.Generator, brightness: float = 0.4,
                 contrast: float = 0.4, saturation: float = 0.4) -> torch.Tensor:
    """Per-image saturation, contrast and brightness changes, each factor uniform in its range
    (the photometric half of RandAugment-style strong views; works on any number of channels,
    saturation needs more than one)."""
    _check_batch(x, "color_jitter")
    b = len(x)

    def draw(lo: float, hi: float) -> torch.Tensor:
        r = torch.rand(b, 1, 1, 1, generator=generator, device=generator.device).to(x.device, x.dtype)
        return lo + (hi - lo) * r

    if saturation and x.shape[1] > 1:
        gray = x.mean(1, keepdim=True)
        x = gray + draw(1 - saturation, 1 + saturation) * (x - gray)
    if contrast:
        mean = x.mean((1, 2, 3), keepdim=True)
        x = mean + draw(1 - contrast, 1 + contrast) * (x - mean)
    if brightness:
        x = x + draw(-brightness, brightness)
    return x


class Augment:
    """Augmentations applied in order to a training batch: ``aug(x, generator) -> x``."""

    def __init__(self, steps: list[tuple[str, AugmentFn]]):
        self.steps = list(steps)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for _, fn in self.steps:
            x = fn(x, generator)
        return x

    def __len__(self) -> int:
        return len(self.steps)

    def __repr__(self) -> str:
        return f"Augment([{', '.join(name for name, _ in self.steps)}])"


def _bind(name: str, fn: Callable, **kwargs) -> tuple[str, AugmentFn]:
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return f"{name}({args})", lambda x, g: fn(x, g, **kwargs)


@AUGMENTS.register("translate")
def _translate(max_shift: Annotated[int, pydantic.Field(ge=0)] = 2):
    return _bind("translate", translate, max_shift=max_shift)


@AUGMENTS.register("random_crop")
def _random_crop(size: Annotated[int, pydantic.Field(ge=1)] | None = None,
                 padding: Annotated[int, pydantic.Field(ge=0)] = 4):
    return _bind("random_crop", random_crop, size=size, padding=padding)


@AUGMENTS.register("cutout")
def _cutout(size: Annotated[int, pydantic.Field(ge=1)] = 8):
    return _bind("cutout", cutout, size=size)


@AUGMENTS.register("hflip")
def _hflip(p: Annotated[float, pydantic.Field(ge=0, le=1)] = 0.5):
    return _bind("hflip", hflip, p=p)


@AUGMENTS.register("color_jitter")
def _color_jitter(brightness: Annotated[float, pydantic.Field(ge=0)] = 0.4,
                  contrast: Annotated[float, pydantic.Field(ge=0, le=1)] = 0.4,
                  saturation: Annotated[float, pydantic.Field(ge=0, le=1)] = 0.4):
    return _bind("color_jitter", color_jitter, brightness=brightness, contrast=contrast, saturation=saturation)
