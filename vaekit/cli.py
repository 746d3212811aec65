"""The command line: the only place that reads argv. Every config field is a --flag."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import MISSING, fields
from pathlib import Path

from . import __version__, outputs

EPILOG = "Run 'vaekit COMMAND --help' for a command's options."
REPEATABLE = {"log"}  # list flags that add up when given again


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
    from .config import Number

    group = p.add_argument_group(title)
    types, seen = types or {}, seen if seen is not None else set()
    for f in fields(cls):
        if f.name in seen or f.name == "net":
            continue
        seen.add(f.name)
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        help_, rule = f.metadata.get("help", ""), f.metadata.get("rule")
        if f.name in types:
            kind, metavar = types[f.name]
            nargs = "+" if isinstance(default, tuple) else None
            action = "extend" if f.name in REPEATABLE else None  # --log a --log b: both
            group.add_argument(
                flag,
                type=kind,
                nargs=nargs,
                action=action,
                default=None,
                metavar=metavar,
                help=help_,
            )
        elif isinstance(default, bool):
            group.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=None, help=help_
            )
        elif isinstance(rule, Number) and isinstance(default, tuple):
            group.add_argument(
                flag, type=arg(rule), nargs="+", default=None, metavar="N", help=help_
            )
        elif isinstance(rule, Number):
            group.add_argument(flag, type=arg(rule), default=None, help=f"{help_} [{default}]")
        elif rule is not None:  # a value of several words: --image-size 64 48
            group.add_argument(flag, action=JoinedValue, rule=rule, nargs="+", default=None,
                               metavar="H[xW]", help=help_)  # fmt: skip
        else:
            group.add_argument(flag, type=type(default), default=None, help=f"{help_} [{default}]")


def build_parser() -> Parser:
    from .config import (
        DEVICES,
        FAMILIES,
        NONNEG,
        NONNEG_INT,
        POSITIVE,
        POSITIVE_INT,
        PRESETS,
        SEED,
        ModelConfig,
        Number,
        ObjectiveConfig,
        TrainConfig,
    )

    root = Parser(prog="vaekit", description="Variational autoencoders in PyTorch.", epilog=EPILOG)
    root.add_argument("--version", action="version", version=f"vaekit {__version__}")
    sub = root.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")

    p = sub.add_parser("train", help="train a VAE into a run directory")
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
    p.add_argument("--data-dir", type=Path, help="dataset root [$VAEKIT_DATA, ~/.cache/vaekit]")
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
    p.set_defaults(run=cmd_train)

    def run_parser(name: str, help_: str, out: str | None):
        q = sub.add_parser(name, help=help_)
        q.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run dir or checkpoint")
        if out:
            q.add_argument("--out", type=Path, help=f"output PNG [RUN_DIR/{out}]")
        q.add_argument("--device", default="cpu", choices=DEVICES, help="[cpu]")
        q.add_argument("--data-dir", type=Path, help="dataset root [$VAEKIT_DATA, ~/.cache/vaekit]")
        allow_nonfinite(q, "use")
        q.add_argument(
            "--raw-weights",
            action="store_true",
            help="use the trained weights, not their moving average (runs trained with --ema)",
        )
        return q

    q = run_parser("sample", "decode samples from the prior as a grid", "samples.png")
    # one picture of at most 10,000 images (100 x 100: 6,600 px square at 64 px): decoded as one
    # batch, so that 10^8 is a one-line refusal, not an allocation failure
    grid_n = arg(Number(int, 1, 10_000))
    q.add_argument("--n", type=grid_n, default=64, help="how many samples [64]")
    q.add_argument("--temperature", type=arg(POSITIVE), default=1.0, help="z ~ N(0, T^2 I) [1.0]")
    q.add_argument(
        "--temperatures",
        type=arg(NONNEG),
        nargs="+",
        metavar="T",
        help="one temperature per latent group, top first (hierarchical models)",
    )
    q.add_argument("--seed", type=arg(SEED), default=0, help="noise seed [0]")
    q.set_defaults(run=cmd_sample)

    def data_arg(q) -> None:
        q.add_argument(
            "--data",
            nargs="+",
            metavar="SPEC",
            help="the images: DATASET:SPLIT, folder:PATH or image files [the run's test set]",
        )

    q = run_parser("reconstruct", "test images beside their reconstructions", "recon.png")
    q.add_argument("--n", type=grid_n, default=64, help="the first N images [64]")
    data_arg(q)
    q.set_defaults(run=cmd_reconstruct)

    q = run_parser("traverse", "vary two latent dims around a test image's code", "traverse.png")
    q.add_argument(
        "--dims", type=arg(NONNEG_INT), nargs=2, metavar=("I", "J"), help="[the two top-KL dims]"
    )
    q.add_argument("--index", type=arg(NONNEG_INT), default=0, help="image to encode [0]")
    data_arg(q)
    q.add_argument(
        "--steps", type=arg(Number(int, 2)), default=13, help="grid side, from -span to span [13]"
    )
    q.add_argument(
        "--span", type=arg(POSITIVE), default=7.0, help="offsets linspace(-span, span) [7]"
    )
    q.set_defaults(run=cmd_traverse)

    q = run_parser("interpolate", "walk between two test images' latent means", "interp.png")
    q.add_argument("--a", type=arg(NONNEG_INT), default=0, help="first image index [0]")
    q.add_argument("--b", type=arg(NONNEG_INT), default=1, help="second image index [1]")
    q.add_argument(
        "--steps", type=arg(Number(int, 2)), default=10, help="images in the strip, a to b [10]"
    )
    data_arg(q)
    q.set_defaults(run=cmd_interpolate)

    q = run_parser("evaluate", "test-set ELBO, NLL and bits/dim, active units, linear probe", None)
    q.add_argument("--json", action="store_true", help="print the results as JSON")
    q.add_argument("--out", type=Path, help="also write the JSON to this file")
    q.add_argument(
        "--batch-size", type=arg(POSITIVE_INT), default=500, help="images per batch [500]"
    )
    q.add_argument(
        "--iw-samples",
        type=arg(POSITIVE_INT),
        metavar="K",
        help="also the IWAE NLL bound with K samples; its progress is kept beside the checkpoint, "
        "so a stopped evaluation resumes",
    )
    q.add_argument(
        "--iw-chunk", type=arg(POSITIVE_INT), default=50, help="IW samples per image per pass [50]"
    )
    q.add_argument(
        "--iw-batch", type=arg(POSITIVE_INT), default=250, help="IW samples per decoder pass [250]"
    )
    q.add_argument("--no-probe", action="store_true", help="skip the linear probe on the latents")
    q.add_argument(
        "--limit", type=arg(NONNEG_INT), default=0, help="first N images of each split (0 = all)"
    )
    q.set_defaults(run=cmd_evaluate)
    q = run_parser("metrics", "sample quality: FID, KID, precision/recall of samples", None)
    q.add_argument(
        "--n", type=arg(POSITIVE_INT), default=10_000, help="samples, and test images [10000]"
    )
    q.add_argument("--temperature", type=arg(POSITIVE), default=1.0, help="z ~ N(0, T^2 I) [1.0]")
    q.add_argument(
        "--seed", type=arg(SEED), default=0, help="noise seed, also of KID's subsets [0]"
    )
    q.add_argument(
        "--features",
        choices=["classifier", "inception"],
        default="classifier",
        help="the dataset's own classifier (trained and cached on first use; needs labels) or "
        "Inception-v3 (the standard FID; needs its weights file and vaekit[inception]) "
        "[classifier]",
    )
    q.add_argument("--inception-weights", type=Path, metavar="FILE", help="[torch hub's folder]")
    q.add_argument(
        "--classifier-limit",
        type=arg(NONNEG_INT),
        default=0,
        help="train it on N images (0 = all) [0]",
    )
    q.add_argument(
        "--batch-size", type=arg(POSITIVE_INT), default=500, help="images per batch [500]"
    )
    q.add_argument("--out", type=Path, help="JSON [RUN_DIR/quality-FEATURES-tT.json]")
    q.add_argument("--json", action="store_true", help="print the results as JSON")
    q.set_defaults(run=cmd_metrics)
    q = run_parser("encode", "posterior means and log-variances of any images", None)
    q.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="SPEC",
        help="DATASET:SPLIT (mnist:test), folder:PATH (a folder or .zip), or image files",
    )
    q.add_argument("--out", type=Path, required=True, help="output file (.npz or .csv)")
    q.add_argument("--format", choices=["npz", "csv"], help="[from --out's suffix, else npz]")
    q.add_argument(
        "--batch-size", type=arg(POSITIVE_INT), default=1000, help="images per batch [1000]"
    )
    q.add_argument(
        "--all-groups", action="store_true", help="also the lower latent groups (hierarchical)"
    )
    q.set_defaults(run=cmd_encode)

    q = run_parser("score", "anomaly / out-of-distribution scores of any images", None)
    q.add_argument("--data", nargs="+", required=True, metavar="SPEC", help="images to score")
    q.add_argument("--out", type=Path, required=True, help="per-image scores, CSV")
    q.add_argument(
        "--iw-samples", type=arg(NONNEG_INT), default=0, metavar="K", help="IW bound (0: ELBO)"
    )
    q.add_argument("--background", type=Path, metavar="RUN2", help="for the likelihood ratio")
    q.add_argument(
        "--in-dist",
        nargs="+",
        metavar="SPEC",
        help="images known to be normal: AUROC, AUPRC, FPR@95 of each score (scikit-learn)",
    )
    q.add_argument("--seed", type=arg(SEED), default=0, help="noise seed [0]")
    q.set_defaults(run=cmd_score)

    q = run_parser("explore", "a local web page to steer the latent space live", None)
    q.add_argument("--host", default="127.0.0.1", help="address to listen on [127.0.0.1]")
    q.add_argument(
        "--port",
        type=arg(Number(int, 0, 65535)),
        default=8000,
        help="port; 0 picks a free one [8000]",
    )
    q.add_argument("--quiet", action="store_true", help="do not log each request")
    q.add_argument(
        "--tsne-max",
        type=arg(NONNEG_INT),
        default=3000,  # ~40-70 s on one busy CPU core, once per run
        metavar="N",
        help="a t-SNE map of at most N test images (a fixed random subset), computed once and "
        "cached beside the checkpoint; 0: only PCA and the top-KL dims [3000]",
    )
    q.set_defaults(run=cmd_explore)

    q = sub.add_parser("export", help="write the weights (safetensors) or the decoder (ONNX)")
    q.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run dir or checkpoint")
    q.add_argument("--format", required=True, choices=["safetensors", "onnx"], help="file format")
    q.add_argument("--out", type=Path, help="output [RUN_DIR/model.safetensors|decoder.onnx]")
    allow_nonfinite(q, "export")
    q.set_defaults(run=cmd_export, device="cpu")
    return root


def allow_nonfinite(p: argparse.ArgumentParser, verb: str) -> None:
    """The forensic override of the refusal of NaN/Inf weights (vaekit.checkpoint.load)."""
    p.add_argument(
        "--allow-nonfinite",
        action="store_true",
        help=f"{verb} a checkpoint whose weights hold NaN or Inf (refused otherwise)",
    )


def dataset_arg(name: str) -> str:
    """A known dataset name, or folder:PATH with PATH made absolute (runs move; data stay)."""
    from .data import DATASETS

    if name.startswith("folder:") and len(name) > len("folder:"):
        return "folder:" + str(Path(name[len("folder:") :]).expanduser().resolve())
    if name not in DATASETS:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {name!r} (choose from {', '.join(sorted(DATASETS))}, folder:PATH)"
        )
    return name


def config_values(args: argparse.Namespace) -> dict:
    """The config fields the user set on the command line, flat (tuples restored from lists)."""
    from .config import ModelConfig, ObjectiveConfig, TrainConfig, option_names

    names = option_names().union(*({f.name for f in fields(c)} for c in
                                   (ModelConfig, ObjectiveConfig, TrainConfig)))  # fmt: skip
    out = {}
    for name in sorted(names):
        v = getattr(args, name, None)
        if v is not None:
            out[name] = tuple(v) if isinstance(v, list) else v
    return out


def cmd_train(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from . import checkpoint
    from .training.lock import run_lock

    if args.resume:
        if args.out and args.out != args.resume:
            raise ValueError("--resume RUN_DIR continues in RUN_DIR; drop --out")
        if args.config or args.preset:
            raise ValueError("--resume continues a run with its own config; drop --config/--preset")
        checkpoint.resolve(args.resume)  # a run dir that is there, before the lock is taken
    # a resumed run's directory is held before its checkpoint is read: no other writer can
    # replace it in between (a new run's is held by train_run)
    with run_lock(args.resume) if args.resume else nullcontext():
        return train_or_resume(args)


def train_or_resume(args: argparse.Namespace) -> int:
    """cmd_train's work: a new run, or the run in --resume continued."""
    from . import dist
    from .training import resume_configs
    from .training.run import new_run_configs, train_run

    values = config_values(args)
    if args.resume:
        mcfg, ocfg, tcfg, ckpt = resume_configs(args.resume, values, args.allow_nonfinite)
        out = args.resume
        if ckpt["epoch"] >= tcfg.epochs:
            print(f"{out} has trained all its {tcfg.epochs} epochs; --epochs N trains further")
            return 0
        data_dir = args.data_dir or (
            None if os.environ.get("VAEKIT_DATA") else ckpt.get("data_dir")
        )
    else:
        if args.allow_nonfinite:
            raise ValueError("--allow-nonfinite goes with --resume: a new run has no weights yet")
        preset, mcfg, ocfg, tcfg = new_run_configs(args.preset, args.config, values, args.data_dir)
        name = tcfg.dataset.replace("folder:", "folder-").replace("/", "_").strip("_")
        out, ckpt, data_dir = args.out or Path("runs") / f"{name}-{preset}", None, args.data_dir
    try:
        train_run(mcfg, ocfg, tcfg, out, ckpt=ckpt, data_dir=data_dir)
        dist.barrier()  # leave together: rank 0 may still be writing figures
    finally:
        dist.cleanup()
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"run saved in {out}")
    return 0


