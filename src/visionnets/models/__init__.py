"""Architectures found by name: ``linear``, ``mlp``, ``convnet``, ``le2012`` (Le et al.'s locally
connected stages), ``bimodal`` (several inputs), and any a user registers.

Every factory takes the library-supplied ``input_shape`` (one example, e.g. ``(1, 28, 28)``)
and ``num_outputs``, plus the keyword arguments of the recipe's ``model:`` section::

    >>> from visionnets.models import build_model
    >>> net = build_model({"name": "mlp", "hidden": [32, 32], "activation": "tanh"}, (1, 8, 8), 10)
    >>> sum(p.numel() for p in net.parameters())
    3466

Add your own with ``@MODELS.register("name")`` on a function returning an ``nn.Module``.
"""

from visionnets.models import bimodal, convnet, le2012, linear, mlp  # noqa: F401  (register the built-ins)
from visionnets.models.catalog import MODELS, build_model, count_parameters

__all__ = ["MODELS", "build_model", "count_parameters"]
