"""Out-of-distribution detection with vaekit score: a model trained on Fashion-MNIST scored on its
test set (normal) against MNIST test, KMNIST test, uniform noise and constant images; a model
trained on MNIST against Fashion-MNIST and KMNIST. AUROC and FPR@95 of each score per pair into
OUT/ood.json, with the commands, hardware, commit and date. A benchmark, not a test: run it
alone. Stopped, it continues where it was when run again with the same --out.

    python benchmarks/ood.py --out runs/ood                                  # ~25 min, 2 cores
    python benchmarks/ood.py --out /tmp/smoke --epochs 1 --limit 512 --n 200 # a smoke run
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np
from common import add_train_args, command, commit, hardware, run_vaekit
from PIL import Image

PAIRS = {  # trained on -> the sets scored against its test set
    "fashion-mnist": ["mnist:test", "kmnist:test", "noise", "constant"],
    "mnist": ["fashion-mnist:test", "kmnist:test"],
}


def synthetic(out: Path, kind: str, n: int) -> str:
    """A folder of n 28x28 grey PNGs: uniform noise, or constant images of random grey levels."""
    folder = out / kind
    if not folder.exists():
        folder.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for i in range(n):
            if kind == "noise":
                a = rng.integers(0, 256, (28, 28))
            else:
                a = np.full((28, 28), rng.integers(0, 256))
            Image.fromarray(a.astype(np.uint8)).save(folder / f"{i:05d}.png")
    return f"folder:{folder}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_train_args(p, "runs/ood", "mnist", 10)
    p.add_argument("--limit", type=int, default=0, help="first N training images (0 = all)")
    p.add_argument("--n", type=int, default=2000, help="noise and constant images [2000]")
    p.add_argument("--iw-samples", type=int, default=0, help="K for the nll (0: -ELBO) [0]")
    p.add_argument("--data-dir", type=Path, help="dataset root [$VAEKIT_DATA]")
    a = p.parse_args()

    result, commands = {}, []
    for dataset, others in PAIRS.items():
        run = a.out / dataset
        train = dict(out=run, preset=a.preset, dataset=dataset, epochs=a.epochs, limit=a.limit,
                     figures=False, data_dir=a.data_dir)  # fmt: skip
        if (run / "last.pt").exists():
            train = dict(resume=run, data_dir=a.data_dir)
        run_vaekit("ood", "train", **train)
        rows = [json.loads(line) for line in (run / "metrics.jsonl").open()]
        if max((r["epoch"] for r in rows), default=0) < a.epochs:
            sys.exit("ood: training was stopped; run the same command again to continue")
        commands.append(command("train", **train))
        for other in others:
            spec = other if ":" in other else synthetic(a.out, other, a.n)
            name = other.split(":")[0]
            out = a.out / f"{dataset}-vs-{name}.csv"
            score = dict(data=[spec], in_dist=[f"{dataset}:test"], iw_samples=a.iw_samples,
                         out=out, data_dir=a.data_dir)  # fmt: skip
            metrics = run_vaekit("ood", "score", run, **score)[0].ood
            commands.append(command("score", run, **score))
            result[f"{dataset} vs {name}"] = {k: v for k, v in metrics.items() if "auroc" in v}
    record = {"pairs": result, "commands": commands, "hardware": hardware("cpu"),
              "commit": commit(), "date": datetime.date.today().isoformat()}  # fmt: skip
    (a.out / "ood.json").write_text(json.dumps(record, indent=2) + "\n")
    for pair, scores in result.items():
        cells = "  ".join(
            f"{k} {v['auroc']:.3f}/{v['fpr_at_95_tpr']:.3f}" for k, v in scores.items()
        )
        print(f"{pair:28s} AUROC/FPR95: {cells}")


if __name__ == "__main__":
    main()
