"""Image folders and zips -> a uint8 array cache on disk, decoded once, memory-mapped after.

A cache directory holds `images.u8` (raw uint8, (N, C, H, W), row-major), `labels.npy` (int64
(N,)) and `manifest.json`: the source, every source file with its size and mtime, the
preprocessing, the skipped files and the pixel mean/std. A change to any of them rebuilds it.
Caches live under $VAEKIT_CACHE or the user cache dir, never in the source folder, which is
only read. Decoding runs on all cores (a process pool) with a progress bar on stderr.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import re
import shutil
import socket
import sys
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..errors import DataError
from ..outputs import pid_alive
from . import images
from .labels import SPLITS, folder_labels, split_by_folder

VERSION = 2  # bump when the cache layout or the decoding changes (2: EXIF orientation)
TEST_PERCENT = 5  # held-out share of a folder without train/ and test/ subfolders
Entry = tuple[str, int, int]  # (path inside the source, bytes, mtime_ns or CRC for a zip)
STALE_SECONDS = 24 * 3600  # a temporary file or folder untouched this long is left over
PARENT_POLL_SECONDS = 0.2  # how often a pool worker checks that its parent is still there
HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:64]  # in temporary names
TMP_NAME = re.compile(r"^\.(?P<name>.+)\.tmp(?P<pid>\d+)(?:-(?P<host>\w*))?$")


def warn(msg: str) -> None:
    print(f"vaekit: warning: {msg}", file=sys.stderr)


def cache_root() -> Path:
    """$VAEKIT_CACHE, else $XDG_CACHE_HOME/vaekit/images, else ~/.cache/vaekit/images."""
    if os.environ.get("VAEKIT_CACHE"):
        return Path(os.environ["VAEKIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vaekit" / "images"


def list_images(source: Path) -> list[Entry]:
    """Every image in a folder tree (hidden entries skipped) or a zip, sorted by path."""
    if source.is_file():
        try:
            with zipfile.ZipFile(source) as z:
                infos = z.infolist()
        except (OSError, zipfile.BadZipFile) as e:
            raise DataError(f"{source}: not a folder or a readable zip file ({e})") from None
        return sorted(
            (i.filename, i.file_size, i.CRC)
            for i in infos
            if i.filename.lower().endswith(images.EXTENSIONS)
            and not any(p.startswith(".") for p in i.filename.split("/"))
        )
    out = []
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for f in filenames:
            if f.lower().endswith(images.EXTENSIONS) and not f.startswith("."):
                p = Path(dirpath) / f
                st = p.stat()
                out.append((p.relative_to(source).as_posix(), st.st_size, st.st_mtime_ns))
    return sorted(out)


_ZIPS: dict[str, zipfile.ZipFile] = {}  # per worker process: zips opened once


def read_bytes(source: str, rel: str) -> bytes:
    """The encoded bytes of one image of a folder or zip source."""
    if source.endswith(".zip"):
        if source not in _ZIPS:
            _ZIPS[source] = zipfile.ZipFile(source)
        return _ZIPS[source].read(rel)
    return (Path(source) / rel).read_bytes()


def _header(task: tuple[str, str]) -> tuple[str, tuple[int, int]] | None:
    try:
        return images.header(read_bytes(*task))
    except Exception:  # any decoder error: this file is skipped later, with its reason
        return None


def _decode(task: tuple[str, str, tuple[int, int], int, int]) -> np.ndarray | str:
    source, rel, size, crop, channels = task
    try:
        return images.decode(read_bytes(source, rel), size, crop, channels)
    except Exception as e:  # unreadable, truncated, a decompression bomb: skip, keep the reason
        return images.failure(e)


def _watch_parent(parent: int) -> None:
    """Pool worker initializer: a daemon thread that ends this worker as soon as the process
    that started it is gone (kill -9, SIGTERM, a crash), which the pool cannot tell it: the
    workers would otherwise wait on their task queue forever. Polls os.getppid(), which
    changes when a process is orphaned; portable, and unlike Linux's PR_SET_PDEATHSIG not
    fooled by the parent's starting thread ending first."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)  # nothing to clean up: a worker only reads files and returns arrays

    threading.Thread(target=watch, name="vaekit-parent-watch", daemon=True).start()


