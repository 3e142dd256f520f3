"""The training engine: a small loop around a task (:class:`~holdsgm.engine.task.Task`), crash-safe
checkpoint files, the EMA, flat parameter buffers and DDP plumbing. It knows nothing of what it trains:
no SDE, no data, no classes, no speech (those are :mod:`holdsgm.tasks`).
"""

from .checkpoint import (
    Checkpoint,
    find_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_weights_into,
    prune_checkpoints,
    save_checkpoint,
    scan_checkpoints,
    verify_checkpoint,
)
from .ema import EMA, ema_decay_at
from .faults import Faults
from .loop import Engine, TrainResult, train
from .options import Options, adamw, derive_seed, lr_at
from .rundir import CONFIG_FILE
from .stats import STATS_FILE
from .task import Task

__all__ = [
    "CONFIG_FILE", "Checkpoint", "EMA", "Engine", "Faults", "Options", "STATS_FILE", "Task", "TrainResult", "adamw",
    "derive_seed", "ema_decay_at", "find_checkpoint", "list_checkpoints", "load_checkpoint", "load_weights_into",
    "lr_at", "prune_checkpoints", "save_checkpoint", "scan_checkpoints", "train", "verify_checkpoint"
]
