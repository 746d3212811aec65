"""Fitting a learned prior (a vaekit.priors.Prior trained by gradient, e.g. the PixelCNN) over a
model's training codes: its own short loop with a progress bar, a line per epoch, and a
checkpoint in its folder after every epoch, from which a stopped fit resumes.

The folder (RUN/priors/NAME/) holds prior.pt: plain data that loads with weights_only=True:
{"kind", "options" (the prior's constructor kwargs), "state_dict", "optimizer", "epoch",
"epochs", "rng", "history": one row per epoch (train and test nats per grid, bits per grid)}.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import checkpoint
from ..config import resolve
from ..priors.base import Prior
from .checkpoints import rng_state, set_rng_state

PRIOR_FILE = "prior.pt"
LEARNED = {"pixelcnn": "vaekit.priors.pixelcnn:PixelCNN"}  # kind -> its Prior class


def fit_prior(
    prior: Prior,
    kind: str,
    codes: torch.Tensor,
    test_codes: torch.Tensor,
    folder: Path,
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    autocast: bool = False,
    log: Callable[[str], None] = print,
) -> dict:
    """Maximise the mean log_prob of codes (N, *shape) with Adam and a cosine-decayed lr,
    evaluating on test_codes after every epoch and saving folder/prior.pt; a prior.pt of the
    same kind and options picks up after its last epoch. autocast: bf16 autocast.
    Returns the last saved state."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(prior.parameters(), lr=lr)
    shuffle = torch.Generator().manual_seed(seed)
    state = resume(prior, kind, opt, shuffle, folder / PRIOR_FILE, log)
    for epoch in range(state["epoch"], epochs):
        t0 = time.perf_counter()
        train_nats = train_epoch(prior, opt, codes, batch_size, shuffle, (epoch, epochs, lr),
                                 autocast)  # fmt: skip
        row = {"epoch": epoch + 1, "train_nats": train_nats,
               "test_nats": test_nll(prior, test_codes, batch_size),
               "seconds": time.perf_counter() - t0}  # fmt: skip
        row["test_bits"] = row["test_nats"] / math.log(2)
        state = {"kind": kind, "options": prior.options(), "state_dict": prior.state_dict(),
                 "optimizer": opt.state_dict(), "epoch": epoch + 1, "epochs": epochs,
                 "rng": rng_state(shuffle), "history": [*state["history"], row]}  # fmt: skip
        checkpoint.save(state, folder / PRIOR_FILE)
        log(
            f"prior epoch {epoch + 1}/{epochs}  train {row['train_nats']:.2f} nats/grid  test "
            f"{row['test_nats']:.2f} ({row['test_bits']:.1f} bits)  {row['seconds']:.0f} s"
        )
    prior.eval()
    return state


def train_epoch(
    prior: Prior,
    opt: torch.optim.Optimizer,
    codes: torch.Tensor,
    batch_size: int,
    shuffle: torch.Generator,
    schedule: tuple[int, int, float],
    autocast: bool,
) -> float:
    """One pass over codes (N, *shape) in an order drawn from shuffle; schedule (epoch, epochs,
    lr): the lr decays by a cosine over all the epochs' steps. Returns the mean -log p (nats)."""
    epoch, epochs, lr = schedule
    steps, device = math.ceil(len(codes) / batch_size), next(prior.parameters()).device
    perm = torch.randperm(len(codes), generator=shuffle)
    prior.train()
    total = torch.zeros((), dtype=torch.float64)
    for i in tqdm(range(steps), desc=f"prior epoch {epoch + 1}", leave=False, disable=None):
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * (epoch * steps + i) / (epochs * steps)))
        k = codes[perm[i * batch_size : (i + 1) * batch_size]].to(device)
        with torch.autocast(device.type, torch.bfloat16, enabled=autocast):
            nll = -prior.log_prob(k)  # (b,) nats
        opt.zero_grad(set_to_none=True)
        nll.mean().backward()
        opt.step()
        total += nll.detach().double().sum().cpu()
    return total.item() / len(codes)


@torch.inference_mode()
def test_nll(prior: Prior, codes: torch.Tensor, batch_size: int = 500) -> float:
    """Mean -log p(k) in nats per grid of codes (N, *shape)."""
    was_training = prior.training
    prior.eval()
    device = next(prior.parameters()).device
    total = sum(-prior.log_prob(codes[i : i + batch_size].to(device)).double().sum().item()
                for i in range(0, len(codes), batch_size))  # fmt: skip
    prior.train(was_training)
    return total / max(len(codes), 1)


def resume(
    prior: Prior, kind: str, opt, shuffle: torch.Generator, path: Path, log: Callable[[str], None]
) -> dict:
    """The state to continue from: path's when it holds a prior of this kind and options
    (weights, optimizer and shuffle restored), else a fresh one (epoch 0)."""
    fresh = {"epoch": 0, "history": []}
    if not path.is_file():
        return fresh
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("kind") != kind or state.get("options") != prior.options():
        log(f"{path} holds another prior ({state.get('kind')}, {state.get('options')}): refit")
        return fresh
    prior.load_state_dict(state["state_dict"])
    opt.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"], shuffle)
    log(f"resuming the prior in {path} after epoch {state['epoch']}")
    return state


def load_fitted(path: Path) -> Prior:
    """The prior a fit saved at path (prior.pt), rebuilt from its kind and options, in eval
    mode on the CPU."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    fitted = resolve(LEARNED[state["kind"]])(**state["options"])
    fitted.load_state_dict(state["state_dict"])
    return fitted.eval()
