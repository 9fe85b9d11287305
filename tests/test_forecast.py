"""The cost forecast: its schedule counts against a real run's tables, its job list against the
workflow's jobs, and its timings taken on the job's own model."""

from __future__ import annotations

import json
import re
from collections import Counter

import pandas as pd
import pytest
from test_train import SPEC as LM_SPEC
from test_vit import SPEC as VIT_SPEC
from workflow_run import ROOT, snakemake

from spectral_reach.models import llama
from spectral_reach.train import RunSpec, forecast, train


def test_schedule_counts_are_those_of_a_real_run(text_data, tmp_path):
    spec = RunSpec.from_dict({**LM_SPEC, "steps": 30})
    train(spec, text_data, tmp_path / "run", tmp_path / "state")
    h = forecast.job_hours(spec, t_step=0.02, t_lnp=0.5, t_eval=3.0)
    assert h["n_lnp"] == len(pd.read_parquet(tmp_path / "run/lnp.parquet"))
    assert h["n_eval"] == len(pd.read_parquet(tmp_path / "run/eval.parquet"))
    seconds = 30 * 0.02 + h["n_lnp"] * 0.5 + h["n_eval"] * 3.0
    assert h["hours"] == pytest.approx(seconds / 3600, rel=1e-12)
    assert h["lnp_fraction"] == pytest.approx(h["n_lnp"] * 0.5 / seconds, rel=1e-12)


def test_every_job_kind_is_timed_on_its_own_model(tmp_path, caplog):
    import logging

    from spectral_reach.cli import main

    jobs = [
        {"rule": "lm_train", "group": "toy", "size": "s", "count": 3, "spec": {**LM_SPEC, "device": "cpu"}},
        {
            "rule": "probe_train",
            "group": "toy",
            "size": "s",
            "count": 6,
            "runs_per_gpu": 2,
            "spec": {**LM_SPEC, "device": "cpu", "trainable": "head"},
        },
        {"rule": "vit_train", "group": "standard", "size": "w24", "count": 1, "spec": VIT_SPEC},
    ]
    with caplog.at_level(logging.INFO, logger=forecast.__name__):
        table = pd.DataFrame([forecast.forecast_row(job, warmup=1, repeats=2) for job in jobs])
    progress = [r.getMessage() for r in caplog.records if r.name == forecast.__name__]
    assert progress[:4] == [  # each phase of a timing job says what it does, and what it measured
        "lm_train: 1 warm-up steps (compilation included), then 2 timed steps",
        f"lm_train: {table['t_step'][0]:.3g} s per training step; timing 3 measured steps",
        f"lm_train: {table['t_lnp'][0]:.3g} s per LNP measurement; timing an evaluation",
        f"lm_train: {table['t_eval'][0]:.3g} s per evaluation",
    ]
    assert "probe_train: timing 2 runs sharing the device" in progress
    assert table["rule"].tolist() == ["lm_train", "probe_train", "vit_train"]
    n_lm = llama.count_parameters(LM_SPEC["size"], LM_SPEC["vocab_size"])
    assert table["params"].tolist()[:2] == [n_lm, n_lm]
    for col in ("t_step", "t_lnp", "t_eval", "hours"):
        assert (table[col] > 0).all(), col
    packed = table.iloc[1]
    assert table["gain"].tolist()[::2] == [1.0, 1.0] and packed["gain"] > 0  # two processes stepped at once
    assert (table["device_hours"] == table["hours"] / table["gain"]).all()
    assert (table["device_hours_all"] == table["device_hours"] * table["count"]).all()
    tables = []
    for i, row in table.iterrows():  # as forecast-job writes them, then put together
        tables.append(str(tmp_path / f"{i}.csv"))
        row.to_frame().T.assign(device="CPU").to_csv(tables[-1], index=False)
    main(["forecast", "--tables", *tables, "--out-csv", str(tmp_path / "f.csv"), "--out-md", str(tmp_path / "f.md")])
    text = (tmp_path / "f.md").read_text()
    assert text.startswith("# Forecast on CPU") and f"**{table['device_hours_all'].sum():.3g}**" in text


def test_the_forecast_rules_cover_every_training_job_of_the_paper_config():
    out = snakemake(ROOT, "results/forecast/forecast.md", "-n", "-p", "--configfile", "config/paper.yaml").stdout
    jobs = [json.loads(m) for m in re.findall(r"forecast-job --job '(.*?)' --warmup", out)]
    counts = Counter()
    for job in jobs:
        counts[job["rule"]] += job["count"]
    planned = snakemake(ROOT, "-n", "-q", "rules", "--configfile", "config/paper.yaml").stdout
    for rule in ("lm_train", "probe_train", "vit_train"):
        assert counts[rule] == int(re.search(rf"^{rule}\s+(\d+)$", planned, re.M).group(1)), rule
    assert len({json.dumps(j["spec"], sort_keys=True) for j in jobs}) == len(jobs)
    packed = {(j["rule"], j["group"], j["size"]) for j in jobs if j["runs_per_gpu"] == 4}
    assert ("lm_train", "simplestories", "1.2M") in packed and ("probe_train", "cifar5m", "102.6K") in packed
