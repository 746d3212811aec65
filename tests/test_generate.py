import numpy as np
import pytest
import torch

from vaekit import VAE
from vaekit.evaluation.bound import posterior
from vaekit.figures.grids import (
    interpolate_grid,
    reconstruction_grid,
    sample_grid,
    top_dims,
    traverse_grid,
)
from vaekit.figures.png import make_grid


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return VAE.from_preset("mnist", channels=(8, 8), latent_dim=6).eval()


@pytest.fixture(scope="module")
def x():
    return torch.randint(0, 256, (10, 1, 28, 28), dtype=torch.uint8)


def test_traverse_grid_is_the_seed_picture(model, x):
    g = traverse_grid(model, x[3], dims=(2, 5), steps=13, span=7.0)
    assert g.shape == (364, 364)
    # the centre cell (offset 0 on both dims) is the decoded mean of the image
    mu, _ = model.encode(x[3:4].float() / 255)
    centre = make_grid(model.decode(mu), 1, padding=0)
    np.testing.assert_array_equal(g[6 * 28 : 7 * 28, 6 * 28 : 7 * 28], centre)
    # a corner moves dim 2 by -7 and dim 5 by +7
    z = mu.clone()
    z[0, 2] -= 7
    z[0, 5] += 7
    corner = make_grid(model.decode(z), 1, padding=0)
    assert np.abs(g[:28, 12 * 28 :].astype(int) - corner.astype(int)).max() <= 1


def test_traverse_rejects_dims_out_of_range(model, x):
    with pytest.raises(ValueError, match="latent dim 6 out of range"):
        traverse_grid(model, x[0], dims=(0, 6))


def test_interpolation_ends_at_both_images_means(model, x):
    g = interpolate_grid(model, x[0], x[1], steps=5)
    assert g.shape == (30 + 2, 5 * 30 + 2)
    mu, _ = model.encode(x[:2].float() / 255)
    ends = make_grid(model.decode(mu), 2, padding=0)
    np.testing.assert_array_equal(g[2:30, 2:30], ends[:, :28])
    np.testing.assert_array_equal(g[2:30, 4 * 30 + 2 : 4 * 30 + 30], ends[:, 28:])


def test_samples_are_seeded_and_temperature_matters(model):
    a, b = sample_grid(model, 16, seed=1), sample_grid(model, 16, seed=1)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (4 * 30 + 2, 4 * 30 + 2)
    assert not np.array_equal(a, sample_grid(model, 16, seed=2))
    assert not np.array_equal(a, sample_grid(model, 16, temperature=0.1, seed=1))


def test_reconstruction_grid_puts_originals_left(model, x):
    g = reconstruction_grid(model, x[:4])
    assert g.shape == (62, 62 + 8 + 62)
    np.testing.assert_array_equal(g[2:30, 2:30], x[0, 0].numpy())


def test_top_dims_orders_by_kl(model, x):
    assert top_dims([0.1, 3.0, 0.5, 2.0], 2) == [1, 3]
    kl = posterior(model, x)[1]
    assert len(kl) == 6 and min(kl) >= 0
