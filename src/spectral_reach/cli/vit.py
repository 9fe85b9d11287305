"""Vision transformers, standard and muP: training runs, their summary, Tables 3-4, Fig. 9."""

from __future__ import annotations

import argparse
import json

import pandas as pd

from ..io import write_table
from .common import CHECKSUM_MB, caption, command, figure, log, preemptible, run_spec, style, summary

VIT_RUN_FILES = ("done", "metrics", "lnp", "settings")


def train_vit(a: argparse.Namespace) -> None:
    from ..train.vit import ViTSpec
    from ..train.vit import train_vit as train

    spec = run_spec(ViTSpec, a)
    preemptible(lambda: train(spec, a.data_dir, a.out_dir, a.state_dir, checksum_max_mb=a.checksum_max_mb))


def vit_table(a: argparse.Namespace) -> None:
    from ..analysis.tables import vit_table as table

    df = table(json.loads(a.sizes), a.tolerance)
    write_table(df, a.out_csv)
    write_table(df, a.out_md)
    log.info("\n%s", df.to_string())


def fig09(a: argparse.Namespace) -> None:
    from ..figures import fig09_vit

    runs, windows = pd.read_csv(a.runs), pd.read_parquet(a.lnp)
    fig09_vit.plot(runs, windows, pd.read_parquet(a.metrics), a.pdf, a.png, **style(a))
    caption(a, fig09_vit.caption_values(runs, windows))


def register(sub) -> None:
    command(
        sub,
        "train-vit",
        train_vit,
        "train (or resume) one vision transformer, LNP in the loop",
        spec={"help": "the run's settings as JSON (ViTSpec)"},
        data_dir={},
        out_dir={},
        state_dir={},
        checksum_max_mb=CHECKSUM_MB,
    )
    summary(sub, "vit-summary", "collect the ViT runs into summary tables", VIT_RUN_FILES, "images", "train")
    command(
        sub,
        "vit-table",
        vit_table,
        "Tables 3-4: ViT sizes with measured parameter counts",
        sizes={"help": "JSON {parametrization: {name: size}}"},
        tolerance={"type": float},
        out_md={},
        out_csv={},
    )
    figure(
        sub, "fig09", fig09, "Fig. 9: ViT training loss and chi_pos, standard and muP", files=("runs", "lnp", "metrics")
    )
