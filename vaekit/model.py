"""The VAE: a convolutional Encoder giving (mu, logvar), the reparameterisation, and a Decoder.

Imports only torch and vaekit.losses (itself torch-only). Two architectures share the API:
- "seed": the seed notebook's network, layer for layer (28x28x1 only, 387,554 parameters);
- "resnet": the same family (conv + residual + max-pool down, transposed conv + nearest up)
  sized from the config, for any image size and channel count.
Images in and out of the public methods are floats in [0, 1], shape (N, C, H, W); the
network itself sees them normalised with the config's mean and std.

Likelihoods p(x|z) (ModelConfig.likelihood), all scored per image in nats:
- "gaussian": the seed's objective, squared error summed over pixels in normalised units, i.e.
  -log N(x_net; x_hat, 1/2) up to the constant D/2 ln(pi);
- "gaussian-global" / "gaussian-pixel": -log N(x_net; x_hat, exp(logvar_x)) with a learned
  log-variance, one scalar or one per pixel (C, H, W), in normalised units;
- "bernoulli": decoder logits for binary images x in {0, 1} (the data loader binarizes; the
  encoder sees the binary image normalised with the same mean and std as grey images);
- "logistic": a mixture of `mixtures` discretized logistics over the 256 values of 8-bit data.
log_px gives log P(x|z) of the 8-bit (or binary) data in nats for every likelihood.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from .losses import (
    bernoulli_log_prob,
    discretized_mix_logistic_log_prob,
    gaussian_log_prob,
    gaussian_nll_to_discrete,
    kl_normal,
)

ARCHS = ("seed", "resnet")

# The seed's 4x4 "same" conv pads asymmetrically (1 left, 2 right), as the seed did; PyTorch
# warns that this costs a padded copy of a 1-channel input, which is negligible here.
warnings.filterwarnings("ignore", message="Using padding='same' with even kernel")
LIKELIHOODS = ("gaussian", "gaussian-global", "gaussian-pixel", "bernoulli", "logistic")
MIN_LOG_SCALE = -7.0  # logistic: floor on the components' log-scales, as in PixelCNN++


def config_from_dict(cls, d: dict):
    """A config dataclass from a plain dict (JSON, a checkpoint), naming any unknown keys."""
    unknown = sorted(set(d) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {unknown}")
    return cls(**d)


def opt(default, help: str):
    """A dataclass field with a one-line doc; the CLI turns each field into a --flag."""
    return field(default=default, metadata={"help": help})


@dataclass
class ModelConfig:
    """Everything that defines the network and its objective; saved with every checkpoint."""

    arch: str = opt("resnet", "seed (the seed's network, 28x28x1) or resnet (sized from config)")
    in_channels: int = opt(1, "image channels (1 grey, 3 colour)")
    image_size: tuple[int, int] = opt((28, 28), "(H, W) of the images the model takes")
    latent_dim: int = opt(20, "dimensions of z")
    channels: tuple[int, ...] = opt(
        (32, 64, 64), "resnet: width of each stage, top first; each halves H, W"
    )
    likelihood: str = opt(
        "gaussian",
        "p(x|z): gaussian (the seed's squared error), gaussian-global, gaussian-pixel (learned "
        "variance), bernoulli (binarized data), logistic (discretized mixture)",
    )
    mixtures: int = opt(1, "logistic: mixture components per pixel")
    beta: float = opt(1.0, "weight of the KL term (1 = the ELBO)")
    mean: float = opt(0.1307, "input normalisation: x_net = (x - mean) / std")
    std: float = opt(0.3081, "input normalisation std (the dataset's pixel std)")

    def __post_init__(self) -> None:
        self.image_size = tuple(int(s) for s in self.image_size)
        self.channels = tuple(int(c) for c in self.channels)
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if self.mixtures < 1:
            raise ValueError(f"mixtures must be >= 1, got {self.mixtures}")
        if len(self.image_size) != 2 or min(self.image_size) < 8:
            raise ValueError(f"image_size must be (H, W) with both >= 8, got {self.image_size}")
        if self.in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {self.in_channels}")
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"channels must be positive widths, got {self.channels}")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if self.std <= 0:
            raise ValueError(f"std must be > 0, got {self.std}")
        if self.arch == "seed" and (self.in_channels, self.image_size) != (1, (28, 28)):
            raise ValueError(
                "the seed architecture is fixed to 28x28x1 images, got "
                f"{self.image_size[0]}x{self.image_size[1]}x{self.in_channels} (HxWxC); use arch "
                "'resnet', e.g. another preset (mnist, cifar10, celeba64)"
            )

    @property
    def out_channels(self) -> int:
        """Decoder output channels: C, or K + 2KC for the logistic mixture (pi, means, scales)."""
        if self.likelihood == "logistic":
            return self.mixtures * (1 + 2 * self.in_channels)
        return self.in_channels

    def to_dict(self) -> dict:
        d = asdict(self)
        d["image_size"], d["channels"] = list(self.image_size), list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return config_from_dict(cls, d)


# ---------------------------------------------------------------------------------------------
# The seed network (SEED.md), layer for layer.


class SeedResBlock(nn.Module):
    """conv-IN-ReLU-conv-IN, add the input, max-pool 2 (floor), ReLU."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding="same", bias=False)
        self.norm1 = nn.InstanceNorm2d(c, affine=True)
        self.conv2 = nn.Conv2d(c, c, 3, padding="same", bias=False)
        self.norm2 = nn.InstanceNorm2d(c, affine=True)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return F.relu(self.pool(h + x))


