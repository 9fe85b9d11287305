"""The workflow as researchers use it: a config edit reruns exactly the jobs it touches."""

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_run_identity import assert_finite_checkpoints
from workflow_run import (
    CI_CONFIG,
    CI_CONFIG_PATH,
    ENV,
    ROOT,
    copy_run,
    edited,
    hold_env,
    kill_after_checkpoint,
    merged,
    planned_jobs,
    snakemake,
)

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
        "results/claims.md",
        "results/claims.html",
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
        params_file=4,  # settings.smk: the 2 language models' and the 2 probes' params
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
        claims=1,
        html_lm_sizes=1,  # report_tables.smk: each rebuilt table's page
        html_fits=1,
        html_probe_ratios=1,
        html_hutchinson_cv=1,
        all=1,
    )


def test_one_mup_learning_rate_reruns_that_vit_only(workdir):
    changed = edited(vit__mup__sizes__b__lr=3e-3)
    assert planned_jobs(workdir, changed) == Counter(
        params_file=1, vit_train=1, vit_table=1, vit_summary=1, fig09=1, claims=1, html_vit_sizes=1, all=1
    )


def test_jobs_that_finished_while_snakemake_was_dead_rerun_on_an_edit(workdir, tmp_path):
    """A cluster job that ends while its Snakemake master is dead gets no provenance (the master
    records it), and Snakemake ignores a params change of such a job: the rehearsal's lr edit left
    one seed at its old lr. Its params file (settings.smk), a local rule's output, changes all the same."""
    work = copy_run(workdir, tmp_path / "run")
    run = "results/lm/stories/b/seed0"
    config = ["--configfile", str(CI_CONFIG_PATH), "--replace-workflow-config"]
    outputs = [f"{run}/{f}" for f in ("model", "metrics.parquet", "lnp.parquet", "eval.parquet", "done.json")]
    snakemake(work, *config, "--cleanup-metadata", *outputs, "results/rfm/alpha1.parquet")  # as if never seen to finish
    assert planned_jobs(work, edited(rfm__width=96))["rfm_lnp"] == 2
    changed = edited(lm__stories__sizes__b__lr=5e-3)
    assert planned_jobs(work, changed)["lm_train"] == 2
    path = work / "edited.yaml"
    snakemake(work, "--configfile", str(path), "--replace-workflow-config", f"{run}/done.json")
    assert json.loads((work / run / "done.json").read_text())["spec"]["lr"] == 5e-3


def test_added_seed_trains_only_the_new_runs(workdir):
    changed = edited(lm__stories__seeds=[0, 1, 2])
    assert planned_jobs(workdir, changed) == Counter(
        params_file=2,
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
        claims=1,
        html_fits=1,
        html_probe_ratios=1,
        all=1,
    )


def test_an_overlay_switches_the_vits_off(workdir):
    """Issue 40: ``vit: null`` drops every ViT job and target; on a finished tree only the claims
    table is rebuilt (without its ViT rows)."""
    assert planned_jobs(workdir, edited(vit=None)) == Counter(claims=1, all=1)


def test_an_overlay_switches_the_rfm_study_off(workdir):
    """``rfm: null`` drops the RFM jobs, Fig. 3 and its table page; the claims table loses its RFM row."""
    assert planned_jobs(workdir, edited(rfm=None)) == Counter(claims=1, all=1)


def test_a_study_of_ones_own_data_set_runs_only_what_it_needs(workdir):
    """Issue 40: an overlay of the embedded default with one data set of one's own, the ViTs and
    the RFM study off, and nothing else edited (the checks and Figs. 10-11 follow the data sets):
    it plans that data set's preparation, training, probes, checks, figures and tables, and nothing
    of the default's data sets, the ViTs or the RFM study."""
    default = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    mine = {**default["data"]["synthstories"]}
    mine["source"] = {"generate": {**mine["source"]["generate"], "seed": 7}}
    overlay = {"run_name": "mine", "datasets": ["mine"], "vit": None, "rfm": None}
    overlay |= {"data": {"mine": mine}, "lm": {"mine": default["lm"]["synthstories"]}}
    jobs = planned_jobs(workdir, merged(default, overlay))
    lm = default["lm"]["synthstories"]
    probed = set(default["probe"]["seeds"]) & set(lm["seeds"])
    assert jobs["lm_train"] == len(lm["sizes"]) * len(lm["seeds"])
    assert jobs["probe_train"] == len(lm["sizes"]) * len(probed) * 2  # pretrained and random backbones
    assert jobs["stories_generate"] == jobs["stories_tokenize"] == jobs["hutchinson_cv"] == jobs["entk_spectrum"] == 1
    assert jobs["fig10"] == jobs["claims"] == 1
    dropped = [
        r for r in jobs if r.startswith(("rfm", "vit", "images", "html_rfm", "html_vit")) or r in ("fig03", "fig09")
    ]
    assert dropped == []


