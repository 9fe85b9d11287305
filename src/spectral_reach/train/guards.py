"""Guards against a non-finite training state, and the advice for the run after one.

A run stops at the first non-finite training loss (read where the loop syncs anyway) and refuses
to checkpoint parameters or optimizer state that are NaN or infinite, so a resume never starts
from a broken state. The error says what rerunning the job will do and what to delete instead.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import torch

from . import checkpoint


class NonFiniteLoss(RuntimeError):
    """The training loss, the parameters or the optimizer state became NaN or infinite; nothing
    was checkpointed after it, and the message says what the next run will do."""


def finite_losses(rows: Iterable[dict[str, Any]], values: Iterable[float], last_finite: float) -> float:
    """Write each step's loss ``value`` into its metrics ``row``; the last finite loss. A non-finite
    one raises :class:`NonFiniteLoss` naming its step and the last finite loss before it."""
    for row, value in zip(rows, values):
        if not math.isfinite(value):
            raise NonFiniteLoss(
                f"step {row['step']}: training loss {value}; last finite loss {last_finite:.6g} at step {row['step'] - 1}"
            )
        row["loss"] = last_finite = value
    return last_finite


def check_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, next_step: int, last_finite: float) -> None:
    """Raise :class:`NonFiniteLoss` if a trainable parameter or a floating optimizer state is NaN or
    infinite (one host sync; the names are looked up only then)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    named += [
        (f"optimizer state {k} of {n}", t)
        for (n, p) in named
        for k, t in optimizer.state.get(p, {}).items()
        if torch.is_tensor(t) and t.is_floating_point()
    ]
    if torch.stack([torch.isfinite(t).all() for _, t in named]).all():
        return
    bad = [n for n, t in named if not torch.isfinite(t).all()]
    raise NonFiniteLoss(
        f"after step {next_step - 1} (its loss finite, {last_finite:.6g}) {len(bad)} tensors are not finite "
        f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}): not checkpointed"
    )


def next_run(state_dir: Path) -> str:
    """What rerunning the job will do after a failure, and what to delete to do otherwise."""
    if (ckpt := checkpoint.latest(state_dir)) is None:
        return "Nothing was checkpointed: the next run starts fresh. Lower the learning rate (lr) in config/."
    step = checkpoint.step_of(ckpt)
    return (
        f"Lower the learning rate (lr) in config/: a run with changed settings starts fresh (the old checkpoint "
        f"is set aside). Rerun unchanged, it resumes the last good checkpoint, {ckpt} (step {step}), and meets "
        f"this again; to start unchanged settings from step 0, delete {state_dir}"
    )
