"""vaekit: variational autoencoders in PyTorch, from the seed's convolutional VAE onwards."""

from __future__ import annotations

from pathlib import Path

import torch

from .config import PRESETS, TrainConfig
from .model import VAE, ModelConfig

__version__ = "0.1.0"
__all__ = ["VAE", "ModelConfig", "TrainConfig", "PRESETS", "load", "__version__"]


def load(run_dir_or_checkpoint: str | Path, device: str | torch.device = "cpu") -> VAE:
    """A trained VAE from a run directory (its last.pt), a checkpoint file or a .safetensors
    export, in eval mode."""
    from . import checkpoint

    if str(run_dir_or_checkpoint).endswith(".safetensors"):
        from .export import load_safetensors

        return load_safetensors(run_dir_or_checkpoint).to(device)

    ckpt = checkpoint.load(run_dir_or_checkpoint)
    return checkpoint.build_model(ckpt, run_dir_or_checkpoint).to(device).eval()