def run_data_dir(args: argparse.Namespace, ckpt: dict) -> Path | None:
    """The data root for a run command: --data-dir, else $VAEKIT_DATA (read by data.py), else
    where the run was trained from (recorded in its checkpoint)."""
    if args.data_dir or os.environ.get("VAEKIT_DATA"):
        return args.data_dir
    return ckpt.get("data_dir")


def load_run(args: argparse.Namespace, with_data: bool = True):
    """(model in eval mode, checkpoint dict, test images, test labels) for a run command;
    the data are None without with_data. The test images are as the model sees them:
    binarized once, with a fixed seed, for bernoulli."""
    from . import checkpoint
    from .data import load_split
    from .training import resolve_device

    ckpt = checkpoint.load(args.run_dir, allow_nonfinite=args.allow_nonfinite)
    raw = getattr(args, "raw_weights", False)  # export has no --raw-weights: the EMA's
    model = checkpoint.build_model(ckpt, args.run_dir, raw).to(resolve_device(args.device))
    model.eval()
    if not with_data:
        return model, ckpt, None, None
    x_test, y_test = load_split(*data_args(ckpt, model.cfg, "test", run_data_dir(args, ckpt)))
    return model, ckpt, model.likelihood.prepare_eval(x_test), y_test


def data_args(ckpt: dict, cfg, split: str, data_dir: Path | None) -> tuple:
    """load_split's arguments for a run's data, as its model takes them."""
    tc = ckpt["train_config"]
    return tc["dataset"], split, data_dir, None, cfg.image_size, cfg.in_channels, tc.get("crop", 0)


