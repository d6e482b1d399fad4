"""Cross-modal reconstruction: each modality of a multi-modal model rebuilt from the other alone.

For a few test examples of a two-modality dataset (AV-MNIST: an image and a spectrogram), the
figure shows in columns: each modality as given, then as the model rebuilds it from the *other*
modality alone (the first modality missing, then the second). A model that learned a shared
code draws a digit from its sound and a sound's spectrogram from its image.

    >>> import torch, tempfile, pathlib
    >>> from visionnets.data.base import Split
    >>> from visionnets.models.bimodal import bimodal
    >>> net = bimodal((1, 4, 4), 3, modalities={"x": (1, 4, 4), "audio": (1, 2, 5)}, hidden=(8,), code=6)
    >>> s = Split(torch.rand(5, 1, 4, 4), torch.arange(5) % 3, {"audio": torch.rand(5, 1, 2, 5)})
    >>> plot_cross_modal(net, s, pathlib.Path(tempfile.mkdtemp()) / "cm.png", n=4).name
    'cm.png'
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from visionnets.data.base import Split
from visionnets.errors import ConfigError
from visionnets.viz.grid import evaluating, model_device, new_figure, save_figure


def _image(t: torch.Tensor):
    a = t.detach().float().cpu().reshape(t.shape[-2], t.shape[-1]) if t.dim() >= 2 else t
    lo, hi = a.min(), a.max()
    return ((a - lo) / (hi - lo + 1e-8)).numpy()


def plot_cross_modal(model: nn.Module, split: Split, path: str | os.PathLike, n: int = 8) -> Path:
    """Rows: ``n`` examples; columns: modality A given, A rebuilt from B alone, B given, B from A alone."""
    fields = {"x": split.x, **split.extra}
    names = [m for m in getattr(model, "names", []) if m in fields]
    if len(names) != 2:
        raise ConfigError(f"cross-modal figure: needs a model of two modalities, got {names}")
    a, b = names
    n = min(n, len(split))
    device = model_device(model)
    with evaluating(model), torch.no_grad():
        rec_a = model(**{b: fields[b][:n].to(device)}, reconstruct=True)[1][a]
        rec_b = model(**{a: fields[a][:n].to(device)}, reconstruct=True)[1][b]
    columns = [(f"{a}", fields[a][:n]), (f"{a} from {b} alone", rec_a), (f"{b}", fields[b][:n]),
               (f"{b} from {a} alone", rec_b)]
    fig = new_figure(1.6 * len(columns), 1.5 * n)
    for i in range(n):
        for j, (title, data) in enumerate(columns):
            ax = fig.add_subplot(n, len(columns), i * len(columns) + j + 1)
            ax.imshow(_image(data[i]), cmap="gray", interpolation="nearest", aspect="auto")
            ax.set_axis_off()
            if i == 0:
                ax.set_title(title, fontsize=8)
    return save_figure(fig, path)
