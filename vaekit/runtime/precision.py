"""Which floating-point precision to train in: bf16 autocast only where the hardware computes it
natively (CUDA devices that support bf16, CPUs with AVX-512 BF16 or AMX), fp32 elsewhere. On a
CPU without them, bf16 is emulated and runs several times slower than fp32 (4.5x measured on an
Intel Xeon with AVX-512 but no AVX-512 BF16)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

import torch

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """(does the device compute bf16 natively, why in words)."""
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return ok, f"{torch.cuda.get_device_name(device)} {'supports' if ok else 'lacks'} bf16"
    if device.type == "cpu":
        found = sorted(set(NATIVE_BF16_FLAGS) & cpu_flags())
        if found:
            return True, f"the CPU has {' and '.join(found)}"
        return False, "the CPU has neither AVX-512 BF16 nor AMX"
    return False, f"no native bf16 known for {device.type}"


def choose_precision(requested: str, device: torch.device, log=print) -> str:
    """auto -> bf16 where native, else fp32 (the choice and its reason logged); an explicit
    bf16 without native support is kept, with a warning that it will be slower."""
    native, why = native_bf16(device)
    if requested == "auto":
        chosen = "bf16" if native else "fp32"
        log(f"precision: {chosen} ({precision_reason(requested, device)})")
        return chosen
    if requested == "bf16" and not native:
        log(f"warning: --precision bf16 on {device.type}, but {why}: expect it to be slower")
    return requested


def precision_reason(requested: str, device: torch.device) -> str:
    """Why a run trains in the precision choose_precision gives for `requested`, in words (as
    config.json records it): "auto: the CPU has avx512_bf16", "requested (the CPU has ...)"."""
    why = native_bf16(device)[1]
    return f"auto: {why}" if requested == "auto" else f"requested ({why})"


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """The autocast context of a chosen precision ("fp32": off, "bf16": bf16 autocast)."""
    return torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16")
