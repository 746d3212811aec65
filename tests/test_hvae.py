"""The hvae family end to end: the colour preset on generated 32x32x3 images, every command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit import checkpoint
from vaekit.cli import main
from vaekit.config import configs
from vaekit.data import load_split
from vaekit.explorer import Explorer

SMALL = ["--width", "8", "--z-channels", "2", "--groups", "1", "1", "1", "1", "--limit", "32",
         "--precision", "fp32"]  # fmt: skip


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def test_the_presets_are_hierarchical_with_a_group_at_every_resolution():
    for name, lik in (("mnist-hvae", "bernoulli"), ("cifar10-hvae", "logistic")):
        m, _, t = configs(name)
        assert m.family == "hvae" and m.likelihood == lik and len(m.net.resolutions) >= 3
        assert m.net.resolutions[0] == 1 and t.grad_clip > 0 and t.skip_spikes > 1


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory):
    """cifar10-hvae (narrowed) trained for one epoch on a folder of random 32x32 RGB images."""
    tmp = tmp_path_factory.mktemp("hvae")
    rng = np.random.default_rng(0)
    for i in range(80):
        folder = tmp / "imgs" / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), np.uint8)).save(folder / f"{i}.png")
    run = tmp / "run"
    args = ["train", "--preset", "cifar10-hvae", "--dataset", f"folder:{tmp / 'imgs'}"]
    assert main([*args, *SMALL, "--epochs", "1", "--batch-size", "8", "--out", str(run)]) == 0
    return run


def test_every_command_makes_images_of_the_right_size(colour_run, tmp_path, capsys):
    run = colour_run
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["family"] == "hvae" and cfg["model"]["net"]["groups"] == [1, 1, 1, 1]
    assert main(["sample", str(run), "--n", "4", "--temperature", "0.8"]) == 0
    assert png_size(run / "samples.png") == (2 * 34 + 2, 2 * 34 + 2)
    temps = ["--temperatures", "1", "0.5", "0.5", "0.5", "--out", str(tmp_path / "t.png")]
    assert main(["sample", str(run), "--n", "4", *temps]) == 0
    assert main(["sample", str(run), "--temperatures", "1", "0.5"]) == 2  # 4 groups: refused
    n_test = len(load_split(cfg["train"]["dataset"], "test", size=(32, 32), channels=3)[0])
    assert 2 <= n_test < 40
    assert main(["reconstruct", str(run), "--n", "40"]) == 0  # more than there are: a note
    assert f"the test set has {n_test} images; showing {n_test}" in capsys.readouterr().out
    assert main(["traverse", str(run), "--steps", "3"]) == 0
    assert png_size(run / "traverse.png") == (3 * 32, 3 * 32)
    assert main(["interpolate", str(run), "--a", "0", "--b", "1", "--steps", "4"]) == 0
    assert png_size(run / "interp.png") == (4 * 34 + 2, 36)
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(run), "--iw-samples", "3", "--out", str(out)]) == 0
    ev = json.loads(out.read_text())
    assert len(ev["kl_per_group"]) == 4 and min(ev["kl_per_group"]) >= 0
    assert abs(sum(ev["kl_per_group"]) - ev["kl"]) < 1e-6 * max(1.0, ev["kl"])
    assert len(ev["active_units_per_group"]) == 4
    assert ev["nll_iw"] <= -ev["elbo"] + 1.0 and np.isfinite(ev["bits_per_dim"])
    assert main(["export", str(run), "--format", "safetensors"]) == 0
    # the decoder of top-group codes (lower groups at their prior means) as ONNX, any batch
    ort = pytest.importorskip("onnxruntime")
    assert main(["export", str(run), "--format", "onnx"]) == 0
    model = checkpoint.build_model(checkpoint.load(run)).eval()
    z = torch.randn(3, model.top_dim)
    got = ort.InferenceSession(str(run / "decoder.onnx")).run(None, {"z": z.numpy()})[0]
    np.testing.assert_allclose(got, model.decode(z).detach().numpy(), atol=1e-5)


def test_resume_and_the_explorer(colour_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(colour_run, run)
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 2
    ckpt = checkpoint.load(run)
    model = checkpoint.build_model(ckpt).eval()
    x, y = load_split(ckpt["train_config"]["dataset"], "test", size=(32, 32), channels=3)
    e = Explorer(model, x, y, "folder")
    info = e.info()
    assert info["family"] == "hvae" and info["latent_dim"] == 2  # the top group: 2 x 1 x 1
    assert info["groups"] == 4 and len(info["kl_per_group"]) == 4 and "prior means" in info["note"]
    assert len(e.decode({"z": [[0.0, 1.0]]})["images"]) == 1
