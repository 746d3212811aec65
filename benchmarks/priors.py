"""Fitted priors (#30): sample quality of trained runs with their own prior (N(0, I), or the
VampPrior a model learned) and with a Gaussian mixture fitted to their training codes after
training (`vaekit prior RUN --kind gmm`), each measured by `vaekit metrics` (N samples at T = 1
against the test set, in the features of MNIST's own classifier). Writes one JSON (default
benchmarks/results/priors-gmm-cpu.json) with every number, the targets met or missed, the
commands, wall times, hardware, commit and date.
A benchmark, not a test: run it alone.

    python benchmarks/priors.py /work/runs/mnist-nll-e10 /work/runs/mnist /work/runs/mnist-ae

Each run is copied to --work/NAME before anything is written into it (the sources are only
read) and is measured once its DONE file exists (a run still training is recorded as pending,
or with --partial measured at its last checkpoint, the record saying which epoch).
The mixture's size is chosen by a quick look: mixtures of each --components and --covariance
fitted to the training codes, scored by the mean log-density of the test set's codes (held
out), the best kept. A measurement already in the copy (the same N, T, seed and prior) is reused.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
import time
from pathlib import Path

from common import command, commit, hardware, run_vaekit

KEYS = ("fid", "kid", "precision", "recall", "density", "coverage")
REDUCTION = 0.30  # the GMM's FID at least 30% below N(0, I)'s (mnist, mnist-nll)


def look(run: Path, components: list[int], covariances: list[str], seed: int) -> dict:
    """Candidate mixtures fitted to the run's training codes, scored on its test codes: the
    mean log-density in nats (higher is better) and the seconds of each fit; the best."""
    from sklearn.mixture import GaussianMixture

    from vaekit.api.runs import open_run
    from vaekit.priors.codes import posterior_means

    r = open_run(run)
    z_train = posterior_means(r.model, r.split("train")[0]).double().numpy()
    z_test = posterior_means(r.model, r.split("test")[0]).double().numpy()
    scores = []
    for cov in covariances:
        for k in components:
            t0 = time.perf_counter()
            gm = GaussianMixture(k, covariance_type=cov, random_state=seed).fit(z_train)
            scores.append({"components": k, "covariance": cov, "test_log_density": gm.score(z_test),
                           "train_log_density": gm.score(z_train),
                           "seconds": time.perf_counter() - t0})  # fmt: skip
            print(f"  look {run.name}: {k} {cov}: test {scores[-1]['test_log_density']:.2f} nats",
                  file=sys.stderr)  # fmt: skip
    best = max(scores, key=lambda s: s["test_log_density"])
    return {"candidates": scores, "best": {k: best[k] for k in ("components", "covariance")}}


def measure(run: Path, prior: str | None, n: int, seed: int) -> dict:
    """`vaekit metrics` of the run's samples with a prior (None: its own), reused when done."""
    out = run / f"quality-classifier-t1{'-' + prior if prior else ''}.json"
    options = dict(n=n, temperature=1.0, seed=seed, prior=prior, out=out)
    if out.is_file():
        res = json.loads(out.read_text())
        if (
            res["num_samples"] in (n, 0)
            and res["seed"] == seed
            and res["prior"] == (prior or "own")
        ):
            return {**res, "command": command("metrics", run, **options), "reused": True}
    res = run_vaekit("priors", "metrics", run, **options)[0]
    return {**res, "command": command("metrics", run, **options)}


def finished(run: Path) -> bool:
    """The run trained all its epochs: a DONE file (the shared runs), or its last row in
    metrics.jsonl is its last planned epoch."""
    if (run / "DONE").is_file():
        return True
    log = run / "metrics.jsonl"
    rows = log.read_text().splitlines() if log.is_file() else []
    epochs = json.loads((run / "config.json").read_text())["train"]["epochs"] if rows else None
    return bool(rows) and json.loads(rows[-1]).get("epoch") == epochs


def trained_seconds(run: Path) -> float:
    """The seconds the run's epochs took (metrics.jsonl's epoch_seconds, summed)."""
    rows = (run / "metrics.jsonl").read_text().splitlines()
    return sum(json.loads(r).get("epoch_seconds", 0.0) for r in rows if r.strip())


def model_record(source: Path, name: str, work: Path, a) -> dict:
    """Copy, look, fit, measure one run (as NAME); its part of the record."""
    done = finished(source)
    if not done and not (a.partial and (source / "last.pt").is_file()):
        return {"source": str(source), "status": "pending: not trained yet"}
    run = work / name
    if run.exists() and not done and a.partial:  # a newer checkpoint since: copy it again
        shutil.rmtree(run)
    if not run.exists():
        shutil.copytree(source, run, ignore=shutil.ignore_patterns(".lock"))
    look_file = run / "priors-look.json"
    if look_file.is_file():
        chosen = json.loads(look_file.read_text())
    else:
        chosen = look(run, a.components, a.covariance, a.seed)
        look_file.write_text(json.dumps(chosen, indent=2) + "\n")
    options = dict(kind="gmm", **chosen["best"], seed=a.seed)
    path, fit_seconds = fitted(run, options)
    own, gmm = (measure(run, p, a.n, a.seed) for p in (None, "gmm"))
    config = json.loads((run / "config.json").read_text())
    return {
        "source": str(source),
        "run": str(run),
        "family": config["model"]["family"],
        "epoch": own["epoch"],
        "epochs_planned": config["train"]["epochs"],
        "status": "done" if done else f"partial: epoch {own['epoch']} of a run still training",
        "ema": config["train"].get("ema", 0.0),
        "trained_seconds": trained_seconds(source),
        "look": chosen,
        "fit": {
            "command": command("prior", run, **options),
            "seconds": fit_seconds,
            "file": str(path),
        },  # fmt: skip
        "priors": {own_prior(config["model"]): pick(own), "gmm": pick(gmm)},
    }


