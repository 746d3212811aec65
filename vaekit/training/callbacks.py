"""The training loop's concerns, one small object each: the loop (trainer.py) calls their hooks
at fixed points, in the order they are attached. Only the guard and the EMA change what is
trained (and ModelState, which lets a model update its state outside the gradient); the
others watch, log and write (rank 0 only)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from .. import checkpoint, outputs
from ..errors import TrainError
from ..evaluation.bound import evaluate
from ..figures.grids import reconstruction_grid, sample_grid
from ..figures.png import plot_curves, save_png
from .trackers import Trackers

if TYPE_CHECKING:
    from .trainer import Trainer

PROGRESS_SECONDS = 300.0  # without a terminal, a progress line this often inside an epoch
SPIKE_WARMUP, SPIKE_EMA = 100, 0.99  # skip_spikes: steps before it acts; the level's smoothing


class Callback:
    """A concern of the loop. Hooks do nothing unless overridden; state() adds entries to each
    checkpoint, load(ckpt) restores them when a run is resumed."""

    def on_train_start(self, t: Trainer) -> None: ...

    def on_epoch_start(self, t: Trainer) -> None: ...

    def on_step_end(self, t: Trainer, res: dict) -> None: ...

    def on_epoch_end(self, t: Trainer, row: dict) -> None: ...

    def on_train_end(self, t: Trainer) -> None: ...

    def state(self) -> dict:
        return {}

    def load(self, ckpt: dict) -> None: ...


class Guard(Callback):
    """Skips bad updates and stops a run that cannot go on. A step is skipped when its loss or
    gradient norm is non-finite, or (skip_spikes) when its norm is a spike: over factor x the
    running level of accepted norms (VDVAE skips such updates). max_bad consecutive skipped
    steps, an epoch with every step skipped, or non-finite weights stop the run with a
    TrainError, leaving last.pt as the last good checkpoint."""

    def __init__(self, factor: float, max_bad: int, out: Path):
        self.factor, self.max_bad, self.out = factor, max_bad, out
        self.level: float | None = None  # running level of accepted gradient norms
        self.bad_run = 0  # skipped steps in a row
        self.steps = self.skipped = self.spikes = 0  # this epoch's steps, and those skipped

    def limit(self, step: int) -> float | None:
        """The gradient norm above which step's update is skipped as a spike (None: no limit)."""
        if not self.factor or self.level is None or step < SPIKE_WARMUP:
            return None
        return self.factor * self.level

    def accepted(self, res: dict, step: int) -> bool:
        """Count train_step's result res; True if its update was taken."""
        self.steps += 1
        if res["ok"]:
            self.bad_run = 0
            if self.factor:  # a host sync, only when spikes are watched
                g = res["gnorm"].item()
                self.level = (
                    g if self.level is None else SPIKE_EMA * self.level + (1 - SPIKE_EMA) * g
                )
            return True
        if torch.isfinite(res["loss"] + res["gnorm"]):
            self.spikes += 1  # a finite spike
        else:
            self.skipped += 1
        self.bad_run += 1
        if self.bad_run >= self.max_bad:
            raise TrainError(
                f"{self.bad_run} consecutive steps with a non-finite loss or gradient, or a "
                f"gradient spike (up to step {step + 1}); {self.stop_hint()}"
            )
        return False

    def stop_hint(self) -> str:
        """What is intact and what to do."""
        last, fix = self.out / "last.pt", "lower --lr or set --grad-clip"
        if last.exists():
            return f"{last} holds the last good checkpoint: {fix}, then --resume"
        return f"no checkpoint was written: {fix} and train again"

    def on_epoch_start(self, t: Trainer) -> None:
        self.steps = self.skipped = self.spikes = 0

    def check_weights(self, model: torch.nn.Module, when: str) -> None:
        """Before a checkpoint: finite updates can still overflow the weights (--lr 1e300)."""
        if found := checkpoint.nonfinite(model.state_dict()):
            raise TrainError(f"weights became non-finite {when} ({found}); {self.stop_hint()}")

    def on_epoch_end(self, t: Trainer, row: dict) -> None:
        self.check_weights(t.model, f"in epoch {row['epoch']}")
        if self.steps and self.skipped + self.spikes == self.steps:
            raise TrainError(
                f"epoch {row['epoch']}: all {self.steps} steps were skipped ({self.skipped} "
                f"non-finite, {self.spikes} spikes); {self.stop_hint()}"
            )

    def state(self) -> dict:
        return {"gnorm_level": self.level}

    def load(self, ckpt: dict) -> None:
        self.level = ckpt.get("gnorm_level")


