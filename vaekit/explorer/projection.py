"""The explorer's t-SNE map: a test set's latent means placed in 2-D by scikit-learn's TSNE
(van der Maaten & Hinton 2008), where PCA and the top-KL dims show one blob.

t-SNE costs seconds to minutes on a CPU and grows faster than the number of points, so it runs
on a fixed random subset of at most `cap` images (PCA and the top-KL map still show them all),
once per run: the result is cached beside the checkpoint, keyed by the weights, the images and
the settings, and computed again only when one of them changes. t-SNE places only the points
it was given: a new code (a slider, an upload) has no place on the map.
"""

from __future__ import annotations

import hashlib
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..outputs import write_with

PERPLEXITY = 30.0  # scikit-learn's default: about the number of neighbours each point keeps
MIN_POINTS = 10  # fewer images: no t-SNE map
SEED = 0  # the subset and t-SNE's own randomness: the same map every time


def subset(n: int, cap: int, seed: int = SEED) -> torch.Tensor:
    """Indices (sorted, int64) of a fixed random subset of min(n, cap) of n images."""
    if n <= cap:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:cap].sort().values


def cache_key(model: torch.nn.Module, x: torch.Tensor, cap: int) -> str:
    """sha256 of the settings, every weight and buffer (names and bytes), and the images."""
    h = hashlib.sha256(json.dumps({"cap": cap, "perplexity": PERPLEXITY, "seed": SEED}).encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    h.update(str(tuple(x.shape)).encode())
    h.update(x.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def read_cache(path: Path, key: str) -> dict | None:
    """The cached map if path holds one for this key, else None (missing, stale, unreadable)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f["key"]) != key:
                return None
            return {"index": f["index"], "points": f["points"], "seconds": float(f["seconds"])}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):  # absent, torn, foreign
        return None


def write_cache(path: Path, key: str, index: np.ndarray, points: np.ndarray, seconds: float):
    write_with(path, lambda f: np.savez(f, key=key, index=index, points=points, seconds=seconds))


def tsne_map(
    mu: torch.Tensor, cap: int, cache: Path | None = None, key: str = "", log=print
) -> dict | None:
    """A t-SNE map of latent means mu (N, D) for the explorer, or None (cap 0, under MIN_POINTS
    images, or scikit-learn missing: a line says so and the map offers PCA and the top-KL dims).

    Returns {"index": the images placed (sorted test-set indices), "points": (n, 2) floats,
    "of": N, "perplexity"}. cache: a .npz file beside the checkpoint, read when it holds `key`
    (cache_key), else written after computing (a note if it cannot be written)."""
    n = len(mu)
    if cap <= 0:
        return None
    if n < MIN_POINTS:
        log(f"t-SNE map: only {n} images, under {MIN_POINTS}; the map offers PCA and top-KL dims")
        return None
    index = subset(n, cap).numpy()
    perplexity = min(PERPLEXITY, (len(index) - 1) / 3)  # it must stay below the point count
    hit = read_cache(cache, key) if cache is not None else None
    if hit is not None and np.array_equal(hit["index"], index):
        log(f"t-SNE map of {len(index):,} test images: read from {cache}")
        points = hit["points"]
    else:
        try:
            from sklearn.manifold import TSNE
        except ImportError:
            log("t-SNE map: needs scikit-learn (pip install 'vaekit[tsne]'); the map offers PCA "
                "and the top-KL dims")  # fmt: skip
            return None
        where = f", cached in {cache}" if cache is not None else ""
        log(f"t-SNE map of {len(index):,} of {n:,} test images (scikit-learn, once{where})...")
        t0 = time.perf_counter()
        tsne = TSNE(2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=SEED)
        points = tsne.fit_transform(mu[torch.from_numpy(index)].double().cpu().numpy())
        points, seconds = points.astype(np.float32), time.perf_counter() - t0
        log(f"t-SNE map: {seconds:.1f} s")
        if cache is not None:
            try:
                write_cache(cache, key, index, points, seconds)
            except OSError as e:
                log(f"note: cannot cache the t-SNE map in {cache} ({e.strerror or e}); it will be "
                    "computed again next time")  # fmt: skip
    return {
        "index": index.tolist(),
        "points": np.round(points, 3).tolist(),
        "of": n,
        "perplexity": perplexity,
    }
