"""Configs, registries and presets: plain dataclasses and names, no torch.

Model code imports this module, never the reverse. Three configs describe a run:
- ModelConfig: the family (a registered name), the data it takes, the likelihood, and the
  family's own options in their own dataclass (ModelConfig.net, tagged by the family's name);
- ObjectiveConfig: what the loop minimises (elbo or iwae, beta, KL warm-up, free bits, K);
- TrainConfig: data, optimisation, schedule, output.
Registries map names to classes given as "module:Class" strings, imported on first use
(resolve), so reading a config never imports torch. A preset is a flat dict of field values,
each routed to the config that owns the field (every field name is unique across configs).
"""

from __future__ import annotations

import importlib
import json
import math
import numbers
from dataclasses import MISSING, Field, asdict, dataclass, field, fields, replace
from pathlib import Path

from .errors import ConfigError


@dataclass(frozen=True)
class Number:
    """The rule of a numeric config field or flag, defined once: an int or a float, always
    finite, >= low (> low if open_low) and <= high (< high if open_high); zero: 0 is also taken
    (an 'off' value).
    Calling it parses a value as a flag or a config file gives it."""

    kind: type = float
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    zero: bool = False
    open_high: bool = False

    def __str__(self) -> str:
        """What it takes, in words: "an integer >= 1", "a finite number > 0", ..."""
        what = "an integer" if self.kind is int else "a finite number"
        if self.low is not None and self.high is not None:
            what += (
                f" in {'(['[not self.open_low]}{self.low}, {self.high}{')]'[not self.open_high]}"
            )
        elif self.low is not None:
            what += f" {'>' if self.open_low else '>='} {self.low}"
        elif self.high is not None:
            what += f" <= {self.high}"
        return f"0 or {what}" if self.zero else what

    def __call__(self, v) -> int | float:
        """v (a number, or its text: "1e-3" from a flag or a YAML file) as self.kind; a bool is
        never a number, and an integer is never given as 2.5 or 2.0. ConfigError "must be ..."."""
        x = None
        try:
            if isinstance(v, str) or (isinstance(v, numbers.Integral) and not isinstance(v, bool)):
                x = self.kind(v)
            elif isinstance(v, numbers.Real) and self.kind is float:
                x = float(v)
        except (ValueError, OverflowError):
            pass
        if x is None or not self.takes(x):
            raise ConfigError(f"must be {self}, got {shown(v if x is None else x)}")
        return x

    def takes(self, x: int | float) -> bool:
        if x == 0 and self.zero:
            return True
        low_ok = self.low is None or (x > self.low if self.open_low else x >= self.low)
        high_ok = self.high is None or (x < self.high if self.open_high else x <= self.high)
        return math.isfinite(x) and low_ok and high_ok


def shown(v) -> str:
    """A value as an error message quotes it: its repr, cut to 40 characters."""
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


# The rules the configs and the flags share.
POSITIVE_INT = Number(int, 1)
NONNEG_INT = Number(int, 0)
POSITIVE = Number(float, 0, open_low=True)
NONNEG = Number(float, 0)
FINITE = Number(float)
SEED = Number(int, 0, 2**32 - 1)  # numpy's and torch's CPU generators keep 32 bits of a seed


def image_size_value(v) -> tuple[int, int]:
    """An image size as a flag or a file gives it: 64, "64", "64x48", "64 48", [64, 48] or
    ["64", "48"] -> (H, W), both >= 8. ConfigError "must be ..."."""
    words = " ".join(map(str, v)) if isinstance(v, (list, tuple)) else v
    parts = words.lower().replace("x", " ").split() if isinstance(words, str) else [words]
    side = Number(int, 8)
    try:
        if len(parts) not in (1, 2):
            raise ConfigError
        h, w = side(parts[0]), side(parts[-1])
    except ValueError:
        raise ConfigError(
            f"must be H, HxW or H W with H and W integers >= 8, got {shown(v)}"
        ) from None
    return h, w


def opt(default, help: str, rule=None):
    """A dataclass field with a one-line doc; the CLI turns each field into a --flag. rule: the
    parser of its value (a Number; of each item for a tuple field), also the flag's type."""
    return field(default=default, metadata={"help": help, "rule": rule})


def parse_field(f: Field, v):
    """A field's value as Python, a flag or a config file gives it, checked by the field's
    rule and type: a Number, each item of a tuple by its rule (one value is a 1-tuple), a bool
    only True or False, a str only a string. ConfigError "name must be ..., got ..."."""
    rule, default = f.metadata.get("rule"), f.default if f.default is not MISSING else None
    try:
        if isinstance(rule, Number) and isinstance(default, tuple):
            items = v if isinstance(v, (list, tuple)) else [v]
            if not items:
                raise ConfigError(f"must be one or more values, each {rule}, got {shown(v)}")
            return tuple(rule(i) for i in items)
        if rule is not None:
            return rule(v)
    except ValueError as e:
        raise ConfigError(f"{f.name} {e}") from None
    for kind, words in ((bool, "true or false"), (str, "a string")):
        if isinstance(default, kind) and not isinstance(v, kind):
            raise ConfigError(f"{f.name} must be {words}, got {shown(v)}")
    return v