def run_images(args: argparse.Namespace, limit: int | None = None):
    """(model, images as the model sees them (N, C, H, W), where they came from) for the picture
    commands: --data's images when given (the first `limit` of them), else the run's test set."""
    if not args.data:
        model, _, x, _ = load_run(args)
        return model, x, "the test set"
    model, ckpt, _, _ = load_run(args, with_data=False)
    x, *_ = gather(model, args.data, run_data_dir(args, ckpt), limit)
    return model, x, "--data"


def check_index(i: int, n: int, flag: str, where: str = "the test set") -> None:
    if not 0 <= i < n:
        raise ValueError(f"{flag} {i} is out of range: {where} has images 0..{n - 1}")


def run_folder(run_dir: Path) -> Path:
    """The folder of a run: RUN_DIR itself, or a checkpoint file's folder."""
    return run_dir if run_dir.is_dir() else run_dir.parent


def write(arr, args: argparse.Namespace, default: str) -> int:
    from .plots import save_png

    path = save_png(arr, args.out or run_folder(args.run_dir) / default)
    print(f"wrote {path} ({arr.shape[1]}x{arr.shape[0]} px)")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from .generate import sample_grid

    model, *_ = load_run(args, with_data=False)
    groups = len(model.latent_shapes)
    if args.temperatures and len(args.temperatures) != groups:
        raise ValueError(
            f"--temperatures: {len(args.temperatures)} given, the model has {groups} latent groups"
        )
    if not model.has_prior:
        print(
            f"note: a {model.cfg.family} model has no prior: these are decoded codes z ~ N(0, "
            "T^2 I), not samples of a generative model",
            file=sys.stderr,
        )
    t = args.temperatures or args.temperature
    return write(sample_grid(model, args.n, t, args.seed), args, "samples.png")


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from .generate import reconstruction_grid

    model, x, where = run_images(args, args.n)
    if args.n > len(x):
        print(f"note: --n {args.n} but {where} has {len(x)} images; showing {len(x)}")
    return write(reconstruction_grid(model, x[: args.n]), args, "recon.png")


