"""Test NLL on dynamically binarized MNIST: train a preset (`mnist-nll`, or `mnist-hvae`), then
evaluate it with K importance samples on the full test set. Writes RUN_DIR/results_nll.json with
the figures, the commands, the hardware, the commit and the times. A benchmark, not a test: run
it alone. Stopped at any point, it continues where it was when run again with the same --out:
training from last.pt, the bound from its progress file (mnist-nll on a 2-core CPU: ~1.5 h,
then ~2.3 h); each sitting (start, seconds, threads, the CPU's model and flags, commit) is added
to RUN_DIR/sittings.jsonl and listed in the record.

    python benchmarks/results_nll.py --out runs/results-nll              # the full protocol
    python benchmarks/results_nll.py --preset mnist-hvae --iw-samples 1000 \
        --out runs/results-nll-hvae                                      # the hierarchical VAE
    python benchmarks/results_nll.py --out /tmp/smoke --epochs 1 --limit 512 --iw-samples 10 \\
        --eval-limit 100                                                 # a smoke run
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import signal
import sys
import time
from pathlib import Path

import torch
from common import add_run_args, command, commit, hardware, lscpu, run_vaekit


def run(folder: Path, name: str, /, *args, **kwargs) -> tuple:
    """Run one vaekit operation (see common.run_vaekit): (its record, seconds); append the
    sitting (when, where: the CPU and any GPU, how long; also when stopped) to
    FOLDER/sittings.jsonl: a run of hours spans sessions, and the machine can change between
    them (benchmarks/device_resume.py continues one on a lent GPU)."""
    start, t0 = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    try:
        return run_vaekit("results_nll", name, *args, **kwargs)
    finally:
        cpu = lscpu()
        row = {
            "command": name,
            "start": start.strftime("%Y-%m-%d %H:%M:%S UTC"),
            "seconds": round(time.perf_counter() - t0, 1),
            "threads": torch.get_num_threads(),
            "cpu": {k: v for k, v in cpu.items() if k != "flags"},
            "commit": commit(),
        }
        if torch.cuda.is_available() and kwargs.get("device", "auto") in ("auto", "cuda"):
            row["gpu"] = torch.cuda.get_device_name(0)  # a sitting on a lent GPU
        with open(folder / "sittings.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/results-nll"), help="run directory")
    p.add_argument("--preset", default="mnist-nll", help="preset [mnist-nll; or mnist-hvae]")
    p.add_argument("--epochs", type=int, help="training epochs [the preset's]")
    p.add_argument("--ship", type=Path, help="also write the final weights here (safetensors)")
    add_run_args(p, iw_samples=5000, eval_limit=0)
    a = p.parse_args()
    # SIGINT and SIGTERM stop it cleanly, also when started in the background (where SIGINT
    # starts ignored): training saves at the next step, the bound keeps its finished blocks,
    # and the sitting is recorded.
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.default_int_handler)

    epochs = {"epochs": a.epochs} if a.epochs else {}  # else the preset's
    train = dict(out=a.out, preset=a.preset, device=a.device, limit=a.limit, **epochs,
                 data_dir=a.data_dir)  # fmt: skip
    if (a.out / "last.pt").exists():  # continue an interrupted run
        train = dict(resume=a.out, device=a.device, data_dir=a.data_dir)
    evaluate = dict(device=a.device, iw_samples=a.iw_samples, limit=a.eval_limit,
                    out=a.out / "eval_iw.json", data_dir=a.data_dir)  # fmt: skip
    train_s = run(a.out, "train", **train)[1]
    rows = {}  # epoch -> its metrics row (the last one written, if an epoch was redone)
    for line in (a.out / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        rows[row["epoch"]] = row
    done = max(rows, default=0)
    epochs = json.loads((a.out / "config.json").read_text())["train"]["epochs"]
    if done < epochs:  # stopped by a signal: the model is not the final one
        sys.exit(
            f"results_nll: training stopped after epoch {done} of {epochs}; "
            "run the same command again to continue"
        )
    ev, eval_s = run(a.out, "evaluate", a.out, **evaluate)
    result = {
        "protocol": "MNIST, dynamic binarization for training, test set binarized once (seed 0),"
        f" Bernoulli decoder, preset {a.preset}, K={a.iw_samples} importance samples",
        "eval": ev,
        # Summed over the invocations that built the run: the finished training epochs (not
        # the test passes, start-ups, nor an epoch cut short by a stop) and the time spent on
        # the importance-weighted bound; then this invocation's own wall times.
        "train_epoch_seconds_total": sum(r["epoch_seconds"] for r in rows.values()),
        "iw_seconds_total": ev["iw_seconds"],
        "train_seconds": train_s,
        "eval_seconds": eval_s,
        "commands": [command("train", **train), command("evaluate", a.out, **evaluate)],
        "sittings": [json.loads(ln) for ln in (a.out / "sittings.jsonl").read_text().splitlines()],
        "hardware": hardware(a.device),
        "commit": commit(),
        "date": datetime.date.today().isoformat(),
    }
    result["eval"].pop("kl_per_dim", None)  # kept in eval_iw.json
    if a.ship:
        result["shipped"] = ship(a.out, a.ship)
    (a.out / "results_nll.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result["eval"].get(k) for k in ("nll_iw", "elbo", "bits_per_dim")}))


CHECK_IMAGES = 500  # the shipped weights' check: the ELBO of the first 500 test images


def ship(run_dir: Path, path: Path) -> dict:
    """Export the run's final weights to path (safetensors, with the run's record) and return
    what tests/test_records.py checks: the file's size and SHA-256, and the ELBO (nats) of the
    first CHECK_IMAGES test images from the file alone, with its standard error over them."""
    import vaekit

    vaekit.export(run_dir, format="safetensors", out=path)
    ev = vaekit.evaluate(path, limit=CHECK_IMAGES, probe=False)
    neg_elbo = per_image_neg_elbo(path)
    assert abs(neg_elbo.mean().item() + ev["elbo"]) < 1e-3, "the same pass as evaluate's"
    data = path.read_bytes()
    check = {"images": CHECK_IMAGES, "elbo": ev["elbo"],
             "elbo_sem": (neg_elbo.std() / CHECK_IMAGES**0.5).item(),
             "command": f"vaekit evaluate {path} --limit {CHECK_IMAGES} --no-probe"}  # fmt: skip
    return {"file": str(path), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "check": check}  # fmt: skip


def per_image_neg_elbo(path: Path) -> torch.Tensor:
    """-ELBO (nats) of each of the first CHECK_IMAGES test images (CHECK_IMAGES,): evaluate's
    pass (one batch of its size, z drawn under seed 0), image by image."""
    from vaekit.api.runs import open_run
    from vaekit.evaluation.bound import to_float

    r = open_run(path)
    x = to_float(r.test_set()[0][:CHECK_IMAGES])
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        out = r.model(x)
    kl = sum(k.flatten(1).sum(1).double() for k in out["kl"])
    return r.model.likelihood.discrete_nll(out["recon"]).double() + kl


if __name__ == "__main__":
    main()
