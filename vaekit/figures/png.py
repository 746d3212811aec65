"""Figures: image grids written with Pillow, and loss curves with matplotlib (imported lazily)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import outputs


def make_grid(
    images: torch.Tensor, nrow: int, padding: int = 2, pad_value: float = 1.0
) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] -> one uint8 image (rows * (H + p) + p, ...), C last.

    Images fill the grid row by row, nrow per row; empty cells keep pad_value.
    """
    if images.ndim != 4:
        raise ValueError(f"make_grid wants (N, C, H, W), got shape {tuple(images.shape)}")
    n, c, h, w = images.shape
    ncol = nrow
    nrows = -(-n // ncol)
    p = padding
    grid = torch.full((c, nrows * (h + p) + p, ncol * (w + p) + p), float(pad_value))
    for i, img in enumerate(images.detach().float().cpu().clamp(0, 1)):
        r, k = divmod(i, ncol)
        grid[:, p + r * (h + p) : p + r * (h + p) + h, p + k * (w + p) : p + k * (w + p) + w] = img
    arr = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()  # (H', W', C)
    return arr[:, :, 0] if c == 1 else arr


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 8, value: int = 255) -> np.ndarray:
    """Two grids of the same height next to each other, with a gap."""
    spacer = np.full((left.shape[0], gap, *left.shape[2:]), value, dtype=np.uint8)
    return np.concatenate([left, spacer, right], axis=1)


def save_png(arr: np.ndarray, path: str | Path) -> Path:
    """Write an image (H, W) or (H, W, C) uint8, atomically, in the format of path's suffix
    (.png; .jpg and Pillow's other formats too), creating its folder."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: not an image file name (.png, .jpg, ...)")
    path.parent.mkdir(parents=True, exist_ok=True)
    return outputs.write_with(path, lambda f: Image.fromarray(arr).save(f, format=fmt))


def plot_curves(metrics_jsonl: Path, out: Path) -> Path | None:
    """Train and test loss per epoch from metrics.jsonl; None if matplotlib is missing."""
    try:  # a Figure of its own, not pyplot: the caller's backend (a notebook's) stays as it is
        from matplotlib.figure import Figure
    except ImportError:
        return None
    rows = [json.loads(line) for line in Path(metrics_jsonl).read_text().splitlines() if line]
    fig = Figure(figsize=(5, 3.5), dpi=120)
    ax = fig.subplots()
    ax.plot([r["epoch"] for r in rows], [r["train_loss"] for r in rows], "o-", label="train")
    test = [r for r in rows if "test_loss" in r]
    if test:
        ax.plot([r["epoch"] for r in test], [r["test_loss"] for r in test], "s-", label="test")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss per image")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return outputs.write_with(out, lambda f: fig.savefig(f, format=Path(out).suffix[1:] or "png"))
