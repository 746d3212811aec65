"""vaekit reconstruct: test images beside their reconstructions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .pictures import write_grid
from .runs import GRID_N, RunLike, checked, open_run, prepare_out

if TYPE_CHECKING:
    import numpy as np


def reconstruct(
    run: RunLike,
    *,
    n: int = 64,
    data: str | list[str] | None = None,
    out: str | Path | None = None,
    device: str = "cpu",
    data_dir: str | Path | None = None,
    allow_nonfinite: bool = False,
    raw_weights: bool = False,
) -> np.ndarray:
    """The first n images (data's: DATASET:SPLIT, folder:PATH or image files; else the run's
    test set) beside their reconstructions, as a uint8 image grid; written to out when given.
    A conditional model reconstructs each image given its label."""
    from ..figures.grids import reconstruction_grid

    n = checked("n", n, GRID_N)
    r = open_run(run, device, data_dir, allow_nonfinite, raw_weights)
    out = prepare_out(out)
    x, where = r.picture_images(data, n)
    y = r.model_labels(data, n)
    if n > len(x):
        print(f"note: --n {n} but {where} has {len(x)} images; showing {len(x)}")
    return write_grid(reconstruction_grid(r.model, x[:n], None if y is None else y[:n]), out)
