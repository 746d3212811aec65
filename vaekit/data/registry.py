"""Datasets: a small registry, the IDX and CIFAR readers, verified downloads, image folders.

Small datasets (the MNIST family, CIFAR-10) are loaded whole as one uint8 tensor (N, C, H, W)
plus int64 labels (N,); the training loop slices batches from it on the device, so there is no
per-image Python work per step. Image folders and CelebA are decoded once into a memory-mapped
uint8 cache (vaekit/data/cache.py) and read from it batch by batch.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError  # vaekit.data.DataError, raised by cache.py too


@dataclass(frozen=True)
class IdxDataset:
    """A dataset stored as four IDX .gz files (images and labels, train and test)."""

    name: str
    files: dict[str, tuple[str, str]]  # split -> (images file, labels file)
    md5: dict[str, str]  # file -> md5 of the .gz
    mirrors: tuple[str, ...]  # base URLs tried in order
    mean: float  # training-set pixel mean and std in [0, 1] (for input normalisation)
    std: float


@dataclass(frozen=True)
class CifarDataset:
    """CIFAR-10 as the official tarball of Python pickle batches (read without extracting)."""

    name: str
    files: dict[str, tuple[str, ...]]  # split -> batch names inside cifar-10-batches-py/
    md5: dict[str, str]  # archive -> md5
    mirrors: tuple[str, ...]
    mean: float
    std: float
    archive: str = "cifar-10-python.tar.gz"
    folder: str = "cifar-10-batches-py"  # the archive's top folder, also accepted extracted


@dataclass(frozen=True)
class ImageDataset:
    """Images decoded into the array cache: a folder tree (folder:PATH) or CelebA."""

    name: str
    path: str | None = None  # folder:PATH's folder; None: search the data roots (CelebA)
    size: tuple[int, int] | None = None  # default (H, W); None: the most common
    crop: int = 0  # default centre crop before resizing (0: only to the target's aspect)
    channels: int | None = None  # None: 1 if every image is grey, else 3


_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CELEBA_FILES = ("img_align_celeba.zip", "img_align_celeba")  # the official zip, or extracted
CELEBA_PARTITION = "list_eval_partition.txt"  # "000001.jpg 0" per line: 0 train, 1 valid, 2 test

DATASETS: dict[str, IdxDataset | CifarDataset | ImageDataset] = {
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
    "kmnist": IdxDataset(
        "kmnist",
        _MNIST_FILES,
        {
            "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
            "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
            "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
            "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
        },
        ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        0.1918,
        0.3483,
    ),
    "cifar10": CifarDataset(
        "cifar10",
        {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
        {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
        ("https://www.cs.toronto.edu/~kriz/",),
        0.4734,  # over all pixels and channels of the training set
        0.2516,
    ),
    # The aligned-and-cropped faces (178x218), as usual for VAEs: centre 148x148, then 64x64.
    "celeba": ImageDataset("celeba", size=(64, 64), crop=148, channels=3),
}


def get_dataset(name: str) -> IdxDataset | CifarDataset | ImageDataset:
    """The registry's entry for a name, or an image folder for "folder:PATH"."""
    if name.startswith("folder:"):
        if not name[len("folder:") :]:
            raise DataError("folder:PATH needs a path, e.g. --dataset folder:~/pictures")
        return ImageDataset(name, path=name[len("folder:") :])
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose from {sorted(DATASETS)} or folder:PATH")
    return DATASETS[name]


