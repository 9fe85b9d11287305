"""Vision transformers on CIFAR-5M classification (paper App. B.2.3-B.2.4), standard or muP.

The loop is :func:`.loop.run`: cross-entropy over the 10 classes, ``passes`` passes over the
training images in orders fixed by ``data_seed``, and LNP with the exact sum over the 10 outputs
(no Hutchinson vectors), ``B'`` drawn from the fixed validation images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor

from ..data import FixedSet, Images, TrainOrder
from ..models import vit
from .loop import Task, build_spec, pick_device, run


@dataclass(frozen=True)
class ViTSpec:
    """Everything that defines one ViT run (one config row, one seed)."""

    size: dict[str, int]
    parametrization: str
    mup: dict[str, float] | None
    batch_size: int
    steps: int
    passes: int
    lr: float
    seed: int
    data_seed: int
    betas: tuple[float, float]
    eps: float
    weight_decay: float
    warmup: int
    schedule: str
    lnp: dict[str, Any]
    eval: dict[str, int]
    checkpoint_every: int
    log_every: int
    device: str = "auto"
    precision: str = "fp32"
    compile: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ViTSpec":
        spec = build_spec(cls, d, "ViT run")
        if spec.parametrization not in ("standard", "mup") or (spec.parametrization == "mup") != bool(spec.mup):
            raise ValueError(f"parametrization={spec.parametrization!r}: use 'standard', or 'mup' with mup settings")
        return spec


def classification_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy over the batch, computed in fp32."""
    return F.cross_entropy(logits.float(), labels)


def _split(data_dir: Path, split: str) -> Images:
    return Images(data_dir / f"{split}_rgb.bin", data_dir / f"{split}_labels.bin")


def train_vit(spec: ViTSpec, data_dir: str | os.PathLike, out_dir: str | os.PathLike,
              state_dir: str | os.PathLike) -> dict[str, Any]:
    """Run (or resume) one ViT run; writes what :func:`.loop.run` writes."""
    data_dir, device = Path(data_dir), pick_device(spec.device)
    order = TrainOrder(_split(data_dir, "train"), spec.batch_size, spec.data_seed, spec.passes)
    if spec.steps > order.steps:
        raise ValueError(f"steps={spec.steps}: {spec.passes} passes over {data_dir / 'train_rgb.bin'} at "
                         f"batch_size={spec.batch_size} have only {order.steps} steps")
    measure_set = FixedSet(_split(data_dir, "validation"), spec.lnp["measure_images"], "lnp.measure_images")
    if spec.lnp["measure_batch"] > spec.lnp["measure_images"]:
        raise ValueError(f"lnp.measure_batch={spec.lnp['measure_batch']} exceeds lnp.measure_images="
                         f"{spec.lnp['measure_images']}")
    test_set = FixedSet(_split(data_dir, "test"), spec.eval["test_images"], "eval.test_images")
    model = vit.build(spec.size, spec.seed, spec.parametrization, spec.mup).to(device)
    opt = vit.optimizer(model, spec.parametrization, lr=spec.lr, betas=spec.betas, eps=spec.eps,
                        weight_decay=spec.weight_decay)
    task = Task(model, opt, order, measure_set, test_set, classification_loss, spec.batch_size, "images", None,
                lambda path: load_file(Path(path) / "model.safetensors", device=str(device)))
    return run(task, spec, device, out_dir, state_dir)
