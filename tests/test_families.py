"""The contract every registered model family keeps, with every objective and likelihood (as
timm tests every model in list_models()), and train_step driven with plain tensors."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from vaekit import checkpoint
from vaekit.config import (
    FAMILIES,
    LIKELIHOODS,
    OBJECTIVES,
    ObjectiveConfig,
    build_model_config,
    field_names,
)
from vaekit.evaluation.bound import evaluate
from vaekit.losses import iw_bound, log_normal, log_std_normal
from vaekit.models import create_model, list_models
from vaekit.models.base import with_labels
from vaekit.models.hvae import soft_clamp
from vaekit.objectives import create_objective
from vaekit.training import TrainModule, train_step

# Variants of a family's options the contract runs over: a CVAE given labels (families whose
# options take `conditional`), and the vae's learned prior and flow posterior.
VARIANTS = {
    "": {},
    "cond": dict(conditional=True),
    "vamp": dict(prior="vamp", pseudo_inputs=5),
    "iaf": dict(posterior="iaf", flow_steps=2, flow_hidden=16),
}
CONDITIONAL = [f for f in list_models() if "conditional" in field_names(FAMILIES[f].options)]
FAMILY_VARIANTS = [(f, "") for f in list_models()] + [(f, "cond") for f in CONDITIONAL]
FAMILY_VARIANTS += [("vae", "vamp"), ("vae", "iaf"), ("vae", "iaf+cond"), ("vae", "vamp+iaf")]
CASES = [(f, v, o, lik) for (f, v), o, lik in
         itertools.product(FAMILY_VARIANTS, OBJECTIVES, LIKELIHOODS)]  # fmt: skip


# Small options for each family (a family not listed here is tested with its defaults).
TINY = {
    "vae": dict(latent_dim=3, channels=(8, 8)),
    "ae": dict(latent_dim=3, channels=(8, 8)),
    "hvae": dict(width=8, z_channels=2, resolutions=(1, 7, 14), groups=(1, 2, 1), enc_blocks=1),
    "vqvae": dict(widths=(4, 8), res_blocks=1, codebook_size=8, code_dim=3),
}


def tiny(family: str, likelihood: str, variant: str = "", **kw):
    """A small model of a family; variant: "" or names in VARIANTS joined by "+"."""
    torch.manual_seed(0)
    options = {k: v for name in variant.split("+") for k, v in VARIANTS[name].items()}
    values = dict(family=family, likelihood=likelihood, mixtures=2, **TINY.get(family, {}),
                  **options, **kw)  # fmt: skip
    return create_model(build_model_config(values))


def images(likelihood: str, n: int = 4, seed: int = 1) -> torch.Tensor:
    x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    return torch.bernoulli(x) if likelihood == "bernoulli" else (x * 255).round() / 255


def test_every_model_class_is_registered_and_every_registration_builds_its_class():
    """A family's model class that no FAMILIES entry names would escape the contract test;
    an entry whose class does not build, or builds another family, would break create_model."""
    import importlib
    import inspect
    import pkgutil

    import vaekit.models
    from vaekit.config import resolve
    from vaekit.models import LatentModel

    classes = {  # every concrete LatentModel defined in vaekit/models/
        f"{cls.__module__}:{cls.__qualname__}"
        for info in pkgutil.iter_modules(vaekit.models.__path__)
        for _, cls in inspect.getmembers(importlib.import_module(f"vaekit.models.{info.name}"))
        if inspect.isclass(cls) and issubclass(cls, LatentModel) and cls is not LatentModel
        and cls.__module__.startswith("vaekit.models.") and not inspect.isabstract(cls)
        and cls.__module__ != "vaekit.models.fitted"  # WithPrior wraps a family's model
    }  # fmt: skip
    wrappers = {"vaekit.models.fitted:WithPrior"}  # any family's model under a fitted prior
    assert classes - wrappers == {f.model for f in FAMILIES.values()}
    for name in list_models():
        model = tiny(name, "bernoulli")
        assert type(model) is resolve(FAMILIES[name].model) and model.cfg.family == name


def labels_for(conditional: bool, n: int = 4) -> torch.Tensor | None:
    """Class labels (n,) for a conditional tiny model (10 classes), None otherwise."""
    return torch.tensor([3, 0, 9, 3, 5, 1, 7, 2][:n]) if conditional else None


@pytest.mark.parametrize("family,variant,objective,likelihood", CASES)
def test_contract(family, variant, objective, likelihood, tmp_path):
    model = tiny(family, likelihood, variant)
    conditional = "cond" in variant
    assert model.conditional == conditional
    estimated = model.monte_carlo_kl  # a one-sample KL (B, 1): any sign
    obj = create_objective(ObjectiveConfig(objective=objective, iw_k=3))
    x, y = images(likelihood), labels_for(conditional)
    kw = with_labels(y)
    if objective == "iwae" and not model.has_kl:  # no posterior density: refused in one line
        with pytest.raises(ValueError, match="needs a model with a posterior density"):
            obj.check(model)
        return
    obj.check(model)
    # forward: shapes and finiteness of every term
    out = model(x, **kw)
    assert out["recon"].shape == (4,) and torch.isfinite(out["recon"]).all()
    assert [tuple(z.shape[1:]) for z in out["z"]] == model.latent_shapes
    assert len(out["kl"]) == (len(model.latent_shapes) if model.has_kl else 0)
    assert all(k.shape[0] == 4 and torch.isfinite(k).all() for k in out["kl"])
    assert estimated or all((k >= 0).all() for k in out["kl"])
    assert not estimated or [k.shape for k in out["kl"]] == [(4, 1)]
    aux = out.get("aux", {})  # extra named loss terms: (B,) or scalars, finite
    assert all(v.shape in ((4,), ()) and torch.isfinite(v).all() for v in aux.values())
    if family == "vqvae":
        assert set(aux) == {"commitment"} and (aux["commitment"] > 0).all()
    # one training step: finite loss, gradient and an update
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    eps = model.noise(4, obj.samples)
    res = train_step(TrainModule(model, obj), list(model.parameters()), opt, x, 0, eps=eps, y=y)
    assert bool(res["ok"]) and math.isfinite(res["loss"].item()) and res["gnorm"] > 0
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    # images out: shapes and range
    model.eval()
    drawn = model.sample(3, generator=torch.Generator().manual_seed(0))
    samples = [drawn] + ([model.sample(3, labels=7)] if conditional else [])
    pictures = [model.reconstruct(x, **kw), model.decode(model.encode(x, **kw)[0], **kw)]
    for img in samples + pictures:
        assert img.shape[1:] == (1, 28, 28) and img.min() >= 0 and img.max() <= 1
    # a checkpoint round trip gives identical outputs
    checkpoint.save({"model": model.state_dict(), "model_config": model.cfg.to_dict(),
                     "objective_config": obj.cfg.to_dict()}, tmp_path / "m.pt")  # fmt: skip
    again = checkpoint.build_model(checkpoint.load(tmp_path / "m.pt")).eval()
    z, y2 = torch.randn(2, model.top_dim), labels_for(conditional, 2)
    assert again.conditional == conditional
    assert torch.equal(again.decode(z, **with_labels(y2)), model.decode(z, **with_labels(y2)))
    assert torch.equal(again.encode(x, **kw)[0], model.encode(x, **kw)[0])
    assert torch.equal(again.sample(3, generator=torch.Generator().manual_seed(0)), drawn)
    # the test figures: an autoencoder's KL is absent and reported as such
    ev = evaluate(model, (x * 255).to(torch.uint8), y=y)
    if model.has_kl:
        assert estimated or ev["kl"] > 0
        assert math.isclose(ev["test_loss"], ev["recon"] + ev["kl"], rel_tol=1e-9)
        assert math.isclose(sum(ev["kl_per_group"]), ev["kl"], rel_tol=1e-9)
    else:
        assert ev["kl"] is None and ev["elbo"] is None
    # a model's auxiliary terms are reported by name and are part of the test loss
    assert set(ev.get("aux", {})) == set(aux)
    kl = ev["kl"] or 0.0
    assert math.isclose(ev["test_loss"], ev["recon"] + kl + sum(ev.get("aux", {}).values()),
                        rel_tol=1e-9)  # fmt: skip


@pytest.mark.parametrize(
    "family,variant", [(f, v) for f, v in FAMILY_VARIANTS if tiny(f, "bernoulli").has_kl]
)
def test_importance_weighted_bound_is_at_least_the_elbo_on_average(family, variant):
    model = tiny(family, "bernoulli", variant).eval()
    x, kw = images("bernoulli", n=8), with_labels(labels_for("cond" in variant, 8))
    with torch.no_grad():
        gap = []
        for seed in range(20):
            log_w = model.log_weights(x, 10, torch.Generator().manual_seed(seed), **kw)  # (10, 8)
            gap.append(iw_bound(log_w) - log_w.mean(0))  # IW bound - mean of 10 ELBO estimates
    assert (torch.stack(gap).mean(0) > 0).all()


@pytest.mark.parametrize("family", [f for f in list_models() if tiny(f, "bernoulli").has_kl])
def test_iwae_with_one_sample_is_the_single_sample_elbo_for_the_same_noise(family):
    model = tiny(family, "bernoulli").eval()
    x = images("bernoulli")
    iwae = create_objective(ObjectiveConfig(objective="iwae", iw_k=1))
    gaps, kls = [], []
    with torch.no_grad():
        for seed in range(200):
            torch.manual_seed(seed)
            eps = model.noise(4, 1)  # [(1, 4, *shape)]
            log_w = model.log_weights(x, 1, eps=eps)[0]  # (4,)
            assert torch.equal(iwae(model, x, 0, eps)["loss"], -log_w.mean())
            out = model(x, [e[0] for e in eps])  # the same z
            log_px = -model.likelihood.discrete_nll(out["recon"])
            gaps.append(log_w - log_px)  # log p(z) - log q(z|x): a one-sample KL estimate
            kls.append(sum(k.flatten(1).sum(1) for k in out["kl"]))
            if len(model.latent_shapes) == 1:  # by hand, for a one-group model
                [(mu, logvar)] = model.posterior(x)
                z = mu + eps[0][0] * torch.exp(0.5 * logvar)
                want = log_std_normal(z) - log_normal(z, mu, logvar)
                torch.testing.assert_close(gaps[-1], want, rtol=1e-4, atol=1e-3)
    # over noise, the estimate averages to minus the closed-form KL
    gap, kl = torch.stack(gaps).mean(0), torch.stack(kls).mean(0)
    torch.testing.assert_close(gap, -kl, rtol=0.1, atol=0.5)


def test_train_step_skips_a_non_finite_update_and_leaves_the_weights():
    model = tiny("vae", "gaussian")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]

    def nan_loss(x, step, eps):
        return {"loss": model(x)["recon"].mean() * math.nan, "per_image": torch.zeros(len(x))}

    res = train_step(nan_loss, list(model.parameters()), opt, images("gaussian"), 0)
    assert not bool(res["ok"])
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))


def test_train_step_sets_the_lr_and_clips_the_gradient():
    model = tiny("vae", "gaussian")
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    obj = create_objective(ObjectiveConfig())
    before = [p.detach().clone() for p in model.parameters()]
    res = train_step(
        TrainModule(model, obj), list(model.parameters()), opt, images("gaussian"), 0,
        lr=0.1, grad_clip=1e-3,
    )  # fmt: skip
    assert opt.param_groups[0]["lr"] == 0.1 and res["gnorm"] > 1e-3  # the norm before clipping
    moved = torch.cat([(p - a).flatten() for a, p in zip(before, model.parameters(), strict=True)])
    assert math.isclose(moved.norm().item(), 0.1 * 1e-3, rel_tol=1e-3)  # lr x clipped norm


def test_elbo_objective_optimises_warmed_up_kl_but_reports_the_true_elbo():
    model = tiny("vae", "bernoulli")
    x = images("bernoulli")
    eps = model.noise(4)
    cfg = ObjectiveConfig(beta=1.0, kl_warmup=10)
    terms = create_objective(cfg)(model, x, 5, eps)
    out = model(x, [e[0] for e in eps])
    kl = out["kl"][0].sum(1)
    torch.testing.assert_close(terms["per_image"], (out["recon"] + kl).detach())
    torch.testing.assert_close(terms["loss"], out["recon"].mean() + 0.5 * kl.mean())


def test_hvae_kl_and_densities_match_torch_distributions():
    from vaekit.models.hvae import gaussian_kl, gaussian_log_density

    g = torch.Generator().manual_seed(3)
    qm, qlv, pm, plv = (torch.randn(5, 2, 3, 3, generator=g) for _ in range(4))
    q = torch.distributions.Normal(qm, torch.exp(0.5 * qlv))
    p = torch.distributions.Normal(pm, torch.exp(0.5 * plv))
    torch.testing.assert_close(
        gaussian_kl(qm, qlv, pm, plv), torch.distributions.kl_divergence(q, p)
    )
    z = qm + torch.randn(qm.shape, generator=g)
    torch.testing.assert_close(gaussian_log_density(z, pm, plv), p.log_prob(z).sum((1, 2, 3)))


@pytest.mark.parametrize("f", [2, 3])
def test_hvae_upsample_conv_is_the_conv_of_the_nearest_upsampled_map(f):
    """The decoder's last conv on the coarse grid: the same values and gradients as the conv
    of the upsampled map it replaces (float64, so any misplaced tap shows)."""
    from torch.nn import functional as F

    from vaekit.models.hvae import upsample_conv

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(5, 3, 3, padding=1).double()
    h = torch.randn(2, 5, 4, 4, dtype=torch.float64, requires_grad=True)
    ref = conv(F.interpolate(h, scale_factor=f, mode="nearest"))
    out = upsample_conv(h, conv, f)
    assert out.shape == ref.shape == (2, 3, 4 * f, 4 * f)
    torch.testing.assert_close(out, ref)
    wrt = [h, conv.weight, conv.bias]
    for got, want in zip(
        torch.autograd.grad(out.square().sum(), wrt),
        torch.autograd.grad(ref.square().sum(), wrt),
        strict=True,
    ):
        torch.testing.assert_close(got, want)


def test_hvae_kl_per_group_sums_to_the_elbo_gap_and_the_top_prior_is_standard():
    model = tiny("hvae", "bernoulli").eval()
    x = images("bernoulli")
    with torch.no_grad():
        out = model(x)
        assert len(out["kl"]) == 4 and all((k >= 0).all() for k in out["kl"])
        # the top group's prior is N(0, I): its KL is the vae's closed form on its posterior
        mu, logvar = model.encode(x)
        from vaekit.losses import kl_normal

        torch.testing.assert_close(out["kl"][0].flatten(1), kl_normal(mu, logvar))
        # decode() takes a top code; sample() every group, at one or per-group temperatures
        assert model.decode(mu).shape == x.shape
        cold = model.sample(3, [0.0] * 4, torch.Generator().manual_seed(0))
        again = model.sample(3, 0.0, torch.Generator().manual_seed(1))
        torch.testing.assert_close(cold, again)  # temperature 0: the prior means, no noise
        with pytest.raises(ValueError, match="2 temperatures for 4 latent groups"):
            model.sample(3, [1.0, 1.0])


def test_hvae_reconstructs_through_the_posterior_means_of_every_group():
    model = tiny("hvae", "bernoulli").eval()
    x = images("bernoulli")
    with torch.no_grad():
        out, stats = model.top_down(len(x), model.features(x))  # eps None: posterior means
        assert all(torch.equal(s["z"], s["qm"]) for s in stats)
        torch.testing.assert_close(model.reconstruct(x), model.likelihood.mean(out))
        # not the top code alone with the prior means below it (what decode(encode(x)) is)
        top_only = model.decode(model.encode(x)[0])
        assert (model.reconstruct(x) - top_only).abs().max() > 1e-3


def test_hvae_posterior_split_conv_is_the_block_on_the_concatenation():
    """The posterior block's first conv, split into the state's part and the features' part
    (computed once per image), gives what the block gives on cat([h, a]) (float64)."""
    from torch.nn import functional as F

    model = tiny("hvae", "bernoulli").double()
    g = model.groups[2]
    h, a = torch.randn(6, 8, 7, 7, dtype=torch.float64), torch.randn(3, 8, 7, 7).double()
    qm, qlogv = g.posterior_of(F.gelu(h), g.posterior_input(a))  # row j of h: image j % 3
    ref_m, ref_logv = g.posterior(torch.cat([h, a.repeat(2, 1, 1, 1)], 1)).chunk(2, 1)
    torch.testing.assert_close(qm, ref_m)
    torch.testing.assert_close(qlogv, soft_clamp(ref_logv))


def test_hvae_log_weights_of_k_samples_are_each_images_paths_alone():
    """K samples of B images in one pass (the features shared, not copied) give each (sample,
    image) the log weight of that image's path computed alone."""
    model = tiny("hvae", "bernoulli").eval()
    x = images("bernoulli", n=3)
    eps = model.noise(3, k=4)  # [(4, 3, *shape)]
    with torch.no_grad():
        together = model.log_weights(x, 4, eps=eps)  # (4, 3)
        for k, j in itertools.product(range(4), range(3)):
            alone = model.log_weights(x[j : j + 1], 1, eps=[e[k : k + 1, j : j + 1] for e in eps])
            torch.testing.assert_close(together[k, j], alone[0, 0], rtol=1e-5, atol=1e-4)


