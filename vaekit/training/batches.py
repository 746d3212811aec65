"""Training batches: a split on the device (sliced per step), or streamed from the host.

Small splits live whole on the device as one uint8 tensor; a cached (memory-mapped) or large one
stays on the host and each batch is gathered from it and sent over. Both feed identical batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MAX_RESIDENT_BYTES = 4 << 30  # larger training sets are streamed from host memory or disk


def gather(x: torch.Tensor, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
    """x[idx] for host (maybe memory-mapped) x, read in ascending index order (sequential
    pages), put back in idx's order and sent to device (pinned first for CUDA)."""
    order = idx.argsort()
    xb = torch.empty((len(idx), *x.shape[1:]), dtype=x.dtype)
    xb[order] = x[idx[order]]
    if device.type == "cuda":
        return xb.pin_memory().to(device, non_blocking=True)
    return xb.to(device)


@dataclass
class Batch:
    """A training batch: uint8 images x (B, C, H, W) and their int64 class labels y (B,), or
    None where the data have no labels."""

    x: torch.Tensor
    y: torch.Tensor | None = None


class BatchSource:
    """uint8 images (N, C, H, W), with int64 labels (N,) or None -> shuffled global batches of
    batch_size on the device.

    Every rank of a DDP run draws the same order from the same generator and takes its own
    share of each batch (shard), so N processes see what one process would."""

    def __init__(
        self,
        x: torch.Tensor,
        batch_size: int,
        device: torch.device,
        shuffle: torch.Generator,
        stream: bool = False,
        y: torch.Tensor | None = None,
    ):
        self.stream = stream or x.nbytes > MAX_RESIDENT_BYTES
        self.x = x if self.stream else x.to(device)
        self.y = None if y is None else y.to(device)  # (N,) int64: small, always resident
        self.batch_size, self.device, self.shuffle = batch_size, device, shuffle

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)  # steps per epoch

    def order(self) -> torch.Tensor:
        """The next epoch's shuffled order (draws from the shuffle generator)."""
        perm = torch.randperm(len(self.x), generator=self.shuffle)
        return perm if self.stream else perm.to(self.device)

    def batch(self, perm: torch.Tensor, i: int) -> Batch:
        """Batch i of an epoch's order: uint8 images (Bg, C, H, W) and labels (Bg,) or None, on
        the device."""
        idx = perm[i * self.batch_size : (i + 1) * self.batch_size]
        x = gather(self.x, idx, self.device) if self.stream else self.x[idx]
        return Batch(x, None if self.y is None else self.y[idx.to(self.device)])


def shard(t: torch.Tensor, world: int, rank: int, dim: int = 0) -> torch.Tensor:
    """This rank's disjoint share of a global batch along dim (all of it in one process)."""
    return t.tensor_split(world, dim=dim)[rank] if world > 1 else t


@dataclass
class TrainingData:
    """A dataset's splits as training takes them: uint8 images (N, C, H, W), int64 labels (N,)
    (None: the data have no labels), stream (batches gathered from a memory-mapped cache) and
    num_classes (0 without labels)."""

    x_train: torch.Tensor
    x_test: torch.Tensor
    stream: bool
    y_train: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    num_classes: int = 0


def load_training_data(
    dataset: str, image_size: tuple[int, int], channels: int, crop: int, limit: int, data_dir=None
) -> TrainingData:
    """The splits of a named dataset at the model's size and channels, with their labels where
    the data have classes; the first `limit` training images if limit > 0; stream is True for a
    memory-mapped cache (folders, CelebA), whose batches are gathered from the host."""
    from ..data import is_cached, load_split, num_classes

    fmt = dict(size=image_size, channels=channels, crop=crop)
    x_train, y_train = load_split(dataset, "train", data_dir, **fmt)
    x_test, y_test = load_split(dataset, "test", data_dir, **fmt)
    k = num_classes(dataset, data_dir, **fmt)
    if limit:
        x_train, y_train = x_train[:limit], y_train[:limit]
    if not k:
        y_train = y_test = None
    return TrainingData(x_train, x_test, is_cached(dataset), y_train, y_test, k)
