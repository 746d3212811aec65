"""Roofline benchmark (issue 18): how close each preset's training step comes to the machine's
measured matrix-multiply peak, on one thread and on all cores.

For each preset: the FLOPs of one training image (forward + backward, counted by
torch.utils.flop_counter.FlopCounterMode: matrix multiplies and convolutions only, see
NOT_COUNTED), the training step's images/s at the preset's batch size, layout, objective and
precision (the preset's own: bf16 where the CPU computes it natively, else fp32; or --set
precision=...), and that rate in GFLOP/s as a fraction of the best matrix multiply measured here
in the precision the step trains in (issue 33: that precision's peak, not always fp32's). The
step is vaekit's own train_step driven as vaekit.training.loop.fit drives it, on generated
uint8 images of the preset's size (the speed of these kernels does not depend on the pixel
values). With --profile, where the time of a few steps goes, by category (torch.profiler).

    python benchmarks/roofline.py --profile                # every preset, 1 thread and all cores
    python benchmarks/roofline.py --presets seed mnist --threads 1
    python benchmarks/roofline.py --presets mnist --compare= --compare="--set compile=true"
    python benchmarks/roofline.py --presets seed mnist --compare= --compare="--undo allocator"

Timing: the best of --reps repeats of about --rep-seconds each, after --warmup steps; the peak
is the best multiply measured before and between those repeats, so both see the same load.
Wall time, and on one thread also the process's CPU time, which other processes taking turns on
the core do not inflate (on a quiet machine the two agree). The load average is kept with
every figure. --compare runs this script with each set of extra arguments in turn, each in a
fresh process (A B A B ...), on one thread, and reports each one's images/s against the first;
--undo times the step without some of issue 18's changes (all of them: vaekit 0.2.0's step).
Writes benchmarks/results/roofline-{CPU model}-{device}.json (--out): a record per CPU model.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import cpu_slug, provenance
from torch.utils.flop_counter import FlopCounterMode

from vaekit.config import PRESETS, configs, train_config
from vaekit.models import create_model
from vaekit.objectives import create_objective
from vaekit.runtime.allocator import keep_freed_memory
from vaekit.runtime.precision import choose_precision
from vaekit.training.step import TrainModule, lr_at, train_step
from vaekit.training.trainer import fused_adamw

HERE = Path(__file__).parent
NOT_COUNTED = (
    "FlopCounterMode counts matrix multiplies and convolutions (forward, and both products of "
    "their backward); it does not count elementwise work: normalisation, activations, pooling, "
    "upsampling, residual adds, the likelihood and KL terms, the gradient norm and the AdamW "
    "update. Those take time but add no counted FLOPs, so they lower the fraction."
)


# --- The machine's peak -------------------------------------------------------------------------


class Peak:
    """GFLOP/s of an n x n fp32 (or bf16) matrix multiply, the best of every call to measure().

    n = 2048; for bf16 smaller where one multiply would take over 3 s (emulated on a CPU without
    native bf16, it is that slow). On a CPU two kernels: torch.mm (MKL's sgemm in this build) and
    oneDNN's GEMM (a 1x1 convolution, channels-last: what the convolutions run on), which is
    faster than MKL's on some CPUs (AMD); the peak is the better of the two."""

    def __init__(self, dtype: torch.dtype, device: torch.device, sync):
        self.sync, self.n = sync, 2048
        if device.type == "cpu" and dtype != torch.float32:  # sized from a 256 x 256 trial
            a = torch.randn(256, 256).to(dtype)
            t = min(self.time(lambda: a @ a) for _ in range(2))
            while self.n > 256 and t[0] * (self.n / 256) ** 3 > 3.0:
                self.n //= 2
        n = self.n
        a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
        self.kernels = {"matmul": lambda: a @ b}
        if device.type == "cpu":
            x = a.reshape(1, n, 1, n).contiguous(memory_format=torch.channels_last)
            k = b.reshape(n, n, 1, 1).contiguous(memory_format=torch.channels_last)
            self.kernels["onednn_gemm"] = lambda: torch.nn.functional.conv2d(x, k)
        for fn in self.kernels.values():
            fn()  # untimed: first-call set-up
        self.best = {name: [0.0, 0.0] for name in self.kernels}  # [wall, cpu] GFLOP/s
        self.calls = 0

    def time(self, fn) -> tuple[float, float]:
        """(wall, process CPU) seconds of one call."""
        self.sync()
        w, c = time.perf_counter(), time.process_time()
        fn()
        self.sync()
        return time.perf_counter() - w, time.process_time() - c

    def measure(self, reps: int = 1) -> None:
        for _ in range(reps):
            for name, fn in self.kernels.items():
                w, c = self.time(fn)
                best = self.best[name]
                best[0], best[1] = (
                    max(best[0], 2 * self.n**3 / w / 1e9),
                    max(best[1], 2 * self.n**3 / c / 1e9),
                )
            self.calls += 1

    @property
    def wall(self) -> float:
        return max(b[0] for b in self.best.values())

    @property
    def cpu(self) -> float:
        return max(b[1] for b in self.best.values())

    def record(self) -> dict:
        return {
            "n": self.n,
            "calls": self.calls,
            "wall_gflops": self.wall,
            "cpu_gflops": self.cpu,
            "by_kernel": {
                k: {"wall_gflops": w, "cpu_gflops": c} for k, (w, c) in self.best.items()
            },
        }


# --- One preset's training step -----------------------------------------------------------------


def data_shape(preset: str) -> dict:
    """The image size and channels of the preset's dataset, as vaekit train gives them."""
    from vaekit.data import ImageDataset, describe, get_dataset

    spec = get_dataset(train_config(preset).dataset)
    if isinstance(spec, ImageDataset):  # CelebA: its registered size, without its cache
        return {"image_size": spec.size, "in_channels": spec.channels}
    info = describe(spec.name)
    return {"image_size": info.size, "in_channels": info.channels}


# Issue 18's changes to the step, each undone on request to measure it: glibc's default malloc
# thresholds, AdamW's per-parameter loop, torch's own InstanceNorm2d in the seed network.
UNDO = ("allocator", "fused-adamw", "group-norm")


def torch_instance_norms(model: torch.nn.Module) -> None:
    """Put torch's nn.InstanceNorm2d (vaekit 0.2.0's) back in place of vaekit's, weights kept."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, torch.nn.InstanceNorm2d):
                plain = torch.nn.InstanceNorm2d(child.num_features, affine=child.affine)
                plain.load_state_dict(child.state_dict())
                setattr(module, name, plain)


class Trainer:
    """A preset's model, objective and optimizer as vaekit.training.Trainer builds them, and its
    step() as fit's loop takes it: prepare a batch of uint8 images (fresh bits for bernoulli),
    draw the noise, scale to [0, 1] in the run's layout, train_step with the scheduled lr, the
    preset's gradient clipping and precision, the loss summed on the device."""

    def __init__(
        self,
        preset: str,
        device: torch.device,
        overrides: dict,
        undo: tuple[str, ...] = (),
        batches: int = 4,
    ):
        values = {**data_shape(preset), **overrides}
        mcfg, ocfg, self.tcfg = configs(preset, **values)
        tcfg = self.tcfg
        self.precision = choose_precision(tcfg.precision, device, lambda *a: None)
        self.objective = create_objective(ocfg)
        self.layout = torch.channels_last if tcfg.channels_last else torch.contiguous_format
        torch.manual_seed(tcfg.seed)
        self.model = create_model(mcfg).to(device, memory_format=self.layout)
        if "group-norm" in undo:
            torch_instance_norms(self.model)
        net = TrainModule(self.model, self.objective)
        self.net = torch.compile(net) if tcfg.compile else net
        fused = (fused_adamw(device) and "fused-adamw" not in undo) or None
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay, fused=fused
        )
        self.params = list(self.model.parameters())
        self.B, self.device = tcfg.batch_size, device
        shape = (batches * self.B, mcfg.in_channels, *mcfg.image_size)
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g).to(device)
        bf16 = self.precision == "bf16"
        self.autocast = torch.autocast(device.type, torch.bfloat16, enabled=bf16)
        self.total = tcfg.epochs * 60000 // self.B  # the lr schedule's length: an MNIST run
        self.loss_sum = torch.zeros((), device=device)
        self.i = 0

    def step(self, loss_fn=None) -> None:
        """One training step. loss_fn: what to call instead of the module (the profiler's)."""
        n = len(self.x) // self.B
        xb = self.x[(self.i % n) * self.B : (self.i % n + 1) * self.B]
        xb = self.model.likelihood.prepare(xb)
        eps = self.model.noise(len(xb), self.objective.samples, self.device)
        x = xb.float().div_(255.0).contiguous(memory_format=self.layout)
        res = train_step(
            loss_fn or self.net,
            self.params,
            self.opt,
            x,
            self.i,
            eps=eps,
            lr=lr_at(self.i, self.total, self.tcfg),
            grad_clip=self.tcfg.grad_clip,
            autocast=self.autocast,
        )
        if res["ok"]:
            self.loss_sum += res["per_image"].sum()
        self.i += 1


