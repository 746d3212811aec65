"""The ae family: a deterministic autoencoder, the seed's baseline. The vae's networks and
likelihoods, z = encoder(x) with no noise, no KL and no prior: decoding z ~ N(0, I) gives
images, but not samples of a generative model (nothing made the codes fill N(0, I))."""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..likelihoods import create_likelihood
from .base import LatentModel, full_precision
from .nets import conv_bodies


class AE(LatentModel):
    has_prior = False

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        likelihood = create_likelihood(cfg)
        self.encoder, self.decoder = conv_bodies(cfg, cfg.net.latent_dim, likelihood.channels(cfg))
        self.likelihood = likelihood

    @property
    def latent_shapes(self) -> list[tuple[int, ...]]:
        return [(self.cfg.net.latent_dim,)]

    @property
    def has_kl(self) -> bool:
        return False

    def noise(self, n: int, k: int = 1, device: torch.device | str = "cpu") -> list[torch.Tensor]:
        return []  # deterministic: draws nothing

    def posterior(self, x: torch.Tensor) -> list[tuple[torch.Tensor, None]]:
        z = full_precision(self.encoder(self.normalize(x)).flatten(1))  # (B, D), no variance
        return [(z, None)]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.likelihood.mean(full_precision(self.decoder(z[:, :, None, None])))

    def forward(self, x: torch.Tensor, eps: list[torch.Tensor] | None = None) -> dict:
        """recon (B,) in the likelihood's units; no KL (an empty list); z [(B, D)]."""
        [(z, _)] = self.posterior(x)
        recon = self.likelihood.nll(x, full_precision(self.decoder(z[:, :, None, None])))
        return {"recon": recon, "kl": [], "z": [z], "mu": z, "logvar": None}
