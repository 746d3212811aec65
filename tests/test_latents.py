"""vaekit encode: any images in (a dataset split, a folder or zip, files), latents out."""

from __future__ import annotations

import csv
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit import checkpoint
from vaekit.cli import main
from vaekit.data import load_split, to_float


def save_png(path, arr) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


@pytest.fixture
def model(tiny_run):
    return checkpoint.build_model(checkpoint.load(tiny_run)).eval()


def test_a_dataset_split_in_order_with_its_labels(tiny_run, tmp_path, model, data_root):
    out = tmp_path / "z.npz"
    args = ["encode", str(tiny_run), "--data", "mnist:test", "--out", str(out)]
    assert main([*args, "--precision", "fp32"]) == 0
    z = np.load(out)
    x, y = load_split("mnist", "test", data_root)
    assert z["mu"].shape == z["logvar"].shape == (10000, 4) and "paths" not in z
    assert np.array_equal(z["labels"], y.numpy())
    with torch.no_grad():
        mu, logvar = model.encode(to_float(x[:50]))
    np.testing.assert_allclose(z["mu"][:50], mu.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(z["logvar"][:50], logvar.numpy(), rtol=1e-5, atol=1e-5)


def test_a_folder_zip_and_files_keep_order_paths_and_class_labels(tiny_run, tmp_path, capsys):
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    for name in ("b/2.png", "a/1.png", "a/0.png", "b/3.png"):
        save_png(root / name, rng.integers(0, 256, (40, 40), np.uint8))
    (root / "b" / "4.png").write_bytes(b"not a png")  # unreadable: left out with a note
    out = tmp_path / "z.npz"
    assert main(["encode", str(tiny_run), "--data", f"folder:{root}", "--out", str(out)]) == 0
    assert "1 of 5 files could not be read" in capsys.readouterr().err
    z = np.load(out)
    names = ["a/0.png", "a/1.png", "b/2.png", "b/3.png"]
    assert list(z["paths"]) == [str(root / n) for n in names] and list(z["labels"]) == [0, 0, 1, 1]
    with zipfile.ZipFile(tmp_path / "imgs.zip", "w") as zf:
        for n in names:
            zf.write(root / n, n)
    out2 = tmp_path / "zip.npz"
    zdata = f"folder:{tmp_path / 'imgs.zip'}"
    assert main(["encode", str(tiny_run), "--data", zdata, "--out", str(out2)]) == 0
    np.testing.assert_array_equal(np.load(out2)["mu"], z["mu"])  # the same images, the same order
    files = [str(root / "b/3.png"), str(root / "a/0.png")]
    out3 = tmp_path / "f.csv"
    assert main(["encode", str(tiny_run), "--data", *files, "--out", str(out3)]) == 0
    rows = list(csv.reader(out3.open()))
    assert rows[0][:4] == ["path", "label", "mu_0", "mu_1"] and len(rows) == 3
    assert [r[0] for r in rows[1:]] == files and rows[1][1] == ""
    np.testing.assert_allclose([float(v) for v in rows[2][2:6]], z["mu"][0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "data,expect",
    [
        (["folder:{tmp}/empty"], "no images found"),
        (["folder:{tmp}/nope"], "no such folder"),
        (["{tmp}/nope.png"], "no such image file"),
        (["mnist:validation"], "no split 'validation'"),
    ],
)
def test_bad_data_is_a_one_line_error(tiny_run, tmp_path, capsys, data, expect):
    (tmp_path / "empty").mkdir()
    spec = [d.format(tmp=tmp_path) for d in data]
    assert main(["encode", str(tiny_run), "--data", *spec, "--out", str(tmp_path / "z.npz")]) == 2
    err = capsys.readouterr().err
    assert expect in err and err.count("\n") == 1


def test_the_python_api_takes_tensors_and_specs(model, data_root, monkeypatch):
    import vaekit

    monkeypatch.setenv("VAEKIT_DATA", str(data_root))
    x, _ = load_split("mnist", "test", data_root)
    a = vaekit.encode(model, x[:20], precision="fp32")
    b = vaekit.encode(model, to_float(x[:20]), precision="fp32")  # floats in [0, 1]: the same
    c = vaekit.encode(model, "mnist:test", batch_size=7, precision="fp32")
    np.testing.assert_array_equal(a["mu"], b["mu"])
    np.testing.assert_allclose(c["mu"][:20], a["mu"], rtol=1e-5, atol=1e-6)
    assert len(c["mu"]) == 10000 and c["labels"].shape == (10000,)


def test_bf16_latents_agree_with_fp32_within_2_percent_of_their_spread(model, data_root):
    """encode in bf16 (autocast; what precision auto picks where the CPU has it natively)
    computes in bf16, not fp32, and its means agree with fp32's to within 2% of each latent's
    spread across images (the tolerance the encode docstring states)."""
    import vaekit

    x = load_split("mnist", "test", data_root)[0][:500]
    a = vaekit.encode(model, x, precision="fp32")
    b = vaekit.encode(model, x, precision="bf16")
    assert b["mu"].dtype == np.float32 and not np.array_equal(a["mu"], b["mu"])
    err = np.abs(b["mu"] - a["mu"]) / a["mu"].std(0)  # (N, D), in units of each dim's spread
    assert err.mean() < 0.02 and err.max() < 0.1, (err.mean(), err.max())
    assert np.abs(b["logvar"] - a["logvar"]).max() < 0.1


@pytest.mark.parametrize("native", [False, True])
def test_precision_auto_is_bf16_only_where_native(model, data_root, monkeypatch, native):
    import vaekit
    from vaekit.runtime import precision

    monkeypatch.setattr(precision, "native_bf16", lambda device: (native, "test"))
    x = load_split("mnist", "test", data_root)[0][:50]
    auto = vaekit.encode(model, x)["mu"]
    want = vaekit.encode(model, x, precision="bf16" if native else "fp32")["mu"]
    np.testing.assert_array_equal(auto, want)


def test_an_unknown_precision_is_a_one_line_error(tiny_run, tmp_path, capsys):
    args = ["encode", str(tiny_run), "--data", "mnist:test", "--out", str(tmp_path / "z.npz")]
    with pytest.raises(SystemExit) as e:
        main([*args, "--precision", "fp16"])
    assert e.value.code == 2 and "invalid choice: 'fp16'" in capsys.readouterr().err
