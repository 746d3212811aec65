"""vaekit explore."""

from __future__ import annotations

import argparse

from .args import add_run_flags, arg, prior_flag, run_options

HELP = "a local web page to steer the latent space live"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..api.runs import PORT
    from ..config import NONNEG_INT

    add_run_flags(p, None)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on [127.0.0.1]")
    p.add_argument("--port", type=arg(PORT), default=8000, help="port; 0 picks a free one [8000]")
    p.add_argument("--quiet", action="store_true", help="do not log each request")
    prior_flag(p, "Random sample draws from")
    p.add_argument(
        "--tsne-max",
        type=arg(NONNEG_INT),
        default=3000,  # ~40-70 s on one busy CPU core, once per run
        metavar="N",
        help="a t-SNE map of at most N test images (a fixed random subset), computed once and "
        "cached beside the checkpoint; 0: only PCA and the top-KL dims [3000]",
    )


def run(args: argparse.Namespace) -> int:
    from ..api.explore import explore

    explore(args.run_dir, host=args.host, port=args.port, quiet=args.quiet,
            tsne_max=args.tsne_max, prior=args.prior, **run_options(args))  # fmt: skip
    return 0
