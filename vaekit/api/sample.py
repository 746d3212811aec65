"""vaekit sample: decode samples from the prior as a grid."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import NONNEG, POSITIVE, SEED
from .pictures import write_grid
from .runs import GRID_N, RunLike, checked, checked_label, open_run, prepare_out, with_prior

if TYPE_CHECKING:
    import numpy as np

    from ..priors.base import Prior


def sample(
    run: RunLike,
    *,
    n: int = 64,
    temperature: float = 1.0,
    temperatures: Sequence[float] | None = None,
    seed: int = 0,
    prior: str | Prior | None = None,
    out: str | Path | None = None,
    device: str = "cpu",
    data_dir: str | Path | None = None,
    allow_nonfinite: bool = False,
    raw_weights: bool = False,
    label: int | str | None = None,
) -> np.ndarray:
    """A grid of n samples z ~ N(0, T^2 I) decoded, as a uint8 image (H, W) or (H, W, C);
    temperatures: one per latent group, top first (hierarchical models), instead of
    temperature; prior: z from a fitted prior instead (at temperature T: its spread scaled by
    T), the name of one fitted by `vaekit prior RUN --kind NAME` or a vaekit.priors Prior.
    label (a conditional model's): a class, or "all": one row per class of max(1, n // classes)
    samples each, from the same codes in every row (default: the classes in turn). Written to
    out when given (as `vaekit sample` writes RUN_DIR/samples.png)."""
    from ..figures.grids import class_grid, sample_grid

    n, seed = checked("n", n, GRID_N), checked("seed", seed, SEED)
    temperature = checked("temperature", temperature, POSITIVE)
    if temperatures is not None:
        temperatures = [checked("temperatures", t, NONNEG) for t in temperatures]
    model = with_prior(open_run(run, device, data_dir, allow_nonfinite, raw_weights), prior).model
    label = checked_label(model, label, all_ok=True)
    out = prepare_out(out)
    groups = len(model.latent_shapes)
    if temperatures and len(temperatures) != groups:
        raise ValueError(
            f"--temperatures: {len(temperatures)} given, the model has {groups} latent groups"
        )
    if not model.has_prior:
        print(
            f"note: a {model.cfg.family} model has no prior: these are decoded codes z ~ N(0, "
            "T^2 I), not samples of a generative model",
            file=sys.stderr,
        )
    if label == "all":
        grid = class_grid(model, max(1, n // model.num_classes), temperatures or temperature, seed)
    else:
        grid = sample_grid(model, n, temperatures or temperature, seed, label)
    return write_grid(grid, out)
