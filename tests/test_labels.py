"""One rule turns folder names into class labels (vaekit.data.labels): the training cache
(cache.assign) and the inputs of encode/score/explore (inputs.folder) label a tree alike."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from vaekit.data import cache, inputs
from vaekit.data.labels import folder_labels

TREES = {
    "classes": ["cat/a.png", "cat/b.png", "dog/c.png", "emu/d.png"],
    "split then classes": [
        "train/cat/a.png",
        "train/dog/b.png",
        "test/dog/c.png",
        "test/cat/d.png",
    ],
    "one class": ["cat/a.png", "cat/b.png"],
    "flat": ["a.png", "b.png"],
    "some at the top": ["a.png", "cat/b.png", "dog/c.png"],
}


def write_tree(root, rels: list[str]) -> None:
    for i, rel in enumerate(rels):
        buf = io.BytesIO()
        Image.fromarray(np.full((8, 8), 20 * i, np.uint8)).save(buf, "PNG")
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(buf.getvalue())


@pytest.mark.parametrize("tree", TREES)
def test_cache_and_inputs_label_a_folder_tree_the_same_way(tmp_path, tree):
    write_tree(tmp_path, TREES[tree])
    entries = cache.list_images(tmp_path)
    _, cache_labels, classes = cache.assign(entries, None)
    by_cache = {str(tmp_path / e[0]): y for e, y in zip(entries, cache_labels, strict=True)}

    source = inputs.folder(tmp_path, (8, 8), 1)
    batch = next(iter(source.batches(100)))
    assert source.labelled == bool(classes)
    got = batch.labels.tolist() if batch.labels is not None else [0] * len(batch.paths)
    assert dict(zip(batch.paths, got, strict=True)) == by_cache


def test_the_classes_are_the_folders_below_a_train_test_split():
    labels, classes = folder_labels(["train/cat/a.png", "test/dog/b.png", "train/dog/c.png"])
    assert classes == ["cat", "dog"] and labels == [0, 1, 1]
    assert folder_labels(["a.png", "cat/b.png"]) == ([0, 0], [])
