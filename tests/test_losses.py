import math

import pytest
import torch
from torch import distributions as td

from vaekit.losses import (
    active_units,
    bernoulli_log_prob,
    bits_per_dim,
    discretized_logistic_log_prob,
    discretized_mix_logistic_log_prob,
    gaussian_log_prob,
    gaussian_nll_to_discrete,
    iw_bound,
    iw_log_weights,
    kl_normal,
    log_mean_exp,
    log_normal,
    log_std_normal,
)

VALUES = torch.arange(256, dtype=torch.float64) * 2 / 255 - 1  # the 256 values of 8-bit data


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- Gaussian latents ---------------------------------------------------------------------------


def test_kl_normal_matches_torch_distributions():
    g = gen(1)
    mu, logvar = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    q = td.Normal(mu, torch.exp(0.5 * logvar))
    expected = td.kl_divergence(q, td.Normal(torch.zeros(()), torch.ones(())))
    torch.testing.assert_close(kl_normal(mu, logvar), expected)


def test_log_normal_and_log_std_normal_match_torch_distributions_with_leading_dims():
    g = gen(2)
    z = torch.randn(3, 4, 5, generator=g)  # (K, B, D)
    mu, logvar = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    q = td.Independent(td.Normal(mu, torch.exp(0.5 * logvar)), 1)
    out = log_normal(z, mu, logvar)
    assert out.shape == (3, 4)
    torch.testing.assert_close(out, q.log_prob(z))
    prior = td.Independent(td.Normal(torch.zeros(5), torch.ones(5)), 1)
    torch.testing.assert_close(log_std_normal(z), prior.log_prob(z))


# --- Continuous and binary likelihoods ----------------------------------------------------------


@pytest.mark.parametrize(
    "logvar_shape", [(), (2, 3, 3), (4, 1, 1, 1)], ids=["global", "pixel", "image"]
)
def test_gaussian_log_prob_matches_normal_for_each_logvar_shape(logvar_shape):
    g = gen(3)
    x, mean = torch.rand(4, 2, 3, 3, generator=g), torch.rand(4, 2, 3, 3, generator=g)
    logvar = torch.randn(logvar_shape, generator=g) - 2
    expected = td.Normal(mean, torch.exp(0.5 * logvar)).log_prob(x).sum((1, 2, 3))
    out = gaussian_log_prob(x, mean, logvar)
    assert out.shape == (4,)
    torch.testing.assert_close(out, expected)


def test_bernoulli_log_prob_matches_bernoulli_and_stays_finite_for_huge_logits():
    g = gen(4)
    x = (torch.rand(4, 1, 5, 5, generator=g) > 0.5).float()
    logits = 3 * torch.randn(4, 1, 5, 5, generator=g)
    expected = td.Bernoulli(logits=logits).log_prob(x).sum((1, 2, 3))
    torch.testing.assert_close(bernoulli_log_prob(x, logits), expected)
    # a confident wrong logit costs |logit| nats, not inf
    out = bernoulli_log_prob(torch.tensor([[1.0, 0.0]]), torch.tensor([[-200.0, 200.0]]))
    torch.testing.assert_close(out, torch.tensor([-400.0]))


# --- Discretized logistic -----------------------------------------------------------------------


