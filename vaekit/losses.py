"""Log-likelihoods, KL terms, bits per dim, the importance-weighted bound and active units.

All log-probabilities are in nats. Likelihoods p(x|z) return one number per image, summed over
every non-batch dim: shape (B,). Imports only torch and math, so it stands alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2.0 * math.pi)
HALF_BIN = 1.0 / 255.0  # half the bin width of 8-bit data rescaled to [-1, 1]


def _sum_per_image(t: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (B,): sum over every non-batch dim."""
    return t.reshape(t.shape[0], -1).sum(1)


# --- Gaussian latents ---------------------------------------------------------------------------


def kl_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per dimension, in nats: same shape as mu.

    The closed-form KL term of the ELBO for a diagonal Gaussian q(z|x) and a standard prior.
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))) summed over the last dim: (..., D) -> (...).

    Scores samples under the diagonal Gaussian posterior q(z|x), e.g. (K, B, D) -> (K, B).
    """
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(-1)


def log_std_normal(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last dim: (..., D) -> (...). The prior log p(z)."""
    return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)


# --- Likelihoods p(x|z) -------------------------------------------------------------------------


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Continuous Gaussian log-density of x (B, C, H, W) per image: (B,).

    logvar broadcasts to x: a scalar tensor (global), (C, H, W) (per pixel) or (B, 1, 1, 1)
    (per image). A density, not a probability: see gaussian_nll_to_discrete for bits/dim.
    """
    lp = -0.5 * (LOG_2PI + logvar + (x - mean).pow(2) * torch.exp(-logvar))  # (B, C, H, W)
    return _sum_per_image(lp)


def bernoulli_log_prob(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log Bernoulli(x; sigmoid(logits)) per image for binary x (B, C, H, W) as floats: (B,).

    Uses the logits form of binary cross-entropy, stable for any logit magnitude.
    """
    return -_sum_per_image(F.binary_cross_entropy_with_logits(logits, x, reduction="none"))


def _discretized_logistic_log_px(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """Elementwise log P(bin of x) under a logistic(mean, exp(log_scale)) cut into 256 bins.

    x holds 2k/255 - 1, k = 0..255; bin k spans x -/+ 1/255, the edge bins extend to -/+ inf.
    Interior bins use the exact identity
        sigmoid(a) - sigmoid(b) = sigmoid(a) * sigmoid(-b) * (1 - exp(b - a)),  a > b,
    in log form with softplus and expm1, so no cancellation or underflow: it stays accurate in
    the far tails where PixelCNN++ needs its mid-bin density fallback, and needs none.
    """
    inv_s = torch.exp(-log_scale)
    centered = x - mean  # broadcast shape of x, mean, log_scale
    plus_in = inv_s * (centered + HALF_BIN)  # standardised upper bin edge
    min_in = inv_s * (centered - HALF_BIN)  # standardised lower bin edge
    log_cdf_plus = -F.softplus(-plus_in)  # log sigmoid(plus_in): the whole k = 0 bin
    log_sf_min = -F.softplus(min_in)  # log(1 - sigmoid(min_in)): the whole k = 255 bin
    # the bin width 2 / (255 s) taken directly, not as plus_in - min_in, to keep its precision
    log_width_term = torch.log(-torch.expm1(-2.0 * HALF_BIN * inv_s))
    log_mid = log_cdf_plus + log_sf_min + log_width_term
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_sf_min, log_mid))