def count_flops(tr: Trainer) -> dict:
    """FLOPs of one training step (forward + backward) per image, in total and by operator."""
    with FlopCounterMode(display=False) as fc:
        tr.step()
    by_op = {
        str(k).removeprefix("aten."): v / tr.B for k, v in fc.get_flop_counts()["Global"].items()
    }
    return {"per_image": fc.get_total_flops() / tr.B, "by_op": by_op}


def time_steps(
    tr: Trainer, peak: Peak | None, reps: int, rep_seconds: float, warmup: int, sync
) -> dict:
    """images/s of the training step: the best of reps repeats of k steps, k chosen from the
    warm-up so that a repeat takes about rep_seconds; the peak measured between repeats."""
    for _ in range(warmup):
        tr.step()
    sync()
    t = time.perf_counter()
    tr.step()
    sync()
    k = max(2, round(rep_seconds / (time.perf_counter() - t)))
    wall = cpu = float("inf")
    loads, kernel, faults = [], 0.0, 0
    for _ in range(reps):
        if peak is not None:
            peak.measure()
        r = resource.getrusage(resource.RUSAGE_SELF)
        w, c = time.perf_counter(), time.process_time()
        for _ in range(k):
            tr.step()
        sync()
        wall, cpu = min(wall, time.perf_counter() - w), min(cpu, time.process_time() - c)
        r2 = resource.getrusage(resource.RUSAGE_SELF)
        kernel, faults = kernel + r2.ru_stime - r.ru_stime, faults + r2.ru_minflt - r.ru_minflt
        loads.append(os.getloadavg()[0])
    return {
        "steps_per_rep": k,
        "reps": reps,
        "wall_img_s": k * tr.B / wall,
        "cpu_img_s": k * tr.B / cpu,
        "kernel_seconds_per_step": kernel / (reps * k),  # page faults, mostly
        "page_faults_per_step": faults / (reps * k),
        "load": [min(loads), max(loads)],
    }


