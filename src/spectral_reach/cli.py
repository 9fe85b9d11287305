"""Command line: one subcommand per kind of workflow rule; arguments mirror the rule's params."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

log = logging.getLogger("spectral_reach")


def _write(df: pd.DataFrame, path: str) -> None:
    """Write a table by extension (.parquet, .csv or .md), atomically."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if out.suffix == ".parquet":
        df.to_parquet(tmp, index=False)
    elif out.suffix == ".md":
        tmp.write_text(df.to_markdown(index=False, floatfmt=".4g") + "\n")
    else:
        df.to_csv(tmp, index=False)
    tmp.replace(out)


def rfm_lnp(a: argparse.Namespace) -> None:
    from . import rfm

    log.info("RFM alpha=%g: %d seeds, N=%d, D=%d, P=%d", a.alpha, a.seeds, a.n_samples, a.input_dim, a.width)
    _write(rfm.run([a.alpha], a.n_samples, a.input_dim, a.width, a.seeds, a.first_seed), a.out)


def rfm_theory(a: argparse.Namespace) -> None:
    from . import rfm

    _write(rfm.theory(a.alphas, a.input_dim, a.kernel_samples, a.teacher_draws, a.seed), a.out)


def rfm_summary(a: argparse.Namespace) -> None:
    from . import rfm

    measured = pd.concat([pd.read_parquet(p) for p in a.measured], ignore_index=True)
    table = rfm.deviations(measured, pd.read_csv(a.theory))
    _write(measured, a.out_measured)
    _write(table, a.out_csv)
    _write(table[["alpha", "dev_chi_loss", "dev_chi_net", "dev_chi_pos_kernel", "dev_chi_pos_teacher", "dev_chi_pos_linear",
                  "chi_pos_kernel_within_spread", "kta_identity_max_abs_err"]], a.out_md)
    log.info("deviation table:\n%s", table.to_string())


def fig03(a: argparse.Namespace) -> None:
    from .figures import fig03_rfm

    fig03_rfm.plot(pd.read_parquet(a.measured), pd.read_csv(a.theory), a.input_dim, a.pdf, a.png,
                   width=a.width, height=a.height, dpi=a.dpi)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="spectral-reach", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("rfm-lnp", help="LNP of random-feature models at initialisation, one alpha")
    p.add_argument("--alpha", type=float, required=True)
    for name in ("n-samples", "input-dim", "width", "seeds", "first-seed"):
        p.add_argument(f"--{name}", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=rfm_lnp)

    p = sub.add_parser("rfm-theory", help="theory curves of the RFM components")
    p.add_argument("--alphas", type=float, nargs="+", required=True)
    for name in ("input-dim", "kernel-samples", "teacher-draws", "seed"):
        p.add_argument(f"--{name}", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=rfm_theory)

    p = sub.add_parser("rfm-summary", help="collect RFM runs; deviation table against theory")
    p.add_argument("--measured", nargs="+", required=True)
    p.add_argument("--theory", required=True)
    p.add_argument("--out-measured", required=True)
    p.add_argument("--out-csv", required=True)
    p.add_argument("--out-md", required=True)
    p.set_defaults(fn=rfm_summary)

    p = sub.add_parser("fig03", help="Fig. 3: RFM spectra and LNP against theory")
    p.add_argument("--measured", required=True)
    p.add_argument("--theory", required=True)
    p.add_argument("--input-dim", type=int, required=True)
    p.add_argument("--width", type=float, required=True)
    p.add_argument("--height", type=float, required=True)
    p.add_argument("--dpi", type=int, required=True)
    p.add_argument("--pdf", required=True)
    p.add_argument("--png", required=True)
    p.set_defaults(fn=fig03)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args.fn(args)


if __name__ == "__main__":
    main()
