"""Speed benchmarks (issue 5): vaekit against the seed's pipeline, time to quality, scaling.

Every measurement is its own process (a fresh interpreter, its own peak memory from wait4),
run one at a time. Run it alone: two PyTorch processes on a small machine slow each other.

    python benchmarks/speed.py pairs   --pairs 5 --limit 9600    # reference vs --preset seed
    python benchmarks/speed.py ttq     --target 93.30            # E epochs of --preset mnist to
                                                                 # the seed's loss, epochs timed A B
    python benchmarks/speed.py scaling --limit 6400              # batch size and image size
Each writes its table as JSON (and scaling a PNG) under --out [benchmarks/results].
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import commit, hardware

HERE = Path(__file__).parent
PY = sys.executable


def run(cmd: list[str], metrics: Path | None = None) -> dict:
    """Run cmd to completion: its last metrics row (metrics.jsonl, or the last JSON line it
    printed), wall seconds and peak RSS in MiB. Exits with its output if it fails."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        sys.exit(f"speed: {shlex.join(cmd)} failed ({p.returncode}):\n{out[-2000:]}")
    lines = metrics.read_text().splitlines() if metrics else out.splitlines()
    row = json.loads([ln for ln in lines if ln.startswith("{")][-1])
    row["wall_seconds_process"] = time.perf_counter() - t0
    row["peak_rss_mib"] = usage.ru_maxrss / 1024  # KiB on Linux
    return row


def vaekit_cmd(args: list[str], out: Path) -> list[str]:
    return [PY, "-m", "vaekit", "train", "--out", str(out), "--no-figures", *args]


def stats(xs: list[float]) -> dict:
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs)}


def cmd_pairs(a: argparse.Namespace) -> dict:
    """Reference and vaekit alternately (A B A B ...), one timed training epoch on --limit
    images, after --warmup-epochs untimed ones (compilation, autotuning, allocator warm-up)."""
    warmup = a.warmup_epochs if a.warmup_epochs is not None else int(a.device != "cpu")
    if warmup < 0:
        sys.exit(f"speed: --warmup-epochs must be >= 0, got {warmup}")
    epochs = str(1 + warmup)  # the last epoch's row is the one kept
    ref = [PY, str(HERE / "reference.py"), "--limit", str(a.limit), "--epochs", epochs]
    ref += ["--no-eval", "--device", a.device]
    mine = ["--preset", a.preset, "--limit", str(a.limit), "--epochs", epochs, "--eval-every", "0"]
    mine += ["--device", a.device, *shlex.split(a.vaekit_args)]
    rows = []
    for i in range(a.pairs):
        with tempfile.TemporaryDirectory() as tmp:
            r = run(ref)
            v = run(vaekit_cmd(mine, Path(tmp) / "run"), Path(tmp) / "run" / "metrics.jsonl")
        pair = {
            "reference_img_s": r["images_per_second"],
            "vaekit_img_s": v["images_per_second"],
            "ratio": v["images_per_second"] / r["images_per_second"],
            "reference_peak_rss_mib": r["peak_rss_mib"],
            "vaekit_peak_rss_mib": v["peak_rss_mib"],
        }
        rows.append(pair)
        print(
            f"pair {i + 1}/{a.pairs}: reference {pair['reference_img_s']:.0f} img/s, vaekit "
            f"{pair['vaekit_img_s']:.0f} img/s, ratio {pair['ratio']:.2f}x",
            flush=True,
        )
    res = {
        "warmup_epochs": warmup,
        "reference_cmd": shlex.join(ref),
        "vaekit_cmd": "vaekit train " + shlex.join(mine),
        "pairs": rows,
        "ratio": stats([r["ratio"] for r in rows]),
        "reference_img_s": stats([r["reference_img_s"] for r in rows]),
        "vaekit_img_s": stats([r["vaekit_img_s"] for r in rows]),
    }
    for k in ("reference", "vaekit"):
        med = res[f"{k}_img_s"]["median"]
        res[f"{k}_seconds_per_60k_epoch"] = 60000 / med
        res[f"{k}_peak_rss_mib"] = max(r[f"{k}_peak_rss_mib"] for r in rows)
    r = res["ratio"]
    print(
        f"ratio vaekit/reference: min {r['min']:.2f}x, median {r['median']:.2f}x, "
        f"max {r['max']:.2f}x over {a.pairs} pairs"
    )
    return res


