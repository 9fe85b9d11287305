"""The CI-scale workflow on a real one-node SLURM through ``profiles/slurm`` and the SLURM executor;
one training job is cancelled (scancel) mid-run and the profile's retry resumes it.

Runs where ``SPECTRAL_REACH_SLURM`` is set: ``.ci/run`` sets it after ``.ci/slurm.sh up`` has
started munge, slurmctld and slurmd on localhost. The session's CI-scale run (the ``workdir``
fixture, which ``tests/test_workflow.py`` checks target by target) then goes through SLURM.
Elsewhere these tests are skipped; where the variable is set and SLURM does not answer, they fail.
"""

import json
import re
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml
from workflow_run import ENV, SLURM, SLURM_ARGS, copy_run, edited, hold_env, snakemake

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SLURM, reason="needs a SLURM cluster: .ci/run starts one (.ci/slurm.sh up)"),
]

RUN = "results/lm/stories/a/seed0"
# rules that run on the submitting machine (the workflow's localrules); every other job goes to SLURM
LOCAL_RULES = {
    "params_file",
    *(
        f"html_{t}"
        for t in (
            "lm_sizes",
            "fits",
            "probe_ratios",
            "vit_sizes",
            "rfm_deviations",
            "hutchinson_cv",
            "entk_shift",
            "interventions",
        )
    ),  # fmt: skip
    "data_verify",
    "all",
    "rfm_theory",
    "rfm_summary",
    "fig03",
    "lm_summary",
    "lm_table",
    "lm_isocompute",
    "fig01",
    "fig07",
    "fig08",
    "fig10",
    "probe_summary",
    "fig04",
    "fig05",
    "fig06",
    "fig12",
    "vit_summary",
    "vit_table",
    "fig09",
    "claims",
}


def slurm_jobs() -> dict[str, str]:
    """``{comment: job id}`` of the queued and running jobs (the plugin comments ``rule_<rule>_wildcards_<w>``)."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%k"], capture_output=True, text=True, check=True).stdout
    return {comment: job for job, comment in (line.split("|", 1) for line in out.splitlines())}


def test_every_compute_job_of_the_ci_run_went_to_slurm(workdir):
    assert subprocess.run(["sinfo"], capture_output=True).returncode == 0, "SPECTRAL_REACH_SLURM is set but sinfo fails"
    log = (workdir / "run.log").read_text()
    submitted = re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", log)
    ran = job_counts(log)
    remote = sum(n for rule, n in ran.items() if rule not in LOCAL_RULES)
    assert remote > 20 and len(submitted) == remote, (ran, len(submitted))
    assert len({slurm_id for _, slurm_id in submitted}) == remote  # one SLURM job each


def job_counts(log: str) -> dict[str, int]:
    """The job count per rule from Snakemake's "Job stats" table at the top of its log."""
    lines = log.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("job") and "count" in line) + 2
    counts = {}
    for line in lines[start:]:
        name, count = line.split()
        if name == "total":
            return counts
        counts[name] = int(count)
    raise AssertionError("no job stats in the log")


def test_cancelled_training_job_resumes_through_the_slurm_profile(workdir, tmp_path):
    """A longer run of one training job, submitted through the profile, is cancelled (SIGTERM from
    scancel) after its first checkpoint; the profile's retry resumes it, and it ends with the numbers of
    the same job run uninterrupted on this machine."""
    work = copy_run(workdir, tmp_path / "run")
    (work / "c.yaml").write_text(yaml.safe_dump(edited(lm__stories__steps=440, lm__stories__checkpoint_every=20)))
    args = [f"{RUN}/done.json", *SLURM_ARGS, "--configfile", "c.yaml"]  # target first: --configfile takes a list
    log = open(tmp_path / "snakemake.log", "w")
    marker = tmp_path / "held"  # the job holds still after its first checkpoint (step 20) until SIGTERM
    proc = subprocess.Popen(
        ["timeout", "-k", "10", "600", sys.executable, "-m", "snakemake", "--cores", "2", *args],
        cwd=work,
        env=hold_env(marker, ENV),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 300
    while not marker.exists():
        assert proc.poll() is None and time.time() < deadline, (tmp_path / "snakemake.log").read_text()[-3000:]
        time.sleep(0.05)
    subprocess.run(["scancel", slurm_jobs()["rule_lm_train_wildcards_stories_a_0"]], check=True)
    assert proc.wait() == 0, (tmp_path / "snakemake.log").read_text()[-5000:]

    assert "resuming from checkpoint" in (work / "logs/lm_train/stories/a/seed0.log").read_text()
    # SIGTERM reached it held after step 19: it ran step 20, checkpointed at 21 and stopped
    assert json.loads((work / RUN / "done.json").read_text())["resumed_at"] == [21]
    cancelled = {t: pd.read_parquet(work / RUN / f"{t}.parquet") for t in ("metrics", "lnp", "eval")}

    # the same job uninterrupted, locally, on the same prepared data: the same numbers
    snakemake(work, f"{RUN}/done.json", "--configfile", "c.yaml", "--forcerun", f"{RUN}/done.json")
    assert json.loads((work / RUN / "done.json").read_text())["resumed_at"] == []
    for table, got in cancelled.items():
        ref = pd.read_parquet(work / RUN / f"{table}.parquet")
        pd.testing.assert_frame_equal(
            got.drop(columns=["step_s", "lnp_s"], errors="ignore"),
            ref.drop(columns=["step_s", "lnp_s"], errors="ignore"),
            check_exact=True,
        )
