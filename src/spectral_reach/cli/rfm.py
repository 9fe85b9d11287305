"""Random-feature models against theory (Fig. 3): per-alpha LNP, theory curves, deviations."""

from __future__ import annotations

import argparse

import pandas as pd

from ..io import write_table
from .common import caption, command, figure, log, style

INT = {"type": int}


def rfm_lnp(a: argparse.Namespace) -> None:
    from .. import rfm

    log.info("RFM alpha=%g: %d seeds, N=%d, D=%d, P=%d", a.alpha, a.seeds, a.n_samples, a.input_dim, a.width)
    write_table(rfm.run([a.alpha], a.n_samples, a.input_dim, a.width, a.seeds, a.first_seed), a.out)


def rfm_theory(a: argparse.Namespace) -> None:
    from .. import rfm

    write_table(rfm.theory(a.alphas, a.input_dim, a.kernel_samples, a.teacher_draws, a.seed), a.out)


def rfm_summary(a: argparse.Namespace) -> None:
    from .. import rfm

    runs = pd.concat([pd.read_parquet(p) for p in a.lnp], ignore_index=True)
    table = rfm.deviations(runs, pd.read_csv(a.theory))
    write_table(runs, a.out_lnp)
    write_table(table, a.out_csv)
    write_table(
        table[
            [
                "alpha",
                "dev_chi_loss",
                "dev_chi_net",
                "dev_chi_pos_kernel",
                "dev_chi_pos_teacher",
                "dev_chi_pos_linear",
                "chi_pos_kernel_within_spread",
                "kta_identity_max_abs_err",
            ]
        ],
        a.out_md,
    )
    log.info("deviation table:\n%s", table.to_string())


def fig03(a: argparse.Namespace) -> None:
    from ..figures import fig03_rfm

    runs = pd.read_parquet(a.lnp)
    fig03_rfm.plot(runs, pd.read_csv(a.theory), a.input_dim, a.pdf, a.png, **style(a))
    caption(a, fig03_rfm.caption_values(runs, pd.read_csv(a.deviations)))


def register(sub) -> None:
    command(
        sub,
        "rfm-lnp",
        rfm_lnp,
        "LNP of random-feature models at initialisation, one alpha",
        alpha={"type": float},
        n_samples=INT,
        input_dim=INT,
        width=INT,
        seeds=INT,
        first_seed=INT,
        out={},
    )
    command(
        sub,
        "rfm-theory",
        rfm_theory,
        "theory curves of the RFM components",
        alphas={"type": float, "nargs": "+"},
        input_dim=INT,
        kernel_samples=INT,
        teacher_draws=INT,
        seed=INT,
        out={},
    )
    command(
        sub,
        "rfm-summary",
        rfm_summary,
        "collect RFM runs; deviation table against theory",
        lnp={"nargs": "+", "help": "per-alpha LNP tables"},
        theory={},
        out_lnp={},
        out_csv={},
        out_md={},
    )
    figure(
        sub,
        "fig03",
        fig03,
        "Fig. 3: RFM spectra and LNP against theory",
        files=("lnp", "theory", "deviations"),
        input_dim=INT,
    )
