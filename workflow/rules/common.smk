# Helpers shared by the rules: config checks, wildcard constraints, config slices, figure commands,
# data inputs. What each training run is lives in runs.smk; targets in targets.smk.
import importlib.util
import json
import os
import sys

from spectral_reach import config_checks, provenance
from spectral_reach.version import PROBE_VERSION, RESULT_VERSION

config_checks.resolve_check_runs(config)  # the run each check reads, where the config names none


def check_settings(config):
    """Cross-key checks the schema cannot express; each names its keys and the fix."""
    runs = [(f"lm.{d}", config["lm"][d]) for d in config["datasets"]]
    if config.get("vit"):
        runs.append(("vit", config["vit"]))
    for key, run in runs:
        if run["warmup"] >= run["steps"]:
            raise ValueError(f"{key}.warmup={run['warmup']} must be below {key}.steps={run['steps']}")
    blocks = [(f"lm.{d}.sizes.{s}", lm_resources(d, s)) for d in LM_DATASETS for s in config["lm"][d]["sizes"]]
    blocks += [(f"vit.{p}.sizes.{s}", vit_resources(p, s)) for p in PARAMETRIZATIONS if VIT for s in VIT[p]["sizes"]]
    for key, r in blocks:
        if r["runs_per_gpu"] > 1 and r.get("gpu") != 1:
            raise ValueError(
                f"{key}.runs_per_gpu={r['runs_per_gpu']} with gpu={r.get('gpu')}: runs share one GPU, so "
                f"set {key}.gpu: 1, or runs_per_gpu: 1"
            )
    hcv = config["checks"]["hutchinson"]
    if hcv["draws"] < 2 * max(hcv["ks"]):
        raise ValueError(
            f"checks.hutchinson.draws={hcv['draws']} gives fewer than two groups of K={max(hcv['ks'])} "
            f"(checks.hutchinson.ks): the CV of K needs at least 2 K draws; raise draws to {2 * max(hcv['ks'])} or drop that K"
        )
    config_checks.check(config)  # every other cross-key check (src/spectral_reach/config_checks.py)
    for backend in config.get("tracking") or {}:
        if importlib.util.find_spec(backend) is None:
            raise ValueError(
                f"config key tracking.{backend} is set, but {backend} is not installed here: "
                f"pip install -e '.[tracking]' (or remove tracking.{backend})"
            )


def check_prepared(config):
    """The training runs against each data set's prepared data where its record is current (the
    data check judges data about to be prepared anew: its needs reach it in the environment)."""
    needs = config_checks.data_needs(config)
    os.environ[config_checks.NEEDS_ENV] = json.dumps(needs, sort_keys=True)
    for d, wants in needs.items():
        if config["data"][d]["kind"] == "image":
            sources = image_parts(d, "train_parts") + image_parts(d, "test_parts")
        else:
            sources = [tokenizer_file(d), *story_files(d, "train"), *story_files(d, "test")]
        sources += [f for f in prepared_files(d) if f.endswith(".bin")]
        splits = config_checks.prepared_splits(verified(d), config["data"][d], sources)
        if splits:
            config_checks.raise_first(config_checks.prepared_problems(d, wants, splits, f"results/data/{d}"))


def fmt_alpha(alpha):
    """The wildcard text of an alpha: '1.5', '2'."""
    return f"{alpha:g}"


#: The random-feature study (config rfm; ``rfm: null`` leaves it out).
RFM = config.get("rfm")
ALPHAS = [fmt_alpha(a) for a in RFM["alphas"]] if RFM else []


def constraint(values):
    """A wildcard regex matching exactly ``values`` (and nothing when there are none)."""
    return "|".join(re.escape(str(v)) for v in values) or "(?!)"


def datasets_with(kind, source_kind=None):
    """Data sets of a kind (text, image), optionally only those whose source is ``source_kind``."""
    return [
        d
        for d, c in config["data"].items()
        if c["kind"] == kind and (source_kind is None or source_kind in c["source"])
    ]


LM_DATASETS = config["datasets"]
for _d in LM_DATASETS:
    for _section in ("data", "lm"):
        if _d not in config[_section]:
            raise ValueError(
                f"config key datasets: {_d!r} has no entry under {_section} (have: {', '.join(config[_section])})"
            )
