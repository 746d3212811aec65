"""vaekit prior."""

from __future__ import annotations

import argparse

from .args import add_run_flags, arg

HELP = "fit a learned prior over a model's discrete codes (a PixelCNN for vqvae runs)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..api.prior import KINDS
    from ..config import NONNEG_INT, POSITIVE, POSITIVE_INT, SEED

    add_run_flags(p, None)
    p.add_argument("--kind", choices=list(KINDS), default="pixelcnn", help="[pixelcnn]")
    p.add_argument("--epochs", type=arg(POSITIVE_INT), default=10, help="passes [10]")
    p.add_argument("--batch-size", type=arg(POSITIVE_INT), default=128, help="grids a step [128]")
    p.add_argument("--lr", type=arg(POSITIVE), default=1e-3, help="Adam, cosine decay [1e-3]")
    p.add_argument("--channels", type=arg(POSITIVE_INT), default=48, help="pixelcnn width [48]")
    p.add_argument("--layers", type=arg(POSITIVE_INT), default=6, help="gated layers [6]")
    p.add_argument("--seed", type=arg(SEED), default=0, help="[0]")
    p.add_argument(
        "--limit", type=arg(NONNEG_INT), default=0, help="first N training images (0: all) [0]"
    )


def run(args: argparse.Namespace) -> int:
    from ..api.prior import prior

    res = prior(args.run_dir, args.kind, epochs=args.epochs, batch_size=args.batch_size,
                lr=args.lr, channels=args.channels, layers=args.layers, seed=args.seed,
                limit=args.limit, device=args.device, data_dir=args.data_dir,
                allow_nonfinite=args.allow_nonfinite, raw_weights=args.raw_weights)  # fmt: skip
    last = res["history"][-1] if res["history"] else {}
    print(f"wrote {res['path']} ({res['kind']}, {res['epochs']} epochs; test "
          f"{last.get('test_bits', float('nan')):.1f} bits per code grid)")  # fmt: skip
    return 0
