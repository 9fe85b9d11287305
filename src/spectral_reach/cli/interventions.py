"""The intervention study (issue 39): variant runs' summary, their table and fits, Fig. 13."""

from __future__ import annotations

import argparse

import pandas as pd

from ..io import write_table
from .common import caption, command, figure, log, style, summary
from .lm import LM_RUN_FILES


def interventions_table(a: argparse.Namespace) -> None:
    from ..analysis import interventions

    runs, windows = pd.read_csv(a.runs), pd.read_parquet(a.lnp)
    table = interventions.table(runs, windows)
    for path in (a.out_csv, a.out_md):
        write_table(table, path)
    fits = interventions.fits(runs, a.fit_max_rel_error)
    write_table(fits, a.out_fits)
    log.info("interventions:\n%s\nfits:\n%s", table.to_string(), fits.to_string())


def group_windows(paths: list[str]) -> pd.DataFrame:
    """Window means of each parameter group's chi_pos and chi_net, per run (``lnp_groups.parquet``)."""
    parts = [pd.read_parquet(p).assign(run=i) for i, p in enumerate(paths)]
    rows = pd.concat(parts, ignore_index=True)
    return rows.groupby(["run", "group", "window"], as_index=False)[["step", "chi_pos", "chi_net"]].mean()


def fig13(a: argparse.Namespace) -> None:
    from ..figures import fig13_interventions

    runs, windows = pd.read_csv(a.runs), pd.read_parquet(a.lnp)
    groups = group_windows(a.groups) if a.groups else None
    fig13_interventions.plot(runs, windows, groups, a.size, a.pdf, a.png, **style(a))
    caption(a, fig13_interventions.caption_values(pd.read_csv(a.table), pd.read_csv(a.fits), a.size))


def register(sub) -> None:
    summary(sub, "variant-summary", "collect a data set's base and variant runs into summary tables", LM_RUN_FILES,
            "tokens", "test")  # fmt: skip
    command(
        sub,
        "interventions-table",
        interventions_table,
        "per variant and size: final losses and last-window LNP (seed means); per variant: power-law fits",
        runs={},
        lnp={},
        fit_max_rel_error={"type": float},
        out_csv={},
        out_md={},
        out_fits={},
    )
    figure(
        sub,
        "fig13",
        fig13,
        "Fig. 13: the interventions, chi_pos and loss per variant, per-layer LNP",
        files=("runs", "lnp", "table", "fits", "size"),
        groups={"nargs": "*", "default": [], "help": "lnp_groups.parquet of the base runs at --size"},
    )
