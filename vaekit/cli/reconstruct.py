"""vaekit reconstruct."""

from __future__ import annotations

import argparse

from .args import add_run_flags, arg, data_arg, picture_out, run_options, wrote_picture

HELP = "test images beside their reconstructions"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..api.runs import GRID_N

    add_run_flags(p, "recon.png")
    p.add_argument("--n", type=arg(GRID_N), default=64, help="the first N images [64]")
    data_arg(p)


def run(args: argparse.Namespace) -> int:
    from ..api.reconstruct import reconstruct

    out = picture_out(args, "recon.png")
    grid = reconstruct(args.run_dir, n=args.n, data=args.data, out=out, **run_options(args))
    return wrote_picture(out, grid)
