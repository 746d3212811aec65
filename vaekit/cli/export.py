"""vaekit export."""

from __future__ import annotations

import argparse
from pathlib import Path

from .args import allow_nonfinite, raw_weights_flag, run_dir_arg

HELP = "write the weights (safetensors) or the decoder (ONNX)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..api.export import FORMATS

    run_dir_arg(p)
    p.add_argument("--format", required=True, choices=list(FORMATS), help="file format")
    p.add_argument("--out", type=Path, help="output [RUN_DIR/model.safetensors|decoder.onnx]")
    allow_nonfinite(p, "export")
    raw_weights_flag(p)
    p.set_defaults(device="cpu")


def run(args: argparse.Namespace) -> int:
    from ..api.export import export

    path = export(args.run_dir, format=args.format, out=args.out,
                  allow_nonfinite=args.allow_nonfinite, raw_weights=args.raw_weights)  # fmt: skip
    print(f"wrote {path}")
    return 0
