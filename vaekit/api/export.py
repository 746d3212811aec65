"""vaekit export: the weights as safetensors, or the decoder as ONNX."""

from __future__ import annotations

from pathlib import Path

from .runs import RunLike, open_run, prepare_out

FORMATS = {"safetensors": "model.safetensors", "onnx": "decoder.onnx"}  # -> default file name


def export(
    run: RunLike,
    *,
    format: str,
    out: str | Path | None = None,
    allow_nonfinite: bool = False,
    raw_weights: bool = False,
) -> Path:
    """Write the run's weights (format "safetensors", with the run's dataset, objective and
    epoch, so that the file alone is a run for evaluate, sample, ...) or its decoder z -> image
    ("onnx") to out (default: RUN_DIR/model.safetensors or RUN_DIR/decoder.onnx); returns the
    path."""
    from ..formats.export import save_onnx, save_safetensors

    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    r = open_run(run, device="cpu", allow_nonfinite=allow_nonfinite, raw_weights=raw_weights)
    out = prepare_out(out)
    if out is None:
        if r.folder is None:
            raise ValueError("out is needed to export a model that has no run directory")
        out = r.folder / FORMATS[format]
    if format == "safetensors":  # with the run's record: evaluate and sample open the file
        return save_safetensors(r.model, out, r.ckpt)
    return save_onnx(r.model, out)
