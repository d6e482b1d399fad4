"""A classifier with decoders beside it, for semi-supervised learning (built by the
``semi_supervised`` objective around the recipe's model; see :mod:`visionnets.objectives.semisupervised`).

The recipe's model must be a ``Sequential`` (nested ones allowed) whose last layer is the
classifier's ``Linear``; its input is the *code*. Six ways to learn from unlabeled images:

- ``reconstruction``: a decoder (two fully connected layers) maps the code of the clean input
  back to the input (an auto-encoder sharing the classifier's trunk);
- ``denoising``: the same from the code of a corrupted input (Gaussian noise of std ``noise``),
  to the clean input (Vincent et al. 2008); the supervised loss is taken on the corrupted pass;
- ``ladder``: for fully connected models, per-layer denoising in the spirit of ladder networks
  (Rasmus et al. 2015): noise (``noise`` times each unit's batch std) is added to every
  ``Linear``'s output of a corrupted pass; a top-down decoder ``u_l = V_l z^_{l+1}``,
  ``z^_l = a1 z~_l + a2 u_l + a3 z~_l u_l + a4`` (per unit) rebuilds each layer's clean value
  ``z_l`` (and the input, l = 0); layer l's cost is its mean squared error divided by the
  clean value's variance (scale-free), weighted by ``layer_weights[l]``;
- ``consistency``: no decoder; the Pi-model (Laine & Aila 2017, Sajjadi et al. 2016): two
  perturbed views of each image (a random translation by up to ``shift`` pixels, Gaussian
  noise of std ``noise``, and the model's own dropout), and the cost is the squared distance
  between the two predicted class distributions: what the unlabeled images teach is that a
  digit stays itself when it moves a little.
- ``pseudo_label``: FixMatch's rule (Sohn et al. 2020): the batch as the data pipeline gives it
  (the *weak* view) is classified; where the class distribution's top probability reaches
  ``threshold``, its top class becomes a hard target for a *strong* view of the same image (the
  ``strong_augment`` augmentations if any, e.g. ``color_jitter``, then a translation by up to
  ``shift`` pixels, a ``cutout`` x ``cutout`` square set to 0, Gaussian noise of std ``noise``,
  the model's dropout), by cross-entropy; below the threshold an example adds
  nothing. The cost is averaged over every example of the batch (FixMatch's normalization), so
  it grows as the classifier grows confident.
- ``mean_teacher``: as ``consistency``, but the second view goes through a *teacher*: the
  classifier with weights averaged over the training steps (an exponential moving average with
  ``ema_decay``; Tarvainen & Valpola 2017), without gradient. The average is a steadier target
  than the student's own noisy prediction, and its pass costs a forward only. The teacher's
  weights are buffers of this module (``teacher__*``): checkpointed and resumed with the run,
  never given to the optimizer; the teacher moves toward the student at every training forward.

``forward(x)`` is the classifier alone (prediction, evaluation, pictures, export);
``forward(x, unsupervised=True)`` returns ``(scores, cost)``: the scores the supervised loss
is taken on and the unsupervised cost of the batch (per example averaged).
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
from torch import nn

from visionnets.data.augment import cutout, translate
from visionnets.errors import ConfigError
from visionnets.nn.dense import Linear

MODES = ("reconstruction", "denoising", "ladder", "consistency", "mean_teacher", "pseudo_label")
VIEWS = ("consistency", "mean_teacher", "pseudo_label")   # the modes that compare two views


def leaves(model: nn.Module) -> list[nn.Module]:
    """The modules of a Sequential in forward order (nested Sequentials flattened)."""
    out = []
    for m in model.children():
        out += leaves(m) if isinstance(m, nn.Sequential) else [m]
    return out


class Combinator(nn.Module):
    """``z^ = a1 z~ + a2 u + a3 z~ u + a4`` per unit; starts as the identity in z~."""

    def __init__(self, width: int):
        super().__init__()
        self.a = nn.Parameter(torch.stack([torch.ones(width), torch.zeros(width), torch.zeros(width),
                                           torch.zeros(width)]))

    def forward(self, noisy: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        a1, a2, a3, a4 = self.a
        return a1 * noisy + a2 * u + a3 * noisy * u + a4


class SemiSupervisedNet(nn.Module):
    """``base`` (the classifier) and the decoders of ``mode`` (see the module docstring)."""

    def __init__(self, base: nn.Module, input_shape: tuple[int, ...],
                 mode: Literal["reconstruction", "denoising", "ladder", "consistency", "mean_teacher",
                               "pseudo_label"] = "denoising",
                 noise: float = 0.3, decoder_width: int = 512, layer_weights: list[float] | None = None,
                 shift: int = 2, ema_decay: float = 0.99, threshold: float = 0.95, cutout: int = 0,
                 strong_augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None):
        super().__init__()
        if mode not in MODES:
            raise ConfigError(f"objective.options.unsupervised: {mode!r}; expected one of {', '.join(MODES)}")
        layers = leaves(base) if isinstance(base, nn.Sequential) else []
        if not layers or not isinstance(layers[-1], nn.Linear):
            raise ConfigError(f"objective semi_supervised: the model must be a Sequential ending in its "
                              f"classifier's Linear layer (mlp, convnet, linear), got {type(base).__name__}")
        self.base, self.mode, self.noise, self.shift, self.ema_decay = base, mode, noise, shift, ema_decay
        self.threshold, self.cutout, self.strong_augment = threshold, cutout, strong_augment
        if strong_augment is not None and (mode != "pseudo_label" or len(input_shape) != 3):
            raise ConfigError(f"objective.options.strong_augment: needs pseudo_label on image inputs (C, H, W), "
                              f"got {mode} on {input_shape}")
        if mode in VIEWS and shift and len(input_shape) != 3:
            raise ConfigError(f"objective.options.shift: translations need image inputs (C, H, W), got {input_shape}; "
                              f"use shift: 0")
        if mode == "pseudo_label" and cutout and (len(input_shape) != 3 or cutout > min(input_shape[1:])):
            raise ConfigError(f"objective.options.cutout: {cutout} needs image inputs (C, H, W) at least that "
                              f"large, got {input_shape}")
        self.input_dim = math.prod(input_shape)
        self._layers = layers                      # a plain list: the parameters stay base's alone
        linears = [m for m in layers if isinstance(m, nn.Linear)]
        if mode == "ladder":
            allowed = (nn.Linear, nn.Flatten, nn.Dropout, nn.Identity, nn.ReLU, nn.Tanh, nn.Sigmoid)
            bad = [type(m).__name__ for m in layers if not isinstance(m, allowed)]
            if bad:
                raise ConfigError(f"objective.options.unsupervised: ladder needs a fully connected model (mlp); "
                                  f"this one has {bad[0]} layers: use reconstruction or denoising")
            widths = [self.input_dim] + [m.out_features for m in linears]
            self.combinators = nn.ModuleList(Combinator(w) for w in widths)
            self.up = nn.ModuleList(Linear(widths[i + 1], widths[i]) for i in range(len(widths) - 1))
            weights = layer_weights or [1.0] * len(widths)
            if len(weights) != len(widths):
                raise ConfigError(f"objective.options.layer_weights: {len(weights)} weights for the "
                                  f"{len(widths)} levels (the input and each Linear layer)")
            self.layer_weights = list(weights)
        elif mode == "mean_teacher":
            self._teacher_names = list(base.state_dict())
            for name, t in base.state_dict().items():
                self.register_buffer(_teacher_key(name), t.detach().clone())
        elif mode not in VIEWS:
            code = linears[-1].in_features
            self.decoder = nn.Sequential(Linear(code, decoder_width), nn.ReLU(),
                                         Linear(decoder_width, self.input_dim))

    def forward(self, x: torch.Tensor, unsupervised: bool = False):
        if not unsupervised:
            return self.base(x)
        noise = self.noise if self.training else 0.0
        if self.mode == "ladder":
            return self._ladder(x, noise)
        if self.mode in VIEWS:
            return self._consistency(x)
        inp = x + noise * torch.randn_like(x) if self.mode == "denoising" and noise else x
        h = inp
        for m in self._layers[:-1]:
            h = m(h)
        code = h.flatten(1)
        scores = self._layers[-1](code)
        recon = self.decoder(code)
        cost = (recon - x.flatten(1)).pow(2).mean(1).mean()
        return scores, cost

    def _view(self, x: torch.Tensor, square: int = 0) -> torch.Tensor:
        """A perturbed copy: translated, a ``square`` x ``square`` cutout (the pseudo-label's
        strong view) and noisy, from the forward pass's seeded generator."""
        if self.shift:
            x = translate(x, torch.default_generator, self.shift)
        if square:
            x = cutout(x, torch.default_generator, square)
        return x + self.noise * torch.randn_like(x) if self.noise else x

    def _consistency(self, x: torch.Tensor):
        if not self.training:                   # no perturbation: both views agree
            scores = self.base(x)
            return scores, scores.sum() * 0.0
        if self.mode == "pseudo_label":
            weak = self.base(x)
            conf, target = weak.detach().float().softmax(1).max(1)
            strong = x if self.strong_augment is None else self.strong_augment(x, torch.default_generator)
            strong = self.base(self._view(strong, self.cutout))
            ce = nn.functional.cross_entropy(strong.float(), target, reduction="none")
            return weak, (ce * (conf >= self.threshold)).mean()
        s1 = self.base(self._view(x))
        if self.mode == "mean_teacher":
            self._update_teacher()
            with torch.no_grad():
                s2 = torch.func.functional_call(self.base, self.teacher_state(), (self._view(x),))
        else:
            s2 = self.base(self._view(x))
        cost = (s1.softmax(1) - s2.softmax(1)).pow(2).sum(1).mean()
        return s1, cost

    def teacher_state(self) -> dict[str, torch.Tensor]:
        """The teacher's weights and statistics by the classifier's state-dict names (mean_teacher)."""
        return {name: getattr(self, _teacher_key(name)) for name in self._teacher_names}

    @torch.no_grad()
    def _update_teacher(self) -> None:
        """teacher <- d teacher + (1 - d) student for floating-point entries; the others are copied."""
        for name, value in self.base.state_dict().items():
            t = getattr(self, _teacher_key(name))
            if t.is_floating_point():
                t.lerp_(value.detach().to(t.dtype), 1.0 - self.ema_decay)
            else:
                t.copy_(value)

    def _pass(self, x: torch.Tensor, noise: float) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The scores and each level's value: the input, then every Linear's output (noisy when ``noise``)."""
        h = x.flatten(1)
        zs = [h + noise * h.detach().std(0, keepdim=True) * torch.randn_like(h) if noise else h]
        h = zs[0]
        for m in self._layers:
            h = m(h)
            if isinstance(m, nn.Linear):
                if noise:
                    h = h + noise * h.detach().std(0, keepdim=True) * torch.randn_like(h)
                zs.append(h)
        return h, zs

    def _ladder(self, x: torch.Tensor, noise: float):
        _, clean = self._pass(x, 0.0)
        scores, noisy = self._pass(x, noise)
        z_hat = self.combinators[-1](noisy[-1], noisy[-1])
        cost = self.layer_weights[-1] * _normalized_error(z_hat, clean[-1])
        for level in range(len(noisy) - 2, -1, -1):
            z_hat = self.combinators[level](noisy[level], self.up[level](z_hat))
            cost = cost + self.layer_weights[level] * _normalized_error(z_hat, clean[level])
        return scores, cost


def _normalized_error(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error against the (detached) clean value, divided by its variance."""
    target = target.detach()
    return (estimate - target).pow(2).mean() / (target.var() + 1e-6)


def _teacher_key(name: str) -> str:
    """A buffer name for the teacher's copy of the classifier's state entry ``name``."""
    return "teacher__" + name.replace(".", "__")
