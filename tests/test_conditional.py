"""Labels from the data to the model, and conditional models end to end (issue #30): batches
carry labels, a conditional run samples, traverses, interpolates, evaluates, exports and is
measured given a class; every misuse is a one-line error."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import vaekit
from vaekit.cli import main
from vaekit.data import load_split, num_classes
from vaekit.training import BatchSource, load_training_data

from .conftest import TINY


def test_training_data_carry_the_labels_of_their_images(data_root):
    d = load_training_data("mnist", (28, 28), 1, 0, 300, data_root)
    x, y = load_split("mnist", "train", data_root)
    assert d.num_classes == 10 and torch.equal(d.y_train, y[:300]) and len(d.y_test) == 10_000
    src = BatchSource(d.x_train, 64, torch.device("cpu"), torch.Generator().manual_seed(0),
                      y=d.y_train)  # fmt: skip
    perm = src.order()
    batch = src.batch(perm, 2)
    idx = perm[128:192]
    assert torch.equal(batch.x, x[idx]) and torch.equal(batch.y, y[idx])
    # gathered from the host (memory-mapped data): the same images and labels
    streamed = BatchSource(d.x_train, 64, torch.device("cpu"), torch.Generator(), stream=True,
                           y=d.y_train).batch(perm, 2)  # fmt: skip
    assert torch.equal(streamed.x, batch.x) and torch.equal(streamed.y, batch.y)
    # without labels, batches carry none
    plain = BatchSource(d.x_train, 64, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert plain.batch(perm, 2).y is None


def folder(root, classes: bool):
    """A folder of 12 grey 28x28 images, in two class subfolders or flat (no labels)."""
    rng = np.random.default_rng(0)
    for i in range(12):
        sub = root / ("ab"[i % 2] if classes else "") / f"{i}.png"
        sub.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(sub)
    return root


def test_a_conditional_model_on_data_without_labels_is_refused_in_one_line(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("VAEKIT_CACHE", str(tmp_path / "cache"))
    flat, two = folder(tmp_path / "flat", False), folder(tmp_path / "two", True)
    assert num_classes(f"folder:{flat}") == 0 and num_classes(f"folder:{two}") == 2
    d = load_training_data(f"folder:{flat}", (28, 28), 1, 0, 0)
    assert d.y_train is None and d.y_test is None
    args = ["train", "--preset", "mnist-cvae", "--epochs", "1", *TINY]
    assert main([*args, "--dataset", f"folder:{flat}", "--out", str(tmp_path / "r")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and "--conditional needs class labels" in err[0]  # no traceback
    assert not (tmp_path / "r").exists()
    # a folder with class subfolders trains, its classes counted from the data
    assert main([*args, "--dataset", f"folder:{two}", "--out", str(tmp_path / "r2")]) == 0
    assert vaekit.load(tmp_path / "r2").num_classes == 2


def grid_shape(path) -> tuple[int, int]:
    return np.asarray(Image.open(path)).shape[:2]


def cells(grid: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The 28x28 images of a grid with 2 px padding, (rows, cols) of them: an object array."""
    out = np.empty((rows, cols), dtype=object)
    for r in range(rows):
        for c in range(cols):
            out[r, c] = grid[2 + 30 * r : 30 + 30 * r, 2 + 30 * c : 30 + 30 * c].tobytes()
    return out


