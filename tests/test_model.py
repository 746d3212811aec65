import itertools
import math

import pytest
import torch
from torch import nn

from vaekit import VAE, ModelConfig
from vaekit.config import ObjectiveConfig, build_model_config
from vaekit.losses import kl_normal
from vaekit.objectives import ELBO

from .test_gradients import LAYOUTS, Branches


def mc(**values) -> ModelConfig:
    """A ModelConfig from flat values (the vae family's options among them)."""
    return build_model_config(values)


def test_seed_preset_parameter_count_matches_the_seed():
    m = VAE.from_preset("seed")
    assert m.num_params() == 387_554
    assert sum(p.numel() for p in m.encoder.parameters()) == 246_144
    assert sum(p.numel() for p in m.decoder.parameters()) == 141_410


def test_seed_preset_layer_sequence():
    m = VAE.from_preset("seed")
    enc = [type(l).__name__ for l in m.encoder]
    assert enc == ["Conv2d", "InstanceNorm2d", "ReLU"] + ["SeedResBlock"] * 3 + ["Conv2d"]
    stem, head = m.encoder[0], m.encoder[-1]
    assert (stem.in_channels, stem.out_channels, stem.kernel_size, stem.bias) == (
        1,
        64,
        (4, 4),
        None,
    )
    assert (head.out_channels, head.kernel_size, head.padding) == (40, (3, 3), (0, 0))
    block = m.encoder[3]
    assert [type(l).__name__ for l in block.children()] == [
        "Conv2d",
        "InstanceNorm2d",
        "Conv2d",
        "InstanceNorm2d",
        "MaxPool2d",
    ]
    dec = [type(l).__name__ for l in m.decoder]
    assert dec == [
        "Sequential",
        "Upsample",
        "Sequential",
        "Sequential",
        "Sequential",
        "Upsample",
        "Sequential",
        "ConvTranspose2d",
        "BatchNorm2d",
    ]
    tblock = m.decoder[0]
    assert [type(l).__name__ for l in tblock] == ["ConvTranspose2d", "BatchNorm2d", "ReLU"]
    assert all(
        l.bias is None for l in m.modules() if isinstance(l, (nn.Conv2d, nn.ConvTranspose2d))
    )


def test_seed_intermediate_shapes():
    m = VAE.from_preset("seed").eval()
    h = torch.rand(2, 1, 28, 28)
    shapes = []
    for layer in m.encoder:
        h = layer(h)
        shapes.append(tuple(h.shape[1:]))
    assert shapes[3:] == [(64, 14, 14), (64, 7, 7), (64, 3, 3), (40, 1, 1)]
    h = torch.randn(2, 20, 1, 1)
    shapes = []
    for layer in m.decoder:
        h = layer(h)
        shapes.append(tuple(h.shape[2:]))
    assert shapes == [
        (3, 3),
        (6, 6),
        (8, 8),
        (10, 10),
        (12, 12),
        (24, 24),
        (26, 26),
        (28, 28),
        (28, 28),
    ]


def test_seed_refuses_other_image_sizes():
    with pytest.raises(ValueError, match="28x28x1"):
        mc(arch="seed", image_size=(32, 32))


@pytest.mark.parametrize("size,ch", [((28, 28), 1), ((32, 32), 3), ((40, 24), 1)])
def test_resnet_shapes_follow_the_config(size, ch):
    cfg = mc(image_size=size, in_channels=ch, latent_dim=5, channels=(8, 16, 16))
    m = VAE(cfg)
    x = torch.rand(3, ch, *size)
    mu, logvar = m.encode(x)
    assert mu.shape == logvar.shape == (3, 5)
    out = m(x)
    assert out["recon"].shape == (3,) and [k.shape for k in out["kl"]] == [(3, 5)]
    assert m.decode(mu).shape == x.shape
    assert m.reconstruct(x).shape == x.shape
    assert m.sample(4).shape == (4, ch, *size)


def test_public_api_images_are_in_unit_range():
    m = VAE.from_preset("mnist", latent_dim=4)
    img = m.sample(16, temperature=3.0)
    assert img.min() >= 0 and img.max() <= 1


def test_from_preset_applies_overrides_and_rejects_bad_values():
    assert VAE.from_preset("mnist", latent_dim=7).cfg.net.latent_dim == 7
    with pytest.raises(ValueError, match="latent_dim"):
        VAE.from_preset("mnist", latent_dim=0)
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        VAE.from_preset("nope")
    with pytest.raises(ValueError, match="unknown config field 'latentdim'"):
        VAE.from_preset("mnist", latentdim=3)


