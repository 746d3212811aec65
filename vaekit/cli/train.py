"""vaekit train."""

from __future__ import annotations

import argparse
import os
from dataclasses import fields
from pathlib import Path

from .args import DATA_DIR_HELP, add_config_flags, allow_nonfinite

HELP = "train a VAE into a run directory"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..config import FAMILIES, PRESETS, ModelConfig, ObjectiveConfig, TrainConfig

    p.add_argument("--preset", choices=sorted(PRESETS), help="base config [mnist]")
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="a YAML or JSON config: a run's config.json, or field: value pairs (and preset:); "
        "the preset, then the file, then the flags",
    )
    p.add_argument("--out", type=Path, help="run directory [runs/DATASET-PRESET]")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR")
    p.add_argument("--data-dir", type=Path, help=DATA_DIR_HELP)
    allow_nonfinite(p, "--resume from")
    types = {"dataset": (dataset_arg, "NAME|folder:PATH"), "log": (str, "NAME")}
    unset = "(unset: the preset's value, else the [default])"
    add_config_flags(p, TrainConfig, f"training {unset}", types)
    add_config_flags(p, ObjectiveConfig, f"objective {unset}")
    add_config_flags(p, ModelConfig, f"model {unset}", types)
    seen: set = set()
    for options in dict.fromkeys(f.options for f in FAMILIES.values()):
        names = ", ".join(k for k, f in FAMILIES.items() if f.options is options)
        add_config_flags(p, options, f"model options of the {names} families", seen=seen)


def dataset_arg(name: str) -> str:
    """A known dataset name, or folder:PATH with PATH made absolute (runs move; data stay)."""
    from ..data import DATASETS

    if name.startswith("folder:") and len(name) > len("folder:"):
        return "folder:" + str(Path(name[len("folder:") :]).expanduser().resolve())
    if name not in DATASETS:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {name!r} (choose from {', '.join(sorted(DATASETS))}, folder:PATH)"
        )
    return name


def config_values(args: argparse.Namespace) -> dict:
    """The config fields the user set on the command line, flat (tuples restored from lists)."""
    from ..config import ModelConfig, ObjectiveConfig, TrainConfig, option_names

    names = option_names().union(*({f.name for f in fields(c)} for c in
                                   (ModelConfig, ObjectiveConfig, TrainConfig)))  # fmt: skip
    out = {}
    for name in sorted(names):
        v = getattr(args, name, None)
        if v is not None:
            out[name] = tuple(v) if isinstance(v, list) else v
    return out


def run(args: argparse.Namespace) -> int:
    from ..api.train import train_into

    record = train_into(args.out, args.preset, config=args.config, resume=args.resume,
                        data_dir=args.data_dir, allow_nonfinite=args.allow_nonfinite,
                        **config_values(args))  # fmt: skip
    if not record.trained:
        print(f"{record.run_dir} has trained all its {record.epochs} epochs; --epochs N trains "
              "further")  # fmt: skip
    elif int(os.environ.get("RANK", 0)) == 0:
        print(f"run saved in {record.run_dir}")
    return 0
