"""Which torch device to run on: the --device flag's rule, shared by training and the commands."""

from __future__ import annotations

import torch

from ..errors import DeviceError


def resolve_device(name: str) -> torch.device:
    """auto -> cuda, else mps, else cpu; an explicit device that is not there is a DeviceError."""
    has_mps = getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda: no CUDA device is available here; use --device cpu")
    if name == "mps" and not has_mps:
        raise DeviceError("--device mps: no Apple GPU is available here; use --device cpu")
    return torch.device(name)
