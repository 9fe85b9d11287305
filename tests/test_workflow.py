"""The workflow as researchers use it: a config edit reruns exactly the jobs it touches."""

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CI_CONFIG = yaml.safe_load((ROOT / "tests/configs/ci.yaml").read_text())


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args], cwd=workdir, env=env,
        capture_output=True, text=True,
    )
    if check and proc.returncode != 0:
        raise AssertionError(proc.stdout + proc.stderr)
    return proc


def planned_jobs(workdir: Path, config: dict) -> Counter:
    """``{rule: job count}`` that a dry run with ``config`` would execute."""
    path = workdir / "edited.yaml"
    path.write_text(yaml.safe_dump(config))
    out = snakemake(workdir, "-n", "-q", "rules", "--configfile", str(path)).stdout
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
    config = yaml.safe_load(yaml.safe_dump(CI_CONFIG))
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        config[section][key] = value
    return config


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("workflow")
    for name in ("Snakefile", "workflow", "config", "envs"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    snakemake(work, "--configfile", str(ROOT / "tests/configs/ci.yaml"))
    return work


def test_ci_scale_run_makes_every_target(workdir):
    for target in ("figures/fig03_rfm.pdf", "figures/fig03_rfm.png", "results/rfm/deviations.md",
                   "logs/rfm_lnp/alpha1.log", "benchmarks/rfm_lnp/alpha1.tsv"):
        assert (workdir / target).stat().st_size > 0, target
    assert planned_jobs(workdir, CI_CONFIG) == Counter()


def test_plotting_option_reruns_only_its_figure(workdir):
    fig = dict(CI_CONFIG["figures"]["fig03"], dpi=72)
    assert planned_jobs(workdir, dict(CI_CONFIG, figures={"fig03": fig})) == Counter(fig03=1, all=1)


def test_model_width_reruns_measurements_not_theory(workdir):
    assert planned_jobs(workdir, edited(rfm__width=96)) == Counter(rfm_lnp=2, rfm_summary=1, fig03=1, all=1)


def test_theory_option_reruns_no_measurement(workdir):
    assert planned_jobs(workdir, edited(rfm__teacher_draws=50)) == Counter(rfm_theory=1, rfm_summary=1, fig03=1, all=1)


def test_added_alpha_runs_one_new_measurement(workdir):
    added = edited(rfm__alphas=CI_CONFIG["rfm"]["alphas"] + [3.0])
    assert planned_jobs(workdir, added) == Counter(rfm_lnp=1, rfm_theory=1, rfm_summary=1, fig03=1, all=1)


def test_schema_violation_fails_before_any_job(workdir):
    path = workdir / "bad.yaml"
    path.write_text(yaml.safe_dump(edited(rfm__seeds=1)))
    proc = snakemake(workdir, "-n", "--configfile", str(path), check=False)
    assert proc.returncode != 0
    assert "seeds" in proc.stderr + proc.stdout and "minimum" in proc.stderr + proc.stdout


def test_paper_config_resolves():
    snakemake(ROOT, "-n", "--configfile", str(ROOT / "config/paper.yaml"))
