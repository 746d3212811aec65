"""What the commands' parsers share: the one-line error parser, argument types from the value
rules (vaekit.config.Number), a --flag per config field, and the flags of the run commands."""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields
from pathlib import Path

REPEATABLE = {"log"}  # list flags that add up when given again
DATA_DIR_HELP = (
    "dataset root [$VAEKIT_DATA, else ~/.cache/vaekit, then data/ or shared/data/ here or above]"
)


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (exit 2), without the usage dump."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def arg(rule):
    """An argparse type from a value rule (vaekit.config.Number): its ValueError becomes
    "argument --flag: must be ..., got ..." (exit 2), in the words a config file gets."""

    def parse(text: str):
        try:
            return rule(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


class JoinedValue(argparse.Action):
    """A flag's words joined by spaces and parsed as one value by `rule` (--image-size 64 48);
    its ValueError becomes "argument --flag: ..."."""

    def __init__(self, *args, rule, **kwargs):
        super().__init__(*args, **kwargs)
        self.rule = rule

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        try:
            setattr(namespace, self.dest, self.rule(" ".join(values)))
        except ValueError as e:
            raise argparse.ArgumentError(self, str(e)) from None


def add_config_flags(
    p: argparse.ArgumentParser, cls, title: str, types: dict | None = None, seen: set | None = None
) -> None:
    """One --flag per dataclass field, parsed by the field's rule (the one its config file value
    gets), else typed from its default; None means 'keep the preset's'. types: field -> (type,
    metavar) where neither fits; seen: names already given a flag (a field shared by two
    families' options gets one).

    Hand-written rather than derived by jsonargparse or tyro (#17, tried on `train`):
    jsonargparse 4.53 spells flags --batch_size and --figures true, tyro 1.0 prints errors as
    multi-line panels, and both fill unset flags with the dataclass defaults, which would hide
    the preset's (preset < file < flags needs "not given" to stay None)."""
    group = p.add_argument_group(title)
    types, seen = types or {}, seen if seen is not None else set()
    for f in fields(cls):
        if f.name in seen or f.name == "net":
            continue
        seen.add(f.name)
        add_config_flag(group, f, types.get(f.name))


def add_config_flag(group, f, given: tuple | None) -> None:
    """The --flag of config field f (see add_config_flags); given: its (type, metavar)."""
    from ..config import Number

    flag = "--" + f.name.replace("_", "-")
    default = f.default if f.default is not MISSING else None
    help_, rule = f.metadata.get("help", ""), f.metadata.get("rule")
    if given is not None:
        kind, metavar = given
        nargs = "+" if isinstance(default, tuple) else None
        action = "extend" if f.name in REPEATABLE else None  # --log a --log b: both
        group.add_argument(flag, type=kind, nargs=nargs, action=action, default=None,
                           metavar=metavar, help=help_)  # fmt: skip
    elif isinstance(default, bool):
        group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
    elif isinstance(rule, Number) and isinstance(default, tuple):
        group.add_argument(flag, type=arg(rule), nargs="+", default=None, metavar="N", help=help_)
    elif isinstance(rule, Number):
        group.add_argument(flag, type=arg(rule), default=None, help=f"{help_} [{default}]")
    elif rule is not None:  # a value of several words: --image-size 64 48
        group.add_argument(flag, action=JoinedValue, rule=rule, nargs="+", default=None,
                           metavar="H[xW]", help=help_)  # fmt: skip
    else:
        group.add_argument(flag, type=type(default), default=None, help=f"{help_} [{default}]")


def allow_nonfinite(p: argparse.ArgumentParser, verb: str) -> None:
    """The forensic override of the refusal of NaN/Inf weights (vaekit.checkpoint.load)."""
    p.add_argument(
        "--allow-nonfinite",
        action="store_true",
        help=f"{verb} a checkpoint whose weights hold NaN or Inf (refused otherwise)",
    )


def run_dir_arg(p: argparse.ArgumentParser) -> None:
    """RUN_DIR, the first argument of the commands that read a run."""
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run dir or checkpoint")


def add_run_flags(p: argparse.ArgumentParser, out: str | None) -> None:
    """The flags every run command takes: RUN_DIR, --out (a picture's, named out in RUN_DIR by
    default), --device, --data-dir, --allow-nonfinite and --raw-weights."""
    from ..config import DEVICES

    run_dir_arg(p)
    if out:
        p.add_argument("--out", type=Path, help=f"output PNG [RUN_DIR/{out}]")
    p.add_argument("--device", default="cpu", choices=DEVICES, help="[cpu]")
    p.add_argument("--data-dir", type=Path, help=DATA_DIR_HELP)
    allow_nonfinite(p, "use")
    raw_weights_flag(p)


def raw_weights_flag(p: argparse.ArgumentParser) -> None:
    """--raw-weights: the trained weights instead of their moving average (train --ema)."""
    p.add_argument(
        "--raw-weights",
        action="store_true",
        help="use the trained weights, not their moving average (runs trained with --ema)",
    )


def precision_flag(p: argparse.ArgumentParser) -> None:
    """--precision of the inference commands (encode, score)."""
    from ..config import PRECISIONS

    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="auto (bf16 where the device computes it natively, else fp32), fp32, bf16 [auto]",
    )


def image_label_flag(p: argparse.ArgumentParser) -> None:
    """--label of the commands that encode a test image (traverse, interpolate)."""
    p.add_argument(
        "--label",
        metavar="K",
        help="conditional models: the class to encode and decode with [the test image's own]",
    )


def data_arg(p: argparse.ArgumentParser) -> None:
    """--data of the picture commands: other images than the run's test set."""
    p.add_argument(
        "--data",
        nargs="+",
        metavar="SPEC",
        help="the images: DATASET:SPLIT, folder:PATH or image files [the run's test set]",
    )


def run_options(args: argparse.Namespace) -> dict:
    """The run flags as the api functions' keyword arguments."""
    return dict(device=args.device, data_dir=args.data_dir, allow_nonfinite=args.allow_nonfinite,
                raw_weights=args.raw_weights)  # fmt: skip


def picture_out(args: argparse.Namespace, default: str) -> Path:
    """A picture command's output: --out, else default in the run's folder."""
    from ..api.runs import run_folder

    return args.out or run_folder(args.run_dir) / default


def wrote_picture(path: Path, grid) -> int:
    """Say where a picture (H, W[, C]) went and its size."""
    print(f"wrote {path} ({grid.shape[1]}x{grid.shape[0]} px)")
    return 0


def weights_label(epoch: int, batch: int = 0) -> str:
    """Which weights a checkpoint of epoch and batch (its mid-epoch steps) holds: "epoch 8", or
    "epoch 8 + 120 steps (mid-epoch 9)"."""
    return f"epoch {epoch}" + (f" + {batch} steps (mid-epoch {epoch + 1})" if batch else "")


def prior_flag(p: argparse.ArgumentParser, what: str = "decode samples of") -> None:
    """--prior NAME: a prior fitted by `vaekit prior RUN --kind NAME` instead of the model's."""
    from ..config import PRIORS

    p.add_argument(
        "--prior",
        choices=list(PRIORS),
        metavar="NAME",
        help=f"{what} the prior fitted by `vaekit prior RUN_DIR --kind NAME` (RUN_DIR/priors/"
        f"NAME.pt; NAME: {', '.join(PRIORS)}) [the model's own]",
    )
