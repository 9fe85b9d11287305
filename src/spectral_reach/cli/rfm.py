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


def rfm_optimizers(a: argparse.Namespace) -> None:
    import json

    from ..rfm_optimizers import run

    settings = json.loads(a.settings)
    optimizers = {name: settings[name] for name in ("gd", "adam", "ng")}
    finals, curves = run(a.alpha, settings["widths"], settings["budgets"], optimizers, settings["n_train"],
                         settings["n_test"], settings["dim"], settings["seeds"], settings["measure_points"])  # fmt: skip
    write_table(finals, a.out_finals)
    write_table(curves, a.out_lnp)
    log.info("final test losses:\n%s", finals.to_string())


def rfm_optimizer_fits(a: argparse.Namespace) -> None:
    from ..rfm_optimizers import exponents

    fits = exponents(pd.concat([pd.read_csv(f) for f in a.finals], ignore_index=True), a.fit_max_rel_error)
    write_table(fits, a.out)
    log.info("exponents:\n%s", fits.to_string())


def fig14(a: argparse.Namespace) -> None:
    import json

    from ..figures import fig14_rfm_optimizers

    finals = pd.concat([pd.read_csv(f) for f in a.finals], ignore_index=True)
    curves = pd.concat([pd.read_parquet(f) for f in a.lnp], ignore_index=True)
    fits, published = pd.read_csv(a.fits), json.loads(a.published)
    fig14_rfm_optimizers.plot(finals, curves, fits, published, a.pdf, a.png, **style(a))
    caption(a, fig14_rfm_optimizers.caption_values(fits, published))


def register(sub) -> None:
    command(
        sub,
        "rfm-optimizers",
        rfm_optimizers,
        "random-feature readouts trained by GD, Adam and natural gradient at each width and budget, one s",
        alpha={"type": float},
        settings={"help": "the config's rfm_optimizers section as JSON"},
        out_finals={},
        out_lnp={},
    )
    command(sub, "rfm-optimizer-fits", rfm_optimizer_fits, "L(N) exponents per optimizer, budget and s",
            finals={"nargs": "+"}, fit_max_rel_error={"type": float}, out={})  # fmt: skip
    figure(sub, "fig14", fig14, "Fig. 14: the optimizer question in the random-feature model",
           files=("fits", "published"), lists=("finals", "lnp"))  # fmt: skip
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