LM_SIZES = sorted({s for d in LM_DATASETS for s in config["lm"][d]["sizes"]})

VIT = config.get("vit")
#: The optimizer study in the random-feature model (config rfm_optimizers; empty: none).
RFM_OPTIMIZERS = config.get("rfm_optimizers") or {}
RFM_OPTIMIZER_ALPHAS = RFM_OPTIMIZERS.get("alphas", [])
if VIT is not None and config["data"].get(VIT["dataset"], {}).get("kind") != "image":
    raise ValueError(
        f"config key vit.dataset: {VIT['dataset']!r} is not an image data set under data "
        f"(have: {', '.join(datasets_with('image'))})"
    )
PARAMETRIZATIONS = ("standard", "mup")


def lm_resources(dataset, size):
    """Scheduler resources of a size: the data set's defaults, updated by the size's own (one run
    per GPU unless they say otherwise)."""
    c = config["lm"][dataset]
    return {"runs_per_gpu": 1, **c["resources"], **c["sizes"][size].get("resources", {})}


def vit_resources(par, size):
    return {"runs_per_gpu": 1, **VIT["resources"], **VIT[par]["sizes"][size].get("resources", {})}


check_settings(config)  # after the checks above, which name unknown data sets
VIT_SIZES = sorted({s for p in PARAMETRIZATIONS for s in (VIT[p]["sizes"] if VIT else {})})


wildcard_constraints:
    alpha=constraint(ALPHAS),
    dataset=constraint(config["data"]),
    seed=r"\d+",
    size=constraint(LM_SIZES),
    par=constraint(PARAMETRIZATIONS),
    vsize=constraint(VIT_SIZES),


def params_path(rule, wildcards):
    """The params file of the job of ``rule`` with ``wildcards`` (settings.smk):
    ``results/settings/<rule>/<name>=<value>/....json``, names sorted (``job.json`` for none)."""
    parts = [f"{k}={v}" for k, v in sorted(wildcards.items())] or ["job"]
    return os.path.join("results", "settings", rule, *parts) + ".json"


def params_paths(rule, names, runs, **same):
    """The params files of ``rule``'s jobs for ``runs``: each run a tuple of the wildcards ``names``
    names, plus the wildcards ``same`` that all share (what a summary rule reads, one per run)."""
    return [params_path(rule, {**dict(zip(names, run)), **same}) for run in runs]


def params_file(rule):
    """The input function of a job's params file: ``settings=params_file("<its rule>")``."""
    return lambda w: params_path(rule, dict(w.items()))


def params_of(rule, job):
    """The params of the job of ``rule`` that ``job`` names (its wildcards, as :func:`params_path`
    writes them), as sorted JSON: each param as Snakemake gives it to the job, a function of the
    wildcards called with them."""
    from snakemake.iocontainers import Wildcards

    pairs = [] if job == "job" else [part.split("=", 1) for part in job.split(os.sep)]
    w = Wildcards(fromdict=dict(pairs))
    values = {name: value(w) if callable(value) else value for name, value in getattr(rules, rule).params.items()}
    return json.dumps(values, sort_keys=True)


def pick(mapping, keys):
    """Only the keys a job uses, in a fixed order: editing another key, or re-ordering keys in
    a YAML file, does not change the job's params (Snakemake compares their text)."""
    return {k: mapping[k] for k in keys}


def config_slice(section, keys):
    return pick(config[section], keys)


def figure_style(name):
    return pick(config["figures"][name], ["width", "height", "dpi"])


def caption_template(name):
    """A figure's caption template in workflow/report/: what it shows and what the paper claims,
    with slots for what the run measured. An input, so editing it re-renders only that figure (a
    path from the working directory: workflow.source_path would name a new temporary copy each run)."""
    return os.path.relpath(os.path.join(workflow.basedir, "workflow", "report", f"{name}.rst"))


