"""Objectives turn a batch into a loss, named outputs and named metrics, found by name.

The Trainer runs one loop for every kind of learning; what changes between supervised,
semi-supervised, multi-task or multi-modal learning is the objective (``OBJECTIVES``), the
contract of :mod:`visionnets.objectives.core`:

- ``supervised`` (:mod:`.supervised`): a loss between the model's output and the labels;
- ``multi_task`` (:mod:`.multitask`): one shared trunk, a head (a slice of the outputs) per task;
- ``semi_supervised`` (:mod:`.semisupervised`): the supervised loss on labeled examples plus a
  weighted unsupervised (reconstruction) loss on every example;
- ``multi_modal`` (:mod:`.multimodal`): several inputs fused into one code, trained with
  modalities dropped, classified and reconstructed from any subset.
"""

from visionnets.objectives.core import (OBJECTIVES, Output, build_objective, count_errors, get_loss,
                                        labeled_loss)
from visionnets.objectives.multimodal import MultiModal
from visionnets.objectives.multitask import MultiTask
from visionnets.objectives.semisupervised import SemiSupervised
from visionnets.objectives.supervised import Supervised

__all__ = ["OBJECTIVES", "MultiModal", "MultiTask", "Output", "SemiSupervised", "Supervised", "build_objective", "count_errors", "get_loss", "labeled_loss"]
