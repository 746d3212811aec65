"""vaekit traverse: vary two latent dims around an image's code."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import NONNEG_INT, POSITIVE
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


def traverse(
    run: RunLike,
    *,
    dims: Sequence[int] | None = None,
    index: int = 0,
    data: str | list[str] | None = None,
    steps: int = 13,
    span: float = 7.0,
    out: str | Path | None = None,
    device: str = "cpu",
    data_dir: str | Path | None = None,
    allow_nonfinite: bool = False,
    raw_weights: bool = False,
    label: int | None = None,
) -> np.ndarray:
    """A steps x steps grid decoded from image `index`'s code (of data, else the run's test
    set) with latent dims (rows, columns) offset by linspace(-span, span); dims default to the
    two top-KL dims (said on stdout). label: the class a conditional model encodes and decodes
    with (default: the test image's own). A uint8 image grid, written to out when given."""
    import torch

    from ..evaluation.bound import posterior
    from ..figures.grids import dim_scores, top_dims, traverse_grid

    if dims is not None:
        dims = [checked("dims", d, NONNEG_INT) for d in dims]
        if len(dims) != 2:
            raise ValueError(f"dims takes two dims (rows, columns), got {len(dims)}")
        if dims[0] == dims[1]:
            raise ValueError(
                f"--dims takes two different dims (rows, columns), got {dims[0]} twice"
            )
    index, steps = checked("index", index, NONNEG_INT), checked("steps", steps, STEPS)
    span = checked("span", span, POSITIVE)
    r = open_run(run, device, data_dir, allow_nonfinite, raw_weights)
    label = checked_label(r.model, label)
    out = prepare_out(out)
    x, where = r.picture_images(data)
    check_index(index, len(x), "--index", where)
    label = image_label(r, label, index, data)
    if dims is None:
        y = None if label is None else torch.full((len(x),), label)
        mu, kl = posterior(r.model, x, y=y)
        dims = top_dims(dim_scores(mu, kl), 2)
        how = "the top-KL dims" if kl is not None else "the dims whose codes vary most"
        print(f"traversing latent dims {dims[0]} (rows) and {dims[1]} (columns): {how} of {where}")
    return write_grid(traverse_grid(r.model, x[index], tuple(dims), steps, span, label), out)