def parse_fields(obj) -> None:
    """Parse each field of a config dataclass in place (parse_field), before its own checks."""
    for f in fields(obj):
        if f.name != "net":
            setattr(obj, f.name, parse_field(f, getattr(obj, f.name)))


def config_from_dict(cls, d: dict):
    """A config dataclass from a plain dict (JSON, a checkpoint), naming any unknown keys."""
    if not isinstance(d, dict):
        raise ConfigError(f"{cls.__name__} must be a mapping of fields, got {shown(d)}")
    unknown = sorted(set(d) - {f.name for f in fields(cls)})
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} keys: {unknown}")
    return cls(**d)


def check(obj, checks: list[tuple[bool, str]]) -> None:
    """Raise ConfigError for the first failed (ok, "field_name must ...") check, with its value."""
    for ok, msg in checks:
        if not ok:
            raise ConfigError(f"{msg}, got {shown(getattr(obj, msg.split()[0]))}")


def resolve(path: str):
    """ "package.module:Name" -> the object, imported now (registries hold such strings)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


# --- Family options -----------------------------------------------------------------------------


def stage_sizes(size: tuple[int, int], n: int) -> list[tuple[int, int]]:
    """Spatial size at the input of each of n stages: halved (floor) by each max-pool."""
    sizes = [tuple(size)]
    for _ in range(n):
        h, w = sizes[-1]
        sizes.append((h // 2, w // 2))
    return sizes


def fit_depth(channels: tuple[int, ...], size: tuple[int, int], bottom: int = 4) -> tuple:
    """Stage widths for an image size: the last width repeated until the smallest side at the
    bottom is <= bottom, so larger images get deeper nets (28 or 32 px: unchanged)."""
    ch = tuple(channels)
    while min(stage_sizes(size, len(ch))[-1]) > bottom:
        ch = (*ch, ch[-1])
    return ch


def conditional_opt():
    """The `conditional` field the families' options share (one flag, --conditional)."""
    return opt(False, "model images given their class label (a CVAE): a learned label embedding")


def num_classes_opt():
    """The `num_classes` field of a conditional family's options."""
    rule = Number(int, 2)
    return opt(10, "conditional: classes of the labels (a new run takes the data's)", rule)


@dataclass
class ConvNet:
    """Options of the one-latent families (vae, ae): a flat z and a conv encoder/decoder body."""

    arch: str = opt("resnet", "seed (the seed's network, 28x28x1) or resnet (sized from config)")
    latent_dim: int = opt(20, "dimensions of z", POSITIVE_INT)
    channels: tuple[int, ...] = opt(
        (32, 64, 64), "resnet: width of each stage, top first; each halves H, W", POSITIVE_INT
    )
    conditional: bool = conditional_opt()
    num_classes: int = num_classes_opt()
    prior: str = opt(
        "normal", "vae: p(z), normal (N(0, I)) or vamp (VampPrior, learned pseudo-inputs)"
    )
    pseudo_inputs: int = opt(500, "vae with prior vamp: number of pseudo-inputs K", POSITIVE_INT)
    posterior: str = opt(
        "gaussian", "vae: q(z|x), gaussian (diagonal) or iaf (inverse autoregressive flow)"
    )
    flow_steps: int = opt(2, "vae with posterior iaf: autoregressive steps", POSITIVE_INT)
    flow_hidden: int = opt(256, "vae with posterior iaf: hidden units of each step", POSITIVE_INT)

    def __post_init__(self) -> None:
        parse_fields(self)
        check(
            self,
            [
                (self.arch in ("seed", "resnet"), "arch must be seed or resnet"),
                (self.prior in ("normal", "vamp"), "prior must be normal or vamp"),
                (self.posterior in ("gaussian", "iaf"), "posterior must be gaussian or iaf"),
            ],
        )

    def fit(self, model: ModelConfig, given: set[str]) -> ConvNet:
        """These options for the model's images: refuse the seed net off 28x28x1; a resnet
        gets more stages for larger images unless its channels were given."""
        if self.arch == "seed" and (model.in_channels, model.image_size) != (1, (28, 28)):
            h, w = model.image_size
            raise ConfigError(
                f"the seed architecture is fixed to 28x28x1 images, got {h}x{w}x"
                f"{model.in_channels} (HxWxC); use arch 'resnet', e.g. another preset (mnist, "
                "cifar10, celeba64)"
            )
        self.check_latent_options(model.family)
        if self.arch == "resnet" and "channels" not in given:
            return replace(self, channels=fit_depth(self.channels, model.image_size))
        return self

    def check_latent_options(self, family: str) -> None:
        """Refuse a prior or posterior other than the default where it has no meaning: the ae
        has neither, and a VampPrior's pseudo-inputs have no label."""
        for name, default in (("prior", "normal"), ("posterior", "gaussian")):
            if family != "vae" and getattr(self, name) != default:
                raise ConfigError(
                    f"{name} {getattr(self, name)!r} needs the vae family (the {family} family "
                    f"has no {name}); use --family vae or drop --{name}"
                )
        if self.prior == "vamp" and self.conditional:
            raise ConfigError(
                "prior 'vamp' is not for a conditional model (its pseudo-inputs have no label); "
                "drop --conditional or --prior vamp"
            )