REFERENCE_EPOCHS = 20  # the seed's run: its test loss after these epochs is the target


def train_to_target(a: argparse.Namespace) -> dict:
    """Train --preset (its schedule laid over --max-epochs, the test loss evaluated after every
    epoch) until the test loss is <= --target: the first such epoch E, the curve, and the wall
    time from launch (start-up and test passes included, as in the reference's 20 epochs)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        args = ["--preset", a.preset, "--epochs", str(a.max_epochs), "--device", a.device]
        cmd = vaekit_cmd([*args, *shlex.split(a.vaekit_args)], out)
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rows, hit = [], None
        while hit is None and p.poll() is None:
            time.sleep(0.5)
            m = out / "metrics.jsonl"
            rows = [json.loads(ln) for ln in m.read_text().splitlines()] if m.exists() else []
            hit = next((r for r in rows if r.get("test_loss", 1e9) <= a.target), None)
        wall = time.perf_counter() - t0
        if hit is None and p.returncode:
            sys.exit(f"speed: {shlex.join(cmd)} failed ({p.returncode}); run it to see why")
        p.send_signal(signal.SIGTERM)
        p.wait()
    return {
        "cmd": "vaekit train " + shlex.join(cmd[4:]),
        "reached": hit is not None,
        "epoch": hit and hit["epoch"],
        "test_loss": hit and hit["test_loss"],
        "wall_seconds": wall,
        "curve": [(r["epoch"], round(r["test_loss"], 2)) for r in rows if "test_loss" in r],
    }


def cmd_ttq(a: argparse.Namespace) -> dict:
    """Time to quality (issue 18), as a fraction of the seed pipeline's: (E x vaekit's epoch
    seconds) / (20 x the reference's epoch seconds), where E is the first epoch at which --preset
    reaches the reference's 20-epoch test loss (--target) and the two epoch times are measured
    side by side in this invocation (pairs, A B A B), so that the machine cancels out. E comes
    from training (hours) unless --epoch gives it from an earlier run of the same code."""
    found = {"epoch": a.epoch, "given": True} if a.epoch else train_to_target(a)
    res = {"target": a.target, "reference_epochs": REFERENCE_EPOCHS, "found": found}
    if not found["epoch"]:
        print(f"ttq: {a.preset} did not reach {a.target} in {a.max_epochs} epochs: a miss")
        return res
    E = found["epoch"]
    pairs = cmd_pairs(a)
    fractions = [E * p["reference_img_s"] / (REFERENCE_EPOCHS * p["vaekit_img_s"])
                 for p in pairs["pairs"]]  # fmt: skip
    res.update(
        epoch=E,
        pairs=pairs,
        vaekit_epoch_seconds=pairs["vaekit_seconds_per_60k_epoch"],
        reference_epoch_seconds=pairs["reference_seconds_per_60k_epoch"],
        time_to_quality=E
        * pairs["vaekit_seconds_per_60k_epoch"]
        / (REFERENCE_EPOCHS * pairs["reference_seconds_per_60k_epoch"]),
        time_to_quality_per_pair=stats(fractions),
    )
    if not found.get("given") and a.reference_seconds:  # the direct wall-clock comparison
        res["wall_fraction_of_reference"] = found["wall_seconds"] / a.reference_seconds
        res["reference_seconds"] = a.reference_seconds
    print(
        f"time to quality: E = {E} epochs x {res['vaekit_epoch_seconds']:.1f} s / "
        f"({REFERENCE_EPOCHS} x {res['reference_epoch_seconds']:.1f} s) = "
        f"{res['time_to_quality']:.3f} of the reference (per pair: min "
        f"{min(fractions):.3f}, max {max(fractions):.3f})"
    )
    return res


def cmd_scaling(a: argparse.Namespace) -> dict:
    """Throughput and peak memory of --preset against batch size, then against image size."""
    rows = []
    points = [("batch_size", b, 28) for b in a.batch_sizes]
    points += [("image_size", 64, s) for s in a.image_sizes]
    for kind, b, s in points:
        args = ["--preset", a.preset, "--epochs", "1", "--eval-every", "0", "--device", a.device]
        args += ["--batch-size", str(b), "--limit", str(a.limit), *shlex.split(a.vaekit_args)]
        if s != 28:
            args += ["--image-size", str(s)]
        with tempfile.TemporaryDirectory() as tmp:
            r = run(vaekit_cmd(args, Path(tmp) / "run"), Path(tmp) / "run" / "metrics.jsonl")
        row = {
            "vary": kind,
            "batch_size": b,
            "image_size": s,
            "img_s": r["images_per_second"],
            "peak_rss_mib": r["peak_rss_mib"],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    what = f"--preset {a.preset} --limit {a.limit} --epochs 1 (varying --batch-size, --image-size)"
    res = {"cmd": "vaekit train " + what, "rows": rows}
    plot_scaling(rows, a.out / "scaling.png")
    return res


def plot_scaling(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), dpi=120)
    panels = [("batch_size", "batch size (28 px)"), ("image_size", "image size, px (batch 64)")]
    for ax, (kind, label) in zip(axes, panels, strict=True):
        pts = [r for r in rows if r["vary"] == kind]
        xs = [r[kind] for r in pts]
        ax.plot(xs, [r["img_s"] for r in pts], "o-", label="images/s")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel(label)
        ax.set_ylabel("images / s")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        mem = ax.twinx()
        mem.plot(xs, [r["peak_rss_mib"] for r in pts], "s--", color="tab:red")
        mem.set_ylabel("peak RSS, MiB", color="tab:red")
        mem.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    for name in ("pairs", "ttq", "scaling"):
        q = sub.add_parser(name)
        q.add_argument("--device", default="cpu")
        q.add_argument("--out", type=Path, default=HERE / "results")
        q.add_argument(
            "--vaekit-args", default="--precision fp32", help="vaekit train flags, quoted [fp32]"
        )
    for name in ("pairs", "ttq"):  # ttq times its epochs as pairs does
        q = sub.choices[name]
        q.add_argument("--pairs", type=int, default=5 if name == "pairs" else 3)
        q.add_argument("--limit", type=int, default=9600, help="images per timed run")
        q.add_argument(
            "--warmup-epochs",
            type=int,
            help="untimed epochs before the timed one, in every run [0 on cpu, 1 elsewhere]",
        )
    sub.choices["pairs"].add_argument("--preset", default="seed")
    sub.choices["ttq"].add_argument("--preset", default="mnist")
    sub.choices["ttq"].add_argument("--target", type=float, default=93.30)
    sub.choices["ttq"].add_argument(
        "--max-epochs", type=int, default=REFERENCE_EPOCHS, help="the schedule's length [20]"
    )
    sub.choices["ttq"].add_argument(
        "--epoch", type=int, help="E from an earlier run of the same code: skip the training"
    )
    sub.choices["ttq"].add_argument(
        "--reference-seconds",
        type=float,
        default=5839.5,
        help="the seed pipeline's 20-epoch wall time, for the direct comparison [5839.5]",
    )
    sub.choices["scaling"].add_argument("--preset", default="mnist")
    sub.choices["scaling"].add_argument("--limit", type=int, default=6400)
    sub.choices["scaling"].add_argument(
        "--batch-sizes", type=int, nargs="+", default=[16, 32, 64, 128, 256, 512]
    )
    sub.choices["scaling"].add_argument(
        "--image-sizes", type=int, nargs="+", default=[28, 32, 64, 128]
    )
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    res = {"pairs": cmd_pairs, "ttq": cmd_ttq, "scaling": cmd_scaling}[a.mode](a)
    res.update(
        mode=a.mode,
        command=shlex.join([Path(PY).name, *sys.argv]),
        date=time.strftime("%Y-%m-%d %H:%M"),
        commit=commit(),
        hardware=hardware(a.device),
    )
    path = a.out / f"{a.mode}-{a.device}.json"
    path.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
