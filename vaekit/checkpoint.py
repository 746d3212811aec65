"""Checkpoints: plain data (state dicts, config dicts, counters, RNG states) written atomically.

A checkpoint is a dict that loads with torch.load(weights_only=True): no pickled code.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from . import outputs
from .config import ModelConfig, ObjectiveConfig, option_names
from .errors import CheckpointError  # vaekit.checkpoint.CheckpointError too
from .models import LatentModel, create_model


def save(state: dict, path: Path) -> None:
    """Write a checkpoint atomically (vaekit.outputs): a crash leaves the old file or the new."""
    outputs.write_with(path, lambda f: torch.save(state, f))


def save_json(obj: dict, path: Path) -> None:
    """obj as strict JSON (no NaN or Infinity), atomically."""
    outputs.write_json(path, obj)


def resolve(run_or_ckpt: str | Path) -> Path:
    """A run directory (-> its last.pt) or a checkpoint file -> the checkpoint path."""
    p = Path(run_or_ckpt)
    if p.is_dir():
        p = p / "last.pt"
        if not p.is_file():
            raise CheckpointError(f"{p.parent}: no last.pt in this directory; is it a run dir?")
    elif not p.is_file():
        raise CheckpointError(f"{p}: no such run directory or checkpoint")
    return p


def nonfinite(weights: dict) -> str | None:
    """Where a state dict holds NaN or +-Inf: "tensor NAME: 12 NaN, 1 Inf" for the first such
    tensor (and how many tensors do, when more than one); None when every value is finite."""
    floats = ((k, t) for k, t in weights.items() if torch.is_tensor(t) and t.is_floating_point())
    bad = [(k, t) for k, t in floats if not torch.isfinite(t).all()]
    if not bad:
        return None
    name, t = bad[0]
    counts = ((int(t.isnan().sum()), "NaN"), (int(t.isinf().sum()), "Inf"))
    more = f"; {len(bad)} tensors in all" if len(bad) > 1 else ""
    return f"tensor {name}: " + ", ".join(f"{n} {what}" for n, what in counts if n) + more


def load(
    run_or_ckpt: str | Path,
    map_location: str | torch.device = "cpu",
    *,
    allow_nonfinite: bool = False,
) -> dict:
    """Load a checkpoint as plain data (weights_only=True); refuse anything else clearly, and
    weights holding NaN or Inf unless allow_nonfinite (forensic use: to look at them)."""
    path = resolve(run_or_ckpt)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{path}: refused, not plain data ({first})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: unreadable or truncated checkpoint ({first})") from None
    missing = [k for k in ("model", "model_config") if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a vaekit checkpoint (missing {missing})")
    ckpt = upgrade(ckpt)
    if not allow_nonfinite:
        refuse_nonfinite(ckpt["model"], path)
        refuse_nonfinite(ckpt.get("ema", {}), f"{path} (EMA)")
    return ckpt


def refuse_nonfinite(weights: dict, where: str | Path) -> None:
    """CheckpointError naming the first tensor of weights that holds NaN or Inf, if any."""
    if found := nonfinite(weights):
        raise CheckpointError(
            f"{where}: weights hold non-finite values ({found}); --allow-nonfinite "
            "(Python: allow_nonfinite=True) loads them anyway"
        )


def upgrade(ckpt: dict) -> dict:
    """A checkpoint written before model families (vaekit 0.1: a flat model config with arch,
    latent_dim, channels and beta; KL warm-up and free bits in the train config; the learned
    Gaussian variance as "logvar_x") in today's layout. Today's checkpoints pass unchanged."""
    model, train = dict(ckpt["model_config"]), dict(ckpt.get("train_config", {}))
    if "net" in model and "objective_config" in ckpt:
        return ckpt
    if "net" not in model:
        model["net"] = {k: model.pop(k) for k in sorted(option_names() & set(model))}
        model["family"] = model.get("family", "vae")
    objective = {"beta": model.pop("beta", 1.0)}
    for k in ("kl_warmup", "free_bits"):
        if k in train:
            objective[k] = train.pop(k)
    weights = {("likelihood.logvar" if k == "logvar_x" else k): v for k, v in ckpt["model"].items()}
    return {
        **ckpt,
        "model": weights,
        "model_config": model,
        "objective_config": ckpt.get("objective_config", ObjectiveConfig(**objective).to_dict()),
        "train_config": train,
    }


def build_model(
    ckpt: dict, where: str | Path = "checkpoint", raw_weights: bool = False
) -> LatentModel:
    """The model a loaded checkpoint describes, with its weights: the EMA of the weights when
    the run kept one (train --ema), unless raw_weights; a mismatch is a clear error naming the
    first tensor that does not fit and both shapes."""
    try:
        model = create_model(ModelConfig.from_dict(ckpt["model_config"]))
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{where}: its model config is not valid ({e})") from None
    got = ckpt["model"] if raw_weights or "ema" not in ckpt else ckpt["ema"]
    want = model.state_dict()
    for name, t in want.items():
        if name not in got:
            raise CheckpointError(
                f"{where}: weights do not fit its architecture (no tensor {name})"
            )
        if tuple(got[name].shape) != tuple(t.shape):
            raise CheckpointError(
                f"{where}: weights do not fit its architecture (tensor {name} is "
                f"{tuple(got[name].shape)} in the checkpoint, {tuple(t.shape)} in the model)"
            )
    extra = sorted(set(got) - set(want))
    if extra:
        raise CheckpointError(
            f"{where}: weights do not fit its architecture (unexpected {extra[0]})"
        )
    model.load_state_dict(got)
    return model


def load_model(
    run_dir_or_checkpoint: str | Path, allow_nonfinite: bool = False, raw_weights: bool = False
) -> LatentModel:
    """The trained model of a run directory (its last.pt) or a checkpoint file, on the CPU in
    eval mode: the moving average of its weights if the run kept one (train --ema), unless
    raw_weights; weights holding NaN or Inf are refused unless allow_nonfinite."""
    ckpt = load(run_dir_or_checkpoint, allow_nonfinite=allow_nonfinite)
    return build_model(ckpt, run_dir_or_checkpoint, raw_weights).eval()
