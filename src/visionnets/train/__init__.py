"""Training: what a run is, once for every executor.

- :mod:`~visionnets.train.setup`: recipe -> data, model, run directory (``prepare``); the executors.
- :mod:`~visionnets.train.rundir`: the run directory's files (``RunDir``, ``read_metrics``).
- :mod:`~visionnets.train.loader`: seeded mini-batches (``TensorLoader``), sharded for DDP.
- :mod:`~visionnets.train.seeds`: every seed a run derives.
- :mod:`~visionnets.train.step`: one step (augmentation, FPROP, finite-loss check, BPROP, clipping).
- :mod:`~visionnets.train.record`: an epoch's record, early stopping, best/final record.
- :mod:`~visionnets.train.trainer`: the loop (``Trainer``) and the ``local`` executor.
- :mod:`~visionnets.train.optim`, :mod:`~visionnets.train.checkpoint`: optimizers, schedules, checkpoints.
"""

from visionnets.train.checkpoint import load_checkpoint, save_checkpoint
from visionnets.train.loader import TensorLoader
from visionnets.train.record import EarlyStopping, RunRecord, Tally
from visionnets.train.rundir import RunDir, read_metrics
from visionnets.train.setup import EXECUTORS, Setup, build_data, build_model_for, prepare
from visionnets.train.step import train_step
from visionnets.train.trainer import Trainer, evaluate_model, fit_local

__all__ = ["EXECUTORS", "EarlyStopping", "RunDir", "RunRecord", "Setup", "Tally", "TensorLoader", "Trainer",
           "build_data", "build_model_for", "evaluate_model", "fit_local", "load_checkpoint", "prepare",
           "read_metrics", "save_checkpoint", "train_step"]