def seed_tblock(cin: int, cout: int) -> nn.Sequential:
    """Transposed conv 3x3 (stride 1, no padding: +2 px), BatchNorm, ReLU."""
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, 3, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
    )


def seed_encoder(cfg: ModelConfig) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 64, 4, padding="same", bias=False),  # (B, 64, 28, 28)
        nn.InstanceNorm2d(64, affine=True),
        nn.ReLU(),
        SeedResBlock(64),  # (B, 64, 14, 14)
        SeedResBlock(64),  # (B, 64, 7, 7)
        SeedResBlock(64),  # (B, 64, 3, 3)
        nn.Conv2d(64, 2 * cfg.latent_dim, 3, bias=False),  # (B, 2D, 1, 1)
    )


def seed_decoder(cfg: ModelConfig) -> nn.Sequential:
    return nn.Sequential(
        seed_tblock(cfg.latent_dim, 64),  # (B, 64, 3, 3)
        nn.Upsample(scale_factor=2, mode="nearest"),  # 6x6
        seed_tblock(64, 64),  # 8x8
        seed_tblock(64, 64),  # 10x10
        seed_tblock(64, 64),  # 12x12
        nn.Upsample(scale_factor=2, mode="nearest"),  # 24x24
        seed_tblock(64, 32),  # 26x26
        nn.ConvTranspose2d(32, cfg.out_channels, 3, bias=False),  # (B, out, 28, 28)
        nn.BatchNorm2d(cfg.out_channels),
    )


# ---------------------------------------------------------------------------------------------
# The resnet family: same ideas, sized from the config, no BatchNorm (stable eval numbers).


