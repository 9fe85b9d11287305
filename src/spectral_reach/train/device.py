"""Where and in what precision a run computes: the device, and the LNP measurement's arithmetic."""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Iterator

import torch

LNP_PRECISIONS = ("fp32", "tf32", "bf16")


@contextmanager
def lnp_precision(precision: str, device: torch.device) -> Iterator[None]:
    """Arithmetic of an LNP measurement on ``device``; every sum still accumulates in fp32.

    ``fp32``: full fp32. ``tf32``: fp32 tensors, matmuls on TF32 tensor cores (10-bit
    mantissa inputs, fp32 accumulation). ``bf16``: the forward and backward passes under bf16
    autocast (the Linear rule forms its per-sample blocks in bf16 as well) and the remaining fp32
    matmuls on TF32. On a CPU only ``bf16`` changes anything. The training step's own precision
    is the run's ``precision``.
    """
    if precision not in LNP_PRECISIONS:
        raise ValueError(f"lnp.precision must be one of {LNP_PRECISIONS}, not {precision!r}")
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision != "fp32"
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext():
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
