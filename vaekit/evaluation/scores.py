"""Anomaly and out-of-distribution scores per image, each "higher = more anomalous", in bits:

    nll        -ELBO (one posterior sample, fixed seed), or the importance-weighted -log p(x)
               with K samples: the raw likelihood, which often rates other data *more* likely
               (Nalisnick et al. 2019)
    png_bits   the image's length under a lossless compressor: PNG (Pillow, level 9) of the
               uint8 image as the model sees it (binarized for a Bernoulli model)
    complexity nll - png_bits: the model's code length beyond a generic compressor's (input
               complexity, Serra et al. 2020)
    ratio      nll - the background model's nll (a likelihood ratio, Ren et al. 2019), with a
               second model trained on broader or noised data
AUROC, AUPRC and the FPR at 95% TPR between scored images and images known to be normal come
from scikit-learn (pip install "vaekit[ood]").
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image

from ..likelihoods import to_float
from ..models import LatentModel
from .bound import iw_log_px


def png_bits(x: torch.Tensor) -> np.ndarray:
    """uint8 images (N, C, H, W) -> their PNG lengths in bits (N,) (Pillow, compress_level 9)."""
    out = np.empty(len(x))
    for i, img in enumerate(x.cpu().numpy()):
        arr = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "PNG", compress_level=9)
        out[i] = 8 * len(buf.getvalue())
    return out


@torch.inference_mode()
def nelbo_nats(model: LatentModel, x: torch.Tensor, batch_size: int = 500, seed: int = 0):
    """-ELBO per image in nats of the 8-bit (or binary) data: (N,) float64, for uint8 images as
    the model sees them; z from q(z|x) under a fixed seed, as vaekit.evaluation.bound draws it."""
    if not model.has_kl:
        raise ValueError(f"a {model.cfg.family} model has no likelihood to score with")
    device = next(model.parameters()).device
    out = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for i in range(0, len(x), batch_size):
            terms = model(to_float(x[i : i + batch_size].to(device)))
            kl = sum(k.flatten(1).sum(1) for k in terms["kl"])
            out.append((model.likelihood.discrete_nll(terms["recon"]) + kl).double().cpu())
    return torch.cat(out).numpy()


def nll_bits(model: LatentModel, x: torch.Tensor, iw_samples: int = 0, seed: int = 0):
    """The raw likelihood score in bits per image: -ELBO, or the IW bound with K samples."""
    was = model.training
    model.eval()
    try:
        if iw_samples:
            nats = -iw_log_px(model, x, iw_samples, seed=seed).numpy()
        else:
            nats = nelbo_nats(model, x, seed=seed)
    finally:
        model.train(was)
    return nats / math.log(2)


def score(
    model: LatentModel,
    x: torch.Tensor,
    iw_samples: int = 0,
    background: LatentModel | None = None,
    seed: int = 0,
    precision: str = "fp32",
) -> dict[str, np.ndarray]:
    """Every score of uint8 images x (N, C, H, W) as the model sees them (see the module doc),
    with bits_per_dim of the nll; the models run in precision ("fp32", or "bf16" autocast)."""
    from ..runtime.precision import autocast

    with autocast(precision, next(model.parameters()).device):
        nll = nll_bits(model, x, iw_samples, seed)
        ratio = None if background is None else nll - nll_bits(background, x, iw_samples, seed)
    comp = png_bits(x)
    out = {"nll": nll, "bits_per_dim": nll / x[0].numel(), "png_bits": comp,
           "complexity": nll - comp}  # fmt: skip
    return out if ratio is None else {**out, "ratio": ratio}


def ood_metrics(normal: np.ndarray, anomalous: np.ndarray) -> dict[str, float]:
    """AUROC, AUPRC (anomalies as the positive class) and the FPR at 95% TPR of a score that is
    higher for anomalies, by scikit-learn."""
    try:
        from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve
    except ImportError:
        raise ImportError("--in-dist needs scikit-learn: pip install 'vaekit[ood]'") from None
    y = np.r_[np.zeros(len(normal)), np.ones(len(anomalous))]
    s = np.r_[normal, anomalous]
    fpr, tpr, _ = roc_curve(y, s)
    return {
        "auroc": float(roc_auc_score(y, s)),
        "auprc": float(average_precision_score(y, s)),
        "fpr_at_95_tpr": float(fpr[np.searchsorted(tpr, 0.95, side="left")]),
    }
