"""What the benchmarks record beside their figures: the hardware and the commit."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import torch


def hardware(device: str) -> dict:
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": torch.get_num_threads(),
    }
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            ln.split(":", 1)[1].strip()
            for ln in cpuinfo.read_text().splitlines()
            if ln.startswith("model name")
        ]
        info["cpu"] = names[0] if names else platform.processor()
    if torch.cuda.is_available() and device in ("auto", "cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def commit() -> str:
    r = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent,
    )
    return r.stdout.strip() or "unknown"


def add_run_args(p, iw_samples: int, eval_limit: int) -> None:
    """The options the training-and-evaluation benchmarks share."""
    p.add_argument("--limit", type=int, default=0, help="first N training images (0 = all)")
    p.add_argument(
        "--iw-samples", type=int, default=iw_samples, help=f"importance samples K [{iw_samples}]"
    )
    p.add_argument(
        "--eval-limit", type=int, default=eval_limit, help=f"first N test images [{eval_limit}]"
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps [auto]")
    p.add_argument("--data-dir", type=Path, help="dataset root [$VAEKIT_DATA]")


def run_vaekit(argv: list[str], who: str) -> float:
    """Run one vaekit command in-process; its wall time in seconds (exits on failure)."""
    import sys
    import time

    from vaekit.cli import main

    t0 = time.perf_counter()
    if code := main(argv):
        sys.exit(f"{who}: 'vaekit {' '.join(argv)}' failed with status {code}")
    return time.perf_counter() - t0


def add_train_args(p, out: str, preset: str, epochs: int) -> None:
    """The options of the benchmarks that train a preset into a folder."""
    p.add_argument("--out", type=Path, default=Path(out), help=f"output folder [{out}]")
    p.add_argument("--preset", default=preset, help=f"preset [{preset}]")
    p.add_argument("--epochs", type=int, default=epochs, help=f"training epochs [{epochs}]")
