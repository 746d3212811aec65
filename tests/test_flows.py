"""The vae's learned prior (VampPrior) and flow posterior (IAF): their densities against
independent references, the flow's autoregressive structure, the Monte Carlo KL against the
importance weights, the memory estimate, and one-line errors for bad options."""

from __future__ import annotations

import pytest
import torch
from torch.autograd.functional import jacobian

from vaekit.cli import main
from vaekit.config import build_model_config
from vaekit.losses import log_normal
from vaekit.models import create_model
from vaekit.models.flows import IAF
from vaekit.priors.vamp import VampPrior
from vaekit.runtime.memory import step_bytes

SMALL = dict(family="vae", likelihood="bernoulli", latent_dim=3, channels=(8, 8))


def small(**kw):
    torch.manual_seed(0)
    return create_model(build_model_config({**SMALL, **kw}))


def binary(n: int = 4) -> torch.Tensor:
    return torch.bernoulli(torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(1)))


def flow64(dim: int = 4, steps: int = 3) -> IAF:
    torch.manual_seed(0)
    flow = IAF(dim, context=2, steps=steps, hidden=8).double()
    with torch.no_grad():  # away from the near-identity start, so every entry is exercised
        for p in flow.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return flow


def test_iaf_log_det_is_the_log_abs_det_of_the_autograd_jacobian():
    flow = flow64()
    z0, h = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    _, log_det = flow(z0, h)
    for i in range(5):
        J = jacobian(lambda v, i=i: flow(v, h[i])[0], z0[i])  # (4, 4)
        torch.testing.assert_close(log_det[i], torch.linalg.slogdet(J)[1])


def test_each_iaf_step_is_autoregressive_in_its_order_and_the_order_alternates():
    flow = flow64(dim=5, steps=2)
    z0, h = torch.randn(5, dtype=torch.float64), torch.randn(2, dtype=torch.float64)
    for t, step in enumerate(flow.steps):
        J = jacobian(lambda v, step=step: step(v, h)[0], z0)  # (5, 5): dz'_i / dz_j
        forbidden = torch.ones(5, 5).triu(1).bool()  # j > i: later inputs in step 0's order
        forbidden = forbidden if t % 2 == 0 else forbidden.T  # reversed order in step 1
        assert (J[forbidden] == 0).all() and (J[~forbidden] != 0).all()
        torch.testing.assert_close(J.diagonal(), step(z0, h)[1].exp())  # sigma
    full = jacobian(lambda v: flow(v, h)[0], z0)
    assert (full != 0).all()  # the two orders together: every output sees every input


def test_vamp_log_prob_is_the_mixture_density_of_torch_distributions():
    D = torch.distributions
    model = small(prior="vamp", pseudo_inputs=6)
    mu, logvar = model.prior.mixture()
    ref = D.MixtureSameFamily(
        D.Categorical(logits=torch.zeros(6)),
        D.Independent(D.Normal(mu, torch.exp(0.5 * logvar)), 1),
    )
    z = torch.randn(7, 3) * 2
    torch.testing.assert_close(model.prior.log_prob(z), ref.log_prob(z))
    # the pseudo-inputs are images in [0, 1] that the model's own encoder maps
    u = model.prior.pseudo_inputs()
    assert u.shape == (6, 1, 28, 28) and 0 <= u.min() and u.max() <= 1
    torch.testing.assert_close(mu, model.encoder_output(u)[0])


def test_vamp_with_a_flow_puts_each_component_where_the_flow_sends_its_pseudo_input():
    """With an IAF posterior the components are Gaussians at flow(mu0(u_k)) with q(z0|u_k)'s
    variances (a mixture of Gaussians: a density, checked above against torch.distributions)."""
    model = small(prior="vamp", pseudo_inputs=6, posterior="iaf", flow_hidden=16)
    u = model.prior.pseudo_inputs()
    mu0, logvar0, h = model.encoder_output(u)
    mu, logvar = model.prior.mixture()
    torch.testing.assert_close(mu, model.flow(mu0, h)[0])
    torch.testing.assert_close(logvar, logvar0)
    assert not torch.allclose(mu, mu0)  # the flow is not the identity at initialisation


def test_vamp_samples_come_from_the_components():
    model = small(prior="vamp", pseudo_inputs=4).eval()
    mu, logvar = model.prior.mixture()
    z = model.prior.sample(50, torch.Generator().manual_seed(0), temperature=0.0)
    assert all(any(torch.equal(zi, m) for m in mu) for zi in z)  # T = 0: component means
    drawn = model.sample(5, 0.0, torch.Generator().manual_seed(0))  # the model samples its prior
    assert torch.equal(drawn, model.decode(z[:5]))
    z = model.prior.sample(20000, torch.Generator().manual_seed(0))
    # the mixture's mean: each component's mean, equally weighted
    torch.testing.assert_close(z.mean(0), mu.mean(0), atol=0.05, rtol=0)
    rebuilt = VampPrior(**model.prior.options())
    rebuilt.load_state_dict(model.prior.state_dict())
    assert torch.equal(rebuilt.pseudo_inputs(), model.prior.pseudo_inputs())