def test_per_layer_lnp_reruns_the_language_models_only_when_asked(workdir):
    """Issue 39: ``lnp_groups: true`` reruns every language model (now with lnp_groups.parquet as a
    declared output) and what reads them; the probes' own settings do not change (their trainable
    head is one group), and the ViTs and RFM are untouched. Off (the key absent), nothing reruns."""
    lm_runs = sum(len(c["sizes"]) * len(c["seeds"]) for c in CI_CONFIG["lm"].values())
    jobs = planned_jobs(workdir, edited(lnp_groups=True))
    assert jobs["lm_train"] == lm_runs and jobs["params_file"] == lm_runs
    assert not {"vit_train", "rfm_lnp"} & set(jobs) and jobs["probe_train"] > 0
    out = with_config(workdir, edited(lnp_groups=True), "-n").stdout
    assert out.count("/lnp_groups.parquet") >= lm_runs
    assert planned_jobs(workdir, edited()) == Counter()


def test_intervention_variants_train_only_themselves_and_their_study(workdir):
    """Issue 39: variants added to a finished tree train each size and seed once more per variant and
    build their summary, table, Fig. 13 and claims rows; no base run, probe or other figure reruns."""
    name = next(iter(CI_CONFIG["lm"]))
    runs = len(CI_CONFIG["lm"][name]["sizes"]) * len(CI_CONFIG["lm"][name]["seeds"])
    variants = {
        "sgd": {"optimizer": "sgd", "momentum": 0.9, "lr_mult": 10},
        "muon": {"optimizer": "muon", "momentum": 0.95},
        "mup": {"init": "mup", "mup": {"base_width": 8}, "lr": 0.02},
    }
    config = merged(CI_CONFIG, {"lm": {name: {"variants": variants}}})
    jobs = planned_jobs(workdir, config)
    assert jobs == Counter(
        params_file=3 * runs,
        variant_train=3 * runs,
        variant_summary=1,
        interventions_table=1,
        fig13=1,
        claims=1,
        html_interventions=1,
        all=1,
    )
    (workdir / "edited.yaml").write_text(yaml.safe_dump(config))
    out = snakemake(workdir, "-n", "-p", "--configfile", "edited.yaml", "--replace-workflow-config").stdout
    specs = [
        json.loads(m) for m in re.findall(r"--spec '(.*?)' --data-dir \S+ --out-dir results/variants/\S+/mup/", out)
    ]
    assert len(specs) == runs  # the muP variant: one lr for every size, the schema's defaults filled in
    assert all(s["lr"] == 0.02 and s["init"] == "mup" for s in specs)
    assert all(s["mup"] == {"base_width": 8, "init_std": 0.02, "output_mult": 1.0} for s in specs)


def test_the_rfm_optimizer_study_adds_only_its_jobs(workdir):
    """Issue 39, item 5: the rfm_optimizers section adds one job per data exponent, the fits and Fig. 14."""
    study = {"alphas": [1.0, 1.5], "widths": [8, 16, 32], "budgets": [4], "n_train": 64, "n_test": 64, "dim": 8,
             "seeds": 1, "measure_points": 4, "gd": {"lr_scale": 1.0}, "adam": {"lr": 0.03},
             "ng": {"lr": 0.5, "ridge": 1e-3}}  # fmt: skip
    jobs = planned_jobs(workdir, merged(CI_CONFIG, {"rfm_optimizers": study}))
    assert jobs == Counter(params_file=2, rfm_optimizers=2, rfm_optimizer_fits=1, fig14=1, claims=1, all=1)


def test_a_log_cadence_edit_reruns_nothing(workdir):
    """Issue 38: log_every changes no number; it reaches the jobs outside their params."""
    name = next(iter(CI_CONFIG["lm"]))
    assert planned_jobs(workdir, edited(**{f"lm__{name}__log_every": 7, "vit__log_every": 3})) == Counter()
    tracked = {**CI_CONFIG, "tracking": {"wandb": {"project": "p", "mode": "offline"}, "mlflow": {"tracking_uri": "x"}}}
    assert planned_jobs(workdir, tracked) == Counter()  # nor W&B and MLflow


def test_component_figure_option_reruns_only_that_figure(workdir):
    fig = dict(CI_CONFIG["figures"]["fig10"], dpi=72)
    assert planned_jobs(workdir, edited(figures__fig10=fig)) == Counter(fig10=1, all=1)


def test_plotting_option_reruns_only_its_figure(workdir):
    fig = dict(CI_CONFIG["figures"]["fig03"], dpi=72)
    assert planned_jobs(workdir, edited(figures__fig03=fig)) == Counter(fig03=1, all=1)


