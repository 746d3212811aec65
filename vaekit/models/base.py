"""The interface every model family implements (vaekit.config.FAMILIES registers them).

Images in and out of the public methods are floats in [0, 1], (B, C, H, W). Latents come in
groups, top first; each group has a per-image shape (latent_shapes). Families with one group
(vae, ae) have a flat z of shape (D,). What consumers need, and nothing more:
- forward(x, eps) -> {"recon": (B,) -log p(x|z) in the likelihood's training units, "kl": a
  list of per-group KL tensors (B, *shape) in nats (empty: no KL, e.g. an autoencoder),
  "z": the latents, a list of (B, *shape)}; eps: reparameterisation noise, one (B, *shape)
  tensor per group (None: drawn here);
- posterior(x) -> [(mu, logvar)] per group (logvar None for a deterministic encoder);
- encode(x) -> (mu, logvar) of the top group, flat (B, D_top); decode(z_top) -> mean images;
- sample(n, temperature, generator) -> images; reconstruct(x) -> images;
- noise(n, k, device) -> [(k, n, *shape)] per group, drawn from the global RNG in one order;
- log_weights(x, K, generator, chunk, eps) -> (K, B) log p(x, z_k) - log q(z_k | x) in nats of
  the 8-bit (or binary) data, for the importance-weighted bound and the IWAE objective;
- has_prior: False for a model whose z ~ N(0, I) decodes to no generative model's samples.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..likelihoods import Likelihood


def full_precision(t: torch.Tensor) -> torch.Tensor:
    """t in float32 if it is in a lower precision (bf16 out of autocast), else unchanged: a
    float64 model (a float64 reference in the tests) keeps its precision."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


class LatentModel(nn.Module):
    """Base class of the families: the likelihood, normalisation and the derived methods."""

    has_prior = True
    likelihood: Likelihood

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg

    # What the model's latents are.
    @property
    def latent_shapes(self) -> list[tuple[int, ...]]:
        raise NotImplementedError

    @property
    def top_dim(self) -> int:
        """Size of the top group, flattened: the code encode and decode work in."""
        return int(torch.Size(self.latent_shapes[0]).numel())

    @property
    def has_kl(self) -> bool:
        return True

    @property
    def monte_carlo_kl(self) -> bool:
        """Is forward's KL a one-sample estimate of each group's whole KL, (B, 1), rather than
        the closed form per element (a learned prior or a flow posterior)?"""
        return False

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return self.likelihood.normalize(x)

    # What every family implements.
    def forward(self, x: torch.Tensor, eps: list[torch.Tensor] | None = None) -> dict:
        raise NotImplementedError

    def posterior(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def log_weights(self, x, K, generator=None, chunk=None, eps=None) -> torch.Tensor:
        """(K, B) log importance weights; see the module docstring and VAE.log_weights."""
        raise NotImplementedError(
            f"the {self.cfg.family} family has no importance weights (no posterior density)"
        )

    # Derived.
    def noise(self, n: int, k: int = 1, device: torch.device | str = "cpu") -> list[torch.Tensor]:
        """Reparameterisation noise for n images, k samples each: [(k, n, *shape)] per group."""
        return [torch.randn(k, n, *shape, device=device) for shape in self.latent_shapes]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, C, H, W) in [0, 1] -> the top group's (mu, logvar), each (N, D_top)."""
        mu, logvar = self.posterior(x)[0]
        return mu.flatten(1), None if logvar is None else logvar.flatten(1)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        temperature: float | list[float] = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """n images from the prior at a temperature: one for every latent group, or a list of one
        per group, top first (the noise is drawn on the CPU: the same seed, the same images)."""
        L = len(self.latent_shapes)
        temps = [float(temperature)] * L if isinstance(temperature, (int, float)) else temperature
        if len(temps) != L:
            raise ValueError(f"{len(temps)} temperatures for {L} latent groups")
        return self.draw(n, list(temps), generator)

    def draw(self, n: int, temps: list[float], generator: torch.Generator | None) -> torch.Tensor:
        """sample()'s work for one group: decode z ~ N(0, temps[0]^2 I)."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.top_dim, generator=generator)
        return self.decode(z.to(device) * temps[0])

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decode the posterior mean of each image: the model's deterministic reconstruction."""
        return self.decode(self.encode(x)[0])
