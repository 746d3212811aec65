"""Datasets: a small registry, the IDX reader, verified downloads, device-resident uint8 tensors.

A dataset is loaded whole as one uint8 tensor (N, C, H, W) plus int64 labels (N,); the training
loop slices batches from it on the device, so there is no per-image Python work per step.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


class DataError(Exception):
    """A dataset is missing, corrupted or unreadable; the message says what to do."""


@dataclass(frozen=True)
class IdxDataset:
    """A dataset stored as four IDX .gz files (images and labels, train and test)."""

    name: str
    files: dict[str, tuple[str, str]]  # split -> (images file, labels file)
    md5: dict[str, str]  # file -> md5 of the .gz
    mirrors: tuple[str, ...]  # base URLs tried in order
    mean: float  # training-set pixel mean and std in [0, 1] (for input normalisation)
    std: float


_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

DATASETS: dict[str, IdxDataset] = {
    "mnist": IdxDataset(
        "mnist",
        _MNIST_FILES,
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        (
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        0.1307,
        0.3081,
    ),
    "fashion-mnist": IdxDataset(
        "fashion-mnist",
        _MNIST_FILES,
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        0.2860,
        0.3530,
    ),
}


def get_dataset(name: str) -> IdxDataset:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose from {sorted(DATASETS)}")
    return DATASETS[name]


def default_cache_dir() -> Path:
    """Per-user download cache: $XDG_CACHE_HOME/vaekit or ~/.cache/vaekit."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vaekit"


def search_roots(data_dir: str | Path | None) -> list[Path]:
    """Where datasets are looked for, in order: --data-dir, $VAEKIT_DATA, the user cache."""
    roots = [Path(data_dir)] if data_dir else []
    if os.environ.get("VAEKIT_DATA"):
        roots.append(Path(os.environ["VAEKIT_DATA"]))
    roots.append(default_cache_dir())
    return roots


def md5sum(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (.gz or raw): magic 0x0000 + dtype 0x08 (uint8) + ndim, then dims."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:  # truncated gzip stream, bad header, unreadable
        raise DataError(f"{path}: cannot read ({e}); delete it and download it again") from None
    if len(raw) < 4 or raw[0:2] != b"\x00\x00" or raw[2] != 0x08:
        raise DataError(f"{path}: not a uint8 IDX file (bad magic {raw[:4].hex()})")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(
            f"{path}: holds {data.size} values but its header says {dims}; the file is corrupted"
        )
    return data.reshape(dims)


def download(url: str, dest: Path, md5: str | None, timeout: float = 30.0) -> None:
    """Fetch url to dest atomically (temp file + rename), checking md5 before the rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".part{os.getpid()}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
            while chunk := r.read(1 << 20):
                f.write(chunk)
        if md5 and md5sum(tmp) != md5:
            raise DataError(f"{url}: md5 mismatch (expected {md5})")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def fetch(spec: IdxDataset, file: str, roots: list[Path], mirrors: tuple[str, ...]) -> Path:
    """Find a dataset file under the roots (ROOT/NAME/FILE or ROOT/FILE), else download it
    into the first root, trying each mirror in turn (none if VAEKIT_OFFLINE=1)."""
    for root in roots:
        for p in (root / spec.name / file, root / file):
            if p.is_file():
                return p
    dest = roots[0] / spec.name / file
    if os.environ.get("VAEKIT_OFFLINE") == "1":
        mirrors, errors = (), ["downloads disabled by VAEKIT_OFFLINE=1"]
    else:
        errors = []
    for base in mirrors:
        try:
            download(base + file, dest, spec.md5.get(file))
            return dest
        except (OSError, urllib.error.URLError, DataError) as e:
            errors.append(f"{base}: {getattr(e, 'reason', e)}")
    where = " or ".join(str(r / spec.name) for r in roots)
    raise DataError(
        f"{spec.name}: {file} not found and could not be downloaded ({'; '.join(errors)}). "
        f"Put the IDX .gz files in {where}, or point --data-dir / VAEKIT_DATA at their parent"
    )


def load_split(
    name: str,
    split: str,
    data_dir: str | Path | None = None,
    mirrors: tuple[str, ...] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One split of a dataset as (images uint8 (N, 1, H, W), labels int64 (N,)) on the CPU.

    Each file's md5 is checked before it is parsed, so a corrupted file is named, not used.
    """
    spec = get_dataset(name)
    if split not in spec.files:
        raise DataError(f"{name} has no split {split!r}; choose from {sorted(spec.files)}")
    roots = search_roots(data_dir)
    arrays = []
    for file in spec.files[split]:
        path = fetch(spec, file, roots, spec.mirrors if mirrors is None else mirrors)
        want = spec.md5.get(file)
        if want and md5sum(path) != want:
            raise DataError(
                f"{path}: md5 {md5sum(path)} != expected {want}; the file is corrupted or "
                "truncated: delete it and download it again"
            )
        arrays.append(read_idx(path))
    images, labels = arrays
    if images.ndim != 3 or labels.shape != (images.shape[0],):
        raise DataError(f"{name}/{split}: images {images.shape} and labels {labels.shape} differ")
    x = torch.from_numpy(images.copy()).unsqueeze(1)  # (N, 1, H, W) uint8
    y = torch.from_numpy(labels.astype(np.int64))  # (N,)
    return x, y


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 in [0, 1], on whatever device x is on."""
    return x.float().div_(255.0)


BINARIZE_SEED = 0  # the fixed binarization of evaluation data, the same in every run


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 images -> uint8 images in {0, 255}: each pixel is 255 with probability x / 255.

    Dynamic binarization draws afresh on every call (global RNG of x's device); pass a
    generator (on x's device) for a fixed draw.
    """
    return torch.bernoulli(to_float(x), generator=generator).mul_(255).to(torch.uint8)


def modelled(x: torch.Tensor, likelihood: str) -> torch.Tensor:
    """Evaluation images as a model with this likelihood sees them: for "bernoulli", binarized
    once with BINARIZE_SEED (on the CPU: the same bits on any device), else x unchanged."""
    if likelihood != "bernoulli":
        return x
    return binarize(x.cpu(), torch.Generator().manual_seed(BINARIZE_SEED)).to(x.device)