def test_model_width_reruns_measurements_not_theory(workdir):
    assert planned_jobs(workdir, edited(rfm__width=96)) == Counter(
        params_file=2, rfm_lnp=2, rfm_summary=1, fig03=1, claims=1, html_rfm_deviations=1, all=1
    )


def test_theory_option_reruns_no_measurement(workdir):
    assert planned_jobs(workdir, edited(rfm__teacher_draws=50)) == Counter(
        rfm_theory=1, rfm_summary=1, fig03=1, claims=1, html_rfm_deviations=1, all=1
    )


def test_added_alpha_runs_one_new_measurement(workdir):
    added = edited(rfm__alphas=CI_CONFIG["rfm"]["alphas"] + [3.0])
    assert planned_jobs(workdir, added) == Counter(
        params_file=1, rfm_lnp=1, rfm_theory=1, rfm_summary=1, fig03=1, claims=1, html_rfm_deviations=1, all=1
    )


def test_schema_violation_fails_before_any_job(workdir):
    path = workdir / "bad.yaml"
    path.write_text(yaml.safe_dump(edited(rfm__seeds=1)))
    proc = snakemake(workdir, "-n", "--configfile", str(path), "--replace-workflow-config", check=False)
    assert proc.returncode != 0
    assert "seeds" in proc.stderr + proc.stdout and "minimum" in proc.stderr + proc.stdout


@pytest.mark.parametrize(
    "change, words",
    [
        ({"lm__stories__sizes__a__lr": 0.0}, ["config key lm.stories.sizes.a.lr: 0.0 is less than or equal to"]),
        ({"lm__stories__schedule": "exponential"}, ["schedule", "constant"]),
        ({"datasets": ["stories", "nope"]}, ["datasets", "nope"]),
        ({"vit__dataset": "stories"}, ["vit.dataset", "stories", "not an image data set", "pixels"]),
        ({"vit__mup__sizes__a__patch": 0}, ["patch", "minimum"]),
        ({"figures__fig10__dataset": "stories"}, ["figures.fig10", "dataset"]),  # it draws every data set
        ({"checks__entk__size": "zz"}, ["checks.entk", "zz"]),
        ({"lm__pixels__warmup": 1000}, ["lm.pixels.warmup=1000 must be below lm.pixels.steps"]),
        ({"vit__steps": 10_000}, ["vit.steps=10000 exceeds vit.passes", "lower vit.steps or raise vit.passes"]),
        ({"data__pixels__source__generate__parts_per_image": 2}, ["generate", "parts_per_image"]),
        ({"checks__hutchinson__draws": 8}, ["checks.hutchinson.draws=8 gives fewer than two groups of K=8"]),
        ({"checks__hutchinson__resources": {"gpu": 1}}, ["checks.hutchinson.resources", "gpu"]),  # a CPU job
    ],
)
def test_bad_config_is_named_before_any_job(workdir, change, words):
    path = workdir / "bad.yaml"
    path.write_text(yaml.safe_dump(edited(**change)))
    proc = snakemake(workdir, "-n", "--configfile", str(path), "--replace-workflow-config", check=False)
    assert proc.returncode != 0
    for word in words:
        assert word in proc.stderr + proc.stdout, word


def tree(workdir) -> dict[str, bytes]:
    """Every file of a finished run, by path: its bytes."""
    return {str(p.relative_to(workdir)): p.read_bytes() for p in sorted(workdir.rglob("*")) if p.is_file()
            and ".snakemake" not in p.parts and p.name != "bad.yaml"}  # fmt: skip


@pytest.mark.parametrize(
    "change, words",
    [
        ({"lm__stories__sizes__a__hidden": 30}, ["lm.stories.sizes.a.heads: 2 heads of hidden=30", "odd head dimension 15"]),
        ({"lm__pixels__lnp__measure_contexts": 100000}, ["lm.pixels.lnp.measure_contexts: 100000 exceeds the 16 validation"]),
        ({"lm__pixels__context_length": 4096}, ["lm.pixels.context_length: 4096 exceeds the 1024 pixels"]),
        ({"lm__pixels__steps": 100}, ["lm.pixels.steps: 100 exceeds one pass over the 64 training images"]),
        ({"vit__standard__sizes__a__patch": 7}, ["vit.standard.sizes.a.patch: 7 does not divide the 32-pixel image side"]),
        # what only the prepared corpus tells, judged on its record (verified.json) as Snakemake starts
        ({"lm__stories__steps": 100000}, ["lm.stories.steps: 100000 exceeds 1 pass(es) over the prepared data of stories"]),
        ({"lm__stories__lnp__measure_contexts": 5000}, ["lm.stories.lnp.measure_contexts: 5000 exceeds the", "contexts of 16 tokens of results/data/stories/validation.bin"]),
        ({"lm__stories__eval__test_contexts": 5000}, ["lm.stories.eval.test_contexts: 5000 exceeds the", "results/data/stories/test.bin"]),
    ],
)  # fmt: skip
def test_a_cross_key_mistake_fails_before_any_job_and_leaves_the_finished_tree_as_it_was(workdir, change, words):
    """Issue 38: these passed validation, started a training job (which deletes the finished run's
    outputs before it runs) and failed there. Now the run itself (not a dry run) stops while
    Snakemake parses, naming the key, and every file of the finished tree is byte-identical."""
    before = tree(workdir)
    path = workdir / "bad.yaml"
    path.write_text(yaml.safe_dump(edited(**change)))
    proc = snakemake(workdir, "--configfile", str(path), "--replace-workflow-config", check=False)
    assert proc.returncode != 0
    for word in words:
        assert word in proc.stderr + proc.stdout, word
    assert "Select jobs to execute" not in proc.stdout + proc.stderr
    assert tree(workdir) == before


