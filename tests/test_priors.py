"""Priors as parts (vaekit.priors): the standard normal and the Gaussian mixture against
independent references (torch.distributions, scikit-learn's score_samples), their samples'
moments, and a fitted prior's round trip through the run directory (vaekit.priors.store)."""

from __future__ import annotations

import contextlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit.config import FAMILIES, PRIORS, GMMOptions, prior_options, resolve
from vaekit.errors import CheckpointError, ConfigError
from vaekit.priors import store
from vaekit.priors.base import Prior
from vaekit.priors.gmm import GaussianMixture
from vaekit.priors.normal import StandardNormal


def blobs(n: int = 600, seed: int = 0) -> np.ndarray:
    """(n, 3) codes from three elongated, rotated clusters: what a full covariance is for."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [4.0, -2.0, 1.0], [-3.0, 3.0, 2.0]])
    k = rng.integers(0, 3, n)
    a = rng.normal(size=(3, 3, 3)) * 0.7
    return centres[k] + np.einsum("nij,nj->ni", a[k], rng.normal(size=(n, 3)))


def sklearn_gmm(covariance: str, components: int = 3):
    from sklearn.mixture import GaussianMixture as Sk

    return Sk(components, covariance_type=covariance, random_state=0).fit(blobs())


def fixed_mixture() -> GaussianMixture:
    """Two components in 2-D with known weights, means and scales (Cholesky factors)."""
    p = GaussianMixture(2, 2, "full")
    p.weights.copy_(torch.tensor([0.3, 0.7]))
    p.means.copy_(torch.tensor([[-2.0, 1.0], [3.0, 0.5]]))
    p.scale.copy_(torch.tensor([[[1.0, 0.0], [0.5, 0.4]], [[0.3, 0.0], [-0.2, 1.5]]]))
    return p


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_the_mixtures_log_density_is_scikit_learns(covariance):
    gm = sklearn_gmm(covariance)
    prior = GaussianMixture.from_sklearn(gm)
    z = blobs(200, seed=1) * 1.5  # in and far outside the clusters
    expected = gm.score_samples(z)
    got = prior.log_prob(torch.from_numpy(z).float()).double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


def test_the_standard_normals_log_density_is_torch_distributions():
    z = torch.randn(50, 2, 3)  # codes of any shape, flattened per image
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).flatten(1).sum(1)
    torch.testing.assert_close(StandardNormal((2, 3)).log_prob(z), expected)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_mixture_samples_have_the_mixtures_moments(temperature):
    """Mean sum_k w_k m_k and covariance sum_k w_k (T^2 L_k L_k^T + m_k m_k^T) - mean mean^T."""
    p = fixed_mixture()
    z = p.sample(40_000, torch.Generator().manual_seed(0), temperature).double()
    w, m, L = p.weights.double(), p.means.double(), p.scale.double()
    mean = (w[:, None] * m).sum(0)
    second = (w[:, None, None] * (temperature**2 * L @ L.mT + m[:, :, None] * m[:, None])).sum(0)
    torch.testing.assert_close(z.mean(0), mean, atol=0.03, rtol=0)
    torch.testing.assert_close(z.T.cov(), second - torch.outer(mean, mean), atol=0.06, rtol=0.02)
    # each draw sits by its component: the share near the first mean is its weight
    near_first = ((z - m[0]).norm(dim=1) < (z - m[1]).norm(dim=1)).double().mean()
    assert abs(near_first - 0.3) < 0.02


def test_standard_normal_samples_scale_with_the_temperature():
    z = StandardNormal((4,)).sample(20_000, torch.Generator().manual_seed(0), 0.5)
    assert z.shape == (20_000, 4)
    torch.testing.assert_close(z.std(0), torch.full((4,), 0.5), atol=0.01, rtol=0)


def test_the_same_seed_draws_the_same_codes_and_another_seed_others():
    p = fixed_mixture()
    a, b, c = (p.sample(5, torch.Generator().manual_seed(s)) for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_a_diagonal_mixture_samples_with_its_per_dimension_spread():
    p = GaussianMixture.from_sklearn(sklearn_gmm("diag", components=1))
    z = p.sample(20_000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(z.std(0), p.scale[0], atol=0.05, rtol=0.02)


@pytest.mark.parametrize("make", [fixed_mixture, lambda: StandardNormal((2,))])
def test_a_saved_prior_loads_as_plain_data_and_is_the_same_prior(make, tmp_path):
    prior = make()
    kind = "gmm" if isinstance(prior, GaussianMixture) else "normal"
    meta = {"num_codes": 7, "seed": 3, "checkpoint": {"epoch": 2, "batch": 0}}
    path = store.save(prior, kind, tmp_path, meta)
    assert path == tmp_path / "priors" / f"{kind}.pt"
    data = torch.load(path, weights_only=True)  # plain data: no pickled code
    assert data["kind"] == kind and data["options"] == prior.options() and data["meta"] == meta
    loaded, got_meta = store.load(tmp_path, kind)
    assert type(loaded) is type(prior) and got_meta == meta
    z = torch.randn(10, 2)
    torch.testing.assert_close(loaded.log_prob(z), prior.log_prob(z))
    g = [torch.Generator().manual_seed(5) for _ in range(2)]
    assert torch.equal(loaded.sample(8, g[0]), prior.sample(8, g[1]))
    assert not list(path.parent.glob(".*tmp*"))  # written whole, no temporary left


def test_a_missing_prior_says_how_to_fit_it(tmp_path):
    with pytest.raises(CheckpointError, match=r"run `vaekit prior .* --kind gmm` first"):
        store.load(tmp_path, "gmm")


@pytest.mark.parametrize(
    "content,why",
    [
        (b"not a torch file", "unreadable or damaged"),
        ({"kind": "gmm", "state": {}}, r"missing \['options', 'meta'\]"),
        (
            {"kind": "normal", "options": {"shape": [2]}, "state": {}, "meta": {}},
            "holds a 'normal'",
        ),
        ({"kind": "gmm", "options": {"dim": 2}, "state": {}, "meta": {}}, "does not rebuild"),
    ],
)
def test_a_damaged_prior_file_is_a_one_line_error(content, why, tmp_path):
    path = store.prior_path(tmp_path, "gmm")
    path.parent.mkdir()
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(CheckpointError, match=why) as e:
        store.load(tmp_path, "gmm")
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_a_prior_holding_nan_is_refused(tmp_path):
    p = fixed_mixture()
    p.means[0, 0] = float("nan")
    store.save(p, "gmm", tmp_path, {})
    with pytest.raises(CheckpointError, match="tensor means holds non-finite"):
        store.load(tmp_path, "gmm")


def test_every_registered_prior_is_a_prior_with_a_fit_and_checked_options():
    for kind in PRIORS.values():
        cls = resolve(kind.prior)
        assert issubclass(cls, Prior) and callable(getattr(cls, "fit", None))
        kind.options()  # its defaults build
    assert prior_options("gmm", {"components": "20", "covariance": None}) == GMMOptions(20)
    with pytest.raises(ConfigError, match="covariance must be full or diag, got 'spherical'"):
        prior_options("gmm", {"covariance": "spherical"})
    with pytest.raises(ConfigError, match=r"prior kind normal has no options \['components'\]"):
        prior_options("normal", {"components": 3})
    with pytest.raises(ConfigError, match="prior kind must be one of"):
        prior_options("flow", {})


def test_the_mixtures_normaliser_is_right_in_many_dimensions():
    """log p integrates to one: a 1-component mixture in 40-D is the Gaussian N(m, LL^T)."""
    D = 40
    g = torch.Generator().manual_seed(0)
    L = torch.tril(torch.randn(D, D, generator=g) * 0.1) + torch.eye(D)
    m = torch.randn(D, generator=g)
    p = GaussianMixture(D, 1, "full")
    p.means.copy_(m[None])
    p.scale.copy_(L[None])
    z = torch.randn(20, D, generator=g)
    ref = torch.distributions.MultivariateNormal(m.double(), scale_tril=L.double())
    torch.testing.assert_close(
        p.log_prob(z).double(), ref.log_prob(z.double()), rtol=1e-5, atol=1e-3
    )
    assert math.isfinite(float(p.log_prob(z * 100).min()))


# --- `vaekit prior`: fitting into a run directory ------------------------------------------------


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    """A copy of the shared tiny run (512 MNIST images, 4-dim z) to write priors into."""
    import shutil

    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


def test_vaekit_prior_fits_a_mixture_to_the_runs_codes_and_records_what_it_fitted(run_copy, capsys):
    from vaekit import checkpoint
    from vaekit.cli import main

    argv = ["prior", str(run_copy), "--kind", "gmm", "--components", "3", "--covariance", "diag"]
    assert main([*argv, "--seed", "4"]) == 0
    path = run_copy / "priors" / "gmm.pt"
    assert f"wrote {path}: gmm prior (components 3, covariance diag" in capsys.readouterr().out
    prior, meta = store.load(run_copy, "gmm")
    assert prior.options() == {"dim": 4, "components": 3, "covariance": "diag"}
    ckpt = checkpoint.load(run_copy)
    assert meta["num_codes"] == 512  # the images the run was trained on (its --limit)
    assert meta["seed"] == 4 and meta["checkpoint"]["epoch"] == ckpt["epoch"]
    assert meta["fit_options"] == {"components": 3, "covariance": "diag", "max_iter": 200}
    # the mixture is the one scikit-learn fits to the same codes with the same seed
    from sklearn.mixture import GaussianMixture as Sk

    from vaekit.api.runs import open_run
    from vaekit.priors.codes import posterior_means

    r = open_run(run_copy)
    z = posterior_means(r.model, r.split("train")[0][:512]).double().numpy()
    gm = Sk(3, covariance_type="diag", random_state=4).fit(z)
    np.testing.assert_allclose(
        prior.log_prob(torch.from_numpy(z[:50]).float()).numpy(), gm.score_samples(z[:50]),
        rtol=1e-4, atol=1e-3,
    )  # fmt: skip


def test_vaekit_prior_waits_for_no_one_a_run_being_written_is_refused(run_copy, capsys):
    import fcntl
    import os

    from vaekit.cli import main

    fd = os.open(run_copy / ".lock", os.O_RDWR | os.O_CREAT)
    os.pwrite(fd, b"4242\n", 0)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another writer holds the run
    try:
        assert main(["prior", str(run_copy), "--kind", "normal"]) == 2
    finally:
        os.close(fd)
    err = capsys.readouterr().err
    assert "PID 4242" in err and len(err.strip().splitlines()) == 1
    assert not (run_copy / "priors").exists()


@pytest.mark.parametrize(
    "argv,error",
    [
        (["--kind", "normal", "--components", "3"], r"prior kind normal has no options"),
        (["--components", "0"], r"argument --components: must be an integer >= 1, got 0"),
        (["--covariance", "tied"], r"covariance must be full or diag, got 'tied'"),
        (["--components", "600"], r"components 600 is more than the 512 codes"),
    ],
)
def test_bad_prior_options_are_one_line_errors(argv, error, run_copy, capsys):
    from vaekit.cli import main

    with pytest.raises(SystemExit) if "argument" in error else contextlib.nullcontext():
        assert main(["prior", str(run_copy), *argv]) == 2
    err = capsys.readouterr().err  # progress lines, then the error in one line
    assert re.search(error, err.strip().splitlines()[-1]) and "Traceback" not in err, err
    assert not (run_copy / "priors" / "gmm.pt").exists()


# --- --prior NAME on sample, metrics and explore; every family with every prior -----------------


def fit(run: Path, kind: str = "gmm") -> None:
    from vaekit.cli import main

    options = ["--components", "3"] if kind == "gmm" else []
    assert main(["prior", str(run), "--kind", kind, *options]) == 0


@pytest.fixture(scope="module")
def ae_run(data_root, tmp_path_factory) -> Path:
    """A deterministic autoencoder run (no prior of its own), one epoch on 512 images."""
    from vaekit.cli import main

    from .conftest import TINY

    out = tmp_path_factory.mktemp("runs") / "ae"
    args = ["train", "--family", "ae", *TINY, "--limit", "512", "--epochs", "1", "--no-figures"]
    assert main([*args, "--eval-every", "0", "--out", str(out), "--data-dir", str(data_root)]) == 0
    return out


def test_sample_with_a_fitted_prior_decodes_the_priors_codes(run_copy, tmp_path, capsys):
    from vaekit import api
    from vaekit.figures.png import make_grid

    fit(run_copy)
    grid = api.sample(run_copy, n=16, seed=2, temperature=0.8, prior="gmm")
    prior, _ = store.load(run_copy, "gmm")
    model = api.open_run(run_copy).model
    z = prior.sample(16, torch.Generator().manual_seed(2), 0.8)
    with torch.inference_mode():
        expected = make_grid(model.decode(z), 4)
    assert np.array_equal(grid, expected)
    assert np.array_equal(api.sample(run_copy, n=16, seed=2, temperature=0.8, prior=prior), grid)
    assert not np.array_equal(api.sample(run_copy, n=16, seed=2, temperature=0.8), grid)


def test_a_run_without_the_fitted_prior_says_how_to_fit_it(run_copy, capsys):
    from vaekit.cli import main

    for argv in (["sample"], ["metrics", "--n", "100"], ["explore", "--port", "0"]):
        assert main([argv[0], str(run_copy), *argv[1:], "--prior", "gmm"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.endswith(f"run `vaekit prior {run_copy} --kind gmm` first"), err
        assert len(err.splitlines()) == 1


def test_an_autoencoder_with_a_fitted_prior_samples_without_the_no_prior_note(ae_run, capsys):
    from vaekit.cli import main

    assert main(["sample", str(ae_run), "--n", "4"]) == 0
    assert "has no prior" in capsys.readouterr().err
    fit(ae_run)
    assert main(["sample", str(ae_run), "--n", "4", "--prior", "gmm"]) == 0
    out, err = capsys.readouterr()
    assert "no prior" not in err and f"wrote {ae_run / 'samples.png'}" in out


def test_metrics_with_a_fitted_prior_says_so_and_keeps_the_own_priors_record(
    run_copy, tmp_path, monkeypatch, capsys
):
    from vaekit.cli import main

    monkeypatch.setenv("VAEKIT_CACHE", str(tmp_path / "cache"))
    fit(run_copy)
    argv = ["metrics", str(run_copy), "--n", "100", "--classifier-limit", "512"]
    assert main(argv) == 0
    assert main([*argv, "--prior", "gmm"]) == 0
    assert ", prior gmm," in capsys.readouterr().out
    own = json.loads((run_copy / "quality-classifier-t1.json").read_text())
    fitted = json.loads((run_copy / "quality-classifier-t1-gmm.json").read_text())
    assert own["prior"] == "own" and own["prior_fit"] is None
    assert fitted["prior"] == "gmm" and fitted["prior_fit"]["fit_options"]["components"] == 3
    assert fitted["samples"]["fid"] != own["samples"]["fid"]
    assert fitted["reconstructions"] == own["reconstructions"]  # the same model otherwise


def test_the_explorer_draws_random_samples_from_the_fitted_prior(run_copy):
    from vaekit.api.runs import open_run, with_prior
    from vaekit.explorer import Explorer

    fit(run_copy)
    r = open_run(run_copy)
    x, y = r.test_set()
    fitted = with_prior(r, "gmm").model
    ex = Explorer(r.model, x[:64], y[:64], "mnist", fitted=fitted)
    got = torch.tensor(ex.sample({"n": 3, "seed": 7, "temperature": 0.5})["z"])
    expected = fitted.prior.sample(3, torch.Generator().manual_seed(7), 0.5)
    torch.testing.assert_close(got, expected)
    assert ex.info()["prior"] == "gmm" and "fitted prior gmm" in ex.info()["note"]
    own = Explorer(r.model, x[:64], y[:64], "mnist")
    assert not torch.equal(torch.tensor(own.sample({"n": 3, "seed": 7})["z"]), expected)


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("kind", list(PRIORS))
def test_every_family_samples_finite_images_with_every_prior(family, kind, tmp_path):
    """The contract's part for priors: fitted to a model's codes, a prior's samples decode to
    finite images of the model's shape; a model of several latent groups refuses one."""
    from vaekit.models.fitted import WithPrior

    from .test_families import tiny

    model = tiny(family, "gaussian").eval()
    x = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8)
    small = {"gmm": {"components": 2}, "pixelcnn": {"epochs": 1, "channels": 4, "layers": 2}}
    options = PRIORS[kind].options(**small.get(kind, {}))
    fit = lambda: resolve(PRIORS[kind].prior).fit(  # noqa: E731
        model, x, options, work_dir=tmp_path / "work", device=torch.device("cpu"), seed=0,
        progress=lambda line: None,
    )  # fmt: skip
    if kind == "pixelcnn" and not hasattr(model, "codes"):  # over discrete codes (vqvae) only
        with pytest.raises(ValueError, match="needs a model that has them"):
            fit()
        return
    prior = fit()
    assert isinstance(prior, Prior)
    z = prior.sample(5, torch.Generator().manual_seed(0))
    codes = (model.top_dim,) if z.is_floating_point() else model.grid  # vectors, or code grids
    assert z.shape == (5, *codes) and torch.isfinite(prior.log_prob(z)).all()
    if len(model.latent_shapes) > 1:
        with pytest.raises(ValueError, match="latent groups"):
            WithPrior(model, prior, kind)
        return
    images = WithPrior(model, prior, kind).sample(5, 0.7, torch.Generator().manual_seed(1))
    assert images.shape == (5, 1, 28, 28) and torch.isfinite(images).all()


def test_a_conditional_run_refuses_a_fitted_prior_in_one_line(tiny_cvae_run, tmp_path, capsys):
    """A fitted prior is over an unconditional model's codes: `vaekit prior` on a conditional
    run is refused before anything is written, and so is wrapping its model."""
    import shutil

    import vaekit
    from vaekit.cli import main
    from vaekit.models.fitted import WithPrior

    run = tmp_path / "cvae"
    shutil.copytree(tiny_cvae_run, run)
    assert main(["prior", str(run), "--kind", "gmm", "--components", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "conditional" in err and not (run / "priors").exists()
    model = vaekit.load(run)
    with pytest.raises(ValueError, match="conditional"):
        WithPrior(model, StandardNormal((model.top_dim,)))
