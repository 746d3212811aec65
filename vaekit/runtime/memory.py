"""Will a training step fit in memory? An estimate made before any real tensor is allocated:
the model is built on PyTorch's meta device (shapes only) and run once on a one-image batch to
count the activations; weights, gradients and AdamW's two moments are 4 x 4 bytes a parameter."""

from __future__ import annotations

import os

import torch

from ..config import ModelConfig
from ..errors import TrainError
from ..models import create_model

ACTIVATION_FACTOR = 3  # outputs kept for backward, their gradients and the workspace besides
WARN_FRACTION, REFUSE_FRACTION = 0.5, 0.9
LARGE_MODEL = 50_000_000  # parameters: a checkpoint of ~600 MB; say so


def step_bytes(cfg: ModelConfig, batch_size: int, samples: int = 1) -> tuple[int, int]:
    """(parameters, estimated bytes of one training step at batch_size, with `samples` noise
    draws per image): parameter state plus every module's output, times ACTIVATION_FACTOR.
    Outputs are counted for batches of one and two images: what grows with the batch is per
    image, the rest once a step (a VampPrior's pseudo-inputs)."""
    with torch.device("meta"):
        model = create_model(cfg)
    outputs = [0]

    def count(module, args, out) -> None:
        if not list(module.children()):  # leaves only: containers repeat their children
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    outputs[0] += t.numel() * t.element_size()

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    totals = []
    try:
        for n in (1, 2):
            outputs[0] = 0
            x = torch.zeros(n, cfg.in_channels, *cfg.image_size, device="meta")
            y = torch.zeros(n, dtype=torch.long, device="meta")
            model(x, **({"y": y} if model.conditional else {}))
            totals.append(outputs[0])
    finally:
        for h in hooks:
            h.remove()
    params = sum(p.numel() for p in model.parameters())
    per_image, per_step = totals[1] - totals[0], 2 * totals[0] - totals[1]
    return params, 16 * params + ACTIVATION_FACTOR * (per_step + per_image * batch_size * samples)


def available_bytes(device: torch.device) -> int:
    """Free memory where the step runs: the GPU's free memory, else the host's available."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def check_memory(
    cfg: ModelConfig, batch_size: int, device: torch.device, samples: int = 1, log=print
) -> int:
    """Refuse, in one line naming the settings to change, a step that would not fit in memory;
    warn above half of it and for very large models. Returns the estimate in bytes."""
    params, need = step_bytes(cfg, batch_size, samples)
    free = available_bytes(device)
    gib = 2**30
    what = (
        f"a training step of this model ({params:,} parameters, {cfg.in_channels}x"
        f"{cfg.image_size[0]}x{cfg.image_size[1]} images, batch {batch_size}) needs about "
        f"{need / gib:.1f} GiB"
    )
    change = "lower --batch-size or --image-size, or a smaller --latent-dim or --channels"
    if need > REFUSE_FRACTION * free:
        raise TrainError(f"{what} but {free / gib:.1f} GiB is free on {device}: {change}")
    if need > WARN_FRACTION * free:
        log(f"warning: {what} of the {free / gib:.1f} GiB free on {device}")
    if params > LARGE_MODEL:
        log(
            f"warning: {params:,} parameters ({12 * params / gib:.1f} GiB a checkpoint): "
            f"is that intended? ({change})"
        )
    return need
