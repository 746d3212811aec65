"""Experiment trackers: the loop's numbers and figures sent to TensorBoard, Weights & Biases or
MLflow, beside metrics.jsonl and figures/ (which stay the run's own record).

One Tracker protocol, one class per backend, registered by name in vaekit.config.TRACKERS; each
imports its library only when opened, and a missing one is a one-line error naming the extra
that installs it. Trackers (the group the loop holds) fans each call out to them; a backend
that fails mid-run is dropped with one line and training goes on. The ids that continue a
tracker run (W&B's run id, MLflow's run id and store) are kept in RUN/trackers.json, so
`vaekit train --resume RUN` logs into the same tracker runs.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from .. import checkpoint
from ..config import TRACKERS, flatten, resolve
from ..errors import TrainError

STATE_FILE = "trackers.json"  # in the run dir: {tracker name: what continues its run}
PROJECT = "vaekit"  # W&B project, MLflow experiment (unless WANDB_PROJECT, MLFLOW_EXPERIMENT_NAME)


class Tracker(Protocol):
    """A backend. Constructed as cls(out, hparams, state, step): the run dir, the flat config
    (field name -> JSON value), what state() returned when the run was last open (None: a new
    tracker run) and the optimizer step training starts from (0 for a new run)."""

    name: str
    hint: str  # what to do when it cannot start

    def log_scalars(self, values: dict[str, float], step: int) -> None: ...

    def log_images(self, images: dict[str, np.ndarray], step: int) -> None:
        """uint8 arrays (H, W) grey or (H, W, 3) RGB, keyed by name."""

    def state(self) -> dict:
        """JSON data that continues this tracker run after a resume."""

    def close(self, ok: bool) -> None: ...


def missing(name: str, package: str) -> ImportError:
    return ImportError(f"--log {name} needs {package}: pip install 'vaekit[{name}]'")


def scalar_or_text(v) -> int | float | str | bool:
    """A hyperparameter as TensorBoard and MLflow take it: numbers and flags as they are,
    anything else (lists, None) as its JSON text."""
    return v if isinstance(v, (bool, int, float, str)) else json.dumps(v)


class TensorBoard:
    """Event files in RUN/tensorboard (`tensorboard --logdir runs` shows every run). A resumed
    run appends to the same directory; events past the checkpoint's step, logged after it by
    the interrupted session (or by a run that never saved one), are hidden (purge_step)."""

    name = "tensorboard"
    hint = "is RUN/tensorboard writable?"

    def __init__(self, out: Path, hparams: dict, state: dict | None, step: int):
        try:
            from torch.utils.tensorboard import SummaryWriter
            from torch.utils.tensorboard.summary import hparams as hparams_summary
        except ImportError:
            raise missing(self.name, "the tensorboard package") from None
        self.dir = Path(out) / "tensorboard"
        self.writer = SummaryWriter(self.dir, purge_step=step + 1)  # keeps the step's own
        if state is None:  # the HParams tab, and the whole config as text
            plain = {k: scalar_or_text(v) for k, v in hparams.items()}
            for summary in hparams_summary(plain, {}):
                self.writer.file_writer.add_summary(summary)
            self.writer.add_text("config", "```\n" + json.dumps(hparams, indent=2) + "\n```")

    def log_scalars(self, values: dict[str, float], step: int) -> None:
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)

    def log_images(self, images: dict[str, np.ndarray], step: int) -> None:
        for k, arr in images.items():
            self.writer.add_image(k, arr, step, dataformats="HW" if arr.ndim == 2 else "HWC")
        self.writer.flush()  # once an epoch: the dashboard sees the epoch as it ends

    def state(self) -> dict:
        return {"logdir": str(self.dir)}

    def close(self, ok: bool) -> None:
        self.writer.close()


class WandB:
    """A W&B run (project $WANDB_PROJECT, else vaekit), its files under RUN/wandb. WANDB_MODE=
    offline writes it locally for `wandb sync`. A resumed run continues the same W&B run id."""

    name = "wandb"
    hint = "run `wandb login`, or set WANDB_MODE=offline to log locally for `wandb sync`"

    def __init__(self, out: Path, hparams: dict, state: dict | None, step: int):
        try:
            import wandb
        except ImportError:
            raise missing(self.name, "the wandb package") from None
        self.wandb = wandb
        run_id = (state or {}).get("id")
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", PROJECT),
            name=Path(out).name,
            dir=str(out),
            id=run_id,
            resume="allow" if run_id else None,
            config=hparams,
        )

    def log_scalars(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def log_images(self, images: dict[str, np.ndarray], step: int) -> None:
        self.run.log({k: self.wandb.Image(arr) for k, arr in images.items()}, step=step)

    def state(self) -> dict:
        return {"id": self.run.id, "project": self.run.project}

    def close(self, ok: bool) -> None:
        self.run.finish(exit_code=0 if ok else 1)


class MLflow:
    """An MLflow run in experiment $MLFLOW_EXPERIMENT_NAME (else vaekit) of the tracking store
    $MLFLOW_TRACKING_URI (else MLflow's default); the config as params. A resumed run continues
    the same run id in the store it was created in."""

    name = "mlflow"
    hint = "set MLFLOW_TRACKING_URI: a server (http://HOST:5000) or sqlite:///mlflow.db (mlflow)"
    BATCH = 100  # params per log_batch call (MLflow's limit)

    def __init__(self, out: Path, hparams: dict, state: dict | None, step: int):
        try:
            import mlflow
            from mlflow.entities import Param
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise missing(self.name, "mlflow") from None
        from mlflow.entities import Metric

        self.Metric = Metric
        self.uri = (state or {}).get("tracking_uri") or mlflow.get_tracking_uri()
        self.client = MlflowClient(self.uri)
        if state:
            self.run_id = state["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            have = self.client.get_run(self.run_id).data.params
        else:
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME", PROJECT)
            exp = self.client.get_experiment_by_name(name)
            exp_id = exp.experiment_id if exp else self.client.create_experiment(name)
            tags = {"vaekit.run_dir": str(Path(out).resolve())}
            run = self.client.create_run(exp_id, run_name=Path(out).name, tags=tags)
            self.run_id, have = run.info.run_id, {}
        # params are immutable in MLflow: a resumed run adds the new ones, keeps the rest
        params = [Param(k, str(scalar_or_text(v))) for k, v in hparams.items() if k not in have]
        for i in range(0, len(params), self.BATCH):
            self.client.log_batch(self.run_id, params=params[i : i + self.BATCH])

    def log_scalars(self, values: dict[str, float], step: int) -> None:
        ms = int(time.time() * 1000)
        metrics = [self.Metric(k, float(v), ms, step) for k, v in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def log_images(self, images: dict[str, np.ndarray], step: int) -> None:
        for k, arr in images.items():
            self.client.log_image(self.run_id, arr, key=k, step=step)

    def state(self) -> dict:
        return {"run_id": self.run_id, "tracking_uri": self.uri}

    def close(self, ok: bool) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")


def step_scalars(res: dict) -> dict[str, float]:
    """A train_step result as tracker scalars: the per-image terms averaged over the batch
    (train/loss is the training loss metrics.jsonl reports, recon + beta * KL; train/objective
    the loss backpropagated, with KL warm-up and free bits), the gradient norm before
    clipping, and a model's auxiliary loss terms by name. One host sync for all of them."""
    named = {"loss": res["per_image"], "objective": res["loss"], "grad_norm": res["gnorm"]}
    skip = {"loss", "per_image", "gnorm", "ok"}
    named.update((k, v) for k, v in res.items() if k not in skip and torch.is_tensor(v))
    named.update(res.get("aux", {}))  # a model's auxiliary loss terms, by name
    values = torch.stack([v.detach().float().mean() for v in named.values()]).tolist()
    return {f"train/{k}": v for k, v in zip(named, values, strict=True)}


def epoch_scalars(row: dict) -> dict[str, float]:
    """A metrics.jsonl row as tracker scalars: test_* as test/*, the rest as epoch/*."""
    out = {}
    for k, v in row.items():
        if k == "step" or not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        out[f"test/{k[5:]}" if k.startswith("test_") else f"epoch/{k}"] = v
    return out


class Trackers:
    """The run's trackers as one (none: every call does nothing; falsy). Also keeps the
    clock for images/s between step logs (evaluation and figures are not counted)."""

    def __init__(self, backends: list, batch_size: int = 1, step: int = 0, log=print):
        self.backends, self.batch_size, self.log = list(backends), batch_size, log
        self.mark = (time.perf_counter(), step)  # (time, step) of the last step log

    def __bool__(self) -> bool:
        return bool(self.backends)

    def __enter__(self) -> Trackers:
        return self

    def __exit__(self, kind, e, tb) -> None:
        self._each("close", lambda t: t.close(ok=kind is None))

    def _each(self, what: str, call) -> None:
        for t in list(self.backends):
            try:
                call(t)
            except Exception as e:  # a tracker's failure must not lose the training run
                self.backends.remove(t)
                self.log(f"{t.name}: {what} failed ({first_line(e)}); going on without it")

    def log_step(self, step: int, res: dict, lr: float, skipped: int, spikes: int) -> None:
        """Every log_every steps: the step's terms, lr, gradient norm, the epoch's skipped steps
        so far (non-finite, spikes), and images/s since the last log."""
        t0, s0 = self.mark
        values = step_scalars(res)  # syncs: the clock below sees the device's work done
        now = time.perf_counter()
        values.update({"train/lr": lr, "train/skipped_steps": skipped, "train/skipped_spikes":
                       spikes, "train/images_per_second": (step - s0) * self.batch_size /
                       max(now - t0, 1e-9)})  # fmt: skip
        self.mark = (now, step)
        self._each("logging", lambda t: t.log_scalars(values, step))

    def log_epoch(self, row: dict, figures: Path) -> None:
        """The epoch's metrics.jsonl row, and the epoch's figures (figures/*_NNN.png) as images,
        at the epoch's last step."""
        if not self.backends:
            return
        step, epoch = row["step"], row["epoch"]
        images = {p.name.rsplit("_", 1)[0]: read_png(p)
                  for p in sorted(Path(figures).glob(f"*_{epoch:03d}.png"))}  # fmt: skip
        self._each("logging", lambda t: t.log_scalars(epoch_scalars(row), step))
        if images:
            self._each("logging images", lambda t: t.log_images(images, step))
        self.mark = (time.perf_counter(), step)


def read_png(path: Path) -> np.ndarray:
    """A figure the loop wrote -> uint8 (H, W) grey or (H, W, 3) RGB."""
    with Image.open(path) as im:
        return np.asarray(im)


def open_trackers(
    names: tuple[str, ...],
    out: Path,
    run_info: dict,
    step: int = 0,
    resumed: bool = False,
    batch_size: int = 1,
    log=print,
) -> Trackers:
    """Open the named trackers for run dir `out` (rank 0 only; others pass no names).
    run_info: config.json's content, sent as the hyperparameters. resumed: continue the
    tracker runs recorded in RUN/trackers.json. A tracker that cannot start (not installed,
    not logged in, no store) is a one-line error before training."""
    if not names:
        return Trackers([])
    out = Path(out)
    path = out / STATE_FILE
    states = json.loads(path.read_text()) if resumed and path.is_file() else {}
    hparams = {**flatten(run_info), "num_params": run_info.get("num_params")}
    group = Trackers([], batch_size, step, log)
    for name in names:
        try:
            group.backends.append(resolve(TRACKERS[name])(out, hparams, states.get(name), step))
        except Exception as e:
            group.__exit__(type(e), e, None)  # close the ones already open, as failed
            if isinstance(e, ImportError):
                raise
            hint = getattr(resolve(TRACKERS[name]), "hint", "")
            raise TrainError(f"--log {name}: cannot start ({first_line(e)}); {hint}") from None
    group.mark = (time.perf_counter(), step)  # images/s from here, not from the imports
    where = ", ".join(f"{n} ({'continued' if n in states else 'new'})" for n in names)
    states.update({t.name: t.state() for t in group.backends})
    try:
        checkpoint.save_json(states, path)
    except OSError as e:
        group.__exit__(type(e), e, None)
        raise TrainError(f"cannot write {path} ({e.strerror or e})") from None
    log(f"logging to {where}; tracker run ids in {path}")
    return group


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__
