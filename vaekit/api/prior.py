"""vaekit prior: fit a learned prior over a trained model's codes, kept in the run directory
(RUN/priors/KIND/prior.pt), which sample, metrics and evaluate then use."""

from __future__ import annotations

import sys
from pathlib import Path

from ..config import NONNEG_INT, POSITIVE, POSITIVE_INT, SEED
from .runs import RunLike, checked, open_run

KINDS = ("pixelcnn",)


def prior(
    run: RunLike,
    kind: str = "pixelcnn",
    *,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    channels: int = 48,
    layers: int = 6,
    seed: int = 0,
    limit: int = 0,
    device: str = "cpu",
    data_dir: str | Path | None = None,
    allow_nonfinite: bool = False,
    raw_weights: bool = False,
) -> dict:
    """Fit a gated PixelCNN (channels wide, layers deep) over the code grids of the run's
    first `limit` training images (0: all) for `epochs`, evaluating on the test codes after
    each; resumes a stopped fit from RUN/priors/KIND/prior.pt. Returns {"kind", "path",
    "options", "epochs", "history": a row per epoch (train and test nats per grid, test bits)}.
    Needs a run of a family with discrete codes (vqvae)."""
    import torch

    from ..evaluation.codes import code_grids
    from ..priors.pixelcnn import PixelCNN
    from ..runtime.precision import native_bf16
    from ..training.prior_fit import PRIOR_FILE, fit_prior

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    epochs, batch_size = (
        checked("epochs", epochs, POSITIVE_INT),
        checked("batch_size", batch_size, POSITIVE_INT),
    )
    lr, seed = checked("lr", lr, POSITIVE), checked("seed", seed, SEED)
    channels, layers = (
        checked("channels", channels, POSITIVE_INT),
        checked("layers", layers, POSITIVE_INT),
    )
    n = checked("limit", limit, NONNEG_INT) or None
    r = open_run(run, device, data_dir, allow_nonfinite, raw_weights)
    model = r.model
    if not hasattr(model, "codes") or r.folder is None:
        raise ValueError(
            f"--kind {kind} fits a prior over discrete codes: the {model.cfg.family} family "
            "has none (train --family vqvae), or give a run directory"
        )
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    log(f"prior: code grids of the training and test images ({model.latent_shapes})")
    lik = model.likelihood
    codes = code_grids(model, lik.prepare_eval(r.split("train")[0][:n]))
    test_codes = code_grids(model, r.test_set()[0])
    torch.manual_seed(seed)
    fitted = PixelCNN(model.cfg.net.codebook_size, codes.shape[1:], channels, layers)
    fitted = fitted.to(next(model.parameters()).device)
    autocast = native_bf16(next(model.parameters()).device)[0]  # bf16 where it is native
    folder = r.folder / "priors" / kind
    state = fit_prior(fitted, kind, codes, test_codes, folder, epochs=epochs,
                      batch_size=batch_size, lr=lr, seed=seed, autocast=autocast,
                      log=log)  # fmt: skip
    return {"kind": kind, "path": str(folder / PRIOR_FILE), "options": state.get("options"),
            "epochs": state["epoch"], "history": state["history"]}  # fmt: skip
