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
