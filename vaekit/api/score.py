"""vaekit score: anomaly / out-of-distribution scores of any images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import NONNEG_INT, SEED
from .runs import Run, RunLike, checked, inference_precision, open_run, prepare_out

if TYPE_CHECKING:
    import numpy as np


@dataclass
class ScoreRecord:
    """Per-image scores in bits (nll, bits_per_dim, png_bits, complexity, with a background
    run ratio) of the readable images, in order, with their labels and paths where the data
    have them, the files that could not be read [(path, reason)], and with in_dist the
    detection metrics of each score (AUROC, AUPRC, FPR@95 and the counts: what
    OUT.metrics.json holds), else None."""

    scores: dict[str, np.ndarray]
    labels: list[int] | None
    paths: list[str] | None
    unreadable: list[tuple[str, str]]
    ood: dict | None = None


def metrics_path(out: str | Path) -> Path:
    """Where the detection metrics of scores written to out go: OUT.metrics.json."""
    return Path(out).with_suffix(".metrics.json")


def score(
    run: RunLike,
    data: str | list[str],
    *,
    out: str | Path | None = None,
    iw_samples: int = 0,
    background: str | Path | None = None,
    in_dist: str | list[str] | None = None,
    seed: int = 0,
    device: str = "cpu",
    precision: str = "auto",
    data_dir: str | Path | None = None,
    allow_nonfinite: bool = False,
    raw_weights: bool = False,
) -> ScoreRecord:
    """Anomaly scores of data's images (DATASET:SPLIT, folder:PATH or image files) by the
    run's likelihood (the ELBO, or the importance-weighted bound with iw_samples K > 0), and
    the likelihood ratio against a background run; with in_dist (images known to be normal)
    how well each score tells them apart (scikit-learn). Written to out (CSV, one row per
    image, then one per unreadable file) and metrics_path(out) when given. precision: auto
    (bf16 where the device computes it natively, else fp32), fp32 or bf16 (nll within 0.5%
    of fp32's: tests/test_scores.py)."""
    from ..evaluation.scores import ood_metrics
    from ..evaluation.scores import score as scores_of

    iw_samples, seed = checked("iw_samples", iw_samples, NONNEG_INT), checked("seed", seed, SEED)
    r = open_run(run, device, data_dir, allow_nonfinite, raw_weights)
    out = prepare_out(out)
    if not r.model.has_kl:
        raise ValueError(f"a {r.model.cfg.family} model has no likelihood to score with; use a vae")
    if r.model.conditional:  # log p(x|y) needs a class that anomalous images do not have
        raise ValueError("a conditional model's likelihood is of an image given its class: "
                         "score with an unconditional run")  # fmt: skip
    precision = inference_precision(precision, r.model)
    bg = None if background is None else background_model(r, background, device, allow_nonfinite)
    where = None if out is None else f"{out} (rows with an error)"
    x, labels, paths, unreadable = r.images(data, where=where)
    rec = ScoreRecord(
        scores_of(r.model, x, iw_samples, bg, seed, precision), labels, paths, unreadable
    )
    if out is not None:
        write_scores(rec, out)
    if in_dist:
        x_in = r.images(in_dist)[0]
        normal = scores_of(r.model, x_in, iw_samples, bg, seed, precision)
        keys = [k for k in rec.scores if k != "bits_per_dim"]
        res = {k: ood_metrics(normal[k], rec.scores[k]) for k in keys}
        res["counts"] = {"normal": len(x_in), "scored": len(x)}
        rec.ood = {"data": data, "in_dist": in_dist, **res}
        if out is not None:
            from ..outputs import write_json

            write_json(metrics_path(out), rec.ood)
    return rec


def background_model(r: Run, background: str | Path, device: str, allow_nonfinite: bool):
    """The background run's model for the likelihood ratio: it must model the same images."""
    bg = open_run(background, device=device, allow_nonfinite=allow_nonfinite).model
    same = (bg.cfg.image_size, bg.cfg.in_channels, bg.likelihood.binary)
    model = r.model
    if same != (model.cfg.image_size, model.cfg.in_channels, model.likelihood.binary):
        raise ValueError("--background must model the same images (size, channels, binary)")
    return bg


def write_scores(rec: ScoreRecord, out: Path) -> None:
    """The scores as CSV (index, path, label, the scores, error), whole or not at all."""
    from .. import outputs

    with outputs.csv_rows(out) as w:
        w.writerow(["index", "path", "label", *rec.scores, "error"])
        for i in range(len(next(iter(rec.scores.values())))):
            row = [i, rec.paths[i] if rec.paths else "", rec.labels[i] if rec.labels else ""]
            w.writerow(row + [f"{v[i]:.4f}" for v in rec.scores.values()] + [""])
        for path, why in rec.unreadable:  # no scores: the file could not be read
            w.writerow(["", path, "", *[""] * len(rec.scores), why])
