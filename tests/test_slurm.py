"""The CI-scale workflow on a real one-node SLURM through ``profiles/slurm`` and the SLURM executor;
one training job is cancelled (scancel) mid-run and the profile's retry resumes it.

Runs where ``SPECTRAL_REACH_SLURM`` is set: ``.ci/run`` sets it after ``.ci/slurm.sh up`` has
started munge, slurmctld and slurmd on localhost (no accounting, so status comes from squeue).
Elsewhere it is skipped; where the variable is set and SLURM does not answer, it fails.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from test_workflow import ROOT, copy_workflow, edited, snakemake

pytestmark = pytest.mark.skipif(not os.environ.get("SPECTRAL_REACH_SLURM"),
                                reason="needs a SLURM cluster: .ci/run starts one (.ci/slurm.sh up)")

RUN = "results/lm/stories/a/seed0"
# Local-cluster settings on top of the profile: no accounting, so squeue answers status queries.
LOCAL = ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2"]


def slurm_jobs() -> dict[str, str]:
    """``{comment: job id}`` of the queued and running jobs (the plugin comments ``rule_<rule>_wildcards_<w>``)."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%k"], capture_output=True, text=True, check=True).stdout
    return {comment: job for job, comment in (line.split("|", 1) for line in out.splitlines())}


def test_ci_workflow_through_the_slurm_profile_with_a_cancelled_job(tmp_path):
    assert subprocess.run(["sinfo"], capture_output=True).returncode == 0, "SPECTRAL_REACH_SLURM is set but sinfo fails"
    work = copy_workflow(tmp_path)
    # one long enough training run to cancel after its first checkpoint
    config = edited(lm__stories__steps=440, lm__stories__checkpoint_every=20)
    (work / "c.yaml").write_text(yaml.safe_dump(config))
    args = ["--workflow-profile", "none", "--profile", str(ROOT / "profiles/slurm"), *LOCAL, "--configfile", "c.yaml"]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    log = open(tmp_path / "snakemake.log", "w")
    proc = subprocess.Popen(["timeout", "-k", "10", "900", sys.executable, "-m", "snakemake", *args], cwd=work,
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    state, deadline = work / "results/checkpoints/lm/stories/a/seed0", time.time() + 600
    while not list(state.glob("step*")):
        assert proc.poll() is None and time.time() < deadline, (tmp_path / "snakemake.log").read_text()[-3000:]
        time.sleep(0.05)
    job = slurm_jobs()["rule_lm_train_wildcards_stories_a_0"]
    subprocess.run(["scancel", job], check=True)
    assert proc.wait() == 0, (tmp_path / "snakemake.log").read_text()[-5000:]

    main_log = (tmp_path / "snakemake.log").read_text()
    assert "Job" in main_log and "slurm" in main_log.lower()
    for target in ["figures/fig01_scaling.pdf", "figures/fig09_vit.png", "figures/fig12_entk.png",
                   "results/probe/pixels/summary/ratios.csv", "results/tables/vit_sizes.md", f"{RUN}/model/config.json"]:
        assert (work / target).stat().st_size > 0, target
    assert "resuming from checkpoint" in (work / "logs/lm_train/stories/a/seed0.log").read_text()
    resumed = json.loads((work / RUN / "done.json").read_text())["resumed_at"]
    assert len(resumed) == 1 and 0 < resumed[0] < 440
    cancelled = {t: pd.read_parquet(work / RUN / f"{t}.parquet") for t in ("metrics", "lnp", "eval")}

    # the same job uninterrupted, locally, on the same prepared data: the same numbers
    snakemake(work, "--configfile", "c.yaml", "--forcerun", f"{RUN}/done.json",
              f"{RUN}/done.json")
    assert json.loads((work / RUN / "done.json").read_text())["resumed_at"] == []
    for table, got in cancelled.items():
        ref = pd.read_parquet(work / RUN / f"{table}.parquet")
        pd.testing.assert_frame_equal(got.drop(columns=["step_s", "lnp_s"], errors="ignore"),
                                      ref.drop(columns=["step_s", "lnp_s"], errors="ignore"), check_exact=True)
