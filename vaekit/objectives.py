"""Training objectives, one home each: a callable (model, x, step, eps, y=None) -> terms (y:
int64 class labels (B,) of a conditional model's batch, passed on to the model).

terms["loss"] is the scalar the loop backpropagates (a mean over the batch, so the learning
rate does not depend on the batch size) and nothing else is; terms["per_image"] (B,) is what
the loop reports as the training loss, in nats (or the likelihood's units). Registered by name
in vaekit.config.OBJECTIVES. Test-set figures are always the true ELBO and KL
(vaekit.evaluation.bound), whatever is trained on.
"""

from __future__ import annotations

import torch

from .config import OBJECTIVES, ObjectiveConfig, resolve
from .losses import iw_bound
from .models.base import with_labels


def kl_weight(step: int, beta: float, warmup: int) -> float:
    """Weight of the KL term at an optimizer step: rises linearly from 0 to beta over warmup."""
    return beta * min(1.0, step / warmup) if warmup else beta


def kl_objective(kl_dims: torch.Tensor, free_bits: float) -> torch.Tensor:
    """The KL term trained on, from per-image per-dim KLs (B, D): sum_d max(mean_b kl_bd, fb).

    Free bits (Kingma et al. 2016) on the batch-mean KL of each latent dim; fb = 0 gives the
    batch mean of the true KL. No host sync: the clamp stays on the device.
    """
    return kl_dims.mean(0).clamp(min=free_bits).sum()


def kl_units(kl: torch.Tensor, per: str) -> torch.Tensor:
    """A group's per-element KL (B, *shape) -> (B, units) for free bits: one unit per latent
    dim ("dim"), or the group's summed KL as one unit ("group")."""
    k = kl.flatten(1)
    return k if per == "dim" else k.sum(1, keepdim=True)


def with_aux(terms: dict, aux: dict[str, torch.Tensor] | None) -> dict:
    """Add a model's auxiliary loss terms (forward's "aux": name -> (B,) or scalar, e.g. a
    VQ-VAE's commitment loss) to the loss (their batch means) and to the reported per-image
    loss; terms["aux"] keeps them, detached, for reporting by name. No aux: terms unchanged."""
    if not aux:
        return terms
    loss, per_image = terms["loss"], terms["per_image"]
    for v in aux.values():
        loss = loss + v.mean()
        per_image = per_image + v.detach()
    return {**terms, "loss": loss, "per_image": per_image,
            "aux": {k: v.detach() for k, v in aux.items()}}  # fmt: skip


class Objective:
    """Base: K noise samples per image (the loop draws them for the global batch)."""

    samples = 1

    def __init__(self, cfg: ObjectiveConfig):
        self.cfg = cfg

    def check(self, model) -> None:
        """Refuse, in one line, a model this objective cannot train."""

    def __call__(
        self,
        model,
        x: torch.Tensor,
        step: int,
        eps: list | None = None,
        y: torch.Tensor | None = None,
    ) -> dict:
        raise NotImplementedError


class ELBO(Objective):
    """-ELBO with beta (Higgins et al. 2017), KL warm-up and free bits: recon + w * KL.

    Reports recon + beta * KL per image (the true -ELBO at beta = 1), not the warmed-up or
    floored term it optimises. A model without a KL (ae) trains on recon alone. A model's
    auxiliary terms (forward's "aux") are added to both (with_aux)."""

    def __call__(
        self,
        model,
        x: torch.Tensor,
        step: int,
        eps: list | None = None,
        y: torch.Tensor | None = None,
    ) -> dict:
        out = model(x, None if eps is None else [e[0] for e in eps], **with_labels(y))
        recon, kls = out["recon"], out["kl"]  # (B,), [(B, *shape)] per group
        loss = recon.mean()
        if not kls:
            terms = {"loss": loss, "per_image": recon.detach(), "recon": recon, "kl": None}
            return with_aux(terms, out.get("aux"))
        c = self.cfg
        w = kl_weight(step, c.beta, c.kl_warmup)
        kl_term = kl_objective(kl_units(kls[0], c.free_bits_per), c.free_bits)
        for k in kls[1:]:
            kl_term = kl_term + kl_objective(kl_units(k, c.free_bits_per), c.free_bits)
        kl = kls[0].flatten(1).sum(1)
        for k in kls[1:]:
            kl = kl + k.flatten(1).sum(1)
        loss = loss + w * kl_term
        per_image = (recon + c.beta * kl).detach()
        terms = {"loss": loss, "per_image": per_image, "recon": recon, "kl": kl}
        return with_aux(terms, out.get("aux"))


class IWAE(Objective):
    """The importance-weighted bound with K samples (Burda et al. 2015), maximised:
    loss = -mean_b log (1/K) sum_k w_bk. K = 1 is the single-sample ELBO estimator (the KL
    estimated by the same sample instead of in closed form). Needs model.log_weights."""

    @property
    def samples(self) -> int:
        return self.cfg.iw_k

    def check(self, model) -> None:
        if not model.has_kl:
            raise ValueError(
                f"objective iwae needs a model with a posterior density; the "
                f"{model.cfg.family} family has none (use --objective elbo)"
            )

    def __call__(
        self,
        model,
        x: torch.Tensor,
        step: int,
        eps: list | None = None,
        y: torch.Tensor | None = None,
    ) -> dict:
        log_w = model.log_weights(x, self.cfg.iw_k, eps=eps, **with_labels(y))  # (K, B)
        bound = iw_bound(log_w)  # (B,)
        return {"loss": -bound.mean(), "per_image": -bound.detach()}


def create_objective(cfg: ObjectiveConfig) -> Objective:
    """The objective a config names."""
    return resolve(OBJECTIVES[cfg.objective])(cfg)