@dataclass
class HierarchicalNet:
    """Options of the hvae family: a bottom-up encoder and a top-down decoder whose latent
    groups sit at several resolutions, each with a prior conditioned on the groups above
    (VDVAE's blocks, Child 2021). The top group's prior is N(0, I)."""

    width: int = opt(
        64, "hvae: channels of the residual stream at every resolution", Number(int, 4)
    )
    z_channels: int = opt(16, "hvae: latent channels of each group", POSITIVE_INT)
    resolutions: tuple[int, ...] = opt(
        (1, 7, 14), "hvae: side of each level's feature maps, top (coarsest) first", POSITIVE_INT
    )
    groups: tuple[int, ...] = opt((1, 3, 3), "hvae: latent groups at each resolution", POSITIVE_INT)
    enc_blocks: int = opt(2, "hvae: residual blocks per resolution in the encoder", POSITIVE_INT)
    conditional: bool = conditional_opt()
    num_classes: int = num_classes_opt()

    def __post_init__(self) -> None:
        parse_fields(self)
        check(
            self,
            [
                (self.width % 4 == 0, "width must be a multiple of 4"),
                (list(self.resolutions) == sorted(set(self.resolutions)),
                 "resolutions must rise strictly, top (coarsest) first"),
                (len(self.groups) == len(self.resolutions),
                 "groups must give >= 1 group for each resolution"),
            ],
        )  # fmt: skip

    def fit(self, model: ModelConfig, given: set[str]) -> HierarchicalNet:
        if self.resolutions[-1] > min(model.image_size):
            raise ConfigError(
                f"hvae resolutions {self.resolutions} go beyond the {model.image_size} images"
            )
        return self


@dataclass
class VQNet:
    """Options of the vqvae family: a conv encoder to a grid of code vectors, each quantised to
    the nearest of a codebook kept by moving averages, and a decoder from the quantised grid."""

    widths: tuple[int, ...] = opt(
        (32, 64), "vqvae: width of each stride-2 stage, top first; each halves H, W", POSITIVE_INT
    )
    res_blocks: int = opt(2, "vqvae: residual blocks at the code grid's resolution", NONNEG_INT)
    codebook_size: int = opt(128, "vqvae: code vectors in the codebook", Number(int, 2))
    code_dim: int = opt(16, "vqvae: dimensions of each code vector", POSITIVE_INT)
    commitment: float = opt(0.25, "vqvae: weight beta of the commitment loss", NONNEG)
    ema_decay: float = opt(
        0.99, "vqvae: decay of the codebook's moving averages", Number(float, 0, 1, open_high=True)
    )
    dead_threshold: float = opt(
        1.0, "vqvae: restart a code used by fewer encoder outputs a step, on average", NONNEG
    )

    def __post_init__(self) -> None:
        parse_fields(self)

    def fit(self, model: ModelConfig, given: set[str]) -> VQNet:
        """Refuse images whose sides the stages cannot halve exactly."""
        s = 2 ** len(self.widths)
        if any(side % s for side in model.image_size):
            raise ConfigError(
                f"vqvae: {len(self.widths)} stride-2 stages need image sides divisible by {s}, "
                f"got {model.image_size}"
            )
        return self


@dataclass(frozen=True)
class Family:
    """A registered model family: its options dataclass and its model class ("module:Class")."""

    options: type
    model: str
    doc: str


# name -> family. Adding a family: a module with its model class, and one line here.
FAMILIES: dict[str, Family] = {
    "vae": Family(ConvNet, "vaekit.models.vae:VAE", "variational autoencoder, one Gaussian z"),
    "ae": Family(ConvNet, "vaekit.models.ae:AE", "deterministic autoencoder, no prior (baseline)"),
    "hvae": Family(
        HierarchicalNet, "vaekit.models.hvae:HVAE", "hierarchical VAE, top-down latent groups"
    ),
    "vqvae": Family(VQNet, "vaekit.models.vqvae:VQVAE", "VQ-VAE, a grid of discrete codes"),
}

# --- Fitted priors -----------------------------------------------------------------------------


@dataclass
class NormalOptions:
    """Options of the normal prior: none (N(0, I) over the model's top codes)."""


@dataclass
class GMMOptions:
    """Options of the gmm prior: a Gaussian mixture fitted by EM (scikit-learn) to the
    posterior means of the training set (Ghosh et al. 2020)."""

    components: int = opt(10, "gmm: mixture components", POSITIVE_INT)
    covariance: str = opt("full", "gmm: each component's covariance: full or diag")
    max_iter: int = opt(200, "gmm: EM iterations at most", POSITIVE_INT)

    def __post_init__(self) -> None:
        parse_fields(self)
        check(self, [(self.covariance in ("full", "diag"), "covariance must be full or diag")])


