"""Linear probes (paper Sec. 5, App. C.1): the spectral-position ratio of Eq. 12.

From each measurement window keep the top ``top_fraction`` of the ``chi_pos`` values (at least
one), which discounts the late-training overfitting that lowers ``chi_pos`` for reasons other
than reach; then, per time window ``[t0, t1)`` of normalized training time ``t = step / steps``,

    ratio = < chi_pos(pretrained backbone) >_kept, t in window  /  < chi_pos(random backbone) >_kept, t in window

In the cross variant ``chi_pos`` can be negative (the step on ``B`` raises the loss on ``B'``). A
ratio of a negative or zero mean says nothing about reach (and has no place on a log axis): it is
NaN, and ``note`` says which mean it was.
"""

from __future__ import annotations

import math

import pandas as pd


def top_per_window(lnp: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """Rows holding the largest ``ceil(fraction * n)`` ``chi_pos`` values of each measurement window."""

    def top(g: pd.DataFrame) -> pd.DataFrame:
        return g.nlargest(max(1, math.ceil(fraction * len(g))), "chi_pos")

    return lnp.groupby("window", group_keys=False)[lnp.columns.tolist()].apply(top).sort_values("step")


def ratio(
    pretrained: pd.DataFrame, random: pd.DataFrame, steps: int, fraction: float, windows: list[tuple[float, float]]
) -> pd.DataFrame:
    """Eq. 12 per time window: mean kept ``chi_pos`` of the pretrained probe over that of the random one."""
    rows = []
    kept = {
        name: top_per_window(df, fraction).assign(t=lambda d: d["step"] / steps)
        for name, df in (("pretrained", pretrained), ("random", random))
    }
    for t0, t1 in windows:
        means = {n: k.loc[(k["t"] >= t0) & (k["t"] < t1), "chi_pos"].mean() for n, k in kept.items()}
        bad = [f"mean chi_pos({n}) = {m:.3g}" for n, m in means.items() if not m > 0]
        rows.append(
            {
                "t0": t0,
                "t1": t1,
                "chi_pos_pretrained": means["pretrained"],
                "chi_pos_random": means["random"],
                "ratio": math.nan if bad else means["pretrained"] / means["random"],
                "note": "; ".join(bad) + (", not positive: no ratio" if bad else ""),
            }
        )
    return pd.DataFrame(rows)
