"""A GPU run, prepared (issue 33): everything vaekit does on CUDA, measured in one go on a lent
GPU, offline and in under 8 minutes, into one JSON record. No GPU has been lent to this project
yet, so this is the first code that runs vaekit on CUDA at all: each section is recorded as it
finishes (an error in one is recorded and the next one runs).

Sections:
- peak: the bf16, tf32 and fp32 matrix-multiply peaks (GFLOP/s; roofline.py's Peak);
- presets: every preset's training step (roofline.py's Trainer: vaekit's own train_step, data on
  the device) in bf16 autocast, images/s and its fraction of the bf16 peak (target >= 30%);
- epoch: `vaekit train --preset mnist` (the data resident on the device), 2 epochs, the second
  epoch's wall time, with --compile off and on (target: <= 1 s);
- hvae: a short `mnist-hvae` run (1 epoch of 10,000 images) and its test loss;
- torchrun: the same short mnist run under `torchrun --nproc_per_node 1` (DDP on one GPU);
- cuda_paths: fused AdamW on, bf16 autocast's output dtype, a streamed (pinned-memory) batch
  equal to the resident one, and a checkpoint trained on the GPU loaded on the CPU giving the
  same test -ELBO as on the GPU.

    make bench-gpu                                  # on a machine with a GPU
    python benchmarks/gpu.py --device cpu --smoke --out /tmp/gpu.json  # the script, checked on CPU
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
from common import provenance
from roofline import Peak, Trainer, count_flops, time_steps

from vaekit.config import PRESETS
from vaekit.outputs import write_json

HERE = Path(__file__).parent
SECTIONS = ("peak", "presets", "epoch", "short_runs", "cuda_paths")


def vaekit_train(out: Path, args: list[str], torchrun: bool = False) -> dict:
    """Run `vaekit train ... --out OUT` in a fresh process (under torchrun with one process);
    its wall time and metrics.jsonl rows."""
    head = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "-m"]
    argv = [*(head if torchrun else [sys.executable, "-m"]), "vaekit", "train", *args,
            "--out", str(out), "--no-figures"]  # fmt: skip
    t = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed: {r.stderr.strip().splitlines()[-1:]}")
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    return {"command": " ".join(argv[1:]), "wall_seconds": time.perf_counter() - t, "rows": rows}


def peaks(device: torch.device, sync, smoke: bool) -> dict:
    out = {}
    for name, dtype, tf32 in (("bf16", torch.bfloat16, False), ("tf32", torch.float32, True),
                              ("fp32", torch.float32, False)):  # fmt: skip
        torch.backends.cuda.matmul.allow_tf32 = tf32
        p = Peak(dtype, device, sync)
        p.measure(1 if smoke else 10)
        out[name] = p.record()
    torch.backends.cuda.matmul.allow_tf32 = False
    return out


def presets(device: torch.device, sync, peak_bf16: float, smoke: bool) -> dict:
    out = {}
    for preset in ["seed", "mnist"] if smoke else list(PRESETS):
        tr = Trainer(preset, device, {"precision": "bf16"})
        flops = count_flops(tr)["per_image"]
        t = time_steps(tr, None, reps=1 if smoke else 3, rep_seconds=0.05 if smoke else 1.0,
                       warmup=1 if smoke else 5, sync=sync)  # fmt: skip
        gflops = flops * t["wall_img_s"] / 1e9
        out[preset] = {"gflop_per_image": flops / 1e9, "img_s": t["wall_img_s"],
                       "gflops": gflops, "fraction_of_bf16_peak": gflops / peak_bf16,
                       "batch_size": tr.B}  # fmt: skip
        del tr
    return out


def epochs(device: str, tmp: Path, smoke: bool) -> dict:
    """The mnist preset's second epoch (the first pays for start-up and compilation)."""
    size = ["--limit", "1024", "--epochs", "1"] if smoke else ["--epochs", "2"]
    out = {}
    for compile_ in ("--no-compile", "--compile"):
        r = vaekit_train(tmp / f"epoch{compile_}", ["--preset", "mnist", "--device", device,
                         compile_, *size])  # fmt: skip
        last = r["rows"][-1]
        out[compile_.strip("-")] = {
            "epoch_seconds": last["epoch_seconds"],
            "images_per_second": last["images_per_second"],
            "test_loss": last.get("test_loss"),
            "command": r["command"],
        }
    return out


