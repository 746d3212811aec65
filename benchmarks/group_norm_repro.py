"""Minimal reproduction for an upstream report: ATen's CPU group_norm on channels-last float32
input loses the variance when a group's mean is large against its spread.

    python benchmarks/group_norm_repro.py

Each row: the error of F.group_norm (and, for comparison, F.instance_norm, the same function
with one group per channel) in float32 against float64 on the same (float32-rounded) input,
forward and backward, as max|got - want| / max|want| per output. Input x = offset + N(0, 1),
shape (2, 4, 8, 8), one group per channel; a correct float32 kernel is within ~1e-7 * offset.

Seen with torch 2.13.0+cpu on an AMD EPYC Zen 4 (family 25 model 17: AVX-512, AVX512_BF16, no
AMX; torch's CPU capability AVX512), one thread, 2026-12-06:

    offset  layout             group_norm y / dx / dw   instance_norm y / dx / dw
         0  contiguous          7e-08 / 9e-08 / 1e-07       6e-08 / 9e-08 / 7e-08
         0  channels_last       1e-07 / 2e-07 / 1e-07       6e-08 / 9e-08 / 7e-08
        10  contiguous          2e-07 / 1e-07 / 6e-07       2e-07 / 1e-07 / 4e-07
        10  channels_last       2e-05 / 2e-05 / 1e-05       2e-07 / 1e-07 / 4e-07
       100  contiguous          2e-06 / 4e-06 / 1e-05       2e-06 / 7e-07 / 2e-06
       100  channels_last       2e-03 / 2e-03 / 1e-03       2e-06 / 7e-07 / 2e-06
      1000  contiguous          3e-05 / 4e-05 / 1e-04       1e-05 / 4e-06 / 2e-05
      1000  channels_last       4e-01 / 6e-01 / 6e-01       1e-05 / 4e-06 / 2e-05

(At the seed network's size, (16, 64, 28, 28), offset 100 gives 1e-2 and offset 1000 gives
errors of 1e2 to 1e6: the output is garbage.) Identical rows with ONEDNN_MAX_CPU_ISA=AVX2
(oneDNN is not involved) and ATEN_CPU_CAPABILITY=avx2; with ATEN_CPU_CAPABILITY=default (no
vectorisation) the channels-last rows are the same too: not the vectorisation width, the
algorithm. The channels-last forward kernel (GroupNormKernelImplChannelsLastInternal in
aten/src/ATen/native/cpu/group_norm_kernel.cpp, as read at pytorch commit 4d479dbb; torch
2.13's numbers above behave the same) accumulates sum(x) and sum(x^2) per channel in float32
and takes var = E[x^2] - E[x]^2, clamped at 0: catastrophic cancellation once mean/std is
large, and rstd = 1/sqrt(eps) when the difference rounds to <= 0. The contiguous kernel uses
Welford-style row moments and stays within rounding of the input; its backward's
(ds - db * mean) * rstd loses a little more than instance_norm's at large offsets (1e-4 at
offset 1000), still rounding.

Related upstream: pytorch/pytorch#54293 (the same one-pass variance on CPU, for the contiguous
kernel, since replaced by row moments), pytorch/pytorch#61521 (the contiguous backward made more
stable), pytorch/pytorch#89485 and #100234 (the channels-last CPU paths added). Searching the
issue trackers for the channels-last case found no report of it.

Not this bug: issue 28's 2.9e-2 gradient error of the seed network (group_norm on contiguous
tensors there) is one ReLU. In tests/test_model.py's case, the decoder's BatchNorm output
decoder.3.1[9, 2, 3, 5] is -1.04e-7 in float64 and +6.1e-7 in float32 (a rounding-sized
difference, 1e-7 of the layer's largest value, 6.7), so float32's ReLU passes a gradient of -0.054
(12% of that layer's largest) that float64's blocks; this reproduces bit for bit on this AMD
CPU. Both float32 norms are within 5e-6 of float64 everywhere else; with ONEDNN_MAX_CPU_ISA=AVX2
the convolutions round differently and that ReLU input stays negative. Comparing float32 with
float64 elementwise through a ReLU (or a max-pool near a tie) is ill-posed; tests/
test_gradients.py makes the float64 run take float32's branches.

What vaekit does about it (issue 28): vaekit.models.nets.InstanceNorm2d runs group_norm only on
NCHW-contiguous batches, where it passes the float64 check, and torch's instance norm on any
other layout (tests/test_gradients.py checks both against float64).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| / max |want|."""
    return ((got.double() - want).abs().max() / want.abs().max()).item()


def errors(norm, x32: torch.Tensor, w: torch.Tensor, b: torch.Tensor, dy: torch.Tensor) -> list:
    """[y, dx, dw] errors of norm(x, w, b) in float32 against float64 on the same input."""
    outs = []
    for dtype in (torch.float32, torch.float64):
        x = x32.to(dtype, copy=True).requires_grad_()
        wd = w.to(dtype, copy=True).requires_grad_()
        bd = b.to(dtype, copy=True).requires_grad_()
        y = norm(x, wd, bd)
        y.backward(dy.to(dtype))
        outs.append((y, x.grad, wd.grad))
    return [rel_err(a, r) for a, r in zip(*outs, strict=True)]


def main() -> None:
    torch.manual_seed(0)
    N, C, H, W = 2, 4, 8, 8
    norms = {
        "group_norm": lambda x, w, b: F.group_norm(x, C, w, b, 1e-5),
        "instance_norm": lambda x, w, b: F.instance_norm(x, weight=w, bias=b, eps=1e-5),
    }
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print("offset  layout          " + "   ".join(f"{k:>13s} y / dx / dw" for k in norms))
    for offset in (0.0, 10.0, 100.0, 1000.0):
        x = offset + torch.randn(N, C, H, W)
        w, b, dy = 1 + 0.3 * torch.randn(C), 0.3 * torch.randn(C), torch.randn(N, C, H, W)
        for layout in (torch.contiguous_format, torch.channels_last):
            xl, dyl = x.contiguous(memory_format=layout), dy.contiguous(memory_format=layout)
            errs = [errors(f, xl, w, b, dyl) for f in norms.values()]
            cols = ["{:.0e} / {:.0e} / {:.0e}".format(*e) for e in errs]
            name = "contiguous" if layout == torch.contiguous_format else "channels_last"
            print(f"{offset:6.0f}  {name:14s}  " + "   ".join(f"{c:>25s}" for c in cols))


if __name__ == "__main__":
    main()
