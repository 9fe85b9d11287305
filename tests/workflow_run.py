"""Running the workflow from tests: a copy of it in a temporary folder, Snakemake in a subprocess,
the CI config and edits of it, and the SLURM settings for the local one-node cluster."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CI_CONFIG_PATH = ROOT / "tests/configs/ci.yaml"
CI_CONFIG = yaml.safe_load(CI_CONFIG_PATH.read_text())
ENV = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")

# Where SPECTRAL_REACH_SLURM is set (.ci/run, after .ci/slurm.sh up) the CI-scale run goes through
# profiles/slurm on a real one-node SLURM. It has no accounting, so squeue answers status queries.
SLURM = bool(os.environ.get("SPECTRAL_REACH_SLURM"))
SLURM_ARGS = [
    "--workflow-profile",
    "none",
    "--profile",
    str(ROOT / "profiles/slurm"),
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "2",
]


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args], cwd=workdir, env=ENV, capture_output=True, text=True
    )
    if check and proc.returncode != 0:
        raise AssertionError(proc.stdout + proc.stderr)
    return proc


def planned_jobs(workdir: Path, config: dict) -> Counter:
    """``{rule: job count}`` that a dry run with ``config`` would execute."""
    path = workdir / "edited.yaml"
    path.write_text(yaml.safe_dump(config))
    out = snakemake(workdir, "-n", "-q", "rules", "--configfile", str(path), "--replace-workflow-config").stdout
    lines = out.splitlines()
    if not any(line.startswith("job") and "count" in line for line in lines):
        return Counter()
    start = next(i for i, line in enumerate(lines) if line.startswith("job") and "count" in line) + 2
    jobs = Counter()
    for line in lines[start:]:
        name, count = line.split()
        if name == "total":
            break
        jobs[name] = int(count)
    return jobs


def edited(**changes) -> dict:
    """The CI config with ``a__b__c=value`` set at ``config[a][b][c]``."""
    return changed(CI_CONFIG, **changes)


def changed(base: dict, **changes) -> dict:
    """A copy of ``base`` with ``a__b__c=value`` set at ``config[a][b][c]``."""
    config = yaml.safe_load(yaml.safe_dump(base))
    for dotted, value in changes.items():
        *path, key = dotted.split("__")
        node = config
        for part in path:
            node = node[part]
        node[key] = value
    return config


def copy_workflow(dest: Path) -> Path:
    for name in ("Snakefile", "workflow", "config", "envs"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / name)
    return dest


HOLD = Path(__file__).parent / "hold"


def hold_env(marker: Path, env: dict[str, str]) -> dict[str, str]:
    """``env`` in which the first training process to write a checkpoint holds still after it and
    creates ``marker`` (tests/hold/sitecustomize.py): a kill then lands at a known step."""
    path = os.pathsep.join(p for p in (str(HOLD), env.get("PYTHONPATH", "")) if p)
    return {**env, "PYTHONPATH": path, "SPECTRAL_REACH_HOLD_AFTER_CHECKPOINT": str(marker)}


def kill_after_checkpoint(work: Path, args: list[str], state: Path) -> None:
    """Start ``snakemake args`` in ``work``, SIGKILL it (and its jobs) once the training job writing
    to ``state`` holds still after its first checkpoint (tests/hold: the kill lands at a known step
    whatever the machine's speed), and remove the lock a killed Snakemake leaves behind (``args``
    without targets after the options is what ``--unlock`` is run with: pass the targets last)."""
    import signal
    import time

    marker = work / ".held"
    proc = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "1", *args],
        cwd=work,
        env=hold_env(marker, ENV),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while not marker.exists():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    assert (work / marker.read_text().splitlines()[0]).parent.resolve() == state.resolve()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    options = [a for a in args if not a.startswith("results/")]
    snakemake(work, *options, "--unlock")


def copy_run(src: Path, dest: Path) -> Path:
    """A finished run's folder, results and Snakemake's records included, to change without touching it."""
    shutil.copytree(
        src, dest, symlinks=True, ignore=shutil.ignore_patterns(".snakemake/locks", ".snakemake/slurm_logs")
    )
    return dest


def merged(base: dict, over: dict) -> dict:
    """``over`` merged into ``base`` as Snakemake merges --configfile files (dicts deep, lists replaced)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
