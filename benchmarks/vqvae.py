"""Issue 31's VQ-VAE targets on a trained mnist-vqvae run: fit its PixelCNN prior, evaluate
(reconstruction error, codebook usage, the prior's bits per image) and measure sample and
reconstruction quality (vaekit metrics: 10,000 samples at T = 1, MNIST classifier features).
The run is trained beforehand by the command given with --train-command (its wall time from
--train-seconds); the record is rewritten after every stage.

    python benchmarks/vqvae.py --run runs/mnist-vqvae --out benchmarks/results/vqvae-mnist-cpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import command, provenance, run_vaekit

from vaekit.config import PRESETS
from vaekit.outputs import write_json

RECON_FID_TARGET = 1.15  # mnist-ae's reconstruction FID (vaekit metrics, 10,000 test images)
SAMPLE_FID_TARGET = 25.0  # below


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True, help="the trained mnist-vqvae run dir")
    p.add_argument("--prior-epochs", type=int, default=10)
    p.add_argument("--prior-channels", type=int, default=96, help="the PixelCNN's width [96]")
    p.add_argument("--prior-layers", type=int, default=8, help="its gated layers [8]")
    p.add_argument("--n", type=int, default=10_000, help="samples for vaekit metrics")
    p.add_argument("--temperature", type=float, default=1.0, help="the samples' (target: 1)")
    p.add_argument("--train-command", default="", help="how the run was trained")
    p.add_argument("--train-seconds", type=float, help="its wall time")
    p.add_argument("--commit", help="the commit of the code that runs (a copy outside git)")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    rows = [json.loads(ln) for ln in (a.run / "metrics.jsonl").read_text().splitlines()]
    config = json.loads((a.run / "config.json").read_text())
    record = {
        **provenance("cpu"),
        "threads": 1,
        "run": str(a.run),
        "model": config["model"],
        "train": {"command": a.train_command, "wall_seconds": a.train_seconds,
                  "epochs": len(rows), "preset_epochs": PRESETS["mnist-vqvae"]["epochs"],
                  "config": config["train"],
                  "epoch_seconds": sum(r["epoch_seconds"] for r in rows), "last_row": rows[-1]},
        "commands": [a.train_command],
        "targets": {},
    }  # fmt: skip
    record["commit"] = a.commit or record["commit"]
    stage(record, a, "prior", a.run, kind="pixelcnn", epochs=a.prior_epochs,
          channels=a.prior_channels, layers=a.prior_layers)  # fmt: skip
    stage(record, a, "evaluate", a.run, probe=False)
    stage(record, a, "metrics", a.run, n=a.n, temperature=a.temperature, seed=0, prior="pixelcnn")
    print(json.dumps(record["targets"], indent=2))


def stage(record: dict, a: argparse.Namespace, name: str, *args, **kwargs) -> None:
    """Run vaekit.api.NAME, keep its record, wall time and command line; judge the targets;
    rewrite the record."""
    print(f"vqvae benchmark: vaekit {name}...", file=sys.stderr, flush=True)
    res, seconds = run_vaekit("vqvae benchmark", name, *args, **kwargs)
    if name == "prior":  # the fitted file; its fit's epochs from the work folder's state
        import torch

        state = torch.load(res.with_suffix(".work") / "state.pt", weights_only=True)
        res = {"path": str(res), "options": state["options"], "fit": state["fit"],
               "history": state["history"]}  # fmt: skip
    record[name] = {"record": res, "wall_seconds": seconds}
    record["commands"].append(command(name, *args, **kwargs))
    record["targets"] = targets(record)
    write_json(a.out, record)


def targets(record: dict) -> dict:
    """Each of issue 31's mnist-vqvae targets: the figure, the target, met or missed."""
    out = {}
    ev = record.get("evaluate", {}).get("record")
    if ev:
        usage = ev["codebook"]
        half = usage["codebook_size"] / 2
        out["codebook_perplexity"] = {"value": usage["perplexity"], "target": f">= {half:g}",
                                      "met": usage["perplexity"] >= half}  # fmt: skip
    q = record.get("metrics", {}).get("record")
    if q:
        fid_rec = q["reconstructions"]["fid"]
        out["reconstruction_fid"] = {"value": fid_rec, "target": f"<= {RECON_FID_TARGET}",
                                     "met": fid_rec <= RECON_FID_TARGET}  # fmt: skip
        fid = q["samples"]["fid"] if q["samples"] else None
        met = fid is not None and fid < SAMPLE_FID_TARGET
        if q["temperature"] != 1.0:  # the target is at T = 1
            met = None
        out["sample_fid_pixelcnn"] = {"value": fid, "target": f"< {SAMPLE_FID_TARGET} at T = 1",
                                      "temperature": q["temperature"], "met": met}  # fmt: skip
    return out


if __name__ == "__main__":
    main()
