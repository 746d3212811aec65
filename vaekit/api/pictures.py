"""What the picture operations share: a grid written as an image file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def write_grid(grid: np.ndarray, out: str | Path | None) -> np.ndarray:
    """Write grid (H, W) or (H, W, C) uint8 to out when given (its format from the suffix,
    whole or not at all); returns grid."""
    from ..figures.png import save_png

    if out is not None:
        save_png(grid, out)
    return grid
