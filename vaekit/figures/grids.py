"""The seed's pictures as functions: samples, reconstructions, 2-D traversals, interpolations.

Each returns a uint8 image array ready for plots.save_png; all run under inference mode.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..likelihoods import to_float
from ..models import LatentModel
from ..models.base import with_labels
from .png import make_grid, side_by_side


def _device(model: LatentModel) -> torch.device:
    return next(model.parameters()).device


def _square_nrow(n: int) -> int:
    return max(1, math.ceil(math.sqrt(n)))


@torch.inference_mode()
def sample_grid(
    model: LatentModel,
    n: int = 64,
    temperature: float | list[float] = 1.0,
    seed: int = 0,
    labels: int | torch.Tensor | None = None,
) -> np.ndarray:
    """n prior samples (z ~ N(0, T^2 I), fixed seed) as a square-ish grid with 2 px padding.
    labels: of a conditional model's samples (LatentModel.sample).

    For a model without a prior (ae) these are decoded random codes, not samples."""
    g = torch.Generator().manual_seed(seed)
    x = model.eval().sample(n, temperature, generator=g, **labels_kw(labels))
    return make_grid(x, _square_nrow(n))


def labels_kw(labels) -> dict:
    """sample()'s labels= keyword, only where labels are given (a model may take none)."""
    return {} if labels is None else {"labels": labels}


@torch.inference_mode()
def class_grid(
    model: LatentModel, per_row: int, temperature: float | list[float] = 1.0, seed: int = 0
) -> np.ndarray:
    """A conditional model's samples, one row per class of per_row samples; every row decodes
    the same codes (the same seed), so a column holds one style in every class."""
    if not model.conditional:
        raise ValueError(f"this {model.cfg.family} model is not conditional: no classes to show")
    rows = [
        model.eval().sample(per_row, temperature, torch.Generator().manual_seed(seed), labels=k)
        for k in range(model.num_classes)
    ]
    return make_grid(torch.cat(rows), per_row)


@torch.inference_mode()
def reconstruction_grid(
    model: LatentModel, x: torch.Tensor, y: torch.Tensor | None = None
) -> np.ndarray:
    """uint8 images x (N, C, H, W): originals (left grid) beside reconstructions (right grid);
    y: their labels (N,), for a conditional model."""
    xf = to_float(x.to(_device(model)))
    x_rec = model.eval().reconstruct(xf, **with_labels(None if y is None else y.to(xf.device)))
    nrow = _square_nrow(len(x))
    return side_by_side(make_grid(xf, nrow), make_grid(x_rec, nrow))


@torch.inference_mode()
def traverse_grid(
    model: LatentModel,
    x: torch.Tensor,
    dims: tuple[int, int],
    steps: int = 13,
    span: float = 7.0,
    label: int | None = None,
) -> np.ndarray:
    """Encode one uint8 image x (C, H, W); vary dims[0] down the rows and dims[1] along the columns
    by linspace(-span, span, steps) around its mean; decode all steps^2 codes as one batch.
    label: the class a conditional model encodes and decodes with."""
    D = model.top_dim
    for d in dims:
        if not 0 <= d < D:
            raise ValueError(f"latent dim {d} out of range: the model has dims 0..{D - 1}")
    y = fixed_label(model, label, steps * steps)
    mu, _ = model.eval().encode(
        to_float(x[None].to(_device(model))), **with_labels(None if y is None else y[:1])
    )
    offsets = torch.linspace(-span, span, steps, device=mu.device)  # mu: (1, D)
    z = mu.repeat(steps * steps, 1)  # (steps^2, D), row-major: row i, column j
    z[:, dims[0]] += offsets.repeat_interleave(steps)
    z[:, dims[1]] += offsets.repeat(steps)
    return make_grid(model.decode(z, **with_labels(y)), steps, padding=0)


def fixed_label(model: LatentModel, label: int | None, n: int) -> torch.Tensor | None:
    """(n,) copies of a conditional model's label on its device (None: unconditional; a
    one-line ValueError for a missing or bad label, or a label for an unconditional model)."""
    if model.conditional and label is None:
        model.check_labels(None)
    y = model.sample_labels(n, label)
    return None if y is None else y.to(_device(model))


@torch.inference_mode()
def interpolate_grid(
    model: LatentModel,
    xa: torch.Tensor,
    xb: torch.Tensor,
    steps: int = 10,
    label: int | None = None,
) -> np.ndarray:
    """Linear path between the latent means of uint8 images xa and xb (C, H, W), one row;
    label: the class a conditional model encodes and decodes with."""
    y, y2 = fixed_label(model, label, steps), fixed_label(model, label, 2)
    x2 = to_float(torch.stack([xa, xb]).to(_device(model)))
    mu, _ = model.eval().encode(x2, **with_labels(y2))  # (2, D)
    t = torch.linspace(0, 1, steps, device=mu.device)[:, None]  # (steps, 1)
    z = (1 - t) * mu[0] + t * mu[1]  # (steps, D)
    return make_grid(model.decode(z, **with_labels(y)), steps)


def top_dims(score: list[float], k: int = 2) -> list[int]:
    """The k latent dims with the largest score (average KL, or for a model without a KL, the
    variance of the posterior means): the ones the model uses most."""
    return sorted(range(len(score)), key=lambda d: -score[d])[:k]


def dim_scores(mu: torch.Tensor, kl_per_dim: list[float] | None) -> list[float]:
    """How much each latent dim is used: its average KL, or the variance of its means (N, D)."""
    return kl_per_dim if kl_per_dim is not None else mu.var(0, correction=0).tolist()
