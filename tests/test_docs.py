"""What a researcher copies from the documents works as written: every Python block of the README
and docs/ runs on the CPU install, every excerpt of an example is lines of that example (which
the tests run), the README stays a first screen, and the SLURM profile sends no placeholder
partition or account."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml
from workflow_run import ROOT

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [block for doc in DOCUMENTS for block in re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)]
#: (example, excerpt): a ```py block that follows a line naming `examples/NAME.py`
EXCERPTS = [
    (ROOT / m.group(1), m.group(2))
    for doc in DOCUMENTS
    for m in re.finditer(r"`(examples/\w+\.py)`[^`]*?:\n\n```py\n(.*?)```", doc.read_text(), re.S)
]


def test_the_readme_has_python_blocks_and_stays_a_first_screen():
    assert re.search(r"```python\n", (ROOT / "README.md").read_text())
    assert len((ROOT / "README.md").read_bytes()) < 8 * 1024


def test_the_integration_page_has_an_excerpt_of_each_example():
    assert {p.name for p, _ in EXCERPTS} >= {"hf_trainer.py", "lightning_module.py"}


@pytest.mark.parametrize("example, excerpt", EXCERPTS, ids=[f"{p.name}:{i}" for i, (p, _) in enumerate(EXCERPTS)])
def test_every_excerpt_is_lines_of_its_example(example, excerpt):
    lines = {line.strip() for line in example.read_text().splitlines()}
    for line in excerpt.splitlines():
        assert not line.strip() or line.strip() in lines, f"{line!r} is not in {example}"


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_every_python_block_runs_as_written(block, tmp_path):
    proc = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    if "measure(" in block:  # the LNP loop prints the components it measured, and the loss falls
        rows = re.findall(r"step (\d+): loss ([\d.]+) chi_loss (\S+) chi_net (\S+) chi_pos (\S+)", proc.stdout)
        assert len(rows) >= 2, proc.stdout
        assert float(rows[-1][1]) < float(rows[0][1])
        assert all(0 < float(r[2]) and 0 < float(r[3]) and abs(float(r[4])) <= 1 for r in rows)


def test_the_slurm_profile_sends_no_placeholder_partition_or_account():
    """Unset, SLURM's defaults apply; a placeholder would go to every job silently."""
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    resources = [profile.get("default-resources", {}), *profile.get("set-resources", {}).values()]
    for r in resources:
        assert not {"slurm_partition", "slurm_account"} & set(r), r


def test_the_readmes_job_counts_are_the_configs(tmp_path):
    """The README's job counts, of the embedded default and of the interventions study over it,
    are what a dry run from nothing plans."""
    from workflow_run import copy_workflow, merged, planned_jobs

    readme = " ".join((ROOT / "README.md").read_text().split())
    work = copy_workflow(tmp_path)
    default = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    interventions = merged(default, yaml.safe_load((ROOT / "config/interventions.yaml").read_text()))
    showcase = merged(default, yaml.safe_load((ROOT / "config/showcase.yaml").read_text()))
    record = json.loads((ROOT / "benchmarks/doc_times.json").read_text())
    for name, pattern, config in (
        ("demo", r"(\d+) jobs, about", default),
        ("interventions", r"config/interventions.yaml`, (\d+) jobs", interventions),
        ("showcase", None, showcase),
    ):
        jobs = sum(planned_jobs(work, config).values())
        assert pattern is None or jobs == int(re.search(pattern, readme).group(1)), pattern
        assert record[name]["jobs"] == jobs, (
            f"{name}: the recorded time is of another DAG; python benchmarks/doc_times.py --run {name}"
        )


def test_the_readmes_study_times_are_the_recorded_runs():
    """Issue 40: each time the README gives a study is benchmarks/doc_times.py's record of a whole run
    (rounded to the minute), on the cores it says."""
    record = json.loads((ROOT / "benchmarks/doc_times.json").read_text())
    readme = " ".join((ROOT / "README.md").read_text().split())
    for name, pattern in (
        ("demo", r"jobs, about (\d+) minutes on (\d+) cores"),
        ("showcase", r"config/showcase.yaml`, about (\d+) minutes on (\d+) cores"),
        ("interventions", r"config/interventions.yaml`, \d+ jobs, about (\d+) minutes on (\d+) cores"),
    ):
        minutes, cores = re.search(pattern, readme).groups()
        assert (int(minutes), int(cores)) == (round(record[name]["minutes"]), record[name]["cores"]), name


def test_both_profiles_show_a_failed_jobs_log_on_the_console():
    """Issue 38: Snakemake alone says only "check log file(s)"; the error is in the log."""
    for profile in ("default", "slurm"):
        assert yaml.safe_load((ROOT / f"profiles/{profile}/config.yaml").read_text())["show-failed-logs"] is True


def test_the_cluster_checklists_disk_numbers_are_the_paper_configs():
    """docs/workflow.md's disk figures are what benchmarks/checkpoint_grace.py computes from the
    paper config's sizes (parameter counts on the meta device)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("checkpoint_grace", ROOT / "benchmarks/checkpoint_grace.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    d = bench.disk()
    text = " ".join((ROOT / "docs/workflow.md").read_text().split())
    total = (d["lm_bytes"] + d["vit_bytes"]) / 2**30
    assert f"the {d['runs']} runs keep {total:.1f} GiB of final models" in text
    assert (
        f"{d['lm_bytes'] / 2**30:.1f} GiB of language models and probes, {d['vit_bytes'] / 2**30:.2f} GiB of ViTs"
        in text
    )
    assert f"at most {d['largest_resume_bytes'] / 2**30:.2f} GiB" in text
