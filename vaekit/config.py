"""Training configuration and presets. Presets are plain data: overrides of the two configs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from .model import ModelConfig, config_from_dict, fit_depth, opt

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16")


@dataclass
class TrainConfig:
    """How to train: data, optimisation, schedule, output."""

    dataset: str = opt(
        "mnist", "mnist, fashion-mnist, kmnist, cifar10, celeba, or folder:PATH (any image tree)"
    )
    crop: int = opt(
        0, "centre-crop images to N x N before resizing (0: celeba 148, else only to the aspect)"
    )
    epochs: int = opt(10, "passes over the training set")
    batch_size: int = opt(64, "images per optimizer step")
    lr: float = opt(2e-3, "AdamW learning rate")
    weight_decay: float = opt(0.01, "AdamW decoupled weight decay (PyTorch's default)")
    lr_schedule: str = opt("cosine", "constant, or cosine (decay to lr_min_frac * lr by the end)")
    lr_min_frac: float = opt(0.05, "cosine floor, as a fraction of lr")
    seed: int = opt(0, "seeds weights, shuffling and sampling: same seed, same run (on CPU)")
    limit: int = opt(0, "train on the first N training images only (0 = all)")
    eval_every: int = opt(1, "evaluate on the test set every K epochs (0 = never)")
    device: str = opt("auto", "auto (cuda > mps > cpu), cpu, cuda, mps")
    precision: str = opt("fp32", "fp32, or bf16 autocast (recent GPUs, CPUs with AVX-512 BF16)")
    compile: bool = opt(False, "torch.compile the model (the first steps wait for the compiler)")
    channels_last: bool = opt(False, "channels-last memory layout (faster convs on some hardware)")
    kl_warmup: int = opt(
        0, "optimizer steps over which the KL weight rises from 0 to beta (0 = off)"
    )
    free_bits: float = opt(0.0, "nats per latent dim below which a dim's batch KL is not penalised")
    figures: bool = opt(True, "write reconstructions and samples after every epoch")
    save_every: int = opt(0, "also checkpoint every N steps inside an epoch (0 = epoch ends)")
    keep: int = opt(0, "also keep the last N epochs' checkpoints, checkpoints/epoch_NNN.pt")
    grad_clip: float = opt(0.0, "clip the gradient norm to this value (0 = off)")
    max_bad_steps: int = opt(20, "stop after this many consecutive non-finite steps")

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.lr_schedule in ("constant", "cosine"), "lr_schedule must be constant|cosine"),
            (0 <= self.lr_min_frac <= 1, "lr_min_frac must be in [0, 1]"),
            (self.limit >= 0, "limit must be >= 0"),
            (self.crop >= 0, "crop must be >= 0"),
            (self.eval_every >= 0, "eval_every must be >= 0"),
            (self.save_every >= 0, "save_every must be >= 0"),
            (self.keep >= 0, "keep must be >= 0"),
            (self.grad_clip >= 0, "grad_clip must be >= 0"),
            (self.max_bad_steps >= 1, "max_bad_steps must be >= 1"),
            (self.kl_warmup >= 0, "kl_warmup must be >= 0"),
            (self.free_bits >= 0, "free_bits must be >= 0"),
            (self.device in DEVICES, f"device must be one of {DEVICES}"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}"),
        ]
        for ok, msg in checks:
            if not ok:
                name = msg.split()[0]
                raise ValueError(f"{msg}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return config_from_dict(cls, d)


# name -> (model overrides, train overrides) on top of the dataclass defaults.
PRESETS: dict[str, tuple[dict, dict]] = {
    # The seed notebook, reproduced: its network, objective and optimisation.
    "seed": (
        dict(arch="seed", latent_dim=20),
        dict(epochs=20, batch_size=64, lr=1e-3, lr_schedule="constant"),
    ),
    # Our MNIST default: same family, thin at full resolution (where the compute is), more
    # latent dims, no BatchNorm, twice the seed's lr with a cosine decay, half its epochs.
    "mnist": (
        dict(arch="resnet", latent_dim=64, channels=(16, 32, 64)),
        # channels-last: 1.1-1.6x on this CPU's convs, the same model up to float rounding
        dict(epochs=10, batch_size=64, lr=2e-3, lr_schedule="cosine", channels_last=True),
    ),
    # Test NLL on dynamically binarized MNIST (report with evaluate --iw-samples 5000): one
    # stochastic layer of 32 dims, a Bernoulli decoder, wider stages than "mnist", a longer
    # cosine run with KL warm-up over ~10 epochs (Sonderby et al. 2016) against inactive
    # units. Chosen by reasoning from the literature's setups, not by a sweep.
    "mnist-nll": (
        dict(arch="resnet", likelihood="bernoulli", latent_dim=32, channels=(32, 64, 64)),
        dict(
            dataset="mnist",
            epochs=50,
            batch_size=128,
            lr=1e-3,
            lr_schedule="cosine",
            kl_warmup=5000,
            channels_last=True,
        ),
    ),
    # CIFAR-10, 32x32x3: a discretized logistic mixture over the 256 pixel values (bits/dim
    # comparable with the literature), four stages down to 2x2, 128 latents.
    "cifar10": (
        dict(
            arch="resnet",
            likelihood="logistic",
            mixtures=5,
            latent_dim=128,
            channels=(32, 64, 128, 128),
        ),
        dict(dataset="cifar10", epochs=50, batch_size=128, lr=1e-3, lr_schedule="cosine"),
    ),
    # CelebA aligned faces, centre 148 crop resized to 64x64x3 (the common VAE setting):
    # five stages down to 2x2, the same logistic likelihood, 128 latents.
    "celeba64": (
        dict(
            arch="resnet",
            likelihood="logistic",
            mixtures=5,
            latent_dim=128,
            channels=(32, 64, 128, 128, 256),
        ),
        dict(dataset="celeba", epochs=20, batch_size=128, lr=1e-3, lr_schedule="cosine"),
    ),
}


def _preset(name: str) -> tuple[dict, dict]:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return PRESETS[name]


def model_config(preset: str, **overrides) -> ModelConfig:
    """The preset's ModelConfig with field overrides applied (None values are ignored).

    Unless channels is overridden, a resnet gets more stages for larger images (fit_depth)."""
    base = dict(_preset(preset)[0])
    base.update({k: v for k, v in overrides.items() if v is not None})
    cfg = ModelConfig.from_dict(base)
    if cfg.arch == "resnet" and overrides.get("channels") is None:
        cfg = replace(cfg, channels=fit_depth(cfg.channels, cfg.image_size))
    return cfg


def train_config(preset: str, **overrides) -> TrainConfig:
    """The preset's TrainConfig with field overrides applied (None values are ignored)."""
    base = dict(_preset(preset)[1])
    base.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(base)
