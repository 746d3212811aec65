"""Test-set evaluation: fixed, unshuffled data and a fixed noise seed, so numbers repeat.

Every function takes uint8 images as the model sees them (data.modelled: binarized once for a
"bernoulli" model). Likelihoods are in nats of the 8-bit (or binary) data, see VAE.log_px.
"""

from __future__ import annotations

import torch

from .data import to_float
from .losses import iw_bound, iw_log_weights, kl_normal
from .model import VAE


@torch.inference_mode()
def evaluate(model: VAE, x: torch.Tensor, batch_size: int = 500, seed: int = 0) -> dict:
    """Mean per-image loss, recon and KL over uint8 images x (N, C, H, W), the ELBO, KL per dim.

    loss and recon are in the training objective's units (for "gaussian", the seed's); elbo is
    -(recon + KL) in nats of the 8-bit data, a lower bound on log P(x). Runs in eval mode with
    z sampled from q(z|x) under a fixed seed; restores the model's mode and the global RNG.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # loss, recon, kl, -log P(x|z)
    kl_dims = torch.zeros(model.cfg.latent_dim, dtype=torch.float64, device=device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for i in range(0, len(x), batch_size):
            xb = to_float(x[i : i + batch_size].to(device, non_blocking=True))
            out = model(xb)
            terms = [out["loss"], out["recon"], out["kl"], model.discrete_nll(out["recon"])]
            totals += torch.stack([t.sum() for t in terms]).double()
            kl_dims += kl_normal(out["mu"], out["logvar"]).sum(0).double()
    model.train(was_training)
    n = len(x)
    loss, recon, kl, nll_x_z = (totals / n).tolist()
    return {
        "test_loss": loss,
        "recon": recon,
        "kl": kl,
        "elbo": -(nll_x_z + kl),
        "num_images": n,
        "kl_per_dim": (kl_dims / n).tolist(),
    }


@torch.inference_mode()
def iw_nll(
    model: VAE, x: torch.Tensor, K: int, chunk: int = 100, batch_size: int = 500, seed: int = 0
) -> float:
    """Mean -log P(x) in nats per image over uint8 images x: the importance-weighted bound with
    K samples (Burda et al. 2015), an upper bound on the NLL that tightens as K grows.

    The decoder sees at most batch_size samples at once (batch_size // chunk images, chunk
    samples each), so K = 5000 fits in memory; the noise comes from a generator seeded `seed`.
    The model should be in eval mode.
    """
    device = next(model.parameters()).device
    chunk = min(chunk, K)
    n_img = max(1, batch_size // chunk)
    g = torch.Generator(device).manual_seed(seed)
    total = torch.zeros((), dtype=torch.float64, device=device)
    for i in range(0, len(x), n_img):
        xb = to_float(x[i : i + n_img].to(device))
        log_w = iw_log_weights(xb, model.encode, model.log_px, K, chunk, g)  # (K, b)
        total -= iw_bound(log_w).double().sum()
    return total.item() / len(x)


@torch.inference_mode()
def posterior(model: VAE, x: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, list]:
    """One encoder pass over uint8 images x: E_q[z|x] (N, D) on the CPU, and each latent dim's
    average KL(q(z|x) || p(z)) (D,), the dims the model uses most having the largest."""
    device = next(model.parameters()).device
    mus, kl = [], torch.zeros(model.cfg.latent_dim, dtype=torch.float64, device=device)
    for i in range(0, len(x), batch_size):
        mu, logvar = model.encode(to_float(x[i : i + batch_size].to(device)))
        kl += kl_normal(mu, logvar).sum(0).double()
        mus.append(mu.cpu())
    return torch.cat(mus), (kl / max(len(x), 1)).tolist()


def posterior_means(model: VAE, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """E_q[z|x] of uint8 images x: (N, D) on the CPU, encoder only (model in eval mode)."""
    return posterior(model, x, batch_size)[0]


def linear_probe(
    f_train: torch.Tensor,
    y_train: torch.Tensor,
    f_test: torch.Tensor,
    y_test: torch.Tensor,
    l2: float = 1e-4,
    iters: int = 200,
) -> float:
    """Test accuracy of a multinomial logistic regression fit on (f_train (N, D), y_train (N,)).

    Features are standardised with the training set's mean and std; full-batch L-BFGS from zero
    weights on the mean cross-entropy + l2 * |W|^2: convex and deterministic, no seed needed.
    """
    m, s = f_train.mean(0), f_train.std(0).clamp(min=1e-6)
    a, b = ((f_train - m) / s).double(), ((f_test - m) / s).double()  # (N, D), (M, D)
    classes = int(max(y_train.max(), y_test.max())) + 1
    W = torch.zeros(a.shape[1], classes, dtype=torch.float64, requires_grad=True)
    c = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, c], max_iter=iters, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(a @ W + c, y_train) + l2 * W.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return ((b @ W + c).argmax(1) == y_test).double().mean().item()


def latent_kl(model: VAE, x: torch.Tensor, batch_size: int = 1000) -> list[float]:
    """Average KL(q(z|x) || p(z)) of each latent dim over uint8 images x: encoder only."""
    return posterior(model, x, batch_size)[1]
