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

    from ..forecast_cpu import KINDS
    from ..train import forecast as fc

    job = json.loads(a.job)
    if job["rule"] in KINDS or not torch.cuda.is_available():
        n = torch.get_num_threads()
        device = f"CPU ({n} thread{'s' * (n != 1)})"
    else:
        device = torch.cuda.get_device_name()
    row = fc.forecast_row(job, a.warmup, a.repeats)
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
        "time a few steps of one kind of job (training, checks, RFM); its device-hours",
        job={"help": "JSON {rule, group, size, count, runtime_min, runs_per_gpu, spec | settings}"},
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
