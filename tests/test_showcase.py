"""The showcase (config/showcase.yaml, issue 37) changes only what the demo's runs are measured on:
merged over the embedded default it trains the same models on the same data and seeds, and its
DAG is the demo's job for job."""

from __future__ import annotations

import copy

import yaml
from workflow_run import ROOT, copy_workflow, merged, planned_jobs

DEFAULT = yaml.safe_load((ROOT / "config/config.yaml").read_text())
SHOWCASE = yaml.safe_load((ROOT / "config/showcase.yaml").read_text())


def without_measurement(config: dict) -> dict:
    c = copy.deepcopy(config)
    for key in ("run_name", "report_note"):
        c.pop(key)
    for d in c["lm"].values():
        d.pop("lnp")
    c["vit"].pop("lnp")
    return c


def test_the_showcase_trains_what_the_demo_trains():
    show = merged(DEFAULT, SHOWCASE)
    assert without_measurement(show) == without_measurement(DEFAULT)
    assert show["run_name"] == "showcase" and show["vit"]["lnp"]["hutchinson"] is None  # the paper's exact ViT LNP


def test_the_showcase_dag_is_the_demos(tmp_path):
    work = copy_workflow(tmp_path)
    default, show = planned_jobs(work, DEFAULT), planned_jobs(work, merged(DEFAULT, SHOWCASE))
    assert show == default and show["claims"] == 1 and show["lm_train"] == 14
