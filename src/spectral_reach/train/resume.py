"""Which checkpoint a run continues from: only one of itself.

A checkpoint records the run's identity and fingerprint (:mod:`.fingerprint`). The newest one in
the state folder is resumed if its fingerprint is this run's; any other (edited settings, other
data, older code, none recorded, unreadable) is moved aside to ``<state_dir>.superseded``
(:func:`.checkpoint.set_aside`) and the run starts fresh, its log saying why in one line
(``its run differs: lr: 0.01 -> 0.005``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from torch import Tensor

from . import checkpoint, fingerprint

log = logging.getLogger(__name__)


def resumable(
    state_dir: Path, identity: dict[str, Any], load_weights: Callable[[Path], dict[str, Tensor]]
) -> tuple[Path, dict[str, Any], dict[str, Tensor]] | None:
    """``(checkpoint, state, weights)`` of the newest checkpoint in ``state_dir`` if it is of the run
    ``identity`` is; else ``None``, any checkpoint there set aside with the reason logged."""
    if (ckpt := checkpoint.latest(state_dir)) is None:
        return None
    fp = fingerprint.fingerprint(identity)
    try:
        state = checkpoint.load_state(ckpt)
        weights = load_weights(ckpt / "model") if state.get("fingerprint") == fp else None
    except Exception as e:  # any unreadable checkpoint: never crash on it, never resume it
        state, weights, why = {}, None, f"it cannot be read ({type(e).__name__}: {e})"
    else:
        if "fingerprint" not in state:
            why = "it records no fingerprint (written by an older version)"
        else:
            why = "its run differs: " + "; ".join(fingerprint.differences(state.get("identity", {}), identity))
    if weights is None:
        aside = checkpoint.set_aside(state_dir)
        log.warning("not resuming %s: %s. Starting fresh; the old checkpoints are in %s", ckpt, why, aside)
        return None
    return ckpt, state, weights
