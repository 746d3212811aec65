"""Data: the dataset registry and its readers (registry.py), the image-folder cache (cache.py),
image decoding (images.py), the inputs of encode/score/explore (inputs.py) and the one rule that
turns folder names into class labels (labels.py).

The registry's names are importable from here: `from vaekit.data import load_split, DATASETS`.
"""

from __future__ import annotations

from ..errors import DataError
from ..likelihoods import BINARIZE_SEED, binarize, modelled, to_float  # pixels as modelled
from .registry import (
    CELEBA_FILES,
    CELEBA_PARTITION,
    DATASETS,
    NEARBY,
    CifarDataset,
    DataInfo,
    IdxDataset,
    ImageDataset,
    adapt,
    celeba_source,
    default_cache_dir,
    describe,
    download,
    fetch,
    get_dataset,
    is_cached,
    load_cached,
    load_split,
    md5sum,
    nearby_roots,
    num_classes,
    read_cifar_batch,
    read_cifar_split,
    read_idx,
    read_idx_split,
    read_partition,
    search_roots,
    searched,
)

__all__ = [
    "BINARIZE_SEED",
    "CELEBA_FILES",
    "CELEBA_PARTITION",
    "DATASETS",
    "NEARBY",
    "CifarDataset",
    "DataError",
    "DataInfo",
    "IdxDataset",
    "ImageDataset",
    "adapt",
    "binarize",
    "celeba_source",
    "default_cache_dir",
    "describe",
    "download",
    "fetch",
    "get_dataset",
    "is_cached",
    "load_cached",
    "load_split",
    "md5sum",
    "modelled",
    "nearby_roots",
    "num_classes",
    "read_cifar_batch",
    "read_cifar_split",
    "read_idx",
    "read_idx_split",
    "read_partition",
    "search_roots",
    "searched",
    "to_float",
]