# --- Where the time goes ------------------------------------------------------------------------

# An op's category: the first whose pattern matches its name or one of its callers' names.
CATEGORIES = [
    ("optimizer", re.compile(r"^Optimizer\.|^vaekit::grad_norm$")),
    ("transposed convolution", re.compile(r"conv_transpose")),
    ("convolution", re.compile(r"conv")),
    ("normalisation", re.compile(r"batch_norm|instance_norm|group_norm|layer_norm")),
    ("activations", re.compile(r"relu|gelu|silu|elu|softplus|clamp_min|threshold")),
    ("pooling, resampling", re.compile(r"pool|upsample|interpolate")),
    ("loss, likelihood", re.compile(r"^vaekit::likelihood$")),
]
HOST = "host (Python, dispatch)"
OTHER = "other ops (adds, copies, noise, KL)"


def categorize(names: list[str]) -> str | None:
    for cat, pattern in CATEGORIES:
        if any(pattern.search(n) for n in names):
            return cat
    return None


def callers(e) -> list:
    """The event and its callers, innermost first."""
    out = []
    while e is not None:
        out.append(e)
        e = e.cpu_parent
    return out


def profile_steps(tr: Trainer, steps: int) -> dict:
    """torch.profiler over `steps` training steps: seconds per step by category. A forward op
    is named by itself and its callers; a backward node takes the category of the forward op
    that made it (the same sequence number); the gradient norm and the AdamW step are the
    optimizer; the wall time outside every op, and inside the forward's Python, is host time."""
    from torch.autograd.profiler import record_function
    from torch.profiler import ProfilerActivity, profile

    lik, clip = tr.model.likelihood, torch.nn.utils.clip_grad_norm_
    nll = lik.nll

    def labelled_nll(x, h):
        with record_function("vaekit::likelihood"):
            return nll(x, h)

    def labelled_clip(*a, **k):
        with record_function("vaekit::grad_norm"):
            return clip(*a, **k)

    def forward(x, step, eps=None):
        with record_function("vaekit::forward"):
            return tr.net(x, step, eps)

    tr.step()
    lik.nll, torch.nn.utils.clip_grad_norm_ = labelled_nll, labelled_clip  # labels, same numbers
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t = time.perf_counter()
            for _ in range(steps):
                tr.step(forward)
            wall = time.perf_counter() - t
    finally:
        del lik.nll
        torch.nn.utils.clip_grad_norm_ = clip
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    # by sequence number, the last forward op to start: the one that made the autograd node
    makers = {}
    for e in events:
        if e.sequence_nr >= 0 and any(c.name == "vaekit::forward" for c in callers(e)):
            makers[e.sequence_nr] = e
    totals: dict[str, float] = {}
    for e in events:
        chain = callers(e)
        names = [c.name for c in chain]
        node = next((c for c in chain if c.name.startswith("autograd::engine::evaluate_")), None)
        if e.name == "vaekit::forward":
            cat = HOST
        elif node is not None:  # backward: the category of the forward op behind the node
            maker = makers.get(node.sequence_nr) if "AccumulateGrad" not in node.name else None
            cat = categorize([c.name for c in callers(maker)]) if maker is not None else None
        else:
            cat = categorize(names)
        cat = cat or OTHER
        totals[cat] = totals.get(cat, 0.0) + e.self_cpu_time_total / 1e6
    totals[HOST] = totals.get(HOST, 0.0) + max(0.0, wall - sum(totals.values()))
    per_step = {k: v / steps for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}
    return {
        "steps": steps,
        "wall_seconds_per_step": wall / steps,
        "seconds_per_step": per_step,
        "share": {k: v * steps / wall for k, v in per_step.items()},
        "load": os.getloadavg()[0],
    }