def stage_sizes(size: tuple[int, int], n: int) -> list[tuple[int, int]]:
    """Spatial size at the input of each of n stages: halved (floor) by each max-pool."""
    sizes = [size]
    for _ in range(n):
        h, w = sizes[-1]
        sizes.append((h // 2, w // 2))
    return sizes


def fit_depth(channels: tuple[int, ...], size: tuple[int, int], bottom: int = 4) -> tuple:
    """Stage widths for an image size: the last width repeated until the smallest side at the
    bottom is <= bottom, so larger images get deeper nets (28 or 32 px: unchanged)."""
    ch = tuple(channels)
    while min(stage_sizes(size, len(ch))[-1]) > bottom:
        ch = (*ch, ch[-1])
    return ch


class ResBlock(nn.Module):
    """Pre-activation residual block, x + conv(relu(conv(relu(x)))), optional 1x1 projection.

    transposed=True uses 3x3 transposed convs (padding 1 keeps the size) for the decoder.
    """

    def __init__(self, cin: int, cout: int, transposed: bool = False):
        super().__init__()
        Conv = nn.ConvTranspose2d if transposed else nn.Conv2d
        self.conv1 = Conv(cin, cout, 3, padding=1)
        self.conv2 = Conv(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(x))
        h = self.conv2(F.relu(h))
        return self.skip(x) + h


class ResNetEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        ch = cfg.channels
        self.stem = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)  # (B, c0, H, W)
        self.blocks = nn.ModuleList(
            ResBlock(ch[max(i - 1, 0)], c) for i, c in enumerate(ch)
        )  # each followed by max-pool 2: (B, c_i, H / 2^(i+1), W / 2^(i+1))
        h, w = stage_sizes(cfg.image_size, len(ch))[-1]
        if min(h, w) < 1:
            raise ValueError(f"{len(ch)} stages are too many for image size {cfg.image_size}")
        self.head = nn.Conv2d(ch[-1], 2 * cfg.latent_dim, (h, w))  # (B, 2D, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for block in self.blocks:
            h = F.max_pool2d(block(h), 2)
        return self.head(F.relu(h))


class ResNetDecoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        ch = cfg.channels[::-1]  # bottom (smallest) stage first
        sizes = stage_sizes(cfg.image_size, len(ch))[::-1]  # [(h, w) at the bottom, ..., (H, W)]
        self.head = nn.ConvTranspose2d(cfg.latent_dim, ch[0], sizes[0])  # (B, c, h, w)
        self.ups = nn.ModuleList(nn.Upsample(size=s, mode="nearest") for s in sizes[1:])
        self.blocks = nn.ModuleList(ResBlock(ch[max(i - 1, 0)], c, True) for i, c in enumerate(ch))
        self.out = nn.ConvTranspose2d(ch[-1], cfg.out_channels, 3, padding=1)  # (B, out, H, W)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.head(z)
        for block, up in zip(self.blocks, self.ups, strict=True):
            h = up(block(h))
        return self.out(F.relu(h))


# ---------------------------------------------------------------------------------------------


class VAE(nn.Module):
    """q(z|x) = N(mu, diag(exp(logvar))), p(z) = N(0, I), p(x|z) from the decoder."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.arch == "seed":
            self.encoder, self.decoder = seed_encoder(cfg), seed_decoder(cfg)
        else:
            self.encoder, self.decoder = ResNetEncoder(cfg), ResNetDecoder(cfg)
        # the gaussians' learned log-variance, in normalised units (0: the data's variance)
        if cfg.likelihood == "gaussian-global":
            self.logvar_x = nn.Parameter(torch.zeros(()))
        elif cfg.likelihood == "gaussian-pixel":
            self.logvar_x = nn.Parameter(torch.zeros(cfg.in_channels, *cfg.image_size))

    @classmethod
    def from_preset(cls, name: str, **overrides) -> VAE:
        """A fresh model from a named preset, e.g. VAE.from_preset("mnist", latent_dim=32)."""
        from .config import model_config  # presets are data, kept with the other configs

        return cls(model_config(name, **overrides))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    # Network space <-> image space [0, 1].
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.cfg.mean) / self.cfg.std

    def to_image(self, h: torch.Tensor) -> torch.Tensor:
        """Decoder output -> the likelihood's mean image in [0, 1]."""
        if self.cfg.likelihood == "bernoulli":
            return torch.sigmoid(h)
        if self.cfg.likelihood == "logistic":
            logit_probs, means, _ = self._mixture(h)
            pi = torch.softmax(logit_probs, dim=1)  # (B, K, H, W)
            m = (pi.unsqueeze(2) * means).sum(1)  # (B, C, H, W) in [-1, 1] units
            return ((m + 1) / 2).clamp(0, 1)
        return (h * self.cfg.std + self.cfg.mean).clamp(0, 1)

    def _mixture(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, K + 2KC, H, W) -> logit_probs (B, K, H, W), means and log_scales (B, K, C, H, W)."""
        K, C = self.cfg.mixtures, self.cfg.in_channels
        B, _, H, W = h.shape
        logit_probs = h[:, :K]
        means, log_scales = h[:, K:].reshape(B, 2, K, C, H, W).unbind(1)
        return logit_probs, means, log_scales.clamp(min=MIN_LOG_SCALE)

    # The four parts of the forward pass, in network space.
    def _encode(self, x_net: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x_net).flatten(1).float()  # (B, 2D); fp32 even under autocast
        mu, logvar = h.chunk(2, dim=1)  # (B, D) each
        return mu, logvar

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z[:, :, None, None]).float()  # (B, D, 1, 1) -> (B, out, H, W)

    def _nll(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The recon term: -log p(x|z) per image (B,) for x in [0, 1], decoder output h.

        Nats of the likelihood's own units: normalised units for the gaussians (up to D/2 ln pi
        for "gaussian"), the binary or 8-bit data itself for bernoulli and logistic.
        """
        lik = self.cfg.likelihood
        if lik == "gaussian":
            return (h - self.normalize(x)).pow(2).flatten(1).sum(1)
        if lik == "bernoulli":
            return -bernoulli_log_prob(x, h)
        if lik == "logistic":
            return -discretized_mix_logistic_log_prob(2 * x - 1, *self._mixture(h))
        return -gaussian_log_prob(self.normalize(x), h, self.logvar_x)

    def discrete_nll(self, recon: torch.Tensor) -> torch.Tensor:
        """The recon term (B,) -> -log P(x|z) in nats of the 8-bit data (or binary: unchanged).

        A Gaussian density in normalised units becomes one in pixel units [0, 1] (+ D ln std),
        then the mass of a 1/255-wide bin around each x = k/255 (+ D ln 255); "gaussian" first
        gets its constant, variance 1/2: + D/2 ln(pi). Bernoulli and logistic are already masses.
        """
        lik = self.cfg.likelihood
        if not lik.startswith("gaussian"):
            return recon
        D = self.cfg.in_channels * self.cfg.image_size[0] * self.cfg.image_size[1]
        if lik == "gaussian":
            recon = recon + D / 2 * math.log(math.pi)
        return gaussian_nll_to_discrete(recon + D * math.log(self.cfg.std), D, levels=255)

    def log_px(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log P(x|z) in nats per image (B,) for 8-bit (or, for bernoulli, binary) x in [0, 1]."""
        return -self.discrete_nll(self._nll(x, self._decode(z)))

    @staticmethod
    def reparameterize(
        mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None
    ) -> torch.Tensor:
        """z = mu + eps * sigma, eps ~ N(0, I): a sample of q(z|x) differentiable in mu, logvar.

        eps may be given (B, D), e.g. drawn for a global batch and shared out across processes."""
        eps = torch.randn_like(mu) if eps is None else eps
        return mu + eps * torch.exp(0.5 * logvar)

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """x: (B, C, H, W) in [0, 1]. Returns per-image loss terms (B,) and the tensors behind them.

        loss = recon + beta * kl; recon is the likelihood's negative log-density (see _nll; for
        "gaussian", the seed's summed squared error in normalised units), kl in nats. For
        "bernoulli", x must be binary (0 or 1). eps: the reparameterisation noise, if given.
        """
        mu, logvar = self._encode(self.normalize(x))
        z = self.reparameterize(mu, logvar, eps)
        recon = self._nll(x, self._decode(z))  # (B,)
        kl = kl_normal(mu, logvar).sum(1)  # (B,)
        loss = recon + self.cfg.beta * kl
        return {"loss": loss, "recon": recon, "kl": kl, "mu": mu, "logvar": logvar, "z": z}

    # Public API: images in [0, 1] in and out.
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, H, W) in [0, 1] -> (mu, logvar), each (N, D)."""
        return self._encode(self.normalize(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N, C, H, W) in [0, 1]: the likelihood's mean image."""
        return self.to_image(self._decode(z))

    @torch.no_grad()
    def sample(
        self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """n images decoded from z ~ N(0, temperature^2 I)."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.cfg.latent_dim, generator=generator)  # on CPU: same z anywhere
        return self.decode(z.to(device) * temperature)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decode the posterior mean of each image: the model's deterministic reconstruction."""
        return self.decode(self.encode(x)[0])