@dataclass
class PixelCNNOptions:
    """Options of the pixelcnn prior: a gated PixelCNN over a VQ-VAE's code grids, trained by
    its own loop (checkpointed every epoch in RUN/priors/pixelcnn.work/, resumed)."""

    epochs: int = opt(10, "pixelcnn: passes over the training codes", POSITIVE_INT)
    batch_size: int = opt(128, "pixelcnn: code grids per step", POSITIVE_INT)
    lr: float = opt(1e-3, "pixelcnn: Adam learning rate (cosine decay)", POSITIVE)
    channels: int = opt(96, "pixelcnn: width of the gated layers", POSITIVE_INT)
    layers: int = opt(8, "pixelcnn: gated layers", POSITIVE_INT)
    kernel: int = opt(3, "pixelcnn: kernel size of the gated convs (odd)", Number(int, 3))
    bf16: bool = opt(
        True, "pixelcnn: train in bf16 autocast (2.3x faster where bf16 is native), else fp32"
    )

    def __post_init__(self) -> None:
        parse_fields(self)
        check(self, [(self.kernel % 2 == 1, "kernel must be odd")])


@dataclass(frozen=True)
class PriorKind:
    """A registered prior p(z) over a model's top codes, fitted after training (`vaekit prior
    RUN --kind NAME`): its options dataclass (the command's flags) and its class ("module:Class",
    a vaekit.priors.base.Prior). The class fits itself with a classmethod
    fit(model, x, options, *, work_dir, device, seed, progress) -> Prior: x the run's training
    images, uint8 (N, C, H, W); options an instance of the options dataclass; work_dir a folder
    of the run dir for its own files (checkpoints of a long fit, to resume; made on demand);
    device the model's torch.device; seed seeds the fit; progress(text) reports a line."""

    options: type
    prior: str
    doc: str


# name -> fitted prior. Adding one: a module with its Prior class (and fit), and one line here.
PRIORS: dict[str, PriorKind] = {
    "normal": PriorKind(
        NormalOptions, "vaekit.priors.normal:StandardNormal", "N(0, I), the vae's own prior"
    ),
    "gmm": PriorKind(
        GMMOptions,
        "vaekit.priors.gmm:GaussianMixture",
        "Gaussian mixture fitted to the training set's posterior means",
    ),
    "pixelcnn": PriorKind(
        PixelCNNOptions,
        "vaekit.priors.pixelcnn:PixelCNN",
        "gated PixelCNN over a vqvae's code grids (the vqvae's own prior once fitted)",
    ),
}


def prior_options(kind: str, values: dict):
    """The options of prior kind from field values (None: the kind's default); a value for an
    option the kind does not have is refused. ConfigError in one line."""
    if kind not in PRIORS:
        raise ConfigError(f"prior kind must be one of {sorted(PRIORS)}, got {shown(kind)}")
    cls = PRIORS[kind].options
    given = {k: v for k, v in values.items() if v is not None}
    unknown = sorted(set(given) - field_names(cls))
    if unknown:
        raise ConfigError(f"prior kind {kind} has no options {unknown}")
    return cls(**given)


# name -> likelihood module p(x|z) ("module:Class"); each owns its decoder channels.
LIKELIHOODS: dict[str, str] = {
    "gaussian": "vaekit.likelihoods:FixedGaussian",
    "gaussian-global": "vaekit.likelihoods:GlobalGaussian",
    "gaussian-pixel": "vaekit.likelihoods:PixelGaussian",
    "bernoulli": "vaekit.likelihoods:Bernoulli",
    "logistic": "vaekit.likelihoods:LogisticMixture",
}

# name -> training objective ("module:Class"), a callable (model, x, step, eps) -> terms.
OBJECTIVES: dict[str, str] = {
    "elbo": "vaekit.objectives:ELBO",
    "iwae": "vaekit.objectives:IWAE",
}

# name -> experiment tracker ("module:Class", vaekit.training.trackers.Tracker); each imports its
# library when opened, named by the extra that installs it (vaekit[tensorboard], ...).
TRACKERS: dict[str, str] = {
    "tensorboard": "vaekit.training.trackers:TensorBoard",
    "wandb": "vaekit.training.trackers:WandB",
    "mlflow": "vaekit.training.trackers:MLflow",
}


# --- The three configs --------------------------------------------------------------------------


