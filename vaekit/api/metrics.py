"""vaekit metrics: sample quality (FID, KID, precision/recall, density/coverage) of a run's
samples and reconstructions against its test images."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import NONNEG_INT, POSITIVE, POSITIVE_INT, SEED, Number
from .runs import Run, RunLike, checked, open_run, prior_record, with_prior

if TYPE_CHECKING:
    from ..priors.base import Prior

FEATURES = ("classifier", "inception")


def metrics(
    run: RunLike,
    *,
    n: int = 10_000,
    temperature: float = 1.0,
    seed: int = 0,
    prior: str | Prior | None = None,
    features: str = "classifier",
    inception_weights: str | Path | None = None,
    classifier_limit: int = 0,
    batch_size: int = 500,
    per_class: int = 1000,
    out: str | Path | None = None,
    device: str = "cpu",
    data_dir: str | Path | None = None,
    allow_nonfinite: bool = False,
    raw_weights: bool = False,
) -> dict:
    """The record `vaekit metrics --json` prints: the quality of n samples at temperature T
    (seed: the noise's, also of KID's subsets) and of reconstructions, each against n test
    images, in the space of features: the dataset's own classifier (trained on
    classifier_limit images (0: all) and cached on first use; needs labels) or Inception-v3
    (its weights file; vaekit[inception]); with timings in seconds. prior: the samples' codes
    come from a fitted prior (see sample), named in the record. A conditional model's
    record adds label_accuracy, the share of per_class samples of each class that the
    dataset's classifier labels as the class asked for, and per_class (each class's accuracy
    and FID against the test images of that class). Written to out (JSON) when given
    (`vaekit metrics` writes RUN_DIR/quality-FEATURES-tT.json, -tT-PRIOR.json with one)."""
    from ..evaluation.metrics import DC_K, PR_K

    n, seed = checked("n", n, POSITIVE_INT), checked("seed", seed, SEED)
    temperature = checked("temperature", temperature, POSITIVE)
    classifier_limit = checked("classifier_limit", classifier_limit, NONNEG_INT)
    batch_size = checked("batch_size", batch_size, POSITIVE_INT)
    per_class = checked("per_class", per_class, Number(int, 2))
    if features not in FEATURES:
        raise ValueError(f"features must be one of {', '.join(FEATURES)}, got {features!r}")
    if n <= max(PR_K, DC_K):  # before the features model is trained, not after
        raise ValueError(f"--n must be > {max(PR_K, DC_K)} (the k of the k-NN metrics), got {n}")
    t0, c0 = time.perf_counter(), time.process_time()
    r = with_prior(open_run(run, device, data_dir, allow_nonfinite, raw_weights), prior)
    if out is not None:
        out = Path(out)
        try:  # before minutes of work, not after
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ValueError(f"--out {out}: cannot create its folder ({e.strerror or e})") from None
    feats = features_model(r, features, inception_weights, classifier_limit)
    t_features = time.perf_counter() - t0
    res = quality_record(r, feats, n, temperature, seed, batch_size)
    if r.model.conditional:
        t1 = time.perf_counter()
        res.update(class_record(r, feats, classifier_limit, per_class, temperature, seed,
                                batch_size))  # fmt: skip
        res["seconds"]["per_class"] = time.perf_counter() - t1
    res["seconds"] = {"features_model": t_features, **res["seconds"],
                      "total": time.perf_counter() - t0,
                      "total_cpu": time.process_time() - c0}  # fmt: skip
    if out is not None:
        from ..outputs import write_json

        try:
            write_json(out, res)
        except OSError as e:
            raise ValueError(f"cannot write {out} ({e.strerror or e})") from None
    return res


def features_model(r: Run, features: str, inception_weights, classifier_limit: int):
    """The feature extractor (vaekit.quality.Features) the distances are measured in."""
    from ..evaluation.quality import classifier_features, inception_features

    if features == "inception":
        return inception_features(inception_weights)
    return classifier_features(classifier_spec(r, classifier_limit), r.data_dir)


def classifier_spec(r: Run, classifier_limit: int):
    """The spec (vaekit.evaluation.classifier.Spec) of the run's dataset classifier."""
    from ..evaluation.classifier import Spec

    tc, cfg = r.train_config, r.model.cfg
    return Spec(tc["dataset"], cfg.image_size, cfg.in_channels, tc.get("crop", 0),
                limit=classifier_limit)  # fmt: skip


def class_record(
    r: Run,
    feats,
    classifier_limit: int,
    per_class: int,
    temperature: float,
    seed: int,
    batch_size: int,
) -> dict:
    """A conditional run's label_accuracy, per-class accuracy and FID (class_quality), with
    samples_per_class and the labelling classifier's test accuracy."""
    from ..evaluation.classifier import load_or_train
    from ..evaluation.quality import class_quality

    net, record = load_or_train(classifier_spec(r, classifier_limit), r.data_dir)
    x_real, y_real = r.split("test")
    res = class_quality(r.model, feats, net, x_real, y_real, per_class, temperature, seed,
                        batch_size)  # fmt: skip
    return {**res, "samples_per_class": per_class,
            "label_classifier_test_accuracy": record["test_accuracy"]}  # fmt: skip


def quality_record(r: Run, feats, n: int, temperature: float, seed: int, batch_size: int) -> dict:
    """What the run is, and vaekit.quality.sample_quality's record of it."""
    from ..evaluation.quality import sample_quality

    model, tc = r.model, r.train_config
    x_real, y_real = r.split("test")
    if not model.has_prior:
        print(
            f"note: the {model.cfg.family} family has no prior, so no samples to measure; "
            "reconstructions only",
            file=sys.stderr,
        )
    y = y_real if model.conditional else None  # what a conditional model reconstructs with
    res = sample_quality(model, feats, x_real, model.likelihood.prepare_eval(x_real),
                         n, temperature, seed, batch_size, y=y)  # fmt: skip
    return {
        "run": str(r.path),
        "dataset": tc["dataset"],
        "family": model.cfg.family,
        "likelihood": model.cfg.likelihood,
        "epoch": r.ckpt.get("epoch"),
        "mid_epoch_steps": r.ckpt.get("batch", 0),
        "features": feats.info,
        "num_samples": n if model.has_prior else 0,
        "temperature": temperature,
        "seed": seed,
        **prior_record(model),
        **res,
    }
