"""What the framework callbacks share: the schedule, the model checks, the batch of a step, the table."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import torch
from torch import Tensor, nn

from ..record import LNPRecord
from ..windows import log_windows, step_windows


class Schedule:
    """Which optimizer steps are measured: every ``every`` steps from step 0, or the paper's
    log-spaced ``windows = (per_decade, width)`` over ``total`` steps (set by :meth:`start`); the
    final step ``total - 1`` always."""

    def __init__(self, every: int | None, windows: tuple[int, int] | None) -> None:
        if (every is None) == (windows is None):
            raise ValueError("give one schedule: every=N optimizer steps, or windows=(per_decade, width)")
        self.every, self.windows = every, windows
        self.window_of: dict[int, int] = {}
        self.last = -1

    def start(self, total: int) -> None:
        self.last = total - 1
        if self.windows:
            self.window_of = step_windows(log_windows(total, *self.windows))

    def __contains__(self, step: int) -> bool:
        if step == self.last:
            return True
        return step % self.every == 0 if self.every else step in self.window_of


def refuse_batchnorm(model: nn.Module, who: str) -> None:
    """In eval mode (where LNP measures) a BatchNorm is another function than in the training step."""
    norms = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if norms:
        raise ValueError(
            f"{who}: module '{norms[0]}' is a BatchNorm, which computes another function in eval mode "
            "(running statistics) than in the training step (batch statistics, which mix the samples), so "
            "no measurement describes this training. Use LayerNorm or GroupNorm, or measure a custom loop."
        )


def concat(batches: list[Any]) -> Any:
    """The micro-batches of one step as one batch: tensors (also in tuples, lists and dicts) concatenated."""
    first = batches[0]
    if isinstance(first, Tensor):
        return torch.cat(batches)
    if isinstance(first, Mapping):
        return {k: concat([b[k] for b in batches]) for k in first if all(k in b for b in batches)}
    return type(first)(concat(list(parts)) for parts in zip(*batches))


class Table:
    """Rows of measured steps, written as Parquet (atomically) by the process that owns the file;
    with parameter groups, their rows (long form) beside it, in ``<name>_groups.parquet``."""

    def __init__(self, path: str | Path) -> None:
        self.path, self.rows, self.group_rows = Path(path), [], []

    @property
    def groups_path(self) -> Path:
        return self.path.with_name(f"{self.path.stem}_groups{self.path.suffix}")

    def add(self, step: int, window: int | None, rec: LNPRecord) -> dict[str, float]:
        """Keep a measured step's rows; the components to log, named ``lnp/<name>`` (and
        ``lnp/<group>/chi_net``, ``lnp/<group>/chi_pos`` per parameter group)."""
        where = {"step": step, "window": window}
        self.rows.append({**where, **rec.as_row()})
        self.group_rows += [{**where, **g} for g in rec.group_rows()]
        logged = {f"lnp/{k}": getattr(rec, k) for k in ("chi_loss", "chi_net", "chi_pos", "delta")}
        for name, g in rec.groups.items():
            logged.update({f"lnp/{name}/chi_net": g.chi_net, f"lnp/{name}/chi_pos": g.chi_pos})
        return logged

    def write(self) -> None:
        for path, rows in ((self.path, self.rows), (self.groups_path, self.group_rows)):
            if rows:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.tmp")
                pd.DataFrame(rows).to_parquet(tmp, index=False)
                tmp.replace(path)
