"""The times README.md states for the studies a user runs, regenerated from Snakemake's own logs.

    python benchmarks/doc_times.py [--run] [demo showcase interventions]

For each study, the newest log under ``.snakemake/log/`` of a run of that study's configs that did
its whole DAG (every job a run from nothing plans, ``N of N steps (100%) done``) gives its wall
time, from the log's first timestamp to its last, and how many cores it ran on. ``--run`` first runs
the study from nothing (its run folder removed: run it on a quiet machine, `uptime`). The times go to
``benchmarks/doc_times.json`` with the run's job count, date and the load before it;
``tests/test_docs.py`` holds the README to that file and the file to the current DAG's job counts, so a
change that adds jobs asks for the study to be timed again.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "benchmarks" / "doc_times.json"

#: study -> (its config files over the default, its run folder)
STUDIES = {
    "demo": (["config/config.yaml"], "demo"),
    "showcase": (["config/config.yaml", "config/showcase.yaml"], "showcase"),
    "interventions": (["config/config.yaml", "config/interventions.yaml"], "interventions"),
}
STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$", re.M)


def log_configs(text: str) -> list[str]:
    """The config files a Snakemake log names (``Config file(s): [PosixPath('...'), ...]``), relative to the repository."""
    line = re.search(r"^\s*Config file\(s\): \[(.*)\]$", text, re.M)
    if not line:
        return []
    return [
        str(Path(p).relative_to(ROOT)) if Path(p).is_absolute() else p for p in re.findall(r"'([^']+)'", line.group(1))
    ]


def whole_run(text: str) -> dict | None:
    """Wall seconds, jobs and cores of a log that finished every job it planned, else None."""
    done = re.search(r"^(\d+) of (\d+) steps \(100%\) done$", text, re.M)
    cores = re.search(r"^Provided cores: (\d+)$", text, re.M)
    stamps = [datetime.strptime(s, "%a %b %d %H:%M:%S %Y") for s in STAMP.findall(text)]
    if not (done and cores and stamps):
        return None
    return {
        "seconds": (stamps[-1] - stamps[0]).total_seconds(),
        "jobs": int(done.group(2)),
        "cores": int(cores.group(1)),
    }


def newest_whole_run(configs: list[str], jobs: int) -> dict | None:
    """The newest log of ``configs`` that ran ``jobs`` jobs (a run from nothing), with its date."""
    for log in sorted((ROOT / ".snakemake" / "log").glob("*.snakemake.log"), reverse=True):
        text = log.read_text(errors="replace")
        run = whole_run(text)
        if run and run["jobs"] == jobs and log_configs(text) == configs:
            return {**run, "log": log.name}
    return None


def planned_jobs(configs: list[str]) -> int:
    """Jobs a run of ``configs`` from nothing plans (a dry run into a scratch run folder)."""
    scratch = ROOT / "runs" / "_doc_times_count"
    with tempfile.TemporaryDirectory() as tmp:
        extra = Path(tmp) / "run_name.yaml"
        extra.write_text(f"run_name: {scratch.name}\n")
        try:
            out = subprocess.run(
                [sys.executable, "-m", "snakemake", "-n", "-q", "rules", "--configfile", *configs, str(extra)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return int(re.search(r"^total\s+(\d+)$", out, re.M).group(1))


def run_study(configs: list[str], folder: str, cores: int) -> None:
    shutil.rmtree(ROOT / "runs" / folder, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", str(cores), "--configfile", *configs], cwd=ROOT, check=True
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("studies", nargs="*", default=list(STUDIES), choices=list(STUDIES))
    parser.add_argument("--run", action="store_true", help="run each study from nothing first")
    parser.add_argument("--cores", type=int, default=2)
    a = parser.parse_args()
    record = json.loads(RECORD.read_text()) if RECORD.exists() else {}
    for name in a.studies:
        configs, folder = STUDIES[name]
        jobs = planned_jobs(configs)
        load = os.getloadavg()[0]
        if a.run:
            print(f"{name}: running {jobs} jobs from nothing (load before: {load:.2f})", flush=True)
            run_study(configs, folder, a.cores)
        run = newest_whole_run(configs, jobs)
        if run is None:
            print(f"{name}: no log of a whole run of {jobs} jobs; run it with --run", flush=True)
            continue
        entry = {**run, "minutes": round(run["seconds"] / 60, 1), "date": time.strftime("%Y-%m-%d")}
        if a.run:
            entry["load_before"] = round(load, 2)
        record[name] = entry
        print(f"{name}: {entry['jobs']} jobs in {entry['minutes']} min on {entry['cores']} cores ({run['log']})")
    RECORD.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