def test_free_bits_per_group_floor_each_groups_summed_kl():
    model = tiny("hvae", "bernoulli")
    x = images("bernoulli")
    eps = model.noise(4)
    out = model(x, [e[0] for e in eps])
    per_group = [k.flatten(1).sum(1).mean() for k in out["kl"]]  # batch-mean KL of each group
    fb = float(max(per_group)) + 1.0  # above every group's KL: every group is floored
    cfg = ObjectiveConfig(free_bits=fb, free_bits_per="group")
    terms = create_objective(cfg)(model, x, 0, eps)
    torch.testing.assert_close(terms["loss"], out["recon"].mean() + fb * len(per_group))
    per_dim = create_objective(ObjectiveConfig(free_bits=fb))(model, x, 0, eps)["loss"]
    assert per_dim > terms["loss"]  # per dim, the floor is paid by every dim of every group


@pytest.mark.parametrize("family", CONDITIONAL)
def test_a_conditional_model_decodes_the_label_it_is_given_and_refuses_bad_labels(family):
    model = tiny(family, "gaussian", conditional=True, num_classes=4).eval()
    x, z = images("gaussian"), torch.randn(4, model.top_dim)
    # the label reaches the decoder and the encoder: other labels, other images and codes
    a, b = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    assert not torch.allclose(model.decode(z, y=a), model.decode(z, y=b))
    assert not torch.allclose(model.encode(x, y=a)[0], model.encode(x, y=b)[0])
    # sample(labels=k): a one-group model decodes its codes z ~ N(0, I) given k
    got = model.sample(3, generator=torch.Generator().manual_seed(0), labels=2)
    if len(model.latent_shapes) == 1:
        g = torch.Generator().manual_seed(0)
        want = model.decode(torch.randn(3, model.top_dim, generator=g), y=torch.full((3,), 2))
        torch.testing.assert_close(got, want)
    other = model.sample(3, generator=torch.Generator().manual_seed(0), labels=1)
    assert not torch.allclose(got, other)
    # default labels: the classes in turn
    assert model.sample_labels(6, None).tolist() == [0, 1, 2, 3, 0, 1]
    with pytest.raises(ValueError, match="give the class labels"):
        model(x)
    with pytest.raises(ValueError, match="label 4 is out of range: the model has classes 0-3"):
        model.sample(2, labels=4)
    with pytest.raises(ValueError, match="not conditional"):
        tiny(family, "gaussian").sample(2, labels=1)
