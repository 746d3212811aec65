"""Sample quality (#16): the distances against independent references (scipy, numpy,
scikit-learn), the dataset classifier's cache, the Inception path offline, vaekit metrics on
every family and train --fid-every."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image
from sklearn.neighbors import NearestNeighbors

from vaekit.cli import main
from vaekit.errors import DataError
from vaekit.evaluation import classifier, inception, metrics, quality

from .conftest import TINY

LIMIT = ["--classifier-limit", "512"]  # the classifier on tiny_run's 512 images: ~90%, seconds


def gaussians(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def scipy_fid(a: torch.Tensor, b: torch.Tensor) -> float:
    """The Frechet distance of Gaussians fit to a and b, by numpy and scipy's sqrtm."""
    mu_a, mu_b = a.mean(0).numpy(), b.mean(0).numpy()
    s_a, s_b = np.cov(a.numpy(), rowvar=False), np.cov(b.numpy(), rowvar=False)
    return ((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * scipy.linalg.sqrtm(s_a @ s_b).real)


def test_frechet_distance_is_zero_to_itself_grows_with_a_shift_and_matches_scipy():
    a = gaussians(3000, 6, 0)
    assert abs(metrics.frechet_distance(a, a)) < 1e-8
    for shift in (0.5, 1.0, 2.0):  # same covariance: the distance is |shift|^2 exactly
        m = torch.full((6,), shift, dtype=torch.float64)
        assert metrics.frechet_distance(a, a + m) == pytest.approx(6 * shift**2, rel=1e-8)
    b = gaussians(2500, 6, 1) @ torch.rand(6, 6, generator=torch.Generator().manual_seed(2),
                                          dtype=torch.float64) + 0.3  # fmt: skip
    assert metrics.frechet_distance(a, b) == pytest.approx(scipy_fid(a, b), rel=1e-6)
    dead = torch.ones(6, dtype=torch.float64)
    dead[[1, 4]] = 0  # units that never fire, as ReLU features have: singular covariances
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        want = scipy_fid(a * dead, b * dead)
    assert metrics.frechet_distance(a * dead, b * dead) == pytest.approx(want, rel=1e-6)
    # N(0, I) against N(0, s^2 I) in d dims: d (1 - s)^2, up to the sample's noise
    assert metrics.frechet_distance(a, 2 * gaussians(3000, 6, 3)) == pytest.approx(6, rel=0.05)


def mmd2(x: np.ndarray, y: np.ndarray, unbiased: bool) -> float:
    """Squared MMD with KID's kernel (x.y / d + 1)^3, the U- or the V-statistic (numpy)."""
    k = lambda a, b: (a @ b.T / x.shape[1] + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    n = len(x)
    if unbiased:
        return ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (n * (n - 1)) - (
            2 * kxy.mean()
        )
    return kxx.mean() + kyy.mean() - 2 * kxy.mean()


def test_kid_is_the_unbiased_mmd_and_about_zero_between_two_draws_of_one_distribution():
    x, y = gaussians(300, 4, 0), gaussians(300, 4, 1)
    kid, std = metrics.kernel_distance(x, y, subsets=1, subset_size=300)  # all of each set
    assert kid == pytest.approx(mmd2(x.numpy(), y.numpy(), unbiased=True), rel=1e-9, abs=1e-12)
    assert std == 0
    # 30 pairs of draws of one distribution: the KIDs average to 0 (the biased statistic does not)
    pairs = [(gaussians(100, 4, 2 * i + 10), gaussians(100, 4, 2 * i + 11)) for i in range(30)]
    kids = np.array(
        [metrics.kernel_distance(a, b, subsets=1, subset_size=100)[0] for a, b in pairs]
    )
    biased = np.array([mmd2(a.numpy(), b.numpy(), unbiased=False) for a, b in pairs])
    se = kids.std(ddof=1) / math.sqrt(len(kids))
    assert abs(kids.mean()) < 3 * se
    assert biased.mean() > 10 * se  # the test would see a bias of this size
    far = metrics.kernel_distance(x, y + 1, subsets=10, subset_size=100, seed=3)
    assert far[0] > 20 * se and far == metrics.kernel_distance(x, y + 1, 10, 100, seed=3)


def test_without_torchmetrics_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchmetrics.image.fid", None)  # import fails
    a = gaussians(10, 2, 0)
    with pytest.raises(ImportError, match=r"pip install 'vaekit\[metrics\]'"):
        metrics.frechet_distance(a, a)


def reference_neighbours(real: np.ndarray, fake: np.ndarray, pr_k: int, dc_k: int) -> dict:
    """Precision/recall and density/coverage from scikit-learn's neighbours, as the papers'
    code computes them (a ball holds the points within its radius)."""

    def radius(f, k):  # distance to the k-th nearest other point
        return NearestNeighbors(n_neighbors=k + 1).fit(f).kneighbors(f)[0][:, k]

    def held(points, centres, r):  # (points, centres) bool: point inside the centre's ball
        dist, idx = NearestNeighbors().fit(centres).radius_neighbors(points, radius=r.max())
        out = np.zeros((len(points), len(centres)), bool)
        for i, (d, j) in enumerate(zip(dist, idx, strict=True)):
            out[i, j] = d <= r[j]
        return out

    fake_in_real_pr = held(fake, real, radius(real, pr_k))
    real_in_fake = held(real, fake, radius(fake, pr_k))
    fake_in_real_dc = held(fake, real, radius(real, dc_k))
    return {
        "precision": fake_in_real_pr.any(1).mean(),
        "recall": real_in_fake.any(1).mean(),
        "density": fake_in_real_dc.sum(1).mean() / dc_k,
        "coverage": fake_in_real_dc.any(0).mean(),
    }


def test_precision_recall_density_coverage_match_scikit_learns_neighbours(monkeypatch):
    monkeypatch.setattr(metrics, "CHUNK", 70)  # several chunks, a ragged last one
    real, fake = gaussians(300, 5, 0), 1.3 * gaussians(250, 5, 1) + 0.4
    got = metrics.neighbours(real, fake)
    want = reference_neighbours(real.numpy(), fake.numpy(), metrics.PR_K, metrics.DC_K)
    assert got == pytest.approx(want, abs=1e-12)
    assert 0.2 < got["precision"] < 0.9 and 0.2 < got["recall"] < 1  # not a degenerate case
    same = metrics.neighbours(real, real.clone())
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    with pytest.raises(ValueError, match="need more than 5 points"):
        metrics.knn_radii(real[:5])


# --- The dataset classifier ----------------------------------------------------------------------


def write_folder(root, labelled: bool = True, n: int = 24):
    """A folder of 12x12 grey images: class a bright on the left, class b on the right."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for i in range(n if split == "train" else 8):
            label = "ab"[i % 2]
            img = rng.integers(0, 60, (12, 12), np.uint8)
            img[:, :6] += 150 if label == "a" else 0
            img[:, 6:] += 150 if label == "b" else 0
            folder = root / split / (label if labelled else "")
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(folder / f"{label}{i}.png")


def test_the_classifier_is_cached_reused_and_retrained_when_its_images_change(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("VAEKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(classifier, "MIN_STEPS", 2)  # 24 images: what matters is the cache
    write_folder(tmp_path / "imgs")
    spec = classifier.Spec(f"folder:{tmp_path / 'imgs'}", (12, 12), 1)
    trained = []
    real_train = classifier.train
    monkeypatch.setattr(
        classifier, "train", lambda *a, **k: trained.append(1) or real_train(*a, **k)
    )
    net, record = classifier.load_or_train(spec, log=lambda s: None)
    assert trained == [1] and record["classes"] == 2 and record["train_images"] == 24
    assert 0 <= record["test_accuracy"] <= 1 and record["test_images"] == 8
    saved = json.loads((spec.folder() / "classifier.json").read_text())
    assert saved == record and saved["path"].startswith(str(tmp_path / "cache"))
    again, record2 = classifier.load_or_train(spec, log=lambda s: None)
    assert trained == [1] and record2 == record  # reused, not retrained
    for k, v in net.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])
    x = torch.randint(0, 256, (5, 1, 12, 12), dtype=torch.uint8)
    assert net.features(x).shape == (5, classifier.FEATURES)
    # one training image changes: the digest of the data changes, so it is trained again
    Image.fromarray(np.full((12, 12), 7, np.uint8)).save(tmp_path / "imgs/train/a/a0.png")
    logs = []
    _, record3 = classifier.load_or_train(spec, log=logs.append)
    assert trained == [1, 1] and record3["key"]["data"] != record["key"]["data"]
    assert any("retraining" in line for line in logs)


def test_the_same_seed_trains_the_same_classifier(monkeypatch):
    monkeypatch.setattr(classifier, "MIN_STEPS", 5)
    x = torch.randint(0, 256, (70, 1, 12, 12), dtype=torch.uint8)
    y = torch.arange(70) % 3
    a, b = classifier.train(x, y, 3, seed=4), classifier.train(x, y, 3, seed=4)
    c = classifier.train(x, y, 3, seed=5)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert not torch.equal(a.head.weight, c.head.weight)


def test_unlabelled_images_get_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEKIT_CACHE", str(tmp_path / "cache"))
    write_folder(tmp_path / "imgs", labelled=False)
    spec = classifier.Spec(f"folder:{tmp_path / 'imgs'}", (12, 12), 1)
    with pytest.raises(DataError, match="the classifier features need labelled images"):
        classifier.load_or_train(spec)


# --- Inception-v3: never downloaded, never random ------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the network was used")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr("urllib.request.urlopen", refuse)


def test_inception_without_its_weights_is_a_one_line_error_naming_the_file(
    tmp_path, monkeypatch, no_network
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty hub folder
    where = tmp_path / "torch" / "hub" / "checkpoints" / inception.FILE
    assert inception.default_weights() == where
    with pytest.raises(ValueError, match=f"download {inception.FILE} from .* put it at {where}"):
        inception.load()
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a plain Inception-v3 weights file"):
        inception.load(bad)
    if importlib.util.find_spec("torch_fidelity") is None:  # as on the development machines
        plain = tmp_path / "plain.pth"
        torch.save({"w": torch.zeros(1)}, plain)
        with pytest.raises(ImportError, match=r"pip install 'vaekit\[inception\]'"):
            inception.load(plain)


# --- vaekit metrics on every family, and train --fid-every --------------------------------------


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def shared_cache(cache, monkeypatch):
    """One classifier cache for the module's tests: the MNIST classifier is trained once."""
    monkeypatch.setenv("VAEKIT_CACHE", str(cache))


def run_metrics(run, tmp_path, *extra) -> dict:
    out = tmp_path / "q.json"
    args = ["metrics", str(run), "--n", "200", *LIMIT, "--out", str(out), *extra]
    assert main(args) == 0
    return json.loads(out.read_text())


def check_set(m: dict, n: int) -> None:
    assert m["num_fake"] == m["num_real"] == n and math.isfinite(m["fid"]) and m["fid"] > 0
    assert math.isfinite(m["kid"]) and m["density"] >= 0
    assert all(0 <= m[k] <= 1 for k in ("precision", "recall", "coverage"))


def test_a_subset_of_the_test_set_is_random_but_fixed():
    a = quality.subset(300, 1000)
    assert len(a.unique()) == 300 and torch.equal(a, a.sort().values) and a.max() < 1000
    assert torch.equal(a, quality.subset(300, 1000)) and not torch.equal(a, torch.arange(300))
    assert (a % 2 == 0).float().mean() < 0.6  # not a stride that would alias
    assert torch.equal(quality.subset(7, 7), torch.arange(7))


def test_metrics_of_a_vae_run(tiny_run, tmp_path, capsys):
    res = run_metrics(tiny_run, tmp_path, "--temperature", "0.7", "--seed", "3")
    f = res["features"]
    assert f["name"] == "classifier" and f["dim"] == classifier.FEATURES and f["limit"] == 512
    assert f["test_accuracy"] > 0.6 and f["test_images"] == 10_000  # chance: 0.1
    assert res["num_samples"] == 200 and res["temperature"] == 0.7 and res["seed"] == 3
    assert res["family"] == "vae" and res["reference"] == {"split": "test", "num_images": 200}
    check_set(res["samples"], 200)
    check_set(res["reconstructions"], 200)
    assert res["seconds"]["total"] > 0 and res["seconds"]["sampling"] > 0
    with pytest.raises(SystemExit) as e:
        main(["metrics", str(tiny_run), "--n", "0"])
    assert e.value.code == 2 and "--n: must be an integer >= 1, got 0" in capsys.readouterr().err


def train(data_root, out, *args) -> list[dict]:
    """Train a run (no per-epoch test evaluation: the tests need the model, quickly); its rows."""
    fast = ["--eval-every", "0", "--no-figures", "--out", str(out), "--data-dir", str(data_root)]
    assert main(["train", *args, *fast]) == 0
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_metrics_of_an_hvae_run_and_its_fid_during_training(data_root, tmp_path):
    run = tmp_path / "hvae"
    rows = train(data_root, run, "--preset", "mnist-hvae", "--width", "8", "--z-channels", "2",
                 "--groups", "1", "1", "1", "1", "--batch-size", "64", "--precision", "fp32",
                 "--limit", "512", "--epochs", "2", "--fid-every", "2")  # fmt: skip
    assert "fid" not in rows[0] and "fid_recon" not in rows[0]  # every 2 epochs
    assert rows[1]["fid"] > 0 and rows[1]["fid_recon"] > 0 and rows[1]["fid_seconds"] > 0
    res = run_metrics(run, tmp_path)
    assert res["family"] == "hvae" and res["likelihood"] == "bernoulli"
    check_set(res["samples"], 200)
    check_set(res["reconstructions"], 200)


def test_an_autoencoder_has_reconstruction_metrics_only(data_root, tmp_path, capsys):
    run = tmp_path / "ae"
    (row,) = train(data_root, run, "--family", "ae", *TINY, "--limit", "512", "--epochs", "1",
                   "--fid-every", "1")  # fmt: skip
    assert "fid" not in row and row["fid_recon"] > 0  # no prior: no samples to measure
    capsys.readouterr()
    res = run_metrics(run, tmp_path)
    assert "has no prior" in capsys.readouterr().err
    assert res["samples"] is None and res["num_samples"] == 0
    check_set(res["reconstructions"], 200)


def test_inception_features_offline_are_a_one_line_error(
    tiny_run, tmp_path, monkeypatch, capsys, no_network
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    assert main(["metrics", str(tiny_run), "--features", "inception", "--n", "10"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and inception.FILE in err
    assert not list(tiny_run.glob("quality-*.json"))


def test_a_new_metric_is_one_registry_entry_computed_and_printed(monkeypatch, capsys):
    """compare() computes every METRICS entry and `vaekit metrics` prints every PRINTED key: a
    metric added to the registry reaches the record and the summary line with no other edit."""
    from vaekit.cli.metrics import print_record

    def mean_gap(r, f, seed, radii):
        return {"mean_gap": float((r.mean(0) - f.mean(0)).norm())}

    monkeypatch.setitem(metrics.METRICS, "mean_gap", mean_gap)
    monkeypatch.setitem(metrics.PRINTED, "mean_gap", ("mean gap", ".2f"))
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(64, 8, generator=g), torch.randn(48, 8, generator=g) + 1
    rec = metrics.compare(real, fake)
    assert rec["mean_gap"] == pytest.approx(float((real.mean(0) - fake.mean(0)).norm()))
    assert rec["fid"] == metrics.frechet_distance(real, fake)  # the others as before
    print_record({"features": {"name": "test"}, "epoch": 1, "mid_epoch_steps": 0,
                  "dataset": "mnist", "samples": rec, "reconstructions": None})  # fmt: skip
    line = capsys.readouterr().out.splitlines()[1]
    assert line.startswith("        samples: FID ") and f"mean gap {rec['mean_gap']:.2f}" in line
