"""Every file vaekit writes is whole or absent: written to a temporary twin in the same folder,
flushed to disk, then renamed over the target (an atomic step), so a crash, a full disk or a
reader at any moment sees the old file or the new one, never a torn one. Appended logs grow by
whole lines only. JSON is strict: no NaN or Infinity, which no standard parser accepts.

A failed write is an OutputError (an OSError) whose one-line message names the file and why.
"""

from __future__ import annotations

import csv
import errno
import json
import math
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .errors import OutputError

NON_FINITE_KEY = "non_finite"  # strict JSON's note: the fields written as null, and what they were
TEMP = re.compile(r"^\..+\.tmp(\d+)$")  # a temporary twin: .NAME.tmpPID (a file or a folder)


def output_error(e: OSError, path: str | Path) -> OutputError:
    """e, raised while writing path, as an OutputError naming path."""
    if isinstance(e, OutputError):
        return e
    reason = e.strerror or str(e) or type(e).__name__
    return OutputError(e.errno or errno.EIO, reason, str(path))


def temp_path(path: Path) -> Path:
    """This process's temporary twin of path: .NAME.tmpPID beside it."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def sync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename) to disk, where the OS allows it (not on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_stream(path: Path) -> bool:
    """path is a device or a pipe (/dev/stdout, a named pipe): written in place, as a stream;
    a stream has no temporary twin and cannot be replaced."""
    return path.exists() and not path.is_file() and not path.is_dir()


def move_into_place(tmp: Path, path: Path) -> None:
    """Flush the finished file tmp to disk and rename it over path (same folder), with the
    permissions of the file it replaces."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    if path.is_file():
        shutil.copymode(path, tmp)
    os.replace(tmp, path)
    sync_folder(path.parent)


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside path for the caller to write; when the block ends, flush
    it to disk and rename it over path. If the block fails, the temporary file is removed and
    path is left as it was; an OSError becomes an OutputError naming path. A symbolic link's
    target is replaced (the link stays); a stream (see is_stream) is yielded itself."""
    path = Path(path)
    if path.is_symlink() and not is_stream(path):
        path = path.resolve()
    tmp = path if is_stream(path) else temp_path(path)
    try:
        yield tmp
        if tmp != path:
            move_into_place(tmp, path)
    except OSError as e:
        raise output_error(e, path) from None
    finally:
        if tmp != path:
            tmp.unlink(missing_ok=True)


def write_with(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call write(f) on a binary file that becomes path when it returns (see replacing)."""
    path = Path(path)
    with replacing(path) as tmp, open(tmp, "wb") as f:
        write(f)
    return path


@contextmanager
def csv_rows(path: str | Path) -> Iterator[Any]:
    """A csv.writer whose rows become path, whole, when the block ends (see replacing)."""
    with replacing(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        yield csv.writer(f)


def write_bytes(path: str | Path, data: bytes) -> Path:
    return write_with(path, lambda f: f.write(data))


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode())


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    """obj as strict JSON (see dumps) in path, atomically, ending with a newline."""
    return write_text(path, dumps(obj, indent) + "\n")


def finite(obj: Any, where: str = "", bad: dict[str, str] | None = None) -> Any:
    """obj (dicts, lists, tuples, scalars) with every NaN and +-Infinity float replaced by None;
    bad, if given, collects where each was (a dotted path, [] for list items) and what it was."""
    if isinstance(obj, float) and not math.isfinite(obj):
        if bad is not None:
            bad[where or "value"] = json.dumps(obj)  # NaN, Infinity or -Infinity
        return None
    if isinstance(obj, dict):
        return {k: finite(v, f"{where}.{k}" if where else str(k), bad) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v, f"{where}[]", bad) for v in obj]
    return obj


def dumps(obj: Any, indent: int | None = None) -> str:
    """obj as strict JSON: non-finite floats become null, and a dict gets a "non_finite" field
    naming them ({"test_loss": "NaN"}); json.loads of the text never meets NaN or Infinity."""
    bad: dict[str, str] = {}
    clean = finite(obj, "", bad)
    if bad and isinstance(clean, dict):
        clean[NON_FINITE_KEY] = bad
    return json.dumps(clean, indent=indent, allow_nan=False)


def append_line(path: str | Path, line: str) -> None:
    """Append one line (no newline inside) to a log, in one write: a reader sees it whole or
    not at all. A write that fails or falls short is undone, and a cut line left at the end by
    a crash (a power loss) is dropped first, so lines never run together."""
    if "\n" in line:
        raise ValueError(f"append_line: one line without newlines, got {line[:40]!r}...")
    data = (line + "\n").encode()
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as e:
        raise output_error(e, path) from None
    try:
        size = drop_cut_tail(path, fd)
        try:
            if os.write(fd, data) != len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)
            raise
    except OSError as e:
        raise output_error(e, path) from None
    finally:
        os.close(fd)


def drop_cut_tail(path: Path, fd: int) -> int:
    """Cut a log (open as fd) back to its last newline; returns its size afterwards."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    with open(path, "rb") as f:
        keep = f.read().rfind(b"\n") + 1
    os.ftruncate(fd, keep)
    return keep


def probe(folder: Path) -> None:
    """Fail now, not after the work, if folder takes no new file (an OutputError)."""
    tmp = temp_path(folder / "write-test")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        tmp.unlink()
    except OSError as e:
        raise output_error(e, folder) from None


def prepare(path: str | Path) -> Path:
    """Before the work that makes it: path's folder is created and takes a new file, and path
    is not a folder; otherwise an OutputError naming path and why."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(errno.EISDIR, "it is a folder; name a file", str(path))
    if is_stream(path):
        return path
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        why = "not a folder" if folder.exists() else (e.strerror or str(e))
        reason = f"cannot create folder {folder}: {why}"
        raise OutputError(e.errno or errno.EIO, reason, str(path)) from None
    try:
        probe(folder)
    except OutputError as e:
        reason = f"its folder takes no new file: {e.strerror}"
        raise OutputError(e.errno, reason, str(path)) from None
    return path


def pid_alive(pid: int) -> bool:
    """Whether process pid (of this host) still runs; True where that cannot be told."""
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill would terminate it there; only the age test applies
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def remove_stale_temps(folder: Path) -> list[Path]:
    """Remove the temporary twins (.NAME.tmpPID) in folder whose writer is gone (killed before
    it could clean up); returns what was removed."""
    gone = []
    for p in sorted(folder.iterdir()) if folder.is_dir() else []:
        m = TEMP.match(p.name)
        if m is None or pid_alive(int(m[1])):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        gone.append(p)
    return gone
