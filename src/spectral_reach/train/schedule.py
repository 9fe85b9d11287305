"""Learning-rate schedule and the steps at which a run evaluates and measures."""

from __future__ import annotations

import math

from ..lnp import log_windows, step_windows


def lr_factor(step: int, warmup: int, total: int, schedule: str, decay_fraction: float | None = None) -> float:
    """Multiplier of the peak learning rate: linear warmup ``(step + 1) / warmup`` over ``warmup``
    steps, then ``constant`` 1, ``linear`` decay to 0 or ``cosine`` decay to 0 at ``total``, or
    ``wsd`` (warmup-stable-decay): 1, then linear decay to 0 over the last ``decay_fraction`` of
    the steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    if schedule == "constant":
        return 1.0
    if schedule == "wsd":
        if decay_fraction is None:
            raise ValueError("schedule wsd needs decay_fraction: the share of the steps its decay takes")
        decay_start = total * (1.0 - decay_fraction)
        return 1.0 if step < decay_start else max(0.0, (total - step) / max(total - decay_start, 1))
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {schedule!r}; use constant, linear, cosine or wsd")


def eval_steps(total: int, per_decade: int) -> list[int]:
    """Log-spaced steps for the test loss: 0, round(10^(k/per_decade)), ..., and the last step."""
    return sorted({w.start for w in log_windows(total, per_decade, 1)} | {total - 1})


def lnp_steps(total: int, per_decade: int, width: int) -> dict[int, int]:
    """``{step: window}`` of every step with an LNP measurement."""
    return step_windows(log_windows(total, per_decade, width))
