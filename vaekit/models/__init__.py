"""Model families behind one interface (base.LatentModel), created by name from a config."""

from __future__ import annotations

from ..config import FAMILIES, ModelConfig, resolve
from .base import LatentModel


def create_model(cfg: ModelConfig) -> LatentModel:
    """The model a config describes, freshly initialised: cfg.family names the class."""
    return resolve(FAMILIES[cfg.family].model)(cfg)


def list_models() -> list[str]:
    """The registered family names."""
    return sorted(FAMILIES)


__all__ = ["LatentModel", "create_model", "list_models"]
