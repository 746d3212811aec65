"""The ae family: a deterministic autoencoder, the seed's baseline. The vae's networks and
likelihoods, z = encoder(x) with no noise, no KL and no prior: decoding z ~ N(0, I) gives
images, but not samples of a generative model (nothing made the codes fill N(0, I)).
conditional: the label embedding of the vae's CVAE (nets.LabelConditioning) in the encoder and
the decoder."""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..likelihoods import create_likelihood
from .base import LatentModel, full_precision
from .nets import LabelConditioning, conv_bodies


class AE(LatentModel):
    has_prior = False

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        likelihood = create_likelihood(cfg)
        self.encoder, self.decoder = conv_bodies(cfg, cfg.net.latent_dim, likelihood.channels(cfg))
        self.likelihood = likelihood
        if self.conditional:
            self.label_net = LabelConditioning(cfg.net.num_classes, cfg.net.latent_dim)

    @property
    def latent_shapes(self) -> list[tuple[int, ...]]:
        return [(self.cfg.net.latent_dim,)]

    @property
    def has_kl(self) -> bool:
        return False

    def noise(self, n: int, k: int = 1, device: torch.device | str = "cpu") -> list[torch.Tensor]:
        return []  # deterministic: draws nothing

    def posterior(self, x: torch.Tensor, y=None) -> list[tuple[torch.Tensor, None]]:
        y = self.check_labels(y)
        z = full_precision(self.encoder(self.normalize(x)).flatten(1))  # (B, D), no variance
        if y is not None:
            z = z + full_precision(self.label_net.encoder_shift(y))
        return [(z, None)]

    def decoder_output(self, z: torch.Tensor, y=None) -> torch.Tensor:
        """z (B, D) (labels y (B,) of a conditional model) -> the likelihood's parameters."""
        y = self.check_labels(y)
        code = z if y is None else self.label_net.code(z, y)
        return full_precision(self.decoder(code[:, :, None, None]))

    def decode(self, z: torch.Tensor, y=None) -> torch.Tensor:
        return self.likelihood.mean(self.decoder_output(z, y))

    def forward(self, x: torch.Tensor, eps: list[torch.Tensor] | None = None, y=None) -> dict:
        """recon (B,) in the likelihood's units; no KL (an empty list); z [(B, D)]."""
        [(z, _)] = self.posterior(x, y)
        recon = self.likelihood.nll(x, self.decoder_output(z, y))
        return {"recon": recon, "kl": [], "z": [z], "mu": z, "logvar": None}
