"""The cost of a config's training jobs on the device present, timed before the study starts."""

from __future__ import annotations

import argparse
import json

import pandas as pd

from ..io import atomic_file, write_table
from .common import command, log

INT = {"type": int}


def forecast_job(a: argparse.Namespace) -> None:
    import torch

    from ..train import forecast as fc

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    row = fc.forecast_row(json.loads(a.job), a.warmup, a.repeats)
    write_table(pd.DataFrame([{**row, "device": device}]), a.out)
    log.info("%s", row)


def forecast(a: argparse.Namespace) -> None:
    from ..train import forecast as fc

    table = pd.concat([pd.read_csv(t) for t in a.tables], ignore_index=True)
    write_table(table, a.out_csv)
    text = fc.report(table, ", ".join(sorted(set(table["device"]))))
    with atomic_file(a.out_md) as tmp:
        tmp.write_text(text)
    log.info("\n%s", text)


def register(sub) -> None:
    command(
        sub,
        "forecast-job",
        forecast_job,
        "time a few steps of one kind of training job; its device-hours",
        job={"help": "JSON {rule, group, size, count, runs_per_gpu, spec}"},
        warmup=INT,
        repeats=INT,
        out={},
    )
    command(
        sub,
        "forecast",
        forecast,
        "the timed job kinds together: device-hours per job and in total, per rule",
        tables={"nargs": "+", "help": "the forecast-job tables"},
        out_csv={},
        out_md={},
    )