def cmd_traverse(args: argparse.Namespace) -> int:
    from .evaluate import posterior
    from .generate import dim_scores, top_dims, traverse_grid

    if args.dims and args.dims[0] == args.dims[1]:
        raise ValueError(
            f"--dims takes two different dims (rows, columns), got {args.dims[0]} twice"
        )
    model, x, where = run_images(args)
    check_index(args.index, len(x), "--index", where)
    dims = args.dims
    if dims is None:
        mu, kl = posterior(model, x)
        dims = top_dims(dim_scores(mu, kl), 2)
        how = "the top-KL dims" if kl is not None else "the dims whose codes vary most"
        print(f"traversing latent dims {dims[0]} (rows) and {dims[1]} (columns): {how} of {where}")
    return write(
        traverse_grid(model, x[args.index], tuple(dims), args.steps, args.span),
        args,
        "traverse.png",
    )


def cmd_interpolate(args: argparse.Namespace) -> int:
    from .generate import interpolate_grid

    model, x, where = run_images(args, max(args.a, args.b) + 1)
    check_index(args.a, len(x), "--a", where)
    check_index(args.b, len(x), "--b", where)
    return write(interpolate_grid(model, x[args.a], x[args.b], args.steps), args, "interp.png")


def weights_label(ckpt: dict) -> str:
    """Which weights a checkpoint holds: "epoch 8", or "epoch 8 + 120 steps (mid-epoch 9)"."""
    epoch, batch = ckpt["epoch"], ckpt.get("batch", 0)
    return f"epoch {epoch}" + (f" + {batch} steps (mid-epoch {epoch + 1})" if batch else "")


