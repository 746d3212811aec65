"""vaekit traverse."""

from __future__ import annotations

import argparse

from .args import (
    add_run_flags,
    arg,
    data_arg,
    image_label_flag,
    picture_out,
    run_options,
    wrote_picture,
)

HELP = "vary two latent dims around a test image's code"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..api.runs import STEPS
    from ..config import NONNEG_INT, POSITIVE

    add_run_flags(p, "traverse.png")
    p.add_argument(
        "--dims", type=arg(NONNEG_INT), nargs=2, metavar=("I", "J"), help="[the two top-KL dims]"
    )
    p.add_argument("--index", type=arg(NONNEG_INT), default=0, help="image to encode [0]")
    data_arg(p)
    image_label_flag(p)
    p.add_argument(
        "--steps", type=arg(STEPS), default=13, help="grid side, from -span to span [13]"
    )
    p.add_argument(
        "--span", type=arg(POSITIVE), default=7.0, help="offsets linspace(-span, span) [7]"
    )


def run(args: argparse.Namespace) -> int:
    from ..api.traverse import traverse

    out = picture_out(args, "traverse.png")
    grid = traverse(args.run_dir, dims=args.dims, index=args.index, data=args.data,
                    steps=args.steps, span=args.span, out=out, label=args.label,
                    **run_options(args))  # fmt: skip
    return wrote_picture(out, grid)
