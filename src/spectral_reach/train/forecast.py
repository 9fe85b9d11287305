"""What a study costs on this device, before it starts: every kind of training job timed for a
few steps with the training code itself, then scaled by the job's own schedule.

Per kind of job (rule, data set or parametrization, size), with the job's spec (precision,
compilation, LNP settings) on random data of its shape:

    t_step  median seconds of a training step without a measurement (after ``warmup`` steps,
            which include compilation)
    t_lnp   median extra seconds of a step with an LNP measurement (after one warm-up measurement)
    t_eval  seconds of one test-loss evaluation (after one warm-up evaluation)

    hours per job = (steps * t_step + n_lnp * t_lnp + n_eval * t_eval) / 3600

with ``n_lnp`` and ``n_eval`` the measured and evaluated steps of the job's full schedule
(:func:`.schedule.lnp_steps`, :func:`.schedule.eval_steps`). Data loading, checkpoints and
start-up are left out, so the forecast is a lower bound of the wall time.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from ..data.cifar5m import IMAGE_SHAPE
from ..data.memmap import write_memmap
from . import lm, vit
from .device import pick_device
from .loop import _evaluate, _Loop
from .schedule import eval_steps, lnp_steps

log = logging.getLogger(__name__)

VIT_RULE = "vit_train"


def spec_of(rule: str, spec: dict[str, Any]) -> lm.RunSpec | vit.ViTSpec:
    return (vit.ViTSpec if rule == VIT_RULE else lm.RunSpec).from_dict(spec)


def synthetic_data(spec: lm.RunSpec | vit.ViTSpec, folder: Path) -> None:
    """Random data in the prepared format, just large enough for ``spec``'s steps, measurement
    set and test set: token streams for language models and probes, labelled images for ViTs."""
    rng = np.random.default_rng(0)
    if isinstance(spec, vit.ViTSpec):
        counts = {"train": spec.steps * spec.batch_size, "validation": spec.lnp["measure_images"]}
        for split, n in {**counts, "test": spec.eval["test_images"]}.items():
            write_memmap(folder / f"{split}_rgb.bin", rng.integers(0, 256, (n, *IMAGE_SHAPE)), np.uint8, kind="images")
            write_memmap(folder / f"{split}_labels.bin", rng.integers(0, 10, n), np.uint8, kind="labels")
        return
    contexts = {
        "train": spec.steps * spec.batch_size,
        "validation": spec.lnp["measure_contexts"],
        "test": spec.eval["test_contexts"],
    }
    for split, n in contexts.items():
        tokens = rng.integers(0, spec.vocab_size, n * spec.context_length)
        write_memmap(folder / f"{split}.bin", tokens, np.uint16, kind="stream", vocab_size=spec.vocab_size)


def _median_seconds(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def time_job(rule: str, spec: dict[str, Any], warmup: int, repeats: int) -> dict[str, float]:
    """``t_step``, ``t_lnp``, ``t_eval`` (seconds) and the parameter count of one job kind."""
    full = spec_of(rule, spec)
    short = dataclasses.replace(full, steps=warmup + 2 * repeats + 1)
    device = pick_device(full.device)
    with tempfile.TemporaryDirectory() as tmp:
        synthetic_data(short, Path(tmp))
        task = vit.task(short, tmp, device) if rule == VIT_RULE else lm.task(short, tmp, device)
        loop = _Loop(task, short, device, Path(tmp) / "state")
        loop.window_of, loop.evaluated = {}, set()
        steps = iter(range(short.steps))
        for _ in range(warmup):
            loop.step(next(steps))
        t_step = _median_seconds(lambda: loop.step(next(steps)), repeats, device)
        lnp_s = []
        for _ in range(repeats + 1):
            s = next(steps)
            loop.window_of = {s: 0}
            loop.step(s)
            lnp_s.append(loop.rows["metrics"][-1]["lnp_s"])
        loop.flush()

        def evaluate() -> float:
            return _evaluate(loop.step_model, task.loss, task.test_set, full.eval["batch"], device, loop.autocast)

        evaluate()
        t_eval = _median_seconds(evaluate, 1, device)
    return {
        "params": sum(p.numel() for p in task.model.parameters()),
        "t_step": t_step,
        "t_lnp": statistics.median(lnp_s[1:]),
        "t_eval": t_eval,
    }


def job_hours(spec: lm.RunSpec | vit.ViTSpec, t_step: float, t_lnp: float, t_eval: float) -> dict[str, float]:
    """The module docstring's formula on ``spec``'s full schedule."""
    n_lnp = len(lnp_steps(spec.steps, spec.lnp["per_decade"], spec.lnp["width"]))
    n_eval = len(eval_steps(spec.steps, spec.eval["per_decade"]))
    seconds = spec.steps * t_step + n_lnp * t_lnp + n_eval * t_eval
    return {"n_lnp": n_lnp, "n_eval": n_eval, "lnp_fraction": n_lnp * t_lnp / seconds, "hours": seconds / 3600}


def forecast(jobs: list[dict[str, Any]], warmup: int, repeats: int) -> pd.DataFrame:
    """One row per job kind: ``jobs`` items hold ``rule``, ``group`` (data set or
    parametrization), ``size``, ``count`` (jobs of this kind) and ``spec`` (the rule's params)."""
    rows = []
    for job in jobs:
        spec = spec_of(job["rule"], job["spec"])
        t = time_job(job["rule"], job["spec"], warmup, repeats)
        h = job_hours(spec, t["t_step"], t["t_lnp"], t["t_eval"])
        row = {k: job[k] for k in ("rule", "group", "size", "count")}
        rows.append(
            {**row, "params": t["params"], "steps": spec.steps, **t, **h, "hours_all": h["hours"] * job["count"]}
        )
        log.info("%s %s %s: %.3g h per job, %d jobs", job["rule"], job["group"], job["size"], h["hours"], job["count"])
    return pd.DataFrame(rows)


def report(table: pd.DataFrame, device: str) -> str:
    """Markdown: the table in readable units and the totals per rule and overall."""
    shown = table.assign(
        t_step_ms=table["t_step"] * 1e3,
        t_lnp_ms=table["t_lnp"] * 1e3,
        lnp_percent=table["lnp_fraction"] * 100,
    )[
        [
            "rule",
            "group",
            "size",
            "params",
            "count",
            "steps",
            "t_step_ms",
            "t_lnp_ms",
            "t_eval",
            "lnp_percent",
            "hours",
            "hours_all",
        ]
    ]
    totals = table.groupby("rule")["hours_all"].sum()
    lines = [
        f"# Forecast on {device}",
        "",
        shown.to_markdown(index=False, floatfmt=".4g"),
        "",
        "| rule | device-hours |",
        "|---|---|",
        *(f"| {rule} | {hours:.3g} |" for rule, hours in totals.items()),
        f"| **total** | **{totals.sum():.3g}** |",
        "",
    ]
    return "\n".join(lines)