def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from . import checkpoint
    from .data import load_split
    from .evaluate import (
        active_units_per_group,
        evaluate,
        iw_log_px_saved,
        linear_probe,
        posterior,
    )
    from .losses import active_units, bits_per_dim
    from .training.allocator import keep_freed_memory

    n = args.limit or None

    def stage(what: str) -> None:  # progress on stderr: stdout is the result (--json)
        print(f"evaluate: {what}...", file=sys.stderr, flush=True)

    model, ckpt, x, y_test = load_run(args)  # quick; its errors stay one line on stderr
    if args.iw_samples and not model.has_kl:
        raise ValueError(
            f"--iw-samples: a {model.cfg.family} model has no posterior density, so no "
            "likelihood bound; drop --iw-samples"
        )
    x, y_test = x[:n], y_test[:n]
    dataset = ckpt["train_config"]["dataset"]
    stage(f"loss and ELBO of {len(x):,} test images")
    res = {
        "dataset": dataset,
        "split": "test",
        "family": model.cfg.family,
        "likelihood": model.cfg.likelihood,
        "epoch": ckpt["epoch"],
        "step": ckpt.get("step"),
        "mid_epoch_steps": ckpt.get("batch", 0),
        "iw_samples": args.iw_samples,
        **evaluate(model, x, batch_size=args.batch_size),
    }
    nll, res["bits_per_dim_from"] = (None, None) if res["elbo"] is None else (-res["elbo"], "elbo")
    if args.iw_samples:
        stem = checkpoint.resolve(args.run_dir).with_suffix("")
        # channels-last: on CPU the bound's millions of decoder passes run ~3x faster (the same
        # numbers up to rounding), in batches of 250 samples that stay in cache; and each pass
        # reuses the last one's freed buffers (mnist-hvae: 1.1-1.3x)
        model = model.to(memory_format=torch.channels_last)
        keep_freed_memory()
        stage(f"importance-weighted bound, K={args.iw_samples}, of {len(x):,} test images")
        log_px, info = iw_log_px_saved(
            model, x, args.iw_samples, stem=stem, chunk=args.iw_chunk, batch_size=args.iw_batch
        )
        nll = res["nll_iw"] = -log_px.mean().item()
        res["nll_iw_sem"] = (log_px.std() / len(x) ** 0.5).item() if len(x) > 1 else None
        res["iw_seconds"], res["iw_record"] = info["seconds"], info["record"]
        res["bits_per_dim_from"] = "nll_iw"
    res["bits_per_dim"] = None if nll is None else bits_per_dim(nll, x[0].numel())
    stage("active units")
    mu_test = posterior(model, x)[0]
    res["active_units"] = active_units(mu_test)[0]  # of the top group
    res["active_units_per_group"] = active_units_per_group(model, x, args.batch_size)
    if len(y_test.unique()) < 2:  # an unlabelled folder: nothing to classify
        args.no_probe = True
    if not args.no_probe:
        split = load_split(*data_args(ckpt, model.cfg, "train", run_data_dir(args, ckpt)))
        x_train, y_train = (t[:n] for t in split)
        stage(f"linear probe: encoding {len(x_train):,} training images")
        mu_train = posterior(model, model.likelihood.prepare_eval(x_train), desc="encoding")[0]
        stage("linear probe: fitting a logistic regression on their latent means (L-BFGS)")
        res["probe_accuracy"] = linear_probe(mu_train, y_train, mu_test, y_test)
    if args.out:
        checkpoint.save_json(res, args.out)
    if args.json:
        print(outputs.dumps(res, indent=2))
        return 0
    head = f"{res['dataset']} test ({res['num_images']} images, {weights_label(ckpt)}): "
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
        line += f", nll_iw {res['nll_iw']:.2f} nats (K={args.iw_samples}"
        line += f", s.e. {res['nll_iw_sem']:.2f})" if res["nll_iw_sem"] is not None else ")"
    if res["bits_per_dim"] is not None:
        line += f", {res['bits_per_dim']:.4f} bits/dim"
    line += f", {res['active_units']} active units"
    if "probe_accuracy" in res:
        line += f", probe accuracy {res['probe_accuracy']:.4f}"
    print(line)
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    import time

    from . import checkpoint
    from .classifier import Spec
    from .data import load_split
    from .metrics import DC_K, PR_K
    from .quality import classifier_features, inception_features, sample_quality

    if args.n <= max(PR_K, DC_K):  # before the features model is trained, not after
        raise ValueError(
            f"--n must be > {max(PR_K, DC_K)} (the k of the k-NN metrics), got {args.n}"
        )
    t0, c0 = time.perf_counter(), time.process_time()
    model, ckpt, _, _ = load_run(args, with_data=False)
    cfg, data_dir = model.cfg, run_data_dir(args, ckpt)
    tc = ckpt["train_config"]
    run_dir = args.run_dir if args.run_dir.is_dir() else args.run_dir.parent
    out = args.out or run_dir / f"quality-{args.features}-t{args.temperature:g}.json"
    try:  # before minutes of work, not after
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--out {out}: cannot create its folder ({e.strerror or e})") from None
    if args.features == "inception":
        features = inception_features(args.inception_weights)
    else:
        spec = Spec(tc["dataset"], cfg.image_size, cfg.in_channels, tc.get("crop", 0),
                    limit=args.classifier_limit)  # fmt: skip
        features = classifier_features(spec, data_dir)
    t_features = time.perf_counter() - t0
    x_real = load_split(*data_args(ckpt, cfg, "test", data_dir))[0]
    if not model.has_prior:
        print(
            f"note: the {cfg.family} family has no prior, so no samples to measure; "
            "reconstructions only",
            file=sys.stderr,
        )
    res = sample_quality(model, features, x_real, model.likelihood.prepare_eval(x_real),
                         args.n, args.temperature, args.seed, args.batch_size)  # fmt: skip
    res = {
        "run": str(args.run_dir),
        "dataset": tc["dataset"],
        "family": cfg.family,
        "likelihood": cfg.likelihood,
        "epoch": ckpt["epoch"],
        "features": features.info,
        "num_samples": args.n if model.has_prior else 0,
        "temperature": args.temperature,
        "seed": args.seed,
        **res,
    }
    res["seconds"] = {"features_model": t_features, **res["seconds"],
                      "total": time.perf_counter() - t0,
                      "total_cpu": time.process_time() - c0}  # fmt: skip
    try:
        checkpoint.save_json(res, out)
    except OSError as e:
        raise ValueError(f"cannot write {out} ({e.strerror or e})") from None
    if args.json:
        print(outputs.dumps(res, indent=2))
        return 0
    acc = features.info.get("test_accuracy")
    print(
        f"{res['dataset']} test, {weights_label(ckpt)}, {features.info['name']} features"
        + (f" (test accuracy {acc:.4f})" if acc is not None else "")
    )
    for what in ("samples", "reconstructions"):
        m = res[what]
        if m is None:
            print(f"{what:>15}: none (no prior)")
            continue
        print(
            f"{what:>15}: FID {m['fid']:.3f}  KID {m['kid']:.5f}  precision {m['precision']:.3f}"
            f"  recall {m['recall']:.3f}  density {m['density']:.3f}  coverage "
            f"{m['coverage']:.3f}  ({m['num_fake']:,} vs {m['num_real']:,} test images)"
        )
    print(f"wrote {out} ({res['seconds']['total']:.0f} s)")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    import time

    import torch

    from . import inputs
    from .latents import encode_source, save
    from .training.allocator import keep_freed_memory

    fmt = args.format or ("csv" if args.out.suffix.lower() == ".csv" else "npz")
    model, ckpt, _, _ = load_run(args, with_data=False)
    cfg = model.cfg
    source = inputs.parse(args.data, cfg.image_size, cfg.in_channels, run_data_dir(args, ckpt))
    # channels-last: the encoder's convolutions run 1.3-2x faster on CPU (same numbers up to
    # rounding)
    model = model.to(memory_format=torch.channels_last)
    keep_freed_memory()  # batches reuse their buffers instead of faulting pages in again
    t0 = time.perf_counter()
    arrays = encode_source(model, source, args.batch_size, args.all_groups)
    seconds = time.perf_counter() - t0
    n = len(arrays["mu"])
    listed = "its unreadable and unreadable_errors" if fmt == "npz" else "rows with an error"
    inputs.warn_unreadable(source, f"{args.out} ({listed})")
    path = save(arrays, args.out, fmt)
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in arrays.items())
    print(f"wrote {path}: {shapes} ({n} images in {seconds:.1f} s)")
    return 0


