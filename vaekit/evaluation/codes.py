"""Discrete codes of a VQ-VAE (a model with codes(x)): how much of the codebook they use (their
grids: vaekit.priors.codes.code_grids)."""

from __future__ import annotations

import math

import torch


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
