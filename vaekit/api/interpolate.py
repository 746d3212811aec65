"""vaekit interpolate: walk between two images' latent means."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..config import NONNEG_INT
from .pictures import write_grid
from .runs import (
    STEPS,
    RunLike,
    check_index,
    checked,
    checked_label,
    image_label,
    open_run,
    prepare_out,
)

if TYPE_CHECKING:
    import numpy as np


def interpolate(
    run: RunLike,
    *,
    a: int = 0,
    b: int = 1,
    steps: int = 10,
    data: str | list[str] | None = None,
    out: str | Path | None = None,
    device: str = "cpu",
    data_dir: str | Path | None = None,
    allow_nonfinite: bool = False,
    raw_weights: bool = False,
    label: int | None = None,
) -> np.ndarray:
    """A strip of `steps` images decoded along the line from image a's latent mean to image
    b's (of data, else the run's test set), as a uint8 image; written to out when given.
    label: the class a conditional model encodes and decodes both with (default: image a's)."""
    from ..figures.grids import interpolate_grid

    a, b = checked("a", a, NONNEG_INT), checked("b", b, NONNEG_INT)
    steps = checked("steps", steps, STEPS)
    r = open_run(run, device, data_dir, allow_nonfinite, raw_weights)
    label = checked_label(r.model, label)
    out = prepare_out(out)
    x, where = r.picture_images(data, max(a, b) + 1)
    check_index(a, len(x), "--a", where)
    check_index(b, len(x), "--b", where)
    label = image_label(r, label, a, data)
    return write_grid(interpolate_grid(r.model, x[a], x[b], steps, label), out)
