"""The config a run folder's results were made under (spectral_reach.provenance): what counts, and
what a report under another config is told."""

from __future__ import annotations

import json

from workflow_run import changed

from spectral_reach.provenance import report_problem, result_config

CONFIG = {
    "run_name": "demo",
    "lm": {"s": {"steps": 600, "log_every": 100, "sizes": {"a": {"lr": 1e-3}}}},
    "figures": {"fig01": {"dpi": 200}},
    "report_note": "a demo",
    "tracking": {"wandb": {"project": "p"}},
}


def edit(**changes) -> dict:
    return changed(CONFIG, **changes)


def test_only_what_shapes_a_result_counts():
    assert result_config(CONFIG) == {"run_name": "demo", "lm": {"s": {"steps": 600, "sizes": {"a": {"lr": 1e-3}}}}}
    same = [edit(lm__s__log_every=7), edit(figures__fig01__dpi=72), edit(report_note="x"), edit(tracking={})]
    assert all(result_config(c) == result_config(CONFIG) for c in same)
    assert result_config(edit(lm__s__steps=601)) != result_config(CONFIG)


def test_a_report_under_another_config_is_told_which_keys_differ(tmp_path):
    record = tmp_path / "claims.json"
    assert report_problem(CONFIG, record) is None  # no run yet: nothing to compare
    record.write_text(json.dumps({"config": result_config(CONFIG)}))
    assert report_problem(edit(figures__fig01__dpi=72), record) is None
    problem = report_problem(edit(lm__s__sizes__a__lr=2e-3, lm__t={"steps": 1}), record)
    assert "it differs in lm.s.sizes.a.lr, lm.t. Run snakemake with this config first" in problem
