"""One prepared check of the paper's GPU path (issue 24), a markdown report at the end.

On a machine with one GPU and nothing but this repository (``make setup`` with a CUDA torch, then
``make gpu-check``), within about eight minutes:

1. ``tests/test_gpu.py`` (LNP on the GPU against the CPU, bf16 and TF32 within 2%, a compiled
   bf16 run);
2. eager against compiled training steps for the timed rows (the paper's SimpleStories 1.2M and
   134M and CIFAR-5M 12.5M language models, and its smallest standard ViT), each with its own
   spec from the config, and the model FLOP utilisation ``6 N tokens / t_step / peak`` (bf16 dense
   peak of the device, where known);
3. the throughput gain of ``--pack`` runs of the first row sharing the device;
4. each timed row's LNP share of its whole run at the config's K and schedule;
5. the whole config's device-hours, every kind of job extrapolated from the timed row of its
   rule and data set by FLOPs per step (``6 N tokens``; a probe, which trains its head alone,
   ``(2 N + 4 N_head) tokens``), packed sizes divided by the measured gain.

The job specs come from Snakemake's own dry run of the forecast rules (``forecast_job``), and the
timings from :mod:`spectral_reach.train.forecast` (the training loop itself on random data of
each job's shape, synchronised medians), so the check measures what the workflow will run. On a
CPU the same path runs with tiny shapes, as CI does::

    python benchmarks/gpu_check.py --device cpu --config tests/configs/ci.yaml \\
        --rows lm_train/stories/a lm_train/stories/b --pack 2 --out gpu_check.md
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from spectral_reach.forecast_cpu import KINDS as CPU_KINDS

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ROWS = [
    "lm_train/simplestories/1.2M",
    "lm_train/simplestories/134M",
    "lm_train/cifar5m/12.5M",
    "vit_train/standard/546.2K",
]
#: Dense bf16 tensor-core peak FLOP/s from the vendors' data sheets, by a word of the device name.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


def jobs(config: str) -> dict[str, dict[str, Any]]:
    """``{"rule/group/size": job}`` for every kind of training job of ``config``, as the
    ``forecast_job`` rule would receive them (a dry run; nothing is executed)."""
    cmd = [sys.executable, "-m", "snakemake", "-n", "-p", "--forceall", "--cores", "1", "results/forecast/forecast.md"]
    cmd += ["--configfile", str(Path(config).resolve()), "--replace-workflow-config"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"snakemake dry run of {config} failed:\n{out.stdout}{out.stderr}")
    found = {}
    for line in out.stdout.splitlines():
        if "spectral-reach forecast-job" in line:
            args = shlex.split(line[line.index("spectral-reach forecast-job") :].split(' >> "$h"')[0])
            job = json.loads(args[args.index("--job") + 1])
            if job["rule"] not in CPU_KINDS:  # the checks and RFM jobs run on CPU: no GPU to check
                found[f"{job['rule']}/{job['group']}/{job['size']}"] = job
    if not found:
        raise SystemExit(f"no forecast_job in the dry run of {config}")
    return found


def params_of(rule: str, spec: Any) -> tuple[int, int]:
    """All parameters and the head's (``hidden x vocab`` for a language model), built on the meta device."""
    from spectral_reach.models import llama, vit

    with torch.device("meta"):
        if rule == "vit_train":
            model = vit.build(spec.size, spec.seed, "standard")  # muP changes initialisation, not the count
        else:
            model = llama.build(spec.size, spec.vocab_size, spec.context_length, spec.seed)
    head = sum(p.numel() for n, p in model.named_parameters() if "lm_head" in n or "classifier" in n)
    return sum(p.numel() for p in model.parameters()), head


