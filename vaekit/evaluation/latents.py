"""Latents out: a model's posterior over any images (vaekit.data.inputs), in batches, as arrays.

mu, logvar    (N, D) the top latent group's posterior mean and log-variance (flat)
mu_1, ...     (N, *shape) the lower groups' (hierarchical models, with all_groups), along the
              path of posterior means
codes         (N, h, w) int64, the code indices of a model with discrete codes (vqvae; mu is
              then their vectors, flat, and there is no logvar)
labels        (N,) int64, where the data have them
paths         (N,) str, for folders and files
unreadable    (K,) str, the files that could not be read (left out of the arrays above), and
unreadable_errors (K,) str, why: only when there are such files
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import outputs
from ..data.inputs import Source
from ..likelihoods import to_float
from ..models import LatentModel


@torch.inference_mode()
def encode_source(
    model: LatentModel,
    source: Source,
    batch_size: int = 1000,
    all_groups: bool = False,
    precision: str = "fp32",
) -> dict[str, np.ndarray]:
    """The posterior of every image of a source, in the source's order (see the module doc),
    computed in precision ("fp32", or "bf16" autocast: the arrays are float32 either way); a
    conditional model's given each image's label (the source must have labels)."""
    from ..runtime.precision import autocast

    if model.conditional and not source.labelled:
        raise ValueError(
            f"a conditional model encodes images given their class: {source.name} has no labels "
            "(use a labelled dataset split, e.g. mnist:test, or class subfolders)"
        )
    device = next(model.parameters()).device
    parts: dict[str, list] = {}
    bar = tqdm(total=source.count, desc="encoding", unit="img", file=sys.stderr, disable=None)
    for b in source.batches(batch_size):
        x = to_float(model.likelihood.prepare_eval(b.x).to(device))
        y = {"y": b.labels.to(device)} if model.conditional else {}
        with autocast(precision, device):
            mu, logvar, lower = posterior_of(model, x, all_groups, y)
        for i, (m, lv) in enumerate(lower, start=1):
            parts.setdefault(f"mu_{i}", []).append(m.float().cpu().numpy())
            parts.setdefault(f"logvar_{i}", []).append(lv.float().cpu().numpy())
        parts.setdefault("mu", []).append(mu.float().cpu().numpy())
        if hasattr(model, "codes"):
            parts.setdefault("codes", []).append(model.codes(x).cpu().numpy())
        if logvar is not None:
            parts.setdefault("logvar", []).append(logvar.float().cpu().numpy())
        if b.labels is not None:
            parts.setdefault("labels", []).append(b.labels.numpy())
        if b.paths is not None:
            parts.setdefault("paths", []).append(np.array(b.paths))
        bar.update(len(b.x))
    bar.close()
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    if source.unreadable.files:
        paths, errors = zip(*source.unreadable.files, strict=True)
        arrays["unreadable"], arrays["unreadable_errors"] = np.array(paths), np.array(errors)
    return arrays


def posterior_of(model: LatentModel, x: torch.Tensor, all_groups: bool, y: dict) -> tuple:
    """(mu, logvar) of the top group, flat (B, D), and [(mu_i, logvar_i)] of the lower groups
    (with all_groups, for hierarchical models; else []); y: {"y": labels} of a conditional
    model, else {}."""
    if all_groups and len(model.latent_shapes) > 1:
        groups = model.posterior(x, **y)
        return groups[0][0].flatten(1), groups[0][1].flatten(1), groups[1:]
    return (*model.encode(x, **y), [])


def save(arrays: dict[str, np.ndarray], path: Path, fmt: str) -> Path:
    """Write the arrays: NumPy .npz (every array), or .csv (path, label, then the top group's
    mu_0.. and logvar_0.., then error: one row per image, then one per unreadable file with
    only its path and error), whole or not at all (vaekit.outputs)."""
    path = Path(path)
    if fmt == "npz":
        return outputs.write_with(path, lambda f: np.savez(f, **arrays))
    n, D = arrays["mu"].shape
    cols = [f"mu_{d}" for d in range(D)]
    table = [arrays["mu"]]
    if "logvar" in arrays:
        cols += [f"logvar_{d}" for d in range(D)]
        table.append(arrays["logvar"])
    values = np.concatenate(table, axis=1)
    with outputs.csv_rows(path) as w:
        w.writerow(["path", "label", *cols, "error"])
        for i in range(n):
            p = arrays["paths"][i] if "paths" in arrays else ""
            y = int(arrays["labels"][i]) if "labels" in arrays else ""
            w.writerow([p, y, *(f"{v:.7g}" for v in values[i]), ""])
        bad = zip(arrays.get("unreadable", ()), arrays.get("unreadable_errors", ()), strict=True)
        for p, why in bad:
            w.writerow([p, "", *[""] * len(cols), why])
    return path


def source_of(
    model: LatentModel, data: torch.Tensor | str | list[str], data_dir: str | Path | None = None
) -> Source:
    """The images to encode as a Source: data is a tensor of images (N, C, H, W) at the
    model's size (uint8, or floats in [0, 1]), "DATASET:SPLIT", "folder:PATH", or a list of
    --data specs or image files."""
    from ..data.inputs import Batch, parse

    if isinstance(data, torch.Tensor):
        x = data if data.dtype == torch.uint8 else (data.clamp(0, 1) * 255).round().to(torch.uint8)

        def batches(n: int):
            return (Batch(x[i : i + n], None, None) for i in range(0, len(x), n))

        return Source("tensor", len(x), batches, labelled=False, has_paths=False)
    specs = [data] if isinstance(data, str) else list(data)
    return parse(specs, model.cfg.image_size, model.cfg.in_channels, data_dir)
