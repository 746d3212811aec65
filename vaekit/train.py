"""The training loop: one function, read top to bottom.

Data lives on the device as one uint8 tensor; each step slices a shuffled batch and converts it
there. After each epoch: evaluate, log a JSON line, write figures, checkpoint atomically.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from . import checkpoint, dist
from .config import TrainConfig
from .data import binarize, is_cached, load_split, modelled, to_float
from .evaluate import evaluate
from .generate import reconstruction_grid, sample_grid
from .losses import kl_normal
from .model import VAE, ModelConfig
from .plots import plot_curves, save_png

MAX_RESIDENT_BYTES = 4 << 30  # larger training sets are streamed from host memory or disk


def gather(x: torch.Tensor, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
    """x[idx] for host (maybe memory-mapped) x, read in ascending index order (sequential
    pages), put back in idx's order and sent to device (pinned first for CUDA)."""
    order = idx.argsort()
    xb = torch.empty((len(idx), *x.shape[1:]), dtype=x.dtype)
    xb[order] = x[idx[order]]
    if device.type == "cuda":
        return xb.pin_memory().to(device, non_blocking=True)
    return xb.to(device)


class TrainError(Exception):
    """Training cannot start as asked; the message says why and what to do."""


def resolve_device(name: str) -> torch.device:
    """auto -> cuda, else mps, else cpu; an explicit device that is not there is an error."""
    has_mps = getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda: no CUDA device is available here; use --device cpu")
    if name == "mps" and not has_mps:
        raise TrainError("--device mps: no Apple GPU is available here; use --device cpu")
    return torch.device(name)


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Learning rate for an optimizer step: constant, or cosine from lr to lr * lr_min_frac."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    floor = cfg.lr * cfg.lr_min_frac
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * min(step / total, 1.0)))


def kl_weight(step: int, beta: float, warmup: int) -> float:
    """Weight of the KL term at an optimizer step: rises linearly from 0 to beta over warmup."""
    return beta * min(1.0, step / warmup) if warmup else beta


def kl_objective(kl_dims: torch.Tensor, free_bits: float) -> torch.Tensor:
    """The KL term trained on, from per-image per-dim KLs (B, D): sum_d max(mean_b kl_bd, fb).

    Free bits (Kingma et al. 2016) on the batch-mean KL of each latent dim; fb = 0 gives the
    batch mean of the true KL. No host sync: the clamp stays on the device.
    """
    return kl_dims.mean(0).clamp(min=free_bits).sum()