def test_yaml_1_1_exponent_numbers_are_numbers(workdir):
    """``3e-4`` and ``1e6`` reach the config as strings (YAML 1.1); where the schema wants a number they
    are one: the CI config with its numbers written that way plans no job."""
    text = yaml.safe_dump(CI_CONFIG).replace("lr: 0.01", "lr: 1e-2").replace("steps: 24", "steps: 2.4e1")
    assert yaml.safe_load(text)["lm"]["stories"]["sizes"]["a"]["lr"] == "1e-2"
    (workdir / "strings.yaml").write_text(text)
    out = snakemake(workdir, "-n", "--configfile", "strings.yaml", "--replace-workflow-config").stdout
    assert "Nothing to be done" in out


def test_a_type_error_names_the_key_path_first(workdir):
    path = workdir / "bad.yaml"
    path.write_text(yaml.safe_dump(edited(lm__stories__sizes__a__lr="fast")))
    proc = snakemake(workdir, "-n", "--configfile", str(path), "--replace-workflow-config", check=False)
    lines = (proc.stdout + proc.stderr).splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("ValueError"))
    assert lines[first + 1] == "config key lm.stories.sizes.a.lr: 'fast' is not of type 'number'"
    assert "Failed validating" not in proc.stdout + proc.stderr  # no schema dump before it


def test_rules_find_the_package_without_an_activated_venv(workdir, tmp_path):
    """``.venv/bin/snakemake`` with a PATH that lacks the venv runs a job (exit 127 before)."""
    work = copy_run(workdir, tmp_path / "bare")
    env = {**ENV, "PATH": "/usr/bin:/bin"}
    cmd = [str(Path(sys.executable).parent / "snakemake"), "--cores", "1", "-f", "results/tables/lm_sizes_stories.md"]
    cmd += ["--configfile", str(ROOT / "tests/configs/ci.yaml"), "--replace-workflow-config"]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "spectral-reach: command not found" not in (work / "logs/lm_table/stories.log").read_text()


def test_each_run_name_writes_to_its_own_folder(workdir, tmp_path):
    """A config with ``run_name`` lives in ``runs/<run_name>/``: beside a finished tree it plans every job of
    its own and touches none of the other's; a relative data path in it is read from where Snakemake runs."""
    work = copy_run(workdir, tmp_path / "named")
    files = {s: [f"results/data/stories/generated/{s}.parquet"] for s in ("train", "test")}
    named = edited(run_name="other", data__stories__source={"files": files})
    planned = planned_jobs(work, named)
    assert planned["lm_train"] == 8 and planned["stories_tokenize"] == 1 and "stories_generate" not in planned
    assert planned_jobs(work, CI_CONFIG) == Counter()  # the unnamed tree is still complete and current
    before = (work / "results/tables/lm_sizes_stories.md").stat().st_mtime_ns
    with_config(work, named, "results/tables/lm_sizes_stories.md")
    assert (work / "runs/other/results/tables/lm_sizes_stories.md").exists()
    assert (work / "runs/other/logs/lm_table/stories.log").exists()
    assert (work / "results/tables/lm_sizes_stories.md").stat().st_mtime_ns == before
    # a cluster job's Snakemake starts inside the run folder: it finds the same tree, not runs/other/runs/other
    inside = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(work / "Snakefile"), "--workflow-profile", "none"]
        + ["--configfile", str(work / "c.yaml"), "-n", "results/tables/lm_sizes_stories.md"],
        cwd=work / "runs/other", env=ENV, capture_output=True, text=True,
    )  # fmt: skip
    assert inside.returncode == 0 and "Nothing to be done" in inside.stdout, inside.stdout + inside.stderr
    assert not (work / "runs/other/runs").exists()


