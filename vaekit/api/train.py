"""vaekit train: a new run from a preset, a config file and field values, or a run continued."""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..models import LatentModel


@dataclass
class TrainRecord:
    """What a training call did: run_dir, the run's epochs (its config's), whether it trained
    (False: the run had trained all its epochs already), and the last epoch's metrics row
    (None when it trained none: done already, or stopped within its first epoch)."""

    run_dir: Path
    epochs: int
    trained: bool
    metrics: dict | None


def train(
    out: str | Path | None = None,
    preset: str | None = None,
    *,
    config: str | Path | None = None,
    resume: str | Path | None = None,
    data_dir: str | Path | None = None,
    allow_nonfinite: bool = False,
    **fields,
) -> LatentModel:
    """Train a new run into directory out, as `vaekit train --out OUT` does (or continue the
    run in resume, as --resume does), and return the trained model in eval mode. preset: a name
    of vaekit.PRESETS (default: the config file's, else mnist); config: a YAML or JSON config
    file (a run's config.json); fields: config field values by name, e.g. limit=2000,
    epochs=2, latent_dim=16, precision="fp32". The preset, then the file, then the fields.
    Progress bars render in Jupyter (tqdm.auto). See train_into for the record instead.

    >>> model = vaekit.train("runs/small", "mnist", limit=2000, epochs=1)
    """
    from ..checkpoint import load_model

    record = train_into(out, preset, config=config, resume=resume, data_dir=data_dir,
                        allow_nonfinite=allow_nonfinite, **fields)  # fmt: skip
    return load_model(record.run_dir)


def train_into(
    out: str | Path | None = None,
    preset: str | None = None,
    *,
    config: str | Path | None = None,
    resume: str | Path | None = None,
    data_dir: str | Path | None = None,
    allow_nonfinite: bool = False,
    **fields,
) -> TrainRecord:
    """train's work, without loading the model after: a new run into out (default
    runs/DATASET-PRESET), or the run in resume continued (fields: what may change, e.g.
    epochs); its record. A resumed run's directory is held before its checkpoint is read: no
    other writer can replace it in between (a new run's is held by train_run)."""
    from .. import checkpoint
    from ..training.lock import run_lock

    if resume is not None:
        if out is not None and Path(out) != Path(resume):
            raise ValueError("--resume RUN_DIR continues in RUN_DIR; drop --out")
        if config or preset:
            raise ValueError("--resume continues a run with its own config; drop --config/--preset")
        checkpoint.resolve(resume)  # a run dir that is there, before the lock is taken
    elif allow_nonfinite:
        raise ValueError("--allow-nonfinite goes with --resume: a new run has no weights yet")
    with run_lock(resume) if resume is not None else nullcontext():
        if resume is not None:
            return resume_run(Path(resume), fields, data_dir, allow_nonfinite)
        return new_run(out, preset, config, fields, data_dir)


def resume_run(
    run_dir: Path, fields: dict, data_dir: str | Path | None, allow_nonfinite: bool
) -> TrainRecord:
    """The run in run_dir trained on to its (maybe new) epochs; its data from data_dir, else
    $VAEKIT_DATA, else where it was trained from."""
    from ..training import resume_configs

    mcfg, ocfg, tcfg, ckpt = resume_configs(run_dir, fields, allow_nonfinite)
    if ckpt["epoch"] >= tcfg.epochs:
        return TrainRecord(run_dir, tcfg.epochs, False, None)
    data_dir = data_dir or (None if os.environ.get("VAEKIT_DATA") else ckpt.get("data_dir"))
    return fit_run(mcfg, ocfg, tcfg, run_dir, ckpt, data_dir)


def new_run(
    out: str | Path | None, preset: str | None, config, fields: dict, data_dir
) -> TrainRecord:
    """A new run of the preset, then the config file, then fields, into out."""
    from ..training.run import new_run_configs

    preset, mcfg, ocfg, tcfg = new_run_configs(preset, config, fields, data_dir)
    name = tcfg.dataset.replace("folder:", "folder-").replace("/", "_").strip("_")
    out = Path(out) if out is not None else Path("runs") / f"{name}-{preset}"
    return fit_run(mcfg, ocfg, tcfg, out, None, data_dir)


def fit_run(mcfg, ocfg, tcfg, out: Path, ckpt: dict | None, data_dir) -> TrainRecord:
    """Train (vaekit.training.run.train_run), then leave together with the other ranks."""
    from ..runtime import dist
    from ..training.run import train_run

    try:
        row = train_run(mcfg, ocfg, tcfg, out, ckpt=ckpt, data_dir=data_dir)
        dist.barrier()  # leave together: rank 0 may still be writing figures
    finally:
        dist.cleanup()
    return TrainRecord(out, tcfg.epochs, True, row)
