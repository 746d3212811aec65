"""The vqvae family: a VQ-VAE (van den Oord et al. 2017). A conv encoder maps x to a grid of
code vectors z_e (B, D, h, w); each is replaced by its nearest codebook entry, z_q = e_k with
k = argmin_j ||z_e - e_j||; the decoder maps the quantised grid back to the likelihood's
parameters. Gradients pass the quantiser straight through (z_e + sg(z_q - z_e)); the encoder
is pulled to its codes by the commitment loss beta ||z_e - sg(z_q)||^2 (forward's "aux"). The
codebook is no parameter: it follows exponential moving averages of the encoder outputs
assigned to each code (van den Oord et al. 2017, appendix A.1; Razavi et al. 2019), applied in
after_step once the step's update is taken, and codes whose average use falls below
dead_threshold outputs a step restart at random encoder outputs of the batch (Dhariwal et al.
2020), so the codebook stays in use.

The latent group is the quantised grid (D, h, w); codes(x) gives the code indices (B, h, w)
and decode_codes(k) their images. No KL; no prior until one is fitted over the code grids
(set_prior, e.g. vaekit.priors.pixelcnn): sample() then decodes its codes, else uniformly
drawn ones (no generative model's samples).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from ..config import ModelConfig
from ..likelihoods import create_likelihood
from ..priors.base import Prior
from .base import LatentModel, full_precision
from .nets import ResBlock


def vq_encoder(cin: int, ch: tuple[int, ...], code_dim: int, blocks: int) -> nn.Sequential:
    """x_net (B, cin, H, W) -> z_e (B, code_dim, H / 2^S, W / 2^S): S = len(ch) stride-2 4x4
    convs, residual blocks at the bottom, a 1x1 conv to the code dimension."""
    layers: list[nn.Module] = []
    for i, c in enumerate(ch):
        layers += [nn.Conv2d(cin if i == 0 else ch[i - 1], c, 4, stride=2, padding=1), nn.ReLU()]
    layers += [ResBlock(ch[-1], ch[-1]) for _ in range(blocks)]
    return nn.Sequential(*layers, nn.ReLU(), nn.Conv2d(ch[-1], code_dim, 1))


def vq_decoder(code_dim: int, ch: tuple[int, ...], cout: int, blocks: int) -> nn.Sequential:
    """z_q (B, code_dim, h, w) -> the likelihood's parameters (B, cout, h 2^S, w 2^S): the
    encoder mirrored with stride-2 4x4 transposed convs."""
    up = ch[::-1]
    layers: list[nn.Module] = [nn.Conv2d(code_dim, up[0], 3, padding=1)]
    layers += [ResBlock(up[0], up[0]) for _ in range(blocks)]
    for i, c in enumerate(up):
        nxt = up[i + 1] if i + 1 < len(up) else cout
        layers += [nn.ReLU(), nn.ConvTranspose2d(c, nxt, 4, stride=2, padding=1)]
    return nn.Sequential(*layers)


def fp32(t: torch.Tensor):
    """A context with autocast off on t's device: float32 matmuls inside a bf16 step (none on
    the meta device, where vaekit.runtime.memory measures a step)."""
    if t.device.type == "meta":
        return nullcontext()
    return torch.autocast(t.device.type, dtype=torch.bfloat16, enabled=False)


class EMACodebook(nn.Module):
    """K code vectors (K, D) kept as buffers and moved by exponential moving averages.

    cluster_size (K,): the averaged count of encoder outputs assigned to each code a step;
    embed_sum (K, D): the averaged sum of those outputs; codebook = embed_sum / the Laplace-
    smoothed cluster_size (Sonnet's VectorQuantizerEMA)."""

    def __init__(self, K: int, D: int, decay: float, dead_threshold: float, eps: float = 1e-5):
        super().__init__()
        self.K, self.decay, self.dead_threshold, self.eps = K, decay, dead_threshold, eps
        self.register_buffer("codebook", torch.randn(K, D))
        self.register_buffer("cluster_size", torch.zeros(K))  # all dead: restarted at step 1
        self.register_buffer("embed_sum", self.codebook.clone())
        self.pending: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def nearest(self, z_flat: torch.Tensor) -> torch.Tensor:
        """(N, D) vectors -> (N,) index of the nearest code (squared Euclidean distance, in
        float32 under autocast too)."""
        with fp32(z_flat):
            z, c = full_precision(z_flat), self.codebook  # float64 in a float64 model
            d = z.pow(2).sum(1, keepdim=True) - 2 * z @ c.t() + c.pow(2).sum(1)[None]  # (N, K)
        return d.argmin(1)

    def remember(self, z_flat: torch.Tensor, k: torch.Tensor) -> None:
        """Keep a training step's counts (K,), sums (K, D) and outputs (N, D) for update()."""
        z = full_precision(z_flat.detach())
        counts = z.new_zeros(self.K).index_add_(0, k, z.new_ones(len(z)))
        self.pending = (counts, z.new_zeros(self.K, z.shape[1]).index_add_(0, k, z), z)

    @torch.no_grad()
    def update(self) -> None:
        """Apply the remembered step: the moving averages, the codebook, then dead codes
        restarted at random outputs of the step (draws from the global RNG)."""
        counts, sums, z = self.pending
        self.pending = None
        self.cluster_size.lerp_(counts, 1 - self.decay)
        self.embed_sum.lerp_(sums, 1 - self.decay)
        dead = self.cluster_size < self.dead_threshold  # (K,)
        n_dead = int(dead.sum())
        if n_dead:
            pick = z[torch.randint(len(z), (n_dead,), device=z.device)]  # (n_dead, D)
            self.embed_sum[dead] = pick
            self.cluster_size[dead] = 1.0
        n = self.cluster_size.sum()
        size = (self.cluster_size + self.eps) / (n + self.K * self.eps) * n  # (K,) smoothed
        self.codebook.copy_(self.embed_sum / size[:, None])

    def forget(self) -> None:
        self.pending = None


class VQVAE(LatentModel):
    has_prior = False  # an instance's own: True once a prior over its codes is set

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        o, likelihood = cfg.net, create_likelihood(cfg)
        self.encoder = vq_encoder(cfg.in_channels, o.widths, o.code_dim, o.res_blocks)
        self.decoder = vq_decoder(o.code_dim, o.widths, likelihood.channels(cfg), o.res_blocks)
        self.quantizer = EMACodebook(o.codebook_size, o.code_dim, o.ema_decay, o.dead_threshold)
        self.likelihood = likelihood
        self.__dict__["prior"] = None  # not a submodule: a fitted prior lives in its own file

    @property
    def grid(self) -> tuple[int, int]:
        """(h, w) of the code grid."""
        s = 2 ** len(self.cfg.net.widths)
        return self.cfg.image_size[0] // s, self.cfg.image_size[1] // s

    @property
    def latent_shapes(self) -> list[tuple[int, ...]]:
        return [(self.cfg.net.code_dim, *self.grid)]

    @property
    def has_kl(self) -> bool:
        return False

    def set_prior(self, prior: Prior | None) -> None:
        """Sample from prior, a distribution over code grids (N, h, w) (None: no prior)."""
        self.__dict__["prior"] = prior
        self.has_prior = prior is not None

    def noise(self, n: int, k: int = 1, device: torch.device | str = "cpu") -> list[torch.Tensor]:
        return []  # deterministic: draws nothing

    def quantize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, C, H, W) in [0, 1] -> (z_e (B, D, h, w), z_q (B, D, h, w), k (B, h, w))."""
        z_e = full_precision(self.encoder(self.normalize(x)))
        B, D, h, w = z_e.shape
        z_flat = z_e.permute(0, 2, 3, 1).reshape(-1, D)  # (B h w, D)
        k = self.quantizer.nearest(z_flat.detach())
        if self.training and torch.is_grad_enabled():
            self.quantizer.remember(z_flat, k)
        return z_e, self.embed(k.view(B, h, w)), k.view(B, h, w)

    def embed(self, k: torch.Tensor) -> torch.Tensor:
        """Code indices (B, h, w) -> their vectors (B, D, h, w)."""
        return self.quantizer.codebook[k].permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor, eps: list[torch.Tensor] | None = None) -> dict:
        """recon (B,) in the likelihood's units; no KL; z [(B, D, h, w)] the quantised grid
        (straight-through); aux {"commitment": beta ||z_e - sg(z_q)||^2 summed per image (B,)};
        codes (B, h, w) the indices."""
        z_e, z_q, k = self.quantize(x)
        commitment = self.cfg.net.commitment * (z_e - z_q.detach()).pow(2).flatten(1).sum(1)
        z = z_e + (z_q - z_e).detach()  # straight-through: forward z_q, gradient to z_e
        recon = self.likelihood.nll(x, full_precision(self.decoder(z)))
        return {"recon": recon, "kl": [], "z": [z], "aux": {"commitment": commitment},
                "codes": k, "mu": z_q, "logvar": None}  # fmt: skip

    def after_step(self, accepted: bool) -> None:
        """The codebook's moving averages from the step's forward, if its update was taken."""
        if self.quantizer.pending is None:
            return
        if accepted:
            self.quantizer.update()
        else:
            self.quantizer.forget()

    def posterior(self, x: torch.Tensor) -> list[tuple[torch.Tensor, None]]:
        """[(z_q (B, D, h, w), None)]: the quantised grid, deterministic."""
        return [(self.quantize(x)[1], None)]

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) in [0, 1] -> code indices (B, h, w), int64."""
        return self.quantize(x)[2]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Code vectors, flat (N, D h w) or a grid (N, D, h, w) -> mean images (N, C, H, W)."""
        z = z.view(len(z), *self.latent_shapes[0])
        return self.likelihood.mean(full_precision(self.decoder(z)))

    def decode_codes(self, k: torch.Tensor) -> torch.Tensor:
        """Code indices (N, h, w) -> mean images (N, C, H, W)."""
        return self.decode(self.embed(k))

    def draw(self, n: int, temps: list[float], generator: torch.Generator | None) -> torch.Tensor:
        """n code grids from the fitted prior at temperature temps[0] (without one: uniform
        codes, temperature unused), decoded."""
        device = next(self.parameters()).device
        if self.prior is not None:
            k = self.prior.sample(n, generator, temps[0])
        else:
            k = torch.randint(self.cfg.net.codebook_size, (n, *self.grid), generator=generator)
        return self.decode_codes(k.to(device))
