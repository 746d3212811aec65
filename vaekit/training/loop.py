"""Training runs: fit() trains a model on uint8 image tensors into a run directory (the loop
itself: trainer.py); resume_configs() says how a run continues."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from .. import checkpoint
from ..config import ModelConfig, ObjectiveConfig, TrainConfig
from .callbacks import Callback
from .checkpoints import TrainError
from .lock import holding_run_dir
from .trainer import Trainer


def say(*args) -> None:
    print(*args, flush=True)  # flushed: a log file or a pipe sees each line as it happens


# What may change when a run is resumed; everything else is the run's own.
RESUMABLE = ("epochs", "device", "eval_every", "fid_every", "figures", "save_every", "keep")
RESUMABLE += ("compile", "channels_last")  # speed only: the same model up to rounding
RESUMABLE += ("log", "log_every")  # where the numbers are sent, not what they are


def resume_configs(
    run_dir: str | Path, overrides: dict, allow_nonfinite: bool = False
) -> tuple[ModelConfig, ObjectiveConfig, TrainConfig, dict]:
    """The configs and checkpoint to continue run_dir with. overrides: flat field values given
    again; values equal to the run's own are accepted, real changes only to RESUMABLE fields.
    Without an epochs override the run continues to its own epoch count (maybe already done).
    Weights holding NaN or Inf are refused unless allow_nonfinite."""
    ckpt = checkpoint.load(run_dir, allow_nonfinite=allow_nonfinite)
    try:
        mcfg = ModelConfig.from_dict(ckpt["model_config"])
        ocfg = ObjectiveConfig.from_dict(ckpt["objective_config"])
        tcfg = TrainConfig.from_dict(ckpt["train_config"])
    except (ValueError, TypeError) as e:
        raise TrainError(f"{run_dir}: its checkpoint's config is not valid ({e})") from None
    own = {**vars(mcfg), **vars(mcfg.net), **vars(ocfg), **vars(tcfg)}
    changed = {k: v for k, v in overrides.items() if k not in own or own[k] != v}
    fixed = sorted(set(changed) - set(RESUMABLE))
    if fixed:
        diffs = ", ".join(f"{k}: {own.get(k)!r} -> {changed[k]!r}" for k in fixed)
        raise TrainError(
            f"a resumed run keeps its config: only {RESUMABLE} may change, not {fixed} ({diffs})"
        )
    tcfg = replace(tcfg, **changed)
    if "epochs" in changed and ckpt["epoch"] >= tcfg.epochs:
        raise TrainError(
            f"{run_dir} has trained {ckpt['epoch']} of {tcfg.epochs} epochs; pass --epochs N "
            f"with N > {ckpt['epoch']} to train further"
        )
    return mcfg, ocfg, tcfg, ckpt


@holding_run_dir  # one writer per run directory
def fit(
    mcfg: ModelConfig,
    ocfg: ObjectiveConfig,
    tcfg: TrainConfig,
    out: str | Path,
    x_train: torch.Tensor,
    x_test: torch.Tensor,
    *,
    stream: bool = False,
    ckpt: dict | None = None,
    data_dir: str | None = None,
    log=say,
    callbacks: tuple[Callback, ...] = (),
    y_train: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
) -> dict:
    """Train the model mcfg describes on uint8 images x_train (N, C, H, W) into run directory
    `out`, evaluating on x_test; returns the last epoch's metrics row (vaekit.training.Trainer).

    With ckpt (from resume_configs), continue that run: weights, optimizer, RNG, counters.
    stream: keep x_train on the host (memory-mapped) and send each batch over. Under torchrun,
    each process takes its share of every global batch; rank 0 alone logs, evaluates, writes.
    callbacks: the caller's (vaekit.training.Callback), run after the trainer's own.
    y_train, y_test: int64 class labels (N,) of the images, which a conditional model needs
    (None: the data have none).
    """
    out = Path(out)
    if ckpt is None and (out / "last.pt").exists():
        raise TrainError(f"{out} already holds a run; pass --resume {out} or choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "figures").mkdir(exist_ok=True)
    except OSError as e:
        raise TrainError(f"cannot create run dir {out}: {e.strerror}") from None
    args = (mcfg, ocfg, tcfg, out, x_train, x_test, stream, ckpt, data_dir, log, callbacks)
    return Trainer(*args, labels=(y_train, y_test)).fit()
