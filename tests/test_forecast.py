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

from spectral_reach import forecast_cpu, rfm
from spectral_reach.checks import hutchinson_cv, reduced_entk
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
    jobs = [{**job, "runtime_min": 30} for job in jobs]
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
    assert (table["wall_hours"] == table["hours"] * table["runs_per_gpu"] / table["gain"]).all()
    tables = []
    for i, row in table.iterrows():  # as forecast-job writes them, then put together
        tables.append(str(tmp_path / f"{i}.csv"))
        row.to_frame().T.assign(device="CPU").to_csv(tables[-1], index=False)
    main(["forecast", "--tables", *tables, "--out-csv", str(tmp_path / "f.csv"), "--out-md", str(tmp_path / "f.md")])
    text = (tmp_path / "f.md").read_text()
    assert text.startswith("# Forecast on CPU") and f"**{table['device_hours_all'].sum():.3g}**" in text
    assert "Every job's requested runtime covers its forecast wall time" in text


def test_the_report_names_each_job_kind_whose_runtime_is_below_its_forecast():
    row = {"rule": "lm_train", "group": "toy", "params": 10, "count": 2, "steps": 100, "t_step": 0.1, "t_lnp": 1.0}
    row |= {"t_eval": 1.0, "lnp_fraction": 0.1, "runs_per_gpu": 1, "gain": 1.0}
    table = pd.DataFrame(
        [
            {
                **row,
                "size": "s",
                "hours": 0.5,
                "device_hours": 0.5,
                "device_hours_all": 1,
                "wall_hours": 0.5,
                "runtime_min": 30,
            },
            {
                **row,
                "size": "m",
                "hours": 2.0,
                "device_hours": 2,
                "device_hours_all": 4,
                "wall_hours": 2.0,
                "runtime_min": 90,
            },
        ]
    )
    assert forecast.over_runtime(table)["size"].tolist() == ["m"]  # 30 min covers 0.5 h exactly
    text = forecast.report(table, "CPU")
    assert "* lm_train toy m: forecast 120 min, requested 90 min" in text and "toy s:" not in text


CHECKED = {"size": {"layers": 1, "hidden": 16, "ff": 32, "heads": 2}, "vocab_size": 96, "context_length": 16, "seed": 3}