def logistic_bin_probs(x: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Reference bin masses as CDF differences of torch's Logistic, edge bins to -/+ inf."""
    logistic = td.TransformedDistribution(
        td.Uniform(torch.zeros(()), torch.ones(()), validate_args=False),
        [td.SigmoidTransform().inv, td.AffineTransform(mean, scale)],
        validate_args=False,
    )
    upper = torch.where(x > 0.999, 1.0, logistic.cdf(x + 1 / 255))
    lower = torch.where(x < -0.999, 0.0, logistic.cdf(x - 1 / 255))
    return upper - lower


def test_discretized_logistic_matches_logistic_cdf_differences_for_all_bins():
    g = gen(5)
    n = 64
    mean = (2.4 * torch.rand(n, generator=g, dtype=torch.float64) - 1.2).unsqueeze(1)  # (n, 1)
    log_scale = (-4 * torch.rand(n, generator=g, dtype=torch.float64)).unsqueeze(1)
    x = VALUES.expand(n, 256)  # every bin, the two edge bins included, for each (mean, scale)
    expected = logistic_bin_probs(x, mean, log_scale.exp())
    assert (expected[:, 0] > 0.001).any() and (expected[:, -1] > 0.001).any()  # edges exercised
    # one value per "image" (batch of n * 256), so the per-image sum is the per-bin log-prob
    out = discretized_logistic_log_prob(
        x.reshape(-1, 1),
        mean.expand(n, 256).reshape(-1, 1),
        log_scale.expand(n, 256).reshape(-1, 1),
    ).reshape(n, 256)
    torch.testing.assert_close(out.exp(), expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(out.exp().sum(1), torch.ones(n, dtype=torch.float64))


def test_discretized_logistic_is_accurate_in_float32_tails_and_has_finite_gradients():
    # interior bins 100 to 550 scales below the mean, where float32 sigmoid differences underflow
    # to 0 (and torch's Logistic clips its cdf), against float64 sigmoid differences
    x = torch.tensor([-0.5, -0.8, -0.9, -0.9, 0.0])
    mean = torch.tensor([0.9, 0.9, -0.2, 0.9, 0.5], requires_grad=True)
    log_scale = torch.tensor([-5.0, -5.0, -5.5, -4.5, -7.0], requires_grad=True)

    def naive(x, mean, scale):
        return torch.sigmoid((x - mean + 1 / 255) / scale) - torch.sigmoid(
            (x - mean - 1 / 255) / scale
        )

    m, s = mean.detach(), log_scale.detach()
    expected = naive(x.double(), m.double(), s.double().exp()).log()
    assert (naive(x, m, s.exp()) == 0).all() and torch.isfinite(expected).all()
    out = discretized_logistic_log_prob(x.unsqueeze(1), mean.unsqueeze(1), log_scale.unsqueeze(1))
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=0.0)
    # the right tail, by the logistic's symmetry: P(x | mean) = P(-x | -mean)
    mirrored = discretized_logistic_log_prob(-x.unsqueeze(1), -m.unsqueeze(1), s.unsqueeze(1))
    torch.testing.assert_close(mirrored, out.detach())
    out.sum().backward()
    assert torch.isfinite(mean.grad).all() and torch.isfinite(log_scale.grad).all()


def test_discretized_logistic_with_huge_scale_is_flat_inside_and_puts_half_in_each_edge_bin():
    # A logistic this wide is ~linear over [-1, 1]: the 254 interior bins get equal tiny mass
    # 2 / (255 * 4 s) and the edge bins, which extend to -/+ inf, hold ~1/2 each; not 1/256.
    log_scale = torch.tensor(10.0)
    p = discretized_logistic_log_prob(VALUES.float().unsqueeze(1), torch.zeros(()), log_scale).exp()
    assert abs(p.sum().item() - 1) < 1e-4
    inner = p[1:-1]
    torch.testing.assert_close(inner, torch.full_like(inner, 2 / (255 * 4 * math.exp(10))))
    torch.testing.assert_close(p[[0, -1]], torch.full((2,), 0.5), rtol=0, atol=1e-4)


def mixture_params(B: int, K: int, C: int, seed: int):
    """Random logit_probs (B, K, 1, 1), means and log_scales (B, K, C, 1, 1) for single pixels."""
    g = gen(seed)
    logit_probs = torch.randn(B, K, 1, 1, generator=g, dtype=torch.float64)
    means = 2.2 * torch.rand(B, K, C, 1, 1, generator=g, dtype=torch.float64) - 1.1
    log_scales = -4 * torch.rand(B, K, C, 1, 1, generator=g, dtype=torch.float64)
    return logit_probs, means, log_scales


def test_mixture_with_one_component_equals_the_single_logistic():
    g = gen(6)
    x = VALUES[torch.randint(256, (3, 2, 4, 4), generator=g)]  # (B, C, H, W)
    means = torch.rand(3, 1, 2, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    log_scales = -3 * torch.rand(3, 1, 2, 4, 4, generator=g, dtype=torch.float64)
    logit_probs = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64)
    out = discretized_mix_logistic_log_prob(x, logit_probs, means, log_scales)
    torch.testing.assert_close(out, discretized_logistic_log_prob(x, means[:, 0], log_scales[:, 0]))


def test_mixture_of_two_identical_components_equals_the_single_logistic():
    g = gen(7)
    x = VALUES[torch.randint(256, (3, 2, 4, 4), generator=g)]
    mean = torch.rand(3, 1, 2, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    log_scale = -3 * torch.rand(3, 1, 2, 4, 4, generator=g, dtype=torch.float64)
    logit_probs = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64)  # any weights
    out = discretized_mix_logistic_log_prob(
        x, logit_probs, mean.expand(3, 2, 2, 4, 4), log_scale.expand(3, 2, 2, 4, 4)
    )
    torch.testing.assert_close(out, discretized_logistic_log_prob(x, mean[:, 0], log_scale[:, 0]))


def test_mixture_probabilities_of_all_256_values_sum_to_one_per_pixel():
    P, K = 20, 3  # 20 pixels with random mixtures, each scored at all 256 values
    logit_probs, means, log_scales = mixture_params(P, K, 1, seed=8)
    x = VALUES.view(256, 1, 1, 1, 1).expand(256, P, 1, 1, 1).reshape(256 * P, 1, 1, 1)

    def rep(t):  # (P, ...) -> (256 * P, ...), value-major like x
        return t.expand(256, *t.shape).reshape(256 * P, *t.shape[1:])

    out = discretized_mix_logistic_log_prob(x, rep(logit_probs), rep(means), rep(log_scales))
    out = out.reshape(256, P)
    assert (out.exp().sum(0) - 1).abs().max() < 1e-4


def test_mixture_over_two_channels_is_a_normalised_joint_distribution():
    # the component is shared by both channels: the 256 x 256 joint masses of one pixel sum to 1
    logit_probs, means, log_scales = mixture_params(1, 3, 2, seed=9)
    grid = torch.stack(torch.meshgrid(VALUES, VALUES, indexing="ij"), -1).reshape(-1, 2, 1, 1)
    n = len(grid)
    out = discretized_mix_logistic_log_prob(
        grid,
        logit_probs.expand(n, -1, -1, -1),
        means.expand(n, -1, -1, -1, -1),
        log_scales.expand(n, -1, -1, -1, -1),
    )
    assert abs(out.exp().sum().item() - 1) < 1e-4


def test_mixture_component_is_shared_by_the_channels_of_a_pixel():
    # two tight components at (-0.5, -0.5) and (0.5, 0.5): the mixed corner (-0.5, 0.5) is
    # improbable, where independent per-channel mixtures would give it the same mass
    means = torch.tensor([-0.5, 0.5]).view(1, 2, 1, 1, 1).expand(1, 2, 2, 1, 1)
    log_scales = torch.full((1, 2, 2, 1, 1), -5.0)
    x = VALUES.float()[torch.tensor([[64, 64], [191, 191], [64, 191]])].view(3, 2, 1, 1)
    out = discretized_mix_logistic_log_prob(
        x,
        torch.zeros(3, 2, 1, 1),
        means.expand(3, -1, -1, -1, -1),
        log_scales.expand(3, -1, -1, -1, -1),
    )
    assert out[0].item() == pytest.approx(out[1].item(), abs=1e-5)
    assert out[2].item() < out[0].item() - 50


# --- Bits per dim -------------------------------------------------------------------------------


def test_bits_per_dim_is_nats_over_dims_times_ln2():
    nll = torch.tensor([100.0, 2000.0, 5432.1], dtype=torch.float64)
    torch.testing.assert_close(bits_per_dim(nll, 784), nll / 784 / math.log(2))
    assert bits_per_dim(8 * math.log(2), 1) == pytest.approx(8)


@pytest.mark.parametrize("D", [1, 784, 3072])
def test_uniform_256_value_model_scores_exactly_8_bits_per_dim(D):
    assert bits_per_dim(D * math.log(256), D) == 8
    # the uniform density on [0, 1] (nll 0 nats) is the same model once discretised
    assert bits_per_dim(gaussian_nll_to_discrete(0.0, D), D) == 8
    # vaekit's x = k / 255: bins 1/255 wide, so the uniform density scores log2(255) bits/dim
    assert bits_per_dim(gaussian_nll_to_discrete(0.0, D, levels=255), D) == pytest.approx(
        math.log2(255)
    )


def test_gaussian_nll_to_discrete_matches_the_mass_of_1_over_256_bins():
    # data x = (k + 1/2) / 256; the exact mass of bin k vs the corrected density at its centre
    mean, std = torch.tensor(0.45, dtype=torch.float64), torch.tensor(0.1, dtype=torch.float64)
    k = torch.arange(40, 200, dtype=torch.float64)
    normal = td.Normal(mean, std)
    mass = normal.cdf((k + 1) / 256) - normal.cdf(k / 256)
    x = ((k + 0.5) / 256).reshape(-1, 1)
    nll_density = -gaussian_log_prob(x, mean, 2 * std.log())
    torch.testing.assert_close(
        gaussian_nll_to_discrete(nll_density, 1), -mass.log(), rtol=0, atol=1e-3
    )


# --- Importance-weighted bound ------------------------------------------------------------------


def test_log_mean_exp_is_stable_and_iw_bound_reduces_over_k():
    a = torch.tensor([[1000.0, -1000.0], [1000.0, -1000.0 + math.log(3)]])  # (K=2, B=2)
    torch.testing.assert_close(log_mean_exp(a, 0), torch.tensor([1000.0, -1000.0 + math.log(2)]))
    g = gen(10)
    log_w = torch.randn(7, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(iw_bound(log_w), log_w.exp().mean(0).log())
    torch.testing.assert_close(iw_bound(log_w[:1]), log_w[0])


class PPCA:
    """z ~ N(0, I_d), x|z ~ N(W z + b, sigma^2 I): log p(x) and p(z|x) in closed form.

    q(z|x) is a deliberately imperfect diagonal Gaussian: the exact posterior's mean shifted by
    `shift` and its marginal variances inflated by `inflate`, so every bound is strict.
    """

    def __init__(self, d=2, D=5, sigma=0.5, shift=0.3, inflate=1.5, seed=11):
        g = gen(seed)
        self.W = torch.randn(D, d, generator=g, dtype=torch.float64)
        self.b = torch.randn(D, generator=g, dtype=torch.float64)
        self.sigma, self.shift, self.inflate = sigma, shift, inflate
        prec = torch.eye(d, dtype=torch.float64) + self.W.T @ self.W / sigma**2
        self.post_cov = torch.linalg.inv(prec)  # (d, d)
        cov_x = self.W @ self.W.T + sigma**2 * torch.eye(D, dtype=torch.float64)
        self.marginal = td.MultivariateNormal(self.b, cov_x)

    def sample(self, n, g):
        """n data points x ~ p(x): (n, D)."""
        eps = torch.randn(n, len(self.b), generator=g, dtype=torch.float64)
        return self.b + eps @ self.marginal.scale_tril.T

    def post_mean(self, x):
        return (x - self.b) @ self.W @ self.post_cov / self.sigma**2  # (B, d)

    def encode(self, x):
        mu = self.post_mean(x) + self.shift
        logvar = (self.inflate * self.post_cov.diagonal()).log().expand_as(mu)
        return mu, logvar

    def decode_log_prob(self, x, z):
        return td.Normal(z @ self.W.T + self.b, self.sigma).log_prob(x).sum(-1)

    def elbo(self, x):
        """log p(x) - KL(q(z|x) || p(z|x)), both in closed form."""
        mu, logvar = self.encode(x)
        q = td.MultivariateNormal(mu, torch.diag_embed(logvar.exp()))
        post = td.MultivariateNormal(self.post_mean(x), self.post_cov)
        return self.marginal.log_prob(x) - td.kl_divergence(q, post)


def test_iw_bound_rises_towards_exact_log_px_and_stays_below_it():
    m = PPCA()
    R, N = 50, 1000  # 50 replicates of 8 data points, 1000 samples each
    x = m.sample(8, gen(12)).repeat(R, 1)  # (R * B, D)
    with torch.no_grad():
        log_w = iw_log_weights(x, m.encode, m.decode_log_prob, N, 250, gen(13))  # (N, R * B)
    gaps, ses = [], []
    for K in (1, 10, 100, 1000):
        # the N samples as N / K disjoint groups of K: an unbiased average of the K-sample bound
        groups = log_w.view(N // K, K, -1).transpose(0, 1).reshape(K, -1)  # (K, N / K * R * B)
        bound = iw_bound(groups).view(N // K, -1).mean(0)  # (R * B,)
        gap = m.marginal.log_prob(x) - bound  # (R * B,)
        gaps.append(gap.mean().item())
        ses.append(gap.std().item() / math.sqrt(len(gap)))  # Monte-Carlo standard error
    assert gaps[0] > 0.5  # q is imperfect: the ELBO is strictly below log p(x)
    assert gaps[0] > gaps[1] > gaps[2] > gaps[3], gaps  # nested groups: also log's concavity
    assert all(g > -4 * se for g, se in zip(gaps, ses, strict=True)), (gaps, ses)  # below log p(x)
    assert gaps[3] < 0.01 * gaps[0], gaps  # and close to it at K = 1000


def test_k1_log_weights_average_to_the_closed_form_elbo():
    m = PPCA()
    x = m.sample(4, gen(13))
    with torch.no_grad():
        log_w = iw_log_weights(x, m.encode, m.decode_log_prob, 20_000, 5000, gen(14))  # (K, B)
    tol = 4 * log_w.std(0) / math.sqrt(len(log_w))  # 4 standard errors of the mean
    assert ((log_w.mean(0) - m.elbo(x)).abs() < tol).all(), (log_w.mean(0), m.elbo(x), tol)
    assert (m.elbo(x) < m.marginal.log_prob(x) - 0.05).all()  # the bound is strict


def test_chunked_log_weights_equal_unchunked_for_the_same_seed():
    m = PPCA()
    x = m.sample(3, gen(15))
    full = iw_log_weights(x, m.encode, m.decode_log_prob, 37, 37, gen(16))
    # The same noise in any chunking; the decoder's batched matmuls may round differently per
    # batch size on some CPUs (7e-15 seen on an Intel Xeon), so equal to ~1e-12, not bitwise.
    for chunk in (1, 5, 16):
        chunked = iw_log_weights(x, m.encode, m.decode_log_prob, 37, chunk, gen(16))
        torch.testing.assert_close(chunked, full, rtol=1e-12, atol=1e-12)
    other = iw_log_weights(x, m.encode, m.decode_log_prob, 37, 5, gen(17))
    assert (other - full).abs().max() > 1e-3  # another seed: other noise, other weights


def test_decoder_never_sees_more_than_chunk_samples():
    m = PPCA()
    x = m.sample(3, gen(18))
    sizes = []

    def decode(x_rep, z):
        sizes.append(len(z))
        return m.decode_log_prob(x_rep, z)

    log_w = iw_log_weights(x, m.encode, decode, 23, 10, gen(19))
    assert log_w.shape == (23, 3) and sizes == [30, 30, 9]
    with pytest.raises(ValueError):
        iw_log_weights(x, m.encode, m.decode_log_prob, 0, 10)


# --- Active units -------------------------------------------------------------------------------


def test_active_units_counts_dims_whose_posterior_mean_varies():
    g = gen(20)
    base = torch.randn(1000, 5, generator=g, dtype=torch.float64)
    base = (base - base.mean(0)) / base.std(0, correction=0)  # each column: mean 0, var 1
    var = torch.tensor([0.0, 0.001, 0.005, 0.05, 2.0], dtype=torch.float64)
    count, got = active_units(base * var.sqrt())
    assert count == 2
    torch.testing.assert_close(got, var)
    assert active_units(base * var.sqrt(), threshold=0.002)[0] == 3


def test_active_units_uses_the_population_variance():
    count, var = active_units(torch.tensor([[1.0], [-1.0]]), threshold=1.5)
    assert var.item() == 1.0 and count == 0  # the unbiased variance would be 2, i.e. active
