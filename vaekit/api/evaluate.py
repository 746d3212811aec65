"""vaekit evaluate: the test-set record of a run (loss, ELBO, NLL bound, bits/dim, active
units, linear probe)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import NONNEG_INT, POSITIVE_INT
from .runs import Run, RunLike, checked, open_run, prepare_out

if TYPE_CHECKING:
    import torch


def stage(what: str) -> None:
    """Progress on stderr (stdout is the result: --json)."""
    print(f"evaluate: {what}...", file=sys.stderr, flush=True)


def evaluate(
    run: RunLike,
    *,
    batch_size: int = 500,
    iw_samples: int | None = None,
    iw_chunk: int = 50,
    iw_batch: int = 250,
    probe: bool = True,
    limit: int = 0,
    out: str | Path | None = None,
    device: str = "cpu",
    data_dir: str | Path | None = None,
    allow_nonfinite: bool = False,
    raw_weights: bool = False,
) -> dict:
    """The record `vaekit evaluate --json` prints, of the first `limit` test images (0: all):
    dataset, family, epoch, ..., test_loss, recon, kl, elbo (nats), with iw_samples K the
    importance-weighted bound nll_iw (nats) and its standard error nll_iw_sem (its progress
    kept beside the checkpoint, so a stopped evaluation resumes), bits_per_dim (of the best
    bound) and bits_per_dim_from, active_units (top group) and active_units_per_group, and with
    probe (on labelled data) probe_accuracy, a logistic regression's on the latent means; for
    a model with discrete codes (vqvae) codebook (usage) and, once a prior is fitted over the
    codes, prior_bits_per_image; a model's auxiliary loss terms under aux.
    A conditional model is given the test labels: its bounds are on log P(x|y). Written to
    out (JSON) when given."""
    from ..losses import bits_per_dim

    batch_size = checked("batch_size", batch_size, POSITIVE_INT)
    if iw_samples is not None:
        iw_samples = checked("iw_samples", iw_samples, POSITIVE_INT)
    iw_chunk = checked("iw_chunk", iw_chunk, POSITIVE_INT)
    iw_batch = checked("iw_batch", iw_batch, POSITIVE_INT)
    n = checked("limit", limit, NONNEG_INT) or None
    r = open_run(run, device, data_dir, allow_nonfinite, raw_weights)
    out = prepare_out(out)
    x, y_test = r.test_set()  # quick; its errors stay one line on stderr
    if iw_samples and not r.model.has_kl:
        raise ValueError(
            f"--iw-samples: a {r.model.cfg.family} model has no posterior density, so no "
            "likelihood bound; drop --iw-samples"
        )
    x, y_test = x[:n], y_test[:n]
    y = y_test if r.model.conditional else None  # a conditional model's bounds are of x given y
    res = bound_record(r, x, batch_size, iw_samples, y)
    if hasattr(r.model, "codes"):
        res.update(code_record(r, x, batch_size))
    nll = None if res["elbo"] is None else -res["elbo"]
    if iw_samples:
        nll = add_iw_bound(res, r, x, iw_samples, iw_chunk, iw_batch, y)
    res["bits_per_dim"] = None if nll is None else bits_per_dim(nll, x[0].numel())
    res.update(latent_record(r, x, y_test, batch_size, probe, n))
    if out is not None:
        from ..outputs import write_json

        write_json(out, res)
    return res


def bound_record(
    r: Run, x: torch.Tensor, batch_size: int, iw_samples: int | None, y: torch.Tensor | None
) -> dict:
    """What the run is and its test loss, recon, KL and ELBO on images x (given labels y, for a
    conditional model; see vaekit.evaluate.evaluate)."""
    from ..evaluation.bound import evaluate as loss_and_elbo

    stage(f"loss and ELBO of {len(x):,} test images")
    ckpt = r.ckpt
    res = {
        "dataset": r.train_config["dataset"],
        "split": "test",
        "family": r.model.cfg.family,
        "likelihood": r.model.cfg.likelihood,
        "epoch": ckpt.get("epoch"),
        "step": ckpt.get("step"),
        "mid_epoch_steps": ckpt.get("batch", 0),
        "iw_samples": iw_samples,
        "conditional": r.model.conditional,
        **loss_and_elbo(r.model, x, batch_size=batch_size, y=y),
    }
    res["bits_per_dim_from"] = None if res["elbo"] is None else "elbo"
    return res


def code_record(r: Run, x: torch.Tensor, batch_size: int) -> dict:
    """A model with discrete codes (vqvae): the codebook's usage by images x (perplexity,
    codes used, dead codes) and, with its PixelCNN prior fitted (`vaekit prior RUN --kind
    pixelcnn`), that prior's -log p of their code grids in bits per image
    (prior_bits_per_image) and nats."""
    import math

    from ..evaluation.codes import codebook_usage
    from ..priors.codes import code_grids
    from ..priors.fit import mean_nll

    stage(f"codebook usage of {len(x):,} test images")
    k = code_grids(r.model, x, batch_size)
    res = {"codebook": codebook_usage(k, r.model.cfg.net.codebook_size)}
    fitted = getattr(r.model, "prior", None)
    if fitted is not None:
        stage("the PixelCNN prior's likelihood of the test codes")
        nats = mean_nll(fitted, k, batch_size)
        res.update(prior_nats_per_image=nats, prior_bits_per_image=nats / math.log(2))
    return res


def add_iw_bound(
    res: dict, r: Run, x: torch.Tensor, K: int, chunk: int, batch: int, y: torch.Tensor | None
) -> float:
    """Add the K-sample importance-weighted bound (nats), its standard error, time and record
    file to res (bits/dim are then taken from it); returns the NLL bound."""
    import torch

    from .. import checkpoint
    from ..evaluation.bound import iw_log_px_saved
    from ..runtime.allocator import keep_freed_memory

    if r.path is None:
        raise ValueError("iw_samples needs a run directory or checkpoint (its progress file)")
    stem = checkpoint.resolve(r.path).with_suffix("")
    # channels-last: on CPU the bound's millions of decoder passes run ~3x faster (the same
    # numbers up to rounding), in batches of 250 samples that stay in cache; and each pass
    # reuses the last one's freed buffers (mnist-hvae: 1.1-1.3x)
    model = r.model.to(memory_format=torch.channels_last)
    keep_freed_memory()
    stage(f"importance-weighted bound, K={K}, of {len(x):,} test images")
    log_px, info = iw_log_px_saved(model, x, K, stem=stem, chunk=chunk, batch_size=batch, y=y)
    nll = res["nll_iw"] = -log_px.mean().item()
    res["nll_iw_sem"] = (log_px.std() / len(x) ** 0.5).item() if len(x) > 1 else None
    res["iw_seconds"], res["iw_record"] = info["seconds"], info["record"]
    res["bits_per_dim_from"] = "nll_iw"
    return nll


def latent_record(
    r: Run, x: torch.Tensor, y_test: torch.Tensor, batch_size: int, probe: bool, n: int | None
) -> dict:
    """Active units of the test images' latent means (top group, and per group) and, with
    probe on labelled data, the linear probe's accuracy on them, trained on the first n
    training images (None: all)."""
    from ..evaluation.bound import active_units_per_group, linear_probe, posterior
    from ..losses import active_units

    stage("active units")
    y = y_test if r.model.conditional else None
    mu_test = posterior(r.model, x, y=y)[0]
    res = {
        "active_units": active_units(mu_test)[0],  # of the top group
        "active_units_per_group": active_units_per_group(r.model, x, batch_size, y=y),
    }
    if not probe or len(y_test.unique()) < 2:  # an unlabelled folder: nothing to classify
        return res
    x_train, y_train = (t[:n] for t in r.split("train"))
    stage(f"linear probe: encoding {len(x_train):,} training images")
    prepared = r.model.likelihood.prepare_eval(x_train)
    y = y_train if r.model.conditional else None
    mu_train = posterior(r.model, prepared, desc="encoding", y=y)[0]
    stage("linear probe: fitting a logistic regression on their latent means (L-BFGS)")
    res["probe_accuracy"] = linear_probe(mu_train, y_train, mu_test, y_test)
    return res
