"""vaekit: variational autoencoders in PyTorch, from the seed's convolutional VAE onwards.

The public names below are imported on first use (PEP 562), so that `vaekit --help`,
`vaekit --version` and `import vaekit.config` do not wait for torch's import (seconds on a
small CPU); `from vaekit import VAE` and `vaekit.load(...)` work as usual. From Python, every
command is a function of its name (vaekit.api): vaekit.train(out, preset, **fields) trains a
run as `vaekit train` does; vaekit.sample(run_dir, n=16) returns the grid `vaekit sample`
writes; vaekit.encode(model, images) gives latents; vaekit.evaluate(run_dir) returns what
`vaekit evaluate --json` prints; vaekit.load(run_dir) loads a model.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from ._version import __version__

# public name -> the module that defines it
_LAZY = {
    "VAE": "vaekit.models.vae",
    "LatentModel": "vaekit.models",
    "create_model": "vaekit.models",
    "list_models": "vaekit.models",
    "ModelConfig": "vaekit.config",
    "ObjectiveConfig": "vaekit.config",
    "TrainConfig": "vaekit.config",
    "PRESETS": "vaekit.config",
    # the operations: every command of the CLI is a function of its name (vaekit.api)
    **dict.fromkeys(
        ["train", "evaluate", "sample", "reconstruct", "traverse", "interpolate", "encode"]
        + ["score", "metrics", "export", "explore", "prior"],
        "vaekit.api",
    ),
}
__all__ = [*_LAZY, "load", "__version__"]

if TYPE_CHECKING:  # what the names are, for type checkers and editors
    import torch

    from .api import encode as encode
    from .api import evaluate as evaluate
    from .api import explore as explore
    from .api import export as export
    from .api import interpolate as interpolate
    from .api import metrics as metrics
    from .api import prior as prior
    from .api import reconstruct as reconstruct
    from .api import sample as sample
    from .api import score as score
    from .api import train as train
    from .api import traverse as traverse
    from .config import PRESETS as PRESETS
    from .config import ModelConfig as ModelConfig
    from .config import ObjectiveConfig as ObjectiveConfig
    from .config import TrainConfig as TrainConfig
    from .models import LatentModel as LatentModel
    from .models import create_model as create_model
    from .models import list_models as list_models
    from .models.vae import VAE as VAE


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'vaekit' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # once: later look-ups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def load(
    run_dir_or_checkpoint: str | Path,
    device: str | torch.device = "cpu",
    *,
    allow_nonfinite: bool = False,
    raw_weights: bool = False,
) -> LatentModel:
    """A trained model from a run directory (its last.pt), a checkpoint file or a .safetensors
    export, in eval mode: the moving average of its weights if the run kept one (train --ema),
    unless raw_weights; a model with discrete codes (vqvae) with the PixelCNN prior fitted in
    its run. Weights holding NaN or Inf are refused (CheckpointError) unless
    allow_nonfinite."""
    from .api.runs import open_run

    r = open_run(run_dir_or_checkpoint, allow_nonfinite=allow_nonfinite, raw_weights=raw_weights)
    return r.model.to(device)
