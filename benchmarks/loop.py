"""vaekit's own training loop against the machine's matrix-multiply peak (issue 33's target: seed
and mnist at >= 40% of the bf16 peak on CPUs with native bf16, >= 60% of the fp32 peak
elsewhere). Where roofline.py times the step alone, this times `vaekit train` as a user runs
it: a fresh process per run, data loading, shuffling, the progress bar and checkpointing
included. Start-up and the data read cancel out: an epoch's seconds are a 2-epoch run's minus a
1-epoch run's on the same --limit images (no test-set evaluation, no figures), the two run in
turn (A B A B ...) and each the best of --rounds. The FLOPs per image are roofline.py's count;
the peak (the precision the preset trains in, at the same threads) is measured before and after
the runs, the best kept. Run it alone.

    python benchmarks/loop.py --presets seed mnist      # all cores
    OMP_NUM_THREADS=1 python benchmarks/loop.py --presets mnist --limit 3840
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import cpu_slug, provenance
from roofline import Peak, Trainer, count_flops

from vaekit.outputs import write_json


def train_seconds(preset: str, epochs: int, limit: int, out: Path, extra: list[str]) -> float:
    """Wall seconds of one `vaekit train` process (start-up and the data read included)."""
    argv = [sys.executable, "-m", "vaekit", "train", "--preset", preset, "--epochs", str(epochs),
            "--limit", str(limit), "--eval-every", "0", "--no-figures", "--out", str(out),
            *extra]  # fmt: skip
    t = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - t


def loop_rate(preset: str, limit: int, rounds: int, extra: list[str]) -> dict:
    """images/s of one epoch of `vaekit train --preset preset` on limit images: best 2-epoch
    run minus best 1-epoch run."""
    best = {1: float("inf"), 2: float("inf")}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for epochs in (1, 2):
                out = Path(tmp) / f"{epochs}-{r}"
                best[epochs] = min(best[epochs], train_seconds(preset, epochs, limit, out, extra))
    epoch = best[2] - best[1]
    return {"seconds_1_epoch": best[1], "seconds_2_epochs": best[2], "epoch_seconds": epoch,
            "img_s": limit / epoch}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["seed", "mnist"], help="[seed mnist]")
    p.add_argument("--limit", type=int, default=7680, help="training images per epoch [7680]")
    p.add_argument("--rounds", type=int, default=2, help="A B rounds, the best kept [2]")
    p.add_argument("--train-args", default="", help="extra `vaekit train` flags, e.g. "
                   "'--precision fp32'")  # fmt: skip
    p.add_argument("--out", type=Path, help="[benchmarks/results/loop-{CPU model}-cpu.json]")
    a = p.parse_args()
    threads = int(os.environ.get("OMP_NUM_THREADS", os.cpu_count()))
    torch.set_num_threads(threads)
    extra = a.train_args.split()
    res = {**provenance("cpu"), "threads": threads, "limit": a.limit, "train_args": extra,
           "presets": {}}  # fmt: skip
    peaks = {"fp32": Peak(torch.float32, torch.device("cpu"), lambda: None),
             "bf16": Peak(torch.bfloat16, torch.device("cpu"), lambda: None)}  # fmt: skip
    for pk in peaks.values():
        pk.measure(3)
    overrides = (
        {"precision": extra[extra.index("--precision") + 1]} if "--precision" in extra else {}
    )
    for preset in a.presets:
        tr = Trainer(preset, torch.device("cpu"), overrides)
        gflop = count_flops(tr)["per_image"] / 1e9
        row = {"precision": tr.precision, "gflop_per_image": gflop, "batch_size": tr.B}
        del tr
        row |= loop_rate(preset, a.limit, a.rounds, extra)
        res["presets"][preset] = row
    for pk in peaks.values():
        pk.measure(3)
    res["peak"] = {k: pk.record() for k, pk in peaks.items()}
    for preset, row in res["presets"].items():
        row["gflops"] = row["img_s"] * row["gflop_per_image"]
        row["fraction_of_peak"] = row["gflops"] / peaks[row["precision"]].wall
        print(f"{preset:8s} {row['precision']} {row['img_s']:7.1f} img/s {row['gflops']:6.1f} "
              f"GFLOP/s = {row['fraction_of_peak']:4.0%} of the {row['precision']} peak "
              f"{peaks[row['precision']].wall:.0f} ({threads} threads)", flush=True)  # fmt: skip
    out = a.out or Path(__file__).parent / "results" / f"loop-{cpu_slug()}-cpu.json"
    write_json(out, res)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
