"""Vision transformers on CIFAR-5M classification (paper App. B.2.3-B.2.4), standard or muP.

The loop is :func:`.loop.run`: cross-entropy over the 10 classes, ``passes`` passes over the
training images in orders fixed by ``data_seed``, and LNP with the exact sum over the 10 outputs
(no Hutchinson vectors), ``B'`` drawn from the fixed validation images.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor

from ..data import FixedSet, Images, TrainOrder
from ..errors import ConfigError
from ..models import vit
from .device import pick_device
from .loop import Task, run
from .spec import BaseSpec, adamw_settings


@dataclass(frozen=True, kw_only=True)
class ViTSpec(BaseSpec):
    """Everything that defines one ViT run (one config row, one seed)."""

    parametrization: str
    mup: dict[str, float] | None
    passes: int

    kind = "ViT run"

    def check(self) -> None:
        if self.parametrization not in ("standard", "mup") or (self.parametrization == "mup") != bool(self.mup):
            raise ConfigError(f"parametrization={self.parametrization!r}: use 'standard', or 'mup' with mup settings")


def classification_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy over the batch, computed in fp32."""
    return F.cross_entropy(logits.float(), labels)


def optimizer(model: torch.nn.Module, parametrization: str, **adamw: Any) -> torch.optim.Optimizer:
    """AdamW, or ``mup.MuAdamW`` (hidden-weight learning rates divided by the width multiplier)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if parametrization == "mup":
        import mup as mup_pkg

        return mup_pkg.MuAdamW(params, **adamw)
    return torch.optim.AdamW(params, **adamw)


def _split(data_dir: Path, split: str) -> Images:
    return Images(data_dir / f"{split}_rgb.bin", data_dir / f"{split}_labels.bin")


def task(spec: ViTSpec, data_dir: str | os.PathLike, device: torch.device) -> Task:
    """The run's model, optimizer, data and loss, checked against ``data_dir``."""
    data_dir = Path(data_dir)
    order = TrainOrder(_split(data_dir, "train"), spec.batch_size, spec.data_seed, spec.passes)
    if spec.steps > order.steps:
        raise ConfigError(
            f"steps={spec.steps}: {spec.passes} passes over {data_dir / 'train_rgb.bin'} at "
            f"batch_size={spec.batch_size} have only {order.steps} steps"
        )
    measure_set = FixedSet(_split(data_dir, "validation"), spec.lnp["measure_images"], "lnp.measure_images")
    if spec.lnp["measure_batch"] > spec.lnp["measure_images"]:
        raise ConfigError(
            f"lnp.measure_batch={spec.lnp['measure_batch']} exceeds lnp.measure_images={spec.lnp['measure_images']}"
        )
    test_set = FixedSet(_split(data_dir, "test"), spec.eval["test_images"], "eval.test_images")
    model = vit.build(spec.size, spec.seed, spec.parametrization, spec.mup).to(device)
    opt = optimizer(model, spec.parametrization, **adamw_settings(spec, device))
    return Task(
        model=model,
        optimizer=opt,
        order=order,
        measure_set=measure_set,
        test_set=test_set,
        loss=classification_loss,
        units=spec.batch_size,
        unit_name="images",
        hutchinson=spec.lnp.get("hutchinson"),
        load_state=lambda path: load_file(Path(path) / "model.safetensors", device=str(device)),
        inputs={
            f"{s}_{k}.bin": data_dir / f"{s}_{k}.bin"
            for s in ("train", "validation", "test")
            for k in ("rgb", "labels")
        },
    )


def train_vit(
    spec: ViTSpec,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    state_dir: str | os.PathLike,
    *,
    checksum_max_mb: float = math.inf,
) -> dict[str, Any]:
    """Run (or resume) one ViT run; writes what :func:`.loop.run` writes."""
    device = pick_device(spec.device)
    return run(task(spec, data_dir, device), spec, device, out_dir, state_dir, checksum_max_mb)