def default_cache_dir() -> Path:
    """Per-user download cache: $XDG_CACHE_HOME/vaekit or ~/.cache/vaekit."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vaekit"


NEARBY = ("data", "shared/data")  # data folders looked for beside the current one and above it


def nearby_roots(start: Path | None = None) -> list[Path]:
    """The data folders near a folder (the current one by default): FOLDER/data, then
    FOLDER/shared/data, for FOLDER = start and then each folder above it, the existing ones in
    that order. A clone next to a shared/data folder (../shared/data) finds it."""
    start = Path.cwd() if start is None else Path(start)
    return [d / sub for d in (start, *start.parents) for sub in NEARBY if (d / sub).is_dir()]


def search_roots(data_dir: str | Path | None) -> list[Path]:
    """Where datasets are looked for, in order: --data-dir, $VAEKIT_DATA, the user cache (where
    downloads go when neither is given), and, only when neither is given, the data folders
    near the current one (nearby_roots). The first is where downloads go."""
    roots = [Path(data_dir)] if data_dir else []
    if os.environ.get("VAEKIT_DATA"):
        roots.append(Path(os.environ["VAEKIT_DATA"]))
    searched = not roots
    roots.append(default_cache_dir())
    return roots + nearby_roots() if searched else roots


def searched(roots: list[Path], name: str) -> str:
    """Where a dataset was looked for, in words, for a message saying it is missing."""
    where = ", ".join(str(r / name) for r in roots)
    if os.environ.get("VAEKIT_DATA") or roots[0] != default_cache_dir():
        return where  # a root was given: no search near the current folder
    near = " and ".join(f"{n}/{name}" for n in NEARBY)
    return f"{where}, and {near} in {Path.cwd()} and each folder above it"


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


def fetch(
    spec: IdxDataset | CifarDataset, file: str, roots: list[Path], mirrors: tuple[str, ...]
) -> Path:
    """Find a dataset file under the roots (ROOT/NAME/FILE or ROOT/FILE), else download it
    into the first root, trying each mirror in turn (none if VAEKIT_OFFLINE=1); either way its
    md5 is checked before it is returned, so a corrupted file is named, not used."""
    found = [p for r in roots for p in (r / spec.name / file, r / file) if p.is_file()]
    if found:
        path, want = found[0], spec.md5.get(file)
        if want and md5sum(path) != want:
            raise DataError(
                f"{path}: md5 {md5sum(path)} != expected {want}; the file is corrupted or "
                "truncated: delete it and download it again"
            )
        return path
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
    what = "the IDX .gz files" if isinstance(spec, IdxDataset) else file
    raise DataError(
        f"{spec.name}: {file} not found (looked in {searched(roots, spec.name)}) and could not be "
        f"downloaded ({'; '.join(errors)}). Put {what} in {roots[0] / spec.name}, or point "
        f"--data-dir or VAEKIT_DATA at the folder that holds {spec.name}/ (export "
        "VAEKIT_DATA=/path/to/data)"
    )


def read_idx_split(
    spec: IdxDataset, split: str, roots: list[Path], mirrors: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, H, W), labels (N,)) of one split of an IDX dataset."""
    images, labels = (read_idx(fetch(spec, f, roots, mirrors)) for f in spec.files[split])
    if images.ndim != 3 or labels.shape != (images.shape[0],):
        raise DataError(
            f"{spec.name}/{split}: images {images.shape} and labels {labels.shape} differ"
        )
    return images[:, None], labels


class _ArraysOnly(pickle.Unpickler):
    """Unpickles the CIFAR batches (dicts of bytes, lists and numpy arrays) and nothing else:
    no other global can be loaded, so a crafted file cannot run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_cifar_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled CIFAR batch -> (images uint8 (N, 3, 32, 32), labels (N,))."""
    try:
        d = _ArraysOnly(io.BytesIO(raw), encoding="bytes").load()
        data, labels = d[b"data"], d[b"labels"]
        x = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)  # rows: R plane, G, B
    except Exception as e:  # any malformed pickle: name the file, do not guess
        raise DataError(f"{where}: not a CIFAR-10 batch ({type(e).__name__}: {e})") from None
    y = np.asarray(labels, dtype=np.int64)
    if y.shape != (len(x),):
        raise DataError(f"{where}: {len(x)} images but {y.shape} labels")
    return x, y


