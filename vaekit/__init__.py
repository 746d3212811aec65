"""vaekit: variational autoencoders in PyTorch, from the seed's convolutional VAE onwards."""

from __future__ import annotations

from pathlib import Path

import torch

from .config import PRESETS, ModelConfig, ObjectiveConfig, TrainConfig
from .latents import encode
from .models import LatentModel, create_model, list_models
from .models.vae import VAE

__version__ = "0.2.0"
__all__ = [
    "VAE",
    "LatentModel",
    "ModelConfig",
    "ObjectiveConfig",
    "TrainConfig",
    "PRESETS",
    "create_model",
    "encode",
    "list_models",
    "load",
    "__version__",
]


def load(run_dir_or_checkpoint: str | Path, device: str | torch.device = "cpu") -> LatentModel:
    """A trained model from a run directory (its last.pt), a checkpoint file or a .safetensors
    export, in eval mode."""
    from . import checkpoint

    if str(run_dir_or_checkpoint).endswith(".safetensors"):
        from .export import load_safetensors

        return load_safetensors(run_dir_or_checkpoint).to(device)

    ckpt = checkpoint.load(run_dir_or_checkpoint)
    return checkpoint.build_model(ckpt, run_dir_or_checkpoint).to(device).eval()