def test_the_iw_bound_derives_the_vampprior_once_with_the_same_values(monkeypatch):
    """iw_log_px holds the VampPrior fixed: its K components are computed once for all blocks
    (not once a block), the bound is what recomputing them gives, and the hold ends with it."""
    from vaekit.evaluation import bound

    model = small(prior="vamp", pseudo_inputs=6, posterior="iaf", flow_steps=2, flow_hidden=8)
    model.eval()
    x = (binary(6) * 255).to(torch.uint8)
    calls = []
    posterior = model.prior.posterior
    model.prior.bind(lambda u: calls.append(len(u)) or posterior(u))
    held = bound.iw_log_px(model, x, K=4, chunk=2, batch_size=4)  # blocks of 2 images: 3 blocks
    assert calls == [6]
    monkeypatch.setattr(bound, "Prior", type("NoPrior", (), {}))  # the bound holds nothing
    calls.clear()
    torch.testing.assert_close(bound.iw_log_px(model, x, K=4, chunk=2, batch_size=4), held)
    assert calls == [6, 6, 6] and model.prior._fixed is None


@pytest.mark.parametrize(
    "variant",
    [dict(prior="vamp", pseudo_inputs=5), dict(posterior="iaf"),
     dict(prior="vamp", pseudo_inputs=5, posterior="iaf")],
)  # fmt: skip
def test_monte_carlo_kl_is_log_q_minus_log_p_of_the_importance_weight(variant):
    """forward's KL and log_weights' log q - log p are the same estimate for the same noise."""
    model = small(**variant, flow_hidden=16).eval()
    x = binary()
    eps = model.noise(4, 1)
    with torch.no_grad():
        out = model(x, [eps[0][0]])
        log_w = model.log_weights(x, 1, eps=eps)[0]  # (4,)
    log_px = -model.likelihood.discrete_nll(out["recon"])
    torch.testing.assert_close(log_w, log_px - out["kl"][0][:, 0], rtol=1e-5, atol=1e-4)


def test_iaf_posterior_density_integrates_the_change_of_variables():
    """log q(z|x) of the IW weights equals log N(z0) - log|det dz/dz0| by autograd."""
    model = small(posterior="iaf", flow_hidden=16).double().eval()
    x = binary(1).double()
    mu, logvar, h = model.encoder_output(x)
    z0 = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    J = jacobian(lambda v: model.flow(v, h[0])[0], z0[0])
    z, log_det = model.flow(z0, h)
    want = log_normal(z0, mu, logvar) - torch.linalg.slogdet(J)[1]
    torch.testing.assert_close(log_normal(z0, mu, logvar) - log_det, want)


def test_memory_estimate_counts_the_pseudo_inputs_once_a_step():
    vamp = build_model_config({**SMALL, "prior": "vamp", "pseudo_inputs": 50})
    plain = build_model_config(SMALL)
    grow = [step_bytes(c, 256)[1] - step_bytes(c, 128)[1] for c in (vamp, plain)]
    assert grow[0] == grow[1]  # per image: the same model
    assert step_bytes(vamp, 128)[1] > step_bytes(plain, 128)[1]  # plus 50 images once
    iaf = build_model_config({**SMALL, "posterior": "iaf"})
    assert step_bytes(iaf, 128)[1] > step_bytes(plain, 128)[1]  # the flow runs on meta too


@pytest.mark.parametrize(
    "argv,expect",
    [
        (["--posterior", "x"], "posterior must be gaussian or iaf, got 'x'"),
        (["--prior", "gmm"], "prior must be normal or vamp, got 'gmm'"),
        (["--pseudo-inputs", "0"], "--pseudo-inputs: must be an integer >= 1, got 0"),
        (["--flow-steps", "0"], "--flow-steps: must be an integer >= 1, got 0"),
        (["--family", "ae", "--posterior", "iaf"], "posterior 'iaf' needs the vae family"),
        (["--family", "ae", "--prior", "vamp"], "prior 'vamp' needs the vae family"),
        (["--prior", "vamp", "--conditional"], "prior 'vamp' is not for a conditional model"),
    ],
)
def test_bad_options_exit_2_with_one_line(argv, expect, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(["train", "--out", str(tmp_path / "run"), *argv])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and expect in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()
