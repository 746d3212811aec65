"""The vqvae family (EMA codebook, dead-code restarts, straight-through gradients), its gated
PixelCNN prior over code grids (causality, normalisation, sampling, fit and resume) and the
commands over a vqvae run (train, prior, sample, evaluate, encode) (issue 31)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

import vaekit
from tests.test_data import cifar_batch
from vaekit import checkpoint
from vaekit.cli import main
from vaekit.config import build_model_config, configs
from vaekit.evaluation.codes import codebook_usage
from vaekit.models import create_model
from vaekit.models.vqvae import EMACodebook
from vaekit.priors.fit import fit_prior
from vaekit.priors.pixelcnn import PixelCNN

SMALL = dict(family="vqvae", widths=(4, 8), res_blocks=1, codebook_size=8, code_dim=3)
SMALL_FLAGS = ["--widths", "4", "8", "--res-blocks", "1", "--codebook-size", "8",
               "--code-dim", "3", "--precision", "fp32"]  # fmt: skip


def tiny(**kw):
    torch.manual_seed(0)
    return create_model(build_model_config({**SMALL, **kw}))


def test_the_presets_are_vqvae_with_a_grid_of_codes():
    for name, grid in (("mnist-vqvae", (7, 7)), ("cifar10-vqvae", (8, 8))):
        m, o, _ = configs(name)
        if name.startswith("cifar"):
            m = build_model_config({**m.to_dict(), **m.net.__dict__, "net": None,
                                    "in_channels": 3, "image_size": (32, 32)})  # fmt: skip
        model = create_model(m)
        assert model.latent_shapes == [(m.net.code_dim, *grid)] and not model.has_kl
        assert not model.has_prior and m.net.commitment == 0.25 and o.objective == "elbo"


def test_a_size_the_stages_cannot_halve_is_refused_in_one_line():
    with pytest.raises(ValueError, match="divisible by 4, got \\(30, 30\\)"):
        build_model_config({**SMALL, "image_size": (30, 30)})


def test_the_nearest_code_is_cdists_argmin():
    q = EMACodebook(K=16, D=5, decay=0.9, dead_threshold=1.0)
    z = torch.randn(200, 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(q.nearest(z), torch.cdist(z, q.codebook).argmin(1))


def test_the_ema_update_follows_the_moving_averages_code_by_code():
    """Against a loop over the codes: N_k <- d N_k + (1 - d) n_k, m_k <- d m_k + (1 - d) sum
    of z assigned to k, e_k = m_k / (Laplace-smoothed N_k); no code below the threshold."""
    torch.manual_seed(0)
    K, D, d, eps = 4, 3, 0.8, 1e-5
    q = EMACodebook(K, D, d, dead_threshold=0.0, eps=eps)
    q.cluster_size.fill_(5.0)
    size0, sum0 = q.cluster_size.clone(), q.embed_sum.clone()
    z = torch.randn(50, D)
    k = q.nearest(z)
    q.remember(z, k)
    q.update()
    n = torch.tensor([float((k == j).sum()) for j in range(K)])
    sums = torch.stack([z[k == j].sum(0) for j in range(K)])
    size = d * size0 + (1 - d) * n
    m = d * sum0 + (1 - d) * sums
    smoothed = (size + eps) / (size.sum() + K * eps) * size.sum()
    torch.testing.assert_close(q.cluster_size, size)
    torch.testing.assert_close(q.embed_sum, m)
    torch.testing.assert_close(q.codebook, m / smoothed[:, None])


def test_dead_codes_restart_at_encoder_outputs_of_the_step():
    torch.manual_seed(0)
    q = EMACodebook(K=6, D=2, decay=0.99, dead_threshold=1.0)
    q.codebook.copy_(torch.tensor([[0.0, 0.0]] + [[100.0 + i, 100.0] for i in range(5)]))
    q.cluster_size.copy_(torch.tensor([50.0, 50.0, 0.5, 0.5, 0.5, 0.5]))  # codes 2..5 dead
    q.embed_sum.copy_(q.codebook * q.cluster_size[:, None])
    z = torch.randn(40, 2) * 0.1  # all nearest to code 0
    q.remember(z, q.nearest(z))
    q.update()
    for j in (2, 3, 4, 5):  # each is now one of the step's outputs
        assert (q.codebook[j] - z).abs().sum(1).min() < 1e-4
    assert q.cluster_size[1] > 1.0 and (q.codebook[1] - z).abs().sum(1).min() > 1.0  # kept


def test_a_skipped_step_leaves_the_codebook_and_an_accepted_one_moves_it():
    model = tiny()
    x = torch.rand(4, 1, 28, 28)
    before = {k: v.clone() for k, v in model.quantizer.state_dict().items()}
    model(x)
    model.after_step(False)
    assert all(torch.equal(v, model.quantizer.state_dict()[k]) for k, v in before.items())
    model(x)
    model.after_step(True)
    assert not torch.equal(before["cluster_size"], model.quantizer.cluster_size)
    with torch.no_grad():  # no step under way: nothing remembered, nothing to apply
        model(x)
    assert model.quantizer.pending is None


def test_gradients_pass_the_quantiser_straight_through():
    model = tiny()
    x = torch.rand(4, 1, 28, 28)
    out = model(x)
    z_e, z_q, k = model.quantize(x)
    torch.testing.assert_close(out["z"][0], z_q)  # the decoder sees the codes
    assert torch.equal(out["codes"], k)
    out["recon"].sum().backward()  # the reconstruction alone reaches the encoder
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    torch.testing.assert_close(  # beta ||z_e - sg(z_q)||^2 per image
        out["aux"]["commitment"], 0.25 * (z_e - z_q).pow(2).flatten(1).sum(1)
    )


def test_a_checkpoint_keeps_the_ema_codebook(tmp_path):
    model = tiny()
    for _ in range(3):
        model(torch.rand(8, 1, 28, 28))
        model.after_step(True)
    model.eval()
    ckpt = {"model": model.state_dict(), "model_config": model.cfg.to_dict(),
            "objective_config": {}}  # fmt: skip
    checkpoint.save(ckpt, tmp_path / "m.pt")
    again = checkpoint.build_model(checkpoint.load(tmp_path / "m.pt")).eval()
    for name in ("codebook", "cluster_size", "embed_sum"):
        assert torch.equal(getattr(again.quantizer, name), getattr(model.quantizer, name))
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(again.codes(x), model.codes(x))


def test_codebook_usage_is_the_perplexity_of_the_code_frequencies():
    k = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    u = codebook_usage(k, 8)
    assert math.isclose(u["perplexity"], 4.0) and u["codes_used"] == 4 and u["dead_codes"] == 4
    assert math.isclose(codebook_usage(torch.zeros(5, dtype=torch.long), 8)["perplexity"], 1.0)


# --- the PixelCNN prior -------------------------------------------------------------------------


def test_pixelcnn_logits_depend_only_on_earlier_positions_and_see_all_of_them():
    torch.manual_seed(0)
    p = PixelCNN(5, (4, 5), channels=6, layers=4)
    k = torch.randint(5, (1, 4, 5))
    x = p.embed(k).permute(0, 3, 1, 2).detach().requires_grad_(True)
    v = h = x
    for layer in p.gated:
        v, h = layer(v, h)
    out = p.head(h)
    for i, j in itertools.product(range(4), range(5)):
        (g,) = torch.autograd.grad(out[0, :, i, j].sum(), x, retain_graph=True)
        seen = g.abs().sum(1)[0].flatten() > 0
        assert torch.equal(seen, torch.arange(20) < i * 5 + j)  # exactly the earlier positions


def test_pixelcnn_probabilities_of_every_grid_sum_to_one():
    torch.manual_seed(0)
    p = PixelCNN(3, (2, 2), channels=4, layers=2)
    grids = torch.tensor(list(itertools.product(range(3), repeat=4))).view(-1, 2, 2)  # all 81
    total = p.log_prob(grids).double().exp().sum()
    assert math.isclose(total.item(), 1.0, rel_tol=1e-5)


def test_pixelcnn_sampling_is_seeded_and_cold_sampling_is_the_greedy_decoding():
    torch.manual_seed(0)
    p = PixelCNN(6, (3, 3), channels=8, layers=3).eval()
    a = p.sample(5, torch.Generator().manual_seed(1))
    assert torch.equal(a, p.sample(5, torch.Generator().manual_seed(1)))
    assert a.shape == (5, 3, 3) and a.dtype == torch.long and 0 <= a.min() and a.max() < 6
    cold = p.sample(2, torch.Generator().manual_seed(2), temperature=1e-4)
    greedy = torch.zeros(2, 3, 3, dtype=torch.long)
    for i, j in itertools.product(range(3), range(3)):  # the whole grid through the network
        greedy[:, i, j] = p.logits(greedy)[:, :, i, j].argmax(1)
    assert torch.equal(cold, greedy)


def test_fitting_the_prior_lowers_its_nll_and_a_resumed_fit_is_the_uninterrupted_one(tmp_path):
    codes = torch.randint(2, (256, 3, 3)) * 3  # codes 0 and 3 of 4: learnable
    test = codes[:64]

    def fit(folder, log=lambda s: None):
        torch.manual_seed(0)
        p = PixelCNN(4, (3, 3), channels=4, layers=2)
        spec = {"epochs": 3, "batch_size": 16, "lr": 1e-2, "seed": 0}
        return p, fit_prior(p, codes, folder, spec, test_codes=test, progress=log)

    def stop(line):  # a stop after the first epoch's checkpoint
        raise KeyboardInterrupt

    p_straight, straight = fit(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "b", stop)
    p_resumed, resumed = fit(tmp_path / "b")
    first, last = straight["history"][0]["test_nats"], straight["history"][-1]["test_nats"]
    assert last < first and last < 9 * math.log(4)  # learning, better than uniform codes
    for k, v in p_straight.state_dict().items():
        assert torch.equal(v, p_resumed.state_dict()[k]), k
    assert [r["train_nats"] for r in straight["history"]] == [
        r["train_nats"] for r in resumed["history"]
    ]


# --- commands over a vqvae run ------------------------------------------------------------------


@pytest.fixture(scope="module")
def vq_run(data_root, tmp_path_factory):
    """A small vqvae trained for one epoch on 512 real MNIST images, with a PixelCNN prior."""
    run = tmp_path_factory.mktemp("vq") / "run"
    args = ["train", "--family", "vqvae", *SMALL_FLAGS, "--limit", "512", "--epochs", "1"]
    assert main([*args, "--batch-size", "64", "--out", str(run), "--data-dir", str(data_root)]) == 0
    return run


def test_a_vqvae_run_logs_its_commitment_and_updates_its_codebook(vq_run):
    row = json.loads((vq_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["test_kl"] is None and row["test_commitment"] > 0
    assert math.isclose(row["test_loss"], row["test_recon"] + row["test_commitment"])
    q = checkpoint.load(vq_run / "last.pt")["model"]
    assert q["quantizer.cluster_size"].sum() > 0  # the moving averages ran (ModelState)


def test_prior_sample_evaluate_and_encode_a_vqvae_run(vq_run, tmp_path, capsys):
    run = str(vq_run)
    assert main(["evaluate", run, "--json", "--no-probe", "--limit", "200"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["codebook"]["codebook_size"] == 8 and 1 <= ev["codebook"]["perplexity"] <= 8
    assert "prior_bits_per_image" not in ev and set(ev["aux"]) == {"commitment"}
    flags = ["--kind", "pixelcnn", "--epochs", "1", "--channels", "4", "--layers", "2"]
    assert main(["prior", run, *flags, "--limit", "128"]) == 0
    assert (vq_run / "priors" / "pixelcnn.pt").is_file()
    assert main(["sample", run, "--n", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert "no prior" not in capsys.readouterr().err  # its own prior now: the fitted PixelCNN
    loaded = vaekit.load(vq_run)  # in Python too
    assert loaded.prior is not None and loaded.prior.options()["layers"] == 2
    assert (
        main(["sample", run, "--n", "4", "--prior", "pixelcnn", "--out", str(tmp_path / "t.png")])
        == 0
    )
    capsys.readouterr()
    assert main(["evaluate", run, "--json", "--no-probe", "--limit", "200"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert 0 < ev["prior_bits_per_image"] <= 49 * 3 * 1.5  # near or below uniform 49 log2(8)
    out = tmp_path / "codes.npz"
    assert main(["encode", run, "--data", "mnist:test", "--out", str(out)]) == 0
    arrays = np.load(out)
    assert arrays["codes"].shape == (10000, 7, 7) and arrays["mu"].shape == (10000, 3 * 49)
    with pytest.raises(SystemExit) as e:  # one line, argparse's
        main(["prior", run, "--kind", "transformer"])
    assert e.value.code == 2 and "invalid choice: 'transformer'" in capsys.readouterr().err


def test_a_pixelcnn_prior_for_a_model_without_codes_is_refused_in_one_line(tiny_run, capsys):
    assert main(["prior", str(tiny_run), "--kind", "pixelcnn", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress line
    assert err.startswith("vaekit prior: error:") and "the vae family has none" in err


def test_cifar10_vqvae_trains_on_cifar_format_data(tmp_path):
    """cifar10-vqvae (narrowed) on generated batches in the official CIFAR-10 layout."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(cifar_batch(rng, 8)[0])
    run = tmp_path / "run"
    small = "--widths 8 16 --codebook-size 16 --mixtures 2 --epochs 1 --batch-size 8"
    args = ["train", "--preset", "cifar10-vqvae", *small.split(), "--precision", "fp32"]
    assert main([*args, "--data-dir", str(tmp_path / "data"), "--out", str(run)]) == 0
    cfg = json.loads((run / "config.json").read_text())["model"]
    assert cfg["family"] == "vqvae" and cfg["in_channels"] == 3 and cfg["image_size"] == [32, 32]
    assert main(["reconstruct", str(run), "--n", "4", "--data-dir", str(tmp_path / "data")]) == 0