# Every job's log keeps every attempt. Snakemake deletes a failed job's declared log before its
# retry (even with --keep-incomplete), so a job writes live to <log>.attempts (never declared, never
# deleted: a header per attempt, the output as it comes, the exit status), then copies its own
# attempt into the declared <log>. No pipe: a preemption's SIGTERM reaches the command alone
# (`trap true TERM` keeps the shell), which checkpoints and exits 143; its output is kept too.
def logged(command):
    """``command`` run by ``spectral-reach-job`` (spectral_reach/job.py): every attempt's output in
    ``<log>.attempts``, this attempt's in ``{log}`` (a project error as its message alone), and no
    retry of an error that fails on every attempt. The shell waits for it on SIGTERM (``trap``), so
    a preempted job writes its checkpoint and log before Snakemake sees it end."""
    return f"trap true TERM; spectral-reach-job {{log}} -- {command}"


def clear_permanent_marks():
    """Forget which jobs failed with a project error in an earlier run (``onstart``)."""
    from spectral_reach.job import clear_marks

    cleared = clear_marks("logs")
    if cleared:
        print(f"{len(cleared)} job(s) that failed with a config or data error are tried again", file=sys.stderr)


def figure_command(head):
    """A figure rule's shell command: ``head``, then what every figure takes (style, PDF and PNG,
    caption template and rendering) and its log."""
    tail = (
        " --width {params.style[width]} --height {params.style[height]} --dpi {params.style[dpi]}"
        " --pdf {output.pdf} --png {output.png} --caption-template {input.template} --caption {output.caption}"
    )
    return logged(head + tail)


def caption(name):
    """Where a figure's rule writes its rendered caption (an output)."""
    return f"results/report/{name}.rst"


def report_caption(name):
    """The rendered caption for ``report(caption=...)``: Snakemake reads captions when it builds the
    report, so one written by the figure's rule shows this run's numbers. An absolute path, as
    Snakemake resolves captions against the rule file's folder."""
    return os.path.abspath(caption(name))


def rfm_params():
    """What one RFM measurement job depends on (each alpha is its own job)."""
    return config_slice("rfm", ["n_samples", "input_dim", "width", "seeds", "first_seed"])


def source(dataset):
    return config["data"][dataset]["source"]


def story_files(dataset, split):
    """The story files of a text data set's split, wherever its source puts them."""
    src = source(dataset)
    if "generate" in src:
        return [f"results/data/{dataset}/generated/{split}.parquet"]
    if "hub" in src:
        return [f"results/data/{dataset}/hub/{split}.parquet"]
    return src["files"][split]


def tokenizer_file(dataset):
    given = config["data"][dataset]["tokenizer"]
    return given if given is not None else f"results/data/{dataset}/tokenizer.json"


def image_parts(dataset, key):
    """The CIFAR-5M part files of ``train_parts`` or ``test_parts``."""
    src, parts = source(dataset), config["data"][dataset][key]
    if "generate" in src:
        return [f"results/data/{dataset}/generated/part{k}.npz" for k in parts]
    if src.get("download"):
        return [f"results/data/{dataset}/download/part{k}.npz" for k in parts]
    return [f"{src['path']}/part{k}.npz" for k in parts]


SPLITS = ("train", "validation", "test")


def split_files(dataset, parts=("",)):
    """The prepared files of each split for ``parts`` (``""``: token splits; ``"_rgb"``, ``"_labels"``
    of image data sets), with their sidecars."""
    return [f"results/data/{dataset}/{s}{p}.{ext}" for s in SPLITS for p in parts for ext in ("bin", "json")]


def prepared_files(dataset):
    """Every prepared file of a data set: token splits, and for images also RGB and labels; sidecars."""
    return split_files(dataset, ("", "_rgb", "_labels") if config["data"][dataset]["kind"] == "image" else ("",))


def verified(dataset):
    """The record of ``data_verify``: a training job starts only after its data passed the checks."""
    return f"results/data/{dataset}/verified.json"


def data_files(dataset):
    """The prepared token splits that training reads, checked (:func:`verified`)."""
    return split_files(dataset) + [verified(dataset)]


