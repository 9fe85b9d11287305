"""The claims table: every claim of the paper judged on this run's tables (results/claims.*)."""

from __future__ import annotations

import argparse
import json

import pandas as pd

from ..io import atomic_file, write_table
from .common import command, log


def claims(a: argparse.Namespace) -> None:
    from ..analysis import claims_table

    lm = {
        name: {"runs": pd.read_csv(r), "lnp": pd.read_parquet(w), "fits": pd.read_csv(f)}
        for name, r, w, f in zip(a.datasets, a.lm_runs, a.lm_lnp, a.fits)
    }
    probe = {
        name: {"lnp": pd.read_parquet(w), "ratios": pd.read_csv(r)}
        for name, w, r in zip(a.datasets, a.probe_lnp, a.ratios)
    }
    vit = None if not a.vit_runs else {"runs": pd.read_csv(a.vit_runs), "lnp": pd.read_parquet(a.vit_lnp)}
    checks = {"hutchinson": pd.read_csv(a.hutchinson), "entk": pd.read_csv(a.entk)} if a.hutchinson else {}
    interventions = {
        name: {"runs": pd.read_csv(r), "lnp": pd.read_parquet(w)}
        for name, r, w in zip(a.intervention_datasets, a.intervention_runs, a.intervention_lnp)
    }
    table = claims_table.claims_table(
        lm,
        probe,
        vit,
        checks,
        pd.read_csv(a.rfm) if a.rfm else None,
        rfm_seeds=a.rfm_seeds,
        frozen_rtol=a.frozen_chi_net_rtol,
        hutchinson_sigmas=a.hutchinson_sigmas,
        interventions=interventions,
    )
    write_table(table, a.out_csv)
    text = claims_table.markdown(table, a.run_name)
    with atomic_file(a.out_md) as tmp:
        tmp.write_text(text)
    with atomic_file(a.out_html) as tmp:
        tmp.write_text(claims_table.html(table, a.run_name))
    with atomic_file(a.out_record) as tmp:  # the config these results were made under (spectral_reach.provenance)
        tmp.write_text(json.dumps({"config": json.loads(a.config_record)}, indent=1, sort_keys=True) + "\n")
    log.info("%s", text)


def register(sub) -> None:
    lists = ("datasets", "lm_runs", "lm_lnp", "fits", "probe_lnp", "ratios")
    lists += ("intervention_datasets", "intervention_runs", "intervention_lnp")
    command(
        sub,
        "claims",
        claims,
        "every claim of the paper judged on the run's tables: claims.csv, .md and .html",
        **{f: {"nargs": "*", "default": []} for f in lists},
        vit_runs={"default": None},
        vit_lnp={"default": None},
        hutchinson={"default": None},
        entk={"default": None},
        rfm={"default": None, "help": "the RFM deviations (none: the config has no rfm section)"},
        rfm_seeds={"type": int, "default": 0},
        frozen_chi_net_rtol={"type": float},
        hutchinson_sigmas={"type": float},
        run_name={},
        out_csv={},
        out_md={},
        out_html={},
        config_record={"help": "the config's result-shaping part as JSON (spectral_reach.provenance)"},
        out_record={},
    )
