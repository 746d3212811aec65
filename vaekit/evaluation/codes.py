"""Discrete codes of a VQ-VAE (a model with codes(x)): the code grids of a set of images and how
much of the codebook they use."""

from __future__ import annotations

import math

import torch

from ..likelihoods import to_float
from ..models import LatentModel


@torch.inference_mode()
def code_grids(model: LatentModel, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """uint8 images x (N, C, H, W) as the model sees them -> code indices (N, h, w), int64 on
    the CPU."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = [model.codes(to_float(x[i : i + batch_size].to(device))).cpu()
           for i in range(0, len(x), batch_size)]  # fmt: skip
    model.train(was_training)
    return torch.cat(out)


def codebook_usage(k: torch.Tensor, codebook_size: int) -> dict:
    """Usage of a codebook of K codes by code indices k (any shape): perplexity exp(H(p)) of
    the codes' frequencies p (K: every code equally used; 1: one code), codes_used (>= once),
    dead_codes (never used), codebook_size."""
    counts = torch.bincount(k.flatten(), minlength=codebook_size).double()
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum().item()
    used = int((counts > 0).sum())
    return {"codebook_size": codebook_size, "perplexity": math.exp(entropy), "codes_used": used,
            "dead_codes": codebook_size - used}  # fmt: skip