def test_the_readme_target_forms_plan_what_they_say(workdir):
    """The README's rerun commands, with its config files replaced by the CI config, on a finished tree."""
    readme = (ROOT / "README.md").read_text()
    forms = {
        "snakemake figures/fig01_scaling.pdf --configfile config/config.yaml my.yaml": Counter(),
        "snakemake -f figures/fig01_scaling.pdf": Counter(fig01=1),
        "snakemake figures/fig01_scaling.pdf --forcerun lm_summary": Counter(lm_summary=2, fig01=1),
    }
    for form, expected in forms.items():
        assert form in readme, form
        args = form.split()[1:]
        if "--configfile" in args:
            args = args[: args.index("--configfile")]
        ci = ["--configfile", str(ROOT / "tests/configs/ci.yaml"), "--replace-workflow-config"]
        out = snakemake(workdir, "-n", *args, *ci).stdout
        planned = Counter(
            {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", out, re.M) if m.group(1) != "total"}
        )
        assert planned == expected, form


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
            kill_after_checkpoint(work, args, work / "results/checkpoints/lm/stories/a/seed0")
            snakemake(work, *args[:-1], "--rerun-incomplete", target)
            assert "resuming from checkpoint" in (work / "logs/lm_train/stories/a/seed0.log").read_text()
        runs[name] = work / "results/lm/stories/a/seed0"
    assert json.loads((runs["killed"] / "done.json").read_text())["resumed_at"] == [10]  # its first checkpoint
    for table in ("metrics", "lnp", "eval"):
        a, b = (
            pd.read_parquet(r / f"{table}.parquet").drop(columns=["step_s", "lnp_s"], errors="ignore")
            for r in (runs["reference"], runs["killed"])
        )
        pd.testing.assert_frame_equal(a, b, check_exact=True)


LR_TARGET = "results/lm/stories/a/seed0/done.json"


def run_tables(run) -> dict[str, pd.DataFrame]:
    return {
        t: pd.read_parquet(run / f"{t}.parquet").drop(columns=["step_s", "lnp_s"], errors="ignore")
        for t in ("metrics", "lnp", "eval")
    }


def assert_same_tables(a, b) -> None:
    for (name, x), y in zip(run_tables(a).items(), run_tables(b).values()):
        pd.testing.assert_frame_equal(x, y, check_exact=True, obj=name)


def with_config(work, config: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    (work / "c.yaml").write_text(yaml.safe_dump(config))
    return snakemake(work, "--configfile", "c.yaml", "--replace-workflow-config", *args, check=check)


@pytest.fixture(scope="module")
def new_lr_run(workdir, tmp_path_factory):
    """An uninterrupted run of stories/a/seed0 at the edited learning rate: what every edit below must end as."""
    work = copy_run(workdir, tmp_path_factory.mktemp("new_lr") / "work")
    with_config(work, edited(lm__stories__steps=80, lm__stories__sizes__a__lr=5e-3), LR_TARGET)
    return work / "results/lm/stories/a/seed0"


def test_lr_edit_after_a_kill_starts_fresh_and_equals_a_run_of_the_new_lr(workdir, new_lr_run, tmp_path):
    """kill -9 after a checkpoint, edit lr, rerun: the old checkpoint is set aside with the changed
    key named, and the run equals an uninterrupted run of the new lr, bitwise."""
    work = copy_run(workdir, tmp_path / "killed")
    (work / "c.yaml").write_text(yaml.safe_dump(edited(lm__stories__steps=80, lm__stories__checkpoint_every=10)))
    args = ["--configfile", "c.yaml", "--replace-workflow-config", LR_TARGET]
    kill_after_checkpoint(work, args, work / "results/checkpoints/lm/stories/a/seed0")
    with_config(work, edited(lm__stories__steps=80, lm__stories__sizes__a__lr=5e-3), "--rerun-incomplete", LR_TARGET)
    log = (work / "logs/lm_train/stories/a/seed0.log").read_text()
    assert "its run differs: lr: 0.01 -> 0.005. Starting fresh" in log and "resuming from" not in log
    assert list((work / "results/checkpoints/lm/stories/a/seed0.superseded").glob("step*"))
    done = json.loads((work / LR_TARGET).read_text())
    assert done["resumed_at"] == [] and done["spec"]["lr"] == 5e-3
    assert_same_tables(new_lr_run, work / "results/lm/stories/a/seed0")


def test_a_blown_up_lr_fails_clearly_and_the_advised_edit_ends_as_a_fresh_run(workdir, new_lr_run, tmp_path):
    work = copy_run(workdir, tmp_path / "blown")
    blown = edited(lm__stories__steps=80, lm__stories__checkpoint_every=2, lm__stories__sizes__a__lr=1.0e6)
    proc = with_config(work, blown, LR_TARGET, check=False)
    assert proc.returncode != 0
    log = (work / "logs/lm_train/stories/a/seed0.log").read_text()
    assert "NonFiniteLoss: " in log and "Lower the learning rate (lr) in config/" in log
    # A NaN loss or non-finite parameters, whichever this machine's rounding reaches first: either
    # way no checkpoint holds non-finite state, and the message says what each next run does.
    state = work / "results/checkpoints/lm/stories/a/seed0"
    assert_finite_checkpoints(state)
    kept = sorted(state.glob("step*"))
    if kept:
        assert f"resumes the last good checkpoint, {kept[-1].relative_to(work)} (step {int(kept[-1].name[4:])})" in log
    else:
        assert "Nothing was checkpointed: the next run starts fresh" in log
    advised = edited(lm__stories__steps=80, lm__stories__checkpoint_every=2, lm__stories__sizes__a__lr=5e-3)
    with_config(work, advised, LR_TARGET)
    log = (work / "logs/lm_train/stories/a/seed0.log").read_text()
    assert ("its run differs: lr: 1000000.0 -> 0.005. Starting fresh" in log) == bool(kept)
    assert "resuming from" not in log
    assert_same_tables(new_lr_run, work / "results/lm/stories/a/seed0")


def test_ctrl_c_stops_the_run_and_its_jobs_within_seconds(workdir, tmp_path):
    """Issue 40: Ctrl-C in the terminal (SIGINT to Snakemake's whole process group) while a
    training job runs: Snakemake and every process it started are gone within seconds, and the
    job's wrapper still closes its attempt in the log."""
    import signal
    import time

    work = copy_run(workdir, tmp_path / "ctrl_c")
    marker = work / ".held"
    target = "results/lm/stories/a/seed0/done.json"
    args = ["--configfile", str(CI_CONFIG_PATH), "--replace-workflow-config", "--forcerun", "lm_train", target]
    proc = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "1", *args],
        cwd=work, env=hold_env(marker, ENV), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.time() + 300
    while not marker.exists():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    held = work / marker.read_text().splitlines()[0]  # the held job's checkpoint
    start = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=60)
    while True:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() - start < 60, "a process of the run outlived Ctrl-C by a minute"
        time.sleep(0.05)
    assert time.monotonic() - start < 10
    run = "/".join(held.relative_to(work / "results/checkpoints").parts[:4])  # lm/<data set>/<size>/seed<n>
    attempts = (work / f"logs/{run.replace('lm/', 'lm_train/', 1)}.log.attempts").read_text()
    assert attempts.rstrip().splitlines()[-1].startswith("=== exit ")


