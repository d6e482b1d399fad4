"""Large-scale learning: the same recipe on many processes or machines.

Two executors run the recipe's model, objective and data beside the single-process Trainer
(``local``), and write the same run directory:

- ``downpour``: asynchronous Downpour SGD (DistBelief) with a parameter server sharded over
  Ray actors and R model replicas that never wait for one another
  (:mod:`visionnets.distributed.downpour`; needs the ``distributed`` extra, i.e. Ray);
- ``ddp``: synchronous data parallel SGD with ``torch.distributed``: W processes, each on its
  part of every mini-batch, gradients averaged (:mod:`visionnets.distributed.ddp`).

    >>> from visionnets.distributed import train_distributed
    >>> r = train_distributed("ddp", "digits_convnet", ["train.epochs=1"], workers=2,
    ...                       out="/tmp/vn-doc-ddp", progress=False)  # doctest: +SKIP
    >>> r.final["test_error"] < 0.5  # doctest: +SKIP
    True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visionnets.api import RunResult
from visionnets.errors import ConfigError

EXECUTOR_OPTIONS = {
    "local": (),
    "downpour": ("replicas", "ps_shards", "n_fetch", "n_push", "ps_optimizer", "checkpoint_every",
                 "address", "num_cpus", "replica_threads"),
    "ddp": ("workers", "backend", "threads"),
}


def train_distributed(executor: str, recipe: Any = None, overrides: list[str] | tuple[str, ...] = (),
                      data_dir: str | Path | None = None, out: str | Path | None = None,
                      resume: str | Path | None = None, progress: bool = True, figures: bool = True,
                      callbacks: tuple = (), **opts: Any) -> RunResult:
    """Train ``recipe`` with ``executor`` (``local``, ``downpour`` or ``ddp``); as :func:`api.train`.

    ``opts`` are the executor's options: for ``downpour`` ``replicas`` (R, default 2),
    ``ps_shards`` (S, 1), ``n_fetch`` (1), ``n_push`` (1), ``ps_optimizer`` (``recipe`` or
    ``adagrad``), ``checkpoint_every`` (shard updates between shard checkpoints, 200),
    ``address`` (a Ray cluster; default: a local Ray on loopback), ``num_cpus`` (of a local
    Ray; default max(cores, R)); for ``ddp`` ``workers`` (W, 2), ``backend`` (``gloo`` or
    ``nccl``; default NCCL when CUDA has W devices, else gloo). ``callbacks`` are called as
    ``cb(executor_or_trainer, record)`` after each epoch's checkpoint (on rank 0 for DDP, where
    only picklable callables are allowed).
    """
    if executor not in EXECUTOR_OPTIONS:
        raise ConfigError(f"--executor: expected one of {', '.join(EXECUTOR_OPTIONS)}, got {executor!r}")
    unknown = sorted(set(opts) - set(EXECUTOR_OPTIONS[executor]))
    if unknown:
        allowed = ", ".join(EXECUTOR_OPTIONS[executor]) or "none"
        raise ConfigError(f"--executor {executor}: unknown option {unknown[0]!r} (options: {allowed})")
    if executor == "local":
        from visionnets import api
        from visionnets.distributed.run import check_resumable

        if resume is not None:
            check_resumable(Path(resume), "local")
        return api.train(recipe, overrides, data_dir=data_dir, out=out, resume=resume, progress=progress,
                         figures=figures, callbacks=callbacks)
    if executor == "downpour":
        from visionnets.distributed.downpour import run_downpour

        return run_downpour(recipe, overrides, data_dir, out, resume, progress, figures, callbacks, **opts)
    from visionnets.distributed.ddp import run_ddp

    return run_ddp(recipe, overrides, data_dir, out, resume, progress, figures, callbacks, **opts)


__all__ = ["train_distributed", "EXECUTOR_OPTIONS"]
