"""Sample quality on MNIST (#16): `vaekit metrics` on trained runs (FID, KID, precision/recall,
density/coverage of N samples and of N reconstructions against the test set, in the features of
MNIST's own classifier) at each temperature, and the floor: N training images against
the test set in the same features. Writes one JSON (default benchmarks/results/metrics-cpu.json)
with every number, the commands, the classifier's test accuracy, the seconds (wall and CPU), the
hardware, commit and date, and prints the README's table. A benchmark, not a test: run it alone.

    python benchmarks/metrics.py runs/seed=seed /work/main/runs/ood/mnist=mnist \\
        /work/main/runs/objectives/elbo=mnist-nll /work/main/runs/mnist-ae=mnist-ae
    python benchmarks/metrics.py runs/tiny --n 500 --out /tmp/m.json        # a smoke run

Each run is RUN_DIR[=LABEL]; runs are only read (each run's JSON goes to --work). An autoencoder
(no prior) is measured once, on its reconstructions. A run's JSON already in --work for the same
run, epoch, N, T and seed is reused (--fresh: measure again), so a run added later costs only
its own measurement.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

from common import command, commit, hardware, run_vaekit

from vaekit.data import load_split
from vaekit.evaluation.classifier import Spec
from vaekit.evaluation.metrics import compare
from vaekit.evaluation.quality import classifier_features, extract, subset


def floor(n: int, data_dir: Path | None, seed: int) -> dict:
    """n MNIST training images against n test images, each a random subset of its split (as
    vaekit metrics takes its test images; all of them for n >= its size): about what a perfect
    generator would score (FID > 0: two finite samples of one distribution)."""
    t0, c0 = time.perf_counter(), time.process_time()
    features = classifier_features(Spec("mnist", (28, 28), 1), data_dir)
    x_train, x_test = (load_split("mnist", s, data_dir)[0] for s in ("train", "test"))
    x_train, x_test = x_train[subset(n, len(x_train))], x_test[subset(n, len(x_test))]
    res = compare(extract(features, x_test), extract(features, x_train), seed)
    seconds = {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}
    return {"metrics": res, "features": features.info, "seconds": seconds}


def reusable(path: Path, run: str, n: int, t: float, seed: int) -> dict | None:
    """The JSON of an earlier measurement of the run's present weights with these settings."""
    if not path.is_file():
        return None
    res = json.loads(path.read_text())
    rows = (Path(run) / "metrics.jsonl").read_text().splitlines()
    epoch = json.loads(rows[-1])["epoch"] if rows else None
    same = (res["run"], res["epoch"], res["temperature"], res["seed"]) == (run, epoch, t, seed)
    return res if same and res["reference"]["num_images"] == min(n, 10_000) else None


def row(label: str, what: str, epochs, t, m: dict) -> str:
    return (
        f"| {label} | {what} | {epochs} | {t} | {m['fid']:.2f} | {m['kid']:.3f} | "
        f"{m['precision']:.3f} | {m['recall']:.3f} | {m['density']:.3f} | {m['coverage']:.3f} |"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="*", metavar="RUN_DIR[=LABEL]", help="trained MNIST runs")
    p.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.7], metavar="T")
    p.add_argument("--n", type=int, default=10_000, help="samples and test images [10000]")
    p.add_argument("--seed", type=int, default=0, help="noise seed [0]")
    p.add_argument("--work", type=Path, default=Path("runs/metrics"), help="per-run JSON folder")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/metrics-cpu.json"))
    p.add_argument("--data-dir", type=Path, help="dataset root [$VAEKIT_DATA]")
    p.add_argument("--fresh", action="store_true", help="measure again what --work holds")
    a = p.parse_args()

    base = floor(a.n, a.data_dir, a.seed)  # trains the classifier here if it is not cached
    results, commands = [], []
    for spec in a.runs:
        run, _, label = spec.partition("=")
        label = label or Path(run).name
        config = json.loads((Path(run) / "config.json").read_text())
        ae = config["model"]["family"] == "ae"
        for t in a.temperatures[:1] if ae else a.temperatures:
            out = a.work / f"{label}-t{t:g}.json"
            options = dict(n=a.n, temperature=t, seed=a.seed, out=out, data_dir=a.data_dir)
            res = reusable(out, run, a.n, t, a.seed) if not a.fresh else None
            if res is None:
                res = {**run_vaekit("metrics", "metrics", run, **options)[0], "commit": commit()}
                out.write_text(json.dumps(res, indent=2) + "\n")  # what was measured when
            res.update(label=label, command=command("metrics", run, **options))
            results.append(res)
            commands.append(res["command"])
    acc = base["features"]["test_accuracy"]
    verdict = "met" if acc >= 0.98 else "MISSED"
    record = {
        "n": a.n,
        "temperatures": a.temperatures,
        "seed": a.seed,
        "classifier": base["features"],
        "classifier_target": {"test_accuracy": 0.98, "met": acc >= 0.98},
        "floor": base,
        "runs": results,
        "commands": commands,
        "hardware": hardware("cpu"),
        "commit": commit(),
        "date": datetime.date.today().isoformat(),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(record, indent=2) + "\n")

    print(f"classifier: test accuracy {acc:.4f} (target >= 0.98: {verdict})")
    print("| run | images | epochs | T | FID | KID | precision | recall | density | coverage |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(row("test set vs training set (floor)", f"{a.n:,} training", "", "", base["metrics"]))
    for r in results:
        if r["samples"] is not None:
            print(row(r["label"], "samples", r["epoch"], r["temperature"], r["samples"]))
    for r in results:
        if r["temperature"] == a.temperatures[0]:
            print(row(r["label"], "reconstructions", r["epoch"], "", r["reconstructions"]))
    for r in results:
        sec = r["seconds"]
        print(f"{r['label']} T={r['temperature']}: {sec['total']:.0f} s wall, "
              f"{sec['total_cpu']:.0f} s CPU", file=sys.stderr)  # fmt: skip
    print(f"wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
