"""What the framework callbacks share: the schedule, the model checks, the batch of a step, the table."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import torch
from torch import Tensor, nn

from ..windows import log_windows, step_windows


class Schedule:
    """Which optimizer steps are measured: every ``every`` steps from step 0, or the paper's
    log-spaced ``windows = (per_decade, width)`` over ``total`` steps (set by :meth:`start`)."""

    def __init__(self, every: int | None, windows: tuple[int, int] | None) -> None:
        if (every is None) == (windows is None):
            raise ValueError("give one schedule: every=N optimizer steps, or windows=(per_decade, width)")
        self.every, self.windows = every, windows
        self.window_of: dict[int, int] = {}

    def start(self, total: int) -> None:
        if self.windows:
            self.window_of = step_windows(log_windows(total, *self.windows))

    def __contains__(self, step: int) -> bool:
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
    """Rows of measured steps, written as Parquet (atomically) by the process that owns the file."""

    def __init__(self, path: str | Path) -> None:
        self.path, self.rows = Path(path), []

    def add(self, step: int, window: int | None, row: dict[str, Any]) -> dict[str, float]:
        """Keep a measured step's row; the components to log, named ``lnp/<name>``."""
        self.rows.append({"step": step, "window": window, **row})
        return {f"lnp/{k}": row[k] for k in ("chi_loss", "chi_net", "chi_pos", "delta")}

    def write(self) -> None:
        if self.rows:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            pd.DataFrame(self.rows).to_parquet(tmp, index=False)
            tmp.replace(self.path)
