"""The settings every run kind shares, checked once, and the AdamW settings they give."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch

from ..errors import ConfigError
from .device import LNP_PRECISIONS


@dataclass(frozen=True, kw_only=True)
class BaseSpec:
    """The settings every run kind has; :class:`.lm.RunSpec` and :class:`.vit.ViTSpec` add theirs."""

    size: dict[str, Any]
    batch_size: int
    steps: int
    lr: float
    seed: int
    data_seed: int
    betas: tuple[float, float]
    eps: float
    weight_decay: float
    warmup: int
    schedule: str
    decay_fraction: float | None = None  # schedule wsd: the share of the steps its decay takes
    lnp: dict[str, Any]
    eval: dict[str, int]
    checkpoint_every: int
    log_every: int = 100  # not in the workflow's params (it changes no number): spectral_reach.cadence
    tracking: dict[str, Any] | None = None  # W&B and MLflow (.tracking); not in the params either
    device: str = "auto"
    precision: str = "fp32"
    compile: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        """The spec from the rule's params ``d``: unknown keys are refused, naming the known ones;
        the settings every run kind shares are checked here, a kind's own in :meth:`check`."""
        names = {f.name for f in fields(cls)}
        if unknown := set(d) - names:
            raise ConfigError(f"unknown {cls.kind} settings {sorted(unknown)}; known: {sorted(names)}")
        spec = cls(**{**d, "betas": tuple(d["betas"])})
        if spec.lr <= 0:
            raise ConfigError(f"lr must be positive, not {spec.lr}")
        if spec.lnp["width"] > spec.steps:
            raise ConfigError(f"lnp.width={spec.lnp['width']} exceeds steps={spec.steps}")
        if spec.lnp.get("precision", "fp32") not in LNP_PRECISIONS:
            raise ConfigError(f"lnp.precision must be one of {LNP_PRECISIONS}, not {spec.lnp['precision']!r}")
        if spec.warmup >= spec.steps:
            raise ConfigError(f"warmup={spec.warmup} must be below steps={spec.steps}")
        spec.check()
        return spec

    kind = "run"

    def check(self) -> None:
        """Checks of a run kind's own settings."""


def adamw_settings(spec: Any, device: torch.device) -> dict[str, Any]:
    """The run's learning rate, betas, eps and weight decay, and ``fused`` (one kernel for all
    parameters) where torch has the fused kernel, on CPU and CUDA: on CPU it took a demo ViT's
    step from 2.2 ms of per-tensor updates to 0.3 ms."""
    return dict(
        lr=spec.lr,
        betas=spec.betas,
        eps=spec.eps,
        weight_decay=spec.weight_decay,
        fused=device.type in ("cpu", "cuda"),
    )
