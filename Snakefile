# spectral-reach: the paper "Spectral Reach" end to end. See README.md.
import os
import sys

from snakemake.utils import min_version

min_version("9.0")


# No configfile directive: profiles/default names config/config.yaml, so that a --configfile on
# the command line replaces it (Snakemake merges a directive's config with --configfile, and does
# not pass --replace-workflow-config on to cluster jobs, which then saw a different config).
if not config:
    raise ValueError(
        "no config: run from this folder (profiles/default reads config/config.yaml), or pass "
        "--configfile config/config.yaml [more.yaml ...] (later files merge over earlier ones)"
    )


# Rules call the `spectral-reach` command, installed beside the Python that runs Snakemake: its
# folder goes first on the jobs' PATH, so `.venv/bin/snakemake` works as well as an activated venv
# (a rule's conda environment, where one is used, still comes first inside the job).
os.environ.update(PATH=os.pathsep.join([os.path.dirname(sys.executable), os.getenv("PATH", "")]))


include: "workflow/rules/validate.smk"


# Each config writes to its own folder (run_name: runs/<run_name>/), so the demo and the paper study
# live side by side; targets and --report paths are inside it. Absolute, from where Snakemake was
# started: a cluster job starts inside it already (validate.smk: launch_folder).
workdir: os.path.join(LAUNCH, run_folder(config))


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/runs.smk"
include: "workflow/rules/settings.smk"
include: "workflow/rules/targets.smk"


# `rfm: null` (an overlay of one's own study) leaves the random-feature study out: no jobs, no Fig. 3.
if RFM:

    include: "workflow/rules/rfm.smk"


include: "workflow/rules/rfm_optimizers.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/lm.smk"
include: "workflow/rules/probe.smk"
include: "workflow/rules/checks.smk"
include: "workflow/rules/vit.smk"
include: "workflow/rules/interventions.smk"
include: "workflow/rules/claims.smk"
include: "workflow/rules/report_tables.smk"
include: "workflow/rules/forecast.smk"
include: "workflow/rules/unknown.smk"


# A job that failed with the project's own error is not retried within this run (spectral_reach/job.py);
# a new run of Snakemake (after a fix) tries it again. Runs before the first job, not on dry runs.
onstart:
    clear_permanent_marks()


rule all:
    default_target: True
    input:
        all_targets(),