@dataclass
class ModelConfig:
    """What the model is: family, images, likelihood, and the family's options (net)."""

    family: str = opt(
        "vae", "model family: " + ", ".join(f"{k} ({v.doc})" for k, v in FAMILIES.items())
    )
    in_channels: int = opt(1, "image channels (1 grey, 3 colour)", Number(int, 1, 3))
    image_size: tuple[int, int] = opt(
        (28, 28), "(H, W) of the images the model takes", image_size_value
    )
    likelihood: str = opt(
        "gaussian",
        "p(x|z): gaussian (the seed's squared error), gaussian-global, gaussian-pixel (learned "
        "variance), bernoulli (binarized data), logistic (discretized mixture)",
    )
    mixtures: int = opt(1, "logistic: mixture components per pixel", POSITIVE_INT)
    mean: float = opt(0.1307, "input normalisation: x_net = (x - mean) / std", FINITE)
    std: float = opt(0.3081, "input normalisation std (the dataset's pixel std)", POSITIVE)
    net: object = field(default=None, metadata={"help": "the family's options"})

    def __post_init__(self) -> None:
        parse_fields(self)
        check(
            self,
            [
                (self.family in FAMILIES, f"family must be one of {sorted(FAMILIES)}"),
                (self.likelihood in LIKELIHOODS, f"likelihood must be one of {tuple(LIKELIHOODS)}"),
                (self.in_channels in (1, 3), "in_channels must be 1 or 3"),
            ],
        )  # fmt: skip
        options = FAMILIES[self.family].options
        if self.net is None:
            self.net = options()
        elif isinstance(self.net, dict):
            self.net = config_from_dict(options, self.net)
        elif not isinstance(self.net, options):
            raise ConfigError(
                f"family {self.family} takes {options.__name__} options, got {self.net}"
            )

    def to_dict(self) -> dict:
        return to_plain(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return config_from_dict(cls, d)


@dataclass
class ObjectiveConfig:
    """What training minimises; test figures are always the true ELBO and KL."""

    objective: str = opt("elbo", "training objective: " + ", ".join(OBJECTIVES))
    beta: float = opt(1.0, "weight of the KL term (1 = the ELBO)", NONNEG)
    kl_warmup: int = opt(
        0, "optimizer steps over which the KL weight rises from 0 to beta (0 = off)", NONNEG_INT
    )
    free_bits: float = opt(
        0.0, "nats per latent dim below which a dim's batch KL is not penalised", NONNEG
    )
    free_bits_per: str = opt("dim", "free bits per latent dim, or per group (its summed KL)")
    iw_k: int = opt(5, "iwae: importance samples per image (Burda et al. 2015)", POSITIVE_INT)

    def __post_init__(self) -> None:
        parse_fields(self)
        check(
            self,
            [
                (self.objective in OBJECTIVES, f"objective must be one of {tuple(OBJECTIVES)}"),
                (self.free_bits_per in ("dim", "group"), "free_bits_per must be dim or group"),
            ],
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ObjectiveConfig:
        return config_from_dict(cls, d)


DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class TrainConfig:
    """How to train: data, optimisation, schedule, output."""

    dataset: str = opt(
        "mnist", "mnist, fashion-mnist, kmnist, cifar10, celeba, or folder:PATH (any image tree)"
    )
    crop: int = opt(
        0,
        "centre-crop images to N x N before resizing (0: celeba 148, else only to the aspect)",
        NONNEG_INT,
    )
    epochs: int = opt(10, "passes over the training set", POSITIVE_INT)
    batch_size: int = opt(64, "images per optimizer step", POSITIVE_INT)
    lr: float = opt(2e-3, "AdamW learning rate", POSITIVE)
    weight_decay: float = opt(0.01, "AdamW decoupled weight decay (PyTorch's default)", NONNEG)
    lr_schedule: str = opt("cosine", "constant, or cosine (decay to lr_min_frac * lr by the end)")
    lr_min_frac: float = opt(0.05, "cosine floor, as a fraction of lr", Number(float, 0, 1))
    seed: int = opt(0, "seeds weights, shuffling and sampling: same seed, same run (on CPU)", SEED)
    limit: int = opt(0, "train on the first N training images only (0 = all)", NONNEG_INT)
    eval_every: int = opt(1, "evaluate on the test set every K epochs (0 = never)", NONNEG_INT)
    fid_every: int = opt(
        0,
        "FID of 2,000 samples and reconstructions against the test set every K epochs, in the "
        "features of the dataset's classifier (trained on the --limit images), into metrics.jsonl "
        "(0 = never; needs vaekit[metrics] and labels)",
        NONNEG_INT,
    )
    device: str = opt("auto", "auto (cuda > mps > cpu), cpu, cuda, mps")
    precision: str = opt(
        "auto", "auto (bf16 where the hardware has it natively, else fp32), fp32, or bf16 autocast"
    )
    compile: bool = opt(False, "torch.compile the model (the first steps wait for the compiler)")
    channels_last: bool = opt(False, "channels-last memory layout (faster convs on some hardware)")
    figures: bool = opt(True, "write reconstructions and samples after every epoch")
    save_every: int = opt(
        0, "also checkpoint every N steps inside an epoch (0 = epoch ends)", NONNEG_INT
    )
    keep: int = opt(
        0, "also keep the last N epochs' checkpoints, checkpoints/epoch_NNN.pt", NONNEG_INT
    )
    grad_clip: float = opt(0.0, "clip the gradient norm to this value (0 = off)", NONNEG)
    max_bad_steps: int = opt(
        20, "stop after this many consecutive skipped steps (non-finite or spikes)", POSITIVE_INT
    )
    skip_spikes: float = opt(
        0.0,
        "skip an update whose gradient norm is over this many times its running level (0: off)",
        Number(float, 1, open_low=True, zero=True),
    )
    ema: float = opt(
        0.0,
        "keep an exponential moving average of the weights with this decay, e.g. 0.999, which "
        "evaluation and the run commands use (0 = off)",
        Number(float, 0, 1, open_low=True, open_high=True, zero=True),
    )
    log: tuple[str, ...] = opt(
        (), f"experiment trackers to log to: {', '.join(TRACKERS)} (none: no tracker)"
    )
    log_every: int = opt(
        50, "with --log: log the training terms every N optimizer steps", POSITIVE_INT
    )

    def __post_init__(self) -> None:
        given = [self.log] if isinstance(self.log, str) else self.log  # "a,b" or ["a", "b,c"]
        names = (n.strip() for s in given for n in str(s).split(","))
        self.log = tuple(dict.fromkeys(n for n in names if n and n != "none"))  # in order, once
        parse_fields(self)
        check(
            self,
            [
                (self.lr_schedule in ("constant", "cosine"), "lr_schedule must be constant|cosine"),
                (self.device in DEVICES, f"device must be one of {DEVICES}"),
                (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}"),
                (set(self.log) <= set(TRACKERS), f"log must name trackers among {tuple(TRACKERS)}"),
            ],
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return config_from_dict(cls, d)


def to_plain(cfg) -> dict:
    """A config as JSON-ready data: tuples as lists, the family's options as a nested dict."""
    d = asdict(cfg)

    def lists(v):
        return [lists(x) for x in v] if isinstance(v, (tuple, list)) else v

    return {k: ({kk: lists(vv) for kk, vv in v.items()} if isinstance(v, dict) else lists(v))
            for k, v in d.items()}  # fmt: skip


# --- Presets: flat field values, routed to the config that owns each field ----------------------

PRESETS: dict[str, dict] = {
    # The seed notebook, reproduced: its network, objective and optimisation.
    "seed": dict(arch="seed", latent_dim=20, epochs=20, batch_size=64, lr=1e-3,
                 lr_schedule="constant"),
    # Our MNIST default: same family, thin at full resolution (where the compute is), more
    # latent dims, no BatchNorm, twice the seed's lr with a cosine decay, half its epochs.
    # channels-last: 1.1-1.6x on this CPU's convs, the same model up to float rounding.
    "mnist": dict(arch="resnet", latent_dim=64, channels=(16, 32, 64), epochs=10, batch_size=64,
                  lr=2e-3, lr_schedule="cosine", channels_last=True),
    # The mnist network as a conditional VAE (Sohn et al. 2015): images given their digit, a
    # learned label embedding into the encoder and the decoder; sample with --label 7. beta 4:
    # at beta 1 a tenth of the samples at T = 1 are read as another digit (codes from the
    # prior's tails); beta 4 gives 0.981 (benchmarks/results/cvae-beta4-cpu.json).
    "mnist-cvae": dict(arch="resnet", latent_dim=64, channels=(16, 32, 64), conditional=True,
                       beta=4.0, epochs=10, batch_size=64, lr=2e-3, lr_schedule="cosine",
                       channels_last=True),
    # The mnist network as a deterministic autoencoder (no KL, no prior): the seed's baseline.
    "mnist-ae": dict(family="ae", arch="resnet", latent_dim=64, channels=(16, 32, 64), epochs=10,
                     batch_size=64, lr=2e-3, lr_schedule="cosine", channels_last=True),
    # Test NLL on dynamically binarized MNIST (report with evaluate --iw-samples 5000): one
    # stochastic layer of 32 dims, a Bernoulli decoder, wider stages than "mnist", a longer
    # cosine run with KL warm-up over ~10 epochs (Sonderby et al. 2016) against inactive
    # units. Chosen by reasoning from the literature's setups, not by a sweep.
    "mnist-nll": dict(arch="resnet", likelihood="bernoulli", latent_dim=32, channels=(32, 64, 64),
                      dataset="mnist", epochs=50, batch_size=128, lr=1e-3, lr_schedule="cosine",
                      kl_warmup=5000, channels_last=True),
    # mnist-nll's network with an inverse autoregressive flow posterior (Kingma et al. 2016):
    # two steps over the 32 dims; the KL is estimated by Monte Carlo with the flow's log-det.
    "mnist-iaf": dict(arch="resnet", likelihood="bernoulli", latent_dim=32, channels=(32, 64, 64),
                      posterior="iaf", flow_steps=2, dataset="mnist", epochs=50, batch_size=128,
                      lr=1e-3, lr_schedule="cosine", kl_warmup=5000, channels_last=True),
    # The likelihood recipe of issue 32: mnist-iaf's network and flow with a VampPrior of 500
    # pseudo-inputs (each alone 1.4 and 2.8 nats better than mnist-nll at 10 epochs), and EMA
    # weights for evaluation. Report with evaluate --iw-samples 1000 (make results-nll-vamp-iaf).
    "mnist-vamp-iaf": dict(arch="resnet", likelihood="bernoulli", latent_dim=32,
                           channels=(32, 64, 64), prior="vamp", pseudo_inputs=500,
                           posterior="iaf", flow_steps=2, dataset="mnist", epochs=50,
                           batch_size=128, lr=1e-3, lr_schedule="cosine", kl_warmup=5000,
                           ema=0.999, channels_last=True),
    # Hierarchical VAE for dynamically binarized MNIST (issue 14): 9 latent groups of 8 channels
    # at 1x1, 4x4, 7x7 and 14x14, each prior conditioned on the groups above; VDVAE's recipe
    # scaled to a 2-core CPU (~8 h of training, in sittings): gradient clipping, spike
    # skipping, KL warm-up. Report with evaluate --iw-samples 1000 (or 5000).
    "mnist-hvae": dict(family="hvae", likelihood="bernoulli", width=48, z_channels=8,
                       resolutions=(1, 4, 7, 14), groups=(1, 2, 3, 3), enc_blocks=1,
                       dataset="mnist", epochs=60, batch_size=128, lr=1e-3, lr_schedule="cosine",
                       kl_warmup=2000, grad_clip=200.0, skip_spikes=10.0, channels_last=True),
    # The same family in colour, 32x32x3, with a discretized logistic mixture (real CIFAR-10
    # cannot be fetched on the development machines: tested on generated data).
    "cifar10-hvae": dict(family="hvae", likelihood="logistic", mixtures=5, width=64,
                         z_channels=8, resolutions=(1, 4, 8, 16), groups=(1, 2, 2, 2),
                         enc_blocks=1, dataset="cifar10", epochs=100, batch_size=64, lr=1e-3,
                         lr_schedule="cosine", kl_warmup=5000, grad_clip=200.0, skip_spikes=10.0),
    # VQ-VAE on MNIST (issue 31): two stride-2 stages to a 7x7 grid of 16-dim codes from 128,
    # EMA codebook with dead-code restarts, commitment 0.25, the mnist-ae likelihood; a PixelCNN
    # fitted over the training codes afterwards (vaekit prior RUN --kind pixelcnn) samples it.
    "mnist-vqvae": dict(family="vqvae", widths=(32, 64), res_blocks=2, codebook_size=128,
                        code_dim=16, commitment=0.25, ema_decay=0.99, epochs=20, batch_size=64,
                        lr=1e-3, lr_schedule="cosine", channels_last=True),
    # The same in colour, 32x32x3: two stages to an 8x8 grid of 32-dim codes from 256, the
    # cifar10 preset's discretized logistic mixture (tested on generated data).
    "cifar10-vqvae": dict(family="vqvae", likelihood="logistic", mixtures=5, widths=(64, 128),
                          res_blocks=2, codebook_size=256, code_dim=32, commitment=0.25,
                          ema_decay=0.99, dataset="cifar10", epochs=50, batch_size=128, lr=1e-3,
                          lr_schedule="cosine"),
    # CIFAR-10, 32x32x3: a discretized logistic mixture over the 256 pixel values (bits/dim
    # comparable with the literature), four stages down to 2x2, 128 latents.
    "cifar10": dict(arch="resnet", likelihood="logistic", mixtures=5, latent_dim=128,
                    channels=(32, 64, 128, 128), dataset="cifar10", epochs=50, batch_size=128,
                    lr=1e-3, lr_schedule="cosine"),
    # CelebA aligned faces, centre 148 crop resized to 64x64x3 (the common VAE setting):
    # five stages down to 2x2, the same logistic likelihood, 128 latents.
    "celeba64": dict(arch="resnet", likelihood="logistic", mixtures=5, latent_dim=128,
                     channels=(32, 64, 128, 128, 256), dataset="celeba", epochs=20,
                     batch_size=128, lr=1e-3, lr_schedule="cosine"),
}  # fmt: skip


def field_names(cls) -> set[str]:
    return {f.name for f in fields(cls)}


def option_names() -> set[str]:
    """Every field of every registered family's options."""
    return {n for fam in FAMILIES.values() for n in field_names(fam.options)}


def route(values: dict) -> tuple[dict, dict, dict, dict]:
    """Flat field values -> (model, family options, objective, train) dicts; unknown names and
    None values (unset flags) are refused and dropped."""
    parts: tuple[dict, dict, dict, dict] = ({}, {}, {}, {})
    owners = [field_names(ModelConfig) - {"net"}, option_names(), field_names(ObjectiveConfig),
              field_names(TrainConfig)]  # fmt: skip
    for k, v in values.items():
        if v is None:
            continue
        i = next((i for i, names in enumerate(owners) if k in names), None)
        if i is None:
            raise ConfigError(f"unknown config field {k!r}")
        parts[i][k] = tuple(v) if isinstance(v, list) else v
    return parts


def preset_values(name: str) -> dict:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return dict(PRESETS[name])


def build_model_config(values: dict, given: set[str] | None = None) -> ModelConfig:
    """A ModelConfig from flat values (the family's options among them), fitted to its images.
    given: the names set by the user rather than a preset (default: all of values); a resnet
    whose channels were not given gets more stages for larger images, and a preset's options
    of another family are dropped (--family hvae on the mnist preset)."""
    given = set(values) if given is None else given
    model, net, _, _ = route(values)
    family = model.get("family", "vae")
    if family not in FAMILIES:
        raise ConfigError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")
    options = field_names(FAMILIES[family].options)
    unknown = sorted((set(net) - options) & given)
    if unknown:
        raise ConfigError(f"family {family} has no options {unknown}")
    net = {k: v for k, v in net.items() if k in options}
    cfg = ModelConfig(**model, net=FAMILIES[family].options(**net))
    return replace(cfg, net=cfg.net.fit(cfg, given))


def configs(preset: str, **overrides) -> tuple[ModelConfig, ObjectiveConfig, TrainConfig]:
    """The three configs of a preset with flat field overrides applied (None: the preset's)."""
    given = {k for k, v in overrides.items() if v is not None}
    values = {**preset_values(preset), **{k: overrides[k] for k in given}}
    _, _, objective, train = route(values)
    return build_model_config(values, given), ObjectiveConfig(**objective), TrainConfig(**train)


def model_config(preset: str, **overrides) -> ModelConfig:
    """The preset's ModelConfig with overrides (model fields and the family's options)."""
    given = {k for k, v in overrides.items() if v is not None}
    return build_model_config({**preset_values(preset), **{k: overrides[k] for k in given}}, given)


def objective_config(preset: str, **overrides) -> ObjectiveConfig:
    values = {**preset_values(preset), **{k: v for k, v in overrides.items() if v is not None}}
    return ObjectiveConfig(**route(values)[2])


def train_config(preset: str, **overrides) -> TrainConfig:
    """The preset's TrainConfig with field overrides applied (None values are ignored)."""
    values = {**preset_values(preset), **{k: v for k, v in overrides.items() if v is not None}}
    return TrainConfig(**route(values)[3])


def flatten(d: dict) -> dict:
    """A run's config.json ({"model": {..., "net": {...}}, "objective": {...}, "train": {...}},
    also vaekit 0.1's) or a flat mapping of fields -> flat field values; other top-level keys of
    a config.json (num_params, data_dir) are dropped."""
    if not any(k in d for k in ("model", "objective", "train")):
        return dict(d)
    parts = {k: d.get(k) or {} for k in ("model", "objective", "train")}
    if isinstance(parts["model"], dict):
        parts["model"] = dict(parts["model"])
        parts["net"] = parts["model"].pop("net", None) or {}
    bad = next((k for k, v in parts.items() if not isinstance(v, dict)), None)
    if bad:
        raise ConfigError(f"{bad} must be a mapping of config fields, got {shown(parts[bad])}")
    return {**parts["net"], **parts["model"], **parts["objective"], **parts["train"]}


def all_fields() -> dict[str, Field]:
    """Every config field by name: the model's, the families' options', the objective's and
    training's (a name belongs to one config; a field two families share is one field)."""
    families = dict.fromkeys(f.options for f in FAMILIES.values())
    classes = (ModelConfig, *families, ObjectiveConfig, TrainConfig)
    return {f.name: f for c in classes for f in fields(c) if f.name != "net"}


def parse_values(values: dict) -> dict:
    """Flat field values parsed by each field's rule, as its flag parses it (parse_field);
    an unknown name is refused."""
    known, out = all_fields(), {}
    for k, v in values.items():
        if k not in known:
            raise ConfigError(f"unknown config field {k!r}")
        out[k] = parse_field(known[k], v)
    return out


def read_config_file(path: str | Path) -> dict:
    """A YAML (.yaml, .yml; needs PyYAML: pip install "vaekit[yaml]") or JSON config file ->
    flat field values, "preset" among them if the file names one. Each value is parsed as its
    flag is ("1e-3" is a number, true is not); one-line errors naming the file and field. A
    relative `dataset: folder:PATH` is taken from the file's folder and made absolute."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"--config {path}: cannot read it ({e.strerror or e})") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ImportError(
                f"--config {path}: YAML needs PyYAML: pip install 'vaekit[yaml]' (or use JSON)"
            ) from None
        try:
            d = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(
                f"--config {path}: not valid YAML ({str(e).splitlines()[0]})"
            ) from None
    else:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"--config {path}: not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise ConfigError(f"--config {path}: must hold a mapping of config fields")
    try:
        values = flatten(d)
        preset = values.pop("preset", None)
        values = parse_values(values)
    except ValueError as e:
        raise ConfigError(f"--config {path}: {e}") from None
    dataset = str(values.get("dataset", ""))
    if dataset.startswith("folder:") and len(dataset) > len("folder:"):
        # a relative image folder is the file's neighbour, made absolute (runs move; data stay)
        folder = path.parent / Path(dataset.removeprefix("folder:")).expanduser()
        values["dataset"] = "folder:" + str(folder.resolve())
    return values if preset is None else {"preset": preset, **values}
