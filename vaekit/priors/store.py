"""Fitted priors in a run directory: RUN/priors/KIND.pt, plain data that loads with
torch.load(weights_only=True):

    {"kind": "gmm", "options": the prior's constructor kwargs, "state": its state dict (tensors),
     "meta": what it was fitted on (codes, seed, date, the checkpoint, the fit's options)}

written atomically (vaekit.outputs); the writer holds the run's lock (vaekit.api.prior)."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from .. import outputs
from ..config import PRIORS, resolve
from ..errors import CheckpointError
from .base import Prior

FOLDER = "priors"
KEYS = ("kind", "options", "state", "meta")


def prior_path(run_dir: str | Path, kind: str) -> Path:
    """Where a run keeps its fitted prior of a kind: RUN/priors/KIND.pt."""
    return Path(run_dir) / FOLDER / f"{kind}.pt"


def save(prior: Prior, kind: str, run_dir: str | Path, meta: dict) -> Path:
    """Write prior (of a registered kind) into run_dir as plain data, atomically; its path."""
    path = prior_path(run_dir, kind)
    state = {k: v.detach().cpu() for k, v in prior.state_dict().items()}
    data = {"kind": kind, "options": prior.options(), "state": state, "meta": meta}
    try:
        path.parent.mkdir(exist_ok=True)
    except OSError as e:
        raise outputs.output_error(e, path.parent) from None
    return outputs.write_with(path, lambda f: torch.save(data, f))


def read(run_dir: str | Path, kind: str) -> dict:
    """The plain data of a run's fitted prior of a kind; a missing or damaged file is a
    one-line CheckpointError saying what to do."""
    if kind not in PRIORS:
        raise ValueError(f"prior must be one of {sorted(PRIORS)}, got {kind!r}")
    path = prior_path(run_dir, kind)
    if not path.is_file():
        raise CheckpointError(
            f"{run_dir} has no fitted prior {kind!r} (no {path}): run `vaekit prior {run_dir} "
            f"--kind {kind}` first"
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: unreadable or damaged fitted prior ({first})") from None
    missing = [k for k in KEYS if not isinstance(data, dict) or k not in data]
    if missing:
        raise CheckpointError(f"{path}: not a vaekit fitted prior (missing {missing})")
    state, options = data["state"], data["options"]
    if not isinstance(options, dict) or not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a vaekit fitted prior (options or state malformed)")
    if not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise CheckpointError(f"{path}: not a vaekit fitted prior (state is not all tensors)")
    if data["kind"] != kind:
        raise CheckpointError(f"{path}: holds a {data['kind']!r} prior, not {kind!r}")
    return data


def load(run_dir: str | Path, kind: str) -> tuple[Prior, dict]:
    """(the fitted prior of a kind, on the CPU, its meta) from run_dir; CheckpointError in one
    line when it is missing, damaged or holds non-finite values."""
    data = read(run_dir, kind)
    path = prior_path(run_dir, kind)
    bad = [k for k, t in data["state"].items() if t.is_floating_point() and not t.isfinite().all()]
    if bad:
        raise CheckpointError(f"{path}: tensor {bad[0]} holds non-finite values; fit it again")
    try:
        prior = resolve(PRIORS[kind].prior)(**data["options"])
        prior.load_state_dict(data["state"])
    except (TypeError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{path}: does not rebuild a {kind} prior ({first})") from None
    return prior.eval(), data["meta"]
