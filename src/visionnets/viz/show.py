"""What ``visionnets show RUN_DIR`` draws, as one library call.

* no layer, no unit: the standard figures of :mod:`visionnets.viz.report` (curves, first-layer
  filters, confusion matrix, worst images or the 1-D fit);
* ``layer``: that layer's features in pixel space -- its filters if it sees pixels (or is
  locally connected / tiled: drawn at its centre location), else its projection through the
  layers below (:mod:`visionnets.viz.projections`); written to ``figures/layer_<layer>.png``;
* ``layer`` and ``unit``: the unit's top and most negative images over a split
  (``figures/top_<layer>_<unit>.png``) and, with ``optimal=True``, its optimal input of the
  split's median image norm (``figures/optimal_<layer>_<unit>.png``). A unit without a layer
  is an output unit (a class score).

    >>> import tempfile, torch
    >>> from visionnets.data.base import Dataset, Split
    >>> x, y = torch.randn(30, 1, 8, 8), torch.arange(30) % 3
    >>> ds = Dataset("toy", Split(x, y), None, Split(x, y), (1, 8, 8), num_classes=3)
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                           torch.nn.Linear(144, 3))
    >>> [p.name for p in show(net, ds, tempfile.mkdtemp(), layer="0", unit=1, top=4)]
    ['top_0_1.png']
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from torch import nn

from visionnets.data.base import Dataset
from visionnets.errors import ConfigError
from visionnets.viz.filters import first_spatial_layer, has_spatial_weights, plot_filters
from visionnets.viz.optimal import optimal_input, plot_optimal
from visionnets.viz.projections import plot_projection
from visionnets.viz.report import FIGURES, write_figures
from visionnets.viz.top import find_layer, plot_top


def _slug(layer: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", layer) if layer else "output"


def show(model: nn.Module, dataset: Dataset, run_dir: str | os.PathLike, layer: str | None = None,
         unit: int | None = None, top: int = 16, optimal: bool = False, split: str = "test",
         reduce: str = "max", history: list[dict] | None = None, steps: int = 200,
         start: str = "noise", blur: float = 0.0) -> list[Path]:
    """Write the requested figures into ``run_dir/figures``; returns their paths."""
    figs = Path(run_dir) / "figures"
    if layer is None and unit is None:
        if optimal:
            raise ConfigError("--optimal needs a unit: pass --unit K (and --layer NAME)")
        write_figures(run_dir, model, dataset, history or [], split)
        return [figs / f for f in FIGURES if (figs / f).is_file()]
    if top < 1:
        raise ConfigError(f"--top must be >= 1, got {top}")
    shape = tuple(dataset.input_shape)
    if unit is None:
        module = find_layer(model, layer)
        first = first_spatial_layer(model, shape)
        path = figs / f"layer_{_slug(layer)}.png"
        is_first = first is not None and first[1] is module
        if has_spatial_weights(module, shape) and (is_first or module.weight.ndim == 6):
            return [plot_filters(module, path, input_shape=shape, title=f"{layer}: filters")]
        return [plot_projection(model, layer, path, input_shape=shape)]
    layer = layer or ""
    data = dataset.split(split)
    image_shape = shape if len(shape) == 3 else None
    paths = [plot_top(model, layer, unit, data.x, figs / f"top_{_slug(layer)}_{unit}.png", k=top,
                      reduce=reduce, image_shape=image_shape)]
    if optimal:
        norm = data.x.reshape(len(data.x), -1).norm(dim=1).median().item()
        best = optimal_input(model, layer, unit, shape, norm=norm, steps=steps, start=start, blur=blur,
                             mean_image=dataset.train.x.mean(0), reduce=reduce)
        title = f"optimal input of {layer or 'output'} unit {unit} (||x|| = {norm:.3g})"
        paths.append(plot_optimal(best, figs / f"optimal_{_slug(layer)}_{unit}.png", title,
                                  image_shape=image_shape))
    return paths

