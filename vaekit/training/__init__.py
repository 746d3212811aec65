"""Training taken apart: a step callable with tensors (step.py), batches (batches.py),
checkpoints (checkpoints.py), pre-emption (signals.py) and the loop that uses them (loop.py)."""

from __future__ import annotations

from ..errors import TrainError
from ..runtime.device import resolve_device
from .batches import BatchSource, load_training_data
from .checkpoints import CheckpointManager
from .loop import fit, resume_configs
from .step import TrainModule, lr_at, train_step

__all__ = [
    "BatchSource",
    "CheckpointManager",
    "TrainError",
    "TrainModule",
    "fit",
    "load_training_data",
    "lr_at",
    "resolve_device",
    "resume_configs",
    "train_step",
]
