"""The whole path from images to every command's output on a small synthetic digit folder: the
fast tier's end-to-end check, which needs no real data (tests marked real_data repeat it on
MNIST). Ten class folders of 28x28 strokes, one epoch of a tiny model, then each command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import vaekit
from vaekit.cli import main

TINY = ["--channels", "8", "16", "--latent-dim", "4", "--batch-size", "32", "--precision", "fp32"]


def digit(label: int, rng: np.random.Generator) -> Image.Image:
    """A white stroke on black whose shape depends on the label: a line at 18 label degrees."""
    img = Image.new("L", (28, 28))
    angle = np.deg2rad(18 * label) + rng.normal(0, 0.1)
    c, r = 14 + rng.normal(0, 1.5, 2), 9 + rng.normal(0, 1)
    d = np.array([np.cos(angle), np.sin(angle)]) * r
    ImageDraw.Draw(img).line([tuple(c - d), tuple(c + d)], fill=255, width=3)
    return img


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple:
    """(the image folder, a run trained on it for one epoch)."""
    root = tmp_path_factory.mktemp("synthetic")
    rng = np.random.default_rng(0)
    for label in range(10):
        (root / "digits" / str(label)).mkdir(parents=True)
        for i in range(40):
            digit(label, rng).save(root / "digits" / str(label) / f"{i}.png")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VAEKIT_CACHE", str(root / "cache"))
        run = root / "run"
        argv = ["train", "--dataset", f"folder:{root / 'digits'}", "--image-size", "28"]
        assert main([*argv, "--epochs", "1", "--out", str(run), *TINY]) == 0
        yield root / "digits", run


def test_train_writes_a_run_whose_loss_is_finite(synthetic):
    _, run = synthetic
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1] and np.isfinite(rows[0]["test_loss"])
    assert (run / "last.pt").is_file() and (run / "config.json").is_file()


def test_every_picture_command_writes_its_png(synthetic, tmp_path, monkeypatch):
    folder, run = synthetic
    monkeypatch.setenv("VAEKIT_CACHE", str(folder.parent / "cache"))
    for argv in (["sample", "--n", "16"], ["reconstruct", "--n", "8"], ["traverse"],
                 ["interpolate", "--a", "0", "--b", "1"]):  # fmt: skip
        out = tmp_path / f"{argv[0]}.png"
        assert main([argv[0], str(run), *argv[1:], "--out", str(out)]) == 0
        assert Image.open(out).size[0] > 28


def test_evaluate_encode_score_and_export_agree_with_the_python_api(synthetic, tmp_path, capsys,
                                                                    monkeypatch):  # fmt: skip
    folder, run = synthetic
    monkeypatch.setenv("VAEKIT_CACHE", str(folder.parent / "cache"))
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json", "--no-probe"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert np.isfinite(printed["test_loss"]) and printed["test_loss"] > 0
    z = vaekit.encode(run, f"folder:{folder}")
    assert z["mu"].shape == (400, 4) and np.isfinite(z["mu"]).all()
    assert main(["score", str(run), "--data", f"folder:{folder / '3'}", "--out",
                 str(tmp_path / "s.csv")]) == 0  # fmt: skip
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 1 + 40
    path = vaekit.export(run, format="safetensors", out=tmp_path / "m.safetensors")
    exported, trained = vaekit.load(path).state_dict(), vaekit.load(run).state_dict()
    assert exported.keys() == trained.keys()
    assert all(torch.equal(exported[k], trained[k]) for k in trained)
