"""Sharing a trained model: weights as safetensors (config in the metadata), the decoder as ONNX.

Both formats are plain data that load without running pickled code. The dependencies are
optional (pip install "vaekit[export]") and imported only here.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from .. import outputs
from .._version import __version__
from ..models import LatentModel


def _need(module: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise ImportError(
            f"this export needs the '{module.split('.')[0]}' package: pip install 'vaekit[export]'"
        ) from None


# A run's checkpoint fields a weights file carries, so that evaluate, sample and the other
# commands open the file as they open the run: its data and objective, how far it trained.
RECORD_FIELDS = ("train_config", "objective_config", "epoch", "step", "batch")


def save_safetensors(model: LatentModel, path: str | Path, record: dict | None = None) -> Path:
    """All weights as one safetensors file; the model config rides along as JSON metadata, and
    so do record's RECORD_FIELDS (record: the run's checkpoint, when there is one)."""
    st = _need("safetensors.torch")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"model_config": outputs.dumps(model.cfg.to_dict()), "vaekit_version": __version__}
    meta |= {k: outputs.dumps(record[k]) for k in RECORD_FIELDS if k in (record or {})}
    return outputs.write_bytes(path, st.save(state, metadata=meta))


def read_safetensors(path: str | Path, *, allow_nonfinite: bool = False) -> dict:
    """save_safetensors' file as a checkpoint dict (vaekit.checkpoint's layout): the weights
    under "model", model_config, and the record fields it carries (files of vaekit 0.1
    included); weights holding NaN or Inf are refused unless allow_nonfinite."""
    st = _need("safetensors")
    from ..checkpoint import CheckpointError, refuse_nonfinite, upgrade

    if not Path(path).is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        with st.safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # the library's own error types differ across its versions
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path}: not a readable safetensors file ({first})") from None
    if "model_config" not in meta:
        raise ValueError(f"{path}: no model_config in its metadata; not a vaekit export")
    record = {k: json.loads(meta[k]) for k in RECORD_FIELDS if k in meta}
    ckpt = upgrade({"model": state, "model_config": json.loads(meta["model_config"]), **record})
    if not allow_nonfinite:
        refuse_nonfinite(ckpt["model"], path)
    return ckpt


class _Decoder(torch.nn.Module):
    """z (N, D) (and int64 labels (N,) of a conditional model) -> images (N, C, H, W) in
    [0, 1]: what a sampler elsewhere needs."""

    def __init__(self, model: LatentModel):
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.decode(z) if label is None else self.model.decode(z, y=label)


def save_onnx(model: LatentModel, path: str | Path) -> Path:
    """The decoder as ONNX with a dynamic batch: input "z" (N, D), output "x" (N, C, H, W); a
    conditional model's takes (z, label), label int64 (N,) in [0, num_classes).

    One self-contained file, weights included, written atomically. A model too large for one
    protobuf (torch's exporter switches at 1.5 GB) gets its weights in PATH.data beside it:
    both files are printed and both are needed. Returns path.
    """
    _need("onnxscript")  # torch's ONNX exporter builds the graph with it
    path = Path(path)
    z = torch.randn(2, model.top_dim)
    args, names, dynamic = (z,), ["z"], {"z": {0: torch.export.Dim("batch")}}
    if model.conditional:
        batch = dynamic["z"][0]
        args, names = (z, torch.tensor([0, 1])), ["z", "label"]
        dynamic = {"z": {0: batch}, "label": {0: batch}}
    decoder = _Decoder(model.cpu().eval()).eval()
    # export into a private folder beside path (.NAME.tmpPID, removed if this process is
    # killed, by the next train of the run) under path's own name (an external data file
    # records the name it was written as), then move each file into place
    tmp = outputs.temp_path(path)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        with quiet_onnx_export():
            torch.onnx.export(
                decoder,
                args,
                str(tmp / path.name),
                input_names=names,
                output_names=["x"],
                dynamic_shapes=dynamic,
                dynamo=True,
                external_data=False,  # weights inside the .onnx unless it would pass 2 GB
                verbose=False,
            )
        extra = sorted(p.name for p in tmp.iterdir() if p.name != path.name)
        for name in [*extra, path.name]:  # the graph last: it is what names the others
            outputs.move_into_place(tmp / name, path.parent / name)
    except OSError as e:
        raise outputs.output_error(e, path) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not extra:
        # weights left by an earlier export that stored them outside; this file doesn't use them
        path.with_name(path.name + ".data").unlink(missing_ok=True)
    for name in extra:
        print(
            f"wrote {path.parent / name} (the weights, too large to go inside {path.name}: "
            "copy both files, side by side)"
        )
    return path


# What torch 2.13's exporter says on every export, none of it about the model exported: its
# op registry notes that torchvision's detection ops (nms, roi_align, ...) are skipped when
# torchvision is not installed (a decoder uses none), and torch.export deep-copies its own
# pytree specs through a constructor it has deprecated (torch's internals, not our call).
ONNX_REGISTRY_LOGGER = "torch.onnx._internal.exporter._registration"
LEAFSPEC_DEPRECATED = r"`isinstance\(treespec, LeafSpec\)` is deprecated"  # a FutureWarning
# A conditional decoder's z and label share their batch axis: the exporter notes that it names
# it once (a UserWarning about its naming, not the model).
SHARED_AXIS = r"The axis name: .* will not be used"


class _NoTorchvisionNotes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("torchvision is not installed")


@contextmanager
def quiet_onnx_export() -> Iterator[None]:
    """Silence, for the block only, exactly the exporter's known-harmless notes above; every
    other warning and log line of the export still shows."""
    logger, notes = logging.getLogger(ONNX_REGISTRY_LOGGER), _NoTorchvisionNotes()
    logger.addFilter(notes)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", LEAFSPEC_DEPRECATED, FutureWarning)
            warnings.filterwarnings("ignore", SHARED_AXIS, UserWarning)
            yield
    finally:
        logger.removeFilter(notes)
