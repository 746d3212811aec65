"""A Gaussian mixture prior fitted after training to the codes of a trained model (Ghosh et al.
2020, "From Variational to Deterministic Autoencoders"): EM by scikit-learn's GaussianMixture
on the training set's posterior means, then log-densities and samples in torch from the fitted
parameters (plain tensors: weights (K,), means (K, D) and each component's scale, the Cholesky
factor of its covariance (K, D, D), or its standard deviations (K, D) for diagonal ones)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .base import Prior
from .codes import posterior_means

if TYPE_CHECKING:
    from ..config import GMMOptions
    from ..models import LatentModel


class GaussianMixture(Prior):
    """p(z) = sum_k w_k N(z; m_k, S_k) over flat codes (N, D); S_k full or diagonal."""

    def __init__(self, dim: int, components: int, covariance: str = "full"):
        super().__init__()
        if covariance not in ("full", "diag"):
            raise ValueError(f"covariance must be full or diag, got {covariance!r}")
        self.dim, self.components, self.covariance = int(dim), int(components), covariance
        K, D = self.components, self.dim
        scale = torch.eye(D).expand(K, D, D).clone() if covariance == "full" else torch.ones(K, D)
        self.register_buffer("weights", torch.full((K,), 1.0 / K))
        self.register_buffer("means", torch.zeros(K, D))
        self.register_buffer("scale", scale)

    @classmethod
    def from_sklearn(cls, gm) -> GaussianMixture:
        """The prior of a fitted sklearn.mixture.GaussianMixture (covariance full or diag)."""
        import numpy as np

        K, D = gm.means_.shape
        prior = cls(D, K, gm.covariance_type)
        cov = np.asarray(gm.covariances_, dtype=np.float64)
        scale = np.linalg.cholesky(cov) if gm.covariance_type == "full" else np.sqrt(cov)
        prior.weights.copy_(torch.from_numpy(np.asarray(gm.weights_)))
        prior.means.copy_(torch.from_numpy(np.asarray(gm.means_)))
        prior.scale.copy_(torch.from_numpy(scale))
        return prior

    def component_log_probs(self, z: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N, K) log w_k + log N(z; m_k, S_k) in nats."""
        diff = z[:, None, :] - self.means  # (N, K, D)
        if self.covariance == "full":
            # L_k^-1 (z - m_k) per component: a batched triangular solve over K
            y = torch.linalg.solve_triangular(self.scale, diff.transpose(0, 1).mT, upper=False)
            maha = y.pow(2).sum(1).T  # (N, K)
            log_det = self.scale.diagonal(dim1=1, dim2=2).log().sum(1)  # (K,) log |L_k|
        else:
            maha = (diff / self.scale).pow(2).sum(2)
            log_det = self.scale.log().sum(1)
        log_normal = -0.5 * maha - log_det - 0.5 * self.dim * math.log(2 * math.pi)
        return self.weights.log() + log_normal

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """(N, D) codes -> (N,) log p(z) in nats."""
        return torch.logsumexp(self.component_log_probs(z.flatten(1).to(self.means)), dim=1)

    def sample(
        self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        """n codes (n, D): a component k ~ w, then z = m_k + T L_k eps, eps ~ N(0, I) (both
        drawn on the CPU); temperature T scales each component's spread, not the means."""
        k = torch.multinomial(self.weights.cpu(), n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, generator=generator).to(self.means)
        k = k.to(self.means.device)
        if self.covariance == "full":
            spread = (self.scale[k] @ eps[:, :, None]).squeeze(2)
        else:
            spread = self.scale[k] * eps
        return self.means[k] + temperature * spread

    def options(self) -> dict:
        return {"dim": self.dim, "components": self.components, "covariance": self.covariance}

    @classmethod
    def fit(
        cls,
        model: LatentModel,
        x: torch.Tensor,
        options: GMMOptions,
        *,
        work_dir: Path,
        device: torch.device,
        seed: int,
        progress: Callable[[str], None],
    ) -> GaussianMixture:
        """EM on the posterior means of images x (uint8 (N, C, H, W)); seed: sklearn's
        random_state (the k-means initialisation). Needs scikit-learn (vaekit[metrics])."""
        try:
            from sklearn.mixture import GaussianMixture as SkGaussianMixture
        except ImportError:
            raise ImportError(
                "the gmm prior needs scikit-learn: pip install 'vaekit[metrics]'"
            ) from None
        progress(f"encoding {len(x):,} training images")
        z = posterior_means(model, x).double().numpy()
        if len(z) < options.components:
            raise ValueError(
                f"components {options.components} is more than the {len(z)} codes to fit"
            )
        progress(
            f"fitting a {options.components}-component {options.covariance} Gaussian mixture "
            f"to {len(z):,} codes of {z.shape[1]} dims"
        )
        gm = SkGaussianMixture(options.components, covariance_type=options.covariance,
                               max_iter=options.max_iter, random_state=seed).fit(z)  # fmt: skip
        if not gm.converged_:
            progress(f"note: EM did not converge in {options.max_iter} iterations (--max-iter)")
        return cls.from_sklearn(gm)
