# Helpers shared by the rules: config checks, config slices, target lists, wildcard constraints.
import json
import os

from snakemake.utils import validate

validate(config, "../schemas/config.schema.yaml")


def check_settings(config):
    """Cross-key checks the schema cannot express; each names its keys and the fix."""
    runs = [(f"lm.{d}", config["lm"][d]) for d in config["datasets"]]
    if config.get("vit"):
        runs.append(("vit", config["vit"]))
    for key, run in runs:
        if run.get("compile") and run.get("device") == "cpu":
            raise ValueError(
                f"{key}.compile=true with {key}.device=cpu: compiling is for CUDA runs (on a CPU the step runs "
                f"eager anyway); set {key}.compile: false or {key}.device: auto"
            )
        if run["warmup"] >= run["steps"]:
            raise ValueError(f"{key}.warmup={run['warmup']} must be below {key}.steps={run['steps']}")
    vit = config.get("vit")
    parts = config["data"].get(vit["dataset"], {}) if vit else {}
    generated = parts.get("source", {}).get("generate")
    if vit and generated:
        per_pass = len(parts["train_parts"]) * generated["images_per_part"] // vit["batch_size"]
        if vit["steps"] > vit["passes"] * per_pass:
            raise ValueError(
                f"vit.steps={vit['steps']} exceeds vit.passes={vit['passes']} passes of "
                f"{len(parts['train_parts'])} x {generated['images_per_part']} generated images at "
                f"vit.batch_size={vit['batch_size']} ({vit['passes'] * per_pass} steps): lower vit.steps or raise vit.passes"
            )


def fmt_alpha(alpha):
    """The wildcard text of an alpha: '1.5', '2'."""
    return f"{alpha:g}"


ALPHAS = [fmt_alpha(a) for a in config["rfm"]["alphas"]]


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
if VIT is not None and config["data"].get(VIT["dataset"], {}).get("kind") != "image":
    raise ValueError(
        f"config key vit.dataset: {VIT['dataset']!r} is not an image data set under data "
        f"(have: {', '.join(datasets_with('image'))})"
    )
check_settings(config)  # after the checks above, which name unknown data sets
PARAMETRIZATIONS = ("standard", "mup")
VIT_SIZES = sorted({s for p in PARAMETRIZATIONS for s in (VIT[p]["sizes"] if VIT else {})})

for _fig in ("fig10", "fig11"):
    if config["figures"][_fig]["dataset"] not in LM_DATASETS:
        raise ValueError(
            f"config key figures.{_fig}.dataset: {config['figures'][_fig]['dataset']!r} is not one of "
            f"datasets {LM_DATASETS}"
        )


wildcard_constraints:
    alpha=constraint(ALPHAS),
    dataset=constraint(config["data"]),
    seed=r"\d+",
    size=constraint(LM_SIZES),
    par=constraint(PARAMETRIZATIONS),
    vsize=constraint(VIT_SIZES),


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


def figure_command(head):
    """A figure rule's shell command: ``head``, then what every figure takes (style, PDF and PNG,
    caption template and rendering) and its log."""
    tail = (
        " --width {params.style[width]} --height {params.style[height]} --dpi {params.style[dpi]}"
        " --pdf {output.pdf} --png {output.png} --caption-template {input.template} --caption {output.caption}"
        " > {log} 2>&1"
    )
    return "".join((head, tail))


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


def data_files(dataset):
    """The prepared token splits that training reads."""
    return [
        f"results/data/{dataset}/{split}.{ext}" for split in ("train", "validation", "test") for ext in ("bin", "json")
    ]


def lm_runs(dataset):
    """``(size, seed)`` of every training run of a data set."""
    c = config["lm"][dataset]
    return [(size, seed) for size in c["sizes"] for seed in c["seeds"]]


def probe_runs(dataset):
    """``(size, seed)`` of every probe pair (pretrained and random backbone) of a data set."""
    return [(size, seed) for size, seed in lm_runs(dataset) if seed in config["probe"]["seeds"]]


def check_run(name):
    """The training run a verification check reads (``checks.<name>``: dataset, size, seed)."""
    c = config["checks"][name]
    if (
        c["dataset"] not in LM_DATASETS
        or c["size"] not in config["lm"][c["dataset"]]["sizes"]
        or c["seed"] not in config["lm"][c["dataset"]]["seeds"]
    ):
        raise ValueError(
            f"config checks.{name}: no training run {c['dataset']}/{c['size']}/seed{c['seed']} "
            f"(datasets {LM_DATASETS}; sizes and seeds under lm.<dataset>)"
        )
    return {"dataset": c["dataset"], "size": c["size"], "seed": c["seed"]}


for _check in ("hutchinson", "entk"):
    check_run(_check)


def lm_run_dir(dataset, size, seed):
    return f"results/lm/{dataset}/{size}/seed{seed}"


