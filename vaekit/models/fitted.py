"""A trained model whose samples come from another prior over its top codes (a prior fitted
after training, vaekit.priors): encoding, decoding and forward stay the model's own; the
importance-weighted bound, which would need the prior's density in the model's, is refused."""

from __future__ import annotations

import torch

from ..priors.base import Prior
from .base import LatentModel


class WithPrior(LatentModel):
    """model, sampling z ~ prior (at temperature T: the prior's spread scaled by T) and
    decoding it with the model's decoder. One latent group only (vae, ae): a fitted prior is
    over the flat top codes (D,) that decode takes. name: what the prior is called (its kind);
    meta: what it was fitted on (vaekit.priors.store)."""

    has_prior = True

    def __init__(
        self, model: LatentModel, prior: Prior, name: str = "fitted", meta: dict | None = None
    ):
        if len(model.latent_shapes) != 1:
            raise ValueError(
                f"a fitted prior replaces the prior of a one-group model (vae, ae); the "
                f"{model.cfg.family} model has {len(model.latent_shapes)} latent groups"
            )
        if model.conditional:
            raise ValueError(
                "a fitted prior is over an unconditional model's codes; a conditional model "
                "samples its own prior given a class (--label)"
            )
        super().__init__(model.cfg)
        self.model, self.prior, self.name, self.meta = model, prior, name, meta
        self.likelihood = model.likelihood
        device = next(model.parameters()).device
        self.prior.to(device)
        self.train(model.training)

    @property
    def latent_shapes(self) -> list[tuple[int, ...]]:
        return self.model.latent_shapes

    @property
    def has_kl(self) -> bool:
        return self.model.has_kl

    def forward(self, x: torch.Tensor, eps: list[torch.Tensor] | None = None) -> dict:
        return self.model(x, eps)

    def posterior(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        return self.model.posterior(x)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.model.encode(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.reconstruct(x)

    def noise(self, n: int, k: int = 1, device: torch.device | str = "cpu") -> list[torch.Tensor]:
        return self.model.noise(n, k, device)

    def log_weights(self, x, K, generator=None, chunk=None, eps=None) -> torch.Tensor:
        raise NotImplementedError(
            "no importance-weighted bound under a fitted prior: evaluate the run without one"
        )

    def draw(self, n: int, temps: list[float], generator: torch.Generator | None) -> torch.Tensor:
        """decode z ~ prior at temperature temps[0], (n, C, H, W); a prior over discrete
        codes (pixelcnn) gives code indices, decoded by the model's decode_codes (vqvae)."""
        z = self.prior.sample(n, generator, temps[0])
        if not z.is_floating_point():
            return self.model.decode_codes(z)
        return self.decode(z.reshape(n, self.top_dim))
