"""Every docstring example of the training core, the objectives and the models runs as written."""

import doctest
import importlib

import pytest

MODULES = [
    "visionnets.device", "visionnets.errors", "visionnets.svm", "visionnets.nn.activations",
    "visionnets.data.batch", "visionnets.objectives.supervised", "visionnets.objectives.multitask",
    "visionnets.objectives.semisupervised", "visionnets.objectives.multimodal",
    "visionnets.models.bimodal", "visionnets.train.seeds", "visionnets.train.loader", "visionnets.train.step",
    "visionnets.train.record", "visionnets.train.rundir", "visionnets.train.optim", "visionnets.train.trainer",
    "visionnets.viz.multimodal", "visionnets.partition", "visionnets.distributed.model_parallel",
    "visionnets.threads", "visionnets.nn.dense",
    "visionnets.distributed.sharding", "visionnets.unsupervised.rbm",
]


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