# --- The table ----------------------------------------------------------------------------------


def parse_set(items: list[str]) -> dict:
    """key=value config overrides (vaekit train's flag names, with _ or -)."""
    out = {}
    for item in items:
        k, eq, v = item.partition("=")
        if not eq:
            sys.exit(f"roofline: --set wants key=value, got {item!r}")
        low = v.lower()
        out[k.replace("-", "_")] = (
            low == "true" if low in ("true", "false") else int(v) if v.isdigit() else v
        )
    return out


def measure(a: argparse.Namespace) -> dict:
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("roofline: --device cuda, but no CUDA device is available here")
    if device.type == "cpu" and "allocator" not in a.undo:
        keep_freed_memory()  # as vaekit.training.Trainer does
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    threads = [os.cpu_count() if t == "all" else int(t) for t in a.threads]
    if device.type == "cuda":
        threads = threads[:1]  # the host's threads hardly matter to a GPU step
    overrides = parse_set(a.set)
    res = {
        **provenance(a.device),
        "overrides": overrides,
        "undo": a.undo,
        "not_counted": NOT_COUNTED,
        "peak": {},
        "presets": {},
    }
    flops = {}
    for n in threads:
        torch.set_num_threads(n)
        fp32 = bf16 = None
        if not a.no_peak:
            fp32, bf16 = Peak(torch.float32, device, sync), Peak(torch.bfloat16, device, sync)
            fp32.measure(a.reps)
            bf16.measure(2)
            print(
                f"{n} thread(s): fp32 peak {fp32.wall:.1f} GFLOP/s (CPU time {fp32.cpu:.1f}), "
                f"bf16 {bf16.wall:.1f} (n={bf16.n})",
                flush=True,
            )
        for preset in a.presets:
            tr = Trainer(preset, device, overrides, tuple(a.undo))
            if preset not in flops:
                flops[preset] = count_flops(tr)
            row = res["presets"].setdefault(
                preset,
                {
                    "batch_size": tr.B,
                    "channels_last": tr.tcfg.channels_last,
                    "compile": tr.tcfg.compile,
                    "precision": tr.precision,
                    "gflop_per_image": flops[preset]["per_image"] / 1e9,
                    "gflop_per_image_by_op": {
                        k: v / 1e9 for k, v in flops[preset]["by_op"].items()
                    },
                    "threads": {},
                },
            )
            peak = bf16 if tr.precision == "bf16" else fp32  # measured between its repeats
            row["threads"][str(n)] = time_steps(tr, peak, a.reps, a.rep_seconds, a.warmup, sync)
            if a.profile and n == threads[0]:
                row["profile"] = profile_steps(tr, a.profile_steps)
            del tr
        if fp32 is None:
            continue
        fp32.measure(a.reps)
        res["peak"][str(n)] = {"fp32": fp32.record(), "bf16": bf16.record()}
        for preset, row in res["presets"].items():  # fractions of the best peak of the block
            t, f = row["threads"][str(n)], row["gflop_per_image"]
            pk = bf16 if row["precision"] == "bf16" else fp32  # the precision it trains in
            t["wall_gflops"] = f * t["wall_img_s"]
            t["fraction_of_peak"] = t["wall_gflops"] / pk.wall
            msg = f"  {preset:13s} {row['precision']} {f:6.3f} GFLOP/img "
            msg += f"{t['wall_img_s']:7.1f} img/s {t['wall_gflops']:5.1f} GFLOP/s "
            msg += f"{t['fraction_of_peak']:4.0%} of {pk.wall:.0f}"
            if n == 1:  # CPU time: one thread's wall time had it not been pre-empted
                t["cpu_gflops"] = f * t["cpu_img_s"]
                t["fraction_of_peak_cpu_time"] = t["cpu_gflops"] / pk.cpu
                msg += f" | CPU time {t['cpu_img_s']:7.1f} img/s "
                msg += f"{t['fraction_of_peak_cpu_time']:4.0%} of {pk.cpu:.0f}"
            print(msg + f" | load {t['load'][0]:.1f}-{t['load'][1]:.1f}", flush=True)
            if "profile" in row and n == threads[0]:
                shares = row["profile"]["share"]
                print("    " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()), flush=True)
    return res


