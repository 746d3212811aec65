"""The VampPrior (Tomczak & Welling 2018): a prior learned with the model, the mixture of its own
posteriors at K learned pseudo-inputs u_k,
    p(z) = (1/K) sum_k q(z | u_k),
so the prior follows the aggregate posterior instead of forcing it to N(0, I). The pseudo-inputs
are parameters (images sigmoid(a_k) in [0, 1]); the posterior q(z|x) = N(mu(x), diag(exp(
logvar(x)))) is the model's encoder, bound by the model that owns the prior (bind).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..losses import log_normal
from .base import Prior

# Initial pseudo-inputs: noise images sigmoid(a), a ~ N(-2, 1), mean pixel ~0.16 (MNIST: 0.13).
INIT_MEAN, INIT_STD = -2.0, 1.0

Posterior = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class VampPrior(Prior):
    """p(z) = (1/K) sum_k N(z; mu(u_k), diag(exp(logvar(u_k)))) over flat codes (N, D)."""

    def __init__(self, components: int, image_shape: tuple[int, ...] | list[int]):
        super().__init__()
        self.components, self.image_shape = int(components), tuple(image_shape)
        a = torch.randn(self.components, *self.image_shape) * INIT_STD + INIT_MEAN
        self.pseudo_logits = nn.Parameter(a)  # (K, C, H, W)
        self.posterior: Posterior | None = None  # the owner's encoder, set by bind
        self._fixed: tuple[torch.Tensor, torch.Tensor] | None = None  # mixture() within fixed()

    def bind(self, posterior: Posterior) -> None:
        """posterior(x (K, C, H, W) in [0, 1]) -> (mu, logvar), each (K, D): the owning model's
        q(z|x) (a bound method, so a deep copy of the model binds its copy)."""
        self.posterior = posterior

    def pseudo_inputs(self) -> torch.Tensor:
        """The K pseudo-inputs as images in [0, 1]: (K, C, H, W)."""
        return torch.sigmoid(self.pseudo_logits)

    def mixture(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The components' (mu, logvar), each (K, D): computed afresh, except within fixed()."""
        if self._fixed is not None:
            return self._fixed
        if self.posterior is None:
            raise RuntimeError("a VampPrior needs its model's encoder: model.prior.bind(...)")
        return self.posterior(self.pseudo_inputs())

    @contextmanager
    def fixed(self) -> Iterator[None]:
        """Within: mixture() is computed once and reused (with its graph, if gradients are on),
        so the model's weights must not change: one IW estimate's K chunks, or a whole IW bound
        (the K pseudo-inputs through the encoder and flow for every block of 5 images were ~20%
        of its time). Nested: the outermost one holds."""
        if self._fixed is not None:
            yield
            return
        self._fixed = self.mixture()
        try:
            yield
        finally:
            self._fixed = None

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N,) log p(z) in nats: logsumexp_k log q(z | u_k) - log K."""
        mu, logvar = self.mixture()  # (K, D) each
        lp = log_normal(z[:, None, :], mu[None], logvar[None])  # (N, K)
        return torch.logsumexp(lp, dim=1) - math.log(self.components)

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        """n codes (n, D): a component k uniformly, then z ~ N(mu_k, T^2 exp(logvar_k))."""
        mu, logvar = self.mixture()
        k = torch.randint(self.components, (n,), generator=generator).to(mu.device)
        eps = torch.randn(n, mu.shape[1], generator=generator).to(mu)
        return mu[k] + temperature * eps * torch.exp(0.5 * logvar[k])

    def options(self) -> dict:
        return {"components": self.components, "image_shape": list(self.image_shape)}
