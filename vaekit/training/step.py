"""One optimizer step, callable with tensors: no dataset, no files, no process group needed."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import nn

from ..config import TrainConfig


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Learning rate for an optimizer step: constant, or cosine from lr to lr * lr_min_frac."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    floor = cfg.lr * cfg.lr_min_frac
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * min(step / total, 1.0)))


class TrainModule(nn.Module):
    """The model and its objective as one module, so DDP and torch.compile wrap the whole
    training computation: forward(x, step, eps, y) -> the objective's terms (y: int64 class
    labels (B,) for a conditional model, else None)."""

    def __init__(self, model: nn.Module, objective: Callable):
        super().__init__()
        self.model, self.objective = model, objective

    def forward(
        self, x: torch.Tensor, step: int, eps: list | None = None, y: torch.Tensor | None = None
    ) -> dict:
        return self.objective(self.model, x, step, eps, y=y)


def train_step(
    loss_fn: Callable[..., dict],
    params: list[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    step: int,
    *,
    eps: list | None = None,
    y: torch.Tensor | None = None,
    lr: float | None = None,
    grad_clip: float = 0.0,
    share: float = 1.0,
    autocast=None,
    agree: Callable[[torch.Tensor], torch.Tensor] | None = None,
    max_gnorm: float | None = None,
) -> dict:
    """Forward, backward and (if all is finite) an update. Returns the terms, the gradient norm
    and ok (a 0-dim bool tensor: was the update taken).

    loss_fn(x, step, eps) -> terms with a scalar "loss" (e.g. a TrainModule), called with y=y
    too where labels y (B,) are given (a conditional model's). share scales the
    loss so that DDP's average over ranks is the mean over the global batch (1 in one process).
    agree(bad) -> the number of ranks that found a non-finite value (one collective; None in
    one process): every rank then takes the same decision. max_gnorm: also skip the update when
    the gradient norm (before clipping) is above it, a spike (DDP's averaged gradients give
    every rank the same norm, so the same decision).
    """
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr
    with autocast or nullcontext():
        terms = loss_fn(x, step, eps) if y is None else loss_fn(x, step, eps, y=y)
    loss = terms["loss"] * share
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = nn.utils.clip_grad_norm_(params, grad_clip or math.inf)
    ok = torch.isfinite(loss + gnorm)
    if max_gnorm is not None:
        ok = ok & (gnorm <= max_gnorm)
    if agree is not None:
        ok = agree((~ok).float()) == 0
    if ok:  # a host sync: skip non-finite updates
        optimizer.step()
    return {**terms, "loss": loss, "gnorm": gnorm, "ok": ok}
