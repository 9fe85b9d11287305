"""Dress rehearsal of the paper study: its whole DAG, shrunk (config/rehearsal.yaml), through the
SLURM profile on a local one-node SLURM with fake GPUs, surviving the faults a cluster produces.

    make rehearsal            # root: starts SLURM (.ci/slurm.sh, FAKE_GPUS) and stops it at the end

Faults, each injected at a point chosen here and reported in runs/rehearsal/rehearsal.md:

1. ``scancel`` of a running training job, held still after its first checkpoint (tests/hold): SLURM
   sends SIGTERM, the job checkpoints and stops, the profile's retry resumes it;
2. SIGKILL of a training process, held still after its first checkpoint: the retry resumes it from
   that checkpoint;
3. the Snakemake master killed mid-study (SIGKILL), its SLURM jobs cancelled, the lock removed and
   the master restarted (the profile's ``--rerun-incomplete``): finished jobs stay finished;
4. one size's learning rate edited after the study: the summary lists what the dry run planned and
   whether every run of that size records the new learning rate.

Each interrupted language model is then trained again uninterrupted on this machine, with its own
recorded settings and data, and its tables compared with the interrupted run's (timing columns
left out). Then every figure is checked against its tables and caption
(tests/test_figures_draw_tables.py on this tree), the cost forecast (``results/forecast``, each
kind of training job timed alone) is set beside the runs' measured time, and the Snakemake report
is built. It exits 1 when a check fails. The numbers are a rehearsal's, not the paper's.
Measured here (2 cores, FAKE_GPUS=2, NODE_CPUS=8, from a set-up fresh clone): 19.1 min in all.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "config/rehearsal.yaml"
RUN = ROOT / "runs" / "rehearsal"
ENV = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
SLURM = [
    "--workflow-profile", "none", "--profile", "profiles/slurm", "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", "2",
]  # fmt: skip
TIMING = ["step_s", "lnp_s"]
PROGRESS = re.compile(r"(\d+) of (\d+) steps")


def snakemake(*args: str, env: dict | None = None, log: Path | None = None, wait: bool = True):
    """Snakemake in the repository root; ``wait=False`` returns the running process (own session)."""
    cmd = [sys.executable, "-m", "snakemake", *args]
    out = open(log, "a") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env or ENV, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return proc.wait() if wait else proc


def done(log: Path) -> tuple[int, int]:
    """Steps done and planned, from the last progress line of a Snakemake log."""
    found = PROGRESS.findall(log.read_text()) if log.exists() else []
    return tuple(map(int, found[-1])) if found else (0, 0)


def slurm_jobs() -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True).stdout
    return out.split()


def job_of(pid: int) -> str:
    """The SLURM job a process runs in, from its environment."""
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return next(v.split(b"=", 1)[1].decode() for v in env if v.startswith(b"SLURM_JOB_ID="))


def run_of(checkpoint: str) -> Path:
    """The run folder of a checkpoint: results/checkpoints/<kind>/... -> results/<kind>/..."""
    state = Path(checkpoint).parent.relative_to("results/checkpoints")
    return RUN / "results" / state


def held(marker: Path) -> tuple[str, int] | None:
    if not marker.exists():
        return None
    path, pid = marker.read_text().split()
    return path, int(pid)


def study(scratch: Path, log: Path, faults: list[dict]) -> float:
    """Phase 1: the study through SLURM with faults 1-3; its wall seconds."""
    marker = scratch / "held"
    hold = {
        **ENV,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests/hold"), ENV.get("PYTHONPATH", "")]),
        "SPECTRAL_REACH_HOLD_AFTER_CHECKPOINT": str(marker),
        "SPECTRAL_REACH_HOLDS": "2",
    }
    args = [*SLURM, "--configfile", CONFIG]
    t0 = time.time()
    master = snakemake(*args, env=hold, log=log, wait=False)
    pending = {1: "scancel", 2: "SIGKILL"}
    while pending or done(log)[0] < done(log)[1] // 2:
        assert master.poll() is None, f"the study stopped early: see {log}"
        for k, kind in list(pending.items()):
            if (found := held(marker if k == 1 else Path(f"{marker}.{k}"))) is None:
                continue
            checkpoint, pid = found
            job = job_of(pid)
            if kind == "scancel":
                subprocess.run(["scancel", job], check=True)
            else:
                os.kill(pid, signal.SIGKILL)
            faults.append({"fault": kind, "run": str(run_of(checkpoint).relative_to(RUN)), "slurm_job": job,
                           "held_after": Path(checkpoint).name, "at_s": round(time.time() - t0)})  # fmt: skip
            del pending[k]
        time.sleep(0.2)
    steps = done(log)
    running = slurm_jobs()
    os.killpg(master.pid, signal.SIGKILL)
    master.wait()
    for job in running:
        subprocess.run(["scancel", job], check=False)
    while slurm_jobs():
        time.sleep(0.5)
    faults.append({"fault": "master killed", "at_steps": f"{steps[0]} of {steps[1]}", "cancelled": len(running),
                   "at_s": round(time.time() - t0)})  # fmt: skip
    snakemake(*args, "--unlock", log=log)
    assert snakemake(*args, log=log) == 0, f"the restarted study failed: see {log}"
    return time.time() - t0


def edit_lr(scratch: Path, log: Path) -> dict:
    """Phase 2 (fault 4): one size's learning rate edited; what a dry run plans, then the rerun."""
    config = yaml.safe_load((ROOT / CONFIG).read_text())
    dataset, size = "simplestories", list(config["lm"]["simplestories"]["sizes"])[3]
    lr = config["lm"][dataset]["sizes"][size]["lr"] / 2
    edit = scratch / "edit.yaml"
    edit.write_text(yaml.safe_dump({"lm": {dataset: {"sizes": {size: {"lr": lr}}}}}))
    args = [*SLURM, "--configfile", CONFIG, str(edit)]
    dry = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-q", "rules", *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
    ).stdout
    planned = Counter({m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)$", dry, re.M) if m[0] != "total"})
    t0 = time.time()
    assert snakemake(*args, log=log) == 0, f"the edited study failed: see {log}"
    seeds = config["lm"][dataset]["seeds"]
    stale = [
        f"seed{seed}"
        for seed in seeds
        if json.loads((RUN / f"results/lm/{dataset}/{size}/seed{seed}/done.json").read_text())["spec"]["lr"] != lr
    ]
    return {"size": f"{dataset}/{size}", "lr": lr, "planned": dict(planned), "seconds": round(time.time() - t0),
            "expected_lm": len(seeds), "stale": stale}  # fmt: skip


def uninterrupted_equal(run: Path, scratch: Path) -> bool | None:
    """Train a language model again, uninterrupted, with its recorded settings and data: whether its
    tables equal the interrupted run's (``None`` for other run kinds, not compared here)."""
    kind, dataset = run.relative_to(RUN / "results").parts[:2]
    if kind != "lm":
        return None
    config = yaml.safe_load((ROOT / CONFIG).read_text())["lm"][dataset]
    spec = {**json.loads((run / "done.json").read_text())["spec"], "checkpoint_every": config["checkpoint_every"]}
    spec["log_every"] = config["log_every"]  # neither changes a number: the fingerprint leaves them out
    out = scratch / "again" / run.relative_to(RUN)
    cmd = ["spectral-reach", "train-lm", "--spec", json.dumps(spec), "--data-dir", f"results/data/{dataset}",
           "--out-dir", str(out), "--state-dir", f"{out}.state"]  # fmt: skip
    subprocess.run(cmd, cwd=RUN, env=ENV, check=True, capture_output=True)
    tables = [
        [pd.read_parquet(r / f"{t}.parquet").drop(columns=TIMING, errors="ignore") for r in (run, out)]
        for t in ("metrics", "lnp", "eval")
    ]
    return all(a.equals(b) for a, b in tables)


def figures_checked(log: Path) -> tuple[int, int]:
    """tests/test_figures_draw_tables.py on the rehearsal's tree: (passed, failed)."""
    env = {**ENV, "SPECTRAL_REACH_FIGURES_CONFIG": CONFIG}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_figures_draw_tables.py"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True).stdout
    log.write_text(out)
    counts = dict((k, int(n)) for n, k in re.findall(r"(\d+) (passed|failed|error)", out.splitlines()[-1]))
    return counts.get("passed", 0), counts.get("failed", 0) + counts.get("error", 0)


def forecast_against_runs(log: Path) -> pd.DataFrame:
    """The forecast (``results/forecast``, each kind of job timed alone on this machine) of each
    training rule's loop seconds (steps and LNP measurements; start-up, evaluation and checkpoints
    left out), beside the rehearsal's: its runs' loop seconds (``done.json``: ``train_s + lnp_s``)
    and its jobs' CPU seconds (Snakemake benchmarks, start-up included)."""
    assert snakemake("results/forecast/forecast.md", "--cores", "1", "--configfile", CONFIG, log=log) == 0
    fc = pd.read_csv(RUN / "results/forecast/forecast.csv")
    fc["forecast_s"] = fc["count"] * (fc["steps"] * fc["t_step"] + fc["n_lnp"] * fc["t_lnp"])
    rows = []
    for rule, kind in (("lm_train", "lm"), ("probe_train", "probe"), ("vit_train", "vit")):
        done = [json.loads(p.read_text()) for p in (RUN / "results" / kind).glob("**/done.json")]
        cpu = [pd.read_csv(p, sep="\t")["cpu_time"].iloc[-1] for p in (RUN / "logs/benchmarks" / rule).glob("**/*.tsv")]
        rows.append({"rule": rule, "jobs": len(done), "forecast_s": fc.loc[fc["rule"] == rule, "forecast_s"].sum(),
                     "loop_s": sum(d["train_s"] + d["lnp_s"] for d in done), "cpu_s": sum(cpu)})  # fmt: skip
    return pd.DataFrame(rows)


def summary(wall: float, faults: list[dict], edit: dict, checks: dict, scratch: Path) -> tuple[str, list[str]]:
    """The rehearsal's markdown summary, and what failed in it (empty when all held)."""
    figures = sorted(p.name for p in (RUN / "figures").glob("*.pdf"))
    tables = sorted(p.name for p in (RUN / "results/tables").glob("*.md"))
    failed = [] if len(figures) == 11 else [f"{len(figures)} figures, not 11"]
    lines = [
        "# Rehearsal of the paper study (config/rehearsal.yaml): a rehearsal's numbers, not the paper's",
        "",
        f"Through profiles/slurm on a one-node SLURM with fake GPUs: {wall / 60:.1f} min for the study with its faults, "
        f"{edit['seconds'] / 60:.1f} min for the edit; {len(figures)} figures, Tables 1-4 in {len(tables)} files.",
        "",
        "| fault | where | what survived |",
        "|---|---|---|",
    ]
    for f in faults:
        if "run" in f:
            resumed = json.loads((RUN / f["run"] / "done.json").read_text())["resumed_at"]
            equal = uninterrupted_equal(RUN / f["run"], scratch)
            failed += [f"{f['run']}: not resumed"] if not resumed else []
            failed += [f"{f['run']}: differs from an uninterrupted run"] if equal is False else []
            same = {True: "equal", False: "NOT equal", None: "not compared"}[equal]
            lines.append(
                f"| {f['fault']} (SLURM job {f['slurm_job']}, {f['at_s']} s in) | {f['run']}, held after {f['held_after']} | "
                f"resumed at steps {resumed}; tables {same} to an uninterrupted run |"
            )
        else:
            lines.append(
                f"| {f['fault']} ({f['at_s']} s in) | at {f['at_steps']} jobs, {f['cancelled']} SLURM jobs cancelled | "
                "restarted with --rerun-incomplete; the study completed |"
            )
    plan = ", ".join(f"{rule} {n}" for rule, n in sorted(edit["planned"].items()))
    if edit["stale"]:
        failed.append(f"{edit['size']} {', '.join(edit['stale'])} at the old lr")
        outcome = f"**{', '.join(edit['stale'])} still at the old lr**: not rerun"
    else:
        outcome = f"every one of its {edit['expected_lm']} language models at the new lr"
    passed, broken = checks["figures"]
    failed += [f"{broken} figure-vs-table checks failed"] if broken or not passed else []
    fc = checks["forecast"]
    lines += [
        f"| lr of {edit['size']} edited to {edit['lr']:g} | dry run: {plan} | {outcome} |",
        "",
        f"Figures against their tables and captions (tests/test_figures_draw_tables.py on this tree): {passed} passed, "
        f"{broken} failed.",
        "",
        "The forecast (`results/forecast`, each kind of training job timed alone for a few steps on this machine) "
        "against the rehearsal's runs, in seconds of training loop (steps and LNP measurements); the runs shared "
        "two cores with up to seven others, and their jobs' CPU seconds include start-up:",
        "",
        fc.to_markdown(index=False, floatfmt=".0f"),
        "",
        f"Forecast over measured loop time: {fc['forecast_s'].sum() / fc['loop_s'].sum():.2f}. The real study: "
        "`snakemake results/forecast/forecast.md --configfile config/paper.yaml` on its GPU (docs/workflow.md: "
        "roughly 100 H100-hours; 208 jobs, and a params file for each cluster job).",
    ]
    return "\n".join(lines) + "\n", failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fake-gpus", type=int, default=2)
    parser.add_argument(
        "--node-cpus", type=int, default=8, help="CPUs the local node declares (packed groups need 4 a GPU)"
    )
    a = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("make rehearsal starts a local SLURM: run it as root (or run the study through your own cluster)")
    shutil.rmtree(RUN, ignore_errors=True)
    scratch = Path(tempfile.mkdtemp(prefix="rehearsal-"))
    base = scratch / "slurm"
    subprocess.run(
        [str(ROOT / ".ci/slurm.sh"), "up", str(base)],
        env={**ENV, "FAKE_GPUS": str(a.fake_gpus), "NODE_CPUS": str(a.node_cpus)},
        check=True,
    )
    try:
        faults: list[dict] = []
        log = scratch / "snakemake.log"
        wall = study(scratch, log, faults)
        edit = edit_lr(scratch, log)
        checks = {"figures": figures_checked(RUN / "figures_check.log"), "forecast": forecast_against_runs(log)}
        report = snakemake("--configfile", CONFIG, "--report", "report.html", log=log)
        text, failed = summary(wall, faults, edit, checks, scratch)
        failed += [] if report == 0 else ["the Snakemake report"]
        text += f"\nSnakemake report: {'built' if report == 0 else 'FAILED'}.\n"
        text += f"\n**Failed: {'; '.join(failed)}**\n" if failed else "\nEvery check held.\n"
        (RUN / "rehearsal.md").write_text(text)
        shutil.copy(log, RUN / "rehearsal.snakemake.log")
        print(text)
    finally:
        subprocess.run([str(ROOT / ".ci/slurm.sh"), "down", str(base)], check=False)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
