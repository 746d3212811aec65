"""vaekit interpolate."""

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

HELP = "walk between two test images' latent means"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..api.runs import STEPS
    from ..config import NONNEG_INT

    add_run_flags(p, "interp.png")
    p.add_argument("--a", type=arg(NONNEG_INT), default=0, help="first image index [0]")
    p.add_argument("--b", type=arg(NONNEG_INT), default=1, help="second image index [1]")
    p.add_argument("--steps", type=arg(STEPS), default=10, help="images in the strip, a to b [10]")
    data_arg(p)
    image_label_flag(p)


def run(args: argparse.Namespace) -> int:
    from ..api.interpolate import interpolate

    out = picture_out(args, "interp.png")
    grid = interpolate(args.run_dir, a=args.a, b=args.b, steps=args.steps, data=args.data,
                       out=out, label=args.label, **run_options(args))  # fmt: skip
    return wrote_picture(out, grid)
