"""The run directory's checkpoints: last.pt, best.pt (lowest test loss) and the last N epochs,
written atomically; a write that fails (a full disk) is a one-line error naming what is intact."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from .. import checkpoint, outputs
from ..errors import TrainError  # vaekit.training.checkpoints.TrainError too


def rng_state(shuffle: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, shuffle: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    shuffle.set_state(state["shuffle"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointManager:
    """Writes a run's checkpoints (rank 0 only; the others call it and nothing happens)."""

    def __init__(self, out: Path, keep: int = 0, main: bool = True):
        self.out, self.keep, self.main = Path(out), keep, main
        self.last = self.out / "last.pt"

    def write(self, what: str, path: Path, fn, *args) -> None:
        """fn(*args) writes path; an OSError becomes a TrainError saying what is still intact."""
        if not self.main:
            return
        try:
            fn(*args)
        except OSError as e:
            kept = (
                f"{self.last} holds the last good checkpoint"
                if self.last.exists()
                else ("no checkpoint was written yet")
            )
            raise TrainError(
                f"cannot write {what} {path} ({e.strerror or e}); {kept}: free some space, then "
                f"vaekit train --resume {self.out}"
            ) from None

    def save_last(self, state: dict) -> None:
        self.write("checkpoint", self.last, checkpoint.save, state, self.last)

    def save_epoch(self, state: dict, epoch: int, is_best: bool) -> None:
        """End of an epoch: last.pt, best.pt if it is the best so far, and the keep-N copies."""
        self.save_last(state)
        if is_best:
            best = self.out / "best.pt"
            self.write("checkpoint", best, checkpoint.save, state, best)
        if self.keep:
            folder = self.out / "checkpoints"
            path = folder / f"epoch_{epoch:03d}.pt"

            def rotate() -> None:
                folder.mkdir(exist_ok=True)
                checkpoint.save(state, path)
                for old in sorted(folder.glob("epoch_*.pt"))[: -self.keep]:
                    old.unlink()

            self.write("checkpoint", path, rotate)


def check_room(out: Path, need: int) -> None:
    """Fail before training, not at the first checkpoint, if out is unwritable or too full.

    need: the bytes the run will add (a resumed run counts what replacing its files frees)."""
    try:
        outputs.probe(out)
    except OSError as e:
        raise TrainError(f"cannot write to run dir {out}: {e.strerror}") from None
    free = shutil.disk_usage(out).free
    if free < need:
        raise TrainError(
            f"{out}: {free / 2**20:.1f} MiB free but the checkpoints need about "
            f"{need / 2**20:.1f} MiB; free some space or choose another --out"
        )


def room_needed(out: Path, ckpt_bytes: int, keep: int, resumed: bool) -> int:
    """Bytes a run needs free: one temporary file at a time, plus each file it adds (last,
    best, the keep-N copies); a resumed run's existing files are replaced, not added."""
    files = 2 + keep
    if resumed:
        files -= sum((out / name).exists() for name in ("last.pt", "best.pt"))
        files -= min(keep, len(list((out / "checkpoints").glob("epoch_*.pt"))))
    return (1 + files) * ckpt_bytes
