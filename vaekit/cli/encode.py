"""vaekit encode."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .args import add_run_flags, arg, precision_flag

HELP = "posterior means and log-variances of any images"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..api.encode import FORMATS
    from ..config import POSITIVE_INT

    add_run_flags(p, None)
    p.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="SPEC",
        help="DATASET:SPLIT (mnist:test), folder:PATH (a folder or .zip), or image files",
    )
    p.add_argument("--out", type=Path, required=True, help="output file (.npz or .csv)")
    p.add_argument("--format", choices=list(FORMATS), help="[from --out's suffix, else npz]")
    p.add_argument(
        "--batch-size", type=arg(POSITIVE_INT), default=1000, help="images per batch [1000]"
    )
    precision_flag(p)
    p.add_argument(
        "--all-groups", action="store_true", help="also the lower latent groups (hierarchical)"
    )


def run(args: argparse.Namespace) -> int:
    from ..api.encode import encode

    t0 = time.perf_counter()
    arrays = encode(args.run_dir, args.data, args.batch_size, args.all_groups, args.data_dir,
                    out=args.out, format=args.format, device=args.device,
                    precision=args.precision, allow_nonfinite=args.allow_nonfinite,
                    raw_weights=args.raw_weights)  # fmt: skip
    seconds = time.perf_counter() - t0
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in arrays.items())
    print(f"wrote {args.out}: {shapes} ({len(arrays['mu'])} images in {seconds:.1f} s)")
    return 0