def test_kl_matches_torch_distributions():
    torch.manual_seed(0)
    mu, logvar = torch.randn(50, 8) * 2, torch.randn(50, 8)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = torch.distributions.kl_divergence(q, p)
    torch.testing.assert_close(kl_normal(mu, logvar), expected, rtol=1e-5, atol=1e-5)


def test_loss_is_recon_plus_beta_kl_with_the_seed_objective():
    torch.manual_seed(0)
    m = VAE.from_preset("seed").eval()
    x = torch.rand(4, 1, 28, 28)
    torch.manual_seed(1)
    terms = ELBO(ObjectiveConfig(beta=0.5))(m, x, step=0)
    torch.testing.assert_close(terms["per_image"], terms["recon"] + 0.5 * terms["kl"])
    torch.manual_seed(1)
    out = m(x)
    # recon is the summed squared error in z-scored units, at the z the model sampled
    x_net = (x - 0.1307) / 0.3081
    x_hat = m.decoder_output(out["z"][0])
    torch.testing.assert_close(out["recon"], (x_hat - x_net).pow(2).sum((1, 2, 3)))
    # the seed's KL: -0.5 * sum(1 + logvar - mu^2 - exp(logvar))
    mu, lv = out["mu"], out["logvar"]
    torch.testing.assert_close(terms["kl"], -0.5 * (1 + lv - mu.pow(2) - lv.exp()).sum(1))


def test_reparameterize_has_the_right_moments_and_gradients():
    torch.manual_seed(0)
    mu = torch.full((200_000, 1), 1.5, requires_grad=True)
    logvar = torch.full((200_000, 1), 2 * torch.log(torch.tensor(0.5)).item(), requires_grad=True)
    z = VAE.reparameterize(mu, logvar)
    assert abs(z.mean().item() - 1.5) < 0.01
    assert abs(z.std().item() - 0.5) < 0.01
    z.sum().backward()
    assert torch.allclose(mu.grad, torch.ones_like(mu))  # dz/dmu = 1
    assert logvar.grad.abs().sum() > 0


LIKELIHOODS = ["gaussian", "gaussian-global", "gaussian-pixel", "bernoulli", "logistic"]


@pytest.mark.parametrize("arch", ["seed", "resnet"])
@pytest.mark.parametrize("lik", LIKELIHOODS)
def test_each_likelihood_sets_the_decoder_channels_and_keeps_the_interface(arch, lik):
    torch.manual_seed(0)
    cfg = mc(arch=arch, likelihood=lik, mixtures=3, latent_dim=4, channels=(8, 8))
    m = VAE(cfg)
    want = 3 * (1 + 2 * 1) if lik == "logistic" else 1
    last = m.decoder[-2] if arch == "seed" else m.decoder.out
    assert last.out_channels == want == m.likelihood.channels(cfg)
    if arch == "seed":
        assert m.decoder[-1].num_features == want
    x = torch.rand(3, 1, 28, 28)
    if lik == "bernoulli":
        x = torch.bernoulli(x)
    out = m(x)
    assert out["recon"].shape == (3,) and out["kl"][0].shape == (3, 4)
    assert torch.isfinite(out["recon"]).all()
    assert m.decoder_output(out["z"][0]).shape == (3, want, 28, 28)
    for img in (m.decode(out["mu"]), m.reconstruct(x), m.sample(2)):
        assert img.shape[1:] == (1, 28, 28) and img.min() >= 0 and img.max() <= 1
    assert m.log_px(x, out["z"][0]).shape == (3,)


def test_learned_gaussian_variance_is_a_parameter_of_the_right_shape():
    assert VAE(ModelConfig(likelihood="gaussian-global")).likelihood.logvar.shape == ()
    assert VAE(ModelConfig(likelihood="gaussian-pixel")).likelihood.logvar.shape == (1, 28, 28)
    assert not hasattr(VAE(ModelConfig()).likelihood, "logvar")


def test_seed_network_keeps_its_size_only_with_the_gaussian_likelihood():
    assert VAE.from_preset("seed", likelihood="gaussian").num_params() == 387_554
    assert VAE.from_preset("seed", likelihood="logistic", mixtures=2).num_params() > 387_554


@pytest.mark.parametrize("bad,match", [(dict(likelihood="nope"), "likelihood must be one of")])
def test_bad_likelihood_options_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**bad)
    with pytest.raises(ValueError, match="mixtures must be an integer >= 1, got 0"):
        ModelConfig(likelihood="logistic", mixtures=0)


