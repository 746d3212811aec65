"""Encoder and decoder bodies of the one-latent families (vae, ae), built from ConvNet options.

- "seed": the seed notebook's network, layer for layer (28x28x1 only; 387,554 parameters as a
  VAE with 20 latents and the gaussian likelihood);
- "resnet": the same ideas (conv + residual + max-pool down, transposed conv + nearest up)
  sized from the config, for any image size and channel count, no BatchNorm.
An encoder maps x_net (B, C, H, W) to (B, out_dim, 1, 1); a decoder maps z (B, D, 1, 1) to the
likelihood's parameters (B, out_channels, H, W).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig, stage_sizes

# The seed's 4x4 "same" conv pads asymmetrically (1 left, 2 right), as the seed did; PyTorch
# warns that this costs a padded copy of a 1-channel input, which is negligible here.
warnings.filterwarnings("ignore", message="Using padding='same' with even kernel")


# ---------------------------------------------------------------------------------------------
# The seed network (SEED.md), layer for layer.


class InstanceNorm2d(nn.InstanceNorm2d):
    """nn.InstanceNorm2d: the same function, parameters and checkpoints, computed by group_norm
    with one group per channel where that kernel is accurate and faster (forward + backward of
    the seed's seven norms: 69 -> 47 ms a step in issue 18, 31 -> 30 ms on an AMD Zen 4):
    batches (B, C, H, W) in NCHW-contiguous memory, no running statistics. Anything else takes
    torch's own instance norm: on channels-last input, ATen's CPU group_norm takes the variance
    as E[x^2] - E[x]^2 in float32 and loses it when a channel's mean is large against its
    spread (error 2e-3 at mean / std = 100, garbage at 1000; benchmarks/group_norm_repro.py,
    issue 28), and is 2x slower there besides."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.track_running_stats or x.dim() != 4 or not nchw_only(x):
            return super().forward(x)
        return F.group_norm(x, self.num_features, self.weight, self.bias, self.eps)


def nchw_only(x: torch.Tensor) -> bool:
    """Is x (B, C, H, W) NCHW-contiguous and not also channels-last (C == 1 or H * W == 1), so
    that group_norm takes its contiguous kernel?"""
    return x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)


class SeedResBlock(nn.Module):
    """conv-IN-ReLU-conv-IN, add the input, max-pool 2 (floor), ReLU."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding="same", bias=False)
        self.norm1 = InstanceNorm2d(c, affine=True)
        self.conv2 = nn.Conv2d(c, c, 3, padding="same", bias=False)
        self.norm2 = InstanceNorm2d(c, affine=True)
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


def seed_encoder(cfg: ModelConfig, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 64, 4, padding="same", bias=False),  # (B, 64, 28, 28)
        InstanceNorm2d(64, affine=True),
        nn.ReLU(),
        SeedResBlock(64),  # (B, 64, 14, 14)
        SeedResBlock(64),  # (B, 64, 7, 7)
        SeedResBlock(64),  # (B, 64, 3, 3)
        nn.Conv2d(64, out_dim, 3, bias=False),  # (B, out_dim, 1, 1)
    )


def seed_decoder(cfg: ModelConfig, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        seed_tblock(code_width(cfg), 64),  # (B, 64, 3, 3)
        nn.Upsample(scale_factor=2, mode="nearest"),  # 6x6
        seed_tblock(64, 64),  # 8x8
        seed_tblock(64, 64),  # 10x10
        seed_tblock(64, 64),  # 12x12
        nn.Upsample(scale_factor=2, mode="nearest"),  # 24x24
        seed_tblock(64, 32),  # 26x26
        nn.ConvTranspose2d(32, out_channels, 3, bias=False),  # (B, out, 28, 28)
        nn.BatchNorm2d(out_channels),
    )


# ---------------------------------------------------------------------------------------------
# The resnet family: same ideas, sized from the config, no BatchNorm (stable eval numbers).


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
    def __init__(self, cfg: ModelConfig, out_dim: int):
        super().__init__()
        ch = cfg.net.channels
        self.stem = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)  # (B, c0, H, W)
        self.blocks = nn.ModuleList(
            ResBlock(ch[max(i - 1, 0)], c) for i, c in enumerate(ch)
        )  # each followed by max-pool 2: (B, c_i, H / 2^(i+1), W / 2^(i+1))
        h, w = stage_sizes(cfg.image_size, len(ch))[-1]
        if min(h, w) < 1:
            raise ValueError(f"{len(ch)} stages are too many for image size {cfg.image_size}")
        self.head = nn.Conv2d(ch[-1], out_dim, (h, w))  # (B, out_dim, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for block in self.blocks:
            h = F.max_pool2d(block(h), 2)
        return self.head(F.relu(h))


class ResNetDecoder(nn.Module):
    def __init__(self, cfg: ModelConfig, out_channels: int):
        super().__init__()
        ch = cfg.net.channels[::-1]  # bottom (smallest) stage first
        sizes = stage_sizes(cfg.image_size, len(ch))[::-1]  # [(h, w) at the bottom, ..., (H, W)]
        self.head = nn.ConvTranspose2d(code_width(cfg), ch[0], sizes[0])  # (B, c, h, w)
        self.ups = nn.ModuleList(nn.Upsample(size=s, mode="nearest") for s in sizes[1:])
        self.blocks = nn.ModuleList(ResBlock(ch[max(i - 1, 0)], c, True) for i, c in enumerate(ch))
        self.out = nn.ConvTranspose2d(ch[-1], out_channels, 3, padding=1)  # (B, out, H, W)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.head(z)
        for block, up in zip(self.blocks, self.ups, strict=True):
            h = up(block(h))
        return self.out(F.relu(h))


# ---------------------------------------------------------------------------------------------
# Class labels (conditional models, Sohn et al. 2015).

LABEL_DIM = 16  # width of the learned label embedding e(y)


def code_width(cfg: ModelConfig) -> int:
    """What a decoder takes: z (D), with the label embedding e(y) concatenated (D + LABEL_DIM)
    for a conditional model."""
    return cfg.net.latent_dim + (LABEL_DIM if cfg.net.conditional else 0)


class LabelConditioning(nn.Module):
    """A learned embedding e(y) (B, LABEL_DIM) of int64 labels y (B,), fed to the encoder and
    the decoder: the encoder's output gets W e(y) added (the label concatenated into its last
    linear layer's input), the decoder takes [z, e(y)]."""

    def __init__(self, num_classes: int, encoder_out: int):
        super().__init__()
        self.embedding = nn.Embedding(num_classes, LABEL_DIM)
        self.to_encoder = nn.Linear(LABEL_DIM, encoder_out, bias=False)

    def encoder_shift(self, y: torch.Tensor) -> torch.Tensor:
        """(B,) -> (B, encoder_out): what the label adds to the encoder's output."""
        return self.to_encoder(self.embedding(y))

    def code(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """z (B, D), y (B,) -> the decoder's input [z, e(y)] (B, D + LABEL_DIM)."""
        return torch.cat([z, self.embedding(y).to(z.dtype)], dim=1)


ARCHS = {"seed": (seed_encoder, seed_decoder), "resnet": (ResNetEncoder, ResNetDecoder)}


def conv_bodies(cfg: ModelConfig, out_dim: int, out_channels: int) -> tuple[nn.Module, nn.Module]:
    """(encoder: x_net -> (B, out_dim, 1, 1), decoder: (B, D, 1, 1) -> (B, out_channels, H, W))
    of the architecture cfg.net.arch names."""
    encoder, decoder = ARCHS[cfg.net.arch]
    return encoder(cfg, out_dim), decoder(cfg, out_channels)