def claims_inputs():
    """The summaries the claims table (claims.smk) judges, for the sections this run has."""
    per_dataset = {
        "lm_runs": "results/lm/{dataset}/summary/runs.csv",
        "lm_lnp": "results/lm/{dataset}/summary/lnp_windows.parquet",
        "fits": "results/lm/{dataset}/summary/fits.csv",
        "probe_lnp": "results/probe/{dataset}/summary/lnp_windows.parquet",
        "ratios": "results/probe/{dataset}/summary/ratios.csv",
    }
    files = {k: expand(v, dataset=LM_DATASETS) for k, v in per_dataset.items()}
    if RFM:
        files["rfm"] = "results/rfm/deviations.csv"
    if LM_DATASETS:
        files |= {"hutchinson": "results/checks/hutchinson_cv.csv", "entk": "results/checks/entk_shift.csv"}
    if VIT:
        files |= {"vit_runs": "results/vit/summary/runs.csv", "vit_lnp": "results/vit/summary/lnp_windows.parquet"}
    if intervention_datasets():  # interventions.smk
        files |= {
            "intervention_runs": expand("results/variants/{dataset}/summary/runs.csv", dataset=intervention_datasets()),
            "intervention_lnp": expand(
                "results/variants/{dataset}/summary/lnp_windows.parquet", dataset=intervention_datasets()
            ),
        }
    return files


def claims_flags(input):
    """The command's optional inputs, as flags, for those this run has."""
    names = ("lm_runs", "lm_lnp", "fits", "probe_lnp", "ratios", "vit_runs", "vit_lnp", "hutchinson", "entk", "rfm")
    names += ("intervention_runs", "intervention_lnp")
    flags = " ".join(
        f"--{n.replace('_', '-')} {' '.join(str(p) for p in (input[n] if isinstance(input[n], list) else [input[n]]))}"
        for n in names
        if n in input.keys() and input[n]
    )
    if "intervention_runs" in input.keys():
        flags += " --intervention-datasets " + " ".join(intervention_datasets())
    if RFM:
        flags += f" --rfm-seeds {RFM['seeds']}"
    return flags


# The tables the report shows as pages (report_tables.smk).
# Report categories: "Claims", then "Fig. 01" to "Fig. 14" (zero-padded: the report's sidebar sorts
# categories by name, which puts "Fig. 12" before "Fig. 3"), then "Tables 1-2", "Tables 3-4".
#: name -> (the CSV, its caption in workflow/report/, the report category, the page's title)
REPORT_TABLES = {
    "lm_sizes": ("results/tables/lm_sizes_{dataset}.csv", "lm_sizes", "Tables 1-2", "Llama sizes, {dataset}"),
    "fits": ("results/lm/{dataset}/summary/fits.csv", "fits", "Fig. 01 and 07", "Power-law fits, {dataset}"),
    "probe_ratios": (
        "results/probe/{dataset}/summary/ratios.csv",
        "probe_ratios",
        "Fig. 04",
        "Probe chi_pos ratios, pretrained over random, {dataset}",
    ),
    "vit_sizes": ("results/tables/vit_sizes.csv", "vit_sizes", "Tables 3-4", "ViT sizes"),
    "rfm_deviations": ("results/rfm/deviations.csv", "rfm_deviations", "Fig. 03", "RFM chi_pos against theory"),
    "hutchinson_cv": ("results/checks/hutchinson_cv.csv", "hutchinson_cv", "Fig. 06", "Hutchinson CV against K"),
    "entk_shift": ("results/checks/entk_shift.csv", "entk_shift", "Fig. 12", "eNTK spectrum shift"),
    "interventions": (
        "results/tables/interventions_{dataset}.csv",
        "interventions",
        "Fig. 13",
        "Interventions, {dataset}",
    ),
}


def table_page(name):
    """Where the HTML page of table ``name`` goes (with the CSV's wildcards)."""
    csv = REPORT_TABLES[name][0]
    return f"results/report/tables/{name}" + ("_{dataset}" if "{dataset}" in csv else "") + ".html"


check_prepared(config)  # after the data paths above


# `snakemake --report` under a config other than the one the results were made under would show
# them as this config's (spectral_reach.provenance): refused, naming the keys that differ.
if any(arg == "--report" or arg.startswith("--report=") for arg in sys.argv[1:]):
    _problem = provenance.report_problem(config)
    if _problem:
        raise ValueError(f"no report: {_problem}")
