"""Process groups on this machine: K worker processes joined by ``torch.distributed``.

Shared by the executors that start their own workers (``ddp``, ``model_parallel``): a free
port on 127.0.0.1 for the rendezvous, gloo and NCCL kept on the loopback interface, and the
workers' failures turned into one-line :class:`~visionnets.errors.TrainingError` messages.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Callable

import torch
import torch.distributed as dist

from visionnets.errors import ConfigError, TrainingError


BACKENDS = ("gloo", "nccl")


def choose_backend(rec, workers: int, backend: str | None, what: str) -> tuple[str, str]:
    """(backend, device type): NCCL on CUDA when every worker gets a GPU, else gloo on CPU."""
    if backend is not None and backend not in BACKENDS:
        raise ConfigError(f"{what}: backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    wants_cuda = rec.device.startswith("cuda")
    if wants_cuda and gpus < workers:
        raise ConfigError(f"device: {rec.device!r} with {workers} {what} workers needs {workers} GPUs, found {gpus}")
    on_gpu = (wants_cuda or rec.device == "auto") and gpus >= workers
    backend = backend or ("nccl" if on_gpu else "gloo")
    if backend == "nccl" and not on_gpu:
        raise ConfigError(f"{what}: backend nccl needs {workers} GPUs and device cuda or auto; found {gpus} GPUs, "
                          f"device {rec.device!r}")
    return backend, "cuda" if on_gpu else "cpu"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loopback_interface() -> str | None:
    return next((name for _, name in socket.if_nameindex() if name.startswith("lo")), None)


def join(rank: int, world: int, port: int, backend: str = "gloo", threads: int | None = None) -> None:
    """Join the group of ``world`` processes rendezvousing at 127.0.0.1:``port`` as ``rank``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    lo = _loopback_interface()
    if lo is not None:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", lo)
        os.environ.setdefault("NCCL_SOCKET_IFNAME", lo)
    if threads is not None:
        torch.set_num_threads(threads)
    dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world)


def leave() -> None:
    """Every rank past its last collective, then the group torn down. (Without the barrier a rank
    still inside a collective when its peer exits can abort in gloo: "terminate called without an
    active exception", seen on a loaded 2-core machine.)"""
    try:
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run_worker(rank: int, world: int, port: int, backend: str, device_type: str, threads: int, recipe: dict,
               dataset, weights: dict, body: Callable) -> None:
    """The life of one spawned worker: its device (``cuda:<rank>`` or the CPU), the group joined,
    the recipe's model built with the parent's ``weights``, ``body(rec, model, device)`` run, and
    every rank past its last collective before the group is torn down (:func:`leave`).

    After a success the process ends at once (``os._exit(0)``, its output flushed): everything it
    wrote is closed by then, and the interpreter's finalization is where gloo's threads, destroyed
    in an arbitrary order, can still abort a run that succeeded ("terminate called without an
    active exception", exit code -6; seen about once in ten runs on a loaded 2-core machine). A
    failure raises as usual, and ``mp.spawn`` reports it.
    """
    from visionnets.recipes import Recipe
    from visionnets.train.setup import build_model_for

    device = torch.device(f"cuda:{rank}" if device_type == "cuda" else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    join(rank, world, port, backend, threads)
    try:
        rec = Recipe.model_validate(recipe)

        def loaded() -> torch.nn.Module:
            model = build_model_for(rec, dataset)
            model.load_state_dict(weights)
            return model

        body(rec, loaded(), device)              # held by ``body`` alone, which may let it go
    finally:
        leave()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def spawn(fn: Callable, nprocs: int, args: tuple, what: str) -> None:
    """``fn(rank, *args)`` in ``nprocs`` new processes; a worker's failure is a TrainingError
    naming ``what`` and the failure's last line."""
    import torch.multiprocessing as mp

    try:
        mp.spawn(fn, args=args, nprocs=nprocs, join=True)
    except mp.ProcessRaisedException as exc:
        last = [line for line in str(exc).strip().splitlines() if line.strip()][-1]
        raise TrainingError(f"{what}: a worker failed: {last}") from None
    except mp.ProcessExitedException as exc:
        raise TrainingError(f"{what}: worker {exc.error_index} exited with code {exc.exit_code}") from None
