"""The training loop, read top to bottom: fit() trains a model on uint8 image tensors into a run
directory. After each epoch: evaluate, log a JSON line, write figures, checkpoint atomically."""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import checkpoint, outputs
from ..config import ModelConfig, ObjectiveConfig, TrainConfig
from ..evaluation.bound import evaluate
from ..figures.grids import reconstruction_grid, sample_grid
from ..figures.png import plot_curves, save_png
from ..models import create_model
from ..objectives import create_objective
from ..runtime import dist
from ..runtime.allocator import keep_freed_memory
from ..runtime.device import resolve_device
from ..runtime.memory import check_memory
from ..runtime.precision import choose_precision, precision_reason
from .batches import BatchSource, shard
from .checkpoints import (
    CheckpointManager,
    TrainError,
    check_room,
    rng_state,
    room_needed,
    set_rng_state,
)
from .lock import holding_run_dir
from .signals import StopSignal
from .step import TrainModule, lr_at, train_step
from .trackers import open_trackers

PROGRESS_SECONDS = 300.0  # without a terminal, a progress line this often inside an epoch
SPIKE_WARMUP, SPIKE_EMA = 100, 0.99  # skip_spikes: steps before it acts; the level's smoothing


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
) -> dict:
    """Train the model mcfg describes on uint8 images x_train (N, C, H, W) into run directory
    `out`, evaluating on x_test; returns the last epoch's metrics row.

    With ckpt (from resume_configs), continue that run: weights, optimizer, RNG, counters.
    stream: keep x_train on the host (memory-mapped) and send each batch over. Under torchrun,
    each process takes its share of every global batch; rank 0 alone logs, evaluates, writes.
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
    if device.type == "cpu":
        keep_freed_memory()  # no page faults between steps: 1.1-1.25x on one core (issue 18)
    if tcfg.batch_size < world:
        raise TrainError(f"--batch-size {tcfg.batch_size} is the global batch: >= {world} ranks")
    shape = (mcfg.in_channels, *mcfg.image_size)
    if tuple(x_train.shape[1:]) != shape:
        raise TrainError(
            f"{tcfg.dataset} images are {tuple(x_train.shape[1:])} (C, H, W) but the model "
            f"expects {shape}; set the model's in_channels/image_size to match"
        )
    # recorded: the precision chosen (in tcfg), and what was asked for and why, kept on resume
    # (None: a run started by a vaekit that did not record them)
    precision_info = {"precision_requested": tcfg.precision, "precision_reason": None}
    if ckpt is None:
        precision_info["precision_reason"] = precision_reason(tcfg.precision, device)
    else:
        precision_info = {k: ckpt.get(k) for k in precision_info}
    tcfg = replace(tcfg, precision=choose_precision(tcfg.precision, device, log))
    objective = create_objective(ocfg)
    per_rank = -(-tcfg.batch_size // world)
    check_memory(mcfg, per_rank, device, objective.samples, log)  # before any real allocation
    torch.manual_seed(tcfg.seed)  # the same on every rank: same weights, order and noise

    layout = torch.channels_last if tcfg.channels_last else torch.contiguous_format
    model = create_model(mcfg).to(device, memory_format=layout)
    objective.check(model)
    net = TrainModule(model, objective)  # what the loop calls: DDP averages gradients
    if world > 1:
        ids = [local_rank] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=ids)
    if tcfg.compile:  # wraps the call only: checkpoints keep model's own names (no _orig_mod.)
        net = torch.compile(net)
    fused = fused_adamw(device)
    opt = torch.optim.AdamW(
        model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay, fused=fused or None
    )
    # a checkpoint holds the weights and two AdamW moments: 3 x 4 bytes per parameter
    ckpt_bytes = 12 * model.num_params() + 2**20
    if main:
        check_room(out, room_needed(out, ckpt_bytes, tcfg.keep, resumed=ckpt is not None))
    shuffle = torch.Generator().manual_seed(tcfg.seed)
    lik = model.likelihood
    batches = BatchSource(x_train, tcfg.batch_size, device, shuffle, stream)
    x_test = lik.prepare_eval(x_test)
    N, B, steps_per_epoch = len(x_train), tcfg.batch_size, len(batches)
    total_steps = tcfg.epochs * steps_per_epoch
    ckpts = CheckpointManager(out, tcfg.keep, main)

    epoch, step, batch, loss_sum0 = 0, 0, 0, 0.0  # batch: steps already done in this epoch
    best = ckpt.get("best_test_loss", math.inf) if ckpt else math.inf
    level = ckpt.get("gnorm_level") if ckpt else None  # running level of accepted grad norms
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        for group in opt.param_groups:  # the kernel is this machine's choice, not the run's
            group["fused"] = fused or None
        set_rng_state(ckpt["rng"], shuffle)
        epoch, step = ckpt["epoch"], ckpt["step"]
        batch, loss_sum0 = ckpt.get("batch", 0), ckpt.get("loss_sum", 0.0)
        if main:
            drop_rows_after(out / "metrics.jsonl", epoch)
        log(f"resuming {out} at epoch {epoch} + {batch} steps (step {step})")
    configs = {"model": mcfg.to_dict(), "objective": ocfg.to_dict(), "train": tcfg.to_dict()}
    run_info = {**configs, "num_params": model.num_params(), "data_dir": data_dir}
    run_info.update(precision_info)
    ckpts.write("config", out / "config.json", checkpoint.save_json, run_info, out / "config.json")
    log(
        f"{tcfg.dataset}: {N} train / {len(x_test)} test images {shape} on {device}; "
        f"{mcfg.family} ({getattr(mcfg.net, 'arch', '')}), {model.num_params():,} params, "
        f"latents {model.latent_shapes}, objective {ocfg.objective}"
        + (f"; {world} processes" if world > 1 else "")
        + ("; batches gathered from host memory" if batches.stream else "")
    )
    trackers = open_trackers(
        tcfg.log if main else (), out, run_info, step, ckpt is not None, B, log
    )
    watch = None  # train --fid-every: the classifier's features of the test images, once
    if main and tcfg.fid_every:
        from ..evaluation.classifier import Spec
        from ..evaluation.quality import Watch

        spec = Spec(tcfg.dataset, mcfg.image_size, mcfg.in_channels, tcfg.crop, limit=tcfg.limit)
        watch = Watch(spec, data_dir, log)
    autocast = torch.autocast(device.type, torch.bfloat16, enabled=tcfg.precision == "bf16")
    x_fig = x_test[:64]  # fixed images for the per-epoch reconstructions
    row: dict = {}

    def save(epoch_rng: torch.Tensor, loss_sum: float) -> dict:
        """Checkpoint everything needed to continue exactly here. epoch_rng is the shuffle
        state that draws the current epoch's order (mid-epoch) or the next one's (at its end);
        loss_sum the training loss summed over the steps done in the epoch under way."""
        state = {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "model_config": mcfg.to_dict(),
            "objective_config": ocfg.to_dict(),
            "train_config": tcfg.to_dict(),
            "data_dir": data_dir,
            "epoch": epoch,  # completed epochs
            "step": step,
            "batch": batch,  # steps done in the epoch under way
            "loss_sum": loss_sum,
            "rng": {**rng_state(shuffle), "shuffle": epoch_rng},
            "metrics": row,
            "best_test_loss": best,
            "gnorm_level": level,
            **precision_info,
        }
        ckpts.save_last(state)
        return state

    bad_run = 0  # consecutive non-finite steps
    params = list(model.parameters())  # once, not on every step
    with StopSignal() as stop, trackers:

        def agree(bad: torch.Tensor) -> torch.Tensor:
            """One collective per step: skip decisions and stop signals agree across ranks."""
            flags = dist.all_sum(torch.stack([bad, stop.flag(device)]))
            stop.join(flags[1].item())
            return flags[0]

        while epoch < tcfg.epochs:
            model.train()
            t0 = last_note = time.perf_counter()
            epoch_rng, start = shuffle.get_state(), batch
            perm = batches.order()
            loss_sum = torch.tensor(loss_sum0, device=device)  # summed on the device
            skipped = spikes = 0  # non-finite steps and gradient spikes skipped this epoch
            bar = tqdm(
                range(batch, steps_per_epoch), desc=f"epoch {epoch + 1}", leave=False, disable=None
            )
            for i in bar:
                xb = lik.prepare(batches.batch(perm, i))  # (Bg, C, H, W), fresh bits for bernoulli
                eps = model.noise(len(xb), objective.samples, device)  # [(K, Bg, *shape)]
                n_global = len(xb)
                xb, eps = shard(xb, world, rank), [shard(e, world, rank, 1) for e in eps]
                x = xb.float().div_(255.0).contiguous(memory_format=layout)  # (b, C, H, W)
                res = train_step(
                    net,
                    params,
                    opt,
                    x,
                    step,
                    eps=eps,
                    lr=lr_at(step, total_steps, tcfg),
                    grad_clip=tcfg.grad_clip,
                    share=len(x) * world / n_global,
                    autocast=autocast,
                    agree=agree if world > 1 else None,
                    max_gnorm=spike_limit(tcfg.skip_spikes, level, step),
                )
                if res["ok"]:
                    loss_sum += res["per_image"].sum()
                    bad_run = 0
                    if tcfg.skip_spikes:  # a host sync, only when spikes are watched
                        g = res["gnorm"].item()
                        level = g if level is None else SPIKE_EMA * level + (1 - SPIKE_EMA) * g
                elif torch.isfinite(res["loss"] + res["gnorm"]):
                    spikes += 1  # a finite spike: skipped, counted, training goes on
                else:
                    skipped, bad_run = skipped + 1, bad_run + 1
                    if bad_run >= tcfg.max_bad_steps:
                        raise TrainError(
                            f"{bad_run} consecutive steps with a non-finite loss or gradient "
                            f"(up to step {step + 1}); {out / 'last.pt'} holds the last good "
                            "checkpoint: lower --lr or set --grad-clip, then --resume"
                        )
                step, batch = step + 1, i + 1
                if trackers and step % tcfg.log_every == 0:  # a host sync, only when asked
                    trackers.log_step(step, res, opt.param_groups[0]["lr"], skipped, spikes)
                if i % 50 == 0 and not bar.disable:  # an occasional sync, only when shown
                    bar.set_postfix(loss=f"{res['loss'].item():.2f}")
                if bar.disable and time.perf_counter() - last_note > PROGRESS_SECONDS:
                    last_note = time.perf_counter()
                    log(f"epoch {epoch + 1}: step {batch}/{steps_per_epoch}")
                if batch < steps_per_epoch and (
                    stop.signum or (tcfg.save_every and step % tcfg.save_every == 0)
                ):
                    save(epoch_rng, loss_sum.item())
                    if stop.signum:
                        log(
                            f"{stop.name}: saved step {step} to {out / 'last.pt'}; continue with "
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
                "skipped_spikes": spikes,
            }
            if main:  # rank 0 evaluates, logs and writes; the others wait for it
                if tcfg.eval_every and (epoch % tcfg.eval_every == 0 or epoch == tcfg.epochs):
                    ev = evaluate(model, x_test)
                    row.update(test_loss=ev["test_loss"], test_recon=ev["recon"], test_kl=ev["kl"])
                if watch is not None and (epoch % tcfg.fid_every == 0 or epoch == tcfg.epochs):
                    row.update(watch(model, x_test, tcfg.seed))
                log(epoch_line(row, tcfg.epochs, seconds))
                metrics = out / "metrics.jsonl"
                ckpts.write("metrics", metrics, outputs.append_line, metrics, outputs.dumps(row))
                if tcfg.figures:
                    ckpts.write(
                        "figures",
                        out / "figures",
                        figures,
                        model,
                        x_fig,
                        out,
                        epoch,
                        tcfg.seed,
                    )
                trackers.log_epoch(row, out / "figures")
                is_best = row.get("test_loss", math.inf) < best
                best = min(best, row.get("test_loss", math.inf))
                ckpts.save_epoch(save(shuffle.get_state(), 0.0), epoch, is_best)
            dist.barrier()
            if world > 1:  # a signal during evaluation or figures stops every rank
                stop.join(dist.all_sum(stop.flag(device)).item())
            if stop.signum:  # arrived during evaluation or figures: the epoch is saved
                log(
                    f"{stop.name}: stopped after epoch {epoch}; continue with "
                    f"vaekit train --resume {out}"
                )
                return row
    if main:
        curves = out / "curves.png"
        ckpts.write("plot", curves, plot_curves, out / "metrics.jsonl", curves)
    return row


def fused_adamw(device: torch.device) -> bool:
    """AdamW's fused kernel (one pass over every parameter; the same update up to float
    rounding): on CUDA, and on CPU since PyTorch 2.4, where it takes 0.75 ms a step of --preset
    mnist instead of 4.4 ms for the default per-parameter loop (issue 18)."""
    return device.type == "cuda" or (device.type == "cpu" and torch.__version__ >= "2.4")


def spike_limit(factor: float, level: float | None, step: int) -> float | None:
    """The gradient norm above which an update is skipped as a spike (VDVAE skips updates whose
    norm is far above normal): factor x the running level, once it has settled."""
    if not factor or level is None or step < SPIKE_WARMUP:
        return None
    return factor * level


def epoch_line(row: dict, epochs: int, seconds: float) -> str:
    msg = f"epoch {row['epoch']}/{epochs}  train {row['train_loss']:.2f}"
    if "test_loss" in row:
        msg += f"  test {row['test_loss']:.2f} (recon {row['test_recon']:.2f}"
        msg += f", kl {row['test_kl']:.2f})" if row["test_kl"] is not None else ", no kl)"
    if "fid_recon" in row:
        msg += f"  fid {row['fid']:.2f}" if "fid" in row else ""
        msg += f"  fid_recon {row['fid_recon']:.2f}"
    if row["skipped_steps"]:
        msg += f"  [{row['skipped_steps']} non-finite steps skipped]"
    if row["skipped_spikes"]:
        msg += f"  [{row['skipped_spikes']} gradient spikes skipped]"
    return msg + f"  {seconds:.1f} s ({row['images_per_second']:.0f} img/s)"


def figures(model, x_fig: torch.Tensor, out: Path, epoch: int, seed: int) -> None:
    """The epoch's reconstructions of fixed test images, and samples from fixed codes."""
    figs = out / "figures"
    save_png(reconstruction_grid(model, x_fig), figs / f"recon_{epoch:03d}.png")
    save_png(sample_grid(model, 64, seed=seed), figs / f"samples_{epoch:03d}.png")
