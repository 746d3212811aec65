"""vaekit score: per-image likelihood, complexity and ratio scores; AUROC and friends."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import torch
from PIL import Image

from vaekit import checkpoint
from vaekit.cli import main
from vaekit.data import load_split
from vaekit.evaluation.bound import evaluate
from vaekit.evaluation.scores import nelbo_nats, ood_metrics, png_bits


def test_the_complexity_is_the_png_length():
    flat = torch.full((1, 1, 28, 28), 7, dtype=torch.uint8)
    noise = torch.randint(0, 256, (1, 1, 28, 28), dtype=torch.uint8)
    bits = png_bits(torch.cat([flat, noise]))
    buf = io.BytesIO()
    Image.fromarray(noise[0, 0].numpy()).save(buf, "PNG", compress_level=9)
    assert bits[1] == 8 * len(buf.getvalue())
    assert bits[0] < 1000 < 784 * 8 * 0.9 < bits[1]  # a constant image is short, noise is not


def test_ood_metrics_on_a_case_with_a_known_answer():
    m = ood_metrics(np.array([0.0, 1, 2, 3]), np.array([2.5, 4, 5]))
    assert math.isclose(m["auroc"], 11 / 12)  # 11 of the 12 (normal, anomalous) pairs ordered
    assert math.isclose(m["auprc"], (1 + 1 + 3 / 4) / 3)
    assert math.isclose(m["fpr_at_95_tpr"], 1 / 4)  # all 3 found at 2.5: one normal is above


def test_the_per_image_nll_is_the_models_own_elbo(tiny_run, data_root):
    model = checkpoint.build_model(checkpoint.load(tiny_run)).eval()
    x, _ = load_split("mnist", "test", data_root)
    x = x[:700]
    per_image = nelbo_nats(model, x)
    assert per_image.shape == (700,)
    assert math.isclose(per_image.mean(), -evaluate(model, x)["elbo"], rel_tol=1e-6)  # float32


def save_pngs(folder, arrays) -> None:
    folder.mkdir(parents=True)
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(folder / f"{i:02d}.png")


def test_score_noise_against_mnist_from_the_command_line(tiny_run, tmp_path, data_root, capsys):
    x, _ = load_split("mnist", "test", data_root)
    save_pngs(tmp_path / "normal", x[:20, 0].numpy())
    rng = np.random.default_rng(0)
    save_pngs(tmp_path / "noise", rng.integers(0, 256, (20, 28, 28), np.uint8))
    out = tmp_path / "s.csv"
    argv = ["score", str(tiny_run), "--data", f"folder:{tmp_path / 'noise'}", "--out", str(out)]
    assert main([*argv, "--in-dist", f"folder:{tmp_path / 'normal'}", "--iw-samples", "4"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 20 and rows[0]["path"].endswith("noise/00.png")
    for r in rows:
        nll, comp = float(r["nll"]), float(r["png_bits"])
        assert math.isclose(float(r["complexity"]), nll - comp, abs_tol=1e-3)
    m = json.loads((tmp_path / "s.metrics.json").read_text())
    assert m["nll"]["auroc"] > 0.9 and m["counts"] == {"normal": 20, "scored": 20}
    assert "AUROC" in capsys.readouterr().out


def test_a_model_without_a_likelihood_cannot_score(tmp_path, data_root, capsys):
    run = tmp_path / "ae"
    argv = ["train", "--preset", "mnist-ae", "--latent-dim", "4", "--channels", "8", "16"]
    argv += ["--limit", "128", "--epochs", "1", "--eval-every", "0", "--no-figures"]
    assert main([*argv, "--out", str(run), "--data-dir", str(data_root)]) == 0
    capsys.readouterr()
    assert main(["score", str(run), "--data", "mnist:test", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "no likelihood to score with" in err and err.count("\n") == 1


def test_bf16_scores_agree_with_fp32_within_half_a_percent(tiny_run, data_root):
    """score in bf16 (what precision auto picks where the CPU has it natively) computes in
    bf16, and its per-image nll agrees with fp32's within 0.5% (the score docstring's bound)."""
    from vaekit.evaluation.scores import score

    model = checkpoint.build_model(checkpoint.load(tiny_run)).eval()
    x = load_split("mnist", "test", data_root)[0][:300]
    a, b = score(model, x, precision="fp32"), score(model, x, precision="bf16")
    assert not np.array_equal(a["nll"], b["nll"])
    rel = np.abs(b["nll"] - a["nll"]) / a["nll"]
    assert rel.max() < 0.005, rel.max()
    np.testing.assert_array_equal(a["png_bits"], b["png_bits"])
