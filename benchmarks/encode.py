"""Encode speed as a user meets it: `vaekit encode RUN --data DATASET:SPLIT` in a fresh process,
wall clock including start-up and reading the data, once per precision in turn (A B A B ...),
and how far the bf16 means are from fp32's. Writes one JSON record. A benchmark, not a test:
run it alone (issue 33's target: MNIST's 60,000 training images in under 10 s on 2 cores).

    python benchmarks/encode.py runs/mnist --out benchmarks/results/encode-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import provenance

from vaekit.outputs import write_json


def encode_once(run: str, data: str, precision: str, out: Path) -> float:
    """Seconds of wall clock for one `vaekit encode` process."""
    argv = [sys.executable, "-m", "vaekit", "encode", run, "--data", data, "--out", str(out),
            "--precision", precision]  # fmt: skip
    t = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - t


def agreement(a: np.lib.npyio.NpzFile, b: np.lib.npyio.NpzFile) -> dict:
    """|mu_b - mu_a| in units of each latent's spread over the images (a's std), mean and max;
    the largest |logvar_b - logvar_a|."""
    err = np.abs(b["mu"] - a["mu"]) / a["mu"].std(0)
    return {"mu_err_mean_in_spread": float(err.mean()), "mu_err_max_in_spread": float(err.max()),
            "logvar_abs_err_max": float(np.abs(b["logvar"] - a["logvar"]).max())}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a trained run directory (e.g. --preset mnist)")
    p.add_argument("--data", default="mnist:train", help="what to encode [mnist:train]")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], help="[fp32 bf16]")
    p.add_argument("--repeats", type=int, default=3, help="rounds of A B ... [3]")
    p.add_argument("--target", type=float, default=10.0, help="seconds [10]")
    p.add_argument("--out", type=Path, required=True, help="the JSON record")
    a = p.parse_args()
    record = provenance("cpu")
    record |= {"run": a.run, "data": a.data, "threads": os.environ.get("OMP_NUM_THREADS", "all")}
    seconds: dict[str, list[float]] = {k: [] for k in a.precisions}
    with tempfile.TemporaryDirectory() as tmp:
        files = {k: Path(tmp) / f"{k}.npz" for k in a.precisions}
        for _ in range(a.repeats):
            for k in a.precisions:
                seconds[k].append(round(encode_once(a.run, a.data, k, files[k]), 2))
        arrays = {k: np.load(f) for k, f in files.items()}
        n = len(arrays[a.precisions[0]]["mu"])
        if "fp32" in arrays and "bf16" in arrays:
            record["bf16_vs_fp32"] = agreement(arrays["fp32"], arrays["bf16"])
    record["images"] = n
    record["seconds"] = seconds
    record["best_seconds"] = {k: min(v) for k, v in seconds.items()}
    record["target_seconds"] = a.target
    record["met"] = {k: min(v) < a.target for k, v in seconds.items()}
    write_json(a.out, record)
    print(json.dumps({k: record[k] for k in ("images", "seconds", "met")}, indent=1))


if __name__ == "__main__":
    main()
