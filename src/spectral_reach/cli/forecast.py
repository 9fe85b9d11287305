"""The cost of a config's training jobs on the device present, timed before the study starts."""

from __future__ import annotations

import argparse
import json

from ..io import atomic_file, write_table
from .common import command, log

INT = {"type": int}


def forecast(a: argparse.Namespace) -> None:
    import torch

    from ..train import forecast as fc

    table = fc.forecast(json.loads(a.jobs), a.warmup, a.repeats)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    write_table(table.assign(device=device), a.out_csv)
    with atomic_file(a.out_md) as tmp:
        tmp.write_text(fc.report(table, device))
    log.info("\n%s", fc.report(table, device))


def register(sub) -> None:
    command(
        sub,
        "forecast",
        forecast,
        "time a few steps of every kind of training job; device-hours per job and in total",
        jobs={"help": "JSON list of {rule, group, size, count, spec}"},
        warmup=INT,
        repeats=INT,
        out_csv={},
        out_md={},
    )
