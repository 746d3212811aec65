"""Inverse autoregressive flow (Kingma et al. 2016): a flexible posterior q(z|x) for the vae.

z0 ~ N(mu, diag(exp(logvar))) from the encoder, then T steps, each a MADE-style masked network
(Germain et al. 2015) of the current z and the encoder's context h giving (m, s), and
    z <- sigma * z + (1 - sigma) * m,  sigma = sigmoid(s)
(the paper's numerically stable form). Output i of a step depends on the inputs before it in
the step's order only, so dz'/dz is triangular with diagonal sigma: log|det| = sum log sigma.
Steps alternate the order (first to last, then last to first). log q(z|x) = log N(z0; mu,
exp(logvar)) - sum over steps of log|det|.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from .base import full_precision

GATE_BIAS = 2.0  # initial s: sigma = sigmoid(2) = 0.88, so each step starts near the identity


class MaskedLinear(nn.Linear):
    """A linear layer with a fixed 0/1 mask (out, in) on its weight: y = x (W * M)^T + b."""

    def __init__(self, mask: torch.Tensor):
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


def made_masks(degrees: torch.Tensor, hidden: int) -> tuple[torch.Tensor, ...]:
    """Masks of a MADE with one hidden layer pair for inputs of the given degrees (D,), each a
    permutation of 1..D: (input -> hidden1 (H, D), hidden1 -> hidden2 (H, H), hidden2 -> one
    output block (D, H)). Hidden unit k has degree k mod (D - 1) + 1 and sees inputs of degree
    <= its own; output i sees hidden units of degree < degrees[i]: autoregressive in degrees."""
    D = len(degrees)
    m = torch.arange(hidden) % max(D - 1, 1) + 1  # (H,)
    return (
        (m[:, None] >= degrees[None, :]).float(),
        (m[:, None] >= m[None, :]).float(),
        (degrees[:, None] > m[None, :]).float(),
    )


class IAFStep(nn.Module):
    """One autoregressive step: (z (..., D), h (..., C)) -> (sigma * z + (1 - sigma) * m, log
    sigma (..., D)), with m, s from a masked two-hidden-layer network of z plus a linear
    function of the context h."""

    def __init__(self, degrees: torch.Tensor, context: int, hidden: int):
        super().__init__()
        D = len(degrees)
        to_hidden, hidden_hidden, to_out = made_masks(degrees, hidden)
        self.inp = MaskedLinear(to_hidden)
        self.ctx = nn.Linear(context, hidden)
        self.mid = MaskedLinear(hidden_hidden)
        self.out = MaskedLinear(torch.cat([to_out, to_out]))  # (2D, H): m then s
        with torch.no_grad():
            self.out.bias[D:].fill_(GATE_BIAS)

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = F.elu(self.inp(z) + self.ctx(h))
        a = F.elu(self.mid(a))
        m, s = self.out(a).chunk(2, dim=-1)
        sigma = torch.sigmoid(s)
        return sigma * z + (1.0 - sigma) * m, F.logsigmoid(s)


class IAF(nn.Module):
    """T IAF steps over z (D,) with a context of C dims, the order reversed between steps."""

    def __init__(self, dim: int, context: int, steps: int, hidden: int):
        super().__init__()
        up = torch.arange(1, dim + 1)
        self.steps = nn.ModuleList(
            IAFStep(up if t % 2 == 0 else up.flip(0), context, hidden) for t in range(steps)
        )

    def forward(self, z0: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z0 (..., D), h (..., C) (broadcast to z0's leading dims) -> (z (..., D), log|det
        dz/dz0| (...,)) in nats. Runs in the weights' precision, outside autocast: the flow is
        small and its log-determinant enters the KL estimate (the meta device, for shapes only,
        has no autocast)."""
        device = z0.device.type
        with torch.autocast(device, enabled=False) if device != "meta" else nullcontext():
            z, h = full_precision(z0), full_precision(h).expand(*z0.shape[:-1], h.shape[-1])
            log_det = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
            for step in self.steps:
                z, log_sigma = step(z, h)
                log_det = log_det + log_sigma.sum(-1)
        return z, log_det