def compare(a: argparse.Namespace) -> dict:
    """Each --compare variant in a fresh process per preset, in turn (A B A B ...), one thread:
    img/s by CPU time, kernel time and page faults per step. A process of its own per preset:
    the allocator's state after one preset would change the next one's page faults."""
    base = [sys.executable, __file__, "--threads", "1", "--no-peak", "--reps", str(a.reps)]
    base += ["--rep-seconds", str(a.rep_seconds), "--warmup", str(a.warmup), "--device", a.device]
    runs: dict[str, dict[str, list[dict]]] = {p: {v: [] for v in a.compare} for p in a.presets}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            for preset in a.presets:
                for v in a.compare:
                    out = Path(tmp) / "run.json"
                    cmd = [*base, "--presets", preset, *shlex.split(v), "--out", str(out)]
                    p = subprocess.run(cmd, capture_output=True, text=True)
                    if p.returncode:
                        sys.exit(f"roofline: {shlex.join(cmd)} failed:\n{p.stderr[-2000:]}")
                    t = json.loads(out.read_text())["presets"][preset]["threads"]["1"]
                    runs[preset][v].append(t)
                    print(
                        f"round {r + 1} {preset} {v or '(as is)'}: {t['cpu_img_s']:.1f} img/s "
                        f"(CPU time), {t['wall_img_s']:.1f} (wall), "
                        f"{t['kernel_seconds_per_step'] * 1e3:.1f} ms kernel time and "
                        f"{t['page_faults_per_step']:.0f} page faults a step",
                        flush=True,
                    )
    summary: dict[str, dict] = {}
    for preset, by_variant in runs.items():
        first = [t["cpu_img_s"] for t in by_variant[a.compare[0]]]
        for v, ts in by_variant.items():
            cpu = [t["cpu_img_s"] for t in ts]
            s = {
                "cpu_img_s": {"max": max(cpu), "median": statistics.median(cpu)},
                "best_over_first_best": max(cpu) / max(first),
                "median_round_ratio": statistics.median(
                    [x / y for x, y in zip(cpu, first, strict=True)]
                ),
                "kernel_ms_per_step": statistics.median(
                    [t["kernel_seconds_per_step"] * 1e3 for t in ts]
                ),
            }
            summary.setdefault(preset, {})[v] = s
            print(
                f"{preset} {v or '(as is)'}: best {max(cpu):.1f} img/s (CPU time), median "
                f"{s['cpu_img_s']['median']:.1f}; against the first: best/best "
                f"{s['best_over_first_best']:.3f}, median of rounds {s['median_round_ratio']:.3f}"
                f"; kernel time {s['kernel_ms_per_step']:.1f} ms a step"
            )
    return {"rounds": a.rounds, "variants": a.compare, "runs": runs, "summary": summary}


