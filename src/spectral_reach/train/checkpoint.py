"""Resume checkpoints: ``state_dir/step{N:08d}/`` with the model (``save_pretrained``) and
``state.pt`` (the run's fingerprint and identity, optimizer, scheduler, RNG states, the step and
every logged row so far).

A checkpoint is written to a temporary folder and renamed into place, so a folder named
``step*`` is always complete; older ones are removed only after a newer one exists. Checkpoints
of another run (other settings, data or code) are moved aside to ``<state_dir>.superseded``
(:func:`set_aside`), never resumed and never deleted by the workflow: delete that folder to free
its space, or move it back to resume those settings.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


def save(state_dir: str | os.PathLike, step: int, model: torch.nn.Module, state: dict[str, Any]) -> Path:
    """Write the checkpoint of a run that will continue at ``step``."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    final = state_dir / f"step{step:08d}"
    tmp = state_dir / f".tmp-step{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp / "model", save_original_format=False)  # our own key names: load_state_dict reads them
    torch.save(state, tmp / "state.pt")
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for old in state_dir.glob("step*"):
        if old != final:
            shutil.rmtree(old)
    log.info("checkpoint: %s", final)
    return final


def latest(state_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint, or ``None``."""
    found = sorted(Path(state_dir).glob("step*")) if Path(state_dir).exists() else []
    return found[-1] if found else None


def step_of(path: str | os.PathLike) -> int:
    """The step a checkpoint folder continues at, from its name."""
    return int(Path(path).name.removeprefix("step"))


def set_aside(state_dir: str | os.PathLike) -> Path:
    """Move ``state_dir`` to ``<state_dir>.superseded`` (replacing an older one there); its new path."""
    state_dir = Path(state_dir)
    aside = state_dir.with_name(state_dir.name + ".superseded")
    shutil.rmtree(aside, ignore_errors=True)
    state_dir.rename(aside)
    return aside


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    return torch.load(Path(path) / "state.pt", weights_only=False)