def test_sample_takes_a_label_or_all(tiny_cvae_run, tiny_run, tmp_path, capsys):
    one, rows = tmp_path / "seven.png", tmp_path / "all.png"
    assert main(["sample", str(tiny_cvae_run), "--label", "7", "--n", "16", "--out", str(one)]) == 0
    assert main(["sample", str(tiny_cvae_run), "--label", "all", "--n", "30", "--out",
                 str(rows)]) == 0  # fmt: skip
    assert grid_shape(one) == (4 * 30 + 2, 4 * 30 + 2)  # 4 x 4, 2 px padding
    assert grid_shape(rows) == (10 * 30 + 2, 3 * 30 + 2)  # a row per class, 30 // 10 each
    # row k holds the model's samples of class k, from the same codes in every row
    model = vaekit.load(tiny_cvae_run)
    got = cells(vaekit.sample(model, n=40, label="all"), 10, 4)  # 4 a row
    for k in (0, 4):
        assert np.array_equal(got[k], cells(vaekit.sample(model, n=4, label=k), 2, 2).ravel())
    assert not np.array_equal(got[0], got[1])
    capsys.readouterr()
    for run, label, msg in [
        (tiny_cvae_run, "10", "--label must be a class 0-9 or all, got '10'"),
        (tiny_cvae_run, "seven", "--label must be a class 0-9 or all, got 'seven'"),
        (tiny_run, "3", "--label 3: this vae model is not conditional"),
    ]:
        assert main(["sample", str(run), "--label", label, "--out", str(tmp_path / "x.png")]) == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_traverse_and_interpolate_take_a_label(tiny_cvae_run, tiny_run, tmp_path, capsys):
    run = str(tiny_cvae_run)
    for cmd in (["traverse", "--steps", "3"], ["interpolate", "--steps", "4"]):
        a, b, c = (tmp_path / f"{cmd[0]}-{k}.png" for k in "abc")
        assert main([cmd[0], run, *cmd[1:], "--label", "2", "--out", str(a)]) == 0
        assert main([cmd[0], run, *cmd[1:], "--label", "5", "--out", str(b)]) == 0
        assert main([cmd[0], run, *cmd[1:], "--out", str(c)]) == 0  # the image's own label
        assert not np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
        capsys.readouterr()
        assert main([cmd[0], str(tiny_run), "--label", "1", "--out", str(tmp_path / "x.png")]) == 2
        assert "not conditional" in capsys.readouterr().err
    # the test image's own label is the default: test image 0 of MNIST is a 7
    assert load_split("mnist", "test")[1][0] == 7
    same = tmp_path / "interpolate-7.png"
    assert main(["interpolate", run, "--steps", "4", "--label", "7", "--out", str(same)]) == 0
    want = np.asarray(Image.open(tmp_path / "interpolate-c.png"))
    assert np.array_equal(np.asarray(Image.open(same)), want)


def test_evaluate_gives_a_conditional_run_its_test_labels(tiny_cvae_run):
    res = vaekit.evaluate(tiny_cvae_run, limit=200, iw_samples=5, probe=False)
    assert res["conditional"] is True and res["num_images"] == 200
    assert np.isfinite(res["elbo"]) and res["nll_iw"] <= -res["elbo"] + 1.0
    # by hand: the ELBO given the test labels
    from vaekit.evaluation.bound import evaluate

    model = vaekit.load(tiny_cvae_run)
    x, y = load_split("mnist", "test")
    assert evaluate(model, x[:200], y=y[:200])["elbo"] == pytest.approx(res["elbo"])
    assert evaluate(model, x[:200], y=(y[:200] + 1) % 10)["elbo"] != pytest.approx(res["elbo"])


