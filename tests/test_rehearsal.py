"""The dress rehearsal's config keeps the paper study's DAG: the same runs, windows, checks and
figures, in the same job count but for one data job (the story twin is generated in one job, where
the hub's stories are downloaded one split a job)."""

from __future__ import annotations

import re
from collections import Counter

import yaml
from test_settings_files import local_rules
from workflow_run import ROOT, copy_workflow, planned_jobs, snakemake

PAPER = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
REHEARSAL = yaml.safe_load((ROOT / "config/rehearsal.yaml").read_text())


def shape(config: dict) -> dict:
    """What makes the DAG and its figures: every run's name and seeds, windows and evaluations
    per decade, packing, the probes, the checks' targets, the RFM grid, the figures."""
    lm = {
        d: {
            "sizes": {s: row.get("resources", {}).get("runs_per_gpu", 1) for s, row in c["sizes"].items()},
            "seeds": c["seeds"],
            "per_decade": (c["lnp"]["per_decade"], c["eval"]["per_decade"]),
            "gpu": c["resources"]["gpu"],
        }
        for d, c in config["lm"].items()
    }
    vit = config["vit"]
    return {
        "datasets": config["datasets"],
        "data": {d: (c["kind"], c.get("train_parts"), c.get("test_parts")) for d, c in config["data"].items()},
        "lm": lm,
        "probe": config["probe"],
        "vit": {
            p: {s: row.get("resources", {}).get("runs_per_gpu", 1) for s, row in vit[p]["sizes"].items()}
            for p in ("standard", "mup")
        },
        "vit_runs": (
            vit["dataset"],
            vit["seeds"],
            vit["lnp"]["per_decade"],
            vit["eval"]["per_decade"],
            "hutchinson" in vit["lnp"],
        ),
        "rfm": config["rfm"]["alphas"],
        "checks": {
            k: (c["dataset"], c["size"], c["seed"], c.get("ks"), len(c.get("positions", [])))
            for k, c in config["checks"].items()
        },
        "figures": {k: v.get("dataset") for k, v in config["figures"].items()},
        "isocompute_budgets": config["analysis"]["isocompute_budgets"],
    }


CLUSTER_RULES_WITH_PARAMS = {
    "lm_train", "probe_train", "vit_train", "rfm_lnp", "hutchinson_cv", "entk_spectrum", "stories_generate",
    "stories_download", "tokenizer_train", "stories_tokenize", "images_generate", "images_convert",
}  # fmt: skip


def test_the_rehearsal_has_the_paper_studys_shape():
    assert shape(REHEARSAL) == shape(PAPER)


def test_the_rehearsal_plans_the_paper_studys_jobs_but_one_data_job(tmp_path):
    work = copy_workflow(tmp_path)
    paper, rehearsal = planned_jobs(work, PAPER), planned_jobs(work, REHEARSAL)
    files = paper.pop("params_file")  # one per cluster job with params, written by the master (settings.smk)
    assert files == sum(n for rule, n in paper.items() if rule in CLUSTER_RULES_WITH_PARAMS)
    assert sum(paper.values()) == 218  # with the claims table and the 10 tables' report pages (one Figs. 10-11 job)
    assert rehearsal.pop("params_file") == sum(n for rule, n in rehearsal.items() if rule in CLUSTER_RULES_WITH_PARAMS)
    data = {"stories_download": 2, "cifar5m_download": 6}
    twins = {"stories_generate": 1, "images_generate": 6}
    assert {r: paper[r] for r in data} == data and {r: rehearsal[r] for r in twins} == twins
    assert paper - Counter(data) == rehearsal - Counter(twins)


def test_the_paper_studys_downloads_run_on_the_submit_host_and_its_checks_have_their_resources(tmp_path):
    """Issue 40: compute nodes need no internet (the downloads are local rules), and the checks and
    RFM jobs ask for the memory and time paper.yaml gives them, not the 4 GB / 30 min defaults."""
    work = copy_workflow(tmp_path)
    path = work / "paper.yaml"
    path.write_text(yaml.safe_dump(PAPER))
    out = snakemake(work, "-n", "--configfile", str(path), "--replace-workflow-config").stdout
    jobs = {block.split(":", 1)[0].strip(): block for block in re.split(r"\n(?=(?:local)?rule )", out)}
    assert {"stories_download", "cifar5m_download"} <= local_rules()
    for rule, key in (
        ("hutchinson_cv", ("checks", "hutchinson")),
        ("entk_spectrum", ("checks", "entk")),
        ("rfm_lnp", ("rfm",)),
    ):
        section = PAPER
        for k in key:
            section = section[k]
        r = section["resources"]
        block = jobs[f"rule {rule}"]
        assert f"runtime={r['runtime']}" in block and f"mem_mb={r['mem_mb']}" in block, rule