def lm_spec(dataset, size, seed, trainable="all"):
    """Everything one training run depends on, as sorted JSON (so params compare by content)."""
    c, d = config["lm"][dataset], config["data"][dataset]
    shape = {k: v for k, v in c["sizes"][size].items() if k not in ("lr", "resources")}
    spec = {
        "size": shape,
        "vocab_size": d["vocab_size"],
        "lr": c["sizes"][size]["lr"],
        "seed": int(seed),
        "betas": c["optimizer"]["betas"],
        "eps": c["optimizer"]["eps"],
        "weight_decay": c["optimizer"]["weight_decay"],
        "trainable": trainable,
        **pick(
            c,
            [
                "context_length",
                "batch_size",
                "steps",
                "warmup",
                "schedule",
                "data_seed",
                "lnp",
                "eval",
                "checkpoint_every",
                "log_every",
                "device",
                "precision",
                "compile",
            ],
        ),
    }
    return json.dumps(spec, sort_keys=True)


def lm_resources(dataset, size):
    """Scheduler resources of a size: the data set's defaults, updated by the size's own."""
    c = config["lm"][dataset]
    return {**c["resources"], **c["sizes"][size].get("resources", {})}


def lm_resource(name):
    """The rule-resource callable for ``name`` of a training job; ``runtime`` grows with the attempt."""
    if name == "runtime":
        return lambda w, attempt: lm_resources(w.dataset, w.size)["runtime"] * attempt
    return lambda w: lm_resources(w.dataset, w.size)[name]


def vit_runs():
    """``(parametrization, size, seed)`` of every ViT run."""
    return [(p, s, seed) for p in PARAMETRIZATIONS for s in VIT[p]["sizes"] for seed in VIT["seeds"]] if VIT else []


def vit_run_dir(par, size, seed):
    return f"results/vit/{par}/{size}/seed{seed}"


def vit_spec(par, size, seed):
    """Everything one ViT run depends on, as sorted JSON."""
    row = VIT[par]["sizes"][size]
    mup = {k: VIT["mup"][k] for k in ("base_width", "init_std", "output_mult")} if par == "mup" else None
    spec = {
        "size": {k: row[k] for k in ("hidden", "mlp", "heads", "layers", "patch")},
        "lr": row["lr"],
        "seed": int(seed),
        "parametrization": par,
        "mup": mup,
        "betas": VIT["optimizer"]["betas"],
        "eps": VIT["optimizer"]["eps"],
        "weight_decay": VIT["optimizer"]["weight_decay"],
        **pick(
            VIT,
            [
                "batch_size",
                "passes",
                "steps",
                "warmup",
                "schedule",
                "data_seed",
                "lnp",
                "eval",
                "checkpoint_every",
                "log_every",
                "device",
                "precision",
                "compile",
            ],
        ),
    }
    return json.dumps(spec, sort_keys=True)


def vit_resource(name):
    """The rule-resource callable for ``name`` of a ViT job; ``runtime`` grows with the attempt."""

    def value(w):
        return {**VIT["resources"], **VIT[w.par]["sizes"][w.vsize].get("resources", {})}[name]

    if name == "runtime":
        return lambda w, attempt: value(w) * attempt
    return value


def vit_targets():
    if not VIT:
        return []
    return ["results/tables/vit_sizes.md", "figures/fig09_vit.pdf", "figures/fig09_vit.png"]


def lm_targets():
    figs = [
        "fig01_scaling",
        "fig04_probe_ratio",
        "fig05_chi_net",
        "fig06_hutchinson",
        "fig07_test_loss",
        "fig08_isocompute",
        "fig10_components",
        "fig11_components",
        "fig12_entk",
    ]
    return (
        [f"results/tables/lm_sizes_{d}.md" for d in LM_DATASETS]
        + [f"results/probe/{d}/summary/ratios.csv" for d in LM_DATASETS]
        + [f"figures/{f}.{ext}" for f in figs for ext in ("pdf", "png")]
    )


def all_targets():
    return [
        "results/rfm/deviations.md",
        "figures/fig03_rfm.pdf",
        "figures/fig03_rfm.png",
        *lm_targets(),
        *vit_targets(),
    ]


# Unknown targets (workflow/rules/unknown.smk)


def configured_runs():
    """``{kind: ["<a>/<b>/seed<n>", ...]}`` of every run the config defines, by results folder."""
    return {
        "lm": [f"{d}/{s}/seed{seed}" for d in LM_DATASETS for s, seed in lm_runs(d)],
        "probe": [f"{d}/{s}/seed{seed}" for d in LM_DATASETS for s, seed in probe_runs(d)],
        "vit": [f"{p}/{s}/seed{seed}" for p, s, seed in vit_runs()],
    }


def not_one_of(prefixes):
    """A regex that fails at the start of any of ``prefixes`` followed by '/'."""
    return f"(?!(?:{'|'.join(re.escape(p) for p in prefixes) or '(?!)'})/)"


def unknown_run(w):
    runs = configured_runs()[w.kind]
    raise ValueError(
        f"results/{w.kind}/{w.a}/{w.b}/seed{w.seed}: no such {w.kind} run in the config. "
        f"Valid runs under results/{w.kind}/: {', '.join(runs) or 'none'}"
    )


def unknown_dataset(w):
    raise ValueError(
        f"results/data/{w.dataset}: no data set {w.dataset!r} in the config (config key data). "
        f"Valid data sets: {', '.join(config['data'])}"
    )
