"""The vae family: q(z|x) = N(mu, diag(exp(logvar))), p(z) = N(0, I), p(x|z) from the decoder
(Kingma & Welling 2013). One flat group z of ConvNet.latent_dim dims; the seed's network or the
resnet body (vaekit.models.nets). Options: a learned VampPrior as p(z) (prior "vamp",
vaekit.priors.vamp) and an inverse autoregressive flow after the Gaussian q (posterior "iaf",
vaekit.models.flows), alone or together; with either, the KL is the one-sample Monte Carlo estimate
log q(z|x) - log p(z) of the sampled z, as both papers do.

conditional (a CVAE, Sohn et al. 2015): q(z|x, y) and p(x|z, y) through a learned embedding of
the label y (nets.LabelConditioning); the prior stays p(z|y) = N(0, I), so the label alone
carries the class and z the style (a VampPrior's pseudo-inputs have no label: not with it)."""

from __future__ import annotations

from contextlib import nullcontext

import torch

from ..config import ModelConfig
from ..likelihoods import create_likelihood
from ..losses import iw_log_weights, kl_normal, log_normal, log_std_normal
from ..priors.vamp import VampPrior
from .base import LatentModel, full_precision
from .flows import IAF
from .nets import LabelConditioning, conv_bodies


class VAE(LatentModel):
    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        likelihood = create_likelihood(cfg)
        net, D = cfg.net, cfg.net.latent_dim
        context = D if net.posterior == "iaf" else 0  # the flow's context h from the encoder
        self.encoder, self.decoder = conv_bodies(cfg, 2 * D + context, likelihood.channels(cfg))
        self.likelihood = likelihood  # registered after the nets: the seed's parameter order
        if self.conditional:
            self.label_net = LabelConditioning(cfg.net.num_classes, 2 * D)
        self.flow = IAF(D, context, net.flow_steps, net.flow_hidden) if context else None
        self.prior = None
        if net.prior == "vamp":
            self.prior = VampPrior(net.pseudo_inputs, (cfg.in_channels, *cfg.image_size))
            self.prior.bind(self.prior_component)

    @property
    def monte_carlo_kl(self) -> bool:
        """Is forward's KL the one-sample estimate (B, 1) rather than the closed form (B, D)?"""
        return self.flow is not None or self.prior is not None

    @classmethod
    def from_preset(cls, name: str, **overrides) -> VAE:
        """A fresh model from a named preset, e.g. VAE.from_preset("mnist", latent_dim=16)."""
        from ..config import model_config

        return cls(model_config(name, **overrides))

    @property
    def latent_shapes(self) -> list[tuple[int, ...]]:
        return [(self.cfg.net.latent_dim,)]

    def encoder_output(self, x: torch.Tensor, y=None) -> tuple[torch.Tensor, ...]:
        """x (B, C, H, W) (labels y (B,) of a conditional model) -> mu, logvar (B, D) of the
        Gaussian q(z0|x), and the flow's context (B, D) when there is a flow; fp32 in autocast."""
        y = self.check_labels(y)
        h = full_precision(self.encoder(self.normalize(x)).flatten(1))  # (B, 2D [+ D])
        if y is not None:  # the label shifts mu and logvar (the first 2D columns)
            D2 = 2 * self.cfg.net.latent_dim
            h = torch.cat(
                [h[:, :D2] + full_precision(self.label_net.encoder_shift(y)), h[:, D2:]], 1
            )
        if self.flow is None:
            return tuple(h.chunk(2, dim=1))
        return tuple(h.split(self.cfg.net.latent_dim, dim=1))

    def prior_component(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A VampPrior's component at pseudo-input x: (mu, logvar) (B, D), q(z|x) itself without
        a flow; with one, a Gaussian at the flow's image of q(z0|x)'s mean with q(z0|x)'s
        variances (q(z|x) has no closed form; any Gaussian keeps p(z) a density, and this one
        sits where the flow puts the pseudo-input's codes)."""
        return self.posterior(x)[0]

    def posterior(self, x: torch.Tensor, y=None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(mu, logvar)] of q(z|x). With a flow, mu is the flow's image of the Gaussian's mean
        (z at zero noise) and logvar the Gaussian's: the codes' location, not q's moments."""
        mu, logvar, *context = self.encoder_output(x, y)
        if self.flow is not None:
            mu = self.flow(mu, context[0])[0]
        return [(mu, logvar)]

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) in nats: (..., D) -> (...)."""
        if self.prior is None:
            return log_std_normal(z)
        return self.prior.log_prob(z.reshape(-1, z.shape[-1])).reshape(z.shape[:-1])

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
        model. recon (B,) in the likelihood's units, kl [(B, D)] per dim in nats (the closed
        form), or [(B, 1)] the one-sample estimate log q(z|x) - log p(z) with a flow or a
        learned prior; z [(B, D)]; mu and logvar (B, D) of the Gaussian q(z0|x)."""
        mu, logvar, *context = self.encoder_output(x, y)
        z = self.reparameterize(mu, logvar, None if eps is None else eps[0])
        if self.monte_carlo_kl:
            log_q = log_normal(z, mu, logvar)  # (B,)
            if self.flow is not None:
                z, log_det = self.flow(z, context[0])
                log_q = log_q - log_det
            kl = (log_q - self.log_prior(z))[:, None]  # (B, 1)
        else:
            kl = kl_normal(mu, logvar)
        recon = self.likelihood.nll(x, self.decoder_output(z, y))  # (B,)
        return {"recon": recon, "kl": [kl], "z": [z], "mu": mu, "logvar": logvar}

    def log_weights(
        self,
        x: torch.Tensor,
        K: int,
        generator: torch.Generator | None = None,
        chunk: int | None = None,
        eps: list[torch.Tensor] | None = None,
        y=None,
    ) -> torch.Tensor:
        """log p(x|z_k) + log p(z_k) - log q(z_k|x) for K samples z_k ~ q(z|x): (K, B), nats;
        q's exact density with a flow, the learned prior's log p(z) with one.

        eps: [(K, B, D)] noise to use (else drawn from generator); the decoder sees at most
        chunk * B samples at once (chunk None: all K). y: labels (B,) of a conditional model."""
        y = self.check_labels(y)

        def encode(x: torch.Tensor) -> tuple:
            mu, logvar, *context = self.encoder_output(x, y)
            if self.flow is None:
                return mu, logvar
            return mu, logvar, lambda z0: self.flow(z0, context[0])

        def log_px_given_y(x_rep: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
            return self.log_px(x_rep, z, y.repeat(len(z) // len(y)))  # (n * B) samples

        with nullcontext() if self.prior is None else self.prior.fixed():  # one mixture, K z's
            return iw_log_weights(
                x,
                encode,
                self.log_px if y is None else log_px_given_y,
                K,
                chunk or K,
                generator,
                eps=None if eps is None else eps[0],
                log_prior=self.log_prior,
            )

    def draw(
        self, n: int, temps: list[float], generator: torch.Generator | None, y=None
    ) -> torch.Tensor:
        """sample()'s work: decode z from the prior at temperature temps[0] (given labels y)."""
        if self.prior is None:
            return super().draw(n, temps, generator, y)
        return self.decode(self.prior.sample(n, generator, temps[0]))