def test_data_corrupted_in_place_fails_before_training_and_keeps_finished_runs(workdir, tmp_path):
    work = copy_run(workdir, tmp_path / "corrupt")
    path = work / "results/data/stories/train.bin"
    size, original = path.stat().st_size, path.read_bytes()
    with open(path, "r+b") as f:
        f.seek(size // 2)
        f.write(b"\xff" * 4096)
    done = {p: p.read_text() for p in (work / "results/lm/stories").glob("*/seed*/done.json")}
    proc = snakemake(
        work, "--configfile", str(ROOT / "tests/configs/ci.yaml"), "--replace-workflow-config", check=False
    )
    assert proc.returncode != 0
    log = (work / "logs/data_verify/stories.log").read_text()
    assert "DataError: results/data/stories/train.bin: sha256" in log and "rerun its data rule" in log
    assert path.stat().st_size == size
    assert done and all(p.read_text() == text for p, text in done.items())  # no training job started
    path.write_bytes(original)  # the file restored, the check passes; its log keeps both attempts
    snakemake(work, "--configfile", str(ROOT / "tests/configs/ci.yaml"), "--replace-workflow-config")
    attempts = (work / "logs/data_verify/stories.log.attempts").read_text().split("=== attempt at ")[1:]
    assert len(attempts) == 3  # the CI run's, the corrupt data's, the restored data's
    assert "DataError" in attempts[1] and attempts[1].rstrip().endswith("=== exit 78")
    assert attempts[2].rstrip().endswith("=== exit 0") and "DataError" not in attempts[2]
    assert "DataError" not in (work / "logs/data_verify/stories.log").read_text()


def test_data_prepared_anew_is_judged_before_training_once_and_not_retried(workdir, tmp_path):
    """An edit that prepares the data anew (validation_stories) with steps beyond what it will
    hold: the data check refuses it before any training job starts (its finished runs stay), the
    console shows the error as one line, and the profile's retry does not run the check again; the
    next Snakemake run, the config fixed, tries it again and passes."""
    work = copy_run(workdir, tmp_path / "anew")
    done = {p: p.read_bytes() for p in (work / "results/lm/stories").glob("*/seed*/done.json")}
    bad = work / "bad.yaml"
    bad.write_text(yaml.safe_dump(edited(data__stories__validation_stories=60, lm__stories__steps=100000)))
    profile = ["--retries", "1", "--show-failed-logs"]  # as profiles/default and profiles/slurm set them
    proc = snakemake(work, "--configfile", str(bad), "--replace-workflow-config", *profile, check=False)
    console = proc.stdout + proc.stderr
    assert proc.returncode != 0
    message = "error: ConfigError: config key lm.stories.steps: 100000 exceeds 1 pass(es) over the prepared data"
    assert message in console and "Traceback" not in console
    attempts = (work / "logs/data_verify/stories.log.attempts").read_text().split("=== attempt at ")[1:]
    assert "Traceback (most recent call last)" in attempts[-2] and attempts[-2].rstrip().endswith("=== exit 78")
    assert "=== not run again" in attempts[-1] and "Traceback" not in attempts[-1]  # the retry ran nothing
    assert not (work / "results/data/stories/verified.json").exists()
    assert done and all(p.read_bytes() == b for p, b in done.items())  # no training job started
    bad.write_text(yaml.safe_dump(edited(data__stories__validation_stories=60)))
    snakemake(work, "--configfile", str(bad), "--replace-workflow-config", "results/data/stories/verified.json")
    assert "=== exit 0" in (work / "logs/data_verify/stories.log.attempts").read_text().split("=== attempt at ")[-1]
    assert not list((work / "logs").rglob("*.permanent"))


COMPILED = [
    "results/lm/stories/a/seed0",
    "results/probe/stories/a/seed0/random",
    "results/vit/standard/a/seed0",
]


def test_compiled_jobs_equal_eager_ones(workdir, tmp_path):
    """compile: true (torch.compile, inductor on this CPU) for an LM, a probe and a ViT through
    Snakemake: their tables equal the eager CI run's to fp32 rounding (1e-5)."""
    import numpy as np

    work = copy_run(workdir, tmp_path / "compiled")
    config = edited(lm__stories__compile=True, vit__compile=True)
    with_config(work, config, *[f"{run}/done.json" for run in COMPILED])
    for run in COMPILED:
        assert json.loads((work / run / "done.json").read_text())["spec"]["compile"] is True
        for table in ("metrics", "lnp", "eval"):
            eager, compiled = (pd.read_parquet(root / run / f"{table}.parquet") for root in (workdir, work))
            cols = [c for c in eager.select_dtypes("number").columns if c not in ("step_s", "lnp_s")]
            assert list(eager["step"]) == list(compiled["step"])
            for col in cols:  # 1e-5 of each column's scale: delta, a signed dot product, cancels near zero
                scale = float(eager[col].abs().max())
                np.testing.assert_allclose(
                    compiled[col], eager[col], rtol=1e-5, atol=1e-5 * scale, err_msg=f"{run} {table} {col}"
                )


def test_the_claims_table_judges_this_runs_own_tables(workdir):
    """Issue 37: a row per claim and task, each verdict one of three, its numbers those of the run's
    summaries (here the last-window chi_pos of Fig. 1, recomputed from the window table)."""
    from spectral_reach.analysis.claims_table import COLUMNS, _ends

    table = pd.read_csv(workdir / "results/claims.csv")
    assert list(table.columns) == COLUMNS
    assert set(table["verdict"]) <= {"holds", "does not hold", "undetermined"}
    tasks = table.groupby("task")["claim"].count().to_dict()
    assert tasks == {
        "stories": 7, "pixels": 7, "ViT, standard": 2, "ViT, muP": 2, "Hutchinson check": 1,
        "random-feature models": 1, "eNTK check": 1,
    }  # fmt: skip
    windows = pd.read_parquet(workdir / "results/lm/stories/summary/lnp_windows.parquet")
    last = _ends(windows, "chi_pos").groupby("size")["last"].mean()
    se = _ends(windows, "chi_pos_se").groupby("size")["last"].max()
    reach = table[(table["task"] == "stories") & table["claim"].str.startswith("larger models")].iloc[0]
    assert (
        " / ".join(f"{v:.3g}" for v in last.loc[["a", "b"]])
        + " (largest standard error of a seed's last-window mean: "
        + " / ".join(f"{v:.3g}" for v in se.loc[["a", "b"]])
        + "); a-b gaps in combined standard errors (positive: ordered), seed "
    ) in reach["evidence"]
    assert (workdir / "results/claims.md").read_text().startswith("# Claims of the paper in run")


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
        "claims.html",
    ):
        assert table in names, table
    # every figure's caption carries this run's numbers: Fig. 1's fit, the ViTs' final losses
    html = zipfile.ZipFile(workdir / "report.zip").read("report/report.html").decode()
    assert html.count("Measured in this run") == len(FIGURES)
    assert CI_CONFIG["report_note"] in html  # what these numbers are, at the top (workflow/report/workflow.rst)
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


