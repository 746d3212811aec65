"""Fitting a prior trained by gradient (the PixelCNN) over a model's training codes: its own
short loop with a progress bar and a line per epoch, and a checkpoint in its work folder after
every epoch (WORK/state.pt), from which a stopped fit resumes.

state.pt is plain data that loads with weights_only=True: {"options" (the prior's constructor
kwargs), "fit" (epochs, batch_size, lr, seed), "state_dict", "optimizer", "epoch", "rng" (the
global and shuffle generators' states), "history": a row per epoch (train nats per grid, the
held-out test nats when given, seconds)}.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import outputs
from .base import Prior

STATE = "state.pt"


def fit_prior(
    prior: Prior,
    codes: torch.Tensor,
    work_dir: Path,
    fit: dict,
    *,
    test_codes: torch.Tensor | None = None,
    autocast: bool = False,
    progress: Callable[[str], None] = print,
) -> dict:
    """Maximise the mean log_prob of codes (N, *shape) with Adam, the lr decaying by a cosine
    over all the steps; fit: {"epochs", "batch_size", "lr", "seed"}. After every epoch the
    state goes to work_dir/state.pt; one of the same options and fit picks up after its last
    epoch. autocast: bf16 autocast on the prior's device. Returns the last state."""
    work_dir = Path(work_dir)
    torch.manual_seed(fit["seed"])
    opt = torch.optim.Adam(prior.parameters(), lr=fit["lr"])
    shuffle = torch.Generator().manual_seed(fit["seed"])
    state = resume(prior, fit, opt, shuffle, work_dir / STATE, progress)
    for epoch in range(state["epoch"], fit["epochs"]):
        t0 = time.perf_counter()
        row = {
            "epoch": epoch + 1,
            "train_nats": train_epoch(prior, opt, codes, fit, epoch, shuffle, autocast),
        }
        if test_codes is not None:
            row["test_nats"] = mean_nll(prior, test_codes, fit["batch_size"])
        row["seconds"] = time.perf_counter() - t0
        state = {"options": prior.options(), "fit": fit, "state_dict": prior.state_dict(),
                 "optimizer": opt.state_dict(), "epoch": epoch + 1,
                 "rng": {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state()},
                 "history": [*state["history"], row]}  # fmt: skip
        work_dir.mkdir(parents=True, exist_ok=True)
        outputs.write_with(work_dir / STATE, lambda f, s=state: torch.save(s, f))
        test = f"  test {row['test_nats']:.2f}" if "test_nats" in row else ""
        progress(f"epoch {epoch + 1}/{fit['epochs']}: train {row['train_nats']:.2f} nats per "
                 f"code grid{test}  {row['seconds']:.0f} s")  # fmt: skip
    prior.eval()
    return state


def train_epoch(
    prior: Prior,
    opt: torch.optim.Optimizer,
    codes: torch.Tensor,
    fit: dict,
    epoch: int,
    shuffle: torch.Generator,
    autocast: bool,
) -> float:
    """One pass over codes (N, *shape) in an order drawn from shuffle; returns the mean
    -log p in nats per code grid."""
    B, lr, epochs = fit["batch_size"], fit["lr"], fit["epochs"]
    steps, device = math.ceil(len(codes) / B), next(prior.parameters()).device
    perm = torch.randperm(len(codes), generator=shuffle)
    prior.train()
    total = torch.zeros((), dtype=torch.float64)
    for i in tqdm(range(steps), desc=f"prior epoch {epoch + 1}", leave=False, disable=None):
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * (epoch * steps + i) / (epochs * steps)))
        k = codes[perm[i * B : (i + 1) * B]].to(device)
        with torch.autocast(device.type, torch.bfloat16, enabled=autocast):
            nll = -prior.log_prob(k)  # (b,) nats
        opt.zero_grad(set_to_none=True)
        nll.mean().backward()
        opt.step()
        total += nll.detach().double().sum().cpu()
    return total.item() / len(codes)


@torch.inference_mode()
def mean_nll(prior: Prior, codes: torch.Tensor, batch_size: int = 500) -> float:
    """Mean -log p(k) in nats per code grid over codes (N, *shape)."""
    was_training = prior.training
    prior.eval()
    device = next(prior.parameters()).device
    total = sum(-prior.log_prob(codes[i : i + batch_size].to(device)).double().sum().item()
                for i in range(0, len(codes), batch_size))  # fmt: skip
    prior.train(was_training)
    return total / max(len(codes), 1)


def resume(
    prior: Prior,
    fit: dict,
    opt: torch.optim.Optimizer,
    shuffle: torch.Generator,
    path: Path,
    progress: Callable[[str], None],
) -> dict:
    """The state to continue from: path's when it holds a fit of these options (weights,
    optimizer and generators restored), else a fresh one (epoch 0)."""
    fresh = {"epoch": 0, "history": []}
    if not path.is_file():
        return fresh
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("options") != prior.options() or state.get("fit") != fit:
        progress(f"{path} holds another fit ({state.get('options')}, {state.get('fit')}): refit")
        return fresh
    prior.load_state_dict(state["state_dict"])
    opt.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["torch"])
    shuffle.set_state(state["rng"]["shuffle"])
    progress(f"resuming the fit in {path} after epoch {state['epoch']}")
    return state
