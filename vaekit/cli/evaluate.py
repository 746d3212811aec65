"""vaekit evaluate."""

from __future__ import annotations

import argparse
from pathlib import Path

from .args import add_run_flags, arg, run_options, weights_label

HELP = "test-set ELBO, NLL and bits/dim, active units, linear probe"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..config import NONNEG_INT, POSITIVE_INT

    add_run_flags(p, None)
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--out", type=Path, help="also write the JSON to this file")
    p.add_argument(
        "--batch-size", type=arg(POSITIVE_INT), default=500, help="images per batch [500]"
    )
    p.add_argument(
        "--iw-samples",
        type=arg(POSITIVE_INT),
        metavar="K",
        help="also the IWAE NLL bound with K samples; its progress is kept beside the checkpoint, "
        "so a stopped evaluation resumes",
    )
    p.add_argument(
        "--iw-chunk", type=arg(POSITIVE_INT), default=50, help="IW samples per image per pass [50]"
    )
    p.add_argument(
        "--iw-batch", type=arg(POSITIVE_INT), default=250, help="IW samples per decoder pass [250]"
    )
    p.add_argument("--no-probe", action="store_true", help="skip the linear probe on the latents")
    p.add_argument(
        "--limit", type=arg(NONNEG_INT), default=0, help="first N images of each split (0 = all)"
    )


def run(args: argparse.Namespace) -> int:
    from .. import outputs
    from ..api.evaluate import evaluate

    res = evaluate(args.run_dir, batch_size=args.batch_size, iw_samples=args.iw_samples,
                   iw_chunk=args.iw_chunk, iw_batch=args.iw_batch, probe=not args.no_probe,
                   limit=args.limit, out=args.out, **run_options(args))  # fmt: skip
    if args.json:
        print(outputs.dumps(res, indent=2))
    else:
        print_record(res)
    return 0


def print_record(res: dict) -> None:
    """The evaluation record in two lines: the loss, then the bounds, units and probe."""
    weights = weights_label(res["epoch"], res["mid_epoch_steps"])
    head = f"{res['dataset']} test ({res['num_images']} images, {weights}): "
    if res["kl"] is None:
        print(head + f"loss {res['test_loss']:.3f} = recon per image ({res['family']}: no KL)")
        line = "no ELBO (no posterior density)"
    else:
        print(
            head + f"loss {res['test_loss']:.3f} = recon {res['recon']:.3f} + kl {res['kl']:.3f} "
            "per image"
        )
        line = f"elbo {res['elbo']:.2f} nats"
    if "nll_iw" in res:
        line += f", nll_iw {res['nll_iw']:.2f} nats (K={res['iw_samples']}"
        line += f", s.e. {res['nll_iw_sem']:.2f})" if res["nll_iw_sem"] is not None else ")"
    if res["bits_per_dim"] is not None:
        line += f", {res['bits_per_dim']:.4f} bits/dim"
    line += f", {res['active_units']} active units"
    if "probe_accuracy" in res:
        line += f", probe accuracy {res['probe_accuracy']:.4f}"
    print(line)
