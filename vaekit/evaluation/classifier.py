"""A dataset's own classifier as the feature extractor of the sample-quality metrics.

On digit-like data (MNIST and kin), Inception-v3's ImageNet features are the wrong yardstick;
papers compute the same Frechet distance on the penultimate layer of a classifier trained on the
dataset itself. vaekit trains one the first time it is needed: a small CNN on the labelled
training split, for a fixed seed (the same weights every time on a CPU), its test accuracy
recorded. It is cached beside the image cache, in cache.cache_root()/classifiers/, one folder per
dataset, image shape, crop and seed, holding classifier.pt (plain data: the weights and the
record) and classifier.json (the record alone, to read). The record holds a digest of the
images and labels it was trained and tested on: when they change, it is trained again.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import checkpoint
from ..data import cache, load_split
from ..errors import DataError

VERSION = 2  # bump when the network or its training changes: every cached one is retrained
EPOCHS, BATCH_SIZE, LR, WEIGHT_DECAY = 1, 64, 1e-2, 1e-4
MIN_STEPS = 100  # a small training set gets more passes: at least this many optimizer steps
FEATURES = 128  # the penultimate layer's width: the dimension the distances are computed in
WIDTHS = (16, 32)  # channels of the first stages; each stage halves H and W
BOTTOM = 8  # stages are added until the smaller side is <= this


@dataclass(frozen=True)
class Spec:
    """Which images a classifier is for: a dataset at the size, channels and crop a model takes."""

    dataset: str
    size: tuple[int, int]
    channels: int
    crop: int = 0
    seed: int = 0
    limit: int = 0  # train on the first N training images only (0 = all): quick checks

    def folder(self) -> Path:
        name = self.dataset.replace("folder:", "folder-").replace("/", "_").strip("_")[:40]
        digest = hashlib.sha1(self.dataset.encode()).hexdigest()[:8]  # folder paths differ
        H, W = self.size
        return (
            cache.cache_root()
            / "classifiers"
            / f"{name}-{digest}-{H}x{W}x{self.channels}-crop{self.crop}-seed{self.seed}"
            f"{f'-limit{self.limit}' if self.limit else ''}"
        )


class Classifier(nn.Module):
    """Stages of a stride-2 3x3 conv and a ReLU down to <= BOTTOM px (strided convs, not
    max-pools: a third of the time on a CPU), a 3x3 conv, average pooling to 4x4, a
    FEATURES-wide ReLU layer (the features, like Inception's pool3 after a ReLU), and the
    class logits. About two units in five never fire on MNIST: constant zeros, which add
    nothing to any distance (the FID's matrix square root copes with the singular covariance:
    tests/test_metrics.py checks it against scipy)."""

    def __init__(self, channels: int, size: tuple[int, int], classes: int):
        super().__init__()
        widths, side = [], min(size)
        while side > BOTTOM or len(widths) < 2:
            widths.append(WIDTHS[min(len(widths), len(WIDTHS) - 1)])
            side = (side + 1) // 2
        layers, c = [], channels
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, stride=2, padding=1), nn.ReLU()]
            c = w
        layers += [nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4)]
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(2 * c * 16, FEATURES), nn.ReLU())
        self.head = nn.Linear(FEATURES, classes)
        self.register_buffer("mean", torch.zeros(()))  # the training images' pixel statistics
        self.register_buffer("std", torch.ones(()))
        self.num_features = FEATURES  # what torchmetrics reads off a feature module

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images (N, C, H, W) -> penultimate-layer features (N, FEATURES), float32."""
        return self.body((x.float() / 255 - self.mean) / self.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images (N, C, H, W) -> class logits (N, classes)."""
        return self.head(self.features(x))


def digest(*tensors: torch.Tensor) -> str:
    """SHA-256 of tensors' bytes: what a cached classifier was trained and tested on."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@torch.inference_mode()
def accuracy(net: Classifier, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Share of uint8 images x (N, C, H, W) whose predicted class is their label y (N,)."""
    right = sum(
        int((net(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
        for i in range(0, len(x), batch_size)
    )
    return right / len(x)


def train(
    x: torch.Tensor, y: torch.Tensor, classes: int, seed: int = 0, epochs: int = EPOCHS
) -> Classifier:
    """A Classifier fit to uint8 images x (N, C, H, W) with labels y (N,): AdamW with a
    one-cycle learning rate, `epochs` passes or as many as MIN_STEPS steps take. The same seed
    gives the same weights on a CPU."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = Classifier(x.shape[1], tuple(x.shape[2:]), classes)
    s1 = s2 = 0.0  # pixel sums in [0, 1], a chunk at a time: a large folder stays uint8
    for xb in x.split(4096):
        xb = xb.double() / 255
        s1, s2 = s1 + xb.sum().item(), s2 + xb.pow(2).sum().item()
    mean = s1 / x.numel()
    net.mean.fill_(mean)
    net.std.fill_(max((s2 / x.numel() - mean**2) ** 0.5, 1e-3))
    g = torch.Generator().manual_seed(seed)
    per_epoch = -(-len(x) // BATCH_SIZE)
    epochs = max(epochs, -(-MIN_STEPS // per_epoch))
    steps = epochs * per_epoch
    opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, LR, total_steps=steps)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(BATCH_SIZE):
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


def load_or_train(
    spec: Spec,
    data_dir: str | Path | None = None,
    log=lambda s: print(s, file=sys.stderr, flush=True),
) -> tuple[Classifier, dict]:
    """(classifier in eval mode, its record) for the images spec names: the cached one if it
    was trained on the same images and labels by this version of vaekit, else one trained now
    (and cached). Raises DataError for images without at least two classes of labels."""
    split = {
        s: load_split(spec.dataset, s, data_dir, None, spec.size, spec.channels, spec.crop)
        for s in ("train", "test")
    }
    (x, y), (x_test, y_test) = split["train"], split["test"]
    if spec.limit:
        x, y = x[: spec.limit], y[: spec.limit]
    if len(y.unique()) < 2:
        raise DataError(
            f"{spec.dataset}: the classifier features need labelled images (class subfolders, "
            "e.g. train/CLASS/*.png), and these have none (vaekit metrics --features inception "
            "needs no labels)"
        )
    key = {"version": VERSION, "seed": spec.seed, "data": digest(x, y, x_test, y_test)}
    path = spec.folder() / "classifier.pt"
    record = None
    if path.is_file():
        try:
            saved = torch.load(path, weights_only=True)
            record = saved["record"] if saved["record"]["key"] == key else None
        except Exception:  # unreadable or foreign: train a new one over it
            record = None
        if record is None:
            log(f"vaekit: {path.parent.name}: its images or vaekit changed; retraining it")
    classes = int(max(y.max(), y_test.max())) + 1
    net = Classifier(x.shape[1], tuple(x.shape[2:]), classes)
    if record is not None:
        net.load_state_dict(saved["model"])
        return net.eval(), record
    log(f"vaekit: training the {spec.dataset} classifier for the metrics ({len(x):,} images)")
    t0, c0 = time.perf_counter(), time.process_time()
    net = train(x, y, classes, spec.seed)
    record = {
        "key": key,
        "dataset": spec.dataset,
        "image_shape": [spec.channels, *spec.size],
        "crop": spec.crop,
        "classes": classes,
        "features": FEATURES,
        "train_images": len(x),
        "limit": spec.limit,
        "test_images": len(x_test),
        "test_accuracy": accuracy(net, x_test, y_test),
        "train_seconds": time.perf_counter() - t0,  # with the test accuracy; wall
        "train_cpu_seconds": time.process_time() - c0,  # this process's CPU time
        "path": str(path),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save({"model": net.state_dict(), "record": record}, path)
    checkpoint.save_json(record, path.with_suffix(".json"))
    log(
        f"vaekit: classifier trained in {record['train_seconds']:.0f} s, test accuracy "
        f"{record['test_accuracy']:.4f}: {path}"
    )
    return net, record