def read_cifar_split(
    spec: CifarDataset, split: str, roots: list[Path], mirrors: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 3, 32, 32), labels (N,)) from an extracted cifar-10-batches-py/ under a
    root, else from the tarball (found or downloaded, md5-checked), read without extracting."""
    folders = [p for r in roots for p in (r / spec.name / spec.folder, r / spec.folder)]
    folder = next((f for f in folders if all((f / b).is_file() for b in spec.files[split])), None)
    if folder is not None:
        raws = {b: (folder / b).read_bytes() for b in spec.files[split]}
    else:
        path = fetch(spec, spec.archive, roots, mirrors)
        try:
            with tarfile.open(path, "r:gz") as tar:
                raws = {b: tar.extractfile(f"{spec.folder}/{b}").read() for b in spec.files[split]}
        except (OSError, EOFError, KeyError, tarfile.TarError, AttributeError) as e:
            raise DataError(f"{path}: cannot read the CIFAR batches ({e})") from None
    parts = [read_cifar_batch(raw, f"{spec.name}/{b}") for b, raw in raws.items()]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def celeba_source(roots: list[Path]) -> tuple[Path, dict[str, int] | None]:
    """The CelebA zip or extracted folder under a root (ROOT/celeba/ or ROOT/), and its
    official train/valid/test partition when list_eval_partition.txt lies beside it."""
    for r in roots:
        for d in (r / "celeba", r):
            for f in CELEBA_FILES:
                if (d / f).exists():
                    part = d / CELEBA_PARTITION
                    return d / f, read_partition(part) if part.is_file() else None
    raise DataError(
        "celeba: img_align_celeba.zip (or its extracted img_align_celeba/ folder) not found "
        f"(looked in {searched(roots, 'celeba')}); download it from the CelebA site (Google "
        f"Drive, no automatic download) into {roots[0] / 'celeba'}, with "
        "list_eval_partition.txt beside it for the official split"
    )


def read_partition(path: Path) -> dict[str, int]:
    """list_eval_partition.txt -> {file name: 0 train, 1 valid, 2 test}."""
    out = {}
    for line in path.read_text().split("\n"):
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def adapt(x: torch.Tensor, channels: int | None, size: tuple[int, int] | None) -> torch.Tensor:
    """uint8 (N, C, H, W) -> (N, channels, *size): antialiased bilinear resize, grey <-> RGB
    (repeat, or ITU-R 601 luma as Pillow's "L"); in chunks, so memory stays bounded."""
    if size is None or tuple(size) == tuple(x.shape[2:]):
        size = None
    to_grey = channels == 1 and x.shape[1] == 3
    if size is None and not to_grey:
        return x.repeat(1, 3, 1, 1) if channels == 3 and x.shape[1] == 1 else x
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    out = []
    for xb in x.split(4096):
        xf = xb.float()  # (b, C, H, W) in 0..255
        if to_grey:
            xf = (xf * luma).sum(1, keepdim=True)
        if size is not None:
            xf = F.interpolate(xf, size=tuple(size), mode="bilinear", antialias=True)
        out.append(xf.round_().clamp_(0, 255).to(torch.uint8))
    return adapt(torch.cat(out), channels, None)


@dataclass(frozen=True)
class DataInfo:
    """What a dataset's images are, as the model should take them."""

    channels: int
    size: tuple[int, int]
    mean: float  # pixel mean and std in [0, 1] of the training images (input normalisation)
    std: float


def is_cached(name: str) -> bool:
    """True for datasets read from the on-disk array cache (folders, CelebA)."""
    return isinstance(get_dataset(name), ImageDataset)


def describe(
    name: str,
    data_dir: str | Path | None = None,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    crop: int = 0,
) -> DataInfo:
    """The dataset's channels, image size and pixel statistics: as asked where given, else the
    data's own. A folder or CelebA is decoded into its cache on the way (once)."""
    spec = get_dataset(name)
    if crop and not isinstance(spec, ImageDataset):  # its images are read whole, never cropped
        raise DataError(f"--crop {crop}: only folder: and celeba images are cropped, not {name}'s")
    if isinstance(spec, IdxDataset):
        return DataInfo(channels or 1, tuple(size or (28, 28)), spec.mean, spec.std)
    if isinstance(spec, CifarDataset):
        return DataInfo(channels or 3, tuple(size or (32, 32)), spec.mean, spec.std)
    *_, man = load_cached(spec, "train", data_dir, size, channels, crop)
    return DataInfo(man["channels"], tuple(man["size"]), man["mean"], man["std"])


def load_cached(
    spec: ImageDataset,
    split: str,
    data_dir: str | Path | None,
    size: tuple[int, int] | None,
    channels: int | None,
    crop: int,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(images memory-mapped, labels, manifest) of a folder or CelebA split, via the cache."""
    from . import cache  # here, not at the top: Pillow, tqdm and the process pool cost ~0.1 s

    if spec.path is not None:
        source, partition = Path(spec.path).expanduser().resolve(), None
    else:
        source, partition = celeba_source(search_roots(data_dir))
    size, channels, entries = cache.resolve(
        source, size or spec.size, channels, os.cpu_count() or 1, spec.channels
    )
    return cache.build_or_load(source, split, size, channels, crop or spec.crop, entries, partition)


def load_split(
    name: str,
    split: str,
    data_dir: str | Path | None = None,
    mirrors: tuple[str, ...] | None = None,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    crop: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as (images uint8 (N, C, H, W), labels int64 (N,)) on the CPU, resized to
    size (H, W) and converted to channels (1 or 3) where given, else as the data are.

    Folders and CelebA come memory-mapped from their cache (built on first use, crop: a
    centre crop before resizing); the others are read whole into memory.
    """
    spec = get_dataset(name)
    if split not in ("train", "test"):
        raise DataError(f"{name} has no split {split!r}; choose from ['test', 'train']")
    if isinstance(spec, ImageDataset):
        return load_cached(spec, split, data_dir, size, channels, crop)[:2]
    roots, mirrors = search_roots(data_dir), spec.mirrors if mirrors is None else mirrors
    read = read_idx_split if isinstance(spec, IdxDataset) else read_cifar_split
    images, labels = read(spec, split, roots, mirrors)
    x = torch.from_numpy(images if images.flags.writeable else images.copy())  # (N, C, H, W)
    y = torch.from_numpy(labels.astype(np.int64))  # (N,)
    return adapt(x, channels, size), y


def num_classes(
    name: str,
    data_dir: str | Path | None = None,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    crop: int = 0,
) -> int:
    """How many classes load_split's labels name: 10 for the IDX and CIFAR datasets, a folder's
    class subfolders (vaekit.data.labels), 0 for data without labels (CelebA, a flat folder,
    whose labels are all 0)."""
    spec = get_dataset(name)
    if not isinstance(spec, ImageDataset):
        return 10
    return len(load_cached(spec, "train", data_dir, size, channels, crop)[2].get("classes") or [])
