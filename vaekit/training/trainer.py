"""The trainer: the loop over epochs and steps, read top to bottom in fit(); its concerns
(guard, EMA, progress, evaluation, FID, metrics, figures, trackers, checkpoints) are the
callbacks of callbacks.py. Under torchrun, each process takes its share of every global batch;
rank 0 alone logs, evaluates and writes."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch

from .. import checkpoint
from ..config import ModelConfig, ObjectiveConfig, TrainConfig
from ..models import create_model
from ..objectives import create_objective
from ..runtime import dist
from ..runtime.allocator import keep_freed_memory
from ..runtime.memory import check_memory
from ..runtime.precision import choose_precision, precision_reason
from . import callbacks as cb
from .batches import BatchSource, shard
from .checkpoints import (
    CheckpointManager,
    TrainError,
    check_room,
    rng_state,
    room_needed,
    set_rng_state,
)
from .signals import StopSignal
from .step import TrainModule, lr_at, train_step
from .trackers import open_trackers


class Trainer:
    """Trains the model mcfg describes on uint8 images x_train (N, C, H, W) into run directory
    out, evaluating on x_test. labels: int64 (y_train (N,), y_test) or None each, which a
    conditional model needs. ckpt (from resume_configs): continue that run exactly. extra:
    callbacks of the caller's, called after the trainer's own on every rank."""

    def __init__(
        self,
        mcfg: ModelConfig,
        ocfg: ObjectiveConfig,
        tcfg: TrainConfig,
        out: Path,
        x_train: torch.Tensor,
        x_test: torch.Tensor,
        stream: bool,
        ckpt: dict | None,
        data_dir: str | None,
        log,
        extra: tuple[cb.Callback, ...] = (),
        labels: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None),
    ) -> None:
        self.mcfg, self.ocfg, self.out, self.data_dir = mcfg, ocfg, Path(out), data_dir
        self.rank, self.world, local_rank = dist.setup()
        self.main = self.rank == 0
        self.log = log if self.main else (lambda *a: None)
        self.device = self.place(tcfg, local_rank)
        self.check_data(tcfg, x_train)
        self.precision_info = precision_record(tcfg, self.device, ckpt)
        self.tcfg = tcfg = replace(
            tcfg, precision=choose_precision(tcfg.precision, self.device, self.log)
        )
        self.build(ckpt)
        y_train, self.y_test = self.check_labels(tcfg, labels)
        self.shuffle = torch.Generator().manual_seed(tcfg.seed)
        self.batches = BatchSource(
            x_train, tcfg.batch_size, self.device, self.shuffle, stream, y_train
        )
        self.x_test = self.model.likelihood.prepare_eval(x_test)
        self.N, self.steps_per_epoch = len(x_train), len(self.batches)
        self.total_steps = tcfg.epochs * self.steps_per_epoch
        self.ckpts = CheckpointManager(self.out, tcfg.keep, self.main)
        self.epoch = self.step = self.batch = 0  # epochs done, steps taken, steps in this epoch
        self.loss_sum0, self.row, self.accepted = 0.0, {}, False
        if ckpt is not None:
            self.restore(ckpt)
        self.write_config()
        self.trackers = open_trackers(
            tcfg.log if self.main else (),
            self.out,
            self.run_info,
            self.step,
            ckpt is not None,
            tcfg.batch_size,
            self.log,
        )
        self.callbacks = self.attach() + list(extra)
        for c in self.callbacks:
            c.load(ckpt or {})

    def fit(self) -> dict:
        """Train to tcfg.epochs; returns the last epoch's metrics row. A signal saves the state
        and returns at the next step boundary (or after the epoch under evaluation)."""
        with StopSignal() as self.stop, self.trackers:
            self.emit("on_train_start")
            while self.epoch < self.tcfg.epochs:
                if not self.train_epoch():
                    return self.row  # stopped mid-epoch: saved
                self.end_epoch()
                if self.stopped(f"stopped after epoch {self.epoch}"):
                    return self.row
            self.emit("on_train_end")
        return self.row

    def train_epoch(self) -> bool:
        """The epoch's remaining steps; False if a signal stopped it (its state saved)."""
        self.model.train()
        self.t0, self.start = time.perf_counter(), self.batch
        self.epoch_rng = self.shuffle.get_state()  # draws this epoch's order: saved mid-epoch
        perm = self.batches.order()  # (N,) the epoch's shuffle
        self.loss_sum = torch.tensor(self.loss_sum0, device=self.device)  # summed on the device
        self.emit("on_epoch_start")
        for i in range(self.batch, self.steps_per_epoch):
            res = self.train_step(perm, i)
            self.accepted = self.guard.accepted(res, self.step)
            if self.accepted:
                self.loss_sum += res["per_image"].sum()
            self.step, self.batch = self.step + 1, i + 1
            self.emit("on_step_end", res)
            if self.batch < self.steps_per_epoch and self.save_due():
                self.save(self.epoch_rng, self.loss_sum.item(), f"at step {self.step}")
                if self.stopped(f"saved step {self.step} to {self.out / 'last.pt'}"):
                    return False
        return True

    def train_step(self, perm: torch.Tensor, i: int) -> dict:
        """Step i of the epoch on this rank's share of global batch perm[i * B:(i + 1) * B]."""
        lik, K = self.model.likelihood, self.objective.samples
        batch = self.batches.batch(perm, i)  # labels (Bg,) only for a conditional model
        xb = lik.prepare(batch.x)  # (Bg, C, H, W), fresh bits for bernoulli
        eps = self.model.noise(len(xb), K, self.device)  # [(K, Bg, *shape)]: the global batch's
        n_global = len(xb)
        xb, eps = (
            shard(xb, self.world, self.rank),
            [shard(e, self.world, self.rank, 1) for e in eps],
        )
        y = None if batch.y is None else shard(batch.y, self.world, self.rank)
        x = xb.float().div_(255.0).contiguous(memory_format=self.layout)  # (b, C, H, W) in [0, 1]
        return train_step(
            self.net,
            self.params,
            self.opt,
            x,
            self.step,
            eps=eps,
            y=y,
            lr=lr_at(self.step, self.total_steps, self.tcfg),
            grad_clip=self.tcfg.grad_clip,
            share=len(x) * self.world / n_global,
            autocast=self.autocast,
            agree=self.agree if self.world > 1 else None,
            max_gnorm=self.guard.limit(self.step),
        )

    def end_epoch(self) -> None:
        """The epoch's row (train loss per image, speed, skipped steps), then the callbacks:
        rank 0 evaluates, logs, writes figures and checkpoints; the others wait for it."""
        self.epoch, self.batch, self.loss_sum0 = self.epoch + 1, 0, 0.0
        dist.all_sum(self.loss_sum)
        seconds = time.perf_counter() - self.t0
        B = self.tcfg.batch_size
        self.row = {
            "epoch": self.epoch,
            "step": self.step,
            "train_loss": self.loss_sum.item() / self.N,
            "lr": lr_at(self.step, self.total_steps, self.tcfg),
            "epoch_seconds": seconds,
            "images_per_second": (self.N - min(self.N, self.start * B)) / seconds,  # this session's
            "skipped_steps": self.guard.skipped,
            "skipped_spikes": self.guard.spikes,
        }
        self.emit("on_epoch_end", self.row)
        dist.barrier()
        if self.world > 1:  # a signal during evaluation or figures stops every rank
            self.stop.join(dist.all_sum(self.stop.flag(self.device)).item())

    def emit(self, hook: str, *args) -> None:
        """Each callback's hook, in order. At an epoch's end each runs with the global RNG
        forked: a callback that draws from it (a caller's) leaves the later steps' noise alone."""
        devices = [self.device] if self.device.type == "cuda" else []
        for c in self.callbacks:
            with torch.random.fork_rng(devices, enabled=hook == "on_epoch_end"):
                getattr(c, hook)(self, *args)

    def save_due(self) -> bool:
        every = self.tcfg.save_every
        return bool(self.stop.signum or (every and self.step % every == 0))

    def stopped(self, what: str) -> bool:
        """After a signal: say what was saved and how to go on."""
        if self.stop.signum:
            self.log(f"{self.stop.name}: {what}; continue with vaekit train --resume {self.out}")
        return bool(self.stop.signum)

    def agree(self, bad: torch.Tensor) -> torch.Tensor:
        """One collective per step: skip decisions and stop signals agree across ranks."""
        flags = dist.all_sum(torch.stack([bad, self.stop.flag(self.device)]))
        self.stop.join(flags[1].item())
        return flags[0]

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights evaluation and figures use: the EMA's when kept, else the model's."""
        return self.ema.avg.module if self.ema else self.model

    def state(self, epoch_rng: torch.Tensor, loss_sum: float) -> dict:
        """Everything needed to continue exactly here. epoch_rng: the shuffle state that draws
        the current epoch's order (mid-epoch) or the next one's (at its end); loss_sum: the
        training loss summed over the steps done in the epoch under way."""
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "model_config": self.mcfg.to_dict(),
            "objective_config": self.ocfg.to_dict(),
            "train_config": self.tcfg.to_dict(),
            "data_dir": self.data_dir,
            "epoch": self.epoch,  # completed epochs
            "step": self.step,
            "batch": self.batch,  # steps done in the epoch under way
            "loss_sum": loss_sum,
            "rng": {**rng_state(self.shuffle), "shuffle": epoch_rng},
            "metrics": self.row,
            **self.precision_info,
        }
        for c in self.callbacks:
            state.update(c.state())
        return state

    def save(self, epoch_rng: torch.Tensor, loss_sum: float, when: str) -> None:
        """last.pt mid-epoch, if the weights are still finite."""
        self.guard.check_weights(self.model, when)
        self.ckpts.save_last(self.state(epoch_rng, loss_sum))

    # --- setup ----------------------------------------------------------------------------

    def place(self, tcfg: TrainConfig, local_rank: int) -> torch.device:
        """The device (each rank's own GPU under torchrun); the global batch split over ranks."""
        from ..runtime.device import resolve_device

        device = resolve_device(tcfg.device)
        if device.type == "cuda" and self.world > 1:
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if device.type == "cpu":
            keep_freed_memory()  # no page faults between steps: 1.1-1.25x on one core (issue 18)
        if tcfg.batch_size < self.world:
            raise TrainError(
                f"--batch-size {tcfg.batch_size} is the global batch: >= {self.world} ranks"
            )
        return device

    def check_data(self, tcfg: TrainConfig, x_train: torch.Tensor) -> None:
        shape = (self.mcfg.in_channels, *self.mcfg.image_size)
        if tuple(x_train.shape[1:]) != shape:
            raise TrainError(
                f"{tcfg.dataset} images are {tuple(x_train.shape[1:])} (C, H, W) but the model "
                f"expects {shape}; set the model's in_channels/image_size to match"
            )

    def check_labels(self, tcfg: TrainConfig, labels: tuple) -> tuple:
        """(y_train, y_test) as the model takes them: both for a conditional model (refused,
        in one line, when missing or out of its classes), neither for another."""
        if not self.model.conditional:
            return None, None
        K = self.model.num_classes
        for split, y in zip(("training", "test"), labels, strict=True):
            if y is None:
                raise TrainError(
                    f"the model is conditional but the {split} images of {tcfg.dataset} have no "
                    "class labels (use a labelled dataset, or drop --conditional)"
                )
            if len(y) and not 0 <= int(y.min()) <= int(y.max()) < K:
                raise TrainError(
                    f"the {split} labels of {tcfg.dataset} run {int(y.min())}-{int(y.max())} but "
                    f"the model has {K} classes (--num-classes)"
                )
        return labels

    def build(self, ckpt: dict | None) -> None:
        """Model, objective, the module the loop calls (DDP, compiled), AdamW; room checked."""
        tcfg, device, world = self.tcfg, self.device, self.world
        self.objective = create_objective(self.ocfg)
        # before any real allocation
        check_memory(
            self.mcfg, -(-tcfg.batch_size // world), device, self.objective.samples, self.log
        )
        torch.manual_seed(tcfg.seed)  # the same on every rank: same weights, order and noise
        self.layout = torch.channels_last if tcfg.channels_last else torch.contiguous_format
        self.model = model = create_model(self.mcfg).to(device, memory_format=self.layout)
        self.objective.check(model)
        self.net = TrainModule(model, self.objective)  # what the loop calls: DDP averages grads
        if world > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.net, device_ids=ids)
        if tcfg.compile:  # wraps the call only: checkpoints keep model's own names
            self.net = torch.compile(self.net)
        self.fused = fused_adamw(device) or None
        self.opt = torch.optim.AdamW(
            model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay, fused=self.fused
        )
        self.params = list(model.parameters())  # once, not on every step
        self.autocast = torch.autocast(
            device.type, torch.bfloat16, enabled=tcfg.precision == "bf16"
        )
        ckpt_bytes = (12 + 4 * bool(tcfg.ema)) * model.num_params() + 2**20  # weights, 2 moments
        if self.main:
            check_room(self.out, room_needed(self.out, ckpt_bytes, tcfg.keep, ckpt is not None))

    def restore(self, ckpt: dict) -> None:
        """Continue a run: weights, optimizer, RNG, counters; metrics rows after it dropped."""
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        for group in self.opt.param_groups:  # the kernel is this machine's choice, not the run's
            group["fused"] = self.fused
        set_rng_state(ckpt["rng"], self.shuffle)
        self.epoch, self.step = ckpt["epoch"], ckpt["step"]
        self.batch, self.loss_sum0 = ckpt.get("batch", 0), ckpt.get("loss_sum", 0.0)
        if self.main:
            cb.drop_rows_after(self.out / "metrics.jsonl", self.epoch)
        self.log(
            f"resuming {self.out} at epoch {self.epoch} + {self.batch} steps (step {self.step})"
        )

    def write_config(self) -> None:
        """config.json: the configs, parameter count, data root and precision; a summary line."""
        m, t, model = self.mcfg, self.tcfg, self.model
        configs = {"model": m.to_dict(), "objective": self.ocfg.to_dict(), "train": t.to_dict()}
        self.run_info = {**configs, "num_params": model.num_params(), "data_dir": self.data_dir}
        self.run_info.update(self.precision_info)
        path = self.out / "config.json"
        self.ckpts.write("config", path, checkpoint.save_json, self.run_info, path)
        self.log(
            f"{t.dataset}: {self.N} train / {len(self.x_test)} test images "
            f"{(m.in_channels, *m.image_size)} on {self.device}; {m.family} "
            f"({getattr(m.net, 'arch', '')}), {model.num_params():,} params, latents "
            f"{model.latent_shapes}, objective {self.ocfg.objective}"
            + (f"; {self.world} processes" if self.world > 1 else "")
            + ("; batches gathered from host memory" if self.batches.stream else "")
        )

    def attach(self) -> list[cb.Callback]:
        """The callbacks, in the order their hooks run: the guard, the model's own state and the
        EMA on every rank, then rank 0's evaluation, FID, metrics, figures, trackers and
        checkpoints."""
        t = self.tcfg
        self.guard = cb.Guard(t.skip_spikes, t.max_bad_steps, self.out)
        self.ema = cb.EMA(self.model, t.ema) if t.ema else None
        found = [self.guard, cb.ModelState(), self.ema]
        if self.main:
            evaluation = t.eval_every and cb.Evaluation(self.x_test, t.eval_every, self.y_test)
            found += [cb.Progress(), evaluation]
            found += [t.fid_every and cb.FidWatch(self, self.x_test, self.data_dir)]
            found += [cb.MetricsLog(), t.figures and cb.Figures(self.x_test, self.y_test)]
            found += [self.trackers and cb.Tracking(self.trackers, t.log_every, self.guard)]
            found += [cb.Checkpoints()]
        return [c for c in found if c]


def precision_record(tcfg: TrainConfig, device: torch.device, ckpt: dict | None) -> dict:
    """The precision asked for and why the one used was chosen (kept on resume; None: a run
    started by a vaekit that did not record them)."""
    if ckpt is not None:
        return {k: ckpt.get(k) for k in ("precision_requested", "precision_reason")}
    reason = precision_reason(tcfg.precision, device)
    return {"precision_requested": tcfg.precision, "precision_reason": reason}


def fused_adamw(device: torch.device) -> bool:
    """AdamW's fused kernel (one pass over every parameter; the same update up to float
    rounding): on CUDA, and on CPU since PyTorch 2.4, where it takes 0.75 ms a step of --preset
    mnist instead of 4.4 ms for the default per-parameter loop (issue 18)."""
    return device.type == "cuda" or (device.type == "cpu" and torch.__version__ >= "2.4")
