"""A model's sample quality in numbers: its samples and its reconstructions of the test images
against the test images, in the features of the dataset's classifier or of Inception-v3.

Images go to the networks as uint8 (N, C, H, W), generated ones rounded to 8 bits as a saved
picture would be. The reference is the test split as stored (for a Bernoulli model: not its
binarized view, which the model's mean images are not). What `vaekit metrics` and `vaekit train
--fid-every` compute.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..data import load_split
from ..likelihoods import to_float
from ..models import LatentModel
from . import classifier, metrics

WATCH_SAMPLES = 2000  # train --fid-every: samples and reconstructions per FID (seconds, not 10k)


@dataclass
class Features:
    """A feature network as a function of uint8 images (N, C, H, W) -> (N, D), and what it is
    (name, dimension and, for the classifier, its test accuracy and cache file)."""

    fn: Callable[[torch.Tensor], torch.Tensor]
    info: dict = field(default_factory=dict)


def classifier_features(spec: classifier.Spec, data_dir=None, log=None) -> Features:
    """The dataset's classifier (trained and cached on first use) as Features."""
    kw = {} if log is None else {"log": log}
    net, record = classifier.load_or_train(spec, data_dir, **kw)
    keep = ("test_accuracy", "train_images", "test_images", "classes", "train_seconds",
            "train_cpu_seconds", "path")  # fmt: skip
    info = {"name": "classifier", "dim": net.num_features, "seed": spec.seed,
            "limit": spec.limit, **{k: record.get(k) for k in keep}}  # fmt: skip
    return Features(net.features, info)


def inception_features(weights=None) -> Features:
    from . import inception

    fn = inception.load(weights)
    return Features(fn, {"name": "inception-v3", "dim": inception.FEATURES, "file": inception.FILE})


@torch.inference_mode()
def extract(features: Features, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Features of uint8 images x (N, C, H, W), batch by batch: (N, D) float64 on the CPU."""
    return torch.cat([features.fn(xb).double().cpu() for xb in x.split(batch_size)])


def subset(m: int, n: int, seed: int = 0) -> torch.Tensor:
    """m of the indices 0..n-1, drawn at random for a fixed seed, in order (all of them for
    m = n). Random, not the first m nor every (n/m)-th: MNIST's test set holds its cleaner
    writers in its first half and its training set alternates two populations (FID 20 between
    its even and odd images in the classifier's features)."""
    if m >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:m].sort().values


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] -> uint8, rounded, on the CPU."""
    return x.clamp(0, 1).mul(255).round().to(torch.uint8).cpu()


@torch.inference_mode()
def samples(
    model: LatentModel,
    n: int,
    temperature: float,
    seed: int = 0,
    batch_size: int = 500,
    label: int | None = None,
) -> torch.Tensor:
    """n samples of the model at a temperature as uint8 (n, C, H, W), batch by batch from one
    CPU generator seeded with seed: the same images for the same seed and batch size. label:
    the class of a conditional model's samples (None: its classes in turn, in each batch)."""
    g = torch.Generator().manual_seed(seed)
    sizes = [min(batch_size, n - i) for i in range(0, n, batch_size)]
    kw = {} if label is None else {"labels": label}
    return torch.cat([to_uint8(model.sample(b, temperature, generator=g, **kw)) for b in sizes])


@torch.inference_mode()
def class_quality(
    model: LatentModel,
    features: Features,
    net: classifier.Classifier,
    x_real: torch.Tensor,
    y_real: torch.Tensor,
    per_class: int = 1000,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 500,
) -> dict:
    """A conditional model's samples, per_class of each class (same seed for each class: the
    same codes z): {"label_accuracy": the share the dataset's classifier `net` labels as the
    class asked for, "per_class": [{"label", "label_accuracy", "fid" against the test images
    x_real of that class (labels y_real), "num_samples", "num_real"}]}."""
    rows, right = [], 0
    for k in range(model.num_classes):
        x = samples(model, per_class, temperature, seed, batch_size, label=k)
        pred = torch.cat([net(xb).argmax(1) for xb in x.split(batch_size)])
        real = x_real[y_real == k]
        fid = metrics.frechet_distance(extract(features, real), extract(features, x))
        hits = int((pred == k).sum())
        right += hits
        rows.append({"label": k, "label_accuracy": hits / per_class, "fid": fid,
                     "num_samples": per_class, "num_real": len(real)})  # fmt: skip
    return {"label_accuracy": right / (per_class * model.num_classes), "per_class": rows}


