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
start-up are left out, so the forecast is a lower bound of the wall time. A size that packs k runs
on one device (``runs_per_gpu``) is timed again as k processes stepping at once; their aggregate
gain divides its device-hours, and each of the k runs takes ``wall_hours = hours k / gain``.

The CPU jobs (the checks and the random-feature study) are timed by :mod:`..forecast_cpu`. The
report sets each kind's wall time against the runtime its config requests, and names the jobs a
scheduler would stop before they end.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from .. import forecast_cpu
from ..data.cifar5m import IMAGE_SHAPE
from ..data.memmap import write_memmap
from . import lm, vit
from .device import pick_device
from .loop import _evaluate, _Loop
from .schedule import eval_steps, lnp_steps

log = logging.getLogger(__name__)

VIT_RULE = "vit_train"
REPORT_COLUMNS = (
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
    "runs_per_gpu",
    "gain",
    "device_hours",
    "device_hours_all",
    "wall_hours",
    "runtime_min",
)


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


def median_seconds(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls, the device synchronised around each."""
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


def _loop(rule: str, full: lm.RunSpec | vit.ViTSpec, steps: int, folder: Path) -> _Loop:
    """The job's training loop on random data for ``steps`` steps, measuring and evaluating nowhere."""
    short = dataclasses.replace(full, steps=steps)
    device = pick_device(full.device)
    synthetic_data(short, folder)
    task = vit.task(short, folder, device) if rule == VIT_RULE else lm.task(short, folder, device)
    loop = _Loop(task, short, device, folder / "state", identity={})  # never checkpoints
    loop.window_of, loop.evaluated = {}, set()
    return loop


def _step_time(loop: _Loop, warmup: int, repeats: int, ready: Callable[[], Any] = lambda: None) -> float:
    """Median seconds of ``repeats`` training steps after ``warmup`` untimed ones (steps 0, 1, ...);
    ``ready()`` runs between the two."""
    for s in range(warmup):
        loop.step(s)
    ready()
    steps = iter(range(warmup, warmup + repeats))
    return median_seconds(lambda: loop.step(next(steps)), repeats, loop.device)


def time_job(rule: str, spec: dict[str, Any], warmup: int, repeats: int) -> dict[str, float]:
    """``t_step``, ``t_lnp``, ``t_eval`` (seconds) and the parameter count of one job kind."""
    full = spec_of(rule, spec)
    with tempfile.TemporaryDirectory() as tmp:
        loop = _loop(rule, full, warmup + 2 * repeats + 1, Path(tmp))
        log.info("%s: %d warm-up steps (compilation included), then %d timed steps", rule, warmup, repeats)
        t_step = _step_time(loop, warmup, repeats)
        log.info("%s: %.3g s per training step; timing %d measured steps", rule, t_step, repeats + 1)
        lnp_s = []
        for s in range(warmup + repeats, loop.spec.steps):
            loop.window_of = {s: 0}
            loop.step(s)
            lnp_s.append(loop.rows["metrics"][-1]["lnp_s"])
        loop.flush()

        def evaluate() -> float:
            test = loop.task.test_set
            return _evaluate(loop.step_model, loop.task.loss, test, full.eval["batch"], loop.device, loop.autocast)

        log.info("%s: %.3g s per LNP measurement; timing an evaluation", rule, statistics.median(lnp_s[1:]))
        evaluate()
        t_eval = median_seconds(evaluate, 1, loop.device)
        log.info("%s: %.3g s per evaluation", rule, t_eval)
    return {
        "params": sum(p.numel() for p in loop.task.model.parameters()),
        "t_step": t_step,
        "t_lnp": statistics.median(lnp_s[1:]),
        "t_eval": t_eval,
    }


def _packed_step(rule: str, spec: dict[str, Any], warmup: int, repeats: int, barrier: Any) -> float:
    """One of k processes sharing the device: warm up, wait for the others, time ``repeats`` steps."""
    full = spec_of(rule, spec)
    with tempfile.TemporaryDirectory() as tmp:
        return _step_time(_loop(rule, full, warmup + repeats, Path(tmp)), warmup, repeats, barrier.wait)


def packing_gain(rule: str, spec: dict[str, Any], k: int, t_step: float, warmup: int, repeats: int) -> float:
    """Aggregate throughput of k runs sharing the device over one run alone: ``k t_step / t_k``,
    with ``t_k`` the median step time of k processes stepping at once."""
    log.info("%s: timing %d runs sharing the device", rule, k)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Manager().Barrier(k)
    with ctx.Pool(k) as pool:
        times = pool.starmap(_packed_step, [(rule, spec, warmup, repeats, barrier)] * k)
    return k * t_step / statistics.median(times)


def job_hours(spec: lm.RunSpec | vit.ViTSpec, t_step: float, t_lnp: float, t_eval: float) -> dict[str, float]:
    """The module docstring's formula on ``spec``'s full schedule."""
    n_lnp = len(lnp_steps(spec.steps, spec.lnp["per_decade"], spec.lnp["width"]))
    n_eval = len(eval_steps(spec.steps, spec.eval["per_decade"]))
    seconds = spec.steps * t_step + n_lnp * t_lnp + n_eval * t_eval
    return {"n_lnp": n_lnp, "n_eval": n_eval, "lnp_fraction": n_lnp * t_lnp / seconds, "hours": seconds / 3600}


def forecast_row(job: dict[str, Any], warmup: int, repeats: int) -> dict[str, Any]:
    """One job kind timed (a training kind here, a CPU kind by :mod:`..forecast_cpu`), with its wall
    time per job and the runtime (minutes, first attempt) its config requests, ``job["runtime_min"]``."""
    if job["rule"] in forecast_cpu.KINDS:
        row = forecast_cpu.forecast_row(job)
    else:
        row = training_row(job, warmup, repeats)
    return {**row, "wall_hours": row["hours"] * row["runs_per_gpu"] / row["gain"], "runtime_min": job["runtime_min"]}


def training_row(job: dict[str, Any], warmup: int, repeats: int) -> dict[str, Any]:
    """One training job kind timed: ``job`` holds ``rule``, ``group`` (data set or parametrization),
    ``size``, ``count`` (jobs of this kind), ``runs_per_gpu`` and ``spec`` (the rule's params). A
    job that shares its device with k - 1 others costs ``hours / gain`` of it (:func:`packing_gain`)."""
    spec, k = spec_of(job["rule"], job["spec"]), job.get("runs_per_gpu", 1)
    t = time_job(job["rule"], job["spec"], warmup, repeats)
    h = job_hours(spec, t["t_step"], t["t_lnp"], t["t_eval"])
    gain = packing_gain(job["rule"], job["spec"], k, t["t_step"], warmup, repeats) if k > 1 else 1.0
    device_hours = h["hours"] / gain
    return {
        **{key: job[key] for key in ("rule", "group", "size", "count")},
        "params": t["params"],
        "steps": spec.steps,
        **t,
        **h,
        "runs_per_gpu": k,
        "gain": gain,
        "device_hours": device_hours,
        "device_hours_all": device_hours * job["count"],
    }


def over_runtime(table: pd.DataFrame) -> pd.DataFrame:
    """The job kinds whose forecast wall time exceeds the runtime their config requests."""
    return table[table["wall_hours"] * 60 > table["runtime_min"]]


def report(table: pd.DataFrame, device: str) -> str:
    """Markdown: the table in readable units, the totals per rule and overall, and the job kinds
    whose requested runtime is below their forecast."""
    shown = table.assign(
        t_step_ms=table["t_step"] * 1e3,
        t_lnp_ms=table["t_lnp"] * 1e3,
        lnp_percent=table["lnp_fraction"] * 100,
    )[list(REPORT_COLUMNS)]
    totals = table.groupby("rule")["device_hours_all"].sum()
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
        f"CPU jobs ({', '.join(forecast_cpu.KINDS)}): `steps` counts units of work (measurement calls, "
        "spectra, seeds) and `t_step_ms` is one unit; their hours are on the CPU named above.",
        "",
    ]
    over = over_runtime(table)
    if over.empty:
        lines.append("Every job's requested runtime covers its forecast wall time (a lower bound).")
    else:
        lines.append("**Requested runtime below the forecast wall time** (raise `resources.runtime` in the config):")
        lines += [
            f"* {r.rule} {r.group} {r.size}: forecast {r.wall_hours * 60:.0f} min, requested {r.runtime_min:.0f} min"
            for r in over.itertuples()
        ]
    return "\n".join(lines + [""])
