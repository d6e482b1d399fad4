"""Training: the one loop (Trainer), optimizers and schedules, checkpoints."""

from visionnets.train.checkpoint import load_checkpoint, save_checkpoint
from visionnets.train.trainer import Trainer, evaluate_model, resolve_device

__all__ = ["Trainer", "evaluate_model", "resolve_device", "load_checkpoint", "save_checkpoint"]
