"""Linear probes on pretrained and random backbones: Eq. 12 ratios, Figs. 4 and 5."""

from __future__ import annotations

import argparse
import json

import pandas as pd

from ..io import write_table
from .common import by_dataset, caption, command, figure, log, run_files, style

BACKBONES = ("pretrained", "random")
PER_BACKBONE = tuple(f"{b}_{file}" for b in BACKBONES for file in ("done", "settings"))


def probe_summary(a: argparse.Namespace) -> None:
    from ..analysis import lm, probe
    from ..analysis.runs import check_current

    params = pd.read_csv(a.lm_runs).groupby("size")["params"].first()
    windows = [tuple(w) for w in json.loads(a.time_windows)]
    ratios, curves = [], []
    for key, files in run_files(a, (*BACKBONES, *PER_BACKBONE)):
        size, seed = key["size"], key["seed"]
        for b in BACKBONES:
            check_current({**key, "backbone": b}, files[f"{b}_done"], files[f"{b}_settings"])
        tables = {b: pd.read_parquet(files[b]) for b in BACKBONES}
        r = probe.ratio(tables["pretrained"], tables["random"], a.steps, a.top_fraction, windows)
        ratios.append(r.assign(size=size, seed=seed, params=params[size]))
        for b, df in tables.items():
            curves.append(lm.lnp_windows(df, a.raw_steps).assign(size=size, seed=seed, backbone=b))
    out = pd.concat(ratios, ignore_index=True)
    write_table(out, a.out_ratios)
    write_table(pd.concat(curves, ignore_index=True), a.out_lnp)
    log.info("chi_pos(pretrained) / chi_pos(random):\n%s", out.to_string())


def fig04(a: argparse.Namespace) -> None:
    from ..figures import fig04_probe_ratio

    data = {n: pd.read_csv(r) for n, r in by_dataset(a.datasets, a.ratios).items()}
    fig04_probe_ratio.plot(data, a.pdf, a.png, **style(a))
    caption(a, fig04_probe_ratio.caption_values(data))


def fig05(a: argparse.Namespace) -> None:
    from ..figures import fig05_chi_net

    data = {
        n: (pd.read_parquet(full), pd.read_parquet(pr), pd.read_csv(r))
        for n, full, pr, r in zip(a.datasets, a.lm, a.probe, a.runs)
    }
    fig05_chi_net.plot(data, a.pdf, a.png, **style(a))
    caption(a, fig05_chi_net.caption_values(data))


def register(sub) -> None:
    command(
        sub,
        "probe-summary",
        probe_summary,
        "Eq. 12 ratios and LNP windows of the probes of one data set",
        keys={"help": "JSON list of {size, seed} of each probe pair"},
        pretrained={"nargs": "+", "help": "each pair's LNP table on the pretrained backbone"},
        random={"nargs": "+", "help": "each pair's LNP table on the random backbone"},
        **{
            f: {"nargs": "+", "help": "each pair's done.json / params file (settings.smk) on that backbone"}
            for f in PER_BACKBONE
        },
        lm_runs={},
        steps={"type": int},
        top_fraction={"type": float},
        time_windows={"help": "JSON list of [t0, t1]"},
        raw_steps={"type": int},
        out_ratios={},
        out_lnp={},
    )
    figure(sub, "fig04", fig04, "Fig. 4: chi_pos ratio of probes, pretrained over random", lists=("datasets", "ratios"))
    figure(
        sub, "fig05", fig05, "Fig. 5: chi_net of full training and of probes", lists=("datasets", "lm", "probe", "runs")
    )
