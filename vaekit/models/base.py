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
- has_prior: False for a model whose z ~ N(0, I) decodes to no generative model's samples;
- conditional: True for a model of images given a class label (Sohn et al. 2015), whose
  forward, posterior, encode, decode, log_weights and reconstruct then take int64 labels
  y=(B,) in [0, num_classes) and whose sample takes labels=; an unconditional model takes no
  labels (y=None).
forward's output may also carry "aux": {name: (B,) or scalar} extra loss terms (a VQ-VAE's
commitment loss) that the objectives add to the loss and the trainer and evaluate report by
name; after_step(accepted) updates state outside the gradient (an EMA codebook) after each
training step (vaekit.training.callbacks.ModelState).
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


def with_labels(y: torch.Tensor | None) -> dict:
    """The keyword arguments that pass labels y to a model's methods: none without labels, so
    a model that takes no labels is called as before."""
    return {} if y is None else {"y": y}


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
    def conditional(self) -> bool:
        """Does the model take class labels (its options' `conditional`)?"""
        return bool(getattr(self.cfg.net, "conditional", False))

    @property
    def num_classes(self) -> int:
        """The number of classes a conditional model's labels take (0: unconditional)."""
        return int(self.cfg.net.num_classes) if self.conditional else 0

    def check_labels(self, y: torch.Tensor | None) -> torch.Tensor | None:
        """y as the model takes it: labels (B,) for a conditional model, None otherwise; a
        one-line ValueError for missing labels, or labels given to an unconditional model."""
        if not self.conditional:
            if y is not None:
                raise ValueError(f"this {self.cfg.family} model is not conditional: no labels")
            return None
        if y is None:
            raise ValueError(
                f"this {self.cfg.family} model is conditional: give the class labels y "
                f"(0 to {self.num_classes - 1})"
            )
        return y

    def sample_labels(self, n: int, labels) -> torch.Tensor | None:
        """The (n,) int64 labels to sample a conditional model at: labels as given (an int: n
        of that class), or by default the classes in turn (0, 1, ..., K - 1, 0, ...); None for
        an unconditional model. ValueError for a label out of range."""
        if not self.conditional:
            return self.check_labels(labels)  # None, or the refusal of labels
        K = self.num_classes
        y = torch.arange(n) % K if labels is None else torch.as_tensor(labels, dtype=torch.long)
        y = y.expand(n) if y.dim() == 0 else y.flatten()
        if len(y) != n:
            raise ValueError(f"{len(y)} labels for {n} samples")
        bad = y[(y < 0) | (y >= K)]
        if len(bad):
            raise ValueError(
                f"label {int(bad[0])} is out of range: the model has classes 0-{K - 1}"
            )
        return y

    @property
    def monte_carlo_kl(self) -> bool:
        """Is forward's KL a one-sample estimate of each group's whole KL, (B, 1), rather than
        the closed form per element (a learned prior or a flow posterior)?"""
        return False

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return self.likelihood.normalize(x)

    # What every family implements (y: labels of a conditional model, see check_labels).
    def forward(self, x: torch.Tensor, eps: list[torch.Tensor] | None = None, y=None) -> dict:
        raise NotImplementedError

    def posterior(self, x: torch.Tensor, y=None) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        raise NotImplementedError

    def decode(self, z: torch.Tensor, y=None) -> torch.Tensor:
        raise NotImplementedError

    def log_weights(self, x, K, generator=None, chunk=None, eps=None, y=None) -> torch.Tensor:
        """(K, B) log importance weights; see the module docstring and VAE.log_weights."""
        raise NotImplementedError(
            f"the {self.cfg.family} family has no importance weights (no posterior density)"
        )

    def after_step(self, accepted: bool) -> None:
        """After a training step: update state outside the gradient from what the step's
        forward saw (accepted: was the step's update taken; else forget it). Default: none."""

    # Derived.
    def noise(self, n: int, k: int = 1, device: torch.device | str = "cpu") -> list[torch.Tensor]:
        """Reparameterisation noise for n images, k samples each: [(k, n, *shape)] per group."""
        return [torch.randn(k, n, *shape, device=device) for shape in self.latent_shapes]

    def encode(self, x: torch.Tensor, y=None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, C, H, W) in [0, 1] (and labels (N,) of a conditional model) -> the top group's
        (mu, logvar), each (N, D_top)."""
        mu, logvar = self.posterior(x, **with_labels(y))[0]
        return mu.flatten(1), None if logvar is None else logvar.flatten(1)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        temperature: float | list[float] = 1.0,
        generator: torch.Generator | None = None,
        labels: int | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """n images from the prior at a temperature: one for every latent group, or a list of one
        per group, top first (the noise is drawn on the CPU: the same seed, the same images).
        labels (conditional models): a class, or (n,) classes; default the classes in turn."""
        L = len(self.latent_shapes)
        temps = [float(temperature)] * L if isinstance(temperature, (int, float)) else temperature
        if len(temps) != L:
            raise ValueError(f"{len(temps)} temperatures for {L} latent groups")
        y = self.sample_labels(n, labels)
        if y is None:
            return self.draw(n, list(temps), generator)
        return self.draw(n, list(temps), generator, y=y.to(next(self.parameters()).device))

    def draw(
        self, n: int, temps: list[float], generator: torch.Generator | None, y=None
    ) -> torch.Tensor:
        """sample()'s work for one group: decode z ~ N(0, temps[0]^2 I) (given labels y)."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.top_dim, generator=generator)
        return self.decode(z.to(device) * temps[0], **with_labels(y))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """Decode the posterior mean of each image: the model's deterministic reconstruction."""
        return self.decode(self.encode(x, **with_labels(y))[0], **with_labels(y))
