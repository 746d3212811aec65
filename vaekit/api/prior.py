"""vaekit prior: fit a prior p(z) to a trained run's codes and save it into the run directory
(RUN/priors/KIND.pt), for sample, metrics and explore to draw from (--prior KIND)."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from ..config import NONNEG_INT, SEED
from .runs import Run, RunLike, checked, open_run


def prior(
    run: RunLike,
    *,
    kind: str = "gmm",
    seed: int = 0,
    limit: int = 0,
    device: str = "cpu",
    data_dir: str | Path | None = None,
    allow_nonfinite: bool = False,
    raw_weights: bool = False,
    **options,
) -> Path:
    """Fit a prior of a registered kind (vaekit.config.PRIORS: normal, gmm, ...) to the run's
    model on its training set (the first `limit` images; 0: those the run was trained on, its
    train limit, else all), seeded by seed, and write it
    to RUN/priors/KIND.pt holding the run's lock; returns that path. options: the kind's
    options (gmm: components, covariance, max_iter), the `vaekit prior` flags."""
    from dataclasses import asdict

    from .. import checkpoint
    from ..config import PRIORS, prior_options, resolve
    from ..priors import store
    from ..training.lock import run_lock

    seed, limit = checked("seed", seed, SEED), checked("limit", limit, NONNEG_INT)
    opts = prior_options(kind, options)
    r = open_run(run, device, data_dir, allow_nonfinite, raw_weights)
    if r.ckpt is None or r.folder is None:
        raise ValueError("a prior is fitted into a run directory: give the run dir, not a model")
    if r.model.conditional:
        raise ValueError(
            "a fitted prior is over an unconditional model's codes; a conditional model samples "
            "its own prior given a class (vaekit sample RUN --label K)"
        )
    t0 = time.perf_counter()
    with run_lock(r.folder):
        x = r.split("train")[0]
        limit = limit or r.train_config.get("limit", 0)  # 0: the images the run trained on
        x = x[:limit] if limit else x
        fitted = resolve(PRIORS[kind].prior).fit(
            r.model, x, opts, work_dir=store.prior_path(r.folder, kind).with_suffix(".work"),
            device=next(r.model.parameters()).device, seed=seed, progress=report,
        )  # fmt: skip
        meta = fit_meta(r, checkpoint.resolve(r.path), len(x), seed, asdict(opts), raw_weights)
        meta["seconds"] = time.perf_counter() - t0
        return store.save(fitted.cpu(), kind, r.folder, meta)


def report(line: str) -> None:
    """A fit's progress line, on stderr."""
    print(f"vaekit prior: {line}", file=sys.stderr, flush=True)


def fit_meta(r: Run, ckpt: Path, n: int, seed: int, options: dict, raw_weights: bool) -> dict:
    """What a fitted prior belongs to: the checkpoint (file, epoch, mid-epoch steps, weights),
    the data (dataset, number of images), the fit (seed, options) and when."""
    from .._version import __version__

    return {
        "checkpoint": {"file": ckpt.name, "epoch": r.ckpt.get("epoch"),
                       "batch": r.ckpt.get("batch", 0), "raw_weights": raw_weights},
        "dataset": r.train_config["dataset"],
        "num_codes": n,
        "seed": seed,
        "fit_options": options,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "vaekit": __version__,
    }  # fmt: skip
