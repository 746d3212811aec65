"""The hvae family: a hierarchical VAE with top-down latent groups (Child 2021, VDVAE; Vahdat &
Kautz 2020, NVAE; Sonderby et al. 2016, Ladder VAE), options in config.HierarchicalNet.

A bottom-up encoder turns x into features at each resolution (coarsest first in the options,
computed finest first). The top-down decoder starts from a learned constant at the top
resolution and runs L groups in order; group l at resolution r has
    prior      p(z_l | z_<l)    = N(pm, exp(plogv)) from the top-down state h (the top group's
                                  prior is N(0, I)),
    posterior  q(z_l | x, z_<l) = N(qm, exp(qlogv)) from h and the encoder's features at r,
and z_l (z_channels, r, r) joins the state: h <- h + proj(z_l), then a residual block. The KL
of each group is analytic, in nats, per element (B, z_channels, r, r); the ELBO sums them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..likelihoods import create_likelihood
from ..losses import LOG_2PI
from .base import LatentModel, full_precision

LOGVAR_BOUND = 10.0  # log-variances are soft-clamped to +-this (tanh), as NVAE bounds its scales


def soft_clamp(t: torch.Tensor, bound: float = LOGVAR_BOUND) -> torch.Tensor:
    return bound * torch.tanh(t / bound)


def gaussian_kl(qm, qlogv, pm, plogv) -> torch.Tensor:
    """KL(N(qm, e^qlogv) || N(pm, e^plogv)) per element, nats."""
    return 0.5 * (plogv - qlogv + (qlogv.exp() + (qm - pm).pow(2)) * torch.exp(-plogv) - 1.0)


def gaussian_log_density(z, m, logv) -> torch.Tensor:
    """log N(z; m, e^logv) summed over every non-batch dim: (B, ...) -> (B,)."""
    return (-0.5 * (LOG_2PI + logv + (z - m).pow(2) * torch.exp(-logv))).flatten(1).sum(1)


def upsample_conv(h: torch.Tensor, conv: nn.Conv2d, f: int) -> torch.Tensor:
    """conv(nearest-upsample(h, f)) for a 3x3 conv with padding 1, computed on the coarse grid:
    (B, C, r, r) -> (B, conv.out_channels, f * r, f * r). Each of the f * f output phases is a
    3x3 conv of h whose taps sum the fine kernel's taps that fall on the same coarse pixel;
    pixel_shuffle interleaves the phases. The same numbers up to rounding without the f^2-times
    larger upsampled map (mnist-hvae's 28x28 output from 14x14: its forward 5x faster)."""
    d = torch.arange(-1, 2, device=h.device)  # a 3x3 kernel's offsets
    phase = torch.arange(f, device=h.device)
    # taps[a, p, k]: fine tap k of output phase a reads coarse offset p
    coarse = (phase[:, None] + d).div(f, rounding_mode="floor")  # (f, 3)
    taps = (coarse[:, None, :] == d[None, :, None]).to(conv.weight.dtype)
    w = torch.einsum("apk,bql,oikl->oabipq", taps, taps, conv.weight)  # (out, f, f, C, 3, 3)
    w = w.reshape(-1, *conv.weight.shape[1:])
    b = None if conv.bias is None else conv.bias.repeat_interleave(f * f)
    return F.pixel_shuffle(F.conv2d(h, w, b, padding=1), f)


class Block(nn.Module):
    """VDVAE's bottleneck block: 1x1, 3x3, 3x3, 1x1 convs with GELUs (1x1 only at tiny sizes);
    residual when cin == cout and residual is set; zero_last starts it as the identity."""

    def __init__(self, cin: int, cmid: int, cout: int, size: int, residual: bool, zero_last=False):
        super().__init__()
        k = 3 if size > 2 else 1
        self.c1 = nn.Conv2d(cin, cmid, 1)
        self.c2 = nn.Conv2d(cmid, cmid, k, padding=k // 2)
        self.c3 = nn.Conv2d(cmid, cmid, k, padding=k // 2)
        self.c4 = nn.Conv2d(cmid, cout, 1)
        if zero_last:
            nn.init.zeros_(self.c4.weight)
            nn.init.zeros_(self.c4.bias)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.tail(self.c1(F.gelu(x)))
        return x + h if self.residual else h

    def tail(self, u: torch.Tensor) -> torch.Tensor:
        """The block after its first conv: c1's output u (B, cmid, r, r) -> (B, cout, r, r)."""
        return self.c4(F.gelu(self.c3(F.gelu(self.c2(F.gelu(u))))))


class TopDownGroup(nn.Module):
    """One latent group of the top-down pass (VDVAE's DecBlock)."""

    def __init__(self, width: int, zc: int, size: int, top: bool, depth: int):
        super().__init__()
        mid = width // 4
        self.zc, self.top = zc, top
        self.posterior = Block(2 * width, mid, 2 * zc, size, residual=False)
        # prior parameters and a feature for the state; zero-initialised: N(0, I) at start
        self.prior = None if top else Block(width, mid, 2 * zc + width, size, False, True)
        self.z_proj = nn.Conv2d(zc, width, 1)
        nn.init.normal_(self.z_proj.weight, std=math.sqrt(1 / (zc * depth)))
        nn.init.zeros_(self.z_proj.bias)
        self.res = Block(width, mid, width, size, residual=True)
        with torch.no_grad():  # VDVAE scales the last conv of the residual blocks by 1/sqrt(L)
            self.res.c4.weight.mul_(math.sqrt(1 / depth))

    def prior_of(self, gh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pm, plogv) of p(z | h) and the state's update from the prior block, given gelu(h)
        (n, width, r, r): the prior and posterior blocks both start with it."""
        if self.prior is None:
            zeros = gh.new_zeros(gh.shape[0], self.zc, *gh.shape[2:])
            return zeros, zeros, gh.new_zeros(())
        out = self.prior.tail(self.prior.c1(gh))
        pm, plogv, feat = out.split([self.zc, self.zc, gh.shape[1]], dim=1)
        return pm, soft_clamp(plogv), feat

    def posterior_input(self, a: torch.Tensor) -> torch.Tensor:
        """The encoder features' share of the posterior block's first (1x1) conv, whose input is
        gelu(cat([h, a])): (B, width, r, r) -> (B, cmid, r, r), with its bias. It depends on
        the image alone, so the importance-weighted bound computes it once for all K samples."""
        c1 = self.posterior.c1
        return F.conv2d(F.gelu(a), c1.weight[:, -a.shape[1] :], c1.bias)

    def posterior_of(self, gh: torch.Tensor, pa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(qm, qlogv) of q(z | x, z_<l) from gelu(h) (n, width, r, r) and posterior_input
        (B, cmid, r, r), n a multiple of B: row j of h belongs to image j % B."""
        u = F.conv2d(gh, self.posterior.c1.weight[:, : gh.shape[1]])
        u = (u.unflatten(0, (-1, len(pa))) + pa).flatten(0, 1)  # pa broadcast over the samples
        qm, qlogv = self.posterior.tail(u).chunk(2, dim=1)
        return qm, soft_clamp(qlogv)

    def step(self, h: torch.Tensor, z: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        return self.res(h + feat + self.z_proj(z))


class HVAE(LatentModel):
    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        likelihood = create_likelihood(cfg)
        o = cfg.net
        W, mid = o.width, o.width // 4
        self.stem = nn.Conv2d(cfg.in_channels, W, 3, padding=1)
        # encoder blocks per resolution, finest first (the order they run in)
        self.enc = nn.ModuleList(
            nn.Sequential(*(Block(W, mid, W, r, residual=True) for _ in range(o.enc_blocks)))
            for r in reversed(o.resolutions)
        )
        self.sizes = [r for r, n in zip(o.resolutions, o.groups, strict=True) for _ in range(n)]
        L = len(self.sizes)
        self.h_top = nn.Parameter(torch.zeros(1, W, o.resolutions[0], o.resolutions[0]))
        self.groups = nn.ModuleList(
            TopDownGroup(W, o.z_channels, r, i == 0, L) for i, r in enumerate(self.sizes)
        )
        self.out = nn.Conv2d(W, likelihood.channels(cfg), 3, padding=1)
        self.likelihood = likelihood
        if self.conditional:  # e(y) added to the top state: every prior and posterior sees it
            self.label_embedding = nn.Embedding(o.num_classes, W)

    @property
    def latent_shapes(self) -> list[tuple[int, ...]]:
        return [(self.cfg.net.z_channels, r, r) for r in self.sizes]

    # Bottom-up.
    def features(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """Images (B, C, H, W) in [0, 1] -> the encoder's features at each resolution r:
        {r: (B, width, r, r)}."""
        h = self.stem(self.normalize(x))
        acts = {}
        for r, blocks in zip(reversed(self.cfg.net.resolutions), self.enc, strict=True):
            h = blocks(F.adaptive_avg_pool2d(h, r))
            acts[r] = h
        return acts

    # Top-down.
    def top_down(
        self,
        n: int,
        acts: dict[int, torch.Tensor] | None = None,
        eps: list[torch.Tensor] | None = None,
        z_given: dict[int, torch.Tensor] | None = None,
        temperature: list[float] | None = None,
        y: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[dict]]:
        """The top-down pass for n rows: decoder output (n, channels, H, W) and per group
        {pm, plogv, z} (+ qm, qlogv with acts). acts: the features of B images, n a multiple of
        B (row j is a path for image j % B: K samples without K copies of the features). Each
        group's z: z_given[l] if given; else from the posterior (with acts) or the prior, mean +
        std * eps[l] (eps None: the mean); temperature[l] scales the prior's std (sampling
        only); y: a conditional model's labels of the n rows."""
        h = self.h_start(n, y)
        if acts is not None:
            pa = [g.posterior_input(acts[r]) for g, r in zip(self.groups, self.sizes, strict=True)]
        stats = []
        for i, (g, r) in enumerate(zip(self.groups, self.sizes, strict=True)):
            if h.shape[-1] != r:
                h = F.interpolate(h, size=(r, r), mode="nearest")
            gh = F.gelu(h)
            pm, plogv, feat = g.prior_of(gh)
            s = {"pm": pm, "plogv": plogv}
            if acts is not None:
                qm, qlogv = g.posterior_of(gh, pa[i])
                s.update(qm=qm, qlogv=qlogv)
                m, logv = qm, qlogv
            else:
                m, logv = pm, plogv
                if temperature is not None:
                    logv = logv + 2 * math.log(max(temperature[i], 1e-8))
            if z_given is not None and i in z_given:
                z = z_given[i]
            elif eps is None:
                z = m
            else:
                z = m + torch.exp(0.5 * logv) * eps[i]
            s["z"] = z
            stats.append(s)
            h = g.step(h, z, feat)
        # the GELU before the upsampling, which it commutes with: on the small map
        return full_precision(self.output(F.gelu(h))), stats

    def h_start(self, n: int, y: torch.Tensor | None) -> torch.Tensor:
        """The top-down pass's first state (n, width, r0, r0): the learned h_top, plus the
        label embedding e(y) over the map for a conditional model (labels y (n,))."""
        h = self.h_top.expand(n, -1, -1, -1)
        return h if y is None else h + self.label_embedding(y)[:, :, None, None].to(h.dtype)

    def output(self, h: torch.Tensor) -> torch.Tensor:
        """GELU of the last state (B, width, r, r) -> the likelihood's parameters (B, channels,
        H, W), nearest-upsampled to the image size."""
        H, W = self.cfg.image_size
        r = h.shape[-1]
        if (H, W) == (r, r):
            return self.out(h)
        if H == W and H % r == 0:  # the upsampling inside the conv: no f^2-times larger map
            return upsample_conv(h, self.out, H // r)
        return self.out(F.interpolate(h, size=(H, W), mode="nearest"))

    # The interface.
    def forward(self, x: torch.Tensor, eps: list[torch.Tensor] | None = None, y=None) -> dict:
        """recon (B,) in the likelihood's units, kl [(B, zc, r, r)] per group (nats), z; y:
        labels (B,) of a conditional model."""
        y = self.check_labels(y)
        if eps is None:
            eps = [torch.randn(len(x), *s, device=x.device) for s in self.latent_shapes]
        out, stats = self.top_down(len(x), self.features(x), eps, y=y)
        kl = [gaussian_kl(s["qm"], s["qlogv"], s["pm"], s["plogv"]) for s in stats]
        return {"recon": self.likelihood.nll(x, out), "kl": kl, "z": [s["z"] for s in stats]}

    def posterior(self, x: torch.Tensor, y=None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """q of each group along the path of posterior means (the top group's depends on x
        alone, and y; a lower group's on the means above it)."""
        _, stats = self.top_down(len(x), self.features(x), y=self.check_labels(y))
        return [(s["qm"], s["qlogv"]) for s in stats]

    def encode(self, x: torch.Tensor, y=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The top group's (mu, logvar), flat (N, z_channels * r0 * r0): one group, no more."""
        g, a = self.groups[0], self.features(x)[self.sizes[0]]
        gh = F.gelu(self.h_start(len(x), self.check_labels(y)))
        qm, qlogv = g.posterior_of(gh, g.posterior_input(a))
        return qm.flatten(1), qlogv.flatten(1)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """Every group at its posterior mean, each given the means above it: (N, C, H, W) mean
        images. Not decode(encode(x)), which keeps the top group's code alone and takes every
        lower group from its prior (on MNIST: the same few blurry digits for every image)."""
        out, _ = self.top_down(len(x), self.features(x), y=self.check_labels(y))
        return self.likelihood.mean(out)

    def decode(self, z: torch.Tensor, y=None) -> torch.Tensor:
        """Top-group codes (N, D_top) -> mean images; the lower groups take their prior means."""
        n = z.shape[0]  # not len(z): an int, which would fix the batch size of an export
        z_top = {0: z.reshape(n, *self.latent_shapes[0])}
        out, _ = self.top_down(n, z_given=z_top, y=self.check_labels(y))
        return self.likelihood.mean(out)

    def draw(
        self, n: int, temps: list[float], generator: torch.Generator | None, y=None
    ) -> torch.Tensor:
        """sample()'s work: every group from its prior at its temperature (given labels y)."""
        device = next(self.parameters()).device
        eps = [torch.randn(n, *s, generator=generator).to(device) for s in self.latent_shapes]
        out, _ = self.top_down(n, eps=eps, temperature=temps, y=y)
        return self.likelihood.mean(out)

    def log_weights(self, x, K, generator=None, chunk=None, eps=None, y=None) -> torch.Tensor:
        """log p(x|z) + sum_l [log p(z_l|z_<l) - log q(z_l|x,z_<l)] for K posterior paths:
        (K, B) nats. eps: [(K, B, zc, r, r)] per group, else drawn from generator (one draw per
        sample and group, so chunking changes nothing); chunk: samples per decoder pass; y:
        labels (B,) of a conditional model."""
        B, chunk, y = len(x), chunk or K, self.check_labels(y)
        acts = self.features(x)
        noise_device = generator.device if generator is not None else x.device
        out = []
        for start in range(0, K, chunk):
            n = min(chunk, K - start)
            if eps is not None:
                e = [t[start : start + n].reshape(n * B, *t.shape[2:]) for t in eps]
            else:
                draws = [[torch.randn(B, *s, generator=generator, device=noise_device)
                          for s in self.latent_shapes] for _ in range(n)]  # fmt: skip
                e = [torch.cat([d[i] for d in draws]).to(x.device) for i in range(len(draws[0]))]
            xr = x.repeat(n, 1, 1, 1)
            yr = None if y is None else y.repeat(n)  # row j: a path for image j % B
            h, stats = self.top_down(n * B, acts, e, y=yr)
            lw = self.likelihood.log_px(xr, h)
            for s in stats:
                lw = lw + gaussian_log_density(s["z"], s["pm"], s["plogv"])
                lw = lw - gaussian_log_density(s["z"], s["qm"], s["qlogv"])
            out.append(lw.reshape(n, B))
        return torch.cat(out)