def rng_state(shuffle: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, shuffle: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    shuffle.set_state(state["shuffle"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# What may change when a run is resumed; everything else is the run's own.
RESUMABLE = ("epochs", "device", "eval_every", "figures", "save_every", "keep")
RESUMABLE += ("compile", "channels_last")  # speed only: the same model up to rounding


class StopSignal:
    """While active, SIGTERM and SIGINT only set .signum: the loop then saves at the next step
    boundary and returns (pre-emption), instead of dying mid-step."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict = {}

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():  # signals need the main thread
            for s in self.SIGNALS:
                self.previous[s] = signal.signal(s, self.handle)
        return self

    def handle(self, signum: int, frame) -> None:
        self.signum = signum

    def flag(self, device: torch.device) -> torch.Tensor:
        """1.0 if this rank was signalled, as a tensor to all-reduce with the other ranks'."""
        return torch.tensor(float(bool(self.signum)), device=device)

    def join(self, signalled_ranks: float) -> None:
        """Under DDP: if any rank was signalled, all stop."""
        if signalled_ranks and not self.signum:
            self.signum = signal.SIGTERM

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def resume_configs(
    run_dir: str | Path, model_overrides: dict, train_overrides: dict
) -> tuple[ModelConfig, TrainConfig, dict]:
    """The configs and checkpoint to continue run_dir with; refuses changes that would not fit.

    Without an epochs override the run continues to its own epoch count (maybe already done).
    """
    ckpt = checkpoint.load(run_dir)
    fixed = sorted(set(model_overrides) | (set(train_overrides) - set(RESUMABLE)))
    if fixed:
        raise TrainError(
            f"a resumed run keeps its config: only {RESUMABLE} may change, not {fixed}"
        )
    mcfg = ModelConfig.from_dict(ckpt["model_config"])
    tcfg = TrainConfig.from_dict({**ckpt["train_config"], **train_overrides})
    if "epochs" in train_overrides and ckpt["epoch"] >= tcfg.epochs:
        raise TrainError(
            f"{run_dir} has trained {ckpt['epoch']} of {tcfg.epochs} epochs; pass --epochs N "
            f"with N > {ckpt['epoch']} to train further"
        )
    return mcfg, tcfg, ckpt


def check_room(out: Path, need: int) -> None:
    """Fail before training, not at the first checkpoint, if out is unwritable or too full."""
    probe = out / f".write_test{os.getpid()}"
    try:
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise TrainError(f"cannot write to run dir {out}: {e.strerror}") from None
    free = shutil.disk_usage(out).free
    if free < need:
        raise TrainError(
            f"{out}: {free / 2**20:.1f} MiB free but the checkpoints need about "
            f"{need / 2**20:.1f} MiB; free some space or choose another --out"
        )


def train(
    mcfg: ModelConfig,
    tcfg: TrainConfig,
    out: str | Path,
    data_dir: str | Path | None = None,
    ckpt: dict | None = None,
    log=print,
) -> dict:
    """Train a VAE into run directory `out`; returns the last epoch's metrics row.

    With ckpt (from resume_configs), continue that run: weights, optimizer, RNG, counters.
    Under torchrun, each of the world's processes takes its share of every global batch of
    tcfg.batch_size; rank 0 alone logs, evaluates and writes.
    """
    rank, world, local_rank = dist.setup()
    main = rank == 0
    if not main:
        log = lambda *a: None  # noqa: E731
    out = Path(out)
    if ckpt is None and (out / "last.pt").exists():
        raise TrainError(f"{out} already holds a run; pass --resume {out} or choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "figures").mkdir(exist_ok=True)
    except OSError as e:
        raise TrainError(f"cannot create run dir {out}: {e.strerror}") from None
    device = resolve_device(tcfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if tcfg.batch_size < world:
        raise TrainError(f"--batch-size {tcfg.batch_size} is the global batch: >= {world} ranks")
    torch.manual_seed(tcfg.seed)  # the same on every rank: same weights, order and noise

    # Data: uint8 (N, C, H, W) at the model's size and channels. Small splits live whole on
    # the device; a cached (memory-mapped) or large one stays on the host, and each batch is
    # gathered from it and sent over (stream).
    fmt = dict(size=mcfg.image_size, channels=mcfg.in_channels, crop=tcfg.crop)
    x_train, _ = load_split(tcfg.dataset, "train", data_dir, **fmt)
    x_test, _ = load_split(tcfg.dataset, "test", data_dir, **fmt)
    if tcfg.limit:
        x_train = x_train[: tcfg.limit]
    shape = (mcfg.in_channels, *mcfg.image_size)
    if tuple(x_train.shape[1:]) != shape:
        raise TrainError(
            f"{tcfg.dataset} images are {tuple(x_train.shape[1:])} (C, H, W) but the model "
            f"expects {shape}; set the model's in_channels/image_size to match"
        )
    stream = is_cached(tcfg.dataset) or x_train.nbytes > MAX_RESIDENT_BYTES
    x_test = modelled(x_test, mcfg.likelihood)
    if not stream:
        x_train, x_test = x_train.to(device), x_test.to(device)
    binary = mcfg.likelihood == "bernoulli"  # dynamic binarization: fresh bits every step
    N, B = len(x_train), tcfg.batch_size
    steps_per_epoch = math.ceil(N / B)
    total_steps = tcfg.epochs * steps_per_epoch

    layout = torch.channels_last if tcfg.channels_last else torch.contiguous_format
    model = VAE(mcfg).to(device, memory_format=layout)
    net = model  # what the loop calls: DDP averages the gradients across ranks
    if world > 1:
        ids = [local_rank] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if tcfg.compile:  # wraps the call only: checkpoints keep model's own names (no _orig_mod.)
        net = torch.compile(net)
    opt = torch.optim.AdamW(
        model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay, fused=device.type == "cuda"
    )
    # a checkpoint holds the weights and two AdamW moments: 3 x 4 bytes per parameter
    ckpt_bytes = 12 * model.num_params() + 2**20
    check_room(out, (3 + tcfg.keep) * ckpt_bytes)  # last, best, keep, and a temp file
    shuffle = torch.Generator().manual_seed(tcfg.seed)
    epoch, step, batch, loss_sum0 = 0, 0, 0, 0.0  # batch: steps already done in this epoch
    best = ckpt.get("best_test_loss", math.inf) if ckpt else math.inf
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        set_rng_state(ckpt["rng"], shuffle)
        epoch, step = ckpt["epoch"], ckpt["step"]
        batch, loss_sum0 = ckpt.get("batch", 0), ckpt.get("loss_sum", 0.0)
        log(f"resuming {out} at epoch {epoch} + {batch} steps (step {step})")
    if main:
        checkpoint.save_json(
            {"model": mcfg.to_dict(), "train": tcfg.to_dict(), "num_params": model.num_params()},
            out / "config.json",
        )
    log(
        f"{tcfg.dataset}: {N} train / {len(x_test)} test images {shape} on {device}; "
        f"{mcfg.arch} VAE, {model.num_params():,} params, latent {mcfg.latent_dim}"
        + (f"; {world} processes" if world > 1 else "")
        + ("; batches gathered from host memory" if stream else "")
    )
    autocast = torch.autocast(device.type, torch.bfloat16, enabled=tcfg.precision == "bf16")
    x_fig = x_test[:64]  # fixed images for the per-epoch reconstructions
    row: dict = {}

    def save(epoch_rng: torch.Tensor) -> dict:
        """Checkpoint everything needed to continue exactly here. epoch_rng is the shuffle
        state that draws the current epoch's order (mid-epoch) or the next one's (at its end)."""
        state = {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "model_config": mcfg.to_dict(),
            "train_config": tcfg.to_dict(),
            "epoch": epoch,  # completed epochs
            "step": step,
            "batch": batch,  # steps done in the epoch under way
            "loss_sum": float(loss_sum),  # its training loss so far
            "rng": {**rng_state(shuffle), "shuffle": epoch_rng},
            "metrics": row,
            "best_test_loss": best,
        }
        if main:
            checkpoint.save(state, out / "last.pt")
        return state

    bad_run = 0  # consecutive non-finite steps
    with StopSignal() as stop:
        while epoch < tcfg.epochs:
            model.train()
            t0 = time.perf_counter()
            epoch_rng, start = shuffle.get_state(), batch
            perm = torch.randperm(N, generator=shuffle)
            perm = perm if stream else perm.to(device)
            loss_sum = torch.tensor(loss_sum0, device=device)  # summed on the device
            skipped = 0  # non-finite steps skipped this epoch
            bar = tqdm(
                range(batch, steps_per_epoch), desc=f"epoch {epoch + 1}", leave=False, disable=None
            )
            for i in bar:
                idx = perm[i * B : (i + 1) * B]
                xb = gather(x_train, idx, device) if stream else x_train[idx]  # (Bg, C, H, W)
                xb = binarize(xb) if binary else xb
                eps = torch.randn(len(xb), mcfg.latent_dim, device=device)  # (Bg, D)
                n_global = len(xb)
                if world > 1:  # every rank drew the same; each takes its disjoint share
                    xb, eps = xb.tensor_split(world)[rank], eps.tensor_split(world)[rank]
                x = to_float(xb).contiguous(memory_format=layout)  # (b, C, H, W) in [0, 1]
                for group in opt.param_groups:
                    group["lr"] = lr_at(step, total_steps, tcfg)
                with autocast:
                    terms = net(x, eps)
                # per-image means, so lr does not depend on batch size; loss as reported when
                # neither KL warm-up nor free bits is on. The share factor (1 in one process)
                # makes DDP's average over ranks the mean over the global batch.
                kl = kl_objective(kl_normal(terms["mu"], terms["logvar"]), tcfg.free_bits)
                loss = terms["recon"].mean() + kl_weight(step, mcfg.beta, tcfg.kl_warmup) * kl
                loss = loss * (len(x) * world / n_global)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                gnorm = nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip or math.inf)
                ok = torch.isfinite(loss + gnorm)
                if world > 1:  # one collective: all ranks take the same skip and stop decisions
                    flags = dist.all_sum(torch.stack([(~ok).float(), stop.flag(device)]))
                    ok = flags[0] == 0
                    stop.join(flags[1].item())
                if ok:  # a host sync: skip non-finite updates
                    opt.step()
                    loss_sum += terms["loss"].detach().sum()
                    bad_run = 0
                else:
                    skipped, bad_run = skipped + 1, bad_run + 1
                    if bad_run >= tcfg.max_bad_steps:
                        raise TrainError(
                            f"{bad_run} consecutive steps with a non-finite loss or gradient "
                            f"(up to step {step + 1}); {out / 'last.pt'} holds the last good "
                            "checkpoint: lower --lr or set --grad-clip, then --resume"
                        )
                step, batch = step + 1, i + 1
                if i % 50 == 0 and not bar.disable:  # an occasional sync, only when shown
                    bar.set_postfix(loss=f"{loss.item():.2f}")
                if batch < steps_per_epoch and (
                    stop.signum or (tcfg.save_every and step % tcfg.save_every == 0)
                ):
                    save(epoch_rng)
                    if stop.signum:
                        name = signal.Signals(stop.signum).name
                        log(
                            f"{name}: saved step {step} to {out / 'last.pt'}; continue with "
                            f"vaekit train --resume {out}"
                        )
                        return row
            epoch, batch, loss_sum0 = epoch + 1, 0, 0.0
            dist.all_sum(loss_sum)
            seconds = time.perf_counter() - t0
            row = {
                "epoch": epoch,
                "step": step,
                "train_loss": loss_sum.item() / N,
                "lr": lr_at(step, total_steps, tcfg),
                "epoch_seconds": seconds,
                "images_per_second": (N - min(N, start * B)) / seconds,  # this session's
                "skipped_steps": skipped,
            }
            if main:  # rank 0 evaluates, logs and writes; the others wait for it
                if tcfg.eval_every and (epoch % tcfg.eval_every == 0 or epoch == tcfg.epochs):
                    ev = evaluate(model, x_test)
                    row.update(test_loss=ev["test_loss"], test_recon=ev["recon"], test_kl=ev["kl"])
                msg = f"epoch {epoch}/{tcfg.epochs}  train {row['train_loss']:.2f}"
                if "test_loss" in row:
                    msg += f"  test {row['test_loss']:.2f} (recon {row['test_recon']:.2f}"
                    msg += f", kl {row['test_kl']:.2f})"
                if skipped:
                    msg += f"  [{skipped} non-finite steps skipped]"
                log(msg + f"  {seconds:.1f} s ({row['images_per_second']:.0f} img/s)")
                with open(out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(row) + "\n")
                if tcfg.figures:
                    figs = out / "figures"
                    save_png(reconstruction_grid(model, x_fig), figs / f"recon_{epoch:03d}.png")
                    samples = sample_grid(model, 64, seed=tcfg.seed)  # same z every epoch
                    save_png(samples, figs / f"samples_{epoch:03d}.png")
                is_best = row.get("test_loss", math.inf) < best
                best = min(best, row.get("test_loss", math.inf))
                state = save(shuffle.get_state())
                if is_best:
                    checkpoint.save(state, out / "best.pt")
                if tcfg.keep:
                    (out / "checkpoints").mkdir(exist_ok=True)
                    checkpoint.save(state, out / "checkpoints" / f"epoch_{epoch:03d}.pt")
                    for old in sorted((out / "checkpoints").glob("epoch_*.pt"))[: -tcfg.keep]:
                        old.unlink()
            dist.barrier()
            if world > 1:  # a signal during evaluation or figures stops every rank
                stop.join(dist.all_sum(stop.flag(device)).item())
            if stop.signum:  # arrived during evaluation or figures: the epoch is saved
                log(
                    f"{signal.Signals(stop.signum).name}: stopped after epoch {epoch}; "
                    f"continue with vaekit train --resume {out}"
                )
                return row
    if main:
        plot_curves(out / "metrics.jsonl", out / "curves.png")
    return row
