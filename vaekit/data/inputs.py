"""The images a command works on, named one way for every command (--data):

    mnist:test, fashion-mnist:train, ...   a dataset's split (labels come along)
    folder:PATH                            every image in a folder tree or a .zip, sorted by
                                           path (a class folder's name is its label)
    PATH [PATH ...]                        image files

Images are prepared exactly as training images are (vaekit.data.images: orientation, mode, centre
crop to the model's aspect ratio, resize) to the model's size and channels, and come in batches
so memory stays bounded for large folders. A file that cannot be read is left out, never
silently: the source records it with its reason (Source.unreadable), each command says how many
in one line on stderr (warn_unreadable) and lists them in its output where that is per file;
when not one file can be read, reading the source is a one-line DataError.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .images import EXTENSIONS, decode, failure
from .labels import folder_labels


@dataclass
class Batch:
    """uint8 images (B, C, H, W), int64 labels (B,) or None, and file paths or None."""

    x: torch.Tensor
    labels: torch.Tensor | None
    paths: list[str] | None


@dataclass
class Unreadable:
    """The files a source could not read, found as its batches are read: (path, reason) in
    order, and how many files were tried (a reader that stops early tries fewer than all)."""

    files: list[tuple[str, str]] = field(default_factory=list)
    tried: int = 0

    def note(self, where: str | None = None) -> str | None:
        """One line saying how many files were left out and naming the first few (None when
        none was); where: the output that lists them all."""
        if not self.files:
            return None
        shown = ", ".join(f"{p} ({why})" for p, why in self.files[:3])
        more = f" and {len(self.files) - 3} more" if len(self.files) > 3 else ""
        listed = f"; all are listed in {where}" if where else ""
        return (
            f"note: {len(self.files)} of {self.tried} files could not be read and were left "
            f"out: {shown}{more}{listed}"
        )


@dataclass
class Source:
    """What --data named: a count, whether there are labels and paths, and a batch reader."""

    name: str
    count: int
    batches: Callable[[int], Iterator[Batch]]  # batch_size -> the images in order
    labelled: bool
    has_paths: bool
    unreadable: Unreadable = field(default_factory=Unreadable)  # filled as batches are read


def warn_unreadable(source: Source, where: str | None = None) -> None:
    """Print the source's note about files it could not read (if any) on stderr."""
    if line := source.unreadable.note(where):
        print(line, file=sys.stderr, flush=True)


def parse(specs: list[str], size: tuple[int, int], channels: int, data_dir=None) -> Source:
    """--data values -> a Source of images at the model's size and channels."""
    if not specs:
        raise DataError("--data names no images: give DATASET:SPLIT, folder:PATH or image files")
    first = specs[0]
    if len(specs) == 1 and first.startswith("folder:"):
        return folder(Path(first[len("folder:") :]).expanduser(), size, channels)
    if len(specs) == 1 and ":" in first and not Path(first).exists():
        name, split = first.split(":", 1)
        return dataset(name, split, size, channels, data_dir)
    return files([Path(p).expanduser() for p in specs], size, channels)


def dataset(name: str, split: str, size, channels, data_dir=None) -> Source:
    from .registry import load_split

    x, y = load_split(name, split, data_dir, size=size, channels=channels)

    def batches(batch_size: int) -> Iterator[Batch]:
        for i in range(0, len(x), batch_size):
            yield Batch(x[i : i + batch_size], y[i : i + batch_size], None)

    return Source(f"{name}:{split}", len(x), batches, labelled=True, has_paths=False)


def _decode_all(
    read, names: list[str], size, channels, bad: Unreadable
) -> tuple[list[str], list[np.ndarray]]:
    """Decode each named image with read(name) -> bytes; the ones that cannot be read (any
    error of the file or its decoder: missing, truncated, not an image, a decompression bomb)
    are left out and recorded in bad with their reason."""
    ok, arrays = [], []
    for name in names:
        bad.tried += 1
        try:
            arrays.append(decode(read(name), tuple(size), 0, channels))
            ok.append(name)
        except Exception as e:  # the file's fault, not the program's: recorded, not raised
            bad.files.append((name, failure(e)))
    return ok, arrays


def _decoded_batches(
    read, names, size, channels, batch_size, bad: Unreadable, label=None
) -> Iterator[Batch]:
    """Batches of decoded images, unreadable files recorded in bad; label(name) -> int, or None
    for unlabelled data. DataError at the end when not one file could be read."""
    bad.files.clear()
    bad.tried = 0
    for i in range(0, len(names), batch_size):
        ok, arrays = _decode_all(read, names[i : i + batch_size], size, channels, bad)
        if ok:
            y = torch.tensor([label(n) for n in ok]) if label else None
            yield Batch(torch.from_numpy(np.stack(arrays)), y, ok)
    if len(bad.files) == len(names) == 1:
        raise DataError(f"{bad.files[0][0]} could not be read ({bad.files[0][1]})")
    if names and len(bad.files) == len(names):
        path, why = bad.files[0]
        more = f" (and {len(names) - 1} more)"
        raise DataError(f"none of the {len(names)} files could be read: {path} ({why}){more}")


def _read_file(name: str) -> bytes:
    return Path(name).read_bytes()


def files(paths: list[Path], size, channels) -> Source:
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"no such image file: {missing[0]}{more}")
    names, bad = [str(p) for p in paths], Unreadable()

    def batches(batch_size: int) -> Iterator[Batch]:
        return _decoded_batches(_read_file, names, size, channels, batch_size, bad)

    return Source("files", len(names), batches, labelled=False, has_paths=True, unreadable=bad)


def folder(root: Path, size, channels) -> Source:
    from .cache import list_images, read_bytes

    if not root.exists():
        raise DataError(f"{root}: no such folder or zip file")
    rels = [e[0] for e in list_images(root)]
    if not rels:
        raise DataError(f"{root}: no images found (looked for {' '.join(EXTENSIONS)})")
    labels, classes = folder_labels(rels)
    labelled = bool(classes)
    names, bad = [str(root / r) for r in rels], Unreadable()
    label_of = dict(zip(names, labels, strict=True))

    def read(name: str) -> bytes:
        return read_bytes(str(root), Path(name).relative_to(root).as_posix())

    def batches(batch_size: int) -> Iterator[Batch]:
        return _decoded_batches(
            read, names, size, channels, batch_size, bad, label_of.__getitem__ if labelled else None
        )

    return Source(
        f"folder:{root}", len(rels), batches, labelled=labelled, has_paths=True, unreadable=bad
    )