def discretized_logistic_log_prob(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """log P(x) per image under a discretized logistic (Salimans et al. 2017): (B,).

    x (B, C, H, W) is 8-bit data rescaled to [-1, 1] (2k/255 - 1); mean and log_scale
    broadcast to x. A probability mass over 256 values, so -log P is a true code length.
    """
    lp = _discretized_logistic_log_px(x, mean, log_scale)  # (B, C, H, W)
    return _sum_per_image(lp)


def discretized_mix_logistic_log_prob(
    x: torch.Tensor, logit_probs: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor
) -> torch.Tensor:
    """log P(x) per image under a K-component mixture of discretized logistics per pixel: (B,).

    x (B, C, H, W) in [-1, 1]; logit_probs (B, K, H, W); means, log_scales (B, K, C, H, W).
    One component is chosen per pixel for all channels, which are then independent (PixelCNN++
    without its channel coupling): log sum_k pi_k prod_c P_k(x_c).
    """
    lp = _discretized_logistic_log_px(x.unsqueeze(1), means, log_scales)  # (B, K, C, H, W)
    lp = lp.sum(2) + torch.log_softmax(logit_probs, dim=1)  # (B, K, H, W)
    return _sum_per_image(torch.logsumexp(lp, dim=1))  # (B, H, W) -> (B,)


# --- Bits per dim -------------------------------------------------------------------------------


def bits_per_dim(nll_nats: torch.Tensor | float, num_dims: int) -> torch.Tensor | float:
    """Negative log-likelihood in nats per image -> bits per dimension: nll / (D ln 2).

    Only meaningful for a discrete likelihood; convert a density first (gaussian_nll_to_discrete).
    """
    return nll_nats / (num_dims * math.log(2.0))


def gaussian_nll_to_discrete(
    nll_nats_on_unit_scale: torch.Tensor | float, num_dims: int, levels: int = 256
) -> torch.Tensor | float:
    """Density NLL (nats) of data on [0, 1] -> NLL of the 8-bit data: nll + D ln levels.

    P(k) ~= p(x) / levels per dim for bins of width 1/levels around each data value. levels=256
    assumes x = (k + u) / 256 (u = 1/2, or u ~ U(0, 1) for dequantised data): for x = k / 255 it
    overstates the NLL by ln(256/255), 0.0056 bits/dim, the usual conservative convention.
    levels=255 is exact for x = k / 255 (bins [k - 1/2, k + 1/2] / 255): vaekit's convention.
    """
    return nll_nats_on_unit_scale + num_dims * math.log(levels)


# --- Importance-weighted bound (Burda et al. 2015) ----------------------------------------------


def log_mean_exp(a: torch.Tensor, dim: int) -> torch.Tensor:
    """log(mean(exp(a), dim)), computed stably as logsumexp(a, dim) - log(size of dim)."""
    return torch.logsumexp(a, dim=dim) - math.log(a.shape[dim])


def iw_bound(log_w: torch.Tensor) -> torch.Tensor:
    """Importance-weighted lower bound on log p(x): log weights (K, B) -> (B,) log-mean-exp over K.

    K = 1 gives the ELBO; the bound rises to log p(x) as K grows.
    """
    return log_mean_exp(log_w, dim=0)


def iw_log_weights(
    x: torch.Tensor,
    encode: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    decode_log_prob: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    K: int,
    chunk: int,
    generator: torch.Generator | None = None,
    eps: torch.Tensor | None = None,
    log_prior: Callable[[torch.Tensor], torch.Tensor] = log_std_normal,
) -> torch.Tensor:
    """log w = log p(x|z) + log p(z) - log q(z|x) for K samples z ~ q(z|x): (K, B).

    encode(x) -> (mu, logvar), each (B, D), for a diagonal Gaussian q; or (mu, logvar, flow)
    for a Gaussian followed by an invertible map (an inverse autoregressive flow): flow(z0)
    -> (z, log|det dz/dz0|) for z0 (n, B, D), log q(z|x) = log N(z0; mu, logvar) - log-det,
    exact. log_prior(z) -> log p(z), (...) for z (..., D): N(0, I) unless given (a learned
    prior). decode_log_prob(x, z) -> log p(x|z), (N,) for x (N, ...) and z (N, D). The
    decoder sees at most chunk * B samples at once. Each sample's
    noise is drawn from the generator (on its own device, then moved) in turn, so the result
    does not depend on chunk, nor, with a CPU generator, on the model's device.
    eps (K, B, D), if given, is the noise itself (e.g. drawn for a global batch and shared out
    across processes). Run under torch.no_grad() for evaluation, or the graph keeps every chunk
    alive; with gradients it is the IWAE objective's estimator.
    """
    if K < 1 or chunk < 1:
        raise ValueError(f"K and chunk must be >= 1, got K={K}, chunk={chunk}")
    mu, logvar, *flow = encode(x)  # (B, D) each, and the flow if q has one
    std = torch.exp(0.5 * logvar)
    B, D = mu.shape
    noise_device = generator.device if generator is not None else mu.device
    log_w = []
    for start in range(0, K, chunk):
        n = min(chunk, K - start)
        if eps is not None:
            e = eps[start : start + n].to(mu)
        else:  # one draw per sample, so the generator's stream is the same for any chunk size
            draws = [
                torch.randn(B, D, generator=generator, device=noise_device, dtype=mu.dtype)
                for _ in range(n)
            ]
            e = torch.stack(draws).to(mu.device)  # (n, B, D)
        z = mu + e * std  # (n, B, D)
        log_q = log_normal(z, mu, logvar)  # (n, B)
        if flow:
            z, log_det = flow[0](z)
            log_q = log_q - log_det
        x_rep = x.unsqueeze(0).expand(n, *x.shape).reshape(n * B, *x.shape[1:])  # (n * B, ...)
        log_px = decode_log_prob(x_rep, z.reshape(n * B, D)).reshape(n, B)
        log_w.append(log_px + log_prior(z) - log_q)  # (n, B)
    return torch.cat(log_w)  # (K, B)


# --- Posterior collapse -------------------------------------------------------------------------


def active_units(mu_all: torch.Tensor, threshold: float = 0.01) -> tuple[int, torch.Tensor]:
    """Count latent dims with Var_x(E_q[z_d|x]) > threshold (Burda et al. 2015): (count, (D,)).

    mu_all (N, D) holds posterior means over a dataset; the variance is the population one
    (divides by N, unbiased=False). Returns the count and the per-dim variances.
    """
    var = mu_all.var(dim=0, correction=0)  # (D,)
    return int((var > threshold).sum()), var