@pytest.mark.parametrize("lik", ["gaussian", "gaussian-global", "gaussian-pixel"])
def test_gaussian_nats_are_the_pixel_unit_density_plus_the_1_over_255_bins(lik):
    torch.manual_seed(0)
    m = VAE(mc(likelihood=lik, latent_dim=3, channels=(8, 8)))
    if lik != "gaussian":
        with torch.no_grad():
            m.likelihood.logvar.normal_()
    x, z = torch.rand(5, 1, 28, 28), torch.randn(5, 3)
    mean, std = m.cfg.mean, m.cfg.std
    h = m.decoder_output(z)
    var_net = torch.tensor(0.5) if lik == "gaussian" else m.likelihood.logvar.exp()
    p = torch.distributions.Normal(h * std + mean, var_net.sqrt() * std)  # pixel units
    want = p.log_prob(x).sum((1, 2, 3)) - 784 * math.log(255)
    torch.testing.assert_close(m.log_px(x, z), want, rtol=1e-5, atol=1e-2)


def test_gaussian_nats_match_the_exact_mass_of_1_over_255_bins():
    # x = k / 255 and a wide Gaussian: the density at the bin centre times 1/255 is its mass
    m = VAE(mc(likelihood="gaussian-global", latent_dim=2, channels=(8, 8)))
    with torch.no_grad():
        m.likelihood.logvar.fill_(-1.0)
    z = torch.randn(2, 2)
    x = torch.randint(0, 256, (2, 1, 28, 28)).float() / 255
    h = m.decoder_output(z).double()
    p = torch.distributions.Normal(h * m.cfg.std + m.cfg.mean, math.exp(-0.5) * m.cfg.std)
    xd = x.double()
    mass = p.cdf(xd + 0.5 / 255) - p.cdf(xd - 0.5 / 255)
    # within 0.5 nats per image of 784 pixels (the midpoint rule); ln 256 would be 3.1 nats off
    torch.testing.assert_close(m.log_px(x, z).double(), mass.log().sum((1, 2, 3)), atol=0.5, rtol=0)


def test_bernoulli_and_logistic_nats_are_their_recon_terms():
    torch.manual_seed(0)
    for lik in ("bernoulli", "logistic"):
        m = VAE(mc(likelihood=lik, latent_dim=3, channels=(8, 8))).eval()
        x = torch.bernoulli(torch.rand(4, 1, 28, 28))
        torch.manual_seed(1)
        out = m(x)
        torch.testing.assert_close(m.log_px(x, out["z"][0]), -out["recon"])


def test_the_seed_instance_norm_computes_torchs_and_loads_its_checkpoints():
    """The seed network's InstanceNorm2d runs group_norm where that is accurate (faster, issue
    18): from a state dict of the network built with torch's nn.InstanceNorm2d (vaekit <= 0.2),
    the same loss and gradients up to float32 rounding, in training and evaluation, in both
    memory layouts. Float32 rounding, not bit-identity: each gradient within 1e-4 of its largest
    element, along the same ReLU and max-pool branches (Branches: a ReLU input within rounding
    of 0 otherwise flips on some CPUs, issue 28)."""
    torch.manual_seed(0)
    old, new = VAE.from_preset("seed"), VAE.from_preset("seed")
    swapped = 0
    for module in list(old.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.InstanceNorm2d):
                assert type(child) is not nn.InstanceNorm2d
                setattr(module, name, nn.InstanceNorm2d(child.num_features, affine=True))
                swapped += 1
    assert swapped == 7
    with torch.no_grad():  # affine parameters away from their (1, 0) start
        for name, p in old.named_parameters():
            if "norm" in name or name.startswith("encoder.1."):
                p.add_(0.3 * torch.randn_like(p))
    new.load_state_dict(old.state_dict())  # strict: the same names and shapes
    x, eps = torch.rand(16, 1, 28, 28), [torch.randn(16, 20)]
    for layout, train in itertools.product(LAYOUTS.values(), (True, False)):
        losses, branches = [], Branches()
        for m in (old, new):
            m.to(memory_format=layout).train(train)
            m.zero_grad()
            with branches:
                out = m(x.contiguous(memory_format=layout), eps)
            loss = (out["recon"] + out["kl"][0].sum(1)).mean()
            loss.backward()
            losses.append(loss)
            branches = branches.replay()
        torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=0)
        for (name, a), b in zip(old.named_parameters(), new.parameters(), strict=True):
            tol = 1e-4 * a.grad.abs().max().item()
            torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=tol, msg=name)
