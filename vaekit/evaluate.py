"""Test-set evaluation: fixed, unshuffled data and a fixed noise seed, so numbers repeat."""

from __future__ import annotations

import torch

from .data import to_float
from .model import VAE, kl_normal


@torch.inference_mode()
def evaluate(model: VAE, x: torch.Tensor, batch_size: int = 500, seed: int = 0) -> dict:
    """Mean per-image loss, recon and KL (nats) over uint8 images x (N, C, H, W), plus KL per dim.

    Runs in eval mode with z sampled from q(z|x) under a fixed seed (the ELBO's estimate);
    restores the model's mode and the global RNG afterwards.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss, recon, kl sums
    kl_dims = torch.zeros(model.cfg.latent_dim, dtype=torch.float64, device=device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for i in range(0, len(x), batch_size):
            xb = to_float(x[i : i + batch_size].to(device, non_blocking=True))
            out = model(xb)
            totals += torch.stack([out["loss"].sum(), out["recon"].sum(), out["kl"].sum()]).double()
            kl_dims += kl_normal(out["mu"], out["logvar"]).sum(0).double()
    model.train(was_training)
    n = len(x)
    loss, recon, kl = (totals / n).tolist()
    return {
        "test_loss": loss,
        "recon": recon,
        "kl": kl,
        "num_images": n,
        "kl_per_dim": (kl_dims / n).tolist(),
    }


@torch.inference_mode()
def latent_kl(model: VAE, x: torch.Tensor, batch_size: int = 1000) -> list[float]:
    """Average KL(q(z|x) || p(z)) of each latent dim over uint8 images x: encoder only."""
    device = next(model.parameters()).device
    total = torch.zeros(model.cfg.latent_dim, dtype=torch.float64, device=device)
    for i in range(0, len(x), batch_size):
        mu, logvar = model.encode(to_float(x[i : i + batch_size].to(device)))
        total += kl_normal(mu, logvar).sum(0).double()
    return (total / len(x)).tolist()
