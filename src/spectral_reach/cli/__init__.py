"""Command line: one subcommand per kind of workflow rule; arguments mirror the rule's params.

Each module declares the subcommands of one stage next to the functions they call:
:mod:`.data`, :mod:`.rfm`, :mod:`.lm`, :mod:`.probe`, :mod:`.vit`, :mod:`.checks`, and
:mod:`.forecast` (what the training jobs will cost).
"""

from __future__ import annotations

import argparse
import logging

from . import checks, data, forecast, lm, probe, rfm, vit

STAGES = (rfm, data, lm, vit, probe, checks, forecast)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="spectral-reach", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for stage in STAGES:
        stage.register(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args.fn(args)