def recording(monkeypatch, module, name):
    """Replace ``module.name`` by a wrapper that records each call's arguments; returns the list."""
    calls, real = [], getattr(module, name)

    def wrapper(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def shapes(call):
    """A call's arguments with tensors (and tuples of them) replaced by their shapes and dtypes."""
    import torch

    def one(v):
        if isinstance(v, torch.Tensor):
            return (tuple(v.shape), v.dtype)
        if isinstance(v, (tuple, list)):
            return tuple(one(x) for x in v)
        return v if isinstance(v, (int, float, str, type(None))) else type(v).__name__

    args, kwargs = call
    return tuple(one(a) for a in args), tuple(sorted((k, one(v)) for k, v in kwargs.items()))


def test_each_cpu_job_kind_times_one_unit_of_the_jobs_own_work(monkeypatch, text_data, tmp_path):
    """The unit a CPU kind times is exactly one of the calls its job makes (same shapes, same
    settings), and the job makes as many as the forecast counts."""
    model_dir = tmp_path / "model"
    llama.build(CHECKED["size"], 96, 16, seed=3).save_pretrained(model_dir)
    hcv = {"samples": 4, "draws": 20, "per_call": 8, "ks": [1, 2], "probe_seed": 0}
    entk = {"positions": [2, 9], "vocab_count": 5, "sample": 0, "seed": 3}
    rfm_c = {"n_samples": 32, "input_dim": 8, "width": 64, "seeds": 3, "first_seed": 0}
    jobs = {
        "hutchinson_cv": ({"settings": hcv, "spec": CHECKED}, hutchinson_cv, "measure"),
        "entk_spectrum": ({"settings": entk, "spec": CHECKED}, reduced_entk, "spectrum"),
        "rfm_lnp": ({"settings": rfm_c}, rfm, "run_seed"),
    }
    job_work = {
        "hutchinson_cv": lambda: hutchinson_cv.run(model_dir, text_data, 16, 4, 20, 8, 0, [1, 2]),
        "entk_spectrum": lambda: reduced_entk.init_vs_trained(
            model_dir, CHECKED["size"], text_data, 16, 96, 3, 0, 5, [2, 9]
        ),
        "rfm_lnp": lambda: rfm.run([1.5], 32, 8, 64, 3, 0),
    }
    # what a unit's cost depends on: the arguments' shapes, but not RFM's alpha and seed, nor which token ids the eNTK takes
    key = {
        "hutchinson_cv": shapes,
        "entk_spectrum": lambda c: (shapes(c)[0][:4], len(c[0][4])),
        "rfm_lnp": lambda c: shapes(c)[0][1:4],
    }
    for rule, (job, module, name) in jobs.items():
        calls = recording(monkeypatch, module, name)
        row = forecast.forecast_row(
            {"rule": rule, "group": "g", "size": "s", "count": 2, "runtime_min": 30, **job}, 1, 1
        )
        unit = {key[rule](c) for c in calls}
        assert len(calls) == 2 and len(unit) == 1, rule  # one untimed, one timed, alike
        calls.clear()
        job_work[rule]()
        assert {key[rule](c) for c in calls} == unit, rule
        assert row["steps"] == len(calls) == {"hutchinson_cv": 3, "entk_spectrum": 2, "rfm_lnp": 3}[rule], rule
        assert row["t_step"] > 0 and row["hours"] == pytest.approx(row["steps"] * row["t_step"] / 3600, rel=1e-12)
        assert (
            row["device_hours_all"] == pytest.approx(2 * row["hours"], rel=1e-12) and row["wall_hours"] == row["hours"]
        )
    n = llama.count_parameters(CHECKED["size"], 96)
    assert (
        forecast_cpu.forecast_row(
            {"rule": "entk_spectrum", "group": "g", "size": "s", "count": 1, **jobs["entk_spectrum"][0]}
        )["params"]
        == n
    )


def planned_jobs(dry_run: str) -> list[dict]:
    """Each job of a dry run's output (packed group jobs' members too): its rule, wildcards and resources."""
    jobs = []
    for block in re.split(r"\n(?= *rule \w+:\n)", dry_run)[1:]:
        job = {"rule": re.match(r" *rule (\w+):", block).group(1), "wildcards": {}, "resources": {}}
        for key in ("wildcards", "resources"):
            line = re.search(rf"^ +{key}: (.*)$", block, re.M)
            if line:
                job[key] = dict(kv.split("=", 1) for kv in line.group(1).split(", "))
        jobs.append(job)
    return jobs


def forecast_key(job: dict) -> tuple[str, str, str] | None:
    """The forecast kind of a planned job (rule, group, size), None for a job the forecast does not time."""
    w, rule = job["wildcards"], job["rule"]
    if rule in ("lm_train", "probe_train"):
        return rule, w["dataset"], w["size"]
    if rule == "variant_train":
        return rule, f"{w['dataset']}.{w['variant']}", w["size"]
    if rule == "vit_train":
        return rule, w["par"], w["vsize"]
    return (rule, "", "") if rule in forecast_cpu.KINDS else None


def test_the_forecast_times_every_kind_of_job_of_the_paper_study_at_its_requested_runtime():
    """Every training, variant, check and RFM job of the paper study (with its interventions) is a
    forecast kind with the right count and the runtime the job itself requests."""
    configs = ("--configfile", "config/paper.yaml", "config/interventions_paper.yaml")
    out = snakemake(ROOT, "results/forecast/forecast.md", "-n", "-p", *configs).stdout
    kinds = [json.loads(m) for m in re.findall(r"forecast-job --job '(.*?)' --warmup", out)]
    planned = Counter()
    runtimes = {}
    for job in planned_jobs(snakemake(ROOT, "-n", *configs).stdout):
        key = forecast_key(job)
        if key:
            planned[key] += 1
            runtimes.setdefault(key, set()).add(int(job["resources"]["runtime"]))
    timed = Counter()
    for kind in kinds:
        key = (
            (kind["rule"], "", "")
            if kind["rule"] in forecast_cpu.KINDS
            else (kind["rule"], kind["group"], kind["size"])
        )
        timed[key] += kind["count"]
        assert runtimes[key] == {kind["runtime_min"]}, key
    assert timed == planned
    assert {k[0] for k in planned} == {"lm_train", "probe_train", "variant_train", "vit_train", *forecast_cpu.KINDS}
    training = [k for k in kinds if k["rule"] not in forecast_cpu.KINDS]
    assert len({json.dumps(j["spec"], sort_keys=True) for j in training}) == len(training)
    packed = {(j["rule"], j["group"], j["size"]) for j in training if j["runs_per_gpu"] == 4}
    assert ("lm_train", "simplestories", "1.2M") in packed and ("probe_train", "cifar5m", "102.6K") in packed
    assert ("variant_train", "simplestories.muon", "1.2M") in packed