class ModelState(Callback):
    """After each step, the model's after_step(accepted): state a family updates outside the
    gradient from what its last forward saw (a VQ-VAE's EMA codebook), applied only when the
    step's update was taken. A family without such state does nothing."""

    def on_step_end(self, t: Trainer, res: dict) -> None:
        t.model.after_step(t.accepted)


class EMA(Callback):
    """An exponential moving average of the weights, w_ema <- d w_ema + (1 - d) w, after each
    update taken (buffers copied); evaluation, figures and the run commands use it. The decay
    warms up, d = min(decay, (1 + n) / (10 + n)) after n updates (TensorFlow's
    ExponentialMovingAverage with num_updates), so that early in a run the average is not
    still the first steps' weights; after 10 / (1 - decay) updates it is decay itself."""

    def __init__(self, model: torch.nn.Module, decay: float):
        from torch.optim.swa_utils import AveragedModel

        self.decay, self.n = decay, 0  # n: updates averaged so far (kept on the host)
        self.avg = AveragedModel(model, multi_avg_fn=self.lerp)
        self.model = model

    def warmed_decay(self) -> float:
        return min(self.decay, (1 + self.n) / (10 + self.n))

    @torch.no_grad()
    def lerp(self, ema: list[torch.Tensor], current: list[torch.Tensor], _) -> None:
        """AveragedModel's update of the parameters (buffers are copied, not averaged)."""
        torch._foreach_lerp_(ema, current, 1 - self.warmed_decay())

    def on_step_end(self, t: Trainer, res: dict) -> None:
        if t.accepted:
            self.avg.update_parameters(self.model)
            self.n += 1

    def state(self) -> dict:
        return {"ema": self.avg.module.state_dict(), "ema_updates": self.n}

    def load(self, ckpt: dict) -> None:
        if "ema" in ckpt:
            self.avg.module.load_state_dict(ckpt["ema"])
            self.n = int(ckpt.get("ema_updates", 1))
            self.avg.n_averaged.fill_(self.n)


class Progress(Callback):
    """A progress bar on a terminal (the loss every 50 steps); else a line every 5 minutes."""

    def on_epoch_start(self, t: Trainer) -> None:
        n, desc = t.steps_per_epoch, f"epoch {t.epoch + 1}"
        self.bar = tqdm(total=n, initial=t.batch, desc=desc, leave=False, disable=None)
        self.last_note = time.perf_counter()

    def on_step_end(self, t: Trainer, res: dict) -> None:
        self.bar.update(1)
        if (t.batch - 1) % 50 == 0 and not self.bar.disable:  # an occasional sync, when shown
            self.bar.set_postfix(loss=f"{res['loss'].item():.2f}")
        if self.bar.disable and time.perf_counter() - self.last_note > PROGRESS_SECONDS:
            self.last_note = time.perf_counter()
            t.log(f"epoch {t.epoch + 1}: step {t.batch}/{t.steps_per_epoch}")

    def on_epoch_end(self, t: Trainer, row: dict) -> None:
        self.bar.close()


class Evaluation(Callback):
    """Test loss, recon, KL and a model's auxiliary terms (test_NAME) every `every` epochs and
    after the last."""

    def __init__(self, x_test: torch.Tensor, every: int, y_test: torch.Tensor | None = None):
        self.x_test, self.every, self.y_test = x_test, every, y_test

    def on_epoch_end(self, t: Trainer, row: dict) -> None:
        if row["epoch"] % self.every == 0 or row["epoch"] == t.tcfg.epochs:
            ev = evaluate(t.eval_model, self.x_test, y=self.y_test)
            row.update(test_loss=ev["test_loss"], test_recon=ev["recon"], test_kl=ev["kl"])
            row.update((f"test_{k}", v) for k, v in ev.get("aux", {}).items())


class FidWatch(Callback):
    """train --fid-every: FID of samples and reconstructions in the dataset classifier's
    features (the test images' features computed once, here)."""

    def __init__(self, t: Trainer, x_test: torch.Tensor, data_dir: str | None):
        from ..evaluation.classifier import Spec
        from ..evaluation.quality import Watch

        m, c = t.mcfg, t.tcfg
        self.watch = Watch(
            Spec(c.dataset, m.image_size, m.in_channels, c.crop, c.limit), data_dir, t.log
        )
        self.x_test, self.every = x_test, c.fid_every

    def on_epoch_end(self, t: Trainer, row: dict) -> None:
        if row["epoch"] % self.every == 0 or row["epoch"] == t.tcfg.epochs:
            row.update(self.watch(t.eval_model, self.x_test, t.tcfg.seed, t.y_test))


