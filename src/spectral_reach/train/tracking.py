"""A run watched live: TensorBoard event files in the run's folder, written as it trains.

Tags (x axis: the optimizer step): ``train/loss`` and ``train/lr`` per step, ``train/<unit>_per_s``
at each progress line, ``test/loss`` at each evaluation, ``lnp/<component>`` at each measured
step (``chi_loss``, ``chi_net``, ``chi_pos``, ``delta``, ``delta_update``) and
``lnp/<group>/chi_net``, ``lnp/<group>/chi_pos`` per parameter group where the run splits it.
``tensorboard --logdir runs/<run_name>`` shows a whole study, also while it runs on a cluster.

A run that resumes at step ``s`` purges the events at steps ``>= s`` that the killed attempt wrote
(TensorBoard's ``purge_step``), so each curve continues without duplicate steps; a run that starts
from step 0 starts a fresh folder.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Mapping

#: Folder of a run's event files, inside its output folder.
FOLDER = "tensorboard"
#: The LNP components logged at each measured step.
COMPONENTS = ("chi_loss", "chi_net", "chi_pos", "delta", "delta_update")


class Tracker:
    """TensorBoard's ``SummaryWriter`` on ``<out_dir>/tensorboard`` from step ``start`` on."""

    def __init__(self, out_dir: Path, start: int) -> None:
        from torch.utils.tensorboard import SummaryWriter  # tensorboard is imported only by a training run

        self.path = Path(out_dir) / FOLDER
        if start == 0:
            shutil.rmtree(self.path, ignore_errors=True)  # a fresh run: no curve of an earlier one
        self.writer = SummaryWriter(self.path, purge_step=start or None, flush_secs=10)

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Log ``{tag: value}`` at ``step``; NaN values (not measured) are left out."""
        for tag, value in values.items():
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                self.writer.add_scalar(tag, value, step)

    def lnp(self, step: int, row: Mapping[str, float], groups: list[dict]) -> None:
        """One measured step's components, and each parameter group's ``chi_net`` and ``chi_pos``."""
        self.scalars(step, {f"lnp/{k}": row[k] for k in COMPONENTS if k in row})
        for g in groups:
            self.scalars(step, {f"lnp/{g['group']}/{k}": g[k] for k in ("chi_net", "chi_pos")})

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
