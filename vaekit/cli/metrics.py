"""vaekit metrics."""

from __future__ import annotations

import argparse
from pathlib import Path

from .args import add_run_flags, arg, prior_flag, run_options, weights_label

HELP = "sample quality: FID, KID, precision/recall of samples"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..api.metrics import FEATURES
    from ..config import NONNEG_INT, POSITIVE, POSITIVE_INT, SEED, Number

    add_run_flags(p, None)
    p.add_argument(
        "--n", type=arg(POSITIVE_INT), default=10_000, help="samples, and test images [10000]"
    )
    p.add_argument("--temperature", type=arg(POSITIVE), default=1.0, help="z ~ N(0, T^2 I) [1.0]")
    p.add_argument(
        "--seed", type=arg(SEED), default=0, help="noise seed, also of KID's subsets [0]"
    )
    prior_flag(p, "measure samples of")
    p.add_argument(
        "--features",
        choices=list(FEATURES),
        default="classifier",
        help="the dataset's own classifier (trained and cached on first use; needs labels) or "
        "Inception-v3 (the standard FID; needs its weights file and vaekit[inception]) "
        "[classifier]",
    )
    p.add_argument("--inception-weights", type=Path, metavar="FILE", help="[torch hub's folder]")
    p.add_argument(
        "--classifier-limit",
        type=arg(NONNEG_INT),
        default=0,
        help="train it on N images (0 = all) [0]",
    )
    p.add_argument(
        "--batch-size", type=arg(POSITIVE_INT), default=500, help="images per batch [500]"
    )
    p.add_argument(
        "--per-class",
        type=arg(Number(int, 2)),
        default=1000,
        help="conditional models: samples of each class for label_accuracy and FID per class "
        "[1000]",
    )
    p.add_argument(
        "--out", type=Path, help="JSON [RUN_DIR/quality-FEATURES-tT.json, -tT-PRIOR.json]"
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")


def run(args: argparse.Namespace) -> int:
    from .. import outputs
    from ..api.metrics import metrics
    from ..api.runs import run_folder

    prior = f"-{args.prior}" if args.prior else ""
    name = f"quality-{args.features}-t{args.temperature:g}{prior}.json"
    out = args.out or run_folder(args.run_dir) / name
    res = metrics(args.run_dir, n=args.n, temperature=args.temperature, seed=args.seed,
                  prior=args.prior, features=args.features,
                  inception_weights=args.inception_weights,
                  classifier_limit=args.classifier_limit, batch_size=args.batch_size,
                  per_class=args.per_class, out=out,
                  **run_options(args))  # fmt: skip
    if args.json:
        print(outputs.dumps(res, indent=2))
        return 0
    print_record(res)
    print(f"wrote {out} ({res['seconds']['total']:.0f} s)")
    return 0


def print_record(res: dict) -> None:
    """The quality record: the features, then one line per measured set (the metrics of
    vaekit.evaluation.metrics.PRINTED)."""
    from ..evaluation.metrics import PRINTED

    acc = res["features"].get("test_accuracy")
    weights = weights_label(res["epoch"], res["mid_epoch_steps"])
    prior = "" if res.get("prior", "own") == "own" else f", prior {res['prior']}"
    print(
        f"{res['dataset']} test, {weights}{prior}, {res['features']['name']} features"
        + (f" (test accuracy {acc:.4f})" if acc is not None else "")
    )
    for what in ("samples", "reconstructions"):
        m = res[what]
        if m is None:
            print(f"{what:>15}: none (no prior)")
            continue
        shown = "  ".join(f"{label} {m[k]:{fmt}}" for k, (label, fmt) in PRINTED.items())
        print(f"{what:>15}: {shown}  ({m['num_fake']:,} vs {m['num_real']:,} test images)")
    if "label_accuracy" in res:
        fids = " ".join(f"{c['fid']:.2f}" for c in res["per_class"])
        print(
            f"{'labels':>15}: label_accuracy {res['label_accuracy']:.4f} of "
            f"{res['samples_per_class']:,} samples per class; FID per class {fids}"
        )