def flops_per_step(rule: str, spec: Any, n: int, head: int) -> float:
    """``6 N tokens`` (forward and backward through every parameter); a probe: ``(2 N + 4 N_head) tokens``."""
    if rule == "vit_train":
        tokens = spec.batch_size * ((32 // spec.size["patch"]) ** 2 + 1)
    else:
        tokens = spec.batch_size * (spec.context_length - 1)
    return (2 * n + 4 * head) * tokens if getattr(spec, "trainable", "all") == "head" else 6 * n * tokens


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def run_tests() -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_gpu.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr.strip()[-500:]
    return f"exit {proc.returncode}: {summary}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "config/paper.yaml"))
    p.add_argument("--rows", nargs="+", default=DEFAULT_ROWS, help="rule/group/size of the kinds to time")
    p.add_argument("--device", default="cuda")
    p.add_argument("--pack", type=int, default=4, help="runs of the first row sharing the device")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--skip-tests", action="store_true")
    p.add_argument("--out", default="gpu_check.md")
    a = p.parse_args()
    from spectral_reach.train import forecast as fc

    t0 = time.perf_counter()
    device = torch.device(a.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    tests = "skipped (--skip-tests)" if a.skip_tests else run_tests()
    kinds = jobs(a.config)
    missing = [r for r in a.rows if r not in kinds]
    if missing:
        raise SystemExit(f"rows {missing} are not job kinds of {a.config}; its kinds: {sorted(kinds)}")
    peak, timed = peak_flops(device), []
    for row in a.rows:
        job = kinds[row]
        spec = {**job["spec"], "device": a.device}
        times = {c: fc.time_job(job["rule"], {**spec, "compile": c}, a.warmup, a.repeats) for c in (False, True)}
        full = fc.spec_of(job["rule"], spec)
        n, head = params_of(job["rule"], full)
        flops = flops_per_step(job["rule"], full, n, head)
        compiled_by_config = bool(job["spec"].get("compile"))
        t = times[compiled_by_config]
        share = fc.job_hours(full, t["t_step"], t["t_lnp"], t["t_eval"])["lnp_fraction"]
        timed.append(
            {
                "row": row,
                "params": n,
                "eager_ms": times[False]["t_step"] * 1e3,
                "compiled_ms": times[True]["t_step"] * 1e3,
                "speedup": times[False]["t_step"] / times[True]["t_step"],
                "mfu_percent": (flops / times[True]["t_step"] / peak * 100) if peak else math.nan,
                "lnp_ms": t["t_lnp"] * 1e3,
                "lnp_percent_of_run": share * 100,
                "t_step": t["t_step"],
                "t_lnp": t["t_lnp"],
                "t_eval": t["t_eval"],
                "flops": flops,
            }
        )
        print(f"{row}: {timed[-1]}", flush=True)
    first = kinds[a.rows[0]]
    t_first = timed[0]["t_step"]
    gain = fc.packing_gain(first["rule"], {**first["spec"], "device": a.device}, a.pack, t_first, a.warmup, a.repeats)
    forecast = extrapolate(kinds, timed, gain, a.device)
    write_report(a, name, tests, timed, gain, forecast, time.perf_counter() - t0)


def extrapolate(kinds: dict, timed: list[dict], gain: float, device: str) -> pd.DataFrame:
    """Device-hours of every kind, its step, measurement and evaluation times scaled by FLOPs per
    step from the timed row of the same rule and data set (else of the same rule)."""
    from spectral_reach.train import forecast as fc

    rows = []
    for key, job in kinds.items():
        rule, group, _ = key.split("/")
        spec = fc.spec_of(job["rule"], {**job["spec"], "device": device})
        n, head = params_of(job["rule"], spec)
        flops = flops_per_step(job["rule"], spec, n, head)
        base_rule = "lm_train" if rule == "probe_train" else rule
        same = [t for t in timed if t["row"].startswith(f"{base_rule}/{group}/")] or [
            t for t in timed if t["row"].startswith(f"{base_rule}/")
        ]
        if not same:
            continue
        ref = min(same, key=lambda t: abs(math.log(t["flops"] / flops)))
        scale = flops / ref["flops"]
        h = fc.job_hours(spec, ref["t_step"] * scale, ref["t_lnp"] * scale, ref["t_eval"] * scale)
        per_job = h["hours"] / (gain if job.get("runs_per_gpu", 1) > 1 else 1.0)  # the measured packing gain
        rows.append(
            {
                "kind": key,
                "params": n,
                "from": ref["row"],
                "count": job["count"],
                "device_hours": per_job * job["count"],
            }
        )
    return pd.DataFrame(rows)


def write_report(
    a, name: str, tests: str, timed: list[dict], gain: float, forecast: pd.DataFrame, seconds: float
) -> None:
    table = pd.DataFrame(timed)[
        ["row", "params", "eager_ms", "compiled_ms", "speedup", "mfu_percent", "lnp_ms", "lnp_percent_of_run"]
    ]
    totals = forecast.assign(rule=forecast["kind"].str.split("/").str[0]).groupby("rule")["device_hours"].sum()
    lines = [
        f"# GPU check on {name}",
        "",
        f"`python benchmarks/gpu_check.py {' '.join(shlex.quote(x) for x in sys.argv[1:])}`, {seconds:.0f} s, "
        f"torch {torch.__version__}, config `{Path(a.config).name}`.",
        "",
        f"**tests/test_gpu.py**: {tests}",
        "",
        "## Timed rows (medians; MFU = 6 N tokens / compiled step / bf16 dense peak)",
        "",
        table.to_markdown(index=False, floatfmt=".4g"),
        "",
        f"**Packing**: {a.pack} runs of `{a.rows[0]}` sharing the device: {gain:.2f}x the throughput of one.",
        "",
        "## The whole config, extrapolated from the timed rows by FLOPs per step",
        "",
        "| rule | device-hours |",
        "|---|---|",
        *(f"| {rule} | {hours:.3g} |" for rule, hours in totals.items()),
        f"| **total** | **{totals.sum():.3g}** |",
        "",
        f"{len(forecast)} job kinds; the measured forecast, every kind timed, is "
        "`snakemake results/forecast/forecast.md --configfile <config>`.",
        "",
    ]
    Path(a.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
