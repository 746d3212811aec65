"""Likelihoods p(x|z) as modules: each owns its decoder channels, its parameters, its
log-probability in nats, its mean image, its sampling and its data preparation.

The decoder's output h (B, channels, H, W) parameterises p(x|z). Images x are floats in [0, 1];
8-bit data x = k / 255, binary data (bernoulli) x in {0, 1}. Every method is per image: (B,).
- nll(x, h): the training recon term, -log p(x|z) in the likelihood's own units (for the
  gaussians, a density of the normalised data; "gaussian" is the seed's summed squared error);
- discrete_nll(nll): the same in nats of the 8-bit (or binary) data, a true code length;
- log_px(x, h) = -discrete_nll(nll(x, h)): what ELBOs and importance weights use.
Registered by name in vaekit.config.LIKELIHOODS.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import LIKELIHOODS, ModelConfig, resolve
from .losses import (
    bernoulli_log_prob,
    discretized_mix_logistic_log_prob,
    gaussian_log_prob,
    gaussian_nll_to_discrete,
)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 in [0, 1], on whatever device x is on."""
    return x.float().div_(255.0)


BINARIZE_SEED = 0  # the fixed binarization of evaluation data, the same in every run


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 images -> uint8 images in {0, 255}: each pixel is 255 with probability x / 255.

    Dynamic binarization draws afresh on every call (global RNG of x's device); pass a
    generator (on x's device) for a fixed draw.
    """
    return torch.bernoulli(to_float(x), generator=generator).mul_(255).to(torch.uint8)


def modelled(x: torch.Tensor, likelihood: str) -> torch.Tensor:
    """Evaluation images as a model with this likelihood sees them: for "bernoulli", binarized
    once with BINARIZE_SEED (on the CPU: the same bits on any device), else x unchanged."""
    if likelihood != "bernoulli":
        return x
    return binarize(x.cpu(), torch.Generator().manual_seed(BINARIZE_SEED)).to(x.device)


MIN_LOG_SCALE = -7.0  # logistic: floor on the components' log-scales, as in PixelCNN++


class Likelihood(nn.Module):
    """p(x|z) for a model config; subclasses define nll and mean (and may add parameters)."""

    binary = False  # True: trained on fresh binarizations, evaluated on one fixed one

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg

    @staticmethod
    def channels(cfg: ModelConfig) -> int:
        """Decoder output channels this likelihood needs."""
        return cfg.in_channels

    @property
    def num_dims(self) -> int:
        return self.cfg.in_channels * self.cfg.image_size[0] * self.cfg.image_size[1]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> the network's input units: (x - mean) / std."""
        return (x - self.cfg.mean) / self.cfg.std

    def nll(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def discrete_nll(self, nll: torch.Tensor) -> torch.Tensor:
        """The recon term (B,) -> -log P(x|z) in nats of the 8-bit (or binary) data."""
        return nll

    def log_px(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """log P(x|z) in nats per image (B,)."""
        return -self.discrete_nll(self.nll(x, h))

    def mean(self, h: torch.Tensor) -> torch.Tensor:
        """Decoder output -> the likelihood's mean image (B, C, H, W) in [0, 1]."""
        raise NotImplementedError

    def sample(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decoder output -> x ~ p(x|z), (B, C, H, W) in [0, 1]."""
        raise NotImplementedError

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """A uint8 training batch as this likelihood models it (fresh bits for bernoulli)."""
        return binarize(x) if self.binary else x

    def prepare_eval(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 evaluation images as modelled: binarized once with a fixed seed for bernoulli."""
        return modelled(x, "bernoulli") if self.binary else x


class FixedGaussian(Likelihood):
    """The seed's objective: squared error summed over pixels in normalised units, i.e.
    -log N(x_net; h, 1/2) up to the constant D/2 ln(pi)."""

    def nll(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return (h - self.normalize(x)).pow(2).flatten(1).sum(1)

    def log_var(self) -> torch.Tensor | float:
        return math.log(0.5)

    def discrete_nll(self, nll: torch.Tensor) -> torch.Tensor:
        """A density in normalised units -> pixel units [0, 1] (+ D ln std), then the mass of a
        1/255-wide bin around each x = k/255 (+ D ln 255); first the constant D/2 ln(pi)."""
        D = self.num_dims
        nll = nll + D / 2 * math.log(math.pi)
        return gaussian_nll_to_discrete(nll + D * math.log(self.cfg.std), D, levels=255)

    def mean(self, h: torch.Tensor) -> torch.Tensor:
        return (h * self.cfg.std + self.cfg.mean).clamp(0, 1)

    def sample(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        std = torch.as_tensor(self.log_var(), device=h.device).mul(0.5).exp()
        noise = torch.randn(h.shape, generator=generator, device=h.device) * std
        return ((h + noise) * self.cfg.std + self.cfg.mean).clamp(0, 1)


class GlobalGaussian(FixedGaussian):
    """-log N(x_net; h, exp(logvar)) with one learned log-variance in normalised units."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.logvar = nn.Parameter(torch.zeros(self.logvar_shape(cfg)))  # 0: the data's variance

    @staticmethod
    def logvar_shape(cfg: ModelConfig) -> tuple[int, ...]:
        return ()

    def log_var(self) -> torch.Tensor:
        return self.logvar

    def nll(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return -gaussian_log_prob(self.normalize(x), h, self.logvar)

    def discrete_nll(self, nll: torch.Tensor) -> torch.Tensor:
        D = self.num_dims
        return gaussian_nll_to_discrete(nll + D * math.log(self.cfg.std), D, levels=255)


class PixelGaussian(GlobalGaussian):
    """The same with one learned log-variance per pixel (C, H, W)."""

    @staticmethod
    def logvar_shape(cfg: ModelConfig) -> tuple[int, ...]:
        return (cfg.in_channels, *cfg.image_size)


class Bernoulli(Likelihood):
    """Decoder logits for binary images x in {0, 1}: trained on dynamic binarizations."""

    binary = True

    def nll(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return -bernoulli_log_prob(x, h)

    def mean(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(h)

    def sample(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.bernoulli(torch.sigmoid(h), generator=generator)


class LogisticMixture(Likelihood):
    """A mixture of cfg.mixtures discretized logistics over the 256 values of 8-bit data."""

    @staticmethod
    def channels(cfg: ModelConfig) -> int:
        return cfg.mixtures * (1 + 2 * cfg.in_channels)  # pi, means, log-scales

    def split(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, K + 2KC, H, W) -> logit_probs (B, K, H, W), means and log_scales (B, K, C, H, W)."""
        K, C = self.cfg.mixtures, self.cfg.in_channels
        B, _, H, W = h.shape
        logit_probs = h[:, :K]
        means, log_scales = h[:, K:].reshape(B, 2, K, C, H, W).unbind(1)
        return logit_probs, means, log_scales.clamp(min=MIN_LOG_SCALE)

    def nll(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return -discretized_mix_logistic_log_prob(2 * x - 1, *self.split(h))

    def mean(self, h: torch.Tensor) -> torch.Tensor:
        logit_probs, means, _ = self.split(h)
        pi = torch.softmax(logit_probs, dim=1)  # (B, K, H, W)
        m = (pi.unsqueeze(2) * means).sum(1)  # (B, C, H, W) in [-1, 1] units
        return ((m + 1) / 2).clamp(0, 1)

    def sample(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        logit_probs, means, log_scales = self.split(h)
        B, K, H, W = logit_probs.shape
        probs = torch.softmax(logit_probs, 1).permute(0, 2, 3, 1).reshape(-1, K)  # (BHW, K)
        k = torch.multinomial(probs, 1, generator=generator).view(B, 1, 1, H, W)
        pick = lambda t: t.gather(1, k.expand(B, 1, t.shape[2], H, W)).squeeze(1)  # noqa: E731
        u = torch.rand(pick(means).shape, generator=generator, device=h.device)
        u = u.clamp(1e-5, 1 - 1e-5)
        x = pick(means) + pick(log_scales).exp() * (torch.log(u) - torch.log1p(-u))
        return ((x.clamp(-1, 1) + 1) / 2 * 255).round() / 255  # the 8-bit values


def create_likelihood(cfg: ModelConfig) -> Likelihood:
    """The likelihood module a model config names."""
    return likelihood_class(cfg)(cfg)


def likelihood_class(cfg: ModelConfig) -> type[Likelihood]:
    return resolve(LIKELIHOODS[cfg.likelihood])