@torch.inference_mode()
def reconstructions(
    model: LatentModel, x: torch.Tensor, batch_size: int = 500, y: torch.Tensor | None = None
) -> torch.Tensor:
    """Decoded posterior means of uint8 images x (N, C, H, W), as the model sees them (given
    their labels y (N,) for a conditional model): uint8."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(x), batch_size):
        xb = to_float(x[i : i + batch_size].to(device))
        yb = {} if y is None else {"y": y[i : i + batch_size].to(device)}
        out.append(to_uint8(model.reconstruct(xb, **yb)))
    return torch.cat(out)


def timed(seconds: dict, stage: str, fn: Callable, *args):
    """fn(*args), with its wall time in seconds[stage]."""
    t = time.perf_counter()
    value = fn(*args)
    seconds[stage] = time.perf_counter() - t
    return value


def sample_quality(
    model: LatentModel,
    features: Features,
    x_real: torch.Tensor,
    x_seen: torch.Tensor,
    n: int = 10_000,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 500,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
    y: torch.Tensor | None = None,
) -> dict:
    """metrics.compare of n samples (None for a model without a prior) and of the
    reconstructions of min(n, N) test images x_seen (as the model sees them) against the same
    min(n, N) test images x_real (uint8 (N, C, H, W), as stored); with the seconds each stage
    took. Fewer than N test images are a random subset (subset). y: the test labels (N,), which
    a conditional model reconstructs with (its samples take the classes in turn)."""
    metrics.torchmetrics_image()  # missing: an error now, not after minutes of sampling
    was_training = model.training
    model.eval()
    seconds = {}  # stage -> wall seconds
    m = min(n, len(x_real))
    idx = subset(m, len(x_real))
    f_real = timed(seconds, "features_real", extract, features, x_real[idx], batch_size)
    # the reference's k-NN balls, for both comparisons
    radii = timed(seconds, "metrics_reference", metrics.knn_radii, f_real)
    out = {"reference": {"split": "test", "num_images": m}, "samples": None}
    if model.has_prior:
        log(f"vaekit: {n:,} samples at temperature {temperature}")
        x_fake = timed(seconds, "sampling", samples, model, n, temperature, seed, batch_size)
        f_fake = timed(seconds, "features_samples", extract, features, x_fake, batch_size)
        out["samples"] = timed(
            seconds, "metrics_samples", metrics.compare, f_real, f_fake, seed, radii
        )
    log(f"vaekit: reconstructions of {m:,} test images")
    y_idx = None if y is None else y[idx]
    x_rec = timed(seconds, "reconstruction", reconstructions, model, x_seen[idx], batch_size, y_idx)
    f_rec = timed(seconds, "features_reconstructions", extract, features, x_rec, batch_size)
    out["reconstructions"] = timed(
        seconds, "metrics_reconstructions", metrics.compare, f_real, f_rec, seed, radii
    )
    model.train(was_training)
    return {**out, "seconds": seconds}


class Watch:
    """FID of WATCH_SAMPLES samples and of as many reconstructions against the test images, in
    the classifier's features (the test images' computed once): train --fid-every's numbers.
    Not comparable with vaekit metrics' FID at 10,000 (FID grows as the sets shrink)."""

    def __init__(self, spec: classifier.Spec, data_dir=None, log=None):
        metrics.torchmetrics_image()  # missing: an error before training, not after an epoch
        self.features = classifier_features(spec, data_dir, log)
        x_test = load_split(spec.dataset, "test", data_dir, None, spec.size, spec.channels,
                            spec.crop)[0]  # fmt: skip
        self.idx = subset(WATCH_SAMPLES, len(x_test))
        self.f_real = extract(self.features, x_test[self.idx])

    def __call__(
        self, model: LatentModel, x_seen: torch.Tensor, seed: int = 0, y: torch.Tensor | None = None
    ) -> dict:
        """{"fid": samples' FID (absent for a model without a prior), "fid_recon": the
        reconstructions' of x_seen (the test images as the model sees them, labels y for a
        conditional model), "fid_seconds": what measuring both took}."""
        t0 = time.perf_counter()
        was_training = model.training
        model.eval()
        out = {}
        if model.has_prior:
            x = samples(model, WATCH_SAMPLES, 1.0, seed)
            out["fid"] = metrics.frechet_distance(self.f_real, extract(self.features, x))
        idx = self.idx.to(x_seen.device)
        x = reconstructions(model, x_seen[idx], y=None if y is None else y[idx.to(y.device)])
        out["fid_recon"] = metrics.frechet_distance(self.f_real, extract(self.features, x))
        model.train(was_training)
        return {**out, "fid_seconds": time.perf_counter() - t0}
