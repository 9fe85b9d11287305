"""Language models: training runs, their summaries, Tables 1-2, isocompute, Figs. 1, 7, 8, 10, 11."""

from __future__ import annotations

import argparse
import json

import pandas as pd

from ..io import write_table
from .common import CHECKSUM_MB, by_dataset, caption, command, figure, log, preemptible, run_spec, style, summary

INT, FLOAT = {"type": int}, {"type": float}
LM_RUN_FILES = ("done", "metrics", "lnp", "eval", "settings")


def train_lm(a: argparse.Namespace) -> None:
    from ..train import RunSpec, train

    spec = run_spec(RunSpec, a)
    preemptible(lambda: train(spec, a.data_dir, a.out_dir, a.state_dir, a.backbone, checksum_max_mb=a.checksum_max_mb))


def lm_table(a: argparse.Namespace) -> None:
    from ..analysis.tables import lm_table as table

    df = table(json.loads(a.sizes), a.vocab_size, a.tolerance)
    write_table(df, a.out_csv)
    write_table(df, a.out_md)
    log.info("\n%s", df.to_string())


def lm_isocompute(a: argparse.Namespace) -> None:
    from ..analysis import lm

    runs = pd.read_csv(a.runs)
    budgets = lm.budgets(runs, a.budgets)
    write_table(lm.isocompute(pd.read_parquet(a.curves), runs, budgets, "test_loss"), a.out_loss)
    write_table(lm.isocompute(pd.read_parquet(a.lnp), runs, budgets, "chi_pos"), a.out_pos)


def read_fits(a: argparse.Namespace, loss: str) -> pd.DataFrame:
    """The ``loss`` (train or test) fit of each data set, from the fits tables its summary wrote."""
    tables = by_dataset(a.datasets, a.fits).items()
    fits = [pd.read_csv(f).assign(dataset=n) for n, f in tables]
    return pd.concat([f[f["loss"] == loss] for f in fits], ignore_index=True)


def fig01(a: argparse.Namespace) -> None:
    from ..figures import fig01_scaling

    data = {n: (pd.read_csv(r), pd.read_parquet(w)) for n, r, w in zip(a.datasets, a.runs, a.lnp)}
    fits = read_fits(a, "train")
    fig01_scaling.plot(data, fits, a.pdf, a.png, **style(a))
    caption(a, fig01_scaling.caption_values(data, fits))


def fig07(a: argparse.Namespace) -> None:
    from ..figures import fig07_test_loss

    data = {n: pd.read_csv(r) for n, r in by_dataset(a.datasets, a.runs).items()}
    fits = read_fits(a, "test")
    fig07_test_loss.plot(data, fits, a.pdf, a.png, **style(a))
    caption(a, fig07_test_loss.caption_values(data, fits))


def fig08(a: argparse.Namespace) -> None:
    from ..figures import fig08_isocompute

    data = {n: (pd.read_csv(lo), pd.read_csv(po)) for n, lo, po in zip(a.datasets, a.loss, a.pos)}
    fig08_isocompute.plot(data, a.pdf, a.png, **style(a))
    caption(a, fig08_isocompute.caption_values(data))


def fig_components(a: argparse.Namespace) -> None:
    from ..figures import fig10_components

    data = {n: (pd.read_parquet(lnp), pd.read_csv(runs)) for n, lnp, runs in zip(a.datasets, a.lnp, a.runs)}
    fig10_components.plot(data, a.pdf, a.png, **style(a))
    caption(a, fig10_components.caption_values(data))


def register(sub) -> None:
    """The language-model commands: training, summaries, tables, then the figures."""
    command(
        sub,
        "train-lm",
        train_lm,
        "train (or resume) one language model or probe, LNP in the loop",
        spec={"help": "the run's settings as JSON (RunSpec)"},
        data_dir={},
        out_dir={},
        state_dir={},
        checksum_max_mb=CHECKSUM_MB,
        backbone={"default": None},
    )
    summary(
        sub, "lm-summary", "collect the runs of one data set into summary tables", LM_RUN_FILES, "tokens", "test", True
    )
    command(
        sub,
        "lm-table",
        lm_table,
        "Tables 1-2: sizes with measured parameter counts",
        sizes={"help": "JSON {name: size}"},
        vocab_size=INT,
        tolerance=FLOAT,
        out_md={},
        out_csv={},
    )
    command(
        sub,
        "lm-isocompute",
        lm_isocompute,
        "test loss and chi_pos at fixed compute budgets C = 6 N D",
        runs={},
        curves={},
        lnp={},
        budgets=INT,
        out_loss={},
        out_pos={},
    )
    _figures(sub)


def _figures(sub) -> None:
    figure(
        sub,
        "fig01",
        fig01,
        "Fig. 1: loss scaling and chi_pos dynamics",
        lists=("datasets", "runs", "lnp", "fits"),
    )
    figure(
        sub,
        "fig07",
        fig07,
        "Fig. 7: test-loss scaling",
        lists=("datasets", "runs", "fits"),
    )
    figure(sub, "fig08", fig08, "Fig. 8: isocompute curves", lists=("datasets", "loss", "pos"))
    figure(
        sub,
        "fig-components",
        fig_components,
        "Figs. 10-11: all LNP components, a row of panels per data set",
        lists=("datasets", "lnp", "runs"),
    )
