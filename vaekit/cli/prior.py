"""vaekit prior."""

from __future__ import annotations

import argparse
from dataclasses import fields

from .args import add_config_flags, add_run_flags, arg, run_options

HELP = "fit a prior (a Gaussian mixture, ...) to a run's codes, for sample/metrics --prior"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..config import NONNEG_INT, PRIORS, SEED

    add_run_flags(p, None)
    p.add_argument(
        "--kind",
        choices=list(PRIORS),
        default="gmm",
        help="; ".join(f"{k}: {v.doc}" for k, v in PRIORS.items()) + " [gmm]",
    )
    p.add_argument("--seed", type=arg(SEED), default=0, help="seed of the fit [0]")
    p.add_argument(
        "--limit",
        type=arg(NONNEG_INT),
        default=0,
        help="fit to the codes of the first N training images (0 = those the run was trained "
        "on) [0]",
    )
    seen: set[str] = set()
    for options in dict.fromkeys(k.options for k in PRIORS.values()):
        if fields(options):
            names = ", ".join(k for k, v in PRIORS.items() if v.options is options)
            add_config_flags(p, options, f"{names} options", seen=seen)


def run(args: argparse.Namespace) -> int:
    from ..api.prior import prior
    from ..config import PRIORS

    names = {f.name for k in PRIORS.values() for f in fields(k.options)}
    options = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    path = prior(args.run_dir, kind=args.kind, seed=args.seed, limit=args.limit,
                 **options, **run_options(args))  # fmt: skip
    from ..priors import store

    meta = store.read(path.parent.parent, args.kind)  # RUN/priors/KIND.pt
    shown = ", ".join(f"{k} {v}" for k, v in meta["meta"]["fit_options"].items())
    print(f"wrote {path}: {args.kind} prior{f' ({shown})' if shown else ''} fitted to "
          f"{meta['meta']['num_codes']:,} codes in {meta['meta']['seconds']:.0f} s")  # fmt: skip
    return 0