def pool_map(fn: Callable, tasks: list, workers: int, desc: str):
    """fn over tasks in order, on `workers` processes (in this one for small jobs), with a
    progress bar on stderr when it is a terminal."""
    bar = dict(total=len(tasks), desc=desc, unit="img", disable=None, leave=False)
    if workers <= 1 or len(tasks) < 256:
        yield from tqdm(map(fn, tasks), **bar)
        return
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    pool = ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_watch_parent, initargs=(os.getpid(),)
    )
    with pool as ex:
        chunk = max(1, min(256, len(tasks) // (8 * workers)))
        yield from tqdm(ex.map(fn, tasks, chunksize=chunk), **bar)


def assign(entries: list[Entry], partition: dict[str, int] | None) -> tuple[list, list, list]:
    """(split per entry, label per entry, class names): train/ and test/ subfolders, else the
    partition map (basename -> 0 train, 1 valid, 2 test), else a fixed 5% by path hash.
    Labels by the one folder rule of vaekit.data.labels."""
    rels = [e[0] for e in entries]
    by_dir = split_by_folder(rels)
    splits = []
    for r in rels:
        if by_dir:
            splits.append(r.split("/")[0] if r.split("/")[0] in SPLITS else None)
        elif partition is not None:
            part = partition.get(r.rsplit("/", 1)[-1])
            splits.append({0: "train", 2: "test"}.get(part))  # the validation images unused
        else:
            h = int(hashlib.md5(r.encode()).hexdigest()[:8], 16) % 100
            splits.append("test" if h < TEST_PERCENT else "train")
    if not by_dir and partition is None and "test" not in splits and len(rels) > 1:
        splits[-1] = "test"  # a tiny folder still gets one test image
    labels, classes = folder_labels(rels)
    return splits, labels, classes


def fingerprint(entries: list[Entry]) -> str:
    return hashlib.sha1(json.dumps(entries).encode()).hexdigest()


def scan(source: Path, entries: list[Entry], workers: int) -> dict:
    """How many images have each mode and each size (H, W), from headers only; kept beside the
    caches so a second run with unchanged files does not read them again."""
    path = cache_root() / source_key(source) / "scan.json"
    fp = fingerprint(entries)
    if path.is_file():
        s = json.loads(path.read_text())
        if s.get("fingerprint") == fp and s.get("version") == VERSION and "size_counts" in s:
            return s
    tasks = [(str(source), e[0]) for e in entries]
    heads = [h for h in pool_map(_header, tasks, workers, "scanning") if h is not None]
    if not heads:
        raise DataError(f"{source}: none of its {len(entries)} image files can be read")
    s = {
        "fingerprint": fp,
        "version": VERSION,
        "modes": dict(Counter(m for m, _ in heads)),
        "size_counts": [[h, w, n] for (h, w), n in Counter(hw for _, hw in heads).items()],
    }
    write_json(s, path)
    return s


def common_size(counts: dict[tuple[int, int], int]) -> tuple[int, int]:
    """The most common (H, W) among the images; a tie goes to the smaller (fewer pixels, then
    the lower H): never a size that one odd file imposes on the whole folder."""
    return min(counts, key=lambda hw: (-counts[hw], hw[0] * hw[1], hw))


def size_summary(counts: dict[tuple[int, int], int], most: int = 4) -> str:
    """'3 image sizes (48x48: 120, 1024x1024: 1, 64x48: 1)', the most common first."""
    order = sorted(counts, key=lambda hw: (-counts[hw], hw[0] * hw[1], hw))
    shown = [f"{h}x{w}: {counts[h, w]}" for h, w in order[:most]]
    more = ", ..." if len(order) > most else ""
    return f"{len(counts)} image sizes ({', '.join(shown)}{more})"


def source_key(source: Path) -> str:
    return hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:16]


def temp_twin(path: Path) -> Path:
    """This process's temporary twin of path, named so that clean_stale can tell whose it is."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}-{HOST}")


def last_touched(path: Path) -> float:
    """The newest mtime of path and (for a folder) of the files right inside it."""
    try:
        times = [path.stat().st_mtime]
        if path.is_dir():
            times += [p.stat().st_mtime for p in path.iterdir()]
        return max(times)
    except OSError:  # removed meanwhile
        return time.time()


def clean_stale(folder: Path) -> None:
    """Remove the temporary cache folders and JSON files that a killed build left in folder:
    those of a process of this host that is gone, and any not touched for STALE_SECONDS (a
    reused PID, another host sharing the cache). Those of running builds stay."""
    try:
        names = [p for p in folder.iterdir() if p.name.startswith(".")]
    except OSError:
        return
    for p in names:
        m = TMP_NAME.match(p.name)
        if m is None:
            continue
        here = m["host"] is None or m["host"] == HOST  # no host: written by an older vaekit
        old = time.time() - last_touched(p) > STALE_SECONDS
        if old or (here and not pid_alive(int(m["pid"]))):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def write_json(obj: dict, path: Path) -> None:
    """Write JSON atomically: a temp file beside it, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_twin(path)
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def resolve(
    source: Path,
    size: tuple[int, int] | None,
    channels: int | None,
    workers: int,
    default_channels: int | None = None,
) -> tuple[tuple[int, int], int, list[Entry]]:
    """(size, channels, entries): what was asked, else what the images are: the most common
    size (H, W), ties to the smaller, said on stderr with the sizes found when they differ; 1
    channel only if every image is grey."""
    if not source.exists():
        raise DataError(f"{source}: no such folder or zip file")
    entries = list_images(source)
    if not entries:
        raise DataError(
            f"{source}: no images found (looked recursively for {' '.join(images.EXTENSIONS)})"
        )
    channels = channels or default_channels
    if size is None or channels is None:
        s = scan(source, entries, workers)
        grey = set(s["modes"]) <= set(images.GREY_MODES)
        channels = channels or (1 if grey else 3)
        counts = {(h, w): n for h, w, n in s["size_counts"]}
        if size is None:
            size = common_size(counts)
            H, W = size
            if len(counts) > 1:
                warn(
                    f"{source}: {size_summary(counts)}; using the most common, {H}x{W} (H x W; "
                    "ties: the smaller); set --image-size to choose; the others are "
                    "centre-cropped to its aspect ratio and resized"
                )
            else:
                print(f"vaekit: {source}: using the images' size, {H}x{W} (H x W)", file=sys.stderr)
        elif len(counts) > 1:
            warn(
                f"{source}: {size_summary(counts)}; each is centre-cropped to the aspect ratio "
                f"of {size[0]}x{size[1]} (H x W) and resized to it"
            )
        if not grey and len(s["modes"]) > 1:
            modes = ", ".join(f"{m}: {n}" for m, n in sorted(s["modes"].items()))
            warn(f"{source}: mixed image modes ({modes}); all become RGB (alpha over white)")
    return tuple(size), channels, entries


def build_or_load(
    source: Path,
    split: str,
    size: tuple[int, int],
    channels: int,
    crop: int,
    entries: list[Entry],
    partition: dict[str, int] | None = None,
    workers: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """One split of a source as (uint8 (N, C, H, W) memory-mapped, int64 labels (N,),
    manifest), decoding it into the cache first unless an up-to-date cache is there."""
    H, W = size
    dest = cache_root() / source_key(source) / f"{split}-{H}x{W}x{channels}-crop{crop}"
    prep = {"size": [H, W], "channels": channels, "crop": crop, "filter": "bilinear"}
    want = {"version": VERSION, "source": str(source.resolve()), "split": split, **prep}
    files = [list(e) for e in entries]
    clean_stale(dest.parent)  # what a killed build left behind
    man = read_manifest(dest)
    if man is None or {k: man.get(k) for k in want} != want or man.get("all_files") != files:
        if man is not None:
            warn(f"{dest.name}: the source or preprocessing changed; rebuilding the cache")
        man = build(source, entries, partition, dest, want, workers)
    n = man["num_images"]
    mm = np.memmap(dest / "images.u8", np.uint8, mode="c", shape=(n, channels, H, W))
    x = torch.from_numpy(mm)  # pages are read on first touch; copy-on-write, never written back
    y = torch.from_numpy(np.load(dest / "labels.npy"))
    return x, y, man


def read_manifest(dest: Path) -> dict | None:
    try:
        return json.loads((dest / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def build(
    source: Path,
    entries: list[Entry],
    partition: dict[str, int] | None,
    dest: Path,
    want: dict,
    workers: int | None,
) -> dict:
    """Decode the split and preprocessing `want` names into dest (a temp dir renamed into
    place); returns its manifest."""
    split, (H, W), channels, crop = want["split"], want["size"], want["channels"], want["crop"]
    splits, labels, classes = assign(entries, partition)
    picked = [i for i, s in enumerate(splits) if s == split]
    if not picked:
        raise DataError(f"{source}: no images in its {split} split")
    t0 = time.perf_counter()
    tmp = temp_twin(dest)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        mm = np.memmap(tmp / "images.u8", np.uint8, mode="w+", shape=(len(picked), channels, H, W))
        tasks = [(str(source), entries[i][0], (H, W), crop, channels) for i in picked]
        kept, skipped = [], []
        total, total_sq = 0.0, 0.0  # pixel sums for the mean and std
        workers = workers or os.cpu_count() or 1
        decoded = pool_map(_decode, tasks, workers, f"decoding {split}")
        for i, out in zip(picked, decoded, strict=True):
            if isinstance(out, str):
                skipped.append([entries[i][0], out])
                continue
            mm[len(kept)] = out
            kept.append(labels[i])
            a = out.astype(np.float64) / 255
            total, total_sq = total + a.sum(), total_sq + (a * a).sum()
        if not kept:
            raise DataError(f"{source}: none of the {len(picked)} {split} images can be read")
        mm.flush()
        del mm
        with open(tmp / "images.u8", "r+b") as f:  # drop the slots of skipped files
            f.truncate(len(kept) * channels * H * W)
        np.save(tmp / "labels.npy", np.asarray(kept, dtype=np.int64))
        n_px = len(kept) * channels * H * W
        mean = float(total / n_px)
        man = {
            **want,
            "num_images": len(kept),
            "classes": classes,
            "mean": mean,
            "std": max(float(np.sqrt(max(total_sq / n_px - mean * mean, 0.0))), 1e-3),
            "skipped": skipped,
            "all_files": [list(e) for e in entries],
        }
        write_json(man, tmp / "manifest.json")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.perf_counter() - t0
    print(f"vaekit: cached {len(kept)} {split} images in {seconds:.1f} s: {dest}", file=sys.stderr)
    if skipped:
        first = "; ".join(f"{r} ({e})" for r, e in skipped[:3])
        warn(
            f"{source}: skipped {len(skipped)} of {len(picked)} {split} images that cannot be "
            f"read, e.g. {first}; all are listed in {dest / 'manifest.json'}"
        )
    return man
