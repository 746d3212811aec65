"""Training batches: a split on the device (sliced per step), or streamed from the host.

Small splits live whole on the device as one uint8 tensor; a cached (memory-mapped) or large one
stays on the host and each batch is gathered from it and sent over. Both feed identical batches.
"""

from __future__ import annotations

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


class BatchSource:
    """uint8 images (N, C, H, W) -> shuffled global batches of batch_size on the device.

    Every rank of a DDP run draws the same order from the same generator and takes its own
    share of each batch (shard), so N processes see what one process would."""

    def __init__(
        self,
        x: torch.Tensor,
        batch_size: int,
        device: torch.device,
        shuffle: torch.Generator,
        stream: bool = False,
    ):
        self.stream = stream or x.nbytes > MAX_RESIDENT_BYTES
        self.x = x if self.stream else x.to(device)
        self.batch_size, self.device, self.shuffle = batch_size, device, shuffle

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)  # steps per epoch

    def order(self) -> torch.Tensor:
        """The next epoch's shuffled order (draws from the shuffle generator)."""
        perm = torch.randperm(len(self.x), generator=self.shuffle)
        return perm if self.stream else perm.to(self.device)

    def batch(self, perm: torch.Tensor, i: int) -> torch.Tensor:
        """Batch i of an epoch's order: uint8 (Bg, C, H, W) on the device."""
        idx = perm[i * self.batch_size : (i + 1) * self.batch_size]
        return gather(self.x, idx, self.device) if self.stream else self.x[idx]


def shard(t: torch.Tensor, world: int, rank: int, dim: int = 0) -> torch.Tensor:
    """This rank's disjoint share of a global batch along dim (all of it in one process)."""
    return t.tensor_split(world, dim=dim)[rank] if world > 1 else t


def load_training_data(
    dataset: str, image_size: tuple[int, int], channels: int, crop: int, limit: int, data_dir=None
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(train images, test images, stream) of a named dataset at the model's size and channels:
    uint8 (N, C, H, W); the first `limit` training images if limit > 0; stream is True for a
    memory-mapped cache (folders, CelebA), whose batches are gathered from the host."""
    from ..data import is_cached, load_split

    fmt = dict(size=image_size, channels=channels, crop=crop)
    x_train, _ = load_split(dataset, "train", data_dir, **fmt)
    x_test, _ = load_split(dataset, "test", data_dir, **fmt)
    return (x_train[:limit] if limit else x_train), x_test, is_cached(dataset)
