"""Summary tables of finished training runs (language models, probes, ViTs), read from run folders.

Per run: parameters, what it saw (tokens or images), the final train loss (mean over the last
``final_fraction`` of steps), the final test loss and timings; its LNP curve
(:func:`.lm.lnp_windows`); and its loss curve: the test-loss evaluations (``curves="test"``,
language models, whose scaling figures read test loss; adds ``first_<unit>``, the first
evaluation) or the training loss smoothed over ``final_fraction`` of steps (``curves="train"``,
the ViTs of Fig. 9).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from .lm import final_train_loss, lnp_windows


def summarise(
    runs: Sequence[tuple[dict, str | Path]], final_fraction: float, raw_steps: int, unit: str, curves: str
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(runs, lnp windows, loss curves)`` of ``runs``: ``(key columns, run folder)`` pairs."""
    if curves not in ("test", "train"):
        raise ValueError(f"curves must be 'test' or 'train', not {curves!r}")
    rows, windows, loss_curves = [], [], []
    for key, path in runs:
        path = Path(path)
        done = json.loads((path / "done.json").read_text())
        metrics = pd.read_parquet(path / "metrics.parquet")
        row = {**key, "params": done["params"], unit: done[unit]}
        if curves == "test":
            ev = pd.read_parquet(path / "eval.parquet")
            row[f"first_{unit}"] = int(ev[unit].iloc[0])
            loss_curves.append(ev.assign(**key))
        else:
            smooth = max(1, int(len(metrics) * final_fraction))
            loss_curves.append(
                metrics[["step", unit]].assign(loss=metrics["loss"].rolling(smooth, min_periods=1).mean(), **key)
            )
        rows.append(
            {
                **row,
                "final_train_loss": final_train_loss(metrics, final_fraction),
                "final_test_loss": done["final_test_loss"],
                "train_s": done["train_s"],
                "lnp_s": done["lnp_s"],
            }
        )
        windows.append(lnp_windows(pd.read_parquet(path / "lnp.parquet"), raw_steps, unit).assign(**key))
    return pd.DataFrame(rows), pd.concat(windows, ignore_index=True), pd.concat(loss_curves, ignore_index=True)
