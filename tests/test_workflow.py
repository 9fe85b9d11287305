"""The workflow as researchers use it: a config edit reruns exactly the jobs it touches."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pandas as pd
import pytest
import yaml
from workflow_run import CI_CONFIG, ENV, ROOT, copy_run, edited, planned_jobs, snakemake

pytestmark = pytest.mark.slow

FIGURES = [
    "fig01_scaling",
    "fig03_rfm",
    "fig04_probe_ratio",
    "fig05_chi_net",
    "fig06_hutchinson",
    "fig07_test_loss",
    "fig08_isocompute",
    "fig09_vit",
    "fig10_components",
    "fig11_components",
    "fig12_entk",
]


def test_ci_scale_run_makes_every_target(workdir):
    targets = [f"figures/{f}.{ext}" for f in FIGURES for ext in ("pdf", "png")] + [
        "results/rfm/deviations.md",
        "results/tables/lm_sizes_stories.md",
        "results/probe/pixels/summary/ratios.csv",
        "results/checks/entk_shift.csv",
        "results/checks/hutchinson_cv.csv",
        "results/data/pixels/train_rgb.bin",
        "results/data/stories/tokenizer.json",
        "logs/rfm_lnp/alpha1.log",
        "logs/benchmarks/rfm_lnp/alpha1.tsv",
        "logs/lm_train/stories/a/seed1.log",
        "logs/benchmarks/lm_train/pixels/b/seed0.tsv",
        "results/lm/stories/b/seed1/model/config.json",
        "results/tables/vit_sizes.md",
        "results/vit/mup/b/seed0/lnp.parquet",
        "logs/vit_train/standard/a/seed0.log",
    ]
    for target in targets:
        assert (workdir / target).stat().st_size > 0, target
    assert planned_jobs(workdir, CI_CONFIG) == Counter()
    assert not (workdir / "results/checkpoints/lm/stories/a/seed0").exists()


def test_one_sizes_learning_rate_reruns_that_size_and_what_depends_on_it(workdir):
    changed = edited(lm__stories__sizes__b__lr=5e-3)
    assert planned_jobs(workdir, changed) == Counter(
        lm_train=2,
        probe_train=2,
        lm_table=1,
        lm_summary=1,
        lm_isocompute=1,
        probe_summary=1,
        hutchinson_cv=1,
        fig01=1,
        fig04=1,
        fig05=1,
        fig06=1,
        fig07=1,
        fig08=1,
        fig10=1,
        all=1,
    )


def test_one_mup_learning_rate_reruns_that_vit_only(workdir):
    changed = edited(vit__mup__sizes__b__lr=3e-3)
    assert planned_jobs(workdir, changed) == Counter(vit_train=1, vit_table=1, vit_summary=1, fig09=1, all=1)


def test_added_seed_trains_only_the_new_runs(workdir):
    changed = edited(lm__stories__seeds=[0, 1, 2])
    assert planned_jobs(workdir, changed) == Counter(
        lm_train=2,
        lm_summary=1,
        lm_isocompute=1,
        probe_summary=1,
        fig01=1,
        fig04=1,
        fig05=1,
        fig06=1,
        fig07=1,
        fig08=1,
        fig10=1,
        all=1,
    )


def test_component_figure_option_reruns_only_that_figure(workdir):
    fig = dict(CI_CONFIG["figures"]["fig11"], dpi=72)
    assert planned_jobs(workdir, edited(figures__fig11=fig)) == Counter(fig11=1, all=1)


def test_plotting_option_reruns_only_its_figure(workdir):
    fig = dict(CI_CONFIG["figures"]["fig03"], dpi=72)
    assert planned_jobs(workdir, edited(figures__fig03=fig)) == Counter(fig03=1, all=1)


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
    proc = snakemake(workdir, "-n", "--configfile", str(path), "--replace-workflow-config", check=False)
    assert proc.returncode != 0
    assert "seeds" in proc.stderr + proc.stdout and "minimum" in proc.stderr + proc.stdout


@pytest.mark.parametrize(
    "change, words",
    [
        ({"lm__stories__sizes__a__lr": 0.0}, ["lr", "exclusiveMinimum"]),
        ({"lm__stories__schedule": "exponential"}, ["schedule", "constant"]),
        ({"datasets": ["stories", "nope"]}, ["datasets", "nope"]),
        ({"vit__dataset": "stories"}, ["vit.dataset", "stories", "not an image data set", "pixels"]),
        ({"vit__mup__sizes__a__patch": 0}, ["patch", "minimum"]),
        ({"figures__fig10__dataset": "nope"}, ["figures.fig10.dataset", "nope"]),
        ({"checks__entk__size": "zz"}, ["checks.entk", "zz"]),
        ({"lm__pixels__warmup": 1000}, ["lm.pixels.warmup=1000 must be below lm.pixels.steps"]),
        ({"vit__steps": 10_000}, ["vit.steps=10000 exceeds vit.passes", "lower vit.steps or raise vit.passes"]),
        ({"data__pixels__source__generate__parts_per_image": 2}, ["generate", "parts_per_image"]),
        ({"vit__compile": True, "vit__device": "cpu"}, ["vit.compile=true with vit.device=cpu", "vit.compile: false"]),
    ],
)
def test_bad_config_is_named_before_any_job(workdir, change, words):
    path = workdir / "bad.yaml"
    path.write_text(yaml.safe_dump(edited(**change)))
    proc = snakemake(workdir, "-n", "--configfile", str(path), "--replace-workflow-config", check=False)
    assert proc.returncode != 0
    for word in words:
        assert word in proc.stderr + proc.stdout, word


@pytest.mark.parametrize(
    "target, words",
    [
        ("results/lm/stories/zz/seed0/done.json", ["no such lm run", "stories/a/seed0", "pixels/b/seed1"]),
        ("results/vit/mup/zz/seed0/lnp.parquet", ["no such vit run", "mup/a/seed0", "standard/b/seed0"]),
        ("results/probe/nope/a/seed0/random/done.json", ["no such probe run", "stories/a/seed0"]),
        ("results/data/nope/train.bin", ["no data set 'nope'", "stories, pixels"]),
    ],
)
def test_unknown_target_lists_the_valid_values(workdir, target, words):
    proc = snakemake(
        workdir,
        "-n",
        "--configfile",
        str(ROOT / "tests/configs/ci.yaml"),
        "--replace-workflow-config",
        target,
        check=False,
    )
    assert proc.returncode != 0
    for word in words:
        assert word in proc.stderr + proc.stdout, word


def test_killed_training_job_resumes_and_matches(workdir, tmp_path):
    """SIGKILL the whole Snakemake run while a training job runs; ``--unlock`` then ``--rerun-incomplete`` resumes it
    from its last checkpoint and ends with the metrics of an uninterrupted run. Both start from copies of the
    CI run, so they train on the same prepared data."""
    config = edited(lm__stories__steps=80, lm__stories__checkpoint_every=10)
    target = "results/lm/stories/a/seed0/done.json"
    runs = {}
    for name in ("reference", "killed"):
        work = copy_run(workdir, tmp_path / name)
        (work / "c.yaml").write_text(yaml.safe_dump(config))
        args = ["--configfile", "c.yaml", "--replace-workflow-config", target]
        if name == "reference":
            snakemake(work, *args)
        else:
            proc = subprocess.Popen(
                [sys.executable, "-m", "snakemake", "--cores", "1", *args],
                cwd=work,
                env=ENV,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            state = work / "results/checkpoints/lm/stories/a/seed0"
            deadline = time.time() + 300
            while not list(state.glob("step*")):
                assert proc.poll() is None and time.time() < deadline
                time.sleep(0.05)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            snakemake(work, *args[:-1], "--unlock")  # a killed Snakemake leaves its lock behind
            snakemake(work, *args[:-1], "--rerun-incomplete", target)
            assert "resuming from checkpoint" in (work / "logs/lm_train/stories/a/seed0.log").read_text()
        runs[name] = work / "results/lm/stories/a/seed0"
    resumed = json.loads((runs["killed"] / "done.json").read_text())["resumed_at"]
    assert len(resumed) == 1 and 0 < resumed[0] < 80
    for table in ("metrics", "lnp", "eval"):
        a, b = (
            pd.read_parquet(r / f"{table}.parquet").drop(columns=["step_s", "lnp_s"], errors="ignore")
            for r in (runs["reference"], runs["killed"])
        )
        pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_paper_config_resolves():
    snakemake(ROOT, "-n", "--configfile", str(ROOT / "config/paper.yaml"))


def test_report_holds_every_figure_and_table(workdir):
    import zipfile

    snakemake(
        workdir,
        "--configfile",
        str(ROOT / "tests/configs/ci.yaml"),
        "--replace-workflow-config",
        "--report",
        "report.zip",
    )
    names = "\n".join(zipfile.ZipFile(workdir / "report.zip").namelist())
    for figure in FIGURES:
        assert f"{figure}.png" in names, figure
    for table in (
        "deviations.csv",
        "lm_sizes_stories.csv",
        "fits.csv",
        "entk_shift.csv",
        "hutchinson_cv.csv",
        "vit_sizes.csv",
    ):
        assert table in names, table
    # every figure's caption carries this run's numbers: Fig. 1's fit, the ViTs' final losses
    html = zipfile.ZipFile(workdir / "report.zip").read("report/report.html").decode()
    assert html.count("Measured in this run") == len(FIGURES)
    fits = pd.read_csv(workdir / "results/lm/stories/summary/fits.csv").set_index("loss")
    caption = (workdir / "results/report/fig01.rst").read_text()
    stories = fits.loc["train"]
    if stories["determined"]:
        assert f"stories: ``alpha = {stories['alpha']:.2g} +- {stories['alpha_err']:.1g}``" in caption
    else:  # CI scale: two sizes, so no fit determines its parameters; the caption says why
        assert f"stories: no power-law fit on these {stories['points']} runs ({stories['reason']})" in caption
    vit = pd.read_csv(workdir / "results/vit/summary/runs.csv").query("parametrization == 'standard'")
    losses = " / ".join(f"{x:.3g}" for x in vit.sort_values("params")["final_test_loss"])
    assert f"test loss\n  {losses}." in (workdir / "results/report/fig09.rst").read_text()


def test_editing_a_caption_template_rerenders_only_that_figure(workdir):
    template = workdir / "workflow/report/fig12.rst"
    text = template.read_text()
    try:
        template.write_text(text + "\nEdited.\n")
        assert planned_jobs(workdir, CI_CONFIG) == Counter(fig12=1, all=1)
    finally:
        template.write_text(text)
        os.utime(template, (0, 0))
