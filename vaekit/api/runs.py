"""A run as the operations take it: a run directory or checkpoint file (loaded here), an
already loaded Run, or a model (LatentModel) used as it is; and the option rules they share."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Union

from ..config import Number

if TYPE_CHECKING:
    import torch

    from ..models import LatentModel
    from ..priors.base import Prior

# the rules of options that several operations take (the flags parse with the same)
GRID_N = Number(int, 1, 10_000)  # one picture of at most 100 x 100 images, decoded as one batch
STEPS = Number(int, 2)  # a strip or a grid side: from one end to the other
PORT = Number(int, 0, 65535)  # 0: a free one


@dataclass
class Run:
    """A trained model with where it came from. ckpt: its checkpoint dict (None for a bare
    model: then nothing is known of its data); path: the run dir or checkpoint it was loaded
    from; data_dir: its data root (the given one, else None when $VAEKIT_DATA is set, which
    the data loader reads, else the one recorded with the run)."""

    model: LatentModel
    ckpt: dict | None = None
    path: Path | None = None
    data_dir: Path | None = None

    @property
    def folder(self) -> Path | None:
        """The run's folder: the run dir itself, or a checkpoint file's folder."""
        return None if self.path is None else run_folder(self.path)

    @property
    def train_config(self) -> dict:
        """The run's training config (dataset, crop, ...) as its checkpoint records it."""
        if self.ckpt is None or "dataset" not in self.ckpt.get("train_config", {}):
            raise ValueError(
                f"{self.path or 'a bare model'} has no dataset (a model without its run's "
                "record): give its run directory, or data"
            )
        return self.ckpt["train_config"]

    def split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 images (N, C, H, W), labels (N,)) of the run's dataset split, at its size."""
        from ..data import load_split

        tc, cfg = self.train_config, self.model.cfg
        return load_split(tc["dataset"], split, self.data_dir, None, cfg.image_size,
                          cfg.in_channels, tc.get("crop", 0))  # fmt: skip

    def test_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(test images as the model sees them (binarized once, with a fixed seed, for
        bernoulli), labels)."""
        x, y = self.split("test")
        return self.model.likelihood.prepare_eval(x), y

    def images(self, data, limit: int | None = None, where: str | None = None) -> tuple:
        """The images of --data specs (the first `limit`, or all) as the model sees them:
        (uint8 (N, C, H, W), labels, paths, unreadable files [(path, reason)]). Files that
        cannot be read are left out with a note on stderr (where: the output listing them);
        none readable is a DataError."""
        import torch

        from ..data import inputs

        specs = [data] if isinstance(data, str) else list(data)
        cfg = self.model.cfg
        source = inputs.parse(specs, cfg.image_size, cfg.in_channels, self.data_dir)
        xs, ys, ps, n = [], [], [], 0
        for b in source.batches(min(1000, limit or 1000)):
            xs.append(self.model.likelihood.prepare_eval(b.x))
            ys.append(b.labels)
            ps.extend(b.paths or [])
            n += len(b.x)
            if limit and n >= limit:
                break
        inputs.warn_unreadable(source, where)
        labels = torch.cat(ys)[:limit].tolist() if source.labelled else None
        return torch.cat(xs)[:limit], labels, ps[:limit] or None, source.unreadable.files

    def picture_images(self, data, limit: int | None = None) -> tuple[torch.Tensor, str]:
        """(images as the model sees them (N, C, H, W), where they came from) for the picture
        operations: data's images when given (the first `limit`), else the run's test set."""
        if not data:
            return self.test_set()[0], "the test set"
        return self.images(data, limit)[0], "--data"

    def model_labels(self, data, limit: int | None = None) -> torch.Tensor | None:
        """The labels a conditional model takes with picture_images(data, limit): the test
        set's, or data's (a one-line ValueError when they have none); None for another model."""
        import torch

        if not self.model.conditional:
            return None
        labels = self.images(data, limit)[1] if data else self.test_set()[1][:limit]
        if labels is None:
            raise ValueError(
                "the model is conditional: --data needs class labels (a dataset split such as "
                "mnist:test, or class subfolders)"
            )
        return torch.as_tensor(labels)


RunLike = Union[str, Path, Run, "LatentModel"]


def open_run(
    run: RunLike,
    device: str = "cpu",
    data_dir: str | Path | None = None,
    allow_nonfinite: bool = False,
    raw_weights: bool = False,
) -> Run:
    """A Run from a run directory, checkpoint file or `vaekit export` safetensors file (its
    model on device, in eval mode;
    weights holding NaN or Inf refused unless allow_nonfinite; the moving average of the weights
    when the run kept one, unless raw_weights), a Run (as it is), or a model
    (as it is: its device and mode)."""
    from ..config import DEVICES
    from ..models import LatentModel

    if isinstance(run, Run):
        return run
    if isinstance(run, LatentModel):
        return Run(run, None, None, None if data_dir is None else Path(data_dir))
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    from .. import checkpoint
    from ..runtime.device import resolve_device

    path = Path(run)
    if path.suffix == ".safetensors":  # a `vaekit export` file: weights and the run's record
        from ..formats.export import read_safetensors

        ckpt = read_safetensors(path, allow_nonfinite=allow_nonfinite)
    else:
        ckpt = checkpoint.load(path, allow_nonfinite=allow_nonfinite)
    model = checkpoint.build_model(ckpt, path, raw_weights).to(resolve_device(device)).eval()
    attach_learned_prior(model, run_folder(path))
    return Run(model, ckpt, path, run_data_dir(data_dir, ckpt))


def attach_learned_prior(model: LatentModel, folder: Path) -> None:
    """A model with discrete codes (vqvae) samples from the PixelCNN fitted over them in the
    run (RUN/priors/pixelcnn.pt, by `vaekit prior RUN --kind pixelcnn`) when there is one: its
    own prior."""
    from ..priors import store

    if hasattr(model, "set_prior") and store.prior_path(folder, "pixelcnn").is_file():
        fitted, _ = store.load(folder, "pixelcnn")
        model.set_prior(fitted.to(next(model.parameters()).device))


def run_data_dir(data_dir: str | Path | None, ckpt: dict) -> Path | None:
    """The data root for a run's operation: data_dir, else $VAEKIT_DATA (read by
    vaekit.data.registry), else where the run was trained from (recorded in its checkpoint)."""
    if data_dir or os.environ.get("VAEKIT_DATA"):
        return None if data_dir is None else Path(data_dir)
    return ckpt.get("data_dir")


def run_folder(run_dir: Path) -> Path:
    """The folder of a run: RUN_DIR itself, or a checkpoint file's folder."""
    return run_dir if run_dir.is_dir() else run_dir.parent


