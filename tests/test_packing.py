"""Several small runs on one GPU: the resources a packed job declares, the SLURM group jobs that
pack them (dry runs of the paper config through profiles/slurm), and a share that cannot fit."""

from __future__ import annotations

import re

import yaml
from workflow_run import ROOT, copy_workflow, edited, snakemake

SLURM_DRY_RUN = ("-n", "--workflow-profile", "none", "--profile", "profiles/slurm", "--configfile", "config/paper.yaml")


def _jobs(out: str) -> list[dict]:
    """``{rule, wildcards, resources, group}`` of every training job a dry run prints; ``group``
    is the group job that lists it, or ``None``."""
    jobs, group = [], None
    for line in out.splitlines():
        if m := re.match(r"\[.*\] Group job (\S+)", line):
            group = m.group(1)
        elif re.match(r"\[[^\]]*\]$", line):  # a job outside any group starts at the margin
            group = None
        elif m := re.match(r"\s*rule (\w+):", line):
            jobs.append({"rule": m.group(1), "group": group})
        elif m := re.match(r"\s*wildcards: (.*)", line):
            jobs[-1]["wildcards"] = dict(kv.split("=", 1) for kv in m.group(1).split(", "))
        elif m := re.match(r"\s*resources: (.*)", line):
            jobs[-1]["resources"] = dict(kv.split("=", 1) for kv in m.group(1).split(", "))
    return [job for job in jobs if job["rule"] in ("lm_train", "probe_train", "vit_train")]


def test_small_sizes_share_a_gpu_and_slurm_packs_them_four_to_a_job():
    paper = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    out = snakemake(ROOT, *SLURM_DRY_RUN).stdout
    jobs = _jobs(out)
    assert len(jobs) == 45 + 90 + 24
    packed_sizes = {
        ("lm", d, s)
        for d in paper["datasets"]
        for s, row in paper["lm"][d]["sizes"].items()
        if row.get("resources", {}).get("runs_per_gpu", 1) == 4
    }
    packed_sizes |= {
        ("vit", p, s)
        for p in ("standard", "mup")
        for s, row in paper["vit"][p]["sizes"].items()
        if row.get("resources", {}).get("runs_per_gpu", 1) == 4
    }
    assert packed_sizes, "the paper config packs no size"
    for job in jobs:
        w = job["wildcards"]
        key = ("vit", w["par"], w["vsize"]) if job["rule"] == "vit_train" else ("lm", w["dataset"], w["size"])
        r = job["resources"]
        if key in packed_sizes:
            assert (r.get("gres"), r["gpu_share"], "gpu" in r, r["cpus_per_gpu"]) == ("gpu:1", "25", False, "2"), job
            assert job["group"] == "gpu_pack4", job
        else:
            assert (r.get("gres"), r["gpu_share"], r["gpu"], job["group"]) == (None, "100", "1", None), job
    packed = [job for job in jobs if job["group"]]
    assert len(packed) == 45 and out.count("Group job gpu_pack4") == 9  # 4 runs a job, with their probes


def test_a_share_that_cannot_fit_one_gpu_is_named_before_any_job(tmp_path):
    work = copy_workflow(tmp_path)
    bad = edited(lm__stories__sizes__a__resources={"runs_per_gpu": 4})  # the CI config's runs use no GPU
    (work / "bad.yaml").write_text(yaml.safe_dump(bad))
    proc = snakemake(work, "-n", "--configfile", "bad.yaml", "--replace-workflow-config", check=False)
    assert proc.returncode != 0
    assert "lm.stories.sizes.a.runs_per_gpu=4 with gpu=0" in proc.stdout + proc.stderr