def own_prior(model: dict) -> str:
    """The name of the prior a run's model samples from by itself (its config's model part)."""
    net = model.get("net", {})
    if net.get("prior") == "vamp":
        return f"VampPrior ({net['pseudo_inputs']} pseudo-inputs)"
    return "N(0, I)"


def fitted(run: Path, options: dict) -> tuple[Path, float]:
    """`vaekit prior` with options into run (path, seconds), reused when run holds that fit."""
    from vaekit.priors import store

    path = store.prior_path(run, "gmm")
    if path.is_file():
        meta = store.read(run, "gmm")["meta"]
        fit = {k: meta["fit_options"][k] for k in ("components", "covariance")}
        if {**fit, "kind": "gmm", "seed": meta["seed"]} == options:
            return path, meta["seconds"]
    return run_vaekit("priors", "prior", run, **options)


def pick(res: dict) -> dict:
    """What the record keeps of a metrics record: the samples' metrics, command, seconds."""
    m = res["samples"]
    return {
        **({k: m[k] for k in KEYS} if m else {"samples": None}),
        "reconstruction_fid": res["reconstructions"]["fid"],
        "command": res["command"],
        "seconds": res["seconds"]["total"],
        "reused": res.get("reused", False),
    }


def targets(models: dict, ae_vs: list[str]) -> list[dict]:
    """The #30 targets on what was measured (ae_vs: the names of the ae run and of the vae run
    whose N(0, I) FID it must beat with a GMM): met or missed; pending ones left out."""
    out = []
    for name, m in models.items():
        if "N(0, I)" not in m.get("priors", {}) or m["family"] == "ae":
            continue  # the #30 targets are against N(0, I); a VampPrior is a fitted one
        own, gmm = m["priors"]["N(0, I)"]["fid"], m["priors"]["gmm"]["fid"]
        reduction = 1 - gmm / own
        out.append({"target": f"{name}: GMM FID >= {REDUCTION:.0%} below N(0, I)'s",
                    "own_fid": own, "gmm_fid": gmm, "reduction": reduction,
                    "met": reduction >= REDUCTION})  # fmt: skip
    ae, vae = (models.get(name, {}) for name in ae_vs)
    if "priors" in ae and "N(0, I)" in vae.get("priors", {}):
        gmm, own = ae["priors"]["gmm"]["fid"], vae["priors"]["N(0, I)"]["fid"]
        out.append({"target": f"{ae_vs[0]} with a GMM below {ae_vs[1]}'s N(0, I) FID",
                    "runs": [ae["run"], vae["run"]],
                    "own_fid": own, "gmm_fid": gmm, "met": gmm < own})  # fmt: skip
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "runs", nargs="+", metavar="RUN_DIR[=NAME]", help="trained MNIST runs [NAME: its folder's]"
    )
    p.add_argument("--work", type=Path, default=Path("runs/priors"), help="the runs' copies")
    p.add_argument("--components", type=int, nargs="+", default=[10, 20], metavar="K")
    p.add_argument("--covariance", nargs="+", default=["full"], choices=["full", "diag"])
    p.add_argument("--n", type=int, default=10_000, help="samples and test images [10000]")
    p.add_argument("--seed", type=int, default=0, help="seed of the fits and the noise [0]")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/priors-gmm-cpu.json"))
    p.add_argument(
        "--ae-vs",
        nargs=2,
        default=["mnist-ae", "mnist"],
        metavar=("AE", "VAE"),
        help="the ae run's NAME and the vae run's whose N(0, I) FID it must beat [mnist-ae mnist]",
    )
    p.add_argument(
        "--partial", action="store_true", help="measure a run still training at its last.pt"
    )
    a = p.parse_args()

    a.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    models = {}
    for spec in a.runs:
        source, _, name = spec.partition("=")
        name = name or Path(source).name
        models[name] = model_record(Path(source), name, a.work, a)
        record = {
            "n": a.n,
            "temperature": 1.0,
            "seed": a.seed,
            "models": models,
            "targets": targets(models, a.ae_vs),
            "command": " ".join(["python", *sys.argv]),
            "wall_seconds": time.perf_counter() - t0,
            "threads": __import__("torch").get_num_threads(),
            "hardware": hardware("cpu"),
            "commit": commit(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        }
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(record, indent=2) + "\n")  # after each run: partial results
    for t in record["targets"]:
        print(f"{t['target']}: N(0, I) {t['own_fid']:.2f}, GMM {t['gmm_fid']:.2f}: "
              f"{'met' if t['met'] else 'MISSED'}")  # fmt: skip
    print(f"wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