def test_onnx_decoder_of_a_conditional_model_takes_z_and_label(tiny_cvae_run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "decoder.onnx"
    assert main(["export", str(tiny_cvae_run), "--format", "onnx", "--out", str(out)]) == 0
    session = ort.InferenceSession(str(out))
    assert [i.name for i in session.get_inputs()] == ["z", "label"]
    model = vaekit.load(tiny_cvae_run)
    for n in (1, 5):
        z, y = torch.randn(n, model.top_dim), torch.arange(n) % 10
        got = session.run(None, {"z": z.numpy(), "label": y.numpy()})[0]
        np.testing.assert_allclose(got, model.decode(z, y=y).detach().numpy(), atol=1e-5)


class PerfectModel(torch.nn.Module):
    """A stand-in conditional model whose samples of class k are test images of class k: the
    label accuracy of its samples is the classifier's accuracy on those images."""

    conditional, num_classes = True, 10

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        super().__init__()
        self.x, self.y = x, y
        self.w = torch.nn.Parameter(torch.zeros(1))

    def sample(self, n, temperature=1.0, generator=None, labels=None):
        pool = self.x[self.y == labels]
        idx = torch.randint(len(pool), (n,), generator=generator)
        return pool[idx].float() / 255


def test_label_accuracy_is_the_classifiers_accuracy_on_the_samples(data_root):
    from sklearn.metrics import accuracy_score

    from vaekit.evaluation import classifier
    from vaekit.evaluation.quality import Features, class_quality

    x, y = load_split("mnist", "test", data_root)
    x_train, y_train = load_split("mnist", "train", data_root)
    net = classifier.train(x_train[:2000], y_train[:2000], 10)
    feats = Features(net.features)
    model = PerfectModel(x, y)
    res = class_quality(model, feats, net, x, y, per_class=50, seed=3, batch_size=20)
    # an independent reference: sklearn's accuracy of the same classifier on the same images
    want, per = [], []
    for k in range(10):
        g = torch.Generator().manual_seed(3)  # the samples of class k, drawn the same way
        xs = torch.cat([model.sample(20, generator=g, labels=k), model.sample(20, generator=g,
                        labels=k), model.sample(10, generator=g, labels=k)])  # fmt: skip
        pred = net((xs * 255).round().to(torch.uint8)).argmax(1).numpy()
        want += list(pred)
        per.append(accuracy_score(np.full(50, k), pred))
    labels = np.repeat(np.arange(10), 50)
    assert res["label_accuracy"] == pytest.approx(accuracy_score(labels, want))
    assert [r["label_accuracy"] for r in res["per_class"]] == pytest.approx(per)
    # and near the classifier's own accuracy on the test set (real images of the asked class)
    assert abs(res["label_accuracy"] - classifier.accuracy(net, x, y)) < 0.05
    assert [r["num_real"] for r in res["per_class"]] == torch.bincount(y).tolist()
    assert all(r["fid"] >= 0 for r in res["per_class"])


def test_metrics_of_a_conditional_run_record_label_accuracy_and_fid_per_class(
    tiny_cvae_run, tmp_path, monkeypatch
):
    monkeypatch.setenv("VAEKIT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "q.json"
    args = ["metrics", str(tiny_cvae_run), "--n", "200", "--per-class", "20"]
    assert main([*args, "--classifier-limit", "512", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert 0 <= res["label_accuracy"] <= 1 and res["samples_per_class"] == 20
    assert [r["label"] for r in res["per_class"]] == list(range(10))
    mean = sum(r["label_accuracy"] for r in res["per_class"]) / 10
    assert res["label_accuracy"] == pytest.approx(mean)


def test_the_explorer_decodes_a_conditional_model_given_the_picked_class(tiny_cvae_run, tiny_run):
    from vaekit.explorer import Explorer
    from vaekit.explorer.api import ApiError

    x, y = load_split("mnist", "test")
    model = vaekit.load(tiny_cvae_run)
    ex = Explorer(model, x[:200], y[:200], "mnist", log=lambda *a: None)
    info = ex.info()
    assert info["conditional"] is True and info["num_classes"] == 10
    z = [[0.5] * model.top_dim]
    three, four = ex.decode({"z": z, "label": 3}), ex.decode({"z": z, "label": 4})
    assert three["images"] != four["images"]
    assert ex.decode({"z": z})["images"] == ex.decode({"z": z, "label": 0})["images"]
    # a test image is encoded with its own label unless another is asked for
    own = ex.encode({"index": 0})
    assert own["label"] == own["decoded_label"] == int(y[0])
    mu, _ = model.encode(x[:1].float() / 255, y=y[:1])
    assert own["mu"] == pytest.approx(mu[0].tolist(), abs=1e-5)
    assert ex.encode({"index": 0, "label": 2})["decoded_label"] == 2
    with pytest.raises(ApiError, match="'label' must be an integer in \\[0, 9\\], got 10"):
        ex.sample({"n": 1, "label": 10})
    plain = Explorer(vaekit.load(tiny_run), x[:50], y[:50], "mnist", log=lambda *a: None)
    assert plain.info()["conditional"] is False
    with pytest.raises(ApiError, match="not conditional"):
        plain.decode({"z": [[0.0] * 4], "label": 1})


def test_encode_and_reconstruct_give_a_conditional_model_the_labels_score_refuses_it(
    tiny_cvae_run, tmp_path, capsys
):
    model = vaekit.load(tiny_cvae_run)
    x, y = load_split("mnist", "test")
    z = vaekit.encode(model, "mnist:test", precision="fp32")
    mu = model.encode(x[:5].float() / 255, y=y[:5])[0]
    np.testing.assert_allclose(z["mu"][:5], mu.detach().numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="a conditional model encodes images given their class"):
        vaekit.encode(model, x[:3])  # a tensor of images carries no labels
    out = tmp_path / "r.png"
    assert main(["reconstruct", str(tiny_cvae_run), "--n", "4", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["score", str(tiny_cvae_run), "--data", "mnist:test", "--out",
                 str(tmp_path / "s.csv")]) == 2  # fmt: skip
    assert "given its class" in capsys.readouterr().err