def gather(
    model, specs: list[str], data_dir, limit: int | None = None, where: str | None = None
) -> tuple:
    """The images of --data specs (the first `limit`, or all) as the model sees them:
    (uint8 (N, C, H, W), labels, paths, unreadable files [(path, reason)]). Files that cannot
    be read are left out with a note on stderr (where: the output listing them); none
    readable is a DataError."""
    import torch

    from . import inputs

    source = inputs.parse(specs, model.cfg.image_size, model.cfg.in_channels, data_dir)
    xs, ys, ps, n = [], [], [], 0
    for b in source.batches(min(1000, limit or 1000)):
        xs.append(model.likelihood.prepare_eval(b.x))
        ys.append(b.labels)
        ps.extend(b.paths or [])
        n += len(b.x)
        if limit and n >= limit:
            break
    inputs.warn_unreadable(source, where)
    labels = torch.cat(ys)[:limit].tolist() if source.labelled else None
    return torch.cat(xs)[:limit], labels, ps[:limit] or None, source.unreadable.files


def cmd_score(args: argparse.Namespace) -> int:
    from . import checkpoint
    from .scores import ood_metrics, score
    from .training import resolve_device

    model, ckpt, _, _ = load_run(args, with_data=False)
    if not model.has_kl:
        raise ValueError(f"a {model.cfg.family} model has no likelihood to score with; use a vae")
    background = None
    if args.background:
        ckpt2 = checkpoint.load(args.background, allow_nonfinite=args.allow_nonfinite)
        background = checkpoint.build_model(ckpt2, args.background)
        background = background.to(resolve_device(args.device)).eval()
        same = (background.cfg.image_size, background.cfg.in_channels, background.likelihood.binary)
        if same != (model.cfg.image_size, model.cfg.in_channels, model.likelihood.binary):
            raise ValueError("--background must model the same images (size, channels, binary)")
    data_dir = run_data_dir(args, ckpt)
    where = f"{args.out} (rows with an error)"
    x, labels, paths, unreadable = gather(model, args.data, data_dir, where=where)
    scores = score(model, x, args.iw_samples, background, args.seed)
    with outputs.csv_rows(args.out) as w:  # whole or not at all
        w.writerow(["index", "path", "label", *scores, "error"])
        for i in range(len(x)):
            row = [i, paths[i] if paths else "", labels[i] if labels else ""]
            w.writerow(row + [f"{v[i]:.4f}" for v in scores.values()] + [""])
        for path, why in unreadable:  # no scores: the file could not be read
            w.writerow(["", path, "", *[""] * len(scores), why])
    more = f" ({len(unreadable)} unreadable)" if unreadable else ""
    print(f"wrote {args.out}: {len(x)} images{more}, scores {', '.join(scores)} (bits)")
    if args.in_dist:
        x_in, *_ = gather(model, args.in_dist, data_dir)
        normal = score(model, x_in, args.iw_samples, background, args.seed)
        keys = [k for k in scores if k != "bits_per_dim"]
        res = {k: ood_metrics(normal[k], scores[k]) for k in keys}
        res["counts"] = {"normal": len(x_in), "scored": len(x)}
        path = args.out.with_suffix(".metrics.json")
        checkpoint.save_json({"data": args.data, "in_dist": args.in_dist, **res}, path)
        for k in keys:
            m = res[k]
            print(f"{k:>10}: AUROC {m['auroc']:.4f}  AUPRC {m['auprc']:.4f}  "
                  f"FPR@95 {m['fpr_at_95_tpr']:.4f}")  # fmt: skip
        print(f"wrote {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import save_onnx, save_safetensors

    model, *_ = load_run(args, with_data=False)
    run_dir = run_folder(args.run_dir)
    if args.format == "safetensors":
        path = save_safetensors(model, args.out or run_dir / "model.safetensors")
    else:
        path = save_onnx(model, args.out or run_dir / "decoder.onnx")
    print(f"wrote {path}")
    return 0


def cmd_explore(args: argparse.Namespace) -> int:
    from . import checkpoint
    from .explore import Explorer, host_warning, make_server, url_of

    try:  # bind first: a busy port fails at once, before the model and data load
        server = make_server(None, args.host, args.port, quiet=args.quiet)
    except OSError as e:
        raise ValueError(f"cannot listen on {args.host}:{args.port} ({e.strerror or e})") from None
    try:
        model, ckpt, x, y = load_run(args)
        print(f"encoding {len(x)} test images for the map...", flush=True)
        dataset = ckpt["train_config"]["dataset"]
        cache = checkpoint.resolve(args.run_dir).with_suffix(".tsne.npz")  # last.tsne.npz
        server.RequestHandlerClass.explorer = Explorer(
            model, x, y, dataset, tsne_max=args.tsne_max, cache=cache
        )
        if warning := host_warning(args.host):
            print(warning, file=sys.stderr)
        print(f"vaekit explorer: {url_of(server)}  (Ctrl-C stops it)", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:  # the usual way to stop a local server: not an error
        print("explorer stopped")
    finally:
        server.server_close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # --help, --version and bad flags end here
    # after parsing: these import torch, which --help need not wait for
    from .checkpoint import CheckpointError
    from .data import DataError
    from .training import TrainError

    try:
        if args.command != "train" and getattr(args, "out", None) is not None:
            outputs.prepare(args.out)  # its folder made and writable before the work, not after
        return args.run(args)
    except (CheckpointError, DataError, TrainError, ValueError, ImportError) as e:
        print(f"vaekit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a file that cannot be written or read: one line
        print(f"vaekit {args.command}: error: {os_error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vaekit {args.command}: interrupted", file=sys.stderr)
        return 130


def os_error_line(e: OSError) -> str:
    """An OSError in one line: the file and the reason (OutputError's own words)."""
    if isinstance(e, outputs.OutputError) or not e.filename:
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    return f"{e.filename}: {e.strerror or e}"
