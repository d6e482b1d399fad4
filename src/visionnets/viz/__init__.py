"""Seeing inside the nets: filters, projected features, top images, optimal inputs, run reports.

"Visualizing learned features: can we interpret them?" (CVPR 2012 tutorial, part II). Every
figure is drawn with matplotlib's Agg canvas (no display needed) and written atomically.

==========================  ===========================================================
module                      what it draws
==========================  ===========================================================
:mod:`.filters`             filter grids of conv, locally connected, tiled, Linear layers
:mod:`.projections`         higher-layer features projected to pixels (linear approx.)
:mod:`.top`                 top-k and most negative images of a unit
:mod:`.optimal`             the optimal input of a unit under a norm constraint
:mod:`.curves`              learning curves from the history / metrics.jsonl
:mod:`.confusion`           the confusion matrix
:mod:`.worst`               the worst-classified test images
:mod:`.fit`                 prediction against truth for 1-D regression
:mod:`.report`              ``finish_run`` (all of the above) and ``report.html``
:mod:`.show`                what ``visionnets show`` draws
:mod:`.tensorboard`         optional TensorBoard logging (the ``[tensorboard]`` extra)
:mod:`.compare`             the comparison's bar chart (measured against the tutorial's error)
==========================  ===========================================================
"""

from visionnets.viz.confusion import confusion_matrix, plot_confusion, predict
from visionnets.viz.curves import plot_curves
from visionnets.viz.filters import filter_weights, first_spatial_layer, plot_filters
from visionnets.viz.fit import plot_fit
from visionnets.viz.optimal import activation_at_norm, optimal_input, plot_optimal
from visionnets.viz.projections import (project_conv_filters, project_conv_layer, project_layer,
                                        project_through_decoders, project_through_encoders,
                                        plot_projection)
from visionnets.viz.report import finish_run, write_report
from visionnets.viz.show import show
from visionnets.viz.top import plot_top, top_images, unit_activations
from visionnets.viz.worst import plot_worst, worst_examples

__all__ = [
    "activation_at_norm", "confusion_matrix", "filter_weights", "finish_run", "first_spatial_layer",
    "optimal_input", "plot_confusion", "plot_curves", "plot_filters", "plot_fit", "plot_optimal",
    "plot_projection", "plot_top", "plot_worst", "predict", "project_conv_filters",
    "project_conv_layer", "project_layer", "project_through_decoders", "project_through_encoders",
    "show", "top_images", "unit_activations", "worst_examples", "write_report",
]
