"""Summary tables of finished training runs (language models, probes, ViTs), read from their files.

Per run: parameters, what it saw (tokens or images), the final train loss (mean over the last
``final_fraction`` of steps), the final test loss and timings; its LNP curve
(:func:`.lm.lnp_windows`); and its loss curve: the test-loss evaluations (``curves="test"``,
language models, whose scaling figures read test loss; adds ``first_<unit>``, the first
evaluation) or the training loss smoothed over ``final_fraction`` of steps (``curves="train"``,
the ViTs of Fig. 9).

A run is read only if its ``done.json`` records the settings its params file holds now
(:func:`check_current`): a run trained with other settings never reaches a table or figure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..errors import ConfigError
from ..train.fingerprint import NOT_RESULT
from .lm import final_train_loss, lnp_windows


@dataclass(frozen=True)
class RunFiles:
    """What a finished run wrote that a summary reads, and the columns that name the run."""

    key: dict
    done: str | Path
    metrics: str | Path
    lnp: str | Path
    eval: str | Path | None = None
    settings: str | Path | None = None


class StaleRun(ConfigError):
    """A finished run whose recorded settings are not the ones its config gives now."""


def check_current(key: dict, done_path: str | Path, params_path: str | Path) -> dict:
    """``done.json`` of the run named ``key``, refused unless it records each setting of the spec
    in its training job's params file (the workflow's ``results/settings/``: ``{"spec": <JSON>,
    ...}``), less :data:`NOT_RESULT`, which change no number; a setting the spec leaves out is its
    default, which the run applied. So a table or figure never shows a run of other settings."""
    done = json.loads(Path(done_path).read_text())
    params = json.loads(Path(params_path).read_text())
    spec = json.loads(params["spec"])
    want = {k: v for k, v in spec.items() if k not in NOT_RESULT}
    have = done.get("spec", {})
    if "result_version" in params:  # the code's version of the numbers (spectral_reach.version)
        want, have = (
            {**want, "result_version": params["result_version"]},
            {**have, "result_version": done.get("version")},
        )
    changed = sorted(k for k in want if want[k] != have.get(k))
    if changed:
        diff = "; ".join(f"{k}: ran with {have.get(k)!r}, config says {want.get(k)!r}" for k in changed)
        raise StaleRun(
            f"run {key} ({done_path}) is not the config's run ({params_path}): {diff}. Rerun it: "
            f"delete {done_path} and run snakemake again"
        )
    return done


def summarise(
    runs: Sequence[RunFiles], final_fraction: float, raw_steps: int, unit: str, curves: str
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(runs, lnp windows, loss curves)`` of ``runs``."""
    if curves not in ("test", "train"):
        raise ValueError(f"curves must be 'test' or 'train', not {curves!r}")
    rows, windows, loss_curves = [], [], []
    for run in runs:
        key = run.key
        done = (
            json.loads(Path(run.done).read_text())
            if run.settings is None
            else check_current(key, run.done, run.settings)
        )
        metrics = pd.read_parquet(run.metrics)
        row = {**key, "params": done["params"], unit: done[unit]}
        if curves == "test":
            if run.eval is None:
                raise ValueError(f"run {key}: test-loss curves need its eval table")
            ev = pd.read_parquet(run.eval)
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
        windows.append(lnp_windows(pd.read_parquet(run.lnp), raw_steps, unit).assign(**key))
    return pd.DataFrame(rows), pd.concat(windows, ignore_index=True), pd.concat(loss_curves, ignore_index=True)