def browse_report(report: Path) -> dict:
    """Open ``report`` (a built report.html) in headless Chromium and click through it as a reader does
    (tests/report_probe.js): per file, its category, description and view."""
    import base64
    import html
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium here (Debian: apt-get install chromium; .ci/run installs it as root)")
    page = report.read_text()
    probed = report.with_name("probed.html")
    end = page.rfind("</body>")
    probed.write_text(page[:end] + (ROOT / "tests/report_probe.js").read_text() + page[end:])
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=300000", "--dump-dom",
         probed.as_uri()],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout  # fmt: skip
    found = json.loads(html.unescape(re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S).group(1)))
    assert "error" not in found, found.get("error")
    for entry in found["files"].values():  # an HTML page shows as a data URL: its source, decoded
        data = entry["frame"].split(";base64,", 1)
        entry["frame"] = base64.b64decode(data[1]).decode() if len(data) == 2 else ""
    return found


def test_the_report_renders_in_a_browser(workdir):
    """Issue 40: in a real browser, every figure shows as an image with its caption carrying this run's
    numbers, and every table as a page (not only a CSV download) with its caption."""
    snakemake(workdir, "--configfile", str(ROOT / "tests/configs/ci.yaml"), "--replace-workflow-config",
              "--report", "report.html")  # fmt: skip
    found = browse_report(workdir / "report.html")
    files = found["files"]
    # the sidebar in the paper's order: the claims, then figure by figure, then the appendix tables
    assert found["categories"] == [
        "Claims", "Fig. 01", "Fig. 01 and 07", "Fig. 03", "Fig. 04", "Fig. 05", "Fig. 06", "Fig. 07", "Fig. 08",
        "Fig. 09", "Fig. 10-11", "Fig. 12", "Tables 1-2", "Tables 3-4",
    ]  # fmt: skip
    for figure in FIGURES:
        entry = files[next(f for f in files if f.endswith(f"{figure}.png"))]
        assert entry["width"] > 300 and "Measured in this run" in entry["info"], figure
    pages = sorted(p.name for p in (workdir / "results/report/tables").glob("*.html"))
    per_dataset = [f"{t}_{d}.html" for t in ("lm_sizes", "fits", "probe_ratios") for d in CI_CONFIG["datasets"]]
    assert pages == sorted(
        per_dataset + ["vit_sizes.html", "rfm_deviations.html", "hutchinson_cv.html", "entk_shift.html"]
    )
    for name in pages + ["claims.html"]:
        path = next(f for f in files if f.endswith(name))
        entry = files[path]
        assert "<table>" in entry["frame"] and "DESCRIPTION" in entry["info"], name
        caption = entry["info"].split("DESCRIPTION", 1)[1].split("SIZE", 1)[0].strip()
        assert len(caption) > 40, (name, caption)  # the table's caption, not an empty description
    table = pd.read_csv(workdir / "results/tables/lm_sizes_stories.csv")
    page = files[next(f for f in files if f.endswith("lm_sizes_stories.html"))]["frame"]
    assert page.count("<tr>") == len(table) + 1  # every row, and the header


