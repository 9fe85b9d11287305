"""Step times without a per-step host sync.

The loop reads its losses from the device every ``log_every`` steps, before a measurement and
before a checkpoint; each read waits for the device. The wall time between two reads, less what
belongs to no step (evaluations, checkpoint writes) and less the steps' own measurements (timed
on their own: a measurement syncs), is split evenly over the steps read:

    step_s = (t_read - t_previous_read - excluded - sum lnp_s) / steps read  +  this step's lnp_s

so on a GPU no queued work lands on whichever step happens to sync next.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass
class StepTimer:
    mark: float = 0.0  # perf_counter at the last read that closed an interval
    excluded: float = 0.0  # seconds since the mark that belong to no step

    def restart(self) -> None:
        """Start a new interval now (the loop's start, after a checkpoint write)."""
        self.mark, self.excluded = time.perf_counter(), 0.0

    def exclude(self, seconds: float) -> None:
        """Seconds inside the interval spent on no step (an evaluation)."""
        self.excluded += seconds

    def close(self, rows: list[dict[str, Any]]) -> None:
        """Set ``step_s`` of the steps read at this sync (their ``lnp_s`` set) and start a new interval."""
        now = time.perf_counter()
        measured = sum(row["lnp_s"] for row in rows)
        share = max(0.0, now - self.mark - self.excluded - measured) / len(rows)
        for row in rows:
            row["step_s"] = share + row["lnp_s"]
        self.mark, self.excluded = now, 0.0
