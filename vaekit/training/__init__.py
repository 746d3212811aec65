"""Training taken apart: a step callable with tensors (step.py), batches (batches.py),
checkpoints (checkpoints.py), pre-emption (signals.py), the loop that uses them (trainer.py),
its concerns as callbacks (callbacks.py) and fit() (loop.py)."""

from __future__ import annotations

from ..errors import TrainError
from ..runtime.device import resolve_device
from .batches import Batch, BatchSource, TrainingData, load_training_data
from .callbacks import Callback
from .checkpoints import CheckpointManager
from .loop import fit, resume_configs
from .step import TrainModule, lr_at, train_step
from .trainer import Trainer

__all__ = [
    "Batch",
    "BatchSource",
    "Callback",
    "CheckpointManager",
    "TrainError",
    "TrainModule",
    "Trainer",
    "TrainingData",
    "fit",
    "load_training_data",
    "lr_at",
    "resolve_device",
    "resume_configs",
    "train_step",
]
