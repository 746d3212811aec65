"""What the benchmarks record beside their figures: the command, date, hardware (the CPU's
model and flags: the machines change between sessions) and commit."""

from __future__ import annotations

import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

from vaekit.runtime.precision import cpu_flags


def lscpu() -> dict:
    """The CPU's model, family and flags (lscpu; {} where there is none)."""
    try:
        r = subprocess.run(
            ["lscpu"], capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"}
        )
    except OSError:
        return {}
    info = {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in r.stdout.splitlines())}
    keep = ("Model name", "Vendor ID", "CPU family", "Model", "Stepping", "CPU(s)",
            "Thread(s) per core", "CPU max MHz", "L2 cache")  # fmt: skip
    flags = sorted(cpu_flags())
    simd = [f for f in flags if re.match(r"avx|amx|fma|sse4", f)]
    return {**{k: info[k] for k in keep if k in info}, "simd_flags": simd, "flags": flags}


def cpu_slug() -> str:
    """The CPU model for a record's file name (records are kept per CPU model): lscpu's model
    name, family and model, e.g. "amd-epyc-25-17"."""
    info = lscpu()
    words = " ".join(info.get(k, "") for k in ("Model name", "CPU family", "Model"))
    return re.sub(r"[^a-z0-9]+", "-", words.lower()).strip("-") or "unknown-cpu"


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
    info["lscpu"] = lscpu()
    if torch.cuda.is_available() and device in ("auto", "cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def provenance(device: str) -> dict:
    """The header of a benchmark's record: command, date (UTC), commit, hardware, load."""
    return {
        "command": shlex.join(["python", *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit(),
        "hardware": hardware(device),
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
    }


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


def run_vaekit(who: str, name: str, *args, **kwargs) -> tuple:
    """Call the operation vaekit.api.NAME(*args, **kwargs) in-process (train: train_into, which
    does not load the model after): (its record, its wall time in seconds); on failure exits
    with its one-line error, and says so when stopped."""
    import vaekit.api
    from vaekit.api.train import train_into
    from vaekit.checkpoint import CheckpointError
    from vaekit.errors import DataError
    from vaekit.training import TrainError

    t0 = time.perf_counter()
    try:
        fn = train_into if name == "train" else getattr(vaekit.api, name)
        record = fn(*args, **kwargs)
    except KeyboardInterrupt:
        sys.exit(f"{who}: stopped during 'vaekit {name}'")
    except (CheckpointError, DataError, TrainError, ValueError, ImportError, OSError) as e:
        sys.exit(f"{who}: 'vaekit {name}' failed: {e}")
    return record, time.perf_counter() - t0


def command(name: str, *args, **kwargs) -> str:
    """The `vaekit NAME ...` command line that does what vaekit.api.NAME(*args, **kwargs)
    does (for the record): keyword x_y=v is --x-y v, True --x-y, False --no-x-y, None is
    left out."""
    words = ["vaekit", name, *map(str, args)]
    for k, v in kwargs.items():
        flag = "--" + k.replace("_", "-")
        if v is None:
            continue
        if isinstance(v, bool):
            words.append(flag if v else "--no-" + flag[2:])
        elif isinstance(v, (list, tuple)):
            words += [flag, *map(str, v)]
        else:
            words += [flag, str(v)]
    return shlex.join(words)


def train_fields(flags: list[str]) -> dict:
    """`vaekit train` flags (--lr 1e-3 --no-figures ...) as vaekit.train's config fields."""
    from vaekit.cli import build_parser
    from vaekit.cli.train import config_values

    return config_values(build_parser().parse_args(["train", *flags]))


def add_train_args(p, out: str, preset: str, epochs: int) -> None:
    """The options of the benchmarks that train a preset into a folder."""
    p.add_argument("--out", type=Path, default=Path(out), help=f"output folder [{out}]")
    p.add_argument("--preset", default=preset, help=f"preset [{preset}]")
    p.add_argument("--epochs", type=int, default=epochs, help=f"training epochs [{epochs}]")
