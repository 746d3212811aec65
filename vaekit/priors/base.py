"""The interface every prior implements: a distribution over a model's top codes.

A prior is an nn.Module over codes of a fixed per-image shape (a VAE's flat z (D,), a VQ-VAE's
grid of code indices (h, w)). It is rebuilt from plain data: Prior subclass(**options()) and
then load_state_dict(state_dict()), so a fitted prior is saved as weights-only data.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn


class Prior(nn.Module):
    """p(z) over codes (N, *shape): log densities in nats and samples."""

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """(N, *shape) codes -> (N,) log p(z) in nats (a log-mass for discrete codes)."""
        raise NotImplementedError

    def sample(
        self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        """n codes (n, *shape) on the prior's device; the draws come from generator (a CPU
        generator: the same seed, the same codes on any device). temperature scales the
        spread (1: the prior itself)."""
        raise NotImplementedError

    def fixed(self) -> AbstractContextManager:
        """A context within which the prior's parameters are taken as fixed (an evaluation), so
        what it derives from them may be computed once; here, nothing is derived."""
        return nullcontext()

    def options(self) -> dict:
        """The constructor's keyword arguments as plain JSON data (with state_dict(): all
        that rebuilds this prior)."""
        raise NotImplementedError
