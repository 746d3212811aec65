"""The standard normal prior N(0, I) over codes of any shape: a vae's own prior, as a part."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .base import Prior

if TYPE_CHECKING:
    from ..models import LatentModel


class StandardNormal(Prior):
    """p(z) = N(0, I) over codes (N, *shape)."""

    def __init__(self, shape: Sequence[int]):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        self.register_buffer("anchor", torch.zeros(()), persistent=False)  # the device

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """(N, *shape) -> (N,) log N(z; 0, I) in nats."""
        d = math.prod(self.shape)
        return -0.5 * z.flatten(1).pow(2).sum(1) - 0.5 * d * math.log(2 * math.pi)

    def sample(
        self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        """n codes z ~ N(0, T^2 I), (n, *shape), drawn on the CPU."""
        z = torch.randn(n, *self.shape, generator=generator)
        return (z * temperature).to(self.anchor.device)

    def options(self) -> dict:
        return {"shape": list(self.shape)}

    @classmethod
    def fit(
        cls,
        model: LatentModel,
        x: torch.Tensor,
        options,
        *,
        work_dir: Path,
        device: torch.device,
        seed: int,
        progress: Callable[[str], None],
    ) -> StandardNormal:
        """Nothing to fit: N(0, I) over the model's top codes (D,)."""
        return cls((model.top_dim,))
