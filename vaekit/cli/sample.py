"""vaekit sample."""

from __future__ import annotations

import argparse

from .args import add_run_flags, arg, picture_out, prior_flag, run_options, wrote_picture

HELP = "decode samples from the prior as a grid"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..api.runs import GRID_N
    from ..config import NONNEG, POSITIVE, SEED

    add_run_flags(p, "samples.png")
    p.add_argument("--n", type=arg(GRID_N), default=64, help="how many samples [64]")
    p.add_argument("--temperature", type=arg(POSITIVE), default=1.0, help="z ~ N(0, T^2 I) [1.0]")
    p.add_argument(
        "--temperatures",
        type=arg(NONNEG),
        nargs="+",
        metavar="T",
        help="one temperature per latent group, top first (hierarchical models)",
    )
    p.add_argument("--seed", type=arg(SEED), default=0, help="noise seed [0]")
    prior_flag(p)
    p.add_argument(
        "--label",
        metavar="K|all",
        help="conditional models: samples of class K, or all: one row per class of n // classes "
        "[the classes in turn]",
    )


def run(args: argparse.Namespace) -> int:
    from ..api.sample import sample

    out = picture_out(args, "samples.png")
    grid = sample(args.run_dir, n=args.n, temperature=args.temperature,
                  temperatures=args.temperatures, seed=args.seed, prior=args.prior, out=out,
                  label=args.label,
                  **run_options(args))  # fmt: skip
    return wrote_picture(out, grid)