def short_runs(device: str, tmp: Path, smoke: bool) -> dict:
    n = "512" if smoke else "10000"
    hvae = vaekit_train(tmp / "hvae", ["--preset", "mnist-hvae", "--epochs", "1", "--limit", n,
                                       "--device", device])  # fmt: skip
    ddp = vaekit_train(tmp / "ddp", ["--preset", "mnist", "--epochs", "1", "--limit", n,
                                     "--device", device], torchrun=True)  # fmt: skip
    keep = ("epoch_seconds", "images_per_second", "test_loss")
    return {name: {"command": r["command"], "wall_seconds": r["wall_seconds"],
                   **{k: r["rows"][-1].get(k) for k in keep}}
            for name, r in (("hvae", hvae), ("torchrun", ddp))}  # fmt: skip


def cuda_paths(device: torch.device, tmp: Path) -> dict:
    """The device-specific code paths, each checked for what it should do."""
    from vaekit import checkpoint
    from vaekit.data import load_split
    from vaekit.evaluation.bound import evaluate
    from vaekit.training.batches import BatchSource
    from vaekit.training.trainer import fused_adamw

    conv = torch.nn.Conv2d(1, 8, 3).to(device)
    with torch.autocast(device.type, torch.bfloat16):
        dtype = conv(torch.rand(2, 1, 8, 8, device=device)).dtype
    x = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    resident, streamed = (BatchSource(x, 16, device, g, stream=s) for s in (False, True))
    same_batch = torch.equal(resident.batch(perm.to(device), 1).x, streamed.batch(perm, 1).x)
    ckpt = checkpoint.load(tmp / "hvae" / "last.pt")  # trained on the device, loaded to the CPU
    x_test = load_split("mnist", "test")[0][:500]
    elbo = {d: evaluate(checkpoint.build_model(ckpt).to(d).eval(), x_test)["elbo"]
            for d in ("cpu", str(device))}  # fmt: skip
    return {"fused_adamw": fused_adamw(device), "autocast_dtype": str(dtype),
            "streamed_batch_equals_resident": same_batch,
            "test_elbo_500": {str(d): v for d, v in elbo.items()},
            "elbo_cpu_minus_device": elbo["cpu"] - elbo[str(device)]}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda [cuda]; cpu only to check the script")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks that it runs")
    p.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS,
                   help="which to run [all]; cuda_paths needs short_runs")  # fmt: skip
    p.add_argument("--out", type=Path, help="[benchmarks/results/gpu-DEVICE_NAME.json]")
    a = p.parse_args()
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench-gpu: no CUDA device here (this benchmark is for a lent GPU)")
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    name = torch.cuda.get_device_name(device).replace(" ", "-") if device.type == "cuda" else "cpu"
    out = a.out or HERE / "results" / f"gpu-{name}.json"
    record: dict = {**provenance(a.device), "smoke": a.smoke, "errors": {}}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        sections = {
            "peak": lambda: peaks(device, sync, a.smoke),
            "presets": lambda: presets(
                device, sync, record["peak"]["bf16"]["wall_gflops"], a.smoke
            ),  # fmt: skip
            "epoch": lambda: epochs(a.device, Path(tmp), a.smoke),
            "short_runs": lambda: short_runs(a.device, Path(tmp), a.smoke),
            "cuda_paths": lambda: cuda_paths(device, Path(tmp)),
        }
        for key in a.sections:
            run = sections[key]
            t = time.perf_counter()
            try:
                record[key] = run()
            except Exception as e:  # recorded, and the next section still runs
                record["errors"][key] = "".join(traceback.format_exception_only(e)).strip()
                print(f"bench-gpu: {key} failed: {record['errors'][key]}", file=sys.stderr)
            print(f"{key}: {time.perf_counter() - t:.1f} s", flush=True)
            record["seconds"] = time.perf_counter() - t0
            write_json(out, record)
    print(f"wrote {out} ({record['seconds']:.0f} s, {len(record['errors'])} sections failed)")
    sys.exit(1 if record["errors"] else 0)


if __name__ == "__main__":
    main()