def drop_rows_after(path: Path, epoch: int) -> None:
    """Keep metrics.jsonl's rows up to epoch: a crash between a row and its checkpoint must not
    leave that epoch twice once it is trained again, nor a line it cut short stay."""
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    kept = [line for line in lines if row_epoch(line) <= epoch]
    if len(kept) != len(lines):
        outputs.write_text(path, "".join(k + "\n" for k in kept))


def row_epoch(line: str) -> float:
    """A metrics.jsonl line's epoch; inf for a line that is no whole row (blank, or cut)."""
    try:
        return json.loads(line)["epoch"]
    except (ValueError, KeyError, TypeError):
        return math.inf


class MetricsLog(Callback):
    """The epoch's line on the log, its row in metrics.jsonl; the curves at the end."""

    def on_epoch_end(self, t: Trainer, row: dict) -> None:
        t.log(epoch_line(row, t.tcfg.epochs))
        path = t.out / "metrics.jsonl"
        t.ckpts.write("metrics", path, outputs.append_line, path, outputs.dumps(row))

    def on_train_end(self, t: Trainer) -> None:
        curves = t.out / "curves.png"
        t.ckpts.write("plot", curves, plot_curves, t.out / "metrics.jsonl", curves)


class Figures(Callback):
    """The epoch's reconstructions of 64 fixed test images, and samples from fixed codes (a
    conditional model's: of the classes in turn)."""

    def __init__(self, x_test: torch.Tensor, y_test: torch.Tensor | None = None):
        self.x_fig, self.y_fig = x_test[:64], None if y_test is None else y_test[:64]

    def on_epoch_end(self, t: Trainer, row: dict) -> None:
        t.ckpts.write("figures", t.out / "figures", self.draw, t, row["epoch"])

    def draw(self, t: Trainer, epoch: int) -> None:
        figs = t.out / "figures"
        recon = reconstruction_grid(t.eval_model, self.x_fig, self.y_fig)
        save_png(recon, figs / f"recon_{epoch:03d}.png")
        save_png(sample_grid(t.eval_model, 64, seed=t.tcfg.seed), figs / f"samples_{epoch:03d}.png")


class Tracking(Callback):
    """Experiment trackers: the step's terms every log_every steps, each epoch's row and
    figures."""

    def __init__(self, trackers: Trackers, every: int, guard: Guard):
        self.trackers, self.every, self.guard = trackers, every, guard

    def on_step_end(self, t: Trainer, res: dict) -> None:
        if t.step % self.every == 0:  # a host sync, only when asked
            lr = t.opt.param_groups[0]["lr"]
            self.trackers.log_step(t.step, res, lr, self.guard.skipped, self.guard.spikes)

    def on_epoch_end(self, t: Trainer, row: dict) -> None:
        self.trackers.log_epoch(row, t.out / "figures")


class Checkpoints(Callback):
    """At each epoch's end: last.pt, best.pt (lowest test loss so far), the keep-N copies."""

    def __init__(self) -> None:
        self.best = math.inf

    def on_epoch_end(self, t: Trainer, row: dict) -> None:
        is_best = row.get("test_loss", math.inf) < self.best
        self.best = min(self.best, row.get("test_loss", math.inf))
        t.ckpts.save_epoch(t.state(t.shuffle.get_state(), 0.0), row["epoch"], is_best)

    def state(self) -> dict:
        return {"best_test_loss": self.best}

    def load(self, ckpt: dict) -> None:
        self.best = ckpt.get("best_test_loss", math.inf)


TEST_KEYS = {"test_loss", "test_recon", "test_kl"}  # the test figures every row has


def epoch_line(row: dict, epochs: int) -> str:
    """The log's line for a metrics row: losses, FIDs, skipped steps, time and speed."""
    msg = f"epoch {row['epoch']}/{epochs}  train {row['train_loss']:.2f}"
    if "test_loss" in row:
        msg += f"  test {row['test_loss']:.2f} (recon {row['test_recon']:.2f}"
        msg += f", kl {row['test_kl']:.2f}" if row["test_kl"] is not None else ", no kl"
        aux = [(k[5:], v) for k, v in row.items() if k.startswith("test_") and k not in TEST_KEYS]
        msg += "".join(f", {name} {v:.2f}" for name, v in aux) + ")"  # a model's auxiliary terms
    if "fid_recon" in row:
        msg += f"  fid {row['fid']:.2f}" if "fid" in row else ""
        msg += f"  fid_recon {row['fid_recon']:.2f}"
    if row["skipped_steps"]:
        msg += f"  [{row['skipped_steps']} non-finite steps skipped]"
    if row["skipped_spikes"]:
        msg += f"  [{row['skipped_spikes']} gradient spikes skipped]"
    seconds = row["epoch_seconds"]
    return msg + f"  {seconds:.1f} s ({row['images_per_second']:.0f} img/s)"
