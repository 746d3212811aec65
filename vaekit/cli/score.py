"""vaekit score."""

from __future__ import annotations

import argparse
from pathlib import Path

from .args import add_run_flags, arg, precision_flag, run_options

HELP = "anomaly / out-of-distribution scores of any images"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..config import NONNEG_INT, SEED

    add_run_flags(p, None)
    p.add_argument("--data", nargs="+", required=True, metavar="SPEC", help="images to score")
    p.add_argument("--out", type=Path, required=True, help="per-image scores, CSV")
    p.add_argument(
        "--iw-samples", type=arg(NONNEG_INT), default=0, metavar="K", help="IW bound (0: ELBO)"
    )
    p.add_argument("--background", type=Path, metavar="RUN2", help="for the likelihood ratio")
    p.add_argument(
        "--in-dist",
        nargs="+",
        metavar="SPEC",
        help="images known to be normal: AUROC, AUPRC, FPR@95 of each score (scikit-learn)",
    )
    p.add_argument("--seed", type=arg(SEED), default=0, help="noise seed [0]")
    precision_flag(p)


def run(args: argparse.Namespace) -> int:
    from ..api.score import metrics_path, score

    rec = score(args.run_dir, args.data, out=args.out, iw_samples=args.iw_samples,
                background=args.background, in_dist=args.in_dist, seed=args.seed,
                precision=args.precision, **run_options(args))  # fmt: skip
    n = len(next(iter(rec.scores.values())))
    more = f" ({len(rec.unreadable)} unreadable)" if rec.unreadable else ""
    print(f"wrote {args.out}: {n} images{more}, scores {', '.join(rec.scores)} (bits)")
    if rec.ood is not None:
        for k in rec.scores:
            if k != "bits_per_dim":
                m = rec.ood[k]
                print(f"{k:>10}: AUROC {m['auroc']:.4f}  AUPRC {m['auprc']:.4f}  "
                      f"FPR@95 {m['fpr_at_95_tpr']:.4f}")  # fmt: skip
        print(f"wrote {metrics_path(args.out)}")
    return 0
