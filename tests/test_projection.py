"""The explorer's t-SNE map (vaekit/explorer/projection.py): which images it places, that each
point is its own image's, and its cache beside the checkpoint (kept while the weights and the
images are the same, recomputed when either changes). Small point sets: about a second per t-SNE."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import sklearn.manifold
import torch

from vaekit.explorer.projection import cache_key, subset, tsne_map


class CountingTSNE(sklearn.manifold.TSNE):
    """scikit-learn's TSNE, counting how often it runs."""

    runs = 0

    def fit_transform(self, X, y=None):
        CountingTSNE.runs += 1
        return super().fit_transform(X, y)


@pytest.fixture
def counting(monkeypatch):
    monkeypatch.setattr(sklearn.manifold, "TSNE", CountingTSNE)
    CountingTSNE.runs = 0
    return CountingTSNE


def blobs(n_per: int = 40, dim: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Three well separated Gaussian clusters of latent means, in blocks: (3 n_per, dim), labels."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, dim, generator=g) * 20
    labels = torch.arange(3).repeat_interleave(n_per)
    return centres[labels] + torch.randn(3 * n_per, dim, generator=g), labels


def test_the_subset_is_fixed_sorted_and_capped():
    assert torch.equal(subset(50, 100), torch.arange(50))  # a small set: every image
    s = subset(1000, 100)
    assert len(s) == 100 == len(s.unique()) and torch.equal(s, s.sort().values)
    assert 0 <= s.min() and s.max() < 1000 and torch.equal(s, subset(1000, 100))
    assert s.max() > 500  # spread over the set, not its first images


def test_each_point_is_its_own_image_and_clusters_stay_apart():
    mu, labels = blobs()
    lines = []
    m = tsne_map(mu, cap=90, log=lines.append)
    index, points = torch.tensor(m["index"]), torch.tensor(m["points"])
    assert m["of"] == 120 and len(index) == 90 and points.shape == (90, 2)
    assert torch.equal(index, subset(120, 90))
    assert lines[0].startswith("t-SNE map of 90 of 120 test images (scikit-learn, once)")
    # the nearest point on the map of every point is from its own cluster: points are in the
    # order of `index`, each its own image's
    d = torch.cdist(points, points).fill_diagonal_(float("inf"))
    assert torch.equal(labels[index][d.argmin(1)], labels[index])
    assert len(set(labels[index].tolist())) == 3


def test_the_map_is_cached_and_recomputed_when_weights_or_images_change(tmp_path, counting):
    model, x = torch.nn.Linear(4, 2), torch.randint(0, 256, (60, 1, 8, 8), dtype=torch.uint8)
    mu, cache, lines = blobs(20)[0], tmp_path / "last.tsne.npz", []
    first = tsne_map(mu, 50, cache, cache_key(model, x, 50), lines.append)
    assert counting.runs == 1 and cache.is_file()
    again = tsne_map(mu, 50, cache, cache_key(model, x, 50), lines.append)
    assert counting.runs == 1 and again == first
    assert lines[-1] == f"t-SNE map of 50 test images: read from {cache}"
    with torch.no_grad():
        model.bias[0] += 1e-6  # other weights
    tsne_map(mu, 50, cache, cache_key(model, x, 50), lines.append)
    assert counting.runs == 2
    x[3, 0, 2, 2] ^= 1  # other images
    tsne_map(mu, 50, cache, cache_key(model, x, 50), lines.append)
    assert counting.runs == 3
    tsne_map(mu, 40, cache, cache_key(model, x, 40), lines.append)  # another cap
    assert counting.runs == 4
    tsne_map(mu, 40, cache, cache_key(model, x, 40), lines.append)
    assert counting.runs == 4
    cache.write_bytes(b"PK\x03\x04 torn")  # a torn or foreign file: computed again, no error
    assert tsne_map(mu, 40, cache, cache_key(model, x, 40), lines.append) is not None
    assert counting.runs == 5


def test_an_unwritable_cache_is_a_note_not_an_error(tmp_path, counting):
    lines = []
    cache = tmp_path / "missing-dir" / "last.tsne.npz"
    m = tsne_map(blobs(10)[0], 100, cache, "k", lines.append)
    assert m is not None and len(m["index"]) == 30 and not cache.exists()
    assert lines[-1].startswith(f"note: cannot cache the t-SNE map in {cache}")


def test_no_map_when_off_too_few_images_or_without_scikit_learn(monkeypatch):
    lines = []
    assert tsne_map(blobs(10)[0], 0, log=lines.append) is None and lines == []  # off
    assert tsne_map(torch.randn(9, 4), 100, log=lines.append) is None
    assert "only 9 images" in lines[-1]
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)
    assert tsne_map(blobs(10)[0], 100, log=lines.append) is None
    assert "pip install 'vaekit[tsne]'" in lines[-1] and "PCA" in lines[-1]


def test_small_sets_lower_the_perplexity_below_the_point_count():
    m = tsne_map(torch.randn(16, 3), 100, log=lambda _: None)
    assert m["perplexity"] == 5.0 and np.isfinite(m["points"]).all()
