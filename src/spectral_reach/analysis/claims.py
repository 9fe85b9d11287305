"""The numbers behind the paper's claims, as a run measured them, for the figures' report captions.

Each figure module's ``caption_values()`` builds a plain dict from these; ``figures.caption`` renders it
into the figure's caption template. Nothing here decides what a figure shows: the verdicts
(``falls``, ``ordered``) are the plain comparisons the captions name, over seed means.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def by_size(runs: pd.DataFrame) -> pd.Series:
    """Parameters per size, smallest first."""
    return runs.groupby("size")["params"].first().sort_values()


def decreasing(values: list[float]) -> bool:
    """Strictly decreasing: each larger model ends lower."""
    return bool(np.all(np.diff(np.asarray(values, float)) < 0))


def trajectory(windows: pd.DataFrame, runs: pd.DataFrame, column: str) -> list[dict]:
    """Per size (smallest first), the seed-mean curve of ``column`` (raw steps, then window means):
    its ``first`` value (the first measured step: the curve's first point, as the captions say, not
    the first window's mean that the claims table compares), its ``peak`` and its ``last`` window,
    and ``fall = peak / last``."""
    curve = windows.groupby(["size", "step"])[column].mean()
    rows = []
    for size, params in by_size(runs).items():
        c = curve.loc[size]
        rows.append(
            {
                "size": size,
                "params": int(params),
                "first": float(c.iloc[0]),
                "peak": float(c.max()),
                "last": float(c.iloc[-1]),
                "fall": float(c.max() / c.iloc[-1]) if c.iloc[-1] > 0 else float("nan"),
            }
        )
    return rows


def final(runs: pd.DataFrame, column: str) -> list[float]:
    """Seed mean of a per-run ``column`` per size, smallest first."""
    means = runs.groupby("size")[column].mean()
    return [float(means[size]) for size in by_size(runs).index]


def dynamics(windows: pd.DataFrame, runs: pd.DataFrame, column: str) -> dict:
    """A component's curve per size with the two verdicts of the paper's claims about it: it ends
    below where it started for every size (``falls``), and the last windows decrease with size
    (``ordered``)."""
    sizes = trajectory(windows, runs, column)
    return {
        "sizes": sizes,
        "falls": all(s["last"] < s["first"] for s in sizes),
        "rises": all(s["last"] > s["first"] for s in sizes),
        "ordered": decreasing([s["last"] for s in sizes]),
    }
