"""Checks of the measurement: Hutchinson convergence (Fig. 6), reduced-output eNTK (Fig. 12)."""

from __future__ import annotations

import argparse
import json

import pandas as pd

from ..io import write_table
from .common import caption, command, figure, log, style

INT = {"type": int}


def hutchinson_cv(a: argparse.Namespace) -> None:
    from ..checks import hutchinson_cv as hcv

    cv, fit = hcv.run(a.model, a.data_dir, a.context_length, a.samples, a.draws, a.per_call, a.seed, a.ks)
    write_table(cv.assign(**fit), a.out)
    log.info("CV by K:\n%s\nfit: %s", cv.to_string(), fit)


def entk_spectrum(a: argparse.Namespace) -> None:
    from ..checks import reduced_entk

    spectra, shift = reduced_entk.init_vs_trained(
        a.model,
        json.loads(a.size),
        a.data_dir,
        a.context_length,
        a.vocab_size,
        a.seed,
        a.sample,
        a.vocab_count,
        a.positions,
    )
    write_table(spectra, a.out_spectrum)
    write_table(shift, a.out_shift)
    log.info("\n%s", shift.to_string())


def fig06(a: argparse.Namespace) -> None:
    from ..figures import fig06_hutchinson

    cv, data = (
        pd.read_csv(a.cv),
        {n: (pd.read_parquet(w), pd.read_csv(r)) for n, w, r in zip(a.datasets, a.lnp, a.runs)},
    )
    fig06_hutchinson.plot(cv, data, a.pdf, a.png, **style(a))
    caption(a, fig06_hutchinson.caption_values(cv, data))


def fig12(a: argparse.Namespace) -> None:
    from ..figures import fig12_entk

    shift = pd.read_csv(a.shift)
    fig12_entk.plot(pd.read_parquet(a.spectrum), shift, a.pdf, a.png, **style(a))
    caption(a, fig12_entk.caption_values(shift))


def register(sub) -> None:
    command(
        sub,
        "hutchinson-cv",
        hutchinson_cv,
        "Fig. 6: CV of the Hutchinson estimate vs K on a trained model",
        model={},
        data_dir={},
        context_length=INT,
        samples=INT,
        draws=INT,
        per_call=INT,
        seed=INT,
        ks={"type": int, "nargs": "+"},
        out={},
    )
    command(
        sub,
        "entk-spectrum",
        entk_spectrum,
        "Fig. 12: explicit eNTK of a reduced output space, init vs trained",
        model={},
        size={"help": "JSON size of the model, to rebuild its initialisation"},
        data_dir={},
        context_length=INT,
        vocab_size=INT,
        seed=INT,
        sample=INT,
        vocab_count=INT,
        positions={"type": int, "nargs": "+"},
        out_spectrum={},
        out_shift={},
    )
    figure(
        sub,
        "fig06",
        fig06,
        "Fig. 6: Hutchinson convergence and chi_pos of all seeds",
        files=("cv",),
        lists=("datasets", "lnp", "runs"),
    )
    figure(sub, "fig12", fig12, "Fig. 12: eNTK spectra of a reduced output space", files=("spectrum", "shift"))
