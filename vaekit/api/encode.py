"""vaekit encode: posterior means and log-variances of any images."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..config import POSITIVE_INT
from .runs import RunLike, checked, inference_precision, open_run, prepare_out

if TYPE_CHECKING:
    import numpy as np
    import torch

FORMATS = ("npz", "csv")


def encode(
    run: RunLike,
    data: torch.Tensor | str | list[str],
    batch_size: int = 1000,
    all_groups: bool = False,
    data_dir: str | Path | None = None,
    *,
    out: str | Path | None = None,
    format: str | None = None,
    device: str = "cpu",
    precision: str = "auto",
    allow_nonfinite: bool = False,
    raw_weights: bool = False,
) -> dict[str, np.ndarray]:
    """Latents of any images: data is a tensor of images (N, C, H, W) at the model's size
    (uint8, or floats in [0, 1]), "DATASET:SPLIT", "folder:PATH", or a list of image files.
    Returns the arrays of vaekit.latents (mu, logvar (N, D); with all_groups the lower groups'
    too; labels, paths and the unreadable files where there are such); written to out when
    given, as NumPy .npz or .csv (format; default from out's suffix, else npz). precision:
    auto (bf16 where the device computes it natively, else fp32), fp32 or bf16; bf16 means
    agree with fp32's to within 2% of each latent's spread on average (tests/test_latents.py)."""
    import torch

    from ..data import inputs
    from ..evaluation import latents
    from ..runtime.allocator import keep_freed_memory

    batch_size = checked("batch_size", batch_size, POSITIVE_INT)
    fmt = format or ("csv" if out is not None and Path(out).suffix.lower() == ".csv" else "npz")
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    r = open_run(run, device, data_dir, allow_nonfinite, raw_weights)
    out = prepare_out(out)
    source = latents.source_of(r.model, data, r.data_dir)
    if r.path is not None:  # a model loaded here, not the caller's: made fast
        # channels-last: the encoder's convolutions run 1.3-2x faster on CPU (same numbers up
        # to rounding)
        r.model.to(memory_format=torch.channels_last)
        keep_freed_memory()  # batches reuse their buffers instead of faulting pages in again
    precision = inference_precision(precision, r.model)
    arrays = latents.encode_source(r.model, source, batch_size, all_groups, precision)
    listed = "its unreadable and unreadable_errors" if fmt == "npz" else "rows with an error"
    inputs.warn_unreadable(source, None if out is None else f"{out} ({listed})")
    if out is not None:
        latents.save(arrays, out, fmt)
    return arrays
