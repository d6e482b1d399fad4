"""Large-scale learning: the same recipe on many processes or machines.

Two executors run the recipe's model, objective and data beside the single-process Trainer
(``local``), through the same training core (:mod:`visionnets.train`: the step, the epoch
record, the run directory), and write the same run directory:

- ``downpour``: asynchronous Downpour SGD (DistBelief) with a parameter server sharded over
  Ray actors and R model replicas that never wait for one another
  (:mod:`visionnets.distributed.downpour`; needs the ``distributed`` extra, i.e. Ray);
- ``ddp``: synchronous data parallel SGD with ``torch.distributed``: W processes, each on its
  part of every mini-batch, gradients averaged (:mod:`visionnets.distributed.ddp`);
- ``model_parallel``: the model itself split (DistBelief's model parallelism): K processes, each
  owning a spatial block of every feature map and of the locally connected filters there,
  exchanging only the borders (:mod:`visionnets.distributed.model_parallel`).

Importing this package registers them in ``visionnets.train.setup.EXECUTORS``; train with
``visionnets.api.train(recipe, executor="ddp", workers=2)`` or
``visionnets train RECIPE --executor ddp --workers 2``::

    >>> from visionnets import api
    >>> r = api.train("digits_convnet", ["train.epochs=1"], executor="ddp", workers=2,
    ...               out="/tmp/vn-doc-ddp", progress=False)  # doctest: +SKIP
    >>> r.final["test_error"] < 0.5  # doctest: +SKIP
    True
"""

from visionnets.distributed.ddp import fit_ddp
from visionnets.distributed.downpour import fit_downpour
from visionnets.distributed.model_parallel import fit_model_parallel

__all__ = ["fit_ddp", "fit_downpour", "fit_model_parallel"]
