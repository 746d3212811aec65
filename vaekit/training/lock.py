"""One writer per run directory: `train` and `train --resume` hold an OS file lock (flock) on
RUN_DIR/.lock, which holds the writer's PID. The OS releases the lock when the process ends,
however it ends, so a killed run never leaves a stale lock. Readers (sample, evaluate, ...)
take no lock: they read last.pt, which is only ever replaced whole (vaekit.outputs).

Under torchrun only rank 0 (which alone writes) holds it. Where the OS has no flock (Windows)
there is no lock."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import TrainError
from ..outputs import remove_stale_temps

LOCK_FILE = ".lock"
_held: set[Path] = set()  # run dirs this process holds: holding one again is a no-op


@contextmanager
def run_lock(out: str | Path) -> Iterator[None]:
    """Hold run directory out (created if missing) for the block: another process holding it
    is a TrainError naming its PID, before anything in out is touched. On taking it, the
    temporary files of writers that died (a SIGKILL mid-save) are removed."""
    out = Path(out)
    try:
        import fcntl
    except ImportError:  # Windows
        fcntl = None
    key = out.resolve()
    if fcntl is None or key in _held or int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise TrainError(f"cannot create run dir {out}: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise TrainError(
            f"{out} is being written by another vaekit train (PID {pid}); one run per "
            "directory: wait for it to end, or choose another --out"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _held.add(key)
        for folder in (out, out / "checkpoints", out / "figures"):
            remove_stale_temps(folder)
        yield
    finally:
        _held.discard(key)
        os.close(fd)  # releases the lock


def holding_run_dir(fn: Callable) -> Callable:
    """Decorate fn(..., out, ...) to run holding run_lock(out)."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def holding(*args, **kwargs):
        with run_lock(signature.bind(*args, **kwargs).arguments["out"]):
            return fn(*args, **kwargs)

    return holding
