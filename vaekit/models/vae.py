"""The vae family: q(z|x) = N(mu, diag(exp(logvar))), p(z) = N(0, I), p(x|z) from the decoder
(Kingma & Welling 2013). One flat group z of ConvNet.latent_dim dims; the seed's network or the
resnet body (vaekit.models.nets).

conditional (a CVAE, Sohn et al. 2015): q(z|x, y) and p(x|z, y) through a learned embedding of
the label y (nets.LabelConditioning); the prior stays p(z|y) = N(0, I), so the label alone
carries the class and z the style."""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..likelihoods import create_likelihood
from ..losses import iw_log_weights, kl_normal
from .base import LatentModel, full_precision
from .nets import LabelConditioning, conv_bodies


class VAE(LatentModel):
    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        likelihood = create_likelihood(cfg)
        D = cfg.net.latent_dim
        self.encoder, self.decoder = conv_bodies(cfg, 2 * D, likelihood.channels(cfg))
        self.likelihood = likelihood  # registered after the nets: the seed's parameter order
        if self.conditional:
            self.label_net = LabelConditioning(cfg.net.num_classes, 2 * D)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> VAE:
        """A fresh model from a named preset, e.g. VAE.from_preset("mnist", latent_dim=16)."""
        from ..config import model_config

        return cls(model_config(name, **overrides))

    @property
    def latent_shapes(self) -> list[tuple[int, ...]]:
        return [(self.cfg.net.latent_dim,)]

    def posterior(self, x: torch.Tensor, y=None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        y = self.check_labels(y)
        h = full_precision(self.encoder(self.normalize(x)).flatten(1))  # (B, 2D); fp32 in autocast
        if y is not None:
            h = h + full_precision(self.label_net.encoder_shift(y))
        mu, logvar = h.chunk(2, dim=1)  # (B, D) each
        return [(mu, logvar)]

    def decoder_output(self, z: torch.Tensor, y=None) -> torch.Tensor:
        """z (B, D) (labels y (B,) of a conditional model) -> the likelihood's parameters
        (B, channels, H, W)."""
        y = self.check_labels(y)
        code = z if y is None else self.label_net.code(z, y)
        return full_precision(self.decoder(code[:, :, None, None]))

    def decode(self, z: torch.Tensor, y=None) -> torch.Tensor:
        """(N, D) -> (N, C, H, W) in [0, 1]: the likelihood's mean image."""
        return self.likelihood.mean(self.decoder_output(z, y))

    def log_px(self, x: torch.Tensor, z: torch.Tensor, y=None) -> torch.Tensor:
        """log P(x|z) in nats per image (B,) of the 8-bit (or binary) x."""
        return self.likelihood.log_px(x, self.decoder_output(z, y))

    @staticmethod
    def reparameterize(
        mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None
    ) -> torch.Tensor:
        """z = mu + eps * sigma, eps ~ N(0, I): a sample of q(z|x) differentiable in mu, logvar."""
        eps = torch.randn_like(mu) if eps is None else eps
        return mu + eps * torch.exp(0.5 * logvar)

    def forward(self, x: torch.Tensor, eps: list[torch.Tensor] | None = None, y=None) -> dict:
        """x (B, C, H, W) in [0, 1] (binary for bernoulli), labels y (B,) of a conditional
        model. recon (B,) in the likelihood's units, kl [(B, D)] per dim in nats, z [(B, D)];
        mu and logvar (B, D) of q(z|x)."""
        [(mu, logvar)] = self.posterior(x, y)
        z = self.reparameterize(mu, logvar, None if eps is None else eps[0])
        recon = self.likelihood.nll(x, self.decoder_output(z, y))  # (B,)
        return {"recon": recon, "kl": [kl_normal(mu, logvar)], "z": [z], "mu": mu, "logvar": logvar}

    def log_weights(
        self,
        x: torch.Tensor,
        K: int,
        generator: torch.Generator | None = None,
        chunk: int | None = None,
        eps: list[torch.Tensor] | None = None,
        y=None,
    ) -> torch.Tensor:
        """log p(x|z_k) + log p(z_k) - log q(z_k|x) for K samples z_k ~ q(z|x): (K, B), nats.

        eps: [(K, B, D)] noise to use (else drawn from generator); the decoder sees at most
        chunk * B samples at once (chunk None: all K). y: labels (B,) of a conditional model."""
        y = self.check_labels(y)

        def log_px_given_y(x_rep: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
            return self.log_px(x_rep, z, y.repeat(len(z) // len(y)))  # (n * B) samples

        return iw_log_weights(
            x,
            lambda x: self.posterior(x, y)[0],
            self.log_px if y is None else log_px_given_y,
            K,
            chunk or K,
            generator,
            eps=None if eps is None else eps[0],
        )
