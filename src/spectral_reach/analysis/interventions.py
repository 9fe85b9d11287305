"""The intervention study (paper Sec. 6-7): how each variant of a data set's language models (its
optimizer, schedule, initialisation or learning rate; ``base``: the data set's own runs) trains and
how far it reaches into the spectral tail.

Per variant and size, seed means at the end of training: the final test and train loss, and
chi_pos, chi_net and the loss change of the optimizer's own step over plain gradient descent's
(``delta_update / delta``) in the last measurement window; per variant, the power law
``L = E + A N^-alpha`` of the final test loss.
"""

from __future__ import annotations

import pandas as pd

from .claims import by_size
from .lm import loss_fits, window_means

BASE = "base"
LAST = ["chi_pos", "chi_net", "delta", "delta_update"]


def last_window(windows: pd.DataFrame) -> pd.DataFrame:
    """Per (variant, size, seed): the mean of each component over the run's last measurement window."""
    keys = ["variant", "size", "seed"]
    last = windows[windows["window"] == windows.groupby(keys)["window"].transform("max")]
    return window_means(last, keys, [c for c in LAST if c in last])


def table(runs: pd.DataFrame, windows: pd.DataFrame) -> pd.DataFrame:
    """One row per variant and size (smallest first; ``base`` first): seed means and the seed count."""
    ends = runs.merge(last_window(windows), on=["variant", "size", "seed"])
    if "delta_update" in ends:
        ends["update_over_gd"] = ends["delta_update"] / ends["delta"]
    cols = ["final_test_loss", "final_train_loss", "chi_pos", "chi_net"] + (
        ["update_over_gd"] if "update_over_gd" in ends else []
    )
    out = ends.groupby(["variant", "size"]).agg(
        params=("params", "first"), seeds=("seed", "nunique"), **{c: (c, "mean") for c in cols}
    )
    order = list(by_size(runs).index)
    variants = [BASE] + sorted(v for v in runs["variant"].unique() if v != BASE)
    out = out.reset_index()
    out["variant"] = pd.Categorical(out["variant"], variants, ordered=True)
    out["size"] = pd.Categorical(out["size"], order, ordered=True)
    return out.sort_values(["variant", "size"]).astype({"variant": str, "size": str}).reset_index(drop=True)


def fits(runs: pd.DataFrame, max_rel_error: float) -> pd.DataFrame:
    """The power-law fits of the final losses (:func:`.lm.loss_fits`) of each variant's runs."""
    return pd.concat(
        [loss_fits(g, max_rel_error).assign(variant=v) for v, g in runs.groupby("variant", sort=False)],
        ignore_index=True,
    )