def test_a_report_under_another_config_is_refused(workdir):
    """Issue 40: a report built under a config whose results were not made (an edit not yet run, an
    overlay forgotten) is refused, naming the keys; one under a style or logging edit is built."""
    bad = workdir / "bad.yaml"
    bad.write_text(yaml.safe_dump(edited(lm__stories__sizes__a__lr=3e-3, rfm__width=96)))
    proc = snakemake(workdir, "--configfile", str(bad), "--replace-workflow-config", "--report", "r.html", check=False)
    assert proc.returncode != 0 and not (workdir / "r.html").exists()
    assert "no report: the results in this run folder were made under another config" in proc.stderr
    assert "it differs in lm.stories.sizes.a.lr, rfm.width. Run snakemake with this config first" in proc.stderr
    styled = dict(CI_CONFIG["figures"]["fig03"], dpi=72)
    bad.write_text(yaml.safe_dump(edited(figures__fig03=styled, lm__stories__log_every=3)))
    snakemake(workdir, "--configfile", str(bad), "--replace-workflow-config", "--report", "r.html")
    assert (workdir / "r.html").exists()
    (workdir / "r.html").unlink()


def test_editing_a_caption_template_rerenders_only_that_figure(workdir):
    template = workdir / "workflow/report/fig12.rst"
    text = template.read_text()
    try:
        template.write_text(text + "\nEdited.\n")
        assert planned_jobs(workdir, CI_CONFIG) == Counter(fig12=1, all=1)
    finally:
        template.write_text(text)
        os.utime(template, (0, 0))
