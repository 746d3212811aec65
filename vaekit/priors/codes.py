"""The codes a prior is fitted to: a model's posterior means of a set of images, in batches."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..likelihoods import to_float

if TYPE_CHECKING:
    from ..models import LatentModel


@torch.no_grad()
def posterior_means(model: LatentModel, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> the top group's posterior means (N, D), float32 on the
    CPU, as the model sees the images (binarized once for bernoulli); no autograd."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        mus = [
            model.encode(to_float(model.likelihood.prepare_eval(b).to(device)))[0].float().cpu()
            for b in x.split(batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(mus)


@torch.no_grad()
def code_grids(model: LatentModel, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> a discrete-code model's (vqvae's) code indices (N, h, w),
    int64 on the CPU, as the model sees the images; ValueError for a model without codes."""
    if not hasattr(model, "codes"):
        raise ValueError(
            f"a prior over discrete codes needs a model that has them (vqvae); the "
            f"{model.cfg.family} family has none"
        )
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        k = [model.codes(to_float(model.likelihood.prepare_eval(b).to(device))).cpu()
             for b in x.split(batch_size)]  # fmt: skip
    finally:
        model.train(was_training)
    return torch.cat(k)