def markdown(res: dict) -> str:
    """benchmarks/README.md's tables from a roofline JSON: the fraction of the peak (1 thread:
    wall time, CPU time in brackets), and the profile's shares."""
    threads = list(res["peak"])
    head = ["preset", "batch, layout, precision", "GFLOP/img"]
    for n in threads:
        head += [f"{n} thread{'s' * (n != '1')}: img/s", "GFLOP/s", "of peak"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for preset, row in res["presets"].items():
        layout = "channels-last" if row["channels_last"] else "NCHW"
        setup = f"{row['batch_size']}, {layout}, {row['precision']}"
        cells = [f"`{preset}`", setup, f"{row['gflop_per_image']:.3f}"]
        for n in threads:
            t = row["threads"][n]
            cells += [
                f"{t['wall_img_s']:.0f}",
                f"{t['wall_gflops']:.1f}",
                f"{t['fraction_of_peak']:.0%}",
            ]
            if n == "1":
                cells[-3] += f" ({t['cpu_img_s']:.0f})"
                cells[-2] += f" ({t['cpu_gflops']:.1f})"
                cells[-1] += f" ({t['fraction_of_peak_cpu_time']:.0%})"
        lines.append("| " + " | ".join(cells) + " |")
    profiled = {p: r["profile"] for p, r in res["presets"].items() if "profile" in r}
    if profiled:
        cats = list(dict.fromkeys(c for p in profiled.values() for c in p["share"]))
        lines += ["", "| preset | s/step | " + " | ".join(cats) + " |"]
        lines.append("|" + " --- |" * (len(cats) + 2))
        for preset, p in profiled.items():
            shares = " | ".join(f"{p['share'].get(c, 0):.0%}" for c in cats)
            lines.append(f"| `{preset}` | {p['wall_seconds_per_step']:.2f} | {shares} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=list(PRESETS), help="[all presets]")
    ap.add_argument("--threads", nargs="+", default=["1", "all"], help="N or all [1 all]")
    ap.add_argument("--device", default="cpu", help="cpu or cuda [cpu]")
    ap.add_argument("--reps", type=int, default=5, help="timed repeats, the best kept [5]")
    ap.add_argument("--rep-seconds", type=float, default=2.0, help="length of a repeat [2]")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first [3]")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    ap.add_argument("--profile", action="store_true", help="also profile --profile-steps steps")
    ap.add_argument("--profile-steps", type=int, default=3)
    ap.add_argument(
        "--undo",
        nargs="*",
        default=[],
        choices=UNDO,
        help="time the step without these changes of issue 18 (all three: vaekit 0.2.0's step)",
    )
    ap.add_argument(
        "--compare",
        action="append",
        metavar="ARGS",
        help="a variant's extra arguments, once per variant: --compare= --compare='--set ...'",
    )
    ap.add_argument("--rounds", type=int, default=3, help="--compare: A B rounds [3]")
    ap.add_argument(
        "--no-peak",
        action="store_true",
        help="time the step only (--compare's runs: the peak's 16 MiB buffers would adapt "
        "glibc's malloc thresholds and hide --undo allocator's page faults)",
    )
    ap.add_argument("--out", type=Path, help="[benchmarks/results/roofline-CPU-{device}.json]")
    ap.add_argument("--table", type=Path, metavar="JSON", help="print a result's tables, run none")
    a = ap.parse_args()
    if a.table:
        print(markdown(json.loads(a.table.read_text())))
        return
    unknown = sorted(set(a.presets) - set(PRESETS))
    if unknown:
        sys.exit(f"roofline: unknown presets {unknown}; choose from {sorted(PRESETS)}")
    if a.compare:
        head = provenance(a.device)  # the date and load when the comparison starts
        res = {**head, **compare(a)}
        out = a.out or HERE / "results" / f"roofline-compare-{a.device}.json"
    else:
        res = measure(a)
        out = a.out or HERE / "results" / f"roofline-{cpu_slug()}-{a.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
