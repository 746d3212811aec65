"""Inception-v3 features, the standard FID's: torchmetrics' NoTrainInceptionV3 (torch-fidelity's
port of the TensorFlow network; extra vaekit[inception]) with weights read from a local file.

vaekit never downloads them and never runs the network with random weights: without the file,
a one-line error names it, where it comes from and where to put it. The default place is where
torch-fidelity's own download would have left it (torch hub's checkpoints folder).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import torch

FILE = "weights-inception-2015-12-05-6726825d.pth"
URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{FILE}"
FEATURES = 2048  # the pool3 layer


def default_weights() -> Path:
    """$TORCH_HOME/hub/checkpoints/FILE (torch.hub's folder): where torch-fidelity caches it."""
    return Path(torch.hub.get_dir()) / "checkpoints" / FILE


def load(weights: str | Path | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function uint8 images (N, C, H, W), C 1 or 3, any size -> pool3 features (N, 2048).

    Raises ValueError when the weights file is missing or is not plain tensors (it is read with
    weights_only=True first: no pickled code runs), ImportError without torch-fidelity."""
    path = Path(weights).expanduser() if weights else default_weights()
    if not path.is_file():
        raise ValueError(
            f"Inception-v3 weights not found: download {FILE} from {URL} and put it at {path} "
            "(or pass --inception-weights FILE); vaekit does not download it nor use random weights"
        )
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: not a plain Inception-v3 weights file ({first})") from None
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
        from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE
    except ImportError:
        _TORCH_FIDELITY_AVAILABLE = False
    if not _TORCH_FIDELITY_AVAILABLE:
        raise ImportError(
            "Inception-v3 features need torchmetrics and torch-fidelity: "
            "pip install 'vaekit[inception]'"
        )
    try:
        net = NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=[str(FEATURES)],
            feature_extractor_weights_path=str(path),
        )
    except RuntimeError as e:  # load_state_dict: missing or misshapen tensors
        first = str(e).strip().splitlines()[0]
        raise ValueError(f"{path}: not the Inception-v3 weights expected ({first})") from None

    def features(x: torch.Tensor) -> torch.Tensor:
        return net(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x)  # grey as RGB

    return features
