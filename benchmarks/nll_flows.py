"""Test NLL of the vae with a learned prior (VampPrior) or a flow posterior (IAF) against the
plain mnist-nll run at the same epochs and seed: `vaekit evaluate RUN --iw-samples K --limit N`
of each trained run, with each run's training time from its metrics.jsonl, into one record
with each run's difference from the baseline (the standard error of the paired per-image
differences on the same images) and whether the targets (#30: vamp >= 1 nat better; #31: iaf
>= 1.5 nats better) are met. A benchmark, not a test: the runs are trained first, e.g.

    vaekit train --preset mnist-nll --epochs 10 --kl-warmup 1000 --out runs/nll-e10
    vaekit train --preset mnist-nll --epochs 10 --kl-warmup 1000 --prior vamp \\
        --pseudo-inputs 500 --out runs/vamp-e10
    vaekit train --preset mnist-iaf --epochs 10 --kl-warmup 1000 --out runs/iaf-e10
    python benchmarks/nll_flows.py --runs baseline=runs/nll-e10 vamp=runs/vamp-e10 \\
        iaf=runs/iaf-e10 --iw-samples 1000 --eval-limit 2000 \\
        --out benchmarks/results/nll-vamp-iaf-cpu.json

With --interim, nothing is evaluated: the record compares the test -ELBO that training wrote
to each run's metrics.jsonl (the whole test set, one z per image) at the epochs every run has
reached, for runs still training.

The bound keeps its progress beside each run's checkpoint (`vaekit evaluate`'s progress file):
stopped and run again, it goes on where it was, and a run already evaluated is read back.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from common import command, provenance, run_vaekit

from vaekit.outputs import write_json

TARGETS = {"vamp": 1.0, "iaf": 1.5}  # nats better than the baseline (issues #30, #31)


def training(run: Path) -> dict:
    """Epochs, training seconds and the training command's config of a run directory."""
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if ln]
    cfg = json.loads((run / "config.json").read_text())
    return {
        "epochs": rows[-1]["epoch"] if rows else 0,
        "train_seconds": round(sum(r.get("epoch_seconds", 0.0) for r in rows), 1),
        "net": cfg["model"]["net"],
        "seed": cfg["train"]["seed"],
        "kl_warmup": cfg["objective"]["kl_warmup"],
    }


def test_loss(run: Path) -> dict[int, float]:
    """epoch -> the test -ELBO (nats; a Monte Carlo KL for vamp and iaf) training wrote."""
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if ln]
    return {r["epoch"]: r["test_loss"] for r in rows if r.get("test_loss") is not None}


def interim(runs: dict[str, str]) -> dict:
    """The per-epoch test -ELBO of runs still training, at the epochs all have reached."""
    losses = {name: test_loss(Path(run)) for name, run in runs.items()}
    epochs = sorted(set.intersection(*(set(v) for v in losses.values())))
    record = {"epochs": epochs, "neg_elbo": {n: [v[e] for e in epochs] for n, v in losses.items()}}
    record["runs"] = {name: {"run": run, **training(Path(run))} for name, run in runs.items()}
    if epochs and "baseline" in losses:
        last = epochs[-1]
        record["nats_better_elbo_at_last_epoch"] = {
            n: losses["baseline"][last] - v[last] for n, v in losses.items() if n != "baseline"
        }
    return record


def paired_sem(base: dict, m: dict) -> float:
    """Standard error of the mean per-image difference of the two models' log p(x) bounds on
    the same test images (their `vaekit evaluate` progress files hold each image's)."""
    a, b = (json.loads(Path(r["iw_record"]).read_text())["log_px"] for r in (base, m))
    d = [u - v for u, v in zip(a, b, strict=True)]
    mean = sum(d) / len(d)
    return math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1) / len(d))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", required=True, help="NAME=RUN_DIR; baseline= first")
    p.add_argument("--iw-samples", type=int, default=1000, help="importance samples K [1000]")
    p.add_argument("--eval-limit", type=int, default=2000, help="first N test images [2000]")
    p.add_argument("--out", type=Path, required=True, help="the record (JSON)")
    p.add_argument("--interim", action="store_true", help="compare training's test -ELBO only")
    a = p.parse_args()
    runs = dict(spec.split("=", 1) for spec in a.runs)
    if a.interim:
        write_json(a.out, {**provenance("cpu"), "interim": True, **interim(runs)})
        return
    record = {**provenance("cpu"), "iw_samples": a.iw_samples, "eval_limit": a.eval_limit}
    record["models"] = {}
    for name, run in runs.items():
        kwargs = dict(iw_samples=a.iw_samples, limit=a.eval_limit, probe=False)
        ev, seconds = run_vaekit("nll_flows", "evaluate", run, **kwargs)
        record["models"][name] = {
            "run": run,
            "evaluate": command("evaluate", run, **kwargs),
            "eval_seconds": round(seconds, 1),
            **training(Path(run)),
            **{
                k: ev.get(k)
                for k in ("nll_iw", "nll_iw_sem", "elbo", "kl", "recon", "epoch", "iw_record")
            },
        }
        record["models"][name]["neg_elbo"] = -ev["elbo"]
        print(f"{name}: NLL {ev['nll_iw']:.2f} +- {ev['nll_iw_sem']:.2f}, -ELBO {-ev['elbo']:.2f}")
    base = record["models"].get("baseline")
    record["comparisons"] = {}
    for name, m in record["models"].items():
        if base is None or name == "baseline":
            continue
        target = TARGETS.get(name)
        gain = base["nll_iw"] - m["nll_iw"]
        met = None if target is None else gain >= target
        c = {"nats_better": gain, "sem": paired_sem(base, m), "target": target, "met": met}
        record["comparisons"][name] = c
        verdict = "" if met is None else f" (target {target}: {'met' if met else 'missed'})"
        print(f"{name}: {gain:.2f} +- {c['sem']:.2f} nats better{verdict}")
    write_json(a.out, record)


if __name__ == "__main__":
    main()
