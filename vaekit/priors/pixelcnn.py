"""A gated PixelCNN prior over grids of discrete codes (van den Oord et al. 2016, "Conditional
Image Generation with PixelCNN Decoders"), as VQ-VAE fits one over its code grids (van den Oord
et al. 2017).

p(k) = prod_{i, j} p(k_ij | k_<ij) in raster order over a (h, w) grid of indices in [0, K).
Each gated layer keeps two stacks: a vertical one that sees the rows above (a (k//2 + 1) x k
conv whose last kernel row is masked in the first layer) and a horizontal one that sees the
row's positions to the left (1 x (k//2 + 1), its last column masked in the first layer) plus
the vertical stack's features; gates tanh(a) * sigmoid(b). Causality: the logits at (i, j)
depend on k only through positions before (i, j) in raster order (tested with gradients).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .base import Prior

if TYPE_CHECKING:
    from ..models import LatentModel


def gate(h: torch.Tensor) -> torch.Tensor:
    """(B, 2C, H, W) -> tanh(first half) * sigmoid(second half), (B, C, H, W)."""
    a, b = h.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """One gated layer: (v, h) (B, C, H, W) each -> (v', h'). first: the layer on the embedded
    codes, whose kernels leave out the current row (vertical) and position (horizontal), and
    whose horizontal stack has no residual (it would pass the current code through)."""

    def __init__(self, C: int, kernel: int, first: bool):
        super().__init__()
        r = kernel // 2
        self.first, self.r = first, r
        self.vertical = nn.Conv2d(C, 2 * C, (r + 1, kernel), padding=(r, r))
        self.horizontal = nn.Conv2d(C, 2 * C, (1, r + 1), padding=(0, r))
        self.v_to_h = nn.Conv2d(2 * C, 2 * C, 1)
        self.h_out = nn.Conv2d(C, C, 1)
        v_mask, h_mask = torch.ones(r + 1, kernel), torch.ones(1, r + 1)
        if first:
            v_mask[-1], h_mask[:, -1] = 0, 0  # not the current row; not the current position
        self.register_buffer("v_mask", v_mask, persistent=False)
        self.register_buffer("h_mask", h_mask, persistent=False)

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        H, W = v.shape[-2:]
        wv = self.vertical.weight * self.v_mask
        hv = F.conv2d(v, wv, self.vertical.bias, padding=(self.r, self.r))[:, :, :H]  # rows <= i
        wh = self.horizontal.weight * self.h_mask
        hh = F.conv2d(h, wh, self.horizontal.bias, padding=(0, self.r))[..., :W]  # cols <= j
        out = self.h_out(gate(hh + self.v_to_h(hv)))
        return gate(hv), out if self.first else h + out


class PixelCNN(Prior):
    """A gated PixelCNN over (h, w) grids of codes in [0, codebook_size): log_prob (N,) in nats
    (a log-mass), sample in raster order at a temperature (logits / T)."""

    def __init__(
        self,
        codebook_size: int,
        shape: tuple[int, int] | list[int],
        channels: int = 48,
        layers: int = 6,
        kernel: int = 3,
    ):
        super().__init__()
        self.K, self.shape = int(codebook_size), (int(shape[0]), int(shape[1]))
        self.channels, self.layers, self.kernel = channels, layers, kernel
        self.embed = nn.Embedding(self.K, channels)
        self.gated = nn.ModuleList(GatedLayer(channels, kernel, i == 0) for i in range(layers))
        self.head = nn.Sequential(
            nn.ReLU(), nn.Conv2d(channels, 2 * channels, 1), nn.ReLU(),
            nn.Conv2d(2 * channels, self.K, 1),
        )  # fmt: skip

    def options(self) -> dict:
        return {"codebook_size": self.K, "shape": list(self.shape), "channels": self.channels,
                "layers": self.layers, "kernel": self.kernel}  # fmt: skip

    def logits(self, k: torch.Tensor) -> torch.Tensor:
        """Codes (N, h, w) -> logits (N, K, h, w) of p(k_ij | k_<ij)."""
        x = self.embed(k).permute(0, 3, 1, 2)  # (N, C, h, w)
        v, h = x, x
        for layer in self.gated:
            v, h = layer(v, h)
        return self.head(h)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """(N, h, w) codes -> (N,) log p(z) in nats."""
        logp = F.log_softmax(self.logits(z).float(), dim=1)  # (N, K, h, w)
        return logp.gather(1, z[:, None]).flatten(1).sum(1)

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        """n grids (n, h, w) drawn position by position from softmax(logits / temperature); the
        draws come from generator on the CPU (the same codes on any device). Row i's logits
        depend on rows <= i only, so only those go through the network."""
        device = self.embed.weight.device
        h, w = self.shape
        k = torch.zeros(n, h, w, dtype=torch.long, device=device)
        for i in range(h):
            for j in range(w):
                logits = self.logits(k[:, : i + 1])[:, :, i, j].float().cpu() / temperature
                draw = torch.multinomial(logits.softmax(1), 1, generator=generator)[:, 0]
                k[:, i, j] = draw.to(device)
        return k

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
    ) -> PixelCNN:
        """A PixelCNN of options' size fitted for options.epochs to the code grids of images
        x (uint8 (N, C, H, W)) of a model with discrete codes (vqvae), in bf16 autocast with
        options.bf16; resumes from work_dir (vaekit.priors.fit)."""
        from .codes import code_grids
        from .fit import fit_prior

        codes = code_grids(model, x)
        progress(f"fitting a PixelCNN to the code grids {tuple(codes.shape)} of the images")
        torch.manual_seed(seed)
        prior = cls(model.cfg.net.codebook_size, codes.shape[1:], options.channels,
                    options.layers, options.kernel).to(device)  # fmt: skip
        fit = {"epochs": options.epochs, "batch_size": options.batch_size, "lr": options.lr,
               "seed": seed}  # fmt: skip
        fit_prior(prior, codes, work_dir, fit, autocast=options.bf16, progress=progress)
        return prior