def checked(name: str, value, rule: Number):
    """value by rule (a vaekit.config.Number, the one its flag parses with), else the
    one-line ValueError "NAME must be ..., got ..."."""
    try:
        return rule(value)
    except ValueError as e:
        raise ValueError(f"{name} {e}") from None


def prepare_out(out: str | Path | None) -> Path | None:
    """An output path made ready before the work (vaekit.outputs.prepare), or None. Called
    once the run is open: a default out in a mistyped RUN_DIR must not create it."""
    from .. import outputs

    return None if out is None else outputs.prepare(out)


def checked_label(model: LatentModel, label, all_ok: bool = False) -> int | str | None:
    """A --label value for model: None, a class number in range (an int, or its digits), or
    "all" where all_ok; else the one-line ValueError naming it (also for any label given to
    an unconditional model)."""
    if label is None:
        return None
    if not model.conditional:
        raise ValueError(
            f"--label {label}: this {model.cfg.family} model is not conditional (it was trained "
            "without labels)"
        )
    if all_ok and label == "all":
        return "all"
    K = model.num_classes
    text = str(label).strip()
    if isinstance(label, bool) or not text.lstrip("-").isdigit() or not 0 <= int(text) < K:
        what = "a class 0-" + str(K - 1) + (" or all" if all_ok else "")
        raise ValueError(f"--label must be {what}, got {label!r}")
    return int(text)


def image_label(r: Run, label: int | None, index: int, data) -> int | None:
    """The class a conditional model encodes test image `index` with: label if given, else its
    own from the test set (images of --data need --label); None for an unconditional model."""
    if not r.model.conditional or label is not None:
        return label
    if data:
        raise ValueError("--label: give the class of the --data images (the model is conditional)")
    return int(r.test_set()[1][index])


def check_index(i: int, n: int, flag: str, where: str = "the test set") -> None:
    """i must name one of n images, else ValueError "FLAG i is out of range: ..."."""
    if not 0 <= i < n:
        raise ValueError(f"{flag} {i} is out of range: {where} has images 0..{n - 1}")


def inference_precision(precision: str, model) -> str:
    """The precision an inference command runs the model in: "auto" -> bf16 where the model's
    device computes it natively, else fp32; fp32 and bf16 as asked (a warning on stderr for
    bf16 where it is not native). ValueError for any other name."""
    from ..config import PRECISIONS
    from ..runtime.precision import choose_precision

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = next(model.parameters()).device

    def warn(line: str) -> None:  # the choice itself is not said: stderr stays for errors
        if line.startswith("warning"):
            print(line, file=sys.stderr)

    return choose_precision(precision, device, log=warn)


def with_prior(r: Run, prior: str | Prior | None) -> Run:
    """r with its model sampling from a fitted prior: a kind name, read from the run's
    folder (RUN/priors/NAME.pt, written by `vaekit prior`), or a Prior; None: r as it is
    (the model's own prior). A one-line error when the run has no such fitted prior."""
    if prior is None:
        return r
    from ..models.fitted import WithPrior

    if isinstance(prior, str):
        if r.folder is None:
            raise ValueError(
                f"prior {prior!r} is read from a run directory: give the run dir, not a model"
            )
        from ..priors import store

        fitted, meta = store.load(r.folder, prior)
        warn_other_weights(r, prior, meta)
        return replace(r, model=WithPrior(r.model, fitted, prior, meta))
    return replace(r, model=WithPrior(r.model, prior, type(prior).__name__))


def warn_other_weights(r: Run, name: str, meta: dict) -> None:
    """A note on stderr when a fitted prior was fitted to other weights than the run's now."""
    fitted = meta.get("checkpoint", {})
    now = {"epoch": r.ckpt.get("epoch"), "batch": r.ckpt.get("batch", 0)}
    if any(fitted.get(k) != v for k, v in now.items()):
        print(
            f"note: prior {name} was fitted to the codes of epoch {fitted.get('epoch')} "
            f"(+{fitted.get('batch', 0)} steps), the run is at epoch {now['epoch']} "
            f"(+{now['batch']} steps): fit it again with `vaekit prior`",
            file=sys.stderr,
        )


def prior_record(model: LatentModel) -> dict:
    """Which prior a model samples from, for a record: {"prior": its name ("own": the model's
    own), "prior_fit": what a fitted one was fitted on (None for the model's own)}."""
    from ..models.fitted import WithPrior

    if isinstance(model, WithPrior):
        return {"prior": model.name, "prior_fit": model.meta}
    return {"prior": "own", "prior_fit": None}
